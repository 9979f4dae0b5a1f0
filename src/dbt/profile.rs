//! Which warehouse a dbt profile writes to, read from `dbt_project.yml` and `profiles.yml`.
//!
//! DuckDB lets one process at a time open a database file for writing, so dbt tasks that run
//! side by side on one DuckDB target fail on its lock. `fhirflow run` asks [`duckdb_writer`]
//! which tasks share such a target, and runs them one at a time; emitted DAGs put those tasks in
//! an Airflow pool of one slot ([`DuckdbTarget::airflow_pool`]).

use std::path::Path;

/// A dbt target whose `type` is `duckdb`: one database file that one process at a time may write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuckdbTarget {
    /// The `profiles.yml` that defines it.
    pub profiles: std::path::PathBuf,
    /// The profile's name.
    pub profile: String,
    /// The target's name within the profile.
    pub target: String,
}

impl DuckdbTarget {
    /// The name shown for it: `PROFILES.YML: PROFILE.TARGET`.
    pub fn name(&self) -> String {
        format!("{}: {}.{}", self.profiles.display(), self.profile, self.target)
    }

    /// The Airflow pool of one slot that dbt tasks writing it share: `fhirflow_duckdb_PROFILE_TARGET`,
    /// with characters other than ASCII letters, digits, `_`, `-` and `.` written as `_`.
    pub fn airflow_pool(&self) -> String {
        let clean = |s: &str| -> String {
            s.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') { c } else { '_' }).collect()
        };
        format!("fhirflow_duckdb_{}_{}", clean(&self.profile), clean(&self.target))
    }
}

/// The DuckDB target that dbt would use from `project_dir` with the profiles in `profiles_dir`
/// and `target` (else the profile's default), when that target's `type` is `duckdb`; `None` for
/// any other warehouse or a profile that cannot be read (dbt reports that).
pub fn duckdb_target(project_dir: &Path, profiles_dir: &Path, target: Option<&str>) -> Option<DuckdbTarget> {
    let read = |path: &Path| -> Option<serde_json::Value> {
        let text = std::fs::read_to_string(path).ok()?;
        serde_saphyr::from_str(&text).ok()
    };
    let project = read(&project_dir.join("dbt_project.yml"))?;
    let profile = project.get("profile")?.as_str()?.to_owned();
    let profiles_path = profiles_dir.join("profiles.yml");
    let profiles = read(&profiles_path)?;
    let entry = profiles.get(&profile)?;
    let target = match target {
        Some(target) => target.to_owned(),
        None => entry.get("target")?.as_str()?.to_owned(),
    };
    let output = entry.get("outputs")?.get(&target)?;
    (output.get("type")?.as_str()? == "duckdb").then_some(DuckdbTarget { profiles: profiles_path, profile, target })
}

/// [`duckdb_target`]'s [name](DuckdbTarget::name): which tasks `fhirflow run` keeps from
/// running side by side.
pub fn duckdb_writer(project_dir: &Path, profiles_dir: &Path, target: Option<&str>) -> Option<String> {
    duckdb_target(project_dir, profiles_dir, target).map(|t| t.name())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_duckdb_target_is_named_and_others_are_not() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("dbt_project.yml"), "name: p\nprofile: shop\n").unwrap();
        std::fs::write(
            dir.path().join("profiles.yml"),
            "shop:\n  target: dev\n  outputs:\n    dev: {type: duckdb, path: \"{{ env_var('X', 'a.duckdb') }}\"}\n    prod: {type: snowflake}\n",
        )
        .unwrap();
        let name = duckdb_writer(dir.path(), dir.path(), None).unwrap();
        assert!(name.ends_with("profiles.yml: shop.dev"), "{name}");
        assert_eq!(duckdb_writer(dir.path(), dir.path(), Some("dev")), Some(name));
        assert_eq!(duckdb_writer(dir.path(), dir.path(), Some("prod")), None);
        assert_eq!(duckdb_writer(dir.path(), dir.path(), Some("missing")), None);
        assert_eq!(duckdb_writer(&dir.path().join("nowhere"), dir.path(), None), None);
        let target = duckdb_target(dir.path(), dir.path(), None).unwrap();
        assert_eq!(target.airflow_pool(), "fhirflow_duckdb_shop_dev");
        let odd = DuckdbTarget { target: "dev box/ü".to_owned(), ..target };
        assert_eq!(odd.airflow_pool(), "fhirflow_duckdb_shop_dev_box__");
    }
}
