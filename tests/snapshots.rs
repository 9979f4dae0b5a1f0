//! Snapshot tests: every file generated from the seed specs, and the exact text of diagnostics.
//! Review changes with `cargo insta review` (or `INSTA_UPDATE=always` and `git diff`).

mod common;

use common::repo;
use fhirflow::emit::{Layout, emit};
use fhirflow::source::SourceFile;
use std::path::Path;

fn snapshot_spec(name: &str) {
    snapshot_file(&repo().join("pipelines").join(name), name);
}

fn snapshot_file(spec: &Path, name: &str) {
    let compiled = fhirflow::compile_file(spec).expect("the seed spec compiles");
    let layout = Layout::new(spec, Some(Path::new("out")));
    let files = emit(&compiled.graph, &layout).expect("emits");
    assert!(!files.is_empty());
    for file in files {
        let key = format!("{}__{}", name.trim_end_matches(".yaml"), file.path.display()).replace('/', "__");
        insta::assert_snapshot!(key, file.contents);
    }
}

#[test]
fn fhir_files() {
    snapshot_spec("fhir.yaml");
}

#[test]
fn dental_clinic_files() {
    snapshot_spec("dental_clinic.yaml");
}

#[test]
fn python_tasks_example_files() {
    snapshot_file(&repo().join("examples/python_tasks/clinic.yaml"), "python_tasks.yaml");
}

#[test]
fn output_is_byte_identical_across_runs() {
    let spec = repo().join("pipelines/fhir.yaml");
    let layout = Layout::new(&spec, Some(Path::new("out")));
    let first = emit(&fhirflow::compile_file(&spec).unwrap().graph, &layout).unwrap();
    let second = emit(&fhirflow::compile_file(&spec).unwrap().graph, &layout).unwrap();
    assert_eq!(first, second);
}

fn diagnostics(text: &str) -> String {
    let env: std::collections::HashMap<String, String> = std::collections::HashMap::new();
    match fhirflow::compile_with_env(SourceFile::new("pipelines/p.yaml", text), &env) {
        Ok(compiled) if compiled.warnings.is_empty() => "valid".to_owned(),
        Ok(compiled) => compiled.warnings.render(),
        Err(diagnostics) => diagnostics.render(),
    }
}

/// A spec head with the dbt_modes fixture's manifest, as seen from `pipelines/`.
const MODES: &str = "version: 1\ndbt: {project_dir: dbt, manifest: ../tests/fixtures/dbt_modes/manifest.json}\n";

const BASE: &str = "version: 1\npipelines:\n  up:\n    schedule: \"*/7 * * * *\"\n    stages:\n      load: {kind: shell, command: echo load}\n  down:\n    schedule: \"*/10 * * * *\"\n    stages:\n";

#[test]
fn diagnostic_texts() {
    let cases = [
        ("yaml_syntax", "version: 1\npipelines:\n  p: [unclosed\n".to_owned()),
        ("duplicate_key", "version: 1\nversion: 1\npipelines: {}\n".to_owned()),
        ("null_key", "version: 1\npipelines:\n  ~:\n    stages:\n      a: {kind: shell, command: x}\n".to_owned()),
        ("complex_key", "version: 1\npipelines:\n  ? [a, b]\n  : {stages: {a: {kind: shell, command: x}}}\n".to_owned()),
        ("schema_range", format!("{BASE}      a: {{kind: shell, command: x, retries: -1}}\n")),
        ("unknown_key", format!("{BASE}      a: {{kind: shell, command: x, retires: 2}}\n")),
        ("bad_choice", format!("{BASE}      a: {{kind: dbt, command: runn}}\n")),
        ("unknown_kind", format!("{BASE}      a: {{kind: shel, command: x}}\n")),
        (
            "bad_schedule_and_cycle",
            format!(
                "{BASE}      a: {{kind: shell, command: x, after: [b]}}\n      b: {{kind: shell, command: x, after: [a]}}\n"
            )
            .replace("\"*/10 * * * *\"", "\"@dayly\""),
        ),
        (
            "bad_schedule_of_a_sensor_target",
            format!("{BASE}      wait: {{kind: sensor, pipeline: up, stage: load}}\n      next: {{kind: shell, command: x, after: [wait]}}\n")
                .replace("\"*/7 * * * *\"", "\"@dayly\""),
        ),
        (
            "unknown_stage",
            format!("{BASE}      a: {{kind: shell, command: x}}\n      b: {{kind: shell, command: x, after: [aa]}}\n"),
        ),
        (
            "cycle",
            format!(
                "{BASE}      a: {{kind: shell, command: x, after: [b]}}\n      b: {{kind: shell, command: x, after: [a]}}\n"
            ),
        ),
        ("sensor_never_aligns", format!("{BASE}      wait: {{kind: sensor, pipeline: up, stage: load}}\n      next: {{kind: shell, command: x, after: [wait]}}\n")),
        ("unwired_sensor", format!("{BASE}      wait: {{kind: sensor, pipeline: up, stage: load, execution_timeout: 2h}}\n").replace("*/7", "*/10").replace("  down:\n", "  down:\n    max_active_runs: 1\n")),
        (
            "sensor_states",
            format!(
                "{BASE}      wait: {{kind: sensor, pipeline: up, stage: load, allowed_states: [success, failed], failed_states: [failed]}}\n      whole: {{kind: sensor, pipeline: up, skipped_states: [skipped], after: [wait]}}\n      next: {{kind: shell, command: x, after: [whole]}}\n"
            )
            .replace("*/7", "*/10"),
        ),
        (
            "sensor_waits_on_final_state",
            format!("{BASE}      wait: {{kind: sensor, pipeline: up, stage: load, skipped_states: []}}\n      next: {{kind: shell, command: x, after: [wait]}}\n")
                .replace("*/7", "*/10"),
        ),
        (
            "unproduced_asset",
            "version: 1\npipelines:\n  up:\n    stages:\n      load: {kind: shell, command: x, produces: [raw_bundles]}\n  down:\n    schedule: {assets: [raw_bundels]}\n    stages:\n      a: {kind: shell, command: x}\n".to_owned(),
        ),
        (
            "asset_cycle",
            "version: 1\npipelines:\n  a:\n    schedule: {assets: {any: [from_b]}}\n    stages:\n      s: {kind: shell, command: x, produces: [from_a]}\n  b:\n    schedule: {assets: [from_a]}\n    stages:\n      s: {kind: shell, command: x, produces: [from_b]}\n".to_owned(),
        ),
        (
            "unknown_trigger_target",
            format!("{BASE}      start: {{kind: trigger, pipeline: upp}}\n"),
        ),
        ("unknown_pipeline", format!("{BASE}      wait: {{kind: sensor, pipeline: uup}}\n      next: {{kind: shell, command: x, after: [wait]}}\n")),
        ("empty_spec", "# nothing yet\n".to_owned()),
        ("scalar_spec", "just text\n".to_owned()),
        ("deep_nesting", format!("a: {}1{}\n", "[".repeat(100), "]".repeat(100))),
        ("missing_key", "version: 1\npipelines:\n  p:\n    stages:\n      a: {kind: shell}\n".to_owned()),
        ("invalid_name", "version: 1\npipelines:\n  p:\n    stages:\n      \"bad name\": {kind: shell, command: x}\n".to_owned()),
        (
            "merged_content",
            "version: 1\nx-shared: &shared {kind: shell, command: x, retries: -3}\npipelines:\n  p:\n    stages:\n      a:\n        <<: *shared\n".to_owned(),
        ),
        ("unset_variable", "version: 1\npipelines:\n  p:\n    stages:\n      a: {kind: shell, command: 'sync ${BUCKET}'}\n".to_owned()),
        (
            "bad_template",
            "version: 1\npipelines:\n  p:\n    stages:\n      a: {kind: shell, command: 'echo $${#list}', env: {D: '{% if ds %}'}}\n".to_owned(),
        ),
        (
            "template_not_allowed",
            "version: 1\ndbt: {project_dir: dbt, deploy: {project_dir: '/opt/{{ var.value.dir }}'}}\npipelines:\n  p:\n    stages:\n      b: {kind: dbt, command: build, retries: 1}\n".to_owned(),
        ),
        ("secret_literal", "version: 1\npipelines:\n  p:\n    stages:\n      a: {kind: shell, command: x, env: {DB_PASSWORD: hunter2}}\n".to_owned()),
        (
            "duplicate_task_id",
            "version: 1\ndbt: {project_dir: dbt}\npipelines:\n  p:\n    stages:\n      r: {kind: dbt, command: run, retries: 1, parse_results: x}\n      x: {kind: shell, command: x}\n".to_owned(),
        ),
        ("self_sensor", format!("{BASE}      wait: {{kind: sensor, pipeline: down}}\n      next: {{kind: shell, command: x, after: [wait]}}\n")),
        ("pipeline_setting", format!("{BASE}      a: {{kind: shell, command: x, timezone: UTC}}\n")),
        ("unknown_timezone", "version: 1\ndefaults: {timezone: Europe/Pariss}\npipelines:\n  p:\n    stages:\n      a: {kind: shell, command: x}\n".to_owned()),
        (
            "unknown_connection",
            "version: 1\nconnections: {lake: {type: s3, bucket: lake-bucket}}\npipelines:\n  p:\n    max_active_runs: 1\n    stages:\n      l: {kind: copy_into, retries: 1, source: {connection: laek, prefix: x/}, target: {connection: lake, table: T, stage: S}, watermark_table: W}\n".to_owned(),
        ),
        (
            "warnings",
            "version: 1\ndbt: {project_dir: dbt}\nconnections: {lake: {type: s3, bucket: lake-bucket}, wh: {type: snowflake}}\npipelines:\n  p:\n    stages:\n      l: {kind: copy_into, source: {connection: lake, prefix: x/}, target: {connection: wh, table: T, stage: S}, watermark_table: W}\n      r: {kind: dbt, command: run, after: [l]}\n".to_owned(),
        ),
        (
            "load_columns",
            "version: 1\nconnections: {lake: {type: s3, bucket: lake-bucket}, wh: {type: snowflake}}\npipelines:\n  p:\n    max_active_runs: 1\n    stages:\n      l:\n        kind: copy_into\n        retries: 1\n        source: {connection: lake}\n        target: {connection: wh, table: T, stage: S, columns: {file_key: key, document: KEY}}\n        watermark_table: W\n        watermark_columns: {load_id: Source}\n".to_owned(),
        ),
        (
            "load_column_name",
            "version: 1\nconnections: {lake: {type: s3, bucket: lake-bucket}, wh: {type: snowflake}}\npipelines:\n  p:\n    max_active_runs: 1\n    stages:\n      l: {kind: copy_into, retries: 1, source: {connection: lake}, target: {connection: wh, table: T, stage: S, columns: {document: 'bundle data'}}, watermark_table: W, watermark_columns: {last_key: ''}}\n".to_owned(),
        ),
        (
            "manifest_models",
            format!("{MODES}layers:\n  staging: {{models: [stg_patientz, stg_visits]}}\npipelines:\n  p:\n    stages:\n      b: {{kind: dbt, command: build, retries: 1, dbt_mode: per_model}}\n"),
        ),
        (
            "manifest_version",
            "version: 1\ndbt: {project_dir: dbt, manifest: ../tests/fixtures/manifest_v11.json}\npipelines:\n  p:\n    stages:\n      b: {kind: dbt, command: build, retries: 1, dbt_mode: per_model}\n".to_owned(),
        ),
        (
            "dbt_version_mismatch",
            "version: 1\ndbt:\n  project_dir: dbt\n  version: \"1.7\"\n  manifest: ../tests/fixtures/dbt_modes/manifest.json\npipelines:\n  p:\n    stages:\n      b: {kind: dbt, command: build, retries: 1, dbt_mode: per_model}\n".to_owned(),
        ),
        (
            "manifest_schema",
            "version: 1\ndbt: {project_dir: dbt, version: '>=1.7', manifest: ../tests/fixtures/manifest_v10.json}\npipelines:\n  p:\n    stages:\n      b: {kind: dbt, command: build, retries: 1, dbt_mode: per_model}\n".to_owned(),
        ),
        ("dbt_version_range", "version: 1\ndbt: {project_dir: dbt, version: '>=1.9,<1.8'}\npipelines:\n  p:\n    stages:\n      b: {kind: dbt, command: build, retries: 1}\n".to_owned()),
        ("dbt_version_syntax", "version: 1\ndbt: {project_dir: dbt, version: '1.x'}\npipelines:\n  p:\n    stages:\n      b: {kind: dbt, command: build, retries: 1}\n".to_owned()),
        (
            "state_and_operator",
            format!("{MODES}pipelines:\n  p:\n    defaults: {{operator: docker}}\n    stages:\n      b: {{kind: dbt, command: build, retries: 1, dbt_mode: single, select: ['state:modified+']}}\n"),
        ),
        (
            "unknown_pool",
            "version: 1\npools: {warehouse: {slots: 2}}\ndefaults: {pool: nightly}\npipelines:\n  p:\n    stages:\n      a: {kind: shell, command: x, pool: warehous}\n".to_owned(),
        ),
        (
            "start_date_twice",
            "version: 1\npipelines:\n  p:\n    start_date: 2026-01-01\n    defaults: {start_date: 2026-02-01}\n    stages:\n      a: {kind: shell, command: x}\n".to_owned(),
        ),
        (
            "watcher_modes",
            format!("{MODES}layers:\n  staging: {{models: [stg_patients, stg_visits]}}\npipelines:\n  p:\n    stages:\n      one: {{kind: dbt, command: build, retries: 1, watcher: true}}\n      layers: {{kind: dbt, command: build, retries: 1, dbt_mode: per_model, tests: after_layer, watcher: true}}\n      boxed: {{kind: dbt, command: build, retries: 1, dbt_mode: per_model, operator: docker, watcher: true}}\n"),
        ),
        (
            "operator_stage",
            "version: 1\npipelines:\n  p:\n    stages:\n      a:\n        kind: operator\n        uses: airflow.operators.import.HttpOperator\n        with: {task_id: a, retries: 2, lambda: 1, endpoint: /x}\n".to_owned(),
        ),
    ];
    for (name, text) in cases {
        insta::assert_snapshot!(format!("diagnostic_{name}"), diagnostics(&text));
    }
}

/// The diagnostics `plan` and `apply` give for output folders that leave the output root.
#[test]
fn path_escape_diagnostics() {
    let text = "version: 1\nairflow: {dags_folder: ../dags}\ndbt: {project_dir: dbt}\nlayers:\n  staging: {path: '../../../../srv/x', models: [m]}\npipelines:\n  p:\n    stages:\n      a: {kind: shell, command: x}\n";
    let env: std::collections::HashMap<String, String> = std::collections::HashMap::new();
    let compiled = fhirflow::compile_with_env(SourceFile::new("pipelines/p.yaml", text), &env).expect("compiles");
    for (name, out) in [("under_out", Some(Path::new("out"))), ("beside_the_spec", None)] {
        let layout = Layout::new(Path::new("pipelines/p.yaml"), out);
        let rendered = match fhirflow::emit::OutputDirs::of(&compiled.graph.spec, &layout, Some(&compiled.document)) {
            Ok(_) => "no error".to_owned(),
            Err(diagnostics) => diagnostics.render(),
        };
        insta::assert_snapshot!(format!("diagnostic_path_escapes_output_{name}"), rendered);
    }
}

/// A secret that reaches the spec through `${VAR}`: named by its variable, never shown.
#[test]
fn secret_from_variable_diagnostic() {
    let text = "version: 1\npipelines:\n  p:\n    stages:\n      a: {kind: shell, command: 'aws --key ${KEY}'}\n";
    let env = std::collections::HashMap::from([("KEY".to_owned(), "AKIAABCDEFGHIJKLMNOP".to_owned())]);
    let rendered = match fhirflow::compile_with_env(SourceFile::new("pipelines/p.yaml", text), &env) {
        Ok(_) => "valid".to_owned(),
        Err(diagnostics) => diagnostics.render(),
    };
    assert!(!rendered.contains("AKIA"), "{rendered}");
    insta::assert_snapshot!("diagnostic_secret_from_variable", rendered);
}
