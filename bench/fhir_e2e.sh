#!/usr/bin/env bash
# End-to-end latency of the FHIR example: bundle files in, tested marts out. Runs
# `fhirflow run examples/fhir/fhir.yaml` (embedded DuckDB load, then dbt build of the
# staging, intermediate and marts models with their tests) on a fresh DuckDB file, then
# checks the marts against the bundles with check_marts.py (not timed).
#   bench/fhir_e2e.sh [BUNDLE_DIR]   (default: ../shared/data/synthea-sample, else the
#                                      example's own bundles; RUNS=3)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${FHIRFLOW_CACHE:-$HOME/.cache/fhirflow}/target}"
runs=${RUNS:-3}
bundles=${1:-}
if [[ -z $bundles ]]; then
    bundles=../shared/data/synthea-sample
    [[ -d $bundles ]] || bundles=examples/fhir/bundles
fi
DUCKDB_LIB_DIR=$(bash scripts/ensure_libduckdb.sh | tail -n 1)
export DUCKDB_LIB_DIR
cargo build --release --locked -q --features duckdb
bin="$CARGO_TARGET_DIR/release/fhirflow"
dbt_venv=${FHIRFLOW_DBT_VENV:-$(bash tests/conformance/ensure_venv.sh dbt tests/conformance/requirements-dbt.lock | tail -n 1)}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
# A copy, so that nothing is written next to the source bundles.
cp -R "$bundles" "$dir/bundles"
count=$(find "$dir/bundles" -name '*.json' | wc -l)

best=
for ((r = 0; r < runs; r++)); do
    rm -f "$dir/warehouse.duckdb" "$dir/warehouse.duckdb.wal"
    rm -rf examples/fhir/.fhirflow
    start=$(date +%s%N)
    FHIRFLOW_BUNDLE_DIR="$dir/bundles" FHIRFLOW_DUCKDB_PATH="$dir/warehouse.duckdb" PATH="$dbt_venv/bin:$PATH" \
        "$bin" run examples/fhir/fhir.yaml --quiet >"$dir/run.log" 2>&1 || {
        cat "$dir/run.log" >&2
        exit 1
    }
    ns=$(($(date +%s%N) - start))
    [[ -z $best || $ns -lt $best ]] && best=$ns
done
"$dbt_venv/bin/python" examples/fhir/check_marts.py "$dir/bundles" "$dir/warehouse.duckdb" >/dev/null
awk -v ns="$best" -v n="$count" -v b="$bundles" \
    'BEGIN { printf "%d bundle files from %s: bundles in -> marts tested in %.1f s (best of runs)\n", n, b, ns / 1e9 }'
