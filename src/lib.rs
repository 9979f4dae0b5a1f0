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
pub mod parse;
pub mod plan;
pub mod run;
pub mod source;
pub mod spec;
pub mod validate;

pub use error::{Error, ExitStatus};

use diagnostic::Diagnostics;
use source::SourceFile;
use std::path::Path;
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

/// The spec files at `path`: the file itself, or every `*.yaml`/`*.yml` directly in the folder.
pub fn spec_paths(path: &Path) -> Result<Vec<std::path::PathBuf>, Error> {
    let io = |source| Error::Io { path: path.to_owned(), action: "read", source };
    if !std::fs::metadata(path).map_err(io)?.is_dir() {
        return Ok(vec![path.to_owned()]);
    }
    let mut paths: Vec<std::path::PathBuf> = std::fs::read_dir(path)
        .map_err(io)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    paths.sort();
    if paths.is_empty() {
        return Err(Error::Io {
            path: path.to_owned(),
            action: "read",
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no *.yaml or *.yml specs in this folder"),
        });
    }
    Ok(paths)
}

/// Reads and compiles every spec at `path` (a file or a folder of specs) as one graph.
/// Any spec's errors fail the whole set, with every spec's problems reported.
pub fn compile_path(path: &Path) -> Result<Vec<(std::path::PathBuf, Compiled)>, Error> {
    let paths = spec_paths(path)?;
    let mut sources = Vec::new();
    let mut problems = Diagnostics::new();
    for p in &paths {
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
    for (p, result) in paths.into_iter().zip(compile_all(sources, &parse::interpolate::ProcessEnvironment)) {
        match result {
            Ok(c) => compiled.push((p, c)),
            Err(d) => problems.extend(d),
        }
    }
    if problems.has_errors() {
        return Err(Error::Invalid(problems));
    }
    Ok(compiled)
}

/// Largest spec read: far beyond any real spec, small enough that a stray huge file fails fast.
pub const MAX_SPEC_BYTES: u64 = 64 * 1024 * 1024;

/// Reads a spec file. Text that is not UTF-8, or a file over [`MAX_SPEC_BYTES`], is an invalid
/// spec with a located diagnostic, not an I/O error.
pub fn read_source(path: &Path) -> Result<Arc<SourceFile>, Error> {
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
    let mut all: Option<plan::Plan> = None;
    let mut owners: std::collections::BTreeMap<std::path::PathBuf, String> = Default::default();
    let mut compiled_specs = Vec::new();
    for (spec_path, compiled) in compile_path(path)? {
        let unsupported = graph::airflow_unsupported(&compiled.graph, &compiled.document);
        if unsupported.has_errors() {
            return Err(Error::Invalid(unsupported));
        }
        let layout = emit::Layout::new(&spec_path, out);
        // Checked here, before emitting, so that an escaping folder is located in the spec.
        let dirs =
            emit::OutputDirs::of(&compiled.graph.spec, &layout, Some(&compiled.document)).map_err(Error::Invalid)?;
        let files = emit::emit(&compiled.graph, &layout)?;
        for file in &files {
            let full = layout.root.join(&file.path);
            if let Some(first) = owners.insert(full.clone(), layout.spec_name.clone()) {
                return Err(Error::Refused {
                    path: full,
                    reason: format!("both {first} and {} generate it; give them different folders", layout.spec_name),
                });
            }
        }
        let plan = plan::plan(&files, &layout, &dirs.managed())?;
        all = Some(match all {
            None => plan,
            Some(mut merged) => {
                merged.changes.extend(plan.changes);
                merged.changes.sort_by(|a, b| a.path.cmp(&b.path));
                merged.leftovers.extend(plan.leftovers);
                // Specs sharing a folder find its leftovers each.
                merged.leftovers.sort();
                merged.leftovers.dedup();
                merged
            }
        });
        compiled_specs.push(compiled);
    }
    let plan = all.ok_or_else(|| Error::Io {
        path: path.to_owned(),
        action: "read",
        source: std::io::Error::new(std::io::ErrorKind::NotFound, "no specs"),
    })?;
    Ok((compiled_specs, plan))
}
