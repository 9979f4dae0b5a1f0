//! Pipeline schedules: cron expressions, Airflow presets, fixed intervals, and assets.

use super::{AssetName, Duration};
use croner::parser::{CronParser, Seconds, Year};
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::borrow::Cow;
use std::fmt;

/// When a pipeline runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    /// A five-field cron expression, as Airflow reads it.
    Cron(String),
    /// An Airflow preset such as `@daily`.
    Preset(Preset),
    /// A fixed interval from the start date, such as `10s`.
    Interval(Duration),
    /// Whenever asset events satisfy the condition (Airflow's asset-triggered schedule).
    Assets(AssetCondition),
}

/// Which asset events start an asset-scheduled pipeline: an asset, a list (every one of
/// them), or `any:`/`all:` of conditions, nested as deep as needed.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum AssetCondition {
    /// One asset: an event for it.
    Asset(AssetName),
    /// An event for every one of these since the pipeline last ran.
    List(Vec<AssetCondition>),
    /// An event for any one of these.
    Any {
        /// The alternatives.
        #[schemars(length(min = 1))]
        any: Vec<AssetCondition>,
    },
    /// An event for every one of these.
    All {
        /// The conditions that must all hold.
        #[schemars(length(min = 1))]
        all: Vec<AssetCondition>,
    },
}

impl AssetCondition {
    /// Every asset the condition names, in order, with repeats.
    pub fn assets(&self) -> Vec<&AssetName> {
        match self {
            AssetCondition::Asset(name) => vec![name],
            AssetCondition::List(items) | AssetCondition::Any { any: items } | AssetCondition::All { all: items } => {
                items.iter().flat_map(AssetCondition::assets).collect()
            }
        }
    }

    /// Whether events for the assets that `has_event` accepts satisfy the condition.
    pub fn holds(&self, has_event: &dyn Fn(&AssetName) -> bool) -> bool {
        match self {
            AssetCondition::Asset(name) => has_event(name),
            AssetCondition::List(items) | AssetCondition::All { all: items } => {
                items.iter().all(|c| c.holds(has_event))
            }
            AssetCondition::Any { any: items } => items.iter().any(|c| c.holds(has_event)),
        }
    }
}

impl fmt::Display for AssetCondition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (items, join) = match self {
            AssetCondition::Asset(name) => return f.write_str(name.as_str()),
            AssetCondition::List(items) | AssetCondition::All { all: items } => (items, " & "),
            AssetCondition::Any { any: items } => (items, " | "),
        };
        let parts: Vec<String> = items
            .iter()
            .map(|c| match c {
                AssetCondition::Asset(_) => c.to_string(),
                _ => format!("({c})"),
            })
            .collect();
        f.write_str(&parts.join(join))
    }
}

/// Airflow's schedule presets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    /// Run once, at the start date.
    Once,
    /// `0 * * * *`
    Hourly,
    /// `0 0 * * *`
    Daily,
    /// `0 0 * * 0`
    Weekly,
    /// `0 0 1 * *`
    Monthly,
    /// `0 0 1 */3 *`
    Quarterly,
    /// `0 0 1 1 *`
    Yearly,
}

impl Preset {
    const ALL: [(&'static str, Preset); 8] = [
        ("@once", Preset::Once),
        ("@hourly", Preset::Hourly),
        ("@daily", Preset::Daily),
        ("@weekly", Preset::Weekly),
        ("@monthly", Preset::Monthly),
        ("@quarterly", Preset::Quarterly),
        ("@yearly", Preset::Yearly),
        ("@annually", Preset::Yearly),
    ];

    /// The preset as written in Airflow.
    pub fn as_str(self) -> &'static str {
        Self::ALL.iter().find(|(_, p)| *p == self).map(|(s, _)| *s).unwrap_or("@once")
    }

    /// The cron expression the preset stands for, if it repeats.
    pub fn cron(self) -> Option<&'static str> {
        match self {
            Preset::Once => None,
            Preset::Hourly => Some("0 * * * *"),
            Preset::Daily => Some("0 0 * * *"),
            Preset::Weekly => Some("0 0 * * 0"),
            Preset::Monthly => Some("0 0 1 * *"),
            Preset::Quarterly => Some("0 0 1 */3 *"),
            Preset::Yearly => Some("0 0 1 1 *"),
        }
    }
}

/// The pattern that the JSON Schema checks; [`Schedule::parse`] does the full check.
const SCHEDULE_PATTERN: &str = r"^(@[a-z]+|([0-9]+[smhdw])+|\S+( +\S+){4})$";

/// The cron parser with Airflow's rules: five fields, no seconds, no years.
fn cron_parser() -> CronParser {
    CronParser::builder().seconds(Seconds::Disallowed).year(Year::Disallowed).build()
}

/// Parses `expr` with [`cron_parser`], once per expression: croner spends some 250,000
/// instructions on one, and a large spec repeats a few expressions in every pipeline.
pub(crate) fn parse_cron(expr: &str) -> Result<croner::Cron, croner::errors::CronError> {
    use std::collections::HashMap;
    use std::sync::{LazyLock, Mutex};
    /// Parsed expressions; a spec has at most one per pipeline, so this stays small.
    static PARSED: LazyLock<Mutex<HashMap<String, croner::Cron>>> = LazyLock::new(Mutex::default);
    if let Some(cron) = PARSED.lock().ok().and_then(|parsed| parsed.get(expr).cloned()) {
        return Ok(cron);
    }
    let cron = cron_parser().parse(expr)?;
    if let Ok(mut parsed) = PARSED.lock() {
        parsed.insert(expr.to_owned(), cron.clone());
    }
    Ok(cron)
}

impl Schedule {
    /// Reads a schedule string: a preset, an interval, or a five-field cron expression.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.starts_with('@') {
            return Preset::ALL
                .iter()
                .find(|(name, _)| *name == text)
                .map(|(_, preset)| Schedule::Preset(*preset))
                .ok_or_else(|| {
                    format!(
                        "{text:?} is not an Airflow preset: use one of @once, @hourly, @daily, @weekly, @monthly, @quarterly, @yearly"
                    )
                });
        }
        if text.split_whitespace().count() == 1 {
            let interval = Duration::parse(text).map_err(|_| {
                format!("{text:?} is not a schedule: write a cron expression (`*/5 * * * *`), a preset (`@daily`) or an interval (`10s`, `5m`)")
            })?;
            if interval.as_secs() == 0 {
                return Err("an interval schedule must be longer than 0s".to_owned());
            }
            return Ok(Schedule::Interval(interval));
        }
        let fields = text.split_whitespace().count();
        if fields != 5 {
            return Err(format!(
                "{text:?} has {fields} fields; Airflow cron expressions have five: minute hour day-of-month month day-of-week"
            ));
        }
        parse_cron(text).map_err(|e| format!("{text:?} is not a valid cron expression: {e}"))?;
        Ok(Schedule::Cron(text.split_whitespace().collect::<Vec<_>>().join(" ")))
    }

    /// The repeating cron expression behind this schedule, if it has one.
    pub fn cron_expression(&self) -> Option<&str> {
        match self {
            Schedule::Cron(expr) => Some(expr),
            Schedule::Preset(preset) => preset.cron(),
            Schedule::Interval(_) | Schedule::Assets(_) => None,
        }
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Schedule::Cron(expr) => f.write_str(expr),
            Schedule::Preset(preset) => f.write_str(preset.as_str()),
            Schedule::Interval(every) => write!(f, "{every}"),
            Schedule::Assets(condition) => write!(f, "assets: {condition}"),
        }
    }
}

/// A schedule as written: text, or `{assets: …}`.
#[derive(Deserialize, Serialize)]
#[serde(untagged)]
enum ScheduleRepr {
    Text(String),
    Assets(AssetsSchedule),
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct AssetsSchedule {
    assets: AssetCondition,
}

impl<'de> Deserialize<'de> for Schedule {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match ScheduleRepr::deserialize(deserializer)? {
            ScheduleRepr::Text(text) => Schedule::parse(&text).map_err(serde::de::Error::custom),
            ScheduleRepr::Assets(AssetsSchedule { assets }) => Ok(Schedule::Assets(assets)),
        }
    }
}

impl Serialize for Schedule {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Schedule::Assets(assets) => {
                ScheduleRepr::Assets(AssetsSchedule { assets: assets.clone() }).serialize(serializer)
            }
            other => serializer.collect_str(other),
        }
    }
}

impl JsonSchema for Schedule {
    fn schema_name() -> Cow<'static, str> {
        "Schedule".into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let condition = generator.subschema_for::<AssetCondition>();
        json_schema!({
            "oneOf": [
                {
                    "type": "string",
                    "pattern": SCHEDULE_PATTERN,
                    "description": "A five-field cron expression, an Airflow preset (@once, @hourly, @daily, @weekly, @monthly, @quarterly, @yearly) or an interval such as 10s or 5m.",
                    "examples": ["*/5 * * * *", "@daily", "10s"]
                },
                {
                    "type": "object",
                    "description": "Run when other pipelines' stages produce these assets: a list (all of them), or `any:`/`all:` lists, nested.",
                    "properties": {
                        "assets": condition
                    },
                    "required": ["assets"],
                    "additionalProperties": false,
                    "examples": [{"assets": ["raw_fhir_bundles"]}, {"assets": {"any": ["a", "b"]}}]
                }
            ]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_form() {
        assert_eq!(Schedule::parse("*/5 * * * *").unwrap(), Schedule::Cron("*/5 * * * *".into()));
        assert_eq!(Schedule::parse("@daily").unwrap(), Schedule::Preset(Preset::Daily));
        assert_eq!(Schedule::parse("10s").unwrap(), Schedule::Interval(Duration::from_secs(10)));
        assert_eq!(Schedule::parse("0  2 * *  *").unwrap(), Schedule::Cron("0 2 * * *".into()));
    }

    #[test]
    fn rejects_bad_schedules() {
        for text in ["@sometimes", "0 * * *", "0 0 * * * *", "61 * * * *", "soon", "0s"] {
            assert!(Schedule::parse(text).is_err(), "{text}");
        }
    }
}
