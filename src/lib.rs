//! fhirflow compiles one YAML pipeline spec into Airflow DAG files and dbt properties YAML.
//!
//! The stages of the compiler, each its own module:
//!
//! 1. [`parse`]: YAML text → a JSON tree with a source span for every node;
//! 2. [`validate`]: the JSON Schema check, then the typed [`spec::Spec`];
//! 3. [`graph`]: lowering to a [`graph::PipelineGraph`] of tasks, with cycles, dangling
//!    references and sensors that never line up rejected;
//! 4. backends: [`emit`] writes Airflow DAGs and dbt YAML, and [`plan`] compares them with what
//!    is on disk and applies them.
//!
//! The `fhirflow` binary is a thin layer over [`compile`], [`emit`] and [`plan`].

pub mod diagnostic;
pub mod emit;
pub mod error;
pub mod graph;
pub mod parse;
pub mod plan;
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

/// Parses, validates and lowers one spec.
pub fn compile(source: Arc<SourceFile>) -> Result<Compiled, Diagnostics> {
    let document = parse::Document::parse(source)?;
    let spec = validate::check(&document)?;
    let (graph, warnings) = graph::lower(spec, &document)?;
    Ok(Compiled { document, graph, warnings })
}

/// Largest spec read: far beyond any real spec, small enough that a stray huge file fails fast.
pub const MAX_SPEC_BYTES: u64 = 64 * 1024 * 1024;

/// Reads a spec file. Text that is not UTF-8, or a file over [`MAX_SPEC_BYTES`], is an invalid
/// spec with a located diagnostic, not an I/O error.
pub fn read_source(path: &Path) -> Result<Arc<SourceFile>, Error> {
    let io = |source| Error::Io { path: path.to_owned(), action: "read", source };
    let size = std::fs::metadata(path).map_err(io)?.len();
    let name = path.display().to_string();
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
    let bytes = std::fs::read(path).map_err(io)?;
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

/// Folders whose generated files belong to `spec`: the DAGs folder and the dbt models folder.
/// Files there that carry this spec's header but that it no longer produces are stale.
pub fn managed_dirs(spec: &spec::Spec, layout: &emit::Layout) -> Vec<std::path::PathBuf> {
    let mut dirs = vec![layout.place(&spec.airflow.dags_folder.0)];
    if let Some(dbt) = &spec.dbt {
        dirs.push(layout.place(&dbt.project_dir.0).join("models"));
    }
    dirs
}

/// Compiles the spec at `spec_path` and plans its files under `out` (or the spec's folder).
pub fn plan_file(spec_path: &Path, out: Option<&Path>) -> Result<(Compiled, plan::Plan), Error> {
    let compiled = compile_file(spec_path)?;
    let layout = emit::Layout::new(spec_path, out);
    let files = emit::emit(&compiled.graph, &layout)?;
    let plan = plan::plan(&files, &layout, &managed_dirs(&compiled.graph.spec, &layout))?;
    Ok((compiled, plan))
}
