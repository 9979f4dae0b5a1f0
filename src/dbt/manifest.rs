//! Reading dbt's `target/manifest.json`: schema v11 (dbt-core 1.7) or v12 (dbt-core 1.8 to 1.12),
//! whichever the spec's `dbt.version` admits.
//!
//! Only what task generation and node selection need is kept: for every graph member (the
//! `nodes`, `sources`, `exposures`, `metrics`, `semantic_models`, `saved_queries`,
//! `unit_tests` and `functions` sections, as dbt links them) its id, type, name, package, fqn,
//! file, tags, config and `depends_on.nodes`. Everything else (macros, docs, compiled SQL,
//! columns, ...) is skipped while parsing, without being built in memory.
//!
//! Tasks are the models, seeds, snapshots and data tests ([`Manifest::nodes`]); the other
//! members are kept because dbt's selection walks through them (`@model` also selects the
//! parents of an exposure or analysis downstream of `model`).

use super::version::{DbtVersion, Release, writers_of};
use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, Visitor};
use serde_json::{Map, Value};
use std::collections::{BTreeSet, HashMap};
use std::fmt;

/// Why a manifest could not be read. Every message starts with the manifest's name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// The text is not JSON.
    #[error("{name}: not valid JSON: {message} at line {line}, column {column}")]
    Json {
        /// The manifest's name (usually its path).
        name: String,
        /// serde_json's description.
        message: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
    },
    /// `metadata.dbt_schema_version` is none that a dbt-core in `dbt.version` writes, nor any
    /// other that fhirflow knows.
    #[error(
        "{name}: unsupported dbt manifest schema `{found}`: fhirflow reads {supported}; \
         regenerate the manifest with `dbt parse` from one of those"
    )]
    UnsupportedVersion {
        /// The manifest's name.
        name: String,
        /// The version found.
        found: String,
        /// The schemas read under the spec's `dbt.version`, and the dbt-core versions that write them.
        supported: String,
    },
    /// The manifest was written by a dbt-core that `dbt.version` does not admit.
    #[error(
        "{name}: written by dbt-core {written_by} (manifest schema {schema}), which `dbt.version: \"{range}\"` does not admit"
    )]
    VersionMismatch {
        /// The manifest's name.
        name: String,
        /// `metadata.dbt_version`, or the versions that write its schema when it has none.
        written_by: String,
        /// The schema's short name, such as `v11`.
        schema: String,
        /// The spec's `dbt.version`.
        range: String,
    },
    /// A required field is missing.
    #[error("{name}: not a dbt manifest: {path} has no `{field}` (line {line}, column {column})")]
    MissingField {
        /// The manifest's name.
        name: String,
        /// Where, e.g. `nodes["model.fhir.stg_patients"]`; empty for the top level.
        path: String,
        /// The missing field.
        field: String,
        /// 1-based line where the object ends.
        line: usize,
        /// 1-based column.
        column: usize,
    },
    /// A field has the wrong type or value.
    #[error("{name}: invalid dbt manifest: {path}: {message} (line {line}, column {column})")]
    Invalid {
        /// The manifest's name.
        name: String,
        /// Where, e.g. `nodes["model.fhir.stg_patients"].fqn`.
        path: String,
        /// What is wrong.
        message: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
    },
    /// The entries do not fit together (a node under another's id, a type in the wrong section).
    #[error("{name}: invalid dbt manifest: {path}: {message}")]
    Inconsistent {
        /// The manifest's name.
        name: String,
        /// Where, e.g. `nodes["model.fhir.stg_patients"].resource_type`.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// A node depends on a node the manifest does not have.
    #[error("{name}: invalid dbt manifest: `{node}` depends on `{dependency}`, which is not in the manifest")]
    UnknownDependency {
        /// The manifest's name.
        name: String,
        /// The dependent node.
        node: String,
        /// The missing dependency.
        dependency: String,
    },
}

/// A dbt resource type (dbt's `NodeType`), as `resource_type` spells it in the manifest and in
/// the `resource_type:` selector method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ResourceType {
    /// `model`
    Model,
    /// `analysis`
    Analysis,
    /// `test`: a data test, generic or singular.
    Test,
    /// `snapshot`
    Snapshot,
    /// `operation`: a project hook.
    Operation,
    /// `seed`
    Seed,
    /// `rpc`
    Rpc,
    /// `sql_operation`
    SqlOperation,
    /// `doc`
    Doc,
    /// `source`
    Source,
    /// `macro`
    Macro,
    /// `exposure`
    Exposure,
    /// `metric`
    Metric,
    /// `group`
    Group,
    /// `saved_query`
    SavedQuery,
    /// `semantic_model`
    SemanticModel,
    /// `unit_test`
    UnitTest,
    /// `fixture`
    Fixture,
    /// `function`: a user-defined function (dbt 1.11).
    Function,
}

impl ResourceType {
    /// Every type, in dbt's order.
    pub const ALL: [ResourceType; 19] = [
        ResourceType::Model,
        ResourceType::Analysis,
        ResourceType::Test,
        ResourceType::Snapshot,
        ResourceType::Operation,
        ResourceType::Seed,
        ResourceType::Rpc,
        ResourceType::SqlOperation,
        ResourceType::Doc,
        ResourceType::Source,
        ResourceType::Macro,
        ResourceType::Exposure,
        ResourceType::Metric,
        ResourceType::Group,
        ResourceType::SavedQuery,
        ResourceType::SemanticModel,
        ResourceType::UnitTest,
        ResourceType::Fixture,
        ResourceType::Function,
    ];

    /// The name dbt uses.
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceType::Model => "model",
            ResourceType::Analysis => "analysis",
            ResourceType::Test => "test",
            ResourceType::Snapshot => "snapshot",
            ResourceType::Operation => "operation",
            ResourceType::Seed => "seed",
            ResourceType::Rpc => "rpc",
            ResourceType::SqlOperation => "sql_operation",
            ResourceType::Doc => "doc",
            ResourceType::Source => "source",
            ResourceType::Macro => "macro",
            ResourceType::Exposure => "exposure",
            ResourceType::Metric => "metric",
            ResourceType::Group => "group",
            ResourceType::SavedQuery => "saved_query",
            ResourceType::SemanticModel => "semantic_model",
            ResourceType::UnitTest => "unit_test",
            ResourceType::Fixture => "fixture",
            ResourceType::Function => "function",
        }
    }

    /// The type named `name` exactly (case matters, as in dbt).
    pub fn parse(name: &str) -> Option<ResourceType> {
        ResourceType::ALL.into_iter().find(|t| t.as_str() == name)
    }

    /// Whether nodes of this type become tasks: models, seeds, snapshots and data tests.
    pub fn is_task(self) -> bool {
        matches!(self, ResourceType::Model | ResourceType::Seed | ResourceType::Snapshot | ResourceType::Test)
    }

    /// The manifest section that holds this type.
    fn section(self) -> Option<Section> {
        Some(match self {
            ResourceType::Model
            | ResourceType::Analysis
            | ResourceType::Test
            | ResourceType::Snapshot
            | ResourceType::Operation
            | ResourceType::Seed
            | ResourceType::Rpc
            | ResourceType::SqlOperation => Section::Nodes,
            ResourceType::Source => Section::Sources,
            ResourceType::Exposure => Section::Exposures,
            ResourceType::Metric => Section::Metrics,
            ResourceType::SavedQuery => Section::SavedQueries,
            ResourceType::SemanticModel => Section::SemanticModels,
            ResourceType::UnitTest => Section::UnitTests,
            ResourceType::Function => Section::Functions,
            ResourceType::Doc | ResourceType::Macro | ResourceType::Group | ResourceType::Fixture => return None,
        })
    }
}

impl fmt::Display for ResourceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The manifest section a graph member comes from; dbt's selector methods each search some.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Section {
    Nodes,
    Sources,
    Exposures,
    Metrics,
    SemanticModels,
    SavedQueries,
    UnitTests,
    Functions,
}

impl Section {
    fn key(self) -> &'static str {
        match self {
            Section::Nodes => "nodes",
            Section::Sources => "sources",
            Section::Exposures => "exposures",
            Section::Metrics => "metrics",
            Section::SemanticModels => "semantic_models",
            Section::SavedQueries => "saved_queries",
            Section::UnitTests => "unit_tests",
            Section::Functions => "functions",
        }
    }
}

/// One member of dbt's graph: a model, seed, snapshot, test, or (kept for selection) a source,
/// analysis, exposure, metric, semantic model, saved query, unit test or function.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// `model.fhir.stg_patients`, `test.fhir.unique_dim_patients_patient_id.77ebce32b2`, ...
    pub unique_id: String,
    /// Its type.
    pub resource_type: ResourceType,
    /// `stg_patients`
    pub name: String,
    /// The dbt project (or installed package) it belongs to.
    pub package_name: String,
    /// Fully qualified name: package, folders, name (and `v2` for a model version).
    pub fqn: Vec<String>,
    /// The file that defines it, relative to its package's root: the `.sql`/`.py`/`.csv` file,
    /// or the properties YAML for generic tests, sources and YAML snapshots.
    pub original_file_path: String,
    /// Its path relative to its resource folder (`path` in the manifest; may be empty).
    pub path: String,
    /// The properties YAML that describes it, relative to its package (from `patch_path`).
    pub patch_path: Option<String>,
    /// The tags dbt selects on: the node's `tags`, which dbt fills with `config.tags`, the
    /// tags of the folders and, for tests, of the column they test.
    pub tags: Vec<String>,
    /// `config` as dbt wrote it (`materialized`, `enabled`, `severity`, `meta`, ...), less its
    /// null, `[]` and `{}` values, which no selector matches.
    pub config: Map<String, Value>,
    /// `depends_on.nodes`: the nodes, sources, etc. it reads from.
    pub depends_on: Vec<String>,
    /// For a generic test, the node it is attached to (`attached_node`).
    pub attached_node: Option<String>,
    /// For a generic test, the test's name (`unique`, `not_null`, `relationships`, ...); `None`
    /// for a singular test.
    pub test_name: Option<String>,
    /// For a source, its source name (`raw` in `source('raw', 'patients')`).
    pub source_name: Option<String>,
    /// For a model, its access level (`protected`, `private`, `public`).
    pub access: Option<String>,
    /// For a versioned model, its version (a JSON number or string).
    pub version: Option<Value>,
    /// For a versioned model, the model's latest version.
    pub latest_version: Option<Value>,
    /// Whether its code is empty or blank (dbt does not run empty models, but `dbt ls` lists
    /// them).
    pub empty: bool,
    pub(crate) section: Section,
}

impl Node {
    /// `config.materialized`: `view`, `table`, `incremental`, `ephemeral`, `seed`, `test`, ...
    pub fn materialized(&self) -> Option<&str> {
        self.config.get("materialized").and_then(Value::as_str)
    }

    /// An ephemeral model: it is inlined into its children, so it never becomes a task.
    pub fn is_ephemeral(&self) -> bool {
        self.resource_type == ResourceType::Model && self.materialized() == Some("ephemeral")
    }

    /// Whether it is a generic test (`unique`, `relationships`, ...) rather than a singular one.
    pub fn is_generic_test(&self) -> bool {
        self.resource_type == ResourceType::Test && self.test_name.is_some()
    }

    /// Whether dbt would turn it into a task: a model (not ephemeral), seed, snapshot or test.
    pub fn is_task(&self) -> bool {
        self.section == Section::Nodes && self.resource_type.is_task() && !self.is_ephemeral()
    }

    /// A model with a version (dbt's `is_versioned`).
    pub(crate) fn is_versioned(&self) -> bool {
        self.resource_type == ResourceType::Model && self.version.is_some()
    }
}

/// A parsed manifest: the graph of dbt's enabled nodes.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// The name it was read under, used in messages (usually its path).
    pub name: String,
    /// `metadata.dbt_version`: the dbt-core that wrote it.
    pub dbt_version: Option<String>,
    /// `metadata.project_name`: the root project.
    pub project_name: Option<String>,
    /// `metadata.adapter_type`
    pub adapter_type: Option<String>,
    /// Graph members, sorted by unique id.
    pub(crate) members: Vec<Node>,
    pub(crate) index: HashMap<String, usize>,
    /// For each member, the members it depends on, and those that depend on it.
    pub(crate) parents: Vec<Vec<usize>>,
    pub(crate) children: Vec<Vec<usize>>,
}

impl Manifest {
    /// Reads a manifest of dbt-core 1.8 or later (the default `dbt.version`) from its JSON text.
    /// `name` (usually the file's path) starts every error message.
    pub fn from_json(text: &str, name: &str) -> Result<Manifest, ManifestError> {
        Manifest::from_json_for(text, name, &DbtVersion::default())
    }

    /// Reads a manifest written by a dbt-core that `range` admits, in the schema of that
    /// version; a manifest of another version is a [`ManifestError::VersionMismatch`].
    pub fn from_json_for(text: &str, name: &str, range: &DbtVersion) -> Result<Manifest, ManifestError> {
        if !text.trim_start().starts_with('{') {
            // serde would read a top-level array as a struct's fields, in order.
            return Err(match serde_json::from_str::<IgnoredAny>(text) {
                Err(error) => explain(text, name, error, range),
                Ok(_) => ManifestError::Invalid {
                    name: name.to_owned(),
                    path: "the top level".to_owned(),
                    message: "expected a dbt manifest (a JSON object with `metadata` and `nodes`)".to_owned(),
                    line: 1,
                    column: 1,
                },
            });
        }
        let raw: RawManifest = match serde_json::from_str(text) {
            Ok(raw) => raw,
            Err(error) => return Err(explain(text, name, error, range)),
        };
        check_version(name, &raw.metadata.dbt_schema_version, raw.metadata.dbt_version.as_deref(), range)?;
        build(raw, name)
    }

    /// The nodes that can become tasks (models, seeds, snapshots and data tests, ephemeral
    /// models included), in unique-id order.
    pub fn nodes(&self) -> impl Iterator<Item = &Node> + '_ {
        self.members.iter().filter(|n| n.section == Section::Nodes && n.resource_type.is_task())
    }

    /// Any graph member by unique id: a node, or a source, exposure, etc.
    pub fn get(&self, unique_id: &str) -> Option<&Node> {
        self.index.get(unique_id).map(|&i| &self.members[i])
    }

    /// The unique ids of every member upstream of `unique_id`, transitively; empty for an
    /// unknown id.
    pub fn ancestors(&self, unique_id: &str) -> BTreeSet<String> {
        let Some(&start) = self.index.get(unique_id) else { return BTreeSet::new() };
        let mut seen = vec![false; self.members.len()];
        let mut stack = self.parents[start].clone();
        let mut out = BTreeSet::new();
        while let Some(i) = stack.pop() {
            if !std::mem::replace(&mut seen[i], true) {
                out.insert(self.members[i].unique_id.clone());
                stack.extend(self.parents[i].iter().copied());
            }
        }
        out
    }

    /// The files and folders of the root project that its members show exist: each member's
    /// file and properties file and the folders above them (`""` is the project folder).
    /// Without `metadata.project_name`, every member counts.
    pub(crate) fn root_paths(&self) -> std::collections::HashSet<String> {
        let mut paths = std::collections::HashSet::from([String::new()]);
        let root = self.project_name.as_deref();
        for node in self.members.iter().filter(|n| root.is_none_or(|r| n.package_name == r)) {
            for path in std::iter::once(&node.original_file_path).chain(&node.patch_path) {
                let parts = super::pattern::components(path);
                for k in 1..=parts.len() {
                    paths.insert(parts[..k].join("/"));
                }
            }
        }
        paths
    }

    /// The dependency edges `(upstream, downstream)` between the members in `keep`, sorted.
    /// A path that runs only through members outside `keep` becomes one edge, as in dbt's own
    /// run queue (`get_subset_graph`): with `keep` = the selected nodes minus ephemeral models,
    /// a model below an ephemeral one waits for the ephemeral model's parents.
    pub fn edges_within(&self, keep: &BTreeSet<String>) -> Vec<(String, String)> {
        let kept: Vec<bool> = self.members.iter().map(|n| keep.contains(&n.unique_id)).collect();
        // For each member outside `keep`, the kept members it reaches going upstream.
        let mut memo: HashMap<usize, BTreeSet<usize>> = HashMap::new();
        let mut edges = BTreeSet::new();
        for (i, is_kept) in kept.iter().enumerate() {
            if !is_kept {
                continue;
            }
            for &parent in &self.parents[i] {
                if kept[parent] {
                    edges.insert((parent, i));
                } else {
                    for &up in self.kept_above(parent, &kept, &mut memo).iter() {
                        edges.insert((up, i));
                    }
                }
            }
        }
        edges.into_iter().map(|(a, b)| (self.members[a].unique_id.clone(), self.members[b].unique_id.clone())).collect()
    }

    /// The kept members nearest upstream of the unkept member `start` (iterative, memoized).
    fn kept_above<'m>(
        &self,
        start: usize,
        kept: &[bool],
        memo: &'m mut HashMap<usize, BTreeSet<usize>>,
    ) -> &'m BTreeSet<usize> {
        let mut stack = vec![start];
        while let Some(&top) = stack.last() {
            if memo.contains_key(&top) {
                stack.pop();
                continue;
            }
            let pending: Vec<usize> =
                self.parents[top].iter().copied().filter(|p| !kept[*p] && !memo.contains_key(p)).collect();
            if pending.is_empty() {
                let mut found = BTreeSet::new();
                for &p in &self.parents[top] {
                    if kept[p] {
                        found.insert(p);
                    } else {
                        found.extend(memo[&p].iter().copied());
                    }
                }
                memo.insert(top, found);
                stack.pop();
            } else {
                stack.extend(pending);
            }
        }
        &memo[&start]
    }
}

/// Checks the manifest's schema and `dbt_version` against `range`: an unknown schema is
/// unsupported; a known one, or a release, outside the range is a mismatch.
fn check_version(name: &str, schema: &str, dbt_version: Option<&str>, range: &DbtVersion) -> Result<(), ManifestError> {
    let schemas = range.manifest_schemas();
    let Some(writers) = writers_of(schema) else {
        let supported: Vec<String> =
            schemas.iter().map(|s| format!("`{s}` (dbt-core {})", writers_of(s).unwrap_or_default())).collect();
        return Err(ManifestError::UnsupportedVersion {
            name: name.to_owned(),
            found: schema.to_owned(),
            supported: supported.join(" and "),
        });
    };
    let release = dbt_version.and_then(Release::parse_lenient);
    if schemas.contains(&schema) && release.is_none_or(|r| range.contains(r)) {
        return Ok(());
    }
    Err(ManifestError::VersionMismatch {
        name: name.to_owned(),
        written_by: match release {
            Some(release) => release.to_string(),
            None => writers,
        },
        schema: schema.rsplit('/').next().unwrap_or(schema).trim_end_matches(".json").to_owned(),
        range: range.to_string(),
    })
}

/// Turns a parse failure into the clearest error: a JSON syntax error as is; otherwise a
/// schema version outside `range` if that is the cause, else the field at fault, with its path.
fn explain(text: &str, name: &str, error: serde_json::Error, range: &DbtVersion) -> ManifestError {
    use serde_json::error::Category;
    if matches!(error.classify(), Category::Syntax | Category::Eof | Category::Io) {
        return ManifestError::Json {
            name: name.to_owned(),
            message: bare_message(&error),
            line: error.line(),
            column: error.column(),
        };
    }
    // A manifest of another schema version may fail on any field: say so first.
    if let Ok(probe) = serde_json::from_str::<VersionProbe>(text)
        && let Some(metadata) = probe.metadata
        && let Some(found) = metadata.dbt_schema_version
        && let Err(e) = check_version(name, &found, metadata.dbt_version.as_deref(), range)
    {
        return e;
    }
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let located = match serde_path_to_error::deserialize::<_, RawManifest>(&mut deserializer) {
        Ok(_) => None,
        Err(e) => Some((render_path(e.path()), e.into_inner())),
    };
    let (path, error) = located.unwrap_or_else(|| (String::new(), error));
    let message = bare_message(&error);
    if let Some(field) = message.strip_prefix("missing field `").and_then(|m| m.strip_suffix('`')) {
        return ManifestError::MissingField {
            name: name.to_owned(),
            path: if path.is_empty() { "the top level".to_owned() } else { path },
            field: field.to_owned(),
            line: error.line(),
            column: error.column(),
        };
    }
    ManifestError::Invalid {
        name: name.to_owned(),
        path: if path.is_empty() { "the top level".to_owned() } else { path },
        message,
        line: error.line(),
        column: error.column(),
    }
}

/// serde_json's message without its ` at line L column C` suffix.
fn bare_message(error: &serde_json::Error) -> String {
    let text = error.to_string();
    let suffix = format!(" at line {} column {}", error.line(), error.column());
    text.strip_suffix(&suffix).unwrap_or(&text).to_owned()
}

/// `nodes["model.fhir.x"].fqn[2]`
fn render_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } if !key.contains('.') && !out.is_empty() => out.push_str(&format!(".{key}")),
            Segment::Map { key } if out.is_empty() => out.push_str(key),
            Segment::Map { key } => out.push_str(&format!("[{key:?}]")),
            Segment::Enum { variant } => out.push_str(&format!(".{variant}")),
            Segment::Unknown => out.push_str(".?"),
        }
    }
    out
}

fn build(raw: RawManifest, name: &str) -> Result<Manifest, ManifestError> {
    let sections = [
        (Section::Nodes, raw.nodes),
        (Section::Sources, raw.sources),
        (Section::Exposures, raw.exposures),
        (Section::Metrics, raw.metrics),
        (Section::SemanticModels, raw.semantic_models),
        (Section::SavedQueries, raw.saved_queries),
        (Section::UnitTests, raw.unit_tests),
        (Section::Functions, raw.functions),
    ];
    let invalid = |path: String, message: String| ManifestError::Inconsistent { name: name.to_owned(), path, message };
    let mut all_ids: BTreeSet<String> = BTreeSet::new();
    let mut members: Vec<Node> = Vec::new();
    for (section, entries) in sections {
        for (key, node) in entries {
            let path = format!("{}[{key:?}]", section.key());
            if node.unique_id != key {
                return Err(invalid(path, format!("holds the node `{}`", node.unique_id)));
            }
            let resource_type = ResourceType::parse(&node.resource_type).ok_or_else(|| {
                invalid(format!("{path}.resource_type"), format!("unknown resource type `{}`", node.resource_type))
            })?;
            if resource_type.section() != Some(section) {
                return Err(invalid(
                    format!("{path}.resource_type"),
                    format!("a `{resource_type}` cannot be in `{}`", section.key()),
                ));
            }
            if !all_ids.insert(key.clone()) {
                return Err(invalid(path, "appears twice in the manifest".to_owned()));
            }
            let config = node.config.map(|c| c.0).unwrap_or_default();
            // dbt's graph holds enabled members only (and every exposure).
            let enabled = section == Section::Exposures || config.get("enabled") != Some(&Value::Bool(false));
            if !enabled {
                continue;
            }
            let tags = match (node.tags, section) {
                (Some(Tags(tags)), _) => tags,
                // A unit test's tags are its config's.
                (None, Section::UnitTests) => match config.get("tags") {
                    Some(Value::String(tag)) => vec![tag.clone()],
                    Some(Value::Array(tags)) => tags.iter().filter_map(|t| t.as_str().map(str::to_owned)).collect(),
                    _ => Vec::new(),
                },
                (None, _) => Vec::new(),
            };
            let patch_path = node.patch_path.and_then(|p| p.split_once("://").map(|(_, rest)| rest.to_owned()));
            members.push(Node {
                unique_id: node.unique_id,
                resource_type,
                name: node.name,
                package_name: node.package_name,
                fqn: node.fqn,
                path: node.path.unwrap_or_default(),
                original_file_path: node.original_file_path,
                patch_path,
                tags,
                config,
                depends_on: node.depends_on.map(|d| d.nodes).unwrap_or_default(),
                attached_node: node.attached_node,
                test_name: node.test_metadata.map(|t| t.name.unwrap_or_default()),
                source_name: node.source_name,
                access: node.access,
                version: node.version.filter(|v| !v.is_null()),
                latest_version: node.latest_version.filter(|v| !v.is_null()),
                empty: node.raw_code.is_some_and(|blank| blank.0),
                section,
            });
        }
    }
    members.sort_by(|a, b| a.unique_id.cmp(&b.unique_id));
    let index: HashMap<String, usize> = members.iter().enumerate().map(|(i, n)| (n.unique_id.clone(), i)).collect();
    let mut parents = vec![Vec::new(); members.len()];
    let mut children = vec![Vec::new(); members.len()];
    for (i, node) in members.iter().enumerate() {
        for dependency in &node.depends_on {
            match index.get(dependency) {
                Some(&p) => {
                    if !parents[i].contains(&p) {
                        parents[i].push(p);
                        children[p].push(i);
                    }
                }
                // A disabled member is in the manifest but not in the graph.
                None if all_ids.contains(dependency) => {}
                None => {
                    return Err(ManifestError::UnknownDependency {
                        name: name.to_owned(),
                        node: node.unique_id.clone(),
                        dependency: dependency.clone(),
                    });
                }
            }
        }
    }
    Ok(Manifest {
        name: name.to_owned(),
        dbt_version: raw.metadata.dbt_version,
        project_name: raw.metadata.project_name,
        adapter_type: raw.metadata.adapter_type,
        members,
        index,
        parents,
        children,
    })
}

// ---- The JSON, as little of it as selection needs. Unknown fields are skipped unread.

#[derive(Deserialize)]
#[serde(expecting = "a dbt manifest (a JSON object with `metadata` and `nodes`)")]
struct RawManifest {
    metadata: RawMetadata,
    #[serde(deserialize_with = "entries")]
    nodes: Vec<(String, RawNode)>,
    #[serde(default, deserialize_with = "entries")]
    sources: Vec<(String, RawNode)>,
    #[serde(default, deserialize_with = "entries")]
    exposures: Vec<(String, RawNode)>,
    #[serde(default, deserialize_with = "entries")]
    metrics: Vec<(String, RawNode)>,
    #[serde(default, deserialize_with = "entries")]
    semantic_models: Vec<(String, RawNode)>,
    #[serde(default, deserialize_with = "entries")]
    saved_queries: Vec<(String, RawNode)>,
    #[serde(default, deserialize_with = "entries")]
    unit_tests: Vec<(String, RawNode)>,
    #[serde(default, deserialize_with = "entries")]
    functions: Vec<(String, RawNode)>,
}

#[derive(Deserialize)]
struct RawMetadata {
    dbt_schema_version: String,
    #[serde(default)]
    dbt_version: Option<String>,
    #[serde(default)]
    project_name: Option<String>,
    #[serde(default)]
    adapter_type: Option<String>,
}

#[derive(Deserialize)]
struct VersionProbe {
    #[serde(default)]
    metadata: Option<VersionProbeMetadata>,
}

#[derive(Deserialize)]
struct VersionProbeMetadata {
    #[serde(default)]
    dbt_schema_version: Option<String>,
    #[serde(default)]
    dbt_version: Option<String>,
}

#[derive(Deserialize)]
struct RawNode {
    unique_id: String,
    resource_type: String,
    name: String,
    package_name: String,
    fqn: Vec<String>,
    original_file_path: String,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    patch_path: Option<String>,
    #[serde(default)]
    tags: Option<Tags>,
    #[serde(default)]
    config: Option<Config>,
    #[serde(default)]
    depends_on: Option<RawDependsOn>,
    #[serde(default)]
    test_metadata: Option<RawTestMetadata>,
    #[serde(default)]
    attached_node: Option<String>,
    #[serde(default)]
    source_name: Option<String>,
    #[serde(default)]
    access: Option<String>,
    #[serde(default)]
    version: Option<Value>,
    #[serde(default)]
    latest_version: Option<Value>,
    #[serde(default)]
    raw_code: Option<Blank>,
}

#[derive(Deserialize)]
struct RawDependsOn {
    #[serde(default)]
    nodes: Vec<String>,
}

#[derive(Deserialize)]
struct RawTestMetadata {
    #[serde(default)]
    name: Option<String>,
}

/// A JSON object read as its entries, in order, without building a map.
fn entries<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<(String, RawNode)>, D::Error> {
    Option::<Entries>::deserialize(deserializer).map(|e| e.map(|e| e.0).unwrap_or_default())
}

struct Entries(Vec<(String, RawNode)>);

impl<'de> Deserialize<'de> for Entries {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EntriesVisitor;
        impl<'de> Visitor<'de> for EntriesVisitor {
            type Value = Entries;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of unique id to node")
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Entries, A::Error> {
                let mut out = Vec::with_capacity(map.size_hint().unwrap_or(0));
                while let Some((key, value)) = map.next_entry::<String, RawNode>()? {
                    out.push((key, value));
                }
                Ok(Entries(out))
            }
        }
        deserializer.deserialize_map(EntriesVisitor)
    }
}

/// `tags`: a list of strings (or, in a saved query, possibly one string).
struct Tags(Vec<String>);

impl<'de> Deserialize<'de> for Tags {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TagsVisitor;
        impl<'de> Visitor<'de> for TagsVisitor {
            type Value = Tags;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of tags")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Tags, E> {
                Ok(Tags(vec![v.to_owned()]))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Tags, A::Error> {
                let mut tags = Vec::new();
                while let Some(tag) = seq.next_element::<String>()? {
                    tags.push(tag);
                }
                Ok(Tags(tags))
            }
        }
        deserializer.deserialize_any(TagsVisitor)
    }
}

/// Whether a string is blank (Python's `not s.strip()`), read without keeping the string.
struct Blank(bool);

impl<'de> Deserialize<'de> for Blank {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct BlankVisitor;
        impl<'de> Visitor<'de> for BlankVisitor {
            type Value = Blank;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Blank, E> {
                Ok(Blank(v.chars().all(|c| c.is_whitespace() || ('\x1c'..='\x1f').contains(&c))))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Blank, E> {
                Ok(Blank(false))
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Blank, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Blank(false))
            }
        }
        deserializer.deserialize_any(BlankVisitor)
    }
}

/// A node's `config`, without the null and empty values (which no selector can match): about
/// half of what dbt writes, and the costliest part of reading a manifest.
struct Config(Map<String, Value>);

impl<'de> Deserialize<'de> for Config {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ConfigVisitor;
        impl<'de> Visitor<'de> for ConfigVisitor {
            type Value = Config;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a config object")
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Config, A::Error> {
                let mut out = Map::new();
                // Keys are read into one buffer, and copied only for the values kept.
                let mut key = String::new();
                while map.next_key_seed(KeyInto(&mut key))?.is_some() {
                    let value: Value = map.next_value()?;
                    let empty = match &value {
                        Value::Null => true,
                        Value::Array(a) => a.is_empty(),
                        Value::Object(o) => o.is_empty(),
                        _ => false,
                    };
                    if !empty {
                        out.insert(key.clone(), value);
                    }
                }
                Ok(Config(out))
            }
        }
        deserializer.deserialize_map(ConfigVisitor)
    }
}

/// Reads a map key into a reused buffer.
struct KeyInto<'b>(&'b mut String);

impl<'de> de::DeserializeSeed<'de> for KeyInto<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeyInto<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.0.clear();
        self.0.push_str(v);
        Ok(())
    }
}
