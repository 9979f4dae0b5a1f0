//! `plan` and `apply`: compare the files a spec produces with what is on disk, and write them.
//!
//! Like Terraform, a plan names every file to add, change or remove, and inside DAG files the
//! tasks, schedules, retries and sensors that change; `apply` writes exactly that plan, each file
//! atomically, and never touches a file it did not write or one edited by hand (unless forced).

mod apply;
mod links;
mod render;
mod summary;

pub use apply::{ApplyReport, apply, write_atomically};
pub use render::PlanFormat;

use crate::emit::{FileKind, GeneratedFile, Layout, header};
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
    /// fhirflow wrote it for another spec.
    OtherSpec {
        /// The spec named in its header.
        spec: String,
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
pub fn plan(files: &[GeneratedFile], layout: &Layout, managed_dirs: &[PathBuf]) -> Result<Plan, Error> {
    for path in files.iter().map(|f| f.path.as_path()).chain(managed_dirs.iter().map(PathBuf::as_path)) {
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
                    Some(h) if h.spec != layout.spec_name => Some(Blocker::OtherSpec { spec: h.spec }),
                    Some(h) if h.edited() => Some(Blocker::EditedByHand),
                    Some(_) => None,
                };
                (Action::Change, blocker, Some(text.as_str()))
            }
        };
        let details = match file.kind {
            FileKind::AirflowDag(_) => DagSummary::read(old.unwrap_or("")).diff(&DagSummary::read(&file.contents)),
            _ => Vec::new(),
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
    let mut stale = stale_files(layout, managed_dirs, &wanted)?;
    for dir in managed_dirs {
        // selectors.yml sits at the dbt project root, which is not scanned as a whole.
        let selectors = dir.parent().map(|p| p.join("selectors.yml"));
        if let Some(selectors) = selectors
            && dir.ends_with("models")
            && !wanted.contains(selectors.as_path())
            && !is_symlink(&layout.root.join(&selectors))
            && let Some(text) = read_existing(&layout.root.join(&selectors))?
            && header::read(&text).is_some_and(|h| h.spec == layout.spec_name)
        {
            stale.push(selectors);
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
        files.iter().filter_map(|f| f.path.parent()).chain(managed_dirs.iter().map(PathBuf::as_path)).collect();
    let mut leftovers = Vec::new();
    for folder in folders {
        let names = apply::leftover_temp_files(&layout.root.join(folder))?;
        leftovers.extend(names.into_iter().map(|name| folder.join(name)));
    }
    Ok(Plan { layout: layout.clone(), changes, leftovers })
}

fn is_symlink(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink())
}

/// Files under `dirs` that this spec wrote before but no longer produces.
fn stale_files(layout: &Layout, dirs: &[PathBuf], wanted: &BTreeSet<&Path>) -> Result<Vec<PathBuf>, Error> {
    let mut found = Vec::new();
    let mut pending: Vec<PathBuf> = dirs.to_vec();
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
            if header::read(&text).is_some_and(|h| h.spec == layout.spec_name) {
                found.push(relative);
            }
        }
    }
    Ok(found)
}
