//! The dbt emitter: one properties file per layer, and `selectors.yml`.

use super::{FileKind, GeneratedFile, Layout, OutputDirs, code, header, render};
use crate::error::Error;
use crate::graph::PipelineGraph;
use crate::spec::{LayerProperties, ModelEntry};
use minijinja::context;

/// Writes dbt properties YAML.
pub struct DbtEmitter<'a> {
    graph: &'a PipelineGraph,
    layout: &'a Layout,
}

impl<'a> DbtEmitter<'a> {
    /// An emitter for `graph` into `layout`.
    pub fn new(graph: &'a PipelineGraph, layout: &'a Layout) -> Self {
        Self { graph, layout }
    }

    /// `models/<layer>/<layer>_models.yml` per layer whose properties are fhirflow's, and
    /// `selectors.yml` unless `dbt.selectors` is false; nothing without layers.
    pub fn emit(&self) -> Result<Vec<GeneratedFile>, Error> {
        let spec = &self.graph.spec;
        if spec.layers.is_empty() {
            return Ok(Vec::new());
        }
        let dirs = OutputDirs::of(spec, self.layout, None).map_err(Error::Invalid)?;
        let (Some(root), Some(project)) = (dirs.dbt_project, &spec.dbt) else {
            return Ok(Vec::new());
        };
        let mut files = Vec::new();
        let mut selectors = Vec::new();
        // `dirs.layers` holds every layer's folder, in spec order.
        for ((name, layer), (_, folder)) in spec.layers.iter().zip(&dirs.layers) {
            let description = layer.description.clone().unwrap_or_else(|| format!("The {name} layer."));
            let (method, value) = layer.selection(name.as_str());
            selectors.push(context! { name => name.to_string(), description => description, method => code(method), value => value });
            // The project's own properties files document these models; a second entry for a
            // model is an error in dbt, so fhirflow writes none.
            if layer.properties == LayerProperties::Project {
                continue;
            }
            let tags: Vec<String> = match &layer.tags {
                Some(tags) => tags.iter().map(ToString::to_string).collect(),
                None => vec![name.to_string()],
            };
            let models: Vec<minijinja::Value> = layer
                .models
                .iter()
                .map(|entry| {
                    let mut model_tags = tags.clone();
                    let (description, columns) = match entry {
                        ModelEntry::Name(_) => (None, Vec::new()),
                        ModelEntry::Detailed(m) => {
                            model_tags.extend(m.tags.iter().map(ToString::to_string));
                            let columns = m
                                .columns
                                .iter()
                                .map(|c| {
                                    let tests: Vec<&str> = c.tests.iter().map(|t| t.as_str()).collect();
                                    context! { name => c.name.to_string(), description => c.description.clone(), tests => tests }
                                })
                                .collect::<Vec<_>>();
                            (m.description.clone(), columns)
                        }
                    };
                    model_tags.dedup();
                    context! { name => entry.name().to_string(), description => description, tags => model_tags, columns => columns }
                })
                .collect();
            let body =
                render("layer.yml.j2", context! { models => models, tests_key => code(project.version.tests_key()) })?;
            let path = folder.join(format!("{name}_models.yml"));
            let place = super::paths::place(&path, &root);
            files.push(GeneratedFile {
                contents: header::wrap(&self.layout.owner.id, &place, &body),
                path,
                kind: FileKind::DbtLayer(name.to_string()),
            });
        }
        if !project.selectors {
            return Ok(files);
        }
        let body = render("selectors.yml.j2", context! { selectors => selectors })?;
        files.push(GeneratedFile {
            path: root.join("selectors.yml"),
            contents: header::wrap(&self.layout.owner.id, "selectors.yml", &body),
            kind: FileKind::DbtSelectors,
        });
        Ok(files)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::SourceFile;
    use std::path::Path;

    /// The marts layer's properties YAML for a spec whose `dbt:` has `extra`.
    fn layer_yaml(extra: &str) -> String {
        let text = format!(
            "version: 1\ndbt: {{project_dir: dbt{extra}}}\nlayers:\n  marts:\n    models:\n      - {{name: dim_patients, columns: [{{name: patient_id, tests: [unique, not_null]}}]}}\npipelines:\n  p:\n    stages:\n      b: {{kind: dbt, command: build, retries: 1}}\n"
        );
        let graph = crate::compile(SourceFile::new("t.yaml", &text))
            .map(|c| c.graph)
            .unwrap_or_else(|d| panic!("{}", d.render()));
        let layout = Layout::new(Path::new("t.yaml"), Some(Path::new("out")));
        let files = DbtEmitter::new(&graph, &layout).emit().unwrap();
        files.into_iter().find(|f| f.kind == FileKind::DbtLayer("marts".to_owned())).unwrap().contents
    }

    #[test]
    fn column_tests_go_under_the_key_every_admitted_dbt_reads() {
        for (extra, key) in [
            ("", "data_tests"),
            (", version: '>=1.8'", "data_tests"),
            (", version: '>=1.8,<1.12'", "data_tests"),
            (", version: '1.12'", "data_tests"),
            (", version: '1.7'", "tests"),
            (", version: '~1.7'", "tests"),
            (", version: '>=1.7'", "tests"),
        ] {
            let yaml = layer_yaml(extra);
            assert!(yaml.contains(&format!("\n        {key}: [\"unique\", \"not_null\"]\n")), "{extra}: {yaml}");
            let other = if key == "tests" { "data_tests:" } else { " tests:" };
            assert!(!yaml.contains(other), "{extra}: {yaml}");
        }
    }
}
