//! `kind: python`: values pass from one callable to the next through real Airflow's XCom
//! (`airflow dags test`) and through `fhirflow run`, and bad specs are located errors.

mod common;

use common::{copy_dir, fhirflow, venv};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const STEPS: &str = r#"import json

def list_files(prefix):
    return [f"{prefix}/a.json", f"{prefix}/b.json"]

def count(files, label):
    return {"label": label, "n": len(files), "files": files}

def record(summary, to):
    with open(to, "w", encoding="utf-8") as handle:
        json.dump(summary, handle, sort_keys=True)
    return summary["n"]

def not_json():
    return object()
"#;

/// A project whose python stages hand a list, then a dict, down a chain; `record` writes what
/// it got to `seen`.
fn project(dir: &Path, seen: &Path) -> std::path::PathBuf {
    std::fs::create_dir_all(dir.join("pyfns")).unwrap();
    std::fs::write(dir.join("pyfns/steps.py"), STEPS).unwrap();
    let spec = format!(
        r#"version: 1
pipelines:
  values:
    schedule: null
    stages:
      list_files:
        kind: python
        callable: steps:list_files
        python_path: [pyfns]
        kwargs: {{prefix: "raw/{{{{ ds }}}}"}}
      count:
        kind: python
        callable: steps:count
        python_path: [pyfns]
        after: [list_files]
        kwargs:
          files: {{output_of: list_files}}
          label: "it's \"quoted\" \\ end"
      record:
        kind: python
        callable: steps:record
        python_path: [pyfns]
        after: [count]
        kwargs:
          summary: {{output_of: count}}
          to: {}
"#,
        serde_json::to_string(&seen.display().to_string()).unwrap()
    );
    let path = dir.join("p.yaml");
    std::fs::write(&path, spec).unwrap();
    path
}

fn expected(ds: &str) -> serde_json::Value {
    serde_json::json!({
        "label": "it's \"quoted\" \\ end",
        "n": 2,
        "files": [format!("raw/{ds}/a.json"), format!("raw/{ds}/b.json")],
    })
}

#[test]
fn values_pass_between_callables_under_run() {
    let dir = tempfile::tempdir().unwrap();
    let seen = dir.path().join("seen.json");
    let spec = project(dir.path(), &seen);
    let python = venv("FHIRFLOW_DBT_VENV").map(|v| v.join("bin/python")).unwrap_or_else(|| "python3".into());
    let out = fhirflow()
        .arg("run")
        .arg(&spec)
        .args(["--logical-date", "2026-01-01"])
        .env("FHIRFLOW_PYTHON", python)
        .timeout(Duration::from_secs(120))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let got: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&seen).unwrap()).unwrap();
    assert_eq!(got, expected("2026-01-01"));
}

#[test]
fn a_return_value_that_is_not_json_fails_the_task_naming_the_stage() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("pyfns")).unwrap();
    std::fs::write(dir.path().join("pyfns/steps.py"), STEPS).unwrap();
    let spec = dir.path().join("p.yaml");
    std::fs::write(
        &spec,
        "version: 1\npipelines:\n  p:\n    stages:\n      odd: {kind: python, callable: \"steps:not_json\", python_path: [pyfns]}\n      later: {kind: shell, command: \"true\", after: [odd]}\n",
    )
    .unwrap();
    let out = fhirflow().arg("run").arg(&spec).timeout(Duration::from_secs(120)).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_ne!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("stage `odd` returned a value that is not JSON"), "{stdout}");
    assert!(stdout.contains("upstream_failed"), "{stdout}");
}

/// `validate` on a spec, its exit status and stderr.
fn validate(text: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("p.yaml");
    std::fs::write(&spec, text).unwrap();
    let out = fhirflow().arg("validate").arg(&spec).output().unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn an_import_path_that_is_not_dotted_identifiers_is_a_located_error() {
    let (code, stderr) =
        validate("version: 1\npipelines:\n  p:\n    stages:\n      a: {kind: python, callable: \"os:system('x')\"}\n");
    assert_ne!(code, Some(0), "{stderr}");
    assert!(stderr.contains("p.yaml:5:35"), "{stderr}");
    assert!(stderr.contains("`package.module:function`"), "{stderr}");
}

#[test]
fn output_references_must_name_an_upstream_python_stage() {
    let (code, stderr) = validate(
        "version: 1\npipelines:\n  p:\n    stages:\n      b: {kind: python, callable: \"m:f\", kwargs: {x: {output_of: c}}}\n      c: {kind: python, callable: \"m:f\", after: [b]}\n      d: {kind: shell, command: \"true\"}\n      e: {kind: python, callable: \"m:f\", after: [d], kwargs: {y: {output_of: d}}}\n",
    );
    assert_ne!(code, Some(0), "{stderr}");
    assert!(stderr.contains("error[bad-output-reference]: `c` is not upstream of `b`"), "{stderr}");
    assert!(stderr.contains("p.yaml:5:"), "{stderr}");
    assert!(stderr.contains("`d` is not a python stage"), "{stderr}");
    assert!(stderr.contains("p.yaml:8:"), "{stderr}");
}

/// The same spec in real Airflow 3.3 (and 2.11): `airflow dags test` runs every callable, and
/// the values reach `record` through XCom.
#[test]
fn values_pass_through_xcom_in_airflow() {
    for var in ["FHIRFLOW_AIRFLOW_VENV", "FHIRFLOW_AIRFLOW2_VENV"] {
        let Some(airflow) = venv(var) else { continue };
        let dir = tempfile::tempdir().unwrap();
        let seen = dir.path().join("seen.json");
        let spec = project(dir.path(), &seen);
        if var == "FHIRFLOW_AIRFLOW2_VENV" {
            let text = std::fs::read_to_string(&spec).unwrap();
            std::fs::write(&spec, text.replace("version: 1\n", "version: 1\nairflow: {version: 2}\n")).unwrap();
        }
        let out = dir.path().join("out");
        fhirflow().arg("apply").arg(&spec).arg("--out").arg(&out).assert().success();
        // `python_path` is relative to the DAG file's folder in Airflow.
        copy_dir(&dir.path().join("pyfns"), &out.join("dags/pyfns"));
        let result = Command::new("bash")
            .arg(common::repo().join("tests/conformance/airflow_dags_test.sh"))
            .arg(&airflow)
            .arg(out.join("dags"))
            .arg("values")
            .arg("")
            .output()
            .unwrap();
        assert!(
            result.status.success(),
            "{var}: {}\n{}",
            String::from_utf8_lossy(&result.stdout),
            String::from_utf8_lossy(&result.stderr)
        );
        let got: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&seen).unwrap()).unwrap();
        assert_eq!(got, expected("2026-01-01"), "{var}");
    }
}

/// The four-DAG example, run by real Airflow (`airflow dags test`, 3.3 for every DAG, 2.11 for
/// the branching one) and by `fhirflow run`: the same state for every task, `skipped` included.
#[test]
fn the_example_ends_in_the_same_task_states_in_airflow_and_under_run() {
    let Some(airflow3) = venv("FHIRFLOW_AIRFLOW_VENV") else { return };
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&common::repo().join("examples/python_tasks"), dir.path());
    let spec = dir.path().join("clinic.yaml");
    let out = fhirflow()
        .arg("run")
        .arg(&spec)
        .args(["--logical-date", "2026-01-01", "--format", "json"])
        .timeout(Duration::from_secs(300))
        .output()
        .unwrap();
    let summary: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    let mut ran: std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>> = Default::default();
    for t in summary["tasks"].as_array().unwrap() {
        ran.entry(t["pipeline"].as_str().unwrap().to_owned())
            .or_default()
            .insert(t["task"].as_str().unwrap().to_owned(), t["state"].as_str().unwrap().to_owned());
    }
    assert_eq!(ran["upload"]["nothing_to_upload"], "skipped", "{ran:?}");
    let mut cases: Vec<(&str, &Path)> =
        ["generate", "upload", "load", "report"].into_iter().map(|p| (p, airflow3.as_path())).collect();
    let airflow2 = venv("FHIRFLOW_AIRFLOW2_VENV");
    if let Some(v2) = &airflow2 {
        cases.push(("upload", v2.as_path()));
    }
    for (pipeline, airflow) in cases {
        let out = dir.path().join(format!("out-{pipeline}-{}", airflow.display().to_string().len()));
        let spec = if airflow2.as_deref() == Some(airflow) {
            let text = std::fs::read_to_string(&spec).unwrap();
            let v2 = dir.path().join("clinic2.yaml");
            std::fs::write(&v2, text.replace("version: 1\n", "version: 1\nairflow: {version: 2}\n")).unwrap();
            v2
        } else {
            spec.clone()
        };
        fhirflow().arg("apply").arg(&spec).arg("--out").arg(&out).assert().success();
        copy_dir(&dir.path().join("pyfns"), &out.join("dags/pyfns"));
        let states = out.join("states.json");
        let result = Command::new("bash")
            .arg(common::repo().join("tests/conformance/airflow_dags_test.sh"))
            .arg(airflow)
            .arg(out.join("dags"))
            .arg(pipeline)
            .arg("")
            .env("FHIRFLOW_DAGS_TEST_STATES", &states)
            .output()
            .unwrap();
        assert!(
            result.status.success(),
            "{pipeline}: {}\n{}",
            String::from_utf8_lossy(&result.stdout),
            String::from_utf8_lossy(&result.stderr)
        );
        let seen: std::collections::BTreeMap<String, String> =
            serde_json::from_str(&std::fs::read_to_string(&states).unwrap()).unwrap();
        assert_eq!(seen, ran[pipeline], "{pipeline} under {}", airflow.display());
    }
}

/// `run --resume` hands a downstream callable the output its upstream task returned in the
/// first invocation, which is not run again.
#[test]
fn a_resumed_run_reads_the_outputs_of_the_first_invocation() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("pyfns")).unwrap();
    std::fs::write(
        dir.path().join("pyfns/steps.py"),
        "import os\n\ndef make():\n    return {\"n\": 41}\n\ndef use(value):\n    if not os.path.exists(\"ready\"):\n        raise RuntimeError(\"not ready\")\n    return value[\"n\"] + 1\n",
    )
    .unwrap();
    let spec = dir.path().join("p.yaml");
    std::fs::write(
        &spec,
        "version: 1\npipelines:\n  p:\n    stages:\n      make: {kind: python, callable: \"steps:make\", python_path: [pyfns]}\n      use: {kind: python, callable: \"steps:use\", python_path: [pyfns], after: [make], kwargs: {value: {output_of: make}}}\n",
    )
    .unwrap();
    let json = |args: &[&str]| -> serde_json::Value {
        let out = fhirflow()
            .arg("run")
            .arg(&spec)
            .args(args)
            .args(["--format", "json"])
            .timeout(Duration::from_secs(120))
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let first = json(&[]);
    assert_eq!(first["tasks"][1]["state"], "failed", "{first}");
    std::fs::write(dir.path().join("ready"), "").unwrap();
    let run_id = first["run_id"].as_str().unwrap().to_owned();
    let resumed = json(&["--resume", &run_id]);
    assert_eq!(resumed["tasks"][0]["attempts"], 1, "{resumed}");
    assert_eq!(resumed["tasks"][1]["state"], "success", "{resumed}");
    let outputs: Vec<_> =
        walk(&dir.path().join(".fhirflow")).into_iter().filter(|p| p.ends_with("use.2.output.json")).collect();
    assert_eq!(std::fs::read_to_string(&outputs[0]).unwrap(), "42");
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}
