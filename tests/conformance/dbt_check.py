#!/usr/bin/env python3
"""Check a dbt project against fhirflow's dbt expectations (see CONTRACT.md).

Usage:
    python dbt_check.py [--dbt PATH] [--strict] [--jsonschema] [--jobs N] [--keep-temp] [-v] DBT_PROJECT_DIR EXPECT_JSON

EXPECT_JSON is the `dbt` part of the document printed by `fhirflow graph SPEC --format json`
(its `format_version`, `tags`, `selectors`, `tests` and `descriptions` keys are read):

    {"format_version": "1.0", "tags": {"<tag>": ["<model>", ...]}, "selectors": ["<name>", ...],
     "tests": [{"model": "<model>", "column": "<column>", "test": "unique"}, ...],
     "descriptions": {"<model>": "...", "<model>.<column>": "..."}}

What is checked, with the real dbt (dbt-core 1.7, 1.11 and 1.12, with dbt-duckdb 1.7.5 and
1.11.1):

1. `dbt parse` succeeds (this validates every properties YAML and selectors.yml).
2. For every tag: `dbt ls --resource-type model --select tag:<tag> --output json
   --output-keys name` lists exactly the expected model names.
3. For every selector: it is defined in selectors.yml, and `dbt ls --selector <name>`
   succeeds and lists at least one node.
4. `dbt ls --resource-type test` lists exactly the expected column tests (by test, model and
   column) among the generic tests on the expected models: a dbt that does not read the key
   they are written under (dbt-core 1.7 and `data_tests:`) drops them without an error, and
   only this count shows it.
5. The same `dbt ls` (with `--resource-type model`) gives every expected model and column its
   description.

dbt runs with --project-dir and --profiles-dir set to DBT_PROJECT_DIR, and with
--target-path, --log-path, the working directory and DBT_DUCKDB_PATH all inside a
temporary directory, so the project folder is not written to. dbt's console output is
requested as JSON lines (--log-format json): `dbt ls` results are the `PrintEvent`
records (`ListCmdOut` in dbt-core 1.7), and warnings/errors are picked out by level, so
log lines can never be mistaken for results. The `dbt ls` runs reuse the parse (partial
parsing) from private copies of its target dir and run --jobs at a time.

dbt is `--dbt PATH` if given, else the `dbt` next to sys.executable (run this script
with the dbt venv's python), else `dbt` on PATH.

Exit status: 0 when everything matches (prints `dbt_check: dbt-core V: N tags, M selectors,
T column tests and D descriptions match (dbt lists L tests)`),
1 on any mismatch or dbt failure (a precise diff is printed), 2 on bad usage or an
unreadable expectations file. Warnings dbt logs while parsing (deprecations included)
are printed; with --strict they also fail the check.

dbt validates YAML against its JSON schemas (the source of deprecations such as
PropertyMovedToConfigDeprecation for a top-level model `tags:` key, which dbt otherwise
ignores silently) only for snowflake, bigquery, redshift and databricks. --jsonschema runs
one more parse, in-process in dbt's own python, with that validation switched on for the
project's adapter, so a duckdb test sees what a Snowflake deployment would.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

EXIT_OK = 0
EXIT_MISMATCH = 1
EXIT_USAGE = 2

SUPPORTED_FORMAT_VERSION = "1.0"


class UsageError(Exception):
    pass


# --------------------------------------------------------------------------------------
# Expectations


class Expectations:
    def __init__(self, tags: Dict[str, List[str]], selectors: List[str],
                 tests: List[Tuple[str, str, str]], descriptions: Dict[str, str]):
        self.tags = tags
        self.selectors = selectors
        self.tests = tests  # (model, column, test)
        self.descriptions = descriptions


def load_expectations(path: Path) -> Expectations:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise UsageError(f"{path}: top level must be a JSON object")
    version = doc.get("format_version")
    if version != SUPPORTED_FORMAT_VERSION:
        raise UsageError(
            f"{path}: format_version is {version!r}, this checker understands "
            f"{SUPPORTED_FORMAT_VERSION}"
        )
    tags = doc.get("tags", {})
    if not isinstance(tags, dict):
        raise UsageError(f"{path}: 'tags' must be an object of tag -> [model names]")
    for tag, models in tags.items():
        if not isinstance(models, list) or not all(isinstance(m, str) for m in models):
            raise UsageError(f"{path}: tags[{tag!r}] must be a list of model names")
        dupes = sorted({m for m in models if models.count(m) > 1})
        if dupes:
            raise UsageError(f"{path}: tags[{tag!r}] lists models more than once: {dupes}")
        if any(ch.isspace() or ch == "," for ch in tag) or not tag:
            raise UsageError(f"{path}: tag {tag!r} cannot be used in a dbt selection")
    selectors = doc.get("selectors", [])
    if not isinstance(selectors, list) or not all(isinstance(s, str) for s in selectors):
        raise UsageError(f"{path}: 'selectors' must be a list of selector names")
    if len(set(selectors)) != len(selectors):
        raise UsageError(f"{path}: 'selectors' lists a name more than once")
    tests: List[Tuple[str, str, str]] = []
    for test in doc.get("tests", []):
        if not isinstance(test, dict) or not all(isinstance(test.get(k), str) for k in ("model", "column", "test")):
            raise UsageError(f"{path}: 'tests' must be a list of {{model, column, test}} objects")
        tests.append((test["model"], test["column"], test["test"]))
    descriptions = doc.get("descriptions", {})
    if not isinstance(descriptions, dict) or not all(isinstance(v, str) for v in descriptions.values()):
        raise UsageError(f"{path}: 'descriptions' must be an object of model or model.column -> text")
    return Expectations(tags, selectors, sorted(tests), descriptions)


# --------------------------------------------------------------------------------------
# Running dbt


def default_dbt() -> str:
    exe = "dbt.exe" if os.name == "nt" else "dbt"
    # Do not resolve symlinks: in a venv, sys.executable is <venv>/bin/python -> system python.
    beside = Path(sys.executable).parent / exe
    if beside.is_file():
        return str(beside)
    on_path = shutil.which("dbt")
    if on_path:
        return on_path
    raise UsageError(
        f"no dbt executable next to {sys.executable} or on PATH; pass --dbt PATH_TO_DBT"
    )


class DbtResult:
    def __init__(self, argv: List[str], returncode: int, stdout: str, stderr: str, seconds: float):
        self.argv = argv
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        self.seconds = seconds
        self.events: List[dict] = []
        self.other_lines: List[str] = []  # stdout lines that are not dbt JSON log records
        for line in stdout.splitlines():
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                self.other_lines.append(line)
                continue
            if isinstance(record, dict) and isinstance(record.get("info"), dict):
                self.events.append(record)
            else:
                self.other_lines.append(line)

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def printed(self) -> List[str]:
        """Messages of PrintEvent records (ListCmdOut before dbt-core 1.8): what `dbt ls`
        prints as its results."""
        return [
            str(e.get("data", {}).get("msg", e["info"].get("msg", "")))
            for e in self.events
            if e["info"].get("name") in ("PrintEvent", "ListCmdOut")
        ]

    def at_levels(self, *levels: str) -> List[dict]:
        return [e for e in self.events if e["info"].get("level") in levels]

    def describe_failure(self) -> str:
        lines = [f"  command: {' '.join(self.argv)}", f"  exit status: {self.returncode}"]
        problems = self.at_levels("error", "warn")
        for e in problems:
            lines.append(f"  dbt {e['info'].get('level')}: [{e['info'].get('name')}] "
                         + indent_tail(e["info"].get("msg", "")))
        if not problems:
            tail = (self.other_lines + self.stderr.splitlines())[-30:]
            if tail:
                lines.append("  output (last lines):")
                lines.extend("    " + t for t in tail)
        elif self.stderr.strip():
            lines.append("  stderr (last lines):")
            lines.extend("    " + t for t in self.stderr.splitlines()[-15:])
        return "\n".join(lines)


_LEVEL_PREFIX = re.compile(r"^\[(?:WARNING|ERROR)\](?:\[\w+\])?:\s*")


def indent_tail(text: str) -> str:
    """A dbt event message, without its `[WARNING][EventName]: ` prefix, indented."""
    return _LEVEL_PREFIX.sub("", str(text).strip()).replace("\n", "\n      ")


# dbt validates properties YAML and dbt_project.yml against its bundled JSON schemas (and
# raises deprecations such as PropertyMovedToConfigDeprecation for a top-level model
# `tags:` key) only for the snowflake, bigquery, redshift and databricks adapters. This
# snippet runs `dbt parse` in-process with that validation switched on for the project's
# adapter (duckdb in tests), and prints every warn/error event as a JSON line.
_JSONSCHEMA_PARSE = r"""
import json, sys
try:
    import dbt.jsonschemas.jsonschemas as js
    js._JSONSCHEMA_SUPPORTED_ADAPTERS = set(js._JSONSCHEMA_SUPPORTED_ADAPTERS) | {sys.argv[1]}
    from dbt.cli.main import dbtRunner
except Exception as exc:
    print(json.dumps({"unavailable": repr(exc)}))
    sys.exit(0)
def on_event(e):
    if e.info.level in ("warn", "error"):
        print(json.dumps({"level": e.info.level, "name": e.info.name, "msg": e.info.msg}), flush=True)
result = dbtRunner(callbacks=[on_event]).invoke(["--no-use-colors", "--quiet", "parse", "--show-all-deprecations", *sys.argv[2:]])
print(json.dumps({"success": bool(result.success)}))
"""


_PROBE = r"""
import importlib.metadata, json
import dbt.cli.params as params
print(json.dumps({"version": importlib.metadata.version("dbt-core"),
                  "show_all_deprecations": hasattr(params, "show_all_deprecations")}))
"""


def probe(dbt_exe: str) -> dict:
    """The dbt-core version behind the executable, and whether it has --show-all-deprecations
    (dbt-core 1.7 does not)."""
    try:
        proc = subprocess.run([python_for(dbt_exe), "-c", _PROBE], stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=120)
        return json.loads(proc.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.TimeoutExpired, json.JSONDecodeError, IndexError):
        # Not dbt's own python: assume a current dbt-core.
        return {"version": "unknown", "show_all_deprecations": True}


def python_for(dbt_exe: str) -> str:
    """The interpreter that runs the given dbt executable (from its shebang), else ours."""
    try:
        with open(dbt_exe, "rb") as fh:
            first = fh.readline(400).decode("utf-8", "replace").strip()
    except OSError:
        first = ""
    if first.startswith("#!"):
        parts = first[2:].split()
        if parts and Path(parts[0]).name.startswith("python") and Path(parts[0]).is_file():
            return parts[0]
    beside = Path(dbt_exe).parent / ("python.exe" if os.name == "nt" else "python")
    return str(beside) if beside.is_file() else sys.executable


def adapter_type(project_dir: Path) -> str:
    """The `type:` of the first output in profiles.yml (best effort; 'duckdb' if unknown)."""
    try:
        import yaml
        doc = yaml.safe_load((project_dir / "profiles.yml").read_text(encoding="utf-8")) or {}
        for profile in doc.values():
            if isinstance(profile, dict) and isinstance(profile.get("outputs"), dict):
                for output in profile["outputs"].values():
                    if isinstance(output, dict) and output.get("type"):
                        return str(output["type"])
    except Exception:
        pass
    return "duckdb"


def jsonschema_parse(dbt: "Dbt", project_dir: Path) -> Tuple[Optional[List[dict]], str]:
    """Events from a parse with dbt's JSON-schema validation on, or (None, why not)."""
    job_dir = dbt.work / "jsonschema"
    job_dir.mkdir(parents=True, exist_ok=True)
    argv = [
        python_for(dbt.exe), "-c", _JSONSCHEMA_PARSE, adapter_type(project_dir),
        "--project-dir", str(project_dir), "--profiles-dir", str(project_dir),
        "--target-path", str(job_dir / "target"), "--log-path", str(job_dir / "logs"),
    ]
    try:
        proc = subprocess.run(argv, cwd=str(job_dir), env=dbt.env, stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              encoding="utf-8", errors="replace", timeout=dbt.timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, str(exc)
    events: List[dict] = []
    for line in proc.stdout.splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(record, dict):
            continue
        if "unavailable" in record:
            return None, record["unavailable"]
        if "level" in record:
            events.append(record)
    if proc.returncode != 0:
        return None, f"exit status {proc.returncode}: {proc.stderr.strip()[-500:]}"
    return events, ""


class Dbt:
    def __init__(self, exe: str, project_dir: Path, work: Path, timeout: float):
        self.exe = exe
        self.project_dir = project_dir
        self.work = work
        self.timeout = timeout
        self.env = dict(os.environ)
        self.env.update(
            {
                "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
                # Profiles that use it (like tests/fixtures/dbt_fhir) keep their database
                # out of the project; parse and ls do not connect anyway.
                "DBT_DUCKDB_PATH": str(work / "check.duckdb"),
            }
        )
        # Flags below are given explicitly; do not let the caller's environment
        # (DBT_QUIET, DBT_LOG_FORMAT, DBT_TARGET_PATH, ...) change how we read dbt.
        for var in ("DBT_QUIET", "DBT_LOG_FORMAT", "DBT_LOG_LEVEL", "DBT_PRINT",
                    "DBT_TARGET_PATH", "DBT_LOG_PATH", "DBT_PROJECT_DIR", "DBT_PROFILES_DIR"):
            self.env.pop(var, None)

    def run(self, command: Sequence[str], extra: Sequence[str] = (),
            job_dir: Optional[Path] = None) -> DbtResult:
        """Run one dbt command; its target/ and logs/ go under job_dir (default: the work dir)."""
        job_dir = job_dir or self.work
        argv = [
            self.exe,
            "--no-use-colors",
            "--log-format", "json",
            "--log-level", "info",
            "--no-quiet",
            *command,
            "--project-dir", str(self.project_dir),
            "--profiles-dir", str(self.project_dir),
            "--target-path", str(job_dir / "target"),
            "--log-path", str(job_dir / "logs"),
            *extra,
        ]
        start = time.monotonic()
        try:
            proc = subprocess.run(
                argv,
                cwd=str(job_dir),
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                encoding="utf-8",
                errors="replace",
                timeout=self.timeout,
            )
        except FileNotFoundError as exc:
            raise UsageError(f"cannot run dbt executable {self.exe!r}: {exc}") from exc
        except subprocess.TimeoutExpired as exc:
            out = exc.stdout if isinstance(exc.stdout, str) else (exc.stdout or b"").decode("utf-8", "replace")
            err = exc.stderr if isinstance(exc.stderr, str) else (exc.stderr or b"").decode("utf-8", "replace")
            return DbtResult(argv, -1, out, err + f"\n(timed out after {self.timeout}s)",
                             time.monotonic() - start)
        return DbtResult(argv, proc.returncode, proc.stdout, proc.stderr, time.monotonic() - start)

    def ls(self, selection: Sequence[str], output_keys: Sequence[str],
           job_dir: Optional[Path] = None) -> Tuple[DbtResult, Optional[List[dict]], List[str]]:
        """Run `dbt ls ... --output json`; return (result, nodes or None on failure, bad lines)."""
        result = self.run(
            ["ls"],
            [*selection, "--output", "json", "--output-keys", *output_keys, "--no-print"],
            job_dir,
        )
        if not result.ok:
            return result, None, []
        nodes: List[dict] = []
        bad: List[str] = []
        for msg in result.printed():
            try:
                node = json.loads(msg)
            except json.JSONDecodeError:
                bad.append(msg)
                continue
            if isinstance(node, dict):
                nodes.append(node)
            else:
                bad.append(msg)
        return result, nodes, bad


# --------------------------------------------------------------------------------------
# Project facts used to explain mismatches


def load_manifest_models(target: Path) -> Dict[str, dict]:
    """name -> {"tags": [...], "path": original_file_path} for the root project's models."""
    try:
        manifest = json.loads((target / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}
    root = manifest.get("metadata", {}).get("project_name")
    models: Dict[str, dict] = {}
    for node in manifest.get("nodes", {}).values():
        if node.get("resource_type") != "model":
            continue
        if root and node.get("package_name") != root:
            continue
        models[node["name"]] = {
            "tags": sorted(node.get("tags") or []),
            "path": node.get("original_file_path", ""),
        }
    return models


def load_selector_names(project_dir: Path) -> Optional[List[str]]:
    """Names defined in <project>/selectors.yml, or None if it cannot be read."""
    path = project_dir / "selectors.yml"
    if not path.is_file():
        return []
    try:
        import yaml  # PyYAML is a dbt-core dependency
    except ImportError:
        return None
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except Exception:  # dbt parse reports the real error
        return None
    names = []
    for entry in doc.get("selectors") or []:
        if isinstance(entry, dict) and "name" in entry:
            names.append(str(entry["name"]))
    return names


def describe_model(name: str, models: Dict[str, dict]) -> str:
    info = models.get(name)
    if not models:
        return name
    if info is None:
        return f"{name} (no such model in the project)"
    return f"{name} ({info['path']}; tags: {info['tags']})"


def compare_tests(expected: Expectations, nodes: List[dict]) -> List[str]:
    """The expected column tests against the generic tests dbt attaches to the expected models."""
    models_named = {m for m, _, _ in expected.tests}
    seen: List[Tuple[str, str, str]] = []
    for node in nodes:
        metadata = node.get("test_metadata") or {}
        attached = str(node.get("attached_node") or "")
        model = attached.split(".", 2)[-1] if attached.startswith("model.") else ""
        if metadata.get("name") and model in models_named:
            seen.append((model, str(node.get("column_name")), str(metadata["name"])))
    seen.sort()
    if seen == expected.tests:
        return []
    lines = [f"column tests: dbt lists {len(seen)} on the spec's models, expected {len(expected.tests)} "
             f"(`dbt ls --resource-type test` lists {len(nodes)} tests in all)"]
    missing = [t for t in expected.tests if t not in seen]
    extra = [t for t in seen if t not in expected.tests]
    if missing:
        lines.append("  - expected but not seen by dbt (is the properties key one this dbt reads?):")
        lines.extend(f"      {test} on {model}.{column}" for model, column, test in missing)
    if extra:
        lines.append("  + seen by dbt but not expected:")
        lines.extend(f"      {test} on {model}.{column}" for model, column, test in extra)
    return ["\n".join(lines)]


def compare_descriptions(expected: Expectations, nodes: List[dict]) -> List[str]:
    """The expected model and column descriptions against what `dbt ls` reports."""
    actual: Dict[str, str] = {}
    for node in nodes:
        name = str(node.get("name"))
        actual[name] = str(node.get("description") or "")
        for column, info in (node.get("columns") or {}).items():
            if isinstance(info, dict):
                actual[f"{name}.{column}"] = str(info.get("description") or "")
    wrong = [f"  {key}: dbt has {actual.get(key)!r}, expected {text!r}"
             for key, text in sorted(expected.descriptions.items()) if actual.get(key) != text]
    if not wrong:
        return []
    return [f"descriptions: {len(wrong)} of {len(expected.descriptions)} differ\n" + "\n".join(wrong)]


# --------------------------------------------------------------------------------------
# Main


def check(args: argparse.Namespace) -> int:
    project_dir = Path(args.project_dir).resolve()
    if not (project_dir / "dbt_project.yml").is_file():
        raise UsageError(f"{project_dir} has no dbt_project.yml")
    if not (project_dir / "profiles.yml").is_file():
        raise UsageError(f"{project_dir} has no profiles.yml (profiles dir = project dir)")
    expect = load_expectations(Path(args.expect_json))
    tags, selectors = expect.tags, expect.selectors
    exe = args.dbt or default_dbt()
    dbt_info = probe(exe)

    failures: List[str] = []
    notes: List[str] = []

    work = Path(tempfile.mkdtemp(prefix="dbt_check."))
    try:
        dbt = Dbt(exe, project_dir, work, args.timeout)

        # 1. parse --------------------------------------------------------------------
        parse = dbt.run(["parse"], ["--show-all-deprecations"] if dbt_info["show_all_deprecations"] else [])
        if args.verbose:
            print(f"dbt_check: dbt parse took {parse.seconds:.1f}s", file=sys.stderr)
        if not parse.ok:
            print("dbt_check: FAILED: dbt parse failed", file=sys.stderr)
            print(parse.describe_failure(), file=sys.stderr)
            return EXIT_MISMATCH
        warnings = parse.at_levels("warn", "error")
        for e in warnings:
            line = f"dbt parse {e['info'].get('level')}: [{e['info'].get('name')}] {indent_tail(e['info'].get('msg', ''))}"
            (failures if args.strict else notes).append(line)

        if args.jsonschema:
            events, why = jsonschema_parse(dbt, project_dir)
            if events is None:
                notes.append(f"--jsonschema: dbt's JSON-schema validation could not run: {why}")
            else:
                for e in events:
                    line = (f"dbt parse with JSON-schema validation {e['level']}: [{e['name']}] "
                            f"{indent_tail(e['msg'])}")
                    (failures if args.strict else notes).append(line)

        models = load_manifest_models(work / "target")

        # 2 + 3. one `dbt ls` per tag and per selector ------------------------------------
        defined = load_selector_names(project_dir)
        undefined: List[str] = []
        if defined is not None:
            undefined = [s for s in selectors if s not in defined]
            if undefined:
                where = project_dir / "selectors.yml"
                failures.append(
                    f"selectors not defined in {where}: {undefined} (defined: {sorted(defined)})"
                )
            unexpected = sorted(set(defined) - set(selectors))
            if unexpected:
                notes.append(f"selectors.yml also defines selectors not in the expectations: {unexpected}")

        jobs: List[Tuple[str, str, List[str], List[str]]] = []
        for tag in sorted(tags):
            jobs.append(("tag", tag, ["--resource-type", "model", "--select", f"tag:{tag}"], ["name"]))
        for name in selectors:
            if name not in undefined:
                jobs.append(("selector", name, ["--selector", name], ["name", "resource_type"]))
        # One listing serves both the test count and the descriptions.
        jobs.append(("nodes", "", ["--resource-type", "test", "--resource-type", "model"],
                     ["resource_type", "name", "test_metadata", "attached_node", "column_name", "description",
                      "columns"]))

        # dbt ls reuses the parse above (partial parsing) from a private copy of its
        # target dir, so the invocations can run side by side.
        def run_job(index: int, job: Tuple[str, str, List[str], List[str]]):
            job_dir = work / "ls" / str(index)
            shutil.copytree(work / "target", job_dir / "target")
            return dbt.ls(job[2], job[3], job_dir)

        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            outcomes = list(pool.map(run_job, range(len(jobs)), jobs))

        listed_tests = 0
        for (kind, key, selection, _), (result, nodes, bad) in zip(jobs, outcomes):
            label = " ".join(selection)
            if args.verbose:
                print(f"dbt_check: dbt ls {label} took {result.seconds:.1f}s", file=sys.stderr)
            if nodes is None:
                failures.append(f"{kind} {key!r}: `dbt ls {label}` failed\n" + result.describe_failure())
                continue
            if bad:
                failures.append(f"{kind} {key!r}: unreadable `dbt ls` result lines: {bad}")
            if kind == "nodes":
                tests = [n for n in nodes if n.get("resource_type") == "test"]
                listed_tests = len(tests)
                failures.extend(compare_tests(expect, tests))
                failures.extend(compare_descriptions(expect, [n for n in nodes if n.get("resource_type") == "model"]))
                continue
            if kind == "selector":
                if not nodes:
                    failures.append(f"selector {key!r}: `dbt ls --selector {key}` lists no nodes")
                elif args.verbose:
                    counts: Dict[str, int] = {}
                    for n in nodes:
                        rtype = str(n.get("resource_type"))
                        counts[rtype] = counts.get(rtype, 0) + 1
                    print(f"dbt_check: selector {key!r} lists {counts}", file=sys.stderr)
                continue
            expected = set(tags[key])
            names = [n.get("name") for n in nodes]
            actual = {n for n in names if isinstance(n, str)}
            if len(actual) != len(names):
                failures.append(f"tag {key!r}: dbt listed a model more than once or without a name: {names}")
            if actual != expected:
                lines = [f"tag {key!r}: dbt selects {len(actual)} model(s), expected {len(expected)}"]
                missing = sorted(expected - actual)
                extra = sorted(actual - expected)
                if missing:
                    lines.append("  - expected but not selected by dbt:")
                    lines.extend(f"      {describe_model(m, models)}" for m in missing)
                if extra:
                    lines.append("  + selected by dbt but not expected:")
                    lines.extend(f"      {describe_model(m, models)}" for m in extra)
                failures.append("\n".join(lines))
    finally:
        if args.keep_temp:
            print(f"dbt_check: kept dbt target/log dir {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)

    for note in notes:
        print(f"dbt_check: note: {note}", file=sys.stderr)
    if failures:
        print(f"dbt_check: FAILED ({len(failures)} problem(s)):", file=sys.stderr)
        for f in failures:
            print(f, file=sys.stderr)
        return EXIT_MISMATCH
    print(f"dbt_check: dbt-core {dbt_info['version']}: {len(tags)} tags, {len(selectors)} selectors, "
          f"{len(expect.tests)} column tests and {len(expect.descriptions)} descriptions match "
          f"(dbt lists {listed_tests} tests)")
    return EXIT_OK


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        description="Compare a dbt project's tags and selectors with fhirflow's dbt expectations JSON."
    )
    parser.add_argument("project_dir", metavar="DBT_PROJECT_DIR",
                        help="dbt project dir (also used as --profiles-dir)")
    parser.add_argument("expect_json", metavar="EXPECT_JSON", help="expectations JSON file")
    parser.add_argument("--dbt", metavar="PATH_TO_DBT_EXE",
                        help="dbt executable (default: the dbt next to this python, else dbt on PATH)")
    parser.add_argument("--strict", action="store_true",
                        help="fail if `dbt parse` logs any warning (deprecations included)")
    parser.add_argument("--jsonschema", action="store_true",
                        help="also parse with dbt's YAML JSON-schema validation switched on (dbt only "
                             "runs it for snowflake/bigquery/redshift/databricks), reporting e.g. "
                             "PropertyMovedToConfigDeprecation; needs dbt importable by the python "
                             "that runs the dbt executable")
    parser.add_argument("--timeout", type=float, default=600.0,
                        help="seconds allowed per dbt invocation (default 600)")
    parser.add_argument("--jobs", type=int, default=min(4, os.cpu_count() or 1),
                        help="dbt ls invocations to run at once (default: min(4, CPUs))")
    parser.add_argument("--keep-temp", action="store_true",
                        help="keep the temporary dbt target/log dir and print its path")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="print timings and per-selector node counts to stderr")
    args = parser.parse_args(argv)
    try:
        return check(args)
    except UsageError as exc:
        print(f"dbt_check: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
