//! The compatibility corpus (`fixtures/compat/`): Canary, MetricTemplate and AlertProvider YAML
//! that between them use every field of Flagger's v1beta1 schemas. Offline, this checks that the
//! corpus really covers every field (Flagger's, listed in `flagger-v1beta1-fields.txt`, and every
//! leaf of our generated schema), that our schema keeps every Flagger field instead of pruning it,
//! and that every Canary means to the operator what its `compat.flagger-rs/expect` annotation says.
//! `crd_cluster::the_compatibility_corpus_is_stored_as_sent` applies the same documents to a real
//! API server.

use std::collections::BTreeSet;
use std::path::PathBuf;

use flagger::crd::crds;
use flagger_core::{Canary, OperatorConfig, Policy};
use serde_json::Value;

pub const EXPECT: &str = "compat.flagger-rs/expect";

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/compat")
}

/// Every document of every `*.yaml` file, with the file it came from.
pub fn documents() -> Vec<(String, Value)> {
    let mut files: Vec<_> = std::fs::read_dir(dir())
        .expect("fixtures/compat exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    let mut docs = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let parsed: Vec<Value> = serde_saphyr::from_multiple(&text)
            .unwrap_or_else(|e| panic!("{name} is not YAML: {e}"));
        docs.extend(parsed.into_iter().map(|d| (name.clone(), d)));
    }
    docs
}

/// What the operator must make of a Canary: `Ok(())`, or the Blocked reason and the field.
pub fn expectation(doc: &Value) -> Result<(), (String, String)> {
    let text = doc["metadata"]["annotations"][EXPECT]
        .as_str()
        .unwrap_or_else(|| panic!("{} has no {EXPECT} annotation", doc["metadata"]["name"]));
    if text == "ok" {
        return Ok(());
    }
    let (reason, field) = text
        .split_once(' ')
        .unwrap_or_else(|| panic!("{EXPECT}: {text:?} is neither ok nor `<reason> <field>`"));
    Err((reason.to_string(), field.to_string()))
}

/// The Canary through the operator's own path: deserialized as the watch does, then the policy.
pub fn outcome(doc: &Value) -> Result<(), (String, String)> {
    let canary: Canary = serde_json::from_value(doc.clone()).map_err(|e| {
        (
            "Undecodable".to_string(),
            format!("{e} ({})", doc["metadata"]["name"]),
        )
    })?;
    Policy::from_spec(
        &canary.metadata.name.clone().unwrap_or_default(),
        "compat",
        &canary.spec,
        &OperatorConfig::default(),
    )
    .map(|_| ())
    .map_err(|e| (e.reason().to_string(), e.field))
}

/// Flagger's field list: `(kind, path)`.
fn flagger_fields() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(dir().join("flagger-v1beta1-fields.txt")).unwrap();
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (kind, path) = l.split_once(' ').expect("`<Kind> <path>`");
            (kind.to_string(), path.to_string())
        })
        .collect()
}

fn spec_schema(kind: &str) -> Value {
    let crd = crds()
        .into_iter()
        .find(|c| c.spec.names.kind == kind)
        .unwrap_or_else(|| panic!("no CRD for {kind}"));
    let crd = serde_json::to_value(crd).unwrap();
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"].clone()
}

fn preserves(schema: &Value) -> bool {
    schema["x-kubernetes-preserve-unknown-fields"] == Value::Bool(true)
}

/// `spec.a[].b{}.c` → `[".a", "[]", ".b", "{}", ".c"]` after the leading `spec`.
fn steps(path: &str) -> Vec<String> {
    let rest = path.strip_prefix("spec").expect("paths start at spec");
    let mut out = Vec::new();
    let mut name = String::new();
    let mut chars = rest.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '.' => {
                if !name.is_empty() {
                    out.push(std::mem::take(&mut name));
                }
            }
            '[' | '{' => {
                if !name.is_empty() {
                    out.push(std::mem::take(&mut name));
                }
                chars.next();
                out.push(if c == '[' { "[]" } else { "{}" }.to_string());
            }
            c => name.push(c),
        }
    }
    if !name.is_empty() {
        out.push(name);
    }
    out
}

/// Whether the API server keeps a value at `path` under our schema: the path exists, or it runs
/// into an object that preserves unknown fields.
fn kept(schema: &Value, path: &str) -> bool {
    let mut s = schema;
    for step in steps(path) {
        if preserves(s) {
            return true;
        }
        s = match step.as_str() {
            "[]" => &s["items"],
            "{}" => &s["additionalProperties"],
            name => &s["properties"][name],
        };
        if !s.is_object() {
            return false;
        }
    }
    true
}

/// The leaves of our schema (scalars, lists and maps of scalars, opaque objects).
fn schema_leaves(schema: &Value, path: String, out: &mut Vec<String>) {
    if preserves(schema) {
        out.push(path);
    } else if schema["type"] == "array" && schema["items"].is_object() {
        schema_leaves(&schema["items"], format!("{path}[]"), out);
    } else if let Some(props) = schema["properties"].as_object() {
        for (name, child) in props {
            schema_leaves(child, format!("{path}.{name}"), out);
        }
    } else if schema["additionalProperties"]["properties"].is_object() {
        schema_leaves(&schema["additionalProperties"], format!("{path}{{}}"), out);
    } else {
        out.push(path);
    }
}

/// Every path a document sets. `known` lists the paths that exist; an object whose path with
/// `{}` appended starts a known path is a map (its keys are the user's), and a known path that is
/// a leaf is not walked into.
fn used_paths(value: &Value, path: String, known: &BTreeSet<String>, out: &mut BTreeSet<String>) {
    let is_leaf = known.contains(&path)
        && !known.iter().any(|k| {
            k.starts_with(&format!("{path}."))
                || k.starts_with(&format!("{path}[]"))
                || k.starts_with(&format!("{path}{{}}"))
        });
    out.insert(path.clone());
    if is_leaf {
        return;
    }
    match value {
        Value::Object(map) => {
            let map_path = format!("{path}{{}}");
            let is_map = known.iter().any(|k| k.starts_with(&map_path));
            for (key, child) in map {
                let next = if is_map {
                    map_path.clone()
                } else {
                    format!("{path}.{key}")
                };
                used_paths(child, next, known, out);
            }
        }
        Value::Array(items) => {
            for item in items {
                used_paths(item, format!("{path}[]"), known, out);
            }
        }
        _ => {}
    }
}

/// Fields of our schema that Flagger's has not: the seed's `canaryAnalysis`, and parts of
/// references that reuse one type. Documents for Flagger need not set them.
fn ours_only(path: &str) -> bool {
    path.starts_with("spec.canaryAnalysis")
        || [
            "spec.targetRef.namespace",
            "spec.ingressRef.namespace",
            "spec.routeRef.namespace",
            "spec.analysis.metrics[].templateRef.apiVersion",
            "spec.analysis.metrics[].templateRef.kind",
            "spec.analysis.alerts[].providerRef.apiVersion",
            "spec.analysis.alerts[].providerRef.kind",
        ]
        .contains(&path)
}

const KINDS: [&str; 3] = ["Canary", "MetricTemplate", "AlertProvider"];

#[test]
fn our_schema_keeps_every_field_of_flaggers() {
    let fields = flagger_fields();
    assert!(fields.len() > 200, "the field list is complete");
    let mut pruned = Vec::new();
    for kind in KINDS {
        let schema = spec_schema(kind);
        for (_, path) in fields.iter().filter(|(k, _)| k == kind) {
            if !kept(&schema, path) {
                pruned.push(format!("{kind} {path}"));
            }
        }
    }
    assert!(pruned.is_empty(), "our CRD would prune: {pruned:#?}");
}

#[test]
fn the_corpus_uses_every_field_of_both_schemas() {
    let fields = flagger_fields();
    let docs = documents();
    let mut missing = Vec::new();
    for kind in KINDS {
        let mut leaves = Vec::new();
        schema_leaves(&spec_schema(kind), "spec".into(), &mut leaves);
        let flaggers: Vec<String> = fields
            .iter()
            .filter(|(k, _)| k == kind)
            .map(|(_, p)| p.clone())
            .collect();
        let known: BTreeSet<String> = leaves.iter().chain(&flaggers).cloned().collect();
        let mut used = BTreeSet::new();
        for (_, doc) in docs.iter().filter(|(_, d)| d["kind"] == kind) {
            used_paths(&doc["spec"], "spec".into(), &known, &mut used);
        }
        for path in flaggers.iter().chain(&leaves) {
            if !used.contains(path) && !ours_only(path) {
                missing.push(format!("{kind} {path}"));
            }
        }
    }
    missing.sort();
    missing.dedup();
    assert!(
        missing.is_empty(),
        "no document in fixtures/compat sets: {missing:#?}"
    );
}

/// The walk notices a field no document sets, and one our schema would prune.
#[test]
fn the_coverage_checks_notice_gaps() {
    let schema = spec_schema("Canary");
    assert!(kept(&schema, "spec.service.trafficPolicy.tls.sni"));
    assert!(kept(&schema, "spec.analysis.webhooks[].muteAlert"));
    assert!(!kept(&schema, "spec.analysis.webhooks[].muteAlerts"));
    assert!(!kept(&schema, "spec.service.portz"));
    let known: BTreeSet<String> = [
        "spec.service.match[].headers{}.exact",
        "spec.service.match[].headers{}.regex",
        "spec.service.port",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    let mut used = BTreeSet::new();
    let doc = serde_json::json!({"service": {"port": 80, "match": [{"headers": {"x-a": {"exact": "1"}}}]}});
    used_paths(&doc, "spec".into(), &known, &mut used);
    assert!(used.contains("spec.service.match[].headers{}.exact"));
    assert!(used.contains("spec.service.port"));
    assert!(!used.contains("spec.service.match[].headers{}.regex"));
}

#[test]
fn every_canary_means_what_its_annotation_says() {
    let docs = documents();
    let canaries: Vec<_> = docs.iter().filter(|(_, d)| d["kind"] == "Canary").collect();
    assert!(canaries.len() >= 30, "{}", canaries.len());
    for (file, doc) in canaries {
        assert_eq!(
            outcome(doc),
            expectation(doc),
            "{file}: {}",
            doc["metadata"]["name"]
        );
    }
    // Every provider of Flagger's CRD appears in the corpus.
    for provider in flagger_core::policy::FLAGGER_PROVIDERS {
        assert!(
            docs.iter().any(|(_, d)| d["spec"]["provider"] == *provider),
            "no Canary in fixtures/compat uses provider {provider}"
        );
    }
}

#[test]
fn every_document_has_a_unique_name_in_the_corpus_namespace() {
    let mut seen = BTreeSet::new();
    for (file, doc) in documents() {
        assert_eq!(doc["apiVersion"], "flagger.app/v1beta1", "{file}");
        assert!(
            KINDS.contains(&doc["kind"].as_str().unwrap_or_default()),
            "{file}"
        );
        assert_eq!(doc["metadata"]["namespace"], "compat", "{file}");
        let key = format!("{}/{}", doc["kind"], doc["metadata"]["name"]);
        assert!(seen.insert(key.clone()), "{file}: {key} twice");
    }
}
