//! Which tasks a run runs, and in which order.
//!
//! A run takes the tasks of the selected pipelines (all of them by default), narrowed by
//! `--only STAGE` (just that stage's tasks) and `--from STAGE` (that stage and everything
//! downstream of it). A sensor whose target task (or whole pipeline) is in the same run waits
//! for it there, so those sensors are edges too: the awaited pipeline is ordered first.
//! Upstream tasks left out of the selection count as done, as when Airflow runs one task.

use super::{RunError, SpecGraph, TaskKey};
use crate::diagnostic::did_you_mean;
use crate::graph::sensor::Clock;
use crate::graph::{Operation, PipelineTasks, Task, WatchedNodes};
use crate::spec::{AssetCondition, Schedule, Spec};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

/// Which tasks `fhirflow run` runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    /// Pipeline ids; empty for every pipeline.
    pub pipelines: Vec<String>,
    /// Stages (`pipeline.stage`, or a stage id found in one selected pipeline) to run alone.
    pub only: Vec<String>,
    /// Stages to run with everything downstream of them.
    pub from: Vec<String>,
}

/// A pipeline taking part in a run.
#[derive(Debug, Clone)]
pub struct PlannedPipeline {
    /// Its id.
    pub id: String,
    /// The spec's folder, absolute: shell tasks run in it and dbt paths are relative to it.
    pub spec_dir: PathBuf,
    /// The spec it comes from.
    pub spec: Arc<Spec>,
    /// Its schedule, which decides its logical date in a run.
    pub clock: Option<Clock>,
    /// How many runs of it may be active at once.
    pub max_active_runs: u32,
    /// Whether every one of its tasks is in the run, so that the run's success is the pipeline's.
    pub complete: bool,
    /// For a pipeline scheduled on assets: the condition, decided on the asset events of the
    /// producers in this run.
    pub assets: Option<AssetCondition>,
    /// The trigger tasks of this run that start it; when there are any, it runs if one of
    /// them succeeded.
    pub triggered_by: Vec<usize>,
}

/// A task of a run, with its dependencies as indices into [`RunPlan::tasks`].
#[derive(Debug, Clone)]
pub struct PlannedTask {
    /// Pipeline and task id.
    pub key: TaskKey,
    /// How the task is named on the display: its id, or `pipeline.task` when the run has
    /// several pipelines.
    pub label: Arc<str>,
    /// Index into [`RunPlan::pipelines`].
    pub pipeline: usize,
    /// The compiled task.
    pub task: Task,
    /// Upstream tasks in the run.
    pub upstream: Vec<usize>,
    /// Tasks of other pipelines it waits for, whatever their state: for a sensor, its targets
    /// (it then judges their states); for a task of a triggered or asset-scheduled pipeline,
    /// the triggers and producers that decide whether it runs; for a task after a trigger that
    /// waits for completion, the tasks of the run it started.
    pub awaits: Vec<usize>,
    /// After a trigger with `wait_for_completion`: the pipeline (index into
    /// [`RunPlan::pipelines`]) whose run must have succeeded.
    pub after_run: Option<usize>,
    /// The DuckDB target its dbt commands write, which one task at a time may hold.
    pub writer: Option<Arc<str>>,
    /// The spec's pool it runs in and that pool's slots; `None` for Airflow's `default_pool` and
    /// for a DuckDB writer, whose pool replaces the spec's as in emitted DAGs.
    pub pool: Option<(Arc<str>, u32)>,
}

/// The tasks of a run in the order they may start: upstream before downstream, ties broken by
/// pipeline and then task order in the spec.
#[derive(Debug, Clone)]
pub struct RunPlan {
    /// The pipelines with tasks in the run, awaited ones first.
    pub pipelines: Vec<PlannedPipeline>,
    /// The tasks.
    pub tasks: Vec<PlannedTask>,
}

impl PlannedPipeline {
    /// The dbt project folder, or with `profiles` the folder of `profiles.yml`; the spec's
    /// folder when the spec has no `dbt`.
    pub fn dbt_dir(&self, profiles: bool) -> PathBuf {
        match &self.spec.dbt {
            Some(dbt) => {
                let relative =
                    if profiles { dbt.profiles_dir.as_ref().unwrap_or(&dbt.project_dir) } else { &dbt.project_dir };
                self.spec_dir.join(&relative.0)
            }
            None => self.spec_dir.clone(),
        }
    }

    /// The pipeline's logical date in a run at `run_date`: its newest schedule tick at or
    /// before it, or `run_date` itself when it has no schedule.
    pub fn logical_date(&self, run_date: DateTime<Utc>) -> DateTime<Utc> {
        self.clock.as_ref().and_then(|c| c.latest_run(run_date)).unwrap_or(run_date)
    }
}

impl RunPlan {
    /// The tasks `selection` picks from `specs`.
    pub fn select(specs: &[SpecGraph], selection: &Selection) -> Result<Self, RunError> {
        let all: Vec<&PipelineTasks> = specs.iter().flat_map(|s| &s.graph.pipelines).collect();
        for name in &selection.pipelines {
            if !all.iter().any(|p| p.id.as_str() == name) {
                let hint = did_you_mean(name, all.iter().map(|p| p.id.as_str()))
                    .map(|g| format!(" (did you mean `{g}`?)"))
                    .unwrap_or_default();
                return Err(RunError::UnknownPipeline { name: name.clone(), hint });
            }
        }
        // A chosen pipeline's triggers start their targets, which so take part too.
        let mut wanted: BTreeSet<&str> = selection.pipelines.iter().map(String::as_str).collect();
        loop {
            let started: Vec<&str> = all
                .iter()
                .filter(|p| wanted.contains(p.id.as_str()))
                .flat_map(|p| &p.tasks)
                .filter_map(|task| match &task.operation {
                    Operation::Trigger(t) => Some(t.pipeline.as_str()),
                    _ => None,
                })
                .filter(|id| !wanted.contains(id))
                .collect();
            if started.is_empty() {
                break;
            }
            wanted.extend(started);
        }
        let chosen = |id: &str| selection.pipelines.is_empty() || wanted.contains(id);
        let candidates = Self::build(specs, &chosen);
        if selection.only.is_empty() && selection.from.is_empty() {
            return Ok(candidates);
        }
        let mut keep = vec![false; candidates.tasks.len()];
        for name in &selection.only {
            for i in candidates.stage_tasks(name)? {
                keep[i] = true;
            }
        }
        let dependents = candidates.dependents();
        for name in &selection.from {
            let mut stack = candidates.stage_tasks(name)?;
            while let Some(i) = stack.pop() {
                if !std::mem::replace(&mut keep[i], true) {
                    stack.extend(&dependents[i]);
                }
            }
        }
        Ok(candidates.retain(&keep))
    }

    /// The tasks of `specs` named by `keys`, for a resumed run; keys of tasks no longer in
    /// the specs are left out and returned.
    pub fn restrict(specs: &[SpecGraph], keys: &[TaskKey]) -> (Self, Vec<TaskKey>) {
        let wanted: BTreeSet<&TaskKey> = keys.iter().collect();
        let pipelines: BTreeSet<&str> = keys.iter().map(|k| k.pipeline.as_str()).collect();
        let candidates = Self::build(specs, &|id| pipelines.contains(id));
        let keep: Vec<bool> = candidates.tasks.iter().map(|t| wanted.contains(&t.key)).collect();
        let plan = candidates.retain(&keep);
        let found: BTreeSet<&TaskKey> = plan.tasks.iter().map(|t| &t.key).collect();
        let missing = keys.iter().filter(|k| !found.contains(k)).cloned().collect();
        (plan, missing)
    }

    /// Every task of the chosen pipelines, ordered, with sensor edges inside the run.
    fn build(specs: &[SpecGraph], chosen: &dyn Fn(&str) -> bool) -> Self {
        let mut pipelines = Vec::new();
        let mut tasks: Vec<PlannedTask> = Vec::new();
        let mut writers = HashMap::new();
        let mut pools: HashMap<&str, Arc<str>> = HashMap::new();
        for spec in specs {
            let folder = spec.path.parent().map(PathBuf::from).unwrap_or_default();
            let spec_dir = std::path::absolute(if folder.as_os_str().is_empty() { PathBuf::from(".") } else { folder })
                .unwrap_or_default();
            for p in spec.graph.pipelines.iter().filter(|p| chosen(p.id.as_str())) {
                let tz: Tz = p.defaults.timezone.value.parse().unwrap_or(Tz::UTC);
                let index = pipelines.len();
                pipelines.push(PlannedPipeline {
                    id: p.id.to_string(),
                    spec_dir: spec_dir.clone(),
                    spec: Arc::clone(&spec.graph.spec),
                    clock: Clock::new(p.schedule.as_ref(), tz, p.start).ok().flatten(),
                    max_active_runs: p.max_active_runs,
                    complete: true,
                    assets: match &p.schedule {
                        Some(Schedule::Assets(condition)) => Some(condition.clone()),
                        _ => None,
                    },
                    triggered_by: Vec::new(),
                });
                // A watched stage's build task is Airflow's; the scheduler starts its builds itself.
                for task in p.tasks.iter().filter(|t| !WatchedNodes::is_build_task(&t.operation)) {
                    let writer = duckdb_writer_of(&pipelines[index], &task.operation, &mut writers);
                    let pool = match (&writer, &task.settings.pool.value) {
                        (None, Some(name)) => spec.graph.spec.pools.get(name).map(|declared| {
                            let shared = pools.entry(name.as_str()).or_insert_with(|| Arc::from(name.as_str()));
                            (Arc::clone(shared), declared.slots)
                        }),
                        _ => None,
                    };
                    tasks.push(PlannedTask {
                        key: TaskKey { pipeline: p.id.to_string(), task: task.id.clone() },
                        label: Arc::from(task.id.as_str()),
                        pipeline: index,
                        task: task.clone(),
                        upstream: Vec::new(),
                        awaits: Vec::new(),
                        after_run: None,
                        writer,
                        pool,
                    });
                }
            }
        }
        let index: HashMap<(&str, &str), usize> =
            tasks.iter().enumerate().map(|(i, t)| ((t.key.pipeline.as_str(), t.key.task.as_str()), i)).collect();
        // Looked up once, not per task: a run may have thousands of tasks.
        let mut by_pipeline: HashMap<&str, Vec<usize>> = HashMap::new();
        let mut triggers_of: HashMap<&str, Vec<usize>> = HashMap::new();
        let mut producers: HashMap<&str, Vec<usize>> = HashMap::new();
        for (i, t) in tasks.iter().enumerate() {
            by_pipeline.entry(t.key.pipeline.as_str()).or_default().push(i);
            if let Operation::Trigger(x) = &t.task.operation {
                triggers_of.entry(x.pipeline.as_str()).or_default().push(i);
            }
            for asset in &t.task.outlets {
                producers.entry(asset.as_str()).or_default().push(i);
            }
        }
        let mut edges: Vec<(Vec<usize>, Vec<usize>)> = Vec::with_capacity(tasks.len());
        let mut after_runs = vec![None; tasks.len()];
        for (i, t) in tasks.iter().enumerate() {
            let pipeline = t.key.pipeline.as_str();
            let upstream: Vec<usize> =
                t.task.upstream.iter().filter_map(|u| index.get(&(pipeline, u.as_str())).copied()).collect();
            let mut awaits: Vec<usize> = match &t.task.operation {
                Operation::Sensor(target) => match &target.task {
                    Some(task) => index.get(&(target.pipeline.as_str(), task.as_str())).copied().into_iter().collect(),
                    None => by_pipeline.get(target.pipeline.as_str()).cloned().unwrap_or_default(),
                },
                _ => Vec::new(),
            };
            // A pipeline scheduled on assets runs when their producers in this run have
            // succeeded; every one of its tasks waits for them, so that none runs untriggered.
            if let Some(condition) = &pipelines[t.pipeline].assets {
                let found: BTreeSet<usize> = condition
                    .assets()
                    .iter()
                    .filter_map(|a| producers.get(a.as_str()))
                    .flatten()
                    .copied()
                    .filter(|&j| tasks[j].pipeline != t.pipeline)
                    .collect();
                awaits.extend(found);
            }
            // A triggered pipeline's tasks wait for its triggers.
            awaits.extend(triggers_of.get(pipeline).into_iter().flatten());
            // After a trigger that waits for completion: the started run's tasks too.
            for &u in &upstream {
                if let Operation::Trigger(x) = &tasks[u].task.operation
                    && x.wait_for_completion
                    && let Some(started) = by_pipeline.get(x.pipeline.as_str())
                {
                    after_runs[i] = Some(tasks[started[0]].pipeline);
                    awaits.extend(started);
                }
            }
            edges.push((upstream, awaits));
        }
        for p in &mut pipelines {
            p.triggered_by = triggers_of.get(p.id.as_str()).cloned().unwrap_or_default();
        }
        for ((t, (upstream, awaits)), after_run) in tasks.iter_mut().zip(edges).zip(after_runs) {
            t.upstream = upstream;
            t.awaits = awaits;
            t.after_run = after_run;
        }
        RunPlan { pipelines, tasks }.ordered()
    }

    /// For each task, the tasks that depend on it (downstream or awaiting it).
    pub fn dependents(&self) -> Vec<Vec<usize>> {
        let mut out = vec![Vec::new(); self.tasks.len()];
        for (i, t) in self.tasks.iter().enumerate() {
            for &u in t.upstream.iter().chain(&t.awaits) {
                out[u].push(i);
            }
        }
        out
    }

    /// The tasks in an order where every task comes after its upstream and awaited tasks.
    fn ordered(self) -> Self {
        let n = self.tasks.len();
        let mut pending: Vec<usize> = self.tasks.iter().map(|t| t.upstream.len() + t.awaits.len()).collect();
        let dependents = self.dependents();
        // Ties: pipeline order, then the task's place in its pipeline (its index here).
        let mut ready: BTreeSet<(usize, usize)> =
            (0..n).filter(|&i| pending[i] == 0).map(|i| (self.tasks[i].pipeline, i)).collect();
        let mut order = Vec::with_capacity(n);
        while let Some((_, i)) = ready.pop_first() {
            order.push(i);
            for &d in &dependents[i] {
                pending[d] -= 1;
                if pending[d] == 0 {
                    ready.insert((self.tasks[d].pipeline, d));
                }
            }
        }
        // The compiler rejects cycles; anything left out would be one, and runs last.
        let placed: BTreeSet<usize> = order.iter().copied().collect();
        order.extend((0..n).filter(|i| !placed.contains(i)));
        let keep = vec![true; n];
        self.reindex(&order, &keep)
    }

    /// Only the tasks marked in `keep`, and the pipelines that still have tasks.
    fn retain(self, keep: &[bool]) -> Self {
        let order: Vec<usize> = (0..self.tasks.len()).collect();
        self.reindex(&order, keep)
    }

    /// The tasks in `order`, dropping those not in `keep` and edges to them; labels get the
    /// pipeline when more than one pipeline is left.
    fn reindex(self, order: &[usize], keep: &[bool]) -> Self {
        let mut new_index = vec![usize::MAX; self.tasks.len()];
        let mut kept = 0;
        for &i in order {
            if keep[i] {
                new_index[i] = kept;
                kept += 1;
            }
        }
        let mut total = vec![0usize; self.pipelines.len()];
        let mut used = vec![0usize; self.pipelines.len()];
        for (i, t) in self.tasks.iter().enumerate() {
            total[t.pipeline] += 1;
            used[t.pipeline] += usize::from(keep[i]);
        }
        let mut pipeline_index = vec![usize::MAX; self.pipelines.len()];
        let mut pipelines = Vec::new();
        // Pipelines in the order their first task runs, so awaited pipelines come first.
        for &i in order.iter().filter(|&&i| keep[i]) {
            let p = self.tasks[i].pipeline;
            if pipeline_index[p] == usize::MAX {
                pipeline_index[p] = pipelines.len();
                let mut planned = self.pipelines[p].clone();
                planned.complete = planned.complete && used[p] == total[p];
                planned.triggered_by =
                    planned.triggered_by.iter().map(|&u| new_index[u]).filter(|&u| u != usize::MAX).collect();
                pipelines.push(planned);
            }
        }
        let several = pipelines.len() > 1;
        let mut old: Vec<Option<PlannedTask>> = self.tasks.into_iter().map(Some).collect();
        let mut tasks = Vec::with_capacity(kept);
        for &i in order {
            let Some(mut t) = old[i].take().filter(|_| keep[i]) else { continue };
            let map = |list: &[usize]| list.iter().map(|&u| new_index[u]).filter(|&u| u != usize::MAX).collect();
            t.upstream = map(&t.upstream);
            t.awaits = map(&t.awaits);
            t.pipeline = pipeline_index[t.pipeline];
            t.after_run = t.after_run.map(|p| pipeline_index[p]).filter(|&p| p != usize::MAX);
            t.label = if several { Arc::from(t.key.to_string()) } else { Arc::from(t.key.task.as_str()) };
            tasks.push(t);
        }
        RunPlan { pipelines, tasks }
    }

    /// The tasks of the stage `name`: `pipeline.stage`, or a stage id found in one pipeline.
    /// A task id that is no stage's id names that task alone.
    fn stage_tasks(&self, name: &str) -> Result<Vec<usize>, RunError> {
        let matches = |by_task: bool| -> Vec<usize> {
            self.tasks
                .iter()
                .enumerate()
                .filter(|(_, t)| {
                    let id = if by_task { t.key.task.as_str() } else { t.task.stage.as_str() };
                    name == id || name == format!("{}.{id}", t.key.pipeline)
                })
                .map(|(i, _)| i)
                .collect()
        };
        let mut found = matches(false);
        if found.is_empty() {
            found = matches(true);
        }
        let pipelines: BTreeSet<&str> = found.iter().map(|&i| self.tasks[i].key.pipeline.as_str()).collect();
        match pipelines.len() {
            1 => Ok(found),
            0 => {
                let qualified: Vec<String> =
                    self.tasks.iter().map(|t| format!("{}.{}", t.key.pipeline, t.task.stage)).collect();
                let names =
                    self.tasks.iter().map(|t| t.task.stage.as_str()).chain(qualified.iter().map(String::as_str));
                let hint = did_you_mean(name, names).map(|g| format!(" (did you mean `{g}`?)")).unwrap_or_default();
                Err(RunError::UnknownStage { name: name.to_owned(), hint })
            }
            _ => Err(RunError::AmbiguousStage {
                name: name.to_owned(),
                pipelines: pipelines.into_iter().collect::<Vec<_>>().join(", "),
            }),
        }
    }
}

/// The DuckDB target a dbt task of `pipeline` writes, read once per project and target (see
/// [`crate::dbt::duckdb_writer`]); `None` for other tasks and warehouses.
fn duckdb_writer_of(
    pipeline: &PlannedPipeline,
    operation: &Operation,
    known: &mut HashMap<(PathBuf, PathBuf, Option<String>), Option<Arc<str>>>,
) -> Option<Arc<str>> {
    let (Operation::Dbt(invocation), Some(_)) = (operation, &pipeline.spec.dbt) else { return None };
    let target = invocation.target().map(str::to_owned);
    let (project, profiles) = (pipeline.dbt_dir(false), pipeline.dbt_dir(true));
    known
        .entry((project.clone(), profiles.clone(), target.clone()))
        .or_insert_with(|| crate::dbt::duckdb_writer(&project, &profiles, target.as_deref()).map(Arc::from))
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::SourceFile;

    const SPEC: &str = r#"
version: 1
pipelines:
  up:
    schedule: "*/5 * * * *"
    stages:
      extract: {kind: shell, command: "echo extract"}
      transform: {kind: shell, command: "echo transform", after: [extract]}
      side: {kind: shell, command: "echo side"}
  down:
    schedule: "*/10 * * * *"
    stages:
      wait: {kind: sensor, pipeline: up, stage: transform}
      report: {kind: shell, command: "echo report", after: [wait]}
      extract: {kind: shell, command: "echo other extract"}
"#;

    fn specs() -> Vec<SpecGraph> {
        let compiled = crate::compile(SourceFile::new("p.yaml", SPEC)).expect("valid spec");
        vec![SpecGraph { path: PathBuf::from("pipelines/p.yaml"), graph: compiled.graph }]
    }

    fn labels(plan: &RunPlan) -> Vec<&str> {
        plan.tasks.iter().map(|t| &*t.label).collect()
    }

    fn select(pipelines: &[&str], only: &[&str], from: &[&str]) -> Result<RunPlan, RunError> {
        let owned = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
        RunPlan::select(&specs(), &Selection { pipelines: owned(pipelines), only: owned(only), from: owned(from) })
    }

    #[test]
    fn everything_runs_upstream_first_and_awaited_pipelines_first() {
        let plan = select(&[], &[], &[]).unwrap();
        assert_eq!(
            labels(&plan),
            ["up.extract", "up.transform", "up.side", "down.wait", "down.report", "down.extract"],
            "ties keep the compiled order; the sensor waits for up.transform"
        );
        let wait = &plan.tasks[3];
        assert_eq!(wait.awaits, [1]);
        assert!(plan.pipelines.iter().all(|p| p.complete));
    }

    #[test]
    fn one_pipeline_alone_has_bare_labels_and_no_in_run_await() {
        let plan = select(&["down"], &[], &[]).unwrap();
        assert_eq!(labels(&plan), ["wait", "report", "extract"]);
        assert!(plan.tasks[0].awaits.is_empty(), "up is not in the run: the sensor asks the store");
    }

    #[test]
    fn from_takes_everything_downstream_across_sensors() {
        let plan = select(&[], &[], &["up.transform"]).unwrap();
        assert_eq!(labels(&plan), ["up.transform", "down.wait", "down.report"]);
        assert!(plan.tasks[0].upstream.is_empty(), "extract is not selected: counts as done");
        assert!(!plan.pipelines[0].complete);
    }

    #[test]
    fn only_takes_the_stage_alone() {
        let plan = select(&[], &["side", "down.report"], &[]).unwrap();
        assert_eq!(labels(&plan), ["up.side", "down.report"]);
    }

    #[test]
    fn stage_names_are_checked() {
        assert!(matches!(select(&[], &["extract"], &[]), Err(RunError::AmbiguousStage { .. })));
        assert_eq!(select(&["up"], &["extract"], &[]).map(|p| p.tasks.len()).ok(), Some(1));
        let error = select(&[], &["transfrom"], &[]).unwrap_err().to_string();
        assert_eq!(error, "no stage `transfrom` in the selected pipelines (did you mean `transform`?)");
        let error = select(&["dwon"], &[], &[]).unwrap_err().to_string();
        assert_eq!(error, "no pipeline `dwon` (did you mean `down`?)");
    }

    #[test]
    fn resumed_runs_keep_their_tasks() {
        let keys = [
            TaskKey { pipeline: "up".into(), task: "side".into() },
            TaskKey { pipeline: "up".into(), task: "gone".into() },
        ];
        let (plan, missing) = RunPlan::restrict(&specs(), &keys);
        assert_eq!(labels(&plan), ["side"]);
        assert_eq!(missing, [keys[1].clone()]);
    }

    #[test]
    fn logical_dates_follow_each_schedule() {
        let plan = select(&[], &[], &[]).unwrap();
        let at = DateTime::parse_from_rfc3339("2026-01-01T00:17:30Z").unwrap().with_timezone(&Utc);
        let dates: Vec<String> =
            plan.pipelines.iter().map(|p| p.logical_date(at).format("%H:%M").to_string()).collect();
        assert_eq!(dates, ["00:15", "00:10"]);
    }
}
