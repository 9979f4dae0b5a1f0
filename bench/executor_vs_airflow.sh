#!/usr/bin/env bash
# The same graph run two ways: `fhirflow run` and `airflow dags test` on the DAG fhirflow
# emits for it. N no-op shell tasks (`:`) in layers of WIDTH, each waiting for two tasks of
# the layer before, one pipeline. Airflow's figure is the `dags test` alone (its metadata DB
# is migrated first and not counted); fhirflow's includes compiling the spec.
#   bench/executor_vs_airflow.sh [N...]     (defaults: N = 3 50, WIDTH=10, RUNS=3)
# Needs the Airflow 3.3 venv of the conformance tests (built here when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${FHIRFLOW_CACHE:-$HOME/.cache/fhirflow}/target}"
width=${WIDTH:-10}
runs=${RUNS:-3}
sizes=("$@")
((${#sizes[@]})) || sizes=(3 50)
cargo build --release --locked -q
bin="$CARGO_TARGET_DIR/release/fhirflow"
venv=${FHIRFLOW_AIRFLOW_VENV:-$(bash tests/conformance/ensure_venv.sh airflow tests/conformance/requirements-airflow.lock | tail -n 1)}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

now() { date +%s%N; }
best() { sort -n | head -n 1; }
secs() { awk -v ns="$1" 'BEGIN { printf "%.2f s", ns / 1e9 }'; }

echo "| tasks | fhirflow run | airflow dags test | ratio |"
echo "|---:|---:|---:|---:|"
for n in "${sizes[@]}"; do
    spec="$dir/n$n/bench.yaml"
    mkdir -p "$(dirname "$spec")"
    {
        echo "version: 1"
        echo "defaults: {start_date: '2026-01-01'}"
        echo "pipelines:"
        echo "  layered:"
        echo "    schedule: '0 3 * * *'"
        echo "    stages:"
        for ((i = 0; i < n; i++)); do
            layer=$((i / width)) slot=$((i % width)) w=$((n < width ? n : width))
            if ((layer == 0)); then
                echo "      t$i: {kind: shell, command: ':'}"
            else
                a=$(((layer - 1) * width + slot)) b=$(((layer - 1) * width + (slot + 1) % w))
                echo "      t$i: {kind: shell, command: ':', after: [t$a, t$b]}"
            fi
        done
    } >"$spec"
    "$bin" apply "$spec" >/dev/null
    fhirflow_ns=$(for ((r = 0; r < runs; r++)); do
        rm -rf "$dir/n$n/.fhirflow"
        start=$(now)
        "$bin" run "$spec" --quiet >/dev/null
        echo $(($(now) - start))
    done | best)
    # airflow_dags_test.sh prints "db migrate Xs, dags test Ys" on its last stderr line.
    airflow_s=$(for ((r = 0; r < runs; r++)); do
        bash tests/conformance/airflow_dags_test.sh "$venv" "$dir/n$n/dags" layered '' 2>&1 >/dev/null |
            sed -n 's/.*dags test \([0-9.]*\)s.*/\1/p' | tail -n 1
    done | sort -n | head -n 1)
    airflow_ns=$(awk -v s="$airflow_s" 'BEGIN { printf "%.0f", s * 1e9 }')
    ratio=$(awk -v a="$airflow_ns" -v f="$fhirflow_ns" 'BEGIN { printf "%.0f×", a / f }')
    echo "| $n | $(secs "$fhirflow_ns") | $(secs "$airflow_ns") | $ratio |"
done
