//! What the dbt project's own files already say about its models: which have an entry in a
//! properties YAML file (dbt takes one entry per model, so fhirflow must write none for them),
//! and which are disabled (`enabled: false` in `dbt_project.yml`, in a properties file or in the
//! model's `config()`), so that `init` leaves them out.

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::LazyLock;

/// The models the project's properties files name, and the models they disable.
#[derive(Debug, Default)]
pub(super) struct Properties {
    /// Model name → the properties file (from the project, `/` between parts) with its entry.
    pub documented: BTreeMap<String, String>,
    /// Model name → the properties file whose `config: {enabled: false}` disables it.
    pub disabled: BTreeMap<String, String>,
}

/// Reads every `.yml` and `.yaml` file beneath the model paths, except the ones fhirflow
/// generated. A file that is not YAML dbt could read gives a note and is otherwise skipped.
pub(super) fn properties(dbt_dir: &Path, model_paths: &[String], notes: &mut Vec<String>) -> Properties {
    let mut out = Properties::default();
    for model_path in model_paths {
        let mut files = Vec::new();
        yaml_files(&dbt_dir.join(model_path), model_path.trim_end_matches('/'), &mut files);
        for (path, shown) in files {
            let Ok(text) = std::fs::read_to_string(&path) else {
                notes.push(format!("{shown}: cannot be read, so the models it documents are not known"));
                continue;
            };
            if crate::emit::header::read(&text).is_some() {
                continue;
            }
            let value: Value = match serde_saphyr::from_str(&text) {
                Ok(value) => value,
                Err(e) => {
                    let message = e.without_snippet().to_string();
                    let message = message.lines().next().unwrap_or_default().trim().to_owned();
                    notes.push(format!(
                        "{shown}: not readable YAML ({message}), so the models it documents are not known"
                    ));
                    continue;
                }
            };
            let Some(models) = value.get("models").and_then(Value::as_array) else { continue };
            for model in models {
                let Some(name) = model.get("name").and_then(Value::as_str) else { continue };
                out.documented.entry(name.to_owned()).or_insert_with(|| shown.clone());
                if model.get("config").and_then(enabled) == Some(false) {
                    out.disabled.insert(name.to_owned(), shown.clone());
                }
            }
        }
    }
    out
}

/// The `.yml`/`.yaml` files beneath `dir`, in name order, each with its path for messages.
fn yaml_files(dir: &Path, shown: &str, out: &mut Vec<(std::path::PathBuf, String)>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut entries: Vec<_> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
    entries.sort();
    for entry in entries {
        let name = entry.file_name().unwrap_or_default().to_string_lossy().into_owned();
        let shown = format!("{shown}/{name}");
        // A symbolic link to a folder is not followed here: `init` reads such a folder once, as
        // a layer, and a loop would never end.
        match std::fs::symlink_metadata(&entry) {
            Ok(meta) if meta.is_dir() => yaml_files(&entry, &shown, out),
            Ok(_) if name.ends_with(".yml") || name.ends_with(".yaml") => out.push((entry, shown)),
            _ => {}
        }
    }
}

/// `enabled` (or `+enabled`) of a config mapping, when it is a boolean.
fn enabled(config: &Value) -> Option<bool> {
    config.get("+enabled").or_else(|| config.get("enabled")).and_then(Value::as_bool)
}

/// Whether the `models:` tree of `dbt_project.yml` disables the model `name` of project
/// `project` in `folders` (its folders beneath the model path): the deepest `enabled` on the
/// way from `models:` through the project and the folders to the model decides, as in dbt.
pub(super) fn disabled_by_project(models: Option<&Value>, project: &str, folders: &[String], name: &str) -> bool {
    let Some(mut node) = models else { return false };
    let mut setting = enabled(node);
    for key in std::iter::once(project).chain(folders.iter().map(String::as_str)).chain(std::iter::once(name)) {
        match node.get(key) {
            Some(next) if next.is_object() => {
                node = next;
                setting = enabled(node).or(setting);
            }
            _ => break,
        }
    }
    setting == Some(false)
}

/// Whether a model's SQL disables it: `{{ config(enabled=false) }}` (any case, any spacing).
pub(super) fn disabled_in_sql(sql: &str) -> bool {
    static CONFIG: LazyLock<regex::Regex> = LazyLock::new(|| {
        regex::Regex::new(r"(?is)\bconfig\s*\([^)]*\benabled\s*=\s*false\b").expect("pattern is valid")
    });
    CONFIG.is_match(sql)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_deepest_enabled_setting_decides() {
        let models = json!({"p": {"+enabled": true, "staging": {"+enabled": false, "stg_b": {"+enabled": true}}}});
        let folders = ["staging".to_owned()];
        assert!(disabled_by_project(Some(&models), "p", &folders, "stg_a"));
        assert!(!disabled_by_project(Some(&models), "p", &folders, "stg_b"));
        assert!(!disabled_by_project(Some(&models), "p", &["marts".to_owned()], "m"));
        assert!(!disabled_by_project(Some(&models), "other", &folders, "stg_a"));
        assert!(disabled_by_project(Some(&json!({"enabled": false})), "p", &folders, "x"));
        assert!(!disabled_by_project(None, "p", &folders, "x"));
    }

    #[test]
    fn sql_config_disables_in_any_spelling() {
        assert!(disabled_in_sql("{{ config(materialized='view', enabled=false) }}\nselect 1"));
        assert!(disabled_in_sql("{{\n  config(\n    enabled = False\n  )\n}}"));
        assert!(!disabled_in_sql("{{ config(enabled=true) }} select 'enabled=false'"));
        assert!(!disabled_in_sql("select 1"));
    }
}
