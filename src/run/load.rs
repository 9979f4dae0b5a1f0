//! The native loader: `copy_into` stages under `fhirflow run`.
//!
//! A `copy_into` stage lowers to five [`LoadStep`] tasks that share one [`LoadPlan`]. Each task
//! can run on its own (`--only`, `--resume`), so no state passes between them: the whole load —
//! list, skip what is loaded, load one batch, advance the watermark — happens in the `Load` step,
//! in **one warehouse transaction**, so a load killed at any point leaves either all of its batch
//! and the new watermark, or none of it. The other steps are real but cheap:
//!
//! | step | does |
//! |---|---|
//! | `CreateTables` | creates the raw table and the watermark table if missing |
//! | `GetWatermark` | reads and logs the newest watermark |
//! | `ListFiles` | lists and logs how many files are new (read only) |
//! | `Load` | the load above |
//! | `UpdateWatermark` | logs the watermark the `Load` step wrote in its transaction |
//!
//! Which files are new: for a `local` folder, every `*.json` file whose key is not in the raw
//! table yet (modification times of a copied folder say little); for S3, every object newer
//! than the watermark, by (last modified, key), whose key is not in the raw table yet. Either
//! way oldest first, at most `batch_size` per run.
//!
//! Runnable now: a `local` folder or S3 (cargo feature `s3`) into an embedded `duckdb` file
//! (cargo feature `duckdb`). Snowflake targets fail at once with [`LoadError::NotRunnable`],
//! never retried.

#[cfg(feature = "duckdb")]
mod duck;
#[cfg(feature = "duckdb")]
mod embedded;
#[cfg(feature = "duckdb")]
mod local;
#[cfg(feature = "s3")]
mod s3;
#[cfg(feature = "snowflake")]
mod snow;

use super::task_log::TaskLog;
use crate::graph::{LoadPlan, LoadStep, LoadTarget};
use crate::spec::{Identifier, Spec};
use chrono::{DateTime, Utc};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// What a load step can use while it runs.
pub struct LoadContext<'a> {
    /// The run id.
    pub run_id: &'a str,
    /// The pipeline's logical date in this run.
    pub logical_date: DateTime<Utc>,
    /// The spec, for its connections (`connections.<name>.env` names the variables to read).
    pub spec: &'a Spec,
    /// The spec's folder.
    pub spec_dir: &'a Path,
    /// The attempt's log.
    pub log: &'a mut TaskLog,
}

/// Why a load step failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    /// `fhirflow run` has no loader for this source or warehouse yet.
    #[error(
        "copy_into is not runnable yet: `fhirflow run` has no native loader for {what} (task `{task}`, load `{stage}`)"
    )]
    NotRunnable {
        /// The step's task id.
        task: String,
        /// The stage.
        stage: String,
        /// What is missing, such as "S3 sources".
        what: String,
    },
    /// The spec or the environment does not say enough to run the load (not retried).
    #[error("load `{stage}`: {message}")]
    Config {
        /// The stage.
        stage: String,
        /// What is wrong.
        message: String,
    },
    /// A table that exists lacks columns the spec names for it (not retried). Found before any
    /// `COPY` or `INSERT`, so nothing was loaded.
    #[error(
        "load `{stage}`: table {table} does not match the load's `{setting}`: no column {missing}; the table has {found}. \
         Name the table's columns under `{setting}`"
    )]
    Layout {
        /// The stage.
        stage: String,
        /// The table.
        table: String,
        /// The setting that names the columns, such as `target.columns`.
        setting: String,
        /// The missing columns, each as "`BUNDLE` (document)".
        missing: String,
        /// The columns the table has, as the warehouse names them.
        found: String,
    },
    /// Listing or reading the source failed (retried).
    #[error("load `{stage}`: cannot list {source_name}: {message}")]
    Source {
        /// The stage.
        stage: String,
        /// The folder or bucket.
        source_name: String,
        /// The cause.
        message: String,
    },
    /// The warehouse failed (retried). Nothing of the batch was committed.
    #[error("load `{stage}`: warehouse {warehouse}: {message}")]
    Warehouse {
        /// The stage.
        stage: String,
        /// The database file or account.
        warehouse: String,
        /// The cause.
        message: String,
    },
}

impl LoadError {
    /// Whether another attempt could succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            LoadError::NotRunnable { .. } | LoadError::Config { .. } | LoadError::Layout { .. } => false,
            LoadError::Source { .. } | LoadError::Warehouse { .. } => true,
        }
    }
}

/// Checks the columns of the raw table and the watermark table (`found`, in
/// [`LoadPlan::layouts`] order, as the warehouse names them) against the spec. `snowflake`:
/// names are compared upper-cased and exactly, as Snowflake stores unquoted names; else (DuckDB)
/// without case.
fn check_layouts(plan: &LoadPlan, found: &[Vec<String>; 2], snowflake: bool) -> Result<(), LoadError> {
    for (layout, found) in plan.layouts().iter().zip(found) {
        let missing = layout.missing(found, !snowflake);
        if missing.is_empty() {
            continue;
        }
        let shown = |c: &crate::spec::ColumnName| {
            if snowflake { c.as_str().to_ascii_uppercase() } else { c.as_str().to_owned() }
        };
        return Err(LoadError::Layout {
            stage: plan.stage.to_string(),
            table: layout.table.to_string(),
            setting: layout.setting.to_owned(),
            missing: missing.iter().map(|(s, c)| format!("`{}` ({s})", shown(c))).collect::<Vec<_>>().join(", "),
            found: found.join(", "),
        });
    }
    Ok(())
}

/// A watermark: the newest file loaded so far, by (last modified, key).
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Watermark {
    /// The file's modification time, RFC 3339 with nanoseconds in UTC.
    pub last_modified: String,
    /// The file's key.
    pub last_key: String,
}

/// A file to load (an S3 object once it is downloaded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    /// Its key: the path relative to the connection's folder, `/`-separated, the name as on disk
    /// (for S3, the object key).
    pub key: String,
    /// Where it is.
    pub path: PathBuf,
    /// Its modification time (for S3, the object's last modified time).
    pub modified: DateTime<Utc>,
}

impl SourceFile {
    /// The file as a watermark. The time is UTC with microseconds, `2026-03-01T02:00:00.000000Z`
    /// (as the Airflow DAGs write it, so both can share a watermark table), which sorts as text in
    /// time order.
    pub fn watermark(&self) -> Watermark {
        Watermark {
            last_modified: self.modified.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
            last_key: self.key.clone(),
        }
    }
}

/// What the warehouse holds of a load.
#[derive(Debug, Clone, Default)]
pub struct LoadState {
    /// Keys in the raw table.
    pub loaded: HashSet<String>,
    /// The newest watermark.
    pub watermark: Option<Watermark>,
}

/// Reads a connection setting: the environment variable that `connections.<name>.env.<setting>`
/// names, when that is set and not empty; else `fallback` (the spec's own value).
fn setting(spec: &Spec, connection: &Identifier, name: &str, fallback: Option<&str>) -> Option<String> {
    let variable = spec.connections.get(connection.as_str()).and_then(|c| c.env.get(name));
    variable.and_then(|v| std::env::var(&v.0).ok()).filter(|v| !v.is_empty()).or_else(|| fallback.map(str::to_owned))
}

/// A path setting, relative to the spec's folder, made absolute.
fn path_setting(ctx: &LoadContext<'_>, connection: &Identifier, path: &str) -> PathBuf {
    let value = setting(ctx.spec, connection, "path", Some(path)).unwrap_or_else(|| path.to_owned());
    let joined = ctx.spec_dir.join(value);
    std::path::absolute(&joined).unwrap_or(joined)
}

/// How a load step ended, when it did not fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepOutcome {
    /// It did its work.
    Done,
    /// The `Load` step found no new file: the task is skipped, and with it the watermark
    /// update, as in the Airflow DAG.
    NothingNew(String),
}

/// Runs one step of a load.
pub async fn run_load(plan: &LoadPlan, step: LoadStep, ctx: &mut LoadContext<'_>) -> Result<StepOutcome, LoadError> {
    let result = run_step(plan, step, ctx).await;
    if let Err(e) = &result {
        ctx.log.note(&e.to_string());
    }
    result
}

async fn run_step(plan: &LoadPlan, step: LoadStep, ctx: &mut LoadContext<'_>) -> Result<StepOutcome, LoadError> {
    let database = match &plan.target {
        #[cfg(feature = "snowflake")]
        LoadTarget::Snowflake { connection, stage, .. } => return snow::run(plan, step, connection, stage, ctx).await,
        #[cfg(not(feature = "snowflake"))]
        LoadTarget::Snowflake { .. } => {
            return Err(LoadError::NotRunnable {
                task: plan.task_id(step).to_owned(),
                stage: plan.stage.to_string(),
                what: "Snowflake warehouses in this build (rebuild with `--features snowflake`)".to_owned(),
            });
        }
        LoadTarget::DuckDb { connection, path } => path_setting(ctx, connection, path),
    };
    #[cfg(feature = "duckdb")]
    return embedded::run(plan, step, &database, ctx).await;
    #[cfg(not(feature = "duckdb"))]
    Err::<StepOutcome, _>(LoadError::Config {
        stage: plan.stage.to_string(),
        message: format!(
            "this fhirflow was built without the embedded DuckDB, so it cannot load into {}; rebuild with \
             `DUCKDB_LIB_DIR=$(bash scripts/ensure_libduckdb.sh | tail -n 1) cargo build --release --features duckdb`",
            database.display()
        ),
    })
}
