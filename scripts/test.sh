#!/usr/bin/env bash
# The project's test command: unit, CLI, snapshot, property and conformance tests.
#
# Conformance tests load the generated files in real Apache Airflow 3.3 and real dbt-core,
# from venvs built once with uv from the lock files in tests/conformance/ and cached in
# $FHIRFLOW_CACHE (default ~/.cache/fhirflow), keyed by each lock file's hash. The cargo
# target dir is cached there too, keyed by Cargo.lock's hash, unless CARGO_TARGET_DIR is set.
#
# The embedded DuckDB (cargo feature `duckdb`) links to libduckdb.so 1.5.6, fetched once into
# $FHIRFLOW_CACHE by scripts/ensure_libduckdb.sh; DUCKDB_LIB_DIR points the build at it. The
# S3 and Snowflake load tests start s3s-fs (tests/servers/ensure_s3s.sh builds it once into the
# cache) and tests/servers/fakesnow_json.py (from the fakesnow venv). The editor check
# (tests/yaml_language_server.rs) talks to the real yaml-language-server, installed with the
# machine's npm (`npm ci`) from tests/lsp/package-lock.json into the cache, keyed by its hash.
#
# Extra arguments go to `cargo test`, e.g. `scripts/test.sh --test cli`.
set -euo pipefail
cd "$(dirname "$0")/.."

export FHIRFLOW_CACHE=${FHIRFLOW_CACHE:-$HOME/.cache/fhirflow}
mkdir -p "$FHIRFLOW_CACHE"
if [[ -z ${CARGO_TARGET_DIR:-} ]]; then
    lock_hash=$(sha256sum Cargo.lock | cut -c1-16)
    export CARGO_TARGET_DIR=$FHIRFLOW_CACHE/target-$lock_hash
    # Keep the two newest target dirs; older ones belong to old lock files.
    for old in $(ls -1dt "$FHIRFLOW_CACHE"/target-* 2>/dev/null | tail -n +3); do
        [[ $old == "$CARGO_TARGET_DIR" ]] || rm -rf "$old"
    done
fi
echo "== caches: $FHIRFLOW_CACHE (cargo target: $CARGO_TARGET_DIR)" >&2

echo "== venvs (Apache Airflow 3.3 and 2.11, dbt-core 1.11, 1.7 and 1.12)" >&2
FHIRFLOW_AIRFLOW_VENV=$(bash tests/conformance/ensure_venv.sh airflow tests/conformance/requirements-airflow.lock | tail -n 1)
FHIRFLOW_AIRFLOW2_VENV=$(bash tests/conformance/ensure_venv.sh airflow2 tests/conformance/requirements-airflow2.lock | tail -n 1)
FHIRFLOW_DBT_VENV=$(bash tests/conformance/ensure_venv.sh dbt tests/conformance/requirements-dbt.lock | tail -n 1)
FHIRFLOW_DBT17_VENV=$(bash tests/conformance/ensure_venv.sh dbt17 tests/conformance/requirements-dbt17.lock | tail -n 1)
FHIRFLOW_DBT112_VENV=$(bash tests/conformance/ensure_venv.sh dbt112 tests/conformance/requirements-dbt112.lock \
    tests/conformance/requirements-dbt112.excludes | tail -n 1)
export FHIRFLOW_AIRFLOW_VENV FHIRFLOW_AIRFLOW2_VENV FHIRFLOW_DBT_VENV FHIRFLOW_DBT17_VENV FHIRFLOW_DBT112_VENV

echo "== libduckdb (the embedded DuckDB of fhirflow run); s3s-fs and fakesnow (the load tests' servers)" >&2
DUCKDB_LIB_DIR=$(bash scripts/ensure_libduckdb.sh | tail -n 1)
FHIRFLOW_S3S_BIN=$(bash tests/servers/ensure_s3s.sh | tail -n 1)
FHIRFLOW_FAKESNOW_VENV=$(bash tests/conformance/ensure_venv.sh fakesnow tests/servers/requirements-fakesnow.lock | tail -n 1)
export DUCKDB_LIB_DIR FHIRFLOW_S3S_BIN FHIRFLOW_FAKESNOW_VENV

echo "== yaml-language-server (the schema in an editor)" >&2
FHIRFLOW_YAML_LANGUAGE_SERVER=$(bash tests/lsp/ensure_yaml_ls.sh | tail -n 1)
export FHIRFLOW_YAML_LANGUAGE_SERVER

echo "== cargo test" >&2
cargo test --locked --features duckdb,s3,snowflake "$@"
