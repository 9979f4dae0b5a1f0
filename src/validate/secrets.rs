//! Secrets do not belong in a spec: it is committed, reviewed in pull requests, and compiled
//! into DAG files. A secret-looking literal, or a `${VAR}` that would copy a secret into a
//! generated file, is an error that says how to reference the secret instead.

use crate::diagnostic::Diagnostic;
use crate::parse::{Document, escape_pointer};
use regex::Regex;
use serde_json::Value;
use std::sync::LazyLock;

/// Key names that hold secrets.
static SECRET_KEY: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)(passw(or)?d|secret|token|api[_-]?key|private[_-]?key|access[_-]?key|credential)").expect("valid")
});

/// Values that are secrets whatever their key.
static SECRET_VALUE: LazyLock<Vec<(&'static str, Regex)>> = LazyLock::new(|| {
    [
        ("an AWS access key id", r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"),
        ("a private key", r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
        ("a GitHub token", r"\bgh[pousr]_[A-Za-z0-9]{36,}\b"),
        ("a Slack token", r"\bxox[abprs]-[A-Za-z0-9-]{10,}"),
        ("a password inside a URL", r"[a-z][a-z0-9+.-]*://[^/\s:@{}]+:[^/\s@{}]+@"),
    ]
    .into_iter()
    .map(|(what, pattern)| (what, Regex::new(pattern).expect("valid")))
    .collect()
});

const HOW: &str = "reference it instead: in a command, `{{ conn.<conn_id>.password }}` or `{{ var.value.<name> }}` are rendered by Airflow at run time; for `fhirflow run`, name the environment variable under `connections.<name>.env`";

/// Checks the document as written (before `${...}` is expanded).
pub fn check(document: &Document) -> Vec<Diagnostic> {
    let mut problems = Vec::new();
    walk(document, &document.value, String::new(), None, &mut problems);
    problems
}

fn walk(document: &Document, value: &Value, pointer: String, key: Option<&str>, problems: &mut Vec<Diagnostic>) {
    match value {
        Value::String(text) => {
            // `connections.<name>.env` maps settings to variable *names*, and
            // `env_from_secrets` lists Kubernetes Secret *names*: neither holds a secret.
            let names_only = (pointer.starts_with("/connections/") && pointer.contains("/env/"))
                || pointer.contains("/env_from_secrets/");
            let runtime_only = text.trim_start().starts_with("{{") && text.trim_end().ends_with("}}");
            if let Some(key) = key.filter(|k| SECRET_KEY.is_match(k))
                && !names_only
                && !runtime_only
                && !text.is_empty()
            {
                let summary = if text.contains("${") {
                    format!("`{key}` would copy a secret from the environment into the generated files")
                } else {
                    format!("`{key}` holds a secret-looking literal")
                };
                problems.push(Diagnostic::error("secret-in-spec", summary).at(document.span(&pointer), "").help(HOW));
                return;
            }
            if let Some((what, _)) = SECRET_VALUE.iter().find(|(_, re)| re.is_match(text)) {
                problems.push(
                    Diagnostic::error("secret-in-spec", format!("this value contains {what}"))
                        .at(document.span(&pointer), "")
                        .help(HOW),
                );
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                walk(document, item, format!("{pointer}/{i}"), key, problems);
            }
        }
        Value::Object(map) => {
            for (k, item) in map {
                walk(document, item, format!("{pointer}/{}", escape_pointer(k)), Some(k), problems);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::SourceFile;

    fn found(text: &str) -> Vec<String> {
        let doc = Document::parse(SourceFile::new("t.yaml", text)).unwrap();
        check(&doc).into_iter().map(|d| d.summary).collect()
    }

    #[test]
    fn flags_literals_and_interpolated_secrets() {
        assert_eq!(found("env: {DB_PASSWORD: hunter2}"), ["`DB_PASSWORD` holds a secret-looking literal"]);
        assert_eq!(
            found("vars: {api_key: '${KEY}'}"),
            ["`api_key` would copy a secret from the environment into the generated files"]
        );
        assert_eq!(found("command: aws --key AKIAABCDEFGHIJKLMNOP"), ["this value contains an AWS access key id"]);
        assert_eq!(found("command: psql postgres://app:s3cret@db/x"), ["this value contains a password inside a URL"]);
    }

    #[test]
    fn allows_references() {
        assert!(found("dbt: {kubernetes: {image: x, env_from_secrets: [warehouse-creds]}}").is_empty());
        assert!(found("env: {DB_PASSWORD: '{{ conn.db.password }}'}").is_empty());
        assert!(found("connections: {w: {env: {password: SNOWFLAKE_PASSWORD}}}").is_empty());
        assert!(found("command: echo token count").is_empty());
    }
}
