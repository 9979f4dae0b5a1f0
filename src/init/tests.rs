use super::*;
use crate::emit::{FileKind, Layout};
use crate::source::SourceFile;
use std::fs;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dbt_dental")
}

/// Copies the folder `from` to `to`, leaving out what dbt writes (`target/`, `logs/`).
fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if name == "target" || name == "logs" || name == "dbt_packages" {
            continue;
        }
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &to.join(&name));
        } else {
            fs::copy(entry.path(), to.join(&name)).unwrap();
        }
    }
}

fn write(path: &Path, text: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

/// Compiles the starter spec as `fhirflow validate` would, asserting it has no errors and no
/// warnings.
fn compiles(spec_path: &Path, starter: &StarterSpec) -> crate::Compiled {
    let source = SourceFile::new(spec_path.display().to_string(), starter.text.clone());
    match crate::compile(source) {
        Ok(compiled) => {
            assert!(compiled.warnings.is_empty(), "{}", compiled.warnings.render());
            compiled
        }
        Err(diagnostics) => panic!("{}\n{}", diagnostics.render(), starter.text),
    }
}

/// Each layer's name, path and models, in the compiled spec.
fn layers(compiled: &crate::Compiled) -> Vec<(String, Option<String>, Vec<String>)> {
    compiled
        .graph
        .spec
        .layers
        .iter()
        .map(|(name, layer)| {
            (
                name.to_string(),
                layer.path.as_ref().map(|p| p.0.clone()),
                layer.models.iter().map(|m| m.name().to_string()).collect(),
            )
        })
        .collect()
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

fn error_codes(error: Error) -> Vec<&'static str> {
    match error {
        Error::Invalid(diagnostics) => diagnostics.into_iter().map(|d| d.code).collect(),
        other => panic!("expected an invalid-project error, got {other:?}"),
    }
}

const DENTAL_STARTER: &str = r#"# yaml-language-server: $schema=pipeline.schema.json
# Starter spec written by `fhirflow init --from-dbt` from the dbt project's dbt_project.yml and
# model folders: a nightly `dbt build` (the recommended start) and a layered variant that builds
# one layer per task. `fhirflow plan` shows what `fhirflow apply` would write.
version: 1

defaults:
  owner: "dbt_dental_clinic_prod"
  retries: 2
  retry_delay: "5m"
  start_date: "2026-01-01"
  timezone: "UTC"

dbt:
  project_dir: "../dbt_dental"
  profiles_dir: "../dbt_dental"
  target: "prod"
  # Where Airflow workers see the project, when it is not at the same place relative to the DAGs:
  # deploy: {project_dir: /opt/airflow/dbt, profiles_dir: /opt/airflow/.dbt}

airflow:
  dags_folder: "dags"

# One layer per top-level model folder, in build order. fhirflow tags each layer's models with
# the layer's name (tag:<layer>) in the properties YAML it writes there. Say in each
# description what the layer is for: it becomes the description of the layer's selector.
layers:
  "staging":
    description: "The models in models/staging/."
    models:
      - "stg_appointments"
      - "stg_patients"
      - "stg_payments"
      - "stg_procedures"
  "intermediate":
    description: "The models in models/intermediate/."
    models:
      - "int_patient_visits"
      - "int_procedure_revenue"
  "marts":
    description: "The models in models/marts/."
    models:
      - "dim_patients"
      - "fct_appointments"
      - "fct_revenue"

pipelines:
  # Recommended start: install packages, then build the whole project (seeds, models, snapshots
  # and tests in DAG order) in one dbt build.
  "dbt_dental_clinic_prod_nightly":
    description: "Nightly dbt build of the whole dbt_dental_clinic_prod project."
    schedule: "0 2 * * *"
    catchup: false
    max_active_runs: 1
    tags: ["dbt", "dbt_dental_clinic_prod"]
    stages:
      "dbt_deps":
        kind: "dbt"
        command: "deps"
      "dbt_build":
        kind: "dbt"
        command: "build"
        after: ["dbt_deps"]

  # Iteration: one dbt build per layer, selected by tag, so a failing layer is visible (and
  # retried) on its own and later layers do not run.
  "dbt_dental_clinic_prod_layered":
    description: "Nightly dbt build of the dbt_dental_clinic_prod project, one task per layer."
    schedule: "0 2 * * *"
    catchup: false
    max_active_runs: 1
    tags: ["dbt", "dbt_dental_clinic_prod"]
    stages:
      "dbt_deps":
        kind: "dbt"
        command: "deps"
      "dbt_build_staging":
        kind: "dbt"
        command: "build"
        select: ["tag:staging"]
        after: ["dbt_deps"]
      "dbt_build_intermediate":
        kind: "dbt"
        command: "build"
        select: ["tag:intermediate"]
        after: ["dbt_build_staging"]
      "dbt_build_marts":
        kind: "dbt"
        command: "build"
        select: ["tag:marts"]
        after: ["dbt_build_intermediate"]
"#;

#[test]
fn dental_fixture_gives_three_layers_in_build_order() {
    let tmp = tempfile::tempdir().unwrap();
    copy_tree(&fixture(), &tmp.path().join("dbt_dental"));
    let spec_path = tmp.path().join("pipelines/dental.yaml");
    let starter = starter_spec(&tmp.path().join("dbt_dental"), &spec_path).unwrap();
    assert_eq!(starter.text, DENTAL_STARTER);
    assert!(starter.skipped.is_empty(), "{:?}", starter.skipped);
    let out = format!("run plan and apply with `--out {}`", tmp.path().display());
    // Without target/manifest.json the order comes from the SQL's ref()s, and a note says so.
    assert!(starter.notes.len() == 2 && starter.notes[0].contains("no target/manifest.json"), "{:?}", starter.notes);
    assert!(starter.notes[1].contains(&out), "{:?}", starter.notes);
    assert_eq!(starter.schema_path, tmp.path().join("pipelines").join(SCHEMA_FILE_NAME));
    assert_eq!(starter.schema_text, crate::validate::schema::to_text());

    let compiled = compiles(&spec_path, &starter);
    assert_eq!(
        layers(&compiled),
        vec![
            (
                "staging".to_owned(),
                None,
                strings(&["stg_appointments", "stg_patients", "stg_payments", "stg_procedures"])
            ),
            ("intermediate".to_owned(), None, strings(&["int_patient_visits", "int_procedure_revenue"])),
            ("marts".to_owned(), None, strings(&["dim_patients", "fct_appointments", "fct_revenue"])),
        ]
    );
    // The same models as the dental seed's spec, layer by layer.
    let seed =
        crate::compile_file(&Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines/dental_clinic.yaml")).unwrap();
    let sorted = |c: &crate::Compiled| {
        layers(c)
            .into_iter()
            .map(|(name, _, mut models)| {
                models.sort();
                (name, models)
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(sorted(&compiled), sorted(&seed));
    let pipelines: Vec<(String, Vec<String>)> = compiled
        .graph
        .spec
        .pipelines
        .iter()
        .map(|(id, p)| (id.to_string(), p.stages.keys().map(ToString::to_string).collect()))
        .collect();
    assert_eq!(
        pipelines,
        vec![
            ("dbt_dental_clinic_prod_nightly".to_owned(), strings(&["dbt_deps", "dbt_build"])),
            (
                "dbt_dental_clinic_prod_layered".to_owned(),
                strings(&["dbt_deps", "dbt_build_staging", "dbt_build_intermediate", "dbt_build_marts"])
            ),
        ]
    );
}

#[test]
fn the_properties_yaml_lands_in_the_model_folders() {
    let tmp = tempfile::tempdir().unwrap();
    copy_tree(&fixture(), &tmp.path().join("dbt_dental"));
    let spec_path = tmp.path().join("pipelines/dental.yaml");
    let starter = starter_spec(&tmp.path().join("dbt_dental"), &spec_path).unwrap();
    let compiled = compiles(&spec_path, &starter);
    // The project is beside the spec's folder, so it is written under `--out` the folder of both.
    let layout = Layout::new(&spec_path, Some(tmp.path()));
    let files = crate::emit::emit(&compiled.graph, &layout).unwrap();
    let mut written: Vec<String> = files
        .iter()
        .map(|f| layout.display(&f.path).trim_start_matches(&format!("{}/", tmp.path().display())).to_owned())
        .collect();
    written.sort();
    assert_eq!(
        written,
        strings(&[
            "dags/dbt_dental_clinic_prod_layered.py",
            "dags/dbt_dental_clinic_prod_nightly.py",
            "dbt_dental/models/intermediate/intermediate_models.yml",
            "dbt_dental/models/marts/marts_models.yml",
            "dbt_dental/models/staging/staging_models.yml",
            "dbt_dental/selectors.yml",
        ])
    );
}

#[test]
fn the_fixture_in_place_is_found_from_anywhere() {
    let tmp = tempfile::tempdir().unwrap();
    let spec_path = tmp.path().join("a/b/../pipelines/dental.yaml");
    let starter = starter_spec(&fixture(), &spec_path).unwrap();
    let compiled = compiles(&spec_path, &starter);
    let dbt = compiled.graph.spec.dbt.as_ref().unwrap();
    let project_dir = &dbt.project_dir.0;
    assert!(project_dir.starts_with("../"), "{project_dir}");
    fs::create_dir_all(tmp.path().join("a/pipelines")).unwrap();
    assert_eq!(
        tmp.path().join("a/pipelines").join(project_dir).canonicalize().unwrap(),
        fixture().canonicalize().unwrap()
    );
    assert_eq!(dbt.profiles_dir.as_ref().map(|p| &p.0), Some(project_dir));
    assert_eq!(dbt.target.as_ref().map(|t| t.as_str()), Some("prod"));
    // A spec in the project's own folder.
    let inside = fixture().join("orchestration.yaml");
    let starter = starter_spec(&fixture(), &inside).unwrap();
    assert!(starter.text.contains("  project_dir: \".\"\n"), "{}", starter.text);
    compiles(&inside, &starter);
}

#[test]
fn output_is_deterministic() {
    let tmp = tempfile::tempdir().unwrap();
    let spec_path = tmp.path().join("pipelines/dental.yaml");
    let first = starter_spec(&fixture(), &spec_path).unwrap();
    for _ in 0..3 {
        assert_eq!(starter_spec(&fixture(), &spec_path).unwrap(), first);
    }
    // A relative spec path gives the same text as the absolute one.
    let relative_spec = Path::new("pipelines/dental.yaml");
    let here = starter_spec(&fixture(), relative_spec).unwrap();
    let there = starter_spec(&fixture(), &std::env::current_dir().unwrap().join(relative_spec)).unwrap();
    assert_eq!(here.text, there.text);
    assert_eq!(here.schema_path, Path::new("pipelines").join(SCHEMA_FILE_NAME));
}

#[test]
fn a_folder_without_dbt_project_yml_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    write(&tmp.path().join("models/staging/stg_a.sql"), "select 1 as a\n");
    let spec_path = tmp.path().join("spec.yaml");
    let error = starter_spec(tmp.path(), &spec_path).unwrap_err();
    assert_eq!(error.exit_status(), crate::ExitStatus::Invalid);
    let Error::Invalid(diagnostics) = &error else { unreachable!() };
    let text = diagnostics.render();
    assert!(text.contains("error[not-a-dbt-project]:"), "{text}");
    assert!(text.contains("has no dbt_project.yml: it is not a dbt project"), "{text}");
    assert!(text.contains("help: pass the dbt project's folder: the one that holds dbt_project.yml"), "{text}");
    // A folder that does not exist, and a file.
    assert_eq!(error_codes(starter_spec(&tmp.path().join("nope"), &spec_path).unwrap_err()), ["not-a-dbt-project"]);
    let file = tmp.path().join("models/staging/stg_a.sql");
    let error = starter_spec(&file, &spec_path).unwrap_err();
    let Error::Invalid(diagnostics) = &error else { panic!("{error:?}") };
    assert!(diagnostics.render().contains("is not a folder"), "{}", diagnostics.render());
}

#[test]
fn a_broken_dbt_project_yml_is_located() {
    let tmp = tempfile::tempdir().unwrap();
    let spec_path = tmp.path().join("spec.yaml");
    write(&tmp.path().join("dbt_project.yml"), "version: \"1.0\"\nprofile: p\n");
    let error = starter_spec(tmp.path(), &spec_path).unwrap_err();
    let Error::Invalid(diagnostics) = error else { panic!() };
    let text = diagnostics.render();
    assert!(text.contains("error[bad-dbt-project]: dbt_project.yml has no `name`"), "{text}");
    assert!(text.contains("dbt_project.yml:1:1"), "{text}");

    write(&tmp.path().join("dbt_project.yml"), "name: shop\nmodel-paths: [models\nprofile: p\n");
    let error = starter_spec(tmp.path(), &spec_path).unwrap_err();
    let Error::Invalid(diagnostics) = error else { panic!() };
    let text = diagnostics.render();
    assert!(text.contains("error[bad-dbt-project]: cannot read dbt_project.yml"), "{text}");
    assert!(text.contains("dbt_project.yml:"), "{text}");

    write(&tmp.path().join("dbt_project.yml"), "");
    assert_eq!(error_codes(starter_spec(tmp.path(), &spec_path).unwrap_err()), ["bad-dbt-project"]);
}

#[test]
fn odd_folder_and_model_names_are_handled() {
    let tmp = tempfile::tempdir().unwrap();
    let dbt = tmp.path().join("dbt");
    write(
        &dbt.join("dbt_project.yml"),
        "name: \"my-shop.analytics\"\nprofile: shop\nmodel-paths: [\"transform\"]\nvars: {x: 1}\n",
    );
    let sql = [
        // Directly in the model path: a layer named after the project.
        ("transform/root_model.sql", "select 1 as id\n"),
        ("transform/notes.md", "not a model\n"),
        // A folder with the project's name too: its layer gets a suffix.
        ("transform/my_shop_analytics/mine.sql", "select * from {{ ref('root_model') }}\n"),
        // A leading digit and a dash; nested folders; files that are not models.
        ("transform/01-raw/raw_orders.sql", "select 1 as order_id\n"),
        ("transform/01-raw/deep/er/raw_items.sql", "select 1 as item_id\n"),
        ("transform/01-raw/schema.yml", "version: 2\n"),
        ("transform/01-raw/raw_py.py", "def model(dbt, session): pass\n"),
        // Names fhirflow cannot use, and a name already taken.
        ("transform/01-raw/bad-name.sql", "select 1\n"),
        ("transform/01-raw/1st_model.sql", "select 1\n"),
        ("transform/01-raw/raw orders.sql", "select 1\n"),
        ("transform/z_marts/raw_orders.sql", "select 2\n"),
        // `a_marts` refs `z_marts` and `01-raw`: it builds after both.
        (
            "transform/a_marts/fct_orders.sql",
            "select * from {{ ref(\"z_orders\") }} join {{ ref('my_pkg', 'raw_orders') }}\n",
        ),
        ("transform/z_marts/z_orders.sql", "select * from {{ ref('raw_orders', v=2) }}\n"),
        // Two folders that make the same layer name; YAML words; a folder of unusable models.
        ("transform/my layer/l1.sql", "select 1\n"),
        ("transform/my-layer/l2.sql", "select 1\n"),
        ("transform/true/t1.sql", "select 1\n"),
        ("transform/null/n1.sql", "select 1\n"),
        ("transform/only_bad/bad-one.sql", "select 1\n"),
    ];
    for (path, text) in sql {
        write(&dbt.join(path), text);
    }
    fs::create_dir_all(dbt.join("transform/empty/sub")).unwrap();
    let spec_path = tmp.path().join("orchestration/spec.yaml");
    let starter = starter_spec(&dbt, &spec_path).unwrap();
    let compiled = compiles(&spec_path, &starter);
    let ours = |items: &[(&str, &str, &[&str])]| -> Vec<(String, Option<String>, Vec<String>)> {
        items.iter().map(|(n, p, m)| ((*n).to_owned(), Some((*p).to_owned()), strings(m))).collect()
    };
    assert_eq!(
        layers(&compiled),
        ours(&[
            ("my_shop_analytics", "transform", &["root_model"]),
            ("_01_raw", "transform/01-raw", &["raw_items", "raw_orders"]),
            ("my_layer", "transform/my layer", &["l1"]),
            ("my_layer_2", "transform/my-layer", &["l2"]),
            ("my_shop_analytics_2", "transform/my_shop_analytics", &["mine"]),
            ("null", "transform/null", &["n1"]),
            ("true", "transform/true", &["t1"]),
            ("z_marts", "transform/z_marts", &["z_orders"]),
            ("a_marts", "transform/a_marts", &["fct_orders"]),
        ])
    );
    assert_eq!(
        starter.skipped,
        strings(&[
            "transform/01-raw/1st_model.sql: `1st_model` is not a model name fhirflow accepts (letters, digits and \
             underscores, not starting with a digit)",
            "transform/01-raw/bad-name.sql: `bad-name` is not a model name fhirflow accepts (letters, digits and \
             underscores, not starting with a digit)",
            "transform/01-raw/raw orders.sql: `raw orders` is not a model name fhirflow accepts (letters, digits \
             and underscores, not starting with a digit)",
            "transform/empty/: no usable .sql model in it, so it is no layer",
            "transform/only_bad/bad-one.sql: `bad-one` is not a model name fhirflow accepts (letters, digits and \
             underscores, not starting with a digit)",
            "transform/only_bad/: no usable .sql model in it, so it is no layer",
            "transform/z_marts/raw_orders.sql: the model `raw_orders` is already transform/01-raw/raw_orders.sql",
        ])
    );
    // No profiles.yml: no target, and a note saying so; and one saying where `--out` must point,
    // since the project is outside the spec's folder.
    assert!(compiled.graph.spec.dbt.as_ref().unwrap().target.is_none());
    assert_eq!(starter.notes.len(), 3, "{:?}", starter.notes);
    assert!(starter.notes[0].contains("no readable profiles.yml"), "{:?}", starter.notes);
    assert!(starter.notes[1].contains("no target/manifest.json"), "{:?}", starter.notes);
    let out = format!("run plan and apply with `--out {}`", tmp.path().display());
    assert!(starter.notes[2].contains(&out), "{:?}", starter.notes);
    // The project's name is kept as written where any text goes, and made an id where ids go.
    let spec = &compiled.graph.spec;
    assert_eq!(spec.defaults.owner.as_deref(), Some("my-shop.analytics"));
    let ids: Vec<&str> = spec.pipelines.keys().map(|id| id.as_str()).collect();
    assert_eq!(ids, ["my_shop_analytics_nightly", "my_shop_analytics_layered"]);
    // The layered pipeline chains the layers in build order.
    let layered = &spec.pipelines[1];
    let chain: Vec<(String, Vec<String>)> = layered
        .stages
        .iter()
        .map(|(id, s)| (id.to_string(), s.after.iter().map(ToString::to_string).collect()))
        .collect();
    assert_eq!(chain[0], ("dbt_deps".to_owned(), vec![]));
    assert_eq!(chain.last().unwrap(), &("dbt_build_a_marts".to_owned(), strings(&["dbt_build_z_marts"])));
    // Each layer's properties YAML goes into the layer's own folder.
    let layout = Layout::new(&spec_path, Some(tmp.path()));
    let files = crate::emit::emit(&compiled.graph, &layout).unwrap();
    let layer_files: Vec<String> = files
        .iter()
        .filter(|f| matches!(f.kind, FileKind::DbtLayer(_)))
        .map(|f| f.path.to_string_lossy().into_owned())
        .collect();
    assert!(layer_files.contains(&"dbt/transform/my_shop_analytics_models.yml".to_owned()), "{layer_files:?}");
    assert!(layer_files.contains(&"dbt/transform/my layer/my_layer_models.yml".to_owned()), "{layer_files:?}");
    assert!(layer_files.contains(&"dbt/transform/01-raw/_01_raw_models.yml".to_owned()), "{layer_files:?}");
}

#[test]
fn hostile_project_names_stay_strings() {
    let tmp = tempfile::tempdir().unwrap();
    let name = "shop\"\\\n: {x: 1} # not a comment";
    let yaml_name = crate::emit::literal::quoted(name);
    write(&tmp.path().join("dbt_project.yml"), &format!("name: {yaml_name}\nprofile: shop\n"));
    write(&tmp.path().join("models/stg_a.sql"), "select 1\n");
    write(&tmp.path().join("profiles.yml"), "shop:\n  target: \"{{ env_var('T') }}\"\n  outputs: {}\n");
    let spec_path = tmp.path().join("spec.yaml");
    let starter = starter_spec(tmp.path(), &spec_path).unwrap();
    let compiled = compiles(&spec_path, &starter);
    let spec = &compiled.graph.spec;
    assert_eq!(spec.defaults.owner.as_deref(), Some(name));
    // The tag would hold a newline: only `dbt` is left.
    assert_eq!(spec.pipelines[0].tags.iter().map(|t| t.0.as_str()).collect::<Vec<_>>(), ["dbt"]);
    assert_eq!(spec.layers.keys().map(|k| k.as_str()).collect::<Vec<_>>(), ["shop______x__1____not_a_comment"]);
    assert!(spec.dbt.as_ref().unwrap().target.is_none());
    assert_eq!(starter.notes.len(), 1, "{:?}", starter.notes);
    assert!(starter.notes[0].contains("is not a plain name"), "{:?}", starter.notes);
}

#[test]
fn a_project_without_models_still_validates() {
    let tmp = tempfile::tempdir().unwrap();
    write(&tmp.path().join("dbt_project.yml"), "name: bare\nprofile: bare\n");
    write(&tmp.path().join("profiles.yml"), "bare:\n  target: dev\n  outputs: {dev: {type: duckdb}}\n");
    let spec_path = tmp.path().join("spec.yaml");
    let starter = starter_spec(tmp.path(), &spec_path).unwrap();
    let compiled = compiles(&spec_path, &starter);
    assert!(compiled.graph.spec.layers.is_empty());
    let ids: Vec<&str> = compiled.graph.spec.pipelines.keys().map(|id| id.as_str()).collect();
    assert_eq!(ids, ["bare_nightly"]);
    assert_eq!(compiled.graph.spec.dbt.as_ref().unwrap().target.as_ref().map(|t| t.as_str()), Some("dev"));
    assert_eq!(starter.notes.len(), 1, "{:?}", starter.notes);
    assert!(starter.notes[0].contains("model path `models`"), "{:?}", starter.notes);
}

#[test]
fn layers_that_reference_each_other_keep_their_order_with_a_note() {
    let tmp = tempfile::tempdir().unwrap();
    write(&tmp.path().join("dbt_project.yml"), "name: loop\n");
    write(&tmp.path().join("models/a/a1.sql"), "select * from {{ ref('b1') }}\n");
    write(&tmp.path().join("models/b/b1.sql"), "select 1\n");
    write(&tmp.path().join("models/b/b2.sql"), "select * from {{ ref('a1') }}\n");
    let spec_path = tmp.path().join("spec.yaml");
    let starter = starter_spec(tmp.path(), &spec_path).unwrap();
    let compiled = compiles(&spec_path, &starter);
    assert_eq!(compiled.graph.spec.layers.keys().map(|k| k.as_str()).collect::<Vec<_>>(), ["a", "b"]);
    assert!(starter.notes.iter().any(|n| n.contains("layer `a` reference models of `b`")), "{:?}", starter.notes);
    assert!(starter.notes.iter().any(|n| n.contains("no `profile`")), "{:?}", starter.notes);
}

#[test]
fn the_schema_file_name_is_not_a_spec_name() {
    let tmp = tempfile::tempdir().unwrap();
    assert_eq!(
        error_codes(starter_spec(&fixture(), &tmp.path().join(SCHEMA_FILE_NAME)).unwrap_err()),
        ["unusable-path"]
    );
    assert_eq!(error_codes(starter_spec(&fixture(), Path::new("/")).unwrap_err()), ["unusable-path"]);
}

#[test]
fn paths_are_resolved_and_made_relative() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap();
    fs::create_dir_all(root.join("x/y")).unwrap();
    assert_eq!(resolve(&root.join("x/y/../new/./file.yaml")).unwrap(), root.join("x/new/file.yaml"));
    assert_eq!(relative(&root.join("x/y"), &root.join("x/z/w")).as_deref(), Some("../z/w"));
    assert_eq!(relative(&root.join("x"), &root.join("x")).as_deref(), Some("."));
    assert_eq!(relative(&root, &root.join("x")).as_deref(), Some("x"));
    assert_eq!(identifier_from("01-raw", 128), "_01_raw");
    assert_eq!(identifier_from("", 128), "_");
    assert_eq!(identifier_from("ünï", 128), "_n_");
    assert_eq!(identifier_from(&"a".repeat(300), 128).len(), 128);
    assert!(!usable_relative_path("/abs"));
    assert!(!usable_relative_path("a\nb"));
    assert!(usable_relative_path("../a b"));
}

#[cfg(unix)]
#[test]
fn symbolic_link_loops_are_read_once() {
    let tmp = tempfile::tempdir().unwrap();
    write(&tmp.path().join("dbt_project.yml"), "name: links\n");
    write(&tmp.path().join("models/staging/stg_a.sql"), "select 1\n");
    std::os::unix::fs::symlink("..", tmp.path().join("models/staging/up")).unwrap();
    let spec_path = tmp.path().join("spec.yaml");
    let starter = starter_spec(tmp.path(), &spec_path).unwrap();
    let compiled = compiles(&spec_path, &starter);
    assert_eq!(layers(&compiled), vec![("staging".to_owned(), None, strings(&["stg_a"]))]);
    assert!(starter.skipped.iter().any(|s| s.contains("models/staging/up/: already read")), "{:?}", starter.skipped);
}

/// The project that already documents its models (tests/fixtures/dbt_existing), read without a
/// manifest: disabled models are left out, a layer with a model in the project's properties
/// files is `properties: project` (so nothing is written for it and it is selected by folder),
/// and the layer nothing documents gets fhirflow's properties file.
#[test]
fn a_project_that_documents_its_models_keeps_its_properties() {
    let tmp = tempfile::tempdir().unwrap();
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dbt_existing");
    copy_tree(&source, &tmp.path().join("dbt"));
    let spec_path = tmp.path().join("spec.yaml");
    let starter = starter_spec(&tmp.path().join("dbt"), &spec_path).unwrap();
    assert_eq!(
        starter.skipped,
        strings(&[
            "models/scratch/scratch_try.sql: the model is disabled (`enabled: false` in dbt_project.yml)",
            "models/scratch/: no usable .sql model in it, so it is no layer",
            "models/staging/stg_legacy.sql: the model is disabled (`enabled=false` in its config())",
            "models/staging/stg_old.sql: the model is disabled (`enabled: false` in models/schema.yml)",
        ])
    );
    let compiled = compiles(&spec_path, &starter);
    let spec = &compiled.graph.spec;
    let properties: Vec<(&str, crate::spec::LayerProperties)> =
        spec.layers.iter().map(|(name, layer)| (name.as_str(), layer.properties)).collect();
    use crate::spec::LayerProperties::{Fhirflow, Project};
    // Without a manifest the macro's ref()s are not seen: the folders' order stands.
    assert_eq!(properties, [("analytics", Project), ("staging", Project), ("utils", Fhirflow)]);
    assert!(starter.text.contains("select: [\"path:models/staging\"]"), "{}", starter.text);
    assert!(starter.text.contains("select: [\"tag:utils\"]"), "{}", starter.text);

    let layout = Layout::new(&spec_path, None);
    let files = crate::emit::emit(&compiled.graph, &layout).unwrap();
    let mut written: Vec<String> = files.iter().map(|f| layout.display(&f.path)).collect();
    written.sort();
    let prefix = format!("{}/", tmp.path().display());
    let written: Vec<&str> = written.iter().map(|w| w.trim_start_matches(&prefix)).collect();
    assert_eq!(
        written,
        [
            "dags/existing_layered.py",
            "dags/existing_nightly.py",
            "dbt/models/utils/utils_models.yml",
            "dbt/selectors.yml"
        ]
    );
    let selectors = files.iter().find(|f| f.kind == FileKind::DbtSelectors).unwrap();
    assert!(selectors.contents.contains("method: path\n      value: \"models/staging\"\n"), "{}", selectors.contents);
    assert!(selectors.contents.contains("method: tag\n      value: \"utils\"\n"), "{}", selectors.contents);
    assert!(!starter.text.contains("selectors: false"), "{}", starter.text);

    // A selectors.yml of the project's own is not replaced: the spec says `selectors: false`.
    write(&tmp.path().join("dbt/selectors.yml"), "selectors: []\n");
    let starter = starter_spec(&tmp.path().join("dbt"), &spec_path).unwrap();
    assert!(starter.text.contains("\n  selectors: false\n"), "{}", starter.text);
    let compiled = compiles(&spec_path, &starter);
    let files = crate::emit::emit(&compiled.graph, &layout).unwrap();
    assert!(!files.iter().any(|f| f.kind == FileKind::DbtSelectors));
}

/// A manifest's graph orders the layers, and its `patch_path`s count as the project's
/// properties unless fhirflow wrote the file.
#[test]
fn a_manifest_orders_the_layers_by_dbts_graph() {
    let tmp = tempfile::tempdir().unwrap();
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dbt_existing");
    copy_tree(&source, &tmp.path().join("dbt"));
    let node = |name: &str, folder: &str, depends: &[&str], patch: Option<&str>| {
        let id = format!("model.existing.{name}");
        let depends: Vec<String> = depends.iter().map(|d| format!("model.existing.{d}")).collect();
        (
            id.clone(),
            serde_json::json!({
                "unique_id": id, "resource_type": "model", "name": name, "package_name": "existing",
                "fqn": ["existing", folder, name], "original_file_path": format!("models/{folder}/{name}.sql"),
                "path": format!("{folder}/{name}.sql"), "patch_path": patch, "tags": [],
                "config": {"materialized": "view"}, "depends_on": {"nodes": depends}
            }),
        )
    };
    let generated = crate::emit::header::wrap("spec.yaml", "models/generated_models.yml", "version: 2\n");
    write(&tmp.path().join("dbt/models/utils/utils_models.yml"), &generated);
    let nodes: serde_json::Map<String, serde_json::Value> = [
        node("stg_orders", "staging", &[], Some("existing://models/schema.yml")),
        node("stg_customers", "staging", &[], Some("existing://models/schema.yml")),
        node("stg_payments", "staging", &[], None),
        node("fct_orders", "analytics", &["stg_orders", "stg_customers"], Some("existing://models/schema.yml")),
        node("dim_customers", "analytics", &["stg_customers"], None),
        node("util_dates", "utils", &[], Some("existing://models/utils/utils_models.yml")),
    ]
    .into_iter()
    .collect();
    let manifest = serde_json::json!({
        "metadata": {"dbt_schema_version": crate::dbt::MANIFEST_V12, "dbt_version": "1.11.0", "project_name": "existing"},
        "nodes": nodes, "sources": {}, "macros": {}, "exposures": {}, "metrics": {}, "disabled": {}
    });
    write(&tmp.path().join("dbt/target/manifest.json"), &manifest.to_string());
    let spec_path = tmp.path().join("spec.yaml");
    let starter = starter_spec(&tmp.path().join("dbt"), &spec_path).unwrap();
    assert!(!starter.notes.iter().any(|n| n.contains("manifest")), "{:?}", starter.notes);
    let compiled = compiles(&spec_path, &starter);
    let order: Vec<(&str, bool)> = compiled
        .graph
        .spec
        .layers
        .iter()
        .map(|(name, layer)| (name.as_str(), layer.properties.is_fhirflow()))
        .collect();
    assert_eq!(order, [("staging", false), ("analytics", false), ("utils", true)]);
}
