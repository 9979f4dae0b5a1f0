//! Source files and positions in them.

use std::sync::{Arc, OnceLock};

/// A spec file's name as shown to the user, and its text.
#[derive(Debug)]
pub struct SourceFile {
    /// The path as the user gave it (or as it was included).
    pub name: String,
    /// The file's full text.
    pub text: String,
    /// Byte offsets where lines start, built on first use.
    line_starts: OnceLock<Vec<usize>>,
}

impl SourceFile {
    /// A shared source file.
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> Arc<Self> {
        Arc::new(Self { name: name.into(), text: text.into(), line_starts: OnceLock::new() })
    }

    fn line_starts(&self) -> &[usize] {
        self.line_starts
            .get_or_init(|| std::iter::once(0).chain(self.text.match_indices('\n').map(|(i, _)| i + 1)).collect())
    }

    /// The 1-based line and column (in characters) of a byte offset. Lines are found by binary
    /// search, so locating every node of a large spec stays linear.
    pub fn position(&self, byte: usize) -> Position {
        let byte = floor_char_boundary(&self.text, byte.min(self.text.len()));
        let starts = self.line_starts();
        let index = starts.partition_point(|&start| start <= byte).saturating_sub(1);
        let column = self.text[starts[index]..byte].chars().count() + 1;
        Position { line: index + 1, column, byte }
    }

    /// The text of a 1-based line, without its line break.
    pub fn line_text(&self, line: usize) -> &str {
        let Some(&start) = self.line_starts().get(line.saturating_sub(1)) else { return "" };
        let rest = &self.text[start..];
        let l = &rest[..rest.find('\n').unwrap_or(rest.len())];
        l.strip_suffix('\r').unwrap_or(l)
    }

    /// The byte offset of a 1-based line and column, clamped to the text.
    pub fn offset(&self, line: usize, column: usize) -> usize {
        let Some(&start) = self.line_starts().get(line.saturating_sub(1)) else { return self.text.len() };
        let rest = &self.text[start..];
        let line_text = &rest[..rest.find('\n').map_or(rest.len(), |i| i + 1)];
        start + line_text.chars().take(column.saturating_sub(1)).map(char::len_utf8).sum::<usize>()
    }
}

fn floor_char_boundary(text: &str, mut byte: usize) -> usize {
    while !text.is_char_boundary(byte) {
        byte -= 1;
    }
    byte
}

/// A point in a source file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct Position {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// 0-based byte offset.
    pub byte: usize,
}

/// A stretch of a source file.
#[derive(Debug, Clone)]
pub struct Span {
    /// The file.
    pub file: Arc<SourceFile>,
    /// Where it starts.
    pub start: Position,
    /// Where it ends (exclusive).
    pub end: Position,
}

impl Span {
    /// The span of `len` bytes at `byte` in `file`.
    pub fn at(file: &Arc<SourceFile>, byte: usize, len: usize) -> Self {
        let start = file.position(byte);
        let end = file.position(byte + len.max(1));
        Self { file: Arc::clone(file), start, end }
    }

    /// A span covering the whole of line `line`, for when only a line is known.
    pub fn line(file: &Arc<SourceFile>, line: usize, column: usize) -> Self {
        let byte = file.offset(line, column);
        let rest = file.text[byte..].find('\n').unwrap_or(file.text.len() - byte);
        Self::at(file, byte, rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_count_characters() {
        let f = SourceFile::new("x.yaml", "a: 1\nbé: 2\n");
        assert_eq!(f.position(0), Position { line: 1, column: 1, byte: 0 });
        let p = f.position(f.text.find(": 2").unwrap());
        assert_eq!((p.line, p.column), (2, 3));
        assert_eq!(f.line_text(2), "bé: 2");
        assert_eq!(f.offset(2, 3), f.text.find(": 2").unwrap());
        assert_eq!(f.position(f.text.len()).line, 3);
        assert_eq!(f.offset(9, 1), f.text.len());
        assert_eq!(f.line_text(9), "");
    }
}
