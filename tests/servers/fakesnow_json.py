"""Fake Snowflake server for the COPY INTO load tests: fakesnow 0.11.18's server app, adapted.

    python fakesnow_json.py [--port PORT | PORT] [--db-path DIR] [--s3-endpoint http://127.0.0.1:PORT
                            --s3-access-key KEY --s3-secret-key SECRET] [--user U --password P]

Run it with the venv of requirements-fakesnow.lock (see README.md beside this file). The first
line on stdout is `listening 127.0.0.1:PORT`, printed once the server accepts requests; with
`--port 0` (the default) the port is one the kernel picked, so tests never race for a port.
Nothing else goes to stdout; fakesnow's and uvicorn's logs go to stderr. SIGTERM or SIGINT
stops it cleanly (open sessions are closed, so DuckDB files under --db-path are checkpointed).

What it changes in `fakesnow -s` (README.md beside this file has the details and what was verified):

1. JSON result sets. fakesnow answers SELECT, SHOW, DDL and COPY in Arrow
   (`queryResultFormat: "arrow"`, `rowsetBase64`), which snowflake-connector-rs 1.1 cannot
   read. Every Arrow answer is re-encoded as Snowflake's JSON rowset: `rowset` is a list of
   rows, each a list of strings or null, in the encoding Snowflake uses for JSON results
   (FIXED as a decimal string, BOOLEAN "1"/"0", DATE as days since the epoch, TIME as
   seconds.nanoseconds since midnight, TIMESTAMP_NTZ/LTZ as epoch seconds.nanoseconds,
   TIMESTAMP_TZ as "<epoch seconds.nanoseconds> <1440 + offset minutes>", BINARY as hex,
   VARIANT/OBJECT/ARRAY as JSON text), with fakesnow's `rowtype` unchanged. SQL errors get the
   `data.queryId` Snowflake sends, without which snowflake-connector-rs reports a protocol error
   instead of the SQL error.
2. Login without SESSION_PARAMETERS. fakesnow's login handler raises (HTTP 500) when the
   login request has no `data.SESSION_PARAMETERS`; it is defaulted to `{}`.
3. Optional password check (`--user`/`--password`): a wrong user or password gets Snowflake's
   answer, `success: false` with code 390100 "Incorrect username or password was specified.".
   fakesnow itself accepts any user and password.
4. S3 for COPY INTO. fakesnow reads `s3://` URLs (external stages, COPY ... FROM 's3://...')
   with DuckDB's httpfs. The wrapper loads httpfs from the duckdb-extension-httpfs package (DuckDB
   cannot download it here) and, given --s3-endpoint, creates a DuckDB S3 secret pointing at that
   endpoint (path-style, plain HTTP when the URL is http://) with the given key, in every DuckDB
   instance fakesnow creates. fakesnow ignores CREDENTIALS=(...) in COPY INTO and CREATE STAGE:
   these --s3-* values play the part of the stage's credentials.
5. COPY INTO with FILE_FORMAT = (TYPE = JSON), which fakesnow 0.11.18 rejects
   ("JSON FILE_FORMAT is not currently implemented", HTTP 500). Each JSON value in a file becomes
   one row, as in Snowflake (STRIP_OUTER_ARRAY = TRUE makes each element of a top-level array a
   row), read with DuckDB's read_json_objects. Without a transformation the table must have a
   single VARIANT column. In a transformation, `COPY INTO t (A, B, C) FROM (SELECT
   METADATA$FILENAME, CURRENT_TIMESTAMP(), $1 FROM @stage)`, `$1` is the whole JSON value,
   `$1:a.b` a path in it, and METADATA$FILENAME the file's path relative to the stage or URL
   the COPY reads from. Load history works as in fakesnow: a file already loaded into the table
   is skipped with status LOAD_SKIPPED, "File was loaded before.", unless FORCE = TRUE.
6. COPY INTO as Snowflake's ON_ERROR = ABORT_STATEMENT: the quoted form is accepted, the whole
   COPY is one transaction (fakesnow inserts file by file), and malformed JSON fails it with code
   100069 rather than HTTP 500.
7. BEGIN [TRANSACTION] through the server, which fakesnow answers with 002003 ("Table with name
   BEGIN does not exist!", from describing the statement) after opening the transaction.

Everything else is fakesnow's own: see fakesnow/server.py in the venv.
"""

from __future__ import annotations

import argparse
import base64
import contextvars
import datetime
import decimal
import gzip
import json
import math
import os
import pathlib
import re
import signal
import socket
import sys
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import duckdb
import pyarrow as pa
import snowflake.connector.errors
import uvicorn
from sqlglot import exp
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

import fakesnow.copy_into as copy_into
import fakesnow.cursor
import fakesnow.instance
import fakesnow.server as fs_server

FAKESNOW_VERSION = "0.11.18"


# --------------------------------------------------------------------------------------------
# 1. Arrow -> JSON rowsets


def _fixed(v: Any) -> str:
    if isinstance(v, decimal.Decimal):
        # "f" never switches to exponent notation (str(Decimal("0E-10")) is "0E-10")
        return format(v, "f")
    return str(int(v))


def _real(v: float) -> str:
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return repr(float(v))


def _epoch_nanos(nanos: int) -> str:
    """Epoch seconds with 9 fraction digits, as Snowflake writes timestamps in JSON results."""
    sign = "-" if nanos < 0 else ""
    secs, frac = divmod(abs(nanos), 1_000_000_000)
    return f"{sign}{secs}.{frac:09d}"


def _timestamp(v: dict[str, int], with_tz: bool) -> str:
    # fakesnow.arrow.to_sf encodes timestamps as {epoch: floor(seconds), fraction: nanos[, timezone]}
    text = _epoch_nanos(v["epoch"] * 1_000_000_000 + v["fraction"])
    if with_tz:
        text += f" {v.get('timezone', 1440)}"
    return text


def _cell(v: Any, sf_type: str) -> str | None:
    if v is None:
        return None
    if sf_type == "boolean":
        return "1" if v else "0"
    if sf_type == "fixed":
        return _fixed(v)
    if sf_type == "real":
        return _real(v)
    if sf_type == "date":
        if isinstance(v, datetime.date):
            return str((v - datetime.date(1970, 1, 1)).days)
        return str(int(v))
    if sf_type == "time":
        # fakesnow.arrow.to_sf sends TIME as int64 nanoseconds since midnight
        if isinstance(v, datetime.time):
            v = ((v.hour * 60 + v.minute) * 60 + v.second) * 1_000_000_000 + v.microsecond * 1000
        return _epoch_nanos(int(v))
    if sf_type.startswith("timestamp"):
        if isinstance(v, dict):
            return _timestamp(v, sf_type == "timestamp_tz")
        if isinstance(v, datetime.datetime):
            aware = v if v.tzinfo else v.replace(tzinfo=datetime.timezone.utc)
            delta = aware - datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
            nanos = (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000
            return _epoch_nanos(nanos) + (" 1440" if sf_type == "timestamp_tz" else "")
    if sf_type == "binary" or isinstance(v, (bytes, bytearray)):
        return bytes(v).hex().upper()
    if isinstance(v, (dict, list)):
        return json.dumps(v)
    return str(v)


def arrow_rowset(rowset_b64: str, rowtype: list[dict[str, Any]]) -> list[list[str | None]]:
    """Decode fakesnow's base64 Arrow IPC stream into a Snowflake JSON rowset."""
    if not rowset_b64:
        return []
    with pa.ipc.open_stream(base64.b64decode(rowset_b64)) as reader:
        table = reader.read_all()
    columns = [
        [_cell(v, rowtype[i]["type"]) for v in table.column(i).to_pylist()]
        for i in range(table.num_columns)
    ]
    return [list(row) for row in zip(*columns)] if columns else []


def as_json_response(response: Response) -> Response:
    """Re-encode one fakesnow query response as a JSON rowset, leaving other answers alone."""
    if not isinstance(response, JSONResponse):
        return response
    body = json.loads(bytes(response.body))
    data = body.get("data")
    if isinstance(data, dict) and body.get("success") is False:
        # A SQL error: Snowflake's carries data.queryId, and snowflake-connector-rs 1.1 rejects the
        # whole response without it ("missing required field in Snowflake response: data.queryId")
        # instead of reporting the error. It reads sqlState at the top level.
        data.setdefault("queryId", str(uuid.uuid4()))
        if "sqlState" in data:
            body.setdefault("sqlState", data["sqlState"])
        return JSONResponse(body, status_code=response.status_code)
    if not isinstance(data, dict) or data.get("queryResultFormat") != "arrow":
        return response
    rowset = arrow_rowset(data.pop("rowsetBase64", ""), data.get("rowtype") or [])
    data["queryResultFormat"] = "json"
    data["rowset"] = rowset
    data["returned"] = len(rowset)
    data.setdefault("total", len(rowset))
    return JSONResponse(body, status_code=response.status_code)


# --------------------------------------------------------------------------------------------
# 2. and 3. Login


class Auth:
    user: str | None = None
    password: str | None = None


def _with_body(request: Request, body: bytes) -> Request:
    """The same request with a new, uncompressed body."""
    headers = [(k, v) for k, v in request.scope["headers"] if k.lower() not in (b"content-encoding", b"content-length")]
    headers.append((b"content-length", str(len(body)).encode()))
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return Request({**request.scope, "headers": headers}, receive)


async def login_request(request: Request) -> Response:
    body = await request.body()
    if request.headers.get("Content-Encoding") == "gzip":
        body = gzip.decompress(body)
    login = json.loads(body)
    data = login.setdefault("data", {})
    if Auth.user is not None and (
        str(data.get("LOGIN_NAME", "")).upper() != Auth.user.upper() or data.get("PASSWORD") != Auth.password
    ):
        return JSONResponse(
            {
                "data": {"nextAction": "RETRY_LOGIN", "authnMethod": "USERNAME_PASSWORD", "errorCode": "390100"},
                "code": "390100",
                "message": "Incorrect username or password was specified.",
                "success": False,
                "headers": None,
            }
        )
    if not isinstance(data.get("SESSION_PARAMETERS"), dict):
        data["SESSION_PARAMETERS"] = {}
    return await fs_server.login_request(_with_body(request, json.dumps(login).encode()))


async def query_request(request: Request) -> Response:
    return as_json_response(await fs_server.query_request(request))


# --------------------------------------------------------------------------------------------
# 4. S3 through DuckDB httpfs


@dataclass
class S3:
    endpoint: str | None = None
    access_key: str | None = None
    secret_key: str | None = None
    region: str = "us-east-1"


S3_CONFIG = S3()


def httpfs_path() -> pathlib.Path:
    import duckdb_extension_httpfs

    root = pathlib.Path(duckdb_extension_httpfs.__file__).parent / "extensions"
    path = root / f"v{duckdb.__version__}" / "httpfs.duckdb_extension"
    if not path.is_file():
        raise SystemExit(f"fakesnow_json: no httpfs extension for duckdb {duckdb.__version__} under {root}")
    return path


def _sql_string(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def configure_duckdb(conn: duckdb.DuckDBPyConnection) -> None:
    # LOAD from the package's file: no INSTALL, so nothing is written under ~/.duckdb
    conn.execute(f"LOAD {_sql_string(str(httpfs_path()))}")
    if not S3_CONFIG.endpoint:
        return
    url = urlparse(S3_CONFIG.endpoint if "://" in S3_CONFIG.endpoint else f"http://{S3_CONFIG.endpoint}")
    options = [
        "TYPE s3",
        f"ENDPOINT {_sql_string(url.netloc)}",
        "URL_STYLE 'path'",
        f"USE_SSL {'true' if url.scheme == 'https' else 'false'}",
        f"REGION {_sql_string(S3_CONFIG.region)}",
    ]
    if S3_CONFIG.access_key is not None:
        options.append(f"KEY_ID {_sql_string(S3_CONFIG.access_key)}")
        options.append(f"SECRET {_sql_string(S3_CONFIG.secret_key or '')}")
    conn.execute(f"CREATE OR REPLACE SECRET fhirflow_s3 ({', '.join(options)})")


_original_fakesnow_init = fakesnow.instance.FakeSnow.__init__


def _fakesnow_init(self: fakesnow.instance.FakeSnow, *args: Any, **kwargs: Any) -> None:
    _original_fakesnow_init(self, *args, **kwargs)
    configure_duckdb(self.duck_conn)


# --------------------------------------------------------------------------------------------
# 5. COPY INTO ... FILE_FORMAT = (TYPE = JSON)

# the stage URL or location the current COPY reads from, for METADATA$FILENAME
_copy_source: contextvars.ContextVar[str] = contextvars.ContextVar("copy_source", default="")


@dataclass
class ReadJSON(copy_into.FileTypeHandler):
    strip_outer_array: bool = False

    def read_expression(self, url: str) -> exp.Expr:
        # "unstructured": any sequence of JSON values, each possibly over many lines, one row each
        fmt = "array" if self.strip_outer_array else "unstructured"
        return exp.func(
            "read_json_objects",
            exp.Literal.string(url),
            self.make_eq("format", fmt),
            # DuckDB's default is 16 MiB; a FHIR bundle can be larger
            self.make_eq("maximum_object_size", 1 << 30),
        )


def _format_type(param: exp.CopyParameter) -> str | None:
    value = next((e.args["value"] for e in param.expressions if e.this.this == "TYPE"), None)
    return str(value.this).upper() if value is not None else None


_original_params = copy_into._params


def _params(expr: exp.Copy, params: Any = None) -> copy_into.CopyParams:
    all_params = list(expr.args.get("params") or [])
    kept: list[exp.CopyParameter] = []
    json_format: exp.CopyParameter | None = None
    for p in all_params:
        name = p.this.name.upper() if isinstance(p.this, exp.Var) else ""
        if name == "FILE_FORMAT" and _format_type(p) == "JSON":
            json_format = p
        elif name == "ON_ERROR" and isinstance(p.expression, exp.Literal) and p.expression.is_string:
            # ON_ERROR = 'ABORT_STATEMENT' (quoted): fakesnow takes only the unquoted form
            kept.append(exp.CopyParameter(this=p.this.copy(), expression=exp.var(p.expression.this)))
        else:
            kept.append(p)

    strip_outer_array = False
    for prop in json_format.expressions if json_format else []:
        name = str(prop.this.this).upper()
        value = prop.args.get("value")
        if name == "TYPE":
            continue
        if name == "STRIP_OUTER_ARRAY":
            strip_outer_array = str(getattr(value, "this", value)).upper() in ("TRUE", "1")
        else:
            raise NotImplementedError(f"JSON file format option {name} is not implemented by fakesnow_json.py")

    expr.set("params", kept)
    try:
        cparams = _original_params(expr, params)
    finally:
        expr.set("params", all_params)
    if json_format is not None:
        cparams.file_format = ReadJSON(strip_outer_array=strip_outer_array)
    return cparams


_original_source_urls = copy_into._source_urls
_original_source_glob = copy_into._source_glob


def _source_urls(source: str, files: list[str]) -> list[str]:
    _copy_source.set(source)
    return _original_source_urls(source, files)


def _source_glob(source: str, duck_conn: duckdb.DuckDBPyConnection) -> list[str]:
    _copy_source.set(source)
    return _original_source_glob(source, duck_conn)


def _metadata_filename(url: str) -> str:
    source = _copy_source.get()
    if source and url.startswith(source):
        return url[len(source) :].lstrip("/")
    return urlparse(url).path.lstrip("/")


def _json_select(select: exp.Select, url: str) -> exp.Select:
    """The transformation's SELECT for one JSON file: $1 is the value, $1:path a path in it."""
    select = select.copy()
    doc = exp.column("json")

    def rewrite(node: exp.Expr) -> exp.Expr:
        if isinstance(node, exp.Column) and node.name.upper() == "METADATA$FILENAME" and not node.table:
            return exp.Literal.string(_metadata_filename(url))
        if isinstance(node, exp.Parameter) and node.name == "1":
            return doc.copy()
        return node

    # $1:a.b parses as JSONExtract($1, path), which DuckDB gets as json -> '$.a.b'
    select = select.transform(rewrite)
    return select


_original_inserts = copy_into._inserts


def _inserts(expr: exp.Copy, params: copy_into.CopyParams, urls: list[str], parquet_info: Any = None) -> list[exp.Expr]:
    if not isinstance(params.file_format, ReadJSON):
        return _original_inserts(expr, params, urls, parquet_info)
    from_ = expr.args["files"][0]
    target = expr.this
    if isinstance(from_, exp.Subquery):
        select = from_.this
        assert isinstance(select, exp.Select), f"{select.__class__} is not a Select"
        return [
            exp.Insert(
                this=target,
                expression=exp.Select(expressions=_json_select(select, url).expressions).from_(
                    exp.Table(this=params.file_format.read_expression(url))
                ),
                by_name=False,
            )
            for url in urls
        ]
    # no transformation: the single VARIANT column gets each value
    return [
        exp.Insert(
            this=target,
            expression=exp.Select(expressions=[exp.column("json")]).from_(
                exp.Table(this=params.file_format.read_expression(url))
            ),
            by_name=False,
        )
        for url in urls
    ]


_original_copy_into = copy_into.copy_into


def _txid(duck_conn: duckdb.DuckDBPyConnection) -> int:
    row = duck_conn.execute("SELECT txid_current()").fetchone()
    assert row is not None
    return int(row[0])


def _copy_into(duck_conn: duckdb.DuckDBPyConnection, *args: Any, **kwargs: Any) -> str:
    """fakesnow's COPY INTO, all or nothing as ON_ERROR = ABORT_STATEMENT is in Snowflake.

    fakesnow inserts file by file, so under AUTOCOMMIT a bad second file would leave the first
    loaded (and in the load history). Here the whole COPY runs in one transaction unless the
    session already has one open. A file DuckDB cannot parse as JSON fails the statement with
    Snowflake's code 100069 instead of fakesnow's HTTP 500.
    """
    # Inside the session's own transaction (BEGIN, or AUTOCOMMIT = FALSE) its COMMIT or ROLLBACK
    # decides. DuckDB has no flag for that, and a failed BEGIN would abort the transaction, but
    # under autocommit every statement gets a new transaction id.
    own = _txid(duck_conn) != _txid(duck_conn)
    if own:
        duck_conn.begin()
    try:
        sql = _original_copy_into(duck_conn, *args, **kwargs)
    except BaseException as e:
        if own:
            duck_conn.rollback()
        if isinstance(e, duckdb.InvalidInputException) and "JSON" in str(e):
            raise snowflake.connector.errors.ProgrammingError(
                msg="Error parsing JSON: " + str(e).split("\n")[0], errno=100069, sqlstate="22P02"
            ) from None
        raise
    if own:
        duck_conn.commit()
        duck_conn.execute(sql)  # COMMIT replaced the result (the per-file status rows) the cursor reads
    return sql


_original_describe_last_sql = fakesnow.cursor.FakeSnowflakeCursor._describe_last_sql  # noqa: SLF001


def _describe_last_sql(self: fakesnow.cursor.FakeSnowflakeCursor) -> list:
    # fakesnow's server describes every statement it ran with `DESCRIBE <sql>`; for BEGIN
    # [TRANSACTION] that fails ("Table with name BEGIN does not exist!", 002003) after the
    # transaction was opened. BEGIN has no result columns.
    if re.match(r"\s*(BEGIN|START)\b", self._last_sql or "", re.IGNORECASE):  # noqa: SLF001
        return []
    return _original_describe_last_sql(self)


def install_patches() -> None:
    fakesnow.instance.FakeSnow.__init__ = _fakesnow_init  # type: ignore[method-assign]
    copy_into._params = _params
    copy_into._source_urls = _source_urls
    copy_into._source_glob = _source_glob
    copy_into._inserts = _inserts
    fakesnow.cursor.copy_into = _copy_into  # the cursor imported it by name
    fakesnow.cursor.FakeSnowflakeCursor._describe_last_sql = _describe_last_sql  # type: ignore[method-assign]  # noqa: SLF001


# --------------------------------------------------------------------------------------------
# server


def build_app() -> Starlette:
    endpoints = {
        "/session/v1/login-request": login_request,
        "/queries/v1/query-request": query_request,
    }
    routes = [
        Route(r.path, endpoints.get(r.path, r.endpoint), methods=sorted(r.methods or []))
        for r in fs_server.routes
        if isinstance(r, Route)
    ]
    return Starlette(debug=True, routes=routes)


class Server(uvicorn.Server):
    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if sockets:
            host, port = sockets[0].getsockname()[:2]
            print(f"listening {host}:{port}", flush=True)


def close_sessions() -> None:
    """Checkpoint every database file (so no .wal is left beside it) and close all connections."""
    conns = [c._duck_conn for c in fs_server.sessions.values()] + [fs_server.shared_fs.duck_conn]  # noqa: SLF001
    for conn in conns:
        try:
            files = conn.execute("SELECT database_name FROM duckdb_databases() WHERE path IS NOT NULL").fetchall()
            for (name,) in files:
                conn.execute(f'CHECKPOINT "{name}"')
        except duckdb.Error:
            pass
    for conn in conns:
        try:
            conn.close()
        except duckdb.Error:
            pass
    fs_server.sessions.clear()


def main(argv: list[str] | None = None) -> int:
    env = os.environ.get
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 (the default): a free port, printed on stdout")
    parser.add_argument("port_arg", nargs="?", type=int, help="the port, as an alternative to --port")
    parser.add_argument(
        "--db-path",
        help="directory of DuckDB files, one DATABASE.db per Snowflake database (default: in memory). "
        "Stages live in memory either way. A login may also choose its own with the session parameter "
        "FAKESNOW_DB_PATH (':isolated:' for a private in-memory database).",
    )
    parser.add_argument("--s3-endpoint", default=env("FAKESNOW_S3_ENDPOINT"), help="eg: http://127.0.0.1:PORT")
    parser.add_argument("--s3-access-key", default=env("FAKESNOW_S3_ACCESS_KEY"))
    parser.add_argument("--s3-secret-key", default=env("FAKESNOW_S3_SECRET_KEY"))
    parser.add_argument("--s3-region", default=env("FAKESNOW_S3_REGION", "us-east-1"))
    parser.add_argument("--user", help="accept only this user (case-insensitive) ...")
    parser.add_argument("--password", help="... with this password (default: any user, any password)")
    parser.add_argument("--log-level", default="warning", help="uvicorn's log level (default: warning)")
    args = parser.parse_args(argv)
    port = args.port_arg if args.port_arg is not None else args.port

    if (args.user is None) != (args.password is None):
        parser.error("--user and --password go together")
    Auth.user, Auth.password = args.user, args.password
    S3_CONFIG.endpoint = args.s3_endpoint
    S3_CONFIG.access_key = args.s3_access_key
    S3_CONFIG.secret_key = args.s3_secret_key
    S3_CONFIG.region = args.s3_region

    import fakesnow as fakesnow_pkg  # noqa: F401 -- version check below

    from importlib.metadata import version

    if version("fakesnow") != FAKESNOW_VERSION:
        print(f"fakesnow_json: written for fakesnow {FAKESNOW_VERSION}, found {version('fakesnow')}", file=sys.stderr)

    install_patches()
    # the shared instance was made at import, before the patches: configure it now
    if args.db_path:
        os.makedirs(args.db_path, exist_ok=True)
        fs_server.shared_fs = fakesnow.instance.FakeSnow(db_path=args.db_path)
    else:
        configure_duckdb(fs_server.shared_fs.duck_conn)

    sock = socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, port))
    sock.listen(128)

    # While it serves, uvicorn handles SIGTERM and SIGINT itself (stop accepting, finish the requests
    # under way), then restores these handlers and raises the signal again: SystemExit then runs
    # the cleanup below, as it does for a signal that comes before or after uvicorn's own handlers.
    def exit_on_signal(signum: int, _frame: object) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, exit_on_signal)
    signal.signal(signal.SIGINT, exit_on_signal)

    config = uvicorn.Config(build_app(), log_level=args.log_level, lifespan="off", access_log=False)
    server = Server(config)
    try:
        server.run(sockets=[sock])
    finally:
        close_sessions()
        sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
