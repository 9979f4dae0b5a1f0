//! Sensor alignment: does a sensor's target ever have a run at the logical date it waits for?
//!
//! An `ExternalTaskSensor` waits for the target's run at `logical_date - execution_delta`. If no
//! such run exists, it waits until its timeout, every time: the bug of the real project behind
//! the FHIR seed. Here the smallest delta that works for every sampled run across a year (so
//! that DST and month lengths are covered) is found, or the sensor is rejected.

use crate::diagnostic::Diagnostic;
use crate::spec::{AwaitedState, Preset, Schedule, SensorStage, parse_cron};
use chrono::{DateTime, Duration as TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;

/// A pipeline's schedule, able to answer "is there a run at this instant?".
#[derive(Debug, Clone)]
pub enum Clock {
    /// Runs on a cron expression in a time zone.
    Cron(Box<Cron>, Tz),
    /// Runs every `period` from `start`.
    Interval { start: DateTime<Utc>, period: TimeDelta },
    /// Runs once, at `start`.
    Once(DateTime<Utc>),
}

/// Why a sensor can never line up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Misalignment {
    /// The sensor's own pipeline has no schedule, so its logical dates are arbitrary.
    WaiterUnscheduled,
    /// The target has no schedule (or runs once), so there is no run to wait for.
    TargetUnscheduled,
    /// An interval schedule without a start date has no fixed phase.
    NoStartDate,
    /// No delta fits every run; the first run with no matching target run is given.
    NeverAligned { example: DateTime<Utc> },
}

impl Clock {
    /// A key that is equal for clocks with the same runs, for memoizing alignments.
    pub fn key(&self) -> String {
        match self {
            Clock::Cron(cron, tz) => format!("cron {} {}", cron.pattern, tz.name()),
            Clock::Interval { start, period } => format!("every {} from {}", period.num_seconds(), start.timestamp()),
            Clock::Once(start) => format!("once {}", start.timestamp()),
        }
    }

    /// The clock of `schedule` in `tz`, with the pipeline's `start` if it has one.
    pub fn new(
        schedule: Option<&Schedule>,
        tz: Tz,
        start: Option<DateTime<Utc>>,
    ) -> Result<Option<Self>, Misalignment> {
        Ok(match schedule {
            None => None,
            Some(Schedule::Preset(Preset::Once)) => start.map(Clock::Once),
            Some(Schedule::Interval(every)) => {
                let start = start.ok_or(Misalignment::NoStartDate)?;
                Some(Clock::Interval { start, period: TimeDelta::seconds(every.as_secs() as i64) })
            }
            // Asset-triggered runs have no logical dates to line up with.
            Some(Schedule::Assets(_)) => None,
            Some(other) => {
                let expr = other.cron_expression().unwrap_or("* * * * *");
                let cron = parse_cron(expr).map_err(|_| Misalignment::TargetUnscheduled)?;
                Some(Clock::Cron(Box::new(cron), tz))
            }
        })
    }

    /// Whether a run has logical date `at`.
    pub fn runs_at(&self, at: DateTime<Utc>) -> bool {
        match self {
            Clock::Cron(cron, tz) => cron.is_time_matching(&at.with_timezone(tz)).unwrap_or(false),
            Clock::Interval { start, period } => {
                let since = at - *start;
                since >= TimeDelta::zero()
                    && since.num_seconds() % period.num_seconds().max(1) == 0
                    && since.subsec_nanos() == 0
            }
            Clock::Once(start) => at == *start,
        }
    }

    /// The first run at or after `at`.
    pub fn next_run(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Clock::Cron(cron, tz) => {
                cron.find_next_occurrence(&at.with_timezone(tz), true).ok().map(|t| t.with_timezone(&Utc))
            }
            Clock::Interval { start, period } => {
                if at <= *start {
                    return Some(*start);
                }
                let p = period.num_seconds().max(1);
                let steps = ((at - *start).num_seconds() + p - 1) / p;
                Some(*start + TimeDelta::seconds(steps * p))
            }
            Clock::Once(start) => (at <= *start).then_some(*start),
        }
    }

    /// The newest run at or before `at`: the logical date `fhirflow run` gives a scheduled
    /// pipeline started at `at`, as the scheduler would have. Looks back at most ten years.
    pub fn latest_run(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.runs_before(at, TimeDelta::days(3660), 1).into_iter().next()
    }

    /// Runs at or before `at`, newest first, going back no further than `window`.
    fn runs_before(&self, at: DateTime<Utc>, window: TimeDelta, limit: usize) -> Vec<DateTime<Utc>> {
        let floor = at - window;
        match self {
            Clock::Cron(cron, tz) => cron
                .iter_from(at.with_timezone(tz), croner::Direction::Backward)
                .map(|t| t.with_timezone(&Utc))
                .take_while(|t| *t >= floor)
                .take(limit)
                .collect(),
            Clock::Interval { start, period } => {
                if at < *start {
                    return Vec::new();
                }
                let p = period.num_seconds().max(1);
                let last = *start + TimeDelta::seconds((at - *start).num_seconds() / p * p);
                (0..limit as i64)
                    .map(|k| last - TimeDelta::seconds(k * p))
                    .take_while(|t| *t >= floor && *t >= *start)
                    .collect()
            }
            Clock::Once(start) => (*start <= at && *start >= floor).then_some(*start).into_iter().collect(),
        }
    }
}

/// Runs of `clock` sampled across a year from `anchor`: the first few after each week's start.
fn sample_runs(clock: &Clock, anchor: DateTime<Utc>) -> Vec<DateTime<Utc>> {
    let mut runs = Vec::new();
    for week in 0..53 {
        let mut at = anchor + TimeDelta::weeks(week);
        for _ in 0..24 {
            let Some(run) = clock.next_run(at) else { break };
            runs.push(run);
            at = run + TimeDelta::seconds(1);
        }
    }
    runs.sort();
    runs.dedup();
    runs
}

/// The `execution_delta` that makes a sensor on `waiter` find a run of `target`.
pub fn execution_delta(
    waiter: Option<&Clock>,
    target: Option<&Clock>,
    anchor: DateTime<Utc>,
) -> Result<TimeDelta, Misalignment> {
    let waiter = waiter.ok_or(Misalignment::WaiterUnscheduled)?;
    let target = match target {
        None | Some(Clock::Once(_)) => return Err(Misalignment::TargetUnscheduled),
        Some(t) => t,
    };
    let samples = sample_runs(waiter, anchor);
    let Some(first) = samples.iter().copied().find(|t| !target.runs_before(*t, TimeDelta::weeks(1), 1).is_empty())
    else {
        return Err(Misalignment::NeverAligned { example: samples.first().copied().unwrap_or(anchor) });
    };
    let mut worst_example = first;
    for candidate in target.runs_before(first, TimeDelta::weeks(1), 4000) {
        let delta = first - candidate;
        match samples.iter().copied().filter(|t| *t >= first).find(|t| !target.runs_at(*t - delta)) {
            None => return Ok(delta),
            Some(miss) => worst_example = worst_example.max(miss),
        }
    }
    Err(Misalignment::NeverAligned { example: worst_example })
}

/// Midnight, 1 January 2026 UTC: where sampling starts when no start date is given.
pub fn default_anchor() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).single().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cron(expr: &str) -> Clock {
        Clock::new(Some(&Schedule::parse(expr).unwrap()), Tz::UTC, None).unwrap().unwrap()
    }

    fn delta(waiter: &str, target: &str) -> Result<i64, Misalignment> {
        execution_delta(Some(&cron(waiter)), Some(&cron(target)), default_anchor()).map(|d| d.num_seconds())
    }

    #[test]
    fn seed_schedules_line_up_with_no_delta() {
        assert_eq!(delta("*/10 * * * *", "*/5 * * * *"), Ok(0));
        assert_eq!(delta("@daily", "@hourly"), Ok(0));
    }

    #[test]
    fn offset_schedules_get_a_delta() {
        assert_eq!(delta("0 2 * * *", "0 1 * * *"), Ok(3600));
        assert_eq!(delta("30 * * * *", "*/20 * * * *"), Ok(600));
    }

    #[test]
    fn schedules_that_never_meet_are_rejected() {
        assert!(matches!(delta("*/10 * * * *", "*/7 * * * *"), Err(Misalignment::NeverAligned { .. })));
        assert!(matches!(delta("0 2 * * *", "0 3 * * 1"), Err(Misalignment::NeverAligned { .. })));
    }

    #[test]
    fn dst_breaks_a_fixed_delta() {
        let paris: Tz = "Europe/Paris".parse().unwrap();
        let waiter = Clock::new(Some(&Schedule::parse("0 2 * * *").unwrap()), paris, None).unwrap().unwrap();
        let result = execution_delta(Some(&waiter), Some(&cron("0 0 * * *")), default_anchor());
        assert!(matches!(result, Err(Misalignment::NeverAligned { .. })), "{result:?}");
    }

    #[test]
    fn intervals_need_a_shared_phase() {
        let start = default_anchor();
        let every = |secs: u64| Clock::Interval { start, period: TimeDelta::seconds(secs as i64) };
        assert_eq!(execution_delta(Some(&every(60)), Some(&every(30)), start).map(|d| d.num_seconds()), Ok(0));
        let shifted = Clock::Interval { start: start + TimeDelta::seconds(7), period: TimeDelta::seconds(60) };
        assert_eq!(execution_delta(Some(&every(60)), Some(&shifted), start).map(|d| d.num_seconds()), Ok(53));
    }

    #[test]
    fn latest_run_is_the_newest_tick_at_or_before() {
        let at = |h, m, s| Utc.with_ymd_and_hms(2026, 1, 1, h, m, s).single().unwrap();
        assert_eq!(cron("*/5 * * * *").latest_run(at(0, 17, 30)), Some(at(0, 15, 0)));
        assert_eq!(cron("*/5 * * * *").latest_run(at(0, 15, 0)), Some(at(0, 15, 0)));
        let every = Clock::Interval { start: at(0, 0, 7), period: TimeDelta::seconds(60) };
        assert_eq!(every.latest_run(at(0, 3, 0)), Some(at(0, 2, 7)));
        assert_eq!(every.latest_run(at(0, 0, 0)), None);
    }

    #[test]
    fn unscheduled_ends_are_rejected() {
        assert_eq!(
            execution_delta(None, Some(&cron("@daily")), default_anchor()),
            Err(Misalignment::WaiterUnscheduled)
        );
        assert_eq!(
            execution_delta(Some(&cron("@daily")), None, default_anchor()),
            Err(Misalignment::TargetUnscheduled)
        );
    }
}

impl super::Lowering<'_> {
    /// The allowed, failed and skipped states of a sensor, its defaults filled in. Rejected: a
    /// state in two lists, a task state for a whole run, nothing allowed. Warned: a final state
    /// in no list, which leaves the sensor poking until its timeout.
    pub(super) fn sensor_states(&mut self, pointer: &str, sensor: &SensorStage) -> [Vec<AwaitedState>; 3] {
        let task = sensor.stage.is_some();
        let defaults = super::SensorTarget::default_states(task);
        let given = [sensor.allowed_states.as_ref(), sensor.failed_states.as_ref(), sensor.skipped_states.as_ref()];
        let names = ["allowed_states", "failed_states", "skipped_states"];
        // A default gives way to a state the spec puts in another list: `allowed_states:
        // [success, skipped]` alone means a skip satisfies the sensor.
        let chosen: Vec<AwaitedState> = given.iter().flatten().flat_map(|l| l.iter()).copied().collect();
        let lists: [Vec<AwaitedState>; 3] = std::array::from_fn(|k| match given[k] {
            Some(list) => {
                let mut list = list.clone();
                list.sort();
                list.dedup();
                list
            }
            None => defaults[k].iter().copied().filter(|s| !chosen.contains(s)).collect(),
        });
        for (k, name) in names.iter().enumerate() {
            let Some(list) = given[k] else { continue };
            for (i, state) in list.iter().enumerate() {
                if !task && !state.is_run_state() {
                    self.error(
                        Diagnostic::error("sensor-run-state", format!("a whole run never ends `{}`", state.as_str()))
                            .at(self.doc.span(&format!("{pointer}/{name}/{i}")), "a task state")
                            .help(
                                "a sensor without `stage:` waits for a DAG run, which ends `success` or `failed`; \
                                 name a stage to wait on task states",
                            ),
                    );
                }
                if let Some(other) = (k + 1..3).find(|&j| given[j].is_some_and(|l| l.contains(state))) {
                    self.error(
                        Diagnostic::error(
                            "sensor-states-overlap",
                            format!("`{}` is in both `{name}` and `{}`", state.as_str(), names[other]),
                        )
                        .at(self.doc.span(&format!("{pointer}/{name}/{i}")), "")
                        .help("a state can mean only one thing; keep it in one list"),
                    );
                }
            }
        }
        if lists[0].is_empty() {
            self.error(
                Diagnostic::error("sensor-never-satisfied", "the sensor allows no state, so it can never succeed")
                    .at(self.doc.span(&format!("{pointer}/allowed_states")), "empty")
                    .help("allow at least `success`"),
            );
        }
        let finals: Vec<AwaitedState> = AwaitedState::ALL.into_iter().filter(|s| task || s.is_run_state()).collect();
        let unhandled: Vec<&str> =
            finals.iter().filter(|s| !lists.iter().any(|l| l.contains(s))).map(|s| s.as_str()).collect();
        if !unhandled.is_empty() {
            let span = names
                .iter()
                .zip(given)
                .find(|(_, g)| g.is_some())
                .and_then(|(name, _)| self.doc.key_span(&format!("{pointer}/{name}")))
                .or_else(|| self.doc.key_span(pointer));
            self.error(
                Diagnostic::warning(
                    "sensor-waits-on-final-state",
                    format!(
                        "when the awaited {} ends {}, the sensor keeps poking until its {} timeout",
                        if task { "stage" } else { "run" },
                        unhandled.iter().map(|s| format!("`{s}`")).collect::<Vec<_>>().join(" or "),
                        sensor.timeout
                    ),
                )
                .at(span, "")
                .help("put each final state in `allowed_states`, `failed_states` or `skipped_states`"),
            );
        }
        lists
    }
}
