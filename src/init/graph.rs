//! dbt's own graph of the project, from `target/manifest.json` (written first by `dbt parse`
//! with `--parse`): which models each model depends on, macros' `ref()`s included, and which
//! models a properties file documents.

use super::invalid;
use super::project::GraphSource;
use crate::dbt::{DbtVersion, ParseCommand, ResourceType, read_manifest};
use crate::diagnostic::Diagnostic;
use crate::error::Error;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// What the manifest says about the root project's models.
#[derive(Debug, Default)]
pub(super) struct Facts {
    /// Model name → the names of the root project's models it depends on.
    pub depends: BTreeMap<String, Vec<String>>,
    /// The models with an entry in a properties file (`patch_path`).
    pub documented: BTreeSet<String>,
}

/// The manifest's facts, after `dbt parse` when `source` asks for it; `None`, with a note, when
/// there is no manifest or it cannot be read.
///
/// # Errors
///
/// `Error::Invalid` (code `dbt-parse-failed`) when `dbt parse` was asked for and failed.
pub(super) fn facts(
    dbt_dir: &Path,
    source: &GraphSource,
    target: Option<&str>,
    notes: &mut Vec<String>,
) -> Result<Option<Facts>, Error> {
    if let Some(program) = &source.parse_with {
        let profiles_dir =
            if dbt_dir.join("profiles.yml").is_file() { dbt_dir.to_owned() } else { default_profiles_dir() };
        let command = ParseCommand {
            program: program.clone(),
            project_dir: dbt_dir.to_owned(),
            profiles_dir,
            target: target.map(str::to_owned),
        };
        command.run().map_err(|e| {
            invalid(
                Diagnostic::error("dbt-parse-failed", e.to_string())
                    .help("fix what dbt reports, or run init without --parse"),
            )
        })?;
    }
    let path = dbt_dir.join("target").join("manifest.json");
    if !path.is_file() {
        return Ok(None);
    }
    let range = DbtVersion::parse(">=1.7").expect("the range is valid");
    let manifest = match read_manifest(&path, &range) {
        Ok(manifest) => manifest,
        Err(e) => {
            notes.push(format!("target/manifest.json is not used ({e})"));
            return Ok(None);
        }
    };
    let root = manifest.project_name.clone();
    let models: Vec<_> = manifest
        .nodes()
        .filter(|n| n.resource_type == ResourceType::Model && root.as_deref().is_none_or(|r| n.package_name == r))
        .collect();
    let name_of: BTreeMap<&str, &str> = models.iter().map(|n| (n.unique_id.as_str(), n.name.as_str())).collect();
    let mut facts = Facts::default();
    for node in &models {
        let depends = node.depends_on.iter().filter_map(|d| name_of.get(d.as_str())).map(|n| (*n).to_owned());
        facts.depends.insert(node.name.clone(), depends.collect());
        if node.patch_path.as_deref().is_some_and(|p| !generated_by_fhirflow(dbt_dir, p)) {
            facts.documented.insert(node.name.clone());
        }
    }
    Ok(Some(facts))
}

/// dbt's own default for `--profiles-dir`: `~/.dbt`.
fn default_profiles_dir() -> std::path::PathBuf {
    std::env::var_os("HOME").map_or_else(|| std::path::PathBuf::from(".dbt"), |home| Path::new(&home).join(".dbt"))
}

/// Whether the properties file of a `patch_path` (`<package>://<path>`) is one fhirflow wrote.
fn generated_by_fhirflow(dbt_dir: &Path, patch_path: &str) -> bool {
    let relative = patch_path.split_once("://").map_or(patch_path, |(_, p)| p);
    std::fs::read_to_string(dbt_dir.join(relative)).is_ok_and(|text| crate::emit::header::read(&text).is_some())
}
