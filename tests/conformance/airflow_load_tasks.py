"""Run the Snowflake tasks of a generated load DAG against fakesnow_json.py, as Airflow's
PythonOperator calls them.

Usage (with the python of the Airflow 3.3 or 2.11 venv):

    python airflow_load_tasks.py DAGS_DIR DAG_ID FAKESNOW_PORT FILES_JSON

What is real: Airflow's DagBag loads DAGS_DIR (as airflow_check.py does); each load task's own
``python_callable`` is called with its own ``op_kwargs``, in the DAG's order; SnowflakeHook's
``run`` / ``get_first`` / ``get_records`` send the DAG's SQL through snowflake-connector-python.
What is not: SnowflakeHook cannot reach fakesnow, because an Airflow connection gives the
connector a host and port but never ``protocol``, which stays https, and fakesnow_json.py speaks
http; so ``SnowflakeHook.get_conn`` is pointed at fakesnow here. ``list_new_s3_files`` is not
called (it needs S3Hook and real S3): FILES_JSON, a JSON list of ``{"key", "last_modified"}``,
stands for its XCom, and a minimal ``ti`` hands each task the XComs of the ones before it.

Prints one JSON line per task called: ``{"task": id, "ok": return value}``, or
``{"task": id, "failed": exception class, "message": text}`` and then stops. Exit 0 unless the
DAG does not load.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from airflow_check import isolate_airflow_home, load_dagbag  # noqa: E402

STEPS = ["create_snowflake_tables", "get_last_watermark", "load_files_to_snowflake", "update_watermark"]


class TaskInstance:
    """The part of a TaskInstance the load callables use: ``xcom_pull`` of earlier tasks."""

    def __init__(self, xcoms):
        self.xcoms = xcoms

    def xcom_pull(self, task_ids):
        return self.xcoms.get(task_ids)


def main() -> int:
    dags_dir, dag_id, port, files = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
    isolate_airflow_home(dags_dir)
    import snowflake.connector
    from airflow.providers.snowflake.hooks.snowflake import SnowflakeHook

    def get_conn(self):
        return snowflake.connector.connect(
            user="fhirflow",
            password="secret",
            account="fakesnow",
            host="127.0.0.1",
            port=port,
            protocol="http",
            database="FHIR",
            schema="RAW",
        )

    SnowflakeHook.get_conn = get_conn
    bag = load_dagbag(dags_dir)
    if bag.import_errors or dag_id not in bag.dags:
        print(json.dumps({"import_errors": {str(k): v for k, v in bag.import_errors.items()}}))
        return 1
    dag = bag.dags[dag_id]
    xcoms = {"list_new_s3_files": json.loads(files)}
    for task_id in STEPS:
        task = dag.get_task(task_id)
        kwargs = dict(task.op_kwargs)
        if "ti" in task.python_callable.__code__.co_varnames[: task.python_callable.__code__.co_argcount]:
            kwargs["ti"] = TaskInstance(xcoms)
        try:
            result = task.python_callable(**kwargs)
        except Exception as error:  # noqa: BLE001
            print(json.dumps({"task": task_id, "failed": type(error).__name__, "message": str(error)}))
            return 0
        xcoms[task_id] = result
        print(json.dumps({"task": task_id, "ok": result}, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
