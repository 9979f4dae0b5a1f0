//! The command line's conventions (issue 13): file arguments as pre-commit passes them, folders
//! searched recursively, stdin, `-q`/`-v`, colour, completions, the man page, and the files a
//! project shares with CI (pre-commit hooks, the GitHub workflow example).

mod common;

use common::{fhirflow, write};
use predicates::prelude::*;
use predicates::str::contains;

fn spec_text(pipelines: &[&str]) -> String {
    common::spec_text(pipelines, "echo")
}

/// Several files are one graph: a pipeline id in two of them is an error, found only together.
#[test]
fn validate_compiles_several_files_as_one_graph() {
    let dir = tempfile::tempdir().unwrap();
    let a = write(&dir.path().join("a.yaml"), &spec_text(&["load"]));
    let b = write(&dir.path().join("b.yaml"), &spec_text(&["report"]));
    let c = write(&dir.path().join("c.yaml"), &spec_text(&["load"]));
    fhirflow().arg("validate").arg(&a).arg(&b).assert().success().stdout(contains("valid (2 specs, 2 pipelines"));
    fhirflow().arg("validate").arg(&a).arg(&c).assert().code(1).stderr(contains("load"));
    fhirflow().arg("validate").arg(&a).assert().success();
}

/// A folder is searched recursively; YAML that is not a spec (a dbt project file) is skipped with
/// a note, also among named files, as pre-commit passes every changed YAML file.
#[test]
fn folders_are_searched_recursively_and_other_yaml_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("pipelines/a.yaml"), &spec_text(&["load"]));
    write(&dir.path().join("pipelines/team/b/b.yml"), &spec_text(&["report"]));
    let dbt = write(&dir.path().join("pipelines/dbt/dbt_project.yml"), "name: x\nversion: '1.0'\n");
    write(&dir.path().join("pipelines/.fhirflow/hidden.yaml"), "not: [a, spec");
    fhirflow()
        .arg("validate")
        .arg(dir.path().join("pipelines"))
        .assert()
        .success()
        .stdout(contains("valid (2 specs, 2 pipelines"))
        .stderr(contains("note: skipped").and(contains("dbt_project.yml")).and(contains("hidden").not()));
    fhirflow()
        .arg("validate")
        .arg(dir.path().join("pipelines/a.yaml"))
        .arg(&dbt)
        .assert()
        .success()
        .stdout(contains("valid (1 pipelines"))
        .stderr(contains("note: skipped"));
    // Named alone, a file is a spec, so its errors show.
    fhirflow().arg("validate").arg(&dbt).assert().code(1).stderr(contains("pipelines"));
    let empty = dir.path().join("empty");
    write(&empty.join("dbt_project.yml"), "name: x\n");
    fhirflow().arg("validate").arg(&empty).assert().code(3).stderr(contains("no specs"));
}

/// `graph` takes a folder like the other commands: one chart with every spec's pipelines.
#[test]
fn graph_accepts_a_folder() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("a.yaml"), &spec_text(&["load"]));
    write(&dir.path().join("sub/b.yaml"), &spec_text(&["report"]));
    fhirflow()
        .arg("graph")
        .arg(dir.path())
        .assert()
        .success()
        .stdout(contains("flowchart LR").count(1).and(contains("load")).and(contains("report")));
    fhirflow()
        .args(["graph", "--format", "json"])
        .arg(dir.path())
        .assert()
        .code(64)
        .stderr(contains("name one spec file"));
}

/// Specs in different folders have different roots: plan refuses without `--out`, naming them,
/// and plans them together under one `--out`.
#[test]
fn plan_of_specs_in_several_folders_needs_out() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("a/a.yaml"), &spec_text(&["load"]));
    write(&dir.path().join("b/b.yaml"), &spec_text(&["report"]));
    fhirflow().arg("plan").arg(dir.path()).assert().code(64).stderr(contains("--out").and(contains("2 folders")));
    let out = dir.path().join("out");
    fhirflow()
        .arg("apply")
        .arg(dir.path().join("a"))
        .arg(dir.path().join("b"))
        .arg("--out")
        .arg(&out)
        .assert()
        .success()
        .stdout(contains("2 added"));
    assert!(out.join("dags/load.py").exists() && out.join("dags/report.py").exists());
    fhirflow()
        .arg("apply")
        .arg("--check")
        .arg(dir.path().join("a/a.yaml"))
        .arg(dir.path().join("b/b.yaml"))
        .arg("--out")
        .arg(&out)
        .assert()
        .success();
}
