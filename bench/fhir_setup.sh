# Sourced by the FHIR benchmarks (fhir_e2e.sh, dbt_modes.sh), from the repository root:
#   fhir_setup [BUNDLE_DIR]
# builds the release fhirflow with the embedded DuckDB, finds the conformance tests' dbt venv,
# and copies the bundle files (default: ../shared/data/synthea-sample, else the example's own)
# into a temporary folder removed at exit, so nothing is written next to them.
# Sets: bin, dbt_venv, dir (the temporary folder), bundles (where they came from), count.
fhir_setup() {
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${FHIRFLOW_CACHE:-$HOME/.cache/fhirflow}/target}"
    bundles=${1:-}
    if [[ -z $bundles ]]; then
        bundles=../shared/data/synthea-sample
        [[ -d $bundles ]] || bundles=examples/fhir/bundles
    fi
    DUCKDB_LIB_DIR=$(bash scripts/ensure_libduckdb.sh | tail -n 1)
    export DUCKDB_LIB_DIR
    cargo build --release --locked -q --features duckdb
    bin="$CARGO_TARGET_DIR/release/fhirflow"
    dbt_venv=${FHIRFLOW_DBT_VENV:-$(bash tests/conformance/ensure_venv.sh dbt tests/conformance/requirements-dbt.lock | tail -n 1)}
    dir=$(mktemp -d)
    # shellcheck disable=SC2064 # the folder is known now
    trap "rm -rf '$dir'" EXIT
    cp -R "$bundles" "$dir/bundles"
    count=$(find "$dir/bundles" -name '*.json' | wc -l)
}
