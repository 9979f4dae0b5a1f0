"""Check a per-model DAG against dbt's own graph, read straight from manifest.json.

Usage (with the python of a venv that has apache-airflow 3.3 or 2.11 installed):

    python per_model_check.py DAGS_DIR DAG_ID MANIFEST_JSON PLACEMENT [SELECTED_JSON]

PLACEMENT is the stage's `tests:` (none, after_each, after_layer or build). This script
shares no code with fhirflow: it derives the expected graph from the manifest itself.

* SELECTED_JSON, when given, lists the unique ids `dbt ls --select … --exclude …` printed for
  the stage's selection; only those nodes (minus ephemeral models) may have tasks.
* Which node a task runs is read from its real command line in the DagBag: the word after
  `--select` (a node name, or `path:<file>`). Every model, seed and snapshot that is not
  ephemeral must have exactly one task, and no other node may.
* dbt's edges between those nodes are `depends_on.nodes`, followed through ephemeral models
  (which are compiled into their children and run as no task) and through nodes the
  selection leaves out.
* `none` and `build`: the DAG's edges between node tasks equal dbt's edges, exactly.
* `after_each` and `after_layer`: tests sit between a model and its children, so the check
  is on reachability: with `after_each`, node task B is downstream of node task A in the DAG
  exactly when B depends on A in dbt, directly or not; with `after_layer`, whenever (a
  layer's test task also holds back the next layer). And every data test on the selected models is
  run by exactly one `dbt test` task that comes after all of the test's parents.

Exit 0 when everything matches, 1 otherwise.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path


def selected(words: list[str]) -> list[str]:
    if "--select" not in words:
        return []
    out = []
    for word in words[words.index("--select") + 1 :]:
        if word.startswith("--"):
            break
        out.append(word)
    return out


def main(argv: list[str]) -> int:
    if len(argv) not in (5, 6):
        print(__doc__, file=sys.stderr)
        return 2
    dags_dir, dag_id, manifest_path, placement = Path(argv[1]).resolve(), argv[2], Path(argv[3]), argv[4]
    manifest = json.loads(manifest_path.read_text())
    nodes = manifest["nodes"]
    project = manifest["metadata"]["project_name"]

    def ephemeral(uid):
        return nodes[uid]["config"].get("materialized") == "ephemeral"

    runnable = {
        uid
        for uid, n in nodes.items()
        if n["resource_type"] in ("model", "seed", "snapshot") and n["package_name"] == project and not ephemeral(uid)
    }
    if len(argv) == 6:
        listed = set(json.loads(Path(argv[5]).read_text()))
        runnable &= listed
    by_name = defaultdict(list)
    by_path = {}
    for uid in runnable:
        by_name[nodes[uid]["name"]].append(uid)
        by_path["path:" + nodes[uid]["original_file_path"]] = uid

    def real_parents(uid):
        """The task nodes a node waits for: through ephemeral models and, as in dbt's own run
        queue for a selection, through nodes left out of it."""
        out = set()
        for parent in nodes[uid]["depends_on"].get("nodes", []):
            if parent not in nodes:
                continue  # a source
            if parent in runnable:
                out.add(parent)
            else:
                out |= real_parents(parent)
        return out

    expected_edges = {(p, uid) for uid in runnable for p in real_parents(uid)}

    # Loaded exactly as the general check loads it, for either Airflow major version.
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from airflow_check import isolate_airflow_home, load_dagbag, run_commands

    isolate_airflow_home(dags_dir)
    bag = load_dagbag(dags_dir)
    if bag.import_errors:
        print(f"per_model_check: FAIL: import errors {bag.import_errors}")
        return 1
    dag = bag.dags[dag_id]
    problems = []
    node_task = {}
    test_tasks = {}
    for task in dag.tasks:
        found = run_commands(task)
        words = found[0][-1] if found else []
        if len(words) < 2 or "--project-dir" not in words:
            continue
        # dbt's own global flags (`--warn-error-options JSON`) come before the command.
        rest = words[1:]
        while len(rest) > 1 and rest[0].startswith("--"):
            rest = rest[2:]
        command = rest[0] if rest else ""
        picks = selected(words)
        if command in ("run", "seed", "snapshot", "build"):
            if len(picks) != 1:
                problems.append(f"{task.task_id}: expected one --select word, got {picks}")
                continue
            pick = picks[0]
            uid = by_path.get(pick) or (by_name[pick][0] if len(by_name[pick]) == 1 else None)
            if uid is None:
                problems.append(f"{task.task_id}: --select {pick} is no single runnable node")
            elif uid in node_task:
                problems.append(f"{uid}: two tasks, {node_task[uid]} and {task.task_id}")
            else:
                node_task[uid] = task.task_id
        elif command == "test":
            test_tasks[task.task_id] = picks
    for uid in sorted(runnable - node_task.keys()):
        problems.append(f"{uid}: no task")

    task_node = {t: uid for uid, t in node_task.items()}
    downstream = {t.task_id: set(t.downstream_task_ids) for t in dag.tasks}

    def reach(start):
        seen, stack = set(), [start]
        while stack:
            for nxt in downstream[stack.pop()]:
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append(nxt)
        return seen

    if placement in ("none", "build"):
        actual = {
            (task_node[u], task_node[t.task_id])
            for t in dag.tasks
            if t.task_id in task_node
            for u in t.upstream_task_ids
            if u in task_node
        }
        for edge in sorted(expected_edges - actual):
            problems.append(f"dbt edge {edge[0]} -> {edge[1]} missing in the DAG")
        for edge in sorted(actual - expected_edges):
            problems.append(f"DAG edge {edge[0]} -> {edge[1]} is not in dbt's graph")
        if placement == "none" and test_tasks:
            problems.append(f"tests: none, yet test tasks {sorted(test_tasks)}")
    else:
        ancestors = {}

        def ancestors_of(uid):
            if uid not in ancestors:
                found = set()
                for p in real_parents(uid):
                    found |= {p} | ancestors_of(p)
                ancestors[uid] = found
            return ancestors[uid]

        for uid, task_id in node_task.items():
            below = {task_node[t] for t in reach(task_id) if t in task_node}
            want = {d for d in runnable if uid in ancestors_of(d)}
            for d in sorted(want - below):
                problems.append(f"{d} depends on {uid} in dbt but does not wait for it in the DAG")
            # after_layer: a layer's test task holds back the whole next layer, by design.
            if placement == "after_each":
                for d in sorted(below - want):
                    problems.append(f"{d} waits for {uid} in the DAG but does not depend on it in dbt")
        tests = {
            uid: n
            for uid, n in nodes.items()
            if n["resource_type"] == "test" and any(p in runnable for p in n["depends_on"].get("nodes", []))
        }
        runs = defaultdict(list)
        for task_id, names in test_tasks.items():
            for name in names:
                runs[name].append(task_id)
        for uid, test in sorted(tests.items()):
            where = runs.get(test["name"], [])
            if len(where) != 1:
                problems.append(f"test {uid} runs in {len(where)} tasks: {where}")
                continue
            above = {task_node[t] for t in node_task.values() if where[0] in reach(t)}
            for parent in test["depends_on"].get("nodes", []):
                if parent in runnable and parent not in above:
                    problems.append(f"test {uid} may run before its parent {parent}")

    if problems:
        print("\n".join(f"MISMATCH {p}" for p in problems))
        print(f"per_model_check: FAIL: {len(problems)} problem(s) in {dag_id}")
        return 1
    print(
        f"per_model_check: {dag_id} ({placement}): {len(node_task)} node tasks, {len(test_tasks)} test tasks, "
        f"{len(expected_edges)} dbt edges match"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
