#!/usr/bin/env bash
# load_and_build.sh BUNDLE_DIR DUCKDB_FILE
#
# The FHIR example end to end without fhirflow's executor: load every *.json bundle under
# BUNDLE_DIR into DUCKDB_FILE's raw.fhir_bundles (load_bundles.py, the executor's SQL), run
# `dbt build` on dbt/ against that file, then check the marts against the files
# (check_marts.py). Rerunning on the same file loads only new bundles and builds incrementally.
#
# Python: $FHIRFLOW_DBT_VENV (a venv from tests/conformance/requirements-dbt.lock, which pins
# the DuckDB that fhirflow embeds), else the one ensure_venv.sh builds or reuses.
# dbt's target/ and logs/ go to a temporary folder unless DBT_TARGET_PATH / DBT_LOG_PATH are set,
# so that several runs can share the project folder.
set -euo pipefail

if [[ $# -ne 2 ]]; then
    echo "usage: $0 BUNDLE_DIR DUCKDB_FILE" >&2
    exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
bundles=$(cd "$1" && pwd)
mkdir -p "$(dirname "$2")"
duckdb_file=$(cd "$(dirname "$2")" && pwd)/$(basename "$2")

venv=${FHIRFLOW_DBT_VENV:-}
if [[ -z $venv ]]; then
    venv=$(bash "$here/../../tests/conformance/ensure_venv.sh" dbt "$here/../../tests/conformance/requirements-dbt.lock" | tail -n 1)
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export FHIRFLOW_DUCKDB_PATH=$duckdb_file
export DBT_TARGET_PATH=${DBT_TARGET_PATH:-$work/target}
export DBT_LOG_PATH=${DBT_LOG_PATH:-$work/logs}
export DBT_SEND_ANONYMOUS_USAGE_STATS=false

start=$SECONDS
echo "== load $bundles -> $duckdb_file" >&2
"$venv/bin/python" "$here/load_bundles.py" "$bundles" "$duckdb_file"

echo "== dbt build" >&2
(cd "$here/dbt" && "$venv/bin/dbt" build --project-dir . --profiles-dir .)

echo "== check marts" >&2
"$venv/bin/python" "$here/check_marts.py" "$bundles" "$duckdb_file"
echo "== done in $((SECONDS - start))s" >&2
