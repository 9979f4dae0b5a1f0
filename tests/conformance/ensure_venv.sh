#!/usr/bin/env bash
# ensure_venv.sh NAME REQUIREMENTS_FILE [EXCLUDES_FILE]
#
# Print (last line of stdout) the path of a Python 3.11 venv holding
# REQUIREMENTS_FILE, creating it with uv when missing:
#   ${FHIRFLOW_CACHE:-$HOME/.cache/fhirflow}/venv-NAME-<first 16 hex of sha256(REQUIREMENTS_FILE)>
# EXCLUDES_FILE names packages left out of the resolution (uv --excludes): the lock was
# compiled without them, and the install must not pull them back in as dependencies. Its
# text is hashed after the lock's (with none, the hash is the lock file's own).
#
# Safe to rerun and to run concurrently: the venv is built (relocatable) in a
# sibling temp dir and renamed into place only once the install succeeded, so the
# final path either does not exist or is complete. A killed build leaves only a
# temp dir, removed by the next run once its owner PID is gone. Progress goes to
# stderr; stdout carries nothing but the path.
set -euo pipefail

if [[ $# -lt 2 || $# -gt 3 || ! -f $2 || ( $# -eq 3 && ! -f ${3:-} ) ]]; then
    echo "usage: $0 NAME REQUIREMENTS_FILE [EXCLUDES_FILE]" >&2
    exit 2
fi
name=$1
req=$(cd "$(dirname "$2")" && pwd)/$(basename "$2")
excludes=()
[[ $# -eq 3 ]] && excludes=(--excludes "$(cd "$(dirname "$3")" && pwd)/$(basename "$3")")
cache=${FHIRFLOW_CACHE:-$HOME/.cache/fhirflow}
hash=$(cat "$req" ${3:+"$3"} | sha256sum | cut -c1-16)
dest=$cache/venv-$name-$hash

if [[ -x $dest/bin/python ]]; then
    echo "ensure_venv: reusing $dest" >&2
    echo "$dest"
    exit 0
fi

mkdir -p "$cache"
if ! command -v uv >/dev/null 2>&1; then
    echo "ensure_venv: uv not found, installing it with pip" >&2
    if python3 -m pip install --user --quiet uv >&2 || pip install --quiet uv >&2; then
        PATH="$(python3 -m site --user-base)/bin:$PATH"
    fi
    if ! command -v uv >/dev/null 2>&1; then
        # PEP 668 (externally managed) pythons refuse both; use a private venv.
        echo "ensure_venv: pip refused, installing uv into $cache/uv-bootstrap" >&2
        python3 -m venv "$cache/uv-bootstrap" >&2 && "$cache/uv-bootstrap/bin/pip" install --quiet uv >&2
        PATH="$cache/uv-bootstrap/bin:$PATH"
    fi
    command -v uv >/dev/null 2>&1 || { echo "ensure_venv: could not install uv" >&2; exit 1; }
fi

# Remove temp dirs left by killed builds (their owner PID is the suffix).
for stale in "$dest".tmp.*; do
    [[ -d $stale ]] || continue
    kill -0 "${stale##*.}" 2>/dev/null || { echo "ensure_venv: removing stale $stale" >&2; rm -rf "$stale"; }
done

tmp=$dest.tmp.$$
trap 'rm -rf "$tmp"' EXIT
echo "ensure_venv: building $dest from $req" >&2
start=$SECONDS
uv venv --quiet --relocatable --python 3.11 "$tmp" >&2
uv pip install --python "$tmp/bin/python" -r "$req" "${excludes[@]}" >&2
"$tmp/bin/python" -c 'import sys; print("ensure_venv: python", sys.version.split()[0])' >&2

# rename(2) is atomic; it fails if another run already put a venv in place.
if mv -T "$tmp" "$dest" 2>/dev/null; then
    echo "ensure_venv: ready after $((SECONDS - start))s: $dest" >&2
else
    [[ -x $dest/bin/python ]] || { echo "ensure_venv: could not move $tmp to $dest" >&2; exit 1; }
    echo "ensure_venv: another run finished first, using $dest" >&2
fi
echo "$dest"
