//! Reads two versions of a dbt properties file structurally (models → columns → tests), so a
//! plan names the columns and tests that come and go: a removed test is a check no one runs.

use super::Detail;
use serde_json::Value;
use std::collections::BTreeMap;

/// A column: its description and its tests, each as compact JSON (`"not_null"`, `{"accepted_values": …}`).
#[derive(Debug, Default, PartialEq)]
struct Column {
    description: Option<String>,
    tests: Vec<String>,
}

/// Models by name, their columns by name.
type Properties = BTreeMap<String, (Option<String>, BTreeMap<String, Column>)>;

fn text(value: Option<&Value>) -> Option<String> {
    value.and_then(Value::as_str).map(str::to_owned)
}

fn read(yaml: &str) -> Properties {
    let doc: Value = serde_saphyr::from_str(yaml).unwrap_or(Value::Null);
    let mut models = Properties::new();
    for model in doc.get("models").and_then(Value::as_array).into_iter().flatten() {
        let Some(name) = text(model.get("name")) else { continue };
        let mut columns = BTreeMap::new();
        for column in model.get("columns").and_then(Value::as_array).into_iter().flatten() {
            let Some(column_name) = text(column.get("name")) else { continue };
            let tests = column.get("data_tests").or_else(|| column.get("tests")).and_then(Value::as_array);
            let tests = tests.into_iter().flatten().map(|t| t.as_str().map_or_else(|| t.to_string(), str::to_owned));
            columns
                .insert(column_name, Column { description: text(column.get("description")), tests: tests.collect() });
        }
        models.insert(name, (text(model.get("description")), columns));
    }
    models
}

/// The columns and tests that change from `old` (on disk) to `new` (generated).
pub fn diff(old: &str, new: &str) -> Vec<Detail> {
    let (before, after) = (read(old), read(new));
    let empty = BTreeMap::new();
    let mut details = Vec::new();
    let models: std::collections::BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    for model in models {
        let (old_description, old_columns) = before.get(model).map_or((None, &empty), |(d, c)| (d.clone(), c));
        let (new_description, new_columns) = after.get(model).map_or((None, &empty), |(d, c)| (d.clone(), c));
        if old_description != new_description && before.contains_key(model) && after.contains_key(model) {
            details.push(Detail::DescriptionChanged { model: model.clone(), column: None });
        }
        let columns: std::collections::BTreeSet<&String> = old_columns.keys().chain(new_columns.keys()).collect();
        for column in columns {
            let (was, now) = (old_columns.get(column), new_columns.get(column));
            match (was, now) {
                (Some(_), None) => details.push(Detail::ColumnRemoved { model: model.clone(), column: column.clone() }),
                (None, Some(_)) => details.push(Detail::ColumnAdded { model: model.clone(), column: column.clone() }),
                _ => {}
            }
            let no_tests = Vec::new();
            let old_tests = was.map_or(&no_tests, |c| &c.tests);
            let new_tests = now.map_or(&no_tests, |c| &c.tests);
            for test in old_tests.iter().filter(|t| !new_tests.contains(t)) {
                details.push(Detail::TestRemoved { model: model.clone(), column: column.clone(), test: test.clone() });
            }
            for test in new_tests.iter().filter(|t| !old_tests.contains(t)) {
                details.push(Detail::TestAdded { model: model.clone(), column: column.clone(), test: test.clone() });
            }
            if let (Some(was), Some(now)) = (was, now)
                && was.description != now.description
            {
                details.push(Detail::DescriptionChanged { model: model.clone(), column: Some(column.clone()) });
            }
        }
    }
    details
}
