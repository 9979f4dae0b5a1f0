//! Backends that write files: Airflow DAGs ([`AirflowEmitter`]) and dbt properties YAML
//! ([`DbtEmitter`]), both rendered from the minijinja templates in `templates/`.
//!
//! Output is deterministic to the byte: no timestamps, sorted maps, stable task order. Every
//! file starts with a [`header`] naming the spec and hashing the body, which is how `apply`
//! knows a file is its own and whether someone edited it.

pub(crate) mod airflow;
mod dbt;
pub mod header;
pub mod literal;
mod paths;
mod pools;
pub mod snowflake;

pub use airflow::AirflowEmitter;
pub use dbt::DbtEmitter;
pub use paths::{Layout, ManagedDir, OutputDirs, SpecOwner, place};
pub use pools::{AirflowPool, DuckdbPools, declared_pools};

use crate::error::Error;
use crate::graph::PipelineGraph;
use literal::{Language, literal};
use minijinja::Environment;
use std::path::PathBuf;
use std::sync::LazyLock;

/// What a generated file is, for plans and stale-file cleanup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileKind {
    /// An Airflow DAG file for the pipeline with this id.
    AirflowDag(String),
    /// dbt properties YAML for the layer with this name.
    DbtLayer(String),
    /// dbt `selectors.yml`.
    DbtSelectors,
}

/// One file fhirflow would write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedFile {
    /// Path relative to the layout's root.
    pub path: PathBuf,
    /// Full contents, header included.
    pub contents: String,
    /// What it is.
    pub kind: FileKind,
}

/// Every file a spec produces, sorted by path.
pub fn emit(graph: &PipelineGraph, layout: &Layout) -> Result<Vec<GeneratedFile>, Error> {
    emit_with_pools(graph, layout, &DuckdbPools::of(graph, layout))
}

/// [`emit`] with the DuckDB pools already read, for a caller that also reports them.
pub fn emit_with_pools(
    graph: &PipelineGraph,
    layout: &Layout,
    pools: &DuckdbPools,
) -> Result<Vec<GeneratedFile>, Error> {
    let mut files = AirflowEmitter::new(graph, layout, pools).emit()?;
    files.extend(DbtEmitter::new(graph, layout).emit()?);
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(files)
}

static TEMPLATES: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    env.set_syntax(
        minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .keep_trailing_newline(true)
            .build()
            .expect("the default delimiters are valid"),
    );
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    // Printing a value writes a literal of the template's language; only strings that fhirflow
    // itself built as code (marked safe) are written as they are.
    env.set_formatter(|out, state, value| {
        if value.is_safe() {
            return out.write_str(value.as_str().unwrap_or_default()).map_err(minijinja::Error::from);
        }
        let json = serde_json::to_value(value)
            .map_err(|e| minijinja::Error::new(minijinja::ErrorKind::BadSerialization, e.to_string()))?;
        out.write_str(&literal(Language::of_template(state.name()), &json)).map_err(minijinja::Error::from)
    });
    for (name, source) in [
        ("dag.py.j2", include_str!("../../templates/airflow/dag.py.j2")),
        ("layer.yml.j2", include_str!("../../templates/dbt/layer.yml.j2")),
        ("selectors.yml.j2", include_str!("../../templates/dbt/selectors.yml.j2")),
    ] {
        env.add_template(name, source).expect("bundled templates parse");
    }
    env
});

/// Renders a bundled template.
fn render(template: &str, context: minijinja::Value) -> Result<String, Error> {
    let render_error = |e: minijinja::Error| Error::Render { template: template.to_owned(), message: format!("{e:#}") };
    TEMPLATES.get_template(template).map_err(render_error)?.render(context).map_err(render_error)
}

/// A string of generated code, written as it is. Only for text built by fhirflow from checked values.
fn code(text: impl Into<String>) -> minijinja::Value {
    minijinja::Value::from_safe_string(text.into())
}
