//! `fhirflow init --from-dbt`, then `fhirflow apply`, on dbt projects that already document
//! their models, checked with real dbt-core (1.11, 1.7 and 1.12): `dbt parse` stays clean (no
//! "two schema.yml entries for the same resource") and sees every test, description and tag it
//! saw before. Without the venvs these tests fail, unless `FHIRFLOW_SKIP_CONFORMANCE=1`.

mod common;

use common::{copy_dir, fhirflow, repo, venv};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

/// What dbt's manifest holds of the root project's models.
#[derive(Debug, PartialEq)]
struct Seen {
    /// The unique ids of the data tests.
    tests: BTreeSet<String>,
    /// `model` and `model.column` → the description, when not empty.
    descriptions: BTreeMap<String, String>,
    /// Model → its tags.
    tags: BTreeMap<String, BTreeSet<String>>,
}

/// Runs `args` of the venv's dbt on the project in `project`; returns its stdout.
fn dbt(venv: &Path, project: &Path, args: &[&str]) -> String {
    let output = Command::new(venv.join("bin/dbt"))
        .args(args)
        .arg("--project-dir")
        .arg(project)
        .arg("--profiles-dir")
        .arg(project)
        .env("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
        .env("DBT_DUCKDB_PATH", project.join("target/check.duckdb"))
        .current_dir(project)
        .output()
        .expect("dbt starts");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "dbt {args:?} failed ({})\n{stdout}{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// `dbt parse` of `project`, and what its manifest says.
fn parse(venv: &Path, project: &Path) -> Seen {
    dbt(venv, project, &["parse", "--quiet"]);
    let text = std::fs::read_to_string(project.join("target/manifest.json")).expect("dbt parse writes the manifest");
    let manifest: serde_json::Value = serde_json::from_str(&text).expect("the manifest is JSON");
    let mut seen = Seen { tests: BTreeSet::new(), descriptions: BTreeMap::new(), tags: BTreeMap::new() };
    for (id, node) in manifest["nodes"].as_object().expect("nodes") {
        match node["resource_type"].as_str() {
            Some("test") => {
                seen.tests.insert(id.clone());
            }
            Some("model") => {
                let name = node["name"].as_str().expect("a name").to_owned();
                let mut describe = |key: String, text: &serde_json::Value| {
                    if let Some(text) = text.as_str().filter(|t| !t.is_empty()) {
                        seen.descriptions.insert(key, text.to_owned());
                    }
                };
                describe(name.clone(), &node["description"]);
                for (column, c) in node["columns"].as_object().expect("columns") {
                    describe(format!("{name}.{column}"), &c["description"]);
                }
                let tags = node["tags"].as_array().expect("tags").iter().filter_map(|t| t.as_str()).map(str::to_owned);
                seen.tags.insert(name, tags.collect());
            }
            _ => {}
        }
    }
    seen
}

/// The models `dbt ls --selector <selector>` lists.
fn selected_models(venv: &Path, project: &Path, selector: &str) -> BTreeSet<String> {
    let listed =
        dbt(venv, project, &["ls", "--quiet", "--resource-type", "model", "--output", "name", "--selector", selector]);
    listed.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect()
}

/// `fhirflow init --from-dbt dbt spec.yaml` in `dir`, with `extra` arguments; returns the spec and
/// what init printed on stderr.
fn init(dir: &Path, extra: &[&str]) -> (String, String) {
    let output = fhirflow()
        .current_dir(dir)
        .args(["init", "--force", "--from-dbt", "dbt", "spec.yaml"])
        .args(extra)
        .output()
        .expect("fhirflow starts");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "init failed\n{stderr}");
    (std::fs::read_to_string(dir.join("spec.yaml")).expect("init writes the spec"), stderr)
}

/// The fixture's layers and their models, as `dbt ls --selector <layer>` lists them.
const LAYERS: [(&str, &[&str]); 3] = [
    ("staging", &["stg_customers", "stg_orders", "stg_payments"]),
    ("analytics", &["dim_customers", "fct_orders"]),
    ("utils", &["util_dates"]),
];

/// A temporary folder with a copy of the dbt project at `source` (from the repository) in `dbt/`.
fn copy_of(source: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("dbt");
    copy_dir(&repo().join(source), &project);
    (dir, project)
}

/// Where `"<layer>":` starts in the spec.
fn layer_at(spec: &str, layer: &str) -> usize {
    spec.find(&format!("\n  \"{layer}\":\n")).unwrap_or_else(|| panic!("no layer {layer} in\n{spec}"))
}

/// The messy fixture, with the dbt of the venv in `$var`: init reads dbt's graph from the
/// manifest, skips the disabled models, and what apply writes leaves every test, description
/// and tag as it was.
fn existing_project_keeps_what_it_says(var: &str) {
    let Some(venv) = venv(var) else { return };
    let venv = venv.as_path();
    let (dir, project) = copy_of("tests/fixtures/dbt_existing");
    let before = parse(venv, &project);

    let (spec, _) = init(dir.path(), &[]);
    // analytics ref()s staging only through a macro: dbt's graph puts staging first.
    assert!(layer_at(&spec, "staging") < layer_at(&spec, "analytics"), "{spec}");
    for disabled in ["stg_legacy", "stg_old", "scratch_try"] {
        assert!(!spec.contains(disabled), "{disabled} is disabled:\n{spec}");
    }
    assert_eq!(spec.matches("properties: \"project\"").count(), 2, "{spec}");

    fhirflow().current_dir(dir.path()).args(["apply", "spec.yaml"]).assert().success();
    assert!(!project.join("models/staging/staging_models.yml").exists());
    assert!(project.join("models/utils/utils_models.yml").exists());
    let after = parse(venv, &project);
    assert_eq!(after.tests, before.tests);
    assert_eq!(after.descriptions, before.descriptions);
    for (model, tags) in &before.tags {
        let mut expected = tags.clone();
        // The layer fhirflow documents gets its tag; the project's own are left as they were.
        if model == "util_dates" {
            expected.insert("utils".to_owned());
        }
        assert_eq!(after.tags[model], expected, "{model}");
    }
    assert_eq!(after.tags.len(), before.tags.len());

    // Selection is the same in every dbt-core here; `dbt ls` (a parse each) runs under 1.11 only.
    let layers = if var == "FHIRFLOW_DBT_VENV" { &LAYERS[..] } else { &[] };
    for (layer, models) in layers {
        let expected: BTreeSet<String> = models.iter().map(|m| (*m).to_owned()).collect();
        assert_eq!(selected_models(venv, &project, layer), expected, "selector {layer}");
    }

    // Run again, on the applied project: fhirflow's own files are not the project's.
    let (again, _) = init(dir.path(), &[]);
    assert_eq!(again, spec);
}

#[test]
fn init_then_apply_keeps_an_existing_projects_properties_under_dbt_1_11() {
    existing_project_keeps_what_it_says("FHIRFLOW_DBT_VENV");
}

#[test]
fn init_then_apply_keeps_an_existing_projects_properties_under_dbt_1_7() {
    existing_project_keeps_what_it_says("FHIRFLOW_DBT17_VENV");
}

#[test]
fn init_then_apply_keeps_an_existing_projects_properties_under_dbt_1_12() {
    existing_project_keeps_what_it_says("FHIRFLOW_DBT112_VENV");
}

/// Without a manifest the order comes from the SQL, which hides the macro's ref()s, and init
/// says so; `--parse` runs dbt parse and gets dbt's order.
#[test]
fn parse_orders_the_layers_by_dbts_graph() {
    let Some(venv) = venv("FHIRFLOW_DBT_VENV") else { return };
    let (dir, _) = copy_of("tests/fixtures/dbt_existing");

    let (spec, stderr) = init(dir.path(), &[]);
    assert!(layer_at(&spec, "analytics") < layer_at(&spec, "staging"), "{spec}");
    assert!(stderr.contains("no target/manifest.json") && stderr.contains("--parse"), "{stderr}");
    assert!(stderr.contains("stg_legacy.sql: the model is disabled (`enabled=false` in its config())"), "{stderr}");

    let program = venv.join("bin/dbt");
    let (spec, stderr) = init(dir.path(), &["--parse", "--dbt", program.to_str().unwrap()]);
    assert!(layer_at(&spec, "staging") < layer_at(&spec, "analytics"), "{spec}");
    assert!(!stderr.contains("no target/manifest.json"), "{stderr}");
}

/// `--parse` with a project dbt cannot parse is an error that shows dbt's message.
#[test]
fn a_failing_parse_is_an_error() {
    let Some(venv) = venv("FHIRFLOW_DBT_VENV") else { return };
    let (dir, project) = copy_of("tests/fixtures/dbt_existing");
    std::fs::write(project.join("models/utils/broken.sql"), "select {{ ref('no_such_model') }}\n").unwrap();
    let program = venv.join("bin/dbt");
    let output = fhirflow()
        .current_dir(dir.path())
        .args(["init", "--from-dbt", "dbt", "spec.yaml", "--parse", "--dbt", program.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("dbt-parse-failed") && stderr.contains("no_such_model"), "{stderr}");
    assert!(!dir.path().join("spec.yaml").exists());
}

/// The FHIR example's own dbt project, which documents every model and tags its folders in
/// dbt_project.yml: after init and apply dbt sees exactly what it saw.
#[test]
fn init_then_apply_keeps_the_fhir_examples_properties() {
    let Some(venv) = venv("FHIRFLOW_DBT_VENV") else { return };
    let (dir, project) = copy_of("examples/fhir/dbt");
    let before = parse(&venv, &project);
    assert!(before.tests.len() > 50 && before.descriptions.len() > 50, "{before:?}");

    let (spec, _) = init(dir.path(), &[]);
    assert!(layer_at(&spec, "staging") < layer_at(&spec, "intermediate"), "{spec}");
    assert!(layer_at(&spec, "intermediate") < layer_at(&spec, "marts"), "{spec}");
    fhirflow().current_dir(dir.path()).args(["apply", "spec.yaml"]).assert().success();
    assert_eq!(parse(&venv, &project), before);
    assert_eq!(selected_models(&venv, &project, "intermediate").len(), 4);
}

/// A project with a selectors.yml of its own: init sets `dbt.selectors: false`, apply leaves the
/// file as it is, and dbt still reads it.
#[test]
fn a_projects_own_selectors_are_left_alone() {
    let Some(venv) = venv("FHIRFLOW_DBT_VENV") else { return };
    let (dir, project) = copy_of("tests/fixtures/dbt_existing");
    let own = "selectors:\n  - name: orders\n    definition: {method: tag, value: orders}\n";
    std::fs::write(project.join("selectors.yml"), own).unwrap();
    let (spec, _) = init(dir.path(), &[]);
    assert!(spec.contains("\n  selectors: false\n"), "{spec}");
    fhirflow().current_dir(dir.path()).args(["apply", "spec.yaml"]).assert().success();
    assert_eq!(std::fs::read_to_string(project.join("selectors.yml")).unwrap(), own);
    parse(venv.as_path(), &project);
    assert_eq!(selected_models(&venv, &project, "orders"), BTreeSet::from(["stg_orders".to_owned()]));
}
