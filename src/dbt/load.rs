//! Getting a manifest at compile time: read `manifest.json`, or have dbt write it first.

use super::{DbtVersion, Manifest, ManifestError, Selectors};
use crate::diagnostic::Diagnostic;
use crate::parse::Document;
use crate::source::SourceFile;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Largest manifest read. dbt's manifest for 10,000 models is about 100 MB.
pub const MAX_MANIFEST_BYTES: u64 = 1024 * 1024 * 1024;

/// Why no manifest could be had.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read dbt manifest {}: {source}", path.display())]
    Read {
        /// The manifest's path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is larger than [`MAX_MANIFEST_BYTES`].
    #[error("dbt manifest {} is {size} bytes; the limit is {MAX_MANIFEST_BYTES}", path.display())]
    TooLarge {
        /// The manifest's path.
        path: PathBuf,
        /// Its size.
        size: u64,
    },
    /// The file is not a manifest fhirflow reads.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// `dbt parse` could not be started.
    #[error("cannot run `{program} parse`: {source}")]
    Spawn {
        /// The dbt executable.
        program: String,
        /// The cause.
        source: std::io::Error,
    },
    /// `dbt parse` failed.
    #[error("`dbt parse` failed ({status}):\n{output}")]
    Parse {
        /// Its exit status.
        status: String,
        /// The end of what it printed.
        output: String,
    },
}

/// Reads the manifest at `path` and checks that a dbt-core in `range` wrote it.
pub fn read_manifest(path: &Path, range: &DbtVersion) -> Result<Manifest, LoadError> {
    let read = |source| LoadError::Read { path: path.to_owned(), source };
    let size = std::fs::metadata(path).map_err(read)?.len();
    if size > MAX_MANIFEST_BYTES {
        return Err(LoadError::TooLarge { path: path.to_owned(), size });
    }
    let text = std::fs::read_to_string(path).map_err(read)?;
    Ok(Manifest::from_json_for(&text, &path.display().to_string(), range)?)
}

/// The `dbt parse` command line that writes `<project_dir>/target/manifest.json`.
#[derive(Debug, Clone)]
pub struct ParseCommand {
    /// The dbt executable.
    pub program: String,
    /// The project folder.
    pub project_dir: PathBuf,
    /// The folder holding `profiles.yml`.
    pub profiles_dir: PathBuf,
    /// `--target`, if any.
    pub target: Option<String>,
}

impl ParseCommand {
    /// Runs `dbt parse` and waits for it. dbt's output is kept for the error message only.
    pub fn run(&self) -> Result<(), LoadError> {
        let mut command = Command::new(&self.program);
        command.arg("parse").arg("--project-dir").arg(&self.project_dir).arg("--profiles-dir").arg(&self.profiles_dir);
        if let Some(target) = &self.target {
            command.arg("--target").arg(target);
        }
        let output = command.output().map_err(|source| LoadError::Spawn { program: self.program.clone(), source })?;
        if output.status.success() {
            return Ok(());
        }
        let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&output.stderr));
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(20)..].join("\n");
        Err(LoadError::Parse { status: output.status.to_string(), output: tail })
    }
}

/// Reads `<project_dir>/selectors.yml` as dbt would: no file (or an empty one) is no
/// selectors. A problem is a diagnostic located in the file.
pub fn read_selectors(project_dir: &Path) -> Result<Selectors, Vec<Diagnostic>> {
    let path = project_dir.join("selectors.yml");
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Selectors::default()),
        Err(e) => {
            return Err(vec![Diagnostic::error(
                "bad-dbt-selectors",
                format!("cannot read dbt selectors {}: {e}", path.display()),
            )]);
        }
    };
    if text.trim().is_empty() {
        return Ok(Selectors::default());
    }
    let doc = Document::parse(SourceFile::new(path.display().to_string(), text))
        .map_err(|ds| ds.sorted().into_iter().cloned().collect::<Vec<_>>())?;
    Selectors::from_value(&doc.value).map_err(|e| {
        vec![
            Diagnostic::error("bad-dbt-selectors", format!("dbt selectors: {}", e.message))
                .at(doc.span(&e.pointer), "")
                .help("see dbt's YAML selectors: union, intersection, method and value, exclude"),
        ]
    })
}
