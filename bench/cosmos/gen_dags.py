"""Write the two DAG files fhirflow's output is compared with, from the same manifest.json.

Why this exists: the parse-time benchmark (bench/cosmos/run.sh) times three DAG files that
describe the same dbt project: fhirflow's (`fhirflow apply`), a static file in the style a person
would write by hand, and an Astronomer Cosmos `DbtDag`. This script writes the last two:

    python gen_dags.py static BENCH_DIR   ->  BENCH_DIR/dags_static/bench_dbt_static.py
    python gen_dags.py cosmos BENCH_DIR   ->  BENCH_DIR/dags_cosmos/bench_dbt_cosmos.py

The static file: `dbt deps` first, a `with TaskGroup(...)` block per model folder, one
BashOperator per task whose `bash_command` is a plain f-string, one explicit `a >> b` line per
edge, and the same DAG arguments and default_args as fhirflow's file (the Cosmos file has them
too). Its tasks and edges are those of fhirflow's `dbt_mode: per_model` + `tests: after_each` DAG
(see `static_tasks`); run.sh checks with check_same.py that both files load with identical task
ids, operators, groups, edges and commands before timing anything.

The Cosmos file: `DbtDag` with `LoadMode.DBT_MANIFEST` and `TestBehavior.AFTER_EACH` (each model
with tests becomes a task group holding a run task and a test task), reading the same manifest.
Cosmos renders it at parse time, i.e. on every DagBag load.

Each file is alone in its folder, so a DagBag of the folder parses exactly one file.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

PROJECT_NAME = "bench"  # dbt_project.yml `name:` written by gen_project.py


# ---------------------------------------------------------------------------- manifest


def load_models(manifest_path: Path):
    """The project's models: {name: (folder, [parent models], [names of the tests on it])}."""
    manifest = json.loads(manifest_path.read_text())
    nodes = manifest["nodes"]
    models = {}
    for node in nodes.values():
        if node["resource_type"] == "model" and node["package_name"] == PROJECT_NAME:
            parents = [nodes[p]["name"] for p in node["depends_on"]["nodes"] if p in nodes and nodes[p]["resource_type"] == "model"]
            models[node["unique_id"]] = (node["name"], node["fqn"][1], sorted(parents), [])
    for node in nodes.values():
        if node["resource_type"] == "test":
            for dep in node["depends_on"]["nodes"]:
                if dep in models:
                    models[dep][3].append(node["name"])
    return {name: (folder, parents, sorted(tests)) for name, folder, parents, tests in models.values()}


# ---------------------------------------------------------------------------- static

LAYER_ORDER = ("staging", "intermediate", "marts")


def static_tasks(models):
    """The per-model DAG's tasks, as (group, task name, dbt argv after `dbt`), and its edges.

    What fhirflow's `dbt_mode: per_model` with `tests: after_each` makes of this project: a
    `dbt deps` task first; in one task group per model folder, a `dbt run` task per model and, for
    a model with tests, a `dbt test` task of those tests after it; a model's run waits for each
    parent's last task (its test task when it has one), a model without parents for `dbt_deps`;
    an EmptyOperator `dbt_done` waits for every task nothing else waits for. Task ids are
    `<group>.<name>`.
    """
    order = sorted(models, key=lambda m: (LAYER_ORDER.index(models[m][0]), m))
    tasks, edges, last = [], [], {}
    for name in order:
        folder, parents, tests = models[name]
        run = f"{folder}.{name}_run"
        tasks.append((folder, f"{name}_run", ["run", "--select", name]))
        last[name] = run
        if tests:
            test = f"{folder}.{name}_test"
            tasks.append((folder, f"{name}_test", ["test", "--select", *tests]))
            edges.append((run, test))
            last[name] = test
    for name in order:
        edges += [(last[p], f"{models[name][0]}.{name}_run") for p in models[name][1]]
        if not models[name][1]:
            edges.append(("dbt_deps", f"{models[name][0]}.{name}_run"))
    waited_for = {a for a, _ in edges}
    exits = [f"{g}.{t}" for g, t, _ in tasks if f"{g}.{t}" not in waited_for]
    return tasks, edges, exits


STATIC_HEAD = '''\
"""dbt project `bench`, one Airflow task per dbt model and one per model's tests.

Written the way a person writes a DAG by hand: `dbt deps` first, a task group per model folder, a
BashOperator per task, an explicit edge per line."""
from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import DAG, TaskGroup
from airflow.providers.standard.operators.bash import BashOperator
from airflow.providers.standard.operators.empty import EmptyOperator

DBT_PROJECT_DIR = "{project_dir}"
DBT_PROFILES_DIR = "{profiles_dir}"

default_args = {{
    "owner": "airflow",
    "retries": 0,
    "retry_delay": timedelta(seconds=300),
    "retry_exponential_backoff": False,
    "execution_timeout": None,
    "email_on_failure": False,
}}

with DAG(
    dag_id="bench_dbt_static",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=16,
    default_args=default_args,
) as dag:
    dbt_deps = BashOperator(task_id="dbt_deps", bash_command=f"dbt deps --project-dir {{DBT_PROJECT_DIR}} --profiles-dir {{DBT_PROFILES_DIR}}")
'''


def write_static(bench: Path) -> Path:
    models = load_models(bench / "project/target/manifest.json")
    tasks, edges, exits = static_tasks(models)
    project_dir = str((bench / "project").resolve())
    lines = [STATIC_HEAD.format(project_dir=project_dir, profiles_dir=project_dir)]
    var = lambda task_id: task_id.split(".", 1)[-1]  # noqa: E731 - model names are unique
    group = None
    for folder, name, argv in tasks:
        if folder != group:
            lines.append(f'    with TaskGroup("{folder}"):\n')
            group = folder
        command, options = argv[0], " ".join(argv[1:])
        lines.append(
            f'        {name} = BashOperator(task_id="{name}", bash_command=f"dbt {command} '
            f'--project-dir {{DBT_PROJECT_DIR}} --profiles-dir {{DBT_PROFILES_DIR}} {options}")\n'
        )
    if len(exits) > 1:
        lines.append('\n    dbt_done = EmptyOperator(task_id="dbt_done")\n')
        edges = edges + [(e, "dbt_done") for e in exits]
    lines.append("\n")
    lines += [f"    {var(a)} >> {var(b)}\n" for a, b in edges]
    out = bench / "dags_static" / "bench_dbt_static.py"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(lines))
    return out


# ---------------------------------------------------------------------------- cosmos

COSMOS = '''\
"""dbt project `bench` rendered by Astronomer Cosmos from target/manifest.json at parse time."""
from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pendulum
from cosmos import DbtDag, ExecutionConfig, ProfileConfig, ProjectConfig, RenderConfig
from cosmos.constants import LoadMode, TestBehavior

PROJECT_DIR = Path(__file__).resolve().parent.parent / "project"

dag = DbtDag(
    dag_id="bench_dbt_cosmos",
    project_config=ProjectConfig(
        manifest_path=PROJECT_DIR / "target" / "manifest.json",
        project_name="bench",
    ),
    profile_config=ProfileConfig(
        profile_name="bench",
        target_name="dev",
        profiles_yml_filepath=PROJECT_DIR / "profiles.yml",
    ),
    execution_config=ExecutionConfig(dbt_project_path=PROJECT_DIR, dbt_executable_path="dbt"),
    render_config=RenderConfig(load_method=LoadMode.DBT_MANIFEST, test_behavior=TestBehavior.AFTER_EACH),
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=16,
    default_args={
        "owner": "airflow",
        "retries": 0,
        "retry_delay": timedelta(seconds=300),
        "retry_exponential_backoff": False,
        "execution_timeout": None,
        "email_on_failure": False,
    },
)
'''


def write_cosmos(bench: Path) -> Path:
    out = bench / "dags_cosmos" / "bench_dbt_cosmos.py"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(COSMOS)
    return out


def main() -> None:
    writers = {"static": write_static, "cosmos": write_cosmos}
    if len(sys.argv) != 3 or sys.argv[1] not in writers:
        sys.exit("usage: gen_dags.py static|cosmos BENCH_DIR")
    out = writers[sys.argv[1]](Path(sys.argv[2]))
    print(f"gen_dags: wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
