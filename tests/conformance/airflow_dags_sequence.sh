#!/usr/bin/env bash
# airflow_dags_sequence.sh VENV DAGS_DIR OUT_JSON DAG_ID PATTERN [DAG_ID PATTERN ...]
#
# Runs `airflow dags test DAG_ID 2026-01-01T00:00:00+00:00` for each DAG in turn, all in one
# throwaway AIRFLOW_HOME and one sqlite metadata DB, so that a later DAG's ExternalTaskSensor
# sees an earlier DAG's task instances and an asset-scheduled DAG sees the asset events an
# earlier one recorded. Then writes OUT_JSON: every task instance (dag_id, task_id, state,
# seconds it ran), every DAG run's state, and every asset event (Airflow 3: asset_event;
# Airflow 2: dataset_event), read back from the metadata DB; and each `dags test`'s wall time.
#
# As in airflow_dags_test.sh: task ids that fullmatch PATTERN are marked success instead of
# run ('' runs every task); the Airflow home is airflow_home.sh's, so AIRFLOW_CONN_* variables
# hand connections to the DAGs (an S3 endpoint on 127.0.0.1, say).
# Each `dags test` is capped at FHIRFLOW_DAGS_TEST_TIMEOUT seconds (default 900). The exit
# status is 0 when every `dags test` ran (whatever the run states: OUT_JSON has them).
set -euo pipefail

if [[ $# -lt 5 || $(( ($# - 3) % 2 )) -ne 0 ]]; then
    echo "usage: $0 VENV DAGS_DIR OUT_JSON DAG_ID PATTERN [DAG_ID PATTERN ...]" >&2
    exit 2
fi
venv=$(cd "$1" && pwd)
dags_dir=$(cd "$2" && pwd)
out_json=$3
shift 3
logical_date=2026-01-01T00:00:00+00:00

# shellcheck source=airflow_home.sh
source "$(dirname "$0")/airflow_home.sh"

airflow db migrate >"$AIRFLOW_HOME/migrate.log" 2>&1 || { cat "$AIRFLOW_HOME/migrate.log" >&2; exit 1; }
# Register every DAG, as the dag processor would: 2.x's `dags test` writes no DagModel row, and
# a sensor's check_existence looks its target up there.
airflow dags reserialize >"$AIRFLOW_HOME/reserialize.log" 2>&1 || { cat "$AIRFLOW_HOME/reserialize.log" >&2; exit 1; }
while [[ $# -gt 0 ]]; do
    dag_id=$1 pattern=$2
    shift 2
    args=(dags test "$dag_id" "$logical_date")
    [[ -n $pattern ]] && args+=(--mark-success-pattern "$pattern")
    t0=$(date +%s.%N)
    rc=0
    timeout "${FHIRFLOW_DAGS_TEST_TIMEOUT:-900}" airflow "${args[@]}" || rc=$?
    t1=$(date +%s.%N)
    awk -v d="$dag_id" -v rc="$rc" -v v="$version" -v t0="$t0" -v t1="$t1" \
        'BEGIN { printf "airflow_dags_sequence: %s (cli rc=%s, Airflow %s) in %.1fs\n", d, rc, v, t1 - t0 }' >&2
    awk -v d="$dag_id" -v t0="$t0" -v t1="$t1" 'BEGIN { printf "%s %.3f\n", d, t1 - t0 }' >>"$AIRFLOW_HOME/walls.txt"
    [[ $rc -eq 124 ]] && { echo "airflow dags test $dag_id timed out" >&2; exit 124; }
done

"$venv/bin/python" - "$AIRFLOW_HOME/airflow.db" "$out_json" "$AIRFLOW_HOME/walls.txt" <<'PY'
import json
import sqlite3
import sys
from datetime import datetime

db = sqlite3.connect(sys.argv[1])


def seconds(duration, start, end):
    if duration is not None:
        return round(float(duration), 3)
    if not start or not end:
        return None
    parse = lambda s: datetime.fromisoformat(str(s).replace(" ", "T"))
    return round((parse(end) - parse(start)).total_seconds(), 3)


tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
tasks = [
    {"dag_id": d, "task_id": t, "state": s, "seconds": seconds(n, a, b)}
    for d, t, s, n, a, b in db.execute(
        "SELECT dag_id, task_id, state, duration, start_date, end_date FROM task_instance ORDER BY dag_id, task_id"
    )
]
runs = [{"dag_id": d, "state": s} for d, s in db.execute("SELECT dag_id, state FROM dag_run ORDER BY id")]
if "asset_event" in tables:
    query = """SELECT a.name, a.uri, e.source_dag_id, e.source_task_id FROM asset_event e
               JOIN asset a ON a.id = e.asset_id ORDER BY e.id"""
else:
    query = """SELECT d.uri, d.uri, e.source_dag_id, e.source_task_id FROM dataset_event e
               JOIN dataset d ON d.id = e.dataset_id ORDER BY e.id"""
events = [{"name": n, "uri": u, "dag_id": d, "task_id": t} for n, u, d, t in db.execute(query)]
with open(sys.argv[3], encoding="utf-8") as walls:
    wall_seconds = [{"dag_id": d, "seconds": float(s)} for d, s in (line.split() for line in walls)]
with open(sys.argv[2], "w", encoding="utf-8") as out:
    report = {"task_instances": tasks, "dag_runs": runs, "asset_events": events, "dags_test_seconds": wall_seconds}
    json.dump(report, out, indent=1)
PY
