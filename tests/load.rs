//! `copy_into` under `fhirflow run`: a local folder into the embedded DuckDB (cargo feature
//! `duckdb`), the FHIR example end to end with real dbt, and a fhirflow killed mid-load.
//!
//! The DuckDB tests need the `duckdb` feature (scripts/test.sh turns it on); the end-to-end
//! tests also need `FHIRFLOW_DBT_VENV` (see tests/common), and the Snowflake one that calls the
//! DAG's load tasks `FHIRFLOW_AIRFLOW_VENV`.

mod common;

use common::{fhirflow, repo};

/// A spec with one load: `connections` (the lines under `connections:`), and the load's
/// `source` and `target` (flow mappings) and watermark table.
#[cfg(any(feature = "duckdb", feature = "snowflake"))]
fn write_load_spec(
    dir: &std::path::Path,
    connections: &str,
    source: &str,
    target: &str,
    watermark: &str,
    batch_size: u32,
) -> std::path::PathBuf {
    let spec = dir.join("load.yaml");
    let text = format!(
        "version: 1
connections:
{connections}
pipelines:
  p:
    max_active_runs: 1
    stages:
      load:
        kind: copy_into
        retries: 1
        retry_delay: 1s
        source: {source}
        target: {target}
        watermark_table: {watermark}
        batch_size: {batch_size}
"
    );
    std::fs::write(&spec, text).unwrap();
    spec
}

/// Reads a running `fhirflow run`'s stdout (piped) until its load step starts; keeps draining it.
#[cfg(any(feature = "duckdb", feature = "snowflake"))]
fn wait_for_load_step(child: &mut std::process::Child) {
    use std::io::BufRead;
    let stdout = child.stdout.take().expect("stdout is piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.contains("start") && line.contains("load_files_to_snowflake") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(std::time::Duration::from_secs(60)).expect("the load step starts");
}

/// Asserts that a `fhirflow run` of the one-load spec failed (exit 5) saying `message`, and did
/// not retry its first task (the spec allows one retry). Returns its stdout.
#[cfg(any(feature = "duckdb", feature = "snowflake"))]
fn assert_failed_at_once(output: &std::process::Output, message: &str) -> String {
    failed_at_once(output, 5, message)
}

/// [`assert_failed_at_once`] for a table whose columns are not the spec's: exit status 6.
fn assert_table_mismatch(output: &std::process::Output, message: &str) -> String {
    failed_at_once(output, 6, message)
}

fn failed_at_once(output: &std::process::Output, code: i32, message: &str) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert_eq!(output.status.code(), Some(code), "{stdout}");
    assert!(stdout.contains(message), "{message}\n{stdout}");
    let summary = stdout.lines().find(|l| l.contains("p.create_snowflake_tables")).unwrap_or_default();
    assert!(summary.contains("failed") && summary.split_whitespace().any(|w| w == "1"), "one attempt: {stdout}");
    stdout
}

/// The embedded DuckDB of the tests: a connection line and a target.
#[cfg(feature = "duckdb")]
const DUCKDB: (&str, &str) =
    ("  db: {type: duckdb, path: warehouse.duckdb}", "{connection: db, table: raw.fhir_bundles}");

#[test]
fn plan_rejects_run_only_connections_with_a_location() {
    let dir = tempfile::tempdir().unwrap();
    let output = fhirflow()
        .arg("plan")
        .arg(repo().join("examples/fhir/fhir.yaml"))
        .arg("--out")
        .arg(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("error[run-only-connection]: load `load` uses a local connection"), "{stderr}");
    assert!(stderr.contains("fhir.yaml:"), "located: {stderr}");
    assert!(stderr.contains("run only with `fhirflow run`"), "{stderr}");
    fhirflow().arg("validate").arg(repo().join("examples/fhir/fhir.yaml")).assert().success();
}

#[test]
fn a_local_connection_needs_a_path() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("p.yaml");
    std::fs::write(
        &spec,
        "version: 1\nconnections:\n  files: {type: local}\n  db: {type: duckdb, path: w.duckdb}\npipelines:\n  p:\n    max_active_runs: 1\n    stages:\n      load: {kind: copy_into, retries: 1, source: {connection: files}, target: {connection: db, table: raw.t}, watermark_table: raw.w}\n",
    )
    .unwrap();
    let output = fhirflow().arg("validate").arg(&spec).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("error[missing-path]: connection `files` has no `path`"), "{stderr}");
}

#[cfg(feature = "duckdb")]
mod embedded {
    use super::*;
    use duckdb::Connection;
    use std::collections::BTreeMap;
    use std::path::Path;
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    /// A spec with only a load of `files/` into `warehouse.duckdb`.
    fn load_spec(dir: &Path, batch_size: u32) -> std::path::PathBuf {
        let connections = format!("  files: {{type: local, path: files}}\n{}", DUCKDB.0);
        write_load_spec(dir, &connections, "{connection: files}", DUCKDB.1, "raw.load_watermark", batch_size)
    }

    /// file_key → how many rows, and each file's `id`.
    fn loaded(database: &Path) -> BTreeMap<String, (i64, Option<String>)> {
        let conn = Connection::open(database).unwrap();
        let mut statement = conn
            .prepare("SELECT file_key, count(*), any_value(bundle->>'id') FROM raw.fhir_bundles GROUP BY file_key")
            .unwrap();
        statement
            .query_map([], |row| Ok((row.get(0)?, (row.get(1)?, row.get(2)?))))
            .unwrap()
            .collect::<duckdb::Result<_>>()
            .unwrap()
    }

    fn watermarks(database: &Path) -> Vec<(i64, String, i64)> {
        let conn = Connection::open(database).unwrap();
        let mut statement =
            conn.prepare("SELECT load_id, last_key, files_loaded FROM raw.load_watermark ORDER BY load_id").unwrap();
        statement
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
            .unwrap()
            .collect::<duckdb::Result<_>>()
            .unwrap()
    }

    fn write_bundle(path: &Path, id: &str, padding: usize, mtime_secs: u64) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let text = format!(
            "{{\n  \"resourceType\": \"Bundle\",\n  \"id\": \"{id}\",\n  \"type\": \"transaction\",\n  \"entry\": [],\n  \"pad\": \"{}\"\n}}\n",
            "x".repeat(padding)
        );
        std::fs::write(path, text).unwrap();
        let file = std::fs::File::options().write(true).open(path).unwrap();
        file.set_modified(std::time::UNIX_EPOCH + Duration::from_secs(mtime_secs)).unwrap();
    }

    #[test]
    fn loads_in_batches_each_file_once_with_quotes_and_non_ascii_names() {
        let dir = tempfile::tempdir().unwrap();
        let names = ["Ciara_O'Keefe54_a.json", "José830_Muñoz421_b.json", "美咲_佐藤_c.json", "sub/d.json", "e.json"];
        for (i, name) in names.iter().enumerate() {
            write_bundle(&dir.path().join("files").join(name), &format!("id{i}"), 10, 1_000 + i as u64);
        }
        std::fs::write(dir.path().join("files/notes.txt"), "not json").unwrap();
        let spec = load_spec(dir.path(), 2);
        let database = dir.path().join("warehouse.duckdb");
        for expected in [2, 4, 5, 5] {
            fhirflow().arg("run").arg(&spec).assert().success();
            assert_eq!(loaded(&database).len(), expected);
        }
        let rows = loaded(&database);
        for (i, name) in names.iter().enumerate() {
            assert_eq!(rows[*name], (1, Some(format!("id{i}"))), "{name}");
        }
        // Oldest first (by modification time), two per run; the fourth run had nothing to load.
        let marks = watermarks(&database);
        assert_eq!(
            marks,
            [(1, "José830_Muñoz421_b.json".into(), 2), (2, "sub/d.json".into(), 2), (3, "e.json".into(), 1)]
        );
        // A file added later is picked up, whatever its modification time.
        write_bundle(&dir.path().join("files/old.json"), "old", 10, 10);
        fhirflow().arg("run").arg(&spec).assert().success();
        assert_eq!(loaded(&database)["old.json"], (1, Some("old".into())));
    }

    #[test]
    fn a_malformed_file_fails_the_batch_and_loads_nothing() {
        let dir = tempfile::tempdir().unwrap();
        write_bundle(&dir.path().join("files/a.json"), "a", 10, 1_000);
        std::fs::write(dir.path().join("files/b.json"), "{\"resourceType\": ").unwrap();
        let spec = load_spec(dir.path(), 10);
        let output = fhirflow().arg("run").arg(&spec).output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert_eq!(output.status.code(), Some(5), "{stdout}");
        assert!(stdout.contains("load `load`: warehouse"), "{stdout}");
        assert!(loaded(&dir.path().join("warehouse.duckdb")).is_empty(), "all or nothing");
    }

    #[test]
    fn an_empty_file_fails_the_batch_by_name() {
        let dir = tempfile::tempdir().unwrap();
        write_bundle(&dir.path().join("files/a.json"), "a", 10, 1_000);
        std::fs::write(dir.path().join("files/empty.json"), "").unwrap();
        let spec = load_spec(dir.path(), 10);
        let output = fhirflow().arg("run").arg(&spec).output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert_eq!(output.status.code(), Some(5), "{stdout}");
        assert!(stdout.contains("empty.json holds no JSON value"), "{stdout}");
        assert!(loaded(&dir.path().join("warehouse.duckdb")).is_empty(), "all or nothing");
    }

    /// SIGKILL fhirflow while it loads a batch, then run again: every file is in the raw table
    /// exactly once, and after the kill the table held all of the batch or none of it.
    #[test]
    fn a_fhirflow_killed_mid_load_loses_and_duplicates_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let count = 300;
        for i in 0..count {
            write_bundle(&dir.path().join(format!("files/b{i:04}.json")), &format!("b{i}"), 100_000, 1_000 + i);
        }
        let spec = load_spec(dir.path(), 1000);
        let database = dir.path().join("warehouse.duckdb");
        let mut child = Command::new(assert_cmd::cargo::cargo_bin("fhirflow"))
            .arg("run")
            .arg(&spec)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        wait_for_load_step(&mut child);
        let started = Instant::now();
        std::thread::sleep(Duration::from_millis(150));
        child.kill().unwrap();
        child.wait().unwrap();
        let after_kill = loaded(&database).len();
        assert!(after_kill == 0 || after_kill == count as usize, "all or nothing, got {after_kill}");
        eprintln!("SIGKILL {:?} after the load step started; {after_kill} file(s) were committed", started.elapsed());

        fhirflow().arg("run").arg(&spec).assert().success();
        let rows = loaded(&database);
        assert_eq!(rows.len(), count as usize);
        assert!(rows.values().all(|(n, _)| *n == 1), "each file exactly once");
        let marks = watermarks(&database);
        assert_eq!(marks.iter().map(|m| m.2).sum::<i64>(), count as i64, "{marks:?}");
    }

    /// The tables of a project that loaded before fhirflow: the raw table's JSON column is
    /// `bundle_data`, the watermark table numbers its rows in `id` and stamps them in `written_at`.
    fn create_existing_tables(database: &Path) {
        let conn = Connection::open(database).unwrap();
        conn.execute_batch(
            "CREATE SCHEMA raw;
             CREATE TABLE raw.fhir_bundles (file_key VARCHAR NOT NULL, loaded_at TIMESTAMPTZ, bundle_data JSON);
             CREATE TABLE raw.load_watermark (id BIGINT NOT NULL, source VARCHAR NOT NULL, last_modified VARCHAR,
                 last_key VARCHAR, files_loaded BIGINT, written_at TIMESTAMPTZ DEFAULT now());",
        )
        .unwrap();
    }

    #[test]
    fn an_existing_table_with_other_columns_fails_before_any_insert_naming_them() {
        let dir = tempfile::tempdir().unwrap();
        write_bundle(&dir.path().join("files/a.json"), "a", 10, 1_000);
        let database = dir.path().join("warehouse.duckdb");
        create_existing_tables(&database);
        let output = fhirflow().arg("run").arg(load_spec(dir.path(), 10)).output().unwrap();
        // Not retried: a layout stays wrong.
        assert_table_mismatch(
            &output,
            "load `load`: table raw.fhir_bundles does not match the load's `target.columns`: no column `bundle` \
             (document); the table has file_key, loaded_at, bundle_data. Name the table's columns under `target.columns`",
        );
        let rows: i64 = Connection::open(&database)
            .unwrap()
            .query_row("SELECT count(*) FROM raw.fhir_bundles", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 0);

        // With the raw table's names, the watermark table's are the next to differ.
        let spec = dir.path().join("load.yaml");
        let text = std::fs::read_to_string(&spec)
            .unwrap()
            .replace("table: raw.fhir_bundles}", "table: raw.fhir_bundles, columns: {document: bundle_data}}");
        std::fs::write(&spec, text).unwrap();
        let output = fhirflow().arg("run").arg(&spec).output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert_eq!(output.status.code(), Some(6), "{stdout}");
        assert!(
            stdout.contains(
                "table raw.load_watermark does not match the load's `watermark_columns`: no column `load_id` \
                 (load_id), `updated_at` (updated_at); the table has id, source, last_modified, last_key, files_loaded, written_at"
            ),
            "{stdout}"
        );
    }

    #[test]
    fn an_existing_table_with_the_configured_names_loads_into_them() {
        let dir = tempfile::tempdir().unwrap();
        write_bundle(&dir.path().join("files/a.json"), "a", 10, 1_000);
        write_bundle(&dir.path().join("files/b.json"), "b", 10, 1_001);
        let database = dir.path().join("warehouse.duckdb");
        create_existing_tables(&database);
        // Names are case-insensitive, as unquoted SQL names are.
        let connections = format!("  files: {{type: local, path: files}}\n{}", DUCKDB.0);
        let spec = write_load_spec(
            dir.path(),
            &connections,
            "{connection: files}",
            "{connection: db, table: raw.fhir_bundles, columns: {document: BUNDLE_DATA}}",
            "raw.load_watermark\n        watermark_columns: {load_id: Id, updated_at: written_at}",
            1,
        );
        for _ in 0..2 {
            fhirflow().arg("run").arg(&spec).assert().success();
        }
        let conn = Connection::open(&database).unwrap();
        let ids: Vec<(String, String)> = conn
            .prepare("SELECT file_key, bundle_data->>'id' FROM raw.fhir_bundles ORDER BY file_key")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<duckdb::Result<_>>()
            .unwrap();
        assert_eq!(ids, [("a.json".to_owned(), "a".to_owned()), ("b.json".to_owned(), "b".to_owned())]);
        let marks: Vec<(i64, String, bool)> = conn
            .prepare("SELECT id, last_key, written_at IS NOT NULL FROM raw.load_watermark ORDER BY id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<duckdb::Result<_>>()
            .unwrap();
        assert_eq!(marks, [(1, "a.json".to_owned(), true), (2, "b.json".to_owned(), true)]);
    }

    /// Copies what the example needs (not a local warehouse, run store or dbt target).
    fn copy_example(to: &Path) {
        let example = repo().join("examples/fhir");
        for file in ["fhir.yaml", "check_marts.py"] {
            std::fs::copy(example.join(file), to.join(file)).unwrap();
        }
        common::copy_dir(&example.join("bundles"), &to.join("bundles"));
        for part in ["dbt_project.yml", "profiles.yml", "macros", "models", "tests"] {
            let from = example.join("dbt").join(part);
            if from.is_dir() {
                common::copy_dir(&from, &to.join("dbt").join(part));
            } else {
                std::fs::create_dir_all(to.join("dbt")).unwrap();
                std::fs::copy(&from, to.join("dbt").join(part)).unwrap();
            }
        }
    }

    /// `fhirflow run` of the example spec with dbt from `venv` on PATH.
    fn run_example(venv: &Path, spec: &Path, env: &[(&str, &Path)]) -> String {
        let path = format!("{}:{}", venv.join("bin").display(), std::env::var("PATH").unwrap_or_default());
        let mut command = fhirflow();
        command.arg("run").arg(spec).env("PATH", path).env("DBT_SEND_ANONYMOUS_USAGE_STATS", "false");
        for (k, v) in env {
            command.env(k, v);
        }
        let output = command.output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(output.status.success(), "fhirflow run failed:\n{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
        stdout
    }

    /// Runs `command`, failing the test with its output unless it succeeds.
    fn succeed(what: &str, command: &mut Command) {
        let output = command.output().unwrap();
        assert!(
            output.status.success(),
            "{what} failed:\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    fn check_marts(venv: &Path, dir: &Path, bundles: &Path, database: &Path) {
        succeed(
            "check_marts",
            Command::new(venv.join("bin/python")).arg(dir.join("check_marts.py")).arg(bundles).arg(database),
        );
    }

    #[test]
    fn the_fhir_example_runs_from_bundle_files_to_tested_marts() {
        let Some(venv) = common::venv("FHIRFLOW_DBT_VENV") else { return };
        let dir = tempfile::tempdir().unwrap();
        copy_example(dir.path());
        let spec = dir.path().join("fhir.yaml");
        let stdout = run_example(&venv, &spec, &[]);
        assert!(stdout.contains("loaded 6 file(s)"), "{stdout}");
        let database = dir.path().join("warehouse.duckdb");
        check_marts(&venv, dir.path(), &dir.path().join("bundles"), &database);
        // Again: nothing new to load, and the incremental build still passes.
        let stdout = run_example(&venv, &spec, &[]);
        assert!(stdout.contains("nothing new in"), "{stdout}");
        check_marts(&venv, dir.path(), &dir.path().join("bundles"), &database);
    }

    /// The example's build as layers by path (`layered`, and `run` + `test` gates per layer):
    /// every layer passes, and the layers run each of the project's tests exactly once, as one
    /// `dbt build` does — a relationship test between marts and staging runs with the marts,
    /// after both exist, and the sources' tests with the first layer.
    #[test]
    fn the_fhir_example_builds_layer_by_layer_with_each_test_once() {
        let Some(venv) = common::venv("FHIRFLOW_DBT_VENV") else { return };
        let layers = "        layers:\n          - {name: staging, select: [path:models/staging]}\n          - {name: intermediate, select: [path:models/intermediate]}\n          - {name: marts, select: [path:models/marts]}\n";
        for (variant, stage) in [
            ("layered", format!("        command: build\n        dbt_mode: layered\n{layers}")),
            ("gates", format!("        command: run\n        dbt_mode: layered\n        gates: true\n{layers}")),
        ] {
            let dir = tempfile::tempdir().unwrap();
            copy_example(dir.path());
            let spec = dir.path().join("fhir.yaml");
            common::edit(&spec, "        command: build\n", &stage);
            let tests = Command::new(venv.join("bin/dbt"))
                .args([
                    "ls",
                    "--resource-type",
                    "test",
                    "--output",
                    "name",
                    "-q",
                    "--project-dir",
                    "dbt",
                    "--profiles-dir",
                    "dbt",
                ])
                .current_dir(dir.path())
                .output()
                .unwrap();
            let tests = String::from_utf8_lossy(&tests.stdout).lines().filter(|l| !l.trim().is_empty()).count();
            assert!(tests > 80, "dbt sees the example's tests: {tests}");
            let stdout = run_example(&venv, &spec, &[]);
            let ran: usize = stdout
                .lines()
                .filter_map(|l| {
                    l.split_once("[fhirflow] dbt results: ")?.1.split_once(" pass")?.0.parse::<usize>().ok()
                })
                .sum();
            assert_eq!(ran, tests, "{variant}: each test once across the layers\n{stdout}");
            check_marts(&venv, dir.path(), &dir.path().join("bundles"), &dir.path().join("warehouse.duckdb"));
            if let Some(airflow) = common::venv("FHIRFLOW_AIRFLOW_VENV") {
                layers_in_airflow(&airflow, &venv, dir.path(), &stage);
            }
        }
    }

    /// The same layered dbt stage as an Airflow DAG, run by `airflow dags test` on a warehouse
    /// that holds only the loaded bundles, so each layer must build on the one before.
    fn layers_in_airflow(airflow: &Path, dbt: &Path, dir: &Path, stage: &str) {
        let database = dir.join("airflow.duckdb");
        succeed(
            "the load",
            Command::new(common::fhirflow().get_program())
                .args(["run", "fhir.yaml", "--only", "load"])
                .env("FHIRFLOW_DUCKDB_PATH", &database)
                .current_dir(dir),
        );
        let spec = dir.join("airflow.yaml");
        std::fs::write(
            &spec,
            format!(
                "version: 1\ndbt: {{project_dir: dbt}}\npipelines:\n  fhir_dbt:\n    schedule: '@daily'\n    stages:\n      build:\n        kind: dbt\n{stage}"
            ),
        )
        .unwrap();
        fhirflow().arg("apply").arg(&spec).arg("--out").arg(dir).assert().success();
        succeed(
            "airflow dags test of the layers",
            Command::new("bash")
                .arg(repo().join("tests/conformance/airflow_dags_test.sh"))
                .arg(airflow)
                .arg(dir.join("dags"))
                .arg("fhir_dbt")
                .arg("")
                .arg(dbt.join("bin"))
                .env("FHIRFLOW_DUCKDB_PATH", &database)
                .env("DBT_SEND_ANONYMOUS_USAGE_STATS", "false"),
        );
        check_marts(dbt, dir, &dir.join("bundles"), &database);
    }

    /// The example's staging models read the raw table's columns by the names the spec gives
    /// them: renamed in `target.columns` (which `build` hands dbt as var raw_columns), the load
    /// writes `bundle_data` and the marts still check out.
    #[test]
    fn the_fhir_example_reads_the_document_column_the_spec_names() {
        let Some(venv) = common::venv("FHIRFLOW_DBT_VENV") else { return };
        let dir = tempfile::tempdir().unwrap();
        copy_example(dir.path());
        let spec = dir.path().join("fhir.yaml");
        let text = std::fs::read_to_string(&spec).unwrap();
        let renamed = text.replace("document: bundle}", "document: bundle_data}");
        assert_ne!(renamed, text, "the example names its document column");
        std::fs::write(&spec, renamed).unwrap();
        let stdout = run_example(&venv, &spec, &[]);
        assert!(stdout.contains("loaded 6 file(s)"), "{stdout}");
        let database = dir.path().join("warehouse.duckdb");
        let columns: Vec<String> = Connection::open(&database)
            .unwrap()
            .prepare("SELECT column_name FROM (DESCRIBE raw.fhir_bundles)")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<duckdb::Result<_>>()
            .unwrap();
        assert_eq!(columns, ["file_key", "loaded_at", "bundle_data"]);
        check_marts(&venv, dir.path(), &dir.path().join("bundles"), &database);
    }

    /// Every table of the example's `marts`, `intermediate` and `staging` schemas, each as its
    /// sorted rows (as text), without the `loaded_at` columns, which differ between runs.
    fn layers(database: &Path) -> BTreeMap<String, Vec<String>> {
        let conn = Connection::open(database).unwrap();
        let tables: Vec<String> = conn
            .prepare(
                "SELECT table_schema || '.' || table_name FROM information_schema.tables \
                 WHERE table_schema IN ('marts', 'intermediate', 'staging') ORDER BY 1",
            )
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<duckdb::Result<_>>()
            .unwrap();
        assert!(tables.len() > 20, "{tables:?}");
        tables
            .into_iter()
            .map(|table| {
                let sql = format!(
                    "SELECT CAST(t AS VARCHAR) AS r \
                     FROM (SELECT COLUMNS(c -> c != 'loaded_at') FROM {table}) AS t ORDER BY r"
                );
                let mut statement = conn.prepare(&sql).unwrap();
                let rows = statement.query_map([], |r| r.get(0)).unwrap().collect::<duckdb::Result<_>>().unwrap();
                (table, rows)
            })
            .collect()
    }

    /// Incremental staging: the bundles loaded in three batches with a build after each (the
    /// last batch a file that updates a patient loaded before) give the same tables, row for
    /// row, as one load and one build of them all, and both check out.
    #[test]
    fn the_fhir_example_built_after_each_batch_equals_one_build() {
        let Some(venv) = common::venv("FHIRFLOW_DBT_VENV") else { return };
        let mut databases = Vec::new();
        for (batch_size, runs) in [(1000, 1), (3, 3)] {
            let dir = tempfile::tempdir().unwrap();
            copy_example(dir.path());
            let bundles = dir.path().join("bundles");
            for entry in std::fs::read_dir(&bundles).unwrap() {
                let file = std::fs::File::options().write(true).open(entry.unwrap().path()).unwrap();
                file.set_modified(std::time::UNIX_EPOCH + Duration::from_secs(1_000)).unwrap();
            }
            // Remy Baker again, renamed: the newest file wins, in the last batch.
            let update = bundles.join("zz_update.json");
            std::fs::write(
                &update,
                r#"{"resourceType": "Bundle", "type": "transaction", "entry": [{"fullUrl": "urn:uuid:bd83cc25-468a-5997-bda6-89d360fd83bd", "resource": {"resourceType": "Patient", "id": "bd83cc25-468a-5997-bda6-89d360fd83bd", "name": [{"use": "official", "family": "Baker-Smith", "given": ["Remy"]}], "gender": "female", "birthDate": "1990-01-01"}}]}"#,
            )
            .unwrap();
            let file = std::fs::File::options().write(true).open(&update).unwrap();
            file.set_modified(std::time::UNIX_EPOCH + Duration::from_secs(2_000)).unwrap();
            let spec = dir.path().join("fhir.yaml");
            common::edit(&spec, "batch_size: 1000", &format!("batch_size: {batch_size}"));
            for run in 0..runs {
                let stdout = run_example(&venv, &spec, &[]);
                assert!(stdout.contains("loaded "), "run {run}: {stdout}");
            }
            let database = dir.path().join("warehouse.duckdb");
            check_marts(&venv, dir.path(), &bundles, &database);
            let tables = layers(&database);
            let renamed = tables["marts.dim_patients"].iter().filter(|r| r.contains("Baker-Smith")).count();
            assert_eq!(renamed, 1, "{:?}", tables["marts.dim_patients"]);
            databases.push((tables, dir));
        }
        let (batched, once) = (&databases[1].0, &databases[0].0);
        assert_eq!(batched.keys().collect::<Vec<_>>(), once.keys().collect::<Vec<_>>());
        for (table, rows) in once {
            assert_eq!(&batched[table], rows, "{table}");
        }
    }

    #[test]
    fn the_fhir_example_runs_on_the_synthea_sample() {
        let sample = repo().join("../shared/data/synthea-sample");
        if !sample.is_dir() {
            eprintln!("skipped: no {}", sample.display());
            return;
        }
        let Some(venv) = common::venv("FHIRFLOW_DBT_VENV") else { return };
        let dir = tempfile::tempdir().unwrap();
        copy_example(dir.path());
        let bundles = dir.path().join("sample");
        std::fs::create_dir_all(&bundles).unwrap();
        for entry in std::fs::read_dir(&sample).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "json") {
                std::fs::copy(&path, bundles.join(path.file_name().unwrap())).unwrap();
            }
        }
        let database = dir.path().join("db/sample.duckdb");
        let spec = dir.path().join("fhir.yaml");
        run_example(&venv, &spec, &[("FHIRFLOW_BUNDLE_DIR", &bundles), ("FHIRFLOW_DUCKDB_PATH", &database)]);
        check_marts(&venv, dir.path(), &bundles, &database);
    }
}

#[cfg(feature = "s3")]
use common::servers;

/// S3 → the embedded DuckDB, against a real s3s-fs server (`FHIRFLOW_S3S_BIN`, from
/// tests/servers/ensure_s3s.sh) on 127.0.0.1 that checks SigV4 signatures.
#[cfg(all(feature = "duckdb", feature = "s3"))]
mod s3 {
    use super::*;
    use duckdb::Connection;
    use servers::{BUCKET, LAKE_SOURCE, put, s3s};
    use std::path::Path;

    fn spec(dir: &Path, batch_size: u32) -> std::path::PathBuf {
        let lake = servers::lake();
        let connections = format!("{lake}\n{}", DUCKDB.0);
        write_load_spec(dir, &connections, LAKE_SOURCE, DUCKDB.1, "raw.load_watermark", batch_size)
    }

    fn run(spec: &Path, endpoint: &str, secret: &str) -> std::process::Output {
        fhirflow()
            .arg("run")
            .arg(spec)
            .env("T_S3_ENDPOINT", endpoint)
            .env("T_S3_KEY", "test-key")
            .env("T_S3_SECRET", secret)
            .output()
            .unwrap()
    }

    fn keys(database: &Path) -> Vec<(String, i64)> {
        let conn = Connection::open(database).unwrap();
        let mut statement = conn
            .prepare("SELECT file_key, count(*) FROM raw.fhir_bundles GROUP BY file_key ORDER BY file_key")
            .unwrap();
        statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?))).unwrap().collect::<duckdb::Result<_>>().unwrap()
    }

    #[test]
    fn loads_new_objects_in_batches_oldest_first_each_once() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("s3");
        let names = ["Ciara_O'Keefe54.json", "José830_Muñoz421.json", "美咲_佐藤.json", "sub/d.json", "e.json"];
        for (i, name) in names.iter().enumerate() {
            put(&root, &format!("raw/patients/{name}"), &format!("id{i}"), 1_000 + i as u64);
        }
        put(&root, "elsewhere/x.json", "x", 1_000);
        let Some(server) = s3s(&root) else { return };
        let endpoint = format!("http://127.0.0.1:{}", server.port);
        let spec = spec(dir.path(), 2);
        let database = dir.path().join("warehouse.duckdb");
        for expected in [2, 4, 5, 5] {
            let output = run(&spec, &endpoint, "test-secret");
            assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stdout));
            assert_eq!(keys(&database).len(), expected);
        }
        let loaded = keys(&database);
        let mut expected: Vec<(String, i64)> = names.iter().map(|n| (format!("raw/patients/{n}"), 1)).collect();
        expected.sort();
        assert_eq!(loaded, expected);
        let conn = Connection::open(&database).unwrap();
        let id: String = conn
            .query_row(
                "SELECT bundle->>'id' FROM raw.fhir_bundles WHERE file_key = 'raw/patients/美咲_佐藤.json'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(id, "id2");
        drop(conn);
        // A newer object is picked up by the next run.
        put(&root, "raw/patients/f.json", "f", 2_000);
        assert!(run(&spec, &endpoint, "test-secret").status.success());
        assert_eq!(keys(&database).len(), 6);
    }

    #[test]
    fn a_wrong_secret_fails_with_the_s3_error() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("s3");
        put(&root, "raw/patients/a.json", "a", 1_000);
        let Some(server) = s3s(&root) else { return };
        let output = run(&spec(dir.path(), 10), &format!("http://127.0.0.1:{}", server.port), "wrong");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert_eq!(output.status.code(), Some(5), "{stdout}");
        assert!(stdout.contains("SignatureDoesNotMatch"), "{stdout}");
    }

    #[test]
    fn a_server_that_is_down_is_retried_then_named() {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let output = run(&spec(dir.path(), 10), &format!("http://127.0.0.1:{port}"), "test-secret");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert_eq!(output.status.code(), Some(5), "{stdout}");
        assert!(stdout.contains(&format!("cannot list s3://{BUCKET}/")), "{stdout}");
        assert!(stdout.contains("Connection refused"), "{stdout}");
        // Two attempts (retries: 1) of the first step that lists.
        let summary = stdout.lines().find(|l| l.contains("p.list_new_s3_files")).unwrap_or_default();
        assert!(summary.contains("failed") && summary.split_whitespace().any(|w| w == "2"), "{stdout}");
    }
}

/// S3 → Snowflake: `COPY INTO` through fakesnow_json.py (Snowflake's HTTP protocol over DuckDB),
/// which reads the objects from s3s-fs, both on 127.0.0.1.
#[cfg(feature = "snowflake")]
mod snowflake {
    use super::*;
    use servers::{BUCKET, Server, fakesnow, put, s3s};
    use snowflake_connector_rs::{AuthConfig, Client, ClientConfig, EndpointConfig, SessionConfig};
    use std::path::Path;

    struct Servers {
        s3: Server,
        snow: Server,
    }

    fn start(dir: &Path) -> Option<Servers> {
        let s3 = s3s(&dir.join("s3"))?;
        let snow = fakesnow(&dir.join("db"), s3.port)?;
        Some(Servers { s3, snow })
    }

    async fn session(port: u16) -> snowflake_connector_rs::Session {
        let url = url::Url::parse(&format!("http://127.0.0.1:{port}")).unwrap();
        let client = Client::new(
            ClientConfig::new("fhirflow", "fakesnow", AuthConfig::password("secret"))
                .with_endpoint(EndpointConfig::custom_base_url(url))
                .with_session(SessionConfig::new().with_database("FHIR").with_schema("RAW")),
        )
        .unwrap();
        client.create_session().await.unwrap()
    }

    fn spec(dir: &Path, batch_size: u32) -> std::path::PathBuf {
        spec_with(dir, batch_size, "", "")
    }

    /// The test spec, with `columns` (more keys of `target`) and `watermark` (more lines of the stage).
    fn spec_with(dir: &Path, batch_size: u32, columns: &str, watermark: &str) -> std::path::PathBuf {
        let connections = format!(
            "{}\n  warehouse:\n    type: snowflake\n    database: FHIR\n    env: {{account: T_SF_ACCOUNT, user: T_SF_USER, password: T_SF_PASSWORD, base_url: T_SF_URL, schema: T_SF_SCHEMA}}",
            servers::lake()
        );
        let target = format!("{{connection: warehouse, table: RAW.FHIR_BUNDLES, stage: RAW.FHIR_S3_STAGE{columns}}}");
        let watermark = format!("RAW.LOAD_WATERMARK{watermark}");
        write_load_spec(dir, &connections, servers::LAKE_SOURCE, &target, &watermark, batch_size)
    }

    fn command(spec: &Path, servers: &Servers, password: &str) -> std::process::Command {
        let mut command = std::process::Command::new(assert_cmd::cargo::cargo_bin("fhirflow"));
        command
            .arg("run")
            .arg(spec)
            .env("T_S3_ENDPOINT", format!("http://127.0.0.1:{}", servers.s3.port))
            .env("T_S3_KEY", "test-key")
            .env("T_S3_SECRET", "test-secret")
            .env("T_SF_ACCOUNT", "fakesnow")
            .env("T_SF_USER", "fhirflow")
            .env("T_SF_PASSWORD", password)
            .env("T_SF_URL", format!("http://127.0.0.1:{}", servers.snow.port))
            .env("T_SF_SCHEMA", "RAW");
        command
    }

    fn run(spec: &Path, servers: &Servers, password: &str) -> std::process::Output {
        command(spec, servers, password).output().unwrap()
    }

    async fn create_stage(session: &snowflake_connector_rs::Session) {
        session
            .query(format!("CREATE STAGE IF NOT EXISTS \"RAW\".\"FHIR_S3_STAGE\" URL = 's3://{BUCKET}/'"))
            .await
            .unwrap();
    }

    async fn counts(session: &snowflake_connector_rs::Session) -> Vec<(String, i64)> {
        select(session, "SELECT FILE_KEY, COUNT(*) FROM RAW.FHIR_BUNDLES GROUP BY FILE_KEY ORDER BY FILE_KEY").await
    }

    /// The rows of `sql`.
    async fn select<T: snowflake_connector_rs::FromRow>(
        session: &snowflake_connector_rs::Session,
        sql: &str,
    ) -> Vec<T> {
        session.query_as(sql.to_owned()).await.unwrap().collect().await.unwrap()
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn copies_new_objects_in_batches_each_once_and_advances_the_watermark() {
        let dir = tempfile::tempdir().unwrap();
        // No `'` in these names: fakesnow 0.11.18 writes its load history with the file name as a
        // SQL identifier and fails on one (Snowflake does not); the COPY's literal is right,
        // `'…O''Keefe54.json'`, and sql_string's own tests cover the escaping.
        let names = ["Ciara_OKeefe54.json", "José830_Muñoz421.json", "a.json", "美咲_佐藤.json"];
        for (i, name) in names.iter().enumerate() {
            put(&dir.path().join("s3"), &format!("raw/patients/{name}"), &format!("id{i}"), 1_000 + i as u64);
        }
        let Some(servers) = start(dir.path()) else { return };
        let session = session(servers.snow.port).await;
        create_stage(&session).await;
        let spec = spec(dir.path(), 2);
        for expected in [2, 4, 4] {
            let output = run(&spec, &servers, "secret");
            let stdout = String::from_utf8_lossy(&output.stdout);
            assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
            let rows = counts(&session).await;
            assert_eq!(rows.len(), expected, "{rows:?}\n{stdout}");
            assert!(rows.iter().all(|(_, n)| *n == 1), "{rows:?}");
        }
        let marks: Vec<(String, i64)> =
            select(&session, "SELECT LAST_KEY, FILES_LOADED FROM RAW.LOAD_WATERMARK ORDER BY LOAD_ID").await;
        assert_eq!(
            marks,
            [("raw/patients/José830_Muñoz421.json".to_owned(), 2), ("raw/patients/美咲_佐藤.json".to_owned(), 2)]
        );
        let id: Vec<(String,)> = session
            .query_as(
                "SELECT BUNDLE:id::string FROM RAW.FHIR_BUNDLES WHERE FILE_KEY = 'raw/patients/Ciara_OKeefe54.json'",
            )
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        assert_eq!(id, [("id0".to_owned(),)]);
    }

    /// The tables of a project that loaded before fhirflow, created with unquoted names (which
    /// Snowflake upper-cases): the JSON column is `bundle_data`, the watermark rows are numbered
    /// in `id` and stamped in `written_at`.
    async fn create_existing_tables(session: &snowflake_connector_rs::Session) {
        for ddl in [
            "CREATE TABLE RAW.FHIR_BUNDLES (file_key VARCHAR NOT NULL, loaded_at TIMESTAMP_TZ, bundle_data VARIANT)",
            "CREATE TABLE RAW.LOAD_WATERMARK (id NUMBER AUTOINCREMENT, source VARCHAR NOT NULL, last_modified VARCHAR, \
             last_key VARCHAR, files_loaded NUMBER, written_at TIMESTAMP_TZ DEFAULT CURRENT_TIMESTAMP())",
        ] {
            session.query(ddl).await.unwrap();
        }
    }

    /// Servers holding `raw/patients/<id>.json` for each of `ids` (oldest first), the stage, and
    /// [`create_existing_tables`]; `None` when skipped on purpose.
    async fn existing_project(dir: &Path, ids: &[&str]) -> Option<(Servers, snowflake_connector_rs::Session)> {
        for (i, id) in ids.iter().enumerate() {
            put(&dir.join("s3"), &format!("raw/patients/{id}.json"), id, 1_000 + i as u64);
        }
        let servers = start(dir)?;
        let session = session(servers.snow.port).await;
        create_stage(&session).await;
        create_existing_tables(&session).await;
        Some((servers, session))
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn an_existing_table_with_other_columns_fails_before_the_copy_naming_them() {
        let dir = tempfile::tempdir().unwrap();
        let Some((servers, session)) = existing_project(dir.path(), &["a"]).await else { return };
        assert_table_mismatch(
            &run(&spec(dir.path(), 2), &servers, "secret"),
            "load `load`: table RAW.FHIR_BUNDLES does not match the load's `target.columns`: no column `BUNDLE` \
             (document); the table has FILE_KEY, LOADED_AT, BUNDLE_DATA. Name the table's columns under `target.columns`",
        );
        assert!(counts(&session).await.is_empty());

        let spec = spec_with(dir.path(), 2, ", columns: {document: bundle_data}", "");
        let stdout = String::from_utf8_lossy(&run(&spec, &servers, "secret").stdout).into_owned();
        assert!(
            stdout.contains(
                "table RAW.LOAD_WATERMARK does not match the load's `watermark_columns`: no column `LOAD_ID` (load_id), \
                 `UPDATED_AT` (updated_at); the table has ID, SOURCE, LAST_MODIFIED, LAST_KEY, FILES_LOADED, WRITTEN_AT"
            ),
            "{stdout}"
        );
        assert!(counts(&session).await.is_empty());
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn an_existing_table_with_the_configured_names_loads_into_them() {
        let dir = tempfile::tempdir().unwrap();
        let Some((servers, session)) = existing_project(dir.path(), &["a", "b"]).await else { return };
        let spec = spec_with(
            dir.path(),
            1,
            ", columns: {document: bundle_data}",
            "\n        watermark_columns: {load_id: id, updated_at: Written_At}",
        );
        for _ in 0..2 {
            let output = run(&spec, &servers, "secret");
            assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stdout));
        }
        let ids: Vec<(String, String)> =
            select(&session, "SELECT FILE_KEY, BUNDLE_DATA:id::string FROM RAW.FHIR_BUNDLES ORDER BY FILE_KEY").await;
        assert_eq!(
            ids,
            [("raw/patients/a.json".to_owned(), "a".to_owned()), ("raw/patients/b.json".to_owned(), "b".to_owned())]
        );
        let marks: Vec<(String, i64)> =
            select(&session, "SELECT LAST_KEY, FILES_LOADED FROM RAW.LOAD_WATERMARK ORDER BY ID").await;
        assert_eq!(marks, [("raw/patients/a.json".to_owned(), 1), ("raw/patients/b.json".to_owned(), 1)]);
    }

    /// `fhirflow apply`s `spec` and calls its DAG's Snowflake tasks with real Airflow against
    /// the test's fakesnow (tests/conformance/airflow_load_tasks.py says what is real), as if
    /// `list_new_s3_files` had listed `keys`. One JSON value per task called.
    fn airflow_load_tasks(airflow: &Path, spec: &Path, servers: &Servers, keys: &[&str]) -> Vec<serde_json::Value> {
        let out = spec.parent().unwrap().join("airflow");
        fhirflow().arg("apply").arg(spec).arg("--out").arg(&out).assert().success();
        let files: Vec<serde_json::Value> = keys
            .iter()
            .map(|key| serde_json::json!({"key": key, "last_modified": "2026-01-01T00:00:00.000000Z"}))
            .collect();
        let output = std::process::Command::new(airflow.join("bin/python"))
            .arg(repo().join("tests/conformance/airflow_load_tasks.py"))
            .arg(out.join("dags"))
            .arg("p")
            .arg(servers.snow.port.to_string())
            .arg(serde_json::Value::Array(files).to_string())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
        stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }

    /// The same spec's DAG does what `fhirflow run` does with tables that exist: the same
    /// check, failing with the same message (and without retries), and with the configured
    /// names the same load. SnowflakeHook itself cannot reach a local endpoint, so its
    /// connection is the one thing not Airflow's own here.
    #[tokio::test(flavor = "multi_thread")]
    async fn the_airflow_dag_checks_and_loads_an_existing_table_as_fhirflow_run_does() {
        let Some(airflow) = common::venv("FHIRFLOW_AIRFLOW_VENV") else { return };
        let dir = tempfile::tempdir().unwrap();
        let Some((servers, session)) = existing_project(dir.path(), &["a"]).await else { return };
        let spec = spec(dir.path(), 2);
        let tasks = airflow_load_tasks(&airflow, &spec, &servers, &["raw/patients/a.json"]);
        let message = "load `load`: table RAW.FHIR_BUNDLES does not match the load's `target.columns`: no column \
                       `BUNDLE` (document); the table has FILE_KEY, LOADED_AT, BUNDLE_DATA. Name the table's columns \
                       under `target.columns`";
        assert_eq!(
            tasks,
            [
                serde_json::json!({"task": "create_snowflake_tables", "failed": "AirflowFailException", "message": message})
            ]
        );
        assert_table_mismatch(&run(&spec, &servers, "secret"), message);

        let spec = spec_with(
            dir.path(),
            2,
            ", columns: {document: bundle_data}",
            "\n        watermark_columns: {load_id: id, updated_at: written_at}",
        );
        let tasks = airflow_load_tasks(&airflow, &spec, &servers, &["raw/patients/a.json"]);
        let results: Vec<(&str, &serde_json::Value)> =
            tasks.iter().map(|t| (t["task"].as_str().unwrap_or_default(), &t["ok"])).collect();
        assert_eq!(
            results,
            [
                ("create_snowflake_tables", &serde_json::Value::Null),
                ("get_last_watermark", &serde_json::Value::Null),
                ("load_files_to_snowflake", &serde_json::json!(1)),
                ("update_watermark", &serde_json::Value::Null),
            ],
            "{tasks:?}"
        );
        let ids: Vec<(String, String)> =
            select(&session, "SELECT FILE_KEY, BUNDLE_DATA:id::string FROM RAW.FHIR_BUNDLES").await;
        assert_eq!(ids, [("raw/patients/a.json".to_owned(), "a".to_owned())]);
        let marks: Vec<(i64, String)> = select(&session, "SELECT ID, LAST_KEY FROM RAW.LOAD_WATERMARK").await;
        assert_eq!(marks, [(1, "raw/patients/a.json".to_owned())]);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_wrong_password_is_a_clear_error_and_not_retried() {
        let dir = tempfile::tempdir().unwrap();
        put(&dir.path().join("s3"), "raw/patients/a.json", "a", 1_000);
        let Some(servers) = start(dir.path()) else { return };
        let output = run(&spec(dir.path(), 2), &servers, "wrong");
        let stdout = assert_failed_at_once(&output, "Snowflake connection `warehouse` login failed");
        assert!(stdout.contains("Incorrect username or password"), "{stdout}");
    }

    /// SIGKILL fhirflow while its COPY runs, then run again: every file is in the table exactly
    /// once (the killed COPY's transaction never commits).
    #[tokio::test(flavor = "multi_thread")]
    async fn a_fhirflow_killed_mid_copy_loses_and_duplicates_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let count = 60;
        for i in 0..count {
            put(&dir.path().join("s3"), &format!("raw/patients/b{i:03}.json"), &format!("b{i}"), 1_000 + i);
        }
        let Some(servers) = start(dir.path()) else { return };
        let session = session(servers.snow.port).await;
        create_stage(&session).await;
        let spec = spec(dir.path(), 100);
        let mut child = command(&spec, &servers, "secret").stdout(std::process::Stdio::piped()).spawn().unwrap();
        wait_for_load_step(&mut child);
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        child.kill().unwrap();
        child.wait().unwrap();
        let after_kill = counts(&session).await.len();
        eprintln!("SIGKILL 300 ms into the load step; {after_kill} file(s) visible");

        let output = run(&spec, &servers, "secret");
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stdout));
        let rows = counts(&session).await;
        assert_eq!(rows.len(), count as usize, "{rows:?}");
        assert!(rows.iter().all(|(_, n)| *n == 1), "each file exactly once: {rows:?}");
    }
}
