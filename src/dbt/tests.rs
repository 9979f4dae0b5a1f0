//! Unit tests on a tiny hand-written manifest (no dbt needed). `tests/dbt_select.rs` checks the
//! same engine against real `dbt ls`.

use super::*;
use serde_json::{Value, json};
use std::collections::BTreeSet;

/// A manifest node: `kind.p.name`, with the fields dbt always writes.
fn node(id: &str, deps: &[&str], extra: Value) -> (String, Value) {
    let mut parts = id.splitn(3, '.');
    let resource_type = parts.next().unwrap();
    let package = parts.next().unwrap();
    let name = parts.next().unwrap().split('.').next().unwrap();
    let folder = match resource_type {
        "seed" => "seeds",
        "snapshot" => "snapshots",
        "analysis" => "analyses",
        "test" => "tests",
        _ => "models",
    };
    let mut value = json!({
        "unique_id": id,
        "resource_type": resource_type,
        "name": name,
        "package_name": package,
        "fqn": [package, name],
        "original_file_path": format!("{folder}/{name}.sql"),
        "path": format!("{name}.sql"),
        "tags": [],
        "config": {"enabled": true, "materialized": "view", "tags": []},
        "depends_on": {"macros": [], "nodes": deps},
        "raw_code": "select 1",
    });
    if let Value::Object(extra) = extra {
        for (k, v) in extra {
            if k == "config" {
                for (ck, cv) in v.as_object().unwrap() {
                    value["config"][ck] = cv.clone();
                }
            } else {
                value[k] = v;
            }
        }
    }
    (id.to_owned(), value)
}

/// The project: a source, a seed, two staging models, an ephemeral model, a mart with a generic,
/// a relationships and a singular test, a snapshot, a versioned model, an analysis, an exposure.
fn tiny() -> Value {
    let staging = |name: &str| {
        json!({"fqn": ["p", "staging", name], "original_file_path": format!("models/staging/{name}.sql"),
               "tags": ["staging"], "config": {"tags": ["staging"]}, "patch_path": "p://models/staging/_staging.yml"})
    };
    let nodes: serde_json::Map<String, Value> = [
        node("seed.p.codes", &[], json!({"original_file_path": "seeds/codes.csv", "config": {"materialized": "seed"}, "tags": ["ref"]})),
        node("model.p.stg_orders", &["source.p.raw.orders"], staging("stg_orders")),
        node("model.p.stg_customers", &[], staging("stg_customers")),
        node(
            "model.p.int_joined",
            &["model.p.stg_orders", "seed.p.codes"],
            json!({"fqn": ["p", "intermediate", "int_joined"], "original_file_path": "models/intermediate/int_joined.sql",
                   "config": {"materialized": "ephemeral"}}),
        ),
        node(
            "model.p.fct_orders",
            &["model.p.int_joined", "model.p.stg_customers"],
            json!({"fqn": ["p", "marts", "fct_orders"], "original_file_path": "models/marts/fct_orders.sql",
                   "tags": ["marts", "finance"], "config": {"materialized": "table", "meta": {"owner": "ana"}},
                   "access": "public"}),
        ),
        node(
            "model.p.dim_v.v1",
            &[],
            json!({"name": "dim_v", "fqn": ["p", "marts", "dim_v", "v1"], "original_file_path": "models/marts/dim_v_v1.sql",
                   "version": 1, "latest_version": 2, "config": {"materialized": "table"}}),
        ),
        node(
            "model.p.dim_v.v2",
            &[],
            json!({"name": "dim_v", "fqn": ["p", "marts", "dim_v", "v2"], "original_file_path": "models/marts/dim_v_v2.sql",
                   "version": 2, "latest_version": 2, "config": {"materialized": "table"}}),
        ),
        node("model.p.lonely", &[], json!({"raw_code": "  \n"})),
        node("snapshot.p.snap_customers", &["model.p.stg_customers"], json!({"config": {"materialized": "snapshot"}})),
        node(
            "test.p.unique_fct_orders_id.1a",
            &["model.p.fct_orders"],
            json!({"name": "unique_fct_orders_id", "fqn": ["p", "marts", "unique_fct_orders_id"],
                   "original_file_path": "models/marts/_marts.yml", "attached_node": "model.p.fct_orders",
                   "test_metadata": {"name": "unique", "kwargs": {}}, "config": {"materialized": "test", "severity": "ERROR"}}),
        ),
        node(
            "test.p.relationships_fct_orders_customer.2b",
            &["model.p.stg_customers", "model.p.fct_orders"],
            json!({"name": "relationships_fct_orders_customer", "fqn": ["p", "marts", "relationships_fct_orders_customer"],
                   "original_file_path": "models/marts/_marts.yml", "attached_node": "model.p.fct_orders",
                   "test_metadata": {"name": "relationships"}, "config": {"materialized": "test", "severity": "warn"}}),
        ),
        node(
            "test.p.assert_positive",
            &["model.p.fct_orders"],
            json!({"original_file_path": "tests/assert_positive.sql", "tags": ["audit"], "config": {"materialized": "test"}}),
        ),
        node(
            "test.p.source_not_null_raw_orders_id.3c",
            &["source.p.raw.orders"],
            json!({"name": "source_not_null_raw_orders_id", "original_file_path": "models/staging/_sources.yml",
                   "test_metadata": {"name": "not_null"}, "config": {"materialized": "test"}}),
        ),
        node("analysis.p.report", &["model.p.fct_orders", "model.p.lonely"], json!({})),
        node("model.p.off", &["model.p.stg_orders"], json!({"config": {"enabled": false}})),
    ]
    .into_iter()
    .collect();
    json!({
        "metadata": {"dbt_schema_version": MANIFEST_V12, "dbt_version": "1.11.0", "project_name": "p"},
        "nodes": nodes,
        "sources": {"source.p.raw.orders": {
            "unique_id": "source.p.raw.orders", "resource_type": "source", "name": "orders", "source_name": "raw",
            "package_name": "p", "fqn": ["p", "staging", "raw", "orders"], "path": "models/staging/_sources.yml",
            "original_file_path": "models/staging/_sources.yml", "tags": ["raw"], "config": {"enabled": true}}},
        "exposures": {"exposure.p.dash": {
            "unique_id": "exposure.p.dash", "resource_type": "exposure", "name": "dash", "package_name": "p",
            "fqn": ["p", "dash"], "path": "x.yml", "original_file_path": "models/x.yml", "tags": [],
            "depends_on": {"nodes": ["model.p.fct_orders", "model.p.lonely"]}}},
        "macros": {"macro.p.m": {"huge": [1, 2, {"x": "y"}]}},
        "unit_tests": {},
    })
}

fn manifest() -> Manifest {
    Manifest::from_json(&tiny().to_string(), "tiny.json").expect("the tiny manifest parses")
}

fn select(manifest: &Manifest, select: &[&str], exclude: &[&str]) -> Vec<String> {
    manifest.select(select, exclude).unwrap().into_iter().collect()
}

/// Short names: `model.p.fct_orders` → `fct_orders`, tests by their name.
fn names(manifest: &Manifest, select: &[&str], exclude: &[&str]) -> Vec<String> {
    let ids = manifest.select(select, exclude).unwrap_or_else(|e| panic!("{select:?}: {e}"));
    let mut names: Vec<String> = ids
        .iter()
        .map(|id| {
            let node = manifest.get(id).unwrap();
            match &node.version {
                Some(v) => format!("{}.v{v}", node.name),
                None => node.name.clone(),
            }
        })
        .collect();
    names.sort();
    names
}

const REL: &str = "relationships_fct_orders_customer";

#[test]
fn reads_the_nodes_that_become_tasks() {
    let m = manifest();
    assert_eq!(m.project_name.as_deref(), Some("p"));
    assert_eq!(m.dbt_version.as_deref(), Some("1.11.0"));
    let ids: Vec<&str> = m.nodes().map(|n| n.unique_id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "model.p.dim_v.v1",
            "model.p.dim_v.v2",
            "model.p.fct_orders",
            "model.p.int_joined",
            "model.p.lonely",
            "model.p.stg_customers",
            "model.p.stg_orders",
            "seed.p.codes",
            "snapshot.p.snap_customers",
            "test.p.assert_positive",
            "test.p.relationships_fct_orders_customer.2b",
            "test.p.source_not_null_raw_orders_id.3c",
            "test.p.unique_fct_orders_id.1a",
        ],
        "analyses, sources, exposures and disabled models are not tasks"
    );
    let fct = m.get("model.p.fct_orders").unwrap();
    assert_eq!(fct.resource_type, ResourceType::Model);
    assert_eq!(fct.materialized(), Some("table"));
    assert_eq!(fct.tags, ["marts", "finance"]);
    assert_eq!(fct.depends_on, ["model.p.int_joined", "model.p.stg_customers"]);
    assert!(fct.is_task());
    let eph = m.get("model.p.int_joined").unwrap();
    assert!(eph.is_ephemeral() && !eph.is_task());
    let rel = m.get("test.p.relationships_fct_orders_customer.2b").unwrap();
    assert!(rel.is_generic_test());
    assert_eq!(rel.test_name.as_deref(), Some("relationships"));
    assert_eq!(rel.attached_node.as_deref(), Some("model.p.fct_orders"));
    assert!(!m.get("test.p.assert_positive").unwrap().is_generic_test());
    assert!(m.get("model.p.lonely").unwrap().empty);
    assert!(!fct.empty);
    assert_eq!(m.get("model.p.stg_orders").unwrap().patch_path.as_deref(), Some("models/staging/_staging.yml"));
    assert_eq!(m.get("source.p.raw.orders").unwrap().resource_type, ResourceType::Source);
    assert!(m.get("model.p.off").is_none(), "disabled nodes are not in dbt's graph");
}

#[test]
fn an_unknown_schema_version_is_refused_by_name() {
    let mut doc = tiny();
    doc["metadata"]["dbt_schema_version"] = json!("https://schemas.getdbt.com/dbt/manifest/v10.json");
    let err = Manifest::from_json(&doc.to_string(), "target/manifest.json").unwrap_err();
    assert!(matches!(err, ManifestError::UnsupportedVersion { .. }));
    let message = err.to_string();
    assert!(message.starts_with("target/manifest.json: unsupported dbt manifest schema"), "{message}");
    assert!(message.contains("`https://schemas.getdbt.com/dbt/manifest/v10.json`"), "{message}");
    assert!(message.contains("`https://schemas.getdbt.com/dbt/manifest/v12.json` (dbt-core 1.8 to 1.12)"), "{message}");
    // Even when the older schema's nodes do not have the fields this one needs.
    doc["nodes"]["model.p.lonely"].as_object_mut().unwrap().remove("fqn");
    let err = Manifest::from_json(&doc.to_string(), "m.json").unwrap_err();
    assert!(matches!(err, ManifestError::UnsupportedVersion { ref found, .. } if found.ends_with("v10.json")), "{err}");
    let err = Manifest::from_json_for(&doc.to_string(), "m.json", &range(">=1.7")).unwrap_err();
    assert!(err.to_string().contains("fhirflow reads `https://schemas.getdbt.com/dbt/manifest/v11.json` (dbt-core 1.7) and `https://schemas.getdbt.com/dbt/manifest/v12.json` (dbt-core 1.8 to 1.12)"), "{err}");
}

fn range(text: &str) -> DbtVersion {
    DbtVersion::parse(text).unwrap()
}

/// `tiny()` as dbt-core `release` would write it, in `schema`.
fn written_by(release: Option<&str>, schema: &str) -> String {
    let mut doc = tiny();
    doc["metadata"]["dbt_schema_version"] = json!(schema);
    match release {
        Some(r) => doc["metadata"]["dbt_version"] = json!(r),
        None => drop(doc["metadata"].as_object_mut().unwrap().remove("dbt_version")),
    }
    doc.to_string()
}

#[test]
fn a_1_7_manifest_is_read_when_dbt_version_admits_1_7() {
    let v11 = written_by(Some("1.7.20"), MANIFEST_V11);
    for text in ["1.7", "~1.7", ">=1.7", "<1.9"] {
        let m = Manifest::from_json_for(&v11, "m.json", &range(text)).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(m.dbt_version.as_deref(), Some("1.7.20"));
        assert_eq!(m.nodes().count(), 13);
    }
    let v12 = written_by(Some("1.12.6"), MANIFEST_V12);
    assert!(Manifest::from_json_for(&v12, "m.json", &range(">=1.7")).is_ok(), "a range over both reads both");
    assert!(Manifest::from_json(&v12, "m.json").is_ok());
}

#[test]
fn a_manifest_from_outside_dbt_version_is_a_mismatch() {
    let mismatch = |doc: &str, text: &str| match Manifest::from_json_for(doc, "target/manifest.json", &range(text)) {
        Err(e @ ManifestError::VersionMismatch { .. }) => e.to_string(),
        other => panic!("{text}: {other:?}"),
    };
    // dbt-core 1.7's manifest under the default range, and 1.11's under 1.7.
    assert_eq!(
        mismatch(&written_by(Some("1.7.20"), MANIFEST_V11), ">=1.8"),
        "target/manifest.json: written by dbt-core 1.7.20 (manifest schema v11), which `dbt.version: \">=1.8\"` does not admit"
    );
    assert_eq!(
        mismatch(&written_by(Some("1.11.16"), MANIFEST_V12), "1.7"),
        "target/manifest.json: written by dbt-core 1.11.16 (manifest schema v12), which `dbt.version: \"1.7\"` does not admit"
    );
    // The right schema, but a release outside the range.
    assert!(mismatch(&written_by(Some("1.12.6"), MANIFEST_V12), ">=1.8,<1.12").contains("dbt-core 1.12.6"));
    // No `dbt_version`: the schema says who wrote it.
    assert!(mismatch(&written_by(None, MANIFEST_V11), "1.8").contains("written by dbt-core 1.7 (manifest schema v11)"));
    assert!(Manifest::from_json_for(&written_by(None, MANIFEST_V12), "m", &range("1.8")).is_ok());
    // Said first, even when the nodes lack fields this reader needs.
    let mut doc: Value = serde_json::from_str(&written_by(Some("1.7.20"), MANIFEST_V11)).unwrap();
    doc["nodes"]["model.p.lonely"].as_object_mut().unwrap().remove("fqn");
    assert!(mismatch(&doc.to_string(), ">=1.8").contains("1.7.20"));
}

#[test]
fn bad_json_names_line_and_column() {
    let err = Manifest::from_json("{\n  \"metadata\": {,\n}", "m.json").unwrap_err();
    assert_eq!(
        err,
        ManifestError::Json { name: "m.json".into(), message: "key must be a string".into(), line: 2, column: 16 }
    );
    assert_eq!(err.to_string(), "m.json: not valid JSON: key must be a string at line 2, column 16");
    let err = Manifest::from_json("", "m.json").unwrap_err();
    assert!(matches!(err, ManifestError::Json { line: 1, column: 0, .. }), "{err:?}");
}

#[test]
fn missing_and_invalid_fields_are_located() {
    let mut doc = tiny();
    doc["nodes"]["model.p.lonely"].as_object_mut().unwrap().remove("fqn");
    let err = Manifest::from_json(&serde_json::to_string_pretty(&doc).unwrap(), "m.json").unwrap_err();
    let ManifestError::MissingField { ref path, ref field, line, .. } = err else { panic!("{err:?}") };
    assert_eq!((path.as_str(), field.as_str()), ("nodes[\"model.p.lonely\"]", "fqn"));
    assert!(line > 1);
    assert!(err.to_string().starts_with("m.json: not a dbt manifest: nodes[\"model.p.lonely\"] has no `fqn` (line "));

    let mut doc = tiny();
    doc["nodes"]["model.p.lonely"]["fqn"] = json!("p.lonely");
    let err = Manifest::from_json(&doc.to_string(), "m.json").unwrap_err();
    let ManifestError::Invalid { ref path, ref message, .. } = err else { panic!("{err:?}") };
    assert_eq!(path, "nodes[\"model.p.lonely\"].fqn");
    assert!(message.starts_with("invalid type: string \"p.lonely\", expected a sequence"), "{message}");

    let err = Manifest::from_json("[1, 2]", "m.json").unwrap_err();
    assert_eq!(
        err.to_string(),
        "m.json: invalid dbt manifest: the top level: expected a dbt manifest (a JSON object with `metadata` \
         and `nodes`) (line 1, column 1)"
    );
    let err = Manifest::from_json(r#"{"nodes": {}}"#, "m.json").unwrap_err();
    assert!(matches!(err, ManifestError::MissingField { ref field, .. } if field == "metadata"), "{err:?}");
    let err = Manifest::from_json(r#"{"metadata": {}, "nodes": {}}"#, "m.json").unwrap_err();
    assert!(matches!(err, ManifestError::MissingField { ref field, .. } if field == "dbt_schema_version"), "{err:?}");

    let mut doc = tiny();
    doc["nodes"]["model.p.lonely"]["depends_on"]["nodes"] = json!(["model.p.ghost"]);
    let err = Manifest::from_json(&doc.to_string(), "m.json").unwrap_err();
    assert_eq!(
        err.to_string(),
        "m.json: invalid dbt manifest: `model.p.lonely` depends on `model.p.ghost`, which is not in the manifest"
    );

    let mut doc = tiny();
    doc["nodes"]["model.p.lonely"]["resource_type"] = json!("widget");
    let err = Manifest::from_json(&doc.to_string(), "m.json").unwrap_err();
    assert_eq!(
        err.to_string(),
        "m.json: invalid dbt manifest: nodes[\"model.p.lonely\"].resource_type: unknown resource type `widget`"
    );
    let mut doc = tiny();
    doc["nodes"]["model.p.lonely"]["resource_type"] = json!("source");
    let err = Manifest::from_json(&doc.to_string(), "m.json").unwrap_err();
    assert!(err.to_string().ends_with("a `source` cannot be in `nodes`"), "{err}");
}

#[test]
fn tags_and_indirect_tests() {
    let m = manifest();
    // Eager: the relationships test is in because one of its parents (stg_customers) is.
    assert_eq!(names(&m, &["tag:staging"], &[]), [REL, "stg_customers", "stg_orders"]);
    assert_eq!(names(&m, &["tag:stag*"], &[]), names(&m, &["tag:staging"], &[]));
    assert_eq!(names(&m, &["tag:raw"], &[]), ["source_not_null_raw_orders_id"], "the source is selected, not listed");
    assert_eq!(names(&m, &["tag:audit"], &[]), ["assert_positive"]);
    // Intersection comes after each part took its tests.
    assert_eq!(names(&m, &["tag:staging,resource_type:model"], &[]), names(&m, &["tag:staging"], &[]));
}

#[test]
fn graph_operators() {
    let m = manifest();
    assert_eq!(
        names(&m, &["+fct_orders"], &[]),
        [
            "assert_positive",
            "codes",
            "fct_orders",
            "int_joined",
            REL,
            // The source is a parent, and eager selection adds the tests on it.
            "source_not_null_raw_orders_id",
            "stg_customers",
            "stg_orders",
            "unique_fct_orders_id"
        ]
        .map(String::from)
        .to_vec(),
    );
    assert_eq!(names(&m, &["1+fct_orders"], &[]), names(&m, &["int_joined fct_orders stg_customers"], &[]));
    assert_eq!(
        names(&m, &["stg_orders+"], &[]),
        ["assert_positive", "fct_orders", "int_joined", REL, "stg_orders", "unique_fct_orders_id"]
            .map(String::from)
            .to_vec()
    );
    assert_eq!(names(&m, &["stg_orders+1"], &[]), ["int_joined", "stg_orders"].map(String::from).to_vec());
    assert_eq!(names(&m, &["0+stg_orders"], &[]), ["stg_orders"].map(String::from).to_vec());
    // `@`: the parents of the analysis and exposure below stg_orders come in (lonely).
    assert!(names(&m, &["@stg_orders"], &[]).contains(&"lonely".to_string()));
    assert!(!names(&m, &["@stg_orders"], &[]).contains(&"snap_customers".to_string()));
    let err = m.select(&["@stg_orders+"], &[]).unwrap_err();
    assert_eq!(err.to_string(), "invalid selector `@stg_orders+`: the \"@\" prefix and \"+\" suffix are incompatible");
}

#[test]
fn methods() {
    let m = manifest();
    let v = |s: &[&str]| names(&m, s, &[]);
    assert_eq!(v(&["path:models/marts"]), v(&["models/marts"]), "a value with a slash is a path");
    assert_eq!(
        v(&["path:models/marts"]),
        ["assert_positive", "dim_v.v1", "dim_v.v2", "fct_orders", REL, "unique_fct_orders_id"]
            .map(String::from)
            .to_vec()
    );
    assert_eq!(
        v(&["path:models/staging/_staging.yml"]),
        [REL, "stg_customers", "stg_orders"].map(String::from).to_vec()
    );
    assert_eq!(v(&["path:models/**/*_orders.sql"]), v(&["stg_orders fct_orders"]));
    assert_eq!(v(&["fqn:p.staging.*"]), v(&["tag:staging"]));
    assert_eq!(v(&["staging"]), v(&["tag:staging"]), "a bare folder name is an fqn prefix");
    assert_eq!(v(&["p.marts.fct_orders"]), v(&["fct_orders"]));
    assert_eq!(v(&["fct_*"]), v(&["fct_orders"]));
    assert_eq!(v(&["dim_v"]), ["dim_v.v1", "dim_v.v2"].map(String::from).to_vec());
    assert_eq!(v(&["dim_v.v2"]), ["dim_v.v2"].map(String::from).to_vec());
    assert_eq!(v(&["dim_v_v1"]), ["dim_v.v1"].map(String::from).to_vec());
    assert_eq!(v(&["version:latest"]), ["dim_v.v2"].map(String::from).to_vec());
    assert_eq!(v(&["version:old"]), ["dim_v.v1"].map(String::from).to_vec());
    assert_eq!(v(&["codes.csv"]), ["codes"].map(String::from).to_vec(), "a .csv value is a file name");
    assert_eq!(v(&["file:fct_orders"]), v(&["fct_orders"]));
    assert_eq!(v(&["config.materialized:table"]), v(&["fct_orders dim_v"]));
    assert_eq!(v(&["config.materialized:ephemeral"]), ["int_joined"].map(String::from).to_vec());
    assert_eq!(v(&["config.meta.owner:ana"]), v(&["fct_orders"]));
    assert_eq!(v(&["config.severity:WARN"]), [REL].map(String::from).to_vec(), "severity is case-insensitive");
    assert_eq!(v(&["config.enabled:TRUE,resource_type:seed"]), ["codes"].map(String::from).to_vec());
    assert_eq!(v(&["resource_type:snapshot"]), ["snap_customers"].map(String::from).to_vec());
    assert_eq!(v(&["resource_type:test"]).len(), 4);
    assert_eq!(v(&["test_type:singular"]), ["assert_positive"].map(String::from).to_vec());
    assert_eq!(v(&["test_type:generic"]).len(), 3);
    assert_eq!(v(&["test_name:relation*"]), [REL].map(String::from).to_vec());
    assert_eq!(v(&["source:raw"]), ["source_not_null_raw_orders_id"].map(String::from).to_vec());
    assert_eq!(v(&["source:raw.orders+"]), v(&["stg_orders+ source_not_null_raw_orders_id"]));
    assert_eq!(v(&["exposure:dash"]), Vec::<String>::new());
    assert_eq!(v(&["+exposure:dash"]).len(), v(&["+fct_orders lonely"]).len());
    assert_eq!(v(&["package:this"]).len(), m.nodes().count());
    assert_eq!(v(&["access:public"]), v(&["fct_orders"]));
}

#[test]
fn default_union_and_exclude() {
    let m = manifest();
    let all: Vec<String> = m.nodes().map(|n| n.unique_id.clone()).collect();
    assert_eq!(select(&m, &[], &[]), all, "no --select means every node");
    assert_eq!(select(&m, &["tag:staging tag:marts"], &[]), select(&m, &["tag:staging", "tag:marts"], &[]));
    // Excluding stg_customers also drops the tests that touch it.
    let rest = names(&m, &[], &["stg_customers"]);
    assert!(!rest.contains(&REL.to_string()) && !rest.contains(&"stg_customers".to_string()));
    assert!(rest.contains(&"unique_fct_orders_id".to_string()));
    assert_eq!(names(&m, &["tag:staging"], &["tag:staging"]), Vec::<String>::new());
}

#[test]
fn indirect_selection_modes() {
    let m = manifest();
    let with = |mode, s: &[&str]| -> Vec<String> { m.select_with(s, &[], mode).unwrap().into_iter().collect() };
    let rel = "test.p.relationships_fct_orders_customer.2b".to_string();
    assert!(with(IndirectSelection::Eager, &["stg_customers"]).contains(&rel));
    assert!(!with(IndirectSelection::Cautious, &["stg_customers"]).contains(&rel));
    assert!(
        with(IndirectSelection::Cautious, &["stg_customers fct_orders"]).contains(&rel),
        "both parents in the union"
    );
    assert!(with(IndirectSelection::Buildable, &["fct_orders"]).contains(&rel), "stg_customers is upstream");
    assert!(!with(IndirectSelection::Empty, &["fct_orders"]).iter().any(|id| id.starts_with("test.")));
}

#[test]
fn selector_errors() {
    let m = manifest();
    let err = m.select(&["tags:staging"], &[]).unwrap_err();
    assert!(matches!(err, SelectError::UnknownMethod { ref method, .. } if method == "tags"));
    assert!(
        err.to_string().starts_with("unknown selector method `tags` in `tags:staging`: dbt's methods are fqn, tag, ")
    );
    let err = m.select(&[], &["state:modified"]).unwrap_err();
    assert!(matches!(err, SelectError::NeedsState { .. }), "{err}");
    assert!(
        m.select(&["resource_type:models"], &[]).unwrap_err().to_string().contains("invalid resource type `models`")
    );
    assert!(m.select(&["test_type:x"], &[]).is_err());
    assert!(m.select(&["source:a.b.c.d"], &[]).is_err());
    assert!(m.select(&["path:/etc"], &[]).is_err());
    assert!(m.select(&["version:newest"], &[]).is_err());
    assert!(m.select(&["a\nb"], &[]).is_err());
}

#[test]
fn edges_within_skip_ephemeral_models() {
    let m = manifest();
    let keep: BTreeSet<String> = m.nodes().filter(|n| n.is_task()).map(|n| n.unique_id.clone()).collect();
    let edges = m.edges_within(&keep);
    let has = |a: &str, b: &str| edges.contains(&(a.to_string(), b.to_string()));
    assert!(has("model.p.stg_orders", "model.p.fct_orders"), "through the ephemeral int_joined");
    assert!(has("seed.p.codes", "model.p.fct_orders"));
    assert!(has("model.p.stg_customers", "model.p.fct_orders"));
    assert!(has("model.p.fct_orders", "test.p.relationships_fct_orders_customer.2b"));
    assert!(!edges.iter().any(|(a, b)| a.contains("int_joined") || b.contains("int_joined")));
    assert!(!edges.iter().any(|(a, _)| a.starts_with("source.")), "sources are not kept");
}

/// `selectors.yml` as a JSON value.
fn selectors(definitions: Value) -> Result<Selectors, SelectorsError> {
    Selectors::from_value(&json!({ "selectors": definitions }))
}

#[test]
fn selectors_follow_dbt_grammar() {
    let m = manifest();
    let file = selectors(json!([
        {"name": "staging", "definition": "tag:staging"},
        {"name": "orders", "default": true, "definition": {"union": [
            {"method": "fqn", "value": "fct_orders", "parents": true},
            {"exclude": [{"method": "selector", "value": "staging"}]},
        ]}},
        {"name": "models", "definition": {"intersection": [{"resource_type": "model"}, "tag:staging"]}},
    ]))
    .unwrap();
    let pick = |s: &[&str], e: &[&str]| -> Vec<String> {
        m.select_in(s, e, IndirectSelection::Eager, &file).unwrap().into_iter().collect()
    };
    assert_eq!(file.default_selector().map(|s| s.name.as_str()), Some("orders"));
    // No selection: the default selector; any selection replaces it.
    assert_eq!(pick(&[], &[]), pick(&["selector:orders"], &[]));
    assert!(!pick(&[], &[]).iter().any(|id| id.contains("stg_")));
    assert!(pick(&[], &["fct_orders"]).iter().any(|id| id.contains("stg_")));
    // Eager: each criterion brings the tests of its nodes, before the intersection.
    let staged = ["model.p.stg_customers", "model.p.stg_orders", "test.p.relationships_fct_orders_customer.2b"];
    assert_eq!(pick(&["selector:models"], &[]), staged);
    let line = file.get("orders").unwrap().command_line().unwrap();
    assert_eq!((line.select, line.exclude), (vec!["+fqn:fct_orders".to_owned()], vec!["tag:staging".to_owned()]));
    let line = file.get("models").unwrap().command_line().unwrap();
    assert_eq!(line.select, ["resource_type:model,tag:staging"]);
    let err = m.select_in(&["selector:nope"], &[], IndirectSelection::Eager, &file).unwrap_err();
    assert_eq!(err.to_string(), "unknown selector `nope`: selectors.yml defines staging, orders, models");
    assert!(m.select_in(&["+selector:staging"], &[], IndirectSelection::Eager, &file).is_err());
}

#[test]
fn selector_file_errors_point_into_it() {
    let pointer = |definitions: Value| selectors(definitions).unwrap_err().pointer;
    // A selector may use only the selectors before it.
    assert_eq!(
        pointer(
            json!([{"name": "a", "definition": {"method": "selector", "value": "b"}}, {"name": "b", "definition": "x"}])
        ),
        "/selectors/0/definition/value"
    );
    assert_eq!(
        pointer(json!([{"name": "a", "definition": {"union": ["x"], "method": "tag"}}])),
        "/selectors/0/definition"
    );
    assert_eq!(
        pointer(json!([{"name": "a", "definition": {"union": ["x", {"exclude": ["y"]}, {"exclude": ["z"]}]}}])),
        "/selectors/0/definition/union/2"
    );
    assert_eq!(pointer(json!([{"name": "a", "definition": ["x"]}])), "/selectors/0/definition");
    assert_eq!(pointer(json!([{"name": "a", "definition": {"union": [3]}}])), "/selectors/0/definition/union/0");
    assert_eq!(
        pointer(json!([{"name": "a", "definition": {"method": "tag", "value": "x", "indirect_selection": "lazy"}}])),
        "/selectors/0/definition/indirect_selection"
    );
    assert_eq!(pointer(json!([{"definition": "x"}])), "/selectors/0/name");
    assert!(Selectors::from_value(&Value::Null).unwrap().names().next().is_none());
}
