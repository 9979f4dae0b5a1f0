//! Conformance: the generated files, checked by real Apache Airflow 3.3 and real dbt-core.
//!
//! `scripts/test.sh` builds the venvs (tests/conformance/ensure_venv.sh) and passes them in
//! `FHIRFLOW_AIRFLOW_VENV`, `FHIRFLOW_AIRFLOW2_VENV`, `FHIRFLOW_DBT_VENV` (dbt-core 1.11),
//! `FHIRFLOW_DBT17_VENV` and `FHIRFLOW_DBT112_VENV`. Without them these tests fail, unless
//! `FHIRFLOW_SKIP_CONFORMANCE=1` says to skip them on purpose.

mod common;

use common::{copy_dir, edit, fhirflow, repo, venv};
use std::path::Path;
use std::process::Command;

fn run(command: &mut Command) -> String {
    let output = command.output().expect("the checker starts");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{command:?} failed ({})\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        output.status
    );
    println!("{stdout}{stderr}");
    stdout
}

/// Runs `code` with the venv's python and `arg` as `sys.argv[1]`; returns its stdout.
fn python(venv: &Path, code: &str, arg: &Path) -> String {
    run(Command::new(venv.join("bin/python")).arg("-c").arg(code).arg(arg))
}

/// Applies `spec` under `out` and writes its expectations to `out/expect.json`.
fn apply(spec: &Path, out: &Path) -> serde_json::Value {
    fhirflow().arg("apply").arg(spec).arg("--out").arg(out).assert().success();
    let compiled = fhirflow::compile_file(spec).expect("the spec compiles");
    let pools = fhirflow::emit::DuckdbPools::of(&compiled.graph, &fhirflow::emit::Layout::new(spec, Some(out)));
    let expectations = compiled.graph.expectations_with_pools(|task| pools.task_pool(task));
    std::fs::write(out.join("expect.json"), expectations.to_string()).expect("write expectations");
    std::fs::write(out.join("expect-dbt.json"), expectations["dbt"].to_string()).expect("write dbt expectations");
    expectations
}

fn airflow_check(venv: &Path, out: &Path) {
    run(Command::new(venv.join("bin/python"))
        .arg(repo().join("tests/conformance/airflow_check.py"))
        .arg(out.join("dags"))
        .arg(out.join("expect.json")));
}

/// The task ids the FHIR seed lists, DAG by DAG.
const SEED_TASKS: &[(&str, &[&str])] = &[
    ("synthea_generation", &["generate_patients"]),
    ("s3_upload", &["upload_bundles"]),
    (
        "s3_to_snowflake_load",
        &[
            "create_snowflake_tables",
            "get_last_watermark",
            "list_new_s3_files",
            "load_files_to_snowflake",
            "update_watermark",
        ],
    ),
    (
        "dbt_transform_fhir",
        &[
            "wait_for_s3_load",
            "check_dbt_installation",
            "dbt_deps",
            "dbt_debug",
            "dbt_run_staging",
            "parse_staging_results",
            "dbt_run_intermediate",
            "parse_intermediate_results",
            "dbt_run_marts",
            "parse_marts_results",
            "dbt_test",
            "parse_test_results",
            "dbt_docs_generate",
        ],
    ),
];

#[test]
fn fhir_dags_load_in_airflow_with_the_seed_task_ids() {
    let Some(airflow) = venv("FHIRFLOW_AIRFLOW_VENV") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let expectations = apply(&repo().join("pipelines/fhir.yaml"), dir.path());
    for (dag, tasks) in SEED_TASKS {
        let mut got: Vec<&str> =
            expectations["dags"][dag]["tasks"].as_object().expect(dag).keys().map(String::as_str).collect();
        let mut want = tasks.to_vec();
        got.sort();
        want.sort();
        assert_eq!(got, want, "task ids of {dag}");
    }
    let sensor = &expectations["dags"]["dbt_transform_fhir"]["tasks"]["wait_for_s3_load"]["sensor"];
    assert_eq!(sensor["external_dag_id"], "s3_to_snowflake_load");
    assert_eq!(sensor["external_task_id"], "update_watermark");
    assert_eq!(expectations["dags"]["s3_to_snowflake_load"]["max_active_runs"], 1);
    assert_eq!(expectations["dags"]["synthea_generation"]["schedule"]["interval_seconds"], 10);
    airflow_check(&airflow, dir.path());
}

#[test]
fn dental_dags_load_in_airflow() {
    let Some(airflow) = venv("FHIRFLOW_AIRFLOW_VENV") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let expectations = apply(&repo().join("pipelines/dental_clinic.yaml"), dir.path());
    let nightly = &expectations["dags"]["dbt_dental_clinic_nightly"];
    assert_eq!(nightly["schedule"], "0 2 * * *");
    assert_eq!(nightly["tasks"]["dbt_build"]["retries"], 2);
    assert_eq!(nightly["tasks"]["dbt_build"]["retry_delay_seconds"], 300);
    assert_eq!(nightly["tasks"]["dbt_build"]["upstream"], serde_json::json!(["dbt_build_source_freshness"]));
    assert_eq!(nightly["tasks"]["dbt_build"]["dbt"]["deps_first"], true);
    let per_model = &expectations["dags"]["dbt_dental_clinic_per_model"]["tasks"];
    assert_eq!(
        per_model["marts.fct_revenue_run"]["upstream"],
        serde_json::json!(["intermediate.int_procedure_revenue_run", "staging.stg_appointments_run"])
    );
    airflow_check(&airflow, dir.path());
}

#[test]
fn dbt_reads_the_generated_tags_and_selectors() {
    let Some(dbt) = venv("FHIRFLOW_DBT_VENV") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&repo().join("tests/fixtures/dbt_fhir"), &dir.path().join("dbt"));
    let expectations = apply(&repo().join("pipelines/fhir.yaml"), dir.path());
    assert_eq!(expectations["dbt"]["tags"]["staging"].as_array().unwrap().len(), 18);
    assert_eq!(expectations["dbt"]["tags"]["intermediate"].as_array().unwrap().len(), 4);
    assert_eq!(expectations["dbt"]["tags"]["marts"].as_array().unwrap().len(), 5);
    let stdout = run(Command::new(dbt.join("bin/python"))
        .arg(repo().join("tests/conformance/dbt_check.py"))
        .arg("--strict")
        .arg(dir.path().join("dbt"))
        .arg(dir.path().join("expect-dbt.json")));
    // fhir.yaml's `dbt.version: "1.7"` writes `tests:`, which dbt 1.11 reads without a warning.
    assert!(
        stdout.contains("dbt-core 1.11.") && stdout.contains("14 column tests and 14 descriptions match"),
        "{stdout}"
    );
}

/// `airflow dags test` on the generated dbt DAG, with every dbt task running real dbt
/// against the DuckDB fixture project; only the cross-DAG sensor is marked success.
#[test]
fn airflow_dags_test_runs_the_dbt_dag_for_real() {
    let (Some(airflow), Some(dbt)) = (venv("FHIRFLOW_AIRFLOW_VENV"), venv("FHIRFLOW_DBT_VENV")) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("pipelines/fhir.yaml");
    std::fs::create_dir_all(spec.parent().unwrap()).unwrap();
    // Workers find the project next to the DAGs folder rather than at /opt/airflow/dbt.
    let text = std::fs::read_to_string(repo().join("pipelines/fhir.yaml")).unwrap();
    let deploy = "  deploy:\n    project_dir: /opt/airflow/dbt\n    profiles_dir: /opt/airflow/dbt\n";
    assert!(text.contains(deploy), "fhir.yaml has the deploy block this test removes");
    std::fs::write(&spec, text.replace(deploy, "")).unwrap();
    copy_dir(&repo().join("tests/fixtures/dbt_fhir"), &dir.path().join("dbt"));
    // The spec's `../dags` and `../dbt` climb out of its folder, so `--out` roots them.
    fhirflow().arg("apply").arg(&spec).arg("--out").arg(dir.path()).assert().success();
    run(Command::new("bash")
        .arg(repo().join("tests/conformance/airflow_dags_test.sh"))
        .arg(&airflow)
        .arg(dir.path().join("dags"))
        .arg("dbt_transform_fhir")
        .arg("wait_for_s3_load")
        .arg(dbt.join("bin"))
        .env("DBT_DUCKDB_PATH", dir.path().join("fhir.duckdb")));
    // The marts exist in the warehouse file, so dbt really ran every layer.
    let query = "import duckdb, sys; c = duckdb.connect(sys.argv[1], read_only=True); \
        print(sorted(r[0] for r in c.execute(\"select table_name from information_schema.tables where table_name like 'fct_%' or table_name like 'dim_%'\").fetchall()))";
    let stdout = python(&dbt, query, &dir.path().join("fhir.duckdb"));
    assert_eq!(
        stdout.trim(),
        "['dim_patients', 'fct_encounters', 'fct_medications', 'fct_observations', 'fct_procedures']"
    );
}

/// Quotes, newlines, `"""`, backslashes and Jinja in user strings reach Airflow as the same
/// strings, and never as code.
#[test]
fn hostile_strings_reach_airflow_as_strings() {
    let Some(airflow) = venv("FHIRFLOW_AIRFLOW_VENV") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let description = "ends \"\"\" here\nimport os; os.system('touch /tmp/pwned') \\ # \u{2028} done";
    let command = "echo \"$(whoami)\" 'it''s' \\\\ \"\"\" ; exit 0 # trailing.sh";
    let spec = dir.path().join("hostile.yaml");
    let yaml = format!(
        "version: 1\npipelines:\n  hostile:\n    description: {}\n    tags: [\"a\\\"b\"]\n    stages:\n      run_it:\n        kind: shell\n        command: {}\n        env: {{X: {}}}\n",
        serde_json::to_string(description).unwrap(),
        serde_json::to_string(command).unwrap(),
        serde_json::to_string(description).unwrap()
    );
    std::fs::write(&spec, yaml).unwrap();
    fhirflow().arg("apply").arg(&spec).arg("--out").arg(dir.path()).assert().success();
    let probe = r#"
import json, os, sys, tempfile
os.environ["AIRFLOW_HOME"] = tempfile.mkdtemp()
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(sys.argv[1])
assert not bag.import_errors, bag.import_errors
dag = bag.dags["hostile"]
task = dag.get_task("run_it")
print(json.dumps({"description": dag.description, "command": task.bash_command, "env": task.env, "tags": sorted(dag.tags)}))
"#;
    let stdout = python(&airflow, probe, &dir.path().join("dags"));
    let seen: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(seen["description"], description);
    // A template that renders to nothing keeps BashOperator from reading `….sh` as a file name.
    assert_eq!(seen["command"], format!("{command}{{{{ '' }}}}"));
    assert_eq!(seen["env"]["X"], description);
    assert_eq!(seen["tags"], serde_json::json!(["a\"b"]));
    assert!(!Path::new("/tmp/pwned").exists());
}

/// Pipeline and stage ids that are names the DAG module imports, defines or reads (`json`,
/// `shlex`, `DAG`, `timedelta`, its helpers, the builtins they call) or that look like its own
/// variables load with no import error and exactly the task ids written: the 3.x spec in
/// Airflow 3.3, the 2.x one (Docker, Kubernetes, cron timetable) in 2.11.
#[test]
fn ids_named_like_the_dag_modules_own_names_load_in_airflow() {
    let (Some(airflow), Some(airflow2)) = (venv("FHIRFLOW_AIRFLOW_VENV"), venv("FHIRFLOW_AIRFLOW2_VENV")) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let hostile = common::hostile_stage_ids();
    let [v3, v2] = common::every_feature_specs(dir.path(), &hostile);
    for (spec, venv) in [(v3, &airflow), (v2, &airflow2)] {
        let out = dir.path().join(spec.file_stem().unwrap());
        let expectations = apply(&spec, &out);
        let dags = expectations["dags"].as_object().unwrap();
        assert!(!dags.is_empty());
        for (dag_id, dag) in dags {
            assert!(common::IMPORTED_PIPELINE_IDS.contains(&dag_id.as_str()), "{dag_id}");
            for id in &hostile {
                assert!(dag["tasks"].get(*id).is_some(), "{dag_id} has no task {id}");
            }
        }
        airflow_check(venv, &out);
    }
}

/// `airflow: {version: 2}`: the same specs, emitted for Airflow 2, load in a real Airflow 2.11
/// with the same task graph as the 3.x output (both seed specs, compiled as one folder).
#[test]
fn airflow_2_target_loads_the_same_graph_in_airflow_2_11() {
    let Some(airflow2) = venv("FHIRFLOW_AIRFLOW2_VENV") else { return };
    let dir = tempfile::tempdir().unwrap();
    let specs = dir.path().join("pipelines");
    std::fs::create_dir_all(&specs).unwrap();
    for name in ["fhir.yaml", "dental_clinic.yaml"] {
        let text = std::fs::read_to_string(repo().join("pipelines").join(name)).unwrap();
        let v2 = text.replacen("airflow:\n", "airflow:\n  version: 2\n", 1).replace("  version: 3\n", "");
        assert!(v2.contains("  version: 2\n"), "{name} has an airflow section");
        std::fs::write(specs.join(name), v2).unwrap();
    }
    // The dental spec reads its dbt manifest from the examples folder beside `pipelines/`.
    copy_dir(&repo().join("examples/dental_clinic"), &dir.path().join("examples/dental_clinic"));
    let out = dir.path().join("out");
    fhirflow().arg("apply").arg(&specs).arg("--out").arg(&out).assert().success();
    let mut dags = serde_json::Map::new();
    for (path, compiled) in fhirflow::compile_path(&specs).expect("the v2 specs compile") {
        let pools = fhirflow::emit::DuckdbPools::of(&compiled.graph, &fhirflow::emit::Layout::new(&path, Some(&out)));
        let expectations = compiled.graph.expectations_with_pools(|task| pools.task_pool(task));
        dags.extend(expectations["dags"].as_object().unwrap().clone());
    }
    let dbt_dag = std::fs::read_to_string(out.join("dags/dbt_transform_fhir.py")).unwrap();
    assert!(dbt_dag.contains("from airflow import DAG") && !dbt_dag.contains("airflow.sdk"));
    std::fs::write(out.join("expect.json"), serde_json::json!({ "format_version": "1.0", "dags": dags }).to_string())
        .unwrap();
    airflow_check(&airflow2, &out);
}

/// The dbt_modes fixture's layers, with the column tests fhirflow writes into its YAML
/// (tests/fixtures/dbt_modes/manifest.json is the parse of the project with them).
const MODES_LAYERS: &str = "layers:\n  staging:\n    models:\n      - {name: stg_patients, columns: [{name: patient_id, tests: [unique, not_null]}]}\n      - {name: stg_visits, columns: [{name: visit_id, tests: [unique, not_null]}]}\n  intermediate: {models: [int_visit_counts]}\n  marts:\n    models:\n      - {name: dim_patients, columns: [{name: patient_id, tests: [unique]}]}\n      - fct_visits\n";

/// Writes `dir/NAME.yaml`, a spec whose one pipeline `modes` builds the dbt_modes fixture
/// (copied to `dir/dbt`) with `stage` as its dbt stage. The first spec of a folder has fhirflow
/// run the real `dbt parse` when compiling; later ones read the manifest it wrote.
fn modes_spec(dir: &Path, name: &str, dbt: &Path, version: u32, stage: &str) -> std::path::PathBuf {
    modes_spec_for(dir, name, dbt, version, None, stage)
}

/// [`modes_spec`] with `dbt.version: range` when given.
fn modes_spec_for(
    dir: &Path,
    name: &str,
    dbt: &Path,
    version: u32,
    range: Option<&str>,
    stage: &str,
) -> std::path::PathBuf {
    let fresh = !dir.join("dbt").exists();
    let range = range.map(|r| format!("  version: '{r}'\n")).unwrap_or_default();
    if fresh {
        copy_dir(&repo().join("tests/fixtures/dbt_modes"), &dir.join("dbt"));
        std::fs::remove_file(dir.join("dbt/manifest.json")).unwrap();
    }
    let spec = dir.join(format!("{name}.yaml"));
    let write = |parse: bool| {
        std::fs::write(
        &spec,
        format!(
            "version: 1\ndefaults: {{retries: 1, start_date: '2026-01-01', failure_webhook_env: ALERTS_URL}}\n\
             dbt:\n{range}  project_dir: dbt\n  executable: {}\n  manifest: dbt/target/manifest.json\n  parse_manifest: {parse}\n  artifacts: {{path: {}}}\n  \
             docker: {{image: 'example/dbt-duckdb:1.11', mounts: ['/srv/dbt:/opt/dbt:ro'], env: {{DBT_DUCKDB_PATH: /data/clinic.duckdb}}}}\n  \
             kubernetes: {{image: 'example/dbt-duckdb:1.11', namespace: analytics, resources: {{cpu: 500m, memory: 1Gi}}, env_from_secrets: [warehouse-creds]}}\n\
             airflow: {{version: {version}}}\n\
             {MODES_LAYERS}\
             pipelines:\n  modes:\n    schedule: '0 3 * * *'\n    stages:\n      dbt: {stage}\n",
            dbt.join("bin/dbt").display(),
            dir.join("artifacts").display(),
        ),
      )
      .unwrap();
    };
    if fresh {
        // The first apply writes the layers' YAML into the project; the parse after it sees
        // the column tests that YAML declares.
        write(true);
        fhirflow().arg("apply").arg(&spec).arg("--out").arg(dir.join("prelude")).assert().success();
        copy_dir(&dir.join("prelude/dbt/models"), &dir.join("dbt/models"));
    }
    write(fresh);
    spec
}

/// per_model matches dbt's own graph (read from manifest.json by a checker that shares no
/// code with fhirflow) for every test placement, under every operator, in Airflow 3.3 and
/// 2.11; and every output passes the general Airflow check too.
#[test]
fn per_model_dags_match_dbts_graph_edge_for_edge() {
    let (Some(airflow), Some(airflow2), Some(dbt)) =
        (venv("FHIRFLOW_AIRFLOW_VENV"), venv("FHIRFLOW_AIRFLOW2_VENV"), venv("FHIRFLOW_DBT_VENV"))
    else {
        return;
    };
    let cases = [
        (3, "none", "bash"),
        (3, "after_each", "bash"),
        (3, "after_layer", "bash"),
        (3, "build", "bash"),
        (3, "after_each", "docker"),
        (3, "after_each", "kubernetes"),
        (2, "after_each", "bash"),
        (2, "build", "kubernetes"),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (i, (version, tests, operator)) in cases.into_iter().enumerate() {
        let stage = format!("{{kind: dbt, command: build, dbt_mode: per_model, tests: {tests}, operator: {operator}}}");
        let spec = modes_spec(dir.path(), &format!("case{i}"), &dbt, version, &stage);
        let spec_with_deploy = std::fs::read_to_string(&spec)
            .unwrap()
            .replace("  artifacts:", "  deploy: {project_dir: /opt/dbt}\n  artifacts:");
        std::fs::write(&spec, spec_with_deploy).unwrap();
        println!("case: Airflow {version}, tests: {tests}, operator: {operator}");
        let out = dir.path().join(format!("out{i}"));
        apply(&spec, &out);
        let venv = if version == 3 { &airflow } else { &airflow2 };
        airflow_check(venv, &out);
        run(Command::new(venv.join("bin/python"))
            .arg(repo().join("tests/conformance/per_model_check.py"))
            .arg(out.join("dags"))
            .arg("modes")
            .arg(dir.path().join("dbt/target/manifest.json"))
            .arg(tests));
    }
    // A compile-time selection picks the nodes `dbt ls` picks, and keeps dbt's edges between them.
    let (select, exclude) = ("['+fct_visits', 'stg_patients+']", "['raw_patients', 'resource_type:snapshot']");
    let stage = format!(
        "{{kind: dbt, command: build, dbt_mode: per_model, tests: none, select: {select}, exclude: {exclude}}}"
    );
    let spec = modes_spec(dir.path(), "selected", &dbt, 3, &stage);
    let out = dir.path().join("out-selected");
    apply(&spec, &out);
    let listed = run(Command::new(dbt.join("bin/dbt"))
        .args(["ls", "--quiet", "--output", "json", "--output-keys", "unique_id"])
        .args(["--resource-type", "model", "--resource-type", "seed", "--resource-type", "snapshot"])
        .args(["--select", "+fct_visits", "stg_patients+", "--exclude", "raw_patients", "resource_type:snapshot"])
        .arg("--project-dir")
        .arg(dir.path().join("dbt"))
        .arg("--profiles-dir")
        .arg(dir.path().join("dbt")));
    let ids: Vec<String> = listed
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["unique_id"].as_str().map(str::to_owned))
        .collect();
    assert!(ids.contains(&"model.clinic.dim_patients".to_owned()) && !ids.iter().any(|i| i.contains("raw_patients")));
    std::fs::write(dir.path().join("selected.json"), serde_json::to_string(&ids).unwrap()).unwrap();
    run(Command::new(airflow.join("bin/python"))
        .arg(repo().join("tests/conformance/per_model_check.py"))
        .arg(out.join("dags"))
        .arg("modes")
        .arg(dir.path().join("dbt/target/manifest.json"))
        .arg("none")
        .arg(dir.path().join("selected.json")));
}

/// The same spec in all three modes, switched by `dbt_mode` alone: each loads in Airflow and
/// its dbt command lines select what dbt would.
#[test]
fn one_setting_switches_between_the_three_modes() {
    let (Some(airflow), Some(dbt)) = (venv("FHIRFLOW_AIRFLOW_VENV"), venv("FHIRFLOW_DBT_VENV")) else {
        return;
    };
    let mut task_counts = Vec::new();
    let dir = tempfile::tempdir().unwrap();
    for mode in ["single", "layered", "per_model"] {
        let spec = modes_spec(dir.path(), mode, &dbt, 3, &format!("{{kind: dbt, command: build, dbt_mode: {mode}}}"));
        let out = dir.path().join(format!("out-{mode}"));
        let expectations = apply(&spec, &out);
        airflow_check(&airflow, &out);
        task_counts.push(expectations["dags"]["modes"]["tasks"].as_object().unwrap().len());
    }
    // single: deps + build in one task; layered: 3 layers; per_model: 2 seeds, 4 models, 1
    // snapshot, 3 test tasks, the two-parent relationships test, and the join. The project
    // declares no packages, so neither has a `dbt deps` task.
    assert_eq!(task_counts, [1, 3, 12]);
}

/// `airflow dags test` runs the per-model DAG for real: each task runs dbt against DuckDB,
/// the tests run after their models, and each task's artifacts land in the artifacts store.
#[test]
fn airflow_dags_test_runs_the_per_model_dag_for_real() {
    let (Some(airflow), Some(dbt)) = (venv("FHIRFLOW_AIRFLOW_VENV"), venv("FHIRFLOW_DBT_VENV")) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let spec = modes_spec(
        dir.path(),
        "modes",
        &dbt,
        3,
        "{kind: dbt, command: build, dbt_mode: per_model, tests: after_each, freshness: warn}",
    );
    fhirflow().arg("apply").arg(&spec).assert().success();
    run(Command::new("bash")
        .arg(repo().join("tests/conformance/airflow_dags_test.sh"))
        .arg(&airflow)
        .arg(dir.path().join("dags"))
        .arg("modes")
        .arg("")
        .arg(dbt.join("bin"))
        .env("DBT_DUCKDB_PATH", dir.path().join("clinic.duckdb")));
    let query = "import duckdb, sys; c = duckdb.connect(sys.argv[1], read_only=True); \
        print(c.execute('select count(*), sum(visits) from dim_patients').fetchone())";
    assert_eq!(python(&dbt, query, &dir.path().join("clinic.duckdb")).trim(), "(3, 4)");
    let runs = dir.path().join("artifacts/runs/modes");
    let run_dir = std::fs::read_dir(&runs).expect("artifacts saved").next().unwrap().unwrap().path();
    for task in ["marts.dim_patients_run", "marts.dim_patients_test", "seeds.raw_visits_seed"] {
        let saved = run_dir.join(task);
        assert!(saved.join("run_results.json").is_file(), "{} has run_results.json", saved.display());
        assert!(saved.join("dbt.log").is_file(), "{} has dbt.log", saved.display());
    }
    assert!(dir.path().join("artifacts/state/manifest.json").is_file(), "the state manifest is kept");
}

/// Runs `command` (the `airflow pools set` line a plan prints) in a fresh Airflow home of `venv`
/// and returns pool `name` as `airflow pools list` then shows it.
fn created_pool(venv: &Path, out: &Path, command: &str, name: &str) -> serde_json::Value {
    let listed = run(Command::new("bash")
        .arg(repo().join("tests/conformance/airflow_pools.sh"))
        .arg(venv)
        .arg(out.join("dags"))
        .arg(command));
    let listed: serde_json::Value = serde_json::from_str(&listed).expect("pools list JSON");
    let found = listed.as_array().unwrap().iter().find(|p| p["pool"] == name).cloned();
    found.unwrap_or_else(|| panic!("{} has pool {name}: {listed:#}", venv.display()))
}

/// dbt tasks on one DuckDB file may not run side by side: per_model DAGs put every dbt task in
/// one Airflow pool (airflow_check compares each task's pool, in 3.3 and 2.11), and the plan
/// names the pool with the command that creates it, which real Airflow runs as printed.
#[test]
fn duckdb_dbt_tasks_share_a_pool_that_the_plan_says_how_to_create() {
    let (Some(airflow), Some(airflow2), Some(dbt)) =
        (venv("FHIRFLOW_AIRFLOW_VENV"), venv("FHIRFLOW_AIRFLOW2_VENV"), venv("FHIRFLOW_DBT_VENV"))
    else {
        return;
    };
    for (version, venv) in [(3, &airflow), (2, &airflow2)] {
        let dir = tempfile::tempdir().unwrap();
        let spec = modes_spec(dir.path(), "modes", &dbt, version, "{kind: dbt, command: build, dbt_mode: per_model}");
        let out = dir.path().join("out");
        let plan =
            fhirflow().arg("plan").arg(&spec).arg("--out").arg(&out).args(["--format", "json"]).output().unwrap();
        let plan: serde_json::Value = serde_json::from_slice(&plan.stdout).expect("plan JSON");
        assert_eq!(plan["pools"].as_array().map(Vec::len), Some(1), "{plan:#}");
        let pool = &plan["pools"][0];
        assert_eq!(pool["name"], "fhirflow_duckdb_clinic_dev", "{plan:#}");
        assert_eq!(pool["slots"], 1);
        let note = plan["notes"].as_array().unwrap().iter().filter_map(|n| n.as_str()).find(|n| n.contains("pool"));
        let note = note.expect("a note names the pool");
        let command =
            note.rsplit_once(": `").map(|(_, c)| c.trim_end_matches('`')).expect("the note ends in a command");
        let expectations = apply(&spec, &out);
        let dbt_tasks: Vec<_> = expectations["dags"]["modes"]["tasks"]
            .as_object()
            .unwrap()
            .iter()
            .filter(|(_, t)| !t["dbt"].is_null())
            .map(|(_, t)| t["pool"].as_str().unwrap().to_owned())
            .collect();
        assert!(dbt_tasks.len() > 3 && dbt_tasks.iter().all(|p| p == "fhirflow_duckdb_clinic_dev"), "{dbt_tasks:?}");
        airflow_check(venv, &out);
        let created = created_pool(venv, &out, command, "fhirflow_duckdb_clinic_dev");
        assert_eq!(created["slots"].to_string().trim_matches('"'), "1", "{created}");
        assert_eq!(created["description"], pool["description"], "{created}");
    }
}

/// A failing task POSTs its failure to the webhook named by `failure_webhook_env`, for real:
/// `airflow dags test` runs the task, and a server on 127.0.0.1 started here receives it.
#[test]
fn a_failed_task_calls_the_failure_webhook() {
    let Some(airflow) = venv("FHIRFLOW_AIRFLOW_VENV") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let received = dir.path().join("received.json");
    let server = r#"
import http.server, sys
out = sys.argv[1]
class Hook(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        with open(out, "wb") as f:
            f.write(body)
        self.send_response(204)
        self.end_headers()
    def log_message(self, *args):
        pass
httpd = http.server.HTTPServer(("127.0.0.1", 0), Hook)
print(httpd.server_address[1], flush=True)
httpd.timeout = 300
httpd.handle_request()
"#;
    let mut child = Command::new(airflow.join("bin/python"))
        .arg("-c")
        .arg(server)
        .arg(&received)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut port = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut port).unwrap();
    let spec = dir.path().join("alerts.yaml");
    std::fs::write(
        &spec,
        "version: 1\ndefaults: {retries: 0, failure_webhook_env: FHIRFLOW_TEST_WEBHOOK, start_date: '2026-01-01'}\n\
         pipelines:\n  alerts:\n    schedule: '0 3 * * *'\n    stages:\n      breaks: {kind: shell, command: 'exit 3'}\n",
    )
    .unwrap();
    fhirflow().arg("apply").arg(&spec).assert().success();
    let status = Command::new("bash")
        .arg(repo().join("tests/conformance/airflow_dags_test.sh"))
        .arg(&airflow)
        .arg(dir.path().join("dags"))
        .arg("alerts")
        .arg("")
        .env("FHIRFLOW_TEST_WEBHOOK", format!("http://127.0.0.1:{}/hook", port.trim()))
        .status()
        .unwrap();
    assert!(!status.success(), "the run fails");
    let _ = child.kill();
    let body: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&received).expect("the webhook was called")).unwrap();
    assert_eq!(body["dag_id"], "alerts");
    assert_eq!(body["task_id"], "breaks");
    assert!(body["text"].as_str().unwrap().contains("alerts.breaks"), "{body}");
}

/// Writes the FHIR spec with `dbt.version` set to `range` (`None`: unset), applies it onto a
/// copy of the dbt_fhir fixture in `dir`, and returns the expectations file for dbt_check.py.
fn fhir_with_dbt_version(dir: &Path, range: Option<&str>) -> std::path::PathBuf {
    let pinned = "  version: \"1.7\"\n";
    let text = std::fs::read_to_string(repo().join("pipelines/fhir.yaml")).unwrap();
    assert!(text.contains(pinned), "fhir.yaml pins the seed's dbt-core 1.7");
    let line = range.map(|r| format!("  version: \"{r}\"\n")).unwrap_or_default();
    let spec = dir.join("fhir.yaml");
    std::fs::write(&spec, text.replacen(pinned, &line, 1)).unwrap();
    copy_dir(&repo().join("tests/fixtures/dbt_fhir"), &dir.join("dbt"));
    let expectations = apply(&spec, dir);
    assert_eq!(expectations["dbt"]["tests"].as_array().unwrap().len(), 14, "the FHIR spec declares 14 column tests");
    assert_eq!(expectations["dbt"]["descriptions"].as_object().unwrap().len(), 14);
    dir.join("expect-dbt.json")
}

/// Runs dbt_check.py with the venv's dbt on `dir/dbt`; returns its exit code and output.
fn dbt_check(dbt: &Path, dir: &Path, expect: &Path) -> (Option<i32>, String) {
    let output = Command::new(dbt.join("bin/python"))
        .arg(repo().join("tests/conformance/dbt_check.py"))
        .arg("--strict")
        .arg(dir.join("dbt"))
        .arg(expect)
        .output()
        .expect("the checker starts");
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    println!("{text}");
    (output.status.code(), text)
}

/// The FHIR spec with `dbt.version: range` passes the whole strict dbt check of the venv's dbt,
/// whose version starts with `release`, with all 14 column tests seen.
fn fhir_passes_the_dbt_check(dbt: &Path, range: &str, release: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let expect = fhir_with_dbt_version(dir.path(), Some(range));
    let (code, text) = dbt_check(dbt, dir.path(), &expect);
    assert_eq!(code, Some(0), "{text}");
    let summary = format!("dbt-core {release}");
    assert!(text.contains(&summary), "{text}");
    assert!(text.contains("14 column tests and 14 descriptions match (dbt lists 14 tests)"), "{text}");
    dir
}

/// Keeps only the `tests` of an expectations file, for a check of the test count alone.
fn tests_only(expect: &Path) -> std::path::PathBuf {
    let mut doc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(expect).unwrap()).unwrap();
    doc["tags"] = serde_json::json!({});
    doc["selectors"] = serde_json::json!([]);
    doc["descriptions"] = serde_json::json!({});
    let path = expect.with_file_name("expect-tests.json");
    std::fs::write(&path, doc.to_string()).unwrap();
    path
}

/// The names `dbt ls --resource-type test` lists, from the venv's dbt, on `dir/dbt`.
fn dbt_ls_tests(dbt: &Path, dir: &Path) -> Vec<String> {
    let listed = run(Command::new(dbt.join("bin/dbt"))
        .args(["ls", "--quiet", "--resource-type", "test", "--output", "name"])
        .arg("--project-dir")
        .arg(dir.join("dbt"))
        .arg("--profiles-dir")
        .arg(dir.join("dbt"))
        .env("DBT_SEND_ANONYMOUS_USAGE_STATS", "false"));
    let mut names: Vec<String> = listed.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect();
    names.sort();
    names
}

/// The per_model DAG of the dbt_modes fixture, compiled with dbt.version `range` from a
/// `dbt parse` of the venv's dbt, has every test task; dbt lists every test. Returns the
/// folder and the spec, which runs `dbt parse` when compiled.
fn modes_tests_survive(dbt: &Path, range: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let stage = "{kind: dbt, command: build, dbt_mode: per_model, tests: after_each}";
    let spec = modes_spec_for(dir.path(), "modes", dbt, 3, Some(range), stage);
    let expectations = apply(&spec, &dir.path().join("out"));
    let tasks = expectations["dags"]["modes"]["tasks"].as_object().unwrap();
    let tests: Vec<&String> = tasks.keys().filter(|t| t.ends_with("_test")).collect();
    // One task per tested model (stg_patients, stg_visits, dim_patients), and the two-parent test.
    assert_eq!(tests.len(), 4, "{tests:?}");
    // With the seeds, models, snapshot and join (no `dbt deps`: the project has no packages).
    assert_eq!(tasks.len(), 12, "{:?}", tasks.keys().collect::<Vec<_>>());
    // 5 column tests from the spec's YAML, and the project's singular test.
    let listed = dbt_ls_tests(dbt, dir.path());
    assert_eq!(listed.len(), 6, "{listed:?}");
    assert!(listed.contains(&"not_null_stg_visits_visit_id".to_owned()), "{listed:?}");
    (dir, spec)
}

/// dbt-core 1.7 (the FHIR seed's pin) drops `data_tests:` without an error. With
/// `dbt.version: "1.7"` fhirflow writes `tests:`, and dbt 1.7 sees all 14 of the FHIR spec's
/// tests; the same spec without `dbt.version` writes `data_tests:`, and the check fails on the
/// count. A 1.7 manifest is read under "1.7" and refused, located, under the default range.
#[test]
fn dbt_1_7_sees_every_column_test() {
    let Some(dbt17) = venv("FHIRFLOW_DBT17_VENV") else { return };
    fhir_passes_the_dbt_check(&dbt17, "1.7", "1.7.");

    let dropped = tempfile::tempdir().unwrap();
    let expect = tests_only(&fhir_with_dbt_version(dropped.path(), None));
    let yaml = std::fs::read_to_string(dropped.path().join("dbt/models/marts/marts_models.yml")).unwrap();
    assert!(yaml.contains("data_tests:"), "without dbt.version fhirflow writes data_tests:");
    let (code, text) = dbt_check(&dbt17, dropped.path(), &expect);
    assert_eq!(code, Some(1), "dbt 1.7 must be caught dropping data_tests:\n{text}");
    assert!(text.contains("column tests: dbt lists 0 on the spec's models, expected 14"), "{text}");

    // dbt 1.7's parse, and its manifest (schema v11), under the default range.
    let (_modes, spec) = modes_tests_survive(&dbt17, "1.7");
    edit(&spec, "  version: '1.7'\n", "");
    let output = fhirflow().arg("validate").arg(&spec).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("error[dbt-version-mismatch]") && stderr.contains("written by dbt-core 1.7."), "{stderr}");
}

/// dbt-core 1.12 reads both keys: `tests:` (a range that admits 1.7), with no warning even
/// under --strict, and `data_tests:` (the default range); its v12 manifest is read.
#[test]
fn dbt_1_12_sees_every_column_test_under_either_key() {
    let Some(dbt112) = venv("FHIRFLOW_DBT112_VENV") else { return };
    let dir = fhir_passes_the_dbt_check(&dbt112, ">=1.7", "1.12.");
    let yaml = std::fs::read_to_string(dir.path().join("dbt/models/marts/marts_models.yml")).unwrap();
    assert!(yaml.contains(" tests: [") && !yaml.contains("data_tests:"), "{yaml}");

    let current = tempfile::tempdir().unwrap();
    let expect = tests_only(&fhir_with_dbt_version(current.path(), Some(">=1.8")));
    let (code, text) = dbt_check(&dbt112, current.path(), &expect);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("(dbt lists 14 tests)"), "{text}");

    let _ = modes_tests_survive(&dbt112, ">=1.7");
}

/// The task settings a hand-written project sets on its operators — a pool it declares, depends_on_past,
/// email_on_retry, doc_md and a pipeline's own start_date — reach real Airflow 3.3 and 2.11 as
/// written (airflow_check compares each against the task Airflow loads), and the `airflow pools
/// set` line the plan prints creates the declared pool with its slots and description.
#[test]
fn declared_pools_and_task_settings_reach_airflow() {
    let (Some(airflow), Some(airflow2)) = (venv("FHIRFLOW_AIRFLOW_VENV"), venv("FHIRFLOW_AIRFLOW2_VENV")) else {
        return;
    };
    for (version, venv) in [(3, &airflow), (2, &airflow2)] {
        let dir = tempfile::tempdir().unwrap();
        let spec = dir.path().join("settings.yaml");
        std::fs::write(
            &spec,
            format!(
                r##"
version: 1
airflow: {{version: {version}}}
pools:
  warehouse: {{slots: 3, description: "Snowflake's \"XS\" warehouse: 3 queries"}}
defaults: {{retries: 1, email: [data@example.com], email_on_retry: false}}
pipelines:
  nightly:
    schedule: "0 2 * * *"
    start_date: 2026-03-01T04:30:00Z
    defaults: {{pool: warehouse, depends_on_past: true}}
    stages:
      load:
        kind: shell
        command: "echo load"
        doc_md: "# Load\nCopies the day's files; `'''` and \"quotes\" stay text."
      report: {{kind: shell, command: "echo report", after: [load], email_on_retry: true, depends_on_past: false}}
      free: {{kind: shell, command: "echo free", pool: default_pool}}
"##
            ),
        )
        .unwrap();
        let out = dir.path().join("out");
        let plan =
            fhirflow().arg("plan").arg(&spec).arg("--out").arg(&out).args(["--format", "json"]).output().unwrap();
        let plan: serde_json::Value = serde_json::from_slice(&plan.stdout).expect("plan JSON");
        let note =
            plan["notes"].as_array().unwrap().iter().filter_map(|n| n.as_str()).find(|n| n.contains("warehouse"));
        let note = note.unwrap_or_else(|| panic!("a note names the declared pool: {plan:#}"));
        let command =
            note.rsplit_once(": `").map(|(_, c)| c.trim_end_matches('`')).expect("the note ends in a command");
        let expectations = apply(&spec, &out);
        let tasks = &expectations["dags"]["nightly"]["tasks"];
        assert_eq!(tasks["load"]["pool"], "warehouse");
        assert_eq!(tasks["load"]["depends_on_past"], true);
        assert_eq!(tasks["load"]["email_on_retry"], false);
        assert_eq!(tasks["report"]["email_on_retry"], true);
        assert_eq!(tasks["report"]["depends_on_past"], false);
        assert_eq!(tasks["free"]["pool"], "default_pool");
        assert!(tasks["load"]["doc_md"].as_str().unwrap().contains("'''"));
        assert_eq!(expectations["dags"]["nightly"]["start_date"], 1_772_339_400);
        airflow_check(venv, &out);
        let created = created_pool(venv, &out, command, "warehouse");
        assert_eq!(created["slots"].to_string().trim_matches('"'), "3", "{created}");
        assert_eq!(created["description"], "Snowflake's \"XS\" warehouse: 3 queries", "{created}");
    }
}
