#!/usr/bin/env bash
# airflow_clear_rerun.sh VENV DAGS_DIR DAG_ID CLEAR_REGEX BEFORE_JSON AFTER_JSON
#
# One real DagRun of DAG_ID with `airflow dags test` (logical date 2026-01-01), then
# `airflow tasks clear DAG_ID -t CLEAR_REGEX -d` on that run (Airflow's own clear: the matching
# task instances and their downstream lose their state, as the UI clears by default), then airflow_rerun.py runs
# what the clear left to run, in the same throwaway AIRFLOW_HOME and metadata DB
# (airflow_home.sh). BEFORE_JSON and AFTER_JSON get {task_id: [state, try_number]} of the run
# after the first run and after the rerun. Exit 0 when all three steps ran, whatever the
# run's states. Capped at FHIRFLOW_DAGS_TEST_TIMEOUT seconds per step (default 900).
set -euo pipefail

if [[ $# -ne 6 ]]; then
    echo "usage: $0 VENV DAGS_DIR DAG_ID CLEAR_REGEX BEFORE_JSON AFTER_JSON" >&2
    exit 2
fi
venv=$(cd "$1" && pwd)
dags_dir=$(cd "$2" && pwd)
dag_id=$3 regex=$4 before=$5 after=$6
logical_date=2026-01-01T00:00:00+00:00
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=airflow_home.sh
source "$here/airflow_home.sh"

limit=${FHIRFLOW_DAGS_TEST_TIMEOUT:-900}
airflow db migrate >"$AIRFLOW_HOME/migrate.log" 2>&1 || { cat "$AIRFLOW_HOME/migrate.log" >&2; exit 1; }
timeout "$limit" airflow dags test "$dag_id" "$logical_date" >"$AIRFLOW_HOME/first.log" 2>&1 || true
states='import json, sqlite3, sys
db = sqlite3.connect(sys.argv[1])
run = db.execute("SELECT run_id FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1", (sys.argv[2],)).fetchone()
rows = db.execute("SELECT task_id, state, try_number FROM task_instance WHERE dag_id = ? AND run_id = ?", (sys.argv[2], run[0] if run else "")).fetchall()
json.dump({t: [s, n] for t, s, n in sorted(rows)}, open(sys.argv[3], "w"))'
"$venv/bin/python" -c "$states" "$AIRFLOW_HOME/airflow.db" "$dag_id" "$before"
airflow tasks clear "$dag_id" -t "$regex" -d -y >"$AIRFLOW_HOME/clear.log" 2>&1 \
    || { cat "$AIRFLOW_HOME/clear.log" >&2; exit 1; }
tail -5 "$AIRFLOW_HOME/clear.log" >&2
rc=0
timeout "$limit" "$venv/bin/python" "$here/airflow_rerun.py" "$dags_dir" "$dag_id" >"$AIRFLOW_HOME/rerun.log" 2>&1 || rc=$?
"$venv/bin/python" -c "$states" "$AIRFLOW_HOME/airflow.db" "$dag_id" "$after"
if [[ $rc -ne 0 ]]; then
    tail -50 "$AIRFLOW_HOME/rerun.log" >&2
    exit "$rc"
fi
tail -1 "$AIRFLOW_HOME/rerun.log" >&2
