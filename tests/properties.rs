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

/// Case `case`'s spec compiled, or `None` when its only errors are `bad-template`: text that
/// Jinja cannot parse fails the task in Airflow, so it is refused up front.
fn compile_case(case: usize, yaml: &str) -> Option<fhirflow::Compiled> {
    match fhirflow::compile(SourceFile::new("p.yaml", yaml.to_owned())) {
        Ok(c) => Some(c),
        Err(d) if d.sorted().iter().all(|d| d.code == "bad-template") => None,
        Err(d) => panic!("case {case} should compile:\n{yaml}\n{}", d.render()),
    }
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
        let Some(compiled) = compile_case(case, &yaml) else { continue };
        let layout = Layout::new(Path::new("p.yaml"), Some(dir.path()));
        for file in emit(&compiled.graph, &layout).unwrap() {
            let path = dir.path().join(format!("case{case}.py"));
            std::fs::write(&path, &file.contents).unwrap();
            // BashOperator reads a string ending in .sh or .bash as a template file's name.
            let not_a_file = |text: &str| {
                if text.ends_with(".sh") || text.ends_with(".bash") {
                    format!("{text}{{{{ '' }}}}")
                } else {
                    text.to_owned()
                }
            };
            expected.push(serde_json::json!({
                "file": path, "description": description, "command": not_a_file(&command), "env": not_a_file(&env_value),
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

/// For each DAG file: its task and group variables, its task ids, every other name it binds or
/// reads (at module level, and as a global or builtin inside its functions when a task runs),
/// and the variables that rebind one of those or are bound twice.
const MODULE_NAMES_CHECKER: &str = r#"
import ast, json, symtable, sys

def module_names(path):
    src = open(path, encoding="utf-8").read()
    tree = ast.parse(src, path)
    compile(tree, path, "exec")
    (block,) = [node for node in tree.body if isinstance(node, ast.With)]
    bound, task_ids, as_task = [], [], set()
    for stmt in block.body:
        if isinstance(stmt, ast.Assign):
            (target,) = stmt.targets
            bound.append(target.id)
            as_task.add(id(target))
            for kw in stmt.value.keywords:
                if kw.arg == "task_id":
                    task_ids.append(kw.value.value)
                if kw.arg in ("task_group", "parent_group"):
                    as_task.add(id(kw.value))
        elif isinstance(stmt, ast.Expr):  # an edge: a >> b, [a, b] >> c
            as_task |= {id(n) for n in ast.walk(stmt) if isinstance(n, ast.Name)}
    others = set()

    def visit(node):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            others.add(node.name)
            return
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            others.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
        if isinstance(node, ast.Name) and id(node) not in as_task:
            others.add(node.id)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)

    def scopes(table):
        for child in table.get_children():
            others.update(sym.get_name() for sym in child.get_symbols() if sym.is_global())
            scopes(child)

    scopes(symtable.symtable(src, path, "exec"))
    return {
        "file": path,
        "vars": bound,
        "task_ids": task_ids,
        "others": sorted(others),
        "conflicts": sorted(set(bound) & others),
        "duplicates": sorted({name for name in bound if bound.count(name) > 1}),
    }

print(json.dumps([module_names(path) for path in sys.argv[1:]]))
"#;

/// Applies each spec under `dir/out/<spec name>` and returns what [`MODULE_NAMES_CHECKER`] finds
/// in their DAGs, sorted by file name.
fn dag_module_names(dir: &Path, specs: &[std::path::PathBuf]) -> Vec<serde_json::Value> {
    let mut dags = Vec::new();
    for spec in specs {
        let out = dir.join("out").join(spec.file_stem().unwrap());
        common::fhirflow().arg("apply").arg(spec).arg("--out").arg(&out).assert().success();
        dags.extend(std::fs::read_dir(out.join("dags")).unwrap().map(|e| e.unwrap().path()));
    }
    dags.sort_by_key(|path| path.file_name().map(ToOwned::to_owned));
    let output =
        Command::new("python3").arg("-c").arg(MODULE_NAMES_CHECKER).args(&dags).output().expect("python3 runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("the checker prints JSON")
}

/// No stage id can rebind a name the DAG module imports, defines or reads (json, shlex, DAG,
/// timedelta, its helpers, the builtins they call, ...), nor take another task's variable: every
/// DAG file parses, and its task variables are distinct and disjoint from all of those names.
#[test]
fn no_stage_id_rebinds_a_name_the_dag_module_uses() {
    // What the template uses, found by Python in DAGs with plain stage ids, is what the ids below try.
    let plain = tempfile::tempdir().unwrap();
    let used: std::collections::BTreeSet<String> =
        dag_module_names(plain.path(), &common::every_feature_specs(plain.path(), &[]))
            .iter()
            .flat_map(|dag| dag["others"].as_array().unwrap().iter().map(|n| n.as_str().unwrap().to_owned()))
            .collect();
    let listed: std::collections::BTreeSet<String> =
        common::DAG_MODULE_NAMES.split_whitespace().map(str::to_owned).collect();
    assert_eq!(
        used, listed,
        "common::DAG_MODULE_NAMES (and RESERVED in src/emit/airflow.rs) must list what the DAG modules use"
    );

    let hostile = common::hostile_stage_ids();
    let dir = tempfile::tempdir().unwrap();
    let dags = dag_module_names(dir.path(), &common::every_feature_specs(dir.path(), &hostile));
    let files: Vec<String> = dags
        .iter()
        .map(|d| Path::new(d["file"].as_str().unwrap()).file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    let mut want: Vec<String> = common::IMPORTED_PIPELINE_IDS.iter().map(|p| format!("{p}.py")).collect();
    want.sort();
    assert_eq!(files, want);
    for dag in &dags {
        assert_eq!(dag["conflicts"], serde_json::json!([]), "{}", dag["file"]);
        assert_eq!(dag["duplicates"], serde_json::json!([]), "{}", dag["file"]);
        let ids: Vec<&str> = dag["task_ids"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
        for id in &hostile {
            assert!(ids.contains(id), "{}: no task {id}", dag["file"]);
        }
    }
}

/// Compiles specs whose one stage holds two hostile strings, `a` at the top of a map and `b` in
/// a nested list (`stage` writes the stage's keys around their YAML literals), emits them, and
/// has `checker` read them back with Python's parser: the body of a loop over the cases, with
/// `case["values"]` and the file's syntax `tree`.
fn hostile_values_read_back(stage: impl Fn(&str, &str) -> String, checker: &str) {
    let mut runner = TestRunner::default();
    let strategy = (hostile_text(), hostile_text());
    let dir = tempfile::tempdir().unwrap();
    let mut expected = Vec::new();
    for case in 0..48 {
        let (a, b) = strategy.new_tree(&mut runner).unwrap().current();
        let keys = stage(&serde_json::to_string(&literal(&a)).unwrap(), &serde_json::to_string(&literal(&b)).unwrap());
        let yaml = format!("version: 1\npipelines:\n  p{case}:\n    stages:\n      s:\n{keys}");
        let Some(compiled) = compile_case(case, &yaml) else { continue };
        let layout = Layout::new(Path::new("p.yaml"), Some(dir.path()));
        for file in emit(&compiled.graph, &layout).unwrap() {
            let path = dir.path().join(format!("case{case}.py"));
            std::fs::write(&path, &file.contents).unwrap();
            expected.push(serde_json::json!({
                "file": path,
                "values": {"a": a, "nested": {"list": [b, 1, true, null]}},
            }));
        }
    }
    let cases = dir.path().join("cases.json");
    std::fs::write(&cases, serde_json::to_string(&expected).unwrap()).unwrap();
    let checker = format!(
        "import ast, json, sys\nfor case in json.load(open(sys.argv[1], encoding=\"utf-8\")):\n    tree = ast.parse(open(case[\"file\"], encoding=\"utf-8\").read())\n{checker}"
    );
    let output = Command::new("python3").arg("-c").arg(checker).arg(&cases).output().expect("python3 runs");
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Hostile strings as a python stage's keyword arguments (top level and nested) reach the DAG
/// file's `op_kwargs` unchanged, as Python's parser reads them.
#[test]
fn python_kwargs_read_back_every_hostile_string() {
    let stage = |a: &str, b: &str| {
        format!(
            "        kind: python\n        callable: m.n:f\n        kwargs: {{a: {a}, nested: {{list: [{b}, 1, true, null]}}}}\n"
        )
    };
    hostile_values_read_back(
        stage,
        r#"
    (found,) = [ast.literal_eval(n.value) for n in ast.walk(tree) if isinstance(n, ast.keyword) and n.arg == "op_kwargs"]
    call = found["fhirflow_call"]
    assert call["kwargs"] == case["values"], (case["file"], call["kwargs"], case["values"])
    assert call["callable"] == "m.n:f", call
print("python kwargs read back")
"#,
    );
}

/// Hostile strings as an operator stage's arguments (top level and nested) reach the operator's
/// call in the DAG file unchanged, as Python's parser reads them.
#[test]
fn operator_arguments_read_back_every_hostile_string() {
    let stage = |a: &str, b: &str| {
        format!(
            "        kind: operator\n        uses: vendor.operators.Op\n        with: {{a: {a}, nested: {{list: [{b}, 1, true, null]}}}}\n"
        )
    };
    hostile_values_read_back(
        stage,
        r#"
    (alias,) = [a.asname for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module == "vendor.operators" for a in n.names if a.name == "Op"]
    (call,) = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == alias]
    found = {k.arg: ast.literal_eval(k.value) for k in call.keywords if k.arg in ("a", "nested")}
    assert found == case["values"], (case["file"], found, case["values"])
print("operator arguments read back")
"#,
    );
}
