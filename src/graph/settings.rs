//! Task settings resolved through project → pipeline → stage, with where each came from.

use crate::spec::{DbtMode, Duration, EnvVarName, OperatorKind, PoolName, TaskSettings};
use serde::Serialize;

/// Which level of the spec a resolved setting came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// fhirflow's built-in default.
    Builtin,
    /// The spec's top-level `defaults`.
    Project,
    /// The pipeline's `defaults`.
    Pipeline,
    /// The stage itself.
    Stage,
}

/// A resolved value and its origin.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Resolved<T> {
    /// The value in force.
    pub value: T,
    /// Where it was set.
    pub origin: Origin,
}

/// Every task setting, resolved.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Settings {
    /// Task owner.
    pub owner: Resolved<String>,
    /// Retries after a failure.
    pub retries: Resolved<u32>,
    /// Wait between retries.
    pub retry_delay: Resolved<Duration>,
    /// Whether the wait doubles each time.
    pub retry_exponential_backoff: Resolved<bool>,
    /// Per-attempt time limit.
    pub execution_timeout: Resolved<Option<Duration>>,
    /// First logical date, as written.
    pub start_date: Resolved<Option<String>>,
    /// Time zone name.
    pub timezone: Resolved<String>,
    /// Whether failures send email.
    pub email_on_failure: Resolved<bool>,
    /// Where failure email goes.
    pub email: Resolved<Vec<String>>,
    /// The environment variable holding the failure webhook's URL.
    pub failure_webhook_env: Resolved<Option<EnvVarName>>,
    /// How a dbt build becomes tasks; `None` runs the command as written.
    pub dbt_mode: Resolved<Option<DbtMode>>,
    /// Where dbt tasks run.
    pub operator: Resolved<OperatorKind>,
    /// The Airflow pool named in the spec; `None` is Airflow's `default_pool`.
    pub pool: Resolved<Option<PoolName>>,
    /// Whether the previous run's instance must have succeeded or been skipped.
    pub depends_on_past: Resolved<bool>,
    /// Whether retries send email.
    pub email_on_retry: Resolved<bool>,
    /// The task's Markdown documentation.
    pub doc_md: Resolved<Option<String>>,
}

fn pick<T: Clone>(levels: [(&Option<T>, Origin); 3], builtin: T) -> Resolved<T> {
    for (value, origin) in levels.into_iter().rev() {
        if let Some(v) = value {
            return Resolved { value: v.clone(), origin };
        }
    }
    Resolved { value: builtin, origin: Origin::Builtin }
}

fn pick_opt<T: Clone>(levels: [(&Option<T>, Origin); 3]) -> Resolved<Option<T>> {
    for (value, origin) in levels.into_iter().rev() {
        if let Some(v) = value {
            return Resolved { value: Some(v.clone()), origin };
        }
    }
    Resolved { value: None, origin: Origin::Builtin }
}

impl Settings {
    /// Resolves a stage's settings; later levels win.
    pub fn resolve(project: &TaskSettings, pipeline: &TaskSettings, stage: &TaskSettings) -> Self {
        macro_rules! levels {
            ($field:ident) => {
                [
                    (&project.$field, Origin::Project),
                    (&pipeline.$field, Origin::Pipeline),
                    (&stage.$field, Origin::Stage),
                ]
            };
        }
        Settings {
            owner: pick(levels!(owner), "airflow".to_owned()),
            retries: pick(levels!(retries), 0),
            retry_delay: pick(levels!(retry_delay), Duration::from_secs(300)),
            retry_exponential_backoff: pick(levels!(retry_exponential_backoff), false),
            execution_timeout: pick_opt(levels!(execution_timeout)),
            start_date: pick_opt(levels!(start_date)),
            timezone: pick(levels!(timezone), "UTC".to_owned()),
            email_on_failure: pick(levels!(email_on_failure), false),
            email: pick(levels!(email), Vec::new()),
            failure_webhook_env: pick_opt(levels!(failure_webhook_env)),
            dbt_mode: pick_opt(levels!(dbt_mode)),
            operator: pick(levels!(operator), OperatorKind::Bash),
            pool: pick_opt(levels!(pool)),
            depends_on_past: pick(levels!(depends_on_past), false),
            // Airflow's default: a retry mails when failures do.
            email_on_retry: pick(levels!(email_on_retry), false),
            doc_md: pick_opt(levels!(doc_md)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_levels_win_and_origins_are_kept() {
        let project = TaskSettings { retries: Some(1), owner: Some("team".into()), ..Default::default() };
        let pipeline = TaskSettings { retries: Some(2), ..Default::default() };
        let stage = TaskSettings { retries: Some(3), ..Default::default() };
        let s = Settings::resolve(&project, &pipeline, &stage);
        assert_eq!(s.retries, Resolved { value: 3, origin: Origin::Stage });
        assert_eq!(s.owner, Resolved { value: "team".into(), origin: Origin::Project });
        assert_eq!(s.retry_delay.origin, Origin::Builtin);
    }
}
