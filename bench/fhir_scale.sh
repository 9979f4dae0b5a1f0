#!/usr/bin/env bash
# The FHIR example at scale: N distinct bundles (bench/synthea_scale.py, from the Synthea sample)
# through `fhirflow run examples/fhir/fhir.yaml` (load, then dbt build with its tests) into a
# fresh DuckDB file, then INCR more bundles on top (an incremental run). Each run is timed with
# /usr/bin/time -v: wall time, peak RSS of the process tree's largest process (dbt's or
# fhirflow's), bundles/s. Then check_marts.py checks the marts (not timed).
#   bench/fhir_scale.sh [N] [INCR]     (defaults: N=100, INCR=100; FHIRFLOW_BIN, WORK_DIR optional)
# The runs are capped (ulimit -v, VMEM_KB, default 8,000,000 KB) so a runaway build fails
# instead of taking the machine; FHIRFLOW_DUCKDB_MEMORY_LIMIT and DBT_THREADS pass through.
# A copy_into run loads at most its batch_size (1000) files, so N above 1000 takes several runs.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-100}
incr=${2:-100}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${FHIRFLOW_CACHE:-$HOME/.cache/fhirflow}/target}"
export DUCKDB_LIB_DIR=${DUCKDB_LIB_DIR:-$(bash scripts/ensure_libduckdb.sh | tail -n 1)}
# FHIRFLOW_BIN: a fhirflow built with the duckdb feature, else built here (PROFILE=debug|release).
bin=${FHIRFLOW_BIN:-}
if [[ -z $bin ]]; then
    profile=${PROFILE:-debug}
    if [[ $profile == release ]]; then cargo build --release --locked -q --features duckdb; else cargo build --locked -q --features duckdb; fi
    bin="$CARGO_TARGET_DIR/$profile/fhirflow"
fi
dbt_venv=${FHIRFLOW_DBT_VENV:-$(bash tests/conformance/ensure_venv.sh dbt tests/conformance/requirements-dbt.lock | tail -n 1)}
dir=${WORK_DIR:-$(mktemp -d)}
[[ -n ${WORK_DIR:-} ]] || trap 'rm -rf "$dir"' EXIT
mkdir -p "$dir"
export FHIRFLOW_BUNDLE_DIR="$dir/bundles" FHIRFLOW_DUCKDB_PATH="$dir/warehouse.duckdb"
export DBT_SEND_ANONYMOUS_USAGE_STATS=false PATH="$dbt_venv/bin:$PATH"
rm -rf "$dir/bundles" "$dir"/warehouse.duckdb* examples/fhir/.fhirflow

# One `fhirflow run` per 1000 new files; prints "wall_s peak_rss_kb".
run() {
    local new=$1 wall=0 peak=0 k
    for ((k = 0; k < (new + 999) / 1000; k++)); do
        (ulimit -v "${VMEM_KB:-8000000}"; /usr/bin/time -v "$bin" run examples/fhir/fhir.yaml --quiet) \
            >"$dir/run.log" 2>"$dir/time.log" || { cat "$dir/run.log" "$dir/time.log" >&2; exit 1; }
        wall=$(awk -v w="$wall" -F': ' '/Elapsed/ { n = split($2, p, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + p[i]; print w + s }' "$dir/time.log")
        peak=$(awk -v p="$peak" -F': ' '/Maximum resident/ { print ($2 > p ? $2 : p) }' "$dir/time.log")
    done
    echo "$wall $peak"
}

report() {
    local what=$1 count=$2 wall=$3 peak=$4
    awk -v w="$what" -v c="$count" -v s="$wall" -v p="$peak" -v mb="$(du -sm "$dir/bundles" | cut -f1)" \
        'BEGIN { printf "%-28s %6d bundles  %8.1f s  peak RSS %6.0f MB  %6.1f bundles/s  (%d MB of bundles in all)\n", w, c, s, p / 1024, c / s, mb }'
}

python3 bench/synthea_scale.py "$n" "$dir/bundles"
read -r wall peak < <(run "$n")
report "full load + build" "$n" "$wall" "$peak"
python3 bench/synthea_scale.py "$((n + incr))" "$dir/bundles"
read -r wall peak < <(run "$incr")
report "incremental load + build" "$incr" "$wall" "$peak"
"$dbt_venv/bin/python" examples/fhir/check_marts.py "$dir/bundles" "$dir/warehouse.duckdb" | tail -n 1
echo "DuckDB file: $(du -m "$dir/warehouse.duckdb" | cut -f1) MB"
