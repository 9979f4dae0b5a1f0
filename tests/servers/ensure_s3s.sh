#!/usr/bin/env bash
# ensure_s3s.sh
#
# Print (last line of stdout) the path of an s3s-fs 0.14.1 binary (a local S3 server that
# checks SigV4 signatures; see tests/servers/README.md), building it with `cargo install`
# when missing:
#   ${FHIRFLOW_CACHE:-$HOME/.cache/fhirflow}/s3s-fs-0.14.1/bin/s3s-fs
#
# 0.14.1 is the newest release that builds on rustc 1.95 (0.17 needs a newer one). It is
# installed with --locked, i.e. with the Cargo.lock published inside the crate, so a later
# release of one of its dependencies cannot change or break the build.
#
# Safe to rerun and to run concurrently (same scheme as tests/conformance/ensure_venv.sh):
# the binary is installed into a sibling temp root and that root is renamed into place only
# once the install succeeded, so the final path either does not exist or is complete. A
# killed build leaves only a temp dir, removed by the next run once its owner PID is gone.
# Progress goes to stderr; stdout carries nothing but the path.
set -euo pipefail

if [[ $# -ne 0 ]]; then
    echo "usage: $0" >&2
    exit 2
fi
version=0.14.1
cache=${FHIRFLOW_CACHE:-$HOME/.cache/fhirflow}
dest=$cache/s3s-fs-$version
bin=$dest/bin/s3s-fs

if [[ -x $bin ]]; then
    echo "ensure_s3s: reusing $bin" >&2
    echo "$bin"
    exit 0
fi

command -v cargo >/dev/null 2>&1 || { echo "ensure_s3s: cargo not found" >&2; exit 1; }
mkdir -p "$cache"

# Remove temp dirs left by killed builds (their owner PID is the suffix).
for stale in "$dest".tmp.*; do
    [[ -d $stale ]] || continue
    kill -0 "${stale##*.}" 2>/dev/null || { echo "ensure_s3s: removing stale $stale" >&2; rm -rf "$stale"; }
done

tmp=$dest.tmp.$$
trap 'rm -rf "$tmp"' EXIT
echo "ensure_s3s: building s3s-fs $version into $dest" >&2
start=$SECONDS
# --target-dir inside the temp root: the build cache goes away with it, and a concurrent
# build never shares (or locks) a target dir with this one. Keep jobs modest by default.
cargo install s3s-fs --version "=$version" --features binary --locked \
    --root "$tmp" --target-dir "$tmp/target" -j "${CARGO_BUILD_JOBS:-2}" >&2
rm -rf "$tmp/target"
"$tmp/bin/s3s-fs" --version >&2

# rename(2) is atomic; it fails if another run already put a binary in place.
if mv -T "$tmp" "$dest" 2>/dev/null; then
    echo "ensure_s3s: ready after $((SECONDS - start))s: $bin" >&2
else
    [[ -x $bin ]] || { echo "ensure_s3s: could not move $tmp to $dest" >&2; exit 1; }
    echo "ensure_s3s: another run finished first, using $bin" >&2
fi
echo "$bin"
