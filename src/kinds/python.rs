//! `kind: python`: call a Python function by import path. Its return value is the task's output,
//! which later stages read with `{output_of: stage}`: an XCom pull in Airflow, a JSON value that
//! `fhirflow run` hands over.

use super::{AirflowTask, KindTask, LowerError, RunCommand, RunContext};
use crate::emit::literal::{Language, literal, quoted};
use crate::spec::{Identifier, Pipeline, StageId, StageKind};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// A stage that calls a Python function (Airflow's PythonOperator).
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
pub struct PythonStage {
    /// The function, as `package.module:function`; the module must be importable from `python_path`.
    #[schemars(regex(
        pattern = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$"
    ))]
    pub callable: String,
    /// Keyword arguments: literals (strings may hold Airflow `{{ ... }}` templates), or `{output_of: stage}` for an upstream python stage's return value.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub kwargs: BTreeMap<Identifier, Kwarg>,
    /// Folders put first on `sys.path` so the module is found: relative to the spec's folder under `fhirflow run`, to the DAG file's folder in Airflow.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub python_path: Vec<String>,
    /// The interpreter `fhirflow run` calls the function with. Default: `$FHIRFLOW_PYTHON`, else `python3`. Airflow uses its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub python: Option<String>,
}

/// One keyword argument of a python stage.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum Kwarg {
    /// The return value of an upstream python stage.
    Output(OutputOf),
    /// A literal value.
    Literal(serde_json::Value),
}

/// A reference to an upstream stage's output.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OutputOf {
    /// The python stage whose return value this is; it must be upstream of this one.
    pub output_of: StageId,
}

/// A python stage, lowered: what both backends need.
#[derive(Debug, Clone, PartialEq)]
pub struct PythonTask {
    /// The stage id, named in errors.
    pub stage: String,
    /// `module:function`.
    pub callable: String,
    /// Literal keyword arguments.
    pub kwargs: BTreeMap<String, serde_json::Value>,
    /// Keyword arguments read from upstream outputs: argument → task id.
    pub outputs: BTreeMap<String, String>,
    /// Folders put first on `sys.path`.
    pub python_path: Vec<String>,
    /// The interpreter under `run`.
    pub python: Option<String>,
    /// A branch (`kind: branch`): the return value names the stages to follow.
    pub branch: bool,
}

/// Whether `text` is `dotted.module:dotted.name`, every part a Python identifier and no keyword.
pub fn is_import_path(text: &str) -> bool {
    let dotted = |s: &str| s.split('.').all(super::is_python_name);
    text.split_once(':').is_some_and(|(module, name)| dotted(module) && dotted(name))
}

/// The stages `stage` runs after, directly or through others.
fn ancestors<'a>(pipeline: &'a Pipeline, stage: &StageId) -> BTreeSet<&'a str> {
    let mut seen = BTreeSet::new();
    let mut work: Vec<&StageId> =
        pipeline.stages.get(stage.as_str()).map(|s| s.after.iter().collect()).unwrap_or_default();
    while let Some(up) = work.pop() {
        if let Some((id, s)) = pipeline.stages.get_key_value(up.as_str())
            && seen.insert(id.as_str())
        {
            work.extend(s.after.iter());
        }
    }
    seen
}

/// Lowers a python stage of `pipeline`, checking its import path and its output references.
pub fn lower(
    pipeline: &Pipeline,
    stage_id: &StageId,
    stage: &PythonStage,
    branch: bool,
) -> Result<PythonTask, Vec<LowerError>> {
    let mut errors = Vec::new();
    if !is_import_path(&stage.callable) {
        errors.push(LowerError {
            code: "bad-import-path",
            at: "callable".to_owned(),
            message: format!("`{}` is not an import path", stage.callable),
            help: "write `package.module:function`, each part a Python identifier".to_owned(),
        });
    }
    let upstream = ancestors(pipeline, stage_id);
    let mut kwargs = BTreeMap::new();
    let mut outputs = BTreeMap::new();
    for (name, value) in &stage.kwargs {
        match value {
            Kwarg::Literal(v) => {
                kwargs.insert(name.to_string(), v.clone());
            }
            Kwarg::Output(OutputOf { output_of }) => {
                let kind = pipeline.stages.get(output_of.as_str()).map(|s| &s.kind);
                let problem = if !upstream.contains(output_of.as_str()) {
                    Some((
                        format!("`{output_of}` is not upstream of `{stage_id}`"),
                        format!("add `{output_of}` to `after` (directly or through another stage)"),
                    ))
                } else if !matches!(kind, Some(StageKind::Python(_) | StageKind::Branch(_))) {
                    Some((
                        format!("`{output_of}` is not a python stage, so it has no output"),
                        "only `kind: python` stages return values".to_owned(),
                    ))
                } else {
                    None
                };
                match problem {
                    Some((message, help)) => errors.push(LowerError {
                        code: "bad-output-reference",
                        at: format!("kwargs/{name}/output_of"),
                        message,
                        help,
                    }),
                    None => {
                        outputs.insert(name.to_string(), output_of.to_string());
                    }
                }
            }
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(PythonTask {
        stage: stage_id.to_string(),
        callable: stage.callable.clone(),
        kwargs,
        outputs,
        python_path: stage.python_path.clone(),
        python: stage.python.clone(),
        branch,
    })
}

/// The DAG file's helper that imports and calls the function, pulling upstream outputs from XCom.
const AIRFLOW_HELPER: &str = r#"def _fhirflow_call(fhirflow_call, ti, **_context):
    """Call a `kind: python` stage's function with its keyword arguments, reading the ones
    that name an upstream stage's output from XCom; the return value becomes this task's XCom.
    """
    import importlib
    import os
    import sys

    here = os.path.dirname(os.path.abspath(__file__))
    for folder in reversed(fhirflow_call["python_path"]):
        folder = os.path.normpath(os.path.join(here, folder))
        if folder not in sys.path:
            sys.path.insert(0, folder)
    module, _, name = fhirflow_call["callable"].partition(":")
    function = importlib.import_module(module)
    for part in name.split("."):
        function = getattr(function, part)
    kwargs = dict(fhirflow_call["kwargs"])
    for key, task_id in fhirflow_call["outputs"].items():
        kwargs[key] = ti.xcom_pull(task_ids=task_id)
    return function(**kwargs)"#;

/// What `fhirflow run` starts: reads the call from argv[1], writes the JSON return value to argv[2].
const RUNNER: &str = r#"import importlib, json, sys
with open(sys.argv[1], encoding="utf-8") as handle:
    call = json.load(handle)
for folder in reversed(call["python_path"]):
    sys.path.insert(0, folder)
module, _, name = call["callable"].partition(":")
function = importlib.import_module(module)
for part in name.split("."):
    function = getattr(function, part)
result = function(**call["kwargs"])
try:
    text = json.dumps(result, allow_nan=False)
except (TypeError, ValueError) as error:
    sys.stderr.write(f"fhirflow: stage `{call['stage']}` returned a value that is not JSON: {error}\n")
    sys.exit(3)
with open(sys.argv[2], "w", encoding="utf-8") as handle:
    handle.write(text)
"#;

/// Renders every string in `value` with `render`.
fn render_strings(
    value: &serde_json::Value,
    render: &dyn Fn(&str) -> Result<String, String>,
) -> Result<serde_json::Value, String> {
    use serde_json::Value;
    Ok(match value {
        Value::String(s) => Value::String(render(s)?),
        Value::Array(items) => Value::Array(items.iter().map(|v| render_strings(v, render)).collect::<Result<_, _>>()?),
        Value::Object(map) => Value::Object(
            map.iter().map(|(k, v)| render_strings(v, render).map(|v| (k.clone(), v))).collect::<Result<_, _>>()?,
        ),
        other => other.clone(),
    })
}

impl KindTask for PythonTask {
    fn kind(&self) -> &'static str {
        if self.branch { "branch" } else { "python" }
    }

    fn follows(&self, output: Option<&serde_json::Value>) -> Option<Result<Vec<String>, String>> {
        use serde_json::Value;
        if !self.branch {
            return None;
        }
        // As BranchPythonOperator: a task id, a list of them, or None for none.
        Some(match output {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::String(id)) => Ok(vec![id.clone()]),
            Some(Value::Array(items)) if items.iter().all(Value::is_string) => {
                Ok(items.iter().filter_map(Value::as_str).map(str::to_owned).collect())
            }
            Some(other) => Err(format!("branch `{}` returned {other}, not a stage id or a list of them", self.stage)),
        })
    }

    fn describe(&self) -> String {
        let mut args: Vec<String> = self.kwargs.keys().map(|k| format!("{k}=…")).collect();
        args.extend(self.outputs.iter().map(|(k, t)| format!("{k}=<output of {t}>")));
        format!("calls {}({})", self.callable, args.join(", "))
    }

    fn reads_outputs(&self) -> Vec<String> {
        self.outputs.values().cloned().collect()
    }

    fn airflow(&self, version: u32) -> AirflowTask {
        let call = serde_json::json!({
            "callable": self.callable,
            "python_path": self.python_path,
            "kwargs": self.kwargs,
            "outputs": self.outputs,
        });
        let (operator, import) = match (self.branch, version) {
            (false, _) => ("PythonOperator", None),
            (true, 2) => ("BranchPythonOperator", Some("from airflow.operators.python import BranchPythonOperator")),
            (true, _) => (
                "BranchPythonOperator",
                Some("from airflow.providers.standard.operators.python import BranchPythonOperator"),
            ),
        };
        AirflowTask {
            operator: operator.to_owned(),
            call: None,
            imports: import.into_iter().map(str::to_owned).collect(),
            kwargs: vec![
                ("python_callable".to_owned(), "_fhirflow_call".to_owned()),
                (
                    "op_kwargs".to_owned(),
                    format!("{{{}: {}}}", quoted("fhirflow_call"), literal(Language::Python, &call)),
                ),
            ],
            uses: if self.branch { Vec::new() } else { vec!["python"] },
            helper: Some(AIRFLOW_HELPER),
        }
    }

    fn run_command(&self, ctx: &RunContext<'_>) -> Result<RunCommand, String> {
        let mut kwargs = serde_json::Map::new();
        for (k, v) in &self.kwargs {
            kwargs.insert(k.clone(), render_strings(v, ctx.render)?);
        }
        for (k, task) in &self.outputs {
            let value = ctx.outputs.get(task).cloned().ok_or_else(|| {
                format!("stage `{}` reads the output of `{task}`, which has none in this run", self.stage)
            })?;
            kwargs.insert(k.clone(), value);
        }
        let python_path: Vec<String> =
            self.python_path.iter().map(|p| ctx.spec_dir.join(Path::new(p)).display().to_string()).collect();
        let input = serde_json::json!({
            "stage": self.stage,
            "callable": self.callable,
            "python_path": python_path,
            "kwargs": kwargs,
        });
        let program = self
            .python
            .clone()
            .or_else(|| std::env::var("FHIRFLOW_PYTHON").ok().filter(|p| !p.is_empty()))
            .unwrap_or_else(|| "python3".to_owned());
        Ok(RunCommand {
            program,
            args: vec![
                "-c".to_owned(),
                RUNNER.to_owned(),
                ctx.input_path.display().to_string(),
                ctx.output_path.display().to_string(),
            ],
            cwd: ctx.spec_dir.to_path_buf(),
            env: BTreeMap::new(),
            input: Some(input.to_string()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn import_paths_are_dotted_identifiers() {
        assert!(is_import_path("pkg.mod:func"));
        assert!(is_import_path("mod:Class.method"));
        assert!(!is_import_path("pkg.mod"));
        assert!(!is_import_path("pkg..mod:f"));
        assert!(!is_import_path("os:system('rm')"));
        assert!(!is_import_path("1pkg:f"));
        assert!(!is_import_path(":f"));
        assert!(!is_import_path("pkg.import:f"));
    }
}
