"""Check that fhirflow's DAG and the hand-written static DAG are the same graph, before timing them.

Why this exists: the benchmark compares the parse time of fhirflow's file with a hand-written
static file of *exactly* the same tasks; this is what makes that true. Run with the cosmos venv's
python (bench/cosmos/run.sh does):

    python check_same.py BENCH_DIR

Loads BENCH_DIR/dags/bench_dbt.py, dags_static/bench_dbt_static.py and
dags_cosmos/bench_dbt_cosmos.py in one DagBag each, and fails (exit 1) unless fhirflow's and the
static file have the same task ids, operator classes, task groups, upstream edges, retries,
trigger rules, owners and dbt command lines (the `--project-dir`/`--profiles-dir` values aside:
fhirflow finds the project relative to the DAG file, the static file names it). Prints the task, edge and task-group counts of all three
files (Cosmos's are reported, not compared: its task ids and operators are its own), and writes
them to BENCH_DIR/counts.json.
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import import_airflow, isolate_airflow  # noqa: E402

PATH_OPTIONS = {"--project-dir", "--profiles-dir"}


def load(path: Path):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(path))
    if bag.import_errors or len(bag.dags) != 1:
        sys.exit(f"check_same: {path} did not load as one DAG: {bag.import_errors or list(bag.dags)}")
    return next(iter(bag.dags.values()))


def command(task) -> list[str] | None:
    text = getattr(task, "bash_command", None)
    if text is None:
        return None
    argv = shlex.split(text)
    return [a for i, a in enumerate(argv) if a not in PATH_OPTIONS and (i == 0 or argv[i - 1] not in PATH_OPTIONS)]


def shape(dag) -> dict:
    return {
        task.task_id: {
            "operator": type(task).__name__,
            "group": task.task_group.group_id if task.task_group else None,
            "upstream": sorted(task.upstream_task_ids),
            "command": command(task),
            "retries": task.retries,
            "trigger_rule": str(task.trigger_rule),
            "owner": task.owner,
        }
        for task in dag.tasks
    }


def counts(dag) -> dict:
    operators: dict[str, int] = {}
    for task in dag.tasks:
        operators[type(task).__name__] = operators.get(type(task).__name__, 0) + 1
    return {
        "tasks": len(dag.tasks),
        "edges": sum(len(t.upstream_task_ids) for t in dag.tasks),
        "task_groups": len(dag.task_group.get_task_group_dict()) - 1,
        "operators": operators,
    }


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit("usage: check_same.py BENCH_DIR")
    bench = Path(sys.argv[1])
    isolate_airflow()
    import_airflow()
    dags = {
        "fhirflow": load(bench / "dags/bench_dbt.py"),
        "static": load(bench / "dags_static/bench_dbt_static.py"),
        "cosmos": load(bench / "dags_cosmos/bench_dbt_cosmos.py"),
    }
    found = {label: counts(dag) for label, dag in dags.items()}
    (bench / "counts.json").write_text(json.dumps(found, indent=1) + "\n")
    for label, c in found.items():
        print(f"check_same: {label:<8} {c['tasks']} tasks, {c['edges']} edges, {c['task_groups']} task groups, {c['operators']}")

    ours, theirs = shape(dags["fhirflow"]), shape(dags["static"])
    problems = [f"only in fhirflow's DAG: {t}" for t in sorted(ours.keys() - theirs.keys())]
    problems += [f"only in the static DAG: {t}" for t in sorted(theirs.keys() - ours.keys())]
    for task_id in sorted(ours.keys() & theirs.keys()):
        for key in ("operator", "group", "upstream", "command", "retries", "trigger_rule", "owner"):
            if ours[task_id][key] != theirs[task_id][key]:
                problems.append(f"{task_id}: {key} {ours[task_id][key]!r} (fhirflow) != {theirs[task_id][key]!r} (static)")
    if problems:
        shown = "\n  ".join(problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        sys.exit(f"check_same: fhirflow's and the static DAG differ ({len(problems)} differences):\n  {shown}{more}")
    print(f"check_same: fhirflow's and the static DAG have the same {len(ours)} tasks (operators, groups, edges, commands, retries, trigger rules, owners)")


if __name__ == "__main__":
    main()
