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
# The venv is built relocatable; concurrency and killed builds: scripts/cached_install.sh.
# Progress goes to stderr; stdout carries nothing but the path.
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

source "$(cd "$(dirname "$0")" && pwd)/../../scripts/cached_install.sh"
cached_install_reuse ensure_venv "$dest/bin/python" "$dest"

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

cached_install_begin ensure_venv "$dest"
echo "ensure_venv: building $dest from $req" >&2
uv venv --quiet --relocatable --python 3.11 "$tmp" >&2
uv pip install --python "$tmp/bin/python" -r "$req" "${excludes[@]}" >&2
"$tmp/bin/python" -c 'import sys; print("ensure_venv: python", sys.version.split()[0])' >&2
cached_install_finish ensure_venv "$dest" "$dest/bin/python"
echo "$dest"
