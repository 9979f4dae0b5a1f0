//! A `watcher: true` per-model stage under `fhirflow run`: one `dbt build` runs the nodes of many
//! tasks, and each task's attempt waits for its own nodes' events in that build.
//!
//! The scheduler keeps one [`BuildView`] per watched stage. A task that becomes ready while a
//! build covering its nodes runs just waits for them; otherwise, once no build of the stage
//! runs, it starts one that selects its own nodes and those of every task that can run after
//! it (pending, with nothing failed above it). So a first start builds the whole stage, and a
//! retry builds what failed and what it blocked, as `dbt retry` would; a resumed run builds
//! what the earlier invocation left undone.

use super::dbt_results::{DbtRunResults, FailedNode};
use super::dbt_watcher::{NodeState, Watch};
use std::collections::{BTreeMap, BTreeSet};
use tokio::sync::watch;

/// What the tasks of one watched stage see of its builds.
#[derive(Debug, Default)]
pub struct BuildView {
    /// The newest build's number, from 1.
    pub generation: u64,
    /// Whether that build's process is running.
    pub running: bool,
    /// The nodes (`unique_id`s) the newest build selects.
    pub covering: BTreeSet<String>,
    /// Each build's node states and node log lines, by number.
    pub builds: BTreeMap<u64, Watch>,
    /// How each finished build's process ended, by number.
    pub exits: BTreeMap<u64, String>,
    /// Each build's log file, by number.
    pub logs: BTreeMap<u64, std::path::PathBuf>,
}

impl BuildView {
    /// Whether every node of `nodes` has a final state in build `generation`, or it ended.
    pub fn settled(&self, generation: u64, nodes: &[(String, String)]) -> bool {
        let done =
            |id: &String| self.builds.get(&generation).and_then(|w| w.states().get(id)).is_some_and(|s| s.is_final());
        generation != self.generation || !self.running || nodes.iter().all(|(id, _)| done(id))
    }
}

/// Marks a build ended when its job ends, however it ends (a panic included), so that no task
/// waits for a build that is gone.
pub struct BuildEnd {
    /// The stage's view.
    pub view: watch::Sender<BuildView>,
    /// The build's number.
    pub generation: u64,
    /// How the process ended, once it has.
    pub exit: Option<String>,
}

impl Drop for BuildEnd {
    fn drop(&mut self) {
        let exit = self.exit.take().unwrap_or_else(|| "ended abnormally".to_owned());
        let generation = self.generation;
        self.view.send_modify(|v| {
            if v.generation == generation {
                v.running = false;
            }
            v.exits.insert(generation, exit);
        });
    }
}

/// The outcome of one task's nodes in build `generation`: `Ok` with the dbt results when all
/// built or passed (`warn` passes, as in Airflow), else why the task failed.
pub fn task_outcome(
    view: &BuildView,
    generation: u64,
    nodes: &[(String, String)],
) -> (Result<(), String>, DbtRunResults) {
    let watch = view.builds.get(&generation);
    let mut results = DbtRunResults::default();
    let mut missing = Vec::new();
    let mut skipped = Vec::new();
    for (id, _) in nodes {
        let state = watch.and_then(|w| w.states().get(id)).copied().filter(|s| s.is_final());
        let Some(state) = state else {
            missing.push(id.as_str());
            continue;
        };
        let status = match state {
            NodeState::Success => "success",
            NodeState::Pass => "pass",
            NodeState::Warn => "warn",
            NodeState::Fail => "fail",
            NodeState::Error => "error",
            NodeState::Skipped => "skipped",
            NodeState::Started => "started",
        };
        *results.counts.entry(status.to_owned()).or_default() += 1;
        if state.is_failure() {
            let message = watch.and_then(|w| w.log(id).last().cloned());
            results.failures.push(FailedNode { unique_id: id.clone(), status: status.to_owned(), message });
        }
        if state == NodeState::Skipped {
            skipped.push(id.as_str());
        }
    }
    let exit = view.exits.get(&generation).map_or("still running", String::as_str);
    let outcome = if !results.failures.is_empty() {
        Err(format!("the watched dbt build (build {generation}, {exit})"))
    } else if !skipped.is_empty() {
        Err(format!("dbt skipped {} because a node it depends on failed", skipped.join(", ")))
    } else if !missing.is_empty() {
        Err(format!("the watched dbt build ({exit}) reported no result for {}", missing.join(", ")))
    } else {
        Ok(())
    };
    (outcome, results)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: &str, status: &str) -> String {
        serde_json::json!({
            "info": {"msg": format!("{id} {status}")},
            "data": {"node_info": {"unique_id": id, "node_status": status}},
        })
        .to_string()
    }

    fn view(lines: &[String], running: bool) -> BuildView {
        let mut watch = Watch::default();
        for line in lines {
            watch.feed(line);
        }
        let mut v = BuildView { generation: 1, running, ..BuildView::default() };
        v.builds.insert(1, watch);
        if !running {
            v.exits.insert(1, "exit status 1".to_owned());
        }
        v
    }

    fn nodes(ids: &[&str]) -> Vec<(String, String)> {
        ids.iter().map(|id| ((*id).to_owned(), (*id).to_owned())).collect()
    }

    #[test]
    fn a_task_waits_until_each_of_its_nodes_ends_or_the_build_does() {
        let started = view(&[event("model.p.a", "started"), event("test.p.t", "pass")], true);
        assert!(!started.settled(1, &nodes(&["model.p.a", "test.p.t"])));
        assert!(started.settled(1, &nodes(&["test.p.t"])));
        let ended = view(&[event("model.p.a", "started")], false);
        assert!(ended.settled(1, &nodes(&["model.p.a"])));
    }

    #[test]
    fn failures_skips_and_silence_each_fail_the_task_with_their_reason() {
        let v = view(&[event("model.p.a", "success"), event("test.p.t", "fail"), event("model.p.b", "skipped")], false);
        let (ok, results) = task_outcome(&v, 1, &nodes(&["model.p.a"]));
        assert_eq!(ok, Ok(()));
        assert_eq!(results.counts["success"], 1);
        let (failed, results) = task_outcome(&v, 1, &nodes(&["model.p.a", "test.p.t"]));
        assert!(failed.unwrap_err().contains("exit status 1"));
        assert_eq!(results.failures[0].unique_id, "test.p.t");
        assert_eq!(results.failures[0].message.as_deref(), Some("test.p.t fail"));
        assert!(task_outcome(&v, 1, &nodes(&["model.p.b"])).0.unwrap_err().contains("dbt skipped model.p.b"));
        assert!(task_outcome(&v, 1, &nodes(&["model.p.c"])).0.unwrap_err().contains("no result for model.p.c"));
    }
}
