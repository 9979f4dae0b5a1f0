#!/usr/bin/env bash
# Measures `fhirflow run`'s cost per task: N no-op shell tasks (`:`) in a layered graph
# (layers of WIDTH tasks, each waiting for two tasks of the layer before), run with
# --max-parallel PARALLEL. The wall time per task bounds the executor's overhead from above:
# it includes compiling, the run store's transactions, the log files and starting bash.
# For scale, it also times compiling and planning alone (a --dry-run) and starting N
# `bash -c :` with xargs, PARALLEL at a time.
#   bench/executor.sh [N]          (defaults: N=1000, WIDTH=50, PARALLEL=nproc, RUNS=3)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${FHIRFLOW_CACHE:-$HOME/.cache/fhirflow}/target}"
n=${1:-1000}
width=${WIDTH:-50}
parallel=${PARALLEL:-$(nproc)}
runs=${RUNS:-3}
cargo build --release --locked -q
bin="$CARGO_TARGET_DIR/release/fhirflow"
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

{
    echo "version: 1"
    echo "pipelines:"
    echo "  layered:"
    echo "    stages:"
    for ((i = 0; i < n; i++)); do
        layer=$((i / width)) slot=$((i % width))
        if ((layer == 0)); then
            echo "      t$i: {kind: shell, command: ':'}"
        else
            a=$(((layer - 1) * width + slot)) b=$(((layer - 1) * width + (slot + 1) % width))
            echo "      t$i: {kind: shell, command: ':', after: [t$a, t$b]}"
        fi
    done
} >"$dir/p.yaml"

now() { date +%s%N; }
best() { sort -n | head -n 1; }

plan_ns=$(for ((r = 0; r < runs; r++)); do
    start=$(now)
    "$bin" run "$dir/p.yaml" --dry-run >/dev/null
    echo $(($(now) - start))
done | best)
run_ns=$(for ((r = 0; r < runs; r++)); do
    start=$(now)
    "$bin" run "$dir/p.yaml" --quiet --max-parallel "$parallel" >"$dir/out.txt" || {
        cat "$dir/out.txt" >&2
        exit 1
    }
    echo $(($(now) - start))
done | best)
spawn_ns=$(for ((r = 0; r < runs; r++)); do
    start=$(now)
    seq "$n" | xargs -P "$parallel" -n 1 bash -c ':' >/dev/null
    echo $(($(now) - start))
done | best)

ms() { awk -v ns="$1" 'BEGIN { printf "%.0f ms", ns / 1e6 }'; }
per() { awk -v ns="$1" -v n="$n" 'BEGIN { printf "%.2f ms", ns / n / 1e6 }'; }
echo "tasks: $n in layers of $width, --max-parallel $parallel, best of $runs"
echo "| measure | total | per task |"
echo "|---|---:|---:|"
echo "| fhirflow run, everything included (wall) | $(ms "$run_ns") | $(per "$run_ns") |"
echo "| compile and plan alone (--dry-run) | $(ms "$plan_ns") | $(per "$plan_ns") |"
echo "| for scale: xargs starting \`bash -c :\` | $(ms "$spawn_ns") | $(per "$spawn_ns") |"
