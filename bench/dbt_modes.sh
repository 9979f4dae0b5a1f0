#!/usr/bin/env bash
# dbt under `fhirflow run` by dbt_mode, side by side in one run, on two projects:
#
#   the FHIR example (examples/fhir: the bundles loaded into the embedded DuckDB, then dbt):
#     single             one task: `dbt build` of everything
#     layered            one `dbt build` per layer (path:models/staging, …/intermediate, …/marts)
#     per_model          one task per dbt node (tests after each model), one dbt process per task
#     per_model watcher  the same tasks and states, from one watched `dbt build` (`watcher: true`)
#   a generated project of MODELS models (bench/cosmos/gen_project.py --buildable, default 500):
#     dbt build          plain dbt, no fhirflow: the floor
#     single, per_model watcher, and per_model node by node (only with NODE_BY_NODE=1: one dbt
#     process per node is about half an hour at 500 models)
#
# Each run starts from a fresh DuckDB file; the FHIR marts are checked with check_marts.py after
# each run (not timed). Prints a Markdown table.
#   bench/dbt_modes.sh [BUNDLE_DIR]   (RUNS=1, MODELS=500, FHIR_MODES="single layered per_model watcher")
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${RUNS:-1}
models=${MODELS:-500}
fhir_modes=${FHIR_MODES:-single layered per_model watcher}
source bench/fhir_setup.sh
fhir_setup "${1:-}"

now() { date +%s%N; }
# Runs "$@" RUNS times after `reset`, and prints the best wall time in seconds.
best_of() {
    local reset=$1 best= start ns
    shift
    for ((r = 0; r < runs; r++)); do
        $reset
        start=$(now)
        "$@" >"$dir/last.log" 2>"$dir/last.err" || {
            cat "$dir/last.log" "$dir/last.err" >&2
            exit 1
        }
        ns=$(($(now) - start))
        [[ -z $best || $ns -lt $best ]] && best=$ns
    done
    awk -v ns="$best" 'BEGIN { printf "%.1f s", ns / 1e9 }'
}
tasks_of() { "$dbt_venv/bin/python" -c 'import json, sys; print(len(json.load(open(sys.argv[1]))["tasks"]))' "$1"; }
label() { [[ $1 == watcher ]] && echo "per_model watcher" || echo "$1"; }

# --- The FHIR example: one copy per mode, the build stage's keys edited.
layers='        layers:\n          - {name: staging, select: [path:models/staging]}\n          - {name: intermediate, select: [path:models/intermediate]}\n          - {name: marts, select: [path:models/marts]}'
fhir_variant() {
    local name=$1 keys
    cp -R examples/fhir "$dir/$name"
    rm -rf "$dir/$name/.fhirflow" "$dir/$name/warehouse.duckdb"
    case $name in
    layered) keys="        dbt_mode: layered\n$layers" ;;
    per_model) keys="        dbt_mode: per_model\n        tests: after_each" ;;
    watcher) keys="        dbt_mode: per_model\n        tests: after_each\n        watcher: true" ;;
    *) return ;;
    esac
    if [[ $name == layered ]]; then
        sed -i "s|^        command: build$|        command: build\n$keys|" "$dir/$name/fhir.yaml"
    else
        # per_model reads dbt's graph from a `dbt parse` at compile time.
        sed -i "s|^  project_dir: dbt$|  project_dir: dbt\n  parse_manifest: true|; /^        parse_results: true$/d; s|^        command: build$|        command: build\n$keys|" \
            "$dir/$name/fhir.yaml"
    fi
}
fhir_reset() { rm -rf "$dir/$mode/.fhirflow" "$dir/$mode/dbt/target" "$dir/warehouse.duckdb" "$dir/warehouse.duckdb.wal"; }
fhir_run() {
    FHIRFLOW_BUNDLE_DIR="$dir/bundles" FHIRFLOW_DUCKDB_PATH="$dir/warehouse.duckdb" PATH="$dbt_venv/bin:$PATH" \
        "$bin" run "$dir/$mode/fhir.yaml" --quiet --format json
}

echo "| project | mode | tasks | fhirflow run, best of $runs |"
echo "|---|---|---:|---:|"
for mode in $fhir_modes; do
    fhir_variant "$mode"
    time=$(best_of fhir_reset fhir_run)
    cp "$dir/last.log" "$dir/$mode.json"
    "$dbt_venv/bin/python" examples/fhir/check_marts.py "$dir/bundles" "$dir/warehouse.duckdb" >/dev/null
    echo "| FHIR example, load + build | $(label "$mode") | $(tasks_of "$dir/$mode.json") | $time |"
done

# --- The generated project: one copy per mode, each with its own DuckDB file.
"$dbt_venv/bin/python" bench/cosmos/gen_project.py --buildable "$models" "$dir/gen" 2>/dev/null
(cd "$dir/gen/project" && DBT_SEND_ANONYMOUS_USAGE_STATS=false "$dbt_venv/bin/dbt" -q parse --project-dir . --profiles-dir .)
gen_modes=(dbt single watcher)
[[ ${NODE_BY_NODE:-0} == 1 ]] && gen_modes+=(per_model)
for mode in "${gen_modes[@]}"; do
    cp -R "$dir/gen" "$dir/gen_$mode"
    spec="$dir/gen_$mode/spec.yaml"
    case $mode in
    single) sed -i '/^        dbt_mode: per_model$/d; /^        tests: after_each$/d' "$spec" ;;
    watcher) sed -i 's|^        tests: after_each$|        tests: after_each\n        watcher: true|' "$spec" ;;
    esac
done
gen_reset() { rm -rf "$dir/gen_$mode/.fhirflow" "$dir/gen_$mode/project/bench.duckdb"*; }
gen_dbt() (cd "$dir/gen_$mode/project" && DBT_SEND_ANONYMOUS_USAGE_STATS=false "$dbt_venv/bin/dbt" -q build --project-dir . --profiles-dir .)
gen_run() { DBT_SEND_ANONYMOUS_USAGE_STATS=false PATH="$dbt_venv/bin:$PATH" "$bin" run "$dir/gen_$mode/spec.yaml" --quiet --format json; }
nodes=$("$dbt_venv/bin/python" -c 'import json, sys; m = json.load(open(sys.argv[1])); print(sum(n["resource_type"] in ("model", "test") for n in m["nodes"].values()))' "$dir/gen/project/target/manifest.json")
for mode in "${gen_modes[@]}"; do
    if [[ $mode == dbt ]]; then
        time=$(best_of gen_reset gen_dbt)
        echo "| $models models ($nodes models and tests) | plain \`dbt build\` | — | $time |"
    else
        time=$(best_of gen_reset gen_run)
        cp "$dir/last.log" "$dir/gen_$mode.json"
        echo "| $models models ($nodes models and tests) | $(label "$mode") | $(tasks_of "$dir/gen_$mode.json") | $time |"
    fi
done
echo
echo "($count bundle files from $bundles; dbt $("$dbt_venv/bin/dbt" --version 2>/dev/null | sed -n 's/.*installed: *//p' | head -n 1), one dbt thread)"
