//! The generated CRDs: committed chart copy in sync, structurally valid for the API server, and
//! carrying the rules that reject malformed Canaries at admission.

use std::path::PathBuf;

use flagger::crd::{crds, providers, render_yaml};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::Value;

fn chart_crd_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../charts/flagger/crds/crd.yaml")
}

#[test]
fn committed_chart_crds_match_the_generated_ones() {
    let committed = std::fs::read_to_string(chart_crd_path()).unwrap_or_default();
    assert!(
        committed == render_yaml(),
        "charts/flagger/crds/crd.yaml is out of date; run `cargo run -p flagger -- crd > charts/flagger/crds/crd.yaml`"
    );
}

#[test]
fn yaml_reads_back_as_the_same_crds() {
    let parsed: Vec<CustomResourceDefinition> =
        serde_saphyr::from_multiple(&render_yaml()).expect("rendered YAML parses");
    assert_eq!(parsed, crds());
}

#[test]
fn all_three_kinds_are_generated_and_kept_on_uninstall() {
    let names: Vec<_> = crds()
        .iter()
        .map(|c| c.metadata.name.clone().unwrap_or_default())
        .collect();
    assert_eq!(
        names,
        [
            "canaries.flagger.app",
            "metrictemplates.flagger.app",
            "alertproviders.flagger.app"
        ]
    );
    for crd in crds() {
        let keep = crd
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("helm.sh/resource-policy"));
        assert_eq!(keep.map(String::as_str), Some("keep"));
    }
}

fn canary_version() -> Value {
    let crd = serde_json::to_value(&crds()[0]).unwrap();
    crd["spec"]["versions"][0].clone()
}

fn spec_schema() -> Value {
    canary_version()["schema"]["openAPIV3Schema"]["properties"]["spec"].clone()
}

#[test]
fn canary_has_status_subresource_and_flaggers_printer_columns() {
    let version = canary_version();
    assert_eq!(version["name"], "v1beta1");
    assert_eq!(version["subresources"]["status"], serde_json::json!({}));
    let columns: Vec<&str> = version["additionalPrinterColumns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        columns,
        [
            "Status",
            "Weight",
            "Suspended",
            "FailedChecks",
            "Interval",
            "Mirror",
            "StepWeight",
            "StepWeights",
            "MaxWeight",
            "LastTransitionTime"
        ]
    );
}

#[test]
fn target_ref_is_required_and_service_is_optional_as_in_flagger() {
    let spec = spec_schema();
    let required = spec["required"].as_array().unwrap();
    assert_eq!(required, &vec![Value::from("targetRef")]);
    assert_eq!(
        spec["properties"]["service"]["required"],
        serde_json::json!(["port"])
    );
    assert_eq!(
        spec["properties"]["targetRef"]["required"],
        serde_json::json!(["name"])
    );
    let port = &spec["properties"]["service"]["properties"]["port"];
    assert_eq!(
        (port["minimum"].as_f64(), port["maximum"].as_f64()),
        (Some(1.0), Some(65535.0))
    );
}

#[test]
fn analysis_must_choose_exactly_one_strategy_and_values_are_left_to_the_core() {
    let spec = spec_schema();
    for field in ["analysis", "canaryAnalysis"] {
        let one_of = spec["properties"][field]["oneOf"].as_array().unwrap();
        let sets: Vec<Vec<&str>> = one_of
            .iter()
            .map(|b| {
                b["required"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|s| s.as_str().unwrap())
                    .collect()
            })
            .collect();
        assert_eq!(
            sets,
            [
                ["interval", "threshold", "iterations"],
                ["interval", "threshold", "stepWeight"],
                ["interval", "threshold", "stepWeights"]
            ],
            "{field}"
        );
        // Flagger's CRD bounds none of these; the core blocks the values without meaning.
        let props = &spec["properties"][field]["properties"];
        for number in [
            "maxWeight",
            "stepWeight",
            "stepWeightPromotion",
            "mirrorWeight",
            "primaryReadyThreshold",
            "canaryReadyThreshold",
            "iterations",
            "threshold",
        ] {
            assert!(props[number].is_object(), "{number}");
            assert_eq!(props[number].get("minimum"), None, "{number}");
            assert_eq!(props[number].get("maximum"), None, "{number}");
        }
    }
    assert_eq!(
        spec["properties"]["progressDeadlineSeconds"].get("minimum"),
        None
    );
}

#[test]
fn provider_and_kinds_are_flaggers() {
    let spec = spec_schema();
    let allowed: Vec<&str> = spec["properties"]["provider"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(allowed, providers());
    for name in flagger_core::policy::FLAGGER_PROVIDERS {
        assert!(allowed.contains(name), "{name} is in Flagger's CRD");
    }
    assert_eq!(
        spec["properties"]["targetRef"]["properties"]["kind"]["enum"],
        serde_json::json!(["DaemonSet", "Deployment", "Service"])
    );
    assert_eq!(
        spec["properties"]["autoscalerRef"]["properties"]["kind"]["enum"],
        serde_json::json!(["HorizontalPodAutoscaler", "ScaledObject"])
    );
    for provider in providers() {
        let core = flagger_core::policy::Provider::parse(provider).is_some()
            || flagger_core::policy::Provider::known_to_flagger(provider);
        assert!(core, "{provider} is allowed by the CRD but unknown to core");
    }
}

#[test]
fn every_kind_has_flaggers_status_subresource_and_category() {
    for crd in crds() {
        let name = crd.metadata.name.clone().unwrap_or_default();
        assert_eq!(
            crd.spec.names.categories,
            Some(vec!["all".to_string()]),
            "{name}"
        );
        let version = &crd.spec.versions[0];
        let status = version
            .subresources
            .as_ref()
            .and_then(|s| s.status.as_ref());
        assert!(status.is_some(), "{name}");
    }
}

/// The API server refuses a CRD whose schema is not structural; these are the rules of
/// "Specifying a structural schema" that a generator or a post-processing edit can break.
fn check_structural(schema: &Value, path: &str, problems: &mut Vec<String>) {
    let Some(obj) = schema.as_object() else {
        problems.push(format!("{path}: schema is not an object"));
        return;
    };
    let preserve = obj.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
    let int_or_string = obj.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true));
    let type_ = obj.get("type").and_then(Value::as_str);
    if type_.is_none() && !preserve && !int_or_string {
        problems.push(format!("{path}: no type"));
    }
    if int_or_string && type_.is_some() {
        problems.push(format!("{path}: int-or-string must not have a type"));
    }
    if type_ == Some("array") && !obj.contains_key("items") {
        problems.push(format!("{path}: array without items"));
    }
    if type_ == Some("object")
        && !preserve
        && !obj.contains_key("properties")
        && !obj.contains_key("additionalProperties")
    {
        problems.push(format!("{path}: object that would prune every field"));
    }
    if obj.contains_key("properties") && obj.contains_key("additionalProperties") {
        problems.push(format!("{path}: both properties and additionalProperties"));
    }
    let props = obj.get("properties").and_then(Value::as_object);
    for name in obj
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let name = name.as_str().unwrap_or_default();
        if !props.is_some_and(|p| p.contains_key(name)) && !preserve {
            problems.push(format!("{path}: required {name:?} is not a property"));
        }
    }
    for junctor in ["oneOf", "anyOf", "allOf"] {
        for (i, branch) in obj
            .get(junctor)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            check_junctor(branch, props, &format!("{path}.{junctor}[{i}]"), problems);
        }
    }
    if let Some(not) = obj.get("not") {
        check_junctor(not, props, &format!("{path}.not"), problems);
    }
    for (name, child) in props.into_iter().flatten() {
        check_structural(child, &format!("{path}.{name}"), problems);
    }
    if let Some(items) = obj.get("items") {
        check_structural(items, &format!("{path}[]"), problems);
    }
    if let Some(extra) = obj.get("additionalProperties").filter(|v| v.is_object()) {
        check_structural(extra, &format!("{path}{{}}"), problems);
    }
}

/// Inside logical junctors only value validations are allowed, and they may only talk about
/// properties the surrounding schema declares.
fn check_junctor(
    branch: &Value,
    outer: Option<&serde_json::Map<String, Value>>,
    path: &str,
    problems: &mut Vec<String>,
) {
    for forbidden in [
        "type",
        "description",
        "default",
        "nullable",
        "additionalProperties",
        "x-kubernetes-preserve-unknown-fields",
        "x-kubernetes-int-or-string",
    ] {
        if branch.get(forbidden).is_some() {
            problems.push(format!("{path}: {forbidden} inside a junctor"));
        }
    }
    for name in branch
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let name = name.as_str().unwrap_or_default();
        if !outer.is_some_and(|p| p.contains_key(name)) {
            problems.push(format!("{path}: required {name:?} is not declared outside"));
        }
    }
}

#[test]
fn every_schema_is_structural() {
    for crd in crds() {
        let crd = serde_json::to_value(&crd).unwrap();
        let name = crd["metadata"]["name"].as_str().unwrap().to_string();
        for version in crd["spec"]["versions"].as_array().unwrap() {
            let mut problems = Vec::new();
            let root = &version["schema"]["openAPIV3Schema"];
            check_structural(root, &name, &mut problems);
            assert_eq!(root["type"], "object", "{name}: root must be an object");
            assert!(problems.is_empty(), "{name}: {problems:#?}");
        }
    }
}

#[test]
fn the_structural_check_catches_broken_schemas() {
    let broken = serde_json::json!({
        "type": "object",
        "properties": {
            "untyped": {},
            "list": { "type": "array" },
            "analysis": {
                "type": "object",
                "properties": { "interval": { "type": "string" } },
                "oneOf": [{ "required": ["steps"], "type": "object" }]
            }
        },
        "required": ["missing"]
    });
    let mut problems = Vec::new();
    check_structural(&broken, "x", &mut problems);
    assert_eq!(problems.len(), 5, "{problems:#?}");
}
