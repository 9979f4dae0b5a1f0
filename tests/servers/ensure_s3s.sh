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
# Concurrency and killed builds: scripts/cached_install.sh. Progress goes to stderr; stdout
# carries nothing but the path.
set -euo pipefail

if [[ $# -ne 0 ]]; then
    echo "usage: $0" >&2
    exit 2
fi
source "$(cd "$(dirname "$0")" && pwd)/../../scripts/cached_install.sh"
version=0.14.1
cache=${FHIRFLOW_CACHE:-$HOME/.cache/fhirflow}
dest=$cache/s3s-fs-$version
bin=$dest/bin/s3s-fs

cached_install_reuse ensure_s3s "$bin" "$bin"

command -v cargo >/dev/null 2>&1 || { echo "ensure_s3s: cargo not found" >&2; exit 1; }
cached_install_begin ensure_s3s "$dest"
echo "ensure_s3s: building s3s-fs $version into $dest" >&2
# --target-dir inside the temp root: the build cache goes away with it, and a concurrent
# build never shares (or locks) a target dir with this one. Keep jobs modest by default.
cargo install s3s-fs --version "=$version" --features binary --locked \
    --root "$tmp" --target-dir "$tmp/target" -j "${CARGO_BUILD_JOBS:-2}" >&2
rm -rf "$tmp/target"
"$tmp/bin/s3s-fs" --version >&2
cached_install_finish ensure_s3s "$dest" "$bin"
echo "$bin"
