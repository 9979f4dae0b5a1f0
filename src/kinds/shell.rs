//! `kind: shell`: a bash command. Airflow's BashOperator in a DAG file; `bash -c` in the spec's
//! folder under `fhirflow run`. In both, `{{ ... }}` templates in the command and the `env`
//! values are rendered, and exit status 99 skips the task (BashOperator's `skip_on_exit_code`).

use super::{AirflowTask, KindTask, RunCommand, RunContext};
use crate::emit::airflow::{BASH_TEMPLATE_EXT, env_dict, templated};
use crate::run::report::shell_word;
use crate::spec::EnvVarName;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The exit status that skips a shell task instead of failing it, as Airflow's BashOperator
/// `skip_on_exit_code` default does.
pub const SKIP_EXIT_CODE: i32 = 99;

/// A shell command stage.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
pub struct ShellStage {
    /// The command, run by bash. Airflow renders `{{ ... }}` templates in it.
    #[schemars(length(min = 1, max = 65536))]
    pub command: String,
    /// Extra environment variables for the command. Airflow renders `{{ ... }}` templates in the values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<EnvVarName, String>,
}

/// A shell stage, lowered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShellTask {
    /// The command.
    pub command: String,
    /// Extra environment variables, their values templates.
    pub env: BTreeMap<String, String>,
}

/// Lowers a shell stage; every command is valid, as bash reads it.
pub fn lower(stage: &ShellStage) -> ShellTask {
    ShellTask { command: stage.command.clone(), env: stage.env.iter().map(|(k, v)| (k.0.clone(), v.clone())).collect() }
}

impl KindTask for ShellTask {
    fn kind(&self) -> &'static str {
        "shell"
    }

    fn describe(&self) -> String {
        let env: String = self.env.iter().map(|(k, v)| format!("{k}={} ", shell_word(v))).collect();
        format!("$ {env}{}", self.command.trim_end().replace('\n', "\n       "))
    }

    fn airflow(&self, _version: u32) -> AirflowTask {
        let mut kwargs = vec![("bash_command".to_owned(), templated(&self.command, BASH_TEMPLATE_EXT))];
        if !self.env.is_empty() {
            kwargs.push((
                "env".to_owned(),
                env_dict(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())), BASH_TEMPLATE_EXT),
            ));
            kwargs.push(("append_env".to_owned(), "True".to_owned()));
        }
        AirflowTask {
            operator: "BashOperator".to_owned(),
            call: None,
            kwargs,
            uses: vec!["bash"],
            imports: Vec::new(),
            helper: None,
        }
    }

    fn skip_exit_code(&self) -> Option<i32> {
        Some(SKIP_EXIT_CODE)
    }

    fn run_command(&self, ctx: &RunContext<'_>) -> Result<RunCommand, String> {
        let command = (ctx.render)(&self.command)?;
        // BashOperator renders `env` as well as the command.
        let env = self.env.iter().map(|(k, v)| (ctx.render)(v).map(|v| (k.clone(), v))).collect::<Result<_, _>>()?;
        Ok(RunCommand {
            program: "bash".to_owned(),
            args: vec!["-c".to_owned(), command],
            cwd: ctx.spec_dir.to_path_buf(),
            env,
            input: None,
        })
    }
}
