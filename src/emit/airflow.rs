//! The Airflow 3 emitter: one static DAG file per pipeline.

mod dbt_watcher;

use super::header::{self, sha256};
use super::literal::{Language, docstring, literal, quoted};
use super::paths::relative;
use super::snowflake;
use super::{DuckdbPools, FileKind, GeneratedFile, Layout, OutputDirs, code, render};
use crate::error::Error;
use crate::graph::{
    DbtArg, DbtInvocation, LoadPlan, LoadStep, Operation, Origin, PipelineGraph, PipelineTasks, Settings, Task,
    TriggerRule, expectations::operator_name,
};
use crate::spec::{AssetCondition, AssetName, OperatorKind, Schedule};
use minijinja::{Value, context};
use serde_json::json;
use std::collections::BTreeMap;
use std::collections::BTreeSet;

/// Names the generated module defines, imports or reads; a task variable must not rebind them.
/// Names starting with `_` (the helper functions, `__file__`, `__doc__`) are never task
/// variables. tests/properties.rs tries every name the modules use as a stage id.
const RESERVED: &[&str] = &[
    "DAG",
    "CronTriggerTimetable",
    "Exception",
    "FileNotFoundError",
    "BashOperator",
    "PythonOperator",
    "ExternalTaskSensor",
    "PythonSensor",
    "TriggerDagRunOperator",
    "Asset",
    "AssetAll",
    "AssetAny",
    "Dataset",
    "DatasetAll",
    "DatasetAny",
    "timedelta",
    "pendulum",
    "os",
    "json",
    "logging",
    "shlex",
    "dag",
    "default_args",
    "annotations",
    "DBT_PROJECT_DIR",
    "DBT_PROFILES_DIR",
    "DBT_STATE_DIR",
    "EmptyOperator",
    "DockerOperator",
    "KubernetesPodOperator",
    "TaskGroup",
    "Mount",
    "k8s",
    "functools",
    "urllib",
];

/// Python keywords, and builtins a task variable must not be: the commonest, and those the
/// helper functions call when a task runs (`sorted`, `getattr`, and in RESERVED the exceptions).
const PYTHON_WORDS: &[&str] = &[
    "False", "None", "True", "and", "as", "assert", "async", "await", "break", "class", "continue", "def", "del",
    "elif", "else", "except", "finally", "for", "from", "global", "if", "import", "in", "is", "lambda", "nonlocal",
    "not", "or", "pass", "raise", "return", "try", "while", "with", "yield", "match", "case", "type", "print", "list",
    "dict", "set", "str", "int", "len", "id", "object", "open", "max", "min", "sorted", "getattr",
];

/// Writes Airflow 3 DAG files.
pub struct AirflowEmitter<'a> {
    graph: &'a PipelineGraph,
    layout: &'a Layout,
    /// The pools of the dbt tasks on a DuckDB target.
    pools: &'a DuckdbPools,
}

impl<'a> AirflowEmitter<'a> {
    /// An emitter for `graph` into `layout`, its DuckDB dbt tasks in `pools`.
    pub fn new(graph: &'a PipelineGraph, layout: &'a Layout, pools: &'a DuckdbPools) -> Self {
        Self { graph, layout, pools }
    }

    /// One DAG file per pipeline.
    pub fn emit(&self) -> Result<Vec<GeneratedFile>, Error> {
        let folder = OutputDirs::of(&self.graph.spec, self.layout, None).map_err(Error::Invalid)?.dags;
        for p in &self.graph.pipelines {
            for task in &p.tasks {
                if let Operation::Load { plan, .. } = &task.operation
                    && plan.airflow_parts().is_none()
                {
                    return Err(Error::Refused {
                        path: folder.join(format!("{}.py", p.id)),
                        reason: format!(
                            "load `{}` uses a local or duckdb connection, which runs only with `fhirflow run`",
                            plan.stage
                        ),
                    });
                }
            }
        }
        self.graph
            .pipelines
            .iter()
            .map(|p| {
                let body = self.render_pipeline(p)?;
                let name = format!("{}.py", p.id);
                Ok(GeneratedFile {
                    path: folder.join(&name),
                    contents: header::wrap(&self.layout.owner.id, &name, &body),
                    kind: FileKind::AirflowDag(p.id.to_string()),
                })
            })
            .collect()
    }

    fn dbt_dirs(&self, uses_state: bool) -> Result<Option<Value>, Error> {
        let Some(project) = &self.graph.spec.dbt else {
            return Ok(None);
        };
        let dags = &self.graph.spec.airflow.dags_folder.0;
        let profiles = project.profiles_dir.as_ref().unwrap_or(&project.project_dir);
        let locate = |deployed: Option<&String>, local: &str, what: &str| -> Result<String, Error> {
            if let Some(path) = deployed {
                return Ok(quoted(path));
            }
            let rel = relative(dags, local).ok_or_else(|| Error::Render {
                template: "dag.py.j2".to_owned(),
                message: format!(
                    "cannot tell where the dbt {what} folder is from the DAGs folder; set `dbt.deploy.{what}_dir` to its path on the Airflow workers"
                ),
            })?;
            Ok(format!("os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), {}))", quoted(&rel)))
        };
        let deploy = project.deploy.as_ref();
        let project_dir = locate(deploy.map(|d| &d.project_dir), &project.project_dir.0, "project")?;
        let profiles_dir = match deploy {
            Some(d) => quoted(d.profiles_dir.as_ref().unwrap_or(&d.project_dir)),
            None => locate(None, &profiles.0, "profiles")?,
        };
        let state_dir = match project.artifacts.as_ref().filter(|_| uses_state) {
            Some(store) => match (&store.path, &store.s3) {
                (Some(path), _) => Some(code(quoted(&format!("{path}/state")))),
                // Fetched from S3 into the project before dbt runs.
                (None, Some(_)) => Some(code("os.path.join(DBT_PROJECT_DIR, \".fhirflow-state\")")),
                (None, None) => None,
            },
            None => None,
        };
        Ok(Some(context! {
            project_dir => code(project_dir),
            profiles_dir => code(profiles_dir),
            state_dir => state_dir,
        }))
    }

    fn render_pipeline(&self, p: &PipelineTasks) -> Result<String, Error> {
        let vars = task_variables(p);
        let mut uses = BTreeSet::new();
        let mut helpers = BTreeSet::new();
        let mut kind_imports = BTreeSet::new();
        let mut tasks = Vec::new();
        let mut summary = Vec::new();
        let groups = task_groups(p);
        if !groups.is_empty() {
            uses.insert("task_group");
        }
        let group_var = |path: &[String]| groups.iter().find(|g| g.path == path).map(|g| g.var.clone());
        for (task, var) in p.tasks.iter().zip(&vars) {
            let (operator, kwargs) = self.task_kwargs(p, task, &mut uses, &mut helpers, &mut kind_imports);
            let kwarg_text: String = kwargs.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
            let digest = &sha256(&format!("{operator}\n{kwarg_text}"))[..16];
            summary.push(code(summary_line(task, digest, &kwargs)));
            let local = task.id.rsplit('.').next().unwrap_or(&task.id).to_owned();
            tasks.push(context! {
                var => code(var.clone()),
                operator => code(operator),
                id => if task.group.is_empty() { task.id.clone() } else { local },
                group => group_var(&task.group).map(code),
                kwargs => kwargs.into_iter().map(|(k, v)| context! { name => code(k), value => code(v) }).collect::<Vec<_>>(),
            });
        }
        let var_of = |id: &str| p.tasks.iter().position(|t| t.id == id).map(|i| vars[i].clone());
        let mut edges = Vec::new();
        for (task, var) in p.tasks.iter().zip(&vars) {
            let ups: Vec<String> = task.upstream.iter().filter_map(|u| var_of(u)).collect();
            match ups.as_slice() {
                [] => {}
                [one] => edges.push(code(format!("{one} >> {var}"))),
                many => edges.push(code(format!("[{}] >> {var}", many.join(", ")))),
            }
        }
        let version = self.graph.spec.airflow.version;
        let schedule = match &p.schedule {
            None => "None".to_owned(),
            Some(Schedule::Interval(every)) => format!("timedelta(seconds={})", every.as_secs()),
            Some(Schedule::Assets(condition)) => asset_condition(condition, version, &mut uses, true),
            // Airflow 2 reads a cron string as data intervals (logical date = the interval's
            // start); a trigger timetable keeps 3.x's logical dates, so sensor deltas hold.
            Some(other) if version == 2 => match other.cron_expression() {
                Some(expr) => {
                    uses.insert("cron_trigger");
                    format!("CronTriggerTimetable({}, timezone={})", quoted(expr), quoted(&p.defaults.timezone.value))
                }
                None => quoted(&other.to_string()),
            },
            Some(other) => quoted(&other.to_string()),
        };
        let start_date = p.start.map(|start| {
            let tz: chrono_tz::Tz = p.defaults.timezone.value.parse().unwrap_or(chrono_tz::Tz::UTC);
            let local = start.with_timezone(&tz);
            use chrono::{Datelike, Timelike};
            let mut parts = vec![local.year().to_string(), local.month().to_string(), local.day().to_string()];
            if (local.hour(), local.minute(), local.second()) != (0, 0, 0) {
                parts.extend([local.hour().to_string(), local.minute().to_string(), local.second().to_string()]);
            }
            code(format!("pendulum.datetime({}, tz={})", parts.join(", "), quoted(tz.name())))
        });
        if start_date.is_some() {
            uses.insert("pendulum");
        }
        let mut doc = format!("Airflow DAG `{}`, generated by fhirflow from {}.", p.id, self.layout.owner.id);
        if let Some(description) = &p.description {
            doc = format!("{description}\n\n{doc}");
        }
        let default_args = settings_kwargs(&p.defaults, None)
            .into_iter()
            .map(|(k, v)| context! { name => k, value => code(v) })
            .collect::<Vec<_>>();
        if p.defaults.failure_webhook_env.value.is_some()
            || p.tasks.iter().any(|t| t.settings.failure_webhook_env.value.is_some())
        {
            uses.insert("webhook");
        }
        if uses.contains("watcher") {
            helpers.insert(dbt_watcher::HELPERS);
            helpers.insert(dbt_watcher::task_finished(version));
        }
        let dbt = if uses.contains("dbt") || uses.contains("results") {
            self.dbt_dirs(uses.contains("state"))?
        } else {
            None
        };
        render(
            "dag.py.j2",
            context! {
                docstring => code(docstring(&doc)),
                imports => imports(&uses, version).into_iter().chain(kind_imports).map(code).collect::<Vec<_>>(),
                skip_import => code(Imports::of(version).skip),
                fail_import => code(Imports::of(version).fail),
                dbt => dbt,
                uses_results => uses.contains("results"),
                uses_dbt_script => uses.contains("dbt_script"),
                uses_webhook => uses.contains("webhook"),
                groups => groups.iter().map(|g| context! {
                    var => code(g.var.clone()),
                    id => g.path.last().cloned().unwrap_or_default(),
                    parent => g.parent.clone().map(code),
                }).collect::<Vec<_>>(),
                uses_load => uses.contains("load"),
                kind_helpers => helpers.into_iter().map(code).collect::<Vec<_>>(),
                dag_id => p.id.to_string(),
                description => p.description.clone(),
                schedule => code(schedule),
                start_date => start_date,
                catchup => p.catchup,
                max_active_runs => p.max_active_runs,
                tags => p.tags.clone(),
                default_args => default_args,
                tasks => tasks,
                edges => edges,
                summary => summary,
                dag_summary => code(dag_summary_line(p)),
            },
        )
    }

    /// The operator and its keyword arguments (as Python code) for one task.
    fn task_kwargs(
        &self,
        p: &PipelineTasks,
        task: &Task,
        uses: &mut BTreeSet<&'static str>,
        helpers: &mut BTreeSet<&'static str>,
        kind_imports: &mut BTreeSet<String>,
    ) -> (String, Vec<(String, String)>) {
        let lit = |v: serde_json::Value| literal(Language::Python, &v);
        let mut kwargs: Vec<(String, String)> = Vec::new();
        // The name the DAG file calls the operator by, where it is not the class name.
        let mut call = None;
        match &task.operation {
            Operation::Dbt(inv) => {
                uses.insert("dbt");
                self.dbt_kwargs(task, inv, uses, &mut kwargs);
            }
            Operation::Join => {
                uses.insert("empty");
            }
            Operation::DbtResults { .. } => {
                uses.insert("results");
                uses.insert("python");
                kwargs.push(("python_callable".into(), "_log_dbt_results".into()));
                kwargs.push((
                    "op_kwargs".into(),
                    "{\"results_path\": os.path.join(DBT_PROJECT_DIR, \"target\", \"run_results.json\")}".into(),
                ));
            }
            Operation::Sensor(s) => {
                uses.insert("sensor");
                kwargs.push(("external_dag_id".into(), quoted(s.pipeline.as_str())));
                kwargs.push(("external_task_id".into(), lit(json!(s.task))));
                kwargs.push(("execution_delta".into(), format!("timedelta(seconds={})", s.execution_delta.as_secs())));
                let states = |list: &[crate::spec::AwaitedState]| {
                    lit(json!(list.iter().map(|s| s.as_str()).collect::<Vec<_>>()))
                };
                kwargs.push(("allowed_states".into(), states(&s.allowed_states)));
                kwargs.push(("failed_states".into(), states(&s.failed_states)));
                // Written even when empty: Airflow's own default keeps waiting on a skipped target.
                kwargs.push(("skipped_states".into(), states(&s.skipped_states)));
                kwargs.push(("check_existence".into(), python_bool(s.check_existence)));
                kwargs.push(("timeout".into(), s.timeout.as_secs().to_string()));
                kwargs.push(("poke_interval".into(), s.poke_interval.as_secs().to_string()));
                kwargs.push(("mode".into(), quoted(s.mode.as_str())));
                // Explicit, so that a deployment's `default_deferrable` does not change the spec's meaning.
                kwargs.push(("deferrable".into(), python_bool(s.deferrable)));
                if s.soft_fail {
                    kwargs.push(("soft_fail".into(), "True".into()));
                }
            }
            Operation::Trigger(t) => {
                uses.insert("trigger");
                kwargs.push(("trigger_dag_id".into(), quoted(t.pipeline.as_str())));
                if !t.conf.is_empty() {
                    kwargs.push(("conf".into(), lit(json!(t.conf))));
                }
                kwargs.push(("wait_for_completion".into(), python_bool(t.wait_for_completion)));
                if t.wait_for_completion {
                    kwargs.push(("poke_interval".into(), t.poke_interval.as_secs().to_string()));
                }
            }
            Operation::Load { step, plan } => {
                uses.insert("load");
                load_kwargs(*step, plan, uses, &mut kwargs);
            }
            Operation::Kind(kind) => {
                let task = kind.airflow(self.graph.spec.airflow.version);
                uses.extend(task.uses);
                kind_imports.extend(task.imports);
                if let Some(helper) = task.helper {
                    helpers.insert(helper);
                }
                kwargs.extend(task.kwargs);
                call = task.call;
            }
        }
        if !task.outlets.is_empty() {
            let outlets: Vec<String> =
                task.outlets.iter().map(|a| asset(a, self.graph.spec.airflow.version, uses)).collect();
            kwargs.push(("outlets".into(), format!("[{}]", outlets.join(", "))));
        }
        if task.trigger_rule != TriggerRule::AllSuccess {
            kwargs.push(("trigger_rule".into(), quoted(task.trigger_rule.as_str())));
        }
        let writer_pool = self.pools.task_pool(task);
        let own = settings_kwargs(&task.settings, Some(&p.defaults));
        match writer_pool {
            // One dbt process at a time may write a DuckDB file: its pool replaces the spec's.
            Some(pool) => {
                kwargs.push(("pool".into(), quoted(&pool)));
                kwargs.extend(own.into_iter().filter(|(k, _)| k != "pool"));
            }
            None => kwargs.extend(own),
        }
        (call.unwrap_or_else(|| operator_name(task).into_owned()), kwargs)
    }
}

impl AirflowEmitter<'_> {
    /// Whether the dbt word `arg` ends in one of `ext`: a literal as written, a folder as the
    /// spec gives it (the state folder ends in `state`).
    fn dbt_word_ends_in(&self, arg: Option<&DbtArg>, ext: &[&str]) -> bool {
        let project = self.graph.spec.dbt.as_ref();
        let deploy = project.and_then(|p| p.deploy.as_ref());
        let text = match arg {
            Some(DbtArg::Literal(s) | DbtArg::Vars(s)) => Some(s.as_str()),
            Some(DbtArg::ProjectDir) => {
                deploy.map(|d| d.project_dir.as_str()).or(project.map(|p| p.project_dir.0.as_str()))
            }
            Some(DbtArg::ProfilesDir) => match deploy {
                Some(d) => Some(d.profiles_dir.as_deref().unwrap_or(&d.project_dir)),
                None => project.map(|p| p.profiles_dir.as_ref().unwrap_or(&p.project_dir).0.as_str()),
            },
            Some(DbtArg::StateDir) | None => None,
        };
        // `os.path.normpath` drops trailing `/` and `/.`.
        let text = text.map(|t| {
            let mut t = t;
            while let Some(rest) = t.strip_suffix('/').or_else(|| t.strip_suffix("/.")) {
                t = rest;
            }
            t
        });
        text.is_some_and(|t| ext.iter().any(|e| t.ends_with(e)))
    }

    /// The keyword arguments of a dbt task under its operator. The dbt command line is built
    /// once: BashOperator gets it joined, DockerOperator and KubernetesPodOperator as a list.
    fn dbt_kwargs(
        &self,
        task: &Task,
        inv: &DbtInvocation,
        uses: &mut BTreeSet<&'static str>,
        kwargs: &mut Vec<(String, String)>,
    ) {
        let project = self.graph.spec.dbt.as_ref();
        let word = |a: &DbtArg| match a {
            DbtArg::Literal(s) | DbtArg::Vars(s) => quoted(s),
            DbtArg::ProjectDir => "DBT_PROJECT_DIR".to_owned(),
            DbtArg::ProfilesDir => "DBT_PROFILES_DIR".to_owned(),
            DbtArg::StateDir => "DBT_STATE_DIR".to_owned(),
        };
        if inv.args.contains(&DbtArg::StateDir) {
            uses.insert("state");
        }
        // Rendered `--vars` reach bash through the environment, never inside the command.
        let vars_env = inv.args.iter().find_map(|a| match a {
            DbtArg::Vars(json) if a.is_template() => Some(json.clone()),
            _ => None,
        });
        let mut argv = vec![quoted(&inv.executable)];
        argv.extend(inv.args.iter().map(word));
        let argv = format!("[{}]", argv.join(", "));
        let artifacts = project.and_then(|p| p.artifacts.as_ref()).filter(|_| inv.save_artifacts);
        let scripted =
            inv.deps_first || inv.tolerate_failure || artifacts.is_some() || inv.args.contains(&DbtArg::StateDir);
        let line = shell_line(&inv.executable, &inv.args, word);
        // (program, argument words) as Python list expressions.
        let (program, script) = if scripted {
            uses.insert("dbt_script");
            let mut commands = Vec::new();
            if inv.deps_first {
                commands.push(shell_line(&inv.executable, &DbtInvocation::deps_args(), word));
            }
            commands.push(line.clone());
            let store =
                artifacts.and_then(|a| a.path.as_ref().or(a.s3.as_ref())).map_or("None".to_owned(), |s| quoted(s));
            let state = if inv.args.contains(&DbtArg::StateDir) { "DBT_STATE_DIR" } else { "None" };
            let tolerate = if inv.tolerate_failure { "True" } else { "False" };
            let script = format!(
                "_dbt_script([{}], project_dir=DBT_PROJECT_DIR, artifacts={store}, state_dir={state}, tolerate={tolerate})",
                commands.join(", ")
            );
            (None, script)
        } else {
            (Some(argv), String::new())
        };
        // A templated `--vars` as the environment variable the command line reads.
        let vars_var = |env: &mut Vec<(String, String)>| {
            if let Some(json) = &vars_env {
                env.push((quoted(VARS_ENV), quoted(json)));
            }
        };
        if let (OperatorKind::Bash, Some(watch)) = (task.settings.operator.value, &inv.watch) {
            let mut env = Vec::new();
            vars_var(&mut env);
            let command = if program.is_some() { line } else { script };
            dbt_watcher::kwargs(watch, task.stage.as_str(), command, &env, uses, kwargs);
            return;
        }
        match task.settings.operator.value {
            OperatorKind::Bash => {
                uses.insert("bash");
                let command = match &program {
                    // The last word ends the command, which BashOperator may read as a file name.
                    Some(_) if self.dbt_word_ends_in(inv.args.last(), BASH_TEMPLATE_EXT) => {
                        format!("{line} + {}", quoted(NOT_A_FILE))
                    }
                    Some(_) => line,
                    None => script,
                };
                kwargs.push(("bash_command".into(), command));
                let mut env = Vec::new();
                vars_var(&mut env);
                if !env.is_empty() {
                    kwargs.push(("env".into(), python_dict(&env)));
                    kwargs.push(("append_env".into(), "True".into()));
                }
            }
            OperatorKind::Docker => {
                uses.insert("docker");
                let Some(docker) = project.and_then(|p| p.docker.as_ref()) else { return };
                kwargs.push(("image".into(), templated(&docker.image, DOCKER_TEMPLATE_EXT)));
                let command = match &program {
                    // No shell reads these words: each is one argument, whatever Airflow renders into it.
                    Some(_) => {
                        let mut words = vec![templated(&inv.executable, DOCKER_TEMPLATE_EXT)];
                        words.extend(inv.args.iter().map(|a| match a {
                            DbtArg::Literal(s) => templated(s, DOCKER_TEMPLATE_EXT),
                            other if self.dbt_word_ends_in(Some(other), DOCKER_TEMPLATE_EXT) => {
                                format!("{} + {}", word(other), quoted(NOT_A_FILE))
                            }
                            other => word(other),
                        }));
                        format!("[{}]", words.join(", "))
                    }
                    None => format!("[\"bash\", \"-c\", {script}]"),
                };
                kwargs.push(("command".into(), command));
                if !docker.mounts.is_empty() {
                    let mounts: Vec<String> = docker
                        .mounts
                        .iter()
                        .map(|m| {
                            let mut parts = m.0.splitn(3, ':');
                            let (source, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
                            let read_only = if parts.next() == Some("ro") { "True" } else { "False" };
                            format!(
                                "Mount(source={}, target={}, type=\"bind\", read_only={read_only})",
                                templated(source, DOCKER_TEMPLATE_EXT),
                                templated(target, DOCKER_TEMPLATE_EXT)
                            )
                        })
                        .collect();
                    kwargs.push(("mounts".into(), format!("[{}]", mounts.join(", "))));
                }
                let mut env: Vec<(String, String)> =
                    docker.env.iter().map(|(k, v)| (quoted(&k.0), templated(v, DOCKER_TEMPLATE_EXT))).collect();
                if program.is_none() {
                    vars_var(&mut env);
                }
                if !env.is_empty() {
                    kwargs.push(("environment".into(), python_dict(&env)));
                }
                if let Some(network) = &docker.network_mode {
                    kwargs.push(("network_mode".into(), quoted(network)));
                }
                kwargs.push(("auto_remove".into(), quoted("success")));
                kwargs.push(("mount_tmp_dir".into(), "False".into()));
            }
            OperatorKind::Kubernetes => {
                uses.insert("kubernetes");
                let Some(k8s) = project.and_then(|p| p.kubernetes.as_ref()) else { return };
                kwargs.push(("name".into(), quoted(&pod_name(&task.id))));
                kwargs.push(("namespace".into(), quoted(&k8s.namespace)));
                kwargs.push(("image".into(), quoted(&k8s.image)));
                match &program {
                    Some(argv) => {
                        kwargs.push(("cmds".into(), format!("{argv}[:1]")));
                        kwargs.push(("arguments".into(), format!("{argv}[1:]")));
                    }
                    None => {
                        kwargs.push(("cmds".into(), "[\"bash\", \"-c\"]".into()));
                        kwargs.push(("arguments".into(), format!("[{script}]")));
                    }
                }
                let mut env: Vec<(String, String)> = k8s.env.iter().map(|(k, v)| (quoted(&k.0), quoted(v))).collect();
                if program.is_none() {
                    vars_var(&mut env);
                }
                if !env.is_empty() {
                    kwargs.push(("env_vars".into(), python_dict(&env)));
                }
                if !k8s.env_from_secrets.is_empty() {
                    let sources: Vec<String> = k8s
                        .env_from_secrets
                        .iter()
                        .map(|s| {
                            format!("k8s.V1EnvFromSource(secret_ref=k8s.V1SecretEnvSource(name={}))", quoted(&s.0))
                        })
                        .collect();
                    kwargs.push(("env_from".into(), format!("[{}]", sources.join(", "))));
                }
                if let Some(resources) = &k8s.resources {
                    let mut amounts = BTreeMap::new();
                    if let Some(cpu) = &resources.cpu {
                        amounts.insert("cpu", cpu.as_str());
                    }
                    if let Some(memory) = &resources.memory {
                        amounts.insert("memory", memory.as_str());
                    }
                    let amounts = literal(Language::Python, &json!(amounts));
                    kwargs.push((
                        "container_resources".into(),
                        format!("k8s.V1ResourceRequirements(requests={amounts}, limits={amounts})"),
                    ));
                }
                if let Some(account) = &k8s.service_account {
                    kwargs.push(("service_account_name".into(), quoted(&account.0)));
                }
                kwargs.push(("get_logs".into(), "True".into()));
                kwargs.push(("on_finish_action".into(), quoted("delete_pod")));
            }
        }
    }
}

/// The extensions after which BashOperator reads a templated string as a template file's name.
pub(crate) const BASH_TEMPLATE_EXT: &[&str] = &[".sh", ".bash"];

/// DockerOperator's extensions (its `template_ext`).
const DOCKER_TEMPLATE_EXT: &[&str] = &[".sh", ".bash", ".env"];

/// A template that renders to nothing: ending a string with it keeps Airflow from reading the
/// string as a template file's name, and leaves what it renders to unchanged.
const NOT_A_FILE: &str = "{{ '' }}";

/// The environment variable that a templated `--vars` reaches a dbt command line through.
const VARS_ENV: &str = "FHIRFLOW_DBT_VARS";

/// `text` as a Python string for a field Airflow renders: a string ending in one of `ext` gets
/// [`NOT_A_FILE`], so that Airflow renders it to `text` instead of looking for a file so named.
pub(crate) fn templated(text: &str, ext: &[&str]) -> String {
    if ext.iter().any(|e| text.ends_with(e)) { quoted(&format!("{text}{NOT_A_FILE}")) } else { quoted(text) }
}

/// Environment variables as a Python dict whose values Airflow renders.
pub(crate) fn env_dict<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>, ext: &[&str]) -> String {
    let pairs: Vec<(String, String)> = pairs.map(|(k, v)| (quoted(k), templated(v, ext))).collect();
    python_dict(&pairs)
}

/// A Python dict of (key, value) expressions.
pub(crate) fn python_dict(pairs: &[(String, String)]) -> String {
    let items: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    format!("{{{}}}", items.join(", "))
}

/// A dbt command line for bash as a Python expression: every word quoted by `shlex`, but a
/// templated `--vars`, which bash reads from [`VARS_ENV`] in double quotes. Airflow renders the
/// variable, not the command, so nothing it renders ever reaches bash as code.
fn shell_line(executable: &str, args: &[DbtArg], word: impl Fn(&DbtArg) -> String) -> String {
    let mut parts = Vec::new();
    let mut words = vec![quoted(executable)];
    for arg in args {
        if arg.is_template() {
            parts.push(format!("shlex.join([{}])", words.join(", ")));
            words.clear();
            parts.push(quoted(&format!("\"${VARS_ENV}\"")));
        } else {
            words.push(word(arg));
        }
    }
    if !words.is_empty() {
        parts.push(format!("shlex.join([{}])", words.join(", ")));
    }
    match parts.as_slice() {
        [one] => one.clone(),
        _ => format!("\" \".join([{}])", parts.join(", ")),
    }
}

/// A pod name from a task id: lowercase letters, digits and `-`, at most 63 characters.
fn pod_name(task_id: &str) -> String {
    let mut name: String = task_id
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' })
        .collect::<String>()
        .trim_matches('-')
        .to_owned();
    name.truncate(63);
    let name = name.trim_end_matches('-');
    if name.is_empty() { "dbt".to_owned() } else { name.to_owned() }
}

fn load_kwargs(step: LoadStep, plan: &LoadPlan, uses: &mut BTreeSet<&'static str>, kwargs: &mut Vec<(String, String)>) {
    // AirflowEmitter::emit refuses loads without these first.
    let Some((s3_conn_id, bucket, warehouse_conn_id, snowflake_stage)) = plan.airflow_parts() else { return };
    let conn = quoted(warehouse_conn_id);
    let task_ref = |s: LoadStep| quoted(plan.task_id(s));
    match step {
        LoadStep::CreateTables => {
            uses.insert("python");
            let ddl = snowflake::create_tables(plan);
            kwargs.push(("python_callable".into(), "_create_load_tables".into()));
            kwargs.push((
                "op_kwargs".into(),
                format!(
                    "{{\"conn_id\": {conn}, \"ddl\": {}, \"layouts\": {}}}",
                    literal(Language::Python, &json!(ddl)),
                    layouts(plan)
                ),
            ));
        }
        LoadStep::GetWatermark => {
            uses.insert("python");
            let sql = snowflake::get_watermark(plan);
            kwargs.push(("python_callable".into(), "_get_last_watermark".into()));
            kwargs.push((
                "op_kwargs".into(),
                format!("{{\"conn_id\": {conn}, \"sql\": {}, \"layouts\": {}}}", quoted(&sql), layouts(plan)),
            ));
        }
        LoadStep::ListFiles => {
            uses.insert("python");
            kwargs.push(("python_callable".into(), "_list_new_s3_files".into()));
            kwargs.push((
                "op_kwargs".into(),
                format!(
                    "{{\"aws_conn_id\": {}, \"bucket\": {}, \"prefix\": {}, \"batch_size\": {}, \"watermark_task\": {}}}",
                    quoted(s3_conn_id),
                    quoted(bucket),
                    quoted(&plan.prefix),
                    plan.batch_size,
                    task_ref(LoadStep::GetWatermark)
                ),
            ));
        }
        LoadStep::Load => {
            uses.insert("python");
            let head = snowflake::copy_head(plan, snowflake_stage);
            let tail = snowflake::COPY_TAIL;
            kwargs.push(("python_callable".into(), "_copy_files_into".into()));
            kwargs.push((
                "op_kwargs".into(),
                format!(
                    "{{\"conn_id\": {conn}, \"files_task\": {}, \"copy_head\": {}, \"copy_tail\": {}, \"layouts\": {}}}",
                    task_ref(LoadStep::ListFiles),
                    quoted(&head),
                    quoted(tail),
                    layouts(plan)
                ),
            ));
        }
        LoadStep::UpdateWatermark => {
            uses.insert("python");
            let sql = snowflake::update_watermark(plan, |name| format!("%({name})s"));
            kwargs.push(("python_callable".into(), "_update_watermark".into()));
            kwargs.push((
                "op_kwargs".into(),
                format!(
                    "{{\"conn_id\": {conn}, \"files_task\": {}, \"sql\": {}}}",
                    task_ref(LoadStep::ListFiles),
                    quoted(&sql)
                ),
            ));
        }
    }
}

/// The tables a load's tasks check before they read or write them, as a Python literal:
/// `[[table, quoted table, setting, stage, [[setting, column], ...]], ...]`, each column as
/// Snowflake stores an unquoted name (upper case), which `DESCRIBE TABLE` reports.
fn layouts(plan: &LoadPlan) -> String {
    let tables: Vec<serde_json::Value> = plan
        .layouts()
        .iter()
        .map(|l| {
            let columns: Vec<[String; 2]> =
                l.columns.iter().map(|(s, c)| [(*s).to_owned(), c.as_str().to_ascii_uppercase()]).collect();
            json!([l.table.as_str(), l.table.quoted(), l.setting, plan.stage.as_str(), columns])
        })
        .collect();
    literal(Language::Python, &json!(tables))
}

/// Settings as keyword arguments: all of them for `default_args`, or only those that differ
/// from the pipeline's for a task.
fn settings_kwargs(settings: &Settings, pipeline: Option<&Settings>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let differs = |a: bool| pipeline.is_none() || a;
    let p = pipeline;
    if differs(p.is_some_and(|p| p.owner.value != settings.owner.value)) {
        out.push(("owner".into(), quoted(&settings.owner.value)));
    }
    if differs(p.is_some_and(|p| p.retries.value != settings.retries.value)) {
        out.push(("retries".into(), settings.retries.value.to_string()));
    }
    if differs(p.is_some_and(|p| p.retry_delay.value != settings.retry_delay.value)) {
        out.push(("retry_delay".into(), format!("timedelta(seconds={})", settings.retry_delay.value.as_secs())));
    }
    if differs(p.is_some_and(|p| p.retry_exponential_backoff.value != settings.retry_exponential_backoff.value)) {
        let on = if settings.retry_exponential_backoff.value { "True" } else { "False" };
        out.push(("retry_exponential_backoff".into(), on.into()));
    }
    if differs(p.is_some_and(|p| p.execution_timeout.value != settings.execution_timeout.value)) {
        let value = settings
            .execution_timeout
            .value
            .map_or("None".to_owned(), |d| format!("timedelta(seconds={})", d.as_secs()));
        out.push(("execution_timeout".into(), value));
    }
    if differs(p.is_some_and(|p| p.email_on_failure.value != settings.email_on_failure.value)) {
        out.push(("email_on_failure".into(), if settings.email_on_failure.value { "True" } else { "False" }.into()));
    }
    if !settings.email.value.is_empty() && differs(p.is_some_and(|p| p.email.value != settings.email.value)) {
        out.push(("email".into(), literal(Language::Python, &json!(settings.email.value))));
    }
    // Airflow mails retries by default whenever a task has addresses; fhirflow's default is no.
    let mails_retries = |s: &Settings| !s.email.value.is_empty() || s.email_on_retry.origin != Origin::Builtin;
    let retry_mail_differs = p.is_some_and(|p| {
        p.email_on_retry.value != settings.email_on_retry.value || (!mails_retries(p) && mails_retries(settings))
    });
    if (pipeline.is_none() && mails_retries(settings)) || retry_mail_differs {
        out.push(("email_on_retry".into(), python_bool(settings.email_on_retry.value)));
    }
    if let Some(pool) = &settings.pool.value
        && differs(p.is_some_and(|p| p.pool.value.as_ref() != Some(pool)))
    {
        out.push(("pool".into(), quoted(pool.as_str())));
    }
    if settings.depends_on_past.value != p.is_some_and(|p| p.depends_on_past.value) {
        out.push(("depends_on_past".into(), python_bool(settings.depends_on_past.value)));
    }
    if let Some(doc) = &settings.doc_md.value
        && differs(p.is_some_and(|p| p.doc_md.value.as_ref() != Some(doc)))
    {
        out.push(("doc_md".into(), quoted(doc)));
    }
    let webhook = &settings.failure_webhook_env.value;
    if differs(p.is_some_and(|p| &p.failure_webhook_env.value != webhook)) {
        match webhook {
            Some(env) => out.push((
                "on_failure_callback".into(),
                format!("functools.partial(_notify_webhook, {})", quoted(&env.0)),
            )),
            None if pipeline.is_some() => out.push(("on_failure_callback".into(), "None".into())),
            None => {}
        }
    }
    out
}

/// Import paths of one Airflow major version.
struct Imports {
    dag: &'static str,
    bash: &'static str,
    python: &'static str,
    sensor: &'static str,
    python_sensor: &'static str,
    trigger: &'static str,
    skip: &'static str,
    fail: &'static str,
    empty: &'static str,
    task_group: &'static str,
}

impl Imports {
    fn of(version: u32) -> Self {
        if version == 2 {
            Imports {
                dag: "from airflow import DAG",
                bash: "from airflow.operators.bash import BashOperator",
                python: "from airflow.operators.python import PythonOperator",
                sensor: "from airflow.sensors.external_task import ExternalTaskSensor",
                python_sensor: "from airflow.sensors.python import PythonSensor",
                trigger: "from airflow.operators.trigger_dagrun import TriggerDagRunOperator",
                skip: "from airflow.exceptions import AirflowSkipException",
                fail: "from airflow.exceptions import AirflowFailException",
                empty: "from airflow.operators.empty import EmptyOperator",
                task_group: "from airflow.utils.task_group import TaskGroup",
            }
        } else {
            Imports {
                dag: "from airflow.sdk import DAG",
                bash: "from airflow.providers.standard.operators.bash import BashOperator",
                python: "from airflow.providers.standard.operators.python import PythonOperator",
                sensor: "from airflow.providers.standard.sensors.external_task import ExternalTaskSensor",
                python_sensor: "from airflow.providers.standard.sensors.python import PythonSensor",
                trigger: "from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator",
                skip: "from airflow.sdk.exceptions import AirflowSkipException",
                fail: "from airflow.sdk.exceptions import AirflowFailException",
                empty: "from airflow.providers.standard.operators.empty import EmptyOperator",
                task_group: "from airflow.sdk import TaskGroup",
            }
        }
    }
}

fn imports(uses: &BTreeSet<&'static str>, version: u32) -> Vec<String> {
    let paths = Imports::of(version);
    let asset_import: String;
    let has = |k| uses.contains(k);
    let mut stdlib = Vec::new();
    if has("webhook") {
        stdlib.push("import functools");
    }
    if has("results") || has("load") || has("webhook") || has("watcher") {
        stdlib.push("import json");
        stdlib.push("import logging");
    }
    if has("dbt") || has("results") || has("webhook") {
        stdlib.push("import os");
    }
    if has("dbt") {
        stdlib.push("import shlex");
    }
    if has("webhook") {
        stdlib.push("import urllib.request");
    }
    stdlib.push("from datetime import timedelta");
    let mut third = Vec::new();
    if has("pendulum") {
        third.push("import pendulum");
    }
    if has("docker") {
        third.push("from docker.types import Mount");
    }
    if has("kubernetes") {
        third.push("from kubernetes.client import models as k8s");
    }
    third.push(paths.dag);
    if has("task_group") {
        third.push(paths.task_group);
    }
    if has("bash") {
        third.push(paths.bash);
    }
    if has("python") {
        third.push(paths.python);
    }
    if has("sensor") {
        third.push(paths.sensor);
    }
    if has("watcher") {
        third.push(paths.python_sensor);
    }
    if has("trigger") {
        third.push(paths.trigger);
    }
    if has("empty") {
        third.push(paths.empty);
    }
    if has("docker") {
        third.push("from airflow.providers.docker.operators.docker import DockerOperator");
    }
    if has("kubernetes") {
        third.push("from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator");
    }
    if has("cron_trigger") {
        third.push("from airflow.timetables.trigger import CronTriggerTimetable");
    }
    if has("asset") {
        let (module, class) = if version == 2 { ("airflow.datasets", "Dataset") } else { ("airflow.sdk", "Asset") };
        let mut names = vec![class.to_owned()];
        for (key, suffix) in [("asset_all", "All"), ("asset_any", "Any")] {
            if has(key) {
                names.push(format!("{class}{suffix}"));
            }
        }
        asset_import = format!("from {module} import {}", names.join(", "));
        third.push(&asset_import);
    }
    let mut lines: Vec<String> = stdlib.into_iter().map(str::to_owned).collect();
    lines.push(String::new());
    lines.extend(third.into_iter().map(str::to_owned));
    lines
}

/// An Airflow task group of a DAG file.
struct GroupVar {
    /// Group ids, outermost first.
    path: Vec<String>,
    /// Its Python variable.
    var: String,
    /// The parent group's variable.
    parent: Option<String>,
}

/// Every task group the tasks sit in, parents before children, in order of first use. Group
/// variables start with `tg_`, which task variables never do.
fn task_groups(p: &PipelineTasks) -> Vec<GroupVar> {
    let mut groups: Vec<GroupVar> = Vec::new();
    for task in &p.tasks {
        for depth in 1..=task.group.len() {
            let path = &task.group[..depth];
            if groups.iter().any(|g| g.path == path) {
                continue;
            }
            let var = format!("tg_{}", path.join("__").replace('-', "_"));
            let var = if groups.iter().any(|g| g.var == var) { format!("tg_{}", groups.len()) } else { var };
            let parent = groups.iter().find(|g| g.path == path[..depth - 1]).map(|g| g.var.clone());
            groups.push(GroupVar { path: path.to_vec(), var, parent });
        }
    }
    groups
}

/// A Python variable per task: the task id where that is a safe identifier, else `task_<index>`.
fn task_variables(p: &PipelineTasks) -> Vec<String> {
    let mut taken: BTreeSet<String> = BTreeSet::new();
    p.tasks
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let candidate = t.id.replace('-', "_").replace('.', "__");
            let name = if own_name_is_free(&candidate) && !taken.contains(&candidate) {
                candidate
            } else {
                format!("task_{i}")
            };
            taken.insert(name.clone());
            name
        })
        .collect()
}

/// An asset as Python: `Asset(name=…)`, or `Asset(uri=…)` for a URI, which Airflow normalizes;
/// Airflow 2 calls it a `Dataset` and takes a URI only.
fn asset(name: &AssetName, version: u32, uses: &mut BTreeSet<&'static str>) -> String {
    uses.insert("asset");
    match version {
        2 => format!("Dataset({})", quoted(name.as_str())),
        _ if name.as_str().contains("://") => format!("Asset(uri={})", quoted(name.as_str())),
        _ => format!("Asset(name={})", quoted(name.as_str())),
    }
}

/// An asset schedule as Python: a plain list at the top (every asset), `AssetAll(…)` and
/// `AssetAny(…)` (`DatasetAll`/`DatasetAny` on Airflow 2) inside.
fn asset_condition(condition: &AssetCondition, version: u32, uses: &mut BTreeSet<&'static str>, top: bool) -> String {
    let (items, class, key) = match condition {
        AssetCondition::Asset(name) if top => return format!("[{}]", asset(name, version, uses)),
        AssetCondition::Asset(name) => return asset(name, version, uses),
        AssetCondition::List(items) if top => {
            let inner: Vec<String> = items.iter().map(|c| asset_condition(c, version, uses, false)).collect();
            return format!("[{}]", inner.join(", "));
        }
        AssetCondition::List(items) | AssetCondition::All { all: items } => (items, "All", "asset_all"),
        AssetCondition::Any { any: items } => (items, "Any", "asset_any"),
    };
    uses.insert(key);
    let inner: Vec<String> = items.iter().map(|c| asset_condition(c, version, uses, false)).collect();
    let prefix = if version == 2 { "Dataset" } else { "Asset" };
    format!("{prefix}{class}({})", inner.join(", "))
}

fn python_bool(value: bool) -> String {
    if value { "True" } else { "False" }.to_owned()
}

/// Whether a task may be bound to `candidate` itself. fhirflow keeps three namespaces for its
/// own names: `_...` (helpers, dunders), `tg_...` (task groups) and `task_<n>` (this fallback,
/// which a task's own name would otherwise collide with).
fn own_name_is_free(candidate: &str) -> bool {
    let fallback =
        candidate.strip_prefix("task_").is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    !(fallback
        || candidate.starts_with('_')
        || candidate.starts_with("tg_")
        || candidate.starts_with(|c: char| c.is_ascii_digit())
        || RESERVED.contains(&candidate)
        || PYTHON_WORDS.contains(&candidate))
}

fn json_line(value: serde_json::Value) -> String {
    serde_json::to_string(&value)
        .unwrap_or_default()
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029")
        .replace('\u{85}', "\\u0085")
}

/// Keyword arguments that the summary line records as fields of their own.
const DEFINITION_SKIPS: [&str; 5] = ["retries", "retry_delay", "execution_timeout", "outlets", "trigger_rule"];

/// One comment line per task that `plan` reads back to tell what changed.
fn summary_line(task: &Task, digest: &str, kwargs: &[(String, String)]) -> String {
    // The group is part of the task id already; the digest covers the rest.
    let sensor = match &task.operation {
        Operation::Sensor(s) => json!({
            "pipeline": s.pipeline.as_str(),
            "task": s.task,
            "execution_delta": s.execution_delta.to_string(),
        }),
        _ => serde_json::Value::Null,
    };
    let mut line = json!({
        "id": task.id,
        "stage": task.stage.as_str(),
        "operator": operator_name(task),
        "upstream": task.upstream,
        "retries": task.settings.retries.value,
        "retry_delay": task.settings.retry_delay.value.to_string(),
        "execution_timeout": task.settings.execution_timeout.value.map(|d| d.to_string()),
        "sensor": sensor,
        "digest": digest,
        // The keyword arguments as written below, so that a plan can show the command, query,
        // arguments and environment that change; the fields above cover the rest.
        "definition": kwargs
            .iter()
            .filter(|(name, _)| !DEFINITION_SKIPS.contains(&name.as_str()))
            .map(|(name, value)| json!([name, value]))
            .collect::<Vec<_>>(),
    });
    // Written only when set, so that files from before these fields plan as unchanged.
    if let Some(fields) = line.as_object_mut() {
        if !task.outlets.is_empty() {
            fields.insert("outlets".into(), json!(task.outlets.iter().map(|a| a.as_str()).collect::<Vec<_>>()));
        }
        if task.trigger_rule != TriggerRule::AllSuccess {
            fields.insert("trigger_rule".into(), json!(task.trigger_rule.as_str()));
        }
        if let Operation::Trigger(t) = &task.operation {
            fields.insert(
                "trigger".into(),
                json!({"pipeline": t.pipeline.as_str(), "wait_for_completion": t.wait_for_completion}),
            );
        }
    }
    json_line(line)
}

fn dag_summary_line(p: &PipelineTasks) -> String {
    json_line(json!({
        "dag_id": p.id.as_str(),
        "schedule": p.schedule.as_ref().map(ToString::to_string),
        "catchup": p.catchup,
        "max_active_runs": p.max_active_runs,
        "tags": p.tags,
        "start_date": p.defaults.start_date.value,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::SourceFile;

    fn variables(stages: &[&str]) -> Vec<String> {
        let text: String = stages.iter().map(|s| format!("      {s}: {{kind: shell, command: x}}\n")).collect();
        let compiled =
            crate::compile(SourceFile::new("t.yaml", format!("version: 1\npipelines:\n  p:\n    stages:\n{text}")))
                .unwrap_or_else(|d| panic!("{}", d.render()));
        task_variables(&compiled.graph.pipelines[0])
    }

    #[test]
    fn task_variables_never_rebind_the_modules_names() {
        assert_eq!(variables(&["dbt_run", "run-it"]), ["dbt_run", "run_it"]);
        // Modules, helpers, builtins the helpers call, and keywords get a numbered variable.
        assert_eq!(
            variables(&["json", "_log_dbt_results", "sorted", "DAG", "None", "tg_x"]),
            ["task_0", "task_1", "task_2", "task_3", "task_4", "task_5"]
        );
    }

    #[test]
    fn strings_ending_in_a_template_extension_render_back_to_themselves() {
        assert_eq!(templated("./run.sh", BASH_TEMPLATE_EXT), r#""./run.sh{{ '' }}""#);
        assert_eq!(templated("x.env", BASH_TEMPLATE_EXT), r#""x.env""#);
        assert_eq!(templated("x.env", DOCKER_TEMPLATE_EXT), r#""x.env{{ '' }}""#);
        assert_eq!(templated("run.sh --now", BASH_TEMPLATE_EXT), r#""run.sh --now""#);
    }

    #[test]
    fn a_templated_vars_is_read_from_the_environment_in_double_quotes() {
        let args = [DbtArg::Literal("run".into()), DbtArg::Vars(r#"{"d":"{{ ds }}"}"#.into()), DbtArg::ProjectDir];
        let word = |a: &DbtArg| match a {
            DbtArg::Literal(s) | DbtArg::Vars(s) => quoted(s),
            _ => "P".to_owned(),
        };
        assert_eq!(
            shell_line("dbt", &args, word),
            r#"" ".join([shlex.join(["dbt", "run"]), "\"$FHIRFLOW_DBT_VARS\"", shlex.join([P])])"#
        );
        let plain = [DbtArg::Literal("run".into()), DbtArg::Vars(r#"{"d":1}"#.into())];
        assert_eq!(shell_line("dbt", &plain, word), r#"shlex.join(["dbt", "run", "{\"d\":1}"])"#);
    }

    #[test]
    fn numbered_variables_never_collide_with_a_tasks_own_name() {
        // `task_1` is task 0's own name and task 1's number; `a-b` and `a_b` are one identifier.
        let vars = variables(&["task_1", "json", "a-b", "a_b", "task_9x"]);
        assert_eq!(vars, ["task_0", "task_1", "a_b", "task_3", "task_9x"]);
    }
}
