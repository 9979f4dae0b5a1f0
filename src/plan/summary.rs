//! Reads back the `# fhirflow-dag:` and `# fhirflow-task:` lines of a DAG file, so a plan can
//! name the tasks and settings that change rather than only the file.

use super::{Detail, FieldChange};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// The DAG settings and tasks recorded in a generated file.
#[derive(Debug, Default)]
pub struct DagSummary {
    dag: Map<String, Value>,
    tasks: BTreeMap<String, Map<String, Value>>,
}

/// A recorded value, `null` when absent.
fn value(value: Option<&Value>) -> Value {
    value.cloned().unwrap_or(Value::Null)
}

impl DagSummary {
    /// The summary in `text`; empty when the file has none.
    pub fn read(text: &str) -> Self {
        let mut summary = DagSummary::default();
        for line in text.lines() {
            if let Some(json) = line.strip_prefix("# fhirflow-dag: ") {
                if let Ok(Value::Object(map)) = serde_json::from_str(json) {
                    summary.dag = map;
                }
            } else if let Some(json) = line.strip_prefix("# fhirflow-task: ")
                && let Ok(Value::Object(map)) = serde_json::from_str::<Value>(json)
                && let Some(id) = map.get("id").and_then(Value::as_str)
            {
                summary.tasks.insert(id.to_owned(), map);
            }
        }
        summary
    }

    /// What changes from `self` (on disk) to `new` (generated).
    pub fn diff(&self, new: &DagSummary) -> Vec<Detail> {
        let mut details = Vec::new();
        if !self.dag.is_empty() && !new.dag.is_empty() {
            for name in ["schedule", "start_date", "catchup", "max_active_runs", "tags"] {
                let (old, now) = (self.dag.get(name), new.dag.get(name));
                if old != now {
                    details.push(Detail::Setting { name: name.to_owned(), old: value(old), new: value(now) });
                }
            }
        }
        let mut removed: Vec<&String> = self.tasks.keys().filter(|id| !new.tasks.contains_key(*id)).collect();
        let mut added: Vec<&String> = new.tasks.keys().filter(|id| !self.tasks.contains_key(*id)).collect();
        // Same definition under a new id is a rename, which Airflow treats as remove + add and
        // so loses the task's history; say so rather than show two unrelated changes.
        let mut renames = Vec::new();
        added.retain(|to| {
            let digest = new.tasks[*to].get("digest");
            match removed.iter().position(|from| self.tasks[*from].get("digest") == digest) {
                Some(i) => {
                    renames.push(((*removed.remove(i)).clone(), (*to).clone()));
                    false
                }
                None => true,
            }
        });
        for id in removed {
            details.push(Detail::TaskRemoved { task: id.clone() });
        }
        for id in added {
            details.push(Detail::TaskAdded { task: id.clone() });
        }
        for (from, to) in renames {
            details.push(Detail::TaskRenamed { from, to });
        }
        for (id, old) in &self.tasks {
            let Some(now) = new.tasks.get(id) else {
                continue;
            };
            let mut changes = Vec::new();
            let fields = [
                "operator",
                "upstream",
                "retries",
                "retry_delay",
                "execution_timeout",
                "sensor",
                "outlets",
                "trigger",
                "trigger_rule",
            ];
            for field in fields {
                if old.get(field) != now.get(field) {
                    changes.push(FieldChange {
                        field: field.to_owned(),
                        old: value(old.get(field)),
                        new: value(now.get(field)),
                        diff: None,
                    });
                }
            }
            let diff = match (old.get("definition"), now.get("definition")) {
                (Some(before), Some(after)) if before != after => Some(Some(definition_diff(id, before, after))),
                (Some(_), Some(_)) => None,
                // A file from before definitions were recorded: only the digest tells.
                _ => (changes.is_empty() && old.get("digest") != now.get("digest")).then_some(None),
            };
            if let Some(diff) = diff {
                changes.push(FieldChange {
                    field: "definition".to_owned(),
                    old: value(old.get("digest")),
                    new: value(now.get("digest")),
                    diff,
                });
            }
            if !changes.is_empty() {
                details.push(Detail::TaskChanged { task: id.clone(), changes });
            }
        }
        details
    }
}

/// The recorded keyword arguments as lines to diff: a string argument decoded, one line of
/// it per line, and a mapping (such as `env`) one key per line, so that a reviewer sees the
/// line of SQL or the variable that changes rather than one long literal.
fn definition_lines(definition: &Value) -> String {
    let mut out = String::new();
    for pair in definition.as_array().into_iter().flatten() {
        let (Some(name), Some(code)) = (pair.get(0).and_then(Value::as_str), pair.get(1).and_then(Value::as_str))
        else {
            continue;
        };
        // fhirflow's Python string and dict literals of strings read as JSON.
        match serde_json::from_str::<Value>(code) {
            Ok(Value::String(text)) if text.contains('\n') => {
                out.push_str(&format!("{name}:\n"));
                for line in text.lines() {
                    out.push_str(&format!("    {line}\n"));
                }
            }
            Ok(Value::String(text)) => out.push_str(&format!("{name}: {text}\n")),
            Ok(Value::Object(map)) => {
                for (key, item) in &map {
                    let item = item.as_str().map_or_else(|| item.to_string(), str::to_owned);
                    out.push_str(&format!("{name}.{key}: {item}\n"));
                }
            }
            _ => out.push_str(&format!("{name}: {code}\n")),
        }
    }
    out
}

/// A unified diff of task `id`'s keyword arguments.
fn definition_diff(id: &str, before: &Value, after: &Value) -> String {
    let (old, new) = (definition_lines(before), definition_lines(after));
    similar::TextDiff::from_lines(&old, &new)
        .unified_diff()
        .context_radius(3)
        .header(&format!("a/{id}"), &format!("b/{id}"))
        .to_string()
}
