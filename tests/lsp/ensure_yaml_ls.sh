#!/usr/bin/env bash
# ensure_yaml_ls.sh
#
# Print (last line of stdout) the path of the yaml-language-server that package-lock.json
# beside this script pins, installing it with `npm ci` when missing:
#   ${FHIRFLOW_CACHE:-$HOME/.cache/fhirflow}/yaml-ls-<first 16 hex of sha256(package.json, package-lock.json)>
# (concurrency and killed installs: scripts/cached_install.sh).
set -euo pipefail

if [[ $# -ne 0 ]]; then
    echo "usage: $0" >&2
    exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../../scripts/cached_install.sh"
cache=${FHIRFLOW_CACHE:-$HOME/.cache/fhirflow}
hash=$(cat "$here/package.json" "$here/package-lock.json" | sha256sum | cut -c1-16)
dest=$cache/yaml-ls-$hash
bin=$dest/node_modules/.bin/yaml-language-server
cached_install_reuse ensure_yaml_ls "$bin" "$bin"

command -v npm >/dev/null 2>&1 || { echo "ensure_yaml_ls: npm not found (Node.js 20 or newer)" >&2; exit 1; }
cached_install_begin ensure_yaml_ls "$dest"
echo "ensure_yaml_ls: installing $dest from $here/package-lock.json" >&2
mkdir -p "$tmp"
cp "$here/package.json" "$here/package-lock.json" "$tmp/"
# No install scripts: the server is plain JavaScript, and nothing in the lock runs at install.
(cd "$tmp" && npm ci --ignore-scripts --no-audit --no-fund >&2)
[[ -x $tmp/node_modules/.bin/yaml-language-server ]] || { echo "ensure_yaml_ls: no server in $tmp" >&2; exit 1; }
cached_install_finish ensure_yaml_ls "$dest" "$bin"
echo "$bin"
