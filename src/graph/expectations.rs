//! What real Airflow and real dbt must report for this graph (tests/conformance/CONTRACT.md).

use super::{DbtArg, Operation, PipelineGraph, Task};
use crate::spec::OperatorKind;
use crate::spec::Schedule;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

impl PipelineGraph {
    /// The Airflow and dbt expectations document that the conformance checkers compare against,
    /// every task in Airflow's `default_pool`.
    pub fn expectations(&self) -> Value {
        self.expectations_with_pools(|_| None)
    }

    /// [`PipelineGraph::expectations`] with the pool each task runs in, where `pool_of` names one
    /// (the emitter's [`crate::emit::DuckdbPools`]).
    pub fn expectations_with_pools(&self, pool_of: impl Fn(&Task) -> Option<String>) -> Value {
        let mut dags = Map::new();
        for p in &self.pipelines {
            let schedule = match &p.schedule {
                None => Value::Null,
                Some(Schedule::Interval(every)) => json!({ "interval_seconds": every.as_secs() }),
                Some(Schedule::Assets(condition)) => json!({ "assets": asset_condition(condition) }),
                Some(other) => Value::String(other.to_string()),
            };
            let mut tasks = Map::new();
            for t in &p.tasks {
                let operator = operator_name(t);
                // The dbt command line with the folders as placeholders: the same under every operator.
                let dbt = match &t.operation {
                    Operation::Dbt(inv) => {
                        let mut argv = vec![inv.executable.clone()];
                        argv.extend(inv.args.iter().map(|a| match a {
                            DbtArg::Literal(s) | DbtArg::Vars(s) => s.clone(),
                            DbtArg::ProjectDir => "{project_dir}".to_owned(),
                            DbtArg::ProfilesDir => "{profiles_dir}".to_owned(),
                            DbtArg::StateDir => "{state_dir}".to_owned(),
                        }));
                        json!({
                            "argv": argv,
                            "deps_first": inv.deps_first,
                            "tolerate_failure": inv.tolerate_failure,
                            "save_artifacts": inv.save_artifacts,
                        })
                    }
                    _ => Value::Null,
                };
                let trigger = match &t.operation {
                    Operation::Trigger(target) => json!({
                        "trigger_dag_id": target.pipeline.as_str(),
                        "conf": target.conf,
                        "wait_for_completion": target.wait_for_completion,
                    }),
                    _ => Value::Null,
                };
                let sensor = match &t.operation {
                    Operation::Sensor(s) => json!({
                        "external_dag_id": s.pipeline.as_str(),
                        "external_task_id": s.task,
                        "execution_delta_seconds": s.execution_delta.as_secs(),
                        "timeout_seconds": s.timeout.as_secs(),
                        "poke_interval_seconds": s.poke_interval.as_secs(),
                        "mode": s.mode.as_str(),
                        "allowed_states": s.allowed_states.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
                        "failed_states": s.failed_states.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
                        "skipped_states": s.skipped_states.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
                        "check_existence": s.check_existence,
                        "deferrable": s.deferrable,
                        "soft_fail": s.soft_fail,
                    }),
                    _ => Value::Null,
                };
                tasks.insert(
                    t.id.clone(),
                    json!({
                        "operator": operator,
                        "upstream": t.upstream,
                        "retries": t.settings.retries.value,
                        "retry_delay_seconds": t.settings.retry_delay.value.as_secs(),
                        "retry_exponential_backoff": t.settings.retry_exponential_backoff.value,
                        "execution_timeout_seconds": t.settings.execution_timeout.value.map(|d| d.as_secs()),
                        "trigger_rule": t.trigger_rule.as_str(),
                        "pool": pool_of(t)
                            .or_else(|| t.settings.pool.value.as_ref().map(|p| p.as_str().to_owned()))
                            .unwrap_or_else(|| super::DEFAULT_POOL.to_owned()),
                        "depends_on_past": t.settings.depends_on_past.value,
                        // Airflow's own default mails retries; only tasks with addresses mail.
                        "email_on_retry": !t.settings.email.value.is_empty() && t.settings.email_on_retry.value,
                        "doc_md": t.settings.doc_md.value,
                        "outlets": t.outlets.iter().map(|a| a.as_str()).collect::<Vec<_>>(),
                        "sensor": sensor,
                        "trigger": trigger,
                        "dbt": dbt,
                        "failure_webhook_env": t.settings.failure_webhook_env.value.as_ref().map(|e| e.0.clone()),
                    }),
                );
            }
            dags.insert(
                p.id.to_string(),
                json!({
                    "file": format!("{}.py", p.id),
                    "schedule": schedule,
                    "catchup": p.catchup,
                    "start_date": p.start.map(|start| start.timestamp()),
                    "max_active_runs": p.max_active_runs,
                    "tags": p.tags,
                    "tasks": tasks,
                }),
            );
        }
        let mut tags: BTreeMap<String, Vec<String>> = BTreeMap::new();
        // A layer whose properties are the project's gets no tags from fhirflow.
        let fhirflow_layers = || self.spec.layers.iter().filter(|(_, l)| l.properties.is_fhirflow());
        for (layer_name, layer) in fhirflow_layers() {
            let layer_tags: Vec<String> = match &layer.tags {
                Some(t) => t.iter().map(ToString::to_string).collect(),
                None => vec![layer_name.to_string()],
            };
            for model in &layer.models {
                let mut all = layer_tags.clone();
                if let crate::spec::ModelEntry::Detailed(m) = model {
                    all.extend(m.tags.iter().map(ToString::to_string));
                }
                for tag in all {
                    tags.entry(tag).or_default().push(model.name().to_string());
                }
            }
        }
        for models in tags.values_mut() {
            models.sort();
            models.dedup();
        }
        let writes_selectors = self.spec.dbt.as_ref().is_some_and(|d| d.selectors);
        let selectors: Vec<String> =
            if writes_selectors { self.spec.layers.keys().map(ToString::to_string).collect() } else { Vec::new() };
        // The column tests and descriptions fhirflow writes, which a dbt that does not read
        // the properties key would drop without an error.
        let mut tests: Vec<Value> = Vec::new();
        let mut descriptions = Map::new();
        for model in fhirflow_layers().flat_map(|(_, l)| &l.models) {
            let crate::spec::ModelEntry::Detailed(m) = model else { continue };
            if let Some(text) = &m.description {
                descriptions.insert(m.name.to_string(), json!(text));
            }
            for c in &m.columns {
                if let Some(text) = &c.description {
                    descriptions.insert(format!("{}.{}", m.name, c.name), json!(text));
                }
                for test in &c.tests {
                    tests.push(json!({ "model": m.name.as_str(), "column": c.name.as_str(), "test": test.as_str() }));
                }
            }
        }
        tests.sort_by_key(|t| t.to_string());
        json!({
            "format_version": "1.0",
            "dags": dags,
            "dbt": {
                "format_version": "1.0",
                "tags": tags,
                "selectors": selectors,
                "tests": tests,
                "descriptions": descriptions,
            },
        })
    }
}

/// An asset condition as Airflow's timetable holds it: an asset's name, or `{"all": [...]}` /
/// `{"any": [...]}` (a plain list is an `all`).
fn asset_condition(condition: &crate::spec::AssetCondition) -> Value {
    use crate::spec::AssetCondition;
    match condition {
        AssetCondition::Asset(name) => json!(name.as_str()),
        AssetCondition::List(items) | AssetCondition::All { all: items } => {
            json!({ "all": items.iter().map(asset_condition).collect::<Vec<_>>() })
        }
        AssetCondition::Any { any: items } => json!({ "any": items.iter().map(asset_condition).collect::<Vec<_>>() }),
    }
}

/// The Airflow operator class a task becomes.
pub fn operator_name(task: &Task) -> std::borrow::Cow<'static, str> {
    std::borrow::Cow::Borrowed(match &task.operation {
        // A watched stage: its build as a Python callable, the others as sensors reading it.
        Operation::Dbt(inv) if inv.watch.as_ref().is_some_and(|w| w.is_build) => "PythonOperator",
        Operation::Dbt(inv) if inv.watch.is_some() => "PythonSensor",
        Operation::Dbt(_) => match task.settings.operator.value {
            OperatorKind::Bash => "BashOperator",
            OperatorKind::Docker => "DockerOperator",
            OperatorKind::Kubernetes => "KubernetesPodOperator",
        },
        Operation::Join => "EmptyOperator",
        Operation::DbtResults { .. } => "PythonOperator",
        Operation::Sensor(_) => "ExternalTaskSensor",
        Operation::Trigger(_) => "TriggerDagRunOperator",
        Operation::Load { .. } => "PythonOperator",
        Operation::Kind(kind) => return std::borrow::Cow::Owned(kind.airflow(0).operator),
    })
}
