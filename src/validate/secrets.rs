//! Secrets do not belong in a spec: it is committed, reviewed in pull requests, and compiled
//! into DAG files. A secret-looking literal, or a `${VAR}` that would copy a secret into a
//! generated file, is an error that says how to reference the secret instead.
//!
//! Values are checked twice: as written, and with `${VAR}` expanded, since a variable's value
//! reaches the generated files as surely as a literal does. Messages name the variable and
//! where it is used, never the value.

use crate::diagnostic::Diagnostic;
use crate::parse::interpolate::{Environment, expand};
use crate::parse::{Document, push_index, push_token};
use crate::source::Span;
use regex::{Regex, RegexSet};
use serde_json::Value;
use std::cell::RefCell;
use std::sync::LazyLock;

/// Key names that hold secrets.
static SECRET_KEY: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)(passw(or)?d|secret|token|api[_-]?key|private[_-]?key|access[_-]?key|credential|(^|[_-])pass([_-]|$)|[_-]pwd([_-]|$))",
    )
    .expect("valid")
});

/// One kind of secret value. When the pattern has a group `v`, that group is the secret, and a
/// `$` or `{{` there is a reference resolved at run time (`$PGPASSWORD`, `{{ conn.x.password }}`),
/// not a secret.
struct SecretPattern {
    what: &'static str,
    pattern: Regex,
}

/// Values that are secrets whatever their key.
static SECRET_VALUE: LazyLock<Vec<SecretPattern>> = LazyLock::new(|| {
    [
        ("an AWS access key id", r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"),
        (
            "an AWS secret access key",
            r#"(?i)aws_secret_access_key["']?\s*[:=\s]\s*["']?(?P<v>[A-Za-z0-9/+=]{40})(?:[^A-Za-z0-9/+=]|$)"#,
        ),
        ("a private key", r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
        // The DER of a private key starts with its version, 0 or 1, right after the outer
        // SEQUENCE; public keys and certificates start with another SEQUENCE.
        (
            "a private key",
            r"\b(?:MII[A-Za-z0-9+/]{2}[AQgw]IBA[AD]|MIG[A-Za-z0-9+/]AgE[AB]|M[A-Za-z0-9+/]{2}CAQ[AE]|b3BlbnNzaC1rZXktdjE)[A-Za-z0-9+/]{20,}",
        ),
        ("a GitHub token", r"\bgh[pousr]_[A-Za-z0-9]{36,}\b"),
        ("a Slack token", r"\bxox[abprs]-[A-Za-z0-9-]{10,}"),
        ("a JSON Web Token", r"\beyJ[A-Za-z0-9_-]{2,}\.eyJ[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]*"),
        // A password may hold `/`; `http://host:8080/path@x` is a port and a path, not one.
        (
            "a password inside a URL",
            r"[a-z][a-z0-9+.-]*://[^/\s:@{}]+:(?P<v>[^\s@{}/]+|(?:[^\s@{}/]*[^\s@{}/0-9][^\s@{}/]*)?/[^\s@{}]*)@",
        ),
        ("a password option", r#"--[a-z-]*(?:password|passwd|secret|token)=["']?(?P<v>[^\s'"]+)"#),
        (
            "a password variable",
            r#"\b(?P<n>(?:[A-Z0-9]+_)*(?:[A-Z0-9]*PASSWORD|PASSWD|PASS|PWD|SECRET|TOKEN|API_KEY)(?:_[A-Z0-9]+)*)=["']?(?P<v>[^\s'"]+)"#,
        ),
    ]
    .into_iter()
    .map(|(what, pattern)| SecretPattern { what, pattern: Regex::new(pattern).expect("valid") })
    .collect()
});

impl SecretPattern {
    /// Whether `text` holds a secret of this kind.
    fn found_in(&self, text: &str) -> bool {
        self.pattern.captures_iter(text).any(|c| {
            // `PWD=` sets the shell's working folder, not a password.
            let working_dir = c.name("n").is_some_and(|n| n.as_str() == "PWD");
            let reference = c.name("v").is_some_and(|v| v.as_str().starts_with('$') || v.as_str().starts_with("{{"));
            !working_dir && !reference
        })
    }
}

/// Every [`SECRET_VALUE`] pattern in one automaton: a single pass over a value rules out all of
/// them for the many values that match none.
static ANY_SECRET_VALUE: LazyLock<RegexSet> =
    LazyLock::new(|| RegexSet::new(SECRET_VALUE.iter().map(|p| p.pattern.as_str())).expect("valid"));

/// What secret `text` holds, if any.
fn secret_in(text: &str) -> Option<&'static str> {
    let candidates = ANY_SECRET_VALUE.matches(text);
    if !candidates.matched_any() {
        return None;
    }
    SECRET_VALUE.iter().enumerate().find(|(i, p)| candidates.matched(*i) && p.found_in(text)).map(|(_, p)| p.what)
}

const HOW: &str = "reference it instead: in a command, `{{ conn.<conn_id>.password }}` or `{{ var.value.<name> }}` are rendered by Airflow at run time; for `fhirflow run`, name the environment variable under `connections.<name>.env`";

/// Checks the document as written (before `${...}` is expanded), and each value that uses
/// `${...}` as `env` would expand it.
pub fn check(document: &Document, env: &dyn Environment) -> Vec<Diagnostic> {
    let mut problems = Vec::new();
    walk(document, env, &document.value, &mut String::new(), None, &mut problems);
    problems
}

fn walk(
    document: &Document,
    env: &dyn Environment,
    value: &Value,
    pointer: &mut String,
    key: Option<&str>,
    problems: &mut Vec<Diagnostic>,
) {
    let depth = pointer.len();
    match value {
        Value::String(text) => {
            // `connections.<name>.env` maps settings to variable *names*, and
            // `env_from_secrets` lists Kubernetes Secret *names*: neither holds a secret. Asked
            // only of a secret's key, as searching the pointer costs more than the key's check.
            let names_only = || {
                (pointer.starts_with("/connections/") && pointer.contains("/env/"))
                    || pointer.contains("/env_from_secrets/")
            };
            let runtime_only = || text.trim_start().starts_with("{{") && text.trim_end().ends_with("}}");
            if let Some(key) = key.filter(|k| SECRET_KEY.is_match(k))
                && !text.is_empty()
                && !names_only()
                && !runtime_only()
            {
                let summary = if text.contains("${") {
                    format!("`{key}` would copy a secret from the environment into the generated files")
                } else {
                    format!("`{key}` holds a secret-looking literal")
                };
                problems.push(Diagnostic::error("secret-in-spec", summary).at(document.span(pointer), "").help(HOW));
                return;
            }
            if let Some(what) = secret_in(text) {
                problems.push(
                    Diagnostic::error("secret-in-spec", format!("this value contains {what}"))
                        .at(document.span(pointer), "")
                        .help(HOW),
                );
                return;
            }
            if text.contains("${") {
                problems.extend(expanded_secrets(document, env, text, pointer));
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                push_index(pointer, i);
                walk(document, env, item, pointer, key, problems);
                pointer.truncate(depth);
            }
        }
        Value::Object(map) => {
            for (k, item) in map {
                push_token(pointer, k);
                walk(document, env, item, pointer, Some(k), problems);
                pointer.truncate(depth);
            }
        }
        _ => {}
    }
}

/// The environment, recording which variables were asked for.
struct Recording<'a> {
    env: &'a dyn Environment,
    names: RefCell<Vec<String>>,
}

impl Environment for Recording<'_> {
    fn var(&self, name: &str) -> Option<String> {
        let mut names = self.names.borrow_mut();
        if !names.iter().any(|n| n == name) {
            names.push(name.to_owned());
        }
        self.env.var(name)
    }
}

/// The environment with every variable but `name` standing in as a run-time reference, which
/// no pattern takes for a secret: expanding with it shows what `name` alone contributes.
struct Only<'a> {
    env: &'a dyn Environment,
    name: &'a str,
}

impl Environment for Only<'_> {
    fn var(&self, name: &str) -> Option<String> {
        if name == self.name { self.env.var(name) } else { Some("$X".to_owned()) }
    }
}

/// Errors for the variables whose values make `text` (at `pointer`) hold a secret once expanded.
fn expanded_secrets(document: &Document, env: &dyn Environment, text: &str, pointer: &str) -> Vec<Diagnostic> {
    let recording = Recording { env, names: RefCell::new(Vec::new()) };
    // An unset or malformed reference is reported by interpolation.
    let Ok(expanded) = expand(text, &recording) else { return Vec::new() };
    let Some(what) = secret_in(&expanded) else { return Vec::new() };
    let names = recording.names.into_inner();
    let alone: Vec<(&str, &'static str)> = names
        .iter()
        .filter_map(|name| {
            let only = expand(text, &Only { env, name }).ok()?;
            secret_in(&only).map(|what| (name.as_str(), what))
        })
        .collect();
    // A secret that only the variables together make is blamed on all of them.
    let culprits = if alone.is_empty() { names.iter().map(|n| (n.as_str(), what)).collect() } else { alone };
    culprits
        .into_iter()
        .map(|(name, what)| {
            Diagnostic::error(
                "secret-from-variable",
                format!("`${{{name}}}` would write {what} from the environment into the generated files"),
            )
            .at(reference_span(document, pointer, name), "expanded here, at compile time")
            .help(format!("{HOW}; or write `$${{{name}}}`, which the task's shell expands when it runs"))
        })
        .collect()
}

/// The `${name…}` in the value at `pointer` where it is written (or, for a merged value, where
/// it is defined), else the whole value.
fn reference_span(document: &Document, pointer: &str, name: &str) -> Option<Span> {
    let value = document.span(pointer);
    let needle = format!("${{{name}");
    for span in value.iter().chain(document.defined_span(pointer).iter()) {
        let source = &span.file.text;
        let (start, end) = (span.start.byte, span.end.byte.min(source.len()));
        let Some(written) = source.get(start..end) else { continue };
        // `${name}` or `${name:-…}`, but not `${names}` or the escaped `$${name}`.
        let found = written.match_indices(&needle).map(|(at, _)| at).find(|&at| {
            let next = written[at + needle.len()..].chars().next();
            matches!(next, Some('}' | ':')) && !written[..at].ends_with('$')
        });
        if let Some(at) = found {
            let len = written[at..].find('}').map_or(needle.len(), |close| close + 1);
            return Some(Span::at(&span.file, start + at, len));
        }
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::SourceFile;
    use std::collections::HashMap;

    const AWS_SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

    fn found_with(text: &str, vars: &[(&str, &str)]) -> Vec<String> {
        let env: HashMap<String, String> = vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        let doc = Document::parse(SourceFile::new("t.yaml", text)).unwrap();
        check(&doc, &env).into_iter().map(|d| d.summary).collect()
    }

    fn found(text: &str) -> Vec<String> {
        found_with(text, &[])
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
    fn flags_each_kind_of_secret_literal() {
        let aws_secret = format!("command: aws configure set aws_secret_access_key {AWS_SECRET}");
        let exported = format!("command: export AWS_SECRET_ACCESS_KEY={AWS_SECRET}");
        let cases: &[(&str, &str)] = &[
            ("env: {DB_PASS: hunter2}", "`DB_PASS` holds a secret-looking literal"),
            ("env: {MYSQL_PWD: hunter2}", "`MYSQL_PWD` holds a secret-looking literal"),
            ("env: {pass: hunter2}", "`pass` holds a secret-looking literal"),
            ("command: mysql --password=hunter2 shop", "this value contains a password option"),
            ("command: \"mysql --password='hunter2' shop\"", "this value contains a password option"),
            ("command: app --client-secret=abc123", "this value contains a password option"),
            ("command: PGPASSWORD=hunter2 psql -h db", "this value contains a password variable"),
            ("command: MYSQL_PWD=hunter2 mysql", "this value contains a password variable"),
            ("command: DB_PASS=hunter2 ./load.sh", "this value contains a password variable"),
            (&aws_secret, "this value contains an AWS secret access key"),
            (&exported, "this value contains an AWS secret access key"),
            (
                "command: echo MIIEvAIBADANBgkqhkiG9w0BAQEFAASCBKYwggSiAgEAAoIBAQC7 > key.pem",
                "this value contains a private key",
            ),
            (
                "key_file: |\n  MIIEowIBAAKCAQEA4kDy1cMJ/HknzeaxOLErQyV1abcdefgh\n  bXlrZXk=\n",
                "this value contains a private key",
            ),
            ("x: MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0w", "this value contains a private key"),
            ("x: MHcCAQEEIM8ghSoKfZ1RZWms/zBCRREIcvSF2uOZ", "this value contains a private key"),
            ("x: MC4CAQAwBQYDK2VwBCIEIFtsWlXA6AXtRKjhKfsa", "this value contains a private key"),
            ("x: b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9u", "this value contains a private key"),
            (
                "command: \"curl -H 'Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl' api\"",
                "this value contains a JSON Web Token",
            ),
            ("command: psql postgres://u:pa/ss@host/db", "this value contains a password inside a URL"),
            ("command: psql 'postgres://u:p@ss@host/db'", "this value contains a password inside a URL"),
        ];
        for (text, summary) in cases {
            assert_eq!(found(text), [*summary], "{text}");
        }
    }

    /// The one-pass prefilter finds what trying every pattern in turn finds, on every value of
    /// these tests and on the values a 10,000-stage spec is made of.
    #[test]
    fn the_prefilter_finds_what_each_pattern_finds() {
        let texts = [
            "AKIAABCDEFGHIJKLMNOP",
            &format!("aws configure set aws_secret_access_key {AWS_SECRET}"),
            &format!("export AWS_SECRET_ACCESS_KEY={AWS_SECRET}"),
            "-----BEGIN RSA PRIVATE KEY-----",
            "echo MIIEvAIBADANBgkqhkiG9w0BAQEFAASCBKYwggSiAgEAAoIBAQC7 > key.pem",
            "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKC",
            "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
            "xoxb-1234567890-abcdef",
            "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl",
            "psql postgres://u:pa/ss@host/db",
            "curl http://example.com:8080/users/@me",
            "mysql --password=hunter2 shop",
            "mysql --password={{ conn.db.password }}",
            "PGPASSWORD=$PGPASSWORD psql",
            "cd /srv && PWD=/srv make",
            "PGPASSWORD=hunter2 TOKEN=x psql",
            "python -m extract --batch 10\n--since '{{ data_interval_start }}'",
            "tag:staging",
            "RAW.BATCH_001",
            "",
        ];
        for text in texts {
            let each = SECRET_VALUE.iter().find(|p| p.found_in(text)).map(|p| p.what);
            assert_eq!(secret_in(text), each, "{text}");
        }
    }

    /// Keys that need escaping in a pointer still locate their value.
    #[test]
    fn locates_secrets_under_keys_with_slashes_and_tildes() {
        let text = "x:\n  a/b:\n    - ok\n    - c~d: {DB_PASSWORD: hunter2}\n";
        let doc = Document::parse(SourceFile::new("t.yaml", text)).unwrap();
        let problems = check(&doc, &HashMap::new());
        assert_eq!(problems.len(), 1);
        let at = &problems[0].primary.as_ref().unwrap().span.start;
        assert_eq!((at.line, at.column), (4, 26));
    }

    #[test]
    fn allows_references() {
        let cases = [
            "dbt: {kubernetes: {image: x, env_from_secrets: [warehouse-creds]}}",
            "env: {DB_PASSWORD: '{{ conn.db.password }}'}",
            "connections: {w: {env: {password: SNOWFLAKE_PASSWORD}}}",
            "connections: {w: {env: {password: '${SNOWFLAKE_PASSWORD_VAR:-SNOWFLAKE_PASSWORD}'}}}",
            "command: echo token count",
            "command: 'PGPASSWORD=$PGPASSWORD psql'",
            "command: 'PGPASSWORD=$${PGPASSWORD} psql -h db'",
            "command: 'mysql --password=\"$MYSQL_PWD\"'",
            "command: 'mysql --password={{ conn.db.password }}'",
            "command: 'psql postgres://app:$PGPASS@db/x'",
            "command: echo $${SNOWFLAKE_PASSWORD}",
            "command: cd /srv && PWD=/srv make",
            "command: BYPASS_CACHE=1 PASSTHROUGH=yes MAX_TOKENS=5 make",
            "command: curl http://example.com:8080/users/@me",
            "command: psql postgres://app@db/x",
            "command: git clone ssh://git@github.com/org/repo.git",
            "x: MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKC",
            "x: MIIC+TCCAeGgAwIBAgIUE7vwPQTwW9KHVR+Ckju5",
            "x: MCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE",
            "command: echo eyJhbGciOiJIUzI1NiJ9",
            "command: aws configure set aws_secret_access_key '{{ var.value.aws_secret }}'",
            "command: mysql --password shop",
        ];
        for text in cases {
            assert!(found(text).is_empty(), "{text}: {:?}", found(text));
        }
    }

    #[test]
    fn flags_secrets_that_variables_bring_in() {
        let key = "AKIAABCDEFGHIJKLMNOP";
        /// A value, the environment, and the errors expected.
        type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a [&'a str]);
        let cases: &[Case<'_>] = &[
            (
                "command: aws --key ${KEY}",
                &[("KEY", key)],
                &["`${KEY}` would write an AWS access key id from the environment into the generated files"],
            ),
            (
                "command: psql postgres://app:${PW}@db/x",
                &[("PW", "s3cret")],
                &["`${PW}` would write a password inside a URL from the environment into the generated files"],
            ),
            (
                "command: psql postgres://${U}:${P}@db",
                &[("U", "app"), ("P", "pa/ss")],
                &["`${P}` would write a password inside a URL from the environment into the generated files"],
            ),
            (
                "command: mysql --password=${PW:-x}",
                &[("PW", "hunter2")],
                &["`${PW}` would write a password option from the environment into the generated files"],
            ),
            (
                "command: ${CMD}",
                &[("CMD", "PGPASSWORD=hunter2 psql")],
                &["`${CMD}` would write a password variable from the environment into the generated files"],
            ),
            (
                "command: 'echo ${A}${B}'",
                &[("A", "AKIAABCDEFGH"), ("B", "IJKLMNOP")],
                &[
                    "`${A}` would write an AWS access key id from the environment into the generated files",
                    "`${B}` would write an AWS access key id from the environment into the generated files",
                ],
            ),
            ("command: aws s3 sync s3://${BUCKET}/raw .", &[("BUCKET", "lake")], &[]),
            ("command: 'PGPASSWORD=$${PGPASSWORD} psql'", &[("PGPASSWORD", "hunter2")], &[]),
            ("command: echo ${UNSET}", &[], &[]),
        ];
        for (text, vars, expected) in cases {
            assert_eq!(found_with(text, vars), *expected, "{text}");
        }
    }

    #[test]
    fn points_at_the_reference_and_never_shows_the_value() {
        let text = "pipelines:\n  p:\n    stages:\n      a: {command: 'aws --key ${KEY} --region ${REGION}'}\n";
        let env = HashMap::from([
            ("KEY".to_owned(), "AKIAABCDEFGHIJKLMNOP".to_owned()),
            ("REGION".to_owned(), "eu".to_owned()),
        ]);
        let doc = Document::parse(SourceFile::new("t.yaml", text)).unwrap();
        let problems = check(&doc, &env);
        assert_eq!(problems.len(), 1);
        let span = &problems[0].primary.as_ref().unwrap().span;
        assert_eq!((span.start.line, span.start.column, span.end.column), (4, 31, 37));
        assert_eq!(problems[0].code, "secret-from-variable");
        let rendered = problems[0].render();
        assert!(!rendered.contains("AKIA"), "{rendered}");
    }
}
