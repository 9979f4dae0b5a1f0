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
