//! `kind: operator`: any Airflow operator by class path, with its keyword arguments, the way
//! Airflow's YAML DAG format writes it (`uses:` + `with:`). fhirflow cannot run an arbitrary
//! operator itself, so `fhirflow run` refuses the stage (`airflow-only-stage`) unless it gives
//! a `run:` command to run instead.

use super::{AirflowTask, KindTask, PYTHON_KEYWORDS, RunCommand, RunContext, is_python_name};
use crate::emit::literal::{Language, literal};
use crate::spec::Identifier;
use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// A stage that is one Airflow operator, as `uses: package.module.Class` and `with: {...}`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
pub struct OperatorStage {
    /// The operator class, as `package.module.Class`, such as `airflow.providers.http.operators.http.HttpOperator`. The DAG file imports it; the Airflow workers must have its provider installed.
    #[schemars(regex(pattern = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$"))]
    pub uses: String,
    /// The operator's keyword arguments, written as literals (strings, numbers, booleans, null, lists, maps). Airflow renders `{{ ... }}` in the operator's templated fields. The keys fhirflow sets itself (`task_id`, `retries`, `pool`, `trigger_rule`, ...) are stage settings instead.
    #[serde(default, rename = "with", skip_serializing_if = "IndexMap::is_empty")]
    pub arguments: IndexMap<Identifier, serde_json::Value>,
    /// The shell command `fhirflow run` runs in place of the operator (bash, in the spec's folder, `{{ ... }}` rendered as for `kind: shell`; exit status 99 skips the task, as there). Without it, `fhirflow run` refuses the pipeline: the stage runs only in Airflow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
}

/// An operator stage, lowered.
#[derive(Debug, Clone, PartialEq)]
pub struct OperatorTask {
    /// The stage id, named in errors.
    pub stage: String,
    /// The module the class is imported from.
    pub module: String,
    /// The class name.
    pub class: String,
    /// Keyword arguments, in the spec's order.
    pub arguments: Vec<(String, serde_json::Value)>,
    /// The command `fhirflow run` runs instead.
    pub run: Option<String>,
}

/// Keyword arguments fhirflow writes itself, and the stage key that sets each.
const RESERVED: &[(&str, &str)] = &[
    ("task_id", "the stage id is the task id"),
    ("dag", "the pipeline is the DAG"),
    ("task_group", "fhirflow places the task"),
    ("trigger_rule", "set the stage's `trigger_rule`"),
    ("pool", "set the stage's `pool`"),
    ("outlets", "list the assets in the stage's `produces`"),
    ("owner", "set `owner` on the stage or in `defaults`"),
    ("retries", "set `retries` on the stage or in `defaults`"),
    ("retry_delay", "set `retry_delay` on the stage or in `defaults`"),
    ("retry_exponential_backoff", "set `retry_exponential_backoff` on the stage or in `defaults`"),
    ("execution_timeout", "set `execution_timeout` on the stage or in `defaults`"),
    ("email", "set `email` on the stage or in `defaults`"),
    ("email_on_failure", "set `email_on_failure` on the stage or in `defaults`"),
    ("email_on_retry", "set `email_on_retry` on the stage or in `defaults`"),
    ("depends_on_past", "set `depends_on_past` on the stage or in `defaults`"),
    ("doc_md", "set `doc_md` on the stage or in `defaults`"),
    ("on_failure_callback", "set `failure_webhook` on the stage or in `defaults`"),
    ("start_date", "set `start_date` on the pipeline or in `defaults`"),
];

/// Lowers an operator stage: checks its class path and its arguments' names.
pub fn lower(stage_id: &str, stage: &OperatorStage) -> Result<OperatorTask, Vec<super::LowerError>> {
    use super::LowerError;
    let mut errors = Vec::new();
    let parts: Vec<&str> = stage.uses.split('.').collect();
    if parts.len() < 2 || !parts.iter().all(|p| is_python_name(p)) {
        errors.push(LowerError {
            code: "bad-import-path",
            at: "uses".to_owned(),
            message: format!("`{}` is not an operator class path", stage.uses),
            help: "write `package.module.Class`, each part a Python identifier that is not a keyword".to_owned(),
        });
    }
    for name in stage.arguments.keys() {
        let name = name.as_str();
        if let Some((_, help)) = RESERVED.iter().find(|(key, _)| *key == name) {
            errors.push(LowerError {
                code: "reserved-argument",
                at: format!("with/{name}"),
                message: format!("fhirflow sets `{name}` itself"),
                help: (*help).to_owned(),
            });
        } else if PYTHON_KEYWORDS.contains(&name) {
            errors.push(LowerError {
                code: "reserved-argument",
                at: format!("with/{name}"),
                message: format!("`{name}` is a Python keyword, which no operator argument can be"),
                help: "check the operator's argument names".to_owned(),
            });
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let (module, class) = stage.uses.rsplit_once('.').unwrap_or(("", &stage.uses));
    Ok(OperatorTask {
        stage: stage_id.to_owned(),
        module: module.to_owned(),
        class: class.to_owned(),
        arguments: stage.arguments.iter().map(|(k, v)| (k.to_string(), v.clone())).collect(),
        run: stage.run.clone(),
    })
}

impl OperatorTask {
    /// The name the DAG file binds the class to: private to fhirflow's namespace (`_...`), and
    /// distinct for two classes of one name from different modules.
    fn alias(&self) -> String {
        let digest = Sha256::digest(format!("{}.{}", self.module, self.class).as_bytes());
        let short: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
        format!("_fhirflow_{}_{short}", self.class)
    }
}

impl KindTask for OperatorTask {
    fn kind(&self) -> &'static str {
        "operator"
    }

    fn describe(&self) -> String {
        match &self.run {
            Some(command) => format!("runs `{command}` (in Airflow: {}.{})", self.module, self.class),
            None => format!("Airflow operator {}.{}", self.module, self.class),
        }
    }

    fn airflow(&self, _version: u32) -> AirflowTask {
        let alias = self.alias();
        AirflowTask {
            operator: self.class.clone(),
            call: Some(alias.clone()),
            kwargs: self.arguments.iter().map(|(k, v)| (k.clone(), literal(Language::Python, v))).collect(),
            uses: Vec::new(),
            imports: vec![format!("from {} import {} as {alias}", self.module, self.class)],
            helper: None,
        }
    }

    fn airflow_only(&self) -> bool {
        self.run.is_none()
    }

    /// The `run:` command stands in for the operator as a shell stage's command does, exit 99 included.
    fn skip_exit_code(&self) -> Option<i32> {
        self.run.as_ref().map(|_| super::shell::SKIP_EXIT_CODE)
    }

    fn run_command(&self, ctx: &RunContext<'_>) -> Result<RunCommand, String> {
        let command = self.run.as_deref().ok_or_else(|| {
            format!("stage `{}` is an Airflow operator with no `run:` command, so it runs only in Airflow", self.stage)
        })?;
        Ok(RunCommand {
            program: "bash".to_owned(),
            args: vec!["-c".to_owned(), (ctx.render)(command)?],
            cwd: ctx.spec_dir.to_path_buf(),
            env: BTreeMap::new(),
            input: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stage(uses: &str, with: &[(&str, serde_json::Value)]) -> OperatorStage {
        OperatorStage {
            uses: uses.to_owned(),
            arguments: with.iter().map(|(k, v)| (Identifier::new(*k).unwrap(), v.clone())).collect(),
            run: None,
        }
    }

    #[test]
    fn class_paths_are_dotted_names_without_keywords() {
        assert!(lower("s", &stage("airflow.providers.http.operators.http.HttpOperator", &[])).is_ok());
        for bad in ["HttpOperator", "a..B", "a.import.B", "a.B-c", ".B", "a.1B"] {
            let errors = lower("s", &stage(bad, &[])).unwrap_err();
            assert_eq!(errors[0].code, "bad-import-path", "{bad}");
        }
    }

    #[test]
    fn arguments_fhirflow_sets_are_refused_with_the_stage_key_to_use() {
        let errors = lower("s", &stage("m.Op", &[("retries", 3.into()), ("lambda", 1.into())])).unwrap_err();
        assert_eq!(errors.len(), 2);
        assert!(errors.iter().all(|e| e.code == "reserved-argument"));
        assert!(errors.iter().any(|e| e.at == "with/retries" && e.help.contains("`retries`")));
    }

    #[test]
    fn two_classes_of_one_name_get_two_aliases() {
        let a = lower("a", &stage("x.ops.Copy", &[])).unwrap();
        let b = lower("b", &stage("y.ops.Copy", &[])).unwrap();
        assert_ne!(a.alias(), b.alias());
        assert!(a.alias().starts_with("_fhirflow_Copy_"));
        assert_eq!(a.airflow(3).imports, [format!("from x.ops import Copy as {}", a.alias())]);
    }
}
