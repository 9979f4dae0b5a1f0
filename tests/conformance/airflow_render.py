"""Render every task of a DAGs folder as `airflow tasks render` does, and check what it printed.

Usage, in an AIRFLOW_HOME with a migrated metadata DB (airflow_dags_test.sh makes one), with the
python of a venv that has apache-airflow 3.3 or 2.11:

    python airflow_render.py DAGS_DIR CASES_JSON LOGICAL_DATE

The folder is loaded once in the DagBag the installed Airflow's own processor builds
(airflow_check.load_dagbag); each task is then rendered by the CLI's own
``task_command.task_render``, which `airflow tasks render DAG TASK DATE` calls, with arguments
parsed by Airflow's own CLI parser. Any import error, or an exception while rendering any task
(TemplateNotFound, TemplateSyntaxError, ...), fails. Every rendered ``bash_command`` must be
valid bash (``bash -n``). CASES_JSON is a list of checks, each ``{"dag", "task", ...}`` and one of:

  * ``"property": P, "contains": S``: the printed property P holds S;
  * ``"property": P, "contains_repr": S``: it holds ``repr(S)`` (a string inside a dict or list);
  * ``"property": P, "contains_word": S``: it holds ``shlex.quote(S)`` (a word of a shell command);
  * ``"attribute": A, "equals": V``: the task's (or, with ``"task": null``, the DAG's) attribute
    A, not templated, equals V (a set or list compares as a sorted list).

A check with ``"user_code": true`` also exempts its task from ``bash -n``: a command the user
wrote need not be valid bash.

Exit 0 when everything renders and every check holds; 1 otherwise, listing every failure.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from airflow_check import load_dagbag  # noqa: E402

HEADER = re.compile(r"^\s*# -{58}\n\s*# property: (\w+)\n\s*# -{58}\n", re.MULTILINE)


def render(dag, task_id: str, logical_date: str) -> dict[str, str]:
    """The properties `airflow tasks render` prints for one task, by name."""
    from airflow.cli import cli_parser
    from airflow.cli.commands import task_command

    args = cli_parser.get_parser().parse_args(["tasks", "render", dag.dag_id, task_id, logical_date])
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        task_command.task_render(args, dag=dag)
    parts = HEADER.split(out.getvalue())
    return {parts[i]: parts[i + 1] for i in range(1, len(parts) - 1, 2)}


def comparable(value):
    return sorted(value) if isinstance(value, (set, list, tuple)) else value


def main() -> int:
    dags_dir, cases_path, logical_date = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    bag = load_dagbag(dags_dir)
    failures = [f"import error in {path}: {error}" for path, error in bag.import_errors.items()]
    cases = json.loads(cases_path.read_text(encoding="utf-8"))
    # A command the user wrote is theirs to get right; fhirflow's own lines must be bash.
    user_code = {(c["dag"], c["task"]) for c in cases if c.get("user_code")}
    rendered = {}
    for dag_id, dag in sorted(bag.dags.items()):
        for task in dag.tasks:
            try:
                props = render(dag, task.task_id, logical_date)
            except Exception as error:  # noqa: BLE001
                failures.append(f"{dag_id}.{task.task_id}: render failed: {type(error).__name__}: {error}")
                continue
            rendered[(dag_id, task.task_id)] = props
            if "bash_command" in props and (dag_id, task.task_id) not in user_code:
                check = subprocess.run(["bash", "-n", "-c", props["bash_command"]], capture_output=True, text=True)
                if check.returncode != 0:
                    failures.append(f"{dag_id}.{task.task_id}: rendered bash_command is not bash: {check.stderr}")
    for case in cases:
        where = f"{case['dag']}.{case.get('task')}"
        if "attribute" in case:
            dag = bag.dags.get(case["dag"])
            owner = dag if case.get("task") is None or dag is None else dag.get_task(case["task"])
            seen = getattr(owner, case["attribute"], None)
            if comparable(seen) != comparable(case["equals"]):
                failures.append(f"{where}: {case['attribute']} is {seen!r}, expected {case['equals']!r}")
            continue
        props = rendered.get((case["dag"], case["task"]))
        if props is None:
            failures.append(f"{where}: not rendered")
            continue
        text = props.get(case["property"], "")
        for kind, wanted in (("contains", str), ("contains_repr", repr), ("contains_word", shlex.quote)):
            if kind in case and wanted(case[kind]) not in text:
                failures.append(f"{where}: {case['property']} lacks {wanted(case[kind])!r}:\n{text}")
    for failure in failures:
        print(failure, file=sys.stderr)
    print(f"airflow_render: {len(rendered)} tasks rendered, {len(cases)} checks, {len(failures)} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
