//! Writing a plan to disk: every file atomically and the set as a whole, nothing at all if any
//! file is blocked.

use super::journal::{Journal, Rename, RootLock};
use super::{Action, Blocker, Plan};
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
    /// Temporary files removed that interrupted applies had left behind.
    pub leftovers_removed: usize,
}

/// Carries out `plan`. Refuses before writing anything if a file is blocked and `force` is off,
/// if a file belongs to another spec that still exists (even with `force`), or, even with
/// `force`, if a file would be written through a symbolic link leading outside the output root.
///
/// The set of files changes as a whole: every new file is staged beside its target first (so
/// a folder that cannot be written fails the apply before anything changed), then a
/// [`Journal`] of the renames is written, then they are made. An apply killed in between
/// leaves the journal, which the next apply completes ([`complete_interrupted`]).
pub fn apply(plan: &Plan, force: bool) -> Result<ApplyReport, Error> {
    // `plan` checked too; checking again here covers links made since.
    for change in &plan.changes {
        super::links::refuse_escaping_links(&plan.layout.root, &change.path)?;
    }
    let taken = plan.changes.iter().find_map(|c| match &c.blocker {
        Some(Blocker::OtherSpec { spec, orphaned: false }) => Some((c, spec)),
        _ => None,
    });
    if let Some((first, spec)) = taken {
        return Err(Error::Refused {
            path: plan.layout.root.join(&first.path),
            reason: format!(
                "it belongs to {spec}, which also generates it; nothing was written, not even with --force. Give one of the pipelines another id, or the specs different folders"
            ),
        });
    }
    if !force && let Some(first) = plan.blocked().next() {
        let count = plan.blocked().count();
        let others = if count > 1 { format!(" (and {} more)", count - 1) } else { String::new() };
        let reason = match &first.blocker {
            Some(Blocker::NotGenerated) => "it was not written by fhirflow".to_owned(),
            Some(Blocker::EditedByHand) => "it was edited by hand since fhirflow wrote it".to_owned(),
            Some(Blocker::OtherSpec { spec, .. }) => format!("it was written from {spec}, which is gone"),
            None => String::new(),
        };
        return Err(Error::Refused {
            path: plan.layout.root.join(&first.path),
            reason: format!(
                "{reason}{others}; nothing was written. Move your edits into the spec, or rerun with --force"
            ),
        });
    }
    let root = &plan.layout.root;
    let mut report = ApplyReport::default();
    if !plan.has_changes() && plan.leftovers.is_empty() {
        return Ok(report);
    }
    let _lock = RootLock::acquire(root)?;
    if Journal::read(root)?.is_some() {
        return Err(Error::Refused {
            path: root.join(super::journal::FILE_NAME),
            reason: "another apply was interrupted after this plan was made; nothing was written. Rerun apply, which completes it first".to_owned(),
        });
    }
    for leftover in &plan.leftovers {
        let path = root.join(leftover);
        match std::fs::remove_file(&path) {
            Ok(()) => report.leftovers_removed += 1,
            // Gone already: another apply cleaned up too.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(Error::Io { path, action: "remove", source }),
        }
    }
    let mut renames = Vec::new();
    let mut removes = Vec::new();
    let staged = (|| {
        for change in &plan.changes {
            match (change.action, &change.contents) {
                (Action::Remove, _) => {
                    probe_writable(root, &change.path)?;
                    removes.push(change.path.clone());
                    report.removed += 1;
                }
                (action, Some(contents)) => {
                    renames.push(Rename { from: stage(root, &change.path, contents)?, to: change.path.clone() });
                    if action == Action::Add {
                        report.added += 1;
                    } else {
                        report.changed += 1;
                    }
                }
                (_, None) => {}
            }
        }
        let journal = Journal::new(std::mem::take(&mut renames), std::mem::take(&mut removes));
        match journal.write(root) {
            Ok(()) => Ok(journal),
            Err(e) => {
                renames = journal.renames;
                Err(e)
            }
        }
    })();
    match staged {
        Ok(journal) => {
            journal.complete(root)?;
            Ok(report)
        }
        Err(e) => {
            // Nothing was renamed yet: take the staged files back, and the disk is as it was.
            for rename in &renames {
                let _ = std::fs::remove_file(root.join(&rename.from));
            }
            Err(e)
        }
    }
}

/// Completes the apply that `plan` found interrupted, if any, and says how many files it
/// changed; `None` when there was none, or when it is still running (it then finishes itself).
pub fn complete_interrupted(plan: &Plan) -> Result<Option<usize>, Error> {
    let root = &plan.layout.root;
    if plan.interrupted.is_none() {
        return Ok(None);
    }
    let _lock = RootLock::acquire(root)?;
    // Read again under the lock: a running apply has finished with it by now.
    match Journal::read(root)? {
        Some(journal) => journal.complete(root).map(Some),
        None => Ok(None),
    }
}

/// Writes `contents` to a temporary file beside `relative` (under `root`), durably, and
/// returns the temporary file's path relative to `root`.
fn stage(root: &Path, relative: &Path, contents: &str) -> Result<std::path::PathBuf, Error> {
    let path = root.join(relative);
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|source| Error::Io { path: dir.to_owned(), action: "create", source })?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let temp = temp_name(&name, std::process::id());
    let full = dir.join(&temp);
    let written = (|| {
        let mut file = std::fs::File::create(&full)?;
        file.write_all(contents.as_bytes())?;
        file.sync_all()
    })();
    if let Err(source) = written {
        let _ = std::fs::remove_file(&full);
        return Err(Error::Io { path: full, action: "write", source });
    }
    Ok(relative.parent().map_or_else(|| temp.clone().into(), |p| p.join(&temp)))
}

/// Fails when the folder of `relative` (under `root`) cannot take a change, so that a
/// removal there cannot fail after other files were already replaced.
fn probe_writable(root: &Path, relative: &Path) -> Result<(), Error> {
    let staged = stage(root, relative, "")?;
    let path = root.join(staged);
    std::fs::remove_file(&path).map_err(|source| Error::Io { path, action: "remove", source })
}

/// Writes `contents` to a temporary file beside `path`, then renames it over `path`, so a
/// reader (or Airflow's DAG processor) never sees half a file.
pub fn write_atomically(path: &Path, contents: &str) -> Result<(), Error> {
    let temp = stage(Path::new(""), path, contents)?;
    std::fs::rename(&temp, path).map_err(|source| {
        let _ = std::fs::remove_file(&temp);
        Error::Io { path: path.to_owned(), action: "write", source }
    })
}

/// The temporary file that process `pid` writes `name` to before renaming it into place.
fn temp_name(name: &str, pid: u32) -> String {
    format!(".{name}.fhirflow-{pid}.tmp")
}

/// The process id in a temporary file name of [`temp_name`]'s pattern.
fn temp_pid(file_name: &str) -> Option<u32> {
    let inner = file_name.strip_prefix('.')?.strip_suffix(".tmp")?;
    let (name, pid) = inner.rsplit_once(".fhirflow-")?;
    if name.is_empty() || pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    pid.parse().ok()
}

/// How old a temporary file must be to count as left behind even though a process with its
/// id is running: ids are reused, and a live apply keeps its file for milliseconds, not minutes.
pub const LEFTOVER_AGE: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// Temporary files in `dir` (not below it) that an apply killed mid-write left behind: of
/// fhirflow's naming pattern, regular files, and written by a process that is gone, by this
/// process's id (so by an earlier holder of it), or over [`LEFTOVER_AGE`] ago.
pub(super) fn leftover_temp_files(dir: &Path) -> Result<Vec<std::ffi::OsString>, Error> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(Error::Io { path: dir.to_owned(), action: "read", source }),
    };
    let mut found = Vec::new();
    for entry in entries.filter_map(Result::ok) {
        let Some(pid) = temp_pid(&entry.file_name().to_string_lossy()) else { continue };
        let Ok(metadata) = entry.metadata() else { continue };
        if !metadata.file_type().is_file() {
            continue;
        }
        let old = metadata.modified().ok().and_then(|t| t.elapsed().ok()).is_some_and(|age| age > LEFTOVER_AGE);
        if pid == std::process::id() || !crate::run::store::process_alive(pid) || old {
            found.push(entry.file_name());
        }
    }
    found.sort();
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A process id that was just in use and is not any more.
    fn dead_pid() -> u32 {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        pid
    }

    #[test]
    fn temp_names_read_back_and_nothing_else_does() {
        assert_eq!(temp_pid(&temp_name("s3_upload.py", 4242)), Some(4242));
        assert_eq!(temp_pid(".staging_models.yml.fhirflow-7.tmp"), Some(7));
        for other in [
            "s3_upload.py.fhirflow-1.tmp",
            ".s3_upload.py.fhirflow-.tmp",
            ".s3_upload.py.fhirflow-1a.tmp",
            ".s3_upload.py.fhirflow-1.tmp~",
            ".fhirflow-1.tmp",
            "..fhirflow-1.tmp",
            ".s3_upload.py.tmp",
            ".s3_upload.py.fhirflow-99999999999.tmp",
        ] {
            assert_eq!(temp_pid(other), None, "{other}");
        }
    }

    #[test]
    fn only_temp_files_of_gone_or_stuck_writers_are_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        let mut live = std::process::Command::new("sleep").arg("60").spawn().unwrap();
        let touch = |name: &str| {
            std::fs::write(dir.path().join(name), "half a file").unwrap();
            name.to_owned()
        };
        let dead = touch(&temp_name("a.py", dead_pid()));
        let mine = touch(&temp_name("b.py", std::process::id()));
        let busy = touch(&temp_name("c.py", live.id()));
        let stuck = touch(&temp_name("d.py", live.id()));
        let an_hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        std::fs::File::options().write(true).open(dir.path().join(&stuck)).unwrap().set_modified(an_hour_ago).unwrap();
        touch(".a.py.tmp");
        touch("a.py");
        std::fs::create_dir(dir.path().join(temp_name("e.py", dead_pid()))).unwrap();
        let found = leftover_temp_files(dir.path()).unwrap();
        let _ = live.kill();
        let _ = live.wait();
        let mut expected: Vec<std::ffi::OsString> = [dead, mine, stuck].into_iter().map(Into::into).collect();
        expected.sort();
        assert_eq!(found, expected, "{busy} belongs to a running apply");
        assert!(leftover_temp_files(&dir.path().join("missing")).unwrap().is_empty());
    }
}
