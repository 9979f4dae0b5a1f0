//! The steps of a load into the embedded DuckDB (cargo feature `duckdb`), from a local folder
//! or S3 (feature `s3`).

use super::local;
#[cfg(feature = "s3")]
use super::s3;
use super::{LoadContext, LoadError, LoadState, SourceFile, StepOutcome, check_layouts, duck, path_setting};
use crate::graph::{LoadPlan, LoadSource, LoadStep};
use std::path::{Path, PathBuf};

/// Where a load's files come from.
enum Source {
    Local(PathBuf),
    #[cfg(feature = "s3")]
    S3 {
        client: aws_sdk_s3::Client,
        bucket: String,
    },
}

impl Source {
    fn name(&self) -> String {
        match self {
            Source::Local(root) => root.display().to_string(),
            #[cfg(feature = "s3")]
            Source::S3 { bucket, .. } => format!("s3://{bucket}/"),
        }
    }

    /// The new files, oldest first (see the module docs).
    async fn pending(&self, plan: &LoadPlan, state: &LoadState) -> Result<Vec<SourceFile>, LoadError> {
        let error =
            |message: String| LoadError::Source { stage: plan.stage.to_string(), source_name: self.name(), message };
        let (files, watermark): (_, Option<&super::Watermark>) = match self {
            Source::Local(root) => (local::list(root, &plan.prefix).map_err(|e| error(e.to_string()))?, None),
            #[cfg(feature = "s3")]
            Source::S3 { client, bucket } => {
                (s3::list(client, bucket, &plan.prefix).await.map_err(error)?, state.watermark.as_ref())
            }
        };
        Ok(files
            .into_iter()
            .filter(|f| !state.loaded.contains(&f.key) && watermark.is_none_or(|w| f.watermark() > *w))
            .collect())
    }
}

#[cfg_attr(feature = "s3", allow(unused_variables))]
fn source(plan: &LoadPlan, step: LoadStep, ctx: &LoadContext<'_>) -> Result<Source, LoadError> {
    match &plan.source {
        LoadSource::Local { connection, path } => Ok(Source::Local(path_setting(ctx, connection, path))),
        #[cfg(not(feature = "s3"))]
        LoadSource::S3 { .. } => Err(LoadError::NotRunnable {
            task: plan.task_id(step).to_owned(),
            stage: plan.stage.to_string(),
            what: "S3 sources in this build (rebuild with `--features s3`)".to_owned(),
        }),
        #[cfg(feature = "s3")]
        LoadSource::S3 { connection, bucket, .. } => {
            let (client, bucket) = s3::for_connection(plan, ctx, connection, bucket)?;
            Ok(Source::S3 { client, bucket })
        }
    }
}

/// Runs `f` with the DuckDB file open (opened and closed here, so that a dbt task after this
/// one can open it: DuckDB allows one writing process), on a thread that may block.
async fn with_duckdb<T: Send + 'static>(
    plan: &LoadPlan,
    database: &Path,
    f: impl FnOnce(&mut duckdb::Connection, &LoadPlan) -> Result<T, String> + Send + 'static,
) -> Result<T, LoadError> {
    let (owned, path) = (plan.clone(), database.to_owned());
    let result = tokio::task::spawn_blocking(move || {
        let mut conn = duck::open(&path, &owned)?;
        f(&mut conn, &owned)
    })
    .await
    .unwrap_or_else(|e| Err(format!("the DuckDB thread failed: {e}")));
    result.map_err(|message| LoadError::Warehouse {
        stage: plan.stage.to_string(),
        warehouse: database.display().to_string(),
        message,
    })
}

/// Runs `step` of `plan` into the DuckDB file `database`.
pub async fn run(
    plan: &LoadPlan,
    step: LoadStep,
    database: &Path,
    ctx: &mut LoadContext<'_>,
) -> Result<StepOutcome, LoadError> {
    let source = source(plan, step, ctx)?;
    // Tables that existed before the first load must have the spec's columns: checked before
    // anything reads or writes them.
    let found = with_duckdb(plan, database, |conn, plan| duck::columns(conn, plan)).await?;
    check_layouts(plan, &found, false)?;
    let state = with_duckdb(plan, database, |conn, plan| duck::state(conn, plan)).await?;
    match step {
        LoadStep::CreateTables => ctx.log.note(&format!(
            "tables {} and {} are ready in {}",
            plan.table,
            plan.watermark_table,
            database.display()
        )),
        LoadStep::GetWatermark | LoadStep::UpdateWatermark => ctx.log.note(&match &state.watermark {
            Some(m) => format!("watermark of {}: {} {}", plan.stage, m.last_modified, m.last_key),
            None => format!("no watermark yet for {}", plan.stage),
        }),
        LoadStep::ListFiles => {
            let pending = source.pending(plan, &state).await?;
            ctx.log.note(&format!(
                "{} new file(s) in {} ({} loaded before); a run loads up to {}",
                pending.len(),
                source.name(),
                state.loaded.len(),
                plan.batch_size
            ));
        }
        LoadStep::Load => {
            let mut batch = source.pending(plan, &state).await?;
            let left = batch.len().saturating_sub(plan.batch_size as usize);
            batch.truncate(plan.batch_size as usize);
            if batch.is_empty() {
                let why = format!("nothing new in {}", source.name());
                ctx.log.note(&why);
                return Ok(StepOutcome::NothingNew(why));
            }
            let staging = fetch(plan, &source, &mut batch, ctx.run_id).await?;
            if let Some(bad) = batch.iter().find(|f| f.path.to_string_lossy().contains(['*', '?', '['])) {
                return Err(LoadError::Config {
                    stage: plan.stage.to_string(),
                    message: format!(
                        "cannot load {}: DuckDB reads `*`, `?` and `[` in a path as a pattern; rename the file",
                        bad.path.display()
                    ),
                });
            }
            let result = with_duckdb(plan, database, move |conn, plan| duck::load(conn, plan, &batch)).await;
            if let Some(dir) = staging {
                let _ = std::fs::remove_dir_all(dir);
            }
            let loaded = result?;
            ctx.log.note(&format!(
                "loaded {} file(s) ({} row(s)) into {}; {left} left for later runs; watermark {} {}",
                loaded.files, loaded.rows, plan.table, loaded.watermark.last_modified, loaded.watermark.last_key
            ));
        }
    }
    Ok(StepOutcome::Done)
}

/// Makes the batch's files readable by DuckDB: local files are already; S3 objects are
/// downloaded into a temporary folder, returned for removal.
async fn fetch(
    plan: &LoadPlan,
    source: &Source,
    batch: &mut [SourceFile],
    run_id: &str,
) -> Result<Option<PathBuf>, LoadError> {
    match source {
        Source::Local(_) => {
            let _ = (plan, batch, run_id);
            Ok(None)
        }
        #[cfg(feature = "s3")]
        Source::S3 { client, bucket } => {
            let dir = std::env::temp_dir().join(format!("fhirflow-{run_id}-{}-{}", plan.stage, std::process::id()));
            if let Err(message) = s3::download(client, bucket, batch, &dir).await {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(LoadError::Source { stage: plan.stage.to_string(), source_name: source.name(), message });
            }
            Ok(Some(dir))
        }
    }
}
