//! The Snowflake SQL of a load, shared by the Airflow DAGs and `fhirflow run`'s native loader,
//! so both read and write the same tables and watermarks.

use super::literal::sql_string;
use crate::graph::LoadPlan;
use crate::spec::TableName;

/// The raw table and the watermark table, created if missing, with the configured column names.
pub fn create_tables(plan: &LoadPlan) -> [String; 2] {
    let (raw, marks) = (&plan.columns, &plan.watermark_columns);
    [
        format!(
            "CREATE TABLE IF NOT EXISTS {} ({} VARCHAR NOT NULL, {} TIMESTAMP_TZ DEFAULT CURRENT_TIMESTAMP(), {} VARIANT)",
            plan.table.quoted(),
            raw.file_key.snowflake(),
            raw.loaded_at.snowflake(),
            raw.document.snowflake()
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {} ({} NUMBER AUTOINCREMENT, {} VARCHAR NOT NULL, {} VARCHAR, {} VARCHAR, {} NUMBER, {} TIMESTAMP_TZ DEFAULT CURRENT_TIMESTAMP())",
            plan.watermark_table.quoted(),
            marks.load_id.snowflake(),
            marks.source.snowflake(),
            marks.last_modified.snowflake(),
            marks.last_key.snowflake(),
            marks.files_loaded.snowflake(),
            marks.updated_at.snowflake()
        ),
    ]
}

/// The columns of `table`: one row per column, its name first (`DESCRIBE TABLE`).
pub fn describe(table: &TableName) -> String {
    format!("DESCRIBE TABLE {}", table.quoted())
}

/// The newest watermark of the load: one row (last modified, last key), or none.
pub fn get_watermark(plan: &LoadPlan) -> String {
    let marks = &plan.watermark_columns;
    format!(
        "SELECT {}, {} FROM {} WHERE {} = {} ORDER BY {} DESC LIMIT 1",
        marks.last_modified.snowflake(),
        marks.last_key.snowflake(),
        plan.watermark_table.quoted(),
        marks.source.snowflake(),
        sql_string(plan.stage.as_str()),
        marks.load_id.snowflake()
    )
}

/// `COPY INTO` up to the file list, which goes between this and [`COPY_TAIL`] as `FILES = (…)`.
pub fn copy_head(plan: &LoadPlan, stage: &TableName) -> String {
    let raw = &plan.columns;
    format!(
        "COPY INTO {} ({}, {}, {}) FROM (SELECT METADATA$FILENAME, CURRENT_TIMESTAMP(), $1 FROM @{})",
        plan.table.quoted(),
        raw.file_key.snowflake(),
        raw.loaded_at.snowflake(),
        raw.document.snowflake(),
        stage.quoted()
    )
}

/// The end of the `COPY INTO` statement.
pub const COPY_TAIL: &str = "FILE_FORMAT = (TYPE = 'JSON') ON_ERROR = 'ABORT_STATEMENT'";

/// The whole `COPY INTO` of `keys` (bucket keys, relative to the stage's URL at the bucket root).
pub fn copy_files<'a>(plan: &LoadPlan, stage: &TableName, keys: impl IntoIterator<Item = &'a str>) -> String {
    let listed = keys.into_iter().map(sql_string).collect::<Vec<_>>().join(", ");
    format!("{} FILES = ({listed}) {COPY_TAIL}", copy_head(plan, stage))
}

/// Appends a watermark; `placeholder(name)` writes the driver's bind syntax for each value
/// (`last_modified`, `last_key`, `files`).
pub fn update_watermark(plan: &LoadPlan, placeholder: impl Fn(&str) -> String) -> String {
    let marks = &plan.watermark_columns;
    format!(
        "INSERT INTO {} ({}, {}, {}, {}) VALUES ({}, {}, {}, {})",
        plan.watermark_table.quoted(),
        marks.source.snowflake(),
        marks.last_modified.snowflake(),
        marks.last_key.snowflake(),
        marks.files_loaded.snowflake(),
        sql_string(plan.stage.as_str()),
        placeholder("last_modified"),
        placeholder("last_key"),
        placeholder("files")
    )
}
