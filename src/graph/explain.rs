//! `fhirflow validate --explain STAGE`: a stage's resolved settings and where each came from.

use super::{Origin, PipelineGraph, Settings, setting_pointer};
use crate::diagnostic::{Diagnostic, did_you_mean};
use crate::parse::{Document, escape_pointer};
use serde_json::{Value, json};
use std::fmt::Write as _;

fn origin_name(origin: Origin, pipeline: &str) -> String {
    match origin {
        Origin::Builtin => "built-in default".to_owned(),
        Origin::Project => "project defaults".to_owned(),
        Origin::Pipeline => format!("pipeline `{pipeline}` defaults"),
        Origin::Stage => "the stage".to_owned(),
    }
}

/// A stage's resolved settings and where each came from, for text or JSON.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Explanation {
    /// `pipeline.stage`.
    pub stage: String,
    /// The stage's tasks.
    pub tasks: Vec<String>,
    /// Tasks outside the stage that it waits for.
    pub upstream: Vec<String>,
    /// Each setting, in the order the text shows them.
    pub settings: Vec<ExplainedSetting>,
}

/// One resolved setting of an [`Explanation`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct ExplainedSetting {
    /// The setting's key in the spec.
    pub name: &'static str,
    /// Its value (`null` when unset).
    pub value: serde_json::Value,
    /// Where the value comes from: `built-in default`, `project defaults`, …
    pub origin: String,
    /// Where in the spec it is written; none for a built-in default.
    pub location: Option<SettingLocation>,
}

/// A place in a spec file.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SettingLocation {
    /// The spec file.
    pub filename: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
}

impl Explanation {
    /// The text `validate --explain` prints.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "{}", self.stage);
        let _ = writeln!(out, "  tasks:    {}", self.tasks.join(", "));
        let upstream = if self.upstream.is_empty() { "none".to_owned() } else { self.upstream.join(", ") };
        let _ = writeln!(out, "  upstream: {upstream}");
        let _ = writeln!(out, "  settings:");
        for s in &self.settings {
            let value = match &s.value {
                serde_json::Value::Null => "none".to_owned(),
                serde_json::Value::String(text) => text.clone(),
                serde_json::Value::Array(items) if items.is_empty() => "none".to_owned(),
                serde_json::Value::Array(items) => items
                    .iter()
                    .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_owned))
                    .collect::<Vec<_>>()
                    .join(", "),
                other => other.to_string(),
            };
            let place =
                s.location.as_ref().map_or_else(String::new, |l| format!(" ({}:{}:{})", l.filename, l.line, l.column));
            let _ = writeln!(out, "    {:<26} {value:<22} {}{place}", s.name, s.origin);
        }
        out
    }
}

/// Explains the stage named `selector` (`pipeline.stage`, or a stage id found in one pipeline only).
pub fn explain(graph: &PipelineGraph, doc: &Document, selector: &str) -> Result<Explanation, Diagnostic> {
    let matches: Vec<(&str, &str)> = graph
        .pipelines
        .iter()
        .flat_map(|p| p.tasks.iter().map(move |t| (p.id.as_str(), t.stage.as_str())))
        .filter(|(p, s)| selector == *s || selector == format!("{p}.{s}"))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let (pipeline_id, stage_id) = match matches.as_slice() {
        [one] => *one,
        [] => {
            let names: Vec<String> = graph
                .pipelines
                .iter()
                .flat_map(|p| p.tasks.iter().map(move |t| format!("{}.{}", p.id, t.stage)))
                .collect();
            let mut d = Diagnostic::error("unknown-stage", format!("no stage `{selector}` to explain"));
            let bare: Vec<&str> = names.iter().map(|n| n.rsplit('.').next().unwrap_or(n)).collect();
            if let Some(guess) = did_you_mean(selector, names.iter().map(String::as_str).chain(bare)) {
                d = d.help(format!("did you mean `{guess}`?"));
            }
            return Err(d);
        }
        many => {
            let options: Vec<String> = many.iter().map(|(p, s)| format!("`{p}.{s}`")).collect();
            return Err(Diagnostic::error("ambiguous-stage", format!("`{selector}` is a stage of several pipelines"))
                .help(format!("name one of {}", options.join(", "))));
        }
    };
    let pipeline = graph.pipeline(pipeline_id).expect("matched above");
    let tasks: Vec<&super::Task> = pipeline.tasks.iter().filter(|t| t.stage.as_str() == stage_id).collect();
    let stage = tasks[0].stage.clone();
    let settings: &Settings = &tasks[0].settings;
    let upstream: Vec<String> =
        tasks.iter().flat_map(|t| t.upstream.iter()).filter(|u| !tasks.iter().any(|t| t.id == **u)).cloned().collect();
    let duration = |d: &Option<crate::spec::Duration>| d.map_or(Value::Null, |d| json!(d.to_string()));
    let rows: Vec<(&'static str, Value, Origin)> = vec![
        ("owner", json!(settings.owner.value), settings.owner.origin),
        ("retries", json!(settings.retries.value), settings.retries.origin),
        ("retry_delay", json!(settings.retry_delay.value.to_string()), settings.retry_delay.origin),
        (
            "retry_exponential_backoff",
            json!(settings.retry_exponential_backoff.value),
            settings.retry_exponential_backoff.origin,
        ),
        ("execution_timeout", duration(&settings.execution_timeout.value), settings.execution_timeout.origin),
        ("start_date", json!(settings.start_date.value), settings.start_date.origin),
        ("timezone", json!(settings.timezone.value), settings.timezone.origin),
        ("email_on_failure", json!(settings.email_on_failure.value), settings.email_on_failure.origin),
        ("email", json!(settings.email.value), settings.email.origin),
        (
            "failure_webhook_env",
            settings.failure_webhook_env.value.as_ref().map_or(Value::Null, |e| json!(e.0)),
            settings.failure_webhook_env.origin,
        ),
        ("dbt_mode", settings.dbt_mode.value.map_or(Value::Null, |m| json!(m.as_str())), settings.dbt_mode.origin),
        ("operator", json!(settings.operator.value.as_str()), settings.operator.origin),
        ("pool", settings.pool.value.as_ref().map_or(Value::Null, |p| json!(p.as_str())), settings.pool.origin),
        ("depends_on_past", json!(settings.depends_on_past.value), settings.depends_on_past.origin),
        ("email_on_retry", json!(settings.email_on_retry.value), settings.email_on_retry.origin),
        ("doc_md", json!(settings.doc_md.value), settings.doc_md.origin),
    ];
    let settings = rows
        .into_iter()
        .map(|(name, value, origin)| {
            // A pipeline's `start_date` may be written on the pipeline itself rather than in its defaults.
            let direct = origin == Origin::Pipeline
                && name == "start_date"
                && graph.spec.pipelines.get(&pipeline.id).is_some_and(|p| p.start_date.is_some());
            let pointer = if direct {
                format!("/pipelines/{}/start_date", escape_pointer(pipeline_id))
            } else {
                setting_pointer(origin, &pipeline.id, Some(&stage), name)
            };
            let location = match (origin, doc.key_span(&pointer)) {
                (Origin::Builtin, _) | (_, None) => None,
                (_, Some(span)) => Some(SettingLocation {
                    filename: span.file.name.clone(),
                    line: span.start.line,
                    column: span.start.column,
                }),
            };
            let origin_name =
                if direct { format!("pipeline `{pipeline_id}`") } else { origin_name(origin, pipeline_id) };
            ExplainedSetting { name, value, origin: origin_name, location }
        })
        .collect();
    Ok(Explanation {
        stage: format!("{pipeline_id}.{stage_id}"),
        tasks: tasks.iter().map(|t| t.id.clone()).collect(),
        upstream,
        settings,
    })
}
