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
                    });
                }
            }
            if changes.is_empty() && old.get("digest") != now.get("digest") {
                changes.push(FieldChange {
                    field: "definition".to_owned(),
                    old: value(old.get("digest")),
                    new: value(now.get("digest")),
                });
            }
            if !changes.is_empty() {
                details.push(Detail::TaskChanged { task: id.clone(), changes });
            }
        }
        details
    }
}
