//! `plan` shows what changes inside a task (a unified diff of its command and environment),
//! and classifies each change as breaking, behavioural or metadata-only.

mod common;

use common::{edit, fhirflow};
use predicates::prelude::*;
use predicates::str::contains;

const SPEC: &str = "version: 1
pipelines:
  nightly:
    schedule: '0 2 * * *'
    tags: [team-a]
    stages:
      extract:
        kind: shell
        command: |
          echo start
          curl -s https://example.org/export > export.json
          echo done
        env: {REGION: eu-west-1, MODE: full}
      load: {kind: shell, command: echo load, after: [extract], retries: 1}
      report: {kind: shell, command: echo report, after: [load]}
";

/// The spec applied, then edited: a changed command line and variable, a retry count, a
/// tag, and a task removed.
fn edited_project() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let spec = dir.path().join("pipeline.yaml");
    std::fs::write(&spec, SPEC).expect("write spec");
    let out = dir.path().join("out");
    fhirflow_out("apply", &spec, &out).assert().success();
    edit(&spec, "export > export.json", "export?since=yesterday > export.json");
    edit(&spec, "MODE: full", "MODE: incremental");
    edit(&spec, "retries: 1", "retries: 3");
    edit(&spec, "tags: [team-a]", "tags: [team-a, nightly]");
    edit(&spec, "      report: {kind: shell, command: echo report, after: [load]}\n", "");
    (dir, spec, out)
}

/// `fhirflow VERB pipeline.yaml --out out` in `dir`, so the plan shows relative paths.
fn fhirflow_out(verb: &str, spec: &std::path::Path, out: &std::path::Path) -> assert_cmd::Command {
    let mut command = fhirflow();
    let dir = spec.parent().expect("spec folder");
    command
        .current_dir(dir)
        .arg(verb)
        .arg("pipeline.yaml")
        .arg("--out")
        .arg(out.strip_prefix(dir).expect("out in dir"));
    command
}

fn stdout(command: &mut assert_cmd::Command) -> String {
    let output = command.output().expect("run fhirflow");
    String::from_utf8(output.stdout).expect("utf-8")
}

#[test]
fn text_plan_shows_the_diff_with_diff_flag_only() {
    let (_dir, spec, out) = edited_project();
    let plain = stdout(fhirflow_out("plan", &spec, &out).arg("--detailed-exitcode"));
    assert!(!plain.contains("@@"), "{plain}");
    assert!(plain.contains("- task report [breaking]"), "{plain}");
    let text = stdout(fhirflow_out("plan", &spec, &out).arg("--diff"));
    insta::assert_snapshot!("plan_diff_text", text);
}

#[test]
fn markdown_plan_shows_the_diff_by_default() {
    let (_dir, spec, out) = edited_project();
    let markdown = stdout(fhirflow_out("plan", &spec, &out).args(["--format", "markdown"]));
    insta::assert_snapshot!("plan_diff_markdown", markdown);
    fhirflow_out("plan", &spec, &out)
        .args(["--format", "markdown", "--diff=false"])
        .assert()
        .success()
        .stdout(predicates::str::contains("```diff").not());
}

#[test]
fn json_plan_carries_classes_and_diffs_beside_the_old_keys() {
    let (_dir, spec, out) = edited_project();
    let json = stdout(fhirflow_out("plan", &spec, &out).args(["--format", "json"]));
    let doc: serde_json::Value = serde_json::from_str(&json).expect("json");
    assert_eq!(doc["format_version"], "1.0");
    assert_eq!(doc["classes"], serde_json::json!({"breaking": 1, "behavioural": 2, "metadata": 1}));
    insta::assert_snapshot!("plan_diff_json", json);
}

#[test]
fn apply_output_names_the_classes() {
    let (_dir, spec, out) = edited_project();
    fhirflow_out("apply", &spec, &out).assert().success().stdout(contains("Changes: 1 breaking"));
}

/// A test removed, a column added and a description reworded in a layer's models plan as
/// the test, column and description they are, each classed.
#[test]
fn plan_lists_dbt_tests_and_columns_added_and_removed() {
    let (dir, spec) = common::project_with("fhir.yaml");
    let out = dir.path().join("out");
    common::fhirflow_out("apply", &spec, &out).assert().success();
    edit(
        &spec,
        "          - name: patient_id\n            description: The FHIR Patient id.\n            tests: [unique, not_null]\n",
        "          - name: patient_id\n            description: The FHIR Patient id, as in the bundle.\n            tests: [not_null]\n          - name: birth_date\n            tests: [not_null]\n",
    );
    common::fhirflow_out("plan", &spec, &out)
        .assert()
        .success()
        .stdout(contains("- test unique on dim_patients.patient_id [behavioural]"))
        .stdout(contains("+ column dim_patients.birth_date [behavioural]"))
        .stdout(contains("+ test not_null on dim_patients.birth_date [behavioural]"))
        .stdout(contains("~ description of dim_patients.patient_id [metadata]"))
        .stdout(contains("Changes: 0 breaking, 3 behavioural, 1 metadata-only."));
}
