//! Parsing: YAML text → a JSON value tree plus the source span of every node.
//!
//! The value tree is what the JSON Schema checks and what the typed [`crate::spec::Spec`] is read
//! from; the node table turns any JSON pointer (`/pipelines/load/stages/copy/retries`) back into
//! `fhir.yaml:42:7`. serde-saphyr does the YAML: it rejects duplicate keys, expands `<<` merges and
//! bounds alias expansion, and gives each node its location. A spec without those features is read
//! straight from the events of serde-saphyr's parser (`events.rs`), to the same tree and spans, in a
//! fraction of the time. Every key is a name, read as the text written (`on:` is `on`, not
//! `true`); values keep YAML's typing for the schema to check.

mod events;
pub mod interpolate;
mod nodes;

use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::source::{SourceFile, Span};
use nodes::{Kind, NodeSpans, NodeTable};
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use serde_saphyr::Spanned;
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
    nodes: NodeTable,
}

impl Document {
    /// Parses `source` as one YAML document.
    pub fn parse(source: Arc<SourceFile>) -> Result<Self, Diagnostics> {
        // The spec's own YAML is read straight from the parser's events; the rest, and every
        // document with an error, by serde-saphyr, which reports each the same way.
        if let Some((value, nodes)) = events::read(&source.text).filter(|(value, _)| !value.is_null()) {
            return Ok(Document { source, value, nodes });
        }
        Self::parse_with_serde_saphyr(source)
    }

    fn parse_with_serde_saphyr(source: Arc<SourceFile>) -> Result<Self, Diagnostics> {
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
        let nodes = NodeTable::for_text(source.text.len());
        let mut document = Document { source: Arc::clone(&source), value: Value::Null, nodes };
        let mut problems = Vec::new();
        document.value = document.lower(root, None, &mut problems);
        if document.value.is_null() {
            problems.push(empty());
        }
        if !problems.is_empty() {
            diagnostics.extend(problems);
            return Err(diagnostics);
        }
        Ok(document)
    }

    /// The value tree of serde-saphyr's reading, its nodes added to the table in document order.
    fn lower(
        &mut self,
        node: Spanned<RawNode>,
        key: Option<(&str, (usize, usize))>,
        problems: &mut Vec<Diagnostic>,
    ) -> Value {
        let value = location_range(&self.source, &node.referenced);
        let defined = location_range(&self.source, &node.defined);
        let defined = (defined != value).then_some(defined);
        let spans = NodeSpans { key: key.map(|(_, at)| at), value, defined };
        let kind = match node.value {
            RawNode::Seq(_) => Kind::Seq,
            RawNode::Map(_) => Kind::Map,
            _ => Kind::Scalar,
        };
        let at = self.nodes.open(spans, kind, key.map(|(name, _)| name), &self.source.text);
        let lowered = self.lower_value(node.value, problems);
        self.nodes.close(at);
        lowered
    }

    fn lower_value(&mut self, node: RawNode, problems: &mut Vec<Diagnostic>) -> Value {
        match node {
            RawNode::Null => Value::Null,
            RawNode::Bool(b) => Value::Bool(b),
            RawNode::Int(i) => Value::from(i),
            RawNode::UInt(u) => Value::from(u),
            RawNode::Float(f) => serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number),
            RawNode::Str(s) => Value::String(s),
            RawNode::Seq(items) => {
                Value::Array(items.into_iter().map(|item| self.lower(item, None, problems)).collect())
            }
            RawNode::Map(entries) => {
                let mut map = Map::with_capacity(entries.len());
                for (k, v) in entries {
                    let (start, len) = location_range(&self.source, &k.referenced);
                    let key_span = Some(Span::at(&self.source, start, len));
                    let name = match k.value {
                        RawKey::Text(text) => text,
                        RawKey::Null => {
                            problems.push(null_key(key_span, self.source.text.get(start..start + len).unwrap_or("")));
                            continue;
                        }
                    };
                    // serde-saphyr compares keys by value (`1` and `0x1` are one key, `1` and
                    // `"1"` are two); a name is its text, so keys equal as text collide here,
                    // except that a key set in the mapping overrides one merged in by `<<` (a
                    // key from elsewhere: its definition is not where it is used).
                    if map.contains_key(&name) {
                        if location_range(&self.source, &k.defined) == (start, len) {
                            problems.push(duplicate_key(key_span, &name));
                        }
                        continue;
                    }
                    let lowered = self.lower(v, Some((&name, (start, len))), problems);
                    map.insert(name, lowered);
                }
                Value::Object(map)
            }
        }
    }

    /// The span of the node at `pointer`, or of its nearest ancestor that exists.
    pub fn span(&self, pointer: &str) -> Option<Span> {
        self.nodes.nearest(pointer, &self.source.text).map(|spans| Span::at(&self.source, spans.value.0, spans.value.1))
    }

    /// The span of the key of the node at `pointer` (falls back to the node).
    pub fn key_span(&self, pointer: &str) -> Option<Span> {
        let spans = self.nodes.nearest(pointer, &self.source.text)?;
        let (start, len) = spans.key.unwrap_or(spans.value);
        Some(Span::at(&self.source, start, len))
    }

    /// Whether the spec writes the node at `pointer` (a default is not written).
    pub fn has(&self, pointer: &str) -> bool {
        self.nodes.get(pointer, &self.source.text).is_some()
    }

    /// Where an aliased or merged node was defined, if it was.
    pub fn defined_span(&self, pointer: &str) -> Option<Span> {
        let spans = self.nodes.get(pointer, &self.source.text)?;
        spans.defined.map(|(start, len)| Span::at(&self.source, start, len))
    }
}

/// Escapes one JSON-pointer token (RFC 6901).
pub fn escape_pointer(token: &str) -> String {
    if token.contains(['~', '/']) { token.replace('~', "~0").replace('/', "~1") } else { token.to_owned() }
}

/// Appends `/token`, escaped, to `pointer`. Walks over the tree extend one pointer and cut it
/// back after each child, rather than allocating a pointer per node.
pub fn push_token(pointer: &mut String, token: &str) {
    pointer.push('/');
    if token.contains(['~', '/']) {
        pointer.push_str(&token.replace('~', "~0").replace('/', "~1"));
    } else {
        pointer.push_str(token);
    }
}

/// Appends `/index` to `pointer`, as [`push_token`] does a key.
pub fn push_index(pointer: &mut String, index: usize) {
    use std::fmt::Write as _;
    // Writing to a String cannot fail.
    let _ = write!(pointer, "/{index}");
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
    // Every YAML error is located; one the parser could not place points at the file's start.
    let span = Some(match err.location().filter(|l| l.line() > 0) {
        Some(l) => {
            let (start, len) = location_range(source, &l);
            Span::at(source, start, len)
        }
        None => Span::at(source, 0, 0),
    });
    if let Some(rest) = message.strip_prefix("duplicate mapping key: ") {
        return duplicate_key(span, rest.split(", set DuplicateKeyPolicy").next().unwrap_or(rest));
    }
    if is_complex_key(err) {
        return Diagnostic::error("complex-key", "a mapping key must be a plain name")
            .at(span, "this key is a list or a mapping");
    }
    let (code, summary, help) = if message.contains("Depth") || message.contains("recursion limit") {
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
    let mut diagnostic = Diagnostic::error(code, summary).at(span, "");
    if let Some(help) = help {
        diagnostic = diagnostic.help(help);
    }
    diagnostic
}

/// A key set twice in one mapping.
fn duplicate_key(span: Option<Span>, key: &str) -> Diagnostic {
    Diagnostic::error("duplicate-key", format!("duplicate key `{key}`: it is already set above in the same mapping"))
        .at(span, "")
        .help("YAML would keep only the last one and silently drop the other; delete or merge one")
}

/// A key YAML reads as null: `~`, `null` or nothing. It would become a pipeline or task named
/// `null`, or vanish, so it is an error wherever it is.
fn null_key(span: Option<Span>, written: &str) -> Diagnostic {
    let label = if written.trim().is_empty() {
        "an empty key is YAML's null".to_owned()
    } else {
        format!("YAML reads `{}` as null", written.trim())
    };
    Diagnostic::error("null-key", "a mapping key is null, not a name")
        .at(span, label)
        .help("every key in a spec is a name: write the pipeline's, stage's or setting's name here")
}

/// Whether serde-saphyr stopped at a key that is a list or a mapping: [`RawKey`] reads keys as
/// text, which such a key is not.
fn is_complex_key(err: &serde_saphyr::Error) -> bool {
    matches!(err.without_snippet(), serde_saphyr::Error::Unexpected { expected: "string scalar", .. })
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
    Map(Vec<(Spanned<RawKey>, Spanned<RawNode>)>),
}

/// A mapping key as written. Every key in a spec is a name, so YAML 1.1's reading of a plain
/// `on`, `no`, `y` or `1e3` as a boolean or a number must not rename it to `true` or `1000`.
enum RawKey {
    /// The scalar's text: `on` stays `on`, `0x1F` stays `0x1F`.
    Text(String),
    /// `~`, `null` or an empty key, which no name can be.
    Null,
}

impl<'de> Deserialize<'de> for RawKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // serde-saphyr gives an option's plain null spellings as `None`, and a string its text
        // untyped.
        deserializer.deserialize_option(RawKeyVisitor)
    }
}

struct RawKeyVisitor;

impl<'de> Visitor<'de> for RawKeyVisitor {
    type Value = RawKey;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a name")
    }

    fn visit_none<E: de::Error>(self) -> Result<RawKey, E> {
        Ok(RawKey::Null)
    }

    fn visit_unit<E: de::Error>(self) -> Result<RawKey, E> {
        Ok(RawKey::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<RawKey, D::Error> {
        String::deserialize(deserializer).map(RawKey::Text)
    }
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
        while let Some(key) = map.next_key::<Spanned<RawKey>>()? {
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

    /// Every node is found by the pointer RFC 6901 gives it, escaped keys and list items too.
    #[test]
    fn every_node_has_its_pointer() {
        let doc = parse("a/b:\n  - x\n  - c~d:\n      - [1, 2]\ne: {f: g}\n").unwrap();
        for (pointer, line, column) in [
            ("", 1, 1),
            ("/a~1b", 2, 3),
            ("/a~1b/0", 2, 5),
            ("/a~1b/1", 3, 5),
            ("/a~1b/1/c~0d", 4, 7),
            ("/a~1b/1/c~0d/0", 4, 9),
            ("/a~1b/1/c~0d/0/1", 4, 13),
            ("/e", 5, 4),
            ("/e/f", 5, 8),
        ] {
            let span = doc.nodes.get(pointer, &doc.source.text).map(|s| Span::at(&doc.source, s.value.0, s.value.1));
            let at = span.map(|s| (s.start.line, s.start.column));
            assert_eq!(at, Some((line, column)), "{pointer:?}");
        }
        assert_eq!(doc.nodes.len(), 10, "one span per node, no more");
    }

    /// Reads `text` both ways; where the event reader reads it, serde-saphyr must read the same
    /// tree with the same spans. Whether the event reader read it.
    fn same_both_ways(text: &str) -> bool {
        let source = SourceFile::new("t.yaml", text);
        let Some((value, nodes)) = events::read(&source.text).filter(|(value, _)| !value.is_null()) else {
            return false;
        };
        let slow = Document::parse_with_serde_saphyr(source)
            .unwrap_or_else(|d| panic!("serde-saphyr rejects what the event reader read, {text:?}: {}", d.render()));
        assert_eq!(value, slow.value, "{text:?}");
        assert_eq!(nodes, slow.nodes, "{text:?}");
        true
    }

    /// Every spelling of a scalar serde-saphyr types, as a value in block and flow style, quoted,
    /// and as a key.
    #[test]
    fn the_event_reader_types_scalars_as_serde_saphyr_does() {
        let words = [
            "y",
            "Y",
            "yes",
            "YES",
            "n",
            "No",
            "on",
            "On",
            "OFF",
            "off",
            "true",
            "False",
            "TRUE",
            "tRUE",
            "null",
            "Null",
            "NULL",
            "nULL",
            "~",
            "0",
            "-0",
            "+0",
            "+1",
            "-1",
            "007",
            "-007",
            "0x1F",
            "0X1f",
            "0o17",
            "0O17",
            "0b101",
            "0B11",
            "-0x1F",
            "+0x1f",
            "1_000",
            "1__0",
            "_1",
            "1_",
            "0_1",
            "1.5",
            "-1.5",
            "1.",
            "1.e5",
            ".5",
            "-.5",
            "1e3",
            "1E3",
            "-1e3",
            "1e+3",
            "1e-3",
            "e5",
            "1e",
            "1e999",
            "-1e999",
            ".inf",
            "-.inf",
            "+.INF",
            ".Inf",
            ".nan",
            ".NaN",
            "-.nan",
            ".foo",
            "inf",
            "nan",
            "Infinity",
            "NaN",
            "-inf",
            "2026-01-01",
            "2026-01-01T10:00:00",
            "5m",
            "1h",
            "30s",
            "1d",
            "2w",
            "0xZZ",
            "1-",
            "1+1",
            "-",
            "+",
            "--",
            "...",
            ".",
            "1:2",
            "190:20:30",
            "12:30",
            "9223372036854775807",
            "9223372036854775808",
            "-9223372036854775808",
            "-9223372036854775809",
            "18446744073709551615",
            "18446744073709551616",
            "123456789012345678901234567890",
            "abc",
            "a b",
            "tag:x",
            "x:y",
            "${VAR}",
            "{{ ds }}",
            "a/b",
            "c~d",
            "ünï",
            "1 2",
            "<<",
            "=",
        ];
        let mut read = 0;
        for word in words {
            for text in [
                format!("a: {word}\n"),
                format!("a: [{word}]\n"),
                format!("a:\n  - {word}\n  - x\n"),
                format!("a: {{b: {word}}}\n"),
                format!("a: '{word}'\n"),
                format!("a: \"{word}\"\n"),
                format!("{word}: 1\n"),
                format!("a:\n  {word}: 1\n  z: 2\n"),
                format!("'{word}': 1\n"),
            ] {
                read += usize::from(same_both_ways(&text));
            }
        }
        assert!(read > words.len() * 6, "the event reader reads most of these: {read}");
    }

    /// Structures, styles and layouts: each read the same both ways, and most by the event reader.
    #[test]
    fn the_event_reader_locates_nodes_as_serde_saphyr_does() {
        let texts = [
            "a: 1\nb:\n  c: [1, 2, {d: e}]\n  f: {}\n  g: []\n",
            "---\na: 1\n...\n",
            "---\na: 1\n",
            "# comment\na: 1 # trailing\n# end\n",
            "a: |\n  line one\n  line two\nb: >-\n  folded\n  text\nc: x\n",
            "a: |+\n  kept\n\nb: |-\n  stripped\n",
            "a: plain\n  continued\n  on lines\nb: 2\n",
            "\"quoted key\": 1\n'single ''key''': 2\n\"esc\\tkey\": 3\n\"a/b\": 4\n\"c~d\": 5\n",
            "a:\nb: ~\nc: null\n",
            "a:\n- 1\n- - 2\n  - 3\n- k: v\n  l: w\n",
            "a: \"multi\n  line\"\nb: 'x\n\n  y'\n",
            "a: 1\r\nb:\r\n  c: 2\r\n",
            "\u{feff}a: 1\nb: 2\n",
            "a:\t1\nb: \"\\u00e9\"\n",
            "ünï: cödé\nb: [ü, 'ö']\n",
            "{a: 1, b: [2, 3]}\n",
            "[1, 2, 3]\n",
            "just text\n",
            "? a\n: 1\n",
            "a: &x 1\nb: *x\n",
            "base: &b {r: 2}\nm:\n  <<: *b\n  o: 1\n",
            "a: !!str 1\n",
            "a: 1\n---\nb: 2\n",
            "a: 1\na: 2\n",
            "a: [1, 2\n",
            "",
            "~\n",
        ];
        let read = texts.iter().filter(|text| same_both_ways(text)).count();
        assert!(read >= 16, "the event reader reads the plain ones: {read}");
    }

    /// Every spec in the repository reads the same both ways.
    #[test]
    fn the_event_reader_reads_the_repositorys_specs_as_serde_saphyr_does() {
        fn yaml_under(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    yaml_under(&path, out);
                } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                    out.push(path);
                }
            }
        }
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut files = Vec::new();
        for dir in ["pipelines", "examples", "tests"] {
            yaml_under(&root.join(dir), &mut files);
        }
        assert!(files.len() > 10, "{files:?}");
        let mut read = 0;
        for file in &files {
            if let Ok(text) = std::fs::read_to_string(file) {
                read += usize::from(same_both_ways(&text));
            }
        }
        assert!(read * 2 > files.len(), "the event reader reads most of them: {read} of {}", files.len());
    }

    #[test]
    fn rejects_duplicate_keys() {
        let err = parse("a: 1\nb: 2\na: 3\n").unwrap_err();
        let d = err.sorted()[0];
        assert_eq!(d.code, "duplicate-key", "{}", d.render());
        assert_eq!(d.primary.as_ref().unwrap().span.start.line, 3);
    }

    /// Every YAML 1.1 boolean and number spelling, as a key, is the name as written.
    #[test]
    fn keys_are_the_text_written() {
        let words = "y Y yes Yes YES n N no No NO true True TRUE false False FALSE on On ON off Off OFF \
            0 1 -1 +1 017 0o17 0x1F 0b101 1_000 190:20:30 1.5 1e3 6.8523015e+5 .5 .inf -.inf .Inf .INF .nan .NaN .NAN";
        for word in words.split_whitespace() {
            // One mapping each: serde-saphyr takes `1` and `+1` for one key.
            let doc = parse(&format!("x:\n  {word}: v\n")).unwrap_or_else(|d| panic!("{}", d.render()));
            let keys: Vec<&String> = doc.value["x"].as_object().unwrap().keys().collect();
            assert_eq!(keys, [word]);
            let key = doc.key_span(&format!("/x/{word}")).unwrap();
            assert_eq!((key.start.line, key.start.column, key.end.column), (2, 3, 3 + word.len()), "{word}");
        }
        // Values keep YAML's typing; the schema decides what each one may be.
        let doc = parse("on: on\n0x1F: 0x1F\n").unwrap();
        assert_eq!(doc.value, serde_json::json!({"on": true, "0x1F": 31}));
    }

    #[test]
    fn keys_equal_as_text_are_duplicates_and_only_those() {
        for (text, line) in [
            ("on: 1\n\"on\": 2\n", 2),
            ("a:\n  1: x\n  \"1\": y\n", 3),
            ("no: 1\n!!str no: 2\n", 2),
            ("x: &a on\nm:\n  on: 1\n  *a : 2\n", 1),
        ] {
            let err = parse(text).unwrap_err();
            let d = err.sorted()[0];
            assert_eq!(
                (d.code, d.primary.as_ref().unwrap().span.start.line),
                ("duplicate-key", line),
                "{}",
                d.render()
            );
        }
        let doc = parse("on: 1\ntrue: 2\nyes: 3\nY: 4\ny: 5\n").unwrap();
        assert_eq!(doc.value.as_object().unwrap().len(), 5);
        // A key set in the mapping overrides a merged one, as YAML's `<<` says.
        let doc = parse("base: &b {1: merged, on: merged}\nm:\n  <<: *b\n  \"1\": set\n  \"on\": set\n").unwrap();
        assert_eq!(doc.value["m"], serde_json::json!({"1": "set", "on": "set"}));
    }

    #[test]
    fn null_keys_are_located_errors() {
        for (text, line, column) in [
            ("~: 1\n", 1, 1),
            ("a:\n  null: 1\n", 2, 3),
            ("a:\n  NULL: 1\n", 2, 3),
            ("? \n: 1\n", 2, 1),
            ("a: {: 1}\n", 1, 5),
        ] {
            let err = parse(text).unwrap_err();
            let d = err.sorted()[0];
            let at = &d.primary.as_ref().unwrap().span.start;
            assert_eq!((d.code, at.line, at.column), ("null-key", line, column), "{text:?}: {}", d.render());
        }
        // A quoted or tagged `~` is text.
        assert_eq!(
            parse("\"~\": 1\n'null': 2\nx: {!!str ~: 3}\n").unwrap().value,
            serde_json::json!({"~": 1, "null": 2, "x": {"~": 3}})
        );
    }

    #[test]
    fn list_and_mapping_keys_are_located_errors() {
        for text in ["? [a, b]\n: 1\n", "x: 1\n? {a: b}\n: 1\n"] {
            let err = parse(text).unwrap_err();
            let d = err.sorted()[0];
            assert_eq!(d.code, "complex-key", "{}", d.render());
            assert!(d.primary.is_some());
        }
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
