//! `apply` across specs and across files: which spec owns a file, what is never removed or
//! overwritten, and that a set of files changes as a whole even when the apply is killed.

mod common;

use common::{fhirflow, fhirflow_out, spec_text, write};
use predicates::prelude::*;
use predicates::str::contains;
use std::path::{Path, PathBuf};

/// A folder with `pipeline.yaml` of [`spec_text`] applied into its `out`: (folder, spec, out).
fn applied(pipelines: &[&str], command: &str) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let spec = write(&dir.path().join("pipeline.yaml"), &spec_text(pipelines, command));
    let out = dir.path().join("out");
    fhirflow_out("apply", &spec, &out).assert().success();
    (dir, spec, out)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Two teams' specs share a file name and one DAGs folder, with and without a git work tree
/// around them: neither apply takes or removes the other's DAGs.
#[test]
fn specs_with_one_file_name_never_remove_each_others_dags() {
    for git in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        if git {
            std::fs::create_dir(dir.path().join(".git")).unwrap();
        }
        let a = write(&dir.path().join("teams/a/pipeline.yaml"), &spec_text(&["a_load", "a_report"], "echo"));
        let b = write(&dir.path().join("teams/b/pipeline.yaml"), &spec_text(&["b_load"], "echo"));
        let out = dir.path().join("out");
        fhirflow_out("apply", &a, &out).assert().success();
        fhirflow_out("apply", &b, &out).assert().success().stdout(contains("1 added, 0 changed, 0 removed"));
        assert!(read(&out.join("dags/a_load.py")).contains("# fhirflow-spec: teams/a/pipeline.yaml\n"));
        assert!(read(&out.join("dags/b_load.py")).contains("# fhirflow-spec: teams/b/pipeline.yaml\n"));
        // B drops nothing of A's when its own set changes, and A removes only its own.
        write(&b, &spec_text(&["b_load2"], "echo"));
        fhirflow_out("apply", &b, &out).assert().success().stdout(contains("1 added, 0 changed, 1 removed"));
        write(&a, &spec_text(&["a_load"], "echo"));
        fhirflow_out("apply", &a, &out).assert().success().stdout(contains("0 added, 0 changed, 1 removed"));
        let mut left: Vec<String> = std::fs::read_dir(out.join("dags"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["a_load.py", "b_load2.py"], "git work tree: {git}");
    }
}

/// A spec that generates a file another spec owns is refused, even with --force, until that
/// spec is gone (moved or renamed): then --force takes the file over.
#[test]
fn another_specs_file_is_never_overwritten_while_that_spec_exists() {
    let dir = tempfile::tempdir().unwrap();
    let a = write(&dir.path().join("teams/a/pipeline.yaml"), &spec_text(&["shared"], "echo a"));
    let b = write(&dir.path().join("teams/b/pipeline.yaml"), &spec_text(&["shared"], "echo b"));
    let out = dir.path().join("out");
    fhirflow_out("apply", &a, &out).assert().success();
    let before = read(&out.join("dags/shared.py"));
    fhirflow_out("plan", &b, &out)
        .assert()
        .success()
        .stdout(contains("belongs to teams/a/pipeline.yaml, which generates it too; apply refuses, even with --force"));
    for force in [false, true] {
        let mut apply = fhirflow_out("apply", &b, &out);
        if force {
            apply.arg("--force");
        }
        apply
            .assert()
            .code(4)
            .stderr(contains("belongs to teams/a/pipeline.yaml").and(contains("not even with --force")));
        assert_eq!(read(&out.join("dags/shared.py")), before);
    }
    std::fs::rename(&a, dir.path().join("teams/a/old.yaml")).unwrap();
    fhirflow_out("apply", &b, &out).assert().code(4).stderr(contains("which is gone"));
    fhirflow_out("apply", &b, &out).arg("--force").assert().success();
    assert!(read(&out.join("dags/shared.py")).contains("# fhirflow-spec: teams/b/pipeline.yaml\n"));
}

/// A copy of a generated DAG in a subfolder (a backup) names the spec but is not its file:
/// when the pipeline goes, the DAG is removed and the copy stays, with a note.
#[test]
fn a_backup_copy_in_a_dags_subfolder_is_not_removed() {
    let (_dir, spec, out) = applied(&["keep", "drop"], "echo");
    write(&out.join("dags/backup/drop.py"), &read(&out.join("dags/drop.py")));
    write(&spec, &spec_text(&["keep"], "echo"));
    fhirflow_out("plan", &spec, &out)
        .assert()
        .success()
        .stdout(contains("- ").and(contains("out/dags/drop.py")))
        .stdout(contains("out/dags/backup/drop.py is left in place: a copy of the file fhirflow wrote at `drop.py`"));
    fhirflow_out("apply", &spec, &out).assert().success().stdout(contains("1 removed"));
    assert!(!out.join("dags/drop.py").exists());
    assert!(out.join("dags/backup/drop.py").exists());
}

/// Files from before headers named the spec's path: the file the spec writes is still its own;
/// one it no longer writes could be another folder's same-named spec's, so it stays, with a note.
#[test]
fn files_from_earlier_versions_are_updated_but_not_removed_on_a_guess() {
    let dir = tempfile::tempdir().unwrap();
    let spec = write(&dir.path().join("teams/a/pipeline.yaml"), &spec_text(&["a_load"], "echo"));
    let out = dir.path().join("out");
    let legacy = |id: &str| {
        let body = format!("# the DAG {id}\n");
        let hash = sha256_hex(&body);
        format!(
            "# Generated by fhirflow from pipeline.yaml. Do not edit: change the spec and run `fhirflow apply`.\n# fhirflow-spec: pipeline.yaml\n# fhirflow-sha256: {hash}\n{body}"
        )
    };
    write(&out.join("dags/a_load.py"), &legacy("a_load"));
    write(&out.join("dags/b_load.py"), &legacy("b_load"));
    fhirflow_out("apply", &spec, &out)
        .assert()
        .success()
        .stdout(contains("0 added, 1 changed, 0 removed"))
        .stdout(contains("b_load.py is left in place: an earlier fhirflow wrote it from a spec named `pipeline.yaml`"));
    assert!(read(&out.join("dags/a_load.py")).contains("# fhirflow-spec: teams/a/pipeline.yaml\n"));
    assert_eq!(read(&out.join("dags/b_load.py")), legacy("b_load"));
}

fn sha256_hex(text: &str) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// A folder that cannot take its file fails the apply before any file changed: no DAG is
/// new while a properties file is old, and no staged file is left.
#[test]
fn a_folder_that_cannot_be_written_fails_the_apply_before_any_file_changes() {
    let dir = tempfile::tempdir().unwrap();
    let text = |command: &str| {
        format!(
            "{}dbt: {{project_dir: dbt}}\nlayers:\n  staging: {{models: [stg_a]}}\n",
            spec_text(&["p1", "p2"], command)
        )
    };
    let spec = write(&dir.path().join("pipeline.yaml"), &text("echo old"));
    let out = dir.path().join("out");
    fhirflow_out("apply", &spec, &out).assert().success();
    let dags_before = (read(&out.join("dags/p1.py")), read(&out.join("dags/p2.py")));
    // A file where the layer's folder must be: as unwritable as a folder can be for root.
    std::fs::remove_dir_all(out.join("dbt/models/staging")).unwrap();
    write(&out.join("dbt/models/staging"), "in the way\n");
    write(&spec, &text("echo new"));
    fhirflow_out("apply", &spec, &out).assert().code(3).stderr(contains("dbt/models/staging"));
    assert_eq!((read(&out.join("dags/p1.py")), read(&out.join("dags/p2.py"))), dags_before);
    let temps: Vec<_> = std::fs::read_dir(out.join("dags"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(temps.is_empty(), "staged files are taken back: {temps:?}");
    assert!(!out.join(".fhirflow-apply.journal").exists());
}

/// Killed with SIGKILL at moments spread over an apply of 30 DAG files, the set on disk is
/// always one version whole, or an interrupted apply that `plan` reports and the next `apply`
/// completes before doing its own work; no staged file outlives that apply.
#[test]
fn an_apply_killed_at_any_moment_leaves_one_version_or_a_journal_the_next_apply_completes() {
    let ids: Vec<String> = (0..30).map(|i| format!("pipeline_{i:03}")).collect();
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let spec = dir.path().join("pipeline.yaml");
    let texts = [spec_text(&ids, "echo zero"), spec_text(&ids, "echo one")];
    let set = |version: usize| write(&spec, &texts[version]);
    let dags =
        |root: &Path| -> Vec<String> { ids.iter().map(|id| read(&root.join(format!("dags/{id}.py")))).collect() };
    let expected: Vec<Vec<String>> = (0..2)
        .map(|version| {
            set(version);
            let scratch = dir.path().join(format!("scratch{version}"));
            fhirflow_out("apply", &spec, &scratch).assert().success();
            dags(&scratch)
        })
        .collect();
    let temps = || -> Vec<String> {
        std::fs::read_dir(out.join("dags"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tmp"))
            .collect()
    };
    let binary = assert_cmd::cargo::cargo_bin("fhirflow");
    set(1);
    fhirflow_out("apply", &spec, &out).assert().success();
    // How long a whole apply takes here, so that the kills spread over all of it.
    set(0);
    let started = std::time::Instant::now();
    fhirflow_out("apply", &spec, &out).assert().success();
    let span = started.elapsed().as_micros().max(1_000) as u64;
    let journal = out.join(".fhirflow-apply.journal");
    let (mut interrupted, mut mixed, mut whole) = (0, 0, 0);
    let mut current = 0;
    for trial in 0..24u64 {
        set(1 - current);
        let mut child = std::process::Command::new(&binary)
            .arg("apply")
            .arg(&spec)
            .arg("--out")
            .arg(&out)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        if trial % 2 == 0 {
            // Anywhere in the apply, with a prime stride so that trials land at different moments.
            std::thread::sleep(std::time::Duration::from_micros((trial * 7919) % span));
        } else {
            // In the renames: from the journal's appearance, a little later at each trial.
            while !journal.exists() && child.try_wait().unwrap().is_none() {}
            std::thread::sleep(std::time::Duration::from_micros(trial * 30));
        }
        let _ = child.kill();
        let _ = child.wait();
        if journal.exists() {
            interrupted += 1;
            if !expected.contains(&dags(&out)) {
                mixed += 1;
            }
            set(current);
            fhirflow_out("plan", &spec, &out)
                .assert()
                .success()
                .stdout(contains("an apply was interrupted after staging"));
            fhirflow_out("apply", &spec, &out).assert().success().stderr(contains("completed an interrupted apply"));
            assert_eq!(dags(&out), expected[current], "trial {trial}: completing, then applying, gives the spec's set");
        } else {
            whole += 1;
            let version = expected.iter().position(|found| *found == dags(&out));
            assert!(version.is_some(), "trial {trial}: a mix of versions on disk without a journal");
            current = version.unwrap_or(current);
            if !temps().is_empty() {
                // Staged before the journal was written: the next apply removes them.
                set(current);
                fhirflow_out("apply", &spec, &out).assert().success();
            }
        }
        assert_eq!(temps(), Vec::<String>::new(), "trial {trial}: no staged file outlives the next apply");
    }
    eprintln!(
        "{whole} trials left one version whole, {interrupted} an interrupted apply ({mixed} killed between two renames)"
    );
    assert!(whole > 0, "some kills land before or after the renames");
    assert!(interrupted > 0, "some kills land while the journal is there");
}

/// `plan` with an interrupted apply says so in JSON too, and `apply --check` reports drift.
#[test]
fn an_interrupted_apply_shows_in_plan_json_and_fails_the_check() {
    let (dir, spec, out) = applied(&["p1", "p2"], "echo old");
    // What a kill after the first of two renames leaves.
    write(&spec, &spec_text(&["p1", "p2"], "echo new"));
    let scratch = dir.path().join("scratch");
    fhirflow_out("apply", &spec, &scratch).assert().success();
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    let pid = gone.id();
    gone.wait().unwrap();
    let staged = format!(".p2.py.fhirflow-{pid}.tmp");
    std::fs::copy(scratch.join("dags/p1.py"), out.join("dags/p1.py")).unwrap();
    std::fs::copy(scratch.join("dags/p2.py"), out.join("dags").join(&staged)).unwrap();
    let journal = serde_json::json!({
        "format_version": "1.0",
        "pid": pid,
        "renames": [
            {"from": format!("dags/.p1.py.fhirflow-{pid}.tmp"), "to": "dags/p1.py"},
            {"from": format!("dags/{staged}"), "to": "dags/p2.py"},
        ],
        "removes": [],
    });
    write(&out.join(".fhirflow-apply.journal"), &journal.to_string());
    let plan = fhirflow_out("plan", &spec, &out).args(["--format", "json"]).output().unwrap();
    let plan: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
    assert!(plan["notes"][0].as_str().unwrap().contains("interrupted"), "{plan}");
    assert_eq!(plan["changes"].as_array().unwrap().len(), 1, "{plan}");
    assert!(plan["changes"][0]["path"].as_str().unwrap().ends_with("out/dags/p2.py"), "{plan}");
    fhirflow_out("apply", &spec, &out).arg("--check").assert().code(2);
    fhirflow_out("apply", &spec, &out).assert().success().stderr(contains("completed an interrupted apply (1 files)"));
    assert_eq!(read(&out.join("dags/p2.py")), read(&scratch.join("dags/p2.py")));
    fhirflow().arg("plan").arg(&spec).arg("--out").arg(&out).arg("--detailed-exitcode").assert().code(0);
}
