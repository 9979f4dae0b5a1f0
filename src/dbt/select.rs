//! dbt's node selection (`--select` / `--exclude`), evaluated on a [`Manifest`] at compile time
//! with the same answers as dbt-core 1.11's `dbt ls`.
//!
//! A port of `dbt/graph/{cli,selector_spec,selector,selector_methods,graph}.py`:
//!
//! - each `--select` argument is split at spaces (union) and then at commas (intersection);
//!   each part is `[@][N+][method[.arg...]:]value[+N]`, the method defaulting to `path` when the
//!   value has a `/`, to `file` when it ends in `.sql`, `.py` or `.csv`, else to `fqn`;
//! - no `--select` means `fqn:* source:* exposure:* metric:* semantic_model:*` (everything);
//! - every selector part picks its nodes, adds its graph neighbours (`+`, `N+`, `@`), and then
//!   the tests next to them (indirect selection; dbt's default `eager` adds every test that
//!   depends on any selected node); only then are parts intersected, unioned and excluded. So
//!   `tag:staging,resource_type:model` also yields the tests of the staging models, and
//!   `--exclude x` also drops every test touching `x`;
//! - wildcards are Python's `fnmatch` (`*`, `?`, `[abc]`) in `tag:`, `fqn:`, `file:`,
//!   `package:`, `source:`, `group:`, `test_name:`, ..., and `pathlib` globs in `path:`; `config.`
//!   values and `resource_type:` match exactly.
//!
//! - `path:` globs under the root project: a node of an installed package (whose paths are
//!   relative to the package) matches only a file or folder the root project has too, as in
//!   dbt. What the root project has is read from its nodes' files and folders;
//! - a part `selector:NAME` is a selector of the project's `selectors.yml` ([`Selectors`]), and
//!   with no `--select` or `--exclude` the `default: true` selector is the selection.
//!
//! Methods that need the artifacts of an earlier run (`state:`, `result:`, `source_status:`) are
//! refused.

use super::manifest::{Manifest, Node, ResourceType, Section};
use super::pattern::{Fnmatch, PathGlob, components};
use super::selectors::Selectors;
use regex::Regex;
use serde_json::{Map, Value};
use std::collections::{BTreeSet, HashSet};
use std::sync::LazyLock;

/// Which tests a selection adds next to the nodes it picks (dbt's `--indirect-selection`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IndirectSelection {
    /// dbt's default: a test whose parents include any selected node.
    #[default]
    Eager,
    /// A test all of whose parents are selected.
    Cautious,
    /// A test whose parents are all selected or upstream of the selection.
    Buildable,
    /// No test unless selected itself.
    Empty,
}

/// Why a selection could not be evaluated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectError {
    /// The selector is malformed or has a value its method does not accept.
    #[error("invalid selector `{selector}`: {reason}")]
    Invalid {
        /// The selector part at fault, e.g. `@x+`.
        selector: String,
        /// What is wrong.
        reason: String,
    },
    /// The method is not one of dbt's.
    #[error("unknown selector method `{method}` in `{selector}`: dbt's methods are {}", METHODS.join(", "))]
    UnknownMethod {
        /// The selector part, e.g. `tags:staging`.
        selector: String,
        /// The method, e.g. `tags`.
        method: String,
    },
    /// `selector:NAME` names no selector of the project's `selectors.yml`.
    #[error("unknown selector `{name}`: selectors.yml defines {}", if known.is_empty() { "none" } else { known.as_str() })]
    UnknownSelector {
        /// The name.
        name: String,
        /// The selectors there are, comma-separated.
        known: String,
    },
    /// The method needs the artifacts of an earlier dbt run.
    #[error(
        "selector `{selector}`: the `{method}` method compares with an earlier dbt run's artifacts, \
         which fhirflow does not read when it compiles; select by tag, path, fqn or graph instead"
    )]
    NeedsState {
        /// The selector part.
        selector: String,
        /// `state`, `result` or `source_status`.
        method: String,
    },
}

/// dbt 1.11's selector methods (`MethodName`).
pub const METHODS: [&str; 21] = [
    "fqn",
    "tag",
    "group",
    "access",
    "source",
    "path",
    "file",
    "package",
    "config",
    "test_name",
    "test_type",
    "resource_type",
    "state",
    "exposure",
    "metric",
    "result",
    "source_status",
    "version",
    "semantic_model",
    "saved_query",
    "unit_test",
];

/// What dbt selects when there is no `--select`.
const DEFAULT_INCLUDES: [&str; 5] = ["fqn:*", "source:*", "exposure:*", "metric:*", "semantic_model:*"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Method {
    Fqn,
    Tag,
    Group,
    Access,
    Source,
    Path,
    File,
    Package,
    Config,
    TestName,
    TestType,
    ResourceType,
    State,
    Exposure,
    Metric,
    Result,
    SourceStatus,
    Version,
    SemanticModel,
    SavedQuery,
    UnitTest,
}

impl Method {
    const ALL: [Method; 21] = [
        Method::Fqn,
        Method::Tag,
        Method::Group,
        Method::Access,
        Method::Source,
        Method::Path,
        Method::File,
        Method::Package,
        Method::Config,
        Method::TestName,
        Method::TestType,
        Method::ResourceType,
        Method::State,
        Method::Exposure,
        Method::Metric,
        Method::Result,
        Method::SourceStatus,
        Method::Version,
        Method::SemanticModel,
        Method::SavedQuery,
        Method::UnitTest,
    ];

    pub(super) fn parse(name: &str) -> Option<Method> {
        METHODS.iter().position(|m| *m == name).map(|i| Method::ALL[i])
    }

    pub(super) fn name(self) -> &'static str {
        METHODS[Method::ALL.iter().position(|m| *m == self).unwrap_or(0)]
    }
}

/// `[@][N+][method[.args]:]value[+N]`, as dbt's `RAW_SELECTOR_PATTERN`.
static SPEC: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"\A(?P<childrens_parents>@)?(?P<parents>(?P<parents_depth>[0-9]*)\+)?(?:(?P<method>[\w.]+):)?(?P<value>.*?)(?P<children>\+(?P<children_depth>[0-9]*))?\z",
    )
    .expect("the selector pattern compiles")
});

/// One selector part: a method and value, with graph operators.
#[derive(Debug, Clone)]
pub(super) struct Criteria {
    pub(super) raw: String,
    pub(super) method: Method,
    pub(super) arguments: Vec<String>,
    pub(super) value: String,
    pub(super) childrens_parents: bool,
    /// `N+` before the value: parents, up to N generations (`None`: all).
    pub(super) parents: Option<Option<usize>>,
    /// `+N` after the value: children, up to N generations.
    pub(super) children: Option<Option<usize>>,
    /// The indirect selection of tests.
    pub(super) mode: IndirectSelection,
}

/// A selection expression, as dbt's `SelectionSpec`.
#[derive(Debug, Clone)]
pub(super) enum Spec {
    Criteria(Criteria),
    Union(Vec<Spec>, IndirectSelection),
    Intersection(Vec<Spec>, IndirectSelection),
    Difference(Vec<Spec>, IndirectSelection),
}

pub(super) fn parse_criteria(raw: &str, mode: IndirectSelection) -> Result<Criteria, SelectError> {
    let invalid = |reason: &str| SelectError::Invalid { selector: raw.to_owned(), reason: reason.to_owned() };
    let caps = SPEC.captures(raw).ok_or_else(|| invalid("not a selector (is there a line break in it?)"))?;
    let value = caps.name("value").map_or("", |m| m.as_str()).to_owned();
    let (method, arguments) = match caps.name("method") {
        None => (default_method(&value), Vec::new()),
        Some(m) => {
            let mut parts = m.as_str().split('.');
            let name = parts.next().unwrap_or_default();
            let method = Method::parse(name)
                .ok_or_else(|| SelectError::UnknownMethod { selector: raw.to_owned(), method: name.to_owned() })?;
            (method, parts.map(str::to_owned).collect())
        }
    };
    let depth = |name: &str| {
        caps.name(name).map(|m| m.as_str()).filter(|d| !d.is_empty()).map(|d| d.parse::<usize>().unwrap_or(usize::MAX))
    };
    let childrens_parents = caps.name("childrens_parents").is_some();
    let children = caps.name("children").map(|_| depth("children_depth"));
    if childrens_parents && children.is_some() {
        return Err(invalid("the \"@\" prefix and \"+\" suffix are incompatible"));
    }
    Ok(Criteria {
        raw: raw.to_owned(),
        method,
        arguments,
        value,
        childrens_parents,
        parents: caps.name("parents").map(|_| depth("parents_depth")),
        children,
        mode,
    })
}

/// dbt's default method: `path` for a value with a `/`, `file` for a file name, else `fqn`.
fn default_method(value: &str) -> Method {
    let lower = value.to_lowercase();
    if value.contains('/') {
        Method::Path
    } else if lower.ends_with(".sql") || lower.ends_with(".py") || lower.ends_with(".csv") {
        Method::File
    } else {
        Method::Fqn
    }
}

/// `--select a b,c` → union(intersection(a), intersection(b, c)). A part `selector:NAME`
/// (fhirflow's spelling; dbt's command line has `--selector NAME`) stands for that selector's
/// definition in `selectors`.
fn parse_union(components: &[&str], mode: IndirectSelection, selectors: &Selectors) -> Result<Spec, SelectError> {
    let mut union = Vec::new();
    for component in components {
        for raw in component.split(' ') {
            let parts = raw.split(',').map(|part| parse_part(part, mode, selectors));
            union.push(Spec::Intersection(parts.collect::<Result<_, _>>()?, mode));
        }
    }
    Ok(Spec::Union(union, mode))
}

/// One part of a `--select` argument: a criterion, or a named selector.
fn parse_part(part: &str, mode: IndirectSelection, selectors: &Selectors) -> Result<Spec, SelectError> {
    match selector_name(part)? {
        Some(name) => selectors.get(name).map(|s| s.spec.clone()).ok_or_else(|| SelectError::UnknownSelector {
            name: name.to_owned(),
            known: selectors.names().collect::<Vec<_>>().join(", "),
        }),
        None => parse_criteria(part, mode).map(Spec::Criteria),
    }
}

/// The name in a `selector:NAME` part; graph operators do not apply to a whole selector.
pub(crate) fn selector_name(part: &str) -> Result<Option<&str>, SelectError> {
    let bare = part.trim_start_matches(['@', '+', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9']);
    let Some(name) = bare.strip_prefix("selector:") else { return Ok(None) };
    if bare.len() != part.len() || name.ends_with('+') || name.is_empty() {
        return Err(SelectError::Invalid {
            selector: part.to_owned(),
            reason: "`selector:NAME` names a whole selector of selectors.yml; graph operators (`+`, `@`) go \
                     in its definition"
                .to_owned(),
        });
    }
    Ok(Some(name))
}

impl Manifest {
    /// The unique ids of the models, seeds, snapshots and data tests that `dbt ls --select
    /// SELECT --exclude EXCLUDE` lists (with dbt's default indirect selection, `eager`).
    ///
    /// Each of `select` and `exclude` holds dbt arguments: `["tag:a tag:b", "x+"]` is
    /// `--select "tag:a tag:b" x+`. An empty `select` selects every node, as in dbt. Ephemeral
    /// models are included, as `dbt ls` lists them; they are not tasks ([`Node::is_task`]).
    pub fn select(&self, select: &[&str], exclude: &[&str]) -> Result<BTreeSet<String>, SelectError> {
        self.select_with(select, exclude, IndirectSelection::Eager)
    }

    /// [`Manifest::select`] with another indirect selection mode (`--indirect-selection`).
    pub fn select_with(
        &self,
        select: &[&str],
        exclude: &[&str],
        indirect: IndirectSelection,
    ) -> Result<BTreeSet<String>, SelectError> {
        self.select_in(select, exclude, indirect, &Selectors::default())
    }

    /// [`Manifest::select_with`] in a project with `selectors` (its `selectors.yml`): a part
    /// `selector:NAME` stands for that selector, and with neither `select` nor `exclude` the
    /// selector marked `default: true`, if any, is the selection, as in `dbt ls`.
    pub fn select_in(
        &self,
        select: &[&str],
        exclude: &[&str],
        indirect: IndirectSelection,
        selectors: &Selectors,
    ) -> Result<BTreeSet<String>, SelectError> {
        let spec = match selectors.default_selector() {
            Some(default) if select.is_empty() && exclude.is_empty() => default.spec.clone(),
            _ => {
                let included = if select.is_empty() {
                    parse_union(&DEFAULT_INCLUDES, indirect, selectors)?
                } else {
                    parse_union(select, indirect, selectors)?
                };
                let excluded = parse_union(exclude, indirect, selectors)?;
                // dbt builds the top-level difference with the default mode, whatever the flag says.
                Spec::Difference(vec![included, excluded], IndirectSelection::Eager)
            }
        };
        self.evaluate_spec(&spec)
    }

    /// The task-type nodes a parsed selection picks.
    fn evaluate_spec(&self, spec: &Spec) -> Result<BTreeSet<String>, SelectError> {
        let engine = Engine { m: self, root_paths: std::cell::OnceCell::new() };
        let (direct, _) = engine.evaluate(spec)?;
        Ok(direct
            .iter()
            .map(|i| &self.members[i])
            .filter(|n| n.section == Section::Nodes && n.resource_type.is_task())
            .map(|n| n.unique_id.clone())
            .collect())
    }
}

/// A set of member indexes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Bits(Vec<u64>);

impl Bits {
    fn new(len: usize) -> Bits {
        Bits(vec![0; len.div_ceil(64)])
    }
    fn insert(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }
    fn contains(&self, i: usize) -> bool {
        self.0[i / 64] & (1 << (i % 64)) != 0
    }
    fn union_with(&mut self, other: &Bits) {
        self.0.iter_mut().zip(&other.0).for_each(|(a, b)| *a |= b);
    }
    fn intersect_with(&mut self, other: &Bits) {
        self.0.iter_mut().zip(&other.0).for_each(|(a, b)| *a &= b);
    }
    fn difference_with(&mut self, other: &Bits) {
        self.0.iter_mut().zip(&other.0).for_each(|(a, b)| *a &= !b);
    }
    fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.0
            .iter()
            .enumerate()
            .flat_map(|(w, &word)| (0..64).filter(move |b| word & (1 << b) != 0).map(move |b| w * 64 + b))
    }
}

struct Engine<'m> {
    m: &'m Manifest,
    /// The files and folders of the root project, as far as its nodes show them.
    root_paths: std::cell::OnceCell<HashSet<String>>,
}

impl Engine<'_> {
    fn empty(&self) -> Bits {
        Bits::new(self.m.members.len())
    }

    /// dbt's `select_nodes_recursively`: (direct, indirect) nodes.
    fn evaluate(&self, spec: &Spec) -> Result<(Bits, Bits), SelectError> {
        let (parts, mode, combine): (&[Spec], IndirectSelection, fn(&mut Bits, &Bits)) = match spec {
            Spec::Criteria(criteria) => return self.criteria(criteria),
            Spec::Union(parts, mode) => (parts, *mode, Bits::union_with),
            Spec::Intersection(parts, mode) => (parts, *mode, Bits::intersect_with),
            Spec::Difference(parts, mode) => (parts, *mode, Bits::difference_with),
        };
        let mut direct: Option<Bits> = None;
        let mut indirect: Option<Bits> = None;
        for part in parts {
            let (d, i) = self.evaluate(part)?;
            let mut with_indirect = d.clone();
            with_indirect.union_with(&i);
            match (&mut direct, &mut indirect) {
                (Some(direct), Some(indirect)) => {
                    combine(direct, &d);
                    combine(indirect, &with_indirect);
                }
                _ => {
                    direct = Some(d);
                    indirect = Some(with_indirect);
                }
            }
        }
        let direct = direct.unwrap_or_else(|| self.empty());
        let indirect = indirect.unwrap_or_else(|| self.empty());
        let direct = self.incorporate(direct, &indirect, mode);
        Ok((direct, indirect))
    }

    /// dbt's `get_nodes_from_criteria`: the matching nodes, their graph neighbours, then tests.
    fn criteria(&self, criteria: &Criteria) -> Result<(Bits, Bits), SelectError> {
        let mode = criteria.mode;
        let collected = self.search(criteria)?;
        let mut selected = collected.clone();
        if criteria.childrens_parents {
            selected.union_with(&self.childrens_parents(&collected));
        }
        if let Some(depth) = criteria.parents {
            selected.union_with(&self.parents(&collected, depth));
        }
        if let Some(depth) = criteria.children {
            selected.union_with(&self.children(&collected, depth));
        }
        if mode == IndirectSelection::Empty {
            return Ok((selected, self.empty()));
        }
        Ok(self.expand(selected, mode))
    }

    /// dbt's `expand_selection`: adds the tests next to the selected nodes.
    fn expand(&self, selected: Bits, mode: IndirectSelection) -> (Bits, Bits) {
        let mut direct = selected.clone();
        let mut indirect = self.empty();
        let selected_and_parents = (mode == IndirectSelection::Buildable).then(|| {
            let mut set = selected.clone();
            set.union_with(&self.parents(&selected, None));
            for (i, node) in self.m.members.iter().enumerate() {
                if node.section == Section::Sources {
                    set.insert(i);
                }
            }
            set
        });
        let mut successors = self.empty();
        for node in selected.iter() {
            for &child in &self.m.children[node] {
                successors.insert(child);
            }
        }
        for unique in successors.iter() {
            let node = &self.m.members[unique];
            let is_test = (node.section == Section::Nodes && node.resource_type == ResourceType::Test)
                || node.section == Section::UnitTests;
            if !is_test {
                continue;
            }
            if mode == IndirectSelection::Eager || self.depends_within(node, &selected) {
                direct.insert(unique);
            } else if let Some(within) = &selected_and_parents
                && self.depends_within(node, within)
            {
                direct.insert(unique);
            } else if mode != IndirectSelection::Empty {
                indirect.insert(unique);
            }
        }
        (direct, indirect)
    }

    /// dbt's `incorporate_indirect_nodes`: tests set aside earlier whose parents are now all in.
    fn incorporate(&self, direct: Bits, indirect: &Bits, mode: IndirectSelection) -> Bits {
        if &direct == indirect {
            return direct;
        }
        let within = match mode {
            IndirectSelection::Cautious => direct.clone(),
            IndirectSelection::Buildable => {
                let mut set = direct.clone();
                set.union_with(&self.parents(&direct, None));
                set
            }
            IndirectSelection::Eager | IndirectSelection::Empty => return direct,
        };
        let mut selected = direct;
        for unique in indirect.iter() {
            let node = &self.m.members[unique];
            if node.section == Section::Nodes && self.depends_within(node, &within) {
                selected.insert(unique);
            }
        }
        selected
    }

    /// Whether every node `node` depends on is in `set`.
    fn depends_within(&self, node: &Node, set: &Bits) -> bool {
        node.depends_on.iter().all(|id| self.m.index.get(id).is_some_and(|&i| set.contains(i)))
    }

    /// dbt's `select_children`: descendants, layer by layer, up to `depth` layers.
    fn children(&self, selected: &Bits, depth: Option<usize>) -> Bits {
        self.layers(selected, depth, &self.m.children)
    }

    /// dbt's `select_parents`.
    fn parents(&self, selected: &Bits, depth: Option<usize>) -> Bits {
        self.layers(selected, depth, &self.m.parents)
    }

    fn layers(&self, selected: &Bits, depth: Option<usize>, edges: &[Vec<usize>]) -> Bits {
        let mut found = self.empty();
        let mut frontier: Vec<usize> = selected.iter().collect();
        let mut layer = 0;
        while !frontier.is_empty() && depth.is_none_or(|d| layer < d) {
            let mut next = Vec::new();
            for &node in &frontier {
                for &other in &edges[node] {
                    if !found.contains(other) {
                        found.insert(other);
                        next.push(other);
                    }
                }
            }
            frontier = next;
            layer += 1;
        }
        found
    }

    /// dbt's `select_childrens_parents` (`@`): the descendants, and every ancestor of them all.
    fn childrens_parents(&self, selected: &Bits) -> Bits {
        let mut below = self.children(selected, None);
        below.union_with(selected);
        let mut all = self.parents(&below, None);
        all.union_with(&below);
        all
    }

    /// The members a method and value match (dbt's `SelectorMethod.search`).
    fn search(&self, c: &Criteria) -> Result<Bits, SelectError> {
        let invalid = |reason: String| SelectError::Invalid { selector: c.raw.clone(), reason };
        let value = c.value.as_str();
        let members = &self.m.members;
        let mut out = self.empty();
        let mut pick = |keep: &dyn Fn(&Node) -> bool| {
            for (i, node) in members.iter().enumerate() {
                if keep(node) {
                    out.insert(i);
                }
            }
        };
        match c.method {
            Method::Fqn => {
                let selector = FqnSelector::new(value);
                pick(&|n| n.section != Section::Sources && selector.matches(&n.fqn, n.is_versioned()));
            }
            Method::Tag => {
                let pattern = Fnmatch::new(value);
                pick(&|n| n.tags.iter().any(|t| pattern.matches(t)));
            }
            Method::Group => {
                let pattern = Fnmatch::new(value);
                pick(&|n| {
                    matches!(n.section, Section::Nodes | Section::Metrics)
                        && matches!(n.config.get("group"), Some(Value::String(g)) if !g.is_empty() && pattern.matches(g))
                });
            }
            Method::Access => pick(&|n| {
                n.section == Section::Nodes
                    && n.resource_type == ResourceType::Model
                    && n.access.as_deref() == Some(value)
            }),
            Method::Source => {
                let parts: Vec<&str> = value.split('.').collect();
                let (package, source, table) = match parts[..] {
                    [source] => ("*", source, "*"),
                    [source, table] => ("*", source, table),
                    [package, source, table] => (package, source, table),
                    _ => {
                        return Err(invalid(format!(
                            "a source selector is `source_name`, `source_name.table_name` or \
                             `package.source_name.table_name`, not `{value}`"
                        )));
                    }
                };
                let (package, source, table) = (Fnmatch::new(package), Fnmatch::new(source), Fnmatch::new(table));
                pick(&|n| {
                    n.section == Section::Sources
                        && package.matches(&n.package_name)
                        && source.matches(n.source_name.as_deref().unwrap_or_default())
                        && table.matches(&n.name)
                });
            }
            Method::Exposure | Method::Metric | Method::SemanticModel | Method::SavedQuery | Method::UnitTest => {
                let (section, what) = match c.method {
                    Method::Exposure => (Section::Exposures, "an exposure"),
                    Method::Metric => (Section::Metrics, "a metric"),
                    Method::SemanticModel => (Section::SemanticModels, "a semantic model"),
                    Method::SavedQuery => (Section::SavedQueries, "a saved query"),
                    _ => (Section::UnitTests, "a unit test"),
                };
                let parts: Vec<&str> = value.split('.').collect();
                let (package, name) = match parts[..] {
                    [name] => ("*", name),
                    [package, name] => (package, name),
                    _ => return Err(invalid(format!("{what} selector is `name` or `package.name`, not `{value}`"))),
                };
                let (package, name) = (Fnmatch::new(package), Fnmatch::new(name));
                pick(&|n| n.section == section && package.matches(&n.package_name) && name.matches(&n.name));
            }
            Method::Path => {
                // dbt globs the pattern under the root project and keeps the nodes whose file,
                // properties file or a folder above them is among what the glob found. A node
                // of an installed package has its paths relative to the package, so it matches
                // only a path the root project has too.
                let glob = PathGlob::new(value).map_err(invalid)?;
                let root = self.m.project_name.as_deref();
                let root_paths = self.root_paths.get_or_init(|| self.m.root_paths());
                pick(&|n| {
                    let in_root = |path: &[&str]| {
                        root.is_none_or(|r| n.package_name == r) || root_paths.contains(&path.join("/"))
                    };
                    let file = components(&n.original_file_path);
                    (glob.matches(&file, false) && in_root(&file))
                        || n.patch_path.as_deref().is_some_and(|p| {
                            let patch = components(p);
                            glob.matches(&patch, false) && in_root(&patch)
                        })
                        || (0..file.len()).any(|k| glob.matches(&file[..k], true) && in_root(&file[..k]))
                });
            }
            Method::File => {
                let pattern = Fnmatch::new(value);
                pick(&|n| {
                    let name = components(&n.original_file_path).last().copied().unwrap_or_default();
                    pattern.matches(name) || pattern.matches(stem(name))
                });
            }
            Method::Package => {
                // `package:this` is the root project from dbt-core 1.8 on.
                let this_alias = self
                    .m
                    .dbt_version
                    .as_deref()
                    .and_then(super::version::Release::parse_lenient)
                    .is_none_or(|r| (r.major, r.minor) >= (1, 8));
                let value = match (&self.m.project_name, value) {
                    (Some(project), "this") if this_alias => project.as_str(),
                    _ => value,
                };
                let pattern = Fnmatch::new(value);
                pick(&|n| pattern.matches(&n.package_name));
            }
            Method::Config => {
                let case_insensitive = c.arguments == ["severity"];
                pick(&|n| {
                    matches!(n.section, Section::Nodes | Section::Sources)
                        && descend(&n.config, &c.arguments).is_some_and(|v| config_matches(v, value, case_insensitive))
                });
            }
            Method::TestName => {
                let pattern = Fnmatch::new(value);
                pick(&|n| match n.section {
                    Section::Nodes => {
                        n.resource_type == ResourceType::Test
                            && n.test_name.as_deref().is_some_and(|t| pattern.matches(t))
                    }
                    Section::UnitTests => pattern.matches(&n.name),
                    _ => false,
                });
            }
            Method::TestType => {
                let (generic, singular, unit) = if value == "generic" || value == "schema" {
                    (true, false, false)
                } else if "data".contains(value) {
                    // dbt tests `selector in ("data")`: a substring of "data", not equality.
                    (true, true, false)
                } else if "singular".contains(value) {
                    (false, true, false)
                } else if "unit".contains(value) {
                    (false, false, true)
                } else {
                    return Err(invalid(format!(
                        "invalid test type `{value}`: expected \"generic\", \"singular\", \"unit\", or \"data\""
                    )));
                };
                pick(&|n| match n.section {
                    Section::Nodes if n.resource_type == ResourceType::Test => {
                        if n.test_name.is_some() {
                            generic
                        } else {
                            singular
                        }
                    }
                    Section::UnitTests => unit,
                    _ => false,
                });
            }
            Method::ResourceType => {
                let wanted = ResourceType::parse(value).ok_or_else(|| {
                    let all: Vec<&str> = ResourceType::ALL.iter().map(|t| t.as_str()).collect();
                    invalid(format!("invalid resource type `{value}`: dbt's are {}", all.join(", ")))
                })?;
                pick(&|n| n.resource_type == wanted);
            }
            Method::Version => {
                let models =
                    || members.iter().filter(|n| n.section == Section::Nodes && n.resource_type == ResourceType::Model);
                let keep: fn(&Node) -> bool = match value {
                    "latest" => |n| n.version.is_some() && py_eq(n.version.as_ref(), n.latest_version.as_ref()),
                    "prerelease" => |n| match (&n.version, &n.latest_version) {
                        (Some(v), Some(l)) if truthy(v) && truthy(l) => py_lt(l, v),
                        _ => false,
                    },
                    "old" => |n| match (&n.version, &n.latest_version) {
                        (Some(v), Some(l)) if truthy(v) && truthy(l) => py_lt(v, l),
                        _ => false,
                    },
                    "none" => |n| n.version.is_none(),
                    // dbt raises only when it meets a model.
                    _ if models().next().is_none() => |_| false,
                    _ => {
                        return Err(invalid(format!(
                            "invalid version selector `{value}`: expected \"latest\", \"prerelease\", \"old\", or \"none\""
                        )));
                    }
                };
                pick(&|n| n.section == Section::Nodes && n.resource_type == ResourceType::Model && keep(n));
            }
            Method::State | Method::Result | Method::SourceStatus => {
                return Err(SelectError::NeedsState { selector: c.raw.clone(), method: c.method.name().to_owned() });
            }
        }
        Ok(out)
    }
}

/// dbt's `QualifiedNameSelectorMethod`: a node name, or a dotted fqn prefix, with wildcards from
/// the first part that has one.
struct FqnSelector<'a> {
    selector: &'a str,
    parts: Vec<&'a str>,
    /// The first part with a wildcard, and the pattern for the rest of the fqn from there.
    slurp: Option<(usize, Fnmatch)>,
    /// For a wildcard selector without dots, the pattern for the node's name alone.
    leaf: Option<Fnmatch>,
}

impl<'a> FqnSelector<'a> {
    fn new(selector: &'a str) -> FqnSelector<'a> {
        let parts: Vec<&str> = selector.split('.').collect();
        let slurp =
            parts.iter().position(|p| Fnmatch::has_wildcard(p)).map(|i| (i, Fnmatch::new(&parts[i..].join("."))));
        let leaf = (slurp.is_some() && !selector.contains('.')).then(|| Fnmatch::new(selector));
        FqnSelector { selector, parts, slurp, leaf }
    }

    /// dbt matches the fqn with and without its package.
    fn matches(&self, fqn: &[String], versioned: bool) -> bool {
        self.matches_fqn(fqn, versioned) || (!fqn.is_empty() && self.matches_fqn(&fqn[1..], versioned))
    }

    /// dbt's `is_selected_node`.
    fn matches_fqn(&self, fqn: &[String], versioned: bool) -> bool {
        let n = fqn.len();
        if n == 0 || (versioned && n < 2) {
            return false;
        }
        if versioned {
            if fqn[n - 2] == self.selector {
                return true;
            }
            let tail = &self.parts[self.parts.len().saturating_sub(2)..];
            if fqn[n - 2..].join("_") == tail.join("_") {
                return true;
            }
        } else if fqn[n - 1] == self.selector {
            return true;
        }
        let flat: Vec<&str> = fqn.iter().flat_map(|s| s.split('.')).collect();
        if flat.len() < self.parts.len() {
            return false;
        }
        let fixed = self.slurp.as_ref().map_or(self.parts.len(), |(i, _)| *i);
        if self.parts[..fixed].iter().zip(&flat).any(|(p, f)| p != f) {
            return false;
        }
        match &self.slurp {
            None => true,
            Some((i, pattern)) => {
                if pattern.matches(&flat[*i..].join(".")) {
                    return true;
                }
                let leaf = if versioned { &fqn[n - 2] } else { &fqn[n - 1] };
                self.leaf.as_ref().is_some_and(|p| p.matches(leaf))
            }
        }
    }
}

/// `PurePath.stem` of a file name.
fn stem(name: &str) -> &str {
    match name.rfind('.') {
        Some(i) if i > 0 && i < name.len() - 1 => &name[..i],
        _ => name,
    }
}

/// dbt's `_getattr_descend` over the config as written in the manifest.
fn descend<'v>(config: &'v Map<String, Value>, path: &[String]) -> Option<&'v Value> {
    let (first, rest) = path.split_first()?;
    // Python attribute names for the two hyphenated config keys.
    let key = match first.as_str() {
        "post_hook" => "post-hook",
        "pre_hook" => "pre-hook",
        other => other,
    };
    let mut value = config.get(key).or_else(|| config.get(first.as_str()))?;
    for part in rest {
        value = value.as_object()?.get(part.as_str())?;
    }
    Some(value)
}

/// dbt's `ConfigSelectorMethod` comparison: equality with a string (or membership in a list),
/// and `true`/`false` (any case) for booleans.
fn config_matches(value: &Value, selector: &str, case_insensitive: bool) -> bool {
    let upper = selector.to_uppercase();
    let equal = |v: &Value| match v {
        Value::String(s) if case_insensitive => s.to_uppercase() == upper,
        Value::String(s) => s == selector,
        _ => false,
    };
    // Python: `True in [1]` and `False in [0]` hold, `x is True` only for the boolean.
    let true_like = |v: &Value| matches!(v, Value::Bool(true)) || v.as_f64() == Some(1.0);
    let false_like = |v: &Value| matches!(v, Value::Bool(false)) || v.as_f64() == Some(0.0);
    match value {
        Value::Array(items) => {
            items.iter().any(equal)
                || (upper == "TRUE" && items.iter().any(true_like))
                || (upper == "FALSE" && items.iter().any(false_like))
        }
        other => {
            equal(other)
                || (upper == "TRUE" && *other == Value::Bool(true))
                || (upper == "FALSE" && *other == Value::Bool(false))
        }
    }
}

/// Python's `==` between two model versions (`1 == 1.0`, `"1" != 1`).
fn py_eq(a: Option<&Value>, b: Option<&Value>) -> bool {
    match (a, b) {
        (Some(Value::Number(x)), Some(Value::Number(y))) => x.as_f64() == y.as_f64(),
        (Some(Value::String(x)), Some(Value::String(y))) => x == y,
        (None, None) => true,
        _ => false,
    }
}

/// Python truthiness of a version.
pub(super) fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// dbt's `UnparsedVersion.__lt__`: as numbers when both are, else as strings.
fn py_lt(a: &Value, b: &Value) -> bool {
    let number = |v: &Value| match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    match (number(a), number(b)) {
        (Some(x), Some(y)) => x < y,
        _ => text(a) < text(b),
    }
}
