//! dbt's `target/run_results.json`: counts by status and the nodes that failed.
//!
//! Only the fields fhirflow uses are read (`results[].unique_id`, `.status`, `.message`), so
//! the reader works across dbt's run-results schema versions.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// What a run-results file looked like before a dbt invocation (modified time, inode, size), so
/// that afterwards an unchanged file is known as an earlier invocation's. A stamp, not a time
/// comparison: file times come from a coarser clock than `SystemTime::now`, so a file written
/// just after an attempt started can look older than the attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultsStamp(Option<(SystemTime, u64, u64)>);

impl ResultsStamp {
    /// The file at `path` as it is now; a missing file has a stamp too.
    pub fn of(path: &Path) -> Self {
        use std::os::unix::fs::MetadataExt as _;
        Self(std::fs::metadata(path).ok().and_then(|m| Some((m.modified().ok()?, m.ino(), m.len()))))
    }
}

/// The part of a dbt run's results fhirflow reports.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DbtRunResults {
    /// How many nodes ended in each status (`success`, `error`, `fail`, `skipped`, `warn`, `pass`), sorted.
    pub counts: BTreeMap<String, u32>,
    /// Nodes whose status is `error` or `fail`, in the file's order.
    pub failures: Vec<FailedNode>,
}

/// A node that dbt reports as `error` (a model or seed) or `fail` (a test).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FailedNode {
    /// dbt's id, such as `model.fhir.stg_patients`.
    pub unique_id: String,
    /// `error` or `fail`.
    pub status: String,
    /// dbt's message, if any.
    pub message: Option<String>,
}

/// Why a run-results file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DbtResultsError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not dbt's run results.
    #[error("{path} is not dbt run results: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// What serde_json said.
        source: serde_json::Error,
    },
}

#[derive(Deserialize)]
struct RawFile {
    #[serde(default)]
    results: Vec<RawResult>,
}

#[derive(Deserialize)]
struct RawResult {
    #[serde(default)]
    unique_id: String,
    #[serde(default)]
    status: Option<serde_json::Value>,
    #[serde(default)]
    message: Option<String>,
}

/// Where dbt writes run results for the project at `project_dir`.
pub fn results_path(project_dir: &Path) -> PathBuf {
    project_dir.join("target").join("run_results.json")
}

impl DbtRunResults {
    /// Reads run results from JSON text.
    pub fn parse(text: &str) -> Result<Self, serde_json::Error> {
        let raw: RawFile = serde_json::from_str(text)?;
        let mut out = DbtRunResults::default();
        for result in raw.results {
            let status = match result.status {
                Some(serde_json::Value::String(s)) => s,
                Some(other) => other.to_string(),
                None => "unknown".to_owned(),
            };
            *out.counts.entry(status.clone()).or_default() += 1;
            if status == "error" || status == "fail" {
                out.failures.push(FailedNode { unique_id: result.unique_id, status, message: result.message });
            }
        }
        Ok(out)
    }

    /// Reads the file at `path`; `Ok(None)` when it does not exist, or when it is still the
    /// file `before` saw, left by an earlier dbt invocation.
    pub fn read(path: &Path, before: Option<&ResultsStamp>) -> Result<Option<Self>, DbtResultsError> {
        let io = |source| DbtResultsError::Io { path: path.to_owned(), source };
        match std::fs::metadata(path) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(e)),
        }
        if before.is_some_and(|b| *b == ResultsStamp::of(path)) {
            return Ok(None);
        }
        let text = std::fs::read_to_string(path).map_err(io)?;
        Self::parse(&text).map(Some).map_err(|source| DbtResultsError::Json { path: path.to_owned(), source })
    }

    /// `3 success, 1 error, 2 skipped`-style counts, sorted by status.
    pub fn counts_line(&self) -> String {
        if self.counts.is_empty() {
            return "no nodes".to_owned();
        }
        self.counts.iter().map(|(status, n)| format!("{n} {status}")).collect::<Vec<_>>().join(", ")
    }

    /// The failing nodes as `model.p.a (error), test.p.b (fail)`.
    pub fn failures_line(&self) -> String {
        self.failures.iter().map(|f| format!("{} ({})", f.unique_id, f.status)).collect::<Vec<_>>().join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"{
        "metadata": {"dbt_schema_version": "https://schemas.getdbt.com/dbt/run-results/v6.json"},
        "results": [
            {"unique_id": "model.fhir.stg_patients", "status": "success", "message": "OK"},
            {"unique_id": "model.fhir.stg_broken", "status": "error", "message": "Binder Error: no column x"},
            {"unique_id": "test.fhir.not_null_id", "status": "fail", "message": "Got 3 results"},
            {"unique_id": "model.fhir.fct_after", "status": "skipped", "message": null},
            {"unique_id": "test.fhir.unique_id", "status": "pass"}
        ],
        "elapsed_time": 1.5
    }"#;

    #[test]
    fn counts_statuses_and_names_errors_and_failures() {
        let results = DbtRunResults::parse(SAMPLE).unwrap();
        assert_eq!(results.counts_line(), "1 error, 1 fail, 1 pass, 1 skipped, 1 success");
        assert_eq!(results.failures_line(), "model.fhir.stg_broken (error), test.fhir.not_null_id (fail)");
        assert_eq!(results.failures[0].message.as_deref(), Some("Binder Error: no column x"));
    }

    #[test]
    fn a_missing_or_stale_file_is_no_results() {
        let dir = tempfile::tempdir().unwrap();
        let path = results_path(dir.path());
        assert_eq!(DbtRunResults::read(&path, None).unwrap(), None);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, SAMPLE).unwrap();
        assert!(DbtRunResults::read(&path, None).unwrap().is_some());
        let before = ResultsStamp::of(&path);
        assert_eq!(DbtRunResults::read(&path, Some(&before)).unwrap(), None, "left by an earlier invocation");
        std::fs::write(&path, SAMPLE.replace("error", "fail")).unwrap();
        assert!(DbtRunResults::read(&path, Some(&before)).unwrap().is_some(), "rewritten at once, still new");
        std::fs::write(&path, "[1, 2]").unwrap();
        assert!(matches!(DbtRunResults::read(&path, None), Err(DbtResultsError::Json { .. })));
    }
}
