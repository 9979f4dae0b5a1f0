//! Writing a plan to disk: every file atomically, nothing at all if any file is blocked.

use super::{Action, Plan};
use crate::error::Error;
use std::io::Write as _;
use std::path::Path;

/// What `apply` did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ApplyReport {
    /// Files created.
    pub added: usize,
    /// Files rewritten.
    pub changed: usize,
    /// Files deleted.
    pub removed: usize,
}

/// Carries out `plan`. Refuses before writing anything if a file is blocked and `force` is off,
/// or, even with `force`, if a file would be written through a symbolic link leading outside
/// the output root.
pub fn apply(plan: &Plan, force: bool) -> Result<ApplyReport, Error> {
    // `plan` checked too; checking again here covers links made since.
    for change in &plan.changes {
        super::links::refuse_escaping_links(&plan.layout.root, &change.path)?;
    }
    if !force && let Some(first) = plan.blocked().next() {
        let count = plan.blocked().count();
        let others = if count > 1 { format!(" (and {} more)", count - 1) } else { String::new() };
        let reason = match &first.blocker {
            Some(super::Blocker::NotGenerated) => "it was not written by fhirflow",
            Some(super::Blocker::EditedByHand) => "it was edited by hand since fhirflow wrote it",
            _ => "it was written from another spec",
        };
        return Err(Error::Refused {
            path: plan.layout.root.join(&first.path),
            reason: format!(
                "{reason}{others}; nothing was written. Move your edits into the spec, or rerun with --force"
            ),
        });
    }
    let mut report = ApplyReport::default();
    for change in &plan.changes {
        let path = plan.layout.root.join(&change.path);
        match (change.action, &change.contents) {
            (Action::Remove, _) => {
                std::fs::remove_file(&path).map_err(|source| Error::Io {
                    path: path.clone(),
                    action: "remove",
                    source,
                })?;
                report.removed += 1;
            }
            (action, Some(contents)) => {
                write_atomically(&path, contents)?;
                if action == Action::Add {
                    report.added += 1;
                } else {
                    report.changed += 1;
                }
            }
            (_, None) => {}
        }
    }
    Ok(report)
}

/// Writes `contents` to a temporary file beside `path`, then renames it over `path`, so a
/// reader (or Airflow's DAG processor) never sees half a file.
pub fn write_atomically(path: &Path, contents: &str) -> Result<(), Error> {
    fn io<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> Error + 'a {
        move |source| Error::Io { path: path.to_owned(), action, source }
    }
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io("create", dir))?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let temp = dir.join(format!(".{name}.fhirflow-{}.tmp", std::process::id()));
    let result = (|| {
        let mut file = std::fs::File::create(&temp).map_err(io("write", &temp))?;
        file.write_all(contents.as_bytes()).map_err(io("write", &temp))?;
        file.sync_all().map_err(io("write", &temp))?;
        std::fs::rename(&temp, path).map_err(io("write", path))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}
