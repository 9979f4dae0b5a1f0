"""Check generated Airflow DAG files against a fhirflow expectations document.

Usage (with the python of a venv that has apache-airflow 3.3 installed):

    python airflow_check.py DAGS_DIR EXPECT_JSON

DAGS_DIR is loaded with Airflow's real ``BundleDagBag`` (the DagBag subclass the
dag-processor and ``airflow dags test`` use; it also puts DAGS_DIR on sys.path).
The document format is fixed by CONTRACT.md next to this file. Every DAG in the
bag is turned into that same shape and the two are diffed key by key, so missing
or extra DAGs, tasks and fields all fail.

How each field is read:
  * schedule: from ``dag.timetable``. Cron timetables give their expression, and
    Airflow resolves presets (``@daily`` -> ``0 0 * * *``) in the timetable. When the
    DAG was written with a preset that resolves to that expression, the preset is
    reported as written (taken from ``dag.schedule``), so ``"@daily"`` and
    ``"0 0 * * *"`` are not interchangeable. Delta timetables ->
    ``{"interval_seconds": N}``; NullTimetable -> null; ``@once``/``@continuous``
    are reported by name.
  * retry_exponential_backoff: Airflow 3.3 stores a float multiplier (True is
    accepted and serialized as 2.0). Reported true when backoff is in effect,
    i.e. the multiplier is neither 0 nor 1.
  * durations are reported in seconds (int when whole); execution_delta None -> 0.

The checker needs no metadata DB: it runs in a throwaway AIRFLOW_HOME with every
inherited AIRFLOW_* variable removed. Exit 0 when everything matches, 1 on any
mismatch, import error or empty DAGS_DIR, 2 on bad usage.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path


def isolate_airflow_home() -> str:
    """Point Airflow at a fresh temp home before it is first imported."""
    for key in [k for k in os.environ if k.startswith("AIRFLOW")]:
        del os.environ[key]
    home = tempfile.mkdtemp(prefix="fhirflow-airflow-check-")
    atexit.register(shutil.rmtree, home, ignore_errors=True)
    os.environ.update(
        AIRFLOW_HOME=home,
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home}/airflow.db",
        AIRFLOW__LOGGING__LOGGING_LEVEL="WARNING",
        AIRFLOW__CORE__DAGBAG_IMPORT_ERROR_TRACEBACK_DEPTH="50",
    )
    return home


def seconds(value):
    """timedelta / number / None -> int seconds when whole, else float."""
    if value is None:
        return None
    s = value.total_seconds() if hasattr(value, "total_seconds") else float(value)
    return int(s) if float(s).is_integer() else s


def schedule_of(dag):
    tt = dag.timetable
    name = type(tt).__name__
    if name == "NullTimetable":
        return None
    if name == "OnceTimetable":
        return "@once"
    if name == "ContinuousTimetable":
        return "@continuous"
    if hasattr(tt, "expression"):  # CronTriggerTimetable / CronDataIntervalTimetable
        try:
            from airflow.sdk.definitions.timetables._cron import CRON_PRESETS
        except ImportError:
            CRON_PRESETS = {}
        written = dag.schedule
        if isinstance(written, str) and CRON_PRESETS.get(written) == tt.expression:
            return written
        return tt.expression
    if hasattr(tt, "delta"):  # DeltaTriggerTimetable / DeltaDataIntervalTimetable
        if not hasattr(tt.delta, "total_seconds"):
            return f"<relativedelta {tt.delta!r}: not expressible in seconds>"
        return {"interval_seconds": seconds(tt.delta)}
    return f"<unsupported timetable {name}>"


def backoff_in_effect(raw) -> bool:
    multiplier = 2.0 if raw is True else 0.0 if raw is False else float(raw or 0)
    return multiplier not in (0.0, 1.0)


def task_doc(task, sensor_cls) -> dict:
    sensor = None
    if isinstance(task, sensor_cls):
        sensor = {
            "external_dag_id": task.external_dag_id,
            "external_task_id": task.external_task_id,
            "execution_delta_seconds": seconds(task.execution_delta) or 0,
            "timeout_seconds": seconds(task.timeout),
            "poke_interval_seconds": seconds(task.poke_interval),
            "mode": task.mode,
        }
    return {
        "operator": type(task).__name__,
        "upstream": sorted(task.upstream_task_ids),
        "retries": task.retries,
        "retry_delay_seconds": seconds(task.retry_delay),
        "retry_exponential_backoff": backoff_in_effect(task.retry_exponential_backoff),
        "execution_timeout_seconds": seconds(task.execution_timeout),
        "sensor": sensor,
    }


def dag_doc(dag, dags_dir: Path, sensor_cls) -> dict:
    return {
        "file": os.path.relpath(dag.fileloc, dags_dir),
        "schedule": schedule_of(dag),
        "catchup": dag.catchup,
        "max_active_runs": dag.max_active_runs,
        "tags": sorted(dag.tags),
        "tasks": {t.task_id: task_doc(t, sensor_cls) for t in dag.tasks},
    }


def same(a, b) -> bool:
    """Equality where bools only equal bools (so false != 0) and 300 == 300.0."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return a == b


def diff(expected, actual, path: str, out: list[str]) -> None:
    if isinstance(expected, dict) and isinstance(actual, dict):
        for key in sorted(expected.keys() - actual.keys()):
            out.append(f"{path}{key}: expected {json.dumps(expected[key])}, missing in Airflow")
        for key in sorted(actual.keys() - expected.keys()):
            out.append(f"{path}{key}: not expected, Airflow has {json.dumps(actual[key])}")
        for key in sorted(expected.keys() & actual.keys()):
            diff(expected[key], actual[key], f"{path}{key}/", out)
    elif isinstance(expected, list) and isinstance(actual, list):
        if len(expected) != len(actual) or not all(map(same, expected, actual)):
            out.append(f"{path.rstrip('/')}: expected {json.dumps(expected)}, actual {json.dumps(actual)}")
    elif not same(expected, actual):
        out.append(f"{path.rstrip('/')}: expected {json.dumps(expected)}, actual {json.dumps(actual)}")


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    dags_dir, expect_path = Path(argv[1]).resolve(), Path(argv[2])
    if not dags_dir.is_dir() or not any(dags_dir.rglob("*.py")):
        print(f"airflow_check: FAIL: no .py files in {dags_dir}", file=sys.stderr)
        return 1
    expected = json.loads(expect_path.read_text())
    if expected.get("format_version") != 1:
        print(f"airflow_check: FAIL: unsupported format_version {expected.get('format_version')!r}")
        return 1

    isolate_airflow_home()
    from airflow.dag_processing.dagbag import BundleDagBag
    from airflow.providers.standard.sensors.external_task import ExternalTaskSensor

    bag = BundleDagBag(dag_folder=dags_dir, bundle_path=dags_dir, bundle_name="dags-folder")
    if bag.import_errors:
        for file, error in sorted(bag.import_errors.items()):
            print(f"=== import error in {file} ===\n{error}")
        print(f"airflow_check: FAIL: {len(bag.import_errors)} file(s) with import errors")
        return 1

    for file, warns in sorted(bag.captured_warnings.items()):
        for w in warns:
            print(f"airflow_check: warning (not a failure): {w}", file=sys.stderr)

    actual = {dag_id: dag_doc(dag, dags_dir, ExternalTaskSensor) for dag_id, dag in bag.dags.items()}
    mismatches: list[str] = []
    exp_dags = expected["dags"]
    for dag_id in sorted(exp_dags.keys() - actual.keys()):
        mismatches.append(f"{dag_id}: expected DAG, not found in Airflow")
    for dag_id in sorted(actual.keys() - exp_dags.keys()):
        mismatches.append(f"{dag_id}: not expected, Airflow has this DAG ({actual[dag_id]['file']})")
    for dag_id in sorted(exp_dags.keys() & actual.keys()):
        diff(exp_dags[dag_id], actual[dag_id], f"{dag_id}/", mismatches)

    n_tasks = sum(len(d["tasks"]) for d in actual.values())
    if mismatches:
        print("\n".join(f"MISMATCH {m}" for m in mismatches))
        print(f"airflow_check: FAIL: {len(mismatches)} mismatch(es) across {len(actual)} DAGs, {n_tasks} tasks")
        return 1
    print(f"airflow_check: {len(actual)} DAGs, {n_tasks} tasks match")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
