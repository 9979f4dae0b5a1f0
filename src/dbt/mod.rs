//! dbt's manifest at compile time: the `per_model` mode's source of tasks and edges.
//!
//! [`Manifest::from_json_for`] reads `target/manifest.json` (schema v11 of dbt-core 1.7, or v12
//! of 1.8 to 1.12, as the spec's [`DbtVersion`] admits) into the graph of dbt's nodes; [`Manifest::select`] evaluates `--select`/`--exclude` on it with
//! the same answers as `dbt ls`, and [`Manifest::edges_within`] gives the dependency edges
//! between the selected nodes, through whatever is left out (ephemeral models among them).
//! [`Selectors`] are a project's own `selectors.yml` ([`read_selectors`]): `selector:NAME` in a
//! selection, and the `default: true` selector ([`Manifest::select_in`]).
//!
//! ```
//! # let text = r#"{"metadata": {"dbt_schema_version": "https://schemas.getdbt.com/dbt/manifest/v12.json"},
//! #   "nodes": {"model.p.a": {"unique_id": "model.p.a", "resource_type": "model", "name": "a",
//! #   "package_name": "p", "fqn": ["p", "a"], "original_file_path": "models/a.sql", "tags": ["staging"]}}}"#;
//! use fhirflow::dbt::Manifest;
//! let manifest = Manifest::from_json(text, "target/manifest.json")?;
//! let selected = manifest.select(&["tag:staging+"], &[])?;
//! assert!(selected.contains("model.p.a"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod load;
mod manifest;
mod pattern;
mod profile;
mod select;
mod selectors;
#[cfg(test)]
mod tests;
mod version;

pub use load::{LoadError, MAX_MANIFEST_BYTES, ParseCommand, read_manifest, read_selectors};
pub use manifest::{Manifest, ManifestError, Node, ResourceType};
pub use profile::{DuckdbTarget, duckdb_target, duckdb_writer};
pub(crate) use select::selector_name;
pub use select::{IndirectSelection, METHODS, SelectError};
pub use selectors::{CommandLine, NamedSelector, Selectors, SelectorsError};
pub use version::{DBT_VERSION_PATTERN, DbtVersion, MANIFEST_V11, MANIFEST_V12, Release};
