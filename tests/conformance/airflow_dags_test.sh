#!/usr/bin/env bash
# airflow_dags_test.sh VENV DAGS_DIR DAG_ID MARK_SUCCESS_PATTERN [EXTRA_PATH]
#
# Run one real DagRun of DAG_ID with `airflow dags test` for logical date
# 2026-01-01T00:00:00+00:00, in a throwaway AIRFLOW_HOME with a freshly migrated
# sqlite DB and DAGS_DIR as the dags folder (airflow_home.sh: examples off, inherited AIRFLOW*
# variables but AIRFLOW_CONN_* dropped). VENV may hold Airflow 3.x or 2.x from 2.10 on: both have
# `airflow db migrate` (since 2.7; 2.x's `db init` is deprecated) and
# `airflow dags test DAG_ID DATE --mark-success-pattern RE` (the option since 2.10;
# 2.x names the date execution_date, 3.x logical_date, positional in both), and both
# keep the run in the dag_run table read below. Task ids that fullmatch
# MARK_SUCCESS_PATTERN are marked success instead of run (use it for sensors and
# tasks needing real connections); pass '' to run every task. 3.x compiles the
# pattern with Python's re, 2.x with re2: keep to the common subset (no lookaround,
# no backreferences), or 2.x fails with "invalid perl operator". EXTRA_PATH is
# prepended to PATH, so BashOperator subprocesses find stub tools there.
#
# With FHIRFLOW_DAGS_TEST_STATES set, the run's task-instance states go to that file as JSON.
# With FHIRFLOW_DAGS_TEST_CONF set, the run gets that JSON as its dag_run.conf (`--conf`, in
# both versions). With FHIRFLOW_RENDER_CASES set, airflow_render.py first renders every task of
# DAGS_DIR with `airflow tasks render`'s own code, in the same home (every DAG reserialized into
# its DB first), and checks that file's cases.
#
# `airflow dags test` exits 0 for any run that did not end "failed", so the run
# state is read back from the sqlite DB: exit 0 only if it is "success".
# Timings go to stderr on the last line. The run is killed after
# FHIRFLOW_DAGS_TEST_TIMEOUT seconds (default 900; exit status then 124).
set -euo pipefail

if [[ $# -lt 4 || $# -gt 5 ]]; then
    echo "usage: $0 VENV DAGS_DIR DAG_ID MARK_SUCCESS_PATTERN [EXTRA_PATH]" >&2
    exit 2
fi
venv=$(cd "$1" && pwd)
dags_dir=$(cd "$2" && pwd)
dag_id=$3
pattern=$4
logical_date=2026-01-01T00:00:00+00:00

extra_path=${5:-}
# shellcheck source=airflow_home.sh
source "$(dirname "$0")/airflow_home.sh"

t0=$(date +%s.%N)
airflow db migrate >"$AIRFLOW_HOME/migrate.log" 2>&1 || { cat "$AIRFLOW_HOME/migrate.log" >&2; exit 1; }
if [[ -n ${FHIRFLOW_RENDER_CASES:-} ]]; then
    # `tasks render` makes its task instance from the serialized DAG, as the scheduler would. A
    # file whose parse outlasts the import timeout (30 s; a loaded CI machine) is left out unsaid.
    export AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT=600
    airflow dags reserialize >"$AIRFLOW_HOME/reserialize.log" 2>&1 || { cat "$AIRFLOW_HOME/reserialize.log" >&2; exit 1; }
    "$venv/bin/python" "$(dirname "$0")/airflow_render.py" "$dags_dir" "$FHIRFLOW_RENDER_CASES" "$logical_date"
fi
t1=$(date +%s.%N)
args=(dags test "$dag_id" "$logical_date")
[[ -n $pattern ]] && args+=(--mark-success-pattern "$pattern")
[[ -n ${FHIRFLOW_DAGS_TEST_CONF:-} ]] && args+=(--conf "$FHIRFLOW_DAGS_TEST_CONF")
rc=0
# A sensor left unmarked could poke until its own timeout; cap the whole run.
timeout "${FHIRFLOW_DAGS_TEST_TIMEOUT:-900}" airflow "${args[@]}" || rc=$?
t2=$(date +%s.%N)

# Fresh DB, so the newest dag_run row of DAG_ID is the run just made.
query='import sqlite3, sys
row = sqlite3.connect(sys.argv[1]).execute(
    "SELECT state FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1", (sys.argv[2],)).fetchone()
print(row[0] if row else "no-run")'
state=$("$venv/bin/python" -c "$query" "$AIRFLOW_HOME/airflow.db" "$dag_id" || echo unknown)
if [[ -n ${FHIRFLOW_DAGS_TEST_STATES:-} ]]; then
    # Each task instance's state in that run, as {task_id: state}, for tests that compare runs.
    states='import json, sqlite3, sys
db = sqlite3.connect(sys.argv[1])
run = db.execute("SELECT run_id FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1", (sys.argv[2],)).fetchone()
rows = db.execute("SELECT task_id, state FROM task_instance WHERE dag_id = ? AND run_id = ?", (sys.argv[2], run[0] if run else "")).fetchall()
json.dump(dict(sorted(rows)), open(sys.argv[3], "w"))'
    "$venv/bin/python" -c "$states" "$AIRFLOW_HOME/airflow.db" "$dag_id" "$FHIRFLOW_DAGS_TEST_STATES"
fi

awk -v d="$dag_id" -v s="$state" -v v="$version" -v rc="$rc" -v t0="$t0" -v t1="$t1" -v t2="$t2" 'BEGIN {
    printf "airflow_dags_test: %s state=%s (cli rc=%s, Airflow %s); db migrate %.1fs, dags test %.1fs\n", d, s, rc, v, t1 - t0, t2 - t1
}' >&2
[[ $rc -eq 0 && $state == success ]]
