//! The graph as Mermaid or Graphviz text, for `fhirflow graph` and for PR descriptions.

use super::{Operation, PipelineGraph};
use std::fmt::Write as _;

/// Output formats of `fhirflow graph`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GraphFormat {
    /// A Mermaid flowchart, which GitHub renders in Markdown.
    Mermaid,
    /// Graphviz dot.
    Dot,
    /// The expectations JSON of tests/conformance/CONTRACT.md.
    Json,
}

/// A node name that is safe in both Mermaid and dot: only `[A-Za-z0-9_]`.
fn node_id(pipeline: &str, task: &str) -> String {
    let clean = |s: &str| s.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect::<String>();
    format!("{}__{}", clean(pipeline), clean(task))
}

impl PipelineGraph {
    /// Renders the graph in `format`.
    pub fn render(&self, format: GraphFormat) -> String {
        let mut out = String::new();
        match format {
            GraphFormat::Json => {
                out = serde_json::to_string_pretty(&self.expectations()).unwrap_or_default();
                out.push('\n');
            }
            GraphFormat::Mermaid => {
                out.push_str("flowchart LR\n");
                for p in &self.pipelines {
                    let _ = writeln!(out, "  subgraph {}[\"{}\"]", node_id(&p.id.to_string(), ""), p.id);
                    for t in &p.tasks {
                        let _ = writeln!(out, "    {}[\"{}\"]", node_id(p.id.as_str(), &t.id), t.id);
                    }
                    out.push_str("  end\n");
                }
                for p in &self.pipelines {
                    for t in &p.tasks {
                        for u in &t.upstream {
                            let _ =
                                writeln!(out, "  {} --> {}", node_id(p.id.as_str(), u), node_id(p.id.as_str(), &t.id));
                        }
                        if let Operation::Sensor(s) = &t.operation {
                            let from = match &s.task {
                                Some(task) => node_id(s.pipeline.as_str(), task),
                                None => node_id(s.pipeline.as_str(), ""),
                            };
                            let _ = writeln!(out, "  {from} -.-> {}", node_id(p.id.as_str(), &t.id));
                        }
                    }
                }
            }
            GraphFormat::Dot => {
                out.push_str("digraph fhirflow {\n  rankdir=LR;\n");
                for p in &self.pipelines {
                    let _ =
                        writeln!(out, "  subgraph cluster_{} {{\n    label=\"{}\";", node_id(p.id.as_str(), ""), p.id);
                    for t in &p.tasks {
                        let _ = writeln!(out, "    {} [label=\"{}\"];", node_id(p.id.as_str(), &t.id), t.id);
                    }
                    out.push_str("  }\n");
                }
                for p in &self.pipelines {
                    for t in &p.tasks {
                        for u in &t.upstream {
                            let _ =
                                writeln!(out, "  {} -> {};", node_id(p.id.as_str(), u), node_id(p.id.as_str(), &t.id));
                        }
                        if let Operation::Sensor(s) = &t.operation
                            && let Some(task) = &s.task
                        {
                            let _ = writeln!(
                                out,
                                "  {} -> {} [style=dashed];",
                                node_id(s.pipeline.as_str(), task),
                                node_id(p.id.as_str(), &t.id)
                            );
                        }
                    }
                }
                out.push_str("}\n");
            }
        }
        out
    }
}
