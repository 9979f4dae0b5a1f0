//! `${VAR}` and `${VAR:-default}` in spec values, resolved when fhirflow compiles.
//!
//! The one rule: `${...}` is fhirflow's, resolved from its environment at compile time and
//! written into the generated files; `{{ ... }}` is Airflow's, passed through untouched and
//! rendered at run time (`{{ var.value.x }}`, `{{ conn.x.password }}`). `$${` writes a literal
//! `${`, for a shell variable that bash should expand when the task runs.

use super::{Document, push_index, push_token};
use crate::diagnostic::Diagnostic;
use serde_json::Value;

/// Where variables come from: the process environment, or a map in tests.
pub trait Environment {
    /// The value of `name`, if set.
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
pub struct ProcessEnvironment;

impl Environment for ProcessEnvironment {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl<S: std::hash::BuildHasher> Environment for std::collections::HashMap<String, String, S> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

/// Why a string could not be interpolated.
#[derive(Debug, PartialEq, Eq)]
pub enum InterpolationError {
    /// `${NAME}` with `NAME` unset and no default.
    Unset(String),
    /// `${` with no closing `}`, or a name that is not a variable name.
    Malformed(String),
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Expands one string.
pub fn expand(text: &str, env: &dyn Environment) -> Result<String, InterpolationError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at..];
        if let Some(tail) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = tail;
        } else if let Some(tail) = after.strip_prefix("${") {
            let end = tail.find('}').ok_or_else(|| InterpolationError::Malformed(after.chars().take(40).collect()))?;
            let inner = &tail[..end];
            let (name, default) = match inner.split_once(":-") {
                Some((name, default)) => (name, Some(default)),
                None => (inner, None),
            };
            if !valid_name(name) {
                return Err(InterpolationError::Malformed(format!("${{{inner}}}")));
            }
            match (env.var(name).filter(|v| !v.is_empty() || default.is_none()), default) {
                (Some(value), _) => out.push_str(&value),
                (None, Some(default)) => out.push_str(default),
                (None, None) => return Err(InterpolationError::Unset(name.to_owned())),
            }
            rest = &tail[end + 1..];
        } else {
            out.push('$');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

impl Document {
    /// Expands `${...}` in every string value (never in keys). Problems are located errors.
    pub fn interpolate(&mut self, env: &dyn Environment) -> Vec<Diagnostic> {
        let mut value = std::mem::take(&mut self.value);
        let mut problems = Vec::new();
        self.walk(&mut value, &mut String::new(), env, &mut problems);
        self.value = value;
        problems
    }

    fn walk(&self, value: &mut Value, pointer: &mut String, env: &dyn Environment, problems: &mut Vec<Diagnostic>) {
        let depth = pointer.len();
        match value {
            Value::String(text) if text.contains('$') => match expand(text, env) {
                Ok(expanded) => *text = expanded,
                Err(InterpolationError::Unset(name)) => problems.push(
                    Diagnostic::error("unset-variable", format!("environment variable `{name}` is not set"))
                        .at(self.span(pointer), "used here")
                        .help(format!(
                            "export {name}, give a default with `${{{name}:-value}}`, or write `$${{{name}}}` for a variable the task's shell expands at run time"
                        )),
                ),
                Err(InterpolationError::Malformed(what)) => problems.push(
                    Diagnostic::error("bad-interpolation", format!("`{what}` is not a variable reference"))
                        .at(self.span(pointer), "")
                        .help("write `${NAME}` or `${NAME:-default}`; `$${` stands for a literal `${`"),
                ),
            },
            Value::Array(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    push_index(pointer, i);
                    self.walk(item, pointer, env, problems);
                    pointer.truncate(depth);
                }
            }
            Value::Object(map) => {
                for (key, item) in map.iter_mut() {
                    push_token(pointer, key);
                    self.walk(item, pointer, env, problems);
                    pointer.truncate(depth);
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env() -> HashMap<String, String> {
        HashMap::from([("BUCKET".to_owned(), "lake".to_owned()), ("EMPTY".to_owned(), String::new())])
    }

    #[test]
    fn expands_with_defaults_and_escapes() {
        assert_eq!(expand("s3://${BUCKET}/raw", &env()).unwrap(), "s3://lake/raw");
        assert_eq!(expand("${MISSING:-dev}", &env()).unwrap(), "dev");
        assert_eq!(expand("${EMPTY:-x}", &env()).unwrap(), "x");
        assert_eq!(expand("echo $${HOME} $1 {{ ds }}", &env()).unwrap(), "echo ${HOME} $1 {{ ds }}");
        assert_eq!(expand("cost $5", &env()).unwrap(), "cost $5");
    }

    proptest::proptest! {
        #[test]
        fn escaping_every_dollar_brace_gives_the_text_back(text in "[a-z${}:-]{0,24}") {
            proptest::prop_assert_eq!(expand(&text.replace("${", "$${"), &env()).unwrap(), text);
        }
    }

    #[test]
    fn reports_unset_and_malformed() {
        assert_eq!(expand("${NOPE}", &env()), Err(InterpolationError::Unset("NOPE".into())));
        assert!(matches!(expand("${BUCKET", &env()), Err(InterpolationError::Malformed(_))));
        assert!(matches!(expand("${1X}", &env()), Err(InterpolationError::Malformed(_))));
    }
}
