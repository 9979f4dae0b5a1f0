//! The direct executor: `fhirflow run` runs the compiled [`PipelineGraph`] itself, with the
//! semantics the Airflow emitter gives it — dependencies and trigger rules, retries with their
//! delay and exponential backoff, execution timeouts, sensors and `max_active_runs` — and no
//! Airflow.
//!
//! The parts, one concern each:
//!
//! - [`selection`]: which tasks run, in which order (`--pipeline`, `--only`, `--from`, `--resume`);
//! - [`scheduler`]: the tokio loop that starts ready tasks under a concurrency limit, retries,
//!   propagates failures downstream and cancels cleanly;
//! - [`process`]: subprocesses in their own process groups, stopped as a whole on a timeout or cancel;
//! - [`sensor`], [`load`]: the task kinds that are not subprocesses (`load` is the seam where the
//!   native `copy_into` loader plugs in);
//! - [`store`]: the crash-safe SQLite run store under `.fhirflow/`;
//! - [`report`]: the progress display, the summary and the `fhirflow runs` listing;
//! - [`dbt_results`]: `target/run_results.json`, so that a failed dbt task names its failing models.
//! - [`dbt_watcher`]: one `dbt build` read event by event into per-node states, and its retry selection.

pub mod dbt_results;
pub mod dbt_watcher;
pub mod load;
pub mod process;
pub mod report;
pub mod scheduler;
pub mod selection;
pub mod sensor;
pub mod store;
pub mod task_log;
pub mod template;
pub mod trigger_rule;
pub mod watched_build;

use crate::graph::PipelineGraph;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use process::CancelLevel;
pub use report::{RunReport, TaskSummary};
pub use scheduler::Runner;
pub use selection::{RunPlan, Selection};

/// A task's place in a run: its pipeline and task id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct TaskKey {
    /// The pipeline id.
    pub pipeline: String,
    /// The task id.
    pub task: String,
}

impl fmt::Display for TaskKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.pipeline, self.task)
    }
}

/// Where a task is in its life. The names are Airflow's, plus `cancelled` (stopped by Ctrl-C)
/// and `interrupted` (fhirflow itself died while the task was unfinished).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Waiting for its upstream tasks or a free slot.
    Pending,
    /// An attempt is running.
    Running,
    /// An attempt failed; the next one starts after the retry delay.
    UpForRetry,
    /// It succeeded.
    Success,
    /// Its last attempt failed.
    Failed,
    /// An upstream task failed, so it never ran.
    UpstreamFailed,
    /// It did not run, or stopped early, with nothing to do: a load that found nothing new, a
    /// sensor whose target was skipped, or a task whose trigger rule says so.
    Skipped,
    /// The run was cancelled before it finished.
    Cancelled,
    /// fhirflow stopped (was killed, or the machine went down) before it finished.
    Interrupted,
}

impl TaskState {
    /// Every state, for parsing.
    const ALL: [TaskState; 9] = [
        TaskState::Pending,
        TaskState::Running,
        TaskState::UpForRetry,
        TaskState::Success,
        TaskState::Failed,
        TaskState::UpstreamFailed,
        TaskState::Skipped,
        TaskState::Cancelled,
        TaskState::Interrupted,
    ];

    /// The name stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Pending => "pending",
            TaskState::Running => "running",
            TaskState::UpForRetry => "up_for_retry",
            TaskState::Success => "success",
            TaskState::Failed => "failed",
            TaskState::UpstreamFailed => "upstream_failed",
            TaskState::Skipped => "skipped",
            TaskState::Cancelled => "cancelled",
            TaskState::Interrupted => "interrupted",
        }
    }

    /// The state named `text`.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// Whether the task will not change state again in this run.
    pub fn is_finished(self) -> bool {
        !matches!(self, TaskState::Pending | TaskState::Running | TaskState::UpForRetry)
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The state of a whole run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// Its fhirflow is running it.
    Running,
    /// Every task succeeded.
    Success,
    /// A task failed (and so others may not have run).
    Failed,
    /// Ctrl-C (or SIGTERM) stopped it.
    Cancelled,
    /// Its fhirflow died before it ended.
    Interrupted,
}

impl RunState {
    /// The name stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Running => "running",
            RunState::Success => "success",
            RunState::Failed => "failed",
            RunState::Cancelled => "cancelled",
            RunState::Interrupted => "interrupted",
        }
    }

    /// The state named `text`.
    pub fn parse(text: &str) -> Option<Self> {
        [RunState::Running, RunState::Success, RunState::Failed, RunState::Cancelled, RunState::Interrupted]
            .into_iter()
            .find(|s| s.as_str() == text)
    }
}

impl fmt::Display for RunState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a run could not start or go on. A task that fails is not an error: it is in the
/// [`RunReport`].
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// `--pipeline` names no pipeline of the spec.
    #[error("no pipeline `{name}`{hint}")]
    UnknownPipeline {
        /// The name given.
        name: String,
        /// ` (did you mean …?)` or empty.
        hint: String,
    },
    /// `--only`/`--from` names no stage of the selected pipelines.
    #[error("no stage `{name}` in the selected pipelines{hint}")]
    UnknownStage {
        /// The name given.
        name: String,
        /// ` (did you mean …?)` or empty.
        hint: String,
    },
    /// A bare stage name found in several pipelines.
    #[error("stage `{name}` is in several pipelines ({pipelines}); write `pipeline.{name}`")]
    AmbiguousStage {
        /// The name given.
        name: String,
        /// The pipelines that have it.
        pipelines: String,
    },
    /// `--resume` names a run the store does not have.
    #[error("no run `{0}` in the run store; `fhirflow runs` lists them")]
    UnknownRun(String),
    /// `--resume` names a run another fhirflow is running.
    #[error("run `{id}` is still running (process {pid})")]
    RunStillActive {
        /// The run.
        id: String,
        /// Its process.
        pid: u32,
    },
    /// `--resume` names a run with no task left to run.
    #[error("run `{0}` succeeded; there is nothing to resume")]
    NothingToResume(String),
    /// The run store failed.
    #[error(transparent)]
    Store(#[from] store::StoreError),
    /// A file or folder of the run could not be written.
    #[error("cannot {action} {path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// What was being done.
        action: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// The tokio runtime could not start.
    #[error("cannot start the scheduler: {0}")]
    Runtime(std::io::Error),
}

impl RunError {
    /// Whether the error is in what the user asked for (exit 64), rather than in the machine (exit 3).
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            RunError::UnknownPipeline { .. }
                | RunError::UnknownStage { .. }
                | RunError::AmbiguousStage { .. }
                | RunError::UnknownRun(_)
                | RunError::RunStillActive { .. }
                | RunError::NothingToResume(_)
        )
    }
}

/// How progress is shown while a run goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisplayMode {
    /// A status line redrawn in place (a terminal).
    Redraw,
    /// One line per event (a pipe or a file).
    Lines,
    /// Nothing.
    Silent,
}

/// What to run and how.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Which tasks.
    pub selection: Selection,
    /// Resume this run: run again the tasks that did not succeed in it.
    pub resume: Option<String>,
    /// The run's logical date; now when not given. Each scheduled pipeline runs for its
    /// newest schedule tick at or before it.
    pub logical_date: Option<DateTime<Utc>>,
    /// Most tasks running at once.
    pub max_parallel: usize,
    /// How long a stopped task's process group gets between SIGTERM and SIGKILL.
    pub kill_grace: Duration,
    /// Show each line of the tasks' output, prefixed by the task's label.
    pub echo_output: bool,
    /// How progress is shown.
    pub display: DisplayMode,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            selection: Selection::default(),
            resume: None,
            logical_date: None,
            max_parallel: default_max_parallel(),
            kill_grace: Duration::from_secs(5),
            echo_output: true,
            display: DisplayMode::Lines,
        }
    }
}

/// The number of CPUs, the default `--max-parallel`.
pub fn default_max_parallel() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// One compiled spec to run, with where it lives.
#[derive(Debug, Clone)]
pub struct SpecGraph {
    /// The spec file.
    pub path: PathBuf,
    /// Its graph.
    pub graph: PipelineGraph,
}

/// The `.fhirflow` folder of a spec (a file, or a folder of specs): next to it, or inside it.
pub fn state_dir(spec: &Path) -> PathBuf {
    if spec.is_dir() {
        spec.join(".fhirflow")
    } else {
        spec.parent().map_or_else(|| PathBuf::from(".fhirflow"), |p| p.join(".fhirflow"))
    }
}

/// The folder of run `id`'s logs.
pub fn run_dir(state_dir: &Path, id: &str) -> PathBuf {
    state_dir.join("runs").join(id)
}
