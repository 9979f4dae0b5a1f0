# Sourced (not run) by the scripts that install a test tool once into $FHIRFLOW_CACHE:
# tests/conformance/ensure_venv.sh, tests/servers/ensure_s3s.sh and tests/lsp/ensure_yaml_ls.sh.
#
# Safe to rerun and to run concurrently: the tool is installed into a sibling temp dir
# DEST.tmp.PID and renamed into place only once the install succeeded, so DEST either does not
# exist or is complete. A killed install leaves only a temp dir, removed by the next run once
# its owner PID is gone. Progress goes to stderr; the scripts' stdout carries only the path.

# cached_install_reuse TAG DONE OUT: when DONE (the file a complete install has) is there, print
# OUT and exit.
cached_install_reuse() {
    [[ -x $2 ]] || return 0
    echo "$1: reusing $3" >&2
    echo "$3"
    exit 0
}

# cached_install_begin TAG DEST: removes the temp dirs of killed installs and sets `tmp` (the dir
# to install into, removed on exit unless renamed) and `start`.
cached_install_begin() {
    local tag=$1 dest=$2 stale
    mkdir -p "$(dirname "$dest")"
    for stale in "$dest".tmp.*; do
        [[ -d $stale ]] || continue
        kill -0 "${stale##*.}" 2>/dev/null || { echo "$tag: removing stale $stale" >&2; rm -rf "$stale"; }
    done
    tmp=$dest.tmp.$$
    trap 'rm -rf "$tmp"' EXIT
    start=$SECONDS
}

# cached_install_finish TAG DEST DONE: renames `tmp` to DEST, or uses the DEST another run
# finished first (rename(2) is atomic and fails onto a non-empty dir).
cached_install_finish() {
    local tag=$1 dest=$2 done=$3
    if mv -T "$tmp" "$dest" 2>/dev/null; then
        echo "$tag: ready after $((SECONDS - start))s: $dest" >&2
    else
        [[ -x $done ]] || { echo "$tag: could not move $tmp to $dest" >&2; exit 1; }
        echo "$tag: another run finished first, using $dest" >&2
    fi
}
