//! The spec's JSON Schema, generated from [`crate::spec::Spec`] and committed as
//! `schemas/pipeline.schema.json`. A test fails when the two differ.

use crate::spec::Spec;
use serde_json::{Map, Value, json};
use std::sync::LazyLock;

/// The schema file as committed; editors use it through the spec's modeline.
pub const COMMITTED: &str = include_str!("../../schemas/pipeline.schema.json");

static SCHEMA: LazyLock<Value> = LazyLock::new(generate);

static VALIDATOR: LazyLock<jsonschema::Validator> = LazyLock::new(|| {
    jsonschema::draft202012::new(&SCHEMA).expect("the generated schema is a valid Draft 2020-12 schema")
});

/// The compiled validator.
pub fn validator() -> &'static jsonschema::Validator {
    &VALIDATOR
}

/// The schema as a JSON value.
pub fn schema() -> &'static Value {
    &SCHEMA
}

/// The schema as the pretty-printed text that is committed.
pub fn to_text() -> String {
    let mut text = serde_json::to_string_pretty(&*SCHEMA).expect("a JSON value always serializes");
    text.push('\n');
    text
}

/// Maps whose keys are checked names: (definition, property, definition of the key).
const KEYED_MAPS: &[(&str, &str, &str)] = &[
    ("", "connections", "Identifier"),
    ("", "layers", "Identifier"),
    ("", "pipelines", "PipelineId"),
    ("Pipeline", "stages", "StageId"),
    ("Connection", "env", "Identifier"),
    ("ShellStage", "env", "EnvVarName"),
    ("DbtStage", "vars", "Identifier"),
];

/// Generates the schema from the Rust types.
pub fn generate() -> Value {
    let generator = schemars::generate::SchemaSettings::draft2020_12().into_generator();
    let mut schema = generator.into_root_schema_for::<Spec>().to_value();
    dispatch_stage_kinds(&mut schema);
    // Top-level `x-*` keys hold YAML anchors for `<<: *name` merges, as in Compose files.
    if let Value::Object(root) = &mut schema {
        root.insert("patternProperties".to_owned(), json!({ "^x-": { "description": "Free space for YAML anchors that stages merge with `<<: *name`; ignored otherwise." } }));
    }
    collapse_const_choices(&mut schema);
    for (def, property, key_def) in KEYED_MAPS {
        let target = if def.is_empty() { Some(&mut schema) } else { schema.pointer_mut(&format!("/$defs/{def}")) };
        if let Some(Value::Object(map)) = target.and_then(|t| t.pointer_mut(&format!("/properties/{property}"))) {
            map.insert("propertyNames".to_owned(), json!({ "$ref": format!("#/$defs/{key_def}") }));
        }
    }
    schema
}

/// schemars renders the stage kinds as a `oneOf`, whose failure says only "not valid under any
/// of the schemas". An `if kind == X then X's schema` chain reports the real mistake instead.
fn dispatch_stage_kinds(schema: &mut Value) {
    let Some(Value::Object(stage)) = schema.pointer_mut("/$defs/Stage") else {
        return;
    };
    let Some(Value::Array(branches)) = stage.remove("oneOf") else {
        return;
    };
    let mut kinds = Vec::new();
    let mut rules = Vec::new();
    let mut descriptions = Vec::new();
    for branch in branches {
        let kind = branch.pointer("/properties/kind/const").cloned().unwrap_or(Value::Null);
        let target = branch.get("$ref").cloned().unwrap_or(Value::Null);
        if let (Some(k), Some(d)) = (kind.as_str(), branch.get("description").and_then(Value::as_str)) {
            descriptions.push(format!("`{k}`: {d}"));
        }
        rules.push(json!({
            "if": { "properties": { "kind": { "const": kind } }, "required": ["kind"] },
            "then": { "$ref": target }
        }));
        kinds.push(kind);
    }
    if let Some(Value::Object(properties)) = stage.get_mut("properties") {
        let mut reordered = Map::new();
        reordered.insert(
            "kind".to_owned(),
            json!({ "description": format!("What the stage does. {}", descriptions.join(" ")), "enum": kinds }),
        );
        reordered.extend(std::mem::take(properties));
        *properties = reordered;
    }
    stage.insert("required".to_owned(), json!(["kind"]));
    stage.insert("allOf".to_owned(), Value::Array(rules));
}

/// schemars renders a documented unit enum as a `oneOf` of `const`s; an `enum` gives the
/// simpler "must be one of" error and keeps each choice's doc in the description.
fn collapse_const_choices(node: &mut Value) {
    match node {
        Value::Object(map) => {
            let all_consts = map
                .get("oneOf")
                .and_then(Value::as_array)
                .is_some_and(|branches| branches.iter().all(|b| b.get("const").is_some()));
            if all_consts {
                let branches = map.remove("oneOf").and_then(|b| b.as_array().cloned()).unwrap_or_default();
                let choices: Vec<Value> = branches.iter().filter_map(|b| b.get("const").cloned()).collect();
                let docs: Vec<String> = branches
                    .iter()
                    .filter_map(|b| {
                        Some(format!("`{}`: {}", b.get("const")?.as_str()?, b.get("description")?.as_str()?))
                    })
                    .collect();
                let base = map.get("description").and_then(Value::as_str).unwrap_or("One of:").to_owned();
                map.insert("description".to_owned(), Value::String(format!("{base} {}", docs.join(" "))));
                map.insert("type".to_owned(), json!("string"));
                map.insert("enum".to_owned(), Value::Array(choices));
            }
            for child in map.values_mut() {
                collapse_const_choices(child);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(collapse_const_choices),
        _ => {}
    }
}

/// Follows a keyword location (`/properties/a/$ref/properties/b/pattern`) through the schema,
/// resolving `$ref`s, and returns the node it ends on.
fn node_at(keyword_location: &str) -> Option<&'static Value> {
    let mut node: &Value = &SCHEMA;
    for token in keyword_location.split('/').skip(1) {
        let token = token.replace("~1", "/").replace("~0", "~");
        if token == "$ref" {
            node = resolve(node)?;
            continue;
        }
        node = match node {
            Value::Object(map) => map.get(&token)?,
            Value::Array(items) => items.get(token.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(node)
}

fn resolve(node: &Value) -> Option<&'static Value> {
    let reference = node.get("$ref")?.as_str()?;
    SCHEMA.pointer(reference.strip_prefix('#')?)
}

/// The description of the schema node that a failing keyword belongs to.
pub fn describe_at(keyword_location: &str) -> Option<String> {
    let parent = keyword_location.rsplit_once('/').map_or("", |(p, _)| p);
    let node = node_at(parent).or_else(|| node_at(keyword_location))?;
    let node = if node.get("description").is_none() { resolve(node).unwrap_or(node) } else { node };
    node.get("description").and_then(Value::as_str).map(str::to_owned)
}

/// Whether an unknown-key error was raised on a node whose keys depend on its `kind`, and the
/// node's `kind` is missing or none of the known ones.
pub fn kind_unmatched(keyword_location: &str, instance: &Value) -> bool {
    let parent = keyword_location.rsplit_once('/').map_or("", |(p, _)| p);
    let Some(Value::Array(rules)) = node_at(parent).and_then(|node| node.get("allOf")) else {
        return false;
    };
    let kinds: Vec<&Value> = rules.iter().filter_map(|rule| rule.pointer("/if/properties/kind/const")).collect();
    !kinds.is_empty() && !instance.get("kind").is_some_and(|kind| kinds.contains(&kind))
}

/// The keys that are allowed where an unknown-key error was raised, for did-you-mean.
pub fn allowed_keys(keyword_location: &str, instance: &Value) -> Vec<String> {
    let parent = keyword_location.rsplit_once('/').map_or("", |(p, _)| p);
    let Some(node) = node_at(parent) else {
        return Vec::new();
    };
    let mut keys: Vec<String> = Vec::new();
    let mut add = |n: &Value| {
        if let Some(Value::Object(props)) = n.get("properties") {
            keys.extend(props.keys().cloned());
        }
    };
    add(node);
    if let Some(Value::Array(rules)) = node.get("allOf") {
        for rule in rules {
            let wanted = rule.pointer("/if/properties/kind/const");
            if wanted.is_some() && wanted == instance.get("kind") {
                if let Some(target) = rule.get("then").and_then(resolve) {
                    add(target);
                }
            }
        }
    }
    if let Some(Value::Array(parts)) = node.get("allOf") {
        for part in parts {
            if let Some(target) = resolve(part) {
                add(target);
            }
        }
    }
    keys.sort();
    keys.dedup();
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committed_schema_matches_the_types() {
        let generated = to_text();
        if std::env::var_os("FHIRFLOW_BLESS").is_some() {
            let path = concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/pipeline.schema.json");
            std::fs::write(path, &generated).expect("write schema");
            return;
        }
        assert!(
            COMMITTED == generated,
            "schemas/pipeline.schema.json is out of date with src/spec; run `FHIRFLOW_BLESS=1 cargo test committed_schema` and commit it"
        );
    }

    fn walk<'a>(node: &'a Value, path: String, out: &mut Vec<String>) {
        if let Some(Value::Object(props)) = node.get("properties") {
            for (name, prop) in props {
                let has_own = prop.get("description").is_some();
                let via_ref = resolve(prop).and_then(|r| r.get("description")).is_some();
                if !has_own && !via_ref {
                    out.push(format!("{path}/{name}"));
                }
                walk(prop, format!("{path}/{name}"), out);
            }
        }
        if let Some(Value::Object(defs)) = node.get("$defs") {
            for (name, def) in defs {
                walk(def, format!("$defs/{name}"), out);
            }
        }
    }

    #[test]
    fn every_property_has_a_description() {
        let mut missing = Vec::new();
        walk(schema(), String::new(), &mut missing);
        assert!(missing.is_empty(), "properties without a description: {missing:?}");
    }

    #[test]
    fn schema_is_draft_2020_12() {
        assert_eq!(schema()["$schema"], "https://json-schema.org/draft/2020-12/schema");
        assert!(jsonschema::meta::is_valid(schema()));
    }
}
