"""airflow_rerun.py DAGS_DIR DAG_ID

Runs what is left to run of DAG_ID's newest DAG run, in the metadata DB of the current
AIRFLOW_HOME, with the same loop as `airflow dags test` but without clearing the run first: so
after `airflow tasks clear`, exactly the cleared task instances run again (a new try each), as
a scheduler would run them. Used by airflow_clear_rerun.sh; Airflow 3.x and 2.x.
"""

import sys
import time
from importlib.metadata import version as dist_version
from pathlib import Path


def main(dags_dir: Path, dag_id: str) -> int:
    major = int(dist_version("apache-airflow").split(".")[0])
    if major < 3:
        try:
            # Maps ab_user, which task_instance_note refers to; the CLI imports it, a script must.
            import airflow.providers.fab.auth_manager.models  # noqa: F401
        except ImportError:
            pass
    from airflow import settings
    from airflow.models.dagrun import DagRun
    from airflow.utils.state import DagRunState, TaskInstanceState

    session = settings.Session()
    run = session.query(DagRun).filter(DagRun.dag_id == dag_id).order_by(DagRun.id.desc()).first()
    if run is None:
        print(f"airflow_rerun: no run of {dag_id}", file=sys.stderr)
        return 1
    if major >= 3:
        from airflow.dag_processing.dagbag import BundleDagBag
        from airflow.sdk.definitions.dag import _run_task
        from airflow.serialization.serialized_objects import DagSerialization

        dag = BundleDagBag(dag_folder=dags_dir, bundle_path=dags_dir, bundle_name="dags-folder").get_dag(dag_id)
        run.dag = DagSerialization.deserialize_dag(DagSerialization.serialize_dag(dag))
    else:
        from airflow.models.dag import _run_task
        from airflow.models.dagbag import DagBag

        sys.path.insert(0, str(dags_dir))
        dag = DagBag(dag_folder=str(dags_dir), include_examples=False).get_dag(dag_id)
        run.dag = dag
    run.state = DagRunState.RUNNING
    session.commit()
    deadline = time.monotonic() + 900
    while run.state == DagRunState.RUNNING and time.monotonic() < deadline:
        session.expire_all()
        schedulable, _ = run.update_state(session=session)
        for ti in schedulable:
            if ti.state != TaskInstanceState.UP_FOR_RESCHEDULE:
                ti.try_number += 1
            ti.state = TaskInstanceState.SCHEDULED
        session.commit()
        scheduled = [ti for ti in run.get_task_instances(session=session) if ti.state == TaskInstanceState.SCHEDULED]
        if not scheduled:
            time.sleep(1)
        for ti in scheduled:
            try:
                if major >= 3:
                    _run_task(ti=ti, task=dag.task_dict[ti.task_id], run_triggerer=True)
                else:
                    ti.task = dag.task_dict[ti.task_id]
                    _run_task(ti=ti, inline_trigger=True, session=session)
            except Exception as error:  # noqa: BLE001 - the task's state says how it ended
                print(f"airflow_rerun: {ti.task_id}: {error}", file=sys.stderr)
    print(f"airflow_rerun: {dag_id} {run.run_id} state={run.state}", file=sys.stderr)
    return 0 if str(getattr(run.state, "value", run.state)) in ("success", "failed") else 1


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]).resolve(), sys.argv[2]))
