//! fhirflow compiles one YAML pipeline spec into Airflow DAG files and dbt properties YAML.
//!
//! The stages of the compiler, each its own module:
//!
//! 1. [`parse`]: YAML text → a JSON tree with a source span for every node;
//! 2. [`validate`]: the JSON Schema check, then the typed [`spec::Spec`];
//! 3. [`graph`]: lowering to a [`graph::PipelineGraph`] of tasks, with cycles, dangling
//!    references and sensors that never line up rejected;
//! 4. backends: [`emit`] writes Airflow DAGs and dbt YAML, and [`plan`] compares them with what
//!    is on disk and applies them; [`run`] runs the graph itself, with no Airflow.
//!
//! The `fhirflow` binary is a thin layer over [`compile`], [`emit`], [`plan`] and [`run`].

pub mod dbt;
pub mod diagnostic;
pub mod emit;
pub mod error;
pub mod graph;
pub mod init;
pub mod kinds;
pub mod parse;
pub mod plan;
pub mod run;
pub mod source;
pub mod spec;
pub mod validate;

pub use error::{Error, ExitStatus};

use diagnostic::Diagnostics;
use source::SourceFile;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A compiled spec: the parsed document (for locating things), its graph and its warnings.
#[derive(Debug)]
pub struct Compiled {
    /// The parsed document.
    pub document: parse::Document,
    /// The lowered graph.
    pub graph: graph::PipelineGraph,
    /// Problems that do not stop compilation.
    pub warnings: Diagnostics,
}

/// Parses, validates and lowers one spec, reading `${VAR}` from the process environment.
pub fn compile(source: Arc<SourceFile>) -> Result<Compiled, Diagnostics> {
    compile_with_env(source, &parse::interpolate::ProcessEnvironment)
}

/// Parses, validates and lowers one spec, reading `${VAR}` from `env`.
pub fn compile_with_env(
    source: Arc<SourceFile>,
    env: &dyn parse::interpolate::Environment,
) -> Result<Compiled, Diagnostics> {
    compile_all(vec![source], env).pop().unwrap_or_else(|| Err(Diagnostics::new()))
}

/// Parses and validates one spec, up to the typed [`spec::Spec`]. Errors that still leave a spec
/// to lower (a rejected optional value, read as absent) come back beside it, so that the graph's
/// own errors are reported with them.
fn front_end(
    source: Arc<SourceFile>,
    env: &dyn parse::interpolate::Environment,
) -> Result<(parse::Document, spec::Spec, Diagnostics), Diagnostics> {
    let mut document = parse::Document::parse(source)?;
    let mut problems: Diagnostics = validate::secrets::check(&document, env).into_iter().collect();
    problems.extend(document.interpolate(env));
    problems.extend(validate::templates::check(&document));
    if problems.has_errors() {
        return Err(problems);
    }
    match validate::check_partial(&document) {
        (Some(spec), problems) => Ok((document, spec, problems)),
        (None, problems) => Err(problems),
    }
}

/// Compiles several specs as one graph: a sensor may wait for a pipeline of another spec, and
/// pipeline ids must be unique across them. One result per spec, in order.
pub fn compile_all(
    sources: Vec<Arc<SourceFile>>,
    env: &dyn parse::interpolate::Environment,
) -> Vec<Result<Compiled, Diagnostics>> {
    let mut documents = Vec::new();
    let mut specs = Vec::new();
    let mut front_ends = Vec::new();
    for source in sources {
        match front_end(source, env) {
            Ok((document, spec, problems)) => {
                documents.push(document);
                specs.push(spec);
                front_ends.push(Ok(problems));
            }
            Err(diagnostics) => front_ends.push(Err(diagnostics)),
        }
    }
    let mut lowered = graph::lower_all(specs.into_iter().zip(&documents).collect()).into_iter();
    let mut documents = documents.into_iter();
    front_ends
        .into_iter()
        .map(|front_end| {
            let mut problems = front_end?;
            let document = documents.next().ok_or_else(Diagnostics::new)?;
            let lowering = lowered.next().unwrap_or_else(|| Err(Diagnostics::new()));
            if problems.has_errors() {
                problems.extend(match lowering {
                    Ok((_, warnings)) => warnings,
                    Err(errors) => errors,
                });
                return Err(problems);
            }
            let (graph, mut warnings) = lowering?;
            warnings.extend(problems);
            Ok(Compiled { document, graph, warnings })
        })
        .collect()
}

/// The spec files that command-line paths name, and the YAML files in their folders that are not specs.
#[derive(Debug, Default)]
pub struct SpecFiles {
    /// The specs, each once: named files in order, a folder's specs sorted by path.
    pub specs: Vec<PathBuf>,
    /// YAML files found in folders (or named beside other files) without `version:` and `pipelines:`.
    pub skipped: Vec<PathBuf>,
}

/// The name `-` gives a spec read from standard input.
pub const STDIN: &str = "-";

/// Finds the specs `paths` name. A folder is searched recursively (skipping hidden folders and
/// symbolic links to folders) for `*.yaml`/`*.yml` files that are specs. A lone named file is
/// always a spec, so that its errors are shown; among several, a named file that is not a spec is
/// skipped, as `pre-commit` passes every YAML file that changed.
pub fn find_specs(paths: &[PathBuf]) -> Result<SpecFiles, Error> {
    let mut found = SpecFiles::default();
    let mut seen = std::collections::BTreeSet::new();
    let mut stdin_named = false;
    for path in paths {
        if path.as_os_str() == STDIN {
            if stdin_named {
                return Err(Error::Usage("`-` (the spec on standard input) is named twice".to_owned()));
            }
            stdin_named = true;
            found.specs.push(path.clone());
            continue;
        }
        let io = |source| Error::Io { path: path.to_owned(), action: "read", source };
        if !std::fs::metadata(path).map_err(io)?.is_dir() {
            let any_spec = paths.len() == 1 || is_spec_file(path);
            let list = if any_spec { &mut found.specs } else { &mut found.skipped };
            if seen.insert(std::fs::canonicalize(path).unwrap_or_else(|_| path.clone())) {
                list.push(path.clone());
            }
            continue;
        }
        let mut yaml = Vec::new();
        yaml_files(path, &mut yaml).map_err(io)?;
        yaml.sort();
        let before = found.specs.len();
        for file in yaml {
            if !seen.insert(std::fs::canonicalize(&file).unwrap_or_else(|_| file.clone())) {
                continue;
            }
            if is_spec_file(&file) { found.specs.push(file) } else { found.skipped.push(file) }
        }
        if found.specs.len() == before {
            return Err(Error::Io {
                path: path.to_owned(),
                action: "read",
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no specs (*.yaml or *.yml with `version:` and `pipelines:`) in this folder",
                ),
            });
        }
    }
    if found.specs.is_empty() {
        return Err(Error::Usage("none of the files named is a spec (with `version:` and `pipelines:`)".to_owned()));
    }
    Ok(found)
}

/// Every `*.yaml`/`*.yml` file under `dir`, not following links to folders (which could loop).
fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        if entry.file_type()?.is_dir() {
            yaml_files(&path, out)?;
        } else if path.is_file() && path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(path);
        }
    }
    Ok(())
}

/// Whether the file has the top-level `version:` and `pipelines:` keys of a spec. A file that
/// cannot be read counts as a spec, so that compiling it reports why.
fn is_spec_file(path: &Path) -> bool {
    let Ok(metadata) = std::fs::metadata(path) else { return true };
    if !metadata.is_file() || metadata.len() > MAX_SPEC_BYTES {
        return true;
    }
    let Ok(bytes) = std::fs::read(path) else { return true };
    is_spec_text(&String::from_utf8_lossy(&bytes))
}

/// Whether YAML text has the top-level keys of a spec.
fn is_spec_text(text: &str) -> bool {
    let has = |key: &str| {
        text.lines().any(|line| {
            let line = line.trim_start_matches('\u{feff}');
            let rest = ["\"", "'", ""]
                .iter()
                .find_map(|q| line.strip_prefix(q).and_then(|l| l.strip_prefix(key)).and_then(|l| l.strip_prefix(q)));
            rest.is_some_and(|r| r.trim_start().starts_with(':'))
        })
    };
    has("version") && has("pipelines")
}

/// The spec files at `path`: the file itself, or every spec under the folder.
pub fn spec_paths(path: &Path) -> Result<Vec<PathBuf>, Error> {
    find_specs(&[path.to_owned()]).map(|found| found.specs)
}

/// Reads and compiles every spec at `path` (a file or a folder of specs) as one graph.
/// Any spec's errors fail the whole set, with every spec's problems reported.
pub fn compile_path(path: &Path) -> Result<Vec<(PathBuf, Compiled)>, Error> {
    compile_specs(&spec_paths(path)?)
}

/// Reads and compiles the spec files `paths` (`-` is standard input) as one graph.
/// Any spec's errors fail the whole set, with every spec's problems reported.
pub fn compile_specs(paths: &[PathBuf]) -> Result<Vec<(PathBuf, Compiled)>, Error> {
    let mut sources = Vec::new();
    let mut problems = Diagnostics::new();
    for p in paths {
        match read_source(p) {
            Ok(source) => sources.push(source),
            Err(Error::Invalid(d)) => problems.extend(d),
            Err(other) => return Err(other),
        }
    }
    if problems.has_errors() {
        return Err(Error::Invalid(problems));
    }
    let mut compiled = Vec::new();
    for (p, result) in paths.iter().zip(compile_all(sources, &parse::interpolate::ProcessEnvironment)) {
        match result {
            Ok(c) => compiled.push((p.clone(), c)),
            Err(d) => problems.extend(d),
        }
    }
    if problems.has_errors() {
        return Err(Error::Invalid(problems));
    }
    Ok(compiled)
}

/// The stages of `pipelines` (every pipeline, when empty) that only Airflow can run: a
/// `kind: operator` stage without a `run:` command. `fhirflow run` refuses a run that has one,
/// before it starts anything, rather than fail or skip the task halfway through.
pub fn airflow_only_stages(compiled: &Compiled, pipelines: &[String]) -> Diagnostics {
    let mut found = Diagnostics::new();
    for p in &compiled.graph.pipelines {
        if !pipelines.is_empty() && !pipelines.iter().any(|id| id == p.id.as_str()) {
            continue;
        }
        for task in &p.tasks {
            let graph::Operation::Kind(kind) = &task.operation else { continue };
            if !kind.airflow_only() {
                continue;
            }
            let pointer = format!(
                "/pipelines/{}/stages/{}/kind",
                parse::escape_pointer(p.id.as_str()),
                parse::escape_pointer(task.stage.as_str())
            );
            found.push(
                diagnostic::Diagnostic::error(
                    "airflow-only-stage",
                    format!("stage `{}` of `{}` is an Airflow operator, which `fhirflow run` cannot run", task.stage, p.id),
                )
                .at(compiled.document.span(&pointer), "runs only in Airflow")
                .help("give the stage a `run:` command that does its work outside Airflow, or leave its pipeline out with `--pipeline`"),
            );
        }
    }
    found
}

/// Largest spec read: far beyond any real spec, small enough that a stray huge file fails fast.
pub const MAX_SPEC_BYTES: u64 = 64 * 1024 * 1024;

/// Reads a spec file. Text that is not UTF-8, or a file over [`MAX_SPEC_BYTES`], is an invalid
/// spec with a located diagnostic, not an I/O error.
pub fn read_source(path: &Path) -> Result<Arc<SourceFile>, Error> {
    if path.as_os_str() == STDIN {
        return read_stdin();
    }
    let io = |source| Error::Io { path: path.to_owned(), action: "read", source };
    let metadata = std::fs::metadata(path).map_err(io)?;
    let size = metadata.len();
    let name = path.display().to_string();
    // A device reads forever (/dev/zero) and a FIFO blocks until a writer comes: neither is a spec.
    if !metadata.is_file() {
        let file = SourceFile::new(name, "");
        let d = diagnostic::Diagnostic::error("not-a-file", "the spec is not a regular file")
            .at(Some(source::Span::at(&file, 0, 0)), "a device, pipe or socket")
            .help("point fhirflow at a spec file, or at a folder of them");
        return Err(Error::Invalid(Diagnostics::from_iter([d])));
    }
    if size > MAX_SPEC_BYTES {
        let file = SourceFile::new(name, "");
        let d = diagnostic::Diagnostic::error(
            "spec-too-large",
            format!("the spec is {size} bytes; the limit is {MAX_SPEC_BYTES}"),
        )
        .at(Some(source::Span::at(&file, 0, 0)), "")
        .help("split it into several specs");
        return Err(Error::Invalid(Diagnostics::from_iter([d])));
    }
    // Bounded, in case the file grows while it is read.
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(
        &mut std::io::Read::take(std::fs::File::open(path).map_err(io)?, MAX_SPEC_BYTES),
        &mut bytes,
    )
    .map_err(|source| Error::Io { path: path.to_owned(), action: "read", source })?;
    source_text(name, bytes)
}

/// Reads the spec on standard input, named `<stdin>` in diagnostics.
fn read_stdin() -> Result<Arc<SourceFile>, Error> {
    let io = |source| Error::Io { path: PathBuf::from("<stdin>"), action: "read", source };
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut std::io::Read::take(std::io::stdin().lock(), MAX_SPEC_BYTES), &mut bytes)
        .map_err(io)?;
    source_text("<stdin>".to_owned(), bytes)
}

/// The spec text of `bytes`, or a located diagnostic when they are not UTF-8.
fn source_text(name: String, bytes: Vec<u8>) -> Result<Arc<SourceFile>, Error> {
    match String::from_utf8(bytes) {
        Ok(text) => Ok(SourceFile::new(name, text)),
        Err(e) => {
            let byte = e.utf8_error().valid_up_to();
            let file = SourceFile::new(name, String::from_utf8_lossy(e.as_bytes()).into_owned());
            let d = diagnostic::Diagnostic::error(
                "not-utf8",
                format!("the spec is not UTF-8 text: invalid byte 0x{:02x}", e.as_bytes()[byte]),
            )
            .at(Some(source::Span::at(&file, byte, 1)), "here")
            .help("save the file as UTF-8");
            Err(Error::Invalid(Diagnostics::from_iter([d])))
        }
    }
}

/// Reads and compiles the spec at `path`.
pub fn compile_file(path: &Path) -> Result<Compiled, Error> {
    let source = read_source(path)?;
    compile(source).map_err(Error::Invalid)
}

/// Compiles the spec or folder of specs at `path` and plans their files under `out` (or each
/// spec's folder). Two specs may not write the same file.
pub fn plan_path(path: &Path, out: Option<&Path>) -> Result<(Vec<Compiled>, plan::Plan), Error> {
    plan_specs(&spec_paths(path)?, out)
}

/// Compiles the spec files `paths` as one graph and plans their files under `out`, or under the
/// specs' folder. A spec on standard input has no folder, and specs in different folders have
/// no one root to plan under: both need `--out`. Two specs may not write the same file.
pub fn plan_specs(paths: &[PathBuf], out: Option<&Path>) -> Result<(Vec<Compiled>, plan::Plan), Error> {
    if out.is_none() {
        if paths.iter().any(|p| p.as_os_str() == STDIN) {
            return Err(Error::Usage(
                "a spec on standard input (`-`) has no folder to write its files under; give --out DIR".to_owned(),
            ));
        }
        let roots: std::collections::BTreeSet<PathBuf> =
            paths.iter().map(|p| emit::Layout::new(p, None).root).collect();
        if roots.len() > 1 {
            let listed: Vec<String> = roots.iter().map(|r| format!("`{}`", r.display())).collect();
            return Err(Error::Usage(format!(
                "the specs are in {} folders ({}), and each spec's paths are relative to its own folder; \
                 give --out DIR to root them all there, or plan each folder on its own",
                roots.len(),
                listed.join(", ")
            )));
        }
    }
    let mut all: Option<plan::Plan> = None;
    let mut owners: std::collections::BTreeMap<PathBuf, String> = Default::default();
    let mut compiled_specs = Vec::new();
    for (spec_path, compiled) in compile_specs(paths)? {
        let unsupported = graph::airflow_unsupported(&compiled.graph, &compiled.document);
        if unsupported.has_errors() {
            return Err(Error::Invalid(unsupported));
        }
        let layout = emit::Layout::new(&spec_path, out);
        // Checked here, before emitting, so that an escaping folder is located in the spec.
        let dirs =
            emit::OutputDirs::of(&compiled.graph.spec, &layout, Some(&compiled.document)).map_err(Error::Invalid)?;
        let pools = emit::DuckdbPools::of(&compiled.graph, &layout);
        let files = emit::emit_with_pools(&compiled.graph, &layout, &pools)?;
        for file in &files {
            let full = layout.root.join(&file.path);
            if let Some(first) = owners.insert(full.clone(), layout.owner.id.clone()) {
                return Err(Error::Refused {
                    path: full,
                    reason: format!("both {first} and {} generate it; give them different folders", layout.owner.id),
                });
            }
        }
        let mut plan = plan::plan(&files, &layout, &dirs.managed())?;
        plan.pools = pools.pools();
        plan.pools.extend(emit::declared_pools(&compiled.graph.spec));
        all = Some(match all {
            None => plan,
            Some(mut merged) => {
                merged.changes.extend(plan.changes);
                merged.changes.sort_by(|a, b| a.path.cmp(&b.path));
                merged.leftovers.extend(plan.leftovers);
                // Specs sharing a folder find its leftovers each.
                merged.leftovers.sort();
                merged.leftovers.dedup();
                merged.kept.extend(plan.kept);
                merged.interrupted = merged.interrupted.or(plan.interrupted);
                merged.pools.extend(plan.pools);
                merged.pools.sort();
                merged.pools.dedup();
                merged
            }
        });
        compiled_specs.push(compiled);
    }
    let plan = all.ok_or_else(|| Error::Usage("no specs to plan".to_owned()))?;
    Ok((compiled_specs, plan))
}
