#!/usr/bin/env bash
# Benchmarks the compiler on generated specs of 10 to 10,000 stages (benches/compile.rs) and
# prints Markdown tables of the medians: by size, then the 10,000-stage spec phase by phase beside
# other YAML crates' parsers. Extra arguments go to criterion, e.g. a filter:
#   bench/compile.sh compile/10000
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${FHIRFLOW_CACHE:-$HOME/.cache/fhirflow}/target}"
marker="$(mktemp)"
trap 'rm -f "$marker"' EXIT
cargo bench --bench compile -- "$@" >&2
python3 - "$CARGO_TARGET_DIR/criterion" "$marker" <<'PY'
import json, os, sys
root, marker = sys.argv[1], sys.argv[2]
since = os.path.getmtime(marker)
groups = ["compile", "compile_and_emit"]
rows = {}  # N -> {group: median ns}
for group in groups:
    base = os.path.join(root, group)
    if not os.path.isdir(base):
        continue
    for n in os.listdir(base):
        path = os.path.join(base, n, "new", "estimates.json")
        if not n.isdigit() or not os.path.exists(path) or os.path.getmtime(path) < since:
            continue  # not measured by this run
        with open(path) as f:
            rows.setdefault(int(n), {})[group] = json.load(f)["median"]["point_estimate"]

def time(ns):
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if ns >= scale:
            return f"{ns / scale:.3g} {unit}" if ns < 100 * scale else f"{ns / scale:.0f} {unit}"
    return f"{ns:.3g} ns"

cell = lambda ns, n: ("—", "—") if ns is None else (time(ns), time(ns / n))
print("| stages | compile (median) | per stage | compile + emit (median) | per stage |")
print("|-------:|-----------------:|----------:|------------------------:|----------:|")
for n in sorted(rows):
    c, e = (cell(rows[n].get(g), n) for g in groups)
    print(f"| {n:,} | {c[0]} | {c[1]} | {e[0]} | {e[1]} |")
phases = {}
base = os.path.join(root, "phases")
for name in sorted(os.listdir(base)) if os.path.isdir(base) else []:
    path = os.path.join(base, name, "new", "estimates.json")
    if os.path.exists(path) and os.path.getmtime(path) >= since:
        with open(path) as f:
            phases[name] = json.load(f)["median"]["point_estimate"]
if phases:
    print()
    print("| 10,000 stages, phase | median |")
    print("|:---------------------|-------:|")
    for name, ns in sorted(phases.items(), key=lambda kv: kv[1]):
        print(f"| `{name}` | {time(ns)} |")
if not rows and not phases:
    sys.exit("no criterion results from this run")
PY
