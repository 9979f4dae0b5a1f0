//! `copy_into` under `fhirflow run`: a local folder into the embedded DuckDB (cargo feature
//! `duckdb`), the FHIR example end to end with real dbt, and a fhirflow killed mid-load.
//!
//! The DuckDB tests need the `duckdb` feature (scripts/test.sh turns it on); the end-to-end
//! tests also need `FHIRFLOW_DBT_VENV` (see tests/common).

mod common;

use common::{fhirflow, repo};
use std::path::Path;

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
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    /// A spec with only a load of `files/` into `warehouse.duckdb`.
    fn load_spec(dir: &Path, batch_size: u32) -> std::path::PathBuf {
        let spec = dir.join("load.yaml");
        std::fs::write(
            &spec,
            format!(
                "version: 1
connections:
  files: {{type: local, path: files}}
  db: {{type: duckdb, path: warehouse.duckdb}}
pipelines:
  p:
    max_active_runs: 1
    stages:
      load:
        kind: copy_into
        retries: 1
        retry_delay: 1s
        source: {{connection: files}}
        target: {{connection: db, table: raw.fhir_bundles}}
        watermark_table: raw.load_watermark
        batch_size: {batch_size}
"
            ),
        )
        .unwrap();
        spec
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
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.contains("start") && line.contains("load_files_to_snowflake") {
                    let _ = tx.send(());
                }
            }
        });
        rx.recv_timeout(Duration::from_secs(60)).expect("the load step starts");
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

    fn check_marts(venv: &Path, dir: &Path, bundles: &Path, database: &Path) {
        let output = Command::new(venv.join("bin/python"))
            .arg(dir.join("check_marts.py"))
            .arg(bundles)
            .arg(database)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "check_marts failed:\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
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
        assert!(stdout.contains("nothing new under"), "{stdout}");
        check_marts(&venv, dir.path(), &dir.path().join("bundles"), &database);
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
