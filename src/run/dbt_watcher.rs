//! The watcher half of a per-model dbt stage: one `dbt build` whose structured log
//! (`DBT_LOG_FORMAT=json`, one JSON event a line) fhirflow reads into per-node states, and the
//! retry selection computed from its `run_results.json`, as `dbt retry` computes it.
//!
//! Events are read by their `data.node_info` (`unique_id`, `node_status`) rather than by event
//! name, because the names differ by dbt version and level: dbt-core 1.7 and 1.11 both emit
//! `LogStartLine` (started), `LogModelResult`/`LogSeedResult`/`LogSnapshotResult`/`LogTestResult`
//! (finished) and `SkippingDetails` (skipped) at info level, and `NodeStart`/`NodeFinished` only
//! at debug level; every one of them carries `node_info`. dbt 1.7 does not take `--log-format`
//! after the command, so the format is set through the environment, which both versions read.

use serde_json::Value;
use std::collections::BTreeMap;

/// The environment variable that makes dbt (1.5 and later) log one JSON event a line.
pub const LOG_FORMAT_ENV: (&str, &str) = ("DBT_LOG_FORMAT", "json");

/// Where one dbt node is in the watched build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    /// dbt started the node.
    Started,
    /// A model, seed or snapshot built.
    Success,
    /// A test passed.
    Pass,
    /// A test found rows, under `severity: warn`.
    Warn,
    /// A test found rows.
    Fail,
    /// A model, seed or snapshot failed to build.
    Error,
    /// dbt skipped the node because something it depends on failed.
    Skipped,
}

impl NodeState {
    /// The state dbt's `node_status` names; `None` for the statuses that are not a change.
    fn from_status(status: &str) -> Option<Self> {
        Some(match status {
            "started" => NodeState::Started,
            "success" => NodeState::Success,
            "pass" => NodeState::Pass,
            "warn" => NodeState::Warn,
            "fail" => NodeState::Fail,
            "error" | "runtime error" => NodeState::Error,
            "skipped" => NodeState::Skipped,
            _ => return None,
        })
    }

    /// Whether the node has finished.
    pub fn is_final(self) -> bool {
        self != NodeState::Started
    }

    /// Whether the node's task failed (`error` or `fail`); `warn` passes, as under Airflow.
    pub fn is_failure(self) -> bool {
        matches!(self, NodeState::Error | NodeState::Fail)
    }
}

/// One node's change of state, read from one dbt log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeEvent {
    /// dbt's id, such as `model.fhir.stg_patients`.
    pub unique_id: String,
    /// The node's new state.
    pub state: NodeState,
    /// dbt's human line for the event, for the node's log file.
    pub message: String,
}

/// Reads one line of dbt's JSON log; `None` for lines that are not a node's event (run
/// summaries, warnings, non-JSON output such as a usage error).
pub fn parse_event(line: &str) -> Option<NodeEvent> {
    let event: Value = serde_json::from_str(line.trim()).ok()?;
    let node = event.get("data")?.get("node_info")?;
    let unique_id = node.get("unique_id")?.as_str()?;
    let state = NodeState::from_status(node.get("node_status")?.as_str()?)?;
    let message = event.get("info").and_then(|i| i.get("msg")).and_then(Value::as_str).unwrap_or_default();
    Some(NodeEvent { unique_id: unique_id.to_owned(), state, message: strip_ansi(message) })
}

/// dbt colours `[PASS]` even in JSON messages; node log files hold plain text.
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The states of a watched build's nodes, fed line by line as dbt writes them.
#[derive(Debug, Default)]
pub struct Watch {
    states: BTreeMap<String, NodeState>,
    logs: BTreeMap<String, Vec<String>>,
}

impl Watch {
    /// Takes one log line; returns the node event it carried when it changed a node's state,
    /// so the caller updates the run store and progress display as it happens.
    pub fn feed(&mut self, line: &str) -> Option<NodeEvent> {
        let event = parse_event(line)?;
        self.logs.entry(event.unique_id.clone()).or_default().push(event.message.clone());
        let previous = self.states.insert(event.unique_id.clone(), event.state);
        (previous != Some(event.state)).then_some(event)
    }

    /// Each node's latest state.
    pub fn states(&self) -> &BTreeMap<String, NodeState> {
        &self.states
    }

    /// The lines dbt logged for one node, in order, for the node's log file.
    pub fn log(&self, unique_id: &str) -> &[String] {
        self.logs.get(unique_id).map(Vec::as_slice).unwrap_or_default()
    }
}

/// What a retry re-runs, read from a build's `run_results.json` the way `dbt retry` reads it:
/// the nodes that errored, failed or were skipped because of them, as `--select` arguments
/// (`None` when everything passed).
pub fn retry_selection(run_results: &str) -> Result<Option<Vec<String>>, serde_json::Error> {
    let file: Value = serde_json::from_str(run_results)?;
    let mut names = Vec::new();
    for result in file.get("results").and_then(Value::as_array).into_iter().flatten() {
        let status = result.get("status").and_then(Value::as_str).unwrap_or_default();
        if !matches!(status, "error" | "fail" | "skipped" | "runtime error") {
            continue;
        }
        if let Some(name) = result.get("unique_id").and_then(Value::as_str).and_then(selector_for) {
            names.push(name);
        }
    }
    names.sort();
    names.dedup();
    Ok((!names.is_empty()).then_some(names))
}

/// The `--select` word for a node id: its name, which dbt's default `fqn` method matches for
/// models, seeds and snapshots, and its `test_name` for tests (`test.pkg.name.hash`); versioned
/// models (`model.pkg.name.v2`) keep their version as dbt writes it (`name.v2`).
fn selector_for(unique_id: &str) -> Option<String> {
    let mut parts = unique_id.split('.');
    let resource = parts.next()?;
    let _package = parts.next()?;
    let name = parts.next()?;
    match (resource, parts.next()) {
        ("model", Some(version)) if version.starts_with('v') => Some(format!("{name}.{version}")),
        _ => Some(name.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(name: &str, id: &str, status: &str, msg: &str) -> String {
        serde_json::json!({
            "data": {"node_info": {"unique_id": id, "node_status": status}},
            "info": {"name": name, "msg": msg}
        })
        .to_string()
    }

    #[test]
    fn events_are_read_by_node_info_and_repeats_are_not_changes() {
        let mut watch = Watch::default();
        let start = line("LogStartLine", "model.p.a", "started", "1 of 2 START a");
        assert_eq!(watch.feed(&start).map(|e| e.state), Some(NodeState::Started));
        assert_eq!(watch.feed(&line("NodeStart", "model.p.a", "started", "x")), None, "already started");
        let done = line("LogModelResult", "model.p.a", "success", "1 of 2 OK a [\u{1b}[32mOK\u{1b}[0m]");
        assert_eq!(watch.feed(&done).unwrap().message, "1 of 2 OK a [OK]");
        assert_eq!(watch.feed("not json"), None);
        assert_eq!(watch.feed(r#"{"data": {}, "info": {"name": "StatsLine"}}"#), None);
        assert_eq!(watch.states()["model.p.a"], NodeState::Success);
        assert_eq!(watch.log("model.p.a").len(), 3);
    }

    #[test]
    fn retry_selects_errors_failures_and_skips_by_name() {
        let results = r#"{"results": [
            {"unique_id": "model.p.ok", "status": "success"},
            {"unique_id": "model.p.broken", "status": "error"},
            {"unique_id": "model.p.versioned.v2", "status": "skipped"},
            {"unique_id": "test.p.not_null_x_id.1a2b3c", "status": "fail"},
            {"unique_id": "test.p.warned.9f", "status": "warn"}
        ]}"#;
        let selection = retry_selection(results).unwrap().unwrap();
        assert_eq!(selection, ["broken", "not_null_x_id", "versioned.v2"]);
        assert_eq!(retry_selection(r#"{"results": [{"unique_id": "model.p.a", "status": "success"}]}"#).unwrap(), None);
        assert!(retry_selection("[").is_err());
    }
}
