//! The committed schema in an editor (issue 13): the real yaml-language-server, spoken to over
//! stdio as an editor does, reads `schemas/pipeline.schema.json` through the modeline of
//! `pipelines/fhir.yaml` and finds no problem in it, flags a misspelled key and `retries: -1`,
//! completes stage keys with their descriptions and shows them on hover.
//!
//! scripts/test.sh installs the server with `npm ci` from tests/lsp/package-lock.json and sets
//! FHIRFLOW_YAML_LANGUAGE_SERVER; without it the test is skipped, except under CI=true.

mod common;

use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

/// Longest wait for one answer; the server reads the schema from disk on first use.
const WAIT: Duration = Duration::from_secs(60);

/// The server binary, or `None` (skip) when it is not installed and this is not CI.
fn server_binary() -> Option<PathBuf> {
    match std::env::var_os("FHIRFLOW_YAML_LANGUAGE_SERVER") {
        Some(path) => {
            let path = PathBuf::from(path);
            assert!(path.exists(), "FHIRFLOW_YAML_LANGUAGE_SERVER={} does not exist", path.display());
            Some(path)
        }
        None if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("FHIRFLOW_YAML_LANGUAGE_SERVER is not set under CI: scripts/test.sh installs it")
        }
        None => {
            eprintln!("skipped: FHIRFLOW_YAML_LANGUAGE_SERVER is not set (scripts/test.sh sets it)");
            None
        }
    }
}

/// A `file://` URI for an absolute path, percent-encoding what a URI path cannot hold.
fn file_uri(path: &Path) -> String {
    let mut uri = String::from("file://");
    for byte in path.to_str().expect("a UTF-8 path").bytes() {
        if byte.is_ascii_alphanumeric() || b"/-._~".contains(&byte) {
            uri.push(byte as char);
        } else {
            uri.push_str(&format!("%{byte:02X}"));
        }
    }
    uri
}

/// One yaml-language-server process and the messages it sent that nobody asked for yet.
struct Server {
    child: Child,
    stdin: ChildStdin,
    incoming: Receiver<Value>,
    notifications: Vec<Value>,
    next_id: u64,
}

impl Server {
    fn start(binary: &Path) -> Self {
        let mut child = Command::new(binary)
            .arg("--stdio")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let stdin = child.stdin.take().expect("piped stdin");
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let (send, incoming) = channel();
        std::thread::spawn(move || {
            while let Some(message) = read_message(&mut stdout) {
                if send.send(message).is_err() {
                    break;
                }
            }
        });
        Self { child, stdin, incoming, notifications: Vec::new(), next_id: 1 }
    }

    fn send(&mut self, message: &Value) {
        let body = serde_json::to_vec(message).expect("JSON");
        write!(self.stdin, "Content-Length: {}\r\n\r\n", body.len()).expect("write header");
        self.stdin.write_all(&body).expect("write body");
        self.stdin.flush().expect("flush");
    }

    fn notify(&mut self, method: &str, params: Value) {
        self.send(&json!({"jsonrpc": "2.0", "method": method, "params": params}));
    }

    /// The next message, answering the server's own requests (registrations, progress) on the way.
    fn next(&mut self, deadline: Instant, waiting_for: &str) -> Value {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let message = match self.incoming.recv_timeout(left) {
                Ok(message) => message,
                Err(RecvTimeoutError::Timeout) => panic!("no {waiting_for} from the server within {WAIT:?}"),
                Err(RecvTimeoutError::Disconnected) => panic!("the server exited while waiting for {waiting_for}"),
            };
            if let (Some(id), Some(_)) = (message.get("id"), message.get("method")) {
                let id = id.clone();
                self.send(&json!({"jsonrpc": "2.0", "id": id, "result": null}));
                continue;
            }
            return message;
        }
    }

    fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        let deadline = Instant::now() + WAIT;
        loop {
            let message = self.next(deadline, method);
            if message.get("id") == Some(&json!(id)) {
                assert!(message.get("error").is_none(), "{method} failed: {message}");
                return message["result"].clone();
            }
            self.notifications.push(message);
        }
    }

    /// The diagnostics the server publishes for `uri` after it was opened.
    fn diagnostics(&mut self, uri: &str) -> Vec<Value> {
        let is_for_uri = |m: &Value| m["method"] == "textDocument/publishDiagnostics" && m["params"]["uri"] == uri;
        if let Some(at) = self.notifications.iter().position(is_for_uri) {
            let message = self.notifications.remove(at);
            return message["params"]["diagnostics"].as_array().cloned().unwrap_or_default();
        }
        let deadline = Instant::now() + WAIT;
        loop {
            let message = self.next(deadline, "diagnostics");
            if is_for_uri(&message) {
                return message["params"]["diagnostics"].as_array().cloned().unwrap_or_default();
            }
            self.notifications.push(message);
        }
    }

    fn open(&mut self, uri: &str, text: &str) -> Vec<Value> {
        self.notify(
            "textDocument/didOpen",
            json!({"textDocument": {"uri": uri, "languageId": "yaml", "version": 1, "text": text}}),
        );
        self.diagnostics(uri)
    }

    fn stop(mut self) {
        self.request("shutdown", Value::Null);
        self.notify("exit", Value::Null);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.child.try_wait().expect("wait").is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads one `Content-Length`-framed message; `None` at the end of the stream.
fn read_message(from: &mut impl BufRead) -> Option<Value> {
    let mut length = None;
    loop {
        let mut line = String::new();
        if from.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some(value) = line.strip_prefix("Content-Length:") {
            length = value.trim().parse::<usize>().ok();
        }
    }
    let mut body = vec![0; length?];
    from.read_exact(&mut body).ok()?;
    serde_json::from_slice(&body).ok()
}

/// The 0-based line and column of the first `needle` in `text`.
fn position_of(text: &str, needle: &str) -> (usize, usize) {
    let at = text.find(needle).unwrap_or_else(|| panic!("{needle:?} is not in the spec"));
    let line = text[..at].matches('\n').count();
    let column = at - text[..at].rfind('\n').map_or(0, |i| i + 1);
    (line, column)
}

fn messages(diagnostics: &[Value]) -> Vec<String> {
    diagnostics
        .iter()
        .map(|d| format!("{}:{} {}", d["range"]["start"]["line"], d["range"]["start"]["character"], d["message"]))
        .collect()
}

/// The text of a completion item's or a hover's documentation, plain or Markdown.
fn documentation(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Object(map) => map.get("value").and_then(Value::as_str).unwrap_or_default().to_owned(),
        Value::Array(items) => items.iter().map(documentation).collect::<Vec<_>>().join("\n"),
        _ => String::new(),
    }
}

#[test]
fn the_schema_checks_completes_and_explains_specs_in_yaml_language_server() {
    let Some(binary) = server_binary() else { return };
    let repo = common::repo();
    let spec_path = repo.join("pipelines/fhir.yaml");
    let spec = std::fs::read_to_string(&spec_path).expect("read pipelines/fhir.yaml");
    assert!(
        spec.starts_with("# yaml-language-server: $schema=../schemas/pipeline.schema.json\n"),
        "the modeline moved"
    );

    let mut server = Server::start(&binary);
    let initialized = server.request(
        "initialize",
        json!({
            "processId": std::process::id(),
            "rootUri": file_uri(&repo),
            "capabilities": {
                "textDocument": {
                    "completion": {"completionItem": {"documentationFormat": ["markdown", "plaintext"], "snippetSupport": true}},
                    "hover": {"contentFormat": ["markdown", "plaintext"]},
                    "publishDiagnostics": {}
                }
            }
        }),
    );
    assert!(initialized["capabilities"]["completionProvider"].is_object(), "{initialized}");
    server.notify("initialized", json!({}));
    server.notify(
        "workspace/didChangeConfiguration",
        json!({"settings": {"yaml": {"validate": true, "hover": true, "completion": true}}}),
    );

    // The example spec as committed: nothing to say.
    let uri = file_uri(&spec_path);
    let found = server.open(&uri, &spec);
    assert!(found.is_empty(), "diagnostics on pipelines/fhir.yaml: {:#?}", messages(&found));

    // Other documents beside it (never written to disk), so the modeline resolves the same way.
    let broken = [
        ("pipeline-key", "    schedule: 30s\n", "    schedul: 30s\n", "Property schedul is not allowed"),
        ("stage-key", "        command: aws s3", "        comand: aws s3", "Property comand is not allowed"),
        ("negative-retries", "  retries: 1\n", "  retries: -1\n", "below the minimum of 0"),
    ];
    for (name, from, to, expected) in broken {
        let text = spec.replacen(from, to, 1);
        assert_ne!(text, spec, "{from:?} is not in the spec");
        let (line, _) = position_of(&text, to);
        let found = server.open(&file_uri(&repo.join(format!("pipelines/{name}.yaml"))), &text);
        assert!(
            found.iter().any(|d| d["range"]["start"]["line"].as_u64().is_some_and(|l| l as usize == line)
                && d["message"].as_str().is_some_and(|m| m.contains(expected))),
            "{name}: no diagnostic {expected:?} on line {line}: {:#?}",
            messages(&found)
        );
    }

    // Completion on a new key line inside a stage offers the stage keys, each with its description.
    let completing_uri = file_uri(&repo.join("pipelines/completing.yaml"));
    let anchor = "      upload_bundles:\n        kind: shell\n";
    let completing = spec.replacen(anchor, &format!("{anchor}        \n"), 1);
    assert_ne!(completing, spec);
    let (line, _) = position_of(&completing, anchor);
    let line = line + 2;
    server.open(&completing_uri, &completing);
    let result = server.request(
        "textDocument/completion",
        json!({"textDocument": {"uri": completing_uri}, "position": {"line": line, "character": 8}}),
    );
    let items = result.get("items").cloned().unwrap_or(result);
    let items = items.as_array().cloned().unwrap_or_default();
    let labels: Vec<&str> = items.iter().filter_map(|i| i["label"].as_str()).collect();
    for key in ["after", "retries", "trigger_rule", "env"] {
        let item = items.iter().find(|i| i["label"] == key);
        let item = item.unwrap_or_else(|| panic!("no completion `{key}` in a stage; offered {labels:?}"));
        let text = format!("{} {}", documentation(&item["documentation"]), item["detail"].as_str().unwrap_or(""));
        assert!(!text.trim().is_empty(), "completion `{key}` has no description: {item}");
    }
    let retries = items.iter().find(|i| i["label"] == "retries").expect("retries");
    assert!(
        format!("{} {}", documentation(&retries["documentation"]), retries["detail"].as_str().unwrap_or(""))
            .contains("How many times a failed task is retried"),
        "{retries}"
    );

    // Hover on a key shows the schema's description of it.
    let (line, character) = position_of(&spec, "  retries: 1");
    let hover = server.request(
        "textDocument/hover",
        json!({"textDocument": {"uri": uri}, "position": {"line": line, "character": character + 3}}),
    );
    let text = documentation(&hover["contents"]);
    assert!(text.contains("How many times a failed task is retried"), "hover on `retries`: {hover}");

    server.stop();
}
