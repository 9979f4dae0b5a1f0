//! Trigger rules under `fhirflow run`, decided as Airflow's `TriggerRuleDep` decides them.
//!
//! Given the states of a task's upstream tasks, a rule says whether the task waits, runs, is
//! skipped or is `upstream_failed`. The counts and the order of the checks follow Airflow 3.3's
//! `airflow/ti_deps/deps/trigger_rule_dep.py` (with `flag_upstream_failed`, as the scheduler
//! runs it), so that a spec's tasks end in the same states under both backends; the unit tests
//! below are Airflow's cases. A task with no upstream task always runs, as in Airflow.

use super::TaskState;
use crate::spec::TriggerRule;

/// What a task does next, given its upstream tasks' states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Some upstream task is still to finish, and its state matters.
    Wait,
    /// The task may start.
    Run,
    /// The task is skipped without running.
    Skip,
    /// The task is `upstream_failed` without running.
    UpstreamFailed,
}

/// Upstream states counted as Airflow counts them.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    upstream: usize,
    success: usize,
    skipped: usize,
    failed: usize,
    upstream_failed: usize,
}

impl Counts {
    fn of(states: impl IntoIterator<Item = TaskState>) -> Self {
        let mut c = Counts::default();
        for state in states {
            c.upstream += 1;
            match state {
                TaskState::Success => c.success += 1,
                TaskState::Skipped => c.skipped += 1,
                TaskState::UpstreamFailed => c.upstream_failed += 1,
                TaskState::Failed => c.failed += 1,
                // A cancelled run starts nothing more; its unstarted tasks end `cancelled` too.
                TaskState::Cancelled | TaskState::Interrupted => {}
                TaskState::Pending | TaskState::Running | TaskState::UpForRetry => {}
            }
        }
        c
    }

    fn done(&self) -> usize {
        self.success + self.skipped + self.failed + self.upstream_failed
    }
}

/// What a task under `rule` does when its upstream tasks are in `states`.
pub fn decide(rule: TriggerRule, states: impl IntoIterator<Item = TaskState>) -> Decision {
    use Decision::{Run, Skip, UpstreamFailed, Wait};
    let c = Counts::of(states);
    if c.upstream == 0 || rule == TriggerRule::Always {
        return Run;
    }
    let all_done = c.done() >= c.upstream;
    let failures = c.failed + c.upstream_failed;
    match rule {
        TriggerRule::Always => Run,
        TriggerRule::AllSuccess => {
            if failures > 0 {
                UpstreamFailed
            } else if c.skipped > 0 {
                Skip
            } else if c.success == c.upstream {
                Run
            } else {
                Wait
            }
        }
        TriggerRule::AllFailed => {
            if c.success > 0 || c.skipped > 0 {
                Skip
            } else if failures == c.upstream {
                Run
            } else {
                Wait
            }
        }
        TriggerRule::AllDone => {
            if all_done {
                Run
            } else {
                Wait
            }
        }
        TriggerRule::AllSkipped => {
            if c.success > 0 || failures > 0 {
                Skip
            } else if c.skipped == c.upstream {
                Run
            } else {
                Wait
            }
        }
        TriggerRule::OneSuccess => {
            if c.success > 0 {
                Run
            } else if all_done && c.done() == c.skipped {
                Skip
            } else if all_done {
                UpstreamFailed
            } else {
                Wait
            }
        }
        TriggerRule::OneFailed => {
            if failures > 0 {
                Run
            } else if all_done {
                Skip
            } else {
                Wait
            }
        }
        TriggerRule::OneDone => {
            if c.success + c.failed > 0 {
                Run
            } else if all_done {
                Skip
            } else {
                Wait
            }
        }
        TriggerRule::NoneFailed => {
            if failures > 0 {
                UpstreamFailed
            } else if c.success + c.skipped == c.upstream {
                Run
            } else {
                Wait
            }
        }
        TriggerRule::NoneFailedMinOneSuccess => {
            if failures > 0 {
                UpstreamFailed
            } else if c.skipped == c.upstream {
                Skip
            } else if all_done && c.success == 0 {
                UpstreamFailed
            } else if c.success + c.skipped == c.upstream {
                Run
            } else {
                Wait
            }
        }
        TriggerRule::NoneSkipped => {
            if c.skipped > 0 {
                Skip
            } else if all_done {
                Run
            } else {
                Wait
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Decision::{Run, Skip, UpstreamFailed, Wait};
    use super::*;
    use TaskState::{Failed, Pending, Running, Skipped, Success};

    #[test]
    fn a_task_without_upstream_runs_under_every_rule() {
        for rule in [TriggerRule::AllSuccess, TriggerRule::AllFailed, TriggerRule::OneSuccess, TriggerRule::AllSkipped]
        {
            assert_eq!(decide(rule, []), Run, "{rule:?}");
        }
    }

    #[test]
    fn rules_decide_as_airflow_does() {
        let up_failed = TaskState::UpstreamFailed;
        let cases: &[(TriggerRule, &[TaskState], Decision)] = &[
            (TriggerRule::AllSuccess, &[Success, Success], Run),
            (TriggerRule::AllSuccess, &[Success, Running], Wait),
            (TriggerRule::AllSuccess, &[Skipped, Running], Skip),
            (TriggerRule::AllSuccess, &[Skipped, Failed], UpstreamFailed),
            (TriggerRule::AllSuccess, &[up_failed, Pending], UpstreamFailed),
            (TriggerRule::AllDone, &[Skipped, Failed], Run),
            (TriggerRule::AllDone, &[Success, Running], Wait),
            (TriggerRule::AllFailed, &[Failed, up_failed], Run),
            (TriggerRule::AllFailed, &[Failed, Success], Skip),
            (TriggerRule::AllFailed, &[Failed, Running], Wait),
            (TriggerRule::AllSkipped, &[Skipped, Skipped], Run),
            (TriggerRule::AllSkipped, &[Skipped, Success], Skip),
            (TriggerRule::OneSuccess, &[Success, Running], Run),
            (TriggerRule::OneSuccess, &[Skipped, Skipped], Skip),
            (TriggerRule::OneSuccess, &[Skipped, Failed], UpstreamFailed),
            (TriggerRule::OneSuccess, &[Failed, Running], Wait),
            (TriggerRule::OneFailed, &[Failed, Running], Run),
            (TriggerRule::OneFailed, &[Success, Skipped], Skip),
            (TriggerRule::OneDone, &[Skipped, Failed], Run),
            (TriggerRule::OneDone, &[Skipped, Skipped], Skip),
            (TriggerRule::NoneFailed, &[Success, Skipped], Run),
            (TriggerRule::NoneFailed, &[Skipped, Skipped], Run),
            (TriggerRule::NoneFailed, &[Skipped, up_failed], UpstreamFailed),
            (TriggerRule::NoneFailedMinOneSuccess, &[Success, Skipped], Run),
            (TriggerRule::NoneFailedMinOneSuccess, &[Skipped, Skipped], Skip),
            (TriggerRule::NoneFailedMinOneSuccess, &[Skipped, Running], Wait),
            (TriggerRule::NoneFailedMinOneSuccess, &[Failed, Skipped], UpstreamFailed),
            (TriggerRule::NoneSkipped, &[Success, Failed], Run),
            (TriggerRule::NoneSkipped, &[Success, Skipped], Skip),
            (TriggerRule::Always, &[Running, Pending], Run),
        ];
        for (rule, states, expected) in cases {
            assert_eq!(decide(*rule, states.iter().copied()), *expected, "{rule:?} on {states:?}");
        }
    }
}
