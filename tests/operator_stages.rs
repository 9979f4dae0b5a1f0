//! `kind: operator`: a real provider operator (HttpOperator, against an HTTP server on
//! 127.0.0.1) loads in real Airflow 3.3 and 2.11 and does its work under `airflow dags test`;
//! `fhirflow run` runs the stages' `run:` commands against the same server, to the same task
//! states, and refuses a stage without one before it starts anything.

mod common;

use common::{fhirflow, repo, venv};
use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// An HTTP server that answers 200 with a JSON body, 404 under `/missing`, and appends each
/// request's path to a file, one per line.
const SERVER: &str = r#"
import http.server, sys
log = sys.argv[1]
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        with open(log, "a", encoding="utf-8") as f:
            f.write(self.path + "\n")
        status = 404 if self.path.startswith("/missing") else 200
        body = b'{"resourceType": "CapabilityStatement"}'
        self.send_response(status)
        self.send_header("Content-Type", "application/fhir+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(httpd.server_address[1], flush=True)
httpd.serve_forever()
"#;

/// The server, killed when dropped.
struct Server {
    child: Child,
    url: String,
    log: PathBuf,
}

impl Server {
    fn start(dir: &Path) -> Server {
        let log = dir.join("requests.log");
        let mut child = Command::new("python3").arg("-c").arg(SERVER).arg(&log).stdout(Stdio::piped()).spawn().unwrap();
        let mut port = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut port).unwrap();
        Server { child, url: format!("http://127.0.0.1:{}", port.trim()), log }
    }

    /// The paths requested so far, sorted.
    fn requests(&self) -> Vec<String> {
        let mut seen: Vec<String> =
            std::fs::read_to_string(&self.log).unwrap_or_default().lines().map(str::to_owned).collect();
        seen.sort();
        seen
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Under `run`, the same GET as the operator, failing on a status of 400 or more as it does.
const GET: &str = r#"python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1])'"#;

/// A pipeline whose HttpOperator stages fetch one URL that answers and one that does not; a
/// cleanup operator runs after both with `all_done`, and a shell stage after the failing one.
fn spec(dir: &Path, airflow_version: u32) -> PathBuf {
    let empty = if airflow_version == 2 {
        "airflow.operators.empty.EmptyOperator"
    } else {
        "airflow.providers.standard.operators.empty.EmptyOperator"
    };
    let text = format!(
        r#"version: 1
airflow: {{version: {airflow_version}}}
defaults: {{retries: 0, start_date: "2026-01-01"}}
pipelines:
  fhir_status:
    schedule: null
    stages:
      start: {{kind: shell, command: echo start}}
      capabilities:
        kind: operator
        uses: airflow.providers.http.operators.http.HttpOperator
        with:
          http_conn_id: fhir_server
          endpoint: "metadata/{{{{ ds }}}}"
          method: GET
          headers: {{Accept: "application/fhir+json", X-Note: "it's \"quoted\""}}
          log_response: true
        run: {GET} "$FHIR_SERVER/metadata/{{{{ ds }}}}"
        after: [start]
      missing:
        kind: operator
        uses: airflow.providers.http.operators.http.HttpOperator
        with: {{http_conn_id: fhir_server, endpoint: missing, method: GET}}
        run: {GET} "$FHIR_SERVER/missing"
        after: [start]
      after_missing: {{kind: shell, command: echo never, after: [missing]}}
      finished:
        kind: operator
        uses: {empty}
        run: "true"
        after: [capabilities, missing]
        trigger_rule: all_done
"#
    );
    let path = dir.join(format!("status{airflow_version}.yaml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// What both backends must end in.
fn expected_states() -> BTreeMap<String, String> {
    [
        ("start", "success"),
        ("capabilities", "success"),
        ("missing", "failed"),
        ("after_missing", "upstream_failed"),
        ("finished", "success"),
    ]
    .into_iter()
    .map(|(t, s)| (t.to_owned(), s.to_owned()))
    .collect()
}

/// The DAG loads in real Airflow 3.3 and 2.11 with the operator classes, edges and trigger rule
/// the spec says; `airflow dags test` really sends the requests (the endpoint's template
/// rendered) and ends in the same task states as `fhirflow run` of the same spec.
#[test]
fn a_provider_operator_does_its_work_in_airflow_and_its_run_command_under_fhirflow_run() {
    for (var, version) in [("FHIRFLOW_AIRFLOW_VENV", 3), ("FHIRFLOW_AIRFLOW2_VENV", 2)] {
        let Some(airflow) = venv(var) else { continue };
        let dir = tempfile::tempdir().unwrap();
        let server = Server::start(dir.path());
        let spec = spec(dir.path(), version);
        let out = dir.path().join("out");
        fhirflow().arg("apply").arg(&spec).arg("--out").arg(&out).assert().success();
        let compiled = fhirflow::compile_file(&spec).expect("the spec compiles");
        std::fs::write(out.join("expect.json"), compiled.graph.expectations().to_string()).unwrap();
        let check = Command::new(airflow.join("bin/python"))
            .arg(repo().join("tests/conformance/airflow_check.py"))
            .arg(out.join("dags"))
            .arg(out.join("expect.json"))
            .output()
            .unwrap();
        assert!(check.status.success(), "{var}: {}", String::from_utf8_lossy(&check.stdout));
        let states = dir.path().join("states.json");
        let result = Command::new("bash")
            .arg(repo().join("tests/conformance/airflow_dags_test.sh"))
            .arg(&airflow)
            .arg(out.join("dags"))
            .arg("fhir_status")
            .arg("")
            .env("AIRFLOW_CONN_FHIR_SERVER", &server.url)
            .env("FHIRFLOW_DAGS_TEST_STATES", &states)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&result.stderr);
        assert!(stderr.contains("state=failed"), "{var}: the run fails on `missing`\n{stderr}");
        let in_airflow: BTreeMap<String, String> =
            serde_json::from_str(&std::fs::read_to_string(&states).unwrap()).unwrap();
        assert_eq!(in_airflow, expected_states(), "{var}\n{stderr}");
        assert_eq!(server.requests(), ["/metadata/2026-01-01", "/missing"], "{var}");

        std::fs::remove_file(&server.log).unwrap();
        let run = fhirflow()
            .arg("run")
            .arg(&spec)
            .args(["--logical-date", "2026-01-01", "--format", "json"])
            .env("FHIR_SERVER", &server.url)
            .timeout(Duration::from_secs(120))
            .output()
            .unwrap();
        assert_eq!(run.status.code(), Some(5), "{}", String::from_utf8_lossy(&run.stderr));
        let summary: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
        let under_run: BTreeMap<String, String> = summary["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| (t["task"].as_str().unwrap().to_owned(), t["state"].as_str().unwrap().to_owned()))
            .collect();
        assert_eq!(under_run, in_airflow, "{var}: the same states under run as in Airflow");
        assert_eq!(server.requests(), ["/metadata/2026-01-01", "/missing"], "{var}");
    }
}

/// `validate` and `apply` accept an operator stage without `run:`; `run` refuses the pipeline
/// with a located error before anything starts (no run store, no task), `--dry-run` as well,
/// and runs the other pipelines when `--pipeline` leaves it out.
#[test]
fn run_refuses_an_operator_stage_without_a_run_command_before_starting_anything() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("p.yaml");
    std::fs::write(
        &spec,
        "version: 1\npipelines:\n  notify:\n    stages:\n      first: {kind: shell, command: touch started}\n      slack:\n        kind: operator\n        uses: airflow.providers.slack.operators.slack_webhook.SlackWebhookOperator\n        with: {slack_webhook_conn_id: slack, message: done}\n        after: [first]\n  local:\n    stages:\n      only: {kind: shell, command: touch local-ran}\n",
    )
    .unwrap();
    fhirflow().arg("validate").arg(&spec).assert().success();
    for extra in [&[][..], &["--dry-run"][..]] {
        let out = fhirflow().arg("run").arg(&spec).args(extra).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains("error[airflow-only-stage]"), "{stderr}");
        assert!(stderr.contains("p.yaml:7:15"), "located at the stage's kind: {stderr}");
        assert!(stderr.contains("`run:`"), "{stderr}");
    }
    assert!(!dir.path().join("started").exists(), "no task ran");
    assert!(!dir.path().join(".fhirflow").exists(), "no run store was made");
    fhirflow().arg("run").arg(&spec).args(["--pipeline", "local"]).assert().success();
    assert!(dir.path().join("local-ran").exists());
}

/// The `run:` command sees the run's templates rendered and the spec's folder as its working
/// directory, with the same retries as any task.
#[test]
fn the_run_command_runs_with_templates_and_retries() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("p.yaml");
    std::fs::write(
        &spec,
        "version: 1\npipelines:\n  p:\n    stages:\n      op:\n        kind: operator\n        uses: airflow.providers.standard.operators.bash.BashOperator\n        with: {bash_command: echo airflow}\n        run: 'echo {{ ds }} >> ran; [ $(wc -l < ran) -ge 2 ]'\n        retries: 1\n        retry_delay: 1s\n",
    )
    .unwrap();
    let out = fhirflow()
        .arg("run")
        .arg(&spec)
        .args(["--logical-date", "2026-03-04", "--format", "json"])
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["tasks"][0]["attempts"], 2, "{summary}");
    assert_eq!(std::fs::read_to_string(dir.path().join("ran")).unwrap(), "2026-03-04\n2026-03-04\n");
}

/// A `run:` command that exits 99 skips its task, as a shell stage's command does, and the skip
/// reaches the task after it by its trigger rule.
#[test]
fn a_run_command_exiting_99_skips_its_task() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("p.yaml");
    std::fs::write(
        &spec,
        "version: 1\npipelines:\n  p:\n    stages:\n      op:\n        kind: operator\n        uses: airflow.providers.standard.operators.bash.BashOperator\n        with: {bash_command: echo airflow}\n        run: exit 99\n      after: {kind: shell, command: 'true', after: [op]}\n      always: {kind: shell, command: 'true', after: [op], trigger_rule: none_failed}\n",
    )
    .unwrap();
    let out =
        fhirflow().arg("run").arg(&spec).args(["--format", "json"]).timeout(Duration::from_secs(60)).output().unwrap();
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let state = |task: &str| {
        summary["tasks"].as_array().unwrap().iter().find(|t| t["task"] == task).map(|t| t["state"].clone())
    };
    assert_eq!(state("op"), Some("skipped".into()), "{summary}");
    assert_eq!(state("after"), Some("skipped".into()), "{summary}");
    assert_eq!(state("always"), Some("success".into()), "{summary}");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
}
