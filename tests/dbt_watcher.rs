//! The dbt watcher against real dbt-core (1.11 and 1.7): one `dbt build` with a broken model, a
//! failing test and the downstream dbt skips, read event by event into per-node states; then a
//! retry of only what failed and what it blocked.

mod common;

use fhirflow::run::dbt_watcher::{LOG_FORMAT_ENV, NodeState, Watch, retry_selection};
use std::path::Path;
use std::process::Command;

fn build(venv: &Path, project: &Path, select: &[String]) -> Watch {
    let mut command = Command::new(venv.join("bin/dbt"));
    command.arg("build").arg("--project-dir").arg(project).arg("--profiles-dir").arg(project);
    if !select.is_empty() {
        command.arg("--select").args(select);
    }
    let output = command
        .current_dir(project)
        .env(LOG_FORMAT_ENV.0, LOG_FORMAT_ENV.1)
        .env("DBT_DUCKDB_PATH", project.join("clinic.duckdb"))
        .env("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
        .output()
        .expect("dbt runs");
    assert_eq!(output.status.code(), Some(1), "dbt reports the failures: {}", String::from_utf8_lossy(&output.stderr));
    let mut watch = Watch::default();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        watch.feed(line);
    }
    watch
}

fn retry(project: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(project.join("target/run_results.json")).expect("run results");
    retry_selection(&text).expect("run results parse").expect("something to retry")
}

fn watch_then_retry(var: &str) {
    let Some(venv) = common::venv(var) else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    let project = dir.path().join("clinic");
    common::copy_dir(&common::repo().join("tests/fixtures/dbt_modes"), &project);
    std::fs::write(project.join("tests/assert_always_fails.sql"), "select 1 as bad\n").expect("write test");
    let stg = project.join("models/staging/stg_patients.sql");
    let good = std::fs::read_to_string(&stg).expect("read model");
    std::fs::write(&stg, "select * from {{ ref('raw_patients') }} where no_such_column = 1\n").expect("break model");

    let watch = build(&venv, &project, &[]);
    let state = |w: &Watch, id: &str| w.states().get(id).copied();
    assert_eq!(state(&watch, "seed.clinic.raw_patients"), Some(NodeState::Success));
    assert_eq!(state(&watch, "model.clinic.stg_visits"), Some(NodeState::Success));
    assert_eq!(state(&watch, "model.clinic.stg_patients"), Some(NodeState::Error));
    assert_eq!(state(&watch, "model.clinic.dim_patients"), Some(NodeState::Skipped));
    assert_eq!(state(&watch, "test.clinic.assert_always_fails"), Some(NodeState::Fail));
    let log = watch.log("model.clinic.stg_patients");
    assert!(log.iter().any(|l| l.contains("START")), "the node's log has its start: {log:?}");
    assert!(log.iter().all(|l| !l.contains('\u{1b}')), "plain text: {log:?}");

    let selection = retry(&project);
    for name in ["stg_patients", "dim_patients", "assert_always_fails", "patients_snapshot"] {
        assert!(selection.iter().any(|s| s == name), "{name} is retried: {selection:?}");
    }
    assert!(!selection.iter().any(|s| s == "stg_visits" || s == "raw_patients"), "{selection:?}");

    std::fs::write(&stg, good).expect("fix model");
    let watch = build(&venv, &project, &selection);
    assert_eq!(state(&watch, "model.clinic.stg_patients"), Some(NodeState::Success));
    assert_eq!(state(&watch, "model.clinic.dim_patients"), Some(NodeState::Success));
    assert_eq!(state(&watch, "test.clinic.assert_visits_have_patients"), Some(NodeState::Pass));
    assert_eq!(state(&watch, "model.clinic.stg_visits"), None, "what passed is not re-run");
    assert_eq!(state(&watch, "test.clinic.assert_always_fails"), Some(NodeState::Fail));
    assert_eq!(retry(&project), ["assert_always_fails"], "only the test that still fails is left");
}

#[test]
fn dbt_1_11_events_become_node_states_and_retries_rerun_what_failed() {
    watch_then_retry("FHIRFLOW_DBT_VENV");
}

#[test]
fn dbt_1_7_events_become_node_states_and_retries_rerun_what_failed() {
    watch_then_retry("FHIRFLOW_DBT17_VENV");
}

/// The dbt_modes project with generic tests declared, a singular test that fails on
/// `fct_visits`, and a table `stg_flaky` whose first build fails (a pre-hook outside its transaction counts the
/// tries)
/// with `fct_flaky` after it; parsed, so that its manifest lists them all.
fn flaky_project(venv: &Path, dir: &Path) -> std::path::PathBuf {
    let project = dir.join("dbt");
    common::copy_dir(&common::repo().join("tests/fixtures/dbt_modes"), &project);
    let write = |path: &str, text: &str| std::fs::write(project.join(path), text).expect("write");
    write(
        "models/staging/schema.yml",
        "version: 2\nmodels:\n  - name: stg_patients\n    columns:\n      - name: patient_id\n        data_tests: [not_null, unique]\n",
    );
    write(
        "models/staging/stg_flaky.sql",
        "{{ config(materialized='table', pre_hook=[{'sql': 'create table if not exists main.flaky_tries (n integer)', 'transaction': false}, {'sql': 'insert into main.flaky_tries values (1)', 'transaction': false}]) }}\nselect case when (select count(*) from main.flaky_tries) < 2 then error('the first try fails') else 1 end as ok\n",
    );
    write("models/marts/fct_flaky.sql", "select ok from {{ ref('stg_flaky') }}\n");
    write("tests/assert_no_visits.sql", "select * from {{ ref('fct_visits') }}\n");
    common::dbt_parse(venv, &project);
    project
}

/// The flaky project's spec: one per-model stage, its tests after each model, one retry.
fn per_model_spec(venv: &Path, dir: &Path, watcher: bool) -> std::path::PathBuf {
    let spec = dir.join("p.yaml");
    std::fs::write(
        &spec,
        format!(
            "version: 1\ndbt: {{project_dir: dbt, executable: {}, manifest: dbt/target/manifest.json}}\npipelines:\n  nightly:\n    stages:\n      dbt: {{kind: dbt, command: build, dbt_mode: per_model, tests: after_each, watcher: {watcher}, retries: 1, retry_delay: 1s}}\n",
            venv.join("bin/dbt").display()
        ),
    )
    .unwrap();
    spec
}

/// `fhirflow run` of the flaky project's per-model stage, watched or node by node: each task's
/// state and attempts, and the run's folder.
fn run_per_model(
    venv: &Path,
    dir: &Path,
    watcher: bool,
) -> (std::collections::BTreeMap<String, (String, u64)>, std::path::PathBuf) {
    let spec = per_model_spec(venv, dir, watcher);
    let started = std::time::Instant::now();
    let out = common::fhirflow()
        .arg("run")
        .arg(&spec)
        .args(["--max-parallel", "4", "--format", "json"])
        .env("DBT_DUCKDB_PATH", dir.join("clinic.duckdb"))
        .env("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
        .timeout(std::time::Duration::from_secs(600))
        .output()
        .unwrap();
    println!("watcher: {watcher}: {:?}", started.elapsed());
    let summary: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(out.status.code(), Some(5), "a test fails: {summary}");
    let states = summary["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let state = (t["state"].as_str().unwrap().to_owned(), t["attempts"].as_u64().unwrap());
            (t["task"].as_str().unwrap().to_owned(), state)
        })
        .collect();
    let run_dir = dir.join(".fhirflow/runs").join(summary["run_id"].as_str().unwrap()).join("nightly");
    (states, run_dir)
}

/// A watched per-model stage runs as few `dbt build`s, each task taking its state, attempts
/// and node log lines from dbt's events; a retry builds only what failed and what it blocked;
/// and every task ends as it does when the stage runs node by node.
#[test]
fn a_watched_per_model_stage_ends_as_node_by_node_with_few_builds() {
    let Some(venv) = common::venv("FHIRFLOW_DBT_VENV") else { return };
    let watched_dir = tempfile::tempdir().unwrap();
    flaky_project(&venv, watched_dir.path());
    let (watched, run_dir) = run_per_model(&venv, watched_dir.path(), true);
    let get = |id: &str| watched.get(id).cloned().unwrap_or_else(|| panic!("no task {id}: {watched:?}"));
    assert_eq!(get("staging.stg_flaky_run"), ("success".to_owned(), 2), "{watched:?}");
    assert_eq!(get("marts.fct_flaky_run"), ("success".to_owned(), 1), "{watched:?}");
    assert_eq!(get("staging.stg_patients_test"), ("success".to_owned(), 1), "{watched:?}");
    assert_eq!(get("marts.fct_visits_test"), ("failed".to_owned(), 2), "{watched:?}");
    assert_eq!(get("marts.fct_visits_run").0, "success");

    let builds: Vec<String> = (1..10)
        .map(|n| run_dir.join(format!("dbt.build.{n}.log")))
        .take_while(|p| p.exists())
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    assert!((2..=3).contains(&builds.len()), "one build, then the retries: {} builds", builds.len());
    assert!(builds[0].contains("main.stg_patients"), "the first build builds the stage");
    for later in &builds[1..] {
        assert!(!later.contains("model main.stg_patients"), "a retry build rebuilds only what failed");
    }
    assert!(builds[1..].iter().any(|b| b.contains("main.fct_flaky")), "the retry rebuilds what the failure blocked");
    let log = std::fs::read_to_string(run_dir.join("staging.stg_patients_run.1.log")).unwrap();
    assert!(log.contains("OK created sql view model main.stg_patients"), "the node's lines: {log}");

    let by_node_dir = tempfile::tempdir().unwrap();
    flaky_project(&venv, by_node_dir.path());
    let (by_node, _) = run_per_model(&venv, by_node_dir.path(), false);
    assert_eq!(watched, by_node, "the same states and attempts, watched or node by node");
}

/// {task: [state, try number]} as airflow_clear_rerun.sh writes it.
type AirflowStates = std::collections::BTreeMap<String, (Option<String>, u64)>;

/// The watched stage in real Airflow: the DagBag holds what the graph says (one `dbt_build`
/// task, every other task a sensor with its own dbt line); `airflow dags test` ends every task
/// in the state and with the tries it has under `fhirflow run` (the flaky model passes on its
/// retry, which builds it alone; the failing test fails twice), while `dbt_build` runs once; then
/// `airflow tasks clear` of a model task and its downstream makes that model and the tests that
/// gate it build again, in their own dbt processes, and leaves the build task alone.
fn watched_in_airflow(var: &str) {
    let Some(airflow) = common::venv(var) else { return };
    let Some(dbt) = common::venv("FHIRFLOW_DBT_VENV") else { return };
    let run_dir = tempfile::tempdir().unwrap();
    flaky_project(&dbt, run_dir.path());
    let (under_run, _) = run_per_model(&dbt, run_dir.path(), true);

    let dir = tempfile::tempdir().unwrap();
    let project = flaky_project(&dbt, dir.path());
    let spec = per_model_spec(&dbt, dir.path(), true);
    let version = if var == "FHIRFLOW_AIRFLOW2_VENV" { 2 } else { 3 };
    let text = std::fs::read_to_string(&spec).unwrap();
    std::fs::write(&spec, format!("{text}airflow: {{version: {version}}}\n")).unwrap();
    common::fhirflow().arg("apply").arg(&spec).assert().success();
    let dags = dir.path().join("dags");
    let compiled = fhirflow::compile_file(&spec).expect("the spec compiles");
    let pools = fhirflow::emit::DuckdbPools::of(&compiled.graph, &fhirflow::emit::Layout::new(&spec, None));
    let expect = dir.path().join("expect.json");
    std::fs::write(&expect, compiled.graph.expectations_with_pools(|t| pools.task_pool(t)).to_string()).unwrap();
    let check = Command::new(airflow.join("bin/python"))
        .arg(common::repo().join("tests/conformance/airflow_check.py"))
        .arg(&dags)
        .arg(&expect)
        .output()
        .unwrap();
    assert!(check.status.success(), "{var}: {}", String::from_utf8_lossy(&check.stdout));
    // With one pool slot, the scheduler takes the highest priority first: sensors that come back
    // every 5 s must never outrank the build they wait for. Only the stage's Python tasks are
    // compared: a `dbt deps` task, upstream of them all, sums their weights under its own rule.
    let probe = r#"
import json, os, sys, tempfile
os.environ["AIRFLOW_HOME"] = tempfile.mkdtemp()
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
try:
    from airflow.dag_processing.dagbag import DagBag
except ImportError:
    from airflow.models.dagbag import DagBag
bag = DagBag(sys.argv[1])
assert not bag.import_errors, bag.import_errors
dag = bag.dags["nightly"]
try:
    # Airflow 3 computes priorities on the scheduler's side, from the serialized DAG.
    from airflow.serialization.serialized_objects import DagSerialization
    dag = DagSerialization.deserialize_dag(DagSerialization.serialize_dag(dag))
except ImportError:
    pass
def weight(task):
    if hasattr(task, "priority_weight_total"):  # Airflow 2
        return task.priority_weight_total
    # Airflow 3: the scheduler asks the task's weight rule, per task instance.
    from types import SimpleNamespace
    return task.weight_rule.get_weight(SimpleNamespace(task=task))
watched = ("PythonSensor", "PythonOperator")
print(json.dumps({t.task_id: weight(t) for t in dag.tasks if t.task_type in watched}))
"#;
    let out = Command::new(airflow.join("bin/python")).args(["-c", probe]).arg(&dags).output().unwrap();
    assert!(out.status.success(), "{var}: {}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let priorities: std::collections::BTreeMap<String, i64> =
        serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap();
    let top = priorities.iter().filter(|(task, _)| *task != "dbt_build").map(|(_, w)| *w).max().unwrap();
    assert!(priorities["dbt_build"] > top, "{var}: the build task outranks its sensors: {priorities:?}");

    let (before, after) = (dir.path().join("before.json"), dir.path().join("after.json"));
    let out = Command::new("bash")
        .arg(common::repo().join("tests/conformance/airflow_clear_rerun.sh"))
        .arg(&airflow)
        .arg(&dags)
        .args(["nightly", "staging.stg_patients_run"])
        .arg(&before)
        .arg(&after)
        .env("DBT_DUCKDB_PATH", dir.path().join("clinic.duckdb"))
        .env("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{var}: {stderr}");
    let read = |path: &Path| -> AirflowStates {
        let rows: std::collections::BTreeMap<String, (Option<String>, u64)> =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        rows
    };
    let (before, after) = (read(&before), read(&after));
    let build = ("dbt_build".to_owned(), (Some("success".to_owned()), 1));
    assert_eq!(before.get(&build.0), Some(&build.1), "{var}: {before:?}");
    let in_airflow: std::collections::BTreeMap<String, (String, u64)> = before
        .iter()
        .filter(|(task, _)| **task != build.0)
        .map(|(task, (state, tries))| (task.clone(), (state.clone().unwrap_or_default(), *tries)))
        .collect();
    assert_eq!(in_airflow, under_run, "{var}: Airflow's states and tries, then fhirflow run's");

    let rerun = ["staging.stg_patients_run", "staging.stg_patients_test", "marts.dim_patients_run"];
    for task in rerun {
        let (state, tries) = &before[task];
        assert_eq!(after[task], (state.clone(), tries + 1), "{var}: {task} ran again: {after:?}");
    }
    for task in ["dbt_build", "staging.stg_visits_run", "staging.stg_flaky_run"] {
        assert_eq!(after[task], before[task], "{var}: {task} is not downstream of the cleared task");
    }
    let log = std::fs::read_to_string(project.join("logs/dbt.log")).unwrap();
    for line in [
        "1 of 1 OK created sql view model main.stg_patients",
        "of 2 PASS not_null_stg_patients_patient_id",
        "of 2 PASS unique_stg_patients_patient_id",
    ] {
        assert!(log.contains(line), "{var}: the cleared model and its tests ran on their own: no `{line}`");
    }
}

#[test]
fn a_watched_stage_in_airflow_3_ends_as_under_run_and_a_cleared_model_builds_again() {
    watched_in_airflow("FHIRFLOW_AIRFLOW_VENV");
}

#[test]
fn a_watched_stage_in_airflow_2_ends_as_under_run_and_a_cleared_model_builds_again() {
    watched_in_airflow("FHIRFLOW_AIRFLOW2_VENV");
}
