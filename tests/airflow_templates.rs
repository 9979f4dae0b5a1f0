//! Airflow templating of spec values, checked in real Apache Airflow 3.3 and 2.11: every string
//! field × a handful of hostile payloads is either refused with a located error or loads in a
//! real DagBag and renders, task by task, with `airflow tasks render`'s own code to what
//! `fhirflow run` renders; and a real `airflow dags test` run shows that a `dag_run.conf` value
//! rendered into dbt `--vars` or a shell stage's `env` reaches bash as one quoted word.

mod common;

use chrono::{DateTime, Utc};
use common::{fhirflow, repo, venv};
use fhirflow::run::template::{TemplateValues, render};
use fhirflow::source::SourceFile;
use serde_json::{Value, json};
use std::path::Path;
use std::process::Command;

/// The sweep's payloads: templates Airflow renders, a template Jinja cannot parse, shell
/// metacharacters, names Airflow would read as template files, and Unicode.
const PAYLOADS: &[&str] = &[
    "{{ ds }}",
    "{% if true %}x{% endif %} {# note #}",
    "{# unclosed",
    "it's \"q\" $(touch /tmp/fhirflow-pwned) `touch /tmp/fhirflow-pwned`",
    "run.sh",
    "x.env",
    "q.sql",
    "é€😀\u{2028}",
];

/// Fields whose values Airflow renders on purpose: every payload but unparsable Jinja compiles.
const TEMPLATED: &[&str] = &["command", "env", "vars", "conf", "docker_env", "k8s_env"];

/// The spec of one sweep case: the defaults, with `field` set to `value` (YAML text).
fn sweep_spec(n: usize, version: u32, field: &str, value: &str) -> String {
    let v = |name: &str, default: &str| if name == field { value.to_owned() } else { default.to_owned() };
    let artifacts = if field == "artifacts" { format!("  artifacts: {{s3: {value}}}\n") } else { String::new() };
    format!(
        "version: 1\nairflow: {{version: {version}}}\n\
         defaults: {{retries: 1, owner: {owner}, email: [{email}]}}\n\
         connections:\n  lake: {{type: s3, bucket: lake-bucket}}\n  wh: {{type: snowflake}}\n\
         dbt:\n  project_dir: {project_dir}\n  deploy: {{project_dir: {deploy}}}\n{artifacts}\
         \x20 docker: {{image: {image}, mounts: [{mount}], env: {{E: {docker_env}}}}}\n\
         \x20 kubernetes: {{image: 'k/dbt:1', env: {{E: {k8s_env}}}}}\n\
         pipelines:\n  c{n}:\n    description: {description}\n    tags: [{tag}]\n    stages:\n\
         \x20     s: {{kind: shell, command: {command}, env: {{V: {env}}}}}\n\
         \x20     d: {{kind: dbt, command: run, select: [{select}], vars: {{v: {vars}}}}}\n\
         \x20     ds: {{kind: dbt, command: run, dbt_mode: single, vars: {{v: {vars}}}}}\n\
         \x20     dk: {{kind: dbt, command: run, select: [{select}], operator: docker}}\n\
         \x20     kp: {{kind: dbt, command: run, operator: kubernetes, vars: {{v: {vars}}}}}\n\
         \x20     t: {{kind: trigger, pipeline: c{n}_t, conf: {{k: {conf}}}}}\n\
         \x20     load: {{kind: copy_into, source: {{connection: lake, prefix: {prefix}}}, target: {{connection: wh, table: {table}, stage: {stage}}}, watermark_table: W}}\n\
         \x20 c{n}_t:\n    stages:\n      x: {{kind: shell, command: echo}}\n",
        owner = v("owner", "data"),
        email = v("email", "a@example.com"),
        project_dir = v("project_dir", "dbt"),
        deploy = v("deploy", "/opt/dbt"),
        image = v("image", "example/dbt:1"),
        mount = v("mount", "'/srv/dbt:/opt/dbt:ro'"),
        docker_env = v("docker_env", "dev"),
        k8s_env = v("k8s_env", "dev"),
        description = v("description", "plain"),
        tag = v("tag", "t"),
        command = v("command", "echo"),
        env = v("env", "e"),
        select = v("select", "tag:x"),
        vars = v("vars", "1"),
        conf = v("conf", "1"),
        prefix = v("prefix", "raw/"),
        table = v("table", "RAW.T"),
        stage = v("stage", "RAW.S"),
    )
}

/// The fields, each with how the payload is written into it (`%` stands for the payload).
const FIELDS: &[(&str, &str)] = &[
    ("owner", "%"),
    ("email", "%"),
    ("project_dir", "%"),
    ("deploy", "/opt/%"),
    ("artifacts", "s3://bucket/%"),
    ("image", "%"),
    ("mount", "/m/%:/c/%"),
    ("docker_env", "%"),
    ("k8s_env", "%"),
    ("description", "%"),
    ("tag", "%"),
    ("command", "%"),
    ("env", "%"),
    ("select", "%"),
    ("vars", "%"),
    ("conf", "%"),
    ("prefix", "%"),
    ("table", "%"),
    ("stage", "%"),
];

/// A string as YAML text that means exactly it (`${` is fhirflow's interpolation).
fn yaml(text: &str) -> String {
    serde_json::to_string(&text.replace("${", "$${")).unwrap()
}

/// What `fhirflow run` renders `text` to, for the logical date the sweep renders with.
fn rendered(text: &str) -> String {
    let date: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
    let values = TemplateValues { logical_date: date, run_id: "r", pipeline: "p", task: "t", try_number: 1 };
    render(text, &values).unwrap_or_else(|e| panic!("fhirflow run cannot render {text:?}: {e}"))
}

/// The checks of one compiled case: where the value must show up once Airflow rendered it.
fn checks(dag: &str, field: &str, value: &str) -> Vec<Value> {
    let prop = |task: &str, property: &str, kind: &str, text: String| json!({"dag": dag, "task": task, "property": property, kind: text});
    let vars = serde_json::to_string(&json!({"v": value})).unwrap();
    let templated = ["{{", "{%", "{#"].iter().any(|o| vars.contains(o));
    match field {
        "owner" => vec![json!({"dag": dag, "task": "s", "attribute": "owner", "equals": value})],
        "email" => vec![json!({"dag": dag, "task": "s", "attribute": "email", "equals": [value]})],
        "description" => vec![json!({"dag": dag, "task": null, "attribute": "description", "equals": value})],
        "tag" => vec![json!({"dag": dag, "task": null, "attribute": "tags", "equals": [value]})],
        "command" => {
            let mut check = prop("s", "bash_command", "contains", rendered(value));
            check["user_code"] = json!(true);
            vec![check]
        }
        "env" => vec![prop("s", "env", "contains_repr", rendered(value))],
        "vars" if templated => vec![
            prop("d", "env", "contains_repr", rendered(&vars)),
            prop("ds", "env", "contains_repr", rendered(&vars)),
            prop("kp", "arguments", "contains_repr", rendered(&vars)),
        ],
        "vars" => vec![prop("d", "bash_command", "contains_word", vars.clone())],
        "conf" => vec![prop("t", "conf", "contains_repr", rendered(value))],
        "docker_env" => vec![prop("dk", "environment", "contains_repr", rendered(value))],
        "image" => vec![prop("dk", "image", "contains", value.to_owned())],
        "mount" => vec![prop("dk", "mounts", "contains_repr", value.split(':').next().unwrap().to_owned())],
        "select" => vec![
            prop("d", "bash_command", "contains_word", value.to_owned()),
            prop("dk", "command", "contains_repr", value.to_owned()),
        ],
        "deploy" => vec![prop("d", "bash_command", "contains_word", value.to_owned())],
        // The rest only have to render (and, in bash, parse).
        _ => Vec::new(),
    }
}

/// Every (field, payload) compiled: the checks of those that compile, written as DAGs under
/// `out`; every refusal must be located.
fn sweep(out: &Path, version: u32) -> Vec<Value> {
    let mut cases = Vec::new();
    let mut n = 0;
    for &(field, shape) in FIELDS {
        for payload in PAYLOADS {
            n += 1;
            let value = shape.replace('%', payload);
            // One name per spec: `apply` removes the files its spec's name generated before.
            let spec = out.join(format!("case{n}.yaml"));
            std::fs::write(&spec, sweep_spec(n, version, field, &yaml(&value))).unwrap();
            match fhirflow::compile(SourceFile::new(
                spec.display().to_string(),
                std::fs::read_to_string(&spec).unwrap(),
            )) {
                Ok(_) => {
                    assert!(!payload.starts_with("{# unclosed") || !TEMPLATED.contains(&field), "{field}: {value:?}");
                    fhirflow().arg("apply").arg(&spec).arg("--out").arg(out).assert().success();
                    cases.extend(checks(&format!("c{n}"), field, &value));
                }
                Err(diagnostics) => {
                    for d in diagnostics.sorted() {
                        assert!(d.primary.is_some(), "{field} = {value:?}: an unlocated {}: {}", d.code, d.summary);
                    }
                    // Templated fields refuse only what Jinja cannot parse.
                    if TEMPLATED.contains(&field) {
                        assert!(
                            payload.starts_with("{# unclosed"),
                            "{field} refuses {value:?}:\n{}",
                            diagnostics.render()
                        );
                        assert!(diagnostics.sorted().iter().all(|d| d.code == "bad-template"));
                    }
                    if ["deploy", "project_dir", "mount"].contains(&field) && payload.contains('{') {
                        assert!(diagnostics.sorted().iter().any(|d| d.code == "template-not-allowed"), "{field}");
                    }
                }
            }
        }
    }
    cases
}

/// A dbt executable that appends its arguments, as JSON, to `$FAKE_DBT_LOG`.
fn fake_dbt(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("fake_dbt");
    std::fs::write(
        &path,
        "#!/usr/bin/env bash\npython3 -c 'import json, sys; print(json.dumps(sys.argv[1:]))' \"$@\" >> \"$FAKE_DBT_LOG\"\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// The conf value the real run renders into `--vars` and `env`: it closes single and double
/// quotes and runs a command, if anything splices it into bash.
fn hostile_conf(pwned: &Path) -> String {
    format!("a'\"; touch {0}; echo \"'$(touch {0})", pwned.display())
}

/// A pipeline whose dbt tasks (plain and scripted) and shell stage take `dag_run.conf.x`.
fn injection_spec(dir: &Path, dbt: &Path, version: u32) -> std::path::PathBuf {
    let spec = dir.join("inject.yaml");
    let conf = "{{ dag_run.conf.get('x', '') }}";
    std::fs::write(
        &spec,
        format!(
            "version: 1\nairflow: {{version: {version}}}\ndbt:\n  project_dir: dbt\n  executable: {}\n\
             pipelines:\n  inject:\n    stages:\n\
             \x20     d: {{kind: dbt, command: run, vars: {{x: \"{conf}\"}}, retries: 0}}\n\
             \x20     ds: {{kind: dbt, command: run, dbt_mode: single, vars: {{x: \"{conf}\"}}, retries: 0, after: [d]}}\n\
             \x20     s: {{kind: shell, command: 'printf %s \"$V\" > \"$OUT\"', env: {{V: \"{conf}\", OUT: {}}}, after: [ds]}}\n",
            dbt.display(),
            dir.join("shell.out").display()
        ),
    )
    .unwrap();
    spec
}

fn run_airflow(venv: &Path, dags: &Path, cases: &Path, conf: &str, fake_log: &Path) {
    let output = Command::new("bash")
        .arg(repo().join("tests/conformance/airflow_dags_test.sh"))
        .arg(venv)
        .arg(dags)
        .arg("inject")
        .arg("")
        .env("FHIRFLOW_RENDER_CASES", cases)
        .env("FHIRFLOW_DAGS_TEST_CONF", conf)
        .env("FAKE_DBT_LOG", fake_log)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let tail: String =
        stderr.lines().rev().take(80).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n");
    assert!(output.status.success(), "{}\n--- stdout\n{stdout}\n--- stderr (tail)\n{tail}", output.status);
    println!("{stdout}{tail}");
}

/// Sweeps the fields in `venv`'s Airflow (files for Airflow `version`), then runs the injection pipeline
/// there for real with a hostile `dag_run.conf`.
fn sweep_and_run(venv: &Path, version: u32) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let mut cases = sweep(&out, version);
    assert!(cases.len() > 40, "only {} checks: most cases were refused", cases.len());
    let dbt = fake_dbt(dir.path());
    let spec = injection_spec(dir.path(), &dbt, version);
    fhirflow().arg("apply").arg(&spec).arg("--out").arg(&out).assert().success();
    let pwned = dir.path().join("pwned");
    let conf = hostile_conf(&pwned);
    // `tasks render` renders with an empty conf.
    cases.push(json!({"dag": "inject", "task": "d", "property": "env", "contains_repr": r#"{"x":""}"#}));
    let cases_path = dir.path().join("cases.json");
    std::fs::write(&cases_path, serde_json::to_string(&cases).unwrap()).unwrap();
    let log = dir.path().join("dbt.log");
    run_airflow(venv, &out.join("dags"), &cases_path, &serde_json::to_string(&json!({"x": conf})).unwrap(), &log);
    // Each dbt call got the rendered --vars as one word, and bash ran nothing from it.
    let want = serde_json::to_string(&json!({"x": "CONF"})).unwrap().replace("CONF", &conf);
    let calls: Vec<Vec<String>> =
        std::fs::read_to_string(&log).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let runs: Vec<&Vec<String>> = calls.iter().filter(|c| c[0] == "run").collect();
    assert_eq!(runs.len(), 2, "{calls:?}");
    for call in runs {
        let at = call.iter().position(|w| w == "--vars").expect("--vars");
        assert_eq!(call[at + 1], want, "{call:?}");
    }
    assert!(calls.iter().any(|c| c[0] == "deps"), "the single-mode task ran deps first: {calls:?}");
    assert_eq!(std::fs::read_to_string(dir.path().join("shell.out")).unwrap(), conf);
    assert!(!pwned.exists(), "a rendered conf value ran as a command");
    assert!(!Path::new("/tmp/fhirflow-pwned").exists());
}

#[test]
fn hostile_strings_render_in_airflow_3_and_a_conf_value_never_reaches_bash_as_code() {
    let Some(airflow) = venv("FHIRFLOW_AIRFLOW_VENV") else { return };
    sweep_and_run(&airflow, 3);
}

#[test]
fn hostile_strings_render_in_airflow_2_and_a_conf_value_never_reaches_bash_as_code() {
    let Some(airflow2) = venv("FHIRFLOW_AIRFLOW2_VENV") else { return };
    sweep_and_run(&airflow2, 2);
}
