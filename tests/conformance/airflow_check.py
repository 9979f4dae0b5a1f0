"""Check generated Airflow DAG files against a fhirflow expectations document.

Usage (with the python of a venv that has apache-airflow 3.3 or 2.11 installed):

    python airflow_check.py DAGS_DIR EXPECT_JSON

The installed Airflow's major version picks how DAGS_DIR is loaded:
  * 3.x: Airflow's real ``BundleDagBag`` (the DagBag subclass the dag-processor and
    ``airflow dags test`` use; it also puts DAGS_DIR on sys.path).
  * 2.x: ``airflow.models.dagbag.DagBag`` with examples off, DAGS_DIR as the
    configured dags folder and on sys.path, as the 2.x scheduler and
    ``airflow dags test`` load it.
The document format is fixed by CONTRACT.md next to this file. Every DAG in the
bag is turned into that same shape and the two are diffed key by key, so missing
or extra DAGs, tasks and fields all fail. The same expectations serve both
versions: what a field means is the same, only where Airflow keeps it differs.

How each field is read:
  * schedule: from ``dag.timetable``. Cron timetables give their expression, and
    Airflow resolves presets (``@daily`` -> ``0 0 * * *``) in the timetable. When the
    DAG was written with a preset that resolves to that expression, the preset is
    reported as written (taken from ``dag.schedule``, on 2.x ``dag.schedule_interval``),
    so ``"@daily"`` and ``"0 0 * * *"`` are not interchangeable. Delta timetables ->
    ``{"interval_seconds": N}``; NullTimetable -> null; ``@once``/``@continuous``
    are reported by name. Trigger and data-interval timetables of one expression
    report the same (their logical dates differ; the summary line on stdout names
    each DAG's timetable class so that difference stays visible).
  * operator: the class name. A sensor is any ExternalTaskSensor class the
    installed Airflow has (2.x: core ``airflow.sensors.external_task`` and, when
    installed, the standard provider's; 3.x: the standard provider's).
  * retry_exponential_backoff: Airflow 3.3 stores a float multiplier (True is
    accepted and serialized as 2.0), 2.x a bool. Reported true when backoff is in
    effect, i.e. the multiplier is neither 0 nor 1.
  * durations are reported in seconds (int when whole); execution_delta None -> 0.

The checker needs no metadata DB: it runs in a throwaway AIRFLOW_HOME with every
inherited AIRFLOW_* variable removed. Exit 0 when everything matches, 1 on any
mismatch, import error or empty DAGS_DIR, 2 on bad usage.
"""

from __future__ import annotations

import atexit
import importlib
import json
import os
import shlex
import shutil
import sys
import tempfile
from importlib.metadata import version as dist_version
from pathlib import Path


def airflow_major() -> int:
    """The installed apache-airflow's major version, read without importing airflow."""
    return int(dist_version("apache-airflow").split(".")[0])


def isolate_airflow_home(dags_dir: Path) -> str:
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
    if airflow_major() < 3:
        # 2.x puts the configured dags folder on sys.path when airflow is imported.
        os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(dags_dir)
        # Opt in to the 3.x metrics unit, which silences 2.11's warning about it on import.
        os.environ["AIRFLOW__METRICS__TIMER_UNIT_CONSISTENCY"] = "True"
    return home


def load_dagbag(dags_dir: Path):
    """The DagBag the installed Airflow's own dag-processor / scheduler would build."""
    if airflow_major() >= 3:
        from airflow.dag_processing.dagbag import BundleDagBag

        return BundleDagBag(dag_folder=dags_dir, bundle_path=dags_dir, bundle_name="dags-folder")
    from airflow.models.dagbag import DagBag

    if str(dags_dir) not in sys.path:
        sys.path.insert(0, str(dags_dir))
    return DagBag(dag_folder=str(dags_dir), include_examples=False)


def sensor_classes() -> tuple[type, ...]:
    """Every ExternalTaskSensor class the installed Airflow offers."""
    modules = ["airflow.providers.standard.sensors.external_task"]
    if airflow_major() < 3:
        modules.insert(0, "airflow.sensors.external_task")
    found = []
    for name in modules:
        try:
            found.append(importlib.import_module(name).ExternalTaskSensor)
        except ImportError:
            pass
    if not found:
        raise ImportError(f"no ExternalTaskSensor in any of {modules}")
    return tuple(found)


def cron_presets() -> dict:
    for name, attr in (
        ("airflow.sdk.definitions.timetables._cron", "CRON_PRESETS"),  # 3.x
        ("airflow.utils.dates", "cron_presets"),  # 2.x
    ):
        try:
            return getattr(importlib.import_module(name), attr)
        except (ImportError, AttributeError):
            continue
    return {}


def seconds(value):
    """timedelta / number / None -> int seconds when whole, else float."""
    if value is None:
        return None
    s = value.total_seconds() if hasattr(value, "total_seconds") else float(value)
    return int(s) if float(s).is_integer() else s


def enum_value(value):
    """An Airflow enum member (TriggerRule, TaskInstanceState) as its string; a string as is."""
    return getattr(value, "value", value)


def asset_doc(condition):
    """An asset condition as the expectations write it: a name, or {"all"|"any": [...]}."""
    kind = type(condition).__name__
    if kind in ("AssetAll", "DatasetAll"):
        return {"all": [asset_doc(c) for c in condition.objects]}
    if kind in ("AssetAny", "DatasetAny"):
        return {"any": [asset_doc(c) for c in condition.objects]}
    # 3.x Asset(name=..) keeps the spec's text as its name; 2.x Dataset has only a URI.
    return getattr(condition, "name", None) or condition.uri


def schedule_of(dag):
    tt = dag.timetable
    name = type(tt).__name__
    if name == "NullTimetable":
        return None
    if name in ("AssetTriggeredTimetable", "DatasetTriggeredTimetable"):
        condition = getattr(tt, "asset_condition", None) or getattr(tt, "dataset_condition", None)
        return {"assets": asset_doc(condition)}
    if name == "OnceTimetable":
        return "@once"
    if name == "ContinuousTimetable":
        return "@continuous"
    # 3.x timetables expose .expression / .delta; 2.x keeps them in ._expression / ._delta.
    expression = getattr(tt, "expression", None) or getattr(tt, "_expression", None)
    if expression is not None:  # CronTriggerTimetable / CronDataIntervalTimetable
        written = dag.schedule if hasattr(dag, "schedule") else getattr(dag, "schedule_interval", None)
        if isinstance(written, str) and cron_presets().get(written) == expression:
            return written
        return expression
    delta = getattr(tt, "delta", None) or getattr(tt, "_delta", None)
    if delta is not None:  # DeltaTriggerTimetable / DeltaDataIntervalTimetable
        if not hasattr(delta, "total_seconds"):
            return f"<relativedelta {delta!r}: not expressible in seconds>"
        return {"interval_seconds": seconds(delta)}
    return f"<unsupported timetable {name}>"


def backoff_in_effect(raw) -> bool:
    multiplier = 2.0 if raw is True else 0.0 if raw is False else float(raw or 0)
    return multiplier not in (0.0, 1.0)


def command_words(task) -> list[str] | None:
    """The words a dbt task runs, read from whichever operator it is: a BashOperator's command,
    a DockerOperator's command, a KubernetesPodOperator's cmds + arguments."""
    name = type(task).__name__
    if name == "BashOperator":
        command = task.bash_command
        return ["bash", "-c", command] if "\n" in command else shlex.split(command)
    if name == "DockerOperator":
        command = task.command
        return list(command) if isinstance(command, (list, tuple)) else shlex.split(command)
    if name == "KubernetesPodOperator":
        return list(task.cmds or []) + list(task.arguments or [])
    # A watched per-model stage: its build and its sensors run their dbt lines from Python.
    if name in ("PythonOperator", "PythonSensor") and getattr(task.python_callable, "__name__", "").startswith(
        "_dbt_watched_"
    ):
        return shlex.split(task.op_kwargs["command"])
    return None


def run_commands(task) -> tuple[list[list[str]], str | None] | None:
    """The command lines a task runs in order, and the fhirflow script around them if there is
    one (`dbt deps && dbt … || status=$?` inside `bash -c`); None for a task that runs none."""
    words = command_words(task)
    if not words:
        return None
    if words[:2] != ["bash", "-c"]:
        return [words], None
    script = words[2]
    line = next((ln for ln in script.splitlines() if ln.endswith(" || status=$?")), None)
    if line is None:
        return None
    return [shlex.split(part) for part in line[: -len(" || status=$?")].split(" && ")], script


def dbt_doc(task) -> dict | None:
    """The dbt command line of a task with its folders as placeholders, and what the script
    around it does; None for a task that runs no dbt."""
    found = run_commands(task)
    if found is None:
        return None
    commands, script = found
    argv = list(commands[-1])
    # fhirflow's dbt tasks always name the project; a shell stage running `dbt --version` is no dbt task.
    if not argv or "--project-dir" not in argv:
        return None
    for flag, token in (("--project-dir", "{project_dir}"), ("--profiles-dir", "{profiles_dir}"), ("--state", "{state_dir}")):
        for i, word in enumerate(argv[:-1]):
            if word == flag:
                argv[i + 1] = token
    return {
        "argv": argv,
        "deps_first": len(commands) > 1 and commands[0][1:2] == ["deps"],
        "tolerate_failure": script is not None and script.rstrip().endswith("exit 0"),
        "save_artifacts": script is not None and "/runs/" in script,
    }


def failure_webhook_env(task):
    """The environment variable the task's failure callback posts to, if it has fhirflow's."""
    callbacks = task.on_failure_callback
    if callbacks is None:
        return None
    for callback in callbacks if isinstance(callbacks, (list, tuple)) else [callbacks]:
        func = getattr(callback, "func", None)
        if func is not None and func.__name__ == "_notify_webhook":
            return callback.args[0]
    return None


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
            "allowed_states": [enum_value(s) for s in task.allowed_states],
            "failed_states": [enum_value(s) for s in task.failed_states],
            "skipped_states": [enum_value(s) for s in task.skipped_states],
            "check_existence": task.check_existence,
            "deferrable": task.deferrable,
            "soft_fail": task.soft_fail,
        }
    trigger = None
    if type(task).__name__ == "TriggerDagRunOperator":
        trigger = {
            "trigger_dag_id": task.trigger_dag_id,
            "conf": task.conf or {},
            "wait_for_completion": task.wait_for_completion,
        }
    return {
        "operator": type(task).__name__,
        "upstream": sorted(task.upstream_task_ids),
        "retries": task.retries,
        "retry_delay_seconds": seconds(task.retry_delay),
        "retry_exponential_backoff": backoff_in_effect(task.retry_exponential_backoff),
        "execution_timeout_seconds": seconds(task.execution_timeout),
        "trigger_rule": enum_value(task.trigger_rule),
        "pool": task.pool,
        "depends_on_past": task.depends_on_past,
        "email_on_retry": bool(task.email) and task.email_on_retry,
        "doc_md": task.doc_md,
        "outlets": [asset_doc(o) for o in task.outlets],
        "sensor": sensor,
        "trigger": trigger,
        "dbt": dbt_doc(task),
        "failure_webhook_env": failure_webhook_env(task),
    }


def dag_doc(dag, dags_dir: Path, sensor_cls) -> dict:
    return {
        "file": os.path.relpath(dag.fileloc, dags_dir),
        "schedule": schedule_of(dag),
        "catchup": dag.catchup,
        "start_date": int(dag.start_date.timestamp()) if dag.start_date else None,
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
    if expected.get("format_version") != "1.0":
        print(f"airflow_check: FAIL: unsupported format_version {expected.get('format_version')!r}")
        return 1

    isolate_airflow_home(dags_dir)
    bag = load_dagbag(dags_dir)
    sensor_cls = sensor_classes()
    import airflow

    print(f"airflow_check: Airflow {airflow.__version__}, {len(bag.dags)} DAG(s) in {dags_dir}")
    if bag.import_errors:
        for file, error in sorted(bag.import_errors.items()):
            print(f"=== import error in {file} ===\n{error}")
        print(f"airflow_check: FAIL: {len(bag.import_errors)} file(s) with import errors")
        return 1

    for file, warns in sorted(bag.captured_warnings.items()):
        for w in warns:
            print(f"airflow_check: warning (not a failure): {w}", file=sys.stderr)

    actual = {dag_id: dag_doc(dag, dags_dir, sensor_cls) for dag_id, dag in bag.dags.items()}
    timetables = ", ".join(f"{d}={type(bag.dags[d].timetable).__name__}" for d in sorted(bag.dags))
    print(f"airflow_check: timetables: {timetables}")
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
