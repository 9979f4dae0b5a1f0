//! End-to-end tests of the `fhirflow` command line, as a user runs it.

mod common;

use common::{edit, fhirflow, fhirflow_out, project_with, repo};
use predicates::prelude::*;
use predicates::str::contains;

#[test]
fn validate_accepts_both_seed_specs() {
    for spec in ["pipelines/fhir.yaml", "pipelines/dental_clinic.yaml"] {
        fhirflow().current_dir(repo()).args(["validate", spec]).assert().success().stdout(contains("valid"));
    }
}

#[test]
fn apply_then_plan_shows_no_changes() {
    let (dir, spec) = project_with("fhir.yaml");
    let out = dir.path().join("out");
    fhirflow_out("apply", &spec, &out).assert().success().stdout(contains("Apply complete: 8 added"));
    fhirflow_out("plan", &spec, &out).arg("--detailed-exitcode").assert().code(0).stdout(contains("No changes"));
    fhirflow_out("apply", &spec, &out).arg("--check").assert().code(0);
}

#[test]
fn a_schedule_edit_makes_plan_exit_2_and_name_it() {
    let (dir, spec) = project_with("fhir.yaml");
    let out = dir.path().join("out");
    fhirflow_out("apply", &spec, &out).assert().success();
    edit(&spec, "schedule: \"*/10 * * * *\"", "schedule: \"*/15 * * * *\"");
    fhirflow_out("plan", &spec, &out)
        .arg("--detailed-exitcode")
        .assert()
        .code(2)
        .stdout(contains("dags/dbt_transform_fhir.py"))
        .stdout(contains("~ schedule: \"*/10 * * * *\" → \"*/15 * * * *\""))
        .stdout(contains("Plan: 0 to add, 1 to change, 0 to remove."));
    fhirflow_out("apply", &spec, &out).arg("--check").assert().code(2);
}

/// Moving the dbt DAG from the sensor to the load's asset, and adding a trigger, plan as the
/// schedule, outlet and trigger changes they are.
#[test]
fn plan_shows_asset_and_trigger_changes() {
    let (dir, spec) = project_with("fhir.yaml");
    let out = dir.path().join("out");
    fhirflow_out("apply", &spec, &out).assert().success();
    edit(&spec, "    schedule: \"*/10 * * * *\"\n", "    schedule: {assets: [lake.raw_bundles]}\n");
    edit(
        &spec,
        "        command: dbt --version\n        after: [wait_for_s3_load]\n",
        "        command: dbt --version\n",
    );
    edit(
        &spec,
        "      wait_for_s3_load:\n        kind: sensor\n        pipeline: s3_to_snowflake_load\n        stage: load\n        skipped_states: [skipped]\n        timeout: 30m\n        poke_interval: 1m\n        mode: reschedule\n",
        "",
    );
    edit(
        &spec,
        "        command: aws s3 sync /opt/airflow/output/bundles s3://synthea-fhir-data-dump/raw/patients/\n",
        "        command: aws s3 sync /opt/airflow/output/bundles s3://synthea-fhir-data-dump/raw/patients/\n        produces: [lake.raw_bundles]\n      start_load:\n        kind: trigger\n        pipeline: s3_to_snowflake_load\n        after: [upload_bundles]\n",
    );
    fhirflow_out("plan", &spec, &out)
        .arg("--detailed-exitcode")
        .assert()
        .code(2)
        .stdout(contains("~ schedule: \"*/10 * * * *\" → \"assets: lake.raw_bundles\""))
        .stdout(contains("- task wait_for_s3_load"))
        .stdout(contains("+ task start_load"))
        .stdout(contains("~ task upload_bundles: outlets: none → [\"lake.raw_bundles\"]"));
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
    let assert = fhirflow_out("plan", &spec, &out).arg("--format").arg("json").assert().success();
    let plan: serde_json::Value = serde_json::from_slice(&assert.get_output().stdout).expect("JSON plan");
    assert_eq!(plan["format_version"], "1.0");
    let details = plan["changes"][0]["details"].to_string();
    assert!(details.contains(r#""type":"task_renamed","from":"dbt_docs_generate","to":"dbt_docs_build""#), "{details}");
    assert!(
        details.contains(r#""task":"check_dbt_installation""#)
            && details.contains(r#"{"field":"retries","old":1,"new":3}"#),
        "{details}"
    );
}

/// Values in a JSON plan are JSON values, not JSON text quoted again.
#[test]
fn plan_json_values_are_not_encoded_twice() {
    let (dir, spec) = project_with("fhir.yaml");
    let out = dir.path().join("out");
    fhirflow_out("apply", &spec, &out).assert().success();
    edit(&spec, "schedule: \"*/10 * * * *\"", "schedule: \"*/15 * * * *\"");
    let assert = fhirflow_out("plan", &spec, &out).args(["--format", "json"]).assert().success();
    let plan: serde_json::Value = serde_json::from_slice(&assert.get_output().stdout).expect("JSON plan");
    let setting = plan["changes"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|c| c["details"].as_array().cloned().unwrap_or_default())
        .find(|d| d["type"] == "setting" && d["name"] == "schedule")
        .expect("a schedule change");
    assert_eq!(setting["old"], "*/10 * * * *", "{setting}");
    assert_eq!(setting["new"], "*/15 * * * *", "{setting}");
}

/// `plan --format json` of an invalid spec prints the diagnostics as JSON on stdout.
#[test]
fn plan_json_of_an_invalid_spec_is_json() {
    let (dir, spec) = project_with("fhir.yaml");
    edit(&spec, "after: [dbt_run_staging]", "after: [dbt_run_stagng]");
    let out = dir.path().join("out");
    let assert = fhirflow_out("plan", &spec, &out).args(["--format", "json"]).assert().code(1);
    let doc: serde_json::Value = serde_json::from_slice(&assert.get_output().stdout).expect("JSON diagnostics");
    assert_eq!(doc["format_version"], "1.0");
    assert_eq!(doc["valid"], false);
    assert_eq!(doc["diagnostics"][0]["code"], "unknown-stage", "{doc:#}");
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
        .stdout(contains("**Plan: 8 to add, 0 to change, 0 to remove.**"));
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
    edit(&spec, "description: Run the dbt", "description: Now run the dbt");
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
    fhirflow_out("apply", &spec, &out).arg("--force").assert().success();
    assert!(std::fs::read_to_string(&dag).unwrap().contains("Now run the dbt"));
}

/// `apply --check` suggests the command to run with the paths it was given, and `--force`
/// (with the reason) when a plain `apply` would refuse.
#[test]
fn apply_check_suggests_the_command_that_works() {
    let (dir, spec) = project_with("fhir.yaml");
    let out = dir.path().join("out");
    fhirflow_out("apply", &spec, &out).assert().success();
    edit(&spec, "description: Run the dbt", "description: Now run the dbt");
    let command = format!("fhirflow apply {} --out {}", spec.display(), out.display());
    fhirflow_out("apply", &spec, &out)
        .arg("--check")
        .assert()
        .code(2)
        .stderr(contains(format!("run `{command}`")))
        .stderr(contains("--force").not());
    edit(&out.join("dags/dbt_transform_fhir.py"), "retries=0", "retries=9");
    fhirflow_out("apply", &spec, &out)
        .arg("--check")
        .assert()
        .code(2)
        .stdout(contains("edited by hand"))
        .stderr(contains(format!("`{command}` would refuse 1 of them")))
        .stderr(contains(format!("run `{command} --force`")));
}

/// A generated file checked out with CRLF line ends (git's `core.autocrlf`) is unchanged, and
/// not taken for a hand edit when the spec changes it.
#[test]
fn crlf_checkouts_are_not_hand_edits() {
    let (dir, spec) = project_with("fhir.yaml");
    let out = dir.path().join("out");
    fhirflow_out("apply", &spec, &out).assert().success();
    let dag = out.join("dags/dbt_transform_fhir.py");
    let lf = std::fs::read_to_string(&dag).unwrap();
    std::fs::write(&dag, lf.replace('\n', "\r\n")).unwrap();
    fhirflow_out("plan", &spec, &out).arg("--detailed-exitcode").assert().code(0).stdout(contains("No changes"));
    fhirflow_out("apply", &spec, &out).arg("--check").assert().code(0);
    edit(&spec, "description: Run the dbt", "description: Now run the dbt");
    fhirflow_out("plan", &spec, &out).assert().success().stdout(contains("edited by hand").not());
    fhirflow_out("apply", &spec, &out).assert().success();
    assert!(std::fs::read_to_string(&dag).unwrap().contains("Now run the dbt"));
}

#[test]
fn apply_refuses_files_it_did_not_write() {
    let (dir, spec) = project_with("dental_clinic.yaml");
    let out = dir.path().join("out");
    std::fs::create_dir_all(out.join("dags")).unwrap();
    std::fs::write(out.join("dags/dbt_dental_clinic_nightly.py"), "# my own DAG\n").unwrap();
    fhirflow_out("apply", &spec, &out).assert().code(4).stderr(contains("not written by fhirflow"));
    assert_eq!(std::fs::read_to_string(out.join("dags/dbt_dental_clinic_nightly.py")).unwrap(), "# my own DAG\n");
}

#[test]
fn apply_removes_stale_files_of_its_own_spec_only() {
    let (dir, spec) = project_with("dental_clinic.yaml");
    let out = dir.path().join("out");
    fhirflow_out("apply", &spec, &out).assert().success();
    let other = out.join("dags/other.py");
    std::fs::write(
        &other,
        "# Generated by fhirflow from other.yaml. Do not edit.\n# fhirflow-spec: other.yaml\n# fhirflow-sha256: x\n",
    )
    .unwrap();
    let text = std::fs::read_to_string(&spec).unwrap();
    let cut = text.find("  dbt_dental_clinic_layered:").expect("layered pipeline");
    std::fs::write(&spec, &text[..cut]).unwrap();
    fhirflow_out("apply", &spec, &out)
        .assert()
        .success()
        .stdout(contains("- ").and(contains("dbt_dental_clinic_layered.py")))
        .stdout(contains("3 removed"));
    assert!(!out.join("dags/dbt_dental_clinic_layered.py").exists());
    assert!(!out.join("dags/dbt_dental_clinic_per_model.py").exists());
    assert!(other.exists(), "another spec's file is left alone");
}

#[test]
fn out_of_the_box_paths_are_relative_to_the_spec() {
    let (dir, spec) = project_with("dental_clinic.yaml");
    let top = dir.path().join("dental_clinic.yaml");
    std::fs::copy(&spec, &top).unwrap();
    edit(&top, "project_dir: ../examples/", "project_dir: examples/");
    edit(&top, "manifest: ../examples/", "manifest: examples/");
    edit(&top, "dags_folder: ../dags", "dags_folder: dags");
    fhirflow().arg("apply").arg(&top).assert().success();
    assert!(dir.path().join("dags/dbt_dental_clinic_nightly.py").exists());
}

/// In a git work tree, a spec under `pipelines/` may write `../dags` without `--out`: the
/// bound is the work tree, not the spec's folder.
#[test]
fn without_out_a_spec_writes_anywhere_in_its_work_tree() {
    let (dir, spec) = project_with("dental_clinic.yaml");
    std::fs::create_dir(dir.path().join(".git")).unwrap();
    fhirflow().arg("apply").arg(&spec).assert().success();
    assert!(dir.path().join("dags/dbt_dental_clinic_nightly.py").exists());
    edit(&spec, "dags_folder: ../dags", "dags_folder: ../../dags");
    fhirflow().arg("plan").arg(&spec).assert().code(1).stderr(contains("`../../dags` leads outside the project"));
}

#[test]
fn without_out_nothing_is_written_outside_the_specs_folder() {
    let (dir, spec) = project_with("dental_clinic.yaml");
    for verb in ["plan", "apply"] {
        fhirflow()
            .arg(verb)
            .arg(&spec)
            .assert()
            .code(1)
            .stderr(contains("error[path-escapes-output]: `../examples/dental_clinic/dbt_dental_clinic_prod` leads outside the project"))
            .stderr(contains("error[path-escapes-output]: `../dags` leads outside the project"))
            .stderr(contains("dental_clinic.yaml:32:16"));
    }
    assert!(!dir.path().join("dags").exists(), "nothing was written");
    // `--out` the folder the `..` climb to writes the same files where they pointed.
    fhirflow_out("apply", &spec, dir.path()).assert().success();
    assert!(dir.path().join("dags/dbt_dental_clinic_nightly.py").exists());
    let layer = "examples/dental_clinic/dbt_dental_clinic_prod/models/staging/staging_models.yml";
    assert!(dir.path().join(layer).exists());
}

#[test]
fn a_layer_path_cannot_leave_out() {
    let (dir, spec) = project_with("fhir.yaml");
    let outside = tempfile::tempdir().unwrap();
    let climb = format!("{}{}", "../".repeat(12), outside.path().display().to_string().trim_start_matches('/'));
    let text = std::fs::read_to_string(&spec).unwrap();
    let at = text.find("  staging:\n").expect("fhir.yaml has a staging layer") + "  staging:\n".len();
    std::fs::write(&spec, format!("{}    path: '{climb}'\n{}", &text[..at], &text[at..])).unwrap();
    let line = text[..at].lines().count() + 1;
    let out = dir.path().join("out");
    for verb in ["plan", "apply"] {
        fhirflow_out(verb, &spec, &out)
            .assert()
            .code(1)
            .stderr(contains("error[path-escapes-output]"))
            .stderr(contains("leads outside the --out folder"))
            .stderr(contains(format!("fhir.yaml:{line}:11")));
    }
    assert!(std::fs::read_dir(outside.path()).unwrap().next().is_none(), "nothing was written outside");
    assert!(!out.exists(), "nothing was written inside either");
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

/// `fhirflow validate` of a spec with this text, in a folder of its own.
fn validate_text(text: &str) -> assert_cmd::assert::Assert {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("p.yaml");
    std::fs::write(&spec, text).unwrap();
    fhirflow().arg("validate").arg(&spec).assert()
}

/// An invalid schedule does not hide a cycle in the same pipeline: both are reported.
#[test]
fn a_bad_schedule_and_a_cycle_are_both_reported() {
    validate_text(
        "version: 1\npipelines:\n  p:\n    schedule: \"@dayly\"\n    stages:\n      a: {kind: shell, command: x, after: [b]}\n      b: {kind: shell, command: x, after: [a]}\n",
    )
    .code(1)
    .stderr(contains("\"@dayly\" is not an Airflow preset"))
    .stderr(contains("error[cycle]"));
}

/// An unknown `kind` is the one error: the stage's other keys are not called unknown.
#[test]
fn an_unknown_kind_does_not_make_its_keys_unknown() {
    validate_text("version: 1\npipelines:\n  p:\n    stages:\n      a: {kind: shel, command: x}\n")
        .code(1)
        .stderr(contains("error[invalid-choice]"))
        .stderr(contains("did you mean `shell`?"))
        .stderr(contains("unknown key").not());
}

/// A schema error in one stage does not hide the typed read's errors elsewhere: a bad stage
/// kind, a bad schedule and a bad time zone are all reported, and the stage's error once.
#[test]
fn a_bad_stage_does_not_hide_a_bad_schedule() {
    let assert = validate_text(
        "version: 1\npipelines:\n  p:\n    schedule: \"@dayly\"\n    stages:\n      a: {kind: shel, command: x}\n  q:\n    timezone: Mars/Olympus\n    stages:\n      b: {kind: shell, command: x, retries: -1}\n",
    )
    .code(1)
    .stderr(contains("\"@dayly\" is not an Airflow preset"))
    .stderr(contains("Mars/Olympus"))
    .stderr(contains("retries"))
    .stderr(contains("did you mean `shell`?"))
    .stderr(contains("4 errors"));
    let stderr = String::from_utf8_lossy(&assert.get_output().stderr).into_owned();
    assert_eq!(stderr.matches("error[invalid-choice]").count(), 1, "{stderr}");
    assert!(!stderr.contains("missing field"), "{stderr}");
}

#[test]
fn io_and_usage_errors_have_their_own_codes() {
    fhirflow().args(["validate", "/nonexistent/spec.yaml"]).assert().code(3).stderr(contains("cannot read"));
    fhirflow().args(["plan"]).assert().code(64).stderr(contains("required"));
    fhirflow().args(["frobnicate"]).assert().code(64).stderr(contains("unrecognized subcommand"));
    fhirflow().assert().code(64).stderr(contains("Usage:"));
}

/// Exit 2 is "changes pending" and nothing else: a script running `plan --detailed-exitcode`
/// must never read a mistyped flag as a diff.
#[test]
fn a_mistyped_flag_exits_64_not_2() {
    let (dir, spec) = project_with("fhir.yaml");
    let out = dir.path().join("out");
    fhirflow_out("plan", &spec, &out)
        .arg("--detailed-exitcod")
        .assert()
        .code(64)
        .stderr(contains("unexpected argument '--detailed-exitcod'"))
        .stdout("");
    fhirflow_out("apply", &spec, &out).arg("--chek").assert().code(64);
    fhirflow_out("plan", &spec, &out).args(["--format", "yaml"]).assert().code(64);
    fhirflow_out("plan", &spec, &out).arg("--detailed-exitcode").assert().code(2).stdout(contains("8 to add"));
    fhirflow_out("apply", &spec, &out).arg("--check").assert().code(2);
    assert!(!out.exists(), "neither plan nor apply --check writes anything");
}

#[test]
fn help_and_version_exit_0_and_list_the_exit_codes() {
    fhirflow().arg("--help").assert().code(0).stdout(contains("  2  plan --detailed-exitcode or apply --check"));
    fhirflow().args(["plan", "--help"]).assert().code(0).stdout(contains("  64  usage error"));
    fhirflow().arg("--version").assert().code(0).stdout(contains("fhirflow "));
}

/// `run` selections that name nothing are usage errors too, whether clap or the runner finds them.
#[test]
fn run_usage_errors_exit_64() {
    let (dir, spec) = project_with("fhir.yaml");
    let run = |args: &[&str]| {
        let mut command = fhirflow();
        command.current_dir(dir.path()).arg("run").arg(&spec).args(args);
        command
    };
    run(&["--dry-run", "--pipeline", "nope"]).assert().code(64).stderr(contains("nope"));
    run(&["--dry-run", "--only", "dbt_run_stagin"])
        .assert()
        .code(64)
        .stderr(contains("did you mean `dbt_run_staging`?"));
    run(&["--dry-run", "--from", "nope.nothing"]).assert().code(64);
    run(&["--resume", "no-such-run"]).assert().code(64).stderr(contains("no run `no-such-run`"));
    run(&["--max-parallel", "0"]).assert().code(64);
    run(&["--resume", "r1", "--only", "dbt_deps"]).assert().code(64).stderr(contains("cannot be used with"));
    run(&["--kill-grace", "soon"]).assert().code(64);
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
    fhirflow().arg("schema").assert().success().stdout(committed);
}

#[test]
fn graph_renders_mermaid_dot_and_json() {
    let spec = repo().join("pipelines/fhir.yaml");
    fhirflow().arg("graph").arg(&spec).assert().success().stdout(
        contains("flowchart LR")
            .and(contains("s3_to_snowflake_load__update_watermark -.-> dbt_transform_fhir__wait_for_s3_load")),
    );
    fhirflow()
        .arg("graph")
        .arg(&spec)
        .args(["--format", "dot"])
        .assert()
        .success()
        .stdout(contains("digraph fhirflow"));
    fhirflow().arg("graph").arg(&spec).args(["--format", "json"]).assert().success();
    let assert = fhirflow().arg("graph").arg(&spec).args(["--format", "json"]).assert().success();
    let doc: serde_json::Value = serde_json::from_slice(&assert.get_output().stdout).expect("JSON");
    assert_eq!(doc["format_version"], "1.0", "the same format_version as plan and validate");
    assert_eq!(doc["dbt"]["format_version"], "1.0");
    assert!(doc["dags"]["dbt_transform_fhir"].is_object(), "{doc:#}");
}

#[test]
fn every_spec_starts_with_a_schema_modeline() {
    for spec in ["fhir.yaml", "dental_clinic.yaml"] {
        let text = std::fs::read_to_string(repo().join("pipelines").join(spec)).unwrap();
        assert!(text.starts_with("# yaml-language-server: $schema=../schemas/pipeline.schema.json\n"), "{spec}");
    }
}

#[test]
fn validate_json_has_terraform_shape() {
    let (_dir, spec) = project_with("fhir.yaml");
    edit(&spec, "after: [dbt_run_staging]", "after: [dbt_run_stagng]");
    edit(&spec, "retries: 2", "retries: -2");
    let assert = fhirflow().arg("validate").arg(&spec).args(["--format", "json"]).assert().code(1);
    let doc: serde_json::Value = serde_json::from_slice(&assert.get_output().stdout).expect("JSON");
    assert_eq!(doc["format_version"], "1.0");
    assert_eq!(doc["valid"], false);
    assert_eq!(doc["error_count"], 1, "schema errors stop before the graph: {doc:#}");
    let d = &doc["diagnostics"][0];
    assert_eq!(d["severity"], "error");
    assert_eq!(d["summary"], "`retries` must be ≥ 0, got -2");
    assert!(d["range"]["filename"].as_str().unwrap().ends_with("fhir.yaml"));
    assert!(d["range"]["start"]["line"].as_u64().unwrap() > 1);
    assert!(d["range"]["start"]["byte"].is_u64() && d["range"]["end"]["column"].is_u64());
}

#[test]
fn validate_github_annotations() {
    let (_dir, spec) = project_with("fhir.yaml");
    edit(&spec, "after: [dbt_run_staging]", "after: [dbt_run_stagng]");
    fhirflow()
        .arg("validate")
        .arg(&spec)
        .args(["--format", "github"])
        .assert()
        .code(1)
        .stdout(predicate::str::is_match(r"^::error file=[^,]+fhir.yaml,line=\d+,col=\d+,endLine=\d+,endColumn=\d+,title=fhirflow unknown-stage::`dbt_run_intermediate` waits for `dbt_run_stagng`, which is not a stage of pipeline `dbt_transform_fhir`%0Ano such stage; help: did you mean `dbt_run_staging`\?\n$").unwrap());
}

#[test]
fn warnings_do_not_fail_unless_denied() {
    let (dir, spec) = project_with("fhir.yaml");
    edit(
        &spec,
        "    max_active_runs: 1\n    tags: [fhir, snowflake]",
        "    max_active_runs: 3\n    tags: [fhir, snowflake]",
    );
    fhirflow().arg("validate").arg(&spec).assert().success().stderr(contains("warning[concurrent-load]"));
    fhirflow()
        .arg("validate")
        .arg(&spec)
        .arg("--deny-warnings")
        .assert()
        .code(1)
        .stderr(contains("error[concurrent-load]"));
    let out = dir.path().join("out");
    fhirflow_out("plan", &spec, &out).arg("--deny-warnings").assert().code(1);
    fhirflow_out("apply", &spec, &out).assert().success().stderr(contains("warning[concurrent-load]"));
}

#[test]
fn explain_shows_where_each_setting_comes_from() {
    fhirflow()
        .current_dir(repo())
        .args(["validate", "pipelines/fhir.yaml", "--explain", "s3_to_snowflake_load.load"])
        .assert()
        .success()
        .stdout(contains("tasks:    create_snowflake_tables, get_last_watermark"))
        .stdout(
            predicate::str::is_match(
                r"retries +2 +pipeline `s3_to_snowflake_load` defaults \(pipelines/fhir.yaml:\d+:\d+\)",
            )
            .unwrap(),
        )
        .stdout(
            predicate::str::is_match(r"owner +data-eng +project defaults \(pipelines/fhir.yaml:\d+:\d+\)").unwrap(),
        );
    fhirflow()
        .current_dir(repo())
        .args(["validate", "pipelines/fhir.yaml", "--explain", "dbt_run_stagin"])
        .assert()
        .code(1)
        .stderr(contains("did you mean `dbt_run_staging`?"));
}

/// The task settings a hand-written project sets (pool, depends_on_past, email_on_retry, doc_md
/// and a pipeline's own start_date) each show with where they come from, and the plan says how
/// to create a declared pool.
#[test]
fn explain_and_plan_show_pools_and_task_settings() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("settings.yaml");
    std::fs::write(
        &spec,
        "version: 1\n\
         pools: {warehouse: {slots: 3, description: one XS warehouse}}\n\
         defaults: {email: [data@example.com], email_on_retry: false}\n\
         pipelines:\n  \
           nightly:\n    \
             schedule: '0 2 * * *'\n    \
             start_date: 2026-03-01\n    \
             defaults: {pool: warehouse, depends_on_past: true}\n    \
             stages:\n      \
               load: {kind: shell, command: echo load, doc_md: Copies the day's files}\n",
    )
    .unwrap();
    let row = |name: &str, value: &str, origin: &str, line: u32| {
        predicate::str::is_match(format!(r"\n    {name} +{value} +{origin} \(settings.yaml:{line}:\d+\)\n")).unwrap()
    };
    fhirflow()
        .current_dir(dir.path())
        .args(["validate", "settings.yaml", "--explain", "nightly.load"])
        .assert()
        .success()
        .stdout(row("start_date", "2026-03-01", "pipeline `nightly`", 7))
        .stdout(row("pool", "warehouse", "pipeline `nightly` defaults", 8))
        .stdout(row("depends_on_past", "true", "pipeline `nightly` defaults", 8))
        .stdout(row("email_on_retry", "false", "project defaults", 3))
        .stdout(row("doc_md", "Copies the day's files", "the stage", 10));
    fhirflow_out("plan", &spec, &dir.path().join("out")).assert().success().stdout(contains(
        "the DAGs run tasks in Airflow pool `warehouse` (3 slots); Airflow never schedules a task whose pool is \
         missing, so create it before they run: `airflow pools set 'warehouse' 3 'one XS warehouse'`",
    ));
    edit(&spec, "pool: warehouse", "pool: warehose");
    fhirflow()
        .current_dir(dir.path())
        .args(["validate", "settings.yaml"])
        .assert()
        .code(1)
        .stderr(contains("error[unknown-pool]"))
        .stderr(contains("did you mean `warehouse`?"));
}

/// `validate --explain --format json` prints one JSON document, the explanation inside it.
#[test]
fn explain_as_json_is_one_document() {
    let explain = |stage: &str| {
        let output = fhirflow()
            .current_dir(repo())
            .args(["validate", "pipelines/fhir.yaml", "--format", "json", "--explain", stage])
            .output()
            .unwrap();
        let doc: serde_json::Value = serde_json::from_slice(&output.stdout).expect("stdout is one JSON document");
        (output.status.code(), doc)
    };
    let (code, doc) = explain("s3_to_snowflake_load.load");
    assert_eq!(code, Some(0));
    assert_eq!(doc["valid"], true);
    assert_eq!(doc["explain"]["stage"], "s3_to_snowflake_load.load");
    let retries = doc["explain"]["settings"].as_array().unwrap().iter().find(|s| s["name"] == "retries").unwrap();
    assert_eq!(retries["value"], 2, "{retries}");
    assert_eq!(retries["origin"], "pipeline `s3_to_snowflake_load` defaults");
    assert_eq!(retries["location"]["filename"], "pipelines/fhir.yaml");
    let (code, doc) = explain("dbt_run_stagin");
    assert_eq!(code, Some(1));
    assert_eq!(doc["valid"], false);
    assert_eq!(doc["diagnostics"][0]["code"], "unknown-stage", "{doc:#}");
    assert!(doc.get("explain").is_none());
}

/// Two specs in one folder, the second waiting for a pipeline of the first.
fn split_specs(down_schedule: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let specs = dir.path().join("pipelines");
    std::fs::create_dir_all(&specs).unwrap();
    std::fs::write(
        specs.join("load.yaml"),
        "version: 1\ndefaults: {retries: 1}\npipelines:\n  load:\n    schedule: '*/5 * * * *'\n    stages:\n      copy: {kind: shell, command: echo copy}\n",
    )
    .unwrap();
    std::fs::write(
        specs.join("transform.yaml"),
        format!("version: 1\npipelines:\n  transform:\n    schedule: '{down_schedule}'\n    stages:\n      wait: {{kind: sensor, pipeline: load, stage: copy}}\n      run: {{kind: shell, command: echo run, after: [wait]}}\n"),
    )
    .unwrap();
    dir
}

#[test]
fn a_folder_of_specs_is_one_graph() {
    let dir = split_specs("*/10 * * * *");
    let specs = dir.path().join("pipelines");
    fhirflow().arg("validate").arg(&specs).assert().success().stdout(contains("valid (2 specs, 2 pipelines, 3 tasks)"));
    fhirflow()
        .arg("validate")
        .arg(specs.join("transform.yaml"))
        .assert()
        .code(1)
        .stderr(contains("unknown pipeline `load`"));
    let out = dir.path().join("out");
    fhirflow_out("apply", &specs, &out).assert().success().stdout(contains("Apply complete: 2 added"));
    let transform = std::fs::read_to_string(out.join("dags/transform.py")).unwrap();
    assert!(
        transform.contains("external_dag_id=\"load\"")
            && transform.contains("# fhirflow-spec: pipelines/transform.yaml")
    );
    fhirflow_out("plan", &specs, &out).arg("--detailed-exitcode").assert().code(0);
}

#[test]
fn sensors_across_specs_are_checked() {
    let dir = split_specs("*/7 * * * *");
    fhirflow()
        .arg("validate")
        .arg(dir.path().join("pipelines"))
        .assert()
        .code(1)
        .stderr(contains("error[sensor-never-aligns]").and(contains("transform.yaml:6:7")));
}

#[test]
fn pipeline_ids_are_unique_across_specs() {
    let dir = split_specs("*/10 * * * *");
    let specs = dir.path().join("pipelines");
    std::fs::write(
        specs.join("zzz.yaml"),
        "version: 1\npipelines:\n  load:\n    stages:\n      x: {kind: shell, command: echo}\n",
    )
    .unwrap();
    fhirflow().arg("validate").arg(&specs).assert().code(1).stderr(
        contains("pipeline `load` is defined in two specs")
            .and(contains("zzz.yaml:3:3"))
            .and(contains("load.yaml:4:3")),
    );
}

#[test]
fn environment_variables_resolve_at_compile_time() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("env.yaml");
    std::fs::write(
        &spec,
        "version: 1\npipelines:\n  p:\n    schedule: '${SCHEDULE:-@daily}'\n    stages:\n      s: {kind: shell, command: 'sync ${BUCKET} $${HOME} {{ ds }}'}\n",
    )
    .unwrap();
    fhirflow()
        .arg("validate")
        .arg(&spec)
        .env_remove("BUCKET")
        .assert()
        .code(1)
        .stderr(contains("environment variable `BUCKET` is not set"));
    let out = dir.path().join("out");
    fhirflow_out("apply", &spec, &out).env("BUCKET", "lake").assert().success();
    let dag = std::fs::read_to_string(out.join("dags/p.py")).unwrap();
    assert!(dag.contains(r#"bash_command="sync lake ${HOME} {{ ds }}""#), "{dag}");
    assert!(dag.contains(r#"schedule="@daily""#));
}

#[test]
fn secrets_in_a_spec_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("secret.yaml");
    std::fs::write(
        &spec,
        "version: 1\npipelines:\n  p:\n    stages:\n      s: {kind: shell, command: x, env: {SNOWFLAKE_PASSWORD: hunter2, TOKEN: '${GITHUB_TOKEN}', OK: '{{ conn.sf.password }}'}}\n",
    )
    .unwrap();
    fhirflow()
        .arg("validate")
        .arg(&spec)
        .env("GITHUB_TOKEN", "x")
        .assert()
        .code(1)
        .stderr(contains("`SNOWFLAKE_PASSWORD` holds a secret-looking literal"))
        .stderr(contains("`TOKEN` would copy a secret from the environment into the generated files"))
        .stderr(contains("2 errors"));
}

#[test]
fn a_secret_in_a_variable_never_reaches_a_dag_file() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("upload.yaml");
    std::fs::write(
        &spec,
        "version: 1\npipelines:\n  p:\n    stages:\n      s: {kind: shell, command: 'aws --key ${KEY} s3 sync . s3://b'}\n",
    )
    .unwrap();
    let key = "AKIAABCDEFGHIJKLMNOP";
    for verb in ["validate", "apply"] {
        fhirflow()
            .arg(verb)
            .arg(&spec)
            .env("KEY", key)
            .assert()
            .code(1)
            .stderr(contains("error[secret-from-variable]: `${KEY}` would write an AWS access key id"))
            .stderr(contains("upload.yaml:5:44"))
            .stderr(contains(key).not())
            .stdout(contains(key).not());
    }
    assert!(!dir.path().join("dags").exists(), "nothing was written");
    fhirflow().arg("apply").arg(&spec).env("KEY", "not-a-key").assert().success();
}

#[test]
fn init_from_dbt_writes_a_spec_that_validates() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("pipelines/dental.yaml");
    fhirflow()
        .args(["init", "--from-dbt"])
        .arg(repo().join("tests/fixtures/dbt_dental"))
        .arg(&spec)
        .assert()
        .success()
        .stdout(contains("Wrote"));
    assert!(dir.path().join("pipelines/pipeline.schema.json").exists());
    fhirflow().arg("validate").arg(&spec).assert().success().stdout(contains("valid (2 pipelines"));
    fhirflow()
        .arg("graph")
        .arg(&spec)
        .args(["--format", "json"])
        .assert()
        .success()
        .stdout(contains("\"staging\"").and(contains("stg_appointments")));
    fhirflow()
        .args(["init", "--from-dbt"])
        .arg(repo().join("tests/fixtures/dbt_dental"))
        .arg(&spec)
        .assert()
        .code(4)
        .stderr(contains("--force"));
    fhirflow()
        .args(["init", "--from-dbt"])
        .arg(dir.path())
        .arg(dir.path().join("x.yaml"))
        .assert()
        .code(1)
        .stderr(contains("dbt_project.yml"));
}

/// Every YAML 1.1 boolean spelling: YAML would read each as true or false, but as a key it is a name.
const YAML_11_BOOLEANS: &[&str] = &[
    "y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO", "true", "True", "TRUE", "false", "False", "FALSE", "on",
    "On", "ON", "off", "Off", "OFF",
];

/// Writes `text` as `p.yaml` in a fresh folder.
fn spec_file(text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let spec = dir.path().join("p.yaml");
    std::fs::write(&spec, text).expect("write spec");
    (dir, spec)
}

/// `fhirflow validate SPEC`, asserted to find the spec invalid.
fn invalid(spec: &std::path::Path) -> assert_cmd::assert::Assert {
    fhirflow().arg("validate").arg(spec).assert().code(1)
}

/// Runs `fhirflow ARGS SPEC` and parses its stdout as JSON.
fn json_of(args: &[&str], spec: &std::path::Path) -> serde_json::Value {
    let assert = fhirflow().args(args).arg(spec).assert().success();
    serde_json::from_slice(&assert.get_output().stdout).expect("JSON output")
}

/// `pipelines: {no: …, on: …}` used to plan `dags/false.py` and `dags/true.py`, and stages `y`,
/// `on`, `yes` to collapse into one task `true`. Each is the name as written.
#[test]
fn yaml_11_booleans_are_names_as_written() {
    let mut text = String::from("version: 1\ndbt: {project_dir: dbt}\nconnections:\n  wh: {type: snowflake}\n");
    for word in YAML_11_BOOLEANS {
        text.push_str(&format!("  {word}: {{type: s3, bucket: lake-bucket}}\n"));
    }
    text.push_str("layers:\n");
    for (i, word) in YAML_11_BOOLEANS.iter().enumerate() {
        text.push_str(&format!("  {word}: {{models: [\"{word}\", m_{i}]}}\n"));
    }
    text.push_str("pipelines:\n");
    for (i, word) in YAML_11_BOOLEANS.iter().enumerate() {
        text.push_str(&format!(
            "  {word}:\n    max_active_runs: 1\n    stages:\n      {word}: {{kind: shell, command: x}}\n      load: {{kind: copy_into, retries: 1, source: {{connection: \"{word}\", prefix: x/}}, target: {{connection: wh, table: T{i}, stage: S}}, watermark_table: W{i}}}\n      build: {{kind: dbt, command: run, retries: 1, dbt_mode: layered, after: [\"{word}\"]}}\n"
        ));
    }
    let (dir, spec) = spec_file(&text);
    fhirflow().arg("validate").arg(&spec).assert().success().stdout(contains("22 pipelines"));

    let graph = json_of(&["graph", "--format", "json"], &spec);
    let dags = graph["dags"].as_object().expect("dags");
    assert_eq!(dags.keys().collect::<Vec<_>>(), YAML_11_BOOLEANS, "one DAG per pipeline, named as written");
    for (dag_id, dag) in dags {
        assert_eq!(dag["file"], format!("{dag_id}.py"));
        let tasks = dag["tasks"].as_object().expect("tasks");
        assert!(tasks.contains_key(dag_id), "{dag_id}: the stage named as written");
        for layer in YAML_11_BOOLEANS {
            assert!(tasks.contains_key(&format!("build_{layer}")), "{dag_id}: a task for layer {layer}");
        }
        assert_eq!(tasks.len(), 1 + 5 + 1 + YAML_11_BOOLEANS.len(), "{dag_id}: no task lost");
    }

    let out = dir.path().join("out");
    let plan = json_of(&["plan", "--format", "json", "--out", out.to_str().unwrap()], &spec);
    let paths: Vec<String> =
        plan["changes"].as_array().unwrap().iter().map(|c| c["path"].as_str().unwrap().to_owned()).collect();
    for word in YAML_11_BOOLEANS {
        let dag = out.join(format!("dags/{word}.py")).display().to_string();
        assert!(paths.contains(&dag), "{dag} in {paths:?}");
    }
    fhirflow().arg("apply").arg(&spec).arg("--out").arg(&out).assert().success();
    let yes_models = std::fs::read_to_string(out.join("dbt/models/yes/yes_models.yml")).unwrap();
    assert!(yes_models.contains("  - name: \"yes\"\n    config:\n      tags: [\"yes\"]"), "{yes_models}");
    let dag = std::fs::read_to_string(out.join("dags/on.py")).unwrap();
    assert!(
        dag.contains("dag_id=\"on\",") && dag.contains("task_id=\"on\",") && dag.contains("task_id=\"build_off\",")
    );
}

/// `on:` and `"on":` are one name; `on:` and `true:` are two.
#[test]
fn keys_equal_as_text_are_duplicates() {
    let stages = |a: &str, b: &str| {
        format!(
            "version: 1\npipelines:\n  p:\n    stages:\n      {a}: {{kind: shell, command: x}}\n      {b}: {{kind: shell, command: x}}\n"
        )
    };
    for (a, b) in [("on", "\"on\""), ("no", "'no'"), ("y", "!!str y")] {
        let (_dir, spec) = spec_file(&stages(a, b));
        invalid(&spec).stderr(contains("error[duplicate-key]: duplicate key `")).stderr(contains("p.yaml:6:"));
    }
    let (_dir, spec) = spec_file(&stages("on", "true"));
    let graph = json_of(&["graph", "--format", "json"], &spec);
    assert_eq!(graph["dags"]["p"]["tasks"].as_object().unwrap().keys().collect::<Vec<_>>(), ["on", "true"]);
}

/// A null is never a name: `~`, `null` or an empty key as a pipeline, stage, layer or connection.
#[test]
fn null_keys_are_located_errors() {
    let body = "{stages: {a: {kind: shell, command: x}}}";
    for null in ["~", "null", "Null", "NULL", ""] {
        let column = |prefix: &str| prefix.chars().count() + 1;
        let cases = [
            (format!("version: 1\npipelines:\n  {null}: {body}\n"), 3, column("  ")),
            (format!("version: 1\npipelines: {{{null}: {body}}}\n"), 2, column("pipelines: {")),
            (
                format!(
                    "version: 1\npipelines:\n  p:\n    stages:\n      a: {{kind: shell, command: x}}\n      {null}: {{kind: shell, command: x}}\n"
                ),
                6,
                column("      "),
            ),
            (
                format!("version: 1\nlayers: {{{null}: {{models: [m]}}}}\npipelines:\n  p: {body}\n"),
                2,
                column("layers: {"),
            ),
            (
                format!("version: 1\nconnections: {{{null}: {{type: snowflake}}}}\npipelines:\n  p: {body}\n"),
                2,
                column("connections: {"),
            ),
        ];
        for (text, line, column) in cases {
            // A block mapping has no empty plain key; the flow forms cover it.
            if null.is_empty() && !text.contains("{: ") {
                continue;
            }
            let (_dir, spec) = spec_file(&text);
            invalid(&spec)
                .stderr(contains("error[null-key]: a mapping key is null, not a name"))
                .stderr(contains(format!("p.yaml:{line}:{column}\n")));
            fhirflow().arg("plan").arg(&spec).assert().code(1).stdout("");
        }
    }
}

/// Numbers are not names: each is an invalid-name error that quotes the key as written.
#[test]
fn number_keys_are_invalid_names_quoted_as_written() {
    for number in [
        "0", "1", "-1", "+1", "017", "0o17", "0x1F", "0b101", "1_000", "1.5", "1e3", ".5", ".inf", "-.inf", ".nan",
        ".NaN",
    ] {
        for (text, line) in [
            (format!("version: 1\npipelines:\n  {number}:\n    stages:\n      a: {{kind: shell, command: x}}\n"), 3),
            (format!("version: 1\npipelines:\n  p:\n    stages:\n      {number}: {{kind: shell, command: x}}\n"), 5),
            (
                format!(
                    "version: 1\nconnections:\n  {number}: {{type: snowflake}}\npipelines:\n  p: {{stages: {{a: {{kind: shell, command: x}}}}}}\n"
                ),
                3,
            ),
            (
                format!(
                    "version: 1\nlayers:\n  {number}: {{models: [m]}}\npipelines:\n  p: {{stages: {{a: {{kind: shell, command: x}}}}}}\n"
                ),
                3,
            ),
        ] {
            let (_dir, spec) = spec_file(&text);
            invalid(&spec)
                .stderr(contains(format!("error[invalid-name]: \"{number}\" is not")))
                .stderr(contains(format!("p.yaml:{line}:")));
        }
    }
}

/// Model and column names are values, which keep YAML's typing: a bare `on` is an error at its
/// place, never a model named `true`; quoted, it is the name.
#[test]
fn model_and_column_names_are_never_renamed() {
    let spec_with = |models: &str| {
        format!(
            "version: 1\ndbt: {{project_dir: dbt}}\nlayers:\n  staging:\n    models: {models}\npipelines:\n  p: {{stages: {{b: {{kind: dbt, command: run, retries: 1}}}}}}\n"
        )
    };
    for word in YAML_11_BOOLEANS {
        for models in
            [format!("[{word}]"), format!("[{{name: {word}}}]"), format!("[{{name: m, columns: [{{name: {word}}}]}}]")]
        {
            let (_dir, spec) = spec_file(&spec_with(&models));
            invalid(&spec).stderr(contains("p.yaml:5:"));
        }
        let (dir, spec) = spec_file(&spec_with(&format!(
            "[\"{word}\", {{name: '{word}', columns: [{{name: \"{word}\", tests: [unique]}}]}}]"
        )));
        fhirflow().arg("apply").arg(&spec).assert().success();
        let yaml = std::fs::read_to_string(dir.path().join("dbt/models/staging/staging_models.yml")).unwrap();
        assert_eq!(yaml.matches(&format!("name: \"{word}\"")).count(), 3, "{yaml}");
    }
}

#[test]
fn apply_refuses_to_write_through_a_link_out_of_out() {
    use std::os::unix::fs::symlink;
    let (dir, spec) = project_with("fhir.yaml");
    let out = dir.path().join("out");
    let outside = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(&out).unwrap();
    symlink(outside.path(), out.join("dags")).unwrap();
    for verb in ["plan", "apply"] {
        fhirflow_out(verb, &spec, &out)
            .args(if verb == "apply" { &["--force"][..] } else { &[] })
            .assert()
            .code(4)
            .stderr(contains(format!("{}: it is a symbolic link to", out.join("dags").display())))
            .stderr(contains("outside the output folder"));
    }
    assert!(std::fs::read_dir(outside.path()).unwrap().next().is_none(), "nothing was written through the link");
    assert!(!out.join("dbt").exists(), "nothing was written at all");

    // A file link, even with --force.
    std::fs::remove_file(out.join("dags")).unwrap();
    fhirflow_out("apply", &spec, &out).assert().success();
    let target = outside.path().join("theirs.py");
    std::fs::write(&target, "# not fhirflow's\n").unwrap();
    let dag = out.join("dags/s3_upload.py");
    std::fs::remove_file(&dag).unwrap();
    symlink(&target, &dag).unwrap();
    fhirflow_out("apply", &spec, &out)
        .arg("--force")
        .assert()
        .code(4)
        .stderr(contains("s3_upload.py: it is a symbolic link"));
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "# not fhirflow's\n");
    assert!(std::fs::symlink_metadata(&dag).unwrap().file_type().is_symlink(), "the link is left alone");
}

#[test]
fn a_link_that_stays_inside_out_is_written_through() {
    let (dir, spec) = project_with("fhir.yaml");
    let out = dir.path().join("out");
    std::fs::create_dir_all(out.join("airflow/dags")).unwrap();
    std::os::unix::fs::symlink("airflow/dags", out.join("dags")).unwrap();
    fhirflow_out("apply", &spec, &out).assert().success().stdout(contains("Apply complete: 8 added"));
    assert!(out.join("airflow/dags/s3_upload.py").is_file());
    // A link in the DAGs folder (a shared module, say) is never taken for a stale file of
    // fhirflow's, which writes regular files only, even when it carries this spec's header.
    let shared = tempfile::tempdir().unwrap();
    std::fs::copy(out.join("dags/s3_upload.py"), shared.path().join("old.py")).unwrap();
    std::os::unix::fs::symlink(shared.path().join("old.py"), out.join("dags/old.py")).unwrap();
    fhirflow_out("plan", &spec, &out).arg("--detailed-exitcode").assert().code(0);
    fhirflow_out("apply", &spec, &out).assert().success();
    assert!(shared.path().join("old.py").exists() && out.join("dags/old.py").exists());
}

#[test]
fn apply_removes_temp_files_that_killed_applies_left() {
    let (dir, spec) = project_with("fhir.yaml");
    let out = dir.path().join("out");
    fhirflow_out("apply", &spec, &out).assert().success();
    let gone = {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        pid
    };
    let mut running = std::process::Command::new("sleep").arg("60").spawn().unwrap();
    let dead_dag = out.join(format!("dags/.s3_upload.py.fhirflow-{gone}.tmp"));
    let dead_layer = out.join(format!("dbt/models/staging/.staging_models.yml.fhirflow-{gone}.tmp"));
    let live = out.join(format!("dags/.s3_upload.py.fhirflow-{}.tmp", running.id()));
    for path in [&dead_dag, &dead_layer, &live] {
        std::fs::write(path, "half a fi").unwrap();
    }
    fhirflow_out("plan", &spec, &out)
        .arg("--detailed-exitcode")
        .assert()
        .code(0)
        .stdout(contains("No changes."))
        .stdout(contains("apply also removes 2 temporary files that an interrupted apply left behind."))
        .stdout(contains(".tmp").not());
    let json = fhirflow_out("plan", &spec, &out).args(["--format", "json"]).assert().success();
    assert!(String::from_utf8_lossy(&json.get_output().stdout).contains("\"changes\": []"));
    fhirflow_out("apply", &spec, &out).arg("--check").assert().code(0);
    assert!(dead_dag.exists(), "--check writes and removes nothing");
    fhirflow_out("apply", &spec, &out).assert().success();
    let _ = running.kill();
    let _ = running.wait();
    assert!(!dead_dag.exists() && !dead_layer.exists(), "a dead apply's temp files are removed");
    assert!(live.exists(), "a running apply's temp file is left alone");
    // Once its writer is gone, that one is a leftover too.
    fhirflow_out("plan", &spec, &out).assert().success().stdout(contains("removes 1 temporary file that"));
    fhirflow_out("apply", &spec, &out).assert().success();
    assert!(!live.exists());
}

/// Inputs that used to crash or hang: a 50,000-stage `after:` chain (the recursive cycle search
/// overflowed the stack, exit 134), a device and a FIFO as the spec (read until memory ran out;
/// blocked for ever), and a 100 KB time zone (the did-you-mean took minutes). Each now ends,
/// with a result or a located error; the `timeout` only keeps a regression from hanging CI.
#[test]
fn deep_and_huge_inputs_end_with_an_answer() {
    let dir = tempfile::tempdir().unwrap();
    let mut chain = String::from("version: 1\npipelines:\n  p:\n    stages:\n      s0: {kind: shell, command: x}\n");
    for i in 1..50_000 {
        chain.push_str(&format!("      s{i}: {{kind: shell, command: x, after: [s{}]}}\n", i - 1));
    }
    let spec = dir.path().join("chain.yaml");
    std::fs::write(&spec, chain).unwrap();
    fhirflow()
        .arg("validate")
        .arg(&spec)
        .timeout(std::time::Duration::from_secs(300))
        .assert()
        .success()
        .stdout(contains("valid (1 pipelines, 50000 tasks)"));

    fhirflow()
        .args(["validate", "/dev/zero"])
        .timeout(std::time::Duration::from_secs(60))
        .assert()
        .code(1)
        .stderr(contains("error[not-a-file]: the spec is not a regular file"));
    let fifo = dir.path().join("spec.yaml");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    fhirflow()
        .arg("validate")
        .arg(&fifo)
        .timeout(std::time::Duration::from_secs(60))
        .assert()
        .code(1)
        .stderr(contains("error[not-a-file]"));

    let zone = "Europe/Pariss".repeat(8_000);
    let spec = dir.path().join("zone.yaml");
    std::fs::write(
        &spec,
        format!("version: 1\ndefaults: {{timezone: {zone}}}\npipelines:\n  p:\n    stages:\n      a: {{kind: shell, command: x}}\n"),
    )
    .unwrap();
    fhirflow()
        .arg("validate")
        .arg(&spec)
        .timeout(std::time::Duration::from_secs(120))
        .assert()
        .code(1)
        .stderr(contains("error[unknown-timezone]"))
        .stderr(contains("did you mean").not());
}
