//! Shared helpers for the integration tests.
#![allow(dead_code)]

use assert_cmd::Command;
use std::path::{Path, PathBuf};

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
    (dir, spec)
}

/// Replaces `from` with `to` in the file at `path`, asserting `from` was there.
pub fn edit(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).expect("read");
    assert!(text.contains(from), "{} does not contain {from:?}", path.display());
    std::fs::write(path, text.replacen(from, to, 1)).expect("write");
}
