//! The CustomResourceDefinitions of `flagger.app/v1beta1`, generated from core's types.
//!
//! The derive gives the structural schema, the status subresource and the printer columns; this
//! module adds the value rules the derive cannot express but Flagger's CRD has (or that make the
//! API server reject a spec the operator would refuse anyway): the analysis must pick exactly one
//! strategy, weights are percentages, the port is a port, the provider is one we can route with.
//!
//! Output format: YAML (`serde-saphyr`), one document per CRD separated by `---`, the format Helm's
//! `crds/` directory and `kubectl apply -f` expect. `charts/flagger/crds/crd.yaml` holds exactly
//! [`render_yaml`]'s output; a test fails when the two drift apart.

use flagger_core::api::{AlertProvider, Canary, MetricTemplate};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use serde_json::{Value, json};

/// The providers `flagger_core::policy::Provider::parse` accepts; anything else is refused at
/// admission instead of surfacing later as a reconcile error.
pub const PROVIDERS: &[&str] = &[
    "istio",
    "gatewayapi",
    "gatewayapi:v1",
    "gatewayapi:v1beta1",
    "kubernetes",
    "nginx",
];

/// The analysis settings that make a strategy; Flagger's CRD requires exactly one combination.
const STRATEGY_KEYS: &[&str] = &["iterations", "stepWeight", "stepWeights"];

pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![
        edit(
            Canary::crd(),
            "Canary is the Schema for the Canary API.",
            Some(restrict_spec),
        ),
        edit(
            MetricTemplate::crd(),
            "MetricTemplate is a specification for a canary analysis metric.",
            None,
        ),
        edit(
            AlertProvider::crd(),
            "AlertProvider is a specification for an alerting provider.",
            None,
        ),
    ]
}

/// The CRDs as a multi-document YAML stream, ending with a newline.
pub fn render_yaml() -> String {
    serde_saphyr::to_string_multiple(&crds()).expect("a CustomResourceDefinition always serializes")
}

/// Flagger's description in place of the derive's, the uninstall guard and the spec rules.
/// `helm.sh/resource-policy: keep`: Helm never deletes `crds/`, but a rendered chart applied and
/// deleted with kubectl would, and deleting the CRD deletes every Canary.
fn edit(
    crd: CustomResourceDefinition,
    description: &str,
    restrict: Option<fn(&mut Value)>,
) -> CustomResourceDefinition {
    let mut value = serde_json::to_value(&crd).expect("a CustomResourceDefinition serializes");
    value["metadata"]["annotations"]["helm.sh/resource-policy"] = json!("keep");
    for version in value["spec"]["versions"]
        .as_array_mut()
        .expect("a derived CRD has versions")
    {
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
    props["provider"]["enum"] = json!(PROVIDERS);
    // The only workload and autoscaler kinds the executor can copy; absent means these.
    props["targetRef"]["properties"]["kind"]["enum"] = json!(["Deployment"]);
    props["autoscalerRef"]["properties"]["kind"]["enum"] = json!(["HorizontalPodAutoscaler"]);
    bound(&mut props["service"]["properties"]["port"], 1, 65535);
    at_least(&mut props["progressDeadlineSeconds"], 1);
    for analysis in ["analysis", "canaryAnalysis"] {
        restrict_analysis(&mut props[analysis]);
    }
}

fn restrict_analysis(analysis: &mut Value) {
    analysis["oneOf"] = Value::Array(
        STRATEGY_KEYS
            .iter()
            .map(|key| json!({ "required": ["interval", "threshold", key] }))
            .collect(),
    );
    let props = &mut analysis["properties"];
    for percent in [
        "maxWeight",
        "stepWeight",
        "stepWeightPromotion",
        "mirrorWeight",
        "primaryReadyThreshold",
        "canaryReadyThreshold",
    ] {
        bound(&mut props[percent], 0, 100);
    }
    bound(&mut props["stepWeights"]["items"], 0, 100);
    at_least(&mut props["iterations"], 0);
    at_least(&mut props["threshold"], 0);
}

fn bound(schema: &mut Value, min: i64, max: i64) {
    at_least(schema, min);
    schema["maximum"] = json!(max);
}

fn at_least(schema: &mut Value, min: i64) {
    assert!(
        schema.is_object(),
        "schema post-processing names a field the derive no longer generates"
    );
    schema["minimum"] = json!(min);
}
