#!/usr/bin/env bash
# airflow_pools.sh VENV DAGS_DIR COMMAND
#
# Runs COMMAND (one shell line, such as the `airflow pools set …` that `fhirflow plan` prints)
# with the venv's `airflow` in a throwaway AIRFLOW_HOME whose sqlite DB was just migrated
# (airflow_home.sh), then prints the pools Airflow then has as `airflow pools list -o json`.
set -euo pipefail
if [[ $# -ne 3 ]]; then
    echo "usage: $0 VENV DAGS_DIR COMMAND" >&2
    exit 2
fi
venv=$(cd "$1" && pwd)
dags_dir=$(cd "$2" && pwd)
# shellcheck source=airflow_home.sh
source "$(dirname "$0")/airflow_home.sh"
airflow db migrate >"$AIRFLOW_HOME/migrate.log" 2>&1 || { cat "$AIRFLOW_HOME/migrate.log" >&2; exit 1; }
bash -c "$3" >&2
airflow pools list -o json
