//! The spec reference (`docs/spec-reference.md`), generated from the schema's descriptions so
//! that it says what the types say. A test fails when the committed page differs.

use serde_json::Value;
use std::fmt::Write as _;

/// The spec reference as Markdown: the top-level keys, then each definition of the schema.
pub fn markdown() -> String {
    let schema = super::schema::schema();
    let mut out = String::new();
    out.push_str("# Spec reference (format v1)\n\n");
    out.push_str(
        "Generated from `schemas/pipeline.schema.json`, whose descriptions are the doc comments of `src/spec`; \
         do not edit it by hand: `FHIRFLOW_BLESS=1 cargo test --lib committed_spec_reference` writes it again. \
         [spec.md](spec.md) explains the format with examples.\n\n",
    );
    out.push_str("## Top level\n\n");
    section_body(schema, &mut out);
    if let Some(Value::Object(defs)) = schema.get("$defs") {
        for (name, def) in defs {
            let _ = writeln!(out, "## {name}\n");
            section_body(def, &mut out);
        }
    }
    out.truncate(out.trim_end().len());
    out.push('\n');
    out
}

/// A definition's description, then its keys, choices or shape.
fn section_body(def: &Value, out: &mut String) {
    if let Some(description) = def.get("description").and_then(Value::as_str) {
        let _ = writeln!(out, "{}\n", description.trim());
    }
    if let Some(Value::Object(properties)) = def.get("properties") {
        let required: Vec<&str> =
            def.get("required").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();
        out.push_str("| key | type | description |\n|---|---|---|\n");
        for (key, property) in properties {
            let mark = if required.contains(&key.as_str()) { " (required)" } else { "" };
            let description = property
                .get("description")
                .or_else(|| resolve(property).and_then(|r| r.get("description")))
                .and_then(Value::as_str)
                .unwrap_or("");
            let _ = writeln!(out, "| `{key}`{mark} | {} | {} |", cell(&type_of(property)), cell(description));
        }
        out.push('\n');
    }
    if let Some(Value::Array(rules)) = def.get("allOf") {
        for rule in rules {
            let (Some(condition), Some(then)) = (rule.pointer("/if/properties"), rule.get("then")) else { continue };
            let Some((key, value)) = condition.as_object().and_then(|c| c.iter().next()) else { continue };
            let Some(value) = value.get("const") else { continue };
            let _ = writeln!(out, "- With `{key}: {}`, also the keys of {}.", plain(value), type_of(then));
        }
        out.push('\n');
    }
    let shape = match def.get("properties") {
        Some(_) => None,
        None if def.get("enum").is_some() || def.get("type").is_some() || def.get("anyOf").is_some() => {
            Some(type_of(def))
        }
        None => def.get("oneOf").map(|_| type_of(def)),
    };
    if let Some(shape) = shape {
        let _ = writeln!(out, "Value: {shape}.\n");
    }
    if let Some(Value::Array(examples)) = def.get("examples") {
        let examples: Vec<String> = examples.iter().map(|e| format!("`{}`", plain(e))).collect();
        let _ = writeln!(out, "Examples: {}.\n", examples.join(", "));
    }
}

/// The definition a `{"$ref": "#/$defs/X"}` names.
fn resolve(node: &Value) -> Option<&'static Value> {
    let name = node.get("$ref")?.as_str()?.strip_prefix("#/$defs/")?;
    super::schema::schema().pointer(&format!("/$defs/{name}"))
}

/// A value as written in YAML: strings bare, the rest as JSON.
fn plain(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// A short, linked description of what a node admits.
fn type_of(node: &Value) -> String {
    if let Some(name) = node.get("$ref").and_then(Value::as_str).and_then(|r| r.strip_prefix("#/$defs/")) {
        return format!("[{name}](#{})", name.to_lowercase());
    }
    if let Some(Value::Array(values)) = node.get("enum") {
        let values: Vec<String> = values.iter().map(|v| format!("`{}`", plain(v))).collect();
        return format!("one of {}", values.join(", "));
    }
    if let Some(value) = node.get("const") {
        return format!("`{}`", plain(value));
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(Value::Array(choices)) = node.get(key) {
            let kinds: Vec<String> =
                choices.iter().filter(|c| c.get("type") != Some(&Value::from("null"))).map(type_of).collect();
            let optional = kinds.len() < choices.len();
            let mut text = kinds.join(" or ");
            if optional {
                text.push_str(" or null");
            }
            return text;
        }
    }
    let types: Vec<&str> = match node.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let mut parts: Vec<String> = Vec::new();
    for t in types.iter().filter(|t| **t != "null") {
        parts.push(match *t {
            "array" => match node.get("items") {
                Some(items) => format!("list of {}", type_of(items)),
                None => "list".to_owned(),
            },
            "object" => match map_values(node) {
                Some(values) => format!("map of name → {values}"),
                None => "mapping".to_owned(),
            },
            other => other.to_owned(),
        });
    }
    let mut text = if parts.is_empty() { "any".to_owned() } else { parts.join(" or ") };
    text.push_str(&bounds(node));
    if types.contains(&"null") {
        text.push_str(" or null");
    }
    text
}

/// What the values of a map are, for an object keyed by names.
fn map_values(node: &Value) -> Option<String> {
    let by_pattern = node.get("patternProperties").and_then(Value::as_object).and_then(|p| p.values().next());
    let additional = node.get("additionalProperties").filter(|a| a.is_object());
    by_pattern.or(additional).map(type_of)
}

/// Ranges and patterns, as a reader checks a value against them.
fn bounds(node: &Value) -> String {
    let mut text = String::new();
    match (node.get("minimum"), node.get("maximum")) {
        (Some(min), Some(max)) if min == max => {
            let _ = write!(text, ", only {min}");
        }
        (Some(min), Some(max)) => {
            let _ = write!(text, ", {min} to {max}");
        }
        (Some(min), None) => {
            let _ = write!(text, ", ≥ {min}");
        }
        (None, Some(max)) => {
            let _ = write!(text, ", ≤ {max}");
        }
        (None, None) => {}
    }
    if let Some(pattern) = node.get("pattern").and_then(Value::as_str) {
        let _ = write!(text, " matching `{pattern}`");
    }
    text
}

/// Text fit for a Markdown table cell.
fn cell(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ").replace('|', "\\|")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The page as committed; only the test reads it, so a build never needs docs/.
    const COMMITTED: &str = include_str!("../../docs/spec-reference.md");

    #[test]
    fn committed_spec_reference_matches_the_schema() {
        let generated = markdown();
        if std::env::var_os("FHIRFLOW_BLESS").is_some() {
            let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/spec-reference.md");
            std::fs::write(path, &generated).expect("write docs/spec-reference.md");
            return;
        }
        assert!(
            COMMITTED == generated,
            "docs/spec-reference.md is out of date with the schema; run `FHIRFLOW_BLESS=1 cargo test --lib committed_spec_reference` and commit it"
        );
    }

    #[test]
    fn every_top_level_key_and_definition_is_in_the_reference() {
        let text = markdown();
        let schema = crate::validate::schema::schema();
        for key in schema["properties"].as_object().expect("properties").keys() {
            assert!(text.contains(&format!("| `{key}`")), "no `{key}`");
        }
        for name in schema["$defs"].as_object().expect("$defs").keys() {
            assert!(text.contains(&format!("\n## {name}\n")), "no section {name}");
        }
    }
}
