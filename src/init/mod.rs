//! `fhirflow init --from-dbt DIR`: a starter spec read off an existing dbt project.
//!
//! [`starter_spec`] reads `dbt_project.yml` (and `profiles.yml`, if the project has one) and the
//! model folders, and builds the text of a spec with one layer per top-level model folder, a
//! nightly `dbt build` pipeline and a layered one. What the project already says is kept: a
//! layer with a model in the project's own properties files is `properties: project` (fhirflow
//! writes no second entry, which dbt refuses), disabled models are left out, and with
//! `target/manifest.json` the layers follow dbt's graph (docs/init-from-dbt.md). The text is built line by line, every value a
//! double-quoted scalar, so the same project gives the same bytes on every run; and it is
//! compiled before it is returned, so it validates at once.

mod declared;
mod graph;
mod project;
mod text;

pub use project::GraphSource;

#[cfg(test)]
mod tests;

use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::error::Error;
use std::path::{Component, Path, PathBuf};

/// The file name of the schema that `init` writes beside the spec, and that the spec's
/// modeline points at.
pub const SCHEMA_FILE_NAME: &str = "pipeline.schema.json";

/// A starter spec and the schema file that goes with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StarterSpec {
    /// The spec, to write to the `spec_path` given to [`starter_spec`].
    pub text: String,
    /// Where the schema goes: `pipeline.schema.json` beside the spec. The spec's first line
    /// (`# yaml-language-server: $schema=pipeline.schema.json`) points at it.
    pub schema_path: PathBuf,
    /// The schema, as `fhirflow schema` prints it.
    pub schema_text: String,
    /// What was left out of the spec, and why: models whose names fhirflow cannot use, models
    /// whose name another model already has, folders with no usable model. One line each,
    /// such as ``models/staging/stg-x.sql: `stg-x` is not a model name fhirflow accepts …``.
    pub skipped: Vec<String>,
    /// Things to check by hand: no `profiles.yml` in the project, a target that could not be
    /// read, layers that reference each other. One line each.
    pub notes: Vec<String>,
}

/// Reads the dbt project in `dbt_dir` and builds a starter spec for a spec file at `spec_path`
/// (which need not exist yet; paths in the spec are relative to its folder). Writes nothing.
///
/// # Errors
///
/// `Error::Invalid` when `dbt_dir` holds no readable `dbt_project.yml` (code
/// `not-a-dbt-project`), when that file is not valid YAML or has no `name` (`bad-dbt-project`),
/// or when a path cannot be written in a spec (`unusable-path`); `Error::Io` when a file or
/// folder exists but cannot be read.
pub fn starter_spec(dbt_dir: &Path, spec_path: &Path) -> Result<StarterSpec, Error> {
    starter_spec_from(dbt_dir, spec_path, &GraphSource::default())
}

/// [`starter_spec`], with dbt's graph from `graph`: `dbt parse` run first when it says so, and
/// `target/manifest.json` read when there is one.
///
/// # Errors
///
/// As [`starter_spec`]; also `Error::Invalid` (code `dbt-parse-failed`) when `dbt parse` fails.
pub fn starter_spec_from(dbt_dir: &Path, spec_path: &Path, graph: &GraphSource) -> Result<StarterSpec, Error> {
    let Some(spec_name) = spec_path.file_name() else {
        return Err(invalid(
            Diagnostic::error("unusable-path", format!("`{}` is not a file path", spec_path.display()))
                .help("name the spec file to write, such as pipelines/dbt.yaml"),
        ));
    };
    if spec_name == SCHEMA_FILE_NAME {
        return Err(invalid(
            Diagnostic::error("unusable-path", format!("the spec cannot be called {SCHEMA_FILE_NAME}")).help(format!(
                "`init` writes the schema to {SCHEMA_FILE_NAME} beside the spec; name the spec otherwise"
            )),
        ));
    }
    let project = project::read(dbt_dir, graph)?;

    let dbt_abs = resolve(dbt_dir).map_err(|source| Error::Io { path: dbt_dir.to_owned(), action: "read", source })?;
    // The spec's folder, not the spec itself: a spec that is a symbolic link is still read
    // from where it is named, as `apply` does.
    let spec_folder = match spec_path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let spec_dir =
        resolve(spec_folder).map_err(|source| Error::Io { path: spec_folder.to_owned(), action: "read", source })?;
    let spec_dir = spec_dir.as_path();
    let project_dir = relative(spec_dir, &dbt_abs)
        .filter(|p| usable_relative_path(p))
        .ok_or_else(|| {
            invalid(
                Diagnostic::error(
                    "unusable-path",
                    format!(
                        "cannot write the path from {} to the dbt project {} in a spec",
                        spec_dir.display(),
                        dbt_abs.display()
                    ),
                )
                .help("paths in a spec are relative, UTF-8, without control characters and at most 1024 characters; move the spec or the project"),
            )
        })?;

    let text = text::render(&project, &project_dir);
    let source = crate::source::SourceFile::new(spec_path.display().to_string(), text.clone());
    // The spec must validate as written; if it does not, that is a bug here, and the
    // diagnostics point into the text that would have been written.
    crate::compile(source).map_err(Error::Invalid)?;

    let schema_path = spec_path.parent().unwrap_or(Path::new("")).join(SCHEMA_FILE_NAME);
    let mut notes = project.notes;
    // Without --out, plan and apply write nothing outside the spec's folder.
    let climbs = project_dir.split('/').take_while(|p| *p == "..").count();
    if climbs > 0 {
        let mut out = spec_folder.to_path_buf();
        out.extend(std::iter::repeat_n("..", climbs));
        let out = crate::emit::Layout::new(Path::new("spec.yaml"), Some(&out)).display(Path::new(""));
        notes.push(format!(
            "the dbt project is outside the spec's folder, and without --out nothing is written there: run plan and apply with `--out {out}`"
        ));
    }
    Ok(StarterSpec {
        text,
        schema_path,
        schema_text: crate::validate::schema::to_text(),
        skipped: project.skipped,
        notes,
    })
}

fn invalid(diagnostic: Diagnostic) -> Error {
    Error::Invalid(Diagnostics::from_iter([diagnostic]))
}

/// `path` made absolute with symbolic links resolved, for a path that need not exist: the
/// longest part of it that exists is canonicalized, and the rest appended with `.` and `..`
/// folded.
fn resolve(path: &Path) -> std::io::Result<PathBuf> {
    let absolute = std::path::absolute(path)?;
    let parts: Vec<Component<'_>> = absolute.components().collect();
    for existing in (1..=parts.len()).rev() {
        let head: PathBuf = parts[..existing].iter().collect();
        let Ok(mut out) = head.canonicalize() else { continue };
        for part in &parts[existing..] {
            match part {
                Component::ParentDir => {
                    out.pop();
                }
                Component::Normal(name) => out.push(name),
                Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
            }
        }
        return Ok(out);
    }
    Ok(absolute)
}

/// The path from folder `from` to `to`, both absolute and resolved, with `/` between parts;
/// `.` when they are the same. `None` when they share no root (another drive) or a part is
/// not UTF-8.
fn relative(from: &Path, to: &Path) -> Option<String> {
    let from: Vec<Component<'_>> = from.components().collect();
    let to: Vec<Component<'_>> = to.components().collect();
    if from.first() != to.first() {
        return None;
    }
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut parts: Vec<&str> = vec![".."; from.len() - common];
    for part in &to[common..] {
        match part {
            Component::Normal(name) => parts.push(name.to_str()?),
            _ => return None,
        }
    }
    Some(if parts.is_empty() { ".".to_owned() } else { parts.join("/") })
}

/// Whether `path` is a valid `RelativePath` of the spec: not absolute, no control characters,
/// 1 to 1024 characters.
fn usable_relative_path(path: &str) -> bool {
    let length = path.chars().count();
    (1..=1024).contains(&length) && !path.starts_with('/') && !path.chars().any(|c| (c as u32) < 0x20)
}

/// `raw` as an `Identifier`: every character other than an ASCII letter, digit or `_` becomes
/// `_`, a leading digit gets a `_` in front, and the result is cut to `max` characters.
fn identifier_from(raw: &str, max: usize) -> String {
    let mut name: String = raw.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        name.insert(0, '_');
    }
    name.truncate(max);
    name
}
