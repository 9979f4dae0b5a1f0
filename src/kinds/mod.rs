//! Stage kinds behind one interface: each kind is a module holding its spec type, its
//! lowering, its Airflow rendering and its behaviour under `fhirflow run`. The compiler phases
//! call a kind only through [`KindTask`], so adding a kind touches neither the scheduler nor
//! the emitter's core.
//!
//! The older kinds (dbt, copy_into, sensor, trigger) still live in the phases' own `Operation`
//! arms: each touches the scheduler (a sensor waits on the run store, a trigger starts a pipeline
//! of the run, dbt and loads have their own artifacts). New kinds go here.

pub mod operator;
pub mod python;
pub mod shell;

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::path::{Path, PathBuf};

/// Python's keywords: none can be an import path's part or a keyword argument's name.
pub(crate) const PYTHON_KEYWORDS: &[&str] = &[
    "False", "None", "True", "and", "as", "assert", "async", "await", "break", "class", "continue", "def", "del",
    "elif", "else", "except", "finally", "for", "from", "global", "if", "import", "in", "is", "lambda", "nonlocal",
    "not", "or", "pass", "raise", "return", "try", "while", "with", "yield",
];

/// Whether `text` is a Python identifier that is not a keyword (ASCII only, as spec names are).
pub(crate) fn is_python_name(text: &str) -> bool {
    let mut chars = text.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !PYTHON_KEYWORDS.contains(&text)
}

/// One task of a kind, as every backend sees it.
pub trait KindTask: Debug + Send + Sync {
    /// The stage kind's name, as the spec writes it (`kind: python`).
    fn kind(&self) -> &'static str;

    /// One line saying what the task does, for `run --dry-run` and reports.
    fn describe(&self) -> String;

    /// Task ids of this pipeline whose outputs the task reads.
    fn reads_outputs(&self) -> Vec<String> {
        Vec::new()
    }

    /// For a branch: the task ids it follows, given its output; the others directly after it
    /// are skipped. `None` for a task that is not a branch.
    fn follows(&self, _output: Option<&serde_json::Value>) -> Option<Result<Vec<String>, String>> {
        None
    }

    /// The Airflow operator and its keyword arguments.
    fn airflow(&self, version: u32) -> AirflowTask;

    /// The exit status that skips the task rather than fail it, if any.
    fn skip_exit_code(&self) -> Option<i32> {
        None
    }

    /// Whether the task has no behaviour under `fhirflow run`, which then refuses its pipeline.
    fn airflow_only(&self) -> bool {
        false
    }

    /// The subprocess that performs one attempt under `fhirflow run`.
    fn run_command(&self, ctx: &RunContext<'_>) -> Result<RunCommand, String>;
}

/// A task as the Airflow emitter writes it.
#[derive(Debug, Clone)]
pub struct AirflowTask {
    /// The operator's class name, as Airflow reports it.
    pub operator: String,
    /// The name the DAG file calls the class by, where its import binds another.
    pub call: Option<String>,
    /// Keyword arguments as Python expressions, in order.
    pub kwargs: Vec<(String, String)>,
    /// Import keys of the emitter (`python` for PythonOperator) the task needs.
    pub uses: Vec<&'static str>,
    /// Further import lines, written after the emitter's own.
    pub imports: Vec<String>,
    /// Module-level Python code the task calls, written once per DAG file.
    pub helper: Option<&'static str>,
}

/// What an attempt under `fhirflow run` knows when it builds its command.
pub struct RunContext<'a> {
    /// The folder of the spec: relative paths resolve against it.
    pub spec_dir: &'a Path,
    /// Renders a string's Airflow `{{ ... }}` templates for this attempt.
    pub render: &'a dyn Fn(&str) -> Result<String, String>,
    /// Outputs of this run's finished upstream tasks, by task id.
    pub outputs: &'a BTreeMap<String, serde_json::Value>,
    /// A file the attempt may write its input to.
    pub input_path: PathBuf,
    /// The file the attempt writes its JSON output to; absent means no output.
    pub output_path: PathBuf,
}

/// The subprocess of one attempt.
#[derive(Debug, Clone)]
pub struct RunCommand {
    /// The program.
    pub program: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// The working directory.
    pub cwd: PathBuf,
    /// Extra environment.
    pub env: BTreeMap<String, String>,
    /// Written to [`RunContext::input_path`] before the program starts.
    pub input: Option<String>,
}

/// A problem a kind finds while lowering its stage, at a JSON pointer under the stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LowerError {
    /// Diagnostic code.
    pub code: &'static str,
    /// The key under the stage, such as `callable` or `kwargs/files`.
    pub at: String,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub help: String,
}
