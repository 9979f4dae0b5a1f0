#!/usr/bin/env python3
"""Trims fuzz/corpus/front_end to at most N files that keep the most edge coverage.

`cargo fuzz cmin` keeps every file that adds any feature, hit-count buckets included: after
a 30-minute run that is thousands of files. With `-use_counters=0` it is still about a thousand,
because libFuzzer's merge adds files smallest first. This script runs the same merge once to
learn which edges each file reaches, then picks files greedily by how many new edges each adds,
always keeping the hand-written seeds (`seed_*`, `broken_*`), and deletes the rest.

    python3 fuzz/trim_corpus.py --binary $CARGO_TARGET_DIR/x86_64-unknown-linux-gnu/release/front_end \
        --keep 400

Build the binary first (`cargo fuzz build --fuzz-dir fuzz -s none front_end`). Python 3 stdlib only.
"""

import argparse
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
SEED_PREFIXES = ("seed_", "broken_")


def features(binary, corpus):
    """{file path: set of edge features}, from a libFuzzer merge control file."""
    with tempfile.TemporaryDirectory() as tmp:
        control = os.path.join(tmp, "control")
        out = os.path.join(tmp, "out")
        os.mkdir(out)
        subprocess.run(
            [binary, "-merge=1", "-use_counters=0", "-rss_limit_mb=2048", "-timeout=10",
             "-max_len=65536", f"-merge_control_file={control}", out, corpus],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp,
        )
        with open(control) as f:
            lines = f.read().split("\n")
    count = int(lines[0])
    files = lines[2:2 + count]
    result = {path: set() for path in files}
    for line in lines[2 + count:]:
        parts = line.split()
        if parts and parts[0] == "FT":
            result[files[int(parts[1])]] = set(map(int, parts[2:]))
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binary", required=True, help="the built front_end fuzz target")
    parser.add_argument("--corpus", default=os.path.join(HERE, "corpus", "front_end"))
    parser.add_argument("--keep", type=int, default=400, help="most files to keep")
    args = parser.parse_args()

    ft = features(os.path.abspath(args.binary), os.path.abspath(args.corpus))
    every = set().union(*ft.values())
    size = os.path.getsize
    chosen = [p for p in ft if os.path.basename(p).startswith(SEED_PREFIXES)]
    covered = set().union(*(ft[p] for p in chosen)) if chosen else set()
    left = {p: f for p, f in ft.items() if p not in chosen}
    while left and len(chosen) < args.keep:
        best = max(left, key=lambda p: (len(left[p] - covered), -size(p)))
        if not left[best] - covered:
            break
        covered |= left.pop(best)
        chosen.append(best)
    keep = set(chosen)
    for path in ft:
        if path not in keep:
            os.remove(path)
    print(
        f"kept {len(keep)} of {len(ft)} files, {sum(size(p) for p in keep)} bytes, "
        f"{len(covered)} of {len(every)} edges ({100 * len(covered) / max(len(every), 1):.1f}%)",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
