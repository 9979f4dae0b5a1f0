//! End-to-end tests of the `fhirflow` command line, as a user runs it.

mod common;

use common::{edit, fhirflow, fhirflow_out, project_with, repo};
use predicates::prelude::*;
use predicates::str::contains;

#[test]
fn validate_accepts_both_seed_specs() {
    for spec in ["pipelines/fhir.yaml", "pipelines/dental_clinic.yaml"] {
        fhirflow()
            .current_dir(repo())
            .args(["validate", spec])
            .assert()
            .success()
            .stdout(contains("valid"));
    }
}

#[test]
fn apply_then_plan_shows_no_changes() {
    let (dir, spec) = project_with("fhir.yaml");
    let out = dir.path().join("out");
    fhirflow_out("apply", &spec, &out)
        .assert()
        .success()
        .stdout(contains("Apply complete: 8 added"));
    fhirflow_out("plan", &spec, &out)
        .arg("--detailed-exitcode")
        .assert()
        .code(0)
        .stdout(contains("No changes"));
    fhirflow_out("apply", &spec, &out)
        .arg("--check")
        .assert()
        .code(0);
}

#[test]
fn a_schedule_edit_makes_plan_exit_2_and_name_it() {
    let (dir, spec) = project_with("fhir.yaml");
    let out = dir.path().join("out");
    fhirflow_out("apply", &spec, &out).assert().success();
    edit(
        &spec,
        "schedule: \"*/10 * * * *\"",
        "schedule: \"*/15 * * * *\"",
    );
    fhirflow_out("plan", &spec, &out)
        .arg("--detailed-exitcode")
        .assert()
        .code(2)
        .stdout(contains("dags/dbt_transform_fhir.py"))
        .stdout(contains("~ schedule: \"*/10 * * * *\" → \"*/15 * * * *\""))
        .stdout(contains("Plan: 0 to add, 1 to change, 0 to remove."));
    fhirflow_out("apply", &spec, &out)
        .arg("--check")
        .assert()
        .code(2);
}

#[test]
fn plan_names_added_removed_renamed_and_changed_tasks() {
    let (dir, spec) = project_with("fhir.yaml");
    let out = dir.path().join("out");
    fhirflow_out("apply", &spec, &out).assert().success();
    edit(&spec, "  dbt_docs_generate:", "  dbt_docs_build:");
    edit(
        &spec,
        "check_dbt_installation:\n        kind: shell",
        "check_dbt_installation:\n        retries: 3\n        kind: shell",
    );
    let assert = fhirflow_out("plan", &spec, &out)
        .arg("--format")
        .arg("json")
        .assert()
        .success();
    let plan: serde_json::Value =
        serde_json::from_slice(&assert.get_output().stdout).expect("JSON plan");
    assert_eq!(plan["format_version"], "1.0");
    let details = plan["changes"][0]["details"].to_string();
    assert!(
        details
            .contains(r#""type":"task_renamed","from":"dbt_docs_generate","to":"dbt_docs_build""#),
        "{details}"
    );
    assert!(
        details.contains(r#""task":"check_dbt_installation""#)
            && details.contains("retries: 1 → 3"),
        "{details}"
    );
}

#[test]
fn markdown_plan_is_a_pr_comment() {
    let (dir, spec) = project_with("dental_clinic.yaml");
    let out = dir.path().join("out");
    fhirflow_out("plan", &spec, &out)
        .args(["--format", "markdown"])
        .assert()
        .success()
        .stdout(contains("### fhirflow plan"))
        .stdout(contains("| `+` |"))
        .stdout(contains("**Plan: 6 to add, 0 to change, 0 to remove.**"));
}

#[test]
fn apply_refuses_hand_edited_files_and_writes_nothing() {
    let (dir, spec) = project_with("fhir.yaml");
    let out = dir.path().join("out");
    fhirflow_out("apply", &spec, &out).assert().success();
    let dag = out.join("dags/dbt_transform_fhir.py");
    edit(&dag, "retries=0", "retries=9");
    edit(&spec, "batch_size: 100", "batch_size: 50");
    let before = std::fs::read_to_string(out.join("dags/s3_to_snowflake_load.py")).unwrap();
    edit(
        &spec,
        "description: Run the dbt",
        "description: Now run the dbt",
    );
    fhirflow_out("apply", &spec, &out)
        .assert()
        .code(4)
        .stdout(contains("edited by hand"))
        .stderr(contains("refusing to overwrite").and(contains("dbt_transform_fhir.py")));
    assert_eq!(
        std::fs::read_to_string(out.join("dags/s3_to_snowflake_load.py")).unwrap(),
        before,
        "nothing is written"
    );
    fhirflow_out("apply", &spec, &out)
        .arg("--force")
        .assert()
        .success();
    assert!(
        std::fs::read_to_string(&dag)
            .unwrap()
            .contains("Now run the dbt")
    );
}

#[test]
fn apply_refuses_files_it_did_not_write() {
    let (dir, spec) = project_with("dental_clinic.yaml");
    let out = dir.path().join("out");
    std::fs::create_dir_all(out.join("dags")).unwrap();
    std::fs::write(
        out.join("dags/dbt_dental_clinic_nightly.py"),
        "# my own DAG\n",
    )
    .unwrap();
    fhirflow_out("apply", &spec, &out)
        .assert()
        .code(4)
        .stderr(contains("not written by fhirflow"));
    assert_eq!(
        std::fs::read_to_string(out.join("dags/dbt_dental_clinic_nightly.py")).unwrap(),
        "# my own DAG\n"
    );
}

#[test]
fn apply_removes_stale_files_of_its_own_spec_only() {
    let (dir, spec) = project_with("dental_clinic.yaml");
    let out = dir.path().join("out");
    fhirflow_out("apply", &spec, &out).assert().success();
    let other = out.join("dags/other.py");
    std::fs::write(&other, "# Generated by fhirflow from other.yaml. Do not edit.\n# fhirflow-spec: other.yaml\n# fhirflow-sha256: x\n").unwrap();
    let text = std::fs::read_to_string(&spec).unwrap();
    let cut = text
        .find("  dbt_dental_clinic_layered:")
        .expect("layered pipeline");
    std::fs::write(&spec, &text[..cut]).unwrap();
    fhirflow_out("apply", &spec, &out)
        .assert()
        .success()
        .stdout(contains("- ").and(contains("dbt_dental_clinic_layered.py")))
        .stdout(contains("1 removed"));
    assert!(!out.join("dags/dbt_dental_clinic_layered.py").exists());
    assert!(other.exists(), "another spec's file is left alone");
}

#[test]
fn out_of_the_box_paths_are_relative_to_the_spec() {
    let (dir, spec) = project_with("dental_clinic.yaml");
    fhirflow().arg("apply").arg(&spec).assert().success();
    assert!(
        dir.path()
            .join("dags/dbt_dental_clinic_nightly.py")
            .exists()
    );
}

#[test]
fn invalid_spec_exits_1_with_located_errors() {
    let (_dir, spec) = project_with("fhir.yaml");
    edit(&spec, "after: [dbt_run_staging]", "after: [dbt_run_stagng]");
    fhirflow()
        .arg("validate")
        .arg(&spec)
        .assert()
        .code(1)
        .stderr(contains("error[unknown-stage]"))
        .stderr(contains("fhir.yaml:"))
        .stderr(contains("did you mean `dbt_run_staging`?"));
}

#[test]
fn io_and_usage_errors_have_their_own_codes() {
    fhirflow()
        .args(["validate", "/nonexistent/spec.yaml"])
        .assert()
        .code(3)
        .stderr(contains("cannot read"));
    fhirflow().args(["plan"]).assert().code(2);
    fhirflow().args(["frobnicate"]).assert().code(2);
}

#[test]
fn non_utf8_spec_is_a_located_error() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("bad.yaml");
    std::fs::write(&spec, b"version: 1\npipelines:\n  p\xff: {}\n").unwrap();
    fhirflow()
        .arg("validate")
        .arg(&spec)
        .assert()
        .code(1)
        .stderr(contains("not UTF-8"))
        .stderr(contains("bad.yaml:3:4"));
}

#[test]
fn schema_command_prints_the_committed_schema() {
    let committed = std::fs::read_to_string(repo().join("schemas/pipeline.schema.json")).unwrap();
    fhirflow()
        .arg("schema")
        .assert()
        .success()
        .stdout(committed);
}

#[test]
fn graph_renders_mermaid_dot_and_json() {
    let spec = repo().join("pipelines/fhir.yaml");
    fhirflow()
        .arg("graph")
        .arg(&spec)
        .assert()
        .success()
        .stdout(contains("flowchart LR").and(contains(
            "s3_to_snowflake_load__update_watermark -.-> dbt_transform_fhir__wait_for_s3_load",
        )));
    fhirflow()
        .arg("graph")
        .arg(&spec)
        .args(["--format", "dot"])
        .assert()
        .success()
        .stdout(contains("digraph fhirflow"));
    fhirflow()
        .arg("graph")
        .arg(&spec)
        .args(["--format", "json"])
        .assert()
        .success()
        .stdout(contains("\"format_version\": 1"));
}

#[test]
fn every_spec_starts_with_a_schema_modeline() {
    for spec in ["fhir.yaml", "dental_clinic.yaml"] {
        let text = std::fs::read_to_string(repo().join("pipelines").join(spec)).unwrap();
        assert!(
            text.starts_with("# yaml-language-server: $schema=../schemas/pipeline.schema.json\n"),
            "{spec}"
        );
    }
}
