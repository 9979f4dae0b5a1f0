//! Literals for generated code. Every value a template prints goes through here, so a user's
//! string can only ever become a quoted, escaped literal: never code.

use serde_json::Value;
use std::fmt::Write as _;

/// The language a template writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    /// Python source.
    Python,
    /// YAML.
    Yaml,
}

impl Language {
    /// The language of a template, from its name (`dag.py.j2`, `layer.yml.j2`).
    pub fn of_template(name: &str) -> Self {
        if name.ends_with(".py.j2") { Language::Python } else { Language::Yaml }
    }
}

/// Writes `text` with `\`, `"` and every control or line-separating character escaped; with
/// `multiline`, line breaks stay real and tabs become spaces (for a docstring).
fn escape_into(out: &mut String, text: &str, multiline: bool) {
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' if multiline => out.push('\n'),
            '\t' if multiline => out.push_str("    "),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            // Line and paragraph separators and NEL end a line for some readers.
            '\u{85}' | '\u{2028}' | '\u{2029}' | '\u{feff}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
}

/// A double-quoted string literal valid in both Python and YAML: `\`, `"` and every control or
/// line-separating character escaped, so that no value can end the string or the line.
pub fn quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    escape_into(&mut out, text, false);
    out.push('"');
    out
}

/// A Python triple-quoted docstring: readable line breaks, but every `\\`, `"` and control
/// character escaped, so the text can never close the string.
pub fn docstring(text: &str) -> String {
    let mut out = String::from("\"\"\"");
    escape_into(&mut out, text, true);
    out.push_str("\"\"\"");
    out
}

/// `value` as a literal of `language`.
pub fn literal(language: Language, value: &Value) -> String {
    match value {
        Value::Null => if language == Language::Python { "None" } else { "null" }.to_owned(),
        Value::Bool(b) => match (language, b) {
            (Language::Python, true) => "True".to_owned(),
            (Language::Python, false) => "False".to_owned(),
            (Language::Yaml, b) => b.to_string(),
        },
        Value::Number(n) => n.to_string(),
        Value::String(s) => quoted(s),
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().map(|v| literal(language, v)).collect();
            format!("[{}]", parts.join(", "))
        }
        Value::Object(map) => {
            let parts: Vec<String> =
                map.iter().map(|(k, v)| format!("{}: {}", quoted(k), literal(language, v))).collect();
            format!("{{{}}}", parts.join(", "))
        }
    }
}

/// A Snowflake string literal: single quotes doubled and backslashes escaped, as Snowflake
/// reads backslash escapes inside single-quoted strings.
pub fn sql_string(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn python_literals() {
        assert_eq!(literal(Language::Python, &json!([1, true, null, "a\"b"])), r#"[1, True, None, "a\"b"]"#);
        assert_eq!(literal(Language::Yaml, &json!({"k": false})), r#"{"k": false}"#);
    }

    /// Decodes a literal written by [`quoted`], as Python or YAML would read it.
    fn unquote(literal: &str) -> Option<String> {
        let inner = literal.strip_prefix('"')?.strip_suffix('"')?;
        let mut out = String::new();
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            match c {
                '"' => return None,
                '\\' => match chars.next()? {
                    'n' => out.push('\n'),
                    'r' => out.push('\r'),
                    't' => out.push('\t'),
                    '"' => out.push('"'),
                    '\\' => out.push('\\'),
                    'x' => out.push(char::from_u32(
                        u32::from_str_radix(&chars.by_ref().take(2).collect::<String>(), 16).ok()?,
                    )?),
                    'u' => out.push(char::from_u32(
                        u32::from_str_radix(&chars.by_ref().take(4).collect::<String>(), 16).ok()?,
                    )?),
                    _ => return None,
                },
                c => out.push(c),
            }
        }
        Some(out)
    }

    #[test]
    fn hostile_strings_stay_strings() {
        let nasty = "x\"\"\"\nimport os; os.system('rm -rf /')\n#\u{2028}\\";
        let q = quoted(nasty);
        assert!(!q.contains('\n') && !q.contains('\u{2028}'));
        assert_eq!(unquote(&q).as_deref(), Some(nasty));
    }

    #[test]
    fn sql_strings_double_quotes() {
        assert_eq!(sql_string("it's a \\ test"), r"'it''s a \\ test'");
    }

    proptest! {
        #[test]
        fn quoted_round_trips_and_stays_on_one_line(s in any::<String>()) {
            let q = quoted(&s);
            prop_assert!(!q.contains('\n') && !q.contains('\r'));
            prop_assert_eq!(unquote(&q), Some(s));
        }
    }
}
