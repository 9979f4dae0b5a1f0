//! The apply journal, which makes an apply all-or-nothing across files.
//!
//! Each file is written atomically (a temporary file renamed over it), but a set of files is
//! not: an apply killed between two renames would leave a new sensor waiting for a task that
//! only the new version of another DAG has. So `apply` first writes every new file beside its
//! target, then this journal listing the renames and removals, then carries them out, then
//! deletes the journal. A journal found later is an apply killed in between: the staged files
//! are all there, and the next `apply` completes the set before planning anything else.

use crate::error::Error;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The journal's file name, in the layout root.
pub const FILE_NAME: &str = ".fhirflow-apply.journal";

/// What an apply was about to do when it wrote the journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Journal {
    /// The journal's own format.
    pub format_version: String,
    /// The process that wrote it.
    pub pid: u32,
    /// Staged files and where they go, relative to the layout root.
    pub renames: Vec<Rename>,
    /// Files to delete, relative to the layout root.
    pub removes: Vec<PathBuf>,
}

/// One staged file and its target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rename {
    /// The staged temporary file.
    pub from: PathBuf,
    /// The file it replaces or creates.
    pub to: PathBuf,
}

impl Journal {
    /// A journal for this process.
    pub(super) fn new(renames: Vec<Rename>, removes: Vec<PathBuf>) -> Self {
        Self { format_version: "1.0".to_owned(), pid: std::process::id(), renames, removes }
    }

    /// The journal in `root`, if an apply left one.
    pub fn read(root: &Path) -> Result<Option<Self>, Error> {
        let path = root.join(FILE_NAME);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(Error::Io { path, action: "read", source }),
        };
        serde_json::from_str(&text).map(Some).map_err(|e| Error::Refused {
            path,
            reason: format!(
                "it is not a journal fhirflow can read ({e}); it records an interrupted apply: delete it and rerun apply to rewrite every file"
            ),
        })
    }

    /// Whether `path` (relative to the root) is one of the staged files.
    pub fn stages(&self, path: &Path) -> bool {
        self.renames.iter().any(|r| r.from == path)
    }

    /// Whether the apply that wrote it may still be running, rather than killed.
    pub fn writer_running(&self) -> bool {
        self.pid != std::process::id() && crate::run::store::process_alive(self.pid)
    }

    /// Writes the journal into `root`, durably, before the first rename.
    pub(super) fn write(&self, root: &Path) -> Result<(), Error> {
        let text = serde_json::to_string_pretty(self).unwrap_or_default();
        super::write_atomically(&root.join(FILE_NAME), &text)?;
        sync_dir(root)
    }

    /// Carries out the renames and removals, then deletes the journal; how many files changed.
    /// A rename whose staged file is gone was done before the apply was killed.
    pub fn complete(&self, root: &Path) -> Result<usize, Error> {
        let mut done = 0;
        let mut dirs = std::collections::BTreeSet::new();
        for rename in &self.renames {
            let (from, to) = (root.join(&rename.from), root.join(&rename.to));
            match std::fs::rename(&from, &to) {
                Ok(()) => done += 1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && !from.exists() => {}
                Err(source) => return Err(Error::Io { path: to, action: "write", source }),
            }
            dirs.extend(to.parent().map(Path::to_owned));
        }
        for remove in &self.removes {
            let path = root.join(remove);
            match std::fs::remove_file(&path) {
                Ok(()) => done += 1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(Error::Io { path, action: "remove", source }),
            }
            dirs.extend(path.parent().map(Path::to_owned));
        }
        for dir in &dirs {
            sync_dir(dir)?;
        }
        let path = root.join(FILE_NAME);
        std::fs::remove_file(&path).map_err(|source| Error::Io { path, action: "remove", source })?;
        sync_dir(root)?;
        Ok(done)
    }
}

/// Flushes a folder's entries, so that renames in it survive a crash in the order made.
fn sync_dir(dir: &Path) -> Result<(), Error> {
    let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
    std::fs::File::open(dir).and_then(|f| f.sync_all()).map_err(|source| Error::Io {
        path: dir.to_owned(),
        action: "write",
        source,
    })
}

/// An exclusive lock on the layout root, held while an apply writes, so that two applies into
/// one folder take turns and one never completes the other's journal while it is working.
pub(super) struct RootLock(#[allow(dead_code)] std::fs::File);

impl RootLock {
    /// Waits for the lock on `root`, creating the folder first.
    pub(super) fn acquire(root: &Path) -> Result<Self, Error> {
        let dir = if root.as_os_str().is_empty() { Path::new(".") } else { root };
        let io = |action| move |source| Error::Io { path: dir.to_owned(), action, source };
        std::fs::create_dir_all(dir).map_err(io("create"))?;
        let file = std::fs::File::open(dir).map_err(io("read"))?;
        file.lock().map_err(io("lock"))?;
        Ok(Self(file))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completing_a_journal_renames_what_is_staged_and_skips_what_was_done() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir(root.join("dags")).unwrap();
        std::fs::write(root.join("dags/.a.py.fhirflow-1.tmp"), "new a").unwrap();
        std::fs::write(root.join("dags/a.py"), "old a").unwrap();
        std::fs::write(root.join("dags/b.py"), "new b, renamed before the kill").unwrap();
        std::fs::write(root.join("dags/gone.py"), "stale").unwrap();
        let journal = Journal::new(
            vec![
                Rename { from: "dags/.a.py.fhirflow-1.tmp".into(), to: "dags/a.py".into() },
                Rename { from: "dags/.b.py.fhirflow-1.tmp".into(), to: "dags/b.py".into() },
            ],
            vec!["dags/gone.py".into(), "dags/never.py".into()],
        );
        journal.write(root).unwrap();
        assert_eq!(Journal::read(root).unwrap().as_ref(), Some(&journal));
        assert!(journal.stages(Path::new("dags/.a.py.fhirflow-1.tmp")));
        assert_eq!(journal.complete(root).unwrap(), 2);
        assert_eq!(std::fs::read_to_string(root.join("dags/a.py")).unwrap(), "new a");
        assert_eq!(std::fs::read_to_string(root.join("dags/b.py")).unwrap(), "new b, renamed before the kill");
        assert!(!root.join("dags/gone.py").exists());
        assert_eq!(Journal::read(root).unwrap(), None);
    }

    #[test]
    fn an_unreadable_journal_is_refused_with_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE_NAME), "{not json").unwrap();
        let message = Journal::read(dir.path()).unwrap_err().to_string();
        assert!(message.contains("interrupted apply") && message.contains("delete it"), "{message}");
    }
}
