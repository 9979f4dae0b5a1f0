//! Airflow templates in spec values. Airflow renders `{{ … }}`, `{% … %}` and `{# … #}` in every
//! string of an operator's templated fields when a task runs, after fhirflow has written the
//! file, so each value that reaches such a field is either a template on purpose or must hold
//! none:
//!
//! - templated values (a shell `command` and `env`, dbt `vars`, trigger `conf`, the dbt
//!   container's `env`) must parse as Jinja, or Airflow fails the task with a
//!   TemplateSyntaxError: checked here, at compile time (`bad-template`);
//! - paths that fhirflow quotes into shell commands and Python code (`dbt.project_dir`,
//!   `dbt.profiles_dir`, `dbt.deploy.*`, `dbt.docker.mounts`) may hold no template at all, since
//!   its output would reach bash unquoted (`template-not-allowed`).
//!
//! The emitter keeps the rest safe: a rendered value that fhirflow shell-quotes goes to bash
//! through an environment variable, never spliced into the command.

use crate::diagnostic::Diagnostic;
use crate::parse::{Document, escape_pointer};
use serde_json::Value;
use std::borrow::Cow;

/// Whether `text` holds anything Jinja would read as a template: `{{`, `{%` or `{#`.
pub fn has_template(text: &str) -> bool {
    // One pass for the three openers, each a `{` and one more byte.
    text.as_bytes().windows(2).any(|pair| pair[0] == b'{' && matches!(pair[1], b'{' | b'%' | b'#'))
}

/// The Jinja syntax error in `text`, if any, as Airflow would hit it when the task runs.
pub fn syntax_error(text: &str) -> Option<String> {
    if !has_template(text) {
        return None;
    }
    let env = minijinja::Environment::new();
    env.template_from_str(text).err().map(|e| {
        let detail = e.detail().map(|d| format!(": {d}")).unwrap_or_default();
        format!("{}{detail}", e.kind())
    })
}

/// How a spec value meets Airflow's templating.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    /// Rendered by Airflow on purpose: it must parse.
    Templated,
    /// Written into `--vars` as JSON text, which Airflow renders: its JSON form must parse.
    TemplatedJson,
    /// A path fhirflow quotes into code: no template at all.
    Plain,
    /// Never reaches a templated field, or its pattern allows no `{`.
    Unrendered,
}

/// The kind of field at `tokens` (the pointer's tokens, unescaped), in a stage of kind `kind`.
fn field(tokens: &[&str], kind: Option<&str>) -> Field {
    match tokens {
        ["pipelines", _, "stages", _, "command"] if kind == Some("shell") => Field::Templated,
        ["pipelines", _, "stages", _, "env", _] => Field::Templated,
        ["pipelines", _, "stages", _, "conf", ..] => Field::Templated,
        // PythonOperator renders `op_kwargs`, strings nested in lists and dicts too.
        ["pipelines", _, "stages", _, "kwargs", ..] if matches!(kind, Some("python" | "branch")) => Field::Templated,
        ["pipelines", _, "stages", _, "vars", ..] => Field::TemplatedJson,
        ["dbt", "docker" | "kubernetes", "env", _] => Field::Templated,
        ["dbt", "project_dir" | "profiles_dir"] | ["dbt", "deploy", _] | ["dbt", "docker", "mounts", _] => Field::Plain,
        _ => Field::Unrendered,
    }
}

/// Checks every string of the (interpolated) document where Airflow renders it.
pub fn check(document: &Document) -> Vec<Diagnostic> {
    let mut problems = Vec::new();
    walk(document, &document.value, &mut Vec::new(), None, &mut problems);
    problems
}

/// List indexes as pointer tokens, so that a walk allocates none for a short list.
const INDEXES: [&str; 16] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15"];

fn walk<'v>(
    document: &Document,
    value: &'v Value,
    path: &mut Vec<Cow<'v, str>>,
    kind: Option<&'v str>,
    problems: &mut Vec<Diagnostic>,
) {
    match value {
        Value::String(text) if has_template(text) => {
            let tokens: Vec<&str> = path.iter().map(|t| t.as_ref()).collect();
            let at = || {
                let pointer: String = tokens.iter().map(|t| format!("/{}", escape_pointer(t))).collect();
                document.span(&pointer)
            };
            let name = tokens.last().copied().unwrap_or("value");
            let field = field(&tokens, kind);
            match field {
                Field::Templated | Field::TemplatedJson => {
                    // In `--vars` the string is JSON-escaped before Airflow sees it.
                    let rendered = match field {
                        Field::TemplatedJson => serde_json::to_string(text).unwrap_or_default(),
                        _ => text.clone(),
                    };
                    if let Some(error) = syntax_error(&rendered) {
                        problems.push(
                            Diagnostic::error(
                                "bad-template",
                                format!("`{name}` is not a template Airflow can render ({error})"),
                            )
                            .at(at(), "Airflow renders this when the task runs")
                            .help(BAD_TEMPLATE_HELP),
                        );
                    }
                }
                Field::Plain => problems.push(
                    Diagnostic::error(
                        "template-not-allowed",
                        format!("`{name}` holds an Airflow template, which fhirflow cannot keep safe here"),
                    )
                    .at(at(), "a path that fhirflow quotes into the task's shell command")
                    .help(NOT_ALLOWED_HELP),
                ),
                Field::Unrendered => {}
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                path.push(INDEXES.get(i).map_or_else(|| Cow::Owned(i.to_string()), |t| Cow::Borrowed(*t)));
                walk(document, item, path, kind, problems);
                path.pop();
            }
        }
        Value::Object(map) => {
            // A stage's kind decides whether its `command` is a shell command.
            let stage = path.len() == 4 && path[0] == "pipelines" && path[2] == "stages";
            let kind = if stage { map.get("kind").and_then(Value::as_str) } else { kind };
            for (key, item) in map {
                path.push(Cow::Borrowed(key));
                walk(document, item, path, kind, problems);
                path.pop();
            }
        }
        _ => {}
    }
}

const BAD_TEMPLATE_HELP: &str = "write a literal `{{`, `{%` or `{#` as a Jinja string, such as `{{ '{#' }}`; inside `vars`, quote strings in a template with '…', since \"…\" is escaped in the JSON";

const NOT_ALLOWED_HELP: &str = "write the path itself; Airflow templates are rendered only in a shell stage's `command` and `env`, dbt `vars`, trigger `conf` and the dbt container's `env`";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_are_found_by_their_openers() {
        assert!(has_template("echo {{ ds }}") && has_template("{% if x %}") && has_template("${#x}"));
        assert!(!has_template("echo ${HOME} }} %} #}"));
    }

    fn codes(yaml: &str) -> Vec<&'static str> {
        let document = Document::parse(crate::source::SourceFile::new("p.yaml", yaml)).unwrap();
        check(&document).iter().map(|d| d.code).collect()
    }

    #[test]
    fn each_field_is_judged_by_what_airflow_does_with_it() {
        let stage = |s: &str| codes(&format!("version: 1\npipelines:\n  p:\n    stages:\n      a: {s}\n"));
        assert_eq!(stage("{kind: shell, command: 'echo {{ ds }}', env: {A: '{{ ds }}'}}"), Vec::<&str>::new());
        assert_eq!(stage("{kind: shell, command: 'echo ${#x}'}"), ["bad-template"]);
        // A dbt stage's `command` is a dbt command name, never rendered.
        assert_eq!(stage("{kind: dbt, command: '{#'}"), Vec::<&str>::new());
        assert_eq!(stage("{kind: dbt, command: run, vars: {a: [\"{{ 'x' }}\"]}}"), Vec::<&str>::new());
        assert_eq!(stage("{kind: dbt, command: run, vars: {a: '{{ \"x\" }}'}}"), ["bad-template"]);
        assert_eq!(stage("{kind: trigger, pipeline: q, conf: {a: '{% if %}'}}"), ["bad-template"]);
        let dbt = |s: &str| codes(&format!("version: 1\ndbt: {s}\npipelines: {{}}\n"));
        assert_eq!(dbt("{project_dir: 'd{{x}}', deploy: {project_dir: '/{#'}}"), ["template-not-allowed"; 2]);
        assert_eq!(
            dbt("{project_dir: d, docker: {image: i, mounts: ['/{{ a }}:/b'], env: {E: '{{ ds }}'}}}"),
            ["template-not-allowed"]
        );
    }

    #[test]
    fn syntax_errors_are_those_jinja_reports() {
        assert_eq!(syntax_error("echo {{ ds }} {% if dag_run %}x{% endif %}"), None);
        assert!(syntax_error("echo ${#x}").is_some());
        assert!(syntax_error("{% if %}").is_some());
        assert!(syntax_error(&serde_json::to_string("{{ \"x\" }}").unwrap()).is_some());
    }
}
