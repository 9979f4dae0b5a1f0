//! Airflow pools for the dbt tasks that write one DuckDB file.
//!
//! DuckDB lets one process at a time write a database file, so two dbt tasks on one DuckDB
//! target that Airflow starts side by side fail on its lock. Emitted DAGs put such tasks in a
//! pool of one slot per target ([`crate::dbt::DuckdbTarget::airflow_pool`]), as `fhirflow run`
//! runs them one at a time. Airflow never schedules a task whose pool does not exist, and says
//! so only in the scheduler's log, so the plan names each pool with the command that creates it.

use super::Layout;
use crate::dbt::{DuckdbTarget, duckdb_target};
use crate::graph::{DbtInvocation, Operation, PipelineGraph, Task};
use crate::spec::Spec;
use std::collections::BTreeMap;

/// An Airflow pool that emitted DAGs need.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct AirflowPool {
    /// The pool's name.
    pub name: String,
    /// Its slots: one, so that one task at a time writes the database.
    pub slots: u32,
    /// What it is for, as `airflow pools set` records it.
    pub description: String,
    /// Declared in the spec's `pools`, rather than made for a DuckDB file.
    #[serde(skip)]
    pub declared: bool,
}

/// The pools a spec declares in `pools`, in its order.
pub fn declared_pools(spec: &Spec) -> Vec<AirflowPool> {
    spec.pools
        .iter()
        .map(|(name, pool)| AirflowPool {
            name: name.as_str().to_owned(),
            slots: pool.slots,
            description: pool.description.clone().unwrap_or_else(|| format!("fhirflow: pool `{name}`")),
            declared: true,
        })
        .collect()
}

impl AirflowPool {
    /// The command that creates it, as one shell line.
    pub fn create_command(&self) -> String {
        let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
        format!("airflow pools set {} {} {}", quote(&self.name), self.slots, quote(&self.description))
    }
}

/// The DuckDB targets of a spec's dbt tasks, by the `--target` each names, read once each.
pub struct DuckdbPools {
    by_target: BTreeMap<Option<String>, Option<DuckdbTarget>>,
}

impl DuckdbPools {
    /// Reads the profiles of every dbt task of `graph`, relative to the spec's folder.
    pub fn of(graph: &PipelineGraph, layout: &Layout) -> Self {
        let mut by_target = BTreeMap::new();
        if let Some(project) = &graph.spec.dbt {
            let project_dir = layout.spec_dir.join(&project.project_dir.0);
            let profiles_dir = layout.spec_dir.join(&project.profiles_dir.as_ref().unwrap_or(&project.project_dir).0);
            for task in graph.pipelines.iter().flat_map(|p| &p.tasks) {
                if let Operation::Dbt(invocation) = &task.operation {
                    let target = invocation.target().map(str::to_owned);
                    by_target
                        .entry(target)
                        .or_insert_with_key(|t| duckdb_target(&project_dir, &profiles_dir, t.as_deref()));
                }
            }
        }
        Self { by_target }
    }

    /// The pool a dbt task runs in, when its target is DuckDB.
    pub fn pool_of(&self, invocation: &DbtInvocation) -> Option<String> {
        let target = invocation.target().map(str::to_owned);
        self.by_target.get(&target)?.as_ref().map(DuckdbTarget::airflow_pool)
    }

    /// The pool `task` runs in: its target's, when it is a dbt task on a DuckDB target.
    pub fn task_pool(&self, task: &Task) -> Option<String> {
        match &task.operation {
            Operation::Dbt(invocation) => self.pool_of(invocation),
            _ => None,
        }
    }

    /// Every pool the DAGs use, sorted, each once.
    pub fn pools(&self) -> Vec<AirflowPool> {
        let mut pools: BTreeMap<String, AirflowPool> = BTreeMap::new();
        for target in self.by_target.values().flatten() {
            let name = target.airflow_pool();
            pools.entry(name.clone()).or_insert_with(|| AirflowPool {
                name,
                slots: 1,
                description: format!(
                    "fhirflow: one dbt task at a time writes DuckDB profile {}, target {}",
                    target.profile, target.target
                ),
                declared: false,
            });
        }
        pools.into_values().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_create_command_quotes_what_the_shell_would_read() {
        let pool =
            AirflowPool { name: "p'1".to_owned(), slots: 1, description: "it's $HOME".to_owned(), declared: true };
        assert_eq!(pool.create_command(), r"airflow pools set 'p'\''1' 1 'it'\''s $HOME'");
    }
}
