//! Reading a dbt project: `dbt_project.yml`, the profile's default target, and the models.

use super::{identifier_from, invalid, relative, resolve, usable_relative_path};
use crate::diagnostic::Diagnostic;
use crate::error::Error;
use crate::source::{SourceFile, Span};
use crate::spec::{Identifier, ModelName};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};
use std::sync::LazyLock;

/// What the starter spec is built from.
#[derive(Debug)]
pub(super) struct Project {
    /// The dbt project's `name`, as written.
    pub name: String,
    /// The name as an identifier, for pipeline ids.
    pub ident: String,
    /// The profile's default target, when `profiles.yml` names one that is an identifier.
    pub target: Option<String>,
    /// Whether the project has a `selectors.yml` of its own (not one fhirflow generated).
    pub own_selectors: bool,
    /// The layers, in the order they build in (a layer after the layers its models reference).
    pub layers: Vec<Layer>,
    /// What was left out, and why.
    pub skipped: Vec<String>,
    /// What to check by hand.
    pub notes: Vec<String>,
}

/// One layer of the starter spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Layer {
    /// The layer's name: an identifier.
    pub name: String,
    /// Its folder, relative to the project, with `/` between parts.
    pub path: String,
    /// Whether it holds the models directly in a model path rather than in a folder.
    pub root: bool,
    /// Its models, sorted.
    pub models: Vec<String>,
    /// Whether the project's own properties files document some of its models, so that the
    /// spec leaves its properties to the project (`properties: project`).
    pub project_properties: bool,
}

/// How `init` learns dbt's graph.
#[derive(Debug, Clone, Default)]
pub struct GraphSource {
    /// Run `dbt parse` first, with this dbt executable, to write `target/manifest.json`.
    pub parse_with: Option<String>,
}

/// The keys of `dbt_project.yml` that `init` reads; the others are ignored.
#[derive(Debug, Deserialize)]
struct DbtProjectFile {
    name: Option<String>,
    profile: Option<String>,
    #[serde(rename = "model-paths")]
    model_paths: Option<Vec<String>>,
    /// The name of `model-paths` before dbt 1.0.
    #[serde(rename = "source-paths")]
    source_paths: Option<Vec<String>>,
    /// Model configs by project and folder, for `enabled: false`.
    models: Option<serde_json::Value>,
}

/// What is known of each model before its layer is built.
struct Known {
    /// The project's name as written, the first key of the `models:` config tree.
    project: String,
    /// `models:` of `dbt_project.yml`.
    models_config: Option<serde_json::Value>,
    /// What the project's properties files say.
    properties: super::declared::Properties,
    /// What dbt's manifest says, when there is one.
    manifest: Option<super::graph::Facts>,
}

/// Reads the project in `dbt_dir`.
pub(super) fn read(dbt_dir: &Path, graph: &GraphSource) -> Result<Project, Error> {
    let file_path = dbt_dir.join("dbt_project.yml");
    let text = match std::fs::read_to_string(&file_path) {
        Ok(text) => text,
        Err(e) if matches!(e.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory) => {
            let what = if dbt_dir.is_dir() {
                "has no dbt_project.yml"
            } else if dbt_dir.exists() {
                "is not a folder"
            } else {
                "does not exist"
            };
            return Err(invalid(
                Diagnostic::error(
                    "not-a-dbt-project",
                    format!("{} {what}: it is not a dbt project", dbt_dir.display()),
                )
                .help("pass the dbt project's folder: the one that holds dbt_project.yml"),
            ));
        }
        Err(source) => return Err(Error::Io { path: file_path, action: "read", source }),
    };
    let file = SourceFile::new(file_path.display().to_string(), text);
    let parsed: DbtProjectFile = if file.text.trim().is_empty() {
        DbtProjectFile { name: None, profile: None, model_paths: None, source_paths: None, models: None }
    } else {
        serde_saphyr::from_str(&file.text).map_err(|e| invalid(yaml_error(&file, &e)))?
    };
    let Some(name) = parsed.name.filter(|n| !n.trim().is_empty()) else {
        return Err(invalid(
            Diagnostic::error("bad-dbt-project", "dbt_project.yml has no `name`")
                .at(Some(Span::at(&file, 0, 0)), "")
                .help("dbt needs it too: add `name: my_project`"),
        ));
    };

    let mut project = Project {
        ident: identifier_from(&name, 128),
        name,
        target: None,
        own_selectors: std::fs::read_to_string(dbt_dir.join("selectors.yml"))
            .is_ok_and(|text| crate::emit::header::read(&text).is_none()),
        layers: Vec::new(),
        skipped: Vec::new(),
        notes: Vec::new(),
    };
    project.target = default_target(dbt_dir, parsed.profile.as_deref(), &mut project.notes);
    let model_paths = parsed.model_paths.or(parsed.source_paths).unwrap_or_else(|| vec!["models".to_owned()]);
    let manifest = super::graph::facts(dbt_dir, graph, project.target.as_deref(), &mut project.notes)?;
    let known = Known {
        project: project.name.clone(),
        models_config: parsed.models,
        properties: super::declared::properties(dbt_dir, &model_paths, &mut project.notes),
        manifest,
    };
    project.layers = layers(dbt_dir, &model_paths, &project.ident, &known, &mut project.skipped, &mut project.notes)?;
    Ok(project)
}

/// A diagnostic for a `dbt_project.yml` that serde-saphyr could not read.
fn yaml_error(file: &std::sync::Arc<SourceFile>, err: &serde_saphyr::Error) -> Diagnostic {
    let message = err.without_snippet().to_string();
    let message = message.lines().next().unwrap_or_default().trim();
    let message = match message.rfind(" at line ") {
        Some(i) if message[i..].contains(", column ") => &message[..i],
        _ => message,
    };
    let span = err.location().filter(|l| l.line() > 0).map(|l| {
        let start = file.offset(l.line() as usize, (l.column() as usize).max(1));
        Span::at(file, start, 1)
    });
    Diagnostic::error("bad-dbt-project", format!("cannot read dbt_project.yml: {message}"))
        .at(span, "")
        .help("fix dbt_project.yml so that dbt itself can read it")
}

/// The default target of `profile` in the project's `profiles.yml`, when it is an identifier.
fn default_target(dbt_dir: &Path, profile: Option<&str>, notes: &mut Vec<String>) -> Option<String> {
    let Some(profile) = profile else {
        notes.push("dbt_project.yml names no `profile`, so `dbt.target` is left out".to_owned());
        return None;
    };
    let path = dbt_dir.join("profiles.yml");
    let Ok(text) = std::fs::read_to_string(&path) else {
        notes.push(
            "the dbt project has no readable profiles.yml: `dbt.profiles_dir` points at the project; \
             point it at the folder that holds profiles.yml, and set `dbt.target`"
                .to_owned(),
        );
        return None;
    };
    let profiles: serde_json::Value = match serde_saphyr::from_str(&text) {
        Ok(value) => value,
        Err(e) => {
            let message = e.without_snippet().to_string();
            let message = message.lines().next().unwrap_or_default().trim().to_owned();
            notes.push(format!("cannot read profiles.yml ({message}), so `dbt.target` is left out"));
            return None;
        }
    };
    match profiles.get(profile).and_then(|p| p.get("target")) {
        Some(serde_json::Value::String(target)) if Identifier::new(target.as_str()).is_ok() => Some(target.clone()),
        Some(target) => {
            notes.push(format!(
                "the default target of profile `{profile}` in profiles.yml, {target}, is not a plain name, \
                 so `dbt.target` is left out"
            ));
            None
        }
        None => {
            notes.push(format!(
                "profiles.yml has no default `target` for profile `{profile}`, so `dbt.target` is left out"
            ));
            None
        }
    }
}

/// A `.sql` file found under a model path.
#[derive(Debug)]
struct Found {
    /// Its file stem, if UTF-8.
    stem: Option<String>,
    /// Its path from the project, for messages.
    display: String,
    /// The models it `ref()`s.
    refs: Vec<String>,
    /// Its folders beneath the model path.
    folders: Vec<String>,
    /// Whether its own `config()` disables it.
    disabled: bool,
}

/// A layer before its models are checked and it is named.
struct Candidate {
    /// The folder's name, or `None` for the models directly in a model path.
    folder: Option<std::ffi::OsString>,
    /// The folder, relative to the project, if it can be written in a spec.
    path: Option<String>,
    /// The folder, for messages.
    display: String,
    found: Vec<Found>,
}

/// The layers of the project: one per top-level folder of each model path, plus one named after
/// the project for the models directly in a model path; in build order.
fn layers(
    dbt_dir: &Path,
    model_paths: &[String],
    project_ident: &str,
    known: &Known,
    skipped: &mut Vec<String>,
    notes: &mut Vec<String>,
) -> Result<Vec<Layer>, Error> {
    let mut candidates = Vec::new();
    let mut visited = BTreeSet::new();
    let project_abs =
        resolve(dbt_dir).map_err(|source| Error::Io { path: dbt_dir.to_owned(), action: "read", source })?;
    for model_path in model_paths {
        let base = dbt_dir.join(model_path);
        if !base.is_dir() {
            notes.push(format!(
                "the model path `{model_path}` of dbt_project.yml is not a folder; nothing is read from it"
            ));
            continue;
        }
        // The model path as the spec writes it: relative to the project, `/` between parts.
        let base_text = if Path::new(model_path).is_absolute() {
            resolve(&base).ok().and_then(|abs| relative(&project_abs, &abs))
        } else {
            lexical(model_path)
        };
        let display = model_path.trim_end_matches('/').to_owned();
        if let Ok(canonical) = base.canonicalize() {
            visited.insert(canonical);
        }
        let mut root =
            Candidate { folder: None, path: base_text.clone(), display: format!("{display}/"), found: Vec::new() };
        let mut folders = Vec::new();
        for entry in sorted_entries(&base)? {
            let name = entry.file_name().unwrap_or_default().to_owned();
            let shown = format!("{display}/{}", name.to_string_lossy());
            match std::fs::metadata(&entry) {
                Ok(meta) if meta.is_dir() => {
                    let mut candidate = Candidate {
                        path: match (&base_text, name.to_str()) {
                            (Some(base), Some(folder)) if base == "." => Some(folder.to_owned()),
                            (Some(base), Some(folder)) => Some(format!("{base}/{folder}")),
                            _ => None,
                        },
                        folder: Some(name),
                        display: format!("{shown}/"),
                        found: Vec::new(),
                    };
                    let inner =
                        [candidate.folder.as_ref().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default()];
                    walk(&entry, &shown, &inner, &mut candidate.found, &mut visited, skipped)?;
                    folders.push(candidate);
                }
                Ok(meta) if meta.is_file() && is_sql(&entry) => root.found.push(model_file(&entry, shown, &[])?),
                Ok(_) => {}
                Err(e) => skipped.push(format!("{shown}: cannot be read ({e})")),
            }
        }
        // The models directly in the model path are found first; their layer comes first.
        if !root.found.is_empty() {
            candidates.push(root);
        }
        candidates.extend(folders);
    }
    let layers = name_layers(candidates, project_ident, known, skipped);
    if layers.len() > 1 && known.manifest.is_none() {
        notes.push(
            "no target/manifest.json: the layers are ordered by the ref()s written in the models' SQL, and \
             a ref() that a macro makes is not seen; run `dbt parse` first, or pass --parse, to order them \
             by dbt's graph"
                .to_owned(),
        );
    }
    Ok(build_order(layers, notes))
}

/// Checks each candidate's models, names the layers and drops the empty ones.
fn name_layers(
    candidates: Vec<Candidate>,
    project_ident: &str,
    known: &Known,
    skipped: &mut Vec<String>,
) -> Vec<(Layer, Vec<String>)> {
    let mut seen_models: BTreeMap<String, String> = BTreeMap::new();
    let mut names: BTreeSet<String> = BTreeSet::new();
    let mut layers = Vec::new();
    for candidate in candidates {
        let Some(path) = candidate.path.filter(|p| usable_relative_path(p)) else {
            skipped.push(format!(
                "{}: its path cannot be written in a spec (not UTF-8, or a control character), so it is no layer",
                candidate.display
            ));
            continue;
        };
        let mut models = Vec::new();
        let mut refs = Vec::new();
        let mut project_properties = false;
        for found in candidate.found {
            let Some(stem) = found.stem.clone() else {
                skipped.push(format!("{}: the file name is not UTF-8", found.display));
                continue;
            };
            if ModelName::new(stem.as_str()).is_err() {
                skipped.push(format!(
                    "{}: `{stem}` is not a model name fhirflow accepts (letters, digits and underscores, \
                     not starting with a digit)",
                    found.display
                ));
                continue;
            }
            if let Some(why) = disabled(known, &found, &stem) {
                skipped.push(format!("{}: the model is disabled ({why})", found.display));
                continue;
            }
            if let Some(first) = seen_models.get(&stem) {
                skipped.push(format!("{}: the model `{stem}` is already {first}", found.display));
                continue;
            }
            seen_models.insert(stem.clone(), found.display);
            // dbt's graph, when there is a manifest, sees the ref()s that macros make.
            match known.manifest.as_ref().and_then(|m| m.depends.get(&stem)) {
                Some(depends) => refs.extend(depends.iter().cloned()),
                None => refs.extend(found.refs),
            }
            if known.properties.documented.contains_key(&stem)
                || known.manifest.as_ref().is_some_and(|m| m.documented.contains(&stem))
            {
                project_properties = true;
            }
            models.push(stem);
        }
        if models.is_empty() {
            skipped.push(format!("{}: no usable .sql model in it, so it is no layer", candidate.display));
            continue;
        }
        models.sort();
        let base = match &candidate.folder {
            Some(folder) => identifier_from(&folder.to_string_lossy(), 128),
            None => project_ident.to_owned(),
        };
        let name = unique_name(&base, &names);
        names.insert(name.clone());
        layers.push((Layer { name, path, root: candidate.folder.is_none(), models, project_properties }, refs));
    }
    layers
}

/// Why the model `stem` in `found` is disabled, if it is: by its `config()`, by a properties
/// file, or by `dbt_project.yml`.
fn disabled(known: &Known, found: &Found, stem: &str) -> Option<String> {
    if found.disabled {
        return Some("`enabled=false` in its config()".to_owned());
    }
    if let Some(file) = known.properties.disabled.get(stem) {
        return Some(format!("`enabled: false` in {file}"));
    }
    super::declared::disabled_by_project(known.models_config.as_ref(), &known.project, &found.folders, stem)
        .then(|| "`enabled: false` in dbt_project.yml".to_owned())
}

/// `base`, or `base_2`, `base_3`, … cut to fit 128 characters, whichever is not taken.
fn unique_name(base: &str, taken: &BTreeSet<String>) -> String {
    if !taken.contains(base) {
        return base.to_owned();
    }
    (2..)
        .map(|n| {
            let suffix = format!("_{n}");
            let mut name = base.to_owned();
            name.truncate(128 - suffix.len());
            name + &suffix
        })
        .find(|name| !taken.contains(name))
        .expect("some suffix is free")
}

/// The layers in build order: each after the layers whose models its models `ref()`, ties
/// broken by the order they were found in. Layers that reference each other keep that order,
/// with a note.
fn build_order(layers: Vec<(Layer, Vec<String>)>, notes: &mut Vec<String>) -> Vec<Layer> {
    let layer_of: BTreeMap<&str, usize> = layers
        .iter()
        .enumerate()
        .flat_map(|(i, (layer, _))| layer.models.iter().map(move |m| (m.as_str(), i)))
        .collect();
    let needs: Vec<BTreeSet<usize>> = layers
        .iter()
        .enumerate()
        .map(|(i, (_, refs))| {
            refs.iter().filter_map(|r| layer_of.get(r.as_str()).copied()).filter(|&j| j != i).collect()
        })
        .collect();
    let mut done: Vec<bool> = vec![false; layers.len()];
    let mut order = Vec::with_capacity(layers.len());
    while order.len() < layers.len() {
        let ready = (0..layers.len()).find(|&i| !done[i] && needs[i].iter().all(|&j| done[j]));
        let next = ready.unwrap_or_else(|| {
            let i = (0..layers.len()).find(|&i| !done[i]).expect("a layer is left");
            let waiting: Vec<&str> =
                needs[i].iter().filter(|&&j| !done[j]).map(|&j| layers[j].0.name.as_str()).collect();
            notes.push(format!(
                "models of layer `{}` reference models of {} and the other way round; the layered pipeline \
                 builds `{}` first: check the order",
                layers[i].0.name,
                waiting.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", "),
                layers[i].0.name
            ));
            i
        });
        done[next] = true;
        order.push(next);
    }
    let mut slots: Vec<Option<Layer>> = layers.into_iter().map(|(layer, _)| Some(layer)).collect();
    order.into_iter().map(|i| slots[i].take().expect("each layer is placed once")).collect()
}

/// Every `.sql` file beneath `dir`, depth first, in name order. A folder reached twice (through
/// a symbolic link) is read once.
fn walk(
    dir: &Path,
    display: &str,
    folders: &[String],
    found: &mut Vec<Found>,
    visited: &mut BTreeSet<PathBuf>,
    skipped: &mut Vec<String>,
) -> Result<(), Error> {
    match dir.canonicalize() {
        Ok(canonical) => {
            if !visited.insert(canonical) {
                skipped.push(format!("{display}/: already read through another path (a symbolic link)"));
                return Ok(());
            }
        }
        Err(source) => return Err(Error::Io { path: dir.to_owned(), action: "read", source }),
    }
    for entry in sorted_entries(dir)? {
        let shown = format!("{display}/{}", entry.file_name().unwrap_or_default().to_string_lossy());
        match std::fs::metadata(&entry) {
            Ok(meta) if meta.is_dir() => {
                let mut inner = folders.to_vec();
                inner.push(entry.file_name().unwrap_or_default().to_string_lossy().into_owned());
                walk(&entry, &shown, &inner, found, visited, skipped)?;
            }
            Ok(meta) if meta.is_file() && is_sql(&entry) => found.push(model_file(&entry, shown, folders)?),
            Ok(_) => {}
            Err(e) => skipped.push(format!("{shown}: cannot be read ({e})")),
        }
    }
    Ok(())
}

/// The entries of `dir`, sorted by name.
fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let io = |source| Error::Io { path: dir.to_owned(), action: "read", source };
    let mut entries = std::fs::read_dir(dir)
        .map_err(io)?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(io)?;
    entries.sort();
    Ok(entries)
}

fn is_sql(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "sql")
}

/// A model file in `folders` beneath its model path: its stem, the models it references and
/// whether its `config()` disables it.
fn model_file(path: &Path, display: String, folders: &[String]) -> Result<Found, Error> {
    let bytes = std::fs::read(path).map_err(|source| Error::Io { path: path.to_owned(), action: "read", source })?;
    let sql = String::from_utf8_lossy(&bytes);
    Ok(Found {
        stem: path.file_stem().and_then(|s| s.to_str()).map(str::to_owned),
        display,
        refs: refs(&sql),
        folders: folders.to_vec(),
        disabled: super::declared::disabled_in_sql(&sql),
    })
}

/// The models a model's SQL `ref()`s: `ref('m')`, `ref("m")`, `ref('package', 'm')`,
/// `ref('m', v=2)`.
fn refs(sql: &str) -> Vec<String> {
    static REF: LazyLock<regex::Regex> = LazyLock::new(|| {
        regex::Regex::new(r#"\bref\s*\(\s*['"]([^'"]*)['"](?:\s*,\s*['"]([^'"]*)['"])?"#).expect("pattern is valid")
    });
    REF.captures_iter(sql).filter_map(|c| c.get(2).or_else(|| c.get(1)).map(|m| m.as_str().to_owned())).collect()
}

/// A relative path with `.` dropped and `a/..` folded, `/` between parts; `.` when nothing is
/// left; `None` when not UTF-8.
fn lexical(path: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for component in Path::new(path).components() {
        match component {
            Component::ParentDir if parts.last().is_some_and(|p| *p != "..") => {
                parts.pop();
            }
            Component::ParentDir => parts.push(".."),
            Component::Normal(name) => parts.push(name.to_str()?),
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
        }
    }
    Some(if parts.is_empty() { ".".to_owned() } else { parts.join("/") })
}
