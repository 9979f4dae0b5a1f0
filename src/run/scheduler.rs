//! The scheduler: runs a [`RunPlan`] on tokio with Airflow's semantics.
//!
//! - A task starts when its upstream tasks allow it (trigger rule `all_success`: all
//!   succeeded; `all_done`: all finished) and a slot is free (`--max-parallel`; a sensor in
//!   `reschedule` mode holds none while it waits).
//! - A failed attempt is retried `retries` times after `retry_delay`, doubled after each
//!   failure with `retry_exponential_backoff` (capped at a day, as Airflow caps it).
//!   Timeouts count as failures; cancels, template errors, sensor timeouts and loads that
//!   cannot run are not retried.
//! - A task whose `all_success` upstream failed is `upstream_failed` at once, and so on
//!   downstream; the rest of the graph runs on.
//! - A cancel (Ctrl-C) stops every running task's process group and records it `cancelled`,
//!   with the tasks that had not started.
//!
//! Every state change goes to the run store before anything else happens.

use super::dbt_results::{self, DbtRunResults};
use super::load::{self, LoadContext};
use super::process::{self, CancelLevel, CommandLine, ProcessEnd, show};
use super::report::{Progress, RunReport, TaskSummary, dry_run_text};
use super::selection::{PlannedPipeline, RunPlan};
use super::sensor::{self, SensorFailure};
use super::store::{NewRun, PipelineRun, Store, StoreError};
use super::task_log::{OutputLine, TaskLog, log_path};
use super::template::{self, TemplateValues};
use super::trigger_rule::{self, Decision};
use super::watched_build::{BuildEnd, BuildView};
use super::{RunError, RunOptions, RunState, SpecGraph, TaskKey, TaskState, run_dir, state_dir};
use crate::graph::{DbtArg, DbtInvocation, Operation, Settings, WatchedNodes};
use crate::kinds::{KindTask, RunContext as KindContext};
use crate::spec::SensorMode;
use chrono::{DateTime, SubsecRound, Utc};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

/// The exit status that skips a shell task instead of failing it.
pub use crate::kinds::shell::SKIP_EXIT_CODE;

/// The longest retry delay exponential backoff reaches: Airflow's cap, one day.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(24 * 60 * 60);

/// The wait before retry number `retry` (1 for the first retry) of a task with `settings`:
/// `retry_delay`, or with exponential backoff `retry_delay × 2^(retry − 1)`, capped at
/// [`MAX_RETRY_DELAY`]. Airflow adds a random jitter; fhirflow does not, so runs repeat.
pub fn retry_delay(settings: &Settings, retry: u32) -> Duration {
    let base = Duration::from_secs(settings.retry_delay.value.as_secs());
    if !settings.retry_exponential_backoff.value || retry <= 1 {
        return base;
    }
    let factor = 2u32.checked_pow(retry - 1).unwrap_or(u32::MAX);
    // A delay the spec sets above the cap is kept as it is; doubling never goes past it.
    base.checked_mul(factor).unwrap_or(MAX_RETRY_DELAY).min(MAX_RETRY_DELAY.max(base))
}

/// Why an attempt failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The process exited with this status.
    Exit(i32),
    /// A signal killed the process.
    Signal(i32),
    /// The attempt ran past `execution_timeout`; its process group was stopped.
    TimedOut(Duration),
    /// The run was cancelled.
    Cancelled,
    /// The program could not be started.
    Spawn(String),
    /// The command's `{{ ... }}` template could not be rendered.
    Template(String),
    /// A sensor's target ended without success.
    AwaitedFailed(String),
    /// A sensor waited its whole timeout.
    SensorTimedOut(Duration),
    /// A load step failed.
    Load(load::LoadError),
    /// The run store could not be read.
    Store(String),
    /// Not a failure: the attempt found nothing to do and the task is skipped, as a task that
    /// raises Airflow's `AirflowSkipException` is. Never retried.
    Skip(String),
    /// The task's output could not be read as JSON.
    Output(String),
    /// A watched dbt build failed the task's nodes, skipped them or did not report them.
    Watched(String),
}

impl Failure {
    /// Whether another attempt could go differently, so retries apply.
    pub fn is_retryable(&self) -> bool {
        match self {
            Failure::Exit(_)
            | Failure::Signal(_)
            | Failure::TimedOut(_)
            | Failure::Spawn(_)
            | Failure::Store(_)
            | Failure::Watched(_) => true,
            Failure::Load(e) => e.is_retryable(),
            Failure::Cancelled
            | Failure::Template(_)
            | Failure::AwaitedFailed(_)
            | Failure::SensorTimedOut(_)
            | Failure::Output(_)
            | Failure::Skip(_) => false,
        }
    }

    /// How the attempt ended, as stored and shown.
    pub fn describe(&self) -> String {
        match self {
            Failure::Exit(code) => format!("exit status {code}"),
            Failure::Signal(signal) => format!("killed by signal {signal}"),
            Failure::TimedOut(after) => format!("timed out after {}", show(*after)),
            Failure::Cancelled => "cancelled".to_owned(),
            Failure::Spawn(why)
            | Failure::Template(why)
            | Failure::AwaitedFailed(why)
            | Failure::Store(why)
            | Failure::Output(why)
            | Failure::Watched(why)
            | Failure::Skip(why) => why.clone(),
            Failure::SensorTimedOut(after) => format!("sensor timed out after {}", show(*after)),
            Failure::Load(e) => e.to_string(),
        }
    }
}

impl From<SensorFailure> for Failure {
    fn from(failure: SensorFailure) -> Self {
        match failure {
            SensorFailure::TargetFailed(why) => Failure::AwaitedFailed(why),
            SensorFailure::TimedOut(after) => Failure::SensorTimedOut(after),
            SensorFailure::Cancelled => Failure::Cancelled,
            SensorFailure::Store(why) => Failure::Store(why),
            SensorFailure::Skipped(why) => Failure::Skip(why),
        }
    }
}

/// The end of one attempt, as the attempt's job reports it.
struct AttemptEnd {
    outcome: Result<(), Failure>,
    duration: Duration,
    dbt: Option<DbtRunResults>,
    /// The attempt's JSON output (a `kind: python` return value), boxed to keep job messages small.
    output: Option<Box<serde_json::Value>>,
}

/// What a finished job tells the scheduler.
enum JobDone {
    /// An attempt of task `index` ended.
    Attempt { index: usize, number: u32, end: AttemptEnd },
    /// Task `index`'s retry delay is over (or the run was cancelled meanwhile).
    RetryDue { index: usize },
    /// A watched stage's `dbt build` ended; it held a slot and, on DuckDB, the target.
    BuildEnded { writer: Option<Arc<str>> },
}

/// Everything an attempt needs, owned, so that it runs as its own tokio task.
struct AttemptJob {
    plan: Arc<RunPlan>,
    index: usize,
    number: u32,
    run_id: Arc<str>,
    logical_date: DateTime<Utc>,
    state_dir: PathBuf,
    log: TaskLog,
    cancel: watch::Receiver<CancelLevel>,
    grace: Duration,
    /// For a sensor whose targets are in this run: how they ended.
    awaited: Vec<(String, TaskState)>,
    /// For a dbt-results task: the dbt task's results from this run.
    upstream_dbt: Option<DbtRunResults>,
    /// Outputs of finished upstream tasks this task reads, by task id.
    outputs: BTreeMap<String, serde_json::Value>,
    pids: mpsc::UnboundedSender<(usize, u32, u32)>,
    /// For a task of a watched stage: the stage's builds, and the build its nodes are in.
    watching: Option<(watch::Receiver<BuildView>, u64)>,
}

/// Cancels a run: the first call stops tasks gracefully, the second at once.
#[derive(Clone)]
pub struct Canceller(Arc<watch::Sender<CancelLevel>>);

impl Canceller {
    /// Moves the cancel one step further.
    pub fn cancel(&self) {
        self.0.send_modify(|level| {
            *level = match *level {
                CancelLevel::None => CancelLevel::Graceful,
                _ => CancelLevel::Immediate,
            }
        });
    }

    /// How far the cancel has gone.
    pub fn level(&self) -> CancelLevel {
        *self.0.borrow()
    }
}

/// `fhirflow run`: a compiled spec (or folder of specs), what to run of it, and where the
/// progress goes.
pub struct Runner {
    specs: Vec<SpecGraph>,
    spec_arg: String,
    state_dir: PathBuf,
    options: RunOptions,
    cancel: Canceller,
    display: Box<dyn Write + Send>,
}

impl Runner {
    /// A runner for the specs compiled from `spec` (a file, or a folder of specs). Progress
    /// goes to stderr until [`Runner::display_to`] says otherwise.
    pub fn new(spec: &Path, specs: Vec<SpecGraph>, options: RunOptions) -> Self {
        let (sender, _) = watch::channel(CancelLevel::None);
        Self {
            specs,
            spec_arg: spec.display().to_string(),
            state_dir: state_dir(spec),
            options,
            cancel: Canceller(Arc::new(sender)),
            display: Box::new(std::io::stderr()),
        }
    }

    /// Sends the progress display to `out`.
    pub fn display_to(mut self, out: Box<dyn Write + Send>) -> Self {
        self.display = out;
        self
    }

    /// The `.fhirflow` folder: the run store and the logs.
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// A handle that cancels the run, for a signal handler.
    pub fn canceller(&self) -> Canceller {
        self.cancel.clone()
    }

    /// The `--dry-run` text: the selected tasks in order with their commands.
    pub fn dry_run(&self) -> Result<String, RunError> {
        Ok(dry_run_text(&RunPlan::select(&self.specs, &self.options.selection)?))
    }

    /// Runs the selection (or resumes a run) to its end, or until cancelled.
    pub async fn run(self) -> Result<RunReport, RunError> {
        let started = Instant::now();
        let store = Store::open(&self.state_dir)?;
        let mut progress = Progress::new(self.display, self.options.display, self.options.echo_output, 0);
        let (run_id, plan, dates, prior, run_date) = match &self.options.resume {
            Some(id) => {
                let record = store.run(id)?.ok_or_else(|| RunError::UnknownRun(id.clone()))?;
                if record.state == RunState::Running {
                    return Err(RunError::RunStillActive { id: id.clone(), pid: record.pid });
                }
                let tasks = store.tasks(id)?;
                if tasks.iter().all(|t| t.state == TaskState::Success) {
                    return Err(RunError::NothingToResume(id.clone()));
                }
                let keys: Vec<TaskKey> = tasks.iter().map(|t| t.key.clone()).collect();
                let (plan, missing) = RunPlan::restrict(&self.specs, &keys);
                for key in missing {
                    progress.note(&format!("warning: {key} is no longer in the spec; it is skipped"));
                }
                let dates = plan
                    .pipelines
                    .iter()
                    .map(|p| {
                        record
                            .pipelines
                            .iter()
                            .find(|r| r.pipeline == p.id)
                            .map_or_else(|| p.logical_date(record.logical_date), |r| r.logical_date)
                    })
                    .collect();
                store.resume_run(id)?;
                let prior: HashMap<TaskKey, (TaskState, u32)> =
                    tasks.into_iter().map(|t| (t.key, (t.state, t.attempts))).collect();
                (id.clone(), plan, dates, prior, record.logical_date)
            }
            None => {
                let plan = RunPlan::select(&self.specs, &self.options.selection)?;
                let run_date = self.options.logical_date.unwrap_or_else(Utc::now).trunc_subsecs(0);
                let dates: Vec<DateTime<Utc>> = plan.pipelines.iter().map(|p| p.logical_date(run_date)).collect();
                let run_id = new_run_id();
                let recorded =
                    begin(&store, &run_id, &self.spec_arg, run_date, &plan, &dates, &mut progress, &self.cancel)
                        .await?;
                if !recorded {
                    // Cancelled while waiting for max_active_runs: the run was never recorded.
                    progress.finish();
                    return Ok(RunReport {
                        run_id,
                        state: RunState::Cancelled,
                        logical_date: run_date,
                        duration: started.elapsed(),
                        tasks: Vec::new(),
                        table_mismatch: false,
                    });
                }
                (run_id, plan, dates, HashMap::new(), run_date)
            }
        };
        let dir = run_dir(&self.state_dir, &run_id);
        std::fs::create_dir_all(&dir).map_err(|source| RunError::Io { path: dir.clone(), action: "create", source })?;
        let run = RunContext {
            plan: Arc::new(plan),
            run_id: Arc::from(run_id.as_str()),
            run_dir: dir,
            state_dir: self.state_dir.clone(),
            dates,
        };
        let mut scheduler = Scheduler::new(run, &store, &self.options, progress, self.cancel.clone(), &prior);
        let outcome = scheduler.execute().await;
        let state = scheduler.run_state();
        let tasks = scheduler.summaries();
        let table_mismatch = scheduler.table_mismatch;
        scheduler.progress.finish();
        // The run's end is recorded even when the store failed mid-run, if it still can be.
        let ended = store.end_run(&run_id, if outcome.is_err() { RunState::Failed } else { state });
        outcome?;
        ended?;
        Ok(RunReport { run_id, state, logical_date: run_date, duration: started.elapsed(), tasks, table_mismatch })
    }
}

/// A new run id: the UTC start time and a few bits of the clock and pid, sortable as text.
fn new_run_id() -> String {
    let now = Utc::now();
    let salt = (now.timestamp_subsec_nanos() ^ std::process::id().rotate_left(16)) & 0xffff;
    format!("{}-{salt:04x}", now.format("%Y%m%dT%H%M%SZ"))
}

/// Records the new run once every pipeline is under its `max_active_runs`, waiting (as
/// Airflow queues a run) while one is not. False when cancelled while waiting.
#[allow(clippy::too_many_arguments)]
async fn begin(
    store: &Store,
    run_id: &str,
    spec: &str,
    run_date: DateTime<Utc>,
    plan: &RunPlan,
    dates: &[DateTime<Utc>],
    progress: &mut Progress,
    cancel: &Canceller,
) -> Result<bool, RunError> {
    let pipelines: Vec<PipelineRun> = plan
        .pipelines
        .iter()
        .zip(dates)
        .map(|(p, date)| PipelineRun { pipeline: p.id.clone(), logical_date: *date, complete: p.complete })
        .collect();
    let tasks: Vec<TaskKey> = plan.tasks.iter().map(|t| t.key.clone()).collect();
    let limits: Vec<(String, u32)> = plan.pipelines.iter().map(|p| (p.id.clone(), p.max_active_runs)).collect();
    let run = NewRun {
        id: run_id,
        spec,
        logical_date: run_date,
        pipelines: &pipelines,
        tasks: &tasks,
        max_active_runs: &limits,
    };
    let mut told = false;
    let mut watch = cancel.0.subscribe();
    loop {
        match store.begin_run(&run)? {
            Ok(()) => return Ok(true),
            Err(busy) => {
                if !told {
                    progress.note(&format!(
                        "waiting: pipeline {} has {} active run{} ({}) and max_active_runs {}",
                        busy.pipeline,
                        busy.active.len(),
                        if busy.active.len() == 1 { "" } else { "s" },
                        busy.active.join(", "),
                        busy.limit
                    ));
                    told = true;
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = watch.changed() => {
                if *watch.borrow() != CancelLevel::None {
                    return Ok(false);
                }
            }
        }
    }
}

/// One task's progress through the run.
#[derive(Debug, Clone)]
struct TaskProgress {
    state: TaskState,
    attempts: u32,
    /// Attempts made by earlier invocations of a resumed run: each invocation gets the task's
    /// full `retries`, and attempt numbers go on from these.
    earlier_attempts: u32,
    /// In the ready queue or waiting out a retry delay.
    queued: bool,
    first_start: Option<Instant>,
    last_end: Option<Instant>,
    failure: Option<String>,
    log: Option<PathBuf>,
    dbt: Option<DbtRunResults>,
    output: Option<serde_json::Value>,
}

/// What the parts of a run share: the plan, the run's id and folders, each pipeline's
/// logical date (by pipeline index).
struct RunContext {
    plan: Arc<RunPlan>,
    run_id: Arc<str>,
    run_dir: PathBuf,
    state_dir: PathBuf,
    dates: Vec<DateTime<Utc>>,
}

struct Scheduler<'a> {
    run: RunContext,
    store: &'a Store,
    options: &'a RunOptions,
    progress: Progress,
    cancel: Canceller,
    cancel_rx: watch::Receiver<CancelLevel>,
    dependents: Vec<Vec<usize>>,
    tasks: Vec<TaskProgress>,
    ready: BTreeSet<usize>,
    slots_used: usize,
    jobs: JoinSet<JobDone>,
    /// The task each job works for, to recover from a job that panicked.
    job_tasks: HashMap<tokio::task::Id, usize>,
    output_tx: mpsc::UnboundedSender<OutputLine>,
    output_rx: mpsc::UnboundedReceiver<OutputLine>,
    pid_tx: mpsc::UnboundedSender<(usize, u32, u32)>,
    pid_rx: mpsc::UnboundedReceiver<(usize, u32, u32)>,
    /// The first store error: it stops the run, which can no longer be recorded truthfully.
    store_error: Option<StoreError>,
    /// Whether a load found an existing table whose columns are not the spec's.
    table_mismatch: bool,
    /// DuckDB targets a running dbt task writes: one task at a time per target.
    writers: HashSet<Arc<str>>,
    /// The slots of each spec pool that running tasks hold.
    pool_slots_used: HashMap<Arc<str>, u32>,
    /// Why `depends_on_past` keeps a task from running, by task index.
    past_blocks: HashMap<usize, String>,
    /// The builds of each watched per-model stage, by pipeline index and stage id.
    builds: HashMap<(usize, String), watch::Sender<BuildView>>,
    /// The build whose results each task of a watched stage last waited for.
    consumed: HashMap<usize, u64>,
}

impl<'a> Scheduler<'a> {
    fn new(
        run: RunContext,
        store: &'a Store,
        options: &'a RunOptions,
        mut progress: Progress,
        cancel: Canceller,
        prior: &HashMap<TaskKey, (TaskState, u32)>,
    ) -> Self {
        let tasks: Vec<TaskProgress> = run
            .plan
            .tasks
            .iter()
            .map(|t| {
                let (state, attempts) = match prior.get(&t.key) {
                    Some((TaskState::Success, n)) => (TaskState::Success, *n),
                    Some((_, n)) => (TaskState::Pending, *n),
                    None => (TaskState::Pending, 0),
                };
                TaskProgress {
                    state,
                    attempts,
                    earlier_attempts: attempts,
                    queued: false,
                    first_start: None,
                    last_end: None,
                    failure: None,
                    log: None,
                    dbt: None,
                    output: None,
                }
            })
            .collect();
        progress.set_total(tasks.len());
        for _ in tasks.iter().filter(|t| t.state == TaskState::Success) {
            progress.already_done();
        }
        let (output_tx, output_rx) = mpsc::unbounded_channel();
        let (pid_tx, pid_rx) = mpsc::unbounded_channel();
        let cancel_rx = cancel.0.subscribe();
        let mut store_error = None;
        let mut past_blocks = HashMap::new();
        for (index, planned) in run.plan.tasks.iter().enumerate() {
            if !planned.task.settings.depends_on_past.value || tasks[index].state == TaskState::Success {
                continue;
            }
            let date = run.dates[planned.pipeline];
            match store.past_blocks(&planned.key.pipeline, &planned.key.task, date) {
                Ok(Some(why)) => {
                    past_blocks.insert(index, why);
                }
                Ok(None) => {}
                Err(e) => {
                    store_error.get_or_insert(e);
                }
            }
        }
        Self {
            dependents: run.plan.dependents(),
            run,
            store,
            options,
            progress,
            cancel,
            cancel_rx,
            tasks,
            ready: BTreeSet::new(),
            slots_used: 0,
            jobs: JoinSet::new(),
            job_tasks: HashMap::new(),
            output_tx,
            output_rx,
            pid_tx,
            pid_rx,
            store_error,
            table_mismatch: false,
            writers: HashSet::new(),
            pool_slots_used: HashMap::new(),
            past_blocks,
            builds: HashMap::new(),
            consumed: HashMap::new(),
        }
    }

    fn cancelled(&self) -> bool {
        self.cancel.level() != CancelLevel::None
    }

    /// Keeps the first store error and cancels the run.
    fn record(&mut self, result: Result<(), StoreError>) {
        if let Err(e) = result {
            if self.store_error.is_none() {
                self.progress.note(&format!("error: {e}; stopping the run"));
                self.store_error = Some(e);
            }
            if !self.cancelled() {
                self.cancel.cancel();
            }
        }
    }

    async fn execute(&mut self) -> Result<(), RunError> {
        self.settle((0..self.tasks.len()).collect());
        let tick_every = if self.options.display == super::DisplayMode::Redraw {
            Duration::from_millis(250)
        } else {
            Duration::from_secs(3600)
        };
        let mut tick = tokio::time::interval(tick_every);
        let mut told_cancel = false;
        loop {
            if !self.cancelled() {
                self.start_ready();
            }
            if self.jobs.is_empty() {
                break;
            }
            enum Event {
                Job(Result<(tokio::task::Id, JobDone), tokio::task::JoinError>),
                Output(OutputLine),
                Pid(usize, u32, u32),
                Cancel,
                Tick,
            }
            let event = tokio::select! {
                // An attempt's output is all queued before its job ends: show it first.
                biased;
                Some(line) = self.output_rx.recv() => Event::Output(line),
                Some(done) = self.jobs.join_next_with_id() => Event::Job(done),
                Some((index, number, pid)) = self.pid_rx.recv() => Event::Pid(index, number, pid),
                Ok(()) = self.cancel_rx.changed() => Event::Cancel,
                _ = tick.tick() => Event::Tick,
            };
            match event {
                Event::Job(Ok((id, done))) => {
                    while let Ok(line) = self.output_rx.try_recv() {
                        self.progress.output(&line);
                    }
                    self.job_tasks.remove(&id);
                    self.job_done(done);
                }
                Event::Job(Err(e)) => {
                    // A job panicked: a bug in fhirflow. Its task fails; the run goes on.
                    if let Some(index) = self.job_tasks.remove(&e.id()) {
                        let number = self.tasks[index].attempts;
                        let end = AttemptEnd {
                            outcome: Err(Failure::Spawn(format!("internal error: {e}"))),
                            duration: Duration::ZERO,
                            dbt: None,
                            output: None,
                        };
                        if self.tasks[index].state == TaskState::Running {
                            self.slots_used = self.slots_used.saturating_sub(usize::from(self.holds_slot(index)));
                            self.release(index);
                        }
                        self.attempt_ended(index, number, end);
                    }
                }
                Event::Output(line) => self.progress.output(&line),
                Event::Pid(index, number, pid) => {
                    let result =
                        self.store.set_attempt_pid(&self.run.run_id, &self.run.plan.tasks[index].key, number, pid);
                    self.record(result);
                }
                Event::Cancel => {
                    if self.cancelled() && !told_cancel {
                        told_cancel = true;
                        let running = self.tasks.iter().filter(|t| t.state == TaskState::Running).count();
                        self.progress.note(&format!(
                            "cancelling: stopping {running} running task{} (Ctrl-C again to kill at once)",
                            if running == 1 { "" } else { "s" }
                        ));
                    }
                }
                Event::Tick => self.progress.redraw(),
            }
        }
        while let Ok(line) = self.output_rx.try_recv() {
            self.progress.output(&line);
        }
        if self.cancelled() {
            for index in 0..self.tasks.len() {
                if !self.tasks[index].state.is_finished() {
                    let why = if self.tasks[index].attempts == 0 {
                        "not started: the run was cancelled"
                    } else {
                        "the run was cancelled"
                    };
                    self.finish_unrun(index, TaskState::Cancelled, why);
                }
            }
        }
        match self.store_error.take() {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }

    /// Frees the DuckDB target and the pool slot that task `index` held while it ran.
    fn release(&mut self, index: usize) {
        if self.watched(index).is_some() {
            // Its build holds the slot and the target, until the build ends.
            return;
        }
        let task = &self.run.plan.tasks[index];
        if let Some(writer) = &task.writer {
            self.writers.remove(writer);
        }
        if let Some((pool, _)) = &task.pool
            && self.holds_slot(index)
            && let Some(used) = self.pool_slots_used.get_mut(pool)
        {
            *used = used.saturating_sub(1);
        }
    }

    /// The dbt nodes task `index` stands for, when it is a task of a watched stage.
    fn watched(&self, index: usize) -> Option<&WatchedNodes> {
        match &self.run.plan.tasks[index].task.operation {
            Operation::Dbt(inv) => inv.watch.as_ref(),
            _ => None,
        }
    }

    /// The key of the watched stage task `index` belongs to.
    fn build_key(&self, index: usize) -> (usize, String) {
        let planned = &self.run.plan.tasks[index];
        (planned.pipeline, planned.task.stage.to_string())
    }

    /// Starts a task of a watched stage: it waits for its nodes in the running build when
    /// that build selects them; else, once no build of its stage runs and a slot (and its
    /// DuckDB target) is free, it starts a build of itself and of every task that can run
    /// after it.
    fn start_watched(&mut self, index: usize, max: usize) {
        let key = self.build_key(index);
        let Some(nodes) = self.watched(index).map(|w| w.nodes.clone()) else { return };
        let view = self.builds.entry(key.clone()).or_default();
        let (running, fresh) = {
            let v = view.borrow();
            let covered = v.generation > 0 && nodes.iter().all(|(id, _)| v.covering.contains(id));
            // A build's results serve one attempt: a retry needs a build of its own.
            (v.running, covered && self.consumed.get(&index) != Some(&v.generation))
        };
        if !fresh && running {
            return;
        }
        if !fresh {
            if self.slots_used >= max {
                return;
            }
            let writer = self.run.plan.tasks[index].writer.clone();
            if let Some(writer) = &writer
                && !self.writers.insert(Arc::clone(writer))
            {
                return;
            }
            self.slots_used += 1;
            self.launch_build(index, &key, writer);
        }
        self.ready.remove(&index);
        self.start(index);
    }

    /// Starts a `dbt build` of the watched stage of task `index`: its nodes, and those of the
    /// stage's pending tasks whose upstream tasks in the stage have succeeded or are selected.
    fn launch_build(&mut self, index: usize, key: &(usize, String), writer: Option<Arc<str>>) {
        let plan = Arc::clone(&self.run.plan);
        let stage: Vec<usize> =
            (0..plan.tasks.len()).filter(|&i| self.watched(i).is_some() && &self.build_key(i) == key).collect();
        let mut selected: BTreeSet<usize> = BTreeSet::from([index]);
        loop {
            let before = selected.len();
            for &i in &stage {
                let t = &self.tasks[i];
                // Due retries join too: one build serves every task that can run now.
                let due = t.state == TaskState::UpForRetry && t.queued;
                let waiting = t.state == TaskState::Pending || due || i == index;
                let clear = plan.tasks[i]
                    .upstream
                    .iter()
                    .filter(|u| stage.contains(u))
                    .all(|u| selected.contains(u) || self.tasks[*u].state == TaskState::Success);
                if waiting && clear && !selected.contains(&i) {
                    selected.insert(i);
                }
            }
            if selected.len() == before {
                break;
            }
        }
        let mut nodes: Vec<(String, String)> = Vec::new();
        for &i in &selected {
            nodes.extend(self.watched(i).map(|w| w.nodes.clone()).unwrap_or_default());
        }
        let Some(build) = self.watched(index).map(|w| Arc::clone(&w.build)) else { return };
        let view = self.builds.entry(key.clone()).or_default();
        let mut generation = 0;
        view.send_modify(|v| {
            v.generation += 1;
            v.running = true;
            v.covering = nodes.iter().map(|(id, _)| id.clone()).collect();
            v.builds.insert(v.generation, Default::default());
            generation = v.generation;
        });
        let planned = &plan.tasks[index];
        let path = self.run.run_dir.join(&planned.key.pipeline).join(format!("{}.build.{generation}.log", key.1));
        view.send_modify(|v| {
            v.logs.insert(generation, path.clone());
        });
        let end = BuildEnd { view: view.clone(), generation, exit: None };
        let feed = view.clone();
        let log = TaskLog::create(path, Arc::clone(&planned.label), None).observed_by(move |line| {
            feed.send_if_modified(|v| v.builds.get_mut(&generation).and_then(|w| w.feed(line)).is_some());
        });
        let mut job = self.job(index, self.tasks[index].attempts + 1, log);
        // The build is no attempt of the task: its process id is not the attempt's.
        job.pids = mpsc::unbounded_channel().0;
        let selectors: Vec<String> = nodes.into_iter().map(|(_, selector)| selector).collect();
        self.jobs.spawn(async move {
            job.build(&build, selectors, end).await;
            JobDone::BuildEnded { writer }
        });
    }

    /// Whether task `index` occupies a `--max-parallel` slot (and its pool's) while it runs.
    fn holds_slot(&self, index: usize) -> bool {
        let task = &self.run.plan.tasks[index];
        match &task.task.operation {
            // Airflow's reschedule mode frees the worker slot between pokes; a sensor
            // satisfied in this run returns at once.
            Operation::Sensor(target) => target.mode == SensorMode::Poke && task.awaits.is_empty(),
            // A task of a watched stage only waits: its build holds the slot.
            Operation::Dbt(inv) => inv.watch.is_none(),
            Operation::DbtResults { .. } | Operation::Load { .. } => true,
            Operation::Join | Operation::Trigger(_) => false,
            Operation::Kind(_) => true,
        }
    }

    /// Re-examines `indices` (and, as they finish, their dependents): queues the tasks that
    /// may start and marks `upstream_failed` the ones that never will.
    fn settle(&mut self, mut work: Vec<usize>) {
        work.reverse();
        while let Some(index) = work.pop() {
            let progress = &self.tasks[index];
            if progress.state != TaskState::Pending || progress.queued {
                continue;
            }
            let task = &self.run.plan.tasks[index];
            let state = |u: &usize| self.tasks[*u].state;
            let awaits_done = task.awaits.iter().map(state).all(TaskState::is_finished);
            let pipeline = &self.run.plan.pipelines[task.pipeline];
            let gated = pipeline.assets.is_some() || !pipeline.triggered_by.is_empty() || task.after_run.is_some();
            if gated && !awaits_done {
                continue;
            }
            let gate = if gated {
                self.untriggered(index)
                    .map(|why| (TaskState::Skipped, why))
                    .or_else(|| self.started_run_failed(index).map(|why| (TaskState::UpstreamFailed, why)))
            } else {
                None
            };
            let upstream = task.upstream.iter().map(state);
            let unrun = match gate {
                Some(gated) => Some(gated),
                None => match trigger_rule::decide(task.task.trigger_rule, upstream) {
                    Decision::Wait => None,
                    // Airflow would wait for the past run to be fixed; a run here ends instead.
                    Decision::Run if self.past_blocks.contains_key(&index) => {
                        Some((TaskState::UpstreamFailed, self.past_blocks[&index].clone()))
                    }
                    Decision::Run => {
                        if awaits_done {
                            self.queue(index);
                        }
                        None
                    }
                    Decision::Skip => {
                        Some((TaskState::Skipped, self.upstream_states(index, |s| s == TaskState::Skipped)))
                    }
                    Decision::UpstreamFailed => Some((
                        TaskState::UpstreamFailed,
                        self.upstream_states(index, |s| {
                            matches!(
                                s,
                                TaskState::Failed
                                    | TaskState::UpstreamFailed
                                    | TaskState::Cancelled
                                    | TaskState::Interrupted
                            )
                        }),
                    )),
                },
            };
            if let Some((end, why)) = unrun {
                self.finish_unrun(index, end, &why);
                let mut next = self.dependents[index].clone();
                next.reverse();
                work.extend(next);
            }
        }
    }

    /// For a task of a triggered or asset-scheduled pipeline whose triggers or producers have
    /// all finished: why the pipeline was not triggered (no trigger fired, or the condition does
    /// not hold on the events the producers made), or `None` when it was.
    fn untriggered(&self, index: usize) -> Option<String> {
        let task = &self.run.plan.tasks[index];
        let pipeline = &self.run.plan.pipelines[task.pipeline];
        if !pipeline.triggered_by.is_empty() {
            // Started by a trigger of this run: it runs if one of them fired.
            let fired = pipeline.triggered_by.iter().any(|&u| self.tasks[u].state == TaskState::Success);
            let ended: Vec<String> = pipeline
                .triggered_by
                .iter()
                .map(|&u| format!("{} {}", self.run.plan.tasks[u].label, self.tasks[u].state))
                .collect();
            return (!fired).then(|| format!("not triggered: trigger {}", ended.join(", ")));
        }
        let condition = pipeline.assets.as_ref()?;
        let producers: Vec<usize> =
            task.awaits.iter().copied().filter(|&u| self.run.plan.tasks[u].key.pipeline != task.key.pipeline).collect();
        if producers.is_empty() {
            // No producer takes part in this run: the user started the pipeline by hand.
            return None;
        }
        let produced = |asset: &crate::spec::AssetName| {
            producers.iter().any(|&u| {
                self.tasks[u].state == TaskState::Success && self.run.plan.tasks[u].task.outlets.contains(asset)
            })
        };
        if condition.holds(&produced) {
            return None;
        }
        let ended: Vec<String> =
            producers.iter().map(|&u| format!("{} {}", self.run.plan.tasks[u].label, self.tasks[u].state)).collect();
        Some(format!("not triggered: its assets ({condition}) have no events; producers {}", ended.join(", ")))
    }

    /// After a trigger that waits for completion: why the run it started did not succeed, or
    /// `None` when it did (every task succeeded or was skipped, as a DAG run succeeds).
    fn started_run_failed(&self, index: usize) -> Option<String> {
        let task = &self.run.plan.tasks[index];
        let started = task.after_run?;
        let failed: Vec<String> = task
            .awaits
            .iter()
            .filter(|&&u| self.run.plan.tasks[u].pipeline == started)
            .filter(|&&u| !matches!(self.tasks[u].state, TaskState::Success | TaskState::Skipped))
            .map(|&u| format!("{} {}", self.run.plan.tasks[u].label, self.tasks[u].state))
            .collect();
        (!failed.is_empty()).then(|| {
            format!("the triggered run of {} failed: {}", self.run.plan.pipelines[started].id, failed.join(", "))
        })
    }

    /// Why task `index` will not run: its upstream tasks in a state `telling` picks.
    fn upstream_states(&self, index: usize, telling: fn(TaskState) -> bool) -> String {
        let task = &self.run.plan.tasks[index];
        let telling: Vec<String> = task
            .upstream
            .iter()
            .filter(|&&u| telling(self.tasks[u].state))
            .map(|&u| format!("{} {}", self.run.plan.tasks[u].label, self.tasks[u].state))
            .collect();
        let rule = task.task.trigger_rule;
        match (telling.as_slice(), rule) {
            ([], _) => format!("trigger rule {}", rule.as_str()),
            (_, crate::spec::TriggerRule::AllSuccess) => format!("upstream {}", telling.join(", ")),
            _ => format!("upstream {} (trigger rule {})", telling.join(", "), rule.as_str()),
        }
    }

    fn queue(&mut self, index: usize) {
        self.tasks[index].queued = true;
        self.ready.insert(index);
    }

    /// Records a final state for a task that will not run (again) in this invocation.
    /// After a branch succeeds: skips the tasks directly after it that it did not follow, as
    /// BranchPythonOperator does, whatever their trigger rules; their own dependents then
    /// decide by theirs.
    fn skip_unfollowed(&mut self, index: usize) {
        let plan = Arc::clone(&self.run.plan);
        let Operation::Kind(kind) = &plan.tasks[index].task.operation else { return };
        let Some(Ok(follows)) = kind.follows(self.tasks[index].output.as_ref()) else { return };
        let branch = &plan.tasks[index].key.task;
        for &d in &self.dependents[index].clone() {
            let t = &plan.tasks[d];
            if t.key.pipeline == plan.tasks[index].key.pipeline
                && !follows.contains(&t.key.task)
                && self.tasks[d].state == TaskState::Pending
                && !self.tasks[d].queued
            {
                self.finish_unrun(d, TaskState::Skipped, &format!("branch `{branch}` did not follow it"));
                self.settle(self.dependents[d].clone());
            }
        }
    }

    fn finish_unrun(&mut self, index: usize, state: TaskState, why: &str) {
        let key = &self.run.plan.tasks[index].key;
        let result = self.store.set_task_state(&self.run.run_id, key, state, Some(why));
        self.record(result);
        let t = &mut self.tasks[index];
        t.state = state;
        t.queued = false;
        t.failure = Some(why.to_owned());
        let label = Arc::clone(&self.run.plan.tasks[index].label);
        self.progress.finished(index, &label, state, None, Some(why));
    }

    /// Starts queued tasks in run order while slots are free.
    fn start_ready(&mut self) {
        let max = self.options.max_parallel.max(1);
        let startable: Vec<usize> = self
            .ready
            .iter()
            .copied()
            .filter(|&i| self.tasks[i].state == TaskState::Pending || self.tasks[i].state == TaskState::UpForRetry)
            .collect();
        for index in startable {
            if self.watched(index).is_some() {
                self.start_watched(index, max);
                continue;
            }
            let holds = self.holds_slot(index);
            if holds && self.slots_used >= max {
                continue;
            }
            let pool = self.run.plan.tasks[index].pool.clone().filter(|_| holds);
            if let Some((name, slots)) = &pool
                && self.pool_slots_used.get(name).copied().unwrap_or(0) >= *slots
            {
                continue;
            }
            let writer = self.run.plan.tasks[index].writer.clone();
            if let Some(writer) = writer {
                // Another dbt process holds the DuckDB file: wait, rather than fail on its lock.
                if !self.writers.insert(writer) {
                    continue;
                }
            }
            self.ready.remove(&index);
            if holds {
                self.slots_used += 1;
            }
            if let Some((name, _)) = pool {
                *self.pool_slots_used.entry(name).or_insert(0) += 1;
            }
            self.start(index);
        }
    }

    fn start(&mut self, index: usize) {
        let plan = Arc::clone(&self.run.plan);
        let planned = &plan.tasks[index];
        let number = self.tasks[index].attempts + 1;
        let now = Instant::now();
        let path = log_path(&self.run.run_dir, &planned.key.pipeline, &planned.key.task, number);
        let result = self.store.begin_attempt(&self.run.run_id, &planned.key, number, Utc::now(), &path);
        self.record(result);
        let echo = Some(self.output_tx.clone());
        let log = TaskLog::create(path.clone(), Arc::clone(&planned.label), echo);
        let t = &mut self.tasks[index];
        t.state = TaskState::Running;
        t.queued = false;
        t.attempts = number;
        t.first_start.get_or_insert(now);
        t.log = Some(path);
        let label = Arc::clone(&planned.label);
        self.progress.started(index, &label, number);
        let awaited =
            planned.awaits.iter().map(|&u| (self.run.plan.tasks[u].label.to_string(), self.tasks[u].state)).collect();
        let upstream_dbt = match &planned.task.operation {
            Operation::DbtResults { dbt_task } => plan
                .tasks
                .iter()
                .position(|t| t.key.pipeline == planned.key.pipeline && &t.key.task == dbt_task)
                .and_then(|u| self.tasks[u].dbt.clone()),
            _ => None,
        };
        let outputs = match &planned.task.operation {
            Operation::Kind(kind) => kind
                .reads_outputs()
                .into_iter()
                .filter_map(|id| {
                    let u =
                        plan.tasks.iter().position(|t| t.key.pipeline == planned.key.pipeline && t.key.task == id)?;
                    // A resumed run finds the output its earlier attempt wrote beside its log.
                    let saved = || {
                        let key = &plan.tasks[u].key;
                        let log = log_path(&self.run.run_dir, &key.pipeline, &key.task, self.tasks[u].attempts);
                        let text = std::fs::read_to_string(log.with_extension("output.json")).ok()?;
                        serde_json::from_str(&text).ok()
                    };
                    self.tasks[u].output.clone().or_else(saved).map(|v| (id, v))
                })
                .collect(),
            _ => BTreeMap::new(),
        };
        let watching = self.watched(index).is_some().then(|| {
            let view = self.builds.entry(self.build_key(index)).or_default().subscribe();
            let generation = view.borrow().generation;
            self.consumed.insert(index, generation);
            (view, generation)
        });
        let job = AttemptJob { awaited, upstream_dbt, outputs, watching, ..self.job(index, number, log) };
        let handle = self.jobs.spawn(async move {
            let end = job.run().await;
            JobDone::Attempt { index, number, end }
        });
        self.job_tasks.insert(handle.id(), index);
    }

    /// A job for attempt `number` of task `index`, writing to `log`, with nothing from upstream.
    fn job(&self, index: usize, number: u32, log: TaskLog) -> AttemptJob {
        let planned = &self.run.plan.tasks[index];
        AttemptJob {
            plan: Arc::clone(&self.run.plan),
            index,
            number,
            run_id: Arc::clone(&self.run.run_id),
            logical_date: self.run.dates[planned.pipeline],
            state_dir: self.run.state_dir.clone(),
            log,
            cancel: self.cancel.0.subscribe(),
            grace: self.options.kill_grace,
            awaited: Vec::new(),
            upstream_dbt: None,
            outputs: BTreeMap::new(),
            pids: self.pid_tx.clone(),
            watching: None,
        }
    }

    fn job_done(&mut self, done: JobDone) {
        match done {
            JobDone::Attempt { index, number, end } => {
                if self.holds_slot(index) {
                    self.slots_used = self.slots_used.saturating_sub(1);
                }
                self.release(index);
                self.attempt_ended(index, number, end);
            }
            JobDone::BuildEnded { writer } => {
                self.slots_used = self.slots_used.saturating_sub(1);
                if let Some(writer) = writer {
                    self.writers.remove(&writer);
                }
            }
            JobDone::RetryDue { index } => {
                if self.cancelled() {
                    self.finish_unrun(index, TaskState::Cancelled, "cancelled while waiting to retry");
                } else {
                    self.queue(index);
                }
            }
        }
    }

    fn attempt_ended(&mut self, index: usize, number: u32, end: AttemptEnd) {
        let planned = &self.run.plan.tasks[index];
        let key = planned.key.clone();
        let label = Arc::clone(&planned.label);
        let settings = planned.task.settings.clone();
        let outlets: Vec<String> = planned.task.outlets.iter().map(ToString::to_string).collect();
        let outlets: Vec<&str> = outlets.iter().map(String::as_str).collect();
        let cancelled = self.cancelled();
        let t = &mut self.tasks[index];
        t.last_end = Some(Instant::now());
        if end.dbt.is_some() {
            t.dbt = end.dbt.clone();
        }
        if let Some(output) = &end.output {
            t.output = Some((**output).clone());
        }
        let took = t.first_start.map(|s| s.elapsed());
        match end.outcome {
            Ok(()) => {
                t.state = TaskState::Success;
                t.failure = None;
                let result = self.store.end_attempt(
                    &self.run.run_id,
                    &key,
                    number,
                    TaskState::Success,
                    end.duration,
                    "success",
                    TaskState::Success,
                    None,
                    &outlets,
                );
                self.record(result);
                self.progress.finished(index, &label, TaskState::Success, took, None);
                self.skip_unfollowed(index);
                self.settle(self.dependents[index].clone());
            }
            Err(Failure::Skip(why)) => {
                t.state = TaskState::Skipped;
                t.failure = Some(why.clone());
                let result = self.store.end_attempt(
                    &self.run.run_id,
                    &key,
                    number,
                    TaskState::Skipped,
                    end.duration,
                    "skipped",
                    TaskState::Skipped,
                    Some(&why),
                    &[],
                );
                self.record(result);
                self.progress.finished(index, &label, TaskState::Skipped, took, Some(&why));
                self.settle(self.dependents[index].clone());
            }
            Err(failure) => {
                self.table_mismatch |= matches!(failure, Failure::Load(load::LoadError::Layout { .. }));
                let mut why = failure.describe();
                if let Some(results) = end.dbt.as_ref().filter(|r| !r.failures.is_empty()) {
                    why = format!("{why}; failing in dbt: {}", results.failures_line());
                }
                let retries = settings.retries.value;
                // Retries count within this invocation, so a resumed task gets all of them again.
                let this_invocation = number.saturating_sub(t.earlier_attempts);
                let (state, attempt_state) = if failure == Failure::Cancelled {
                    (TaskState::Cancelled, TaskState::Cancelled)
                } else if failure.is_retryable() && this_invocation <= retries && !cancelled {
                    (TaskState::UpForRetry, TaskState::Failed)
                } else {
                    (TaskState::Failed, TaskState::Failed)
                };
                t.state = state;
                t.failure = Some(why.clone());
                let result = self.store.end_attempt(
                    &self.run.run_id,
                    &key,
                    number,
                    attempt_state,
                    end.duration,
                    &failure.describe(),
                    state,
                    Some(&why),
                    &[],
                );
                self.record(result);
                if state == TaskState::UpForRetry {
                    let delay = retry_delay(&settings, this_invocation);
                    let why = format!("attempt {this_invocation} of {}: {why}", retries + 1);
                    self.progress.retrying(index, &label, &why, delay);
                    queue_retry(&mut self.jobs, &mut self.job_tasks, index, delay, self.cancel.0.subscribe());
                    self.tasks[index].queued = true;
                } else {
                    let why =
                        if this_invocation > 1 { format!("{why} (after {this_invocation} attempts)") } else { why };
                    self.progress.finished(index, &label, state, took, Some(&why));
                    self.settle(self.dependents[index].clone());
                }
            }
        }
    }

    /// The run's state from its tasks'.
    fn run_state(&self) -> RunState {
        let any = |s: TaskState| self.tasks.iter().any(|t| t.state == s);
        if any(TaskState::Cancelled) {
            RunState::Cancelled
        } else if self.tasks.iter().all(|t| matches!(t.state, TaskState::Success | TaskState::Skipped)) {
            RunState::Success
        } else {
            RunState::Failed
        }
    }

    fn summaries(&self) -> Vec<TaskSummary> {
        self.run
            .plan
            .tasks
            .iter()
            .zip(&self.tasks)
            .map(|(planned, t)| TaskSummary {
                key: planned.key.clone(),
                state: t.state,
                attempts: t.attempts,
                duration: match (t.first_start, t.last_end) {
                    (Some(start), Some(end)) => end.saturating_duration_since(start),
                    _ => Duration::ZERO,
                },
                failure: t.failure.clone(),
                log: t.log.clone(),
                dbt: t.dbt.clone(),
            })
            .collect()
    }
}

/// Waits out a retry delay as a job, ending early when the run is cancelled.
fn queue_retry(
    jobs: &mut JoinSet<JobDone>,
    job_tasks: &mut HashMap<tokio::task::Id, usize>,
    index: usize,
    delay: Duration,
    mut cancel: watch::Receiver<CancelLevel>,
) {
    let handle = jobs.spawn(async move {
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            _ = async {
                while cancel.changed().await.is_ok() {
                    if *cancel.borrow() != CancelLevel::None {
                        return;
                    }
                }
                std::future::pending::<()>().await;
            } => {}
        }
        JobDone::RetryDue { index }
    });
    job_tasks.insert(handle.id(), index);
}

impl AttemptJob {
    fn pipeline(&self) -> &PlannedPipeline {
        &self.plan.pipelines[self.plan.tasks[self.index].pipeline]
    }

    /// Runs the attempt, within the task's `execution_timeout`.
    async fn run(mut self) -> AttemptEnd {
        let started = Instant::now();
        let timeout =
            self.plan.tasks[self.index].task.settings.execution_timeout.value.map(|t| Duration::from_secs(t.as_secs()));
        let plan = Arc::clone(&self.plan);
        let operation = &plan.tasks[self.index].task.operation;
        let mut output = None;
        let (outcome, dbt) = match operation {
            Operation::Dbt(invocation) if invocation.watch.is_some() && self.watching.is_some() => {
                let nodes = invocation.watch.as_ref().map(|w| w.nodes.as_slice()).unwrap_or_default();
                self.wait_for_nodes(nodes, timeout).await
            }
            Operation::Dbt(invocation) => {
                let project = self.dbt_dir(false);
                let word = match self.dbt_words(invocation) {
                    Ok(word) => word,
                    Err(failure) => {
                        return AttemptEnd {
                            outcome: Err(failure),
                            duration: started.elapsed(),
                            dbt: None,
                            output: None,
                        };
                    }
                };
                let args: Vec<String> = invocation.args.iter().map(&word).collect();
                let executable = self.dbt_program(invocation);
                if invocation.deps_first {
                    let command = CommandLine {
                        program: executable.clone(),
                        args: DbtInvocation::deps_args().iter().map(&word).collect(),
                        cwd: project.clone(),
                        env: self.context_env(),
                    };
                    if let Err(failure) = self.subprocess(&command, timeout).await {
                        self.log.note("dbt deps failed; the command was not run");
                        return AttemptEnd {
                            outcome: Err(failure),
                            duration: started.elapsed(),
                            dbt: None,
                            output: None,
                        };
                    }
                }
                let command = CommandLine { program: executable, args, cwd: project.clone(), env: self.context_env() };
                let path = dbt_results::results_path(&project);
                let before = dbt_results::ResultsStamp::of(&path);
                let mut outcome = self.subprocess(&command, timeout).await;
                if invocation.save_artifacts {
                    self.save_dbt_artifacts(&project, outcome.is_ok());
                }
                if invocation.tolerate_failure && outcome.is_err() {
                    self.log.note("dbt failed; tolerated (freshness policy: warn)");
                    outcome = Ok(());
                }
                let results = if invocation.command.writes_run_results() {
                    match DbtRunResults::read(&path, Some(&before)) {
                        Ok(results) => results,
                        Err(e) => {
                            self.log.note(&e.to_string());
                            None
                        }
                    }
                } else {
                    None
                };
                if let Some(r) = &results {
                    self.log.note(&format!("dbt results: {}", r.counts_line()));
                }
                (outcome, results)
            }
            Operation::DbtResults { dbt_task } => {
                let path = dbt_results::results_path(&self.dbt_dir(false));
                let results = match self.upstream_dbt.take() {
                    Some(results) => Ok(Some(results)),
                    None => DbtRunResults::read(&path, None),
                };
                match results {
                    Ok(Some(results)) => {
                        self.log.note(&format!("dbt results of {dbt_task}: {}", results.counts_line()));
                        for f in &results.failures {
                            let message = f.message.as_deref().unwrap_or("");
                            self.log.note(&format!("{} {}: {message}", f.status, f.unique_id));
                        }
                    }
                    Ok(None) => self.log.note(&format!("dbt wrote no run results at {}", path.display())),
                    Err(e) => self.log.note(&e.to_string()),
                }
                (Ok(()), None)
            }
            Operation::Sensor(target) => {
                let outcome = if self.plan.tasks[self.index].awaits.is_empty() {
                    let wait = sensor::poll_store(
                        &self.state_dir,
                        target,
                        self.logical_date,
                        &mut self.log,
                        self.cancel.clone(),
                    );
                    match timeout {
                        Some(limit) => match tokio::time::timeout(limit, wait).await {
                            Ok(result) => result.map_err(Failure::from),
                            Err(_) => Err(Failure::TimedOut(limit)),
                        },
                        None => wait.await.map_err(Failure::from),
                    }
                } else {
                    let result = sensor::in_run(target, &self.awaited);
                    if result.is_ok() {
                        self.log.note("the awaited tasks ended in an allowed state in this run");
                    }
                    result.map_err(Failure::from)
                };
                (outcome, None)
            }
            Operation::Join => (Ok(()), None),
            Operation::Kind(kind) => {
                let outcome = self.kind_attempt(kind.as_ref(), timeout).await;
                match outcome {
                    Ok(value) => {
                        output = value.map(Box::new);
                        (Ok(()), None)
                    }
                    Err(failure) => (Err(failure), None),
                }
            }
            Operation::Trigger(target) => {
                // The started pipeline is part of this run; its tasks wait for this one.
                self.log.note(&format!("triggered {} (conf {})", target.pipeline, serde_json::json!(target.conf)));
                (Ok(()), None)
            }
            Operation::Load { step, plan: load_plan } => {
                let pipeline = &plan.pipelines[plan.tasks[self.index].pipeline];
                let mut ctx = LoadContext {
                    run_id: &self.run_id,
                    logical_date: self.logical_date,
                    spec: &pipeline.spec,
                    spec_dir: &pipeline.spec_dir,
                    log: &mut self.log,
                };
                let outcome = match load::run_load(load_plan, *step, &mut ctx).await {
                    Ok(load::StepOutcome::Done) => Ok(()),
                    // As the Airflow DAG's load task raises AirflowSkipException.
                    Ok(load::StepOutcome::NothingNew(why)) => Err(Failure::Skip(why)),
                    Err(e) => Err(Failure::Load(e)),
                };
                (outcome, None)
            }
        };
        AttemptEnd { outcome, duration: started.elapsed(), dbt, output }
    }

    /// Runs a watched stage's `dbt build` of the nodes `selectors` pick, exactly those
    /// (`--indirect-selection empty`), with dbt's JSON log, which the log's observer reads.
    async fn build(mut self, build: &DbtInvocation, selectors: Vec<String>, mut end: BuildEnd) {
        let project = self.dbt_dir(false);
        let word = match self.dbt_words(build) {
            Ok(word) => word,
            Err(failure) => {
                end.exit = Some(failure.describe());
                return;
            }
        };
        let mut args: Vec<String> = build.args.iter().map(word).collect();
        args.push("--select".to_owned());
        args.extend(selectors);
        args.extend(["--indirect-selection".to_owned(), "empty".to_owned()]);
        let program = self.dbt_program(build);
        let mut env = self.context_env();
        let (name, value) = super::dbt_watcher::LOG_FORMAT_ENV;
        env.insert(name.to_owned(), value.to_owned());
        let command = CommandLine { program, args, cwd: project.clone(), env };
        let ended = process::run(&command, None, self.grace, &mut self.log, self.cancel.clone(), |_| {}).await;
        let succeeded = matches!(ended, ProcessEnd::Exited(0));
        let exit = match ended {
            ProcessEnd::Exited(code) => format!("exit status {code}"),
            ProcessEnd::Signalled(signal) => format!("killed by signal {signal}"),
            ProcessEnd::TimedOut(after) => format!("timed out after {}", show(after)),
            ProcessEnd::Cancelled => "cancelled".to_owned(),
            ProcessEnd::SpawnFailed(e) => format!("cannot start {}: {e}", command.program),
        };
        self.log.note(&format!("dbt build ended: {exit}"));
        if build.save_artifacts {
            self.save_dbt_artifacts(&project, succeeded);
        }
        end.exit = Some(exit);
    }

    /// Waits until each of `nodes` ends in the build this attempt watches, or the build ends,
    /// and takes the task's outcome and its nodes' log lines from it.
    async fn wait_for_nodes(
        &mut self,
        nodes: &[(String, String)],
        timeout: Option<Duration>,
    ) -> (Result<(), Failure>, Option<DbtRunResults>) {
        let Some((mut view, generation)) = self.watching.take() else {
            return (Err(Failure::Watched("no watched build to wait for".to_owned())), None);
        };
        if let Some(path) = view.borrow().logs.get(&generation) {
            self.log.note(&format!("watching build {generation} of the stage; its dbt log: {}", path.display()));
        }
        let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        loop {
            if view.borrow_and_update().settled(generation, nodes) {
                break;
            }
            let expired = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                changed = view.changed() => if changed.is_err() { break },
                Ok(()) = self.cancel.changed() => if *self.cancel.borrow() != CancelLevel::None {
                    return (Err(Failure::Cancelled), None);
                },
                () = expired => return (Err(Failure::TimedOut(timeout.unwrap_or_default())), None),
            }
        }
        let (outcome, results) = {
            let v = view.borrow();
            for (id, _) in nodes {
                for line in v.builds.get(&generation).map(|w| w.log(id)).unwrap_or_default() {
                    self.log.line(line);
                }
            }
            super::watched_build::task_outcome(&v, generation, nodes)
        };
        self.log.note(&format!("dbt results: {}", results.counts_line()));
        (outcome.map_err(Failure::Watched), Some(results))
    }

    /// Turns a dbt argument into its word on this machine: the folders placed, `--vars` rendered.
    fn dbt_words(&mut self, invocation: &DbtInvocation) -> Result<impl Fn(&DbtArg) -> String + use<>, Failure> {
        let project = self.dbt_dir(false);
        let profiles = self.dbt_dir(true);
        let state = self.dbt_state_dir();
        let vars = self.render_dbt_vars(invocation)?;
        Ok(move |a: &DbtArg| match a {
            DbtArg::Literal(s) => s.clone(),
            // One argument, no shell: the rendered text cannot become a command.
            DbtArg::Vars(_) => vars.clone().unwrap_or_default(),
            DbtArg::ProjectDir => project.display().to_string(),
            DbtArg::ProfilesDir => profiles.display().to_string(),
            DbtArg::StateDir => state.display().to_string(),
        })
    }

    /// The dbt executable: a path with a `/` is relative to the spec's folder.
    fn dbt_program(&self, invocation: &DbtInvocation) -> String {
        if invocation.executable.contains('/') {
            self.pipeline().spec_dir.join(&invocation.executable).display().to_string()
        } else {
            invocation.executable.clone()
        }
    }

    /// The dbt project folder (or profiles folder) on this machine: the spec's local paths,
    /// not the `deploy` ones.
    fn dbt_dir(&self, profiles: bool) -> PathBuf {
        self.pipeline().dbt_dir(profiles)
    }

    /// Where `--state` reads the previous successful run's manifest: `dbt.artifacts.path`'s
    /// `state/`, or `.fhirflow/dbt-state` beside the spec (an S3 store is not fetched by `run`).
    fn dbt_state_dir(&self) -> PathBuf {
        let pipeline = self.pipeline();
        match pipeline.spec.dbt.as_ref().and_then(|d| d.artifacts.as_ref()).and_then(|a| a.path.as_ref()) {
            Some(path) => PathBuf::from(path).join("state"),
            None => pipeline.spec_dir.join(".fhirflow").join("dbt-state"),
        }
    }

    /// Copies `target/*.json` and `logs/dbt.log` to the artifacts store, as the Airflow tasks
    /// do; after a success the manifest becomes the state `state:` selectors read. A copy that
    /// fails is logged, never fatal.
    fn save_dbt_artifacts(&mut self, project: &std::path::Path, succeeded: bool) {
        let key = &self.plan.tasks[self.index].key;
        let store = self.dbt_state_dir().parent().map(std::path::Path::to_path_buf).unwrap_or_default();
        let run_dir = store.join("runs").join(&key.pipeline).join(self.run_id.to_string()).join(&key.task);
        let copy = || -> std::io::Result<()> {
            std::fs::create_dir_all(&run_dir)?;
            for entry in std::fs::read_dir(project.join("target"))? {
                let path = entry?.path();
                if path.extension().is_some_and(|e| e == "json") {
                    std::fs::copy(&path, run_dir.join(path.file_name().unwrap_or_default()))?;
                }
            }
            let log = project.join("logs").join("dbt.log");
            if log.is_file() {
                std::fs::copy(&log, run_dir.join("dbt.log"))?;
            }
            let manifest = project.join("target").join("manifest.json");
            if succeeded && manifest.is_file() {
                let state = store.join("state");
                std::fs::create_dir_all(&state)?;
                let partial = state.join(format!(".manifest.json.{}", std::process::id()));
                std::fs::copy(&manifest, &partial)?;
                std::fs::rename(&partial, state.join("manifest.json"))?;
            }
            Ok(())
        };
        match copy() {
            Ok(()) => self.log.note(&format!("dbt artifacts saved to {}", run_dir.display())),
            Err(e) => self.log.note(&format!("could not save dbt artifacts to {}: {e}", run_dir.display())),
        }
    }

    /// Variables every subprocess gets, so a command can tell which run and try it is in.
    fn context_env(&self) -> BTreeMap<String, String> {
        let key = &self.plan.tasks[self.index].key;
        BTreeMap::from([
            ("FHIRFLOW_RUN_ID".to_owned(), self.run_id.to_string()),
            ("FHIRFLOW_PIPELINE".to_owned(), key.pipeline.clone()),
            ("FHIRFLOW_TASK".to_owned(), key.task.clone()),
            ("FHIRFLOW_TRY_NUMBER".to_owned(), self.number.to_string()),
            ("FHIRFLOW_LOGICAL_DATE".to_owned(), self.logical_date.format("%Y-%m-%dT%H:%M:%SZ").to_string()),
        ])
    }

    /// The values a template of this attempt may refer to.
    fn template_values(&self) -> TemplateValues<'_> {
        let key = &self.plan.tasks[self.index].key;
        TemplateValues {
            logical_date: self.logical_date,
            run_id: &self.run_id,
            pipeline: &key.pipeline,
            task: &key.task,
            try_number: self.number,
        }
    }

    /// The `--vars` JSON rendered as Airflow renders it, if the command has one.
    fn render_dbt_vars(&mut self, invocation: &DbtInvocation) -> Result<Option<String>, Failure> {
        let Some(DbtArg::Vars(json)) = invocation.args.iter().find(|a| matches!(a, DbtArg::Vars(_))) else {
            return Ok(None);
        };
        template::render(json, &self.template_values()).map(Some).map_err(|why| {
            self.log.note(&why);
            Failure::Template(why)
        })
    }

    /// One attempt of a task behind [`KindTask`]: its subprocess, then its JSON output.
    async fn kind_attempt(
        &mut self,
        kind: &dyn KindTask,
        timeout: Option<Duration>,
    ) -> Result<Option<serde_json::Value>, Failure> {
        // The subprocess runs in the spec's folder, so a relative run folder would miss.
        let log_path = std::path::absolute(self.log.path()).unwrap_or_else(|_| self.log.path().to_path_buf());
        let input_path = log_path.with_extension("input.json");
        let output_path = log_path.with_extension("output.json");
        let built = {
            let values = self.template_values();
            let render = |text: &str| template::render(text, &values);
            let spec_dir = self.pipeline().spec_dir.clone();
            let ctx = KindContext {
                spec_dir: &spec_dir,
                render: &render,
                outputs: &self.outputs,
                input_path: input_path.clone(),
                output_path: output_path.clone(),
            };
            kind.run_command(&ctx)
        };
        let command = built.map_err(|why| {
            self.log.note(&why);
            Failure::Template(why)
        })?;
        if let Some(input) = &command.input
            && let Err(e) = std::fs::write(&input_path, input)
        {
            return Err(Failure::Spawn(format!("cannot write {}: {e}", input_path.display())));
        }
        let _ = std::fs::remove_file(&output_path);
        let mut env = self.context_env();
        env.extend(command.env);
        let line = CommandLine { program: command.program, args: command.args, cwd: command.cwd, env };
        match self.subprocess(&line, timeout).await {
            // BashOperator's skip_on_exit_code: exit 99 skips the task.
            Err(Failure::Exit(code)) if kind.skip_exit_code() == Some(code) => {
                return Err(Failure::Skip(format!("the command exited {code}, which skips the task")));
            }
            other => other?,
        }
        match std::fs::read_to_string(&output_path) {
            Ok(text) => match serde_json::from_str(&text) {
                Ok(value) => {
                    self.check_follows(kind, Some(&value))?;
                    Ok(Some(value))
                }
                Err(e) => {
                    let why = format!("the output of task `{}` is not JSON: {e}", self.plan.tasks[self.index].key.task);
                    self.log.note(&why);
                    Err(Failure::Output(why))
                }
            },
            Err(_) => {
                self.check_follows(kind, None)?;
                Ok(None)
            }
        }
    }

    /// A branch may follow only the tasks directly after it, as in Airflow.
    fn check_follows(&mut self, kind: &dyn KindTask, output: Option<&serde_json::Value>) -> Result<(), Failure> {
        let Some(follows) = kind.follows(output) else { return Ok(()) };
        let me = &self.plan.tasks[self.index];
        let after: Vec<&str> = self
            .plan
            .tasks
            .iter()
            .filter(|t| t.key.pipeline == me.key.pipeline && t.upstream.contains(&self.index))
            .map(|t| t.key.task.as_str())
            .collect();
        let why = match follows {
            Err(why) => why,
            Ok(ids) => match ids.iter().find(|id| !after.contains(&id.as_str())) {
                None => {
                    self.log.note(&format!(
                        "following {}",
                        if ids.is_empty() { "nothing".to_owned() } else { ids.join(", ") }
                    ));
                    return Ok(());
                }
                Some(id) => format!(
                    "branch `{}` returned `{id}`, which is not directly after it (those are: {})",
                    me.key.task,
                    after.join(", ")
                ),
            },
        };
        self.log.note(&why);
        Err(Failure::Output(why))
    }

    async fn subprocess(&mut self, command: &CommandLine, timeout: Option<Duration>) -> Result<(), Failure> {
        let (index, number, pids) = (self.index, self.number, self.pids.clone());
        let end = process::run(command, timeout, self.grace, &mut self.log, self.cancel.clone(), |pid| {
            let _ = pids.send((index, number, pid));
        })
        .await;
        match end {
            ProcessEnd::Exited(0) => Ok(()),
            ProcessEnd::Exited(code) => Err(Failure::Exit(code)),
            ProcessEnd::Signalled(signal) => Err(Failure::Signal(signal)),
            ProcessEnd::TimedOut(after) => Err(Failure::TimedOut(after)),
            ProcessEnd::Cancelled => Err(Failure::Cancelled),
            ProcessEnd::SpawnFailed(e) => {
                let why = format!("cannot start {}: {e}", command.program);
                self.log.note(&why);
                Err(Failure::Spawn(why))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::{Origin, Resolved};
    use crate::spec::{Duration as SpecDuration, TaskSettings};

    fn settings(delay: u64, exponential: bool) -> Settings {
        let mut s = Settings::resolve(&TaskSettings::default(), &TaskSettings::default(), &TaskSettings::default());
        s.retry_delay = Resolved { value: SpecDuration::from_secs(delay), origin: Origin::Stage };
        s.retry_exponential_backoff = Resolved { value: exponential, origin: Origin::Stage };
        s
    }

    #[test]
    fn retry_delays_are_fixed_or_double_up_to_a_day() {
        let fixed = settings(300, false);
        assert_eq!(retry_delay(&fixed, 1), Duration::from_secs(300));
        assert_eq!(retry_delay(&fixed, 5), Duration::from_secs(300));
        let doubling = settings(300, true);
        let delays: Vec<u64> = (1..=4).map(|n| retry_delay(&doubling, n).as_secs()).collect();
        assert_eq!(delays, [300, 600, 1200, 2400]);
        assert_eq!(retry_delay(&doubling, 20), MAX_RETRY_DELAY);
        assert_eq!(retry_delay(&doubling, 400), MAX_RETRY_DELAY, "no overflow");
        assert_eq!(retry_delay(&settings(0, true), 3), Duration::ZERO);
        let long = settings(2 * 86_400, true);
        assert_eq!(retry_delay(&long, 1), Duration::from_secs(2 * 86_400), "a delay set above the cap is kept");
    }

    #[test]
    fn which_failures_are_retried() {
        assert!(Failure::Exit(3).is_retryable());
        assert!(Failure::TimedOut(Duration::from_secs(1)).is_retryable());
        assert!(!Failure::Cancelled.is_retryable());
        assert!(!Failure::Template("x".into()).is_retryable());
        assert!(!Failure::SensorTimedOut(Duration::from_secs(1)).is_retryable());
        let load = load::LoadError::NotRunnable { task: "t".into(), stage: "s".into(), what: "S3 sources".into() };
        assert!(!Failure::Load(load).is_retryable());
    }

    #[test]
    fn run_ids_sort_by_start_time() {
        let id = new_run_id();
        assert_eq!(id.len(), "20260101T000000Z-0000".len(), "{id}");
        assert!(id.ends_with(|c: char| c.is_ascii_hexdigit()));
    }
}
