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

/// Completion scripts for the four shells, each naming the commands.
#[test]
fn completions_for_each_shell() {
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef fhirflow"),
        ("fish", "complete -c fhirflow"),
        ("powershell", "Register-ArgumentCompleter"),
    ] {
        fhirflow()
            .args(["completions", shell])
            .assert()
            .success()
            .stdout(contains(marker).and(contains("validate")).and(contains("apply")));
    }
    fhirflow().args(["completions", "tcsh"]).assert().code(64);
}

/// `fhirflow man` prints a roff page with every command.
#[test]
fn man_prints_a_roff_page() {
    fhirflow()
        .arg("man")
        .assert()
        .success()
        .stdout(contains(".TH fhirflow 1").and(contains(".SH SUBCOMMANDS")).and(contains("completions")));
}

const ESCAPE: &str = "\u{1b}[";

/// Colour only on a terminal: not on a pipe, forced by CLICOLOR_FORCE, and NO_COLOR wins over it
/// (anstream's order).
#[test]
fn colour_follows_the_terminal_no_color_and_clicolor_force() {
    let invalid = |envs: &[(&str, &str)]| {
        let mut command = fhirflow();
        command.args(["validate", "-"]).write_stdin("version: 1\n").env_remove("NO_COLOR").env_remove("CLICOLOR_FORCE");
        for (k, v) in envs {
            command.env(k, v);
        }
        let out = command.output().unwrap();
        assert_eq!(out.status.code(), Some(1));
        String::from_utf8(out.stderr).unwrap()
    };
    let plain = invalid(&[]);
    assert!(plain.starts_with("error[missing-key]") && !plain.contains(ESCAPE), "{plain:?}");
    let forced = invalid(&[("CLICOLOR_FORCE", "1")]);
    assert!(forced.contains(ESCAPE) && forced.contains("error[missing-key]"), "{forced:?}");
    let none = invalid(&[("CLICOLOR_FORCE", "1"), ("NO_COLOR", "1")]);
    assert_eq!(none, plain);
    // Other errors and clap's own usage errors too.
    let out = fhirflow().args(["validate", "missing.yaml"]).env("CLICOLOR_FORCE", "1").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains(ESCAPE));
    let out = fhirflow().args(["validate", "missing.yaml"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&out.stderr).contains(ESCAPE));
}

/// `-q` drops the reports, never errors or documents; `-v` names each spec read; on every command.
#[test]
fn quiet_and_verbose_on_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let spec = write(&dir.path().join("pipeline.yaml"), &spec_text(&["load"]));
    let out = dir.path().join("out");
    fhirflow().arg("validate").arg(&spec).arg("-q").assert().success().stdout("").stderr("");
    fhirflow().arg("-v").arg("validate").arg(&spec).assert().success().stderr(contains("note: spec"));
    fhirflow().arg("plan").arg(&spec).arg("--out").arg(&out).arg("-q").assert().success().stdout("");
    fhirflow()
        .args(["plan", "--format", "json", "-q"])
        .arg(&spec)
        .assert()
        .success()
        .stdout(contains("format_version"));
    fhirflow()
        .arg("apply")
        .arg(&spec)
        .arg("--out")
        .arg(&out)
        .arg("--check")
        .arg("-q")
        .assert()
        .code(2)
        .stdout("")
        .stderr(contains("out of date"));
    fhirflow().arg("apply").arg(&spec).arg("--out").arg(&out).arg("-q").assert().success().stdout("");
    assert!(out.join("dags/load.py").exists());
    fhirflow()
        .arg("apply")
        .arg(&spec)
        .arg("--out")
        .arg(&out)
        .args(["--check", "-v"])
        .assert()
        .success()
        .stderr(contains("note: spec"));
    fhirflow().arg("graph").arg(&spec).arg("-q").assert().success().stdout(contains("flowchart"));
    fhirflow().arg("run").arg(&spec).args(["--dry-run", "-v"]).assert().success().stderr(contains("note: spec"));
    fhirflow().arg("runs").arg(&spec).arg("-q").assert().success();
    fhirflow().args(["schema", "-q"]).assert().success().stdout(contains("$schema"));
    fhirflow().args(["validate", "-q", "-v"]).arg(&spec).assert().code(64);
    fhirflow().args(["-v", "validate", "-q"]).arg(&spec).assert().code(64);
}

/// `-` reads the spec on stdin, named `<stdin>`; plan and apply need `--out` for it, run refuses it.
#[test]
fn a_dash_reads_the_spec_on_stdin() {
    let text = spec_text(&["load"]);
    fhirflow().args(["validate", "-"]).write_stdin(text.clone()).assert().success().stdout(contains("<stdin>: valid"));
    fhirflow()
        .args(["validate", "-"])
        .write_stdin("version: 1\npipelines: 3\n")
        .assert()
        .code(1)
        .stderr(contains("--> <stdin>:2:"));
    fhirflow().args(["graph", "-"]).write_stdin(text.clone()).assert().success().stdout(contains("load"));
    fhirflow().args(["plan", "-"]).write_stdin(text.clone()).assert().code(64).stderr(contains("give --out DIR"));
    let dir = tempfile::tempdir().unwrap();
    fhirflow()
        .args(["apply", "-", "--out"])
        .arg(dir.path())
        .write_stdin(text.clone())
        .assert()
        .success()
        .stdout(contains("1 added"));
    fhirflow()
        .args(["run", "-", "--dry-run"])
        .write_stdin(text)
        .assert()
        .code(64)
        .stderr(contains("needs a spec file"));
}

/// The `fhirflow …` commands of a shell script, each as its words, up to a redirection or pipe.
fn fhirflow_commands(script: &str) -> Vec<Vec<String>> {
    script
        .lines()
        .filter_map(|line| line.trim().strip_prefix("fhirflow "))
        .map(|rest| {
            let command = rest.split(['>', '|', '&', ';']).next().unwrap_or("");
            command.split_whitespace().map(|w| w.replace('"', "")).collect()
        })
        .collect()
}

/// Each command is one fhirflow accepts: its subcommand and flags parse (with `--help`, nothing runs).
fn assert_commands_parse(commands: &[Vec<String>]) {
    for words in commands {
        fhirflow().args(words).arg("--help").assert().success();
    }
}

/// The GitHub workflow example is valid YAML, uses real actions, comments the Markdown plan and
/// fails on drift with commands fhirflow has.
#[test]
fn the_ci_workflow_example_runs_fhirflow_commands_that_exist() {
    let text = std::fs::read_to_string(common::repo().join("examples/ci/fhirflow.yml")).unwrap();
    let workflow: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
    let steps = workflow["jobs"]["plan"]["steps"].as_array().unwrap();
    let uses: Vec<&str> = steps.iter().filter_map(|s| s["uses"].as_str()).collect();
    assert!(uses.iter().any(|u| u.starts_with("actions/checkout@")), "{uses:?}");
    assert!(uses.iter().any(|u| u.starts_with("actions/github-script@")), "{uses:?}");
    let commands: Vec<Vec<String>> =
        steps.iter().filter_map(|s| s["run"].as_str()).flat_map(fhirflow_commands).collect();
    let has = |words: &[&str]| commands.iter().any(|c| words.iter().all(|w| c.iter().any(|x| x == w)));
    assert!(has(&["plan", "--format", "markdown"]) && has(&["apply", "--check"]), "{commands:?}");
    assert_commands_parse(&commands);
}

/// The pre-commit hooks run `validate` on YAML files and `apply --check`, as commands fhirflow has.
#[test]
fn the_pre_commit_hooks_run_fhirflow_commands_that_exist() {
    let text = std::fs::read_to_string(common::repo().join(".pre-commit-hooks.yaml")).unwrap();
    let hooks: Vec<serde_json::Value> = serde_saphyr::from_str(&text).unwrap();
    let entries: Vec<&str> = hooks.iter().map(|h| h["entry"].as_str().unwrap()).collect();
    assert_eq!(entries, ["fhirflow validate", "fhirflow apply --check"]);
    for hook in &hooks {
        assert_eq!(hook["language"], "rust");
        assert!(hook["files"].as_str().unwrap().contains("ya?ml"), "{hook}");
    }
    assert_commands_parse(
        &entries.iter().map(|e| e.to_string()).flat_map(|e| fhirflow_commands(&e)).collect::<Vec<_>>(),
    );
}

/// The caret stands under the name even after CJK characters and an emoji, which take two
/// columns each on a terminal; the location in the header still counts characters.
#[test]
fn the_caret_is_under_the_span_after_wide_characters() {
    let prefix = "      step: {kind: shell, command: '数据管道 🚀', after: [";
    let spec = format!("version: 1\npipelines:\n  p:\n    schedule: '@daily'\n    stages:\n{prefix}nope]}}\n");
    let out = fhirflow().args(["validate", "-"]).write_stdin(spec).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8(out.stderr).unwrap();
    let column = prefix.chars().count() + 1;
    assert!(text.contains(&format!("--> <stdin>:6:{column}\n")), "{text}");
    // Four CJK characters and the rocket are one column wider each than they count.
    let caret = format!("  | {}^^^^ ", " ".repeat(prefix.chars().count() + 5));
    assert!(text.contains(&caret), "no {caret:?} in\n{text}");
}
