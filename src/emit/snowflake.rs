//! The Snowflake SQL of a load, shared by the Airflow DAGs and `fhirflow run`'s native loader,
//! so both read and write the same tables and watermarks.

use super::literal::sql_string;
use crate::graph::LoadPlan;
use crate::spec::TableName;

/// The raw table and the watermark table, created if missing.
pub fn create_tables(plan: &LoadPlan) -> [String; 2] {
    [
        format!(
            "CREATE TABLE IF NOT EXISTS {} (FILE_KEY VARCHAR NOT NULL, LOADED_AT TIMESTAMP_TZ DEFAULT CURRENT_TIMESTAMP(), BUNDLE VARIANT)",
            plan.table.quoted()
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {} (LOAD_ID NUMBER AUTOINCREMENT, SOURCE VARCHAR NOT NULL, LAST_MODIFIED VARCHAR, LAST_KEY VARCHAR, FILES_LOADED NUMBER, UPDATED_AT TIMESTAMP_TZ DEFAULT CURRENT_TIMESTAMP())",
            plan.watermark_table.quoted()
        ),
    ]
}

/// The newest watermark of the load: one row (LAST_MODIFIED, LAST_KEY), or none.
pub fn get_watermark(plan: &LoadPlan) -> String {
    format!(
        "SELECT LAST_MODIFIED, LAST_KEY FROM {} WHERE SOURCE = {} ORDER BY LOAD_ID DESC LIMIT 1",
        plan.watermark_table.quoted(),
        sql_string(plan.stage.as_str())
    )
}

/// `COPY INTO` up to the file list, which goes between this and [`COPY_TAIL`] as `FILES = (…)`.
pub fn copy_head(plan: &LoadPlan, stage: &TableName) -> String {
    format!(
        "COPY INTO {} (FILE_KEY, LOADED_AT, BUNDLE) FROM (SELECT METADATA$FILENAME, CURRENT_TIMESTAMP(), $1 FROM @{})",
        plan.table.quoted(),
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
    format!(
        "INSERT INTO {} (SOURCE, LAST_MODIFIED, LAST_KEY, FILES_LOADED) VALUES ({}, {}, {}, {})",
        plan.watermark_table.quoted(),
        sql_string(plan.stage.as_str()),
        placeholder("last_modified"),
        placeholder("last_key"),
        placeholder("files")
    )
}
