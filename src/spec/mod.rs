//! The typed pipeline spec: what a user writes in `pipelines/*.yaml`.
//!
//! These types are the single source of truth for the format. The JSON Schema in
//! `schemas/pipeline.schema.json` is generated from them (see [`crate::validate::schema`]),
//! so doc comments here become the descriptions editors show.

mod duration;
mod names;
mod schedule;

pub use crate::dbt::DbtVersion;
pub use duration::Duration;
pub use names::{AssetName, ColumnName, DbtSelector, Identifier, ModelName, PipelineId, PoolName, StageId, TableName};
pub(crate) use schedule::parse_cron;
pub use schedule::{AssetCondition, Preset, Schedule};

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A whole fhirflow spec: one file, any number of pipelines.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "fhirflow pipeline spec", extend("$id" = "https://fhirflow.dev/schemas/pipeline.schema.json"))]
pub struct Spec {
    /// Spec format version. Only `1` exists.
    #[schemars(range(min = 1, max = 1))]
    pub version: u32,
    /// Task settings every pipeline and stage inherits unless it overrides them.
    #[serde(default)]
    pub defaults: TaskSettings,
    /// Named connections. They reference an Airflow connection id or environment variables, never a secret.
    #[serde(default)]
    pub connections: IndexMap<Identifier, Connection>,
    /// The dbt project that dbt stages run and whose properties YAML fhirflow writes.
    #[serde(default)]
    pub dbt: Option<DbtProject>,
    /// Where and for which Airflow the DAG files are written.
    #[serde(default)]
    pub airflow: AirflowTarget,
    /// dbt model layers, keyed by layer name. Each layer's models carry its tags.
    #[serde(default)]
    pub layers: IndexMap<Identifier, Layer>,
    /// Assets that something outside this spec folder produces (another team's DAG, an upload), so pipelines may be scheduled on them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub external_assets: Vec<AssetName>,
    /// Airflow pools that stages name in `pool`, keyed by pool name, with their slots. `fhirflow run` runs at most that many of a pool's tasks at once; `plan` prints the `airflow pools set` line for each.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub pools: IndexMap<PoolName, PoolDeclaration>,
    /// Pipelines, keyed by id. Each one becomes one Airflow DAG with that `dag_id`.
    #[schemars(length(min = 1))]
    pub pipelines: IndexMap<PipelineId, Pipeline>,
}

/// An Airflow pool: how many of its tasks may run at once.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PoolDeclaration {
    /// How many of the pool's tasks run at once (each task takes one slot).
    #[schemars(range(min = 1, max = 100000))]
    pub slots: u32,
    /// What the pool is for, as Airflow's pool list shows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// Task settings that inherit project → pipeline → stage. Unset fields inherit.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskSettings {
    /// Airflow task owner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub owner: Option<String>,
    /// How many times a failed task is retried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub retries: Option<u32>,
    /// Wait between retries, such as `5m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_delay: Option<Duration>,
    /// Double the retry delay after each failed attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_exponential_backoff: Option<bool>,
    /// Longest a single attempt may run before it is failed, such as `1h`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_timeout: Option<Duration>,
    /// First logical date, `YYYY-MM-DD` or an RFC 3339 date-time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2})?(Z|[+-]\d{2}:\d{2})?)?$"))]
    pub start_date: Option<String>,
    /// IANA time zone that schedules and the start date are read in, such as `UTC` or `Europe/Paris`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub timezone: Option<String>,
    /// Send an email when a task fails (needs `email`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_on_failure: Option<bool>,
    /// Addresses that failure emails go to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<Vec<String>>,
    /// On failure, POST a JSON message (DAG, task, run, try, log URL) to the URL in this environment variable of the Airflow workers, such as a Slack or Teams incoming webhook.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_webhook_env: Option<EnvVarName>,
    /// How a dbt `build` or `run` stage becomes tasks: `single` (one task: deps, then the command), `layered` (one task per layer, in order) or `per_model` (one task per dbt node, with dbt's edges). Unset: the command as written, in one task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dbt_mode: Option<DbtMode>,
    /// The Airflow pool the task runs in: one declared in the top-level `pools`, or Airflow's `default_pool`. A dbt task on a DuckDB target runs in that file's one-writer pool instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<PoolName>,
    /// Run the task only when its instance in the pipeline's previous run (by logical date) succeeded or was skipped. Airflow waits until it has; `fhirflow run` does not wait: it marks the task `upstream_failed`, naming that run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub depends_on_past: Option<bool>,
    /// Send an email when a task is retried (needs `email`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_on_retry: Option<bool>,
    /// Markdown documentation of the task, shown in Airflow's task details. Metadata only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub doc_md: Option<String>,
    /// Where dbt tasks run: `bash` on the Airflow worker (the default), `docker` (DockerOperator) or `kubernetes` (KubernetesPodOperator). The dbt command line is the same in all three.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<OperatorKind>,
}

/// How a dbt stage is split into Airflow tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DbtMode {
    /// One task: `dbt deps`, then the stage's command on the whole selection.
    Single,
    /// One task per layer (the spec's `layers`, or the stage's `layers`), in order.
    Layered,
    /// One task per dbt node from `manifest.json`, with dbt's own dependency edges.
    PerModel,
}

impl DbtMode {
    /// The spelling in the spec.
    pub fn as_str(self) -> &'static str {
        match self {
            DbtMode::Single => "single",
            DbtMode::Layered => "layered",
            DbtMode::PerModel => "per_model",
        }
    }
}

/// Where a dbt task runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OperatorKind {
    /// BashOperator: dbt is installed on the Airflow workers.
    Bash,
    /// DockerOperator: dbt runs in the `dbt.docker` image.
    Docker,
    /// KubernetesPodOperator: dbt runs in a pod from `dbt.kubernetes`.
    Kubernetes,
}

impl OperatorKind {
    /// The spelling in the spec.
    pub fn as_str(self) -> &'static str {
        match self {
            OperatorKind::Bash => "bash",
            OperatorKind::Docker => "docker",
            OperatorKind::Kubernetes => "kubernetes",
        }
    }
}

/// A named connection to a storage system, by reference only.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Connection {
    /// What the connection points at.
    #[serde(rename = "type")]
    pub kind: ConnectionKind,
    /// Airflow connection id that generated DAGs use, such as `aws_default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Za-z0-9_.-]{1,250}$"))]
    pub airflow_conn_id: Option<String>,
    /// Environment variable names (not values) that `fhirflow run` reads settings from, keyed by setting.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<Identifier, EnvVarName>,
    /// S3 bucket name (s3 only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"))]
    pub bucket: Option<String>,
    /// AWS region (s3 only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-z0-9-]{1,32}$"))]
    pub region: Option<String>,
    /// Snowflake database (snowflake only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<Identifier>,
    /// Snowflake warehouse (snowflake only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warehouse: Option<Identifier>,
    /// Snowflake role (snowflake only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Identifier>,
    /// The folder of files (local) or the DuckDB database file (duckdb), relative to the spec. Only `fhirflow run` reads these.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<RelativePath>,
}

/// The kinds of system a connection can point at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionKind {
    /// Amazon S3 or an S3-compatible object store.
    S3,
    /// A Snowflake account.
    Snowflake,
    /// A folder on this machine, as a load's source (`fhirflow run` only).
    Local,
    /// A DuckDB database file on this machine, as a load's warehouse (`fhirflow run` only, with the embedded DuckDB).
    Duckdb,
}

impl ConnectionKind {
    /// The name the spec uses.
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionKind::S3 => "s3",
            ConnectionKind::Snowflake => "snowflake",
            ConnectionKind::Local => "local",
            ConnectionKind::Duckdb => "duckdb",
        }
    }
}

/// The name of an environment variable.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize, JsonSchema)]
#[serde(transparent)]
pub struct EnvVarName(#[schemars(regex(pattern = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"))] pub String);

/// The dbt project that dbt stages run in.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DbtProject {
    /// The dbt project folder in this repository, relative to the spec. fhirflow writes properties YAML into it.
    pub project_dir: RelativePath,
    /// The folder holding `profiles.yml`, relative to the spec. Defaults to `project_dir`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profiles_dir: Option<RelativePath>,
    /// dbt target (`--target`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<Identifier>,
    /// dbt threads (`--threads`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 256))]
    pub threads: Option<u32>,
    /// The dbt-core versions the project runs on, within 1.7 to 1.12: a range such as `"1.7"` (the 1.7 releases), `"~1.7"`, `">=1.8"` or `">=1.8,<1.12"` (every comparator must hold). A range that admits 1.7 gets column tests under `tests:` (1.7 drops `data_tests:` without a word; 1.8 and later still read `tests:`), any other under `data_tests:`; `manifest.json` is read in the schemas of the versions admitted (v11 for 1.7, v12 for 1.8 to 1.12). Unset: `">=1.8"`.
    #[serde(default, skip_serializing_if = "DbtVersion::is_default")]
    pub version: DbtVersion,
    /// The dbt executable that tasks call.
    #[serde(default = "default_dbt_executable")]
    #[schemars(regex(pattern = r"^[A-Za-z0-9_./-]{1,255}$"))]
    pub executable: String,
    /// Where Airflow workers see the project, when that differs from this repository's layout (for example `/opt/airflow/dbt`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deploy: Option<DbtDeploy>,
    /// dbt's `manifest.json`, relative to the spec, read at compile time by `per_model` stages and to check `layers`. Defaults to `<project_dir>/target/manifest.json` when `parse_manifest` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<RelativePath>,
    /// Run `dbt parse` at compile time to write the manifest first (needs dbt and the profile where fhirflow runs).
    #[serde(default)]
    pub parse_manifest: bool,
    /// Where each dbt task keeps its `target/` artifacts and logs, and where `state:` selection finds the previous run's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifacts: Option<DbtArtifacts>,
    /// The image, mounts and environment of dbt tasks run with `operator: docker`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker: Option<DockerSettings>,
    /// The pod of dbt tasks run with `operator: kubernetes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<KubernetesSettings>,
    /// Whether fhirflow writes `selectors.yml` (one selector per layer) at the project root. `false` for a project that keeps its own `selectors.yml`, which fhirflow does not replace.
    #[serde(default = "default_true")]
    pub selectors: bool,
}

/// Where dbt artifacts are kept between runs: exactly one of `path` or `s3`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DbtArtifacts {
    /// An absolute folder that every task's machine or container sees (a shared volume).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^/[A-Za-z0-9_.,+@%/=-]{0,1023}$"))]
    pub path: Option<String>,
    /// An S3 prefix, `s3://bucket/prefix`, copied to and from with the AWS CLI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[A-Za-z0-9!_.*'()/=-]{0,1024})?$"))]
    pub s3: Option<String>,
}

/// DockerOperator settings for dbt tasks.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DockerSettings {
    /// The image, with dbt and the adapter installed, such as `ghcr.io/dbt-labs/dbt-snowflake:1.9.latest`.
    #[schemars(regex(pattern = r"^[A-Za-z0-9][A-Za-z0-9._/:@-]{0,254}$"))]
    pub image: String,
    /// Bind mounts, `host_path:container_path` or `host_path:container_path:ro`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<BindMount>,
    /// Environment variables set in the container.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<EnvVarName, String>,
    /// Docker network mode, such as `bridge` or `host`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Za-z0-9_.:-]{1,128}$"))]
    pub network_mode: Option<String>,
}

/// A bind mount: `host_path:container_path[:ro]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(transparent)]
pub struct BindMount(#[schemars(regex(pattern = r"^/[^:\x00-\x1f]*:/[^:\x00-\x1f]*(:(ro|rw))?$"))] pub String);

/// KubernetesPodOperator settings for dbt tasks.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KubernetesSettings {
    /// The image, with dbt and the adapter installed.
    #[schemars(regex(pattern = r"^[A-Za-z0-9][A-Za-z0-9._/:@-]{0,254}$"))]
    pub image: String,
    /// The namespace pods run in.
    #[serde(default = "default_namespace")]
    #[schemars(regex(pattern = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"))]
    pub namespace: String,
    /// CPU and memory requests and limits, such as `{cpu: 500m, memory: 1Gi}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<PodResources>,
    /// Plain environment variables of the pod.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<EnvVarName, String>,
    /// Kubernetes Secrets whose keys become environment variables of the pod (`envFrom`), such as a secret holding the warehouse password.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env_from_secrets: Vec<KubernetesName>,
    /// The service account pods run as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<KubernetesName>,
}

fn default_namespace() -> String {
    "default".to_owned()
}

/// A Kubernetes object name (RFC 1123 subdomain).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(transparent)]
pub struct KubernetesName(#[schemars(regex(pattern = r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"))] pub String);

/// Requests and limits of a dbt pod.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PodResources {
    /// CPU request and limit, such as `500m` or `2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(\.[0-9]+)?m?$"))]
    pub cpu: Option<String>,
    /// Memory request and limit, such as `512Mi` or `2Gi`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|K|M|G|T)?$"))]
    pub memory: Option<String>,
}

fn default_dbt_executable() -> String {
    "dbt".to_owned()
}

/// Absolute paths of the dbt project as Airflow workers see it.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DbtDeploy {
    /// Project folder on the workers.
    #[schemars(regex(pattern = r"^/[^\x00-\x1f]*$"))]
    pub project_dir: String,
    /// Profiles folder on the workers. Defaults to the deployed `project_dir`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^/[^\x00-\x1f]*$"))]
    pub profiles_dir: Option<String>,
}

/// A relative path. A folder fhirflow writes into must stay inside the output root (`--out`, or else the git work tree holding the spec) once `..` are folded.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(transparent)]
pub struct RelativePath(
    #[schemars(regex(pattern = r"^[^/\x00-\x1f][^\x00-\x1f]*$"), length(min = 1, max = 1024))] pub String,
);

/// Where generated DAG files go and which Airflow they target.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AirflowTarget {
    /// The DAGs folder, relative to the spec.
    #[serde(default = "default_dags_folder")]
    pub dags_folder: RelativePath,
    /// Airflow major version the files are written for: 3, or 2 for Airflow 2.9 to 2.11.
    #[serde(default = "default_airflow_version")]
    #[schemars(range(min = 2, max = 3))]
    pub version: u32,
}

impl Default for AirflowTarget {
    fn default() -> Self {
        Self { dags_folder: default_dags_folder(), version: default_airflow_version() }
    }
}

fn default_dags_folder() -> RelativePath {
    RelativePath("dags".to_owned())
}

fn default_airflow_version() -> u32 {
    3
}

/// A dbt layer: a models folder whose models share tags.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Layer {
    /// What the layer is for. Goes into the selector's description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Models folder inside the dbt project. Defaults to `models/<layer>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<RelativePath>,
    /// Tags every model of the layer carries. Defaults to the layer's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<Identifier>>,
    /// Whose properties YAML documents the layer's models. `fhirflow` (the default): fhirflow
    /// writes `<layer>_models.yml` with their descriptions, tags and column tests, and selects the
    /// layer by tag. `project`: the dbt project's own properties files document them (dbt takes
    /// one entry per model, so fhirflow writes none) and the layer is selected by its folder
    /// (`path:<path>`); the layer then takes no `tags` and its models only names.
    #[serde(default, skip_serializing_if = "LayerProperties::is_fhirflow")]
    pub properties: LayerProperties,
    /// The layer's models.
    #[schemars(length(min = 1))]
    pub models: Vec<ModelEntry>,
}

impl Layer {
    /// The layer's folder inside the dbt project, as written: `path`, else `models/<name>`.
    pub fn folder(&self, name: &str) -> String {
        self.path.as_ref().map_or_else(|| format!("models/{name}"), |p| p.0.clone())
    }

    /// How dbt is told to select the layer named `name`: `tag:<first tag>` (the name by
    /// default), or `path:<folder>` when the project's own files document its models.
    pub fn selector(&self, name: &str) -> String {
        let (method, value) = self.selection(name);
        format!("{method}:{value}")
    }

    /// The selector method and value of [`Layer::selector`].
    pub fn selection(&self, name: &str) -> (&'static str, String) {
        match self.properties {
            LayerProperties::Fhirflow => {
                ("tag", self.tags.as_ref().and_then(|t| t.first()).map_or(name, |t| t.as_str()).to_owned())
            }
            LayerProperties::Project => ("path", self.folder(name)),
        }
    }
}

/// Who writes a layer's properties YAML.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LayerProperties {
    /// fhirflow writes `<layer>_models.yml`.
    #[default]
    Fhirflow,
    /// The dbt project's own properties files; fhirflow writes none for the layer.
    Project,
}

impl LayerProperties {
    /// Whether this is the default, `fhirflow`.
    pub fn is_fhirflow(&self) -> bool {
        *self == LayerProperties::Fhirflow
    }
}

/// A model of a layer: its name alone, or its name with docs and tests.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum ModelEntry {
    /// Just the model name.
    Name(ModelName),
    /// The model with docs, extra tags and column tests.
    Detailed(Model),
}

impl ModelEntry {
    /// The model's name.
    pub fn name(&self) -> &ModelName {
        match self {
            ModelEntry::Name(name) => name,
            ModelEntry::Detailed(model) => &model.name,
        }
    }
}

/// A dbt model with its documentation.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Model {
    /// The model's name (its SQL file's name without `.sql`).
    pub name: ModelName,
    /// Model documentation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Tags beyond the layer's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<Identifier>,
    /// Documented columns and their data tests.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub columns: Vec<Column>,
}

/// A documented model column.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Column {
    /// Column name.
    pub name: ModelName,
    /// Column documentation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Generic data tests on the column.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tests: Vec<ColumnTest>,
}

/// A dbt generic data test on a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ColumnTest {
    /// Every value is distinct.
    Unique,
    /// No value is null.
    NotNull,
}

impl ColumnTest {
    /// dbt's name of the generic test.
    pub fn as_str(self) -> &'static str {
        match self {
            ColumnTest::Unique => "unique",
            ColumnTest::NotNull => "not_null",
        }
    }
}

/// One pipeline: one Airflow DAG.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Pipeline {
    /// When the pipeline runs: a cron expression (`*/5 * * * *`), a preset (`@daily`), an interval (`10s`, `5m`), `{assets: [...]}` to run when other stages produce those assets, or null for manual runs only.
    #[serde(default)]
    pub schedule: Option<Schedule>,
    /// Run the intervals missed since `start_date`.
    #[serde(default)]
    pub catchup: bool,
    /// How many runs of this pipeline may be active at once.
    #[serde(default = "default_max_active_runs")]
    #[schemars(range(min = 1, max = 1000))]
    pub max_active_runs: u32,
    /// Airflow tags, for filtering in the UI.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<Tag>,
    /// One-line description shown in Airflow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The pipeline's first logical date, as Airflow's `DAG(start_date=...)`: the same as `defaults.start_date`, of which only one may be set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2})?(Z|[+-]\d{2}:\d{2})?)?$"))]
    pub start_date: Option<String>,
    /// Settings that override the project defaults for every stage of this pipeline.
    #[serde(default)]
    pub defaults: TaskSettings,
    /// The pipeline's stages, keyed by stage id. A stage id is its Airflow task id.
    #[schemars(length(min = 1))]
    pub stages: IndexMap<StageId, Stage>,
}

impl Pipeline {
    /// The pipeline's own settings: its `defaults`, with its `start_date` when it is set there.
    pub fn settings(&self) -> std::borrow::Cow<'_, TaskSettings> {
        match &self.start_date {
            Some(start) if self.defaults.start_date.is_none() => {
                std::borrow::Cow::Owned(TaskSettings { start_date: Some(start.clone()), ..self.defaults.clone() })
            }
            _ => std::borrow::Cow::Borrowed(&self.defaults),
        }
    }
}

fn default_max_active_runs() -> u32 {
    16
}

/// An Airflow DAG tag.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize, JsonSchema)]
#[serde(transparent)]
pub struct Tag(#[schemars(regex(pattern = r"^[^\x00-\x1f]{1,100}$"))] pub String);

/// A stage: one step of a pipeline, and the Airflow task or tasks it becomes.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct Stage {
    /// What the stage does, and its kind-specific settings.
    #[serde(flatten)]
    pub kind: StageKind,
    /// Stages of this pipeline that must finish first; `trigger_rule` says in which states.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<StageId>,
    /// When the stage runs, given how the stages it is `after` ended (Airflow's trigger rules). Default: `all_success`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger_rule: Option<TriggerRule>,
    /// Assets the stage produces when it succeeds (Airflow outlets): pipelines scheduled on them run after it. A `copy_into` stage produces `<connection>.<table>` unless this is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub produces: Option<Vec<AssetName>>,
    /// Settings that override the pipeline's for this stage.
    #[serde(flatten)]
    pub settings: TaskSettings,
}

/// Airflow's trigger rules: when a task runs, given its upstream tasks' states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TriggerRule {
    /// Every upstream task succeeded (the default). A failure upstream makes it `upstream_failed`, a skip `skipped`.
    AllSuccess,
    /// Every upstream task finished, in any state: cleanup.
    AllDone,
    /// Every upstream task failed or was upstream_failed.
    AllFailed,
    /// Every upstream task was skipped.
    AllSkipped,
    /// At least one upstream task succeeded; runs as soon as one does.
    OneSuccess,
    /// At least one upstream task failed; runs as soon as one does.
    OneFailed,
    /// At least one upstream task succeeded or failed; runs as soon as one does.
    OneDone,
    /// No upstream task failed: each succeeded or was skipped. The join after a branch.
    NoneFailed,
    /// No upstream task failed and at least one succeeded.
    NoneFailedMinOneSuccess,
    /// No upstream task was skipped: each succeeded, failed or was upstream_failed.
    NoneSkipped,
    /// Runs at once, whatever its upstream tasks do.
    Always,
}

impl TriggerRule {
    /// The Airflow name.
    pub fn as_str(self) -> &'static str {
        match self {
            TriggerRule::AllSuccess => "all_success",
            TriggerRule::AllDone => "all_done",
            TriggerRule::AllFailed => "all_failed",
            TriggerRule::AllSkipped => "all_skipped",
            TriggerRule::OneSuccess => "one_success",
            TriggerRule::OneFailed => "one_failed",
            TriggerRule::OneDone => "one_done",
            TriggerRule::NoneFailed => "none_failed",
            TriggerRule::NoneFailedMinOneSuccess => "none_failed_min_one_success",
            TriggerRule::NoneSkipped => "none_skipped",
            TriggerRule::Always => "always",
        }
    }
}

pub use crate::kinds::shell::ShellStage;

/// The kinds of stage.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StageKind {
    /// A dbt command.
    Dbt(DbtStage),
    /// Load new files under an S3 prefix (or a local folder) into a warehouse table with `COPY INTO`, tracked by a watermark.
    CopyInto(CopyIntoStage),
    /// A shell command.
    Shell(ShellStage),
    /// Wait for another pipeline, or one of its stages, to succeed.
    Sensor(SensorStage),
    /// Start a run of another pipeline of the specs compiled together (Airflow's TriggerDagRunOperator).
    Trigger(TriggerStage),
    /// Call a Python function by import path; its return value is the task's output (Airflow's PythonOperator).
    Python(crate::kinds::python::PythonStage),
    /// Call a Python function that returns the ids of the stages directly after it to follow; the others are skipped (Airflow's BranchPythonOperator).
    Branch(crate::kinds::python::PythonStage),
    /// Any Airflow operator by class path (`uses:`) with its keyword arguments (`with:`). `fhirflow run` runs the stage's `run:` command instead, and refuses a stage without one.
    Operator(crate::kinds::operator::OperatorStage),
}

/// A stage that starts a run of another pipeline.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
pub struct TriggerStage {
    /// The pipeline to start; it must be one of the specs compiled together.
    pub pipeline: PipelineId,
    /// The started run's configuration (`dag_run.conf`). Strings may hold Airflow `{{ ... }}` templates.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub conf: BTreeMap<Identifier, serde_json::Value>,
    /// Wait until the started run ends; the stages after this one then need it to have succeeded.
    #[serde(default)]
    pub wait_for_completion: bool,
    /// With `wait_for_completion`: how often to check the started run.
    #[serde(default = "default_poke_interval")]
    pub poke_interval: Duration,
}

/// A dbt command stage.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
pub struct DbtStage {
    /// The dbt command.
    pub command: DbtCommand,
    /// Node selection (`--select`), such as `tag:staging`, `+fct_encounters` or `selector:nightly` (a selector of the project's `selectors.yml`). Without `select` and `exclude`, dbt uses the project's `default: true` selector.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub select: Vec<DbtSelector>,
    /// Nodes to leave out (`--exclude`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<DbtSelector>,
    /// dbt variables (`--vars`), passed as JSON. Strings may hold Airflow `{{ ... }}` templates; the rendered JSON reaches dbt as one argument.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub vars: BTreeMap<Identifier, serde_json::Value>,
    /// Rebuild incremental models from scratch (`--full-refresh`).
    #[serde(default)]
    pub full_refresh: bool,
    /// dbt target for this stage, overriding the project's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<Identifier>,
    /// Add a task after this one that reads `target/run_results.json` and logs successes, failures and skips. `true` names it `parse_<stage>_results`; a string names it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parse_results: Option<ParseResults>,
    /// `per_model`: where data tests run. `after_each` (a test task after each model), `after_layer` (one test task per layer), `build` (`dbt build` per node) or `none`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tests: Option<TestPlacement>,
    /// `per_model`: run the stage's nodes as one `dbt build` and give each task its state from dbt's events as they come, instead of one dbt process per task (Cosmos' watcher mode). A failed task's retry builds what failed and what it blocked. In Airflow the build is the task `<stage>_build` and the others are sensors reading its events; a retried or cleared task builds its own nodes. Needs `operator: bash`.
    #[serde(default)]
    pub watcher: bool,
    /// `per_model`: group tasks by spec layer (`layer`), by folder under `models/` (`folder`), or not at all (`none`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_by: Option<GroupBy>,
    /// `layered`: the layers and their selectors, in order. Defaults to the spec's `layers`, each selected by its tag.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<LayerStep>,
    /// `layered` with `command: run`: a `dbt test` task on each layer before the next one starts.
    #[serde(default)]
    pub gates: bool,
    /// Run `dbt source freshness` first. `warn`: stale sources are logged and the build goes on; `fail`: the build does not start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub freshness: Option<FreshnessPolicy>,
    /// With a `state:` selector, read unselected nodes from the previous run's relations (`--defer`).
    #[serde(default)]
    pub defer: bool,
}

/// Where the data tests of a `per_model` stage run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TestPlacement {
    /// A `dbt test` task right after each model that has tests; its children wait for it.
    AfterEach,
    /// One `dbt test` task per group, after the group's models.
    AfterLayer,
    /// One `dbt build` task per node: the node and its tests together.
    Build,
    /// No tests.
    None,
}

/// How `per_model` tasks are grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum GroupBy {
    /// One task group per spec layer (models in no layer: by their first folder).
    Layer,
    /// Task groups mirroring the folders under `models/`.
    Folder,
    /// No task groups.
    None,
}

/// One layer of a `layered` stage.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LayerStep {
    /// The layer's name; its task is `<stage>_<name>`.
    pub name: Identifier,
    /// What the layer's task selects, such as `tag:staging`, `+tag:intermediate` or `path:models/marts`.
    #[schemars(length(min = 1))]
    pub select: Vec<DbtSelector>,
}

/// What a stale source does to a build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FreshnessPolicy {
    /// Log stale sources; the build runs anyway.
    Warn,
    /// A stale source fails the freshness task, and the build does not run.
    Fail,
}

/// Whether and how to name the run-results task of a dbt stage.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum ParseResults {
    /// `true` for the derived name, `false` for none.
    Enabled(bool),
    /// The task id to use.
    Named(StageId),
}

/// The dbt commands a stage can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize, JsonSchema)]
pub enum DbtCommand {
    /// `dbt deps`: install packages.
    #[serde(rename = "deps")]
    Deps,
    /// `dbt debug`: check the connection and project.
    #[serde(rename = "debug")]
    Debug,
    /// `dbt run`: build models.
    #[serde(rename = "run")]
    Run,
    /// `dbt test`: run data tests.
    #[serde(rename = "test")]
    Test,
    /// `dbt build`: seeds, models, snapshots and tests in DAG order.
    #[serde(rename = "build")]
    Build,
    /// `dbt seed`: load CSV seeds.
    #[serde(rename = "seed")]
    Seed,
    /// `dbt snapshot`: run snapshots.
    #[serde(rename = "snapshot")]
    Snapshot,
    /// `dbt source freshness`: check source freshness.
    #[serde(rename = "source freshness")]
    SourceFreshness,
    /// `dbt docs generate`: build the docs site.
    #[serde(rename = "docs generate")]
    DocsGenerate,
}

impl DbtCommand {
    /// The command's words on the dbt command line.
    pub fn words(self) -> &'static [&'static str] {
        match self {
            DbtCommand::Deps => &["deps"],
            DbtCommand::Debug => &["debug"],
            DbtCommand::Run => &["run"],
            DbtCommand::Test => &["test"],
            DbtCommand::Build => &["build"],
            DbtCommand::Seed => &["seed"],
            DbtCommand::Snapshot => &["snapshot"],
            DbtCommand::SourceFreshness => &["source", "freshness"],
            DbtCommand::DocsGenerate => &["docs", "generate"],
        }
    }

    /// Whether the command accepts `--select`/`--exclude`.
    pub fn takes_selection(self) -> bool {
        !matches!(self, DbtCommand::Deps | DbtCommand::Debug)
    }

    /// Whether the command accepts `--full-refresh`.
    pub fn takes_full_refresh(self) -> bool {
        matches!(self, DbtCommand::Run | DbtCommand::Build | DbtCommand::Seed)
    }

    /// Whether the command writes `target/run_results.json`.
    pub fn writes_run_results(self) -> bool {
        matches!(self, DbtCommand::Run | DbtCommand::Test | DbtCommand::Build | DbtCommand::Seed | DbtCommand::Snapshot)
    }
}

/// A load of new files into a warehouse table, tracked by a watermark: S3 → Snowflake with `COPY INTO`, or, under `fhirflow run`, a local folder or S3 → an embedded DuckDB file.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
pub struct CopyIntoStage {
    /// Where new files are found.
    pub source: CopySource,
    /// The warehouse table they are loaded into.
    pub target: CopyTarget,
    /// The table that records the watermark: the newest file loaded so far.
    pub watermark_table: TableName,
    /// The watermark table's column names, for a table that exists already. Default: today's
    /// `load_id, source, last_modified, last_key, files_loaded, updated_at`.
    // Boxed: a load's stage would otherwise be much the largest kind of stage.
    #[serde(default, skip_serializing_if = "WatermarkColumns::is_default")]
    pub watermark_columns: Box<WatermarkColumns>,
    /// Most files loaded by one run.
    #[serde(default = "default_batch_size")]
    #[schemars(range(min = 1, max = 1000))]
    pub batch_size: u32,
    /// Prefix for the five task ids this stage becomes, so that two loads can share a pipeline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"))]
    pub task_prefix: Option<String>,
}

fn default_batch_size() -> u32 {
    100
}

/// The file side of a load.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CopySource {
    /// Name of an `s3` connection, or of a `local` one (`fhirflow run` only).
    pub connection: Identifier,
    /// Key prefix under the bucket (or sub-folder of the local folder), such as `raw/patients/`. Empty: all of it.
    #[serde(default)]
    #[schemars(regex(pattern = r"^[A-Za-z0-9!_.*'()/=-]{0,1024}$"))]
    pub prefix: String,
}

/// The warehouse side of a load.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CopyTarget {
    /// Name of a `snowflake` connection, or of a `duckdb` one (`fhirflow run` only).
    pub connection: Identifier,
    /// The raw table, such as `RAW.FHIR_BUNDLES`. Columns: file key, load time, and the file as JSON (named by `columns`).
    pub table: TableName,
    /// The raw table's column names, for a table that exists already. Default: `file_key, loaded_at, bundle`.
    #[serde(default, skip_serializing_if = "RawColumns::is_default")]
    pub columns: RawColumns,
    /// Snowflake external stage whose URL is the bucket root, such as `RAW.FHIR_S3_STAGE`; required for Snowflake. `COPY INTO` reads the listed keys through it (Snowflake allows the load's column transformation only from a named stage).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<TableName>,
}

/// The column names of a load's raw table. Names are case-insensitive, as unquoted SQL names
/// are: Snowflake sees them upper-cased. A table that exists must have all three before the
/// first load; other columns it has are left alone.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawColumns {
    /// The file's key (VARCHAR), such as `raw/patients/a.json`.
    #[serde(default = "RawColumns::default_file_key")]
    pub file_key: ColumnName,
    /// When the file was loaded (a timestamp with time zone).
    #[serde(default = "RawColumns::default_loaded_at")]
    pub loaded_at: ColumnName,
    /// The file's JSON document (Snowflake VARIANT, DuckDB JSON), such as `bundle_data`.
    #[serde(default = "RawColumns::default_document")]
    pub document: ColumnName,
}

impl RawColumns {
    fn default_file_key() -> ColumnName {
        ColumnName::known("file_key")
    }

    fn default_loaded_at() -> ColumnName {
        ColumnName::known("loaded_at")
    }

    fn default_document() -> ColumnName {
        ColumnName::known("bundle")
    }

    fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// The columns with their setting's name, in table order.
    pub fn named(&self) -> [(&'static str, &ColumnName); 3] {
        [("file_key", &self.file_key), ("loaded_at", &self.loaded_at), ("document", &self.document)]
    }
}

impl Default for RawColumns {
    fn default() -> Self {
        Self {
            file_key: Self::default_file_key(),
            loaded_at: Self::default_loaded_at(),
            document: Self::default_document(),
        }
    }
}

/// The column names of a load's watermark table, case-insensitive as [`RawColumns`]' are. A
/// table that exists must have all six; other columns it has are left alone.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WatermarkColumns {
    /// The row's number, increasing (NUMBER AUTOINCREMENT on Snowflake): the newest row is the watermark.
    #[serde(default = "WatermarkColumns::default_load_id")]
    pub load_id: ColumnName,
    /// The load's stage id, so loads can share the table.
    #[serde(default = "WatermarkColumns::default_source")]
    pub source: ColumnName,
    /// The newest loaded file's modification time, as sortable UTC text.
    #[serde(default = "WatermarkColumns::default_last_modified")]
    pub last_modified: ColumnName,
    /// The newest loaded file's key.
    #[serde(default = "WatermarkColumns::default_last_key")]
    pub last_key: ColumnName,
    /// How many files the batch had.
    #[serde(default = "WatermarkColumns::default_files_loaded")]
    pub files_loaded: ColumnName,
    /// When the row was written (filled in by the warehouse's default).
    #[serde(default = "WatermarkColumns::default_updated_at")]
    pub updated_at: ColumnName,
}

impl WatermarkColumns {
    fn default_load_id() -> ColumnName {
        ColumnName::known("load_id")
    }

    fn default_source() -> ColumnName {
        ColumnName::known("source")
    }

    fn default_last_modified() -> ColumnName {
        ColumnName::known("last_modified")
    }

    fn default_last_key() -> ColumnName {
        ColumnName::known("last_key")
    }

    fn default_files_loaded() -> ColumnName {
        ColumnName::known("files_loaded")
    }

    fn default_updated_at() -> ColumnName {
        ColumnName::known("updated_at")
    }

    fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// The columns with their setting's name, in table order.
    pub fn named(&self) -> [(&'static str, &ColumnName); 6] {
        [
            ("load_id", &self.load_id),
            ("source", &self.source),
            ("last_modified", &self.last_modified),
            ("last_key", &self.last_key),
            ("files_loaded", &self.files_loaded),
            ("updated_at", &self.updated_at),
        ]
    }
}

impl Default for WatermarkColumns {
    fn default() -> Self {
        Self {
            load_id: Self::default_load_id(),
            source: Self::default_source(),
            last_modified: Self::default_last_modified(),
            last_key: Self::default_last_key(),
            files_loaded: Self::default_files_loaded(),
            updated_at: Self::default_updated_at(),
        }
    }
}

/// A stage that waits for another pipeline.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
pub struct SensorStage {
    /// The pipeline to wait for.
    pub pipeline: PipelineId,
    /// The stage of that pipeline to wait for. Without it, the whole run must succeed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<StageId>,
    /// Give up after this long.
    #[serde(default = "default_sensor_timeout")]
    pub timeout: Duration,
    /// How often to check.
    #[serde(default = "default_poke_interval")]
    pub poke_interval: Duration,
    /// `reschedule` frees the worker slot between checks; `poke` holds it.
    #[serde(default)]
    pub mode: SensorMode,
    /// States of the awaited stage (or run) that satisfy the sensor. Default: `[success]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_states: Option<Vec<AwaitedState>>,
    /// States that fail the sensor at once instead of waiting on. Default: `[failed, upstream_failed]` for a stage, `[failed]` for a whole run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_states: Option<Vec<AwaitedState>>,
    /// States that skip the sensor, and with it the stages after it. Default: `[skipped]` for a stage (a load that found nothing new), so that a skipped target never means "keep waiting"; none for a whole run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped_states: Option<Vec<AwaitedState>>,
    /// Fail at once when the awaited pipeline or stage does not exist in Airflow.
    #[serde(default = "default_true")]
    pub check_existence: bool,
    /// Wait in Airflow's triggerer instead of a worker slot (needs a running triggerer).
    #[serde(default)]
    pub deferrable: bool,
    /// On timeout or a failed target, mark the sensor skipped instead of failed.
    #[serde(default)]
    pub soft_fail: bool,
}

fn default_true() -> bool {
    true
}

/// A state of the task or run a sensor waits for, as Airflow names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AwaitedState {
    /// It succeeded.
    Success,
    /// It failed.
    Failed,
    /// A task upstream of it failed, so it never ran (stages only).
    UpstreamFailed,
    /// It was skipped (stages only): a load with nothing new, a branch not taken.
    Skipped,
}

impl AwaitedState {
    /// Every state, in Airflow's order.
    pub const ALL: [AwaitedState; 4] =
        [AwaitedState::Success, AwaitedState::Failed, AwaitedState::UpstreamFailed, AwaitedState::Skipped];

    /// The Airflow state name.
    pub fn as_str(self) -> &'static str {
        match self {
            AwaitedState::Success => "success",
            AwaitedState::Failed => "failed",
            AwaitedState::UpstreamFailed => "upstream_failed",
            AwaitedState::Skipped => "skipped",
        }
    }

    /// Whether a whole DAG run can end in this state (runs end success or failed).
    pub fn is_run_state(self) -> bool {
        matches!(self, AwaitedState::Success | AwaitedState::Failed)
    }
}

fn default_sensor_timeout() -> Duration {
    Duration::from_secs(3600)
}

fn default_poke_interval() -> Duration {
    Duration::from_secs(60)
}

/// How a sensor waits between checks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SensorMode {
    /// Release the worker slot between checks.
    #[default]
    Reschedule,
    /// Hold the worker slot and sleep.
    Poke,
}

impl SensorMode {
    /// The Airflow `mode=` string.
    pub fn as_str(self) -> &'static str {
        match self {
            SensorMode::Reschedule => "reschedule",
            SensorMode::Poke => "poke",
        }
    }
}
