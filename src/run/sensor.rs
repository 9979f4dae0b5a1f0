//! Sensors: waiting for another pipeline's run, as an `ExternalTaskSensor` does.
//!
//! When the awaited task (or whole pipeline) is part of the same invocation, the scheduler
//! orders it first and the sensor only checks how it ended ([`in_run`]). Otherwise the sensor
//! asks the run store, every `poke_interval` until its `timeout`, for a run of the target at
//! the aligned logical date, this pipeline's logical date minus `execution_delta`
//! ([`poll_store`]).

use super::TaskState;
use super::process::{CancelLevel, show};
use super::store::{AwaitedState, Store};
use super::task_log::TaskLog;
use crate::graph::SensorTarget;
use chrono::{DateTime, TimeDelta, Utc};
use std::path::Path;
use std::time::Duration;
use tokio::sync::watch;

/// How a sensor ended, short of success.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SensorFailure {
    /// The awaited run ended without succeeding.
    TargetFailed(String),
    /// Nothing came before the sensor's timeout.
    TimedOut(Duration),
    /// The run was cancelled.
    Cancelled,
    /// The run store could not be read.
    Store(String),
}

/// The logical date of the awaited run.
pub fn aligned_date(logical_date: DateTime<Utc>, target: &SensorTarget) -> DateTime<Utc> {
    logical_date - TimeDelta::seconds(i64::try_from(target.execution_delta.as_secs()).unwrap_or(i64::MAX))
}

/// A sensor whose targets ran in this invocation: satisfied when every one succeeded.
pub fn in_run(awaited: &[(String, TaskState)]) -> Result<(), SensorFailure> {
    match awaited.iter().find(|(_, state)| *state != TaskState::Success) {
        None => Ok(()),
        Some((label, state)) => Err(SensorFailure::TargetFailed(format!("awaited task {label} ended {state}"))),
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
            Ok(None) => Ok(AwaitedState::Waiting),
            Err(e) => Err(e),
        };
        match state {
            Ok(AwaitedState::Succeeded) => {
                log.note(&format!("{what} succeeded at that logical date"));
                return Ok(());
            }
            Ok(AwaitedState::Failed) => {
                return Err(SensorFailure::TargetFailed(format!(
                    "the run of {what} at {} ended without success",
                    at.format("%Y-%m-%dT%H:%M:%SZ")
                )));
            }
            Ok(AwaitedState::Waiting) => {}
            Err(e) => return Err(SensorFailure::Store(e.to_string())),
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            log.note(&format!("no successful run of {what} within {}", show(timeout)));
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
