//! Validation: the JSON Schema check of a parsed document, then the typed read of the spec.
//!
//! Every schema error is turned into a located diagnostic phrased for people
//! (`retries must be ≥ 0, got -1`), and all of them are reported in one run.

pub mod reference;
pub mod schema;
pub mod secrets;
pub mod templates;

use crate::diagnostic::{Diagnostic, Diagnostics, did_you_mean};
use crate::parse::{Document, escape_pointer};
use crate::spec::Spec;
use jsonschema::error::{TypeKind, ValidationErrorKind};
use serde::Deserialize as _;
use serde_json::Value;

/// Checks `document` against the schema and reads it as a [`Spec`].
pub fn check(document: &Document) -> Result<Spec, Diagnostics> {
    match check_partial(document) {
        (Some(spec), diagnostics) if !diagnostics.has_errors() => Ok(spec),
        (_, diagnostics) => Err(diagnostics),
    }
}

/// Like [`check`], but when the only errors are values the typed read rejects (such as
/// `schedule: "@dayly"`), also returns the spec read without them, so that the graph can still
/// be lowered and its own errors reported in the same run.
pub fn check_partial(document: &Document) -> (Option<Spec>, Diagnostics) {
    let mut found = Vec::new();
    // Valid documents are the common case; collecting errors costs more than a yes/no check.
    let errors = if schema::validator().is_valid(&document.value) {
        Vec::new()
    } else {
        schema::validator().iter_errors(&document.value).collect()
    };
    let bad: Vec<String> = errors.iter().map(|e| e.instance_path().as_str().to_owned()).collect();
    for error in errors {
        let described = describe(document, &error);
        // A value merged in with `<<: *anchor` is shown where it is used and where it is written.
        match document.defined_span(error.instance_path().as_str()) {
            Some(defined) => {
                found.extend(described.into_iter().map(|d| d.also(Some(defined.clone()), "the value comes from here")))
            }
            None => found.extend(described),
        }
    }
    // A key with an invalid name is also "unexpected" to the map; one report is enough.
    let bad_names: Vec<usize> = found
        .iter()
        .filter(|d| d.code == "invalid-name")
        .filter_map(|d| d.primary.as_ref().map(|l| l.span.start.byte))
        .collect();
    found.retain(|d| {
        d.code != "unknown-key" || !d.primary.as_ref().is_some_and(|l| bad_names.contains(&l.span.start.byte))
    });
    let mut diagnostics = Diagnostics::new();
    if found.iter().any(|d| d.severity == crate::diagnostic::Severity::Error) {
        diagnostics.extend(found);
        diagnostics.extend(values_beside_schema_errors(document, &bad));
        return (None, diagnostics);
    }
    diagnostics.extend(found);
    // Read the tree in place; copy it only to drop top-level `x-*` anchor keys.
    let has_extensions = document.value.as_object().is_some_and(|root| root.keys().any(|k| k.starts_with("x-")));
    let stripped;
    let value = if has_extensions {
        let mut copy = document.value.clone();
        strip_extensions(&mut copy);
        stripped = copy;
        &stripped
    } else {
        &document.value
    };
    // The path-tracking reader is only needed to locate an error, so it runs only after a failure.
    if let Ok(spec) = Spec::deserialize(value) {
        return (Some(spec), diagnostics);
    }
    read_leaving_out_bad_values(document, value.clone(), diagnostics)
}

/// The typed read's own errors (a schedule preset, a time zone, a duration) in the parts of a
/// spec that the schema accepted, so that one bad stage does not hide a bad schedule. Each
/// stage with a schema error is read as absent, and any other value with one as well; nothing
/// is lowered, so no reference to a stage left out is reported.
fn values_beside_schema_errors(document: &Document, bad: &[String]) -> Vec<Diagnostic> {
    let mut value = document.value.clone();
    strip_extensions(&mut value);
    let mut removed: Vec<String> = Vec::new();
    for pointer in bad {
        // The stage holding the error goes as a whole: its kind decides what its keys mean.
        let parts: Vec<&str> = pointer.split('/').collect();
        let target = if parts.len() >= 5 && parts[1] == "pipelines" && parts[3] == "stages" {
            parts[..5].join("/")
        } else {
            pointer.clone()
        };
        let gone = removed.iter().any(|r| target == *r || target.starts_with(&format!("{r}/")));
        if gone {
            continue;
        }
        if !remove_at(&mut value, &target) {
            // A schema error at the root, or one nothing could be taken away for: the typed
            // read would only report it again.
            return Vec::new();
        }
        removed.push(target);
    }
    let (_, found) = read_leaving_out_bad_values(document, value, Diagnostics::new());
    // What a value taken away leaves missing follows from its own report.
    found.into_iter().filter(|d| !d.summary.contains("missing field")).collect()
}

/// Drops the top-level `x-*` keys, which hold YAML anchors and are no part of the spec.
fn strip_extensions(value: &mut Value) {
    if let Value::Object(root) = value {
        root.retain(|key, _| !key.starts_with("x-"));
    }
}

/// Removes the value at `pointer` from its mapping or list; false when there is none.
fn remove_at(value: &mut Value, pointer: &str) -> bool {
    let Some((parent, token)) = pointer.rsplit_once('/') else {
        return false;
    };
    let key = token.replace("~1", "/").replace("~0", "~");
    match value.pointer_mut(parent) {
        Some(Value::Object(map)) => map.shift_remove(&key).is_some(),
        Some(Value::Array(items)) => match key.parse::<usize>() {
            Ok(index) if index < items.len() => {
                items.remove(index);
                true
            }
            _ => false,
        },
        _ => false,
    }
}

/// Most values the typed read rejects that could be given.
const MAX_REJECTED_VALUES: usize = 64;

/// Reads `value` as a [`Spec`], reporting each rejected value and reading again without it.
/// Only an optional scalar setting is left out: leaving out a mapping (a stage) or a list item
/// would make the graph report false dangling references. A "missing" error about a value left
/// out follows from the first report, so it ends the read without a spec.
fn read_leaving_out_bad_values(
    document: &Document,
    mut value: Value,
    mut diagnostics: Diagnostics,
) -> (Option<Spec>, Diagnostics) {
    let mut left_out: Vec<String> = Vec::new();
    for _ in 0..MAX_REJECTED_VALUES {
        let err = match serde_path_to_error::deserialize::<_, Spec>(&value) {
            Ok(spec) => return (Some(spec), diagnostics),
            Err(err) => err,
        };
        let pointer = path_to_pointer(err.path());
        let follows = left_out.iter().any(|gone| gone == &pointer || gone.starts_with(&format!("{pointer}/")));
        if follows {
            return (None, diagnostics);
        }
        let message = err.inner().to_string();
        diagnostics.push(
            Diagnostic::error("invalid-value", format!("{}: {message}", field_name(&pointer)))
                .at(document.span(&pointer), ""),
        );
        if !leave_out(&mut value, &pointer) {
            return (None, diagnostics);
        }
        left_out.push(pointer);
    }
    (None, diagnostics)
}

/// Removes the scalar at `pointer` from its mapping; false when it is not a scalar in a mapping.
fn leave_out(value: &mut Value, pointer: &str) -> bool {
    let scalar = value.pointer(pointer).is_some_and(|v| !v.is_object() && !v.is_array());
    let in_mapping =
        pointer.rsplit_once('/').is_some_and(|(parent, _)| value.pointer(parent).is_some_and(Value::is_object));
    scalar && in_mapping && remove_at(value, pointer)
}

fn path_to_pointer(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut pointer = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => pointer.push_str(&format!("/{index}")),
            Segment::Map { key } => pointer.push_str(&format!("/{}", escape_pointer(key))),
            Segment::Enum { .. } | Segment::Unknown => {}
        }
    }
    pointer
}

/// The last token of a pointer, unescaped, for messages: `/a/b~1c` → `b/c`.
fn field_name(pointer: &str) -> String {
    let token = pointer.rsplit('/').next().unwrap_or("");
    if token.is_empty() {
        return "the spec".to_owned();
    }
    let token = token.replace("~1", "/").replace("~0", "~");
    if token.chars().all(|c| c.is_ascii_digit()) {
        let parent = pointer.rsplitn(2, '/').nth(1).unwrap_or("");
        return format!("{} item {}", field_name(parent), token.parse::<usize>().unwrap_or(0) + 1);
    }
    token
}

fn short(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() > 60 { format!("{}…", text.chars().take(59).collect::<String>()) } else { text }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "nothing",
        Value::Bool(_) => "true/false",
        Value::Number(n) if n.is_i64() || n.is_u64() => "a whole number",
        Value::Number(_) => "a number",
        Value::String(_) => "text",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

fn type_words(name: &str) -> &'static str {
    match name {
        "integer" => "a whole number",
        "number" => "a number",
        "string" => "text",
        "boolean" => "true or false",
        "array" => "a list",
        "object" => "a mapping",
        _ => "nothing",
    }
}

fn expected_types(kind: &TypeKind) -> String {
    let names: Vec<String> = match kind {
        TypeKind::Single(t) => vec![t.to_string()],
        TypeKind::Multiple(set) => set.iter().map(|t| t.to_string()).collect(),
    };
    let words: Vec<&str> = names.iter().filter(|n| n.as_str() != "null").map(|n| type_words(n)).collect();
    if words.is_empty() { "nothing".to_owned() } else { words.join(" or ") }
}

fn describe(document: &Document, error: &jsonschema::ValidationError<'_>) -> Vec<Diagnostic> {
    let pointer = error.instance_path().as_str().to_owned();
    let field = field_name(&pointer);
    let subject = if pointer.is_empty() { "the spec".to_owned() } else { format!("`{field}`") };
    let instance = error.instance();
    let schema_path = error.schema_path().as_str().to_owned();
    let at = || document.span(&pointer);
    let single = |code: &'static str, summary: String| vec![Diagnostic::error(code, summary).at(at(), "")];
    match error.kind() {
        ValidationErrorKind::Type { kind } => {
            single("wrong-type", format!("{subject} must be {}, got {}", expected_types(kind), json_type(&instance)))
        }
        ValidationErrorKind::Minimum { limit } => {
            single("out-of-range", format!("{subject} must be ≥ {limit}, got {}", short(&instance)))
        }
        ValidationErrorKind::Maximum { limit } => {
            single("out-of-range", format!("{subject} must be ≤ {limit}, got {}", short(&instance)))
        }
        ValidationErrorKind::MinLength { limit: 1 } => single("empty-value", format!("{subject} must not be empty")),
        ValidationErrorKind::MinLength { limit } => {
            single("too-short", format!("{subject} must be at least {limit} characters long"))
        }
        ValidationErrorKind::MaxLength { limit } => {
            single("too-long", format!("{subject} must be at most {limit} characters long"))
        }
        ValidationErrorKind::MinItems { limit } => {
            single("too-few", format!("{subject} needs at least {limit} item{}", if *limit == 1 { "" } else { "s" }))
        }
        ValidationErrorKind::MinProperties { limit } => {
            single("too-few", format!("{subject} needs at least {limit} entr{}", if *limit == 1 { "y" } else { "ies" }))
        }
        ValidationErrorKind::Pattern { .. } => {
            let what = schema::describe_at(&schema_path).unwrap_or_else(|| "value".to_owned());
            single("invalid-value", format!("{subject}: {} is not {}", short(&instance), lowercase_first(&what)))
        }
        ValidationErrorKind::PropertyNames { error } => {
            let key = error.instance().as_str().unwrap_or_default().to_owned();
            let key_pointer = format!("{pointer}/{}", escape_pointer(&key));
            let what = schema::describe_at(error.schema_path().as_str())
                .or_else(|| schema::describe_at(&format!("{schema_path}/$ref")))
                .unwrap_or_else(|| "name".to_owned());
            vec![
                Diagnostic::error("invalid-name", format!("{key:?} is not {}", lowercase_first(&what)))
                    .at(document.key_span(&key_pointer), ""),
            ]
        }
        ValidationErrorKind::Enum { options } => {
            let choices: Vec<&str> = options.as_array().into_iter().flatten().filter_map(Value::as_str).collect();
            let mut d = Diagnostic::error(
                "invalid-choice",
                format!("{subject} must be one of {}, got {}", quoted_list(&choices), short(&instance)),
            )
            .at(at(), "");
            if let Some(guess) = instance.as_str().and_then(|got| did_you_mean(got, choices.iter().copied())) {
                d = d.help(format!("did you mean `{guess}`?"));
            }
            vec![d]
        }
        ValidationErrorKind::Required { property } => {
            let name = property.as_str().unwrap_or_default();
            vec![
                Diagnostic::error("missing-key", format!("{subject} is missing `{name}`"))
                    .at(document.key_span(&pointer), format!("add `{name}:` here")),
            ]
        }
        ValidationErrorKind::AdditionalProperties { unexpected }
        | ValidationErrorKind::UnevaluatedProperties { unexpected } => {
            // With no known `kind`, which keys belong is unknown; the `kind` error says why.
            if schema::kind_unmatched(&schema_path, &instance) {
                return Vec::new();
            }
            let allowed = schema::allowed_keys(&schema_path, &instance);
            // A known key shows up here when its own value failed; that failure is reported.
            unexpected
                .iter()
                .filter(|key| !allowed.contains(key))
                .map(|key| {
                    let key_pointer = format!("{pointer}/{}", escape_pointer(key));
                    let mut d = Diagnostic::error("unknown-key", format!("unknown key `{key}` in {subject}"))
                        .at(document.key_span(&key_pointer), "not a known setting here");
                    if let Some(guess) = did_you_mean(key, allowed.iter().map(String::as_str)) {
                        d = d.help(format!("did you mean `{guess}`?"));
                    } else if !allowed.is_empty() {
                        d = d.help(format!(
                            "known keys here: {}",
                            quoted_list(&allowed.iter().map(String::as_str).collect::<Vec<_>>())
                        ));
                    }
                    d
                })
                .collect()
        }
        ValidationErrorKind::AnyOf { context } | ValidationErrorKind::OneOfNotValid { context } => {
            // Report the branch that was meant: drop those that fail only on the node's type
            // (`null` for an optional value, a plain name where a mapping was given).
            let meant: Vec<&Vec<jsonschema::ValidationError<'static>>> = context
                .iter()
                .filter(|branch| {
                    !branch.iter().all(|e| {
                        matches!(e.kind(), ValidationErrorKind::Type { .. }) && e.instance_path().as_str() == pointer
                    })
                })
                .collect();
            if let [branch] = meant.as_slice() {
                return branch.iter().flat_map(|e| describe(document, e)).collect();
            }
            let what = schema::describe_at(schema_path.trim_end_matches("/anyOf").trim_end_matches("/oneOf"))
                .unwrap_or_else(|| "an allowed form".to_owned());
            single("invalid-value", format!("{subject} is not valid here: expected {}", lowercase_first(&what)))
        }
        _ => single("invalid-value", format!("{subject}: {error}")),
    }
}

fn quoted_list(items: &[&str]) -> String {
    items.iter().map(|i| format!("`{i}`")).collect::<Vec<_>>().join(", ")
}

fn lowercase_first(text: &str) -> String {
    let text = text.trim_end_matches('.');
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::SourceFile;

    fn errors(text: &str) -> Vec<(String, usize, usize)> {
        let doc = Document::parse(SourceFile::new("t.yaml", text)).expect("parses");
        match check(&doc) {
            Ok(_) => Vec::new(),
            Err(ds) => ds
                .sorted()
                .iter()
                .map(|d| {
                    let at = d.primary.as_ref().map_or((0, 0), |l| (l.span.start.line, l.span.start.column));
                    (d.summary.clone(), at.0, at.1)
                })
                .collect(),
        }
    }

    const MINIMAL: &str =
        "version: 1\npipelines:\n  p:\n    stages:\n      s:\n        kind: shell\n        command: echo hi\n";

    #[test]
    fn minimal_spec_is_valid() {
        assert_eq!(errors(MINIMAL), Vec::<(String, usize, usize)>::new());
    }

    #[test]
    fn phrases_range_errors_for_people() {
        let text = MINIMAL.replace("command: echo hi\n", "command: echo hi\n        retries: -1\n");
        assert_eq!(errors(&text), vec![("`retries` must be ≥ 0, got -1".to_owned(), 8, 18)]);
    }

    #[test]
    fn unknown_keys_get_did_you_mean_at_the_key() {
        let text = MINIMAL.replace("command: echo hi\n", "command: echo hi\n        retires: 2\n");
        let errs = errors(&text);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].0, "unknown key `retires` in `s`");
        assert_eq!((errs[0].1, errs[0].2), (8, 9));
    }

    #[test]
    fn kind_specific_fields_are_checked() {
        let text = MINIMAL.replace("kind: shell\n        command: echo hi\n", "kind: dbt\n        command: runn\n");
        let errs = errors(&text);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].0.starts_with("`command` must be one of"), "{errs:?}");
    }

    #[test]
    fn without_a_kind_the_other_keys_are_not_called_unknown() {
        let text = MINIMAL.replace("kind: shell\n", "");
        let errs = errors(&text);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].0, "`s` is missing `kind`");
    }

    #[test]
    fn a_rejected_value_is_an_error_but_leaves_a_spec_to_lower() {
        let text = MINIMAL.replace("  p:\n", "  p:\n    schedule: \"@dayly\"\n");
        let doc = Document::parse(SourceFile::new("t.yaml", text)).expect("parses");
        let (spec, problems) = check_partial(&doc);
        assert!(problems.has_errors());
        assert!(spec.is_some_and(|s| s.pipelines.values().all(|p| p.schedule.is_none())));
        assert!(check(&doc).is_err());
    }

    #[test]
    fn reports_every_error_in_one_run() {
        let text = "version: 2\npipelines:\n  p:\n    schedule: 5\n    stages:\n      bad name:\n        kind: shell\n        command: x\n";
        let errs = errors(text);
        assert_eq!(errs.len(), 3, "{errs:?}");
        assert!(errs.iter().any(|e| e.0.contains("\"bad name\" is not a stage id")), "{errs:?}");
    }
}
