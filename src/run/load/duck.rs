//! Loads into an embedded DuckDB file (cargo feature `duckdb`).
//!
//! The raw table is the FHIR example's contract (examples/fhir/README.md):
//! `(file_key VARCHAR NOT NULL, loaded_at TIMESTAMPTZ, bundle JSON)`, one row per file, read with
//! `read_json_objects(…, format = 'unstructured', maximum_object_size = 512 MiB)`. File paths are
//! statement parameters, never SQL text.

use super::local::{self, SourceFile};
use super::{LoadError, Watermark};
use crate::graph::{LoadPlan, LoadStep};
use crate::spec::TableName;
use duckdb::{Connection, OptionalExt, params, params_from_iter};
use std::collections::HashSet;
use std::path::Path;

/// DuckDB's default object cap (16 MiB) is smaller than some real Synthea patient bundles.
const MAXIMUM_OBJECT_SIZE: u64 = 512 * 1024 * 1024;

/// A table name as DuckDB SQL: each part double-quoted, its case kept. [`TableName`] admits only
/// letters, digits, `_` and `$`, so a part can never close its quotes.
fn ident(table: &TableName) -> String {
    table.as_str().split('.').map(|part| format!("\"{part}\"")).collect::<Vec<_>>().join(".")
}

/// The schema part of `table`, quoted, when it has one.
fn schema(table: &TableName) -> Option<String> {
    let parts: Vec<&str> = table.as_str().split('.').collect();
    (parts.len() >= 2)
        .then(|| parts[..parts.len() - 1].iter().map(|p| format!("\"{p}\"")).collect::<Vec<_>>().join("."))
}

/// Runs one step against `database`, listing `root`. Notes for the task log go to `notes`.
pub fn run_step(
    plan: &LoadPlan,
    step: LoadStep,
    root: &Path,
    database: &Path,
    notes: &mut Vec<String>,
) -> Result<(), LoadError> {
    let stage = plan.stage.to_string();
    let warehouse = |e: duckdb::Error| LoadError::Warehouse {
        stage: stage.clone(),
        warehouse: database.display().to_string(),
        message: e.to_string(),
    };
    if let Some(parent) = database.parent() {
        std::fs::create_dir_all(parent).map_err(|e| LoadError::Warehouse {
            stage: stage.clone(),
            warehouse: database.display().to_string(),
            message: format!("cannot create its folder: {e}"),
        })?;
    }
    let mut conn = Connection::open(database).map_err(warehouse)?;
    create_tables(&conn, plan).map_err(warehouse)?;
    let list = || {
        local::list(root, &plan.prefix).map_err(|e| LoadError::Source {
            stage: stage.clone(),
            source_name: root.display().to_string(),
            message: e.to_string(),
        })
    };
    match step {
        LoadStep::CreateTables => {
            notes.push(format!(
                "tables {} and {} are ready in {}",
                plan.table,
                plan.watermark_table,
                database.display()
            ));
        }
        LoadStep::GetWatermark | LoadStep::UpdateWatermark => {
            let mark = watermark(&conn, plan).map_err(warehouse)?;
            notes.push(match mark {
                Some(m) => format!("watermark of {}: {} {}", plan.stage, m.last_modified, m.last_key),
                None => format!("no watermark yet for {}", plan.stage),
            });
        }
        LoadStep::ListFiles => {
            let files = list()?;
            let loaded = loaded_keys(&conn, &plan.table).map_err(warehouse)?;
            let new = files.iter().filter(|f| !loaded.contains(&f.key)).count();
            notes.push(format!(
                "{new} new file(s) under {} ({} already loaded); this run loads up to {}",
                root.display(),
                files.len() - new,
                plan.batch_size
            ));
        }
        LoadStep::Load => {
            let files = list()?;
            if let Some(bad) = files.iter().find(|f| has_glob(&f.path.to_string_lossy())) {
                return Err(LoadError::Config {
                    stage,
                    message: format!(
                        "cannot load {}: DuckDB reads `*`, `?` and `[` in a path as a pattern; rename the file",
                        bad.path.display()
                    ),
                });
            }
            let tx = conn.transaction().map_err(warehouse)?;
            let loaded = loaded_keys(&tx, &plan.table).map_err(warehouse)?;
            let pending: Vec<&SourceFile> = files.iter().filter(|f| !loaded.contains(&f.key)).collect();
            let batch = &pending[..pending.len().min(plan.batch_size as usize)];
            if batch.is_empty() {
                notes.push(format!("nothing new under {}", root.display()));
                return Ok(());
            }
            let rows = insert_batch(&tx, plan, root, batch).map_err(warehouse)?;
            let previous = watermark(&tx, plan).map_err(warehouse)?;
            let last =
                batch.iter().map(|f| Watermark { last_modified: f.modified_text(), last_key: f.key.clone() }).max();
            let mark = match (previous, last) {
                (Some(p), Some(l)) => p.max(l),
                (p, l) => l.or(p).unwrap_or(Watermark { last_modified: String::new(), last_key: String::new() }),
            };
            tx.execute(
                &format!(
                    "INSERT INTO {marks} (load_id, source, last_modified, last_key, files_loaded) \
                     SELECT coalesce(max(load_id), 0) + 1, ?, ?, ?, ? FROM {marks}",
                    marks = ident(&plan.watermark_table)
                ),
                params![plan.stage.as_str(), mark.last_modified, mark.last_key, batch.len() as i64],
            )
            .map_err(warehouse)?;
            tx.commit().map_err(warehouse)?;
            notes.push(format!(
                "loaded {} file(s) ({rows} row(s)) into {}; {} left for later runs; watermark {} {}",
                batch.len(),
                plan.table,
                pending.len() - batch.len(),
                mark.last_modified,
                mark.last_key
            ));
        }
    }
    Ok(())
}

fn has_glob(path: &str) -> bool {
    path.contains(['*', '?', '['])
}

fn create_tables(conn: &Connection, plan: &LoadPlan) -> duckdb::Result<()> {
    for table in [&plan.table, &plan.watermark_table] {
        if let Some(schema) = schema(table) {
            conn.execute_batch(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))?;
        }
    }
    conn.execute_batch(&format!(
        "CREATE TABLE IF NOT EXISTS {} (file_key VARCHAR NOT NULL, loaded_at TIMESTAMPTZ, bundle JSON);
         CREATE TABLE IF NOT EXISTS {} (load_id BIGINT NOT NULL, source VARCHAR NOT NULL, last_modified VARCHAR, \
         last_key VARCHAR, files_loaded BIGINT, updated_at TIMESTAMPTZ DEFAULT now());",
        ident(&plan.table),
        ident(&plan.watermark_table)
    ))
}

fn loaded_keys(conn: &Connection, table: &TableName) -> duckdb::Result<HashSet<String>> {
    let mut statement = conn.prepare(&format!("SELECT file_key FROM {}", ident(table)))?;
    let keys = statement.query_map([], |row| row.get::<_, String>(0))?.collect::<duckdb::Result<_>>()?;
    Ok(keys)
}

fn watermark(conn: &Connection, plan: &LoadPlan) -> duckdb::Result<Option<Watermark>> {
    conn.query_row(
        &format!(
            "SELECT last_modified, last_key FROM {} WHERE source = ? ORDER BY load_id DESC LIMIT 1",
            ident(&plan.watermark_table)
        ),
        params![plan.stage.as_str()],
        |row| Ok(Watermark { last_modified: row.get(0)?, last_key: row.get(1)? }),
    )
    .optional()
}

/// Inserts the files of `batch`: one `read_json_objects` over a list of parameters, one per file.
fn insert_batch(conn: &Connection, plan: &LoadPlan, root: &Path, batch: &[&SourceFile]) -> duckdb::Result<usize> {
    let placeholders = vec!["?"; batch.len()].join(", ");
    let sql = format!(
        "INSERT INTO {table} (file_key, loaded_at, bundle)
         SELECT substr(filename, length(?) + 1), now(), json
         FROM read_json_objects([{placeholders}], format = 'unstructured',
                                maximum_object_size = {MAXIMUM_OBJECT_SIZE}, filename = true)",
        table = ident(&plan.table)
    );
    let mut prefix = root.to_string_lossy().into_owned();
    if !prefix.ends_with('/') {
        prefix.push('/');
    }
    let mut values: Vec<String> = vec![prefix];
    values.extend(batch.iter().map(|f| f.path.to_string_lossy().into_owned()));
    conn.execute(&sql, params_from_iter(values))
}
