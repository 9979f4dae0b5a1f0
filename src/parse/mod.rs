//! Parsing: YAML text → a JSON value tree plus the source span of every node.
//!
//! The value tree is what the JSON Schema checks and what the typed [`crate::spec::Spec`] is read
//! from; the span map turns any JSON pointer (`/pipelines/load/stages/copy/retries`) back into
//! `fhir.yaml:42:7`. serde-saphyr does the YAML: it rejects duplicate keys, expands `<<` merges and
//! bounds alias expansion, and gives each node its location.

pub mod interpolate;

use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::source::{SourceFile, Span};
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use serde_saphyr::Spanned;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

/// Deepest nesting a spec may have. Real specs stay under 12; 32 keeps the recursive descent
/// well inside a 2 MiB thread stack (a test thread's, or an embedding program's worker's).
const MAX_DEPTH: usize = 32;

/// Most YAML nodes a spec may have: a 10,000-stage spec has about 100,000.
const MAX_NODES: usize = 1_000_000;

/// A parsed spec file: its value tree and where each node came from.
#[derive(Debug)]
pub struct Document {
    /// The file.
    pub source: Arc<SourceFile>,
    /// The spec as JSON.
    pub value: Value,
    spans: HashMap<String, NodeSpans>,
}

/// Where one node is.
#[derive(Debug, Clone, Copy, Default)]
struct NodeSpans {
    /// The node's key, for mapping values.
    key: Option<(usize, usize)>,
    /// The node itself, where it is used.
    value: (usize, usize),
    /// Where an alias or merge took it from, when that differs.
    defined: Option<(usize, usize)>,
}

impl Document {
    /// Parses `source` as one YAML document.
    pub fn parse(source: Arc<SourceFile>) -> Result<Self, Diagnostics> {
        let mut diagnostics = Diagnostics::new();
        let empty = || {
            Diagnostic::error("empty-spec", "the spec is empty")
                .at(Some(Span::at(&source, 0, 0)), "expected a mapping with `version` and `pipelines`")
                .help("start from an example under pipelines/")
        };
        if source.text.trim().is_empty() {
            diagnostics.push(empty());
            return Err(diagnostics);
        }
        let options = serde_saphyr::options! {
            budget: serde_saphyr::budget! {
                max_depth: MAX_DEPTH,
                max_nodes: MAX_NODES,
                max_events: 2 * MAX_NODES,
            },
        };
        let root: Spanned<RawNode> = match serde_saphyr::from_str_with_options(&source.text, options) {
            Ok(root) => root,
            Err(err) => {
                diagnostics.push(yaml_error(&source, &err));
                return Err(diagnostics);
            }
        };
        let mut document = Document { source: Arc::clone(&source), value: Value::Null, spans: HashMap::new() };
        let mut problems = Vec::new();
        document.value = document.lower(root, String::new(), None, &mut problems);
        if document.value.is_null() {
            problems.push(empty());
        }
        if !problems.is_empty() {
            diagnostics.extend(problems);
            return Err(diagnostics);
        }
        Ok(document)
    }

    fn lower(
        &mut self,
        node: Spanned<RawNode>,
        pointer: String,
        key: Option<(usize, usize)>,
        problems: &mut Vec<Diagnostic>,
    ) -> Value {
        let value = location_range(&self.source, &node.referenced);
        let defined = location_range(&self.source, &node.defined);
        let defined = (defined != value).then_some(defined);
        self.spans.insert(pointer.clone(), NodeSpans { key, value, defined });
        match node.value {
            RawNode::Null => Value::Null,
            RawNode::Bool(b) => Value::Bool(b),
            RawNode::Int(i) => Value::from(i),
            RawNode::UInt(u) => Value::from(u),
            RawNode::Float(f) => serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number),
            RawNode::Str(s) => Value::String(s),
            RawNode::Seq(items) => Value::Array(
                items
                    .into_iter()
                    .enumerate()
                    .map(|(i, item)| self.lower(item, format!("{pointer}/{i}"), None, problems))
                    .collect(),
            ),
            RawNode::Map(entries) => {
                let mut map = Map::new();
                for (k, v) in entries {
                    let key_range = location_range(&self.source, &k.referenced);
                    let name = match k.value {
                        RawNode::Str(s) => s,
                        RawNode::Int(i) => i.to_string(),
                        RawNode::UInt(u) => u.to_string(),
                        RawNode::Bool(b) => b.to_string(),
                        RawNode::Float(f) => f.to_string(),
                        RawNode::Null => "null".to_owned(),
                        RawNode::Seq(_) | RawNode::Map(_) => {
                            problems.push(Diagnostic::error("complex-key", "a mapping key must be a plain name").at(
                                Some(Span::at(&self.source, key_range.0, key_range.1)),
                                "this key is a list or a mapping",
                            ));
                            continue;
                        }
                    };
                    let child = format!("{pointer}/{}", escape_pointer(&name));
                    let lowered = self.lower(v, child, Some(key_range), problems);
                    map.insert(name, lowered);
                }
                Value::Object(map)
            }
        }
    }

    /// The span of the node at `pointer`, or of its nearest ancestor that exists.
    pub fn span(&self, pointer: &str) -> Option<Span> {
        self.nearest(pointer).map(|spans| Span::at(&self.source, spans.value.0, spans.value.1))
    }

    /// The span of the key of the node at `pointer` (falls back to the node).
    pub fn key_span(&self, pointer: &str) -> Option<Span> {
        let spans = self.nearest(pointer)?;
        let (start, len) = spans.key.unwrap_or(spans.value);
        Some(Span::at(&self.source, start, len))
    }

    /// Where an aliased or merged node was defined, if it was.
    pub fn defined_span(&self, pointer: &str) -> Option<Span> {
        let spans = self.spans.get(pointer)?;
        spans.defined.map(|(start, len)| Span::at(&self.source, start, len))
    }

    fn nearest(&self, pointer: &str) -> Option<&NodeSpans> {
        let mut p = pointer;
        loop {
            if let Some(spans) = self.spans.get(p) {
                return Some(spans);
            }
            if p.is_empty() {
                return None;
            }
            p = p.rfind('/').map_or("", |i| &p[..i]);
        }
    }
}

/// Escapes one JSON-pointer token (RFC 6901).
pub fn escape_pointer(token: &str) -> String {
    if token.contains(['~', '/']) { token.replace('~', "~0").replace('/', "~1") } else { token.to_owned() }
}

fn location_range(source: &SourceFile, location: &serde_saphyr::Location) -> (usize, usize) {
    let span = location.span();
    match (span.byte_offset(), span.byte_len()) {
        (Some(start), Some(len)) => (start as usize, len as usize),
        _ => {
            let line = location.line() as usize;
            let column = location.column() as usize;
            (source.offset(line.max(1), column.max(1)), 1)
        }
    }
}

fn yaml_error(source: &Arc<SourceFile>, err: &serde_saphyr::Error) -> Diagnostic {
    let message = strip_position(&first_line(&err.without_snippet().to_string()));
    let (code, summary, help) = if let Some(rest) = message.strip_prefix("duplicate mapping key: ") {
        let key = rest.split(", set DuplicateKeyPolicy").next().unwrap_or(rest);
        (
            "duplicate-key",
            format!("duplicate key `{key}`: it is already set above in the same mapping"),
            Some("YAML would keep only the last one and silently drop the other; delete or merge one".to_owned()),
        )
    } else if message.contains("Depth") || message.contains("recursion limit") {
        (
            "yaml-limit",
            format!("the spec is nested deeper than {MAX_DEPTH} levels"),
            Some("a pipeline spec needs about 8; check for runaway brackets or indentation".to_owned()),
        )
    } else if message.contains("Nodes") || message.contains("Events") {
        (
            "yaml-limit",
            format!("the spec has more than {MAX_NODES} YAML nodes"),
            Some("split it into several specs in one folder (`fhirflow plan DIR`)".to_owned()),
        )
    } else if message.contains("budget") || message.contains("depth") || message.contains("alias") {
        (
            "yaml-limit",
            message.clone(),
            Some("a spec this deep or this aliased is not a pipeline spec; check for an alias bomb".to_owned()),
        )
    } else {
        ("yaml-syntax", format!("invalid YAML: {message}"), None)
    };
    // Every YAML error is located; one the parser could not place points at the file's start.
    let span = Some(match err.location().filter(|l| l.line() > 0) {
        Some(l) => {
            let (start, len) = location_range(source, &l);
            Span::at(source, start, len)
        }
        None => Span::at(source, 0, 0),
    });
    let mut diagnostic = Diagnostic::error(code, summary).at(span, "");
    if let Some(help) = help {
        diagnostic = diagnostic.help(help);
    }
    diagnostic
}

/// Drops a trailing ` at line N, column M`: the diagnostic shows the place itself.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) if message[i..].contains(", column ") => message[..i].to_owned(),
        _ => message.to_owned(),
    }
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or(text).trim().to_owned()
}

/// Any YAML node, kept with the spans of its children.
enum RawNode {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(String),
    Seq(Vec<Spanned<RawNode>>),
    Map(Vec<(Spanned<RawNode>, Spanned<RawNode>)>),
}

impl<'de> Deserialize<'de> for RawNode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(RawNodeVisitor)
    }
}

struct RawNodeVisitor;

impl<'de> Visitor<'de> for RawNodeVisitor {
    type Value = RawNode;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<RawNode, E> {
        Ok(RawNode::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<RawNode, E> {
        Ok(RawNode::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<RawNode, D::Error> {
        RawNode::deserialize(deserializer)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<RawNode, E> {
        Ok(RawNode::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawNode, E> {
        Ok(RawNode::Int(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawNode, E> {
        Ok(RawNode::UInt(v))
    }

    fn visit_i128<E: de::Error>(self, v: i128) -> Result<RawNode, E> {
        Ok(RawNode::Float(v as f64))
    }

    fn visit_u128<E: de::Error>(self, v: u128) -> Result<RawNode, E> {
        Ok(RawNode::Float(v as f64))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<RawNode, E> {
        Ok(RawNode::Float(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<RawNode, E> {
        Ok(RawNode::Str(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<RawNode, E> {
        Ok(RawNode::Str(v))
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<RawNode, E> {
        Ok(RawNode::Str(String::from_utf8_lossy(v).into_owned()))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawNode, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<RawNode>>()? {
            items.push(item);
        }
        Ok(RawNode::Seq(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawNode, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Spanned<RawNode>>()? {
            let value = map.next_value::<Spanned<RawNode>>()?;
            entries.push((key, value));
        }
        Ok(RawNode::Map(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Document, Diagnostics> {
        Document::parse(SourceFile::new("t.yaml", text))
    }

    #[test]
    fn maps_pointers_to_lines() {
        let doc = parse("version: 1\npipelines:\n  load:\n    stages:\n      copy:\n        retries: -1\n").unwrap();
        let span = doc.span("/pipelines/load/stages/copy/retries").unwrap();
        assert_eq!((span.start.line, span.start.column), (6, 18));
        let key = doc.key_span("/pipelines/load/stages/copy/retries").unwrap();
        assert_eq!((key.start.line, key.start.column), (6, 9));
        assert_eq!(doc.value["pipelines"]["load"]["stages"]["copy"]["retries"], -1);
    }

    #[test]
    fn rejects_duplicate_keys() {
        let err = parse("a: 1\nb: 2\na: 3\n").unwrap_err();
        let d = err.sorted()[0];
        assert_eq!(d.code, "duplicate-key", "{}", d.render());
        assert_eq!(d.primary.as_ref().unwrap().span.start.line, 3);
    }

    #[test]
    fn expands_merge_keys() {
        let doc = parse("base: &b\n  retries: 2\nstage:\n  <<: *b\n  owner: x\n").unwrap();
        assert_eq!(doc.value["stage"]["retries"], 2);
        assert_eq!(doc.defined_span("/stage/retries").unwrap().start.line, 2);
    }

    #[test]
    fn syntax_errors_have_a_line() {
        let err = parse("a: [1, 2\nb: 3\n").unwrap_err();
        let d = err.sorted()[0];
        assert_eq!(d.code, "yaml-syntax");
        assert!(d.primary.is_some(), "{}", d.render());
    }

    #[test]
    fn empty_and_deep_inputs_are_errors_not_panics() {
        assert!(parse("").is_err());
        assert!(parse("   \n# only a comment\n").is_err());
        let deep = format!("{}1{}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(parse(&deep).is_err());
        let bomb = "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]\ng: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]\nh: [*g, *g, *g, *g, *g, *g, *g, *g, *g]\n";
        assert!(parse(bomb).is_err());
    }
}
