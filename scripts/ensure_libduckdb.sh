#!/usr/bin/env bash
# ensure_libduckdb.sh
#
# Print (last line of stdout) a folder holding libduckdb.so of DuckDB 1.5.6 for linux-x64,
# fetching it when missing:
#   ${FHIRFLOW_CACHE:-$HOME/.cache/fhirflow}/libduckdb-1.5.6/libduckdb.so
#
# fhirflow's embedded DuckDB (cargo feature `duckdb`) links to this shared library instead of
# compiling DuckDB from source (the crate's `bundled` feature, ~45 CPU-minutes). The library
# comes from the npm package @duckdb/node-bindings-linux-x64 (DuckDB's own release build, with
# the json extension built in), fetched with `npm pack` and checked against its registry
# integrity hash. Build with
#   DUCKDB_LIB_DIR=$(bash scripts/ensure_libduckdb.sh | tail -n 1) cargo build --features duckdb
# build.rs then records the folder as the binary's rpath, so no LD_LIBRARY_PATH is needed.
#
# Safe to rerun and to run concurrently: unpacked into a temp dir renamed into place.
set -euo pipefail

duckdb_version=1.5.6
package=@duckdb/node-bindings-linux-x64@$duckdb_version-r.1
integrity=sha512-IXcrZJE6kEqM0Z4wwdVnGBHX/frOS33VPNAwDXQ/Q+Fs84b058Qe94chrCCIcNJlG8Y3UHIUU4eBeCQxW5mN1Q==
cache=${FHIRFLOW_CACHE:-$HOME/.cache/fhirflow}
dest=$cache/libduckdb-$duckdb_version

if [[ -f $dest/libduckdb.so ]]; then
    echo "ensure_libduckdb: reusing $dest" >&2
    echo "$dest"
    exit 0
fi
if [[ $(uname -sm) != "Linux x86_64" ]]; then
    echo "ensure_libduckdb: only linux x86_64 is scripted; set DUCKDB_LIB_DIR to a folder with libduckdb.so $duckdb_version" >&2
    exit 1
fi
command -v npm >/dev/null 2>&1 || { echo "ensure_libduckdb: npm not found (apt-get install npm)" >&2; exit 1; }
mkdir -p "$cache"
for stale in "$dest".tmp.*; do
    [[ -d $stale ]] || continue
    kill -0 "${stale##*.}" 2>/dev/null || rm -rf "$stale"
done
tmp=$dest.tmp.$$
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp"
echo "ensure_libduckdb: fetching $package" >&2
(cd "$tmp" && npm pack --silent "$package" >/dev/null)
tarball=$(ls "$tmp"/*.tgz)
actual="sha512-$(openssl dgst -sha512 -binary "$tarball" | base64 -w0)"
if [[ $actual != "$integrity" ]]; then
    echo "ensure_libduckdb: integrity mismatch for $package: $actual" >&2
    exit 1
fi
tar -xzf "$tarball" -C "$tmp" package/libduckdb.so package/LICENSE
mv "$tmp/package/libduckdb.so" "$tmp/package/LICENSE" "$tmp/"
rm -rf "$tmp/package" "$tarball"
if mv -T "$tmp" "$dest" 2>/dev/null; then
    trap - EXIT
else
    echo "ensure_libduckdb: another run installed it first" >&2
fi
echo "$dest"
