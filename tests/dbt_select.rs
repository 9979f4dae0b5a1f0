//! Conformance: fhirflow's dbt node selection (`fhirflow::dbt`) picks exactly the nodes that
//! real dbt-core 1.11 lists with `dbt ls --select ... --exclude ...`, on the fixture projects;
//! and, on a project with its own `selectors.yml` and an installed package, what dbt-core 1.7,
//! 1.11 and 1.12 list with `--selector`, with no selection (the default selector) and with `path:`.
//!
//! Like tests/conformance.rs, these need the dbt venv in `FHIRFLOW_DBT_VENV` (scripts/test.sh
//! builds it), and fail without it unless `FHIRFLOW_SKIP_CONFORMANCE=1`.
//!
//! Each project is parsed once by dbt; then every case runs `dbt ls` in one Python process
//! (dbt's programmatic `dbtRunner`, which runs the same command as the CLI; one case also runs
//! through the CLI to show it) and fhirflow's selection on the same `manifest.json` must equal
//! it. The listing is restricted to the node types that become tasks (`--resource-type model
//! seed snapshot test`); dbt filters types after selecting, so this changes nothing else.

mod common;

use common::{copy_dir, fhirflow, repo, venv};
use fhirflow::dbt::{DbtVersion, IndirectSelection, Manifest, read_selectors};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// The node types that become tasks; `dbt ls` lists only these.
const TASK_TYPES: [&str; 4] = ["model", "seed", "snapshot", "test"];

/// Runs `dbt parse`, then `dbt ls` for every case, in one process; writes
/// `{"parse_seconds": s, "results": [{"ids": [...]} | {"error": "..."}]}`.
const DBT_LS_MANY: &str = r#"
import json, os, sys, time
from dbt.cli.main import dbtRunner
project, work, cases_path, out_path = sys.argv[1:5]
common = ["--project-dir", project, "--profiles-dir", project,
          "--target-path", os.path.join(work, "target"), "--log-path", os.path.join(work, "logs")]
runner = dbtRunner()
start = time.monotonic()
if os.path.exists(os.path.join(project, "packages.yml")):
    deps = runner.invoke(["--no-use-colors", "--quiet", "deps", "--project-dir", project, "--profiles-dir", project])
    if not deps.success:
        sys.exit(f"dbt deps failed: {deps.exception!r}")
parsed = runner.invoke(["--no-use-colors", "--quiet", "parse", *common])
if not parsed.success:
    sys.exit(f"dbt parse failed: {parsed.exception!r}")
parse_seconds = time.monotonic() - start
results = []
for case in json.load(open(cases_path)):
    argv = ["--no-use-colors", "--quiet", "--no-print", "ls", *common,
            "--output", "json", "--output-keys", "unique_id"]
    for resource_type in case["resource_types"]:
        argv += ["--resource-type", resource_type]
    if case["select"]:
        argv += ["--select", *case["select"]]
    if case["exclude"]:
        argv += ["--exclude", *case["exclude"]]
    if case["indirect"]:
        argv += ["--indirect-selection", case["indirect"]]
    if case["selector"]:
        argv += ["--selector", case["selector"]]
    listed = runner.invoke(argv)
    if listed.success:
        results.append({"ids": sorted(json.loads(line)["unique_id"] for line in (listed.result or []))})
    else:
        results.append({"error": repr(listed.exception)})
json.dump({"parse_seconds": parse_seconds, "results": results}, open(out_path, "w"))
"#;

/// One `dbt ls` invocation.
#[derive(Debug, Clone)]
struct Case {
    select: Vec<&'static str>,
    exclude: Vec<&'static str>,
    indirect: Option<IndirectSelection>,
    /// dbt must list at least one node (guards against a table of empty answers).
    nonempty: bool,
    /// `--selector NAME` for dbt.
    selector: Option<&'static str>,
    /// What fhirflow is given instead of `select`/`exclude`, when that differs from dbt's.
    ours: Option<(Vec<&'static str>, Vec<&'static str>)>,
}

/// `--select` arguments (one string each), `--exclude` after a lone `--exclude` marker.
fn case(args: &[&'static str]) -> Case {
    let split = args.iter().position(|a| *a == "--exclude").unwrap_or(args.len());
    Case {
        select: args[..split].to_vec(),
        exclude: args.get(split + 1..).map(<[_]>::to_vec).unwrap_or_default(),
        indirect: None,
        nonempty: true,
        selector: None,
        ours: None,
    }
}

/// `dbt ls --selector NAME`, against fhirflow's `selector:NAME`.
fn selector(name: &'static str) -> Case {
    Case { selector: Some(name), ours: Some((vec![format!("selector:{name}").leak()], Vec::new())), ..case(&[]) }
}

impl Case {
    fn indirect(mut self, mode: IndirectSelection) -> Case {
        self.indirect = Some(mode);
        self
    }
    fn may_be_empty(mut self) -> Case {
        self.nonempty = false;
        self
    }
    fn describe(&self) -> String {
        let mut text = String::from("dbt ls");
        for (flag, args) in [("--select", &self.select), ("--exclude", &self.exclude)] {
            if !args.is_empty() {
                text.push(' ');
                text.push_str(flag);
                for arg in args {
                    text.push_str(&format!(" {arg:?}"));
                }
            }
        }
        if let Some(mode) = self.indirect {
            text.push_str(&format!(" --indirect-selection {}", mode_name(mode)));
        }
        if let Some(name) = self.selector {
            text.push_str(&format!(" --selector {name}"));
        }
        if let Some((select, exclude)) = &self.ours {
            text.push_str(&format!(" (fhirflow: --select {select:?} --exclude {exclude:?})"));
        }
        text
    }
}

fn mode_name(mode: IndirectSelection) -> &'static str {
    match mode {
        IndirectSelection::Eager => "eager",
        IndirectSelection::Cautious => "cautious",
        IndirectSelection::Buildable => "buildable",
        IndirectSelection::Empty => "empty",
    }
}

/// The dbt environment: no usage stats, the DuckDB file in `work`, and none of the caller's
/// `DBT_*` settings that change where dbt writes or how it prints.
fn dbt_env(command: &mut Command, work: &Path) {
    for var in [
        "DBT_QUIET",
        "DBT_LOG_FORMAT",
        "DBT_LOG_LEVEL",
        "DBT_PRINT",
        "DBT_TARGET_PATH",
        "DBT_LOG_PATH",
        "DBT_PROJECT_DIR",
        "DBT_PROFILES_DIR",
        "DBT_INDIRECT_SELECTION",
        "DBT_SELECTOR",
        "DBT_SELECT",
        "DBT_EXCLUDE",
        "DBT_RESOURCE_TYPES",
    ] {
        command.env_remove(var);
    }
    command
        .env("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
        .env("DBT_DUCKDB_PATH", work.join("check.duckdb"))
        .current_dir(work);
}

/// What dbt listed for each case: `Ok(ids)` or `Err(dbt's error)`.
fn dbt_ls_all(dbt: &Path, project: &Path, work: &Path, cases: &[Case]) -> Vec<Result<BTreeSet<String>, String>> {
    let json_cases: Vec<serde_json::Value> = cases
        .iter()
        .map(|c| {
            serde_json::json!({
                "select": c.select, "exclude": c.exclude, "resource_types": TASK_TYPES,
                "indirect": c.indirect.map(mode_name), "selector": c.selector,
            })
        })
        .collect();
    let cases_path = work.join("cases.json");
    let out_path = work.join("results.json");
    std::fs::write(&cases_path, serde_json::Value::from(json_cases).to_string()).unwrap();
    let mut command = Command::new(dbt.join("bin/python"));
    command.arg("-c").arg(DBT_LS_MANY).arg(project).arg(work).arg(&cases_path).arg(&out_path);
    dbt_env(&mut command, work);
    let started = Instant::now();
    let output = command.output().expect("python starts");
    assert!(
        output.status.success(),
        "dbt failed ({})\n--- stdout\n{}\n--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let doc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&out_path).unwrap()).unwrap();
    eprintln!(
        "dbt: parse {:.1}s, {} x ls, {:.1}s in all",
        doc["parse_seconds"].as_f64().unwrap_or_default(),
        cases.len(),
        started.elapsed().as_secs_f64()
    );
    doc["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| match r.get("ids") {
            Some(ids) => Ok(ids.as_array().unwrap().iter().map(|i| i.as_str().unwrap().to_owned()).collect()),
            None => Err(r["error"].as_str().unwrap_or("?").to_owned()),
        })
        .collect()
}

/// `dbt ls` through the CLI, reading its results from the JSON log's `PrintEvent` records (as
/// tests/conformance/dbt_check.py does), so that log lines are never mistaken for results.
fn dbt_ls_cli(dbt: &Path, project: &Path, work: &Path, case: &Case) -> BTreeSet<String> {
    let mut command = Command::new(dbt.join("bin/dbt"));
    command.args(["--no-use-colors", "--log-format", "json", "--log-level", "info", "--no-quiet", "ls"]);
    command.arg("--project-dir").arg(project).arg("--profiles-dir").arg(project);
    command.arg("--target-path").arg(work.join("target")).arg("--log-path").arg(work.join("logs"));
    command.args(["--output", "json", "--output-keys", "unique_id"]);
    for t in TASK_TYPES {
        command.args(["--resource-type", t]);
    }
    if !case.select.is_empty() {
        command.arg("--select").args(&case.select);
    }
    if !case.exclude.is_empty() {
        command.arg("--exclude").args(&case.exclude);
    }
    dbt_env(&mut command, work);
    let output = command.output().expect("dbt starts");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{command:?} failed\n{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        // dbt-core 1.7 names the event ListCmdOut.
        .filter(|event| event["info"]["name"] == "PrintEvent" || event["info"]["name"] == "ListCmdOut")
        .map(|event| {
            let msg = event["data"]["msg"].as_str().or(event["info"]["msg"].as_str()).unwrap_or_default();
            let node: serde_json::Value = serde_json::from_str(msg).expect("ls prints JSON");
            node["unique_id"].as_str().unwrap().to_owned()
        })
        .collect()
}

/// Parses the project with dbt, runs every case through `dbt ls` and through fhirflow, and
/// fails with every difference.
fn check(dbt: &Path, project: &Path, work: &Path, cases: &[Case]) {
    check_version(dbt, project, work, cases, &DbtVersion::default());
}

/// [`check`] with a dbt-core that `version` admits.
fn check_version(dbt: &Path, project: &Path, work: &Path, cases: &[Case], version: &DbtVersion) {
    let listed = dbt_ls_all(dbt, project, work, cases);
    let path = work.join("target/manifest.json");
    let text = std::fs::read_to_string(&path).expect("dbt wrote manifest.json");
    let started = Instant::now();
    let manifest =
        Manifest::from_json_for(&text, &path.display().to_string(), version).expect("fhirflow reads dbt's manifest");
    let selectors =
        read_selectors(project).unwrap_or_else(|ds| panic!("{:?}", ds.iter().map(|d| d.render()).collect::<Vec<_>>()));
    eprintln!(
        "Manifest::from_json: {} bytes, {} nodes, {:.2} ms",
        text.len(),
        manifest.nodes().count(),
        started.elapsed().as_secs_f64() * 1000.0
    );
    let mut problems = Vec::new();
    for (case, dbt_says) in cases.iter().zip(listed) {
        let (select, exclude) = case.ours.clone().unwrap_or_else(|| (case.select.clone(), case.exclude.clone()));
        let ours = manifest.select_in(&select, &exclude, case.indirect.unwrap_or_default(), &selectors);
        match (dbt_says, ours) {
            (Ok(want), Ok(got)) => {
                if want != got {
                    let missing: Vec<&String> = want.difference(&got).collect();
                    let extra: Vec<&String> = got.difference(&want).collect();
                    problems.push(format!(
                        "{}: dbt lists {} nodes, fhirflow {}\n    missing: {missing:?}\n    extra:   {extra:?}",
                        case.describe(),
                        want.len(),
                        got.len()
                    ));
                } else if case.nonempty && want.is_empty() {
                    problems.push(format!("{}: dbt lists nothing; the case tests nothing", case.describe()));
                } else {
                    eprintln!("ok  {:>3} nodes  {}", want.len(), case.describe());
                }
            }
            (Err(dbt_error), Err(ours)) => {
                eprintln!("ok  error      {}\n      dbt: {dbt_error}\n      fhirflow: {ours}", case.describe())
            }
            (Err(dbt_error), Ok(got)) => problems.push(format!(
                "{}: dbt fails ({dbt_error}) but fhirflow selects {} nodes",
                case.describe(),
                got.len()
            )),
            (Ok(want), Err(ours)) => {
                problems.push(format!("{}: dbt lists {} nodes but fhirflow fails: {ours}", case.describe(), want.len()))
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{} of {} cases differ from dbt ls:\n{}",
        problems.len(),
        cases.len(),
        problems.join("\n")
    );
    // The in-process runs are the CLI's: one case through `dbt ls` itself.
    let probe = &cases[1];
    assert_eq!(
        dbt_ls_cli(dbt, project, work, probe),
        manifest.select_in(&probe.select, &probe.exclude, IndirectSelection::Eager, &selectors).unwrap(),
        "{} through the CLI",
        probe.describe()
    );
}

/// A copy of the FHIR fixture project with the properties YAML `fhirflow apply` writes (layer
/// tags under `config:`, column tests); returns (temp dir, project dir).
fn fhir_project() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("dbt");
    copy_dir(&repo().join("tests/fixtures/dbt_fhir"), &project);
    fhirflow().arg("apply").arg(repo().join("pipelines/fhir.yaml")).arg("--out").arg(dir.path()).assert().success();
    assert!(project.join("models/staging/staging_models.yml").is_file());
    std::fs::create_dir_all(dir.path().join("work")).unwrap();
    (dir, project)
}

#[test]
fn fhir_selection_matches_dbt_ls() {
    let Some(dbt) = venv("FHIRFLOW_DBT_VENV") else {
        return;
    };
    let (dir, project) = fhir_project();
    use IndirectSelection::*;
    let cases = vec![
        case(&[]),
        case(&["tag:staging"]),
        case(&["+tag:intermediate"]),
        case(&["tag:marts+"]),
        case(&["@int_reference_map"]),
        case(&["path:models/marts"]),
        case(&["models/marts"]),
        case(&["path:models/intermediate/int_*.sql"]),
        case(&["path:models/marts/marts_models.yml"]),
        case(&["fqn:fhir.staging.*"]),
        case(&["staging.*"]),
        case(&["staging"]),
        case(&["stg_patients"]),
        case(&["fhir.marts.fct_encounters"]),
        case(&["fct_*"]),
        case(&["2+fct_encounters"]),
        case(&["stg_patients+1"]),
        case(&["1+int_claims_enriched+1"]),
        case(&["@tag:intermediate"]),
        case(&["tag:staging,resource_type:model"]),
        case(&["tag:intermediate,+fct_observations"]),
        case(&["tag:staging tag:marts"]),
        case(&["tag:staging", "tag:marts"]),
        case(&["tag:mar*"]),
        case(&["tag:marts", "--exclude", "fct_encounters"]),
        case(&["--exclude", "tag:staging"]),
        case(&["+fct_encounters", "--exclude", "tag:staging", "dim_patients"]),
        case(&["tag:marts", "--exclude", "resource_type:test"]),
        case(&["resource_type:test"]),
        case(&["resource_type:model"]),
        case(&["config.materialized:table"]),
        case(&["config.materialized:view,+fct_observations"]),
        case(&["test_type:generic"]),
        case(&["test_name:unique"]),
        case(&["unique_dim_patients_patient_id"]),
        case(&["file:dim_patients.sql"]),
        case(&["dim_patients.sql"]),
        case(&["package:fhir"]),
        case(&["package:this,tag:intermediate"]),
        case(&["dim_patients"]).indirect(Cautious),
        case(&["fct_encounters"]).indirect(Buildable),
        case(&["tag:marts"]).indirect(IndirectSelection::Empty),
        case(&["tag:marts", "--exclude", "fct_medications"]).indirect(Cautious),
        case(&["nothing_by_this_name"]).may_be_empty(),
        case(&["foo:bar"]),
        case(&["@stg_patients+"]),
        case(&["resource_type:models"]),
    ];
    check(&dbt, &project, &dir.path().join("work"), &cases);
}

/// Files added to the FHIR project to reach what it lacks: seeds, a YAML snapshot, sources
/// with tags and a test, an ephemeral model, a versioned model, a nested folder, a Python
/// model, an empty model, a disabled model, tests with two parents (relationships, singular),
/// column and folder tags, a warn-severity test, meta, an analysis, an exposure, a unit test.
const EXTRAS: &[(&str, &str)] = &[
    ("seeds/seed_codes.csv", "code,description\na,Alpha\n"),
    (
        "seeds/seeds.yml",
        "version: 2\nseeds:\n  - name: seed_codes\n    config: {tags: [reference]}\n    columns:\n      - name: code\n        data_tests: [unique]\n",
    ),
    (
        "snapshots/snapshots.yml",
        "snapshots:\n  - name: snap_patients\n    relation: ref('stg_patients')\n    config:\n      unique_key: patient_id\n      strategy: check\n      check_cols: all\n      tags: [snapshots]\n",
    ),
    (
        "models/staging/sources.yml",
        "version: 2\nsources:\n  - name: raw\n    tags: [raw_data]\n    tables:\n      - name: patients\n        tags: [pii]\n        columns:\n          - name: id\n            data_tests: [not_null]\n      - name: codes\n",
    ),
    (
        "models/staging/stg_raw_patients.sql",
        "{{ config(tags=['staging', 'from_source']) }}\nselect * from {{ source('raw', 'patients') }}\n",
    ),
    ("models/staging/stg_empty.sql", ""),
    (
        "models/intermediate/int_codes_ephemeral.sql",
        "{{ config(materialized='ephemeral') }}\nselect * from {{ ref('seed_codes') }}\n",
    ),
    ("models/marts/dim_codes_v1.sql", "select * from {{ ref('int_codes_ephemeral') }}\n"),
    ("models/marts/dim_codes_v2.sql", "select *, 1 as extra from {{ ref('int_codes_ephemeral') }}\n"),
    (
        "models/marts/finance/fct_patient_codes.sql",
        "{{ config(meta={'owner': 'alice'}, tags=['finance']) }}\nselect p.patient_id, c.code\nfrom {{ ref('dim_patients') }} as p\ncross join {{ ref('dim_codes') }} as c\ncross join {{ ref('stg_raw_patients') }} as r\n",
    ),
    (
        "models/marts/finance/finance.yml",
        r#"version: 2
models:
  - name: dim_codes
    latest_version: 1
    versions:
      - v: 1
      - v: 2
    columns:
      - name: code
        data_tests: [not_null]
  - name: fct_patient_codes
    columns:
      - name: patient_id
        tags: [pk_cols]
        data_tests:
          - relationships:
              arguments: {to: ref('dim_patients'), field: patient_id}
          - not_null:
              config: {severity: warn, tags: [critical]}
      - name: code
        data_tests:
          - relationships:
              arguments: {to: ref('stg_raw_patients'), field: id}
unit_tests:
  - name: test_patient_codes
    model: fct_patient_codes
    given:
      - input: ref('dim_patients')
        rows: [{patient_id: p1}]
      - input: ref('dim_codes')
        rows: [{code: a}]
      - input: ref('stg_raw_patients')
        rows: [{id: p1}]
    expect:
      rows: [{patient_id: p1, code: a}]
exposures:
  - name: weekly_report
    type: dashboard
    owner: {name: Ana, email: ana@example.com}
    tags: [exposed]
    depends_on: [ref('fct_encounters'), ref('stg_devices')]
"#,
    ),
    (
        "models/marts/py_model.py",
        "def model(dbt, session):\n    dbt.config(materialized=\"table\", tags=[\"python\"])\n    return dbt.ref(\"dim_patients\")\n",
    ),
    ("models/marts/fct_disabled.sql", "{{ config(enabled=false) }}\nselect * from {{ ref('stg_patients') }}\n"),
    (
        "tests/assert_encounters_have_patients.sql",
        "{{ config(tags=['audit']) }}\nselect * from {{ ref('fct_encounters') }} e\nleft join {{ ref('dim_patients') }} p using (patient_id)\nwhere p.patient_id is null\n",
    ),
    ("analyses/patient_report.sql", "select * from {{ ref('stg_patients') }} join {{ ref('stg_payers') }} on true\n"),
];

/// Folder-level tags for seeds and data tests, appended to dbt_project.yml.
const EXTRA_PROJECT_CONFIG: &str = "\nseeds:\n  fhir:\n    +tags: [seeded]\ndata_tests:\n  fhir:\n    +tags: [dq]\n";

#[test]
fn fhir_with_every_kind_of_node_matches_dbt_ls() {
    let Some(dbt) = venv("FHIRFLOW_DBT_VENV") else {
        return;
    };
    let (dir, project) = fhir_project();
    for (path, text) in EXTRAS {
        let path = project.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    let dbt_project = project.join("dbt_project.yml");
    let mut text = std::fs::read_to_string(&dbt_project).unwrap();
    text.push_str(EXTRA_PROJECT_CONFIG);
    std::fs::write(&dbt_project, text).unwrap();
    use IndirectSelection::*;
    let cases = vec![
        case(&[]),
        case(&["tag:staging"]),
        case(&["tag:raw_data"]),
        case(&["tag:pii+"]),
        case(&["tag:pk_cols"]),
        case(&["tag:dq", "--exclude", "tag:critical"]),
        case(&["tag:seeded"]),
        case(&["tag:audit"]),
        case(&["tag:exposed"]).may_be_empty(),
        case(&["+tag:exposed"]),
        case(&["source:raw"]),
        case(&["source:raw.patients+"]),
        case(&["source:fhir.raw.*"]),
        case(&["+fct_patient_codes"]),
        case(&["fct_patient_codes+"]),
        case(&["@stg_patients"]),
        case(&["@stg_devices"]),
        case(&["@patient_report"]),
        case(&["+exposure:weekly_report"]),
        case(&["@exposure:weekly_report"]),
        case(&["1+int_codes_ephemeral+1"]),
        case(&["seed_codes+"]),
        case(&["resource_type:seed"]),
        case(&["resource_type:snapshot"]),
        case(&["resource_type:analysis"]).may_be_empty(),
        case(&["resource_type:source+"]),
        case(&["resource_type:unit_test"]).may_be_empty(),
        case(&["+resource_type:unit_test"]),
        case(&["dim_codes"]),
        case(&["dim_codes.v2"]),
        case(&["dim_codes_v1"]),
        // A dotted fqn must start at the package or the first folder.
        case(&["dim_codes.*"]).may_be_empty(),
        case(&["marts.dim_codes.*"]),
        case(&["version:latest"]),
        case(&["version:old"]).may_be_empty(),
        case(&["version:prerelease"]),
        case(&["version:none,tag:marts"]),
        case(&["marts"]),
        case(&["marts.finance"]),
        case(&["fhir.marts.finance.*"]),
        case(&["*codes*"]),
        case(&["fqn:*"]),
        case(&["py_model.py"]),
        case(&["file:py_model"]),
        case(&["seed_codes.csv"]),
        case(&["file:*.yml"]),
        case(&["path:seeds"]),
        case(&["path:snapshots"]),
        case(&["path:tests"]),
        case(&["path:analyses"]).may_be_empty(),
        case(&["path:models/marts/finance/finance.yml"]),
        case(&["path:models/staging/sources.yml"]),
        case(&["path:models/**/finance"]),
        case(&["path:**/*.py"]),
        case(&["path:**"]),
        case(&["path:models/marts/"]),
        case(&["path:models/marts/dim_codes_v1.sql/"]).may_be_empty(),
        case(&["path:models/*/fct_*"]),
        case(&["config.severity:WARN"]),
        case(&["config.severity:error,tag:critical"]).may_be_empty(),
        case(&["config.meta.owner:alice"]),
        case(&["config.materialized:ephemeral"]),
        case(&["config.materialized:ephemeral+"]),
        case(&["config.tags:dq,config.enabled:TRUE"]),
        case(&["config.tags:pk_cols"]).may_be_empty(),
        case(&["test_type:singular"]),
        case(&["test_type:generic,tag:marts"]),
        case(&["test_type:data"]),
        case(&["test_type:a"]),
        case(&["test_type:unit"]).may_be_empty(),
        case(&["test_name:relationships"]),
        case(&["test_name:not_*"]),
        case(&["unit_test:test_patient_codes"]).may_be_empty(),
        case(&["access:protected,tag:finance"]),
        case(&["stg_empty"]),
        case(&["tag:marts,config.materialized:table", "--exclude", "fct_patient_codes+"]),
        case(&["fct_patient_codes"]).indirect(Cautious),
        case(&["fct_patient_codes dim_patients"]).indirect(Cautious),
        case(&["fct_patient_codes,tag:finance dim_patients"]).indirect(Cautious),
        case(&["fct_patient_codes"]).indirect(Buildable),
        case(&["stg_raw_patients"]).indirect(Buildable),
        case(&["+fct_patient_codes"]).indirect(IndirectSelection::Empty),
        case(&["tag:marts", "--exclude", "dim_patients"]).indirect(Cautious),
        case(&["source:a.b.c.d"]),
        case(&["test_type:zzz"]),
        case(&["version:newest"]),
        case(&["state:modified"]),
        case(&["path:models/a**"]),
    ];
    check(&dbt, &project, &dir.path().join("work"), &cases);
}

#[test]
fn dental_selection_matches_dbt_ls() {
    let Some(dbt) = venv("FHIRFLOW_DBT_VENV") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("examples/dental_clinic/dbt_dental_clinic_prod");
    copy_dir(&repo().join("tests/fixtures/dbt_dental"), &project);
    fhirflow()
        .arg("apply")
        .arg(repo().join("pipelines/dental_clinic.yaml"))
        .arg("--out")
        .arg(dir.path())
        .assert()
        .success();
    assert!(project.join("models/staging/staging_models.yml").is_file(), "apply wrote the dental project's YAML");
    std::fs::create_dir_all(dir.path().join("work")).unwrap();
    let cases = vec![
        case(&[]),
        case(&["tag:staging"]),
        case(&["+fct_revenue"]),
        case(&["int_patient_visits+"]),
        case(&["path:models/staging"]),
        case(&["@stg_patients"]),
        case(&["tag:marts", "--exclude", "dim_patients"]),
        case(&["dbt_dental_clinic_prod.intermediate.*"]),
    ];
    check(&dbt, &project, &dir.path().join("work"), &cases);
}

/// The project with its own `selectors.yml` and an installed local package, on one dbt-core:
/// every selector through `--selector` against fhirflow's `selector:NAME`, the default
/// selector, `path:` against the package's nodes, and each selector's command-line form
/// (what fhirflow writes into Airflow commands) against `--selector`.
fn selectors_and_packages_match_dbt_ls(venv_var: &str, version: &str) {
    let Some(dbt) = venv(venv_var) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("hospital");
    copy_dir(&repo().join("tests/fixtures/dbt_selectors"), &project);
    std::fs::create_dir_all(dir.path().join("work")).unwrap();
    let selectors = read_selectors(&project).unwrap_or_else(|ds| panic!("{}", ds[0].render()));
    let names: Vec<&'static str> = selectors.names().map(|n| &*n.to_owned().leak()).collect();
    let mut cases = vec![
        // No --select, --exclude or --selector: dbt uses the `default: true` selector.
        case(&[]),
        case(&["tag:staging"]),
        case(&["--exclude", "tag:wip"]),
        case(&["package:fhir_common"]),
        // dbt-core 1.7 has no `this` alias: a package named "this".
        case(&["package:this"]).may_be_empty(),
        case(&["tag:common+"]),
        case(&["fhir_common.common.*"]),
        case(&["path:models/staging"]),
        case(&["path:models"]),
        case(&["path:models/*"]),
        case(&["path:models/**/*.sql"]),
        case(&["path:models/**"]),
        case(&["path:**/*.yml"]),
        case(&["path:models/common"]).may_be_empty(),
        case(&["path:models/staging/stg_units.sql"]).may_be_empty(),
        case(&["path:models/staging/_units.yml"]).may_be_empty(),
        case(&["path:dbt_packages/fhir_common/models"]).may_be_empty(),
        case(&["path:vendor/fhir_common/models"]).may_be_empty(),
        case(&["path:seeds"]),
        case(&["path:tests"]),
        case(&["+path:models/marts"]),
        selector("nope"),
    ];
    for name in &names {
        cases.push(selector(name));
    }
    // `selector:NAME` combined with other selection, against what dbt is given for it.
    let combined = |dbt_side: &[&'static str], ours: &[&'static str]| {
        let mut c = case(dbt_side);
        let fhirflow = case(ours);
        c.ours = Some((fhirflow.select, fhirflow.exclude));
        c
    };
    cases.push(combined(&["tag:staging,resource_type:model"], &["selector:staging_only,resource_type:model"]));
    cases.push(combined(&["tag:staging", "package:fhir_common"], &["selector:staging_only", "package:fhir_common"]));
    cases.push(combined(
        &["tag:marts", "--exclude", "tag:staging"],
        &["tag:marts", "--exclude", "selector:staging_only"],
    ));
    // Each selector's command-line form selects what `--selector` does.
    for name in &names {
        let Some(line) = selectors.get(name).and_then(|s| s.command_line()) else { continue };
        let mut c = case(&[]);
        c.select = line.select.into_iter().map(|s| &*s.leak()).collect();
        c.exclude = line.exclude.into_iter().map(|s| &*s.leak()).collect();
        c.ours = Some((vec![format!("selector:{name}").leak()], Vec::new()));
        cases.push(c);
    }
    let range = DbtVersion::parse(version).unwrap();
    check_version(&dbt, &project, &dir.path().join("work"), &cases, &range);
    modes_build_what_dbt_builds(dir.path(), version, &listed_default(&dbt, &project, dir.path()));
}

/// What `dbt ls` lists with no selection (the default selector's nodes), from the last run.
fn listed_default(dbt: &Path, project: &Path, root: &Path) -> BTreeSet<String> {
    let work = root.join("work-default");
    std::fs::create_dir_all(&work).unwrap();
    let listed = dbt_ls_all(dbt, project, &work, &[case(&[])]);
    listed.into_iter().next().unwrap().expect("dbt ls lists the default selection")
}

/// A spec over the project: `per_model` with no selection builds the nodes a plain `dbt build`
/// builds (the default selector's), and `selector:NAME` becomes `--selector NAME` or the
/// selector's `--select`/`--exclude` form on the command line.
fn modes_build_what_dbt_builds(root: &Path, version: &str, default: &BTreeSet<String>) {
    let spec = format!(
        r#"version: 1
dbt:
  project_dir: hospital
  manifest: work/target/manifest.json
  version: "{version}"
pipelines:
  p:
    stages:
      every: {{kind: dbt, command: build, dbt_mode: per_model, group_by: none}}
      whole: {{kind: dbt, command: build, dbt_mode: single}}
      named: {{kind: dbt, command: build, dbt_mode: single, select: ["selector:marts_upstream"]}}
      narrowed: {{kind: dbt, command: build, dbt_mode: single, select: ["selector:staging_only,resource_type:model"], exclude: [stg_visits]}}
      steps:
        kind: dbt
        command: run
        dbt_mode: layered
        layers: [{{name: staging, select: ["selector:staging_only"]}}, {{name: rest, select: ["selector:package_models", "tag:marts"]}}]
"#
    );
    let path = root.join("spec.yaml");
    std::fs::write(&path, spec).unwrap();
    let compiled = fhirflow::compile_file(&path).unwrap_or_else(|e| panic!("{e}"));
    let p = compiled.graph.pipeline("p").unwrap();
    // The literal words of a task's dbt command line (paths left out).
    let words = |task: &fhirflow::graph::Task| -> Vec<String> {
        let fhirflow::graph::Operation::Dbt(inv) = &task.operation else { return Vec::new() };
        inv.args
            .iter()
            .filter_map(|a| match a {
                fhirflow::graph::DbtArg::Literal(s) => Some(s.clone()),
                _ => None,
            })
            .collect()
    };
    let line = |id: &str| -> String {
        let task =
            p.task(id).unwrap_or_else(|| panic!("{id} in {:?}", p.tasks.iter().map(|t| &t.id).collect::<Vec<_>>()));
        words(task).join(" ")
    };
    // Each per-model task selects one node (or, for tests, their names) by name.
    let mut names = BTreeSet::new();
    for task in p.tasks.iter().filter(|t| t.stage.as_str() == "every") {
        {
            let words = words(task);
            if let Some(at) = words.iter().position(|w| w == "--select") {
                names.extend(words[at + 1..].iter().take_while(|w| !w.starts_with("--")).cloned());
            }
        }
    }
    let want: BTreeSet<String> = default.iter().map(|id| id.split('.').nth(2).unwrap().to_owned()).collect();
    assert_eq!(names, want, "per_model with no select builds the default selector's nodes");
    assert_eq!(line("whole"), "build --project-dir --profiles-dir");
    assert_eq!(line("named"), "build --project-dir --profiles-dir --selector marts_upstream");
    assert_eq!(
        line("narrowed"),
        "build --project-dir --profiles-dir --select tag:staging,resource_type:model --exclude stg_visits"
    );
    assert_eq!(line("steps_staging"), "run --project-dir --profiles-dir --selector staging_only");
    assert_eq!(line("steps_rest"), "run --project-dir --profiles-dir --select package:fhir_common tag:marts");
}

#[test]
fn selectors_and_packages_match_dbt_ls_1_11() {
    selectors_and_packages_match_dbt_ls("FHIRFLOW_DBT_VENV", "1.11");
}

#[test]
fn selectors_and_packages_match_dbt_ls_1_7() {
    selectors_and_packages_match_dbt_ls("FHIRFLOW_DBT17_VENV", "1.7");
}

#[test]
fn selectors_and_packages_match_dbt_ls_1_12() {
    selectors_and_packages_match_dbt_ls("FHIRFLOW_DBT112_VENV", "1.12");
}

/// Times `Manifest::from_json` on a manifest scaled up to about 10,000 nodes:
/// `FHIRFLOW_TIME_MANIFEST=target/manifest.json cargo test --release --test dbt_select -- --ignored`.
#[test]
#[ignore = "a timing, run by hand"]
fn time_from_json() {
    let Some(path) = std::env::var_os("FHIRFLOW_TIME_MANIFEST") else {
        eprintln!("set FHIRFLOW_TIME_MANIFEST to a manifest.json");
        return;
    };
    let text = std::fs::read_to_string(&path).unwrap();
    // The best of 5 runs of parsing (the drop is timed apart).
    let time = |text: &str| {
        let mut best = f64::MAX;
        let mut drop = f64::MAX;
        for _ in 0..5 {
            let started = Instant::now();
            let manifest = std::hint::black_box(Manifest::from_json(text, "m").unwrap());
            best = best.min(started.elapsed().as_secs_f64() * 1000.0);
            let started = Instant::now();
            std::mem::drop(manifest);
            drop = drop.min(started.elapsed().as_secs_f64() * 1000.0);
        }
        format!("{best:.2} ms (then {drop:.2} ms to free it)")
    };
    let manifest = Manifest::from_json(&text, "m").unwrap();
    eprintln!("{} bytes, {} nodes: {}", text.len(), manifest.nodes().count(), time(&text));
    // Copies of every node (and source), each copy depending on its own copies.
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    let copies = 10_000 / doc["nodes"].as_object().unwrap().len().max(1) + 1;
    let mut scaled = doc.clone();
    for section in ["exposures", "metrics", "semantic_models", "saved_queries", "unit_tests", "functions"] {
        scaled[section] = serde_json::json!({});
    }
    for section in ["nodes", "sources"] {
        let mut all = serde_json::Map::new();
        for copy in 0..copies {
            for (id, node) in doc[section].as_object().unwrap() {
                let rename = |id: &str| format!("{id}_{copy}");
                let mut node = node.clone();
                node["unique_id"] = rename(id).into();
                node["name"] = format!("{}_{copy}", node["name"].as_str().unwrap()).into();
                if let Some(deps) = node.pointer_mut("/depends_on/nodes").and_then(|d| d.as_array_mut()) {
                    for dep in deps {
                        *dep = rename(dep.as_str().unwrap()).into();
                    }
                }
                if node.get("attached_node").is_some_and(|a| a.is_string()) {
                    node["attached_node"] = rename(node["attached_node"].as_str().unwrap()).into();
                }
                all.insert(rename(id), node);
            }
        }
        scaled[section] = all.into();
    }
    let scaled = scaled.to_string();
    let big = Manifest::from_json(&scaled, "m").unwrap();
    eprintln!("{} bytes, {} nodes: {}", scaled.len(), big.nodes().count(), time(&scaled));
    // For scale: the same text only scanned, and read into a serde_json::Value.
    let started = Instant::now();
    std::hint::black_box(serde_json::from_str::<serde::de::IgnoredAny>(&scaled).unwrap());
    eprintln!("  scan only (IgnoredAny): {:.2} ms", started.elapsed().as_secs_f64() * 1000.0);
    let started = Instant::now();
    std::hint::black_box(serde_json::from_str::<serde_json::Value>(&scaled).unwrap());
    eprintln!("  serde_json::Value: {:.2} ms", started.elapsed().as_secs_f64() * 1000.0);
    let started = Instant::now();
    let selected = big.select(&["+tag:marts"], &["tag:staging"]).unwrap();
    eprintln!(
        "select +tag:marts --exclude tag:staging: {} nodes, {:.2} ms",
        selected.len(),
        started.elapsed().as_secs_f64() * 1000.0
    );
}
