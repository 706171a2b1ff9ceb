//! The CustomResourceDefinitions of `flagger.app/v1beta1`, generated from core's types.
//!
//! The derive gives the structural schema, the status subresource and the printer columns; this
//! module adds the value rules the derive cannot express but Flagger's CRD has (or that make the
//! API server reject a spec the operator would refuse anyway): the analysis must pick exactly one
//! strategy, the port is a port, the provider and the kinds are ones Flagger knows.
//!
//! Output format: YAML (`serde-saphyr`), one document per CRD separated by `---`, the format Helm's
//! `crds/` directory and `kubectl apply -f` expect. `charts/flagger/crds/crd.yaml` holds exactly
//! [`render_yaml`]'s output; a test fails when the two drift apart.

use flagger_core::api::{AlertProvider, Canary, MetricTemplate};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use serde_json::{Value, json};

/// Every provider Flagger's CRD accepts, and bare `gatewayapi` (ours; Flagger's CRD refuses it).
/// The core blocks the ones it cannot route with yet, naming the provider, so a Flagger Canary
/// is never refused at `kubectl apply`.
pub fn providers() -> Vec<&'static str> {
    // Flagger's values, and bare `gatewayapi` (Flagger's CRD refuses it, its router takes it).
    let mut all = flagger_core::policy::FLAGGER_PROVIDERS.to_vec();
    all.push("gatewayapi");
    all.sort_unstable();
    all
}

/// The analysis settings that make a strategy; Flagger's CRD requires exactly one combination.
const STRATEGY_KEYS: &[&str] = &["iterations", "stepWeight", "stepWeights"];

pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![
        edit(
            Canary::crd(),
            "Canary is the Schema for the Canary API.",
            Some(restrict_spec),
            false,
        ),
        edit(
            MetricTemplate::crd(),
            "MetricTemplate is a specification for a canary analysis metric.",
            None,
            true,
        ),
        edit(
            AlertProvider::crd(),
            "AlertProvider is a specification for an alerting provider.",
            None,
            true,
        ),
    ]
}

/// The CRDs as a multi-document YAML stream, ending with a newline.
pub fn render_yaml() -> String {
    serde_saphyr::to_string_multiple(&crds()).expect("a CustomResourceDefinition always serializes")
}

/// Flagger's description in place of the derive's, the uninstall guard and the spec rules.
/// `status_subresource`: Flagger's MetricTemplate and AlertProvider CRDs declare a status
/// subresource without a status schema (nothing writes one); the derive only adds it with a status
/// type, so it is added here.
/// `helm.sh/resource-policy: keep`: Helm never deletes `crds/`, but a rendered chart applied and
/// deleted with kubectl would, and deleting the CRD deletes every Canary.
fn edit(
    crd: CustomResourceDefinition,
    description: &str,
    restrict: Option<fn(&mut Value)>,
    status_subresource: bool,
) -> CustomResourceDefinition {
    let mut value = serde_json::to_value(&crd).expect("a CustomResourceDefinition serializes");
    value["metadata"]["annotations"]["helm.sh/resource-policy"] = json!("keep");
    for version in value["spec"]["versions"]
        .as_array_mut()
        .expect("a derived CRD has versions")
    {
        if status_subresource {
            version["subresources"]["status"] = json!({});
        }
        let root = &mut version["schema"]["openAPIV3Schema"];
        root["description"] = json!(description);
        if let Some(restrict) = restrict {
            restrict(&mut root["properties"]["spec"]);
        }
    }
    serde_json::from_value(value).expect("the edited CRD still has the CRD shape")
}

fn restrict_spec(spec: &mut Value) {
    let props = &mut spec["properties"];
    props["provider"]["enum"] = json!(providers());
    // Flagger's kinds; the core blocks those it cannot handle yet, naming them.
    props["targetRef"]["properties"]["kind"]["enum"] =
        json!(["DaemonSet", "Deployment", "Service"]);
    props["autoscalerRef"]["properties"]["kind"]["enum"] =
        json!(["HorizontalPodAutoscaler", "ScaledObject"]);
    // A port outside this range has no meaning for Flagger either: its Service write fails.
    bound(&mut props["service"]["properties"]["port"], 1, 65535);
    for analysis in ["analysis", "canaryAnalysis"] {
        restrict_analysis(&mut props[analysis]);
    }
}

/// Flagger's rule: one strategy setting besides interval and threshold. The values themselves
/// (weights, counts, readiness percentages) are not bounded here, as in Flagger's CRD: the core
/// refuses the ones that have no meaning with a `Blocked` condition naming the field.
fn restrict_analysis(analysis: &mut Value) {
    analysis["oneOf"] = Value::Array(
        STRATEGY_KEYS
            .iter()
            .map(|key| json!({ "required": ["interval", "threshold", key] }))
            .collect(),
    );
}

fn bound(schema: &mut Value, min: i64, max: i64) {
    assert!(
        schema.is_object(),
        "schema post-processing names a field the derive no longer generates"
    );
    schema["minimum"] = json!(min);
    schema["maximum"] = json!(max);
}
