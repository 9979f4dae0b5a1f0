//! Shared helpers for the integration tests.
#![allow(dead_code)]

use assert_cmd::Command;
use std::path::{Path, PathBuf};

pub mod servers;

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The `fhirflow` binary.
pub fn fhirflow() -> Command {
    Command::cargo_bin("fhirflow").expect("the binary builds")
}

/// `fhirflow VERB SPEC --out OUT`.
pub fn fhirflow_out(verb: &str, spec: &Path, out: &Path) -> Command {
    let mut command = fhirflow();
    command.arg(verb).arg(spec).arg("--out").arg(out);
    command
}

/// A temporary folder holding a copy of `pipelines/<name>`, as `pipelines/<name>`.
pub fn project_with(name: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let pipelines = dir.path().join("pipelines");
    std::fs::create_dir_all(&pipelines).expect("mkdir");
    let spec = pipelines.join(name);
    std::fs::copy(repo().join("pipelines").join(name), &spec).expect("copy spec");
    // The dental spec reads its dbt manifest from `../examples/dental_clinic`.
    copy_dir(&repo().join("examples/dental_clinic"), &dir.path().join("examples/dental_clinic"));
    (dir, spec)
}

/// Replaces `from` with `to` in the file at `path`, asserting `from` was there.
pub fn edit(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).expect("read");
    assert!(text.contains(from), "{} does not contain {from:?}", path.display());
    std::fs::write(path, text.replacen(from, to, 1)).expect("write");
}

/// The venv named by `var` (set by scripts/test.sh); `None` when the conformance tests are
/// skipped on purpose with `FHIRFLOW_SKIP_CONFORMANCE=1`, a failure when it is simply missing.
pub fn venv(var: &str) -> Option<PathBuf> {
    if std::env::var_os("FHIRFLOW_SKIP_CONFORMANCE").is_some_and(|v| v == "1") {
        eprintln!("skipped: FHIRFLOW_SKIP_CONFORMANCE=1");
        return None;
    }
    let path = std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| {
        panic!("{var} is not set: run the tests with scripts/test.sh, or set FHIRFLOW_SKIP_CONFORMANCE=1 to skip them")
    });
    assert!(path.join("bin/python").exists(), "{var}={} is not a venv", path.display());
    Some(path)
}

/// Copies a fixture folder, recursively.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read fixture") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}
