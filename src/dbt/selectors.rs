//! A dbt project's own selectors (`selectors.yml`), read with dbt-core's grammar
//! (`dbt/graph/cli.py`, `parse_from_selectors_definition`):
//!
//! - a definition is a selector string (one criterion, not split at spaces or commas), a
//!   mapping `{METHOD: VALUE}`, a mapping with `method` and `value` (and `parents`,
//!   `parents_depth`, `children`, `children_depth`, `childrens_parents`, `indirect_selection`,
//!   `exclude`), `{union: [...]}` or `{intersection: [...]}`; a list item `{exclude: [...]}`
//!   subtracts from its union or intersection (one per list);
//! - `{method: selector, value: NAME}` is the definition of an earlier selector of the file;
//! - at most one selector has `default: true`: dbt uses it when a command has no `--select`,
//!   `--exclude` or `--selector`.
//!
//! Groups take dbt's default indirect selection (`eager`), criteria their own
//! `indirect_selection` or the default, as `dbt --selector NAME` does.

use super::IndirectSelection;
use super::select::{Criteria, Method, SelectError, Spec, parse_criteria, truthy};
use serde_json::{Map, Value};

/// Most parts a definition's command-line form may have (intersections multiply them).
const MAX_CLI_PARTS: usize = 64;

/// The selectors of a project, in file order.
#[derive(Debug, Clone, Default)]
pub struct Selectors {
    entries: Vec<NamedSelector>,
}

/// One selector of `selectors.yml`.
#[derive(Debug, Clone)]
pub struct NamedSelector {
    /// Its `name`.
    pub name: String,
    /// `default: true`.
    pub default: bool,
    /// Where it is in the file, as a JSON pointer (`/selectors/2`).
    pub pointer: String,
    pub(super) spec: Spec,
}

/// Why `selectors.yml` could not be read, at a JSON pointer into it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SelectorsError {
    /// Where: `/selectors/1/definition/union/0`.
    pub pointer: String,
    /// What is wrong.
    pub message: String,
}

/// A selection dbt's command line can say: `--select` and `--exclude` arguments.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CommandLine {
    /// `--select` arguments, each an intersection `a,b`.
    pub select: Vec<String>,
    /// `--exclude` arguments.
    pub exclude: Vec<String>,
}

fn error(pointer: &str, message: impl Into<String>) -> SelectorsError {
    SelectorsError { pointer: pointer.to_owned(), message: message.into() }
}

impl Selectors {
    /// Reads the document of a `selectors.yml` (`null` for an empty file: no selectors).
    pub fn from_value(value: &Value) -> Result<Selectors, SelectorsError> {
        let list = match value {
            // dbt reads an empty file, or an empty mapping, as no selectors.
            Value::Null => return Ok(Selectors::default()),
            Value::Object(map) if map.is_empty() => return Ok(Selectors::default()),
            Value::Object(map) => match map.get("selectors") {
                Some(Value::Array(list)) => list,
                Some(_) => return Err(error("/selectors", "`selectors` must be a list")),
                None => return Err(error("", "selectors.yml needs a `selectors` list")),
            },
            _ => return Err(error("", "selectors.yml must be a mapping with a `selectors` list")),
        };
        let mut entries: Vec<NamedSelector> = Vec::new();
        for (i, item) in list.iter().enumerate() {
            let pointer = format!("/selectors/{i}");
            let Value::Object(item) = item else {
                return Err(error(&pointer, "a selector is a mapping with `name` and `definition`"));
            };
            let name = match item.get("name") {
                Some(Value::String(name)) => name.clone(),
                _ => return Err(error(&format!("{pointer}/name"), "a selector needs a `name` (a string)")),
            };
            let default = match item.get("default") {
                None => false,
                Some(Value::Bool(b)) => *b,
                Some(_) => return Err(error(&format!("{pointer}/default"), "`default` is true or false")),
            };
            let definition = item
                .get("definition")
                .ok_or_else(|| error(&pointer, format!("selector `{name}` has no `definition`")))?;
            if matches!(definition, Value::Array(_)) {
                return Err(error(
                    &format!("{pointer}/definition"),
                    "a definition is a string or a mapping (union, intersection, method and value), not a list",
                ));
            }
            if default && let Some(first) = entries.iter().find(|e| e.default) {
                return Err(error(
                    &format!("{pointer}/default"),
                    format!("selectors `{}` and `{name}` both have `default: true`", first.name),
                ));
            }
            let parser = Parser { earlier: &entries };
            let spec = parser.definition(definition, true, &format!("{pointer}/definition"))?;
            let entry = NamedSelector { name, default, pointer, spec };
            // A later selector of the same name replaces the earlier one, as in dbt's dict.
            match entries.iter_mut().find(|e| e.name == entry.name) {
                Some(slot) => *slot = entry,
                None => entries.push(entry),
            }
        }
        Ok(Selectors { entries })
    }

    /// The selector named `name`.
    pub fn get(&self, name: &str) -> Option<&NamedSelector> {
        self.entries.iter().find(|e| e.name == name)
    }

    /// The selector with `default: true`, if any.
    pub fn default_selector(&self) -> Option<&NamedSelector> {
        self.entries.iter().find(|e| e.default)
    }

    /// The selectors' names, in file order.
    pub fn names(&self) -> impl Iterator<Item = &str> + '_ {
        self.entries.iter().map(|e| e.name.as_str())
    }
}

impl NamedSelector {
    /// Whether its definition compares with an earlier run (`state:`, `result:`,
    /// `source_status:`), so that dbt needs `--state`.
    pub fn reads_state(&self) -> bool {
        fn walk(spec: &Spec) -> bool {
            match spec {
                Spec::Criteria(c) => matches!(c.method, Method::State | Method::Result | Method::SourceStatus),
                Spec::Union(parts, _) | Spec::Intersection(parts, _) | Spec::Difference(parts, _) => {
                    parts.iter().any(walk)
                }
            }
        }
        walk(&self.spec)
    }

    /// The same selection as `--select`/`--exclude` arguments, when dbt's command line can
    /// say it: unions and intersections of criteria, less exclusions at the top, all with the
    /// default indirect selection. `None` otherwise (an exclusion inside a union, say).
    pub fn command_line(&self) -> Option<CommandLine> {
        let (select, exclude) = cli_form(&self.spec)?;
        let join = |parts: Vec<Vec<String>>| parts.into_iter().map(|p| p.join(",")).collect::<Vec<_>>();
        Some(CommandLine { select: join(select), exclude: join(exclude) })
    }
}

/// A union of intersections, less another.
type CliForm = (Vec<Vec<String>>, Vec<Vec<String>>);

fn cli_form(spec: &Spec) -> Option<CliForm> {
    let eager = IndirectSelection::Eager;
    match spec {
        Spec::Criteria(c) => Some((vec![vec![criteria_text(c)?]], Vec::new())),
        Spec::Union(parts, mode) if *mode == eager => {
            let mut union = Vec::new();
            for part in parts {
                let (select, exclude) = cli_form(part)?;
                if !exclude.is_empty() {
                    return None;
                }
                union.extend(select);
            }
            Some((union, Vec::new()))
        }
        Spec::Intersection(parts, mode) if *mode == eager && !parts.is_empty() => {
            // (a ∪ b) ∩ c = (a ∩ c) ∪ (b ∩ c): under eager selection these are plain sets.
            let mut product: Vec<Vec<String>> = vec![Vec::new()];
            for part in parts {
                let (select, exclude) = cli_form(part)?;
                if !exclude.is_empty() || product.len() * select.len() > MAX_CLI_PARTS {
                    return None;
                }
                product = product
                    .iter()
                    .flat_map(|left| select.iter().map(move |right| [left.as_slice(), right].concat()))
                    .collect();
            }
            Some((product, Vec::new()))
        }
        Spec::Difference(parts, mode) if *mode == eager => {
            let (first, rest) = parts.split_first()?;
            let (select, mut exclude) = cli_form(first)?;
            for part in rest {
                let (more, inner) = cli_form(part)?;
                if !inner.is_empty() {
                    return None;
                }
                exclude.extend(more);
            }
            Some((select, exclude))
        }
        _ => None,
    }
}

/// A criterion as one command-line part, `2+tag:x+`; `None` when it cannot be one.
fn criteria_text(c: &Criteria) -> Option<String> {
    if c.mode != IndirectSelection::Eager || c.value.is_empty() || c.value.contains([' ', ',', '\n']) {
        return None;
    }
    let depth = |d: &Option<usize>| d.map(|d| d.to_string()).unwrap_or_default();
    let mut text = String::new();
    if c.childrens_parents {
        text.push('@');
    }
    if let Some(d) = &c.parents {
        text.push_str(&depth(d));
        text.push('+');
    }
    text.push_str(c.method.name());
    for argument in &c.arguments {
        text.push('.');
        text.push_str(argument);
    }
    text.push(':');
    text.push_str(&c.value);
    if let Some(d) = &c.children {
        text.push('+');
        text.push_str(&depth(d));
    }
    Some(text)
}

/// dbt's `parse_from_definition` and friends, over the selectors read so far.
struct Parser<'e> {
    earlier: &'e [NamedSelector],
}

impl Parser<'_> {
    fn definition(&self, definition: &Value, root: bool, pointer: &str) -> Result<Spec, SelectorsError> {
        let eager = IndirectSelection::Eager;
        match definition {
            Value::String(text) => parse_criteria(text, eager).map(Spec::Criteria).map_err(|e| at(pointer, e)),
            Value::Object(map) if map.contains_key("union") || map.contains_key("intersection") => {
                if root && map.len() > 1 {
                    let keys: Vec<&str> = map.keys().map(String::as_str).collect();
                    return Err(error(
                        pointer,
                        format!(
                            "a selector's definition has a single `union` or `intersection` key; found {}",
                            keys.join(", ")
                        ),
                    ));
                }
                let key = if map.contains_key("union") { "union" } else { "intersection" };
                let items = list(map, key, &format!("{pointer}/{key}"))?;
                let mut include = Vec::new();
                let mut exclude: Option<Spec> = None;
                for (i, item) in items.iter().enumerate() {
                    let at = format!("{pointer}/{key}/{i}");
                    match item {
                        Value::Object(m) if m.contains_key("exclude") => {
                            if exclude.is_some() {
                                return Err(error(&at, format!("one `exclude` per `{key}` list")));
                            }
                            exclude = self.exclusions(m, &at)?;
                        }
                        _ => include.push(self.definition(item, false, &at)?),
                    }
                }
                let group =
                    if key == "union" { Spec::Union(include, eager) } else { Spec::Intersection(include, eager) };
                Ok(match exclude {
                    Some(exclude) => Spec::Difference(vec![group, exclude], eager),
                    None => group,
                })
            }
            Value::Object(map) => self.mapping(map, pointer),
            other => Err(error(
                pointer,
                format!(
                    "expected a selector string or a mapping (union, intersection, method and value), not {}",
                    kind(other)
                ),
            )),
        }
    }

    /// `{METHOD: VALUE}`, or `{method, value, ...}`.
    fn mapping(&self, map: &Map<String, Value>, pointer: &str) -> Result<Spec, SelectorsError> {
        let eager = IndirectSelection::Eager;
        let only = if map.len() == 1 { map.iter().next() } else { None };
        let (method, value, fields) = if let Some((key, value)) = only {
            (key.as_str(), value, None)
        } else if map.get("method") == Some(&Value::String("selector".into())) {
            let name = map.get("value").and_then(Value::as_str).unwrap_or_default();
            return match self.earlier.iter().find(|e| e.name == name) {
                Some(e) => Ok(e.spec.clone()),
                None => Err(error(
                    &format!("{pointer}/value"),
                    format!("no selector `{name}` is defined before this one (a selector can use only earlier ones)"),
                )),
            };
        } else if let (Some(Value::String(method)), Some(value)) = (map.get("method"), map.get("value")) {
            (method.as_str(), value, Some(map))
        } else {
            let keys: Vec<&str> = map.keys().map(String::as_str).collect();
            return Err(error(
                pointer,
                format!("expected one `METHOD: VALUE` key, or `method` and `value`; found {}", keys.join(", ")),
            ));
        };
        let value_at = if fields.is_some() {
            format!("{pointer}/value")
        } else {
            format!("{pointer}/{}", crate::parse::escape_pointer(method))
        };
        let Value::String(value) = value else {
            return Err(error(&value_at, format!("the value of `{method}` must be a string, not {}", kind(value))));
        };
        let mut parts = method.split('.');
        let name = parts.next().unwrap_or_default();
        let method_kind = Method::parse(name).ok_or_else(|| {
            at(pointer, SelectError::UnknownMethod { selector: format!("{method}: {value}"), method: name.to_owned() })
        })?;
        let get = |key: &str| fields.and_then(|f| f.get(key));
        let depth = |key: &str| -> Result<Option<usize>, SelectorsError> {
            match get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(v) if !truthy(v) => Ok(None),
                Some(Value::Number(n)) => n
                    .as_u64()
                    .map(|d| Some(usize::try_from(d).unwrap_or(usize::MAX)))
                    .ok_or_else(|| error(&format!("{pointer}/{key}"), format!("`{key}` is a whole number"))),
                Some(Value::String(s)) => {
                    s.trim().parse::<usize>().map(Some).map_err(|_| {
                        error(&format!("{pointer}/{key}"), format!("`{key}` is a whole number, not `{s}`"))
                    })
                }
                Some(other) => {
                    Err(error(&format!("{pointer}/{key}"), format!("`{key}` is a whole number, not {}", kind(other))))
                }
            }
        };
        let flag = |key: &str| get(key).is_some_and(truthy);
        let mode = match get("indirect_selection") {
            None => eager,
            Some(Value::String(m)) => match m.as_str() {
                "eager" => IndirectSelection::Eager,
                "cautious" => IndirectSelection::Cautious,
                "buildable" => IndirectSelection::Buildable,
                "empty" => IndirectSelection::Empty,
                _ => {
                    return Err(error(
                        &format!("{pointer}/indirect_selection"),
                        format!("`indirect_selection` is eager, cautious, buildable or empty, not `{m}`"),
                    ));
                }
            },
            Some(other) => {
                return Err(error(
                    &format!("{pointer}/indirect_selection"),
                    format!("`indirect_selection` is a string, not {}", kind(other)),
                ));
            }
        };
        let childrens_parents = flag("childrens_parents");
        let children = flag("children").then(|| depth("children_depth")).transpose()?;
        if childrens_parents && children.is_some() {
            return Err(error(pointer, "`childrens_parents` and `children` are incompatible"));
        }
        let criteria = Criteria {
            raw: serde_json::to_string(&Value::Object(
                fields.cloned().unwrap_or_else(|| Map::from_iter([(method.to_owned(), Value::String(value.clone()))])),
            ))
            .unwrap_or_default(),
            method: method_kind,
            arguments: parts.map(str::to_owned).collect(),
            value: value.clone(),
            childrens_parents,
            parents: flag("parents").then(|| depth("parents_depth")).transpose()?,
            children,
            mode,
        };
        let base = Spec::Criteria(criteria);
        match fields.filter(|f| f.contains_key("exclude")) {
            Some(f) => match self.exclusions(f, pointer)? {
                Some(exclude) => Ok(Spec::Difference(vec![base, exclude], IndirectSelection::Eager)),
                None => Ok(base),
            },
            None => Ok(base),
        }
    }

    /// dbt's `_parse_exclusions`: the union of the `exclude` list, if it has anything.
    fn exclusions(&self, map: &Map<String, Value>, pointer: &str) -> Result<Option<Spec>, SelectorsError> {
        let items = list(map, "exclude", &format!("{pointer}/exclude"))?;
        let mut parsed = Vec::new();
        for (i, item) in items.iter().enumerate() {
            parsed.push(self.definition(item, false, &format!("{pointer}/exclude/{i}"))?);
        }
        Ok(match parsed.len() {
            0 => None,
            1 => parsed.pop(),
            _ => Some(Spec::Union(parsed, IndirectSelection::Eager)),
        })
    }
}

/// dbt's `_get_list_dicts`: a list of strings and mappings.
fn list<'v>(map: &'v Map<String, Value>, key: &str, pointer: &str) -> Result<&'v [Value], SelectorsError> {
    let Some(Value::Array(items)) = map.get(key) else {
        return Err(error(pointer, format!("`{key}` must be a list")));
    };
    for (i, item) in items.iter().enumerate() {
        if !matches!(item, Value::String(_) | Value::Object(_)) {
            return Err(error(
                &format!("{pointer}/{i}"),
                format!("an item of `{key}` is a selector string or a mapping, not {}", kind(item)),
            ));
        }
    }
    Ok(items)
}

fn at(pointer: &str, e: SelectError) -> SelectorsError {
    error(pointer, e.to_string())
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}
