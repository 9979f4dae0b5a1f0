//! Property tests: the front end never panics, and the emitters turn any string a user can
//! write into a literal that Python reads back unchanged.

mod common;

use fhirflow::emit::{Layout, emit};
use fhirflow::source::SourceFile;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use std::path::Path;
use std::process::Command;

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn front_end_never_panics_on_any_text(text in any::<String>()) {
        let _ = fhirflow::compile(SourceFile::new("p.yaml", text));
    }

    #[test]
    fn front_end_never_panics_on_yaml_shaped_text(
        lines in prop::collection::vec(
            prop_oneof![
                Just("version: 1".to_owned()),
                Just("pipelines:".to_owned()),
                Just("  p:".to_owned()),
                Just("    stages:".to_owned()),
                Just("      a: {kind: shell, command: x}".to_owned()),
                Just("      b: {kind: shell, command: x, after: [a]}".to_owned()),
                Just("      w: {kind: sensor, pipeline: p}".to_owned()),
                Just("    schedule: '*/5 * * * *'".to_owned()),
                Just("  <<: *x".to_owned()),
                Just("x: &x {retries: 1}".to_owned()),
                "[ -~]{0,30}",
            ],
            0..14,
        )
    ) {
        let _ = fhirflow::compile(SourceFile::new("p.yaml", lines.join("\n")));
    }
}

/// A string of printable and awkward characters: quotes, backslashes, newlines, Jinja, Unicode.
fn hostile_text() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            Just("\"".to_owned()),
            Just("'".to_owned()),
            Just("\"\"\"".to_owned()),
            Just("\\".to_owned()),
            Just("\n".to_owned()),
            Just("\r".to_owned()),
            Just("\t".to_owned()),
            Just("{{ ds }}".to_owned()),
            Just("${".to_owned()),
            Just("$".to_owned()),
            Just("\u{2028}".to_owned()),
            Just("\u{0}".to_owned()),
            Just("é€😀".to_owned()),
            "[ -~]{1,8}",
        ],
        1..12,
    )
    .prop_map(|parts| parts.concat())
}

/// Text as a user writes it to mean exactly that text: `${` is fhirflow's interpolation, so a
/// literal one is written `$${`.
fn literal(text: &str) -> String {
    text.replace("${", "$${")
}

#[test]
fn emitted_python_reads_back_every_hostile_string() {
    let mut runner = TestRunner::default();
    let strategy = (hostile_text(), hostile_text(), hostile_text());
    let dir = tempfile::tempdir().unwrap();
    let mut expected = Vec::new();
    for case in 0..64 {
        let (description, command, env_value) = strategy.new_tree(&mut runner).unwrap().current();
        let command = if command.trim().is_empty() { format!("x{command}") } else { command };
        let yaml = format!(
            "version: 1\npipelines:\n  p{case}:\n    description: {}\n    stages:\n      s:\n        kind: shell\n        command: {}\n        env: {{V: {}}}\n",
            serde_json::to_string(&literal(&description)).unwrap(),
            serde_json::to_string(&literal(&command)).unwrap(),
            serde_json::to_string(&literal(&env_value)).unwrap(),
        );
        let compiled = match fhirflow::compile(SourceFile::new("p.yaml", yaml.clone())) {
            Ok(c) => c,
            Err(d) => panic!("case {case} should compile:\n{yaml}\n{}", d.render()),
        };
        let layout = Layout::new(Path::new("p.yaml"), Some(dir.path()));
        for file in emit(&compiled.graph, &layout).unwrap() {
            let path = dir.path().join(format!("case{case}.py"));
            std::fs::write(&path, &file.contents).unwrap();
            let command = if command.trim_end().ends_with(".sh") || command.trim_end().ends_with(".bash") {
                format!("{command} ")
            } else {
                command.clone()
            };
            expected.push(serde_json::json!({
                "file": path, "description": description, "command": command, "env": env_value,
            }));
        }
    }
    let cases = dir.path().join("cases.json");
    std::fs::write(&cases, serde_json::to_string(&expected).unwrap()).unwrap();
    // Python's own parser reads each file; the keyword values are evaluated as literals only.
    let checker = r#"
import ast, json, sys
shapes = {}
for case in json.load(open(sys.argv[1], encoding="utf-8")):
    tree = ast.parse(open(case["file"], encoding="utf-8").read())
    found = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg in ("description", "bash_command", "env"):
            found[node.arg] = ast.literal_eval(node.value)
    assert found["description"] == case["description"], (case["file"], found["description"], case["description"])
    assert found["bash_command"] == case["command"], (case["file"], found["bash_command"], case["command"])
    assert found["env"] == {"V": case["env"]}, (case["file"], found["env"])
    assert "generated by fhirflow" in ast.get_docstring(tree), case["file"]
    # Same spec shape, same module shape: injected code would add or change a statement.
    shape = [type(node).__name__ for node in tree.body]
    shapes.setdefault(tuple(shape), case["file"])
assert len(shapes) == 1, shapes
print(f"{len(json.load(open(sys.argv[1])))} generated DAG files parse and read back every string")
"#;
    let output = Command::new("python3").arg("-c").arg(checker).arg(&cases).output().expect("python3 runs");
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
