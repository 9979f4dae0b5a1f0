//! `fhirflow validate --explain STAGE`: a stage's resolved settings and where each came from.

use super::{Origin, PipelineGraph, Settings, setting_pointer};
use crate::diagnostic::{Diagnostic, did_you_mean};
use crate::parse::Document;
use std::fmt::Write as _;

fn origin_name(origin: Origin, pipeline: &str) -> String {
    match origin {
        Origin::Builtin => "built-in default".to_owned(),
        Origin::Project => "project defaults".to_owned(),
        Origin::Pipeline => format!("pipeline `{pipeline}` defaults"),
        Origin::Stage => "the stage".to_owned(),
    }
}

/// Explains the stage named `selector` (`pipeline.stage`, or a stage id found in one pipeline only).
pub fn explain(graph: &PipelineGraph, doc: &Document, selector: &str) -> Result<String, Diagnostic> {
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
    let mut out = String::new();
    let _ = writeln!(out, "{pipeline_id}.{stage_id}");
    let _ = writeln!(out, "  tasks:    {}", tasks.iter().map(|t| t.id.as_str()).collect::<Vec<_>>().join(", "));
    let upstream: Vec<&str> = tasks
        .iter()
        .flat_map(|t| t.upstream.iter().map(String::as_str))
        .filter(|u| !tasks.iter().any(|t| t.id == *u))
        .collect();
    let _ = writeln!(out, "  upstream: {}", if upstream.is_empty() { "none".to_owned() } else { upstream.join(", ") });
    let _ = writeln!(out, "  settings:");
    let duration = |d: &Option<crate::spec::Duration>| d.map_or("none".to_owned(), |d| d.to_string());
    let rows: Vec<(&str, String, Origin)> = vec![
        ("owner", settings.owner.value.clone(), settings.owner.origin),
        ("retries", settings.retries.value.to_string(), settings.retries.origin),
        ("retry_delay", settings.retry_delay.value.to_string(), settings.retry_delay.origin),
        (
            "retry_exponential_backoff",
            settings.retry_exponential_backoff.value.to_string(),
            settings.retry_exponential_backoff.origin,
        ),
        ("execution_timeout", duration(&settings.execution_timeout.value), settings.execution_timeout.origin),
        ("start_date", settings.start_date.value.clone().unwrap_or_else(|| "none".into()), settings.start_date.origin),
        ("timezone", settings.timezone.value.clone(), settings.timezone.origin),
        ("email_on_failure", settings.email_on_failure.value.to_string(), settings.email_on_failure.origin),
        (
            "email",
            if settings.email.value.is_empty() { "none".to_owned() } else { settings.email.value.join(", ") },
            settings.email.origin,
        ),
        (
            "failure_webhook_env",
            settings.failure_webhook_env.value.as_ref().map_or_else(|| "none".to_owned(), |e| e.0.clone()),
            settings.failure_webhook_env.origin,
        ),
        ("dbt_mode", settings.dbt_mode.value.map_or("none", |m| m.as_str()).to_owned(), settings.dbt_mode.origin),
        ("operator", settings.operator.value.as_str().to_owned(), settings.operator.origin),
    ];
    for (name, value, origin) in rows {
        let pointer = setting_pointer(origin, &pipeline.id, Some(&stage), name);
        let place = match (origin, doc.key_span(&pointer)) {
            (Origin::Builtin, _) | (_, None) => String::new(),
            (_, Some(span)) => format!(" ({}:{}:{})", span.file.name, span.start.line, span.start.column),
        };
        let _ = writeln!(out, "    {name:<26} {value:<22} {}{place}", origin_name(origin, pipeline_id));
    }
    Ok(out)
}
