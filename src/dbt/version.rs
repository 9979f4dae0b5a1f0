//! `dbt.version`: the dbt-core versions a project runs on, and what follows from them.
//!
//! dbt-core 1.7 reads column tests only under `tests:`, and drops `data_tests:` without a
//! word; 1.8 introduced `data_tests:` and still reads `tests:` (1.11 and 1.12 do, without a
//! deprecation warning). So a range that admits 1.7 gets `tests:`, which keeps the tests on
//! every version it admits, and only a range of 1.8 and later gets `data_tests:`. The range
//! also says which `manifest.json` schemas are read at compile time: v11 is 1.7's, v12 that of
//! 1.8 to 1.12.

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::borrow::Cow;
use std::fmt;

/// `metadata.dbt_schema_version` of the manifests dbt-core 1.7 writes.
pub const MANIFEST_V11: &str = "https://schemas.getdbt.com/dbt/manifest/v11.json";
/// `metadata.dbt_schema_version` of the manifests dbt-core 1.8 to 1.12 write.
pub const MANIFEST_V12: &str = "https://schemas.getdbt.com/dbt/manifest/v12.json";

/// The dbt-core 1.x minor versions fhirflow is tested with, and the manifest schema of each.
const KNOWN: &[(u32, &str)] = &[
    (7, MANIFEST_V11),
    (8, MANIFEST_V12),
    (9, MANIFEST_V12),
    (10, MANIFEST_V12),
    (11, MANIFEST_V12),
    (12, MANIFEST_V12),
];

/// The first minor version that reads `data_tests:`.
const DATA_TESTS_SINCE: u32 = 8;

/// The pattern a range matches; kept in step with [`DbtVersion::parse`].
pub const DBT_VERSION_PATTERN: &str =
    r"^\s*(>=|<=|==|>|<|=|~)?\s*[0-9]+\.[0-9]+(\.[0-9]+)?\s*(,\s*(>=|<=|==|>|<|=|~)?\s*[0-9]+\.[0-9]+(\.[0-9]+)?\s*)*$";

/// A dbt-core release, `MAJOR.MINOR.PATCH`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Release {
    /// `1`
    pub major: u32,
    /// `7` in 1.7.20
    pub minor: u32,
    /// `20` in 1.7.20
    pub patch: u32,
}

impl Release {
    /// The release a manifest's `metadata.dbt_version` names (`1.7.20`, `1.12.0rc1`); a
    /// pre-release counts as its release.
    pub fn parse_lenient(text: &str) -> Option<Release> {
        let mut parts = text.trim().splitn(3, '.');
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        let digits: String = parts.next().unwrap_or("0").chars().take_while(char::is_ascii_digit).collect();
        let patch = if digits.is_empty() { 0 } else { digits.parse().ok()? };
        Some(Release { major, minor, patch })
    }

    const fn new(major: u32, minor: u32, patch: u32) -> Release {
        Release { major, minor, patch }
    }
}

impl fmt::Display for Release {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// A range of dbt-core versions: comparators joined by commas, all of which must hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbtVersion {
    text: String,
    /// The lowest release admitted.
    low: Release,
    /// The first release above the range, if it has an end.
    high: Option<Release>,
}

impl Default for DbtVersion {
    /// `>=1.8`: what fhirflow wrote and read before `dbt.version` existed.
    fn default() -> Self {
        DbtVersion { text: ">=1.8".to_owned(), low: Release::new(1, 8, 0), high: None }
    }
}

impl DbtVersion {
    /// Parses `1.7`, `~1.7`, `>=1.8`, `>=1.8,<1.12`, ... A bare or `=` version is that release,
    /// or that whole minor series when it has no patch; `~1.7.3` is 1.7.3 up to 1.8; `<=1.11`
    /// admits every 1.11 release. The range must admit some dbt-core fhirflow supports.
    pub fn parse(text: &str) -> Result<DbtVersion, String> {
        let text = text.trim();
        let mut low = Release::new(0, 0, 0);
        let mut high: Option<Release> = None;
        for part in text.split(',') {
            let (from, to) = comparator(part.trim())?;
            low = low.max(from);
            high = match (high, to) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        let range = DbtVersion { text: text.to_owned(), low, high };
        if high.is_some_and(|h| h <= low) {
            return Err(format!("`{text}` admits no version"));
        }
        if range.supported_minors().is_empty() {
            return Err(format!("`{text}` admits no dbt-core that fhirflow supports ({})", supported_text()));
        }
        Ok(range)
    }

    /// The range as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether `release` is in the range.
    pub fn contains(&self, release: Release) -> bool {
        release >= self.low && self.high.is_none_or(|h| release < h)
    }

    /// Whether some 1.`minor` release is in the range.
    fn admits_minor(&self, minor: u32) -> bool {
        let (from, to) = (Release::new(1, minor, 0), Release::new(1, minor + 1, 0));
        self.low < to && self.high.is_none_or(|h| from < h)
    }

    /// The supported 1.x minor versions in the range, oldest first.
    pub fn supported_minors(&self) -> Vec<u32> {
        KNOWN.iter().map(|(minor, _)| *minor).filter(|&m| self.admits_minor(m)).collect()
    }

    /// The properties key of column tests that every version in the range reads: `tests`
    /// when the range admits 1.7, else `data_tests`.
    pub fn tests_key(&self) -> &'static str {
        if self.supported_minors().iter().any(|&m| m < DATA_TESTS_SINCE) { "tests" } else { "data_tests" }
    }

    /// The manifest schemas written by the supported versions in the range, oldest first.
    pub fn manifest_schemas(&self) -> Vec<&'static str> {
        let mut schemas: Vec<&'static str> =
            KNOWN.iter().filter(|(minor, _)| self.admits_minor(*minor)).map(|(_, schema)| *schema).collect();
        schemas.dedup();
        schemas
    }

    /// Whether this is the range used when the spec sets none.
    pub fn is_default(&self) -> bool {
        *self == DbtVersion::default()
    }
}

/// The dbt-core versions that write `schema`, such as `1.8 to 1.12`; `None` for an unknown one.
pub fn writers_of(schema: &str) -> Option<String> {
    let minors: Vec<u32> = KNOWN.iter().filter(|(_, s)| *s == schema).map(|(m, _)| *m).collect();
    match minors.as_slice() {
        [] => None,
        [one] => Some(format!("1.{one}")),
        [first, .., last] => Some(format!("1.{first} to 1.{last}")),
    }
}

/// `1.7 to 1.12`
fn supported_text() -> String {
    match (KNOWN.first(), KNOWN.last()) {
        (Some((first, _)), Some((last, _))) => format!("dbt-core 1.{first} to 1.{last}"),
        _ => String::new(),
    }
}

/// One comparator as the releases `[from, to)` it admits (`to` = `None`: no end).
fn comparator(part: &str) -> Result<(Release, Option<Release>), String> {
    let bad =
        || format!("`{part}` is not a dbt-core version comparator: write `1.7`, `~1.7`, `>=1.8`, `<1.12` or `=1.8.3`");
    if part.starts_with("~=") {
        return Err(format!(
            "`{part}`: write `~1.7` for the 1.7 releases, or `>=1.7,<2` (pip's `~=` would mean the latter)"
        ));
    }
    let ops = [">=", "<=", "==", ">", "<", "=", "~"];
    let op = ops.iter().find(|op| part.starts_with(**op)).copied().unwrap_or("");
    let number = part[op.len()..].trim();
    let fields: Vec<&str> = number.split('.').collect();
    if !(2..=3).contains(&fields.len())
        || fields.iter().any(|f| f.is_empty() || f.len() > 6 || !f.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(bad());
    }
    let num = |i: usize| fields.get(i).map(|f| f.parse::<u32>().map_err(|_| bad())).transpose();
    let (major, minor, patch) = (num(0)?.unwrap_or(0), num(1)?.unwrap_or(0), num(2)?);
    let at = Release::new(major, minor, patch.unwrap_or(0));
    // The first release after the one written: after 1.11 comes 1.12.0, after 1.11.2 comes 1.11.3.
    let next = match patch {
        Some(p) => Release::new(major, minor, p + 1),
        None => Release::new(major, minor + 1, 0),
    };
    let next_minor = Release::new(major, minor + 1, 0);
    Ok(match op {
        ">=" => (at, None),
        ">" => (next, None),
        "<" => (Release::new(0, 0, 0), Some(at)),
        "<=" => (Release::new(0, 0, 0), Some(next)),
        "~" => (at, Some(next_minor)),
        _ => (at, Some(next)),
    })
}

impl fmt::Display for DbtVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for DbtVersion {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        DbtVersion::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl Serialize for DbtVersion {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl JsonSchema for DbtVersion {
    fn schema_name() -> Cow<'static, str> {
        "DbtVersion".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": DBT_VERSION_PATTERN,
            "description": "A dbt-core version range, such as `1.7`, `~1.7`, `>=1.8` or `>=1.8,<1.12` (quoted, so that YAML keeps it text).",
            "examples": ["1.7", ">=1.8", ">=1.8,<1.12"]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(text: &str) -> DbtVersion {
        DbtVersion::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn release(text: &str) -> Release {
        Release::parse_lenient(text).unwrap()
    }

    #[test]
    fn bare_and_tilde_versions_are_one_minor_series() {
        for text in ["1.7", "~1.7", "=1.7", "==1.7", " 1.7 "] {
            let r = range(text);
            assert!(r.contains(release("1.7.0")) && r.contains(release("1.7.20")), "{text}");
            assert!(!r.contains(release("1.6.9")) && !r.contains(release("1.8.0")), "{text}");
            assert_eq!(r.supported_minors(), [7], "{text}");
        }
        let r = range("~1.7.3");
        assert!(!r.contains(release("1.7.2")) && r.contains(release("1.7.3")) && !r.contains(release("1.8.0")));
        let r = range("=1.8.3");
        assert!(r.contains(release("1.8.3")) && !r.contains(release("1.8.4")));
    }

    #[test]
    fn bounds_read_a_minor_as_all_of_its_releases() {
        let r = range(">=1.8,<1.12");
        assert_eq!(r.supported_minors(), [8, 9, 10, 11]);
        assert!(!r.contains(release("1.12.0")) && r.contains(release("1.11.16")));
        assert_eq!(range("<=1.11").supported_minors(), [7, 8, 9, 10, 11]);
        assert!(range("<=1.11").contains(release("1.11.99")));
        assert_eq!(range(">1.7").supported_minors(), [8, 9, 10, 11, 12]);
        assert_eq!(range(">1.7.5").supported_minors(), [7, 8, 9, 10, 11, 12]);
        assert!(!range(">1.7.5").contains(release("1.7.5")));
        assert_eq!(range(">=1.7").supported_minors(), [7, 8, 9, 10, 11, 12]);
        assert!(range(">=1.8").contains(release("1.13.0")), "an open range admits later releases");
    }

    #[test]
    fn a_range_that_admits_1_7_writes_tests_everything_else_data_tests() {
        for (text, key) in
            [("1.7", "tests"), (">=1.7", "tests"), ("<1.9", "tests"), ("~1.7.3", "tests"), (">=1.8", "data_tests")]
        {
            assert_eq!(range(text).tests_key(), key, "{text}");
        }
        for text in ["1.8", "1.11", "1.12", ">1.7", ">=1.8,<1.12"] {
            assert_eq!(range(text).tests_key(), "data_tests", "{text}");
        }
        assert_eq!(DbtVersion::default().tests_key(), "data_tests", "the default is what fhirflow always wrote");
        assert_eq!(DbtVersion::default(), range(">=1.8"));
    }

    #[test]
    fn manifest_schemas_follow_the_minors() {
        assert_eq!(range("1.7").manifest_schemas(), [MANIFEST_V11]);
        assert_eq!(range(">=1.7").manifest_schemas(), [MANIFEST_V11, MANIFEST_V12]);
        assert_eq!(range(">=1.8,<1.12").manifest_schemas(), [MANIFEST_V12]);
        assert_eq!(DbtVersion::default().manifest_schemas(), [MANIFEST_V12]);
        assert_eq!(writers_of(MANIFEST_V11).as_deref(), Some("1.7"));
        assert_eq!(writers_of(MANIFEST_V12).as_deref(), Some("1.8 to 1.12"));
        assert_eq!(writers_of("https://schemas.getdbt.com/dbt/manifest/v10.json"), None);
    }

    #[test]
    fn rejects_malformed_empty_and_unsupported_ranges() {
        for text in ["", "1", "1.", "v1.7", "1.7.x", "1.7.0b1", ">= ", ">=1.8,", ",1.8", "1.8 1.9", "=>1.8", "1.7.1.2"]
        {
            let e = DbtVersion::parse(text).unwrap_err();
            assert!(e.contains("is not a dbt-core version comparator"), "{text}: {e}");
        }
        assert!(DbtVersion::parse("~=1.7").unwrap_err().contains("pip's `~=`"));
        assert_eq!(DbtVersion::parse(">=1.9,<1.8").unwrap_err(), "`>=1.9,<1.8` admits no version");
        assert_eq!(DbtVersion::parse("1.8,1.9").unwrap_err(), "`1.8,1.9` admits no version");
        for text in ["1.6", "<1.7", ">=1.13", "2.0", ">1.12"] {
            let e = DbtVersion::parse(text).unwrap_err();
            assert!(e.ends_with("admits no dbt-core that fhirflow supports (dbt-core 1.7 to 1.12)"), "{text}: {e}");
        }
        assert!(DbtVersion::parse("1.9999999").is_err(), "no overflow past u32");
    }

    #[test]
    fn the_schema_pattern_accepts_what_parse_reads() {
        let pattern = regex::Regex::new(DBT_VERSION_PATTERN).unwrap();
        for text in ["1.7", "~1.7", ">=1.8", ">=1.8,<1.12", " >= 1.8 , < 1.12 ", "=1.8.3", "==1.8", "<=1.11"] {
            assert!(pattern.is_match(text), "{text}");
            assert!(DbtVersion::parse(text).is_ok(), "{text}");
        }
        for text in ["", "1", "v1.7", "1.7.x", "~=1.7", ">=1.8,", "1.8 1.9", "1.7.1.2"] {
            assert!(!pattern.is_match(text), "{text}");
            assert!(DbtVersion::parse(text).is_err(), "{text}");
        }
    }

    #[test]
    fn manifest_releases_parse_leniently() {
        assert_eq!(release("1.7.20"), Release::new(1, 7, 20));
        assert_eq!(release("1.12.0rc1"), Release::new(1, 12, 0));
        assert_eq!(release("1.8"), Release::new(1, 8, 0));
        assert_eq!(Release::parse_lenient("dev"), None);
        assert_eq!(range(" ~1.7 ").to_string(), "~1.7");
    }
}
