//! `plan` and `apply`: compare the files a spec produces with what is on disk, and write them.
//!
//! Like Terraform, a plan names every file to add, change or remove, and inside DAG files the
//! tasks, schedules, retries and sensors that change; `apply` writes exactly that plan, each file
//! atomically, and never touches a file it did not write or one edited by hand (unless forced).

mod apply;
pub mod journal;
mod links;
mod properties;
mod render;
mod saved;
mod summary;

pub use apply::{ApplyReport, apply, complete_interrupted, write_atomically};
pub use render::PlanFormat;
pub use saved::SavedPlan;

use crate::emit::{FileKind, GeneratedFile, Layout, ManagedDir, header};
use crate::error::Error;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use summary::DagSummary;

/// What happens to one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Created.
    Add,
    /// Rewritten.
    Change,
    /// Deleted: fhirflow wrote it for this spec, which no longer produces it.
    Remove,
}

/// Why `apply` would refuse to write a file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "reason")]
pub enum Blocker {
    /// The file exists and fhirflow did not write it.
    NotGenerated,
    /// fhirflow wrote it, but it was edited since.
    EditedByHand,
    /// fhirflow wrote it for another spec. Never overwritten while that spec exists, even
    /// with `--force`: two specs would take the file from each other at every apply.
    OtherSpec {
        /// The spec named in its header.
        spec: String,
        /// Whether that spec is gone (moved or renamed), so that `--force` may take the file over.
        orphaned: bool,
    },
}

/// One change inside a file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum Detail {
    /// A DAG-level setting changes.
    Setting {
        /// Which (schedule, catchup, max_active_runs, tags, start_date).
        name: String,
        /// Before, as recorded in the file (`null` when absent).
        old: serde_json::Value,
        /// After.
        new: serde_json::Value,
    },
    /// A task is added.
    TaskAdded {
        /// Task id.
        task: String,
    },
    /// A task is removed.
    TaskRemoved {
        /// Task id.
        task: String,
    },
    /// A task is renamed (same definition, new id): Airflow orphans its history.
    TaskRenamed {
        /// Old task id.
        from: String,
        /// New task id.
        to: String,
    },
    /// A column is added to a dbt model's properties.
    ColumnAdded {
        /// The model.
        model: String,
        /// The column.
        column: String,
    },
    /// A column, and its tests, leave a dbt model's properties.
    ColumnRemoved {
        /// The model.
        model: String,
        /// The column.
        column: String,
    },
    /// A dbt test is added to a column.
    TestAdded {
        /// The model.
        model: String,
        /// The column.
        column: String,
        /// The test, as compact JSON when it has arguments.
        test: String,
    },
    /// A dbt test is removed from a column: a check that no longer runs.
    TestRemoved {
        /// The model.
        model: String,
        /// The column.
        column: String,
        /// The test, as compact JSON when it has arguments.
        test: String,
    },
    /// A model's or column's description changes.
    DescriptionChanged {
        /// The model.
        model: String,
        /// The column, or `null` for the model's own description.
        column: Option<String>,
    },
    /// A task's settings or definition change.
    TaskChanged {
        /// Task id.
        task: String,
        /// What changed, field by field.
        changes: Vec<FieldChange>,
    },
}

/// One field of a task that changes, with its values as recorded in the DAG file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FieldChange {
    /// The field (`retries`, `upstream`, …), or `definition` when only the command, query or
    /// arguments changed (`old` and `new` are then digests of the definition).
    pub field: String,
    /// Before (`null` when absent).
    pub old: serde_json::Value,
    /// After.
    pub new: serde_json::Value,
    /// For `definition`: a unified diff of the keyword arguments (command, query, arguments,
    /// environment), when both files record them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
}

/// How much a change matters to whoever runs the pipelines, as SQLMesh classifies plans.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeClass {
    /// Tags and descriptions: nothing runs differently.
    Metadata,
    /// What runs, when, or how often it retries.
    Behavioural,
    /// A task or DAG goes away or is renamed: Airflow loses its history.
    Breaking,
}

impl ChangeClass {
    /// The word the plan prints.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeClass::Metadata => "metadata",
            ChangeClass::Behavioural => "behavioural",
            ChangeClass::Breaking => "breaking",
        }
    }
}

/// DAG settings that change nothing about what runs.
const METADATA_SETTINGS: [&str; 1] = ["tags"];

impl Detail {
    /// How much this change matters.
    pub fn class(&self) -> ChangeClass {
        match self {
            Detail::Setting { name, .. } if METADATA_SETTINGS.contains(&name.as_str()) => ChangeClass::Metadata,
            Detail::TaskRemoved { .. } | Detail::TaskRenamed { .. } => ChangeClass::Breaking,
            Detail::DescriptionChanged { .. } => ChangeClass::Metadata,
            _ => ChangeClass::Behavioural,
        }
    }
}

impl FileChange {
    /// The changes to classify: the details, or the file itself when it has none (a DAG
    /// removed loses its history; a change nothing names is taken to change behaviour).
    pub fn classes(&self) -> Vec<ChangeClass> {
        if self.details.is_empty() {
            let class = if self.action == Action::Remove && self.kind == "airflow_dag" {
                ChangeClass::Breaking
            } else {
                ChangeClass::Behavioural
            };
            return vec![class];
        }
        self.details.iter().map(Detail::class).collect()
    }
}

/// A planned change to one file.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FileChange {
    /// Path under the layout root.
    pub path: PathBuf,
    /// Add, change or remove.
    pub action: Action,
    /// What the file is: `airflow_dag`, `dbt_layer` or `dbt_selectors`.
    pub kind: &'static str,
    /// Task and setting changes, for DAG files.
    pub details: Vec<Detail>,
    /// Why apply would refuse, if it would.
    pub blocker: Option<Blocker>,
    #[serde(skip)]
    contents: Option<String>,
}

/// Everything `apply` would do.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Where paths are rooted (`layout.root`).
    pub layout: Layout,
    /// File changes, sorted by path.
    pub changes: Vec<FileChange>,
    /// Temporary files that interrupted applies left in the folders the spec writes; `apply`
    /// removes them. They are not changes: no generated file differs because of them.
    pub leftovers: Vec<PathBuf>,
    /// Files that look like this spec's but that `apply` leaves alone, and why.
    pub kept: Vec<KeptFile>,
    /// An apply that was killed between its first and last rename, which `apply` completes
    /// before anything else.
    pub interrupted: Option<journal::Journal>,
    /// Airflow pools the DAGs need, which must exist before they run.
    pub pools: Vec<crate::emit::AirflowPool>,
}

/// A file under the spec's folders that names the spec but is not removed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KeptFile {
    /// Path under the layout root.
    pub path: PathBuf,
    /// Why it stays.
    pub reason: String,
}

impl Plan {
    /// Files to add, change and remove.
    pub fn counts(&self) -> (usize, usize, usize) {
        let count = |a| self.changes.iter().filter(|c| c.action == a).count();
        (count(Action::Add), count(Action::Change), count(Action::Remove))
    }

    /// Whether applying would change anything.
    pub fn has_changes(&self) -> bool {
        !self.changes.is_empty()
    }

    /// Changes apply would refuse without `--force`.
    pub fn blocked(&self) -> impl Iterator<Item = &FileChange> {
        self.changes.iter().filter(|c| c.blocker.is_some())
    }
}

fn kind_name(kind: &FileKind) -> &'static str {
    match kind {
        FileKind::AirflowDag(_) => "airflow_dag",
        FileKind::DbtLayer(_) => "dbt_layer",
        FileKind::DbtSelectors => "dbt_selectors",
    }
}

fn read_existing(path: &Path) -> Result<Option<String>, Error> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(String::from_utf8_lossy(&bytes).into_owned())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(Error::Io { path: path.to_owned(), action: "read", source }),
    }
}

/// Compares `files` with the disk under `layout.root`.
/// Refuses, before reading anything, a file or folder reached through a symbolic link that
/// leads outside `layout.root`.
pub fn plan(files: &[GeneratedFile], layout: &Layout, managed_dirs: &[ManagedDir]) -> Result<Plan, Error> {
    for path in files.iter().map(|f| f.path.as_path()).chain(managed_dirs.iter().map(|d| d.path.as_path())) {
        links::refuse_escaping_links(&layout.root, path)?;
    }
    let mut changes = Vec::new();
    let wanted: BTreeSet<&Path> = files.iter().map(|f| f.path.as_path()).collect();
    for file in files {
        let on_disk = read_existing(&layout.root.join(&file.path))?;
        let (action, blocker, old) = match &on_disk {
            None => (Action::Add, None, None),
            Some(text) if *text == file.contents => continue,
            // A checkout with CRLF line ends (git's `core.autocrlf`) is the same file.
            Some(text) if header::crlf_to_lf(text).is_some_and(|lf| lf == file.contents) => continue,
            Some(text) => {
                let blocker = match header::read(text) {
                    None => Some(Blocker::NotGenerated),
                    // An earlier version named the spec by its file name alone: the file this
                    // spec writes, at the place it writes it, is taken to be its own.
                    Some(h) if h.place.is_none() && h.spec == layout.spec_name => {
                        h.edited().then_some(Blocker::EditedByHand)
                    }
                    Some(h) if !layout.owner.owns(&h.spec) => {
                        Some(Blocker::OtherSpec { orphaned: !layout.owner.other_exists(&h.spec), spec: h.spec })
                    }
                    Some(h) if h.edited() => Some(Blocker::EditedByHand),
                    Some(_) => None,
                };
                (Action::Change, blocker, Some(text.as_str()))
            }
        };
        let details = match file.kind {
            FileKind::AirflowDag(_) => DagSummary::read(old.unwrap_or("")).diff(&DagSummary::read(&file.contents)),
            FileKind::DbtLayer(_) => properties::diff(old.unwrap_or(""), &file.contents),
            FileKind::DbtSelectors => Vec::new(),
        };
        changes.push(FileChange {
            path: file.path.clone(),
            action,
            kind: kind_name(&file.kind),
            details,
            blocker,
            contents: Some(file.contents.clone()),
        });
    }
    let mut kept = Vec::new();
    let mut stale = Vec::new();
    for dir in managed_dirs {
        stale.extend(stale_files(layout, dir, &wanted, &mut kept)?);
        // selectors.yml sits at the dbt project root, which is not scanned as a whole.
        let selectors = dir.base.join("selectors.yml");
        if dir.base != dir.path
            && !wanted.contains(selectors.as_path())
            && !is_symlink(&layout.root.join(&selectors))
            && let Some(text) = read_existing(&layout.root.join(&selectors))?
            && let Some(h) = header::read(&text)
            && let Some(path) = judge_stale(layout, &h, selectors.clone(), "selectors.yml", &mut kept)
        {
            stale.push(path);
        }
    }
    for stale in stale {
        let text = read_existing(&layout.root.join(&stale))?.unwrap_or_default();
        let kind = if stale.extension().is_some_and(|e| e == "py") { "airflow_dag" } else { "dbt_layer" };
        let details =
            if kind == "airflow_dag" { DagSummary::read(&text).diff(&DagSummary::default()) } else { Vec::new() };
        let blocker = header::read(&text).filter(|h| h.edited()).map(|_| Blocker::EditedByHand);
        changes.push(FileChange { path: stale, action: Action::Remove, kind, details, blocker, contents: None });
    }
    changes.sort_by(|a, b| a.path.cmp(&b.path));
    let folders: BTreeSet<&Path> =
        files.iter().filter_map(|f| f.path.parent()).chain(managed_dirs.iter().map(|d| d.path.as_path())).collect();
    let interrupted = journal::Journal::read(&layout.root)?;
    let mut leftovers = Vec::new();
    for folder in folders {
        let names = apply::leftover_temp_files(&layout.root.join(folder))?;
        leftovers.extend(
            names
                .into_iter()
                .map(|name| folder.join(name))
                // The interrupted apply's staged files are what completing it renames.
                .filter(|path| !interrupted.as_ref().is_some_and(|j| j.stages(path))),
        );
    }
    Ok(Plan { layout: layout.clone(), changes, leftovers, kept, interrupted, pools: Vec::new() })
}

/// `path` when a file with header `h` there is this spec's stale file; otherwise `None`, with a
/// note in `kept` when it names this spec but is not to be removed. `place` is where the file
/// is, relative to the folder its header's place is relative to.
fn judge_stale(
    layout: &Layout,
    h: &header::Header,
    path: PathBuf,
    place: &str,
    kept: &mut Vec<KeptFile>,
) -> Option<PathBuf> {
    match &h.place {
        Some(recorded) if layout.owner.owns(&h.spec) => {
            if recorded == place {
                return Some(path);
            }
            kept.push(KeptFile {
                path,
                reason: format!("a copy of the file fhirflow wrote at `{recorded}`, not the file itself"),
            });
        }
        // An earlier version's header: the spec's file name alone names more than one spec.
        None if h.spec == layout.spec_name => {
            if layout.owner.id == h.spec {
                return Some(path);
            }
            kept.push(KeptFile {
                path,
                reason: format!(
                    "an earlier fhirflow wrote it from a spec named `{}`, which may be another folder's spec of that name; delete it if this spec no longer makes it",
                    h.spec
                ),
            });
        }
        _ => {}
    }
    None
}

fn is_symlink(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink())
}

/// Files under `managed` that this spec wrote there before but no longer produces.
fn stale_files(
    layout: &Layout,
    managed: &ManagedDir,
    wanted: &BTreeSet<&Path>,
    kept: &mut Vec<KeptFile>,
) -> Result<Vec<PathBuf>, Error> {
    let mut found = Vec::new();
    let mut pending: Vec<PathBuf> = vec![managed.path.clone()];
    let mut seen = BTreeSet::new();
    while let Some(dir) = pending.pop() {
        if !seen.insert(dir.clone()) {
            continue;
        }
        let full = layout.root.join(&dir);
        let entries = match std::fs::read_dir(&full) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => {
                return Err(Error::Io { path: full, action: "read", source });
            }
        };
        let mut names: Vec<_> = entries.filter_map(Result::ok).collect();
        names.sort_by_key(|e| e.file_name());
        for entry in names {
            let relative = dir.join(entry.file_name());
            let file_type =
                entry.file_type().map_err(|source| Error::Io { path: entry.path(), action: "read", source })?;
            if file_type.is_dir() {
                pending.push(relative);
                continue;
            }
            // fhirflow writes regular files only, so a link is never one of its stale files.
            if file_type.is_symlink() {
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            let candidate = name.ends_with(".py") || name.ends_with("_models.yml") || name == "selectors.yml";
            if !candidate || wanted.contains(relative.as_path()) {
                continue;
            }
            let Some(text) = read_existing(&entry.path())? else {
                continue;
            };
            if let Some(h) = header::read(&text) {
                let place = crate::emit::place(&relative, &managed.base);
                found.extend(judge_stale(layout, &h, relative, &place, kept));
            }
        }
    }
    Ok(found)
}
