//! The two pattern languages dbt's selector methods use, reimplemented to give the same answers:
//! Python's `fnmatch.fnmatch` (tags, file names, packages, fqn wildcards) and `pathlib.Path.glob`
//! (the `path:` method), both as in Python 3.11 on POSIX (case-sensitive).

/// One element of an fnmatch pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// A character that matches itself.
    Literal(char),
    /// `?`: any one character.
    Any,
    /// `*`: any run of characters, `/` and newlines included.
    Star,
    /// `[...]`: one character in (or, negated, not in) the set.
    Class { negated: bool, items: Vec<(char, char)> },
}

/// A compiled `fnmatch` pattern: `*`, `?`, `[seq]`, `[!seq]`; every other character is literal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fnmatch {
    tokens: Vec<Token>,
}

impl Fnmatch {
    /// Compiles `pattern` the way `fnmatch.translate` reads it: an unclosed `[` is a literal, a
    /// `]` first in a set is a member, ranges whose ends are reversed are dropped.
    pub(crate) fn new(pattern: &str) -> Fnmatch {
        let pat: Vec<char> = pattern.chars().collect();
        let n = pat.len();
        let mut tokens = Vec::new();
        let mut i = 0;
        while i < n {
            let c = pat[i];
            i += 1;
            match c {
                '*' => {
                    if tokens.last() != Some(&Token::Star) {
                        tokens.push(Token::Star);
                    }
                }
                '?' => tokens.push(Token::Any),
                '[' => {
                    let mut j = i;
                    if j < n && pat[j] == '!' {
                        j += 1;
                    }
                    if j < n && pat[j] == ']' {
                        j += 1;
                    }
                    while j < n && pat[j] != ']' {
                        j += 1;
                    }
                    if j >= n {
                        tokens.push(Token::Literal('['));
                    } else {
                        tokens.push(class(&pat[i..j]));
                        i = j + 1;
                    }
                }
                other => tokens.push(Token::Literal(other)),
            }
        }
        Fnmatch { tokens }
    }

    /// Whether the pattern has any of the characters dbt treats as a wildcard (`* ? [ ]`).
    pub(crate) fn has_wildcard(text: &str) -> bool {
        text.contains(['*', '?', '[', ']'])
    }

    /// Whether the whole of `text` matches.
    pub(crate) fn matches(&self, text: &str) -> bool {
        let text: Vec<char> = text.chars().collect();
        let tokens = &self.tokens;
        // Classic greedy matching with one backtrack point: the last `*` seen.
        let (mut t, mut s) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while s < text.len() {
            if t < tokens.len() && tokens[t] != Token::Star && one(&tokens[t], text[s]) {
                t += 1;
                s += 1;
            } else if t < tokens.len() && tokens[t] == Token::Star {
                star = Some((t, s));
                t += 1;
            } else if let Some((star_t, star_s)) = star {
                t = star_t + 1;
                s = star_s + 1;
                star = Some((star_t, star_s + 1));
            } else {
                return false;
            }
        }
        tokens[t..].iter().all(|token| *token == Token::Star)
    }
}

/// Whether one non-star token matches one character.
fn one(token: &Token, c: char) -> bool {
    match token {
        Token::Literal(l) => *l == c,
        Token::Any => true,
        Token::Star => true,
        Token::Class { negated, items } => items.iter().any(|&(lo, hi)| lo <= c && c <= hi) != *negated,
    }
}

/// The set between `[` and `]`, as `fnmatch.translate` (Python 3.11) builds it.
fn class(stuff: &[char]) -> Token {
    let negated = stuff.first() == Some(&'!');
    if !stuff.contains(&'-') {
        let members = if negated { &stuff[1..] } else { stuff };
        return Token::Class { negated, items: members.iter().map(|&c| (c, c)).collect() };
    }
    // Split at the hyphens that make ranges, as Python does: `chunks` joined by `-` are ranges
    // from the last character of one chunk to the first of the next.
    let j = stuff.len();
    let mut i = 0;
    let mut chunks: Vec<Vec<char>> = Vec::new();
    let mut k = if negated { 2 } else { 1 };
    loop {
        let found = (k.min(j)..j).find(|&x| stuff[x] == '-');
        let Some(found) = found else { break };
        chunks.push(stuff[i..found].to_vec());
        i = found + 1;
        k = found + 3;
    }
    let last = stuff[i..j].to_vec();
    if last.is_empty() {
        if let Some(previous) = chunks.last_mut() {
            previous.push('-');
        }
    } else {
        chunks.push(last);
    }
    // Drop empty ranges (`z-a`), merging their chunks.
    let mut index = chunks.len().saturating_sub(1);
    while index > 0 {
        let (a, b) = (chunks[index - 1].last().copied(), chunks[index].first().copied());
        if let (Some(a), Some(b)) = (a, b)
            && a > b
        {
            let tail: Vec<char> = chunks[index][1..].to_vec();
            let head = &mut chunks[index - 1];
            head.pop();
            head.extend(tail);
            chunks.remove(index);
        }
        index -= 1;
    }
    let mut items = Vec::new();
    let mut first = true;
    for (n, chunk) in chunks.iter().enumerate() {
        let mut chars: &[char] = chunk;
        if n > 0 {
            // The range from the previous chunk's last character to this chunk's first.
            let (Some(&lo), Some(&hi)) = (chunks[n - 1].last(), chunk.first()) else { continue };
            items.pop();
            items.push((lo, hi));
            chars = &chunk[1..];
        }
        for &c in chars {
            if first && negated {
                first = false;
                continue;
            }
            first = false;
            items.push((c, c));
        }
        first = false;
    }
    Token::Class { negated, items }
}

/// A `pathlib.Path.glob` pattern, relative to the project root, split into components.
#[derive(Debug, Clone)]
pub(crate) struct PathGlob {
    parts: Vec<Part>,
    /// The pattern ended with `/`: only directories match.
    dir_only: bool,
}

#[derive(Debug, Clone)]
enum Part {
    /// `**`: zero or more directories.
    Recursive,
    /// A component with wildcards.
    Wild(Fnmatch),
    /// A component without wildcards, matched exactly.
    Exact(String),
    /// `..`: pathlib yields a path that never equals a node's path.
    Never,
}

impl PathGlob {
    /// Compiles a pattern, or says why pathlib would refuse it.
    pub(crate) fn new(pattern: &str) -> Result<PathGlob, String> {
        if pattern.is_empty() {
            return Err("the path is empty".into());
        }
        if pattern.starts_with('/') {
            return Err("absolute paths are not supported; give a path relative to the project".into());
        }
        let mut parts = Vec::new();
        for component in pattern.split('/').filter(|c| !c.is_empty() && *c != ".") {
            let part = if component == "**" {
                Part::Recursive
            } else if component.contains("**") {
                return Err(format!("`**` can only be a whole path component, not `{component}`"));
            } else if component == ".." {
                Part::Never
            } else if component.contains(['*', '?', '[']) {
                Part::Wild(Fnmatch::new(component))
            } else {
                Part::Exact(component.to_owned())
            };
            parts.push(part);
        }
        if parts.is_empty() {
            return Err("the path names the project folder itself; name a folder or file in it".into());
        }
        Ok(PathGlob { parts, dir_only: pattern.ends_with('/') })
    }

    /// Whether the project path `components` (a file when `is_dir` is false) is one the glob
    /// yields, assuming it exists.
    pub(crate) fn matches(&self, components: &[&str], is_dir: bool) -> bool {
        self.match_from(0, components, is_dir)
    }

    fn match_from(&self, part: usize, components: &[&str], is_dir: bool) -> bool {
        let Some(first) = self.parts.get(part) else {
            return components.is_empty() && (is_dir || !self.dir_only);
        };
        match first {
            Part::Recursive => {
                // `**` yields directories only: it may consume the last component only when
                // that is a directory.
                (0..=components.len()).any(|taken| {
                    (taken < components.len() || is_dir || taken == 0)
                        && self.match_from(part + 1, &components[taken..], is_dir)
                })
            }
            Part::Never => false,
            Part::Wild(pattern) => {
                let Some((head, rest)) = components.split_first() else { return false };
                // A component followed by more pattern must be a directory.
                let must_be_dir = part + 1 < self.parts.len();
                pattern.matches(head)
                    && (!must_be_dir || !rest.is_empty() || is_dir)
                    && self.match_from(part + 1, rest, is_dir)
            }
            Part::Exact(name) => {
                let Some((head, rest)) = components.split_first() else { return false };
                let must_be_dir = part + 1 < self.parts.len();
                head == name && (!must_be_dir || !rest.is_empty() || is_dir) && self.match_from(part + 1, rest, is_dir)
            }
        }
    }
}

/// A relative path's components, as `pathlib` normalizes them (no empty or `.` parts).
pub(crate) fn components(path: &str) -> Vec<&str> {
    path.split('/').filter(|c| !c.is_empty() && *c != ".").collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fm(pattern: &str, text: &str) -> bool {
        Fnmatch::new(pattern).matches(text)
    }

    #[test]
    fn fnmatch_agrees_with_python() {
        // Each row was checked with Python 3.11's fnmatch.fnmatchcase.
        let rows: &[(&str, &str, bool)] = &[
            ("staging", "staging", true),
            ("stag*", "staging", true),
            ("*ing", "staging", true),
            ("*", "", true),
            ("", "", true),
            ("", "a", false),
            ("s?aging", "staging", true),
            ("s?aging", "sstaging", false),
            ("[st]taging", "staging", true),
            ("[!s]taging", "staging", false),
            ("[!s]taging", "xtaging", true),
            ("[a-c]x", "bx", true),
            ("[a-c]x", "dx", false),
            ("[z-a]x", "zx", false),
            ("[!z-a]x", "qx", true),
            ("[a-]x", "-x", true),
            ("[]]x", "]x", true),
            ("[!]]x", "]x", false),
            ("[x", "[x", true),
            ("a*b*c", "aXbYc", true),
            ("a*b*c", "aXbY", false),
            ("*.sql", "models/a.sql", true),
            ("a-c", "a-c", true),
            ("[a-c-e]", "-", true),
            ("[a-c-e]", "d", false),
            ("[a-c-e]", "e", true),
            ("STAGING", "staging", false),
            ("a\\b", "a\\b", true),
            ("[\\]", "\\", true),
            ("[!c-a]", "q", true),
            ("[c-ab-d]", "c", true),
            ("[c-ab-d]", "a", false),
            ("[a-cd-b]", "d", false),
            ("[a-cd-b]", "b", true),
        ];
        for (pattern, text, want) in rows {
            assert_eq!(fm(pattern, text), *want, "fnmatch({text:?}, {pattern:?})");
        }
    }

    fn glob(pattern: &str, path: &str, is_dir: bool) -> bool {
        PathGlob::new(pattern).unwrap().matches(&components(path), is_dir)
    }

    #[test]
    fn path_globs_agree_with_pathlib() {
        assert!(glob("models", "models", true));
        assert!(glob("models/", "models", true));
        assert!(!glob("models/", "models", false));
        assert!(glob("models/./marts", "models/marts", true));
        assert!(glob("models//marts", "models/marts", true));
        assert!(glob("./models", "models", true));
        assert!(glob("models/**", "models", true));
        assert!(glob("models/**", "models/marts/finance", true));
        assert!(!glob("models/**", "models/marts/a.sql", false));
        assert!(glob("**", "", true));
        assert!(glob("models/**/*.sql", "models/a.sql", false));
        assert!(glob("models/**/*.sql", "models/marts/finance/a.sql", false));
        assert!(glob("models/st*", "models/staging", true));
        assert!(glob("models/*/finance", "models/marts/finance", true));
        assert!(glob("*", ".gitignore", false));
        assert!(!glob("models/..", "models", true));
        assert!(!glob("MODELS", "models", true));
        assert!(glob("models/staging/stg_a.sql", "models/staging/stg_a.sql", false));
        assert!(!glob("models/staging/stg_a.sql/", "models/staging/stg_a.sql", false));
        assert!(PathGlob::new("").is_err());
        assert!(PathGlob::new(".").is_err());
        assert!(PathGlob::new("/abs").is_err());
        assert!(PathGlob::new("models/a**").is_err());
    }
}
