//! The fast way in: the value tree and the node table built in one pass over granit-parser's
//! events, the parser serde-saphyr reads with, with no intermediate tree.
//!
//! It reads the YAML that specs are made of: plain, quoted and block scalars in block or flow
//! collections. Anything else, and anything serde-saphyr might reject (an anchor, an alias, a
//! tag, a `<<` merge, a null, integer or repeated key, a second document, a syntax error, a
//! budget nearly spent), gives up and returns `None`; [`super::Document::parse`] then reads the
//! file with serde-saphyr, so every error and every such document comes out exactly as before.
//! For the documents it does read, the tree and every span are serde-saphyr's: each node is
//! located by its parser event, as serde-saphyr locates it, and each scalar is typed by
//! serde-saphyr's rules for an untyped value, the few spellings not decided here by serde-saphyr
//! itself.

use super::nodes::{Kind, NodeSpans, NodeTable};
use super::{MAX_DEPTH, MAX_NODES, RawNode};
use granit_parser::{Event, Parser, ScalarStyle, Span, StrInput};
use serde_json::{Map, Value};
use std::borrow::Cow;

/// Gives up well before serde-saphyr's budget would stop it, so that it is serde-saphyr that
/// reports a spec at the limits.
const DEPTH_LIMIT: usize = MAX_DEPTH - 4;
const NODE_LIMIT: usize = MAX_NODES / 2;

/// The document's value tree and node table, or `None` to have serde-saphyr read it.
pub(super) fn read(text: &str) -> Option<(Value, NodeTable)> {
    let mut options = granit_parser::Options::default();
    // serde-saphyr reads without comment events; the scanner's limits are its defaults too.
    options.set_emit_comments(false);
    let mut reader =
        Reader { events: Parser::new_from_str_with_options(text, options), text, nodes: 0, entries: Vec::new() };
    let mut table = NodeTable::for_text(text.len());
    let (event, _) = reader.next()?;
    if !matches!(event, Event::StreamStart) {
        return None;
    }
    let (event, _) = reader.next()?;
    if !matches!(event, Event::DocumentStart(..)) {
        return None;
    }
    let (event, span) = reader.next()?;
    let value = reader.node(event, span, None, 0, &mut table)?;
    let (event, _) = reader.next()?;
    if !matches!(event, Event::DocumentEnd) {
        return None;
    }
    let (event, _) = reader.next()?;
    if !matches!(event, Event::StreamEnd) || reader.events.next().is_some() {
        return None;
    }
    Some((value, table))
}

struct Reader<'a> {
    events: Parser<'a, StrInput<'a>>,
    text: &'a str,
    nodes: usize,
    /// Emptied entry lists of the mappings read, one per level, to be filled again.
    entries: Vec<Vec<(String, Value)>>,
}

impl<'a> Reader<'a> {
    /// The next event; a syntax error gives up, for serde-saphyr to report it.
    fn next(&mut self) -> Option<(Event<'a>, Span)> {
        self.events.next()?.ok()
    }

    /// Reads the node that `event` opens.
    fn node(
        &mut self,
        event: Event<'a>,
        span: Span,
        key: Option<(&str, (usize, usize))>,
        depth: usize,
        table: &mut NodeTable,
    ) -> Option<Value> {
        self.nodes += 1;
        if depth > DEPTH_LIMIT || self.nodes > NODE_LIMIT {
            return None;
        }
        let spans = NodeSpans { key: key.map(|(_, at)| at), value: range(&span)?, defined: None };
        let key = key.map(|(name, _)| name);
        match event {
            Event::Scalar(text, style, 0, None) => {
                let at = table.open(spans, Kind::Scalar, key, self.text);
                table.close(at);
                scalar(text, style)
            }
            Event::SequenceStart(_, 0, None) => {
                let at = table.open(spans, Kind::Seq, key, self.text);
                let mut items = Vec::new();
                loop {
                    let (event, span) = self.next()?;
                    if matches!(event, Event::SequenceEnd) {
                        break;
                    }
                    items.push(self.node(event, span, None, depth + 1, table)?);
                }
                table.close(at);
                Some(Value::Array(items))
            }
            Event::MappingStart(_, 0, None) => {
                let at = table.open(spans, Kind::Map, key, self.text);
                // The entries are gathered first, so that the map is built at its size.
                let mut entries = self.entries.pop().unwrap_or_default();
                loop {
                    let (event, key_span) = self.next()?;
                    let name = match event {
                        Event::MappingEnd => break,
                        Event::Scalar(name, style, 0, None) if is_name(&name, style) => name,
                        _ => return None,
                    };
                    let (event, span) = self.next()?;
                    let key = Some((name.as_ref(), range(&key_span)?));
                    let value = self.node(event, span, key, depth + 1, table)?;
                    entries.push((name.into_owned(), value));
                }
                table.close(at);
                let written = entries.len();
                let map: Map<String, Value> = entries.drain(..).collect();
                self.entries.push(entries);
                // A key written twice leaves fewer entries in the map.
                (map.len() == written).then_some(Value::Object(map))
            }
            _ => None,
        }
    }
}

/// The byte range of an event, as serde-saphyr gives it.
fn range(span: &Span) -> Option<(usize, usize)> {
    let start = span.start.byte_offset()?;
    let end = span.end.byte_offset()?;
    Some((start, end.saturating_sub(start)))
}

/// Whether a key is a name whatever serde-saphyr's rules: not a null (a `null-key` error), not
/// an integer (compared by value, so `1` and `0x1` are one key), not a `<<` merge.
fn is_name(key: &str, style: ScalarStyle) -> bool {
    if style != ScalarStyle::Plain {
        return true;
    }
    let unsigned = key.strip_prefix(['+', '-']).unwrap_or(key);
    !is_null(key) && key != "<<" && !unsigned.starts_with(|c: char| c.is_ascii_digit())
}

fn is_null(text: &str) -> bool {
    matches!(text, "" | "~" | "null" | "Null" | "NULL")
}

/// An untagged scalar's value, typed as serde-saphyr types one for a value of any type: a
/// quoted or block scalar is text; a plain one is a null, a YAML 1.1 boolean, an integer, a
/// float, or else text.
fn scalar(text: Cow<'_, str>, style: ScalarStyle) -> Option<Value> {
    if style != ScalarStyle::Plain {
        return Some(Value::String(text.into_owned()));
    }
    if is_null(&text) {
        return Some(Value::Null);
    }
    if let Some(b) = yaml11_bool(&text) {
        return Some(Value::Bool(b));
    }
    if let Some(n) = decimal(&text) {
        return Some(n);
    }
    if cannot_be_number(&text) {
        return Some(Value::String(text.into_owned()));
    }
    typed_by_serde_saphyr(&text)
}

fn yaml11_bool(text: &str) -> Option<bool> {
    let is = |words: [&str; 4]| words.iter().any(|w| text.eq_ignore_ascii_case(w));
    if is(["true", "yes", "y", "on"]) {
        Some(true)
    } else if is(["false", "no", "n", "off"]) {
        Some(false)
    } else {
        None
    }
}

/// A decimal integer as integers are mostly written (`3`, `-12`, no `+`, `_` or leading zero),
/// read as serde-saphyr reads it: signed when negative, else unsigned.
fn decimal(text: &str) -> Option<Value> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(digits) => (true, digits),
        None => (false, text),
    };
    if digits.is_empty()
        || digits.len() > 18
        || !digits.bytes().all(|b| b.is_ascii_digit())
        || (digits.len() > 1 && digits.starts_with('0'))
    {
        return None;
    }
    if negative { text.parse::<i64>().ok().map(Value::from) } else { text.parse::<u64>().ok().map(Value::from) }
}

/// Whether no integer or float spelling serde-saphyr reads (`0x1F`, `0o17`, `1_000`, `1.5e3`,
/// `.inf`, `-.nan`) can be this text: a number starts with a digit or `.` after its sign, and
/// holds only digits, `_`, `.`, signs, hex digits, radix letters and exponents.
fn cannot_be_number(text: &str) -> bool {
    let unsigned = text.strip_prefix(['+', '-']).unwrap_or(text);
    match unsigned.as_bytes().first() {
        Some(b'0'..=b'9') => {
            !unsigned.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' | b'x' | b'X' | b'o' | b'O' | b'_' | b'.' | b'+' | b'-'))
        }
        Some(b'.') => !unsigned.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'+' | b'-')),
        _ => true,
    }
}

/// The rare number-like spelling (`1.5`, `0x1F`, `2026-01-01`) typed by serde-saphyr itself,
/// read alone. Its text is only digits, letters, `_`, `.`, `+` and `-`, so alone it is the
/// same plain scalar; a result that is not a number or that very text gives up.
fn typed_by_serde_saphyr(text: &str) -> Option<Value> {
    let node: RawNode = serde_saphyr::from_str(text).ok()?;
    match node {
        RawNode::Int(i) => Some(Value::from(i)),
        RawNode::UInt(u) => Some(Value::from(u)),
        RawNode::Float(f) => Some(serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        RawNode::Str(s) if s == text => Some(Value::String(s)),
        _ => None,
    }
}
