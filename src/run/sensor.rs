//! Sensors: waiting for another pipeline's run, as an `ExternalTaskSensor` does.
//!
//! When the awaited task (or whole pipeline) is part of the same invocation, the scheduler
//! orders it first and the sensor only checks how it ended ([`in_run`]). Otherwise the sensor
//! asks the run store, every `poke_interval` until its `timeout`, for a run of the target at
//! the aligned logical date, this pipeline's logical date minus `execution_delta`
//! ([`poll_store`]).

use super::TaskState;
use super::process::{CancelLevel, show};
use super::store::Store;
use super::task_log::TaskLog;
use crate::graph::{SensorTarget, SensorVerdict};
use crate::spec::AwaitedState;
use chrono::{DateTime, TimeDelta, Utc};
use std::path::Path;
use std::time::Duration;
use tokio::sync::watch;

/// How a sensor ended, short of success.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SensorFailure {
    /// The awaited run ended in one of the sensor's `failed_states`.
    TargetFailed(String),
    /// Nothing came before the sensor's timeout.
    TimedOut(Duration),
    /// The run was cancelled.
    Cancelled,
    /// The run store could not be read.
    Store(String),
    /// The sensor is skipped: the target ended in one of its `skipped_states`, or it failed or
    /// timed out under `soft_fail`.
    Skipped(String),
}

/// The logical date of the awaited run.
pub fn aligned_date(logical_date: DateTime<Utc>, target: &SensorTarget) -> DateTime<Utc> {
    logical_date - TimeDelta::seconds(i64::try_from(target.execution_delta.as_secs()).unwrap_or(i64::MAX))
}

/// A run task's final state as a sensor's target state; `None` while it can still change.
pub fn awaited_state(state: TaskState) -> Option<AwaitedState> {
    match state {
        TaskState::Success => Some(AwaitedState::Success),
        TaskState::Skipped => Some(AwaitedState::Skipped),
        TaskState::UpstreamFailed => Some(AwaitedState::UpstreamFailed),
        TaskState::Failed | TaskState::Cancelled | TaskState::Interrupted => Some(AwaitedState::Failed),
        TaskState::Pending | TaskState::Running | TaskState::UpForRetry => None,
    }
}

/// What a sensor does once `what` ended in `state`: `Ok(true)` satisfied, `Ok(false)` keep
/// waiting, or how it ends short of success (`soft_fail` turns a failure into a skip).
fn judge(target: &SensorTarget, what: &str, state: AwaitedState) -> Result<bool, SensorFailure> {
    let why = format!("{what} ended {}", state.as_str());
    match target.verdict(state) {
        SensorVerdict::Satisfied => Ok(true),
        SensorVerdict::Skipped => Err(SensorFailure::Skipped(format!("{why}, one of the sensor's skipped_states"))),
        SensorVerdict::Failed if target.soft_fail => Err(SensorFailure::Skipped(format!("{why}; soft_fail skips"))),
        SensorVerdict::Failed => Err(SensorFailure::TargetFailed(why)),
        SensorVerdict::Waiting => Ok(false),
    }
}

/// A sensor whose targets ran in this invocation. A whole-run target is the run's state:
/// failed if any task of it failed, else success. A state in none of the sensor's lists would
/// keep Airflow's sensor poking until its timeout; the target cannot change here, so that is
/// the timeout's outcome at once, named.
pub fn in_run(target: &SensorTarget, awaited: &[(String, TaskState)]) -> Result<(), SensorFailure> {
    let states: Vec<AwaitedState> = awaited.iter().filter_map(|(_, s)| awaited_state(*s)).collect();
    let (what, state) = match &target.task {
        Some(_) => {
            let Some(((label, _), state)) = awaited.first().zip(states.first()) else {
                return Ok(());
            };
            (format!("awaited task {label}"), *state)
        }
        None => {
            let failed = states.iter().any(|s| !matches!(s, AwaitedState::Success | AwaitedState::Skipped));
            let state = if failed { AwaitedState::Failed } else { AwaitedState::Success };
            (format!("awaited pipeline {}", target.pipeline), state)
        }
    };
    match judge(target, &what, state)? {
        true => Ok(()),
        false => {
            let why = format!(
                "{what} ended {}, which is in none of the sensor's allowed, failed or skipped states; \
                 Airflow would poke until its {} timeout",
                state.as_str(),
                target.timeout
            );
            if target.soft_fail {
                Err(SensorFailure::Skipped(format!("{why}; soft_fail skips")))
            } else {
                Err(SensorFailure::TargetFailed(why))
            }
        }
    }
}

/// Asks the store in `state_dir` for the target's run every `poke_interval` until `timeout`.
pub async fn poll_store(
    state_dir: &Path,
    target: &SensorTarget,
    logical_date: DateTime<Utc>,
    log: &mut TaskLog,
    mut cancel: watch::Receiver<CancelLevel>,
) -> Result<(), SensorFailure> {
    let at = aligned_date(logical_date, target);
    let what = match &target.task {
        Some(task) => format!("{}.{task}", target.pipeline),
        None => format!("pipeline {}", target.pipeline),
    };
    log.note(&format!(
        "waiting for a successful run of {what} at logical date {} in the run store, every {} for up to {}",
        at.format("%Y-%m-%dT%H:%M:%SZ"),
        target.poke_interval,
        target.timeout
    ));
    let timeout = Duration::from_secs(target.timeout.as_secs());
    // A zero poke interval would spin; a tenth of a second is still prompt.
    let interval = Duration::from_secs(target.poke_interval.as_secs()).max(Duration::from_millis(100));
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let state = match Store::open_existing(state_dir) {
            Ok(Some(store)) => store.awaited(target.pipeline.as_str(), target.task.as_deref(), at),
            Ok(None) => Ok(None),
            Err(e) => Err(e),
        };
        match state {
            Ok(Some(state)) => {
                let what = format!("the run of {what} at {}", at.format("%Y-%m-%dT%H:%M:%SZ"));
                if judge(target, &what, state)? {
                    log.note(&format!("{what} ended {}", state.as_str()));
                    return Ok(());
                }
            }
            Ok(None) => {}
            Err(e) => return Err(SensorFailure::Store(e.to_string())),
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            log.note(&format!("no successful run of {what} within {}", show(timeout)));
            if target.soft_fail {
                return Err(SensorFailure::Skipped(format!("timed out after {}; soft_fail skips", show(timeout))));
            }
            return Err(SensorFailure::TimedOut(timeout));
        }
        tokio::select! {
            () = tokio::time::sleep(interval.min(deadline - now)) => {}
            Ok(()) = cancel.changed() => {
                if *cancel.borrow() != CancelLevel::None {
                    return Err(SensorFailure::Cancelled);
                }
            }
        }
    }
}
