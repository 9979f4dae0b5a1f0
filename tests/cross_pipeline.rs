//! Cross-pipeline dependencies, run for real under both backends: real Apache Airflow
//! (`airflow dags test` of several DAGs in one metadata DB, tests/conformance/
//! airflow_dags_sequence.sh) and `fhirflow run`, with the FHIR spec's S3 → Snowflake load
//! against s3s-fs and the fakesnow server on 127.0.0.1, and the same task states compared.
//!
//! Needs the venvs and servers scripts/test.sh provides, and the `s3` and `snowflake` features.
#![cfg(all(feature = "s3", feature = "snowflake"))]

mod common;

use common::servers::{BUCKET, Server, fakesnow, s3s};
use common::{edit, fhirflow, repo, venv};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Task states by `dag_id.task_id`.
type States = BTreeMap<String, String>;

/// The loader's tasks that need a real Snowflake in Airflow: marked success there (fhirflow
/// runs them for real against fakesnow). Listing S3, the COPY's skip and the watermark are real.
const SNOWFLAKE_ONLY: &str = "create_snowflake_tables|get_last_watermark";

/// The dbt DAG's tasks after the sensor: marked success if they ever get to run, so that a
/// sensor that wrongly lets them through shows as `success` instead of `skipped`.
const DBT_TASKS: &str = "check_dbt_installation|dbt_.*";

/// A copy of pipelines/fhir.yaml in `dir/pipelines`, for Airflow `version`, whose connections
/// also name the variables `fhirflow run` reads the test servers' endpoints from.
fn fhir_spec(dir: &Path, version: u32) -> PathBuf {
    let spec = dir.join("pipelines/fhir.yaml");
    std::fs::create_dir_all(spec.parent().unwrap()).unwrap();
    std::fs::copy(repo().join("pipelines/fhir.yaml"), &spec).unwrap();
    edit(
        &spec,
        "      region: AWS_REGION\n",
        "      region: AWS_REGION\n      endpoint_url: T_S3_ENDPOINT\n      access_key_id: T_S3_KEY\n      secret_access_key: T_S3_SECRET\n",
    );
    edit(&spec, "      role: SNOWFLAKE_ROLE\n", "      role: SNOWFLAKE_ROLE\n      base_url: T_SF_URL\n      schema: T_SF_SCHEMA\n");
    if version == 2 {
        edit(&spec, "  version: 3\n", "  version: 2\n");
    }
    spec
}

/// An empty bucket on s3s-fs: the load finds nothing new.
fn empty_lake(dir: &Path) -> Option<Server> {
    std::fs::create_dir_all(dir.join("s3").join(BUCKET).join("raw/patients")).unwrap();
    s3s(&dir.join("s3"))
}

/// Runs `steps` (DAG id, mark-success pattern) with `airflow dags test` in one metadata DB and
/// returns the task states, the DAG run states and the whole report.
fn airflow_sequence(venv: &Path, dags: &Path, s3_port: u16, steps: &[(&str, &str)]) -> (States, serde_json::Value) {
    let report = dags.parent().unwrap().join("airflow-states.json");
    let connection = serde_json::json!({
        "conn_type": "aws",
        "login": "test-key",
        "password": "test-secret",
        "extra": {
            "endpoint_url": format!("http://127.0.0.1:{s3_port}"),
            "region_name": "us-east-1",
            "config_kwargs": {"s3": {"addressing_style": "path"}},
        },
    });
    let mut command = Command::new("bash");
    command
        .arg(repo().join("tests/conformance/airflow_dags_sequence.sh"))
        .arg(venv)
        .arg(dags)
        .arg(&report)
        .env("AIRFLOW_CONN_AWS_DEFAULT", connection.to_string());
    for (dag, pattern) in steps {
        command.arg(dag).arg(pattern);
    }
    let output = command.output().expect("bash starts");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "airflow_dags_sequence.sh failed ({})\n{stderr}", output.status);
    for line in stderr.lines().filter(|l| l.starts_with("airflow_dags_sequence:")) {
        eprintln!("{line}");
    }
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let states = report["task_instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let key = format!("{}.{}", t["dag_id"].as_str().unwrap(), t["task_id"].as_str().unwrap());
            (key, t["state"].as_str().unwrap_or("none").to_owned())
        })
        .collect();
    (states, report)
}

/// Seconds the task ran, from Airflow's report.
fn airflow_seconds(report: &serde_json::Value, dag: &str, task: &str) -> f64 {
    report["task_instances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["dag_id"] == dag && t["task_id"] == task)
        .and_then(|t| t["seconds"].as_f64())
        .unwrap_or_else(|| panic!("{dag}.{task} has no duration in {report}"))
}

/// `fhirflow run` of `pipelines` of `spec` against the servers; the task states and the exit code.
fn fhirflow_run(spec: &Path, s3: &Server, snow: &Server, pipelines: &[&str]) -> (States, Option<i32>) {
    let mut command = Command::new(assert_cmd::cargo::cargo_bin("fhirflow"));
    command.arg("run").arg(spec).args(["--format", "json"]);
    for p in pipelines {
        command.args(["--pipeline", p]);
    }
    let output = command
        .env("T_S3_ENDPOINT", format!("http://127.0.0.1:{}", s3.port))
        .env("T_S3_KEY", "test-key")
        .env("T_S3_SECRET", "test-secret")
        .env("AWS_REGION", "us-east-1")
        .env("SNOWFLAKE_ACCOUNT", "fakesnow")
        .env("SNOWFLAKE_USER", "fhirflow")
        .env("SNOWFLAKE_PASSWORD", "secret")
        .env("T_SF_URL", format!("http://127.0.0.1:{}", snow.port))
        .env("T_SF_SCHEMA", "RAW")
        .output()
        .expect("fhirflow starts");
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&output.stderr)));
    let states = summary["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let key = format!("{}.{}", t["pipeline"].as_str().unwrap(), t["task"].as_str().unwrap());
            (key, t["state"].as_str().unwrap().to_owned())
        })
        .collect();
    (states, output.status.code())
}

/// The states every backend must reach when the load finds no new file.
fn nothing_new_states(states: &States) {
    let at = |key: &str| states.get(key).map(String::as_str).unwrap_or("missing");
    assert_eq!(at("s3_to_snowflake_load.list_new_s3_files"), "success", "{states:#?}");
    assert_eq!(at("s3_to_snowflake_load.load_files_to_snowflake"), "skipped", "{states:#?}");
    assert_eq!(at("s3_to_snowflake_load.update_watermark"), "skipped", "{states:#?}");
    assert_eq!(at("dbt_transform_fhir.wait_for_s3_load"), "skipped", "{states:#?}");
    for task in ["check_dbt_installation", "dbt_deps", "dbt_debug", "dbt_run_staging", "dbt_test", "dbt_docs_generate"] {
        assert_eq!(at(&format!("dbt_transform_fhir.{task}")), "skipped", "{task}: {states:#?}");
    }
    // The results loggers run `all_done`, after a skip too, and find no results.
    assert_eq!(at("dbt_transform_fhir.parse_staging_results"), "success", "{states:#?}");
}

/// The seed's hang, fixed: the load finds no new bundle, so `load_files_to_snowflake` skips
/// and `update_watermark` is skipped; the dbt DAG's sensor on it skips at its first poke
/// (default `skipped_states: [skipped]`) instead of poking for 30 minutes, and the dbt run
/// skips cleanly. In Airflow 3.3, in Airflow 2.11, and under `fhirflow run`, state for state.
#[test]
fn a_load_with_nothing_new_skips_the_dbt_run_instead_of_hanging() {
    let (Some(airflow), Some(airflow2), Some(_)) =
        (venv("FHIRFLOW_AIRFLOW_VENV"), venv("FHIRFLOW_AIRFLOW2_VENV"), venv("FHIRFLOW_FAKESNOW_VENV"))
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let Some(s3) = empty_lake(dir.path()) else { return };
    let snow = fakesnow(&dir.path().join("db"), s3.port).expect("fakesnow");
    let steps = [("s3_to_snowflake_load", SNOWFLAKE_ONLY), ("dbt_transform_fhir", DBT_TASKS)];
    let mut by_backend = Vec::new();
    for (version, venv) in [(3, &airflow), (2, &airflow2)] {
        let project = dir.path().join(format!("airflow{version}"));
        let spec = fhir_spec(&project, version);
        fhirflow().arg("apply").arg(&spec).arg("--out").arg(project.join("out")).assert().success();
        let (states, report) = airflow_sequence(venv, &project.join("out/dags"), s3.port, &steps);
        nothing_new_states(&states);
        // `dags test` starts Airflow in about 20 s; the sensor itself pokes once.
        let wall = report["dags_test_seconds"][1]["seconds"].as_f64().unwrap();
        assert!(wall < 120.0, "the dbt DAG took {wall} s, the sensor's timeout is 1800 s (Airflow {version})");
        let runs: Vec<&str> = report["dag_runs"].as_array().unwrap().iter().map(|r| r["state"].as_str().unwrap()).collect();
        assert_eq!(runs, ["success", "success"], "Airflow {version}: {report}");
        by_backend.push((format!("Airflow {version}"), states));
    }
    let spec = fhir_spec(&dir.path().join("run"), 3);
    let (states, code) = fhirflow_run(&spec, &s3, &snow, &["s3_to_snowflake_load", "dbt_transform_fhir"]);
    assert_eq!(code, Some(0), "{states:#?}");
    nothing_new_states(&states);
    for (backend, airflow_states) in &by_backend {
        // Airflow marked the two Snowflake-only tasks success; fhirflow ran them for real.
        assert_eq!(airflow_states, &states, "{backend} and fhirflow run end in different states");
    }
}

/// The control that shows the test above can fail: with `skipped_states: []` (Airflow's own
/// default) the same sensor pokes on a skipped target until its timeout, the seed's hang,
/// and fhirflow warns about it at compile time. Under `fhirflow run` the target cannot change,
/// so the sensor fails at once, naming why.
#[test]
fn without_skipped_states_the_sensor_pokes_until_its_timeout() {
    let (Some(airflow), Some(_)) = (venv("FHIRFLOW_AIRFLOW_VENV"), venv("FHIRFLOW_FAKESNOW_VENV")) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let Some(s3) = empty_lake(dir.path()) else { return };
    let snow = fakesnow(&dir.path().join("db"), s3.port).expect("fakesnow");
    let spec = fhir_spec(dir.path(), 3);
    edit(
        &spec,
        "        timeout: 30m\n        poke_interval: 1m\n        mode: reschedule\n",
        "        timeout: 15s\n        poke_interval: 3s\n        mode: poke\n        skipped_states: []\n",
    );
    let validate = fhirflow().arg("validate").arg(&spec).assert().success();
    let warnings = String::from_utf8_lossy(&validate.get_output().stderr).into_owned();
    assert!(warnings.contains("warning[sensor-waits-on-final-state]"), "{warnings}");
    fhirflow().arg("apply").arg(&spec).arg("--out").arg(dir.path().join("out")).assert().success();
    let steps = [("s3_to_snowflake_load", SNOWFLAKE_ONLY), ("dbt_transform_fhir", DBT_TASKS)];
    let (states, report) = airflow_sequence(&airflow, &dir.path().join("out/dags"), s3.port, &steps);
    assert_eq!(states["s3_to_snowflake_load.update_watermark"], "skipped");
    assert_eq!(states["dbt_transform_fhir.wait_for_s3_load"], "failed", "{states:#?}");
    assert_eq!(states["dbt_transform_fhir.dbt_run_staging"], "upstream_failed", "{states:#?}");
    let waited = airflow_seconds(&report, "dbt_transform_fhir", "wait_for_s3_load");
    assert!(waited >= 15.0, "the sensor gave up after {waited} s, before its 15 s timeout");

    let (run_states, code) = fhirflow_run(&spec, &s3, &snow, &["s3_to_snowflake_load", "dbt_transform_fhir"]);
    assert_eq!(code, Some(5), "{run_states:#?}");
    assert_eq!(run_states["dbt_transform_fhir.wait_for_s3_load"], "failed", "{run_states:#?}");
    assert_eq!(run_states["dbt_transform_fhir.dbt_run_staging"], "upstream_failed", "{run_states:#?}");
}
