//! The seam where `copy_into` loads plug in.
//!
//! A `copy_into` stage lowers to five [`LoadStep`] tasks that share one [`LoadPlan`]. The
//! scheduler calls [`run_load`] for each; until the native loader lands here, every step fails
//! at once with [`LoadError::NotRunnable`], which is never retried, and the rest of the graph
//! runs on. The loader replaces the body of [`run_load`]; nothing else needs to change.

use super::task_log::TaskLog;
use crate::graph::{LoadPlan, LoadStep};
use crate::spec::Spec;
use chrono::{DateTime, Utc};
use std::path::Path;

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
    /// `fhirflow run` has no loader yet.
    #[error("copy_into is not runnable yet: `fhirflow run` has no native loader for `{task}` (load `{stage}`)")]
    NotRunnable {
        /// The step's task id.
        task: String,
        /// The stage.
        stage: String,
    },
}

impl LoadError {
    /// Whether another attempt could succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            LoadError::NotRunnable { .. } => false,
        }
    }
}

/// Runs one step of a load.
pub async fn run_load(plan: &LoadPlan, step: LoadStep, ctx: &mut LoadContext<'_>) -> Result<(), LoadError> {
    let error = LoadError::NotRunnable { task: plan.task_id(step).to_owned(), stage: plan.stage.to_string() };
    ctx.log.note(&error.to_string());
    Err(error)
}
