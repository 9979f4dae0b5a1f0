#!/usr/bin/env bash
# DagBag parse time of fhirflow's per-model dbt DAG against a hand-written static DAG of the same
# tasks and against Astronomer Cosmos (LoadMode.DBT_MANIFEST), for dbt projects of N models.
#
#   bash bench/cosmos/run.sh [N ...]        # default: 10 100 1000
#
# Environment: RUNS (samples per file and mode, default 7; use at least 5 for a reported figure),
# ISOLATION (fork, the default, or exec: see measure.py), FHIRFLOW_BIN (a built fhirflow; by
# default this builds the release binary), CARGO_TARGET_DIR, FHIRFLOW_CACHE (the venv cache).
#
# For each N, in bench/cosmos/work/nN/: gen_project.py writes a layered dbt project and the
# fhirflow spec, real `dbt parse` writes target/manifest.json, `fhirflow apply` writes
# dags/bench_dbt.py, gen_dags.py writes the static and the Cosmos file, check_same.py checks
# that fhirflow's and the static file are the same graph. Then measure.py times all three,
# interleaved, and writes bench/cosmos/work/results/{results.json,results_table.md,measure.log}.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
work=$here/work
sizes=("$@")
[[ ${#sizes[@]} -gt 0 ]] || sizes=(10 100 1000)
runs=${RUNS:-7}
for n in "${sizes[@]}"; do
    [[ $n =~ ^[0-9]+$ && $n -ge 3 ]] || { echo "run.sh: N must be a whole number >= 3, got '$n'" >&2; exit 2; }
done

say() { echo "run.sh: $*" >&2; }
start=$SECONDS

# Python: Airflow 3.3.2 + Cosmos for the DAGs, and the conformance tests' dbt venv for `dbt parse`
# (Cosmos needs no dbt to render from a manifest).
py=$(bash "$repo/tests/conformance/ensure_venv.sh" cosmos "$here/requirements.lock" | tail -n1)/bin/python
dbt=$(bash "$repo/tests/conformance/ensure_venv.sh" dbt "$repo/tests/conformance/requirements-dbt.lock" | tail -n1)/bin/dbt

if [[ -z ${FHIRFLOW_BIN:-} ]]; then
    export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/fhirflow/target}
    say "building fhirflow (release) in $CARGO_TARGET_DIR"
    (cd "$repo" && cargo build --release --locked --quiet)
    FHIRFLOW_BIN=$CARGO_TARGET_DIR/release/fhirflow
fi

export DBT_SEND_ANONYMOUS_USAGE_STATS=false DO_NOT_TRACK=1
dirs=()
for n in "${sizes[@]}"; do
    dir=$work/n$n
    say "N=$n: generating the dbt project in $dir"
    rm -rf "$dir"
    "$py" -P "$here/gen_project.py" "$n" "$dir"
    echo "{\"models\": $n}" > "$dir/bench.json"

    say "N=$n: dbt parse"
    (cd "$dir/project" && "$dbt" --quiet parse --project-dir . --profiles-dir .) >&2

    say "N=$n: fhirflow apply"
    if ! "$FHIRFLOW_BIN" validate "$dir/spec.yaml" >"$dir/validate.log" 2>&1; then
        cat "$dir/validate.log" >&2
        say "fhirflow ($FHIRFLOW_BIN) rejects the benchmark spec $dir/spec.yaml (above)."
        say "The benchmark needs \`dbt_mode: per_model\` and \`tests: after_each\` on dbt stages and \`dbt.manifest\`."
        exit 1
    fi
    "$FHIRFLOW_BIN" apply "$dir/spec.yaml" >"$dir/apply.log" 2>&1 || { cat "$dir/apply.log" >&2; exit 1; }
    [[ -f $dir/dags/bench_dbt.py ]] || { say "fhirflow apply wrote no $dir/dags/bench_dbt.py"; exit 1; }

    "$py" -P "$here/gen_dags.py" static "$dir"
    "$py" -P "$here/gen_dags.py" cosmos "$dir"
    "$py" -P "$here/check_same.py" "$dir"
    dirs+=("$dir")
done

# Recorded in results.json next to the Python packages' versions.
dirty=$(cd "$repo" && git status --porcelain --untracked-files=no 2>/dev/null | grep -q . && echo ", uncommitted changes" || true)
export BENCH_FHIRFLOW="$("$FHIRFLOW_BIN" --version) (commit $(cd "$repo" && git rev-parse --short HEAD 2>/dev/null || echo unknown)$dirty)"
export BENCH_DBT=$("$(dirname "$dbt")/python" -c 'from importlib.metadata import version as v; print("dbt-core", v("dbt-core") + ", dbt-duckdb", v("dbt-duckdb"), "(dbt parse)")')
say "measuring: ${#dirs[@]} size(s) x 3 files x 2 modes x $runs runs, interleaved"
"$py" -P "$here/measure.py" --runs "$runs" --isolation "${ISOLATION:-fork}" --out "$work/results" "${dirs[@]}"
say "done in $((SECONDS - start)) s; raw samples in $work/results/results.json"
