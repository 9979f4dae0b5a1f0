//! A `watcher: true` per-model dbt stage in Airflow: its build task runs one `dbt build` whose
//! JSON events it writes to a folder beside the dbt project, and each of its other tasks is a
//! sensor (`mode="reschedule"`, so waiting holds no worker slot) that takes its nodes' states
//! from those events as they come, and builds its nodes itself when it runs again.
//!
//! The folder is `<project>/target/fhirflow_watch/<dag>/<run>/<stage>/`: `build-N/events.jsonl`
//! and `build-N/exit` per build, `consumed/<task>` the build a task last read. So the build task
//! and the stage's tasks must share that folder (one worker, or a shared volume), as they share
//! the project.

use super::super::literal::{Language, literal, quoted};
use crate::graph::WatchedNodes;
use serde_json::json;
use std::collections::BTreeSet;

/// The functions every watched stage's tasks call.
pub(super) const HELPERS: &str = include_str!("../../../templates/airflow/dbt_watcher.py");

/// Whether the build task has finished in this DAG run: through the Task SDK in Airflow 3, and
/// the task instance in the metadata database in Airflow 2.
pub(super) fn task_finished(version: u32) -> &'static str {
    if version == 2 {
        r#"def _watched_task_finished(context, task_id):
    """Whether task_id has finished (run, failed or was skipped) in this DAG run."""
    other = context["dag_run"].get_task_instance(task_id)
    state = None if other is None else other.state
    return str(getattr(state, "value", state)) in _TASK_FINISHED"#
    } else {
        r#"def _watched_task_finished(context, task_id):
    """Whether task_id has finished (run, failed or was skipped) in this DAG run."""
    ti = context["ti"]
    states = ti.get_task_states(dag_id=ti.dag_id, task_ids=[task_id], run_ids=[ti.run_id])
    state = (states.get(ti.run_id) or {}).get(task_id)
    return str(getattr(state, "value", state)) in _TASK_FINISHED"#
    }
}

/// Seconds between a watched task's looks at the build's events.
const POKE_SECONDS: u32 = 5;

/// The build task's priority: the highest Airflow stores, so a one-slot DuckDB pool full of the
/// stage's rescheduled sensors (whose downstream weights are larger) cannot keep it waiting.
const BUILD_PRIORITY: &str = "2147483647";

/// The keyword arguments of one task of a watched stage: `command` is the task's own dbt command
/// line as a Python expression (the build's, for the build task), `env` its environment pairs.
pub(super) fn kwargs(
    watch: &WatchedNodes,
    stage: &str,
    command: String,
    env: &[(String, String)],
    uses: &mut BTreeSet<&'static str>,
    kwargs: &mut Vec<(String, String)>,
) {
    uses.insert("watcher");
    let env = if env.is_empty() { "None".to_owned() } else { super::python_dict(env) };
    let root = "os.path.join(DBT_PROJECT_DIR, \"target\", \"fhirflow_watch\")";
    let common = format!("\"command\": {command}, \"env\": {env}, \"root\": {root}, \"stage\": {}", quoted(stage));
    if watch.is_build {
        uses.insert("python");
        kwargs.push(("python_callable".into(), "_dbt_watched_build".into()));
        kwargs.push(("op_kwargs".into(), format!("{{{common}}}")));
        kwargs.push(("priority_weight".into(), BUILD_PRIORITY.into()));
        kwargs.push(("weight_rule".into(), quoted("absolute")));
    } else {
        let nodes: Vec<&str> = watch.nodes.iter().map(|(id, _)| id.as_str()).collect();
        kwargs.push(("python_callable".into(), "_dbt_watched_node".into()));
        kwargs.push((
            "op_kwargs".into(),
            format!(
                "{{\"build_task\": {}, \"nodes\": {}, {common}}}",
                quoted(&watch.build_task),
                literal(Language::Python, &json!(nodes))
            ),
        ));
        kwargs.push(("mode".into(), quoted("reschedule")));
        kwargs.push(("poke_interval".into(), POKE_SECONDS.to_string()));
    }
}
