//! Shared helpers for the integration tests.
#![allow(dead_code)]

use assert_cmd::Command;
use std::path::{Path, PathBuf};

pub mod servers;

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The `fhirflow` binary.
pub fn fhirflow() -> Command {
    Command::cargo_bin("fhirflow").expect("the binary builds")
}

/// `fhirflow VERB SPEC --out OUT`.
pub fn fhirflow_out(verb: &str, spec: &Path, out: &Path) -> Command {
    let mut command = fhirflow();
    command.arg(verb).arg(spec).arg("--out").arg(out);
    command
}

/// A temporary folder holding a copy of `pipelines/<name>`, as `pipelines/<name>`.
pub fn project_with(name: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let pipelines = dir.path().join("pipelines");
    std::fs::create_dir_all(&pipelines).expect("mkdir");
    let spec = pipelines.join(name);
    std::fs::copy(repo().join("pipelines").join(name), &spec).expect("copy spec");
    // The dental spec reads its dbt manifest from `../examples/dental_clinic`.
    copy_dir(&repo().join("examples/dental_clinic"), &dir.path().join("examples/dental_clinic"));
    (dir, spec)
}

/// Replaces `from` with `to` in the file at `path`, asserting `from` was there.
pub fn edit(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).expect("read");
    assert!(text.contains(from), "{} does not contain {from:?}", path.display());
    std::fs::write(path, text.replacen(from, to, 1)).expect("write");
}

/// `dbt parse` of `project` (its own profiles) with the dbt of `venv`, which must succeed.
pub fn dbt_parse(venv: &Path, project: &Path) {
    let parsed = std::process::Command::new(venv.join("bin/dbt"))
        .args(["parse", "--project-dir"])
        .arg(project)
        .arg("--profiles-dir")
        .arg(project)
        .env("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
        .output()
        .expect("dbt runs");
    assert!(parsed.status.success(), "{}", String::from_utf8_lossy(&parsed.stdout));
}

/// The venv named by `var` (set by scripts/test.sh); `None` when the conformance tests are
/// skipped on purpose with `FHIRFLOW_SKIP_CONFORMANCE=1`, a failure when it is simply missing.
pub fn venv(var: &str) -> Option<PathBuf> {
    if std::env::var_os("FHIRFLOW_SKIP_CONFORMANCE").is_some_and(|v| v == "1") {
        eprintln!("skipped: FHIRFLOW_SKIP_CONFORMANCE=1");
        return None;
    }
    let path = std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| {
        panic!("{var} is not set: run the tests with scripts/test.sh, or set FHIRFLOW_SKIP_CONFORMANCE=1 to skip them")
    });
    assert!(path.join("bin/python").exists(), "{var}={} is not a venv", path.display());
    Some(path)
}

/// Copies a fixture folder, recursively.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read fixture") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// Every name a generated DAG module binds or reads besides its task variables: its imports,
/// helpers, constants and the builtins its helpers call. tests/properties.rs checks the list
/// against the modules Python sees.
pub const DAG_MODULE_NAMES: &str = "Asset AssetAll AssetAny BashOperator CronTriggerTimetable DAG Dataset DBT_PROFILES_DIR DBT_PROJECT_DIR \
    DBT_STATE_DIR DockerOperator EmptyOperator Exception ExternalTaskSensor FileNotFoundError KubernetesPodOperator \
    Mount PythonOperator TaskGroup TriggerDagRunOperator __doc__ __file__ _check_columns _copy_files_into \
    _create_load_tables _dbt_script _get_last_watermark _list_new_s3_files _log_dbt_results _notify_webhook _sql_string _update_watermark _utc_stamp \
    annotations dag default_args functools getattr json k8s len logging max open os pendulum shlex sorted str \
    timedelta urllib";

/// Stage ids that would rebind a name of the DAG module, or take fhirflow's own variable names:
/// the numbered fallback, a group's variable, and two ids that are one Python identifier.
pub fn hostile_stage_ids() -> Vec<&'static str> {
    // First in a pipeline, `task_2` is task 0's own name and the number task 2 (`a_b` again) falls back to.
    ["task_2", "a-b", "a_b", "task_1", "tg_staging"].into_iter().chain(DAG_MODULE_NAMES.split_whitespace()).collect()
}

/// Pipeline ids the DAG module imports as names, each also a DAG file name.
pub const IMPORTED_PIPELINE_IDS: &[&str] = &["shlex", "json", "os", "logging", "pendulum", "timedelta", "DAG"];

/// Writes two specs under `dir/pipelines/` that use every part of the DAG template (loads, dbt
/// with state, results, artifacts, per-model groups and joins, sensors, webhooks, Docker and
/// Kubernetes, Airflow 2's cron timetable, assets, Datasets and triggers) in pipelines named [`IMPORTED_PIPELINE_IDS`]. Each
/// pipeline starts with a chain of shell stages named `stages`, so that their variables are
/// bound before the code that uses the module's names runs. Returns the 3.x and 2.x specs.
pub fn every_feature_specs(dir: &Path, stages: &[&str]) -> [PathBuf; 2] {
    let fixtures = dir.join("fixtures");
    std::fs::create_dir_all(&fixtures).expect("mkdir");
    std::fs::copy(repo().join("tests/fixtures/dbt_modes/manifest.json"), fixtures.join("manifest.json"))
        .expect("copy the manifest");
    let pipelines = dir.join("pipelines");
    std::fs::create_dir_all(&pipelines).expect("mkdir");
    // `head` is the pipeline's settings; its first own stage runs after the chain.
    let pipeline = |id: &str, head: &str, own: &[&str]| {
        let mut text = format!("  {id}:\n{head}    stages:\n");
        let mut last: Option<&str> = None;
        for stage in stages {
            let after = last.map(|l| format!(", after: [\"{l}\"]")).unwrap_or_default();
            text.push_str(&format!("      \"{stage}\": {{kind: shell, command: echo{after}}}\n"));
            last = Some(stage);
        }
        for (i, stage) in own.iter().enumerate() {
            let stage = match last.filter(|_| i == 0) {
                Some(l) => format!("{}, after: [\"{l}\"]}}", stage.trim_end_matches('}')),
                None => (*stage).to_owned(),
            };
            text.push_str(&format!("      {stage}\n"));
        }
        text
    };
    let cron = "    schedule: '0 3 * * *'\n";
    let layers = "layers:\n  staging: {models: [stg_patients, stg_visits]}\n  intermediate: {models: [int_visit_counts]}\n  marts: {models: [dim_patients, fct_visits]}\n";
    let mut v3 = format!(
        "version: 1\n\
         defaults: {{retries: 1, start_date: '2026-01-01', failure_webhook_env: ALERTS_URL}}\n\
         connections:\n  lake: {{type: s3, bucket: lake-bucket}}\n  wh: {{type: snowflake}}\n\
         dbt:\n  project_dir: dbt\n  manifest: ../fixtures/manifest.json\n  artifacts: {{path: /srv/artifacts}}\n\
         {layers}pipelines:\n"
    );
    v3 += &pipeline(
        "json",
        &format!("{cron}    max_active_runs: 1\n"),
        &[
            "load: {kind: copy_into, source: {connection: lake, prefix: x/}, target: {connection: wh, table: T, stage: S}, watermark_table: W}",
            "run: {kind: dbt, command: run, parse_results: run_results, select: ['state:modified+'], after: [load]}",
            "per: {kind: dbt, command: build, dbt_mode: per_model, tests: after_layer, after: [run]}",
        ],
    );
    v3 += &pipeline(
        "os",
        cron,
        &[
            "wait: {kind: sensor, pipeline: json}",
            "fresh: {kind: dbt, command: build, freshness: warn, after: [wait]}",
            "note: {kind: shell, command: echo, produces: [lake.notes, 's3://b/k'], after: [fresh]}",
            "kick: {kind: trigger, pipeline: DAG, conf: {a: 1}, wait_for_completion: true, after: [fresh]}",
        ],
    );
    for id in IMPORTED_PIPELINE_IDS.iter().filter(|p| !["json", "os", "logging"].contains(p)) {
        // One pipeline scheduled on assets, with both kinds of condition.
        let head = if *id == "shlex" {
            "    schedule: {assets: {any: [lake.notes, {all: ['s3://b/k', wh.T]}]}}\n"
        } else {
            ""
        };
        v3 += &pipeline(id, head, &["last: {kind: shell, command: echo}"]);
    }
    let v2 = format!(
        "version: 1\n\
         defaults: {{retries: 1, start_date: '2026-01-01'}}\n\
         airflow: {{version: 2}}\n\
         dbt:\n  project_dir: dbt\n  manifest: ../fixtures/manifest.json\n  deploy: {{project_dir: /opt/dbt}}\n\
         \x20 docker: {{image: 'example/dbt:1', mounts: ['/srv/dbt:/opt/dbt:ro'], env: {{DBT_TARGET: dev}}}}\n\
         \x20 kubernetes: {{image: 'example/dbt:1', namespace: analytics, resources: {{cpu: 500m, memory: 1Gi}}, env_from_secrets: [creds]}}\n\
         {layers}pipelines:\n{}",
        pipeline(
            "logging",
            cron,
            &[
                "dock: {kind: dbt, command: build, dbt_mode: per_model, operator: docker}",
                "pod: {kind: dbt, command: build, dbt_mode: layered, operator: kubernetes, after: [dock]}",
                "note: {kind: shell, command: echo, produces: [lake.notes], after: [pod]}",
            ],
        ),
    );
    let specs = [pipelines.join("v3.yaml"), pipelines.join("v2.yaml")];
    std::fs::write(&specs[0], v3).expect("write spec");
    std::fs::write(&specs[1], v2).expect("write spec");
    specs
}

/// A spec with one shell pipeline per id in `pipelines`, each running `command ID`.
pub fn spec_text(pipelines: &[&str], command: &str) -> String {
    let mut text = "version: 1\npipelines:\n".to_owned();
    for id in pipelines {
        text.push_str(&format!(
            "  {id}:\n    schedule: '@daily'\n    stages:\n      step: {{kind: shell, command: '{command} {id}'}}\n"
        ));
    }
    text
}

/// Writes `text` to `path`, creating its folders.
pub fn write(path: &Path, text: &str) -> PathBuf {
    std::fs::create_dir_all(path.parent().expect("a file in a folder")).expect("mkdir");
    std::fs::write(path, text).expect("write");
    path.to_owned()
}
