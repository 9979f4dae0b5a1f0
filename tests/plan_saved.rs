//! Saved plans: `plan --save-plan FILE` then `apply --plan FILE` applies exactly that plan,
//! and refuses, before writing anything, when the spec or the files changed since.

mod common;

use common::{edit, fhirflow};
use predicates::str::contains;
use std::path::Path;

const SPEC: &str = "version: 1
pipelines:
  nightly:
    schedule: '0 2 * * *'
    stages:
      extract: {kind: shell, command: echo extract}
      load: {kind: shell, command: echo load, after: [extract], retries: 1}
";

fn run(dir: &Path, args: &[&str]) -> assert_cmd::Command {
    let mut command = fhirflow();
    command.current_dir(dir).args(args);
    command
}

/// A project applied once, then with its retries edited and the plan saved to `plan.json`.
fn saved_project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("pipeline.yaml"), SPEC).expect("write spec");
    run(dir.path(), &["apply", "pipeline.yaml", "--out", "out"]).assert().success();
    edit(&dir.path().join("pipeline.yaml"), "retries: 1", "retries: 3");
    run(dir.path(), &["plan", "pipeline.yaml", "--out", "out", "--save-plan", "plan.json"])
        .assert()
        .success()
        .stdout(contains("retries: 1 → 3"));
    dir
}

fn dag(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("out/dags/nightly.py")).expect("dag")
}

#[test]
fn apply_applies_the_saved_plan() {
    let dir = saved_project();
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("plan.json")).unwrap()).unwrap();
    assert_eq!(saved["format_version"], "1.0");
    assert_eq!(saved["files"][0]["path"], "dags/nightly.py");
    assert_eq!(saved["files"][0]["action"], "change");
    run(dir.path(), &["apply", "pipeline.yaml", "--out", "out", "--plan", "plan.json"])
        .assert()
        .success()
        .stdout(contains("Apply complete: 0 added, 1 changed, 0 removed."));
    assert_eq!(Some(dag(dir.path())), saved["files"][0]["contents"].as_str().map(str::to_owned));
    run(dir.path(), &["plan", "pipeline.yaml", "--out", "out", "--detailed-exitcode"]).assert().code(0);
}

#[test]
fn apply_refuses_a_saved_plan_when_the_spec_changed() {
    let dir = saved_project();
    let before = dag(dir.path());
    edit(&dir.path().join("pipeline.yaml"), "retries: 3", "retries: 4");
    run(dir.path(), &["apply", "pipeline.yaml", "--out", "out", "--plan", "plan.json"])
        .assert()
        .code(4)
        .stderr(contains("pipeline.yaml"))
        .stderr(contains("the spec changed since the plan was saved; nothing was written"));
    assert_eq!(dag(dir.path()), before);
}

#[test]
fn apply_refuses_a_saved_plan_when_a_file_on_disk_changed() {
    let dir = saved_project();
    let path = dir.path().join("out/dags/nightly.py");
    let edited = dag(dir.path()).replacen("echo load", "echo loaded", 1);
    std::fs::write(&path, &edited).unwrap();
    run(dir.path(), &["apply", "pipeline.yaml", "--out", "out", "--plan", "plan.json", "--force"])
        .assert()
        .code(4)
        .stderr(contains("nightly.py"))
        .stderr(contains("the file on disk changed since the plan was saved"));
    assert_eq!(dag(dir.path()), edited);
}

#[test]
fn apply_refuses_a_plan_saved_for_another_spec() {
    let dir = saved_project();
    std::fs::copy(dir.path().join("pipeline.yaml"), dir.path().join("other.yaml")).unwrap();
    run(dir.path(), &["apply", "other.yaml", "--out", "out", "--plan", "plan.json"])
        .assert()
        .code(4)
        .stderr(contains("saved for another SPEC"));
}
