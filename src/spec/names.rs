//! Names a user chooses: each is checked against a pattern when it is read, so that
//! nothing downstream (Python, SQL, file names, shell words) ever sees an unchecked name.

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize};
use std::borrow::{Borrow, Cow};
use std::fmt;
use std::sync::LazyLock;

/// Defines a string newtype whose values must match `$pattern`.
macro_rules! checked_name {
    ($(#[$doc:meta])* $name:ident, $pattern:literal, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// The pattern every value matches.
            pub const PATTERN: &'static str = $pattern;

            /// Checks `value` against the pattern.
            pub fn new(value: impl Into<String>) -> Result<Self, String> {
                static RE: LazyLock<regex::Regex> =
                    LazyLock::new(|| regex::Regex::new($pattern).expect("pattern is valid"));
                let value = value.into();
                if RE.is_match(&value) {
                    Ok(Self(value))
                } else {
                    Err(format!("{:?} is not a valid {}: it must match {}", value, $what, $pattern))
                }
            }

            /// The name as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let raw = String::deserialize(deserializer)?;
                Self::new(raw).map_err(serde::de::Error::custom)
            }
        }

        impl JsonSchema for $name {
            fn schema_name() -> Cow<'static, str> {
                stringify!($name).into()
            }

            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                json_schema!({
                    "type": "string",
                    "pattern": $pattern,
                    "description": concat!("A ", $what, ".")
                })
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

checked_name!(
    /// A plain name: connections, layers, tags, dbt targets and variables.
    Identifier,
    r"^[A-Za-z_][A-Za-z0-9_]{0,127}$",
    "name (a letter or underscore, then letters, digits or underscores)"
);
checked_name!(
    /// A pipeline id, which is also its Airflow `dag_id` and DAG file name.
    PipelineId,
    r"^[A-Za-z_][A-Za-z0-9_-]{0,199}$",
    "pipeline id (a letter or underscore, then letters, digits, underscores or dashes)"
);
checked_name!(
    /// A stage id, which is also its Airflow `task_id`.
    StageId,
    r"^[A-Za-z_][A-Za-z0-9_-]{0,199}$",
    "stage id (a letter or underscore, then letters, digits, underscores or dashes)"
);
checked_name!(
    /// A dbt model or column name.
    ModelName,
    r"^[A-Za-z_][A-Za-z0-9_]{0,254}$",
    "dbt model or column name"
);
checked_name!(
    /// A warehouse table name, optionally qualified: `TABLE`, `SCHEMA.TABLE` or `DB.SCHEMA.TABLE`.
    TableName,
    r"^[A-Za-z_][A-Za-z0-9_$]{0,254}(\.[A-Za-z_][A-Za-z0-9_$]{0,254}){0,2}$",
    "table name (up to three dot-separated identifiers)"
);
checked_name!(
    /// A column of a load's raw or watermark table. Matched as an unquoted SQL identifier is:
    /// case-insensitively (Snowflake folds it to upper case), so `bundle_data` names the
    /// Snowflake column `BUNDLE_DATA` of a table created with unquoted names.
    ColumnName,
    r"^[A-Za-z_][A-Za-z0-9_$]{0,254}$",
    "column name (a letter or underscore, then letters, digits, underscores or `$`)"
);
checked_name!(
    /// One dbt node selector, such as `tag:staging`, `+fct_encounters` or `path:models/marts`.
    DbtSelector,
    r"^[A-Za-z0-9_.:/+@*][A-Za-z0-9_.:/+@*,=-]{0,511}$",
    "dbt selector"
);

checked_name!(
    /// An asset (a Dataset on Airflow 2) a stage produces or a pipeline is scheduled on: a name
    /// such as `raw_fhir_bundles` or `warehouse.RAW.FHIR_BUNDLES`, or a URI such as
    /// `s3://bucket/raw/`. ASCII, as Airflow 2 requires.
    AssetName,
    r"^[A-Za-z0-9_][A-Za-z0-9_.:/@+=~%-]{0,1499}$",
    "asset name or URI (ASCII letters, digits and _ . : / @ + = ~ % -)"
);
checked_name!(
    /// An Airflow pool name, which `airflow pools set` and the DAG files name as they are.
    PoolName,
    r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,255}$",
    "pool name (letters, digits, underscores, dots or dashes)"
);

impl TableName {
    /// The table as a Snowflake identifier: each part upper-cased (as Snowflake does for unquoted
    /// names) and double-quoted, so the text can never be read as anything but a name.
    pub fn quoted(&self) -> String {
        self.0.split('.').map(|part| format!("\"{}\"", part.to_ascii_uppercase())).collect::<Vec<_>>().join(".")
    }
}

impl ColumnName {
    /// A default column name, which fhirflow writes and matches the pattern.
    pub(crate) fn known(name: &str) -> Self {
        Self(name.to_owned())
    }

    /// The column as a Snowflake identifier: upper-cased, as Snowflake stores an unquoted name,
    /// and double-quoted (the pattern admits no `"`).
    pub fn snowflake(&self) -> String {
        format!("\"{}\"", self.0.to_ascii_uppercase())
    }

    /// The column as a DuckDB identifier: double-quoted with its case kept; DuckDB matches
    /// names case-insensitively either way.
    pub fn duckdb(&self) -> String {
        format!("\"{}\"", self.0)
    }

    /// Whether an existing column named `found` (as the warehouse reports it) is this one.
    /// Snowflake reports an unquoted column upper-cased, so a quoted lower-case column created
    /// elsewhere (`"bundle_data"`) does not match `bundle_data` there; DuckDB ignores case.
    pub fn matches(&self, found: &str, case_insensitive: bool) -> bool {
        if case_insensitive { self.0.eq_ignore_ascii_case(found) } else { self.0.to_ascii_uppercase() == found }
    }
}

impl Identifier {
    /// The identifier upper-cased and double-quoted for Snowflake.
    pub fn quoted(&self) -> String {
        format!("\"{}\"", self.0.to_ascii_uppercase())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_ids_reject_code() {
        assert!(StageId::new("dbt_run_staging").is_ok());
        assert!(StageId::new("a\"; import os").is_err());
        assert!(StageId::new("").is_err());
        assert!(StageId::new("1abc").is_err());
    }

    #[test]
    fn table_names_quote_each_part() {
        let t = TableName::new("raw.fhir_bundles").unwrap();
        assert_eq!(t.quoted(), "\"RAW\".\"FHIR_BUNDLES\"");
        assert!(TableName::new("raw.x; drop table y").is_err());
        assert!(TableName::new("a.b.c.d").is_err());
    }

    #[test]
    fn selectors_cannot_be_flags() {
        assert!(DbtSelector::new("+tag:intermediate").is_ok());
        assert!(DbtSelector::new("state:modified+").is_ok());
        assert!(DbtSelector::new("--full-refresh").is_err());
        assert!(DbtSelector::new("tag:x y").is_err());
    }
}
