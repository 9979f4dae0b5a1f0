#!/usr/bin/env bash
# End-to-end latency of the FHIR example: bundle files in, tested marts out. Runs
# `fhirflow run examples/fhir/fhir.yaml` (embedded DuckDB load, then dbt build of the
# staging, intermediate and marts models with their tests) on a fresh DuckDB file, then
# checks the marts against the bundles with check_marts.py (not timed).
#   bench/fhir_e2e.sh [BUNDLE_DIR]   (default: ../shared/data/synthea-sample, else the
#                                      example's own bundles; RUNS=3)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${RUNS:-3}
source bench/fhir_setup.sh
fhir_setup "${1:-}"

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
