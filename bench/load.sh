#!/usr/bin/env bash
# Measures the embedded default's load throughput: `fhirflow run --only load` of a spec that
# loads a local folder of N FHIR bundles into a fresh DuckDB file in batches of BATCH (the most
# a copy_into stage allows is 1000), run until everything is loaded. The bundles are copies of
# the Synthea sample (../shared/data/synthea-sample, 12 patients, 9.6 MB) or, without it, of
# examples/fhir/bundles, each under its own name. Reports bundles/s and MB/s of wall time,
# everything included (compiling the spec, the run store, listing, read_json_objects, commit).
#   bench/load.sh [N]        (defaults: N=1200, BATCH=1000, RUNS=3)
# Needs the duckdb feature: DUCKDB_LIB_DIR is found with scripts/ensure_libduckdb.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${FHIRFLOW_CACHE:-$HOME/.cache/fhirflow}/target}"
export DUCKDB_LIB_DIR=${DUCKDB_LIB_DIR:-$(bash scripts/ensure_libduckdb.sh | tail -n 1)}
n=${1:-1200}
batch=${BATCH:-1000}
runs=${RUNS:-3}
profile=${PROFILE:-release}
if [[ $profile == release ]]; then
    cargo build --release --locked -q --features duckdb
else
    cargo build --locked -q --features duckdb
fi
bin="$CARGO_TARGET_DIR/$profile/fhirflow"
sample=../shared/data/synthea-sample
[[ -d $sample ]] || sample=examples/fhir/bundles
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

mkdir -p "$dir/files"
mapfile -t originals < <(find "$sample" -maxdepth 1 -name '*.json' | sort)
for ((i = 0; i < n; i++)); do
    cp "${originals[i % ${#originals[@]}]}" "$dir/files/$i.json"
done
bytes=$(du -sb "$dir/files" | cut -f1)
cat >"$dir/load.yaml" <<YAML
version: 1
connections:
  files: {type: local, path: files}
  db: {type: duckdb, path: warehouse.duckdb}
pipelines:
  p:
    max_active_runs: 1
    stages:
      load:
        kind: copy_into
        retries: 1
        source: {connection: files}
        target: {connection: db, table: raw.fhir_bundles}
        watermark_table: raw.load_watermark
        batch_size: $batch
YAML

now() { date +%s%N; }
best=
for ((r = 0; r < runs; r++)); do
    rm -rf "$dir/warehouse.duckdb" "$dir/warehouse.duckdb.wal" "$dir/.fhirflow"
    start=$(now)
    runs_needed=$(((n + batch - 1) / batch))
    for ((k = 0; k < runs_needed; k++)); do
        "$bin" run "$dir/load.yaml" --only load --quiet >/dev/null
    done
    ns=$(($(now) - start))
    [[ -z $best || $ns -lt $best ]] && best=$ns
done
awk -v n="$n" -v ns="$best" -v bytes="$bytes" -v profile="$profile" -v batch="$batch" 'BEGIN {
    s = ns / 1e9
    printf "%d bundles (%.1f MB) in batches of %d, %s build: best of runs %.2f s = %.0f bundles/s, %.1f MB/s\n",
        n, bytes / 1e6, batch, profile, s, n / s, bytes / 1e6 / s
}'
