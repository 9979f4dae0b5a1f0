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

/// One arrow of the drawing, between node ids.
struct Edge {
    from: String,
    to: String,
    /// A sensor's wait on another pipeline, drawn dashed.
    sensor: bool,
    /// A sensor on a whole run: it starts at the pipeline's box, which dot cannot draw from.
    from_pipeline: bool,
}

impl PipelineGraph {
    /// Every arrow: task dependencies, then each sensor's wait, task by task.
    fn edges(&self) -> Vec<Edge> {
        let mut edges = Vec::new();
        for p in &self.pipelines {
            for t in &p.tasks {
                let to = node_id(p.id.as_str(), &t.id);
                for u in &t.upstream {
                    edges.push(Edge {
                        from: node_id(p.id.as_str(), u),
                        to: to.clone(),
                        sensor: false,
                        from_pipeline: false,
                    });
                }
                if let Operation::Sensor(s) = &t.operation {
                    let task = s.task.as_deref().unwrap_or("");
                    let from = node_id(s.pipeline.as_str(), task);
                    edges.push(Edge { from, to: to.clone(), sensor: true, from_pipeline: s.task.is_none() });
                }
            }
        }
        edges
    }

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
                for edge in self.edges() {
                    let arrow = if edge.sensor { "-.->" } else { "-->" };
                    let _ = writeln!(out, "  {} {arrow} {}", edge.from, edge.to);
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
                for edge in self.edges().into_iter().filter(|e| !e.from_pipeline) {
                    let style = if edge.sensor { " [style=dashed]" } else { "" };
                    let _ = writeln!(out, "  {} -> {}{style};", edge.from, edge.to);
                }
                out.push_str("}\n");
            }
        }
        out
    }
}
