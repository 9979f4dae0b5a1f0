//! Durations as people write them: `30s`, `5m`, `1h30m`, `2d`.

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::borrow::Cow;
use std::fmt;

/// A whole number of seconds, written with units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration {
    seconds: u64,
}

/// The pattern a duration string matches; kept in step with [`Duration::parse`].
pub const DURATION_PATTERN: &str = r"^([0-9]+[smhdw])+$";

impl Duration {
    /// A duration of `seconds`.
    pub const fn from_secs(seconds: u64) -> Self {
        Self { seconds }
    }

    /// Total seconds.
    pub const fn as_secs(self) -> u64 {
        self.seconds
    }

    /// Parses `1h30m`-style text. Units: s, m, h, d, w. At least one part; no spaces.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || format!("{text:?} is not a duration: write it like 30s, 5m, 1h30m or 2d");
        if text.is_empty() {
            return Err(bad());
        }
        let mut total: u64 = 0;
        let mut digits = String::new();
        for c in text.chars() {
            if c.is_ascii_digit() {
                digits.push(c);
                continue;
            }
            let unit: u64 = match c {
                's' => 1,
                'm' => 60,
                'h' => 3600,
                'd' => 86_400,
                'w' => 604_800,
                _ => return Err(bad()),
            };
            if digits.is_empty() {
                return Err(bad());
            }
            let n: u64 = digits.parse().map_err(|_| bad())?;
            total = n
                .checked_mul(unit)
                .and_then(|part| total.checked_add(part))
                .ok_or_else(|| format!("{text:?} is too long a duration"))?;
            digits.clear();
        }
        if !digits.is_empty() {
            return Err(format!(
                "{text:?} has no unit after {digits}: write {digits}s, {digits}m, {digits}h or {digits}d"
            ));
        }
        Ok(Self { seconds: total })
    }
}

impl fmt::Display for Duration {
    /// The shortest canonical spelling, such as `1h30m`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.seconds == 0 {
            return f.write_str("0s");
        }
        let mut rest = self.seconds;
        for (unit, size) in [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)] {
            if rest >= size {
                write!(f, "{}{}", rest / size, unit)?;
                rest %= size;
            }
        }
        Ok(())
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Duration::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl JsonSchema for Duration {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": DURATION_PATTERN,
            "description": "A duration: a number and a unit (s, m, h, d, w), repeated, such as 30s, 5m or 1h30m.",
            "examples": ["30s", "5m", "1h30m"]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_round_trip() {
        for (text, secs) in [("10s", 10), ("5m", 300), ("1h30m", 5400), ("2d", 172_800), ("1w", 604_800)] {
            let d = Duration::parse(text).unwrap();
            assert_eq!(d.as_secs(), secs);
            assert_eq!(Duration::parse(&d.to_string()).unwrap(), d);
        }
    }

    #[test]
    fn rejects_malformed() {
        for text in ["", "5", "m", "5 m", "-5m", "5x", "99999999999999999999w"] {
            assert!(Duration::parse(text).is_err(), "{text}");
        }
    }
}
