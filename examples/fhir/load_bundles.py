#!/usr/bin/env python3
"""Load FHIR bundle files into a DuckDB file's raw.fhir_bundles, as `fhirflow run` does.

    load_bundles.py BUNDLE_DIR DUCKDB_FILE

The dev/test stand-in for fhirflow's executor, with the same SQL:

  * raw.fhir_bundles(file_key VARCHAR NOT NULL, loaded_at TIMESTAMPTZ, bundle JSON), created if
    missing, one row per file;
  * file_key is the file's path relative to BUNDLE_DIR ('/'-separated, the name's bytes as on
    disk: non-ASCII names are kept as they are);
  * every *.json file under BUNDLE_DIR (recursively) that is not loaded yet is inserted with one
    INSERT ... SELECT from read_json_objects(format='unstructured'); files already loaded are
    skipped, so running it twice loads nothing the second time;
  * maximum_object_size is 512 MiB: DuckDB's default (16 MiB) is smaller than some real Synthea
    patient bundles.

Paths are passed as prepared-statement parameters, never spliced into the SQL, so a file name with
a quote (Synthea writes surnames like O'Keefe54) is safe. Needs the `duckdb` Python package of the
same DuckDB version as fhirflow (1.5.x; see tests/conformance/requirements-dbt.txt).
"""

import os
import sys
from pathlib import Path

import duckdb

MAXIMUM_OBJECT_SIZE = 512 * 1024 * 1024

CREATE = [
    "CREATE SCHEMA IF NOT EXISTS raw",
    """CREATE TABLE IF NOT EXISTS raw.fhir_bundles (
        file_key VARCHAR NOT NULL,
        loaded_at TIMESTAMPTZ,
        bundle JSON
    )""",
]

INSERT = f"""
INSERT INTO raw.fhir_bundles
SELECT substr(filename, length($prefix) + 1) AS file_key, now() AS loaded_at, json AS bundle
FROM read_json_objects($files, format = 'unstructured',
                       maximum_object_size = {MAXIMUM_OBJECT_SIZE}, filename = true)
"""


def bundle_files(bundle_dir: Path) -> dict[str, str]:
    """file_key -> absolute path, for every *.json file under bundle_dir."""
    files = {}
    for root, dirs, names in os.walk(bundle_dir):
        dirs.sort()
        for name in sorted(names):
            if name.endswith(".json"):
                path = Path(root, name)
                files[path.relative_to(bundle_dir).as_posix()] = str(path)
    return files


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    bundle_dir = Path(argv[1]).resolve()
    if not bundle_dir.is_dir():
        print(f"load_bundles: {argv[1]} is not a directory", file=sys.stderr)
        return 2
    files = bundle_files(bundle_dir)
    con = duckdb.connect(argv[2])
    try:
        for sql in CREATE:
            con.execute(sql)
        loaded = {row[0] for row in con.execute("SELECT file_key FROM raw.fhir_bundles").fetchall()}
        new = [path for key, path in files.items() if key not in loaded]
        if new:
            prefix = str(bundle_dir) + os.sep
            con.execute(INSERT, {"prefix": prefix, "files": new})
        print(f"load_bundles: {len(new)} new file(s) loaded, {len(files) - len(new)} already loaded",
              file=sys.stderr)
    finally:
        con.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
