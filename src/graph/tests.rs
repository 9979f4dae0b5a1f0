use super::*;
use crate::source::SourceFile;

fn compile(text: &str) -> Result<PipelineGraph, Vec<String>> {
    crate::compile(SourceFile::new("t.yaml", text)).map(|c| c.graph).map_err(|ds| {
        ds.sorted().iter().filter(|d| d.severity == crate::diagnostic::Severity::Error).map(|d| d.render()).collect()
    })
}

const HEAD: &str = "version: 1\ndbt:\n  project_dir: dbt\n  target: dev\nconnections:\n  lake: {type: s3, bucket: my-bucket}\n  wh: {type: snowflake}\n";

#[test]
fn chain_with_results_task_waits_for_dbt_and_results() {
    let g = compile(&format!(
        "{HEAD}pipelines:\n  t:\n    schedule: '*/10 * * * *'\n    stages:\n      dbt_run_staging: {{kind: dbt, command: run, select: ['tag:staging'], parse_results: true}}\n      dbt_test: {{kind: dbt, command: test, after: [dbt_run_staging]}}\n"
    ))
    .unwrap();
    let p = g.pipeline("t").unwrap();
    let ids: Vec<&str> = p.tasks.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, ["dbt_run_staging", "parse_staging_results", "dbt_test"]);
    assert_eq!(p.task("dbt_test").unwrap().upstream, ["dbt_run_staging", "parse_staging_results"]);
    assert_eq!(p.task("parse_staging_results").unwrap().trigger_rule, TriggerRule::AllDone);
}

#[test]
fn copy_into_becomes_the_seed_tasks() {
    let g = compile(&format!(
        "{HEAD}pipelines:\n  l:\n    schedule: '*/5 * * * *'\n    stages:\n      load:\n        kind: copy_into\n        source: {{connection: lake, prefix: raw/}}\n        target: {{connection: wh, table: RAW.FHIR_BUNDLES, stage: RAW.S3}}\n        watermark_table: RAW.LOAD_WATERMARK\n"
    ))
    .unwrap();
    let ids: Vec<&str> = g.pipeline("l").unwrap().tasks.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "create_snowflake_tables",
            "get_last_watermark",
            "list_new_s3_files",
            "load_files_to_snowflake",
            "update_watermark"
        ]
    );
}

#[test]
fn cycle_names_its_path() {
    let errs = compile(&format!(
        "{HEAD}pipelines:\n  p:\n    stages:\n      a: {{kind: shell, command: x, after: [c]}}\n      b: {{kind: shell, command: x, after: [a]}}\n      c: {{kind: shell, command: x, after: [b]}}\n"
    ))
    .unwrap_err();
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].contains("a → b → c → a"), "{}", errs[0]);
}

#[test]
fn unknown_after_suggests_the_stage() {
    let errs = compile(&format!(
        "{HEAD}pipelines:\n  p:\n    stages:\n      dbt_run_staging: {{kind: shell, command: x}}\n      b: {{kind: shell, command: x, after: [dbt_run_stagng]}}\n"
    ))
    .unwrap_err();
    assert!(errs[0].contains("did you mean `dbt_run_staging`?"), "{}", errs[0]);
    assert!(errs[0].contains("t.yaml:12:44"), "{}", errs[0]);
}

#[test]
fn duplicate_task_ids_point_at_both_stages() {
    let errs = compile(&format!(
        "{HEAD}pipelines:\n  p:\n    stages:\n      dbt_run_x: {{kind: dbt, command: run, parse_results: parse_x_results}}\n      parse_x_results: {{kind: shell, command: x}}\n"
    ))
    .unwrap_err();
    assert!(errs[0].contains("task id `parse_x_results` is used twice"), "{}", errs[0]);
}

#[test]
fn sensor_gets_delta_or_is_rejected() {
    let spec = |down: &str, up: &str| {
        format!(
            "{HEAD}pipelines:\n  up:\n    schedule: '{up}'\n    stages:\n      done: {{kind: shell, command: x}}\n  down:\n    schedule: '{down}'\n    stages:\n      wait: {{kind: sensor, pipeline: up, stage: done}}\n"
        )
    };
    let g = compile(&spec("0 2 * * *", "0 1 * * *")).unwrap();
    let Operation::Sensor(s) = &g.pipeline("down").unwrap().tasks[0].operation else { panic!() };
    assert_eq!(s.execution_delta.as_secs(), 3600);
    assert_eq!(s.task.as_deref(), Some("done"));
    let errs = compile(&spec("*/10 * * * *", "*/7 * * * *")).unwrap_err();
    assert!(errs[0].contains("would wait forever"), "{}", errs[0]);
    assert!(errs[0].contains("TriggerDagRunOperator"), "{}", errs[0]);
}

#[test]
fn sensor_cycles_between_pipelines_are_rejected() {
    let errs = compile(&format!(
        "{HEAD}pipelines:\n  a:\n    schedule: '@daily'\n    stages:\n      w: {{kind: sensor, pipeline: b}}\n  b:\n    schedule: '@daily'\n    stages:\n      w: {{kind: sensor, pipeline: a}}\n"
    ))
    .unwrap_err();
    assert!(errs.iter().any(|e| e.contains("pipelines wait for each other in a circle")), "{errs:?}");
}

#[test]
fn dbt_arguments_are_in_a_fixed_order() {
    let g = compile(&format!(
        "{HEAD}pipelines:\n  p:\n    stages:\n      b: {{kind: dbt, command: build, select: ['+tag:marts'], exclude: [x], vars: {{b: 1, a: '{{{{ ds }}}}'}}, full_refresh: true}}\n"
    ))
    .unwrap();
    let Operation::Dbt(inv) = &g.pipeline("p").unwrap().tasks[0].operation else { panic!() };
    let words: Vec<String> = inv
        .args
        .iter()
        .map(|a| match a {
            DbtArg::Literal(s) => s.clone(),
            DbtArg::Vars(s) => format!("<V>{s}"),
            DbtArg::ProjectDir => "<P>".into(),
            DbtArg::ProfilesDir => "<Q>".into(),
            DbtArg::StateDir => "<S>".into(),
        })
        .collect();
    assert_eq!(
        words,
        [
            "build",
            "--project-dir",
            "<P>",
            "--profiles-dir",
            "<Q>",
            "--target",
            "dev",
            "--select",
            "+tag:marts",
            "--exclude",
            "x",
            "--vars",
            r#"<V>{"a":"{{ ds }}","b":1}"#,
            "--full-refresh"
        ]
    );
}

#[test]
fn results_task_names_follow_the_seed() {
    let id = |s: &str, c| default_results_task(&StageId::new(s).unwrap(), c);
    assert_eq!(id("dbt_run_staging", DbtCommand::Run), "parse_staging_results");
    assert_eq!(id("dbt_test", DbtCommand::Test), "parse_test_results");
    assert_eq!(id("build_all", DbtCommand::Build), "parse_all_results");
}

/// A load with `target` and `extra` (more lines of the stage, indented under it).
fn load_spec(target: &str, extra: &str) -> String {
    format!(
        "{HEAD}pipelines:\n  l:\n    max_active_runs: 1\n    stages:\n      load:\n        kind: copy_into\n        source: {{connection: lake}}\n        target: {target}\n        watermark_table: RAW.LOAD_WATERMARK\n{extra}"
    )
}

#[test]
fn configured_columns_reach_the_snowflake_sql_upper_cased_and_quoted() {
    let g = compile(&load_spec(
        "{connection: wh, table: RAW.FHIR_BUNDLES, stage: RAW.S3, columns: {document: bundle_data}}",
        "        watermark_columns: {load_id: id, updated_at: Written_At}\n",
    ))
    .unwrap();
    let Operation::Load { plan, .. } = &g.pipeline("l").unwrap().tasks[0].operation else { panic!("a load") };
    let [raw, marks] = crate::emit::snowflake::create_tables(plan);
    assert!(raw.contains(r#"("FILE_KEY" VARCHAR NOT NULL, "LOADED_AT" TIMESTAMP_TZ"#), "{raw}");
    assert!(raw.contains(r#""BUNDLE_DATA" VARIANT)"#), "{raw}");
    assert!(
        marks.contains(r#"("ID" NUMBER AUTOINCREMENT"#) && marks.contains(r#""WRITTEN_AT" TIMESTAMP_TZ"#),
        "{marks}"
    );
    let stage = TableName::new("RAW.S3").unwrap();
    assert!(crate::emit::snowflake::copy_head(plan, &stage).contains(r#"("FILE_KEY", "LOADED_AT", "BUNDLE_DATA")"#));
    assert!(crate::emit::snowflake::get_watermark(plan).ends_with(r#"ORDER BY "ID" DESC LIMIT 1"#));
}

#[test]
fn two_settings_naming_one_column_are_an_error_at_the_second() {
    let errs = compile(&load_spec(
        "{connection: wh, table: RAW.FHIR_BUNDLES, stage: RAW.S3, columns: {file_key: key, document: KEY}}",
        "        watermark_columns: {last_key: Source}\n",
    ))
    .unwrap_err();
    assert_eq!(errs.len(), 2, "{errs:?}");
    assert!(
        errs[0].contains("`document` and `file_key` of table RAW.FHIR_BUNDLES both name column `KEY`"),
        "{}",
        errs[0]
    );
    assert!(errs[0].contains("t.yaml:15:"), "located at the second: {}", errs[0]);
    assert!(
        errs[1].contains("`last_key` and `source` (by default) of table RAW.LOAD_WATERMARK both name column `Source`"),
        "{}",
        errs[1]
    );
    assert!(errs[1].contains("t.yaml:17:"), "{}", errs[1]);
}

#[test]
fn an_empty_or_quoting_column_name_is_rejected_where_it_is_written() {
    for bad in ["''", "'a\"b'", "'1st'"] {
        let errs = compile(&load_spec(
            &format!("{{connection: wh, table: RAW.FHIR_BUNDLES, stage: RAW.S3, columns: {{document: {bad}}}}}"),
            "",
        ))
        .unwrap_err();
        assert!(errs.iter().any(|e| e.contains("t.yaml:15:") && e.contains("column name")), "{bad}: {errs:?}");
    }
}
