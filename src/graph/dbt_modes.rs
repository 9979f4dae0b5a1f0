//! dbt stages with a `dbt_mode`: one task (`single`), one per layer (`layered`), or one per dbt
//! node from `manifest.json` (`per_model`).
//!
//! `per_model` reads the manifest at compile time and applies the stage's `select`/`exclude`
//! with [`crate::dbt::Manifest::select`], so the tasks are the nodes `dbt ls` would list and the
//! edges are dbt's own (through ephemeral models, which become no task). Tests follow
//! `tests:`; with `after_each` a model's children wait for its tests, as in `dbt build`.

use super::dbt_selection::CliSelection;
use super::{
    DbtArg, DbtInvocation, LoweredStage, Lowering, Operation, Origin, Resolved, Settings, Task, TriggerRule,
    WatchedNodes, stage_pointer,
};
use crate::dbt::{
    CommandLine, IndirectSelection, LoadError, Manifest, ManifestError, ParseCommand, Release, ResourceType, Selectors,
    read_manifest,
};
use crate::diagnostic::Diagnostic;
use crate::spec::{
    DbtCommand, DbtMode, DbtProject, DbtSelector, DbtStage, FreshnessPolicy, GroupBy, LayerProperties, ModelEntry,
    OperatorKind, PipelineId, StageId, TestPlacement,
};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Builds dbt command lines for one stage: the stage's target, vars, full refresh and state
/// flags on every command that takes them.
pub(super) struct DbtLine<'s> {
    pub(super) project: &'s DbtProject,
    pub(super) stage: &'s DbtStage,
}

impl DbtLine<'_> {
    /// `dbt COMMAND` with the given selection; `threads` adds the project's `--threads`.
    pub(super) fn invocation(
        &self,
        command: DbtCommand,
        select: &[&str],
        exclude: &[&str],
        threads: bool,
    ) -> DbtInvocation {
        self.invocation_with(command, select, exclude, None, threads)
    }

    /// `dbt COMMAND` with a selection as the command line writes it.
    pub(super) fn invocation_for(&self, command: DbtCommand, selection: &CliSelection, threads: bool) -> DbtInvocation {
        let (select, exclude, selector) = selection.parts();
        let mut inv = self.invocation_with(command, &select, &exclude, selector, threads);
        if let CliSelection::Selector(_, true) = selection
            && command.takes_selection()
        {
            inv.args.extend([DbtArg::Literal("--state".to_owned()), DbtArg::StateDir]);
            if self.stage.defer {
                inv.args.push(DbtArg::Literal("--defer".to_owned()));
            }
        }
        inv
    }

    fn invocation_with(
        &self,
        command: DbtCommand,
        select: &[&str],
        exclude: &[&str],
        selector: Option<&str>,
        threads: bool,
    ) -> DbtInvocation {
        let lit = |s: &str| DbtArg::Literal(s.to_owned());
        let mut args: Vec<DbtArg> = command.words().iter().map(|w| lit(w)).collect();
        args.extend([lit("--project-dir"), DbtArg::ProjectDir, lit("--profiles-dir"), DbtArg::ProfilesDir]);
        if let Some(target) = self.stage.target.as_ref().or(self.project.target.as_ref()) {
            args.extend([lit("--target"), lit(target.as_str())]);
        }
        let takes_threads = matches!(
            command,
            DbtCommand::Run | DbtCommand::Test | DbtCommand::Build | DbtCommand::Seed | DbtCommand::Snapshot
        );
        if let (Some(n), true, true) = (self.project.threads, takes_threads, threads) {
            args.extend([lit("--threads"), lit(&n.to_string())]);
        }
        if command.takes_selection() {
            if let Some(name) = selector {
                args.extend([lit("--selector"), lit(name)]);
            }
            for (flag, list) in [("--select", select), ("--exclude", exclude)] {
                if !list.is_empty() {
                    args.push(lit(flag));
                    args.extend(list.iter().map(|s| lit(s)));
                }
            }
        }
        let uses_state = select.iter().chain(exclude).any(|s| uses_state(s));
        if uses_state && command.takes_selection() {
            args.extend([lit("--state"), DbtArg::StateDir]);
            if self.stage.defer {
                args.push(lit("--defer"));
            }
        }
        if !self.stage.vars.is_empty() && command != DbtCommand::Deps {
            let vars: BTreeMap<&str, &serde_json::Value> =
                self.stage.vars.iter().map(|(k, v)| (k.as_str(), v)).collect();
            args.extend([lit("--vars"), DbtArg::Vars(serde_json::to_string(&vars).unwrap_or_default())]);
        }
        if self.stage.full_refresh && command.takes_full_refresh() {
            args.push(lit("--full-refresh"));
        }
        DbtInvocation {
            command,
            executable: self.project.executable.clone(),
            args,
            deps_first: false,
            tolerate_failure: false,
            save_artifacts: self.project.artifacts.is_some() && command != DbtCommand::Deps,
            watch: None,
        }
    }
}

/// Whether a selector reads the previous run's state (`state:modified+`, `result:error`).
fn uses_state(selector: &str) -> bool {
    selector.split([' ', ',']).any(|part| {
        let part = part.trim_start_matches(['+', '@']);
        part.starts_with("state:") || part.starts_with("result:") || part.starts_with("source_status:")
    })
}

/// An Airflow-safe name part: dbt names may hold characters a task or group id may not.
fn id_part(name: &str) -> String {
    let cleaned: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' }).collect();
    if cleaned.is_empty() { "_".to_owned() } else { cleaned }
}

fn full_id(group: &[String], local: &str) -> String {
    let mut id = group.join(".");
    if !id.is_empty() {
        id.push('.');
    }
    id.push_str(local);
    id
}

/// Two groups whose tasks wait for each other through their layer test tasks, if any: the
/// tasks would form a cycle.
fn group_cycle(planned: &[Planned]) -> Option<(String, String)> {
    let index: HashMap<&str, usize> = planned.iter().enumerate().map(|(i, t)| (t.id.as_str(), i)).collect();
    let mut graph = petgraph::graph::DiGraph::<usize, ()>::new();
    let nodes: Vec<_> = (0..planned.len()).map(|i| graph.add_node(i)).collect();
    for (i, t) in planned.iter().enumerate() {
        for u in &t.upstream {
            if let Some(&j) = index.get(u.as_str()) {
                graph.add_edge(nodes[j], nodes[i], ());
            }
        }
    }
    let cycle = petgraph::algo::kosaraju_scc(&graph).into_iter().find(|c| c.len() > 1)?;
    let mut groups: BTreeSet<String> = cycle.iter().map(|n| planned[graph[*n]].group.join(".")).collect();
    let a = groups.pop_first().unwrap_or_default();
    let b = groups.pop_first().unwrap_or_else(|| a.clone());
    Some((a, b))
}

/// One task of an expanded stage, before it becomes a [`Task`].
struct Planned {
    id: String,
    group: Vec<String>,
    operation: Operation,
    upstream: BTreeSet<String>,
    trigger_rule: TriggerRule,
    /// Retries do not apply (a join).
    no_retries: bool,
}

impl Planned {
    fn new(group: Vec<String>, local: &str, operation: Operation) -> Planned {
        Planned {
            id: full_id(&group, local),
            group,
            operation,
            upstream: BTreeSet::new(),
            trigger_rule: TriggerRule::AllSuccess,
            no_retries: false,
        }
    }
}

impl Lowering<'_> {
    /// The mode a dbt stage runs in, checking that the mode-only fields fit it.
    pub(super) fn dbt_mode(
        &mut self,
        pointer: &str,
        dbt: &DbtStage,
        settings: &Settings,
        stage_sets_mode: bool,
    ) -> Option<DbtMode> {
        let expandable = matches!(dbt.command, DbtCommand::Build | DbtCommand::Run);
        let mode = settings.dbt_mode.value.filter(|_| expandable);
        if stage_sets_mode && !expandable {
            self.error(
                Diagnostic::error(
                    "mode-needs-build",
                    format!("`dbt_mode` applies to `build` and `run`, not `dbt {}`", dbt.command.words().join(" ")),
                )
                .at(self.doc.key_span(&format!("{pointer}/dbt_mode")), "")
                .help("remove `dbt_mode`, or make the stage `command: build`"),
            );
        }
        let misplaced: &[(&str, bool, DbtMode)] = &[
            ("tests", dbt.tests.is_some(), DbtMode::PerModel),
            ("group_by", dbt.group_by.is_some(), DbtMode::PerModel),
            ("layers", !dbt.layers.is_empty(), DbtMode::Layered),
            ("gates", dbt.gates, DbtMode::Layered),
        ];
        for &(field, set, wanted) in misplaced {
            if set && mode != Some(wanted) {
                self.error(
                    Diagnostic::warning(
                        "unused-dbt-setting",
                        format!("`{field}` applies only to `dbt_mode: {}`", wanted.as_str()),
                    )
                    .at(self.doc.key_span(&format!("{pointer}/{field}")), "has no effect here"),
                );
            }
        }
        if dbt.freshness.is_some() && !expandable {
            self.error(
                Diagnostic::error("freshness-needs-build", "`freshness` runs before a `build` or `run` stage")
                    .at(self.doc.key_span(&format!("{pointer}/freshness")), ""),
            );
        }
        mode
    }

    /// Errors for an operator whose settings are missing.
    pub(super) fn check_operator(&mut self, settings: &Settings, pipeline_id: &PipelineId, stage_id: &StageId) {
        let Some(project) = &self.spec.dbt else { return };
        let operator = settings.operator.value;
        let (configured, section) = match operator {
            OperatorKind::Bash => return,
            OperatorKind::Docker => (project.docker.is_some(), "docker"),
            OperatorKind::Kubernetes => (project.kubernetes.is_some(), "kubernetes"),
        };
        let pointer = super::setting_pointer(settings.operator.origin, pipeline_id, Some(stage_id), "operator");
        if !configured {
            self.error(
                Diagnostic::error(
                    "operator-unconfigured",
                    format!("`operator: {}` needs `dbt.{section}`", operator.as_str()),
                )
                .at(self.doc.span(&pointer), "")
                .help(format!("add `dbt.{section}: {{image: ...}}`")),
            );
        }
        if project.deploy.is_none() {
            self.error(
                Diagnostic::error(
                    "operator-needs-deploy",
                    format!(
                        "`operator: {}` runs dbt in a container, which cannot see this repository's paths",
                        operator.as_str()
                    ),
                )
                .at(self.doc.span(&pointer), "")
                .help(
                    "set `dbt.deploy.project_dir` (and `profiles_dir`) to where the image or a mount holds the project",
                ),
            );
        }
    }

    /// Errors for `state:` selectors that cannot work: no artifacts to compare with.
    pub(super) fn check_state_selection(&mut self, pointer: &str, dbt: &DbtStage) {
        let has_store = self.spec.dbt.as_ref().is_some_and(|d| d.artifacts.is_some());
        for (field, list) in [("select", &dbt.select), ("exclude", &dbt.exclude)] {
            for (k, selector) in list.iter().enumerate() {
                if uses_state(selector.as_str()) && !has_store {
                    self.error(
                        Diagnostic::error(
                            "state-without-artifacts",
                            format!("`{selector}` compares with the previous run, but no artifacts are kept"),
                        )
                        .at(self.doc.span(&format!("{pointer}/{field}/{k}")), "")
                        .help("set `dbt.artifacts` to a `path` or an `s3` prefix; each dbt task saves its artifacts there"),
                    );
                }
            }
        }
        // A selector of selectors.yml may read the state; `cli_selection` decides for those.
        let all: Vec<&DbtSelector> = dbt.select.iter().chain(&dbt.exclude).collect();
        if dbt.defer && !all.iter().any(|s| uses_state(s.as_str())) && !super::dbt_selection::names_selector(&all) {
            self.error(
                Diagnostic::warning("defer-without-state", "`defer` has no effect without a `state:` selector")
                    .at(self.doc.key_span(&format!("{pointer}/defer")), ""),
            );
        }
    }

    /// The manifest of the spec's dbt project, read (or parsed) once per spec.
    fn manifest(&mut self, pointer: &str) -> Option<Arc<Manifest>> {
        if let Some(cached) = &self.manifest {
            return cached.clone();
        }
        let loaded = self.load_manifest(pointer);
        self.manifest = Some(loaded.clone());
        loaded
    }

    /// Whether `dbt deps` has anything to install: false only for a project folder that is here
    /// and declares no packages (dbt reads `packages.yml` or, since 1.6, `dependencies.yml`), so
    /// a project without packages starts no dbt process for nothing, as Cosmos skips it too.
    fn project_may_have_packages(&self) -> bool {
        let Some(project) = self.spec.dbt.as_ref() else { return true };
        let dir = self.spec_dir().join(&project.project_dir.0);
        !dir.join("dbt_project.yml").is_file()
            || ["packages.yml", "dependencies.yml"].iter().any(|f| dir.join(f).exists())
    }

    fn spec_dir(&self) -> PathBuf {
        Path::new(&self.doc.source.name).parent().map(Path::to_owned).unwrap_or_default()
    }

    fn load_manifest(&mut self, pointer: &str) -> Option<Arc<Manifest>> {
        let project = self.spec.dbt.as_ref()?;
        let base = self.spec_dir();
        let path = match &project.manifest {
            Some(path) => base.join(&path.0),
            None if project.parse_manifest => base.join(&project.project_dir.0).join("target").join("manifest.json"),
            None => {
                self.error(
                    Diagnostic::error("no-manifest", "`dbt_mode: per_model` needs dbt's manifest")
                        .at(self.doc.span(pointer), "")
                        .help("set `dbt.manifest: path/to/target/manifest.json`, or `dbt.parse_manifest: true` to run `dbt parse` when compiling"),
                );
                return None;
            }
        };
        let at = if project.manifest.is_some() { "/dbt/manifest" } else { "/dbt/parse_manifest" };
        if project.parse_manifest {
            let profiles = project.profiles_dir.as_ref().unwrap_or(&project.project_dir);
            let parse = ParseCommand {
                program: project.executable.clone(),
                project_dir: base.join(&project.project_dir.0),
                profiles_dir: base.join(&profiles.0),
                target: project.target.as_ref().map(ToString::to_string),
            };
            if let Err(e) = parse.run() {
                self.error(
                    Diagnostic::error("dbt-parse-failed", e.to_string())
                        .at(self.doc.span("/dbt/parse_manifest"), "")
                        .help("fix the dbt project, or point `dbt.manifest` at a manifest built elsewhere"),
                );
                return None;
            }
        }
        match read_manifest(&path, &project.version) {
            Ok(manifest) => Some(Arc::new(manifest)),
            Err(e @ LoadError::Manifest(ManifestError::VersionMismatch { .. })) => {
                let d = Diagnostic::error("dbt-version-mismatch", e.to_string());
                let d = if self.doc.value.pointer("/dbt/version").is_some() {
                    d.at(self.doc.span("/dbt/version"), "the dbt-core versions of this project")
                        .also(self.doc.span(at), "the manifest")
                } else {
                    d.at(self.doc.span(at), "without `dbt.version`, fhirflow reads dbt-core 1.8 and later")
                };
                self.error(d.help(
                    "set `dbt.version` to the dbt-core that runs this project, or rewrite the manifest with `dbt parse` from a dbt-core it admits",
                ));
                None
            }
            Err(e) => {
                self.error(
                    Diagnostic::error("bad-manifest", e.to_string())
                        .at(self.doc.span(at), "")
                        .help("write it with `dbt parse` from a dbt-core that `dbt.version` admits"),
                );
                None
            }
        }
    }

    /// Checks that a layer whose properties are the project's carries nothing fhirflow would
    /// have to write into properties YAML: no `tags`, and models by name only.
    pub(super) fn check_project_properties(&mut self) {
        let spec = self.spec;
        for (layer, definition) in &spec.layers {
            if definition.properties != LayerProperties::Project {
                continue;
            }
            let pointer = format!("/layers/{}", crate::parse::escape_pointer(layer.as_str()));
            if definition.tags.is_some() {
                self.error(
                    Diagnostic::error(
                        "project-properties",
                        format!("layer `{layer}` has `properties: project`, so fhirflow writes no tags for it"),
                    )
                    .at(self.doc.key_span(&format!("{pointer}/tags")), "")
                    .help("drop `tags` (the layer is selected by its folder), or set the tags in the project's own properties files"),
                );
            }
            for (k, model) in definition.models.iter().enumerate() {
                let ModelEntry::Detailed(m) = model else { continue };
                if m.description.is_none() && m.tags.is_empty() && m.columns.is_empty() {
                    continue;
                }
                self.error(
                    Diagnostic::error(
                        "project-properties",
                        format!(
                            "layer `{layer}` has `properties: project`, so fhirflow writes no description, tags or columns for model `{}`",
                            m.name
                        ),
                    )
                    .at(self.doc.span(&format!("{pointer}/models/{k}")), "")
                    .help("document the model in the dbt project's own properties file, and list it here by name"),
                );
            }
        }
    }

    /// Checks the spec's layers against the manifest: a model dbt does not have is an error,
    /// a dbt model in no layer a warning.
    pub(super) fn check_layers(&mut self) {
        let Some(project) = &self.spec.dbt else { return };
        if (project.manifest.is_none() && !project.parse_manifest) || self.spec.layers.is_empty() {
            return;
        }
        let Some(manifest) = self.manifest("/dbt") else { return };
        let root = manifest.project_name.clone();
        let models: BTreeMap<&str, &str> = manifest
            .nodes()
            .filter(|n| n.resource_type == ResourceType::Model && root.as_deref().is_none_or(|r| n.package_name == r))
            .map(|n| (n.name.as_str(), n.original_file_path.as_str()))
            .collect();
        let mut covered = BTreeSet::new();
        let spec = self.spec;
        for (layer, definition) in &spec.layers {
            for (k, model) in definition.models.iter().enumerate() {
                let name = model.name().as_str();
                covered.insert(name);
                if !models.contains_key(name) {
                    let pointer = format!("/layers/{}/models/{k}", crate::parse::escape_pointer(layer.as_str()));
                    let pointer = if self.doc.span(&format!("{pointer}/name")).is_some() {
                        format!("{pointer}/name")
                    } else {
                        pointer
                    };
                    let mut d = Diagnostic::error(
                        "unknown-model",
                        format!("layer `{layer}` names model `{name}`, which dbt's manifest does not have"),
                    )
                    .at(self.doc.span(&pointer), "not in the manifest");
                    if let Some(guess) = crate::diagnostic::did_you_mean(name, models.keys().copied()) {
                        d = d.help(format!("did you mean `{guess}`?"));
                    }
                    self.error(d);
                }
            }
        }
        let uncovered: Vec<String> =
            models.iter().filter(|(m, _)| !covered.contains(*m)).map(|(m, path)| format!("{m} ({path})")).collect();
        if !uncovered.is_empty() {
            let shown: Vec<&str> = uncovered.iter().take(10).map(String::as_str).collect();
            let more = if uncovered.len() > 10 { format!(" and {} more", uncovered.len() - 10) } else { String::new() };
            self.error(
                Diagnostic::warning(
                    "uncovered-model",
                    format!("{} dbt model(s) are in no layer: {}{more}", uncovered.len(), shown.join(", ")),
                )
                .at(self.doc.key_span("/layers"), "")
                .help("add them to a layer, so that tag selection and layered runs include them"),
            );
        }
    }

    /// Expands a dbt stage in `mode` into its tasks.
    pub(super) fn dbt_mode_stage(
        &mut self,
        pipeline_id: &PipelineId,
        stage_id: &StageId,
        index: usize,
        dbt: &DbtStage,
        settings: Settings,
        mode: DbtMode,
    ) -> Option<LoweredStage> {
        let pointer = stage_pointer(pipeline_id, stage_id);
        let spec = self.spec;
        let project = spec.dbt.as_ref()?;
        self.check_state_selection(&pointer, dbt);
        if dbt.watcher && mode != DbtMode::PerModel {
            self.watcher_needs_per_model(&pointer);
        }
        let line = DbtLine { project, stage: dbt };
        let stage_select: Vec<&DbtSelector> = dbt.select.iter().collect();
        let stage_exclude: Vec<&DbtSelector> = dbt.exclude.iter().collect();
        let selection = self.cli_selection(&pointer, &stage_select, &stage_exclude)?;
        // A container starts without the packages `dbt deps` installs, so each task installs
        // them; on shared workers one deps task serves all.
        let in_container = settings.operator.value != OperatorKind::Bash;
        let mut planned: Vec<Planned> = Vec::new();
        let mut head: Option<String> = None;
        let chain = |planned: &mut Vec<Planned>, mut task: Planned, head: &mut Option<String>| {
            if let Some(h) = head.as_ref() {
                task.upstream.insert(h.clone());
            }
            *head = Some(task.id.clone());
            planned.push(task);
        };
        let deps_first = |mut inv: DbtInvocation| {
            inv.deps_first = in_container;
            inv
        };
        if mode != DbtMode::Single && !in_container && self.project_may_have_packages() {
            let inv = line.invocation(DbtCommand::Deps, &[], &[], false);
            chain(&mut planned, Planned::new(Vec::new(), &format!("{stage_id}_deps"), Operation::Dbt(inv)), &mut head);
        }
        if let Some(policy) = dbt.freshness {
            let mut inv = deps_first(line.invocation(DbtCommand::SourceFreshness, &[], &[], false));
            inv.tolerate_failure = policy == FreshnessPolicy::Warn;
            let id = format!("{stage_id}_source_freshness");
            chain(&mut planned, Planned::new(Vec::new(), &id, Operation::Dbt(inv)), &mut head);
        }
        match mode {
            DbtMode::Single => {
                let mut inv = line.invocation_for(dbt.command, &selection, true);
                inv.deps_first = true;
                chain(&mut planned, Planned::new(Vec::new(), stage_id.as_str(), Operation::Dbt(inv)), &mut head);
            }
            DbtMode::Layered => {
                let layers = exclusive_layers(self.layer_steps(&pointer, dbt, &selection)?);
                if layers.is_empty() {
                    self.error(
                        Diagnostic::error("no-layers", "`dbt_mode: layered` needs layers")
                            .at(self.doc.key_span(&pointer), "")
                            .help("define top-level `layers`, or list `layers: [{name, select}]` on the stage"),
                    );
                    return None;
                }
                if dbt.gates && dbt.command == DbtCommand::Build {
                    self.error(
                        Diagnostic::warning(
                            "gates-with-build",
                            "`dbt build` already tests each layer; `gates` adds nothing",
                        )
                        .at(self.doc.key_span(&format!("{pointer}/gates")), "")
                        .help("use gates with `command: run`"),
                    );
                }
                for (name, layer_selection) in layers {
                    let inv = deps_first(line.invocation_for(dbt.command, &layer_selection, true));
                    let id = format!("{stage_id}_{name}");
                    chain(&mut planned, Planned::new(Vec::new(), &id, Operation::Dbt(inv)), &mut head);
                    if dbt.gates && dbt.command == DbtCommand::Run {
                        let inv = deps_first(line.invocation_for(DbtCommand::Test, &layer_selection, true));
                        let id = format!("{stage_id}_{name}_gate");
                        chain(&mut planned, Planned::new(Vec::new(), &id, Operation::Dbt(inv)), &mut head);
                    }
                }
            }
            DbtMode::PerModel => {
                if let Some(k) = dbt.select.iter().chain(&dbt.exclude).position(|s| uses_state(s.as_str())) {
                    let field = if k < dbt.select.len() {
                        format!("select/{k}")
                    } else {
                        format!("exclude/{}", k - dbt.select.len())
                    };
                    self.error(
                        Diagnostic::error(
                            "state-per-model",
                            "`state:` selection is decided when dbt runs, not when fhirflow compiles",
                        )
                        .at(self.doc.span(&format!("{pointer}/{field}")), "")
                        .help("use `state:` selectors with `dbt_mode: single` or `layered`"),
                    );
                    return None;
                }
                let manifest = self.manifest(&format!("{pointer}/dbt_mode"))?;
                let nodes = self.per_model_tasks(stage_id, &pointer, dbt, &line, &manifest, in_container)?;
                for mut task in nodes {
                    if task.upstream.is_empty()
                        && let Some(h) = &head
                    {
                        task.upstream.insert(h.clone());
                    }
                    planned.push(task);
                }
            }
        }
        Some(self.finish_stage(stage_id, index, planned, settings))
    }
}

/// dbt's global flag (before the command, where dbt 1.7 takes it) that turns a selector matching
/// no node, or a selection of nothing, into an error. dbt 1.10 renamed the list `include` to
/// `error` and warns about the old name; 1.7 reads only `include`.
fn strict_selection(manifest: &Manifest) -> [DbtArg; 2] {
    let renamed =
        manifest.dbt_version.as_deref().and_then(Release::parse_lenient).is_none_or(|r| (r.major, r.minor) >= (1, 10));
    let key = if renamed { "error" } else { "include" };
    [
        DbtArg::Literal("--warn-error-options".to_owned()),
        DbtArg::Literal(format!("{{\"{key}\": [\"NoNodesForSelectionCriteria\", \"NothingToDo\"]}}")),
    ]
}

/// The layers' selections made exclusive, so that each test runs once, with the layer that
/// builds the last of its parents, as in one `dbt build`: dbt's default (eager) indirect
/// selection adds every test touching a layer, and excluding the later layers' nodes takes out,
/// with them, the tests that touch a later layer (exclusion is eager too). The first layer also
/// selects the sources, so that their tests run (a plain `dbt build` runs them). A layer given
/// as `--selector NAME` is left as dbt defines it.
fn exclusive_layers(steps: Vec<(String, CliSelection)>) -> Vec<(String, CliSelection)> {
    // A later layer's own nodes, not what a graph operator adds to them: `+tag:marts` would
    // take this layer's models out too.
    let own: Vec<Vec<String>> = steps
        .iter()
        .map(|(_, selection)| match selection {
            CliSelection::Args(line) => line.select.iter().map(|s| without_graph_operators(s)).collect(),
            CliSelection::Selector(..) => Vec::new(),
        })
        .collect();
    steps
        .into_iter()
        .enumerate()
        .map(|(k, (name, selection))| match selection {
            CliSelection::Args(mut line) => {
                if k == 0 && !line.select.is_empty() {
                    line.select.push("source:*".to_owned());
                }
                for later in own[k + 1..].iter().flatten() {
                    if !line.exclude.contains(later) {
                        line.exclude.push(later.clone());
                    }
                }
                (name, CliSelection::Args(line))
            }
            other => (name, other),
        })
        .collect()
}

/// A dbt selector without its graph operators (`+x`, `2+x`, `x+`, `x+3`, `@x`), in each
/// part of an intersection.
fn without_graph_operators(selector: &str) -> String {
    let part = |p: &str| -> String {
        let mut s = p.strip_prefix('@').unwrap_or(p);
        if let Some(i) = s.find('+')
            && s[..i].bytes().all(|b| b.is_ascii_digit())
        {
            s = &s[i + 1..];
        }
        if let Some(i) = s.rfind('+')
            && s[i + 1..].bytes().all(|b| b.is_ascii_digit())
        {
            s = &s[..i];
        }
        s.to_owned()
    };
    selector.split(',').map(part).collect::<Vec<_>>().join(",")
}

impl Lowering<'_> {
    /// The layers of a `layered` stage: its own list (each with the stage's `exclude`), or the
    /// spec's layers by tag, narrowed by the stage's selection.
    fn layer_steps(
        &mut self,
        pointer: &str,
        dbt: &DbtStage,
        stage: &CliSelection,
    ) -> Option<Vec<(String, CliSelection)>> {
        if !dbt.layers.is_empty() {
            let exclude: Vec<&DbtSelector> = dbt.exclude.iter().collect();
            let mut steps = Vec::new();
            for (k, layer) in dbt.layers.iter().enumerate() {
                let select: Vec<&DbtSelector> = layer.select.iter().collect();
                let selection = self.cli_selection(&format!("{pointer}/layers/{k}"), &select, &exclude)?;
                steps.push((layer.name.to_string(), selection));
            }
            return Some(steps);
        }
        // No default selector applies here: the spec has layers, so the selectors.yml dbt
        // reads is fhirflow's, which has none.
        let narrowing = match stage {
            CliSelection::Args(line) => line.clone(),
            CliSelection::Selector(name, _) => {
                let selectors = self.selectors()?;
                self.layer_narrowing(&format!("{pointer}/select/0"), &selectors, name)?
            }
        };
        Some(
            self.spec
                .layers
                .iter()
                .map(|(name, layer)| {
                    // By tag, or by folder for a layer whose properties are the project's.
                    let base = layer.selector(name.as_str());
                    // The stage's own selection narrows every layer: `tag:staging,<select>`.
                    let select = if narrowing.select.is_empty() {
                        vec![base]
                    } else {
                        narrowing.select.iter().map(|s| format!("{base},{s}")).collect()
                    };
                    let line = CommandLine { select, exclude: narrowing.exclude.clone() };
                    (name.to_string(), CliSelection::Args(line))
                })
                .collect(),
        )
    }

    /// The command-line form of selector `name`, which narrows each layer.
    fn layer_narrowing(&mut self, at: &str, selectors: &Selectors, name: &str) -> Option<CommandLine> {
        let line = selectors.get(name).and_then(|s| s.command_line());
        if line.is_none() {
            self.not_expressible(
                at,
                &format!("selector:{name}"),
                "it has no `--select`/`--exclude` form to narrow each layer with; list `layers: [{name, select}]` on the stage",
            );
        }
        line
    }

    /// One task per selected dbt node, with dbt's edges and the stage's test placement.
    /// `watcher` on a stage that is not `per_model`.
    pub(super) fn watcher_needs_per_model(&mut self, pointer: &str) {
        self.error(
            Diagnostic::error(
                "watcher-needs-per-model",
                "`watcher` watches the tasks of a `dbt_mode: per_model` stage",
            )
            .at(self.doc.span(&format!("{pointer}/watcher")), "")
            .help("set `dbt_mode: per_model` on the stage, or remove `watcher`"),
        );
    }

    fn per_model_tasks(
        &mut self,
        stage_id: &StageId,
        pointer: &str,
        dbt: &DbtStage,
        line: &DbtLine,
        manifest: &Manifest,
        in_container: bool,
    ) -> Option<Vec<Planned>> {
        let select: Vec<&str> = dbt.select.iter().map(DbtSelector::as_str).collect();
        let exclude: Vec<&str> = dbt.exclude.iter().map(DbtSelector::as_str).collect();
        // The project's selectors: `selector:NAME`, and the default a plain `dbt build` uses.
        let selectors = self.selectors()?;
        let selected = match manifest.select_in(&select, &exclude, IndirectSelection::Eager, &selectors) {
            Ok(s) => s,
            Err(e) => {
                let at = if dbt.select.is_empty() { format!("{pointer}/exclude") } else { format!("{pointer}/select") };
                self.error(Diagnostic::error("bad-selector", e.to_string()).at(self.doc.span(&at), ""));
                return None;
            }
        };
        let placement = dbt.tests.unwrap_or(if dbt.command == DbtCommand::Build {
            TestPlacement::AfterEach
        } else {
            TestPlacement::None
        });
        if dbt.watcher && placement == TestPlacement::AfterLayer {
            self.error(
                Diagnostic::error(
                    "watcher-after-layer",
                    "one watched `dbt build` runs each model's tests right after it, not after its layer",
                )
                .at(self.doc.span(&format!("{pointer}/watcher")), "")
                .help("use `tests: after_each` or `tests: build` with `watcher`"),
            );
            return None;
        }
        let runnable: BTreeSet<String> = selected
            .iter()
            .filter(|id| manifest.get(id).is_some_and(|n| n.is_task() && n.resource_type != ResourceType::Test))
            .cloned()
            .collect();
        if runnable.is_empty() {
            self.error(
                Diagnostic::error("empty-selection", "the stage selects no dbt model, seed or snapshot")
                    .at(self.doc.key_span(pointer), "")
                    .help("check `select`/`exclude` against `dbt ls`"),
            );
            return None;
        }
        let tests: Vec<&str> = selected
            .iter()
            .filter(|id| manifest.get(id).is_some_and(|n| n.resource_type == ResourceType::Test))
            .map(String::as_str)
            .collect();
        let group_by = dbt.group_by.unwrap_or(GroupBy::Layer);
        let spec = self.spec;
        let layer_of: HashMap<&str, &str> = spec
            .layers
            .iter()
            .flat_map(|(layer, def)| def.models.iter().map(move |m| (m.name().as_str(), layer.as_str())))
            .collect();
        let mut name_count: HashMap<&str, usize> = HashMap::new();
        for n in manifest.nodes().filter(|n| n.resource_type != ResourceType::Test) {
            *name_count.entry(n.name.as_str()).or_default() += 1;
        }
        // The group path of each node, and how dbt is told to select exactly it.
        let group_of = |id: &str| -> Vec<String> {
            let Some(n) = manifest.get(id) else { return Vec::new() };
            let dirs: Vec<String> =
                n.fqn.iter().skip(1).take(n.fqn.len().saturating_sub(2)).map(|d| id_part(d)).collect();
            let kind_root = match n.resource_type {
                ResourceType::Seed => Some("seeds"),
                ResourceType::Snapshot => Some("snapshots"),
                _ => None,
            };
            match group_by {
                GroupBy::None => Vec::new(),
                GroupBy::Folder => kind_root.map(str::to_owned).into_iter().chain(dirs).collect(),
                GroupBy::Layer => {
                    if let Some(root) = kind_root {
                        return vec![root.to_owned()];
                    }
                    if let Some(layer) = layer_of.get(n.name.as_str()) {
                        return vec![id_part(layer)];
                    }
                    let by_tag = spec.layers.iter().find(|(name, def)| {
                        let tags: Vec<&str> = match &def.tags {
                            Some(t) => t.iter().map(|t| t.as_str()).collect(),
                            None => vec![name.as_str()],
                        };
                        n.tags.iter().any(|t| tags.contains(&t.as_str()))
                    });
                    match (by_tag, dirs.first()) {
                        (Some((name, _)), _) => vec![id_part(name.as_str())],
                        (None, Some(dir)) => vec![dir.clone()],
                        (None, None) => vec!["models".to_owned()],
                    }
                }
            }
        };
        let selector_of = |id: &str| -> String {
            let Some(n) = manifest.get(id) else { return id.to_owned() };
            if name_count.get(n.name.as_str()).copied().unwrap_or(0) <= 1 && n.version.is_none() {
                n.name.clone()
            } else {
                format!("path:{}", n.original_file_path)
            }
        };
        let mut planned: Vec<Planned> = Vec::new();
        let mut task_of: HashMap<String, String> = HashMap::new();
        // Under a watcher, the dbt nodes (unique id, selector) each task stands for.
        let mut watched: HashMap<String, Vec<(String, String)>> = HashMap::new();
        for id in &runnable {
            let Some(n) = manifest.get(id) else { continue };
            let selector = selector_of(id);
            if DbtSelector::new(selector.clone()).is_err() {
                self.error(
                    Diagnostic::error(
                        "unselectable-node",
                        format!("dbt node `{id}` cannot be selected safely on a command line ({selector:?})"),
                    )
                    .at(self.doc.key_span(pointer), "")
                    .help("rename the model or its file to letters, digits, `_`, `-` and `.`"),
                );
                return None;
            }
            let (command, suffix) = match (placement, n.resource_type) {
                (TestPlacement::Build, _) => (DbtCommand::Build, "build"),
                (_, ResourceType::Seed) => (DbtCommand::Seed, "seed"),
                (_, ResourceType::Snapshot) => (DbtCommand::Snapshot, "snapshot"),
                _ => (DbtCommand::Run, "run"),
            };
            let mut inv = line.invocation(command, &[selector.as_str()], &[], false);
            if placement == TestPlacement::Build {
                // Tests whose other parents are upstream run with the later parent.
                inv.args.extend(["--indirect-selection", "buildable"].map(|w| DbtArg::Literal(w.to_owned())));
            }
            inv.deps_first = in_container;
            let task = Planned::new(group_of(id), &format!("{}_{suffix}", id_part(&n.name)), Operation::Dbt(inv));
            watched.entry(task.id.clone()).or_default().push((id.clone(), selector.clone()));
            task_of.insert(id.clone(), task.id.clone());
            planned.push(task);
        }
        // Tests: each attaches to the parent whose other parents are all its ancestors, so
        // that when it runs every table it reads has been built.
        let mut attached: BTreeMap<String, Vec<&str>> = BTreeMap::new();
        let mut standalone: Vec<&str> = Vec::new();
        let attaches = matches!(placement, TestPlacement::AfterEach | TestPlacement::AfterLayer);
        // `tests: build` runs a model's tests in its own task (buildable), so a watched build
        // needs to know which those are.
        if attaches || (dbt.watcher && placement == TestPlacement::Build) {
            let mut ancestors: HashMap<String, BTreeSet<String>> = HashMap::new();
            for test in &tests {
                let Some(t) = manifest.get(test) else { continue };
                let parents: Vec<&String> = t.depends_on.iter().filter(|p| runnable.contains(*p)).collect();
                let home = parents.iter().find(|p| {
                    let above = ancestors.entry((**p).clone()).or_insert_with(|| manifest.ancestors(p));
                    parents.iter().all(|q| q == *p || above.contains(*q))
                });
                match home {
                    Some(p) => attached.entry((*p).clone()).or_default().push(test),
                    None if !parents.is_empty() && attaches => standalone.push(test),
                    None => {}
                }
            }
        }
        let test_selectors = |ids: &[&str]| -> Vec<String> {
            ids.iter()
                .filter_map(|id| manifest.get(id))
                .map(|t| t.name.clone())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect()
        };
        let test_nodes = |ids: &[&str]| -> Vec<(String, String)> {
            ids.iter().filter_map(|id| manifest.get(id).map(|t| ((*id).to_owned(), t.name.clone()))).collect()
        };
        if placement == TestPlacement::Build {
            for (model, ids) in &attached {
                if let Some(task) = task_of.get(model) {
                    watched.entry(task.clone()).or_default().extend(test_nodes(ids));
                }
            }
        }
        // Where a child of each node waits: the node's test task when its tests run after it.
        let mut gate_of: HashMap<String, String> = task_of.clone();
        if placement == TestPlacement::AfterEach {
            for (model, ids) in &attached {
                let Some(n) = manifest.get(model) else { continue };
                let names = test_selectors(ids);
                let sel: Vec<&str> = names.iter().map(String::as_str).collect();
                let mut inv = line.invocation(DbtCommand::Test, &sel, &[], false);
                inv.deps_first = in_container;
                let mut task =
                    Planned::new(group_of(model), &format!("{}_test", id_part(&n.name)), Operation::Dbt(inv));
                watched.entry(task.id.clone()).or_default().extend(test_nodes(ids));
                task.upstream.insert(task_of[model].clone());
                gate_of.insert(model.clone(), task.id.clone());
                planned.push(task);
            }
        }
        let edges = manifest.edges_within(&runnable);
        let index: HashMap<String, usize> = planned.iter().enumerate().map(|(i, t)| (t.id.clone(), i)).collect();
        let mut group_tests: BTreeMap<Vec<String>, Vec<&str>> = BTreeMap::new();
        if placement == TestPlacement::AfterLayer {
            for (model, ids) in &attached {
                group_tests.entry(group_of(model)).or_default().extend(ids.iter().copied());
            }
        }
        let layer_test_id = |group: &[String]| full_id(group, "tests");
        for (up, down) in &edges {
            let up_group = group_of(up);
            let waits_for = if placement == TestPlacement::AfterLayer
                && group_tests.contains_key(&up_group)
                && up_group != group_of(down)
            {
                layer_test_id(&up_group)
            } else {
                gate_of[up].clone()
            };
            if let Some(&i) = index.get(&task_of[down]) {
                planned[i].upstream.insert(waits_for);
            }
        }
        if placement == TestPlacement::AfterLayer {
            for (group, ids) in &group_tests {
                let names = test_selectors(ids);
                let sel: Vec<&str> = names.iter().map(String::as_str).collect();
                let mut inv = line.invocation(DbtCommand::Test, &sel, &[], false);
                inv.deps_first = in_container;
                let mut task = Planned::new(group.clone(), "tests", Operation::Dbt(inv));
                task.upstream = runnable.iter().filter(|m| &group_of(m) == group).map(|m| task_of[m].clone()).collect();
                planned.push(task);
            }
        }
        for test in standalone {
            let Some(t) = manifest.get(test) else { continue };
            let mut inv = line.invocation(DbtCommand::Test, &[t.name.as_str()], &[], false);
            inv.deps_first = in_container;
            let parents: BTreeSet<String> =
                t.depends_on.iter().filter(|p| runnable.contains(*p)).map(|p| task_of[p].clone()).collect();
            let mut task = Planned::new(Vec::new(), &format!("{}_test", id_part(&t.name)), Operation::Dbt(inv));
            watched.entry(task.id.clone()).or_default().extend(test_nodes(&[test]));
            task.upstream = parents;
            planned.push(task);
        }
        if placement == TestPlacement::AfterLayer
            && let Some((a, b)) = group_cycle(&planned)
        {
            self.error(
                Diagnostic::error(
                    "layers-feed-each-other",
                    format!("with `tests: after_layer`, groups `{a}` and `{b}` would wait for each other's tests"),
                )
                .at(self.doc.span(&format!("{pointer}/tests")), "")
                .help("a model of each feeds the other; use `tests: after_each`, or group so that layers run in one direction"),
            );
            return None;
        }
        // A node the project no longer has (a manifest older than the project) selects nothing,
        // and dbt would pass the task having run nothing: make dbt fail it instead.
        let strict = strict_selection(manifest);
        for task in &mut planned {
            if let Operation::Dbt(inv) = &mut task.operation {
                inv.args.splice(0..0, strict.iter().cloned());
            }
        }
        if dbt.watcher {
            if in_container {
                self.error(
                    Diagnostic::error(
                        "watcher-in-container",
                        "a watched stage's tasks read the events of one `dbt build` from a shared folder, which containers do not share",
                    )
                    .at(self.doc.span(&format!("{pointer}/watcher")), "")
                    .help("run the stage with `operator: bash`, or remove `watcher`"),
                );
                return None;
            }
            let build = Arc::new(line.invocation(DbtCommand::Build, &[], &[], true));
            let build_task = format!("{stage_id}_build");
            let mut all = Vec::new();
            for task in &mut planned {
                if let (Operation::Dbt(inv), Some(nodes)) = (&mut task.operation, watched.remove(&task.id)) {
                    all.extend(nodes.iter().cloned());
                    let build = Arc::clone(&build);
                    inv.watch = Some(WatchedNodes { build, nodes, build_task: build_task.clone(), is_build: false });
                }
            }
            // Airflow's producer: the same `dbt build` that `fhirflow run` starts itself.
            let mut inv = (*build).clone();
            inv.args.push(DbtArg::Literal("--select".to_owned()));
            inv.args.extend(all.iter().map(|(_, selector)| DbtArg::Literal(selector.clone())));
            inv.args.extend(["--indirect-selection", "empty"].map(|w| DbtArg::Literal(w.to_owned())));
            inv.watch = Some(WatchedNodes { build, nodes: all, build_task: build_task.clone(), is_build: true });
            let mut producer = Planned::new(Vec::new(), &build_task, Operation::Dbt(inv));
            // A build dbt could not run falls back to the tasks building their own nodes.
            producer.no_retries = true;
            planned.push(producer);
        }
        Some(planned)
    }

    /// Turns planned tasks into the stage: entry, exits, and a join when there are many exits.
    fn finish_stage(
        &mut self,
        stage_id: &StageId,
        index: usize,
        mut planned: Vec<Planned>,
        settings: Settings,
    ) -> LoweredStage {
        let has_child: BTreeSet<String> = planned.iter().flat_map(|t| t.upstream.iter().cloned()).collect();
        let entry: Vec<String> = planned.iter().filter(|t| t.upstream.is_empty()).map(|t| t.id.clone()).collect();
        let mut exit: Vec<String> =
            planned.iter().filter(|t| !has_child.contains(&t.id)).map(|t| t.id.clone()).collect();
        if exit.len() > 1 {
            let mut join = Planned::new(Vec::new(), &format!("{stage_id}_done"), Operation::Join);
            join.upstream = exit.iter().cloned().collect();
            join.no_retries = true;
            exit = vec![join.id.clone()];
            planned.push(join);
        }
        let completion = exit.first().cloned().unwrap_or_else(|| stage_id.to_string());
        let tasks = planned
            .into_iter()
            .map(|t| Task {
                id: t.id,
                group: t.group,
                stage: stage_id.clone(),
                operation: t.operation,
                upstream: t.upstream.into_iter().collect(),
                settings: if t.no_retries {
                    Settings { retries: Resolved { value: 0, origin: Origin::Builtin }, ..settings.clone() }
                } else {
                    settings.clone()
                },
                trigger_rule: t.trigger_rule,
                outlets: Vec::new(),
            })
            .collect();
        LoweredStage { stage: stage_id.clone(), index, tasks, entry, exit, completion }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Operation, PipelineGraph};
    use super::{exclusive_layers, without_graph_operators};
    use crate::dbt::CommandLine;
    use crate::graph::dbt_selection::CliSelection;
    use crate::source::SourceFile;
    use std::path::Path;

    /// The fixture project's layers, in the order its models depend on each other.
    const LAYERS: &str = "layers:\n  staging: {models: [stg_patients, stg_visits]}\n  intermediate: {models: [int_visit_counts]}\n  marts: {models: [dim_patients, fct_visits]}\n";

    /// Compiles `stage` (a flow mapping) as the only stage of pipeline `p`, against the
    /// fixture project's manifest; `extra` goes under `dbt:`.
    fn compile(stage: &str, extra: &str) -> Result<PipelineGraph, Vec<String>> {
        compile_with_layers(stage, &format!("{extra}{LAYERS}"))
    }

    /// Like [`compile`], with `layers` (and anything else under `dbt:` before them) as given.
    fn compile_with_layers(stage: &str, layers: &str) -> Result<PipelineGraph, Vec<String>> {
        let spec = format!(
            "version: 1\ndbt:\n  project_dir: fixtures/dbt_modes\n  manifest: fixtures/dbt_modes/manifest.json\n  deploy: {{project_dir: /opt/dbt}}\n{layers}pipelines:\n  p:\n    stages:\n      dbt: {stage}\n"
        );
        let name = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/spec.yaml");
        crate::compile(SourceFile::new(name, spec)).map(|c| c.graph).map_err(|ds| {
            ds.sorted()
                .iter()
                .filter(|d| d.severity == crate::diagnostic::Severity::Error)
                .map(|d| d.render())
                .collect()
        })
    }

    fn edges(g: &PipelineGraph) -> Vec<String> {
        let p = g.pipeline("p").unwrap();
        let mut out: Vec<String> =
            p.tasks.iter().flat_map(|t| t.upstream.iter().map(move |u| format!("{u} -> {}", t.id))).collect();
        out.sort();
        out
    }

    fn argv(g: &PipelineGraph, id: &str) -> String {
        let Operation::Dbt(inv) = &g.pipeline("p").unwrap().task(id).unwrap().operation else { panic!("{id}") };
        inv.args
            .iter()
            .filter_map(|a| match a {
                super::DbtArg::Literal(s) | super::DbtArg::Vars(s) => Some(s.as_str()),
                _ => None,
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn single_is_one_task_with_deps_first() {
        let g = compile("{kind: dbt, command: build, dbt_mode: single}", "").unwrap();
        let p = g.pipeline("p").unwrap();
        assert_eq!(p.tasks.len(), 1);
        let Operation::Dbt(inv) = &p.tasks[0].operation else { panic!() };
        assert!(inv.deps_first);
        assert_eq!(argv(&g, "dbt"), "build --project-dir --profiles-dir");
    }

    #[test]
    fn layered_runs_the_spec_layers_in_order_with_gates() {
        let g = compile("{kind: dbt, command: run, dbt_mode: layered, gates: true}", "").unwrap();
        assert_eq!(
            edges(&g),
            [
                "dbt_intermediate -> dbt_intermediate_gate",
                "dbt_intermediate_gate -> dbt_marts",
                "dbt_marts -> dbt_marts_gate",
                "dbt_staging -> dbt_staging_gate",
                "dbt_staging_gate -> dbt_intermediate",
            ]
        );
        assert_eq!(argv(&g, "dbt_marts_gate"), "test --project-dir --profiles-dir --select tag:marts");
        assert_eq!(
            argv(&g, "dbt_staging_gate"),
            "test --project-dir --profiles-dir --select tag:staging source:* --exclude tag:intermediate tag:marts"
        );
        assert_eq!(
            argv(&g, "dbt_intermediate"),
            "run --project-dir --profiles-dir --select tag:intermediate --exclude tag:marts"
        );
    }

    #[test]
    fn a_layer_excludes_the_later_layers_nodes_without_their_graph_operators() {
        let args = |select: &[&str], exclude: &[&str]| {
            CliSelection::Args(CommandLine {
                select: select.iter().map(|s| (*s).to_owned()).collect(),
                exclude: exclude.iter().map(|s| (*s).to_owned()).collect(),
            })
        };
        let layers = exclusive_layers(vec![
            ("staging".into(), args(&["path:models/staging"], &["tag:slow"])),
            ("core".into(), args(&["+tag:core", "2+model2+3"], &["tag:slow"])),
            ("picked".into(), CliSelection::Selector("nightly".into(), false)),
            ("marts".into(), args(&["@tag:marts,tag:daily+"], &[])),
        ]);
        let parts: Vec<_> = layers.iter().map(|(_, s)| s.parts()).collect();
        assert_eq!(
            parts[0],
            (
                vec!["path:models/staging", "source:*"],
                vec!["tag:slow", "tag:core", "model2", "tag:marts,tag:daily"],
                None
            )
        );
        assert_eq!(parts[1], (vec!["+tag:core", "2+model2+3"], vec!["tag:slow", "tag:marts,tag:daily"], None));
        assert_eq!(parts[2], (vec![], vec![], Some("nightly")));
        assert_eq!(parts[3], (vec!["@tag:marts,tag:daily+"], vec![], None));
        assert_eq!(without_graph_operators("tag:v2"), "tag:v2");
        assert_eq!(without_graph_operators("+model2"), "model2");
    }

    #[test]
    fn a_layer_with_the_projects_properties_is_selected_by_its_folder() {
        let layers = "layers:\n  staging: {models: [stg_patients, stg_visits], properties: project, path: models/staging}\n  intermediate: {models: [int_visit_counts]}\n  marts: {models: [dim_patients, fct_visits], properties: project}\n";
        let g = compile_with_layers("{kind: dbt, command: run, dbt_mode: layered, gates: true}", layers).unwrap();
        assert_eq!(
            argv(&g, "dbt_staging"),
            "run --project-dir --profiles-dir --select path:models/staging source:* --exclude tag:intermediate path:models/marts"
        );
        assert_eq!(
            argv(&g, "dbt_intermediate"),
            "run --project-dir --profiles-dir --select tag:intermediate --exclude path:models/marts"
        );
        assert_eq!(argv(&g, "dbt_marts_gate"), "test --project-dir --profiles-dir --select path:models/marts");
    }

    #[test]
    fn a_layer_with_the_projects_properties_documents_nothing_itself() {
        let layers = "layers:\n  staging:\n    properties: project\n    tags: [s]\n    models: [stg_patients, stg_visits, {name: m_a}, {name: m_b, description: d}]\n  intermediate: {models: [int_visit_counts]}\n  marts: {models: [dim_patients, fct_visits]}\n";
        let errors = compile_with_layers("{kind: dbt, command: run}", layers).unwrap_err();
        let project: Vec<&String> = errors.iter().filter(|e| e.contains("project-properties")).collect();
        assert_eq!(project.len(), 2, "{errors:?}");
        assert!(project.iter().any(|e| e.contains("writes no tags")), "{errors:?}");
        assert!(project.iter().any(|e| e.contains("for model `m_b`") && e.contains("spec.yaml:")), "{errors:?}");
    }

    #[test]
    fn per_model_after_each_follows_dbt_edges_through_tests() {
        let g = compile("{kind: dbt, command: build, dbt_mode: per_model}", "").unwrap();
        let p = g.pipeline("p").unwrap();
        let ids: std::collections::BTreeSet<&str> = p.tasks.iter().map(|t| t.id.as_str()).collect();
        // The ephemeral model is no task; its parent feeds its child directly.
        assert!(!ids.iter().any(|id| id.contains("int_visit_counts")));
        assert_eq!(
            edges(&g),
            [
                "assert_visits_have_patients_test -> dbt_done",
                "marts.dim_patients_run -> assert_visits_have_patients_test",
                "marts.dim_patients_run -> marts.dim_patients_test",
                "marts.dim_patients_test -> dbt_done",
                "marts.fct_visits_run -> assert_visits_have_patients_test",
                "seeds.raw_patients_seed -> staging.stg_patients_run",
                "seeds.raw_visits_seed -> staging.stg_visits_run",
                "snapshots.patients_snapshot_snapshot -> dbt_done",
                "staging.stg_patients_run -> staging.stg_patients_test",
                "staging.stg_patients_test -> marts.dim_patients_run",
                "staging.stg_patients_test -> snapshots.patients_snapshot_snapshot",
                "staging.stg_visits_run -> staging.stg_visits_test",
                "staging.stg_visits_test -> marts.dim_patients_run",
                "staging.stg_visits_test -> marts.fct_visits_run",
            ]
        );
        // The singular test has two parents, neither upstream of the other: it runs on
        // its own once both are built.
        assert_eq!(
            argv(&g, "staging.stg_patients_run"),
            r#"--warn-error-options {"error": ["NoNodesForSelectionCriteria", "NothingToDo"]} run --project-dir --profiles-dir --select stg_patients"#,
            "a selector that matches nothing fails the task (the fixture's manifest is dbt 1.11's)"
        );
        assert_eq!(p.task("staging.stg_patients_run").unwrap().group, ["staging"]);
    }

    /// `dbt deps` runs once before a stage's tasks when the project declares packages, and not
    /// at all when its folder is here without `packages.yml` or `dependencies.yml`.
    #[test]
    fn the_deps_task_is_there_when_the_project_has_packages() {
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dbt_modes");
        for packages in [None, Some("packages.yml"), Some("dependencies.yml")] {
            let dir = tempfile::tempdir().unwrap();
            let project = dir.path().join("proj");
            std::fs::create_dir(&project).unwrap();
            for file in ["dbt_project.yml", "manifest.json"] {
                std::fs::copy(fixture.join(file), project.join(file)).unwrap();
            }
            if let Some(file) = packages {
                std::fs::write(project.join(file), "packages:\n  - package: dbt-labs/dbt_utils\n").unwrap();
            }
            let spec = "version: 1\ndbt: {project_dir: proj, manifest: proj/manifest.json}\npipelines:\n  p:\n    stages:\n      dbt: {kind: dbt, command: build, dbt_mode: per_model}\n";
            let name = dir.path().join("spec.yaml").to_string_lossy().into_owned();
            let g = crate::compile(SourceFile::new(&name, spec.to_owned())).map(|c| c.graph).unwrap();
            let deps = g.pipeline("p").unwrap().task("dbt_deps").is_some();
            assert_eq!(deps, packages.is_some(), "{packages:?}");
        }
    }

    #[test]
    fn per_model_selection_matches_dbt_and_build_placement_has_no_test_tasks() {
        let g = compile(
            "{kind: dbt, command: build, dbt_mode: per_model, tests: build, group_by: none, select: ['+fct_visits']}",
            "",
        )
        .unwrap();
        let p = g.pipeline("p").unwrap();
        let ids: Vec<&str> = p.tasks.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(ids, ["raw_visits_build", "stg_visits_build", "fct_visits_build"]);
        assert!(argv(&g, "fct_visits_build").ends_with("--select fct_visits --indirect-selection buildable"));
    }

    #[test]
    fn after_layer_rejects_groups_that_feed_each_other() {
        // Folders staging and marts feed each other once fct_visits sits in `staging`'s layer.
        let errors = compile("{kind: dbt, command: build, dbt_mode: per_model, tests: after_layer}", "");
        assert!(errors.is_ok(), "the fixture's layers run one way");
        let spec_layers =
            "layers:\n  staging: {models: [stg_patients, fct_visits]}\n  marts: {models: [dim_patients, stg_visits]}\n";
        let errors =
            compile_with_layers("{kind: dbt, command: build, dbt_mode: per_model, tests: after_layer}", spec_layers)
                .unwrap_err();
        assert!(errors.iter().any(|e| e.contains("would wait for each other's tests")), "{errors:?}");
    }

    #[test]
    fn containers_install_packages_in_every_task() {
        let g = compile(
            "{kind: dbt, command: build, dbt_mode: per_model, operator: docker}",
            "  docker: {image: 'example/dbt:1'}\n",
        );
        // `docker:` is under `dbt:` in `extra`; deploy is set, so this compiles.
        let g = g.unwrap();
        let p = g.pipeline("p").unwrap();
        assert!(p.task("dbt_deps").is_none());
        for t in &p.tasks {
            if let Operation::Dbt(inv) = &t.operation {
                assert!(inv.deps_first, "{}", t.id);
            }
        }
    }

    #[test]
    fn unknown_layer_model_is_an_error_and_state_needs_artifacts() {
        let errors =
            compile("{kind: dbt, command: build, dbt_mode: single, select: ['state:modified+']}", "").unwrap_err();
        assert!(errors.iter().any(|e| e.contains("no artifacts are kept")), "{errors:?}");
    }

    #[test]
    fn state_selection_reads_the_stored_state() {
        let g = compile(
            "{kind: dbt, command: build, dbt_mode: single, select: ['state:modified+'], defer: true}",
            "  artifacts: {path: /mnt/dbt-artifacts}\n",
        )
        .unwrap();
        let Operation::Dbt(inv) = &g.pipeline("p").unwrap().tasks[0].operation else { panic!() };
        assert!(inv.save_artifacts);
        assert!(inv.args.contains(&super::DbtArg::StateDir));
        assert!(argv(&g, "dbt").ends_with("--select state:modified+ --state --defer"));
    }
}
