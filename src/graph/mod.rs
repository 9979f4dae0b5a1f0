//! Lowering: a validated [`Spec`] → a [`PipelineGraph`] of Airflow-shaped tasks.
//!
//! Each stage becomes one or more tasks; `after:` becomes edges; sensors are resolved to a
//! task of another pipeline with the `execution_delta` that makes them line up. Everything a
//! backend needs is decided here, so the Airflow emitter and the executor run the same graph.
//! Rejected here: cycles (with their path), dangling references (with a did-you-mean),
//! duplicate task ids, and sensors that would wait forever.

mod assets;
mod dbt_modes;
mod dbt_selection;
pub mod expectations;
mod explain;
mod render;
pub mod sensor;
pub mod settings;

pub use crate::spec::TriggerRule;
pub use explain::{ExplainedSetting, Explanation, SettingLocation, explain};
pub use render::GraphFormat;
pub use settings::{Origin, Resolved, Settings};

use crate::diagnostic::{Diagnostic, Diagnostics, did_you_mean};
use crate::parse::{Document, escape_pointer};
use crate::spec::{
    AssetName, AwaitedState, ColumnName, ConnectionKind, DbtCommand, DbtSelector, Duration, Identifier, ParseResults,
    PipelineId, PoolName, RawColumns, Schedule, SensorMode, Spec, StageId, StageKind, TableName, TaskSettings,
    WatermarkColumns,
};
use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
// Kosaraju, not Tarjan: petgraph's Tarjan recurses once per node, and a 50,000-stage `after:` chain
// overflowed the stack with it.
use petgraph::algo::kosaraju_scc;
use petgraph::graph::{DiGraph, NodeIndex};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

/// The compiled spec: every pipeline with its tasks in a stable topological order.
#[derive(Debug, Clone)]
pub struct PipelineGraph {
    /// The spec it was compiled from.
    pub spec: Arc<Spec>,
    /// Pipelines in spec order.
    pub pipelines: Vec<PipelineTasks>,
}

/// One pipeline, lowered: one Airflow DAG.
#[derive(Debug, Clone)]
pub struct PipelineTasks {
    /// The `dag_id`.
    pub id: PipelineId,
    /// When it runs.
    pub schedule: Option<Schedule>,
    /// Whether missed intervals are run.
    pub catchup: bool,
    /// Concurrent runs allowed.
    pub max_active_runs: u32,
    /// Airflow tags, sorted.
    pub tags: Vec<String>,
    /// One-line description.
    pub description: Option<String>,
    /// The pipeline-level settings (project defaults overridden by the pipeline's).
    pub defaults: Settings,
    /// The parsed start date, in UTC.
    pub start: Option<DateTime<Utc>>,
    /// Tasks, upstream before downstream, ties broken by spec order.
    pub tasks: Vec<Task>,
}

/// One Airflow task.
#[derive(Debug, Clone)]
pub struct Task {
    /// The `task_id`: the task's own name, after its groups' ids and a dot each.
    pub id: String,
    /// The Airflow task groups it sits in, outermost first; empty for none.
    pub group: Vec<String>,
    /// The stage it comes from.
    pub stage: StageId,
    /// What it does.
    pub operation: Operation,
    /// Task ids it waits for, sorted.
    pub upstream: Vec<String>,
    /// Its resolved settings.
    pub settings: Settings,
    /// When it runs relative to its upstream tasks.
    pub trigger_rule: TriggerRule,
    /// Assets it produces when it succeeds (Airflow `outlets`).
    pub outlets: Vec<AssetName>,
}

/// What a task does.
#[derive(Debug, Clone)]
pub enum Operation {
    /// Run dbt.
    Dbt(DbtInvocation),
    /// Read the dbt task's `run_results.json` and log its counts.
    DbtResults {
        /// The dbt task whose results are read.
        dbt_task: String,
    },
    /// Wait for another pipeline.
    Sensor(SensorTarget),
    /// Start a run of another pipeline.
    Trigger(TriggerTarget),
    /// A task of a kind behind [`crate::kinds::KindTask`].
    Kind(Arc<dyn crate::kinds::KindTask>),
    /// Nothing: a join point that stands for a stage of many tasks (what sensors and later
    /// stages wait for).
    Join,
    /// One step of an S3 → warehouse load.
    Load {
        /// Which step.
        step: LoadStep,
        /// The load it belongs to.
        plan: Arc<LoadPlan>,
    },
}

/// A dbt command line, with the project and profiles folders left for the backend to place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbtInvocation {
    /// The command.
    pub command: DbtCommand,
    /// The executable, such as `dbt`.
    pub executable: String,
    /// Arguments after the executable.
    pub args: Vec<DbtArg>,
    /// Run `dbt deps` first, in the same task (a container starts without the packages).
    pub deps_first: bool,
    /// A failure is logged and the task still succeeds (a freshness check with policy `warn`).
    pub tolerate_failure: bool,
    /// Copy `target/` artifacts and logs to `dbt.artifacts` afterwards, whatever the outcome.
    pub save_artifacts: bool,
    /// A task of a `watcher: true` per-model stage: the dbt nodes whose events give it its state,
    /// where one `dbt build` runs them all (or, in Airflow, that build's own task).
    pub watch: Option<WatchedNodes>,
}

/// The dbt nodes one task of a watched per-model stage stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchedNodes {
    /// `dbt build` with the stage's folders, target, threads and vars, but no selection.
    pub build: Arc<DbtInvocation>,
    /// Each node's `unique_id` and the selector that picks exactly it.
    pub nodes: Vec<(String, String)>,
    /// The stage's build task (`<stage>_build`): in Airflow it runs the one `dbt build` whose
    /// events the other tasks read; `fhirflow run` starts its builds itself and leaves it out.
    pub build_task: String,
    /// Whether this is that task, whose `nodes` are the whole stage's.
    pub is_build: bool,
}

impl WatchedNodes {
    /// Whether `operation` is a watched stage's build task, which only Airflow runs.
    pub fn is_build_task(operation: &Operation) -> bool {
        matches!(operation, Operation::Dbt(DbtInvocation { watch: Some(w), .. }) if w.is_build)
    }
}

impl DbtInvocation {
    /// The dbt target it names with `--target`, if any (else the profile's default).
    pub fn target(&self) -> Option<&str> {
        self.args.windows(2).find_map(|pair| match pair {
            [DbtArg::Literal(flag), DbtArg::Literal(value)] if flag == "--target" => Some(value.as_str()),
            _ => None,
        })
    }

    /// The arguments of the `dbt deps` that runs first when [`DbtInvocation::deps_first`] is set.
    pub fn deps_args() -> [DbtArg; 5] {
        [
            DbtArg::Literal("deps".to_owned()),
            DbtArg::Literal("--project-dir".to_owned()),
            DbtArg::ProjectDir,
            DbtArg::Literal("--profiles-dir".to_owned()),
            DbtArg::ProfilesDir,
        ]
    }
}

/// One dbt argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbtArg {
    /// A literal word.
    Literal(String),
    /// The project folder, wherever the backend runs it.
    ProjectDir,
    /// The profiles folder, wherever the backend runs it.
    ProfilesDir,
    /// The previous run's artifacts (`--state`), fetched from `dbt.artifacts` before dbt runs.
    StateDir,
    /// The `--vars` JSON. Its strings may hold Airflow templates, so a backend renders it and
    /// passes the result as one word that no shell reads.
    Vars(String),
}

impl DbtArg {
    /// Whether the word holds an Airflow template (`{{`, `{%` or `{#`).
    pub fn is_template(&self) -> bool {
        matches!(self, DbtArg::Vars(json) if crate::validate::templates::has_template(json))
    }
}

/// The resolved target of a sensor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SensorTarget {
    /// The pipeline waited for.
    pub pipeline: PipelineId,
    /// The task waited for; `None` waits for the whole run.
    pub task: Option<String>,
    /// How far before this run's logical date the awaited run is.
    pub execution_delta: Duration,
    /// Give up after this long.
    pub timeout: Duration,
    /// Check this often.
    pub poke_interval: Duration,
    /// Poke or reschedule.
    pub mode: SensorMode,
    /// Target states that satisfy the sensor.
    pub allowed_states: Vec<AwaitedState>,
    /// Target states that fail it at once.
    pub failed_states: Vec<AwaitedState>,
    /// Target states that skip it.
    pub skipped_states: Vec<AwaitedState>,
    /// Fail at once when the target does not exist.
    pub check_existence: bool,
    /// Wait in the triggerer (Airflow only).
    pub deferrable: bool,
    /// Skip instead of failing on timeout or a failed target.
    pub soft_fail: bool,
}

/// The pipeline a trigger starts, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TriggerTarget {
    /// The pipeline started.
    pub pipeline: PipelineId,
    /// Its run's `conf`.
    pub conf: BTreeMap<String, serde_json::Value>,
    /// Whether the trigger waits for the started run to end.
    pub wait_for_completion: bool,
    /// How often it checks, when it waits.
    pub poke_interval: Duration,
}

/// What a sensor does once its target is in some state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SensorVerdict {
    /// The sensor succeeds.
    Satisfied,
    /// The sensor fails (or, with `soft_fail`, is skipped).
    Failed,
    /// The sensor is skipped, and so are the tasks after it that need it to succeed.
    Skipped,
    /// The state is in none of the lists: the sensor keeps poking until its timeout.
    Waiting,
}

impl SensorTarget {
    /// The default states for a target: a task (`stage` set) or a whole run. A skipped task
    /// skips the sensor, so that a load with nothing new never leaves its sensor waiting.
    pub fn default_states(task: bool) -> [Vec<AwaitedState>; 3] {
        use AwaitedState::{Failed, Skipped, Success, UpstreamFailed};
        if task {
            [vec![Success], vec![Failed, UpstreamFailed], vec![Skipped]]
        } else {
            [vec![Success], vec![Failed], Vec::new()]
        }
    }

    /// What the sensor does when its target ended in `state`.
    pub fn verdict(&self, state: AwaitedState) -> SensorVerdict {
        if self.allowed_states.contains(&state) {
            SensorVerdict::Satisfied
        } else if self.failed_states.contains(&state) {
            SensorVerdict::Failed
        } else if self.skipped_states.contains(&state) {
            SensorVerdict::Skipped
        } else {
            SensorVerdict::Waiting
        }
    }
}

/// The steps of a load, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LoadStep {
    /// Create the raw and watermark tables if missing.
    CreateTables,
    /// Read the last watermark.
    GetWatermark,
    /// List files newer than the watermark, one batch.
    ListFiles,
    /// `COPY INTO` the batch.
    Load,
    /// Advance the watermark past the batch.
    UpdateWatermark,
}

impl LoadStep {
    /// All steps in order.
    pub const ALL: [LoadStep; 5] = [
        LoadStep::CreateTables,
        LoadStep::GetWatermark,
        LoadStep::ListFiles,
        LoadStep::Load,
        LoadStep::UpdateWatermark,
    ];

    /// The task id of the step, before any prefix: the seed's names.
    pub fn task_name(self) -> &'static str {
        match self {
            LoadStep::CreateTables => "create_snowflake_tables",
            LoadStep::GetWatermark => "get_last_watermark",
            LoadStep::ListFiles => "list_new_s3_files",
            LoadStep::Load => "load_files_to_snowflake",
            LoadStep::UpdateWatermark => "update_watermark",
        }
    }
}

/// Everything a load needs, shared by its five tasks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadPlan {
    /// The stage.
    pub stage: StageId,
    /// Where the files are.
    pub source: LoadSource,
    /// The key prefix (S3) or sub-folder (local).
    pub prefix: String,
    /// The warehouse.
    pub target: LoadTarget,
    /// The raw table.
    pub table: TableName,
    /// The watermark table.
    pub watermark_table: TableName,
    /// The raw table's column names.
    pub columns: RawColumns,
    /// The watermark table's column names.
    pub watermark_columns: WatermarkColumns,
    /// Files per run.
    pub batch_size: u32,
    /// Task ids of the five steps, in [`LoadStep::ALL`] order.
    pub task_ids: [String; 5],
}

/// The file side of a load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadSource {
    /// An S3 bucket.
    S3 {
        /// The spec's connection name (for `fhirflow run`'s settings).
        connection: Identifier,
        /// Airflow connection id.
        conn_id: String,
        /// The bucket.
        bucket: String,
    },
    /// A folder on this machine (`fhirflow run` only).
    Local {
        /// The spec's connection name.
        connection: Identifier,
        /// The folder, relative to the spec.
        path: String,
    },
}

/// The warehouse side of a load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadTarget {
    /// A Snowflake account.
    Snowflake {
        /// The spec's connection name (for `fhirflow run`'s settings).
        connection: Identifier,
        /// Airflow connection id.
        conn_id: String,
        /// The external stage `COPY INTO` reads through.
        stage: TableName,
    },
    /// A DuckDB file on this machine (`fhirflow run` only).
    DuckDb {
        /// The spec's connection name.
        connection: Identifier,
        /// The database file, relative to the spec.
        path: String,
    },
}

impl LoadPlan {
    /// What the Airflow DAGs need: the S3 connection id and bucket, the Snowflake connection id
    /// and stage. `None` for a load from a local folder or into DuckDB, which only `fhirflow run` runs.
    pub fn airflow_parts(&self) -> Option<(&str, &str, &str, &TableName)> {
        match (&self.source, &self.target) {
            (LoadSource::S3 { conn_id, bucket, .. }, LoadTarget::Snowflake { conn_id: wh, stage, .. }) => {
                Some((conn_id, bucket, wh, stage))
            }
            _ => None,
        }
    }

    /// The task id of `step`.
    pub fn task_id(&self, step: LoadStep) -> &str {
        &self.task_ids[step as usize]
    }

    /// The raw table's layout, then the watermark table's: what a table that exists must have.
    pub fn layouts(&self) -> [TableLayout<'_>; 2] {
        [
            TableLayout { table: &self.table, setting: "target.columns", columns: self.columns.named().to_vec() },
            TableLayout {
                table: &self.watermark_table,
                setting: "watermark_columns",
                columns: self.watermark_columns.named().to_vec(),
            },
        ]
    }
}

/// A table of a load and the columns it must have, each with the setting that names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableLayout<'a> {
    /// The table.
    pub table: &'a TableName,
    /// Where the spec names its columns, such as `target.columns`.
    pub setting: &'static str,
    /// (setting, column) pairs, in table order.
    pub columns: Vec<(&'static str, &'a ColumnName)>,
}

impl TableLayout<'_> {
    /// The columns missing from a table whose columns are `found`, as the warehouse names them:
    /// Snowflake upper-cases unquoted names, so there a column matches its upper-cased name
    /// exactly; DuckDB (`case_insensitive`) matches without case.
    pub fn missing(&self, found: &[String], case_insensitive: bool) -> Vec<(&'static str, &ColumnName)> {
        let has = |c: &ColumnName| found.iter().any(|f| c.matches(f, case_insensitive));
        self.columns.iter().filter(|(_, c)| !has(c)).map(|(s, c)| (*s, *c)).collect()
    }
}

impl PipelineGraph {
    /// The pipeline with id `id`.
    pub fn pipeline(&self, id: &str) -> Option<&PipelineTasks> {
        self.pipelines.iter().find(|p| p.id.as_str() == id)
    }

    /// How many tasks in all.
    pub fn task_count(&self) -> usize {
        self.pipelines.iter().map(|p| p.tasks.len()).sum()
    }
}

impl PipelineTasks {
    /// The task with id `id`.
    pub fn task(&self, id: &str) -> Option<&Task> {
        self.tasks.iter().find(|t| t.id == id)
    }
}

/// A stage lowered to tasks, before edges are known.
struct LoweredStage {
    stage: StageId,
    index: usize,
    tasks: Vec<Task>,
    /// Tasks that `after:` edges into this stage attach to.
    entry: Vec<String>,
    /// Tasks that downstream stages wait for.
    exit: Vec<String>,
    /// The task whose success means the stage succeeded (what sensors wait for).
    completion: String,
}

struct Lowering<'a> {
    spec: &'a Spec,
    doc: &'a Document,
    diagnostics: Diagnostics,
    /// Sensor alignments already computed, by the two clocks and the anchor.
    alignments: HashMap<String, Result<chrono::TimeDelta, sensor::Misalignment>>,
    /// The dbt manifest once read (`Some(None)`: reading it failed and was reported).
    manifest: Option<Option<Arc<crate::dbt::Manifest>>>,
    /// The dbt project's selectors once read (`Some(None)`: reading them failed and was reported).
    selectors: Option<Option<Arc<crate::dbt::Selectors>>>,
}

/// Lowers a validated spec to its graph and its warnings. `doc` locates problems; on error,
/// the warnings come back with the errors.
pub fn lower(spec: Spec, doc: &Document) -> Result<(PipelineGraph, Diagnostics), Diagnostics> {
    lower_all(vec![(spec, doc)]).pop().unwrap_or_else(|| Err(Diagnostics::new()))
}

/// What a sensor in any spec needs to know about the pipeline it waits for.
struct CatalogEntry {
    /// Which spec defines it.
    unit: usize,
    schedule: Option<Schedule>,
    /// The spec gives a schedule that validation rejected (and reported); it is lowered as
    /// absent, so whether a sensor lines up with it is unknown.
    schedule_rejected: bool,
    clock: Result<Option<sensor::Clock>, sensor::Misalignment>,
    start: Option<DateTime<Utc>>,
    /// Each stage and the task whose success means the stage succeeded.
    stages: Vec<(StageId, String)>,
}

/// Every pipeline of every spec compiled together, by id.
type Catalog = BTreeMap<PipelineId, CatalogEntry>;

/// One pipeline's dependency on another, for the cycle check across pipelines.
struct Wait {
    unit: usize,
    waiter: PipelineId,
    target: PipelineId,
    /// What makes the dependency: a sensor stage, a trigger stage, or an asset in a schedule.
    pointer: String,
    kind: WaitKind,
}

/// What makes one pipeline depend on another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WaitKind {
    /// A sensor waits for it.
    Sensor,
    /// It is scheduled on an asset the other produces.
    Asset,
    /// The other starts it.
    Trigger,
}

impl WaitKind {
    fn what(self) -> &'static str {
        match self {
            WaitKind::Sensor => "sensor",
            WaitKind::Asset => "asset",
            WaitKind::Trigger => "trigger",
        }
    }
}

/// Lowers several specs as one graph, so that a sensor may wait for a pipeline of another spec
/// and cycles across specs are found. One result per spec, in order.
pub fn lower_all(units: Vec<(Spec, &Document)>) -> Vec<Result<(PipelineGraph, Diagnostics), Diagnostics>> {
    let (specs, docs): (Vec<Spec>, Vec<&Document>) = units.into_iter().unzip();
    let mut lowerings: Vec<Lowering> = specs
        .iter()
        .zip(&docs)
        .map(|(spec, doc)| Lowering {
            spec,
            doc,
            diagnostics: Diagnostics::new(),
            alignments: HashMap::new(),
            manifest: None,
            selectors: None,
        })
        .collect();
    let mut lowered = Vec::new();
    let mut catalog = Catalog::new();
    for (unit, lowering) in lowerings.iter_mut().enumerate() {
        lowering.check_layers();
        lowering.check_project_properties();
        let (pipelines, stages) = lowering.pipelines();
        for (p, stages) in pipelines.iter().zip(stages) {
            let pointer = format!("/pipelines/{}", escape_pointer(p.id.as_str()));
            if let Some(first) = catalog.get(&p.id) {
                lowering.error(
                    Diagnostic::error("duplicate-pipeline", format!("pipeline `{}` is defined in two specs", p.id))
                        .at(lowering.doc.key_span(&pointer), "")
                        .also(docs[first.unit].key_span(&pointer), "first defined here")
                        .help("pipeline ids are DAG ids and must be unique across the specs compiled together"),
                );
                continue;
            }
            let tz: Tz = p.defaults.timezone.value.parse().unwrap_or(Tz::UTC);
            catalog.insert(
                p.id.clone(),
                CatalogEntry {
                    unit,
                    schedule: p.schedule.clone(),
                    schedule_rejected: p.schedule.is_none()
                        && lowering.doc.value.pointer(&format!("{pointer}/schedule")).is_some_and(|v| !v.is_null()),
                    clock: sensor::Clock::new(p.schedule.as_ref(), tz, p.start),
                    start: p.start,
                    stages: stages.into_iter().map(|s| (s.stage, s.completion)).collect(),
                },
            );
        }
        lowered.push(pipelines);
    }
    let mut waits = Vec::new();
    for (unit, (lowering, pipelines)) in lowerings.iter_mut().zip(lowered.iter_mut()).enumerate() {
        waits.extend(lowering.resolve_sensors(unit, pipelines, &catalog));
    }
    waits.extend(assets::resolve_assets(&mut lowerings, &lowered, &catalog));
    for (unit, (lowering, pipelines)) in lowerings.iter_mut().zip(lowered.iter()).enumerate() {
        waits.extend(lowering.resolve_triggers(unit, pipelines, &catalog));
    }
    pipeline_cycles(&mut lowerings, &catalog, &waits);
    let diagnostics: Vec<Diagnostics> = lowerings.into_iter().map(|l| l.diagnostics).collect();
    specs
        .into_iter()
        .zip(lowered)
        .zip(diagnostics)
        .map(|((spec, pipelines), diagnostics)| {
            if diagnostics.has_errors() {
                Err(diagnostics)
            } else {
                Ok((PipelineGraph { spec: Arc::new(spec), pipelines }, diagnostics))
            }
        })
        .collect()
}

/// Errors for what the Airflow backend cannot write: loads from a `local` folder or into a `duckdb`
/// file, which only `fhirflow run` runs. `validate` and `run` accept them; `plan` and `apply` do not.
pub fn airflow_unsupported(graph: &PipelineGraph, doc: &Document) -> Diagnostics {
    let mut out = Diagnostics::new();
    for pipeline in &graph.pipelines {
        for task in &pipeline.tasks {
            let Operation::Load { step: LoadStep::CreateTables, plan } = &task.operation else { continue };
            let pointer = stage_pointer(&pipeline.id, &plan.stage);
            let (side, kind) = match (&plan.source, &plan.target) {
                (LoadSource::Local { .. }, _) => ("source", "local"),
                (_, LoadTarget::DuckDb { .. }) => ("target", "duckdb"),
                _ => continue,
            };
            out.push(
                Diagnostic::error(
                    "run-only-connection",
                    format!("load `{}` uses a {kind} connection, which Airflow cannot reach", plan.stage),
                )
                .at(doc.span(&format!("{pointer}/{side}/connection")), format!("a {kind} connection"))
                .help("local and duckdb connections run only with `fhirflow run`; use s3 and snowflake connections for Airflow"),
            );
        }
    }
    out
}

fn stage_pointer(pipeline: &PipelineId, stage: &StageId) -> String {
    format!("/pipelines/{}/stages/{}", escape_pointer(pipeline.as_str()), escape_pointer(stage.as_str()))
}

/// Airflow's own pool, which always exists: a task in no other pool runs in it.
pub const DEFAULT_POOL: &str = "default_pool";

fn setting_pointer(origin: Origin, pipeline: &PipelineId, stage: Option<&StageId>, field: &str) -> String {
    match (origin, stage) {
        (Origin::Stage, Some(stage)) => format!("{}/{field}", stage_pointer(pipeline, stage)),
        (Origin::Pipeline, _) => format!("/pipelines/{}/defaults/{field}", escape_pointer(pipeline.as_str())),
        _ => format!("/defaults/{field}"),
    }
}

fn parse_start(text: &str, tz: Tz) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc));
    }
    let naive = NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .or_else(|| NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S").ok())
        .or_else(|| NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S").ok())
        .or_else(|| NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M").ok())
        .or_else(|| NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M").ok())?;
    tz.from_local_datetime(&naive).earliest().map(|t| t.with_timezone(&Utc))
}

impl Lowering<'_> {
    fn error(&mut self, diagnostic: Diagnostic) {
        self.diagnostics.push(diagnostic);
    }

    /// Lowers every pipeline of the spec; sensors are resolved later, against all specs.
    fn pipelines(&mut self) -> (Vec<PipelineTasks>, Vec<Vec<LoweredStage>>) {
        let mut lowered: Vec<PipelineTasks> = Vec::new();
        let mut stage_lists = Vec::new();
        self.check_pool(self.spec.defaults.pool.as_ref(), || "/defaults/pool".to_owned());
        for (id, pipeline) in &self.spec.pipelines {
            let pipeline_pointer = format!("/pipelines/{}", escape_pointer(id.as_str()));
            if pipeline.start_date.is_some() && pipeline.defaults.start_date.is_some() {
                self.error(
                    Diagnostic::error("start-date-twice", format!("pipeline `{id}` sets `start_date` twice"))
                        .at(self.doc.key_span(&format!("{pipeline_pointer}/start_date")), "here")
                        .also(self.doc.key_span(&format!("{pipeline_pointer}/defaults/start_date")), "and here")
                        .help("keep one of them"),
                );
            }
            self.check_pool(pipeline.defaults.pool.as_ref(), || format!("{pipeline_pointer}/defaults/pool"));
            let own = pipeline.settings();
            let defaults = Settings::resolve(&self.spec.defaults, &own, &TaskSettings::default());
            let tz = self.timezone(&defaults, id);
            let start = self.start_date(&defaults, id, tz);
            if self.spec.airflow.version == 2 && pipeline.schedule.is_some() && start.is_none() {
                self.error(
                    Diagnostic::error(
                        "missing-start-date",
                        format!("pipeline `{id}` is scheduled but has no start_date"),
                    )
                    .at(self.doc.key_span(&format!("/pipelines/{}", escape_pointer(id.as_str()))), "")
                    .help("Airflow 2 refuses a scheduled DAG without one; set `start_date` in `defaults`"),
                );
            }
            let stages = self.stages(id, &own);
            let tasks = self.order_tasks(id, &stages);
            let mut tags: Vec<String> = pipeline.tags.iter().map(|t| t.0.clone()).collect();
            tags.sort();
            tags.dedup();
            lowered.push(PipelineTasks {
                id: id.clone(),
                schedule: pipeline.schedule.clone(),
                catchup: pipeline.catchup,
                max_active_runs: pipeline.max_active_runs,
                tags,
                description: pipeline.description.clone(),
                defaults,
                start,
                tasks,
            });
            stage_lists.push(stages);
        }
        (lowered, stage_lists)
    }

    fn timezone(&mut self, settings: &Settings, pipeline: &PipelineId) -> Tz {
        match settings.timezone.value.parse::<Tz>() {
            Ok(tz) => tz,
            Err(_) => {
                let pointer = setting_pointer(settings.timezone.origin, pipeline, None, "timezone");
                let names = chrono_tz::TZ_VARIANTS.iter().map(|tz| tz.name());
                let mut d =
                    Diagnostic::error("unknown-timezone", format!("unknown time zone {:?}", settings.timezone.value))
                        .at(self.doc.span(&pointer), "not an IANA time zone name");
                if let Some(guess) = did_you_mean(&settings.timezone.value, names) {
                    d = d.help(format!("did you mean `{guess}`?"));
                }
                self.error(d);
                Tz::UTC
            }
        }
    }

    fn start_date(&mut self, settings: &Settings, pipeline: &PipelineId, tz: Tz) -> Option<DateTime<Utc>> {
        let text = settings.start_date.value.as_ref()?;
        let parsed = parse_start(text, tz);
        if parsed.is_none() {
            let pointer = match settings.start_date.origin {
                Origin::Pipeline if self.spec.pipelines[pipeline].start_date.is_some() => {
                    format!("/pipelines/{}/start_date", escape_pointer(pipeline.as_str()))
                }
                origin => setting_pointer(origin, pipeline, None, "start_date"),
            };
            self.error(
                Diagnostic::error("invalid-date", format!("{text:?} is not a date"))
                    .at(self.doc.span(&pointer), "")
                    .help("write YYYY-MM-DD, or an RFC 3339 date-time such as 2026-01-01T02:00:00Z"),
            );
        }
        parsed
    }

    /// Checks that `pool`, set at `pointer`, is declared (or is Airflow's own `default_pool`).
    /// `pointer` is built only for a diagnostic: most settings name no pool, or a declared one.
    fn check_pool(&mut self, pool: Option<&PoolName>, pointer: impl FnOnce() -> String) {
        let Some(pool) = pool else { return };
        if pool.as_str() == DEFAULT_POOL || self.spec.pools.contains_key(pool) {
            return;
        }
        let pointer = pointer();
        let declared = self.spec.pools.keys().map(PoolName::as_str).chain([DEFAULT_POOL]);
        let mut d = Diagnostic::error("unknown-pool", format!("pool `{pool}` is not declared"))
            .at(self.doc.span(&pointer), "not in the spec's `pools`");
        d = match did_you_mean(pool.as_str(), declared) {
            Some(guess) => d.help(format!("did you mean `{guess}`?")),
            None => d.help(format!(
                "declare it under the top-level `pools:` with its slots, e.g. `pools: {{{pool}: {{slots: 4}}}}`"
            )),
        };
        self.error(d);
    }

    fn stages(&mut self, pipeline_id: &PipelineId, own: &TaskSettings) -> Vec<LoweredStage> {
        let spec = self.spec;
        let pipeline = &spec.pipelines[pipeline_id];
        let mut out = Vec::new();
        let mut seen: HashMap<String, StageId> = HashMap::new();
        for (index, (stage_id, stage)) in pipeline.stages.iter().enumerate() {
            let pointer = stage_pointer(pipeline_id, stage_id);
            for field in ["start_date", "timezone"] {
                let set = if field == "timezone" {
                    stage.settings.timezone.is_some()
                } else {
                    stage.settings.start_date.is_some()
                };
                if set {
                    self.error(
                        Diagnostic::error(
                            "pipeline-setting",
                            format!("`{field}` is a pipeline setting, not a stage setting"),
                        )
                        .at(self.doc.key_span(&format!("{pointer}/{field}")), "")
                        .help(format!("move it to `pipelines.{pipeline_id}.defaults.{field}`")),
                    );
                }
            }
            self.check_pool(stage.settings.pool.as_ref(), || format!("{pointer}/pool"));
            let settings = Settings::resolve(&spec.defaults, own, &stage.settings);
            self.lint_stage(pipeline_id, stage_id, &pointer, &stage.kind, &settings);
            let Some(mut lowered) = self.stage(pipeline_id, stage_id, &pointer, index, &stage.kind, settings) else {
                continue;
            };
            let produces = self.produces(stage);
            if let Some(task) = lowered.tasks.iter_mut().find(|t| t.id == lowered.completion) {
                task.outlets = produces;
            }
            for task in &lowered.tasks {
                if let Some(other) = seen.get(&task.id) {
                    let other_pointer = stage_pointer(pipeline_id, other);
                    self.error(
                        Diagnostic::error(
                            "duplicate-task-id",
                            format!("task id `{}` is used twice in pipeline `{pipeline_id}`", task.id),
                        )
                        .at(self.doc.key_span(&pointer), format!("stage `{stage_id}` makes task `{}`", task.id))
                        .also(self.doc.key_span(&other_pointer), format!("stage `{other}` makes it too"))
                        .help("rename one stage, or give a copy_into stage a `task_prefix`"),
                    );
                } else {
                    seen.insert(task.id.clone(), stage_id.clone());
                }
            }
            out.push(lowered);
        }
        self.check_branches(pipeline_id, &out);
        self.link_after(pipeline_id, &mut out);
        out
    }

    /// A branch returns stage ids, which Airflow reads as task ids: each stage directly after
    /// a branch must start with one task named as the stage.
    fn check_branches(&mut self, pipeline_id: &PipelineId, lowered: &[LoweredStage]) {
        let pipeline = &self.spec.pipelines[pipeline_id];
        for (branch_id, branch) in &pipeline.stages {
            if !matches!(branch.kind, StageKind::Branch(_)) {
                continue;
            }
            let mut any = false;
            for (id, _) in pipeline.stages.iter().filter(|(_, s)| s.after.contains(branch_id)) {
                any = true;
                let Some(l) = lowered.iter().find(|l| &l.stage == id) else { continue };
                if l.entry != [id.to_string()] {
                    self.error(
                        Diagnostic::error(
                            "branch-target",
                            format!("stage `{id}` is after branch `{branch_id}` but starts with tasks {:?}", l.entry),
                        )
                        .at(self.doc.key_span(&stage_pointer(pipeline_id, id)), "")
                        .help("put a single-task stage (python, shell, ...) between the branch and this stage"),
                    );
                }
            }
            if !any {
                self.error(
                    Diagnostic::warning(
                        "branch-without-choices",
                        format!("branch `{branch_id}` has no stage after it"),
                    )
                    .at(self.doc.key_span(&stage_pointer(pipeline_id, branch_id)), "")
                    .help(format!("add `after: [{branch_id}]` to the stages it chooses between")),
                );
            }
        }
    }

    /// Warnings: settings that compile but are probably not what was meant.
    fn lint_stage(
        &mut self,
        pipeline_id: &PipelineId,
        stage_id: &StageId,
        pointer: &str,
        kind: &StageKind,
        settings: &Settings,
    ) {
        let writes = match kind {
            StageKind::CopyInto(_) => Some("loads into the warehouse"),
            StageKind::Dbt(d)
                if matches!(
                    d.command,
                    DbtCommand::Run | DbtCommand::Build | DbtCommand::Seed | DbtCommand::Snapshot
                ) =>
            {
                Some("builds warehouse tables")
            }
            _ => None,
        };
        if let Some(what) = writes
            && settings.retries.value == 0
        {
            self.error(
                Diagnostic::warning("no-retries-on-write", format!("stage `{stage_id}` {what} but is never retried"))
                    .at(self.doc.key_span(&pointer), "retries is 0")
                    .help(
                        "a transient warehouse error fails the whole run; set `retries:` on the stage or in `defaults`",
                    ),
            );
        }
        let max_active_runs = self.spec.pipelines[pipeline_id].max_active_runs;
        // Only sensors ask who is after them: asking for every stage is quadratic.
        if let StageKind::Sensor(sensor) = kind
            && !self.spec.pipelines[pipeline_id].stages.values().any(|s| s.after.contains(stage_id))
        {
            let held = if max_active_runs == 1 {
                format!("; with `max_active_runs: 1` it holds every run open for up to its {} timeout", sensor.timeout)
            } else {
                String::new()
            };
            self.error(
                Diagnostic::warning("unwired-sensor", format!("sensor `{stage_id}` gates nothing{held}"))
                    .at(self.doc.key_span(&pointer), "no stage is `after` it")
                    .help(format!("add `after: [{stage_id}]` to the stages that need what it waits for")),
            );
        }
        if matches!(kind, StageKind::CopyInto(_)) && max_active_runs != 1 {
            self.error(
                Diagnostic::warning(
                    "concurrent-load",
                    format!("pipeline `{pipeline_id}` loads files but allows {max_active_runs} runs at once"),
                )
                .at(self.doc.key_span(&pointer), "")
                .help("two runs would read the same watermark and list the same files; set `max_active_runs: 1`"),
            );
        }
    }

    fn stage(
        &mut self,
        pipeline_id: &PipelineId,
        stage_id: &StageId,
        pointer: &str,
        index: usize,
        kind: &StageKind,
        settings: Settings,
    ) -> Option<LoweredStage> {
        let single = |operation: Operation, settings: Settings| LoweredStage {
            stage: stage_id.clone(),
            index,
            entry: vec![stage_id.to_string()],
            exit: vec![stage_id.to_string()],
            completion: stage_id.to_string(),
            tasks: vec![Task {
                id: stage_id.to_string(),
                group: Vec::new(),
                stage: stage_id.clone(),
                operation,
                upstream: Vec::new(),
                settings,
                trigger_rule: TriggerRule::AllSuccess,
                outlets: Vec::new(),
            }],
        };
        match kind {
            StageKind::Shell(shell) => {
                Some(single(Operation::Kind(Arc::new(crate::kinds::shell::lower(shell))), settings))
            }
            StageKind::Trigger(trigger) => Some(single(
                Operation::Trigger(TriggerTarget {
                    pipeline: trigger.pipeline.clone(),
                    conf: trigger.conf.iter().map(|(k, v)| (k.to_string(), v.clone())).collect(),
                    wait_for_completion: trigger.wait_for_completion,
                    poke_interval: trigger.poke_interval,
                }),
                settings,
            )),
            StageKind::Python(_) | StageKind::Branch(_) | StageKind::Operator(_) => {
                let lowered = match kind {
                    StageKind::Python(python) | StageKind::Branch(python) => {
                        let branch = matches!(kind, StageKind::Branch(_));
                        crate::kinds::python::lower(&self.spec.pipelines[pipeline_id], stage_id, python, branch)
                            .map(|task| Arc::new(task) as Arc<dyn crate::kinds::KindTask>)
                    }
                    other => {
                        let StageKind::Operator(operator) = other else { return None };
                        crate::kinds::operator::lower(stage_id.as_str(), operator)
                            .map(|task| Arc::new(task) as Arc<dyn crate::kinds::KindTask>)
                    }
                };
                match lowered {
                    Ok(task) => Some(single(Operation::Kind(task), settings)),
                    Err(errors) => {
                        for e in errors {
                            self.error(
                                Diagnostic::error(e.code, e.message)
                                    .at(self.doc.span(&format!("{pointer}/{}", e.at)), "")
                                    .help(e.help),
                            );
                        }
                        None
                    }
                }
            }
            StageKind::Sensor(sensor) => {
                let [allowed, failed, skipped] = self.sensor_states(&pointer, sensor);
                Some(single(
                    Operation::Sensor(SensorTarget {
                        pipeline: sensor.pipeline.clone(),
                        task: sensor.stage.as_ref().map(ToString::to_string),
                        execution_delta: Duration::from_secs(0),
                        timeout: sensor.timeout,
                        poke_interval: sensor.poke_interval,
                        mode: sensor.mode,
                        allowed_states: allowed,
                        failed_states: failed,
                        skipped_states: skipped,
                        check_existence: sensor.check_existence,
                        deferrable: sensor.deferrable,
                        soft_fail: sensor.soft_fail,
                    }),
                    settings,
                ))
            }
            StageKind::Dbt(dbt) => {
                let stage_sets_mode =
                    self.spec.pipelines[pipeline_id].stages[stage_id.as_str()].settings.dbt_mode.is_some();
                self.check_operator(&settings, pipeline_id, stage_id);
                if let Some(mode) = self.dbt_mode(&pointer, dbt, &settings, stage_sets_mode) {
                    if self.spec.dbt.is_none() {
                        self.dbt_invocation(&pointer, dbt)?;
                    }
                    return self.dbt_mode_stage(pipeline_id, stage_id, index, dbt, settings, mode);
                }
                if dbt.watcher {
                    self.watcher_needs_per_model(&pointer);
                }
                let invocation = self.dbt_invocation(&pointer, dbt)?;
                let mut lowered = single(Operation::Dbt(invocation), settings.clone());
                let results_id = match &dbt.parse_results {
                    None | Some(ParseResults::Enabled(false)) => None,
                    Some(ParseResults::Enabled(true)) => Some(default_results_task(stage_id, dbt.command)),
                    Some(ParseResults::Named(name)) => Some(name.to_string()),
                };
                if let Some(results_id) = results_id {
                    if !dbt.command.writes_run_results() {
                        self.error(
                            Diagnostic::error(
                                "no-run-results",
                                format!("`dbt {}` writes no run_results.json to parse", dbt.command.words().join(" ")),
                            )
                            .at(self.doc.span(&format!("{pointer}/parse_results")), "")
                            .help("use parse_results with run, test, build, seed or snapshot"),
                        );
                    }
                    lowered.tasks.push(Task {
                        id: results_id.clone(),
                        group: Vec::new(),
                        stage: stage_id.clone(),
                        operation: Operation::DbtResults { dbt_task: stage_id.to_string() },
                        upstream: vec![stage_id.to_string()],
                        settings: Settings { retries: Resolved { value: 0, origin: Origin::Builtin }, ..settings },
                        // Counts are worth logging most when the dbt task failed.
                        trigger_rule: TriggerRule::AllDone,
                        outlets: Vec::new(),
                    });
                    // Downstream waits for the dbt task itself too, so a failed dbt run stops
                    // the chain even though the results task succeeds.
                    lowered.exit.push(results_id);
                }
                Some(lowered)
            }
            StageKind::CopyInto(copy) => {
                let plan = self.load_plan(&pointer, stage_id, copy)?;
                let plan = Arc::new(plan);
                let mut tasks = Vec::new();
                let mut previous: Option<String> = None;
                for step in LoadStep::ALL {
                    let id = plan.task_id(step).to_owned();
                    tasks.push(Task {
                        id: id.clone(),
                        group: Vec::new(),
                        stage: stage_id.clone(),
                        operation: Operation::Load { step, plan: Arc::clone(&plan) },
                        upstream: previous.iter().cloned().collect(),
                        settings: settings.clone(),
                        trigger_rule: TriggerRule::AllSuccess,
                        outlets: Vec::new(),
                    });
                    previous = Some(id);
                }
                let first = plan.task_id(LoadStep::CreateTables).to_owned();
                let last = plan.task_id(LoadStep::UpdateWatermark).to_owned();
                Some(LoweredStage {
                    stage: stage_id.clone(),
                    index,
                    tasks,
                    entry: vec![first],
                    exit: vec![last.clone()],
                    completion: last,
                })
            }
        }
    }

    fn dbt_invocation(&mut self, pointer: &str, dbt: &crate::spec::DbtStage) -> Option<DbtInvocation> {
        let Some(project) = &self.spec.dbt else {
            self.error(
                Diagnostic::error("no-dbt-project", "a dbt stage needs the top-level `dbt:` section")
                    .at(self.doc.span(&format!("{pointer}/kind")), "")
                    .help("add `dbt: {project_dir: path/to/dbt}` to the spec"),
            );
            return None;
        };
        let command = dbt.command;
        let words = command.words().join(" ");
        if !command.takes_selection() && (!dbt.select.is_empty() || !dbt.exclude.is_empty()) {
            let field = if dbt.select.is_empty() { "exclude" } else { "select" };
            self.error(
                Diagnostic::error("no-selection", format!("`dbt {words}` takes no --{field}"))
                    .at(self.doc.key_span(&format!("{pointer}/{field}")), ""),
            );
        }
        if dbt.full_refresh && !command.takes_full_refresh() {
            self.error(
                Diagnostic::error("no-full-refresh", format!("`dbt {words}` takes no --full-refresh"))
                    .at(self.doc.key_span(&format!("{pointer}/full_refresh")), "")
                    .help("full_refresh applies to run, build and seed"),
            );
        }
        self.check_state_selection(pointer, dbt);
        let select: Vec<&DbtSelector> = dbt.select.iter().collect();
        let exclude: Vec<&DbtSelector> = dbt.exclude.iter().collect();
        let selection = self.cli_selection(pointer, &select, &exclude)?;
        Some(dbt_modes::DbtLine { project, stage: dbt }.invocation_for(command, &selection, true))
    }

    fn connection(
        &mut self,
        pointer: &str,
        name: &Identifier,
        kinds: &[ConnectionKind],
    ) -> Option<&crate::spec::Connection> {
        let spec = self.spec;
        match spec.connections.get(name.as_str()) {
            Some(conn) if kinds.contains(&conn.kind) => Some(conn),
            Some(_) => {
                let wanted = kinds.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(" or ");
                self.error(
                    Diagnostic::error("wrong-connection", format!("connection `{name}` is not of type {wanted}"))
                        .at(self.doc.span(pointer), "")
                        .also(
                            self.doc.key_span(&format!("/connections/{}", escape_pointer(name.as_str()))),
                            "defined here",
                        ),
                );
                None
            }
            None => {
                let mut d = Diagnostic::error("unknown-connection", format!("unknown connection `{name}`"))
                    .at(self.doc.span(pointer), "not defined under `connections`");
                if let Some(guess) = did_you_mean(name.as_str(), spec.connections.keys().map(Identifier::as_str)) {
                    d = d.help(format!("did you mean `{guess}`?"));
                }
                self.error(d);
                None
            }
        }
    }

    fn load_plan(&mut self, pointer: &str, stage_id: &StageId, copy: &crate::spec::CopyIntoStage) -> Option<LoadPlan> {
        let source = self
            .connection(
                &format!("{pointer}/source/connection"),
                &copy.source.connection,
                &[ConnectionKind::S3, ConnectionKind::Local],
            )
            .cloned();
        let target = self
            .connection(
                &format!("{pointer}/target/connection"),
                &copy.target.connection,
                &[ConnectionKind::Snowflake, ConnectionKind::Duckdb],
            )
            .cloned();
        let (source, target) = (source?, target?);
        let source = match source.kind {
            ConnectionKind::Local => LoadSource::Local {
                connection: copy.source.connection.clone(),
                path: self.connection_path(&copy.source.connection, &source, "a folder, such as `bundles`")?,
            },
            _ => {
                let Some(bucket) = source.bucket.clone() else {
                    self.error(
                        Diagnostic::error(
                            "missing-bucket",
                            format!("connection `{}` has no `bucket`", copy.source.connection),
                        )
                        .at(self.connection_span(&copy.source.connection), "")
                        .help("add `bucket: <name>` to the s3 connection"),
                    );
                    return None;
                };
                LoadSource::S3 {
                    connection: copy.source.connection.clone(),
                    conn_id: source.airflow_conn_id.clone().unwrap_or_else(|| "aws_default".to_owned()),
                    bucket,
                }
            }
        };
        let target = match target.kind {
            ConnectionKind::Duckdb => LoadTarget::DuckDb {
                connection: copy.target.connection.clone(),
                path: self.connection_path(
                    &copy.target.connection,
                    &target,
                    "a database file, such as `warehouse.duckdb`",
                )?,
            },
            _ => {
                let Some(stage) = copy.target.stage.clone() else {
                    self.error(
                        Diagnostic::error(
                            "missing-stage",
                            format!("load `{stage_id}` into Snowflake names no external `stage`"),
                        )
                        .at(self.doc.key_span(&format!("{pointer}/target")), "")
                        .help("add `stage: <SCHEMA.STAGE>`, an external stage whose URL is the bucket root"),
                    );
                    return None;
                };
                LoadTarget::Snowflake {
                    connection: copy.target.connection.clone(),
                    conn_id: target.airflow_conn_id.clone().unwrap_or_else(|| "snowflake_default".to_owned()),
                    stage,
                }
            }
        };
        let raw = self.distinct_columns(
            &format!("{pointer}/target/columns"),
            &copy.target.table,
            &copy.target.columns.named(),
        );
        let marks = self.distinct_columns(
            &format!("{pointer}/watermark_columns"),
            &copy.watermark_table,
            &copy.watermark_columns.named(),
        );
        if !(raw && marks) {
            return None;
        }
        let prefix = copy.task_prefix.clone().unwrap_or_default();
        let task_ids = LoadStep::ALL.map(|step| format!("{prefix}{}", step.task_name()));
        Some(LoadPlan {
            stage: stage_id.clone(),
            source,
            prefix: copy.source.prefix.clone(),
            target,
            table: copy.target.table.clone(),
            watermark_table: copy.watermark_table.clone(),
            columns: copy.target.columns.clone(),
            watermark_columns: (*copy.watermark_columns).clone(),
            batch_size: copy.batch_size,
            task_ids,
        })
    }

    /// Rejects two settings of one table's layout that name the same column (compared without
    /// case, as the warehouses compare them), at the one the spec writes (the second if both).
    fn distinct_columns(&mut self, pointer: &str, table: &TableName, named: &[(&str, &ColumnName)]) -> bool {
        let mut ok = true;
        for (i, (setting, column)) in named.iter().enumerate() {
            let Some((first, other)) =
                named[..i].iter().find(|(_, c)| c.as_str().eq_ignore_ascii_case(column.as_str()))
            else {
                continue;
            };
            let at = |s: &str| format!("{pointer}/{s}");
            let shown = |s: &str| {
                if self.doc.has(&at(s)) { format!("`{s}`") } else { format!("`{s}` (by default)") }
            };
            let (written, name) = if self.doc.has(&at(setting)) { (at(setting), column) } else { (at(first), other) };
            let message = format!("{} and {} of table {table} both name column `{name}`", shown(setting), shown(first));
            let span = self.doc.span(&written);
            self.error(
                Diagnostic::error("duplicate-column", message)
                    .at(span, "")
                    .help("each column of a load's table needs its own name; names are compared without case"),
            );
            ok = false;
        }
        ok
    }

    fn connection_span(&self, name: &Identifier) -> Option<crate::source::Span> {
        self.doc.key_span(&format!("/connections/{}", escape_pointer(name.as_str())))
    }

    /// The `path:` of a local or duckdb connection, which it must have.
    fn connection_path(&mut self, name: &Identifier, conn: &crate::spec::Connection, example: &str) -> Option<String> {
        if let Some(path) = &conn.path {
            return Some(path.0.clone());
        }
        self.error(
            Diagnostic::error("missing-path", format!("connection `{name}` has no `path`"))
                .at(self.connection_span(name), "")
                .help(format!("add `path:` to the {} connection: {example}, relative to the spec", conn.kind.as_str())),
        );
        None
    }

    /// Resolves `after:` into task edges and rejects unknown stages and cycles.
    fn link_after(&mut self, pipeline_id: &PipelineId, stages: &mut [LoweredStage]) {
        let spec = self.spec;
        let pipeline = &spec.pipelines[pipeline_id];
        let position: HashMap<&str, usize> = stages.iter().enumerate().map(|(i, s)| (s.stage.as_str(), i)).collect();
        let mut graph: DiGraph<usize, usize> = DiGraph::new();
        let nodes: Vec<NodeIndex> = (0..stages.len()).map(|i| graph.add_node(i)).collect();
        let mut incoming: Vec<BTreeSet<String>> = vec![BTreeSet::new(); stages.len()];
        for (i, lowered) in stages.iter().enumerate() {
            let stage = &pipeline.stages[lowered.stage.as_str()];
            for (k, dep) in stage.after.iter().enumerate() {
                let pointer = format!("{}/after/{k}", stage_pointer(pipeline_id, &lowered.stage));
                match position.get(dep.as_str()) {
                    Some(&j) => {
                        graph.add_edge(nodes[j], nodes[i], k);
                        incoming[i].extend(stages[j].exit.iter().cloned());
                    }
                    None => {
                        let mut d = Diagnostic::error(
                            "unknown-stage",
                            format!(
                                "`{}` waits for `{dep}`, which is not a stage of pipeline `{pipeline_id}`",
                                lowered.stage
                            ),
                        )
                        .at(self.doc.span(&pointer), "no such stage");
                        let names =
                            pipeline.stages.keys().map(StageId::as_str).filter(|n| *n != lowered.stage.as_str());
                        if let Some(guess) = did_you_mean(dep.as_str(), names) {
                            d = d.help(format!("did you mean `{guess}`?"));
                        } else if let Some(task) = stages.iter().flat_map(|s| &s.tasks).find(|t| t.id == dep.as_str()) {
                            d = d.help(format!("`{dep}` is a task of stage `{}`; name the stage", task.stage));
                        }
                        self.error(d);
                    }
                }
            }
        }
        for component in kosaraju_scc(&graph) {
            let looped = component.len() > 1 || graph.contains_edge(component[0], component[0]);
            if looped {
                let path = cycle_path(&graph, &component);
                let names: Vec<&str> = path.iter().map(|n| stages[graph[*n]].stage.as_str()).collect();
                let last = &stages[graph[path[path.len() - 2]]];
                let closing = &stages[graph[*path.last().unwrap_or(&path[0])]];
                let k = pipeline.stages[last.stage.as_str()]
                    .after
                    .iter()
                    .position(|d| d.as_str() == closing.stage.as_str())
                    .unwrap_or(0);
                let pointer = format!("{}/after/{k}", stage_pointer(pipeline_id, &last.stage));
                self.error(
                    Diagnostic::error(
                        "cycle",
                        format!("stages wait for each other in a circle: {}", names.join(" → ")),
                    )
                    .at(self.doc.span(&pointer), "this closes the circle")
                    .help("remove one of these `after:` entries"),
                );
            }
        }
        for (i, lowered) in stages.iter_mut().enumerate() {
            let upstream: Vec<String> = incoming[i].iter().cloned().collect();
            let rule = pipeline.stages[lowered.stage.as_str()].trigger_rule;
            for entry in &lowered.entry.clone() {
                if let Some(task) = lowered.tasks.iter_mut().find(|t| &t.id == entry) {
                    let mut all: BTreeSet<String> = task.upstream.drain(..).collect();
                    all.extend(upstream.iter().cloned());
                    task.upstream = all.into_iter().collect();
                    // The rule decides on the `after:` stages, so it sits where their edges land.
                    if let Some(rule) = rule {
                        task.trigger_rule = rule;
                    }
                }
            }
        }
    }

    /// Tasks in topological order; ties keep spec order.
    fn order_tasks(&mut self, _pipeline: &PipelineId, stages: &[LoweredStage]) -> Vec<Task> {
        let all: Vec<(usize, usize, &Task)> =
            stages.iter().flat_map(|s| s.tasks.iter().enumerate().map(move |(k, t)| (s.index, k, t))).collect();
        let index: HashMap<&str, usize> = all.iter().enumerate().map(|(i, (_, _, t))| (t.id.as_str(), i)).collect();
        let mut pending: Vec<usize> =
            all.iter().map(|(_, _, t)| t.upstream.iter().filter(|u| index.contains_key(u.as_str())).count()).collect();
        let mut children: Vec<Vec<usize>> = vec![Vec::new(); all.len()];
        for (i, (_, _, t)) in all.iter().enumerate() {
            for u in &t.upstream {
                if let Some(&j) = index.get(u.as_str()) {
                    children[j].push(i);
                }
            }
        }
        let mut ready: BTreeSet<(usize, usize, usize)> =
            (0..all.len()).filter(|&i| pending[i] == 0).map(|i| (all[i].0, all[i].1, i)).collect();
        let mut out = Vec::with_capacity(all.len());
        while let Some(first) = ready.pop_first() {
            let i = first.2;
            out.push(all[i].2.clone());
            for &c in &children[i] {
                pending[c] -= 1;
                if pending[c] == 0 {
                    ready.insert((all[c].0, all[c].1, c));
                }
            }
        }
        // A cycle leaves tasks out; it has been reported, so the partial order is never used.
        out
    }

    /// Points each sensor at its target's task and computes its `execution_delta`.
    fn resolve_sensors(&mut self, unit: usize, pipelines: &mut [PipelineTasks], catalog: &Catalog) -> Vec<Wait> {
        let mut waits = Vec::new();
        for p in pipelines.iter_mut() {
            for task in p.tasks.iter_mut() {
                let Operation::Sensor(target) = &mut task.operation else {
                    continue;
                };
                let pointer = stage_pointer(&p.id, &task.stage);
                if target.pipeline == p.id {
                    self.error(
                        Diagnostic::error("self-sensor", format!("`{}` waits for its own pipeline", task.id))
                            .at(self.doc.span(&format!("{pointer}/pipeline")), "")
                            .help("use `after:` to order stages of one pipeline"),
                    );
                    continue;
                }
                let Some(entry) = catalog.get(&target.pipeline) else {
                    let mut d =
                        Diagnostic::error("unknown-pipeline", format!("unknown pipeline `{}`", target.pipeline))
                            .at(self.doc.span(&format!("{pointer}/pipeline")), "no pipeline has this id");
                    if let Some(guess) = did_you_mean(target.pipeline.as_str(), catalog.keys().map(PipelineId::as_str))
                    {
                        d = d.help(format!("did you mean `{guess}`?"));
                    }
                    self.error(d);
                    continue;
                };
                if let Some(stage) = &target.task {
                    match entry.stages.iter().find(|(s, _)| s.as_str() == stage) {
                        Some((_, completion)) => target.task = Some(completion.clone()),
                        None => {
                            let mut d = Diagnostic::error(
                                "unknown-stage",
                                format!("pipeline `{}` has no stage `{stage}`", target.pipeline),
                            )
                            .at(self.doc.span(&format!("{pointer}/stage")), "no such stage");
                            if let Some(guess) = did_you_mean(stage, entry.stages.iter().map(|(s, _)| s.as_str())) {
                                d = d.help(format!("did you mean `{guess}`?"));
                            }
                            self.error(d);
                            continue;
                        }
                    }
                }
                waits.push(Wait {
                    unit,
                    waiter: p.id.clone(),
                    target: target.pipeline.clone(),
                    pointer: pointer.clone(),
                    kind: WaitKind::Sensor,
                });
                let own_clock = match catalog.get(&p.id) {
                    Some(own) if own.unit == unit => &own.clock,
                    _ => continue, // a duplicate pipeline, already reported
                };
                if catalog[&p.id].schedule_rejected || entry.schedule_rejected {
                    continue; // the rejected schedule is reported; alignment with it is unknown
                }
                let waiter_start = catalog[&p.id].start;
                let result = match (own_clock, &entry.clock) {
                    (Err(m), _) | (_, Err(m)) => Err(m.clone()),
                    (Ok(w), Ok(u)) => {
                        // Specs repeat a few schedule pairs many times; each pair is sampled once.
                        let anchor = waiter_start.unwrap_or_else(sensor::default_anchor);
                        let key = format!(
                            "{} | {} | {}",
                            w.as_ref().map_or_else(String::new, sensor::Clock::key),
                            u.as_ref().map_or_else(String::new, sensor::Clock::key),
                            anchor.timestamp()
                        );
                        self.alignments
                            .entry(key)
                            .or_insert_with(|| sensor::execution_delta(w.as_ref(), u.as_ref(), anchor))
                            .clone()
                    }
                };
                let interval = |s: &Option<Schedule>| matches!(s, Some(Schedule::Interval(_)));
                if self.spec.airflow.version == 2 && (interval(&p.schedule) || interval(&entry.schedule)) {
                    self.error(
                        Diagnostic::error(
                            "sensor-on-interval-v2",
                            format!(
                                "sensor `{}` involves an interval schedule, which Airflow 2 runs as data intervals",
                                task.id
                            ),
                        )
                        .at(self.doc.key_span(&pointer), "")
                        .help("on Airflow 2, give both pipelines cron schedules, or target Airflow 3"),
                    );
                    continue;
                }
                match result {
                    Ok(delta) => target.execution_delta = Duration::from_secs(delta.num_seconds().max(0) as u64),
                    Err(why) => {
                        let show =
                            |s: &Option<Schedule>| s.as_ref().map_or("no schedule".to_owned(), |s| format!("`{s}`"));
                        let target_schedule = show(&entry.schedule);
                        let own = show(&p.schedule);
                        let reason = match why {
                            sensor::Misalignment::WaiterUnscheduled => {
                                format!("`{}` has no schedule, so its runs have no logical date to match", p.id)
                            }
                            sensor::Misalignment::TargetUnscheduled => {
                                format!(
                                    "`{}` ({target_schedule}) has no repeating schedule to wait for",
                                    target.pipeline
                                )
                            }
                            sensor::Misalignment::NoStartDate => {
                                "an interval schedule needs a `start_date` to fix when its runs fall".to_owned()
                            }
                            sensor::Misalignment::NeverAligned { example } => format!(
                                "no fixed offset from {own} lands on a run of `{}` ({target_schedule}); for example the run at {} has none",
                                target.pipeline,
                                example.format("%Y-%m-%d %H:%M UTC")
                            ),
                        };
                        self.error(
                            Diagnostic::error("sensor-never-aligns", format!("sensor `{}` would wait forever: {reason}", task.id))
                                .at(self.doc.key_span(&pointer), "")
                                .help(format!(
                                    "align the two schedules, or have `{}` trigger `{}` (TriggerDagRunOperator) or publish an Asset it is scheduled on",
                                    target.pipeline, p.id
                                )),
                        );
                    }
                }
            }
        }
        waits
    }
}

/// Rejects sensors that wait for each other in a circle, across every spec compiled together.
fn pipeline_cycles(lowerings: &mut [Lowering], catalog: &Catalog, waits: &[Wait]) {
    let mut graph: DiGraph<PipelineId, ()> = DiGraph::new();
    let mut nodes: HashMap<&PipelineId, NodeIndex> = HashMap::new();
    for id in catalog.keys() {
        nodes.insert(id, graph.add_node(id.clone()));
    }
    for wait in waits {
        if let (Some(&from), Some(&to)) = (nodes.get(&wait.target), nodes.get(&wait.waiter)) {
            graph.add_edge(from, to, ());
        }
    }
    for component in kosaraju_scc(&graph) {
        let looped = component.len() > 1 || graph.contains_edge(component[0], component[0]);
        if looped {
            let path = cycle_path(&graph, &component);
            let names: Vec<&str> = path.iter().map(|n| graph[*n].as_str()).collect();
            let closing_waiter = &graph[*path.last().unwrap_or(&path[0])];
            let previous = path.len().checked_sub(2).map(|i| &graph[path[i]]);
            let Some(wait) = waits
                .iter()
                .find(|w| &w.waiter == closing_waiter && previous.is_none_or(|p| &w.target == p))
                .or_else(|| waits.iter().find(|w| &w.waiter == closing_waiter))
            else {
                continue;
            };
            let kinds: BTreeSet<&str> = waits
                .iter()
                .filter(|w| {
                    component.iter().any(|n| graph[*n] == w.waiter) && component.iter().any(|n| graph[*n] == w.target)
                })
                .map(|w| w.kind.what())
                .collect();
            let kinds: Vec<&str> = kinds.into_iter().collect();
            let lowering = &mut lowerings[wait.unit];
            let span = if wait.kind != WaitKind::Sensor {
                lowering.doc.span(&wait.pointer)
            } else {
                lowering.doc.key_span(&wait.pointer)
            };
            lowering.error(
                Diagnostic::error("cycle", format!("pipelines wait for each other in a circle: {}", names.join(" → ")))
                    .at(span, format!("this {} closes the circle", wait.kind.what()))
                    .help(format!(
                        "each of these runs waits for another that waits for it; remove one {}",
                        kinds.join(" or ")
                    )),
            );
        }
    }
}

/// `parse_<what>_results` for a dbt stage: `dbt_run_staging` → `parse_staging_results`.
fn default_results_task(stage: &StageId, command: DbtCommand) -> String {
    let name = stage.as_str();
    let name = name.strip_prefix("dbt_").unwrap_or(name);
    let word = command.words().join("_");
    let name = name.strip_prefix(&format!("{word}_")).filter(|rest| !rest.is_empty()).unwrap_or(name);
    format!("parse_{name}_results")
}

/// A concrete cycle inside a strongly connected component: `[a, b, c, a]`.
fn cycle_path<N, E>(graph: &DiGraph<N, E>, component: &[NodeIndex]) -> Vec<NodeIndex> {
    let inside: BTreeSet<NodeIndex> = component.iter().copied().collect();
    let start = *inside.iter().next().unwrap_or(&component[0]);
    let mut path = vec![start];
    let mut seen: BTreeSet<NodeIndex> = BTreeSet::from([start]);
    let mut at = start;
    loop {
        let next = graph.neighbors(at).filter(|n| inside.contains(n)).min_by_key(|n| (*n != start, n.index()));
        let Some(next) = next else { break };
        path.push(next);
        if next == start || !seen.insert(next) {
            if next != start {
                let from = path.iter().position(|n| *n == next).unwrap_or(0);
                path.drain(..from);
            }
            break;
        }
        at = next;
    }
    path
}

#[cfg(test)]
mod tests;
