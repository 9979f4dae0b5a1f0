//! Saved plans, as Terraform's `plan -out` and `apply PLANFILE`: `plan --save-plan FILE`
//! records the specs, the files on disk and the new contents; `apply --plan FILE` applies
//! exactly that, and refuses before writing anything when a spec or a file changed since.

use super::{Action, Plan};
use crate::emit::header::sha256;
use crate::error::Error;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The saved plan's format.
pub const FORMAT_VERSION: &str = "1.0";

/// A plan written to a file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedPlan {
    /// The format, [`FORMAT_VERSION`].
    pub format_version: String,
    /// The spec or folder of specs planned, as given.
    pub spec: PathBuf,
    /// `--out`, as given.
    pub out: Option<PathBuf>,
    /// Every spec read, with the SHA-256 of its text.
    pub specs: Vec<HashedFile>,
    /// Every file to add, change or remove.
    pub files: Vec<SavedFile>,
}

/// A spec and the digest of its text when planned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HashedFile {
    /// Its path.
    pub path: PathBuf,
    /// SHA-256 of its text.
    pub sha256: String,
}

/// One planned file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedFile {
    /// Path under the output root.
    pub path: PathBuf,
    /// Add, change or remove.
    pub action: String,
    /// SHA-256 of what was on disk when planned; `None` when there was nothing.
    pub before: Option<String>,
    /// SHA-256 of the new contents; `None` for a removal.
    pub after: Option<String>,
    /// The new contents, which apply writes.
    pub contents: Option<String>,
}

fn hash_of(path: &Path) -> Result<Option<String>, Error> {
    Ok(super::read_existing(path)?.map(|text| sha256(&text)))
}

fn action_name(action: Action) -> &'static str {
    match action {
        Action::Add => "add",
        Action::Change => "change",
        Action::Remove => "remove",
    }
}

impl SavedPlan {
    /// Records `plan`, made from `spec` (and `out`), with the files on disk as they are now.
    pub fn of(plan: &Plan, spec: &Path, out: Option<&Path>) -> Result<Self, Error> {
        let mut specs = Vec::new();
        for path in crate::spec_paths(spec)? {
            let sha256 = hash_of(&path)?.unwrap_or_default();
            specs.push(HashedFile { path, sha256 });
        }
        let mut files = Vec::new();
        for change in &plan.changes {
            files.push(SavedFile {
                path: change.path.clone(),
                action: action_name(change.action).to_owned(),
                before: hash_of(&plan.layout.root.join(&change.path))?,
                after: change.contents.as_deref().map(sha256),
                contents: change.contents.clone(),
            });
        }
        Ok(Self {
            format_version: FORMAT_VERSION.to_owned(),
            spec: spec.to_owned(),
            out: out.map(Path::to_owned),
            specs,
            files,
        })
    }

    /// The saved plan in `path`.
    pub fn read(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_owned(),
            action: "read",
            source,
        })?;
        let saved: Self = serde_json::from_str(&text).map_err(|e| Error::Refused {
            path: path.to_owned(),
            reason: format!("it is not a plan saved by `fhirflow plan --save-plan` ({e})"),
        })?;
        if saved.format_version != FORMAT_VERSION {
            return Err(Error::Refused {
                path: path.to_owned(),
                reason: format!("it is a saved plan of format {}, not {FORMAT_VERSION}", saved.format_version),
            });
        }
        Ok(saved)
    }

    /// Fails, naming the first thing that differs, unless every spec and every planned file is
    /// as it was when the plan was saved and `plan` (made again now) is the saved plan.
    pub fn verify(&self, plan: &Plan) -> Result<(), Error> {
        let stale = |path: &Path, what: &str| Error::Refused {
            path: path.to_owned(),
            reason: format!("{what} since the plan was saved; nothing was written. Run plan again"),
        };
        let now: Vec<PathBuf> = crate::spec_paths(&self.spec)?;
        let then: Vec<&PathBuf> = self.specs.iter().map(|s| &s.path).collect();
        if now.iter().collect::<Vec<_>>() != then {
            return Err(stale(&self.spec, "its specs were added or removed"));
        }
        for spec in &self.specs {
            if hash_of(&spec.path)?.as_deref() != Some(spec.sha256.as_str()) {
                return Err(stale(&spec.path, "the spec changed"));
            }
        }
        for file in &self.files {
            let full = plan.layout.root.join(&file.path);
            if hash_of(&full)? != file.before {
                return Err(stale(&full, "the file on disk changed"));
            }
        }
        let planned: Vec<(&Path, Option<&str>)> =
            plan.changes.iter().map(|c| (c.path.as_path(), c.contents.as_deref())).collect();
        let saved: Vec<(&Path, Option<&str>)> =
            self.files.iter().map(|f| (f.path.as_path(), f.contents.as_deref())).collect();
        if planned != saved {
            return Err(stale(&plan.layout.root, "the files this fhirflow generates changed"));
        }
        Ok(())
    }

    /// Writes the saved plan to `path`.
    pub fn write(&self, path: &Path) -> Result<(), Error> {
        let mut text = serde_json::to_string_pretty(self).unwrap_or_default();
        text.push('\n');
        super::write_atomically(path, &text)
    }
}
