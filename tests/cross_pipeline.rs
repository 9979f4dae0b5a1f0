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
    spec_copy("pipelines/fhir.yaml", dir, version)
}

/// A copy of the FHIR spec at `source` (relative to the repository) in `dir/pipelines`, its
/// folders made relative to that, as [`fhir_spec`] makes it.
fn spec_copy(source: &str, dir: &Path, version: u32) -> PathBuf {
    let spec = dir.join("pipelines/fhir.yaml");
    std::fs::create_dir_all(spec.parent().unwrap()).unwrap();
    let text = std::fs::read_to_string(repo().join(source)).unwrap();
    std::fs::write(&spec, text.replace(": ../../", ": ../")).unwrap();
    edit(
        &spec,
        "      region: AWS_REGION\n",
        "      region: AWS_REGION\n      endpoint_url: T_S3_ENDPOINT\n      access_key_id: T_S3_KEY\n      secret_access_key: T_S3_SECRET\n",
    );
    edit(
        &spec,
        "      role: SNOWFLAKE_ROLE\n",
        "      role: SNOWFLAKE_ROLE\n      base_url: T_SF_URL\n      schema: T_SF_SCHEMA\n",
    );
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
    let states = summary_tasks(&summary).into_iter().map(|(key, state, _)| (key, state)).collect();
    (states, output.status.code())
}

/// The tasks of a `fhirflow run --format json` summary in run order: `pipeline.task`, its
/// state, and why it did not succeed (empty when it did).
fn summary_tasks(summary: &serde_json::Value) -> Vec<(String, String, String)> {
    summary["tasks"]
        .as_array()
        .unwrap_or_else(|| panic!("no tasks in {summary}"))
        .iter()
        .map(|t| {
            let key = format!("{}.{}", t["pipeline"].as_str().unwrap(), t["task"].as_str().unwrap());
            (key, t["state"].as_str().unwrap().to_owned(), t["failure"].as_str().unwrap_or("").to_owned())
        })
        .collect()
}

/// `template` with `VERSION` set to `version`, written as `dir/airflow<version>/<file>`.
fn versioned_spec(dir: &Path, version: u32, file: &str, template: &str) -> PathBuf {
    let project = dir.join(format!("airflow{version}"));
    std::fs::create_dir_all(&project).unwrap();
    let spec = project.join(file);
    std::fs::write(&spec, template.replace("VERSION", &version.to_string())).unwrap();
    spec
}

/// The states every backend must reach when the load finds no new file.
fn nothing_new_states(states: &States) {
    let at = |key: &str| states.get(key).map(String::as_str).unwrap_or("missing");
    assert_eq!(at("s3_to_snowflake_load.list_new_s3_files"), "success", "{states:#?}");
    assert_eq!(at("s3_to_snowflake_load.load_files_to_snowflake"), "skipped", "{states:#?}");
    assert_eq!(at("s3_to_snowflake_load.update_watermark"), "skipped", "{states:#?}");
    assert_eq!(at("dbt_transform_fhir.wait_for_s3_load"), "skipped", "{states:#?}");
    for task in ["check_dbt_installation", "dbt_deps", "dbt_debug", "dbt_run_staging", "dbt_test", "dbt_docs_generate"]
    {
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
        let runs: Vec<&str> =
            report["dag_runs"].as_array().unwrap().iter().map(|r| r["state"].as_str().unwrap()).collect();
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
        "        skipped_states: [skipped]\n        timeout: 30m\n        poke_interval: 1m\n        mode: reschedule\n",
        "        skipped_states: []\n        timeout: 15s\n        poke_interval: 3s\n        mode: poke\n",
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

/// Applies `spec` under `out` and checks the DAG files in a real DagBag against the compiled
/// graph (tests/conformance/airflow_check.py): schedules, asset conditions, outlets, sensors.
fn dagbag_check(venv: &Path, spec: &Path, out: &Path) {
    fhirflow().arg("apply").arg(spec).arg("--out").arg(out).assert().success();
    let expectations = fhirflow::compile_file(spec).expect("the spec compiles").graph.expectations();
    std::fs::write(out.join("expect.json"), expectations.to_string()).unwrap();
    let output = Command::new(venv.join("bin/python"))
        .arg(repo().join("tests/conformance/airflow_check.py"))
        .arg(out.join("dags"))
        .arg(out.join("expect.json"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "airflow_check.py: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Two producers (one that succeeds, one whose command exits 99, which skips it in Airflow's
/// BashOperator and under `fhirflow run` alike) and consumers of all and of any of them.
const ASSETS_SPEC: &str = r#"version: 1
defaults: {start_date: "2026-01-01", retries: 0}
airflow: {version: VERSION}
pipelines:
  produce:
    schedule: "0 0 * * *"
    stages:
      made: {kind: shell, command: "echo made", produces: [lake.raw]}
      nothing_new: {kind: shell, command: "exit 99", produces: ["s3://lake/other"]}
  consume_all:
    schedule: {assets: [lake.raw, "s3://lake/other"]}
    stages:
      report: {kind: shell, command: "echo all"}
  consume_any:
    schedule: {assets: {any: [lake.raw, {all: ["s3://lake/other", lake.raw]}]}}
    stages:
      report: {kind: shell, command: "echo any"}
      after_report: {kind: shell, command: "echo done", after: [report], trigger_rule: all_done}
"#;

/// Assets, for real: the producer's success records an asset event in Airflow's metadata DB
/// (3.3: asset_event; 2.11: dataset_event) and in fhirflow's run store; a skipped producer
/// records none. Under `fhirflow run` the consumers run after their producers when their
/// condition holds and are skipped, not triggered, when it does not.
#[test]
fn assets_schedule_consumers_on_their_producers_events() {
    let (Some(airflow), Some(airflow2)) = (venv("FHIRFLOW_AIRFLOW_VENV"), venv("FHIRFLOW_AIRFLOW2_VENV")) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    for (version, venv) in [(3, &airflow), (2, &airflow2)] {
        let spec = versioned_spec(dir.path(), version, "assets.yaml", ASSETS_SPEC);
        let project = spec.parent().unwrap();
        dagbag_check(venv, &spec, &project.join("out"));
        let (states, report) = airflow_sequence(venv, &project.join("out/dags"), 1, &[("produce", "")]);
        assert_eq!(states["produce.made"], "success", "Airflow {version}: {states:#?}");
        assert_eq!(states["produce.nothing_new"], "skipped", "Airflow {version}: {states:#?}");
        let events: Vec<(&str, &str)> = report["asset_events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (e["uri"].as_str().unwrap(), e["task_id"].as_str().unwrap()))
            .collect();
        assert_eq!(events, [("lake.raw", "made")], "Airflow {version}: {report}");
    }

    let spec = dir.path().join("airflow3/assets.yaml");
    let output = fhirflow().arg("run").arg(&spec).args(["--format", "json"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let tasks = summary_tasks(&summary);
    let state = |key: &str| {
        tasks
            .iter()
            .find(|(k, _, _)| k == key)
            .map(|(_, state, why)| (state.clone(), why.clone()))
            .unwrap_or_else(|| panic!("{key} not in {summary}"))
    };
    assert_eq!(state("produce.made").0, "success");
    assert_eq!(state("produce.nothing_new").0, "skipped");
    let (all, why) = state("consume_all.report");
    assert_eq!(all, "skipped");
    assert!(why.starts_with("not triggered"), "{why}");
    assert_eq!(state("consume_any.report").0, "success");
    assert_eq!(state("consume_any.after_report").0, "success");
    let store = fhirflow::run::store::Store::open(&dir.path().join("airflow3/.fhirflow")).unwrap();
    let events = store.asset_events(summary["run_id"].as_str().unwrap()).unwrap();
    assert_eq!(events, [("lake.raw".to_owned(), "produce".to_owned(), "made".to_owned())]);
}

/// The asset-scheduled FHIR spec (examples/fhir_assets): its DAGs load in Airflow 3.3 and
/// 2.11 with the dbt DAG scheduled on the load's table asset, the table asset on
/// `update_watermark`'s outlets, and no sensor. A load with nothing new records no asset event,
/// in Airflow and under `fhirflow run`, where the dbt pipeline is then not triggered.
#[test]
fn the_asset_scheduled_fhir_spec_runs_dbt_only_after_a_load() {
    let (Some(airflow), Some(airflow2), Some(_)) =
        (venv("FHIRFLOW_AIRFLOW_VENV"), venv("FHIRFLOW_AIRFLOW2_VENV"), venv("FHIRFLOW_FAKESNOW_VENV"))
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let Some(s3) = empty_lake(dir.path()) else { return };
    let snow = fakesnow(&dir.path().join("db"), s3.port).expect("fakesnow");
    for (version, venv) in [(3, &airflow), (2, &airflow2)] {
        let project = dir.path().join(format!("airflow{version}"));
        let spec = spec_copy("examples/fhir_assets/fhir.yaml", &project, version);
        let expectations = fhirflow::compile_file(&spec).unwrap().graph.expectations();
        let dbt = &expectations["dags"]["dbt_transform_fhir"];
        assert_eq!(dbt["schedule"], serde_json::json!({"assets": {"all": ["warehouse.RAW.FHIR_BUNDLES"]}}));
        let outlets = &expectations["dags"]["s3_to_snowflake_load"]["tasks"]["update_watermark"]["outlets"];
        assert_eq!(outlets, &serde_json::json!(["warehouse.RAW.FHIR_BUNDLES"]));
        dagbag_check(venv, &spec, &project.join("out"));
        let (states, report) =
            airflow_sequence(venv, &project.join("out/dags"), s3.port, &[("s3_to_snowflake_load", SNOWFLAKE_ONLY)]);
        assert_eq!(states["s3_to_snowflake_load.update_watermark"], "skipped", "Airflow {version}");
        assert_eq!(report["asset_events"], serde_json::json!([]), "Airflow {version}");
    }
    let spec = spec_copy("examples/fhir_assets/fhir.yaml", &dir.path().join("run"), 3);
    let (states, code) = fhirflow_run(&spec, &s3, &snow, &["s3_to_snowflake_load", "dbt_transform_fhir"]);
    assert_eq!(code, Some(0), "{states:#?}");
    assert_eq!(states["s3_to_snowflake_load.update_watermark"], "skipped");
    for (key, state) in &states {
        if key.starts_with("dbt_transform_fhir.") {
            assert_eq!(state, "skipped", "{key} ran without an asset event: {states:#?}");
        }
    }
}

/// A pipeline that triggers two others: one started and left to run, one waited for, which
/// fails. `conf` carries a template and a number.
const TRIGGER_SPEC: &str = r#"version: 1
defaults: {start_date: "2026-01-01", retries: 0}
airflow: {version: VERSION}
pipelines:
  ingest:
    schedule: "0 0 * * *"
    stages:
      fetch: {kind: shell, command: "echo fetched"}
      start_transform:
        kind: trigger
        pipeline: transform
        conf: {source: "{{ run_id }}", batch: 3}
        after: [fetch]
      start_report: {kind: trigger, pipeline: report, wait_for_completion: true, poke_interval: 5s, after: [fetch]}
      done: {kind: shell, command: "echo done", after: [start_report]}
  transform:
    stages:
      build: {kind: shell, command: "echo built"}
  report:
    stages:
      broken: {kind: shell, command: "exit 3"}
"#;

/// Triggers, for real: in Airflow 3.3 and 2.11 the DAGs load with TriggerDagRunOperator and
/// the spec's target and conf, and `airflow dags test ingest` creates the run of `transform`
/// in the metadata DB. Under `fhirflow run`, selecting `ingest` alone runs both started
/// pipelines after their triggers, and the stage after the waiting trigger is upstream_failed
/// because the run it waited for failed.
#[test]
fn triggers_start_their_pipelines_in_both_backends() {
    let (Some(airflow), Some(airflow2)) = (venv("FHIRFLOW_AIRFLOW_VENV"), venv("FHIRFLOW_AIRFLOW2_VENV")) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    for (version, venv) in [(3, &airflow), (2, &airflow2)] {
        let spec = versioned_spec(dir.path(), version, "triggers.yaml", TRIGGER_SPEC);
        let project = spec.parent().unwrap();
        dagbag_check(venv, &spec, &project.join("out"));
        // No scheduler runs the waited-for report here, so that trigger is marked success.
        let (states, report) = airflow_sequence(venv, &project.join("out/dags"), 1, &[("ingest", "start_report|done")]);
        assert_eq!(states["ingest.start_transform"], "success", "Airflow {version}: {states:#?}");
        let started: Vec<&str> = report["dag_runs"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|r| r["dag_id"].as_str().filter(|d| *d != "ingest"))
            .collect();
        assert_eq!(started, ["transform"], "Airflow {version}: {report}");
    }

    let spec = dir.path().join("airflow3/triggers.yaml");
    let output = fhirflow().arg("run").arg(&spec).args(["--pipeline", "ingest", "--format", "json"]).output().unwrap();
    assert_eq!(output.status.code(), Some(5), "{}", String::from_utf8_lossy(&output.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let order: Vec<(String, String)> =
        summary_tasks(&summary).into_iter().map(|(key, state, _)| (key, state)).collect();
    let state = |key: &str| order.iter().find(|(k, _)| k == key).map(|(_, s)| s.as_str()).unwrap_or("missing");
    assert_eq!(state("ingest.start_transform"), "success", "{order:?}");
    assert_eq!(state("transform.build"), "success", "{order:?}");
    assert_eq!(state("report.broken"), "failed", "{order:?}");
    assert_eq!(state("ingest.done"), "upstream_failed", "{order:?}");
    let at = |key: &str| order.iter().position(|(k, _)| k == key).unwrap();
    assert!(at("ingest.start_transform") < at("transform.build"), "{order:?}");
    assert!(at("report.broken") < at("ingest.done"), "{order:?}");
}

/// Skips and trigger rules after them: a branch that exits 99 (skipped by BashOperator and by
/// `fhirflow run`), a failure, and a task under each rule below them.
const RULES_SPEC: &str = r#"version: 1
defaults: {start_date: "2026-01-01", retries: 0}
airflow: {version: VERSION}
pipelines:
  rules:
    schedule: "0 0 * * *"
    stages:
      skip_me: {kind: shell, command: "exit 99"}
      ok: {kind: shell, command: "echo ok"}
      broken: {kind: shell, command: "exit 3"}
      needs_all: {kind: shell, command: "echo x", after: [skip_me, ok]}
      below_skip: {kind: shell, command: "echo x", after: [needs_all]}
      join: {kind: shell, command: "echo x", after: [skip_me, ok], trigger_rule: none_failed}
      min_one: {kind: shell, command: "echo x", after: [skip_me, ok], trigger_rule: none_failed_min_one_success}
      all_skipped: {kind: shell, command: "echo x", after: [skip_me, needs_all], trigger_rule: all_skipped}
      cleanup: {kind: shell, command: "echo x", after: [broken, below_skip], trigger_rule: all_done}
      on_failure: {kind: shell, command: "echo x", after: [broken, ok], trigger_rule: one_failed}
      no_failure: {kind: shell, command: "echo x", after: [ok, skip_me], trigger_rule: one_failed}
      any_success: {kind: shell, command: "echo x", after: [broken, ok], trigger_rule: one_success}
      not_skipped: {kind: shell, command: "echo x", after: [broken, ok], trigger_rule: none_skipped}
      after_failure: {kind: shell, command: "echo x", after: [broken], trigger_rule: all_failed}
      always: {kind: shell, command: "echo x", after: [broken], trigger_rule: always}
"#;

/// Every trigger rule after a skip and a failure ends each task in the same state in real
/// Airflow 3.3 and 2.11 as under `fhirflow run`, task for task.
#[test]
fn trigger_rules_end_every_task_as_airflow_does() {
    let (Some(airflow), Some(airflow2)) = (venv("FHIRFLOW_AIRFLOW_VENV"), venv("FHIRFLOW_AIRFLOW2_VENV")) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut airflow_states = Vec::new();
    for (version, venv) in [(3, &airflow), (2, &airflow2)] {
        let spec = versioned_spec(dir.path(), version, "rules.yaml", RULES_SPEC);
        let project = spec.parent().unwrap();
        dagbag_check(venv, &spec, &project.join("out"));
        let (states, _) = airflow_sequence(venv, &project.join("out/dags"), 1, &[("rules", "")]);
        airflow_states.push((version, states));
    }
    let spec = dir.path().join("airflow3/rules.yaml");
    let output = fhirflow().arg("run").arg(&spec).args(["--format", "json"]).output().unwrap();
    assert_eq!(output.status.code(), Some(5), "{}", String::from_utf8_lossy(&output.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let run_states: States = summary_tasks(&summary).into_iter().map(|(key, state, _)| (key, state)).collect();
    assert_eq!(run_states["rules.join"], "success", "{run_states:#?}");
    assert_eq!(run_states["rules.below_skip"], "skipped", "{run_states:#?}");
    for (version, states) in &airflow_states {
        assert_eq!(states, &run_states, "Airflow {version} and fhirflow run end in different states");
    }
}
