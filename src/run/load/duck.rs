//! Loads into an embedded DuckDB file (cargo feature `duckdb`).
//!
//! The raw table is the FHIR example's contract (examples/fhir/README.md):
//! `(file_key VARCHAR NOT NULL, loaded_at TIMESTAMPTZ, bundle JSON)` (the names as the spec's
//! `target.columns` sets them), one row per file, read with
//! `read_json_objects(…, format = 'unstructured', maximum_object_size = 512 MiB)`. File paths and
//! keys are statement parameters, never SQL text. Every function here blocks.

use super::{LoadState, SourceFile, Watermark};
use crate::graph::LoadPlan;
use crate::spec::TableName;
use duckdb::{Connection, OptionalExt, params, params_from_iter};
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

/// The environment variable that caps the memory DuckDB may use, read by the load and by the FHIR
/// example's dbt profile alike, so that one setting bounds both.
pub const MEMORY_LIMIT_VAR: &str = "FHIRFLOW_DUCKDB_MEMORY_LIMIT";

/// The load's memory cap unless [`MEMORY_LIMIT_VAR`] sets another: DuckDB's own default is 80% of
/// the machine's memory, which a load of large batches fills before it spills.
const DEFAULT_MEMORY_LIMIT: &str = "3GB";

/// The memory cap in force, as DuckDB's `memory_limit` setting takes it (`3GB`, `500MB`).
fn memory_limit() -> String {
    std::env::var(MEMORY_LIMIT_VAR)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_MEMORY_LIMIT.to_owned())
}

/// A DuckDB error, with the setting to change when it is DuckDB running out of memory.
fn error_text(error: duckdb::Error) -> String {
    let text = error.to_string();
    if text.contains("Out of Memory") {
        format!(
            "{text}\nDuckDB's memory_limit is {} here: raise it with {MEMORY_LIMIT_VAR} (such as {MEMORY_LIMIT_VAR}=6GB), \
             or lower the stage's batch_size",
            memory_limit()
        )
    } else {
        text
    }
}

/// Opens (creating it and its folder if missing) `database`, with the load's tables, its memory
/// bounded: `memory_limit` (spilling to DuckDB's temporary folder beyond it) and no insertion
/// order kept, which a load does not need and which makes DuckDB buffer whole results.
pub fn open(database: &Path, plan: &LoadPlan) -> Result<Connection, String> {
    if let Some(parent) = database.parent() {
        std::fs::create_dir_all(parent).map_err(|e| format!("cannot create its folder: {e}"))?;
    }
    let conn = Connection::open(database).map_err(|e| e.to_string())?;
    let limit = memory_limit();
    let invalid = |e: String| format!("{MEMORY_LIMIT_VAR}={limit:?} is not a DuckDB memory_limit (such as 3GB): {e}");
    // Only digits, `.`, letters and spaces: the value cannot close its quotes.
    if !limit.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | ' ')) {
        return Err(invalid("only digits, a unit and spaces are allowed".to_owned()));
    }
    conn.execute_batch(&format!("SET memory_limit = '{limit}'")).map_err(|e| invalid(e.to_string()))?;
    conn.execute_batch("SET preserve_insertion_order = false").map_err(error_text)?;
    create_tables(&conn, plan).map_err(error_text)?;
    Ok(conn)
}

fn create_tables(conn: &Connection, plan: &LoadPlan) -> duckdb::Result<()> {
    for table in [&plan.table, &plan.watermark_table] {
        if let Some(schema) = schema(table) {
            conn.execute_batch(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))?;
        }
    }
    let (raw, marks) = (&plan.columns, &plan.watermark_columns);
    conn.execute_batch(&format!(
        "CREATE TABLE IF NOT EXISTS {} ({} VARCHAR NOT NULL, {} TIMESTAMPTZ, {} JSON);
         CREATE TABLE IF NOT EXISTS {} ({} BIGINT NOT NULL, {} VARCHAR NOT NULL, {} VARCHAR, \
         {} VARCHAR, {} BIGINT, {} TIMESTAMPTZ DEFAULT now());",
        ident(&plan.table),
        raw.file_key.duckdb(),
        raw.loaded_at.duckdb(),
        raw.document.duckdb(),
        ident(&plan.watermark_table),
        marks.load_id.duckdb(),
        marks.source.duckdb(),
        marks.last_modified.duckdb(),
        marks.last_key.duckdb(),
        marks.files_loaded.duckdb(),
        marks.updated_at.duckdb()
    ))
}

/// The column names of the raw table and the watermark table, in [`LoadPlan::layouts`] order.
/// `DESCRIBE` resolves the names as the load's own statements do (schema, search path).
pub fn columns(conn: &Connection, plan: &LoadPlan) -> Result<[Vec<String>; 2], String> {
    let describe = |table: &TableName| -> duckdb::Result<Vec<String>> {
        let mut statement = conn.prepare(&format!("SELECT column_name FROM (DESCRIBE {})", ident(table)))?;
        statement.query_map([], |row| row.get::<_, String>(0))?.collect()
    };
    Ok([describe(&plan.table).map_err(|e| e.to_string())?, describe(&plan.watermark_table).map_err(|e| e.to_string())?])
}

/// The keys already loaded and the newest watermark.
pub fn state(conn: &Connection, plan: &LoadPlan) -> Result<LoadState, String> {
    read_state(conn, plan).map_err(|e| e.to_string())
}

fn read_state(conn: &Connection, plan: &LoadPlan) -> duckdb::Result<LoadState> {
    let mut statement =
        conn.prepare(&format!("SELECT {} FROM {}", plan.columns.file_key.duckdb(), ident(&plan.table)))?;
    let loaded = statement.query_map([], |row| row.get::<_, String>(0))?.collect::<duckdb::Result<_>>()?;
    let marks = &plan.watermark_columns;
    let watermark = conn
        .query_row(
            &format!(
                "SELECT {}, {} FROM {} WHERE {} = ? ORDER BY {} DESC LIMIT 1",
                marks.last_modified.duckdb(),
                marks.last_key.duckdb(),
                ident(&plan.watermark_table),
                marks.source.duckdb(),
                marks.load_id.duckdb()
            ),
            params![plan.stage.as_str()],
            |row| Ok(Watermark { last_modified: row.get(0)?, last_key: row.get(1)? }),
        )
        .optional()?;
    Ok(LoadState { loaded, watermark })
}

/// What one batch did.
pub struct Loaded {
    /// Files inserted (files found loaded inside the transaction are left out).
    pub files: usize,
    /// Rows inserted.
    pub rows: usize,
    /// The watermark written.
    pub watermark: Watermark,
}

/// In one transaction: inserts the files of `batch` not loaded yet (checked again inside it),
/// and appends the new watermark. Either both are committed or neither.
/// A file that holds no JSON value would get no row, stay "new" and be picked again by every
/// run, so it fails the batch instead, by name.
pub fn load(conn: &mut Connection, plan: &LoadPlan, batch: &[SourceFile]) -> Result<Loaded, String> {
    let text = error_text;
    let tx = conn.transaction().map_err(text)?;
    let state = read_state(&tx, plan).map_err(text)?;
    let batch: Vec<&SourceFile> = batch.iter().filter(|f| !state.loaded.contains(&f.key)).collect();
    let rows = if batch.is_empty() { 0 } else { insert(&tx, plan, &batch).map_err(text)? };
    let after = read_state(&tx, plan).map_err(text)?;
    if let Some(empty) = batch.iter().find(|f| !after.loaded.contains(&f.key)) {
        // Dropping `tx` rolls the batch back.
        return Err(format!("{} holds no JSON value; nothing of this batch was loaded", empty.path.display()));
    }
    finish(tx, plan, state, &batch, rows).map_err(text)
}

fn finish(
    tx: duckdb::Transaction<'_>,
    plan: &LoadPlan,
    state: LoadState,
    batch: &[&SourceFile],
    rows: usize,
) -> duckdb::Result<Loaded> {
    let newest = batch.iter().map(|f| f.watermark()).max();
    let watermark = match (state.watermark, newest) {
        (Some(old), Some(new)) => old.max(new),
        (old, new) => new.or(old).unwrap_or_default(),
    };
    let marks = &plan.watermark_columns;
    tx.execute(
        &format!(
            "INSERT INTO {table} ({load_id}, {}, {}, {}, {}) SELECT coalesce(max({load_id}), 0) + 1, ?, ?, ?, ? FROM {table}",
            marks.source.duckdb(),
            marks.last_modified.duckdb(),
            marks.last_key.duckdb(),
            marks.files_loaded.duckdb(),
            table = ident(&plan.watermark_table),
            load_id = marks.load_id.duckdb(),
        ),
        params![plan.stage.as_str(), watermark.last_modified, watermark.last_key, batch.len() as i64],
    )?;
    tx.commit()?;
    Ok(Loaded { files: batch.len(), rows, watermark })
}

/// One `read_json_objects` over the batch's paths, joined to their keys; all parameters.
fn insert(conn: &Connection, plan: &LoadPlan, batch: &[&SourceFile]) -> duckdb::Result<usize> {
    let paths = vec!["?"; batch.len()].join(", ");
    let pairs = vec!["(?, ?)"; batch.len()].join(", ");
    let raw = &plan.columns;
    let sql = format!(
        "INSERT INTO {table} ({}, {}, {})
         SELECT k.file_key, now(), j.json
         FROM read_json_objects([{paths}], format = 'unstructured',
                                maximum_object_size = {MAXIMUM_OBJECT_SIZE}, filename = true) AS j
         JOIN (VALUES {pairs}) AS k(path, file_key) ON j.filename = k.path",
        raw.file_key.duckdb(),
        raw.loaded_at.duckdb(),
        raw.document.duckdb(),
        table = ident(&plan.table)
    );
    let mut values: Vec<String> = batch.iter().map(|f| f.path.to_string_lossy().into_owned()).collect();
    for f in batch {
        values.push(f.path.to_string_lossy().into_owned());
        values.push(f.key.clone());
    }
    conn.execute(&sql, params_from_iter(values))
}
