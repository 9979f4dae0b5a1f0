//! Airflow's `{{ ... }}` templates, rendered with the values a run knows.
//!
//! A BashOperator's command and environment, and a dbt task's `--vars`, are Jinja templates that
//! Airflow renders at run time. `fhirflow run` renders the same values with the macros that depend only on the run (`ds`, `ts`,
//! `run_id`, …). Anything that needs Airflow itself (`var`, `conn`, `macros`) is an error that
//! fails the task, rather than a command run with a hole in it.

use chrono::{DateTime, Utc};
use minijinja::{Environment, UndefinedBehavior, context};

/// What a template can refer to.
#[derive(Debug, Clone)]
pub struct TemplateValues<'a> {
    /// The pipeline's logical date in this run.
    pub logical_date: DateTime<Utc>,
    /// The run id.
    pub run_id: &'a str,
    /// The pipeline id (`dag.dag_id`).
    pub pipeline: &'a str,
    /// The task id (`task.task_id`).
    pub task: &'a str,
    /// The attempt, from 1 (`ti.try_number`).
    pub try_number: u32,
}

/// The names a template may use, for the error message.
const KNOWN: &str = "ds, ds_nodash, ts, ts_nodash, ts_nodash_with_tz, logical_date, data_interval_start, \
                     data_interval_end, run_id, dag.dag_id, dag_run.run_id, task.task_id, ti.try_number";

/// Renders `command` (or any templated value); text without `{{`, `{%` or `{#` is returned as it is.
pub fn render(command: &str, values: &TemplateValues<'_>) -> Result<String, String> {
    if !crate::validate::templates::has_template(command) {
        return Ok(command.to_owned());
    }
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    let date = values.logical_date;
    let ts = date.format("%Y-%m-%dT%H:%M:%S+00:00").to_string();
    let ctx = context! {
        ds => date.format("%Y-%m-%d").to_string(),
        ds_nodash => date.format("%Y%m%d").to_string(),
        ts => ts.clone(),
        ts_nodash => date.format("%Y%m%dT%H%M%S").to_string(),
        ts_nodash_with_tz => date.format("%Y%m%dT%H%M%S+0000").to_string(),
        logical_date => ts.clone(),
        data_interval_start => ts.clone(),
        data_interval_end => ts,
        run_id => values.run_id,
        dag => context! { dag_id => values.pipeline },
        dag_run => context! { run_id => values.run_id },
        task => context! { task_id => values.task },
        ti => context! { try_number => values.try_number },
    };
    env.render_str(command, ctx).map_err(|e| {
        let detail = e.detail().map(|d| format!(": {d}")).unwrap_or_default();
        format!("cannot render a template of the task ({}{detail}); `fhirflow run` knows {KNOWN}", e.kind())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values() -> TemplateValues<'static> {
        TemplateValues {
            logical_date: DateTime::parse_from_rfc3339("2026-03-04T05:06:07Z").unwrap().with_timezone(&Utc),
            run_id: "r1",
            pipeline: "p",
            task: "t",
            try_number: 2,
        }
    }

    #[test]
    fn renders_the_run_macros() {
        let out = render(
            "echo {{ ds }} {{ ds_nodash }} {{ ts }} {{ dag.dag_id }}.{{ task.task_id }} {{ ti.try_number }}",
            &values(),
        );
        assert_eq!(out.unwrap(), "echo 2026-03-04 20260304 2026-03-04T05:06:07+00:00 p.t 2");
    }

    #[test]
    fn plain_commands_and_shell_syntax_pass_through() {
        assert_eq!(render("echo ${HOME} $((1+2)) }}", &values()).unwrap(), "echo ${HOME} $((1+2)) }}");
    }

    #[test]
    fn airflow_only_values_are_errors() {
        let error = render("echo {{ var.value.batch }}", &values()).unwrap_err();
        assert!(error.contains("fhirflow run` knows ds"), "{error}");
    }
}
