//! SetRoutes as API requests, per provider.

use std::collections::BTreeMap;

use crate::executor_support::*;
use flagger::router::Router;
use flagger_core::api::{CustomMetadata, UnmanagedMetadata};
use flagger_core::{Command, Routes};
use kube::core::DynamicObject;
use serde_json::json;

async fn set_routes(
    provider: &str,
    primary: i32,
    canary_weight: i32,
) -> (Result<(), String>, Vec<Captured>) {
    set_routes_of(canary(), provider, primary, canary_weight).await
}

async fn set_routes_of(
    c: flagger_core::Canary,
    provider: &str,
    primary: i32,
    canary_weight: i32,
) -> (Result<(), String>, Vec<Captured>) {
    let ctx = context(provider);
    run(echo(c.clone()), |exec| async move {
        exec.execute(
            &c,
            &ctx,
            &Command::SetRoutes {
                primary_weight: primary,
                canary_weight,
                mirrored: false,
            },
        )
        .await
        .map_err(|e| e.to_string())
    })
    .await
}

#[tokio::test]
async fn istio_applies_destination_rules_then_the_virtual_service() {
    let (result, requests) = set_routes("istio", 70, 30).await;
    result.unwrap();
    let base = "/apis/networking.istio.io/v1beta1/namespaces/test";
    assert_eq!(requests.len(), 3);
    requests[0].assert_apply(&format!("{base}/destinationrules/podinfo-primary"));
    requests[1].assert_apply(&format!("{base}/destinationrules/podinfo-canary"));
    requests[2].assert_apply(&format!("{base}/virtualservices/podinfo"));
    for r in &requests {
        assert_eq!(r.body["apiVersion"], "networking.istio.io/v1beta1");
        assert_owned_by_canary(&r.body);
    }
    assert_eq!(requests[0].body["kind"], "DestinationRule");
    assert_eq!(
        requests[0].body["spec"],
        json!({ "host": "podinfo-primary" })
    );
    let vs = &requests[2].body;
    assert_eq!(vs["kind"], "VirtualService");
    assert_eq!(
        vs["spec"]["http"][0]["route"],
        json!([
            { "destination": { "host": "podinfo-primary" }, "weight": 70 },
            { "destination": { "host": "podinfo-canary" }, "weight": 30 }
        ])
    );
    // What was written reads back as what was asked.
    let object: DynamicObject = serde_json::from_value(vs.clone()).unwrap();
    assert_eq!(
        Router::Istio.read_routes(&object),
        Some(Routes {
            primary_weight: 70,
            canary_weight: 30,
            mirrored: false
        })
    );
}

#[tokio::test]
async fn mesh_objects_carry_the_apex_metadata_but_not_its_unmanaged_keys() {
    let mut c = canary();
    c.spec.service.apex = Some(CustomMetadata {
        labels: Some(BTreeMap::from([
            ("team".to_string(), "ours".to_string()),
            ("tier".to_string(), "web".to_string()),
        ])),
        annotations: Some(BTreeMap::from([("owner".to_string(), "ours".to_string())])),
    });
    c.spec.service.unmanaged_metadata = Some(UnmanagedMetadata {
        labels: Some(vec!["team".into()]),
        annotations: Some(vec!["owner".into()]),
    });
    for provider in ["istio", "gatewayapi:v1"] {
        let (result, requests) = set_routes_of(c.clone(), provider, 100, 0).await;
        result.unwrap();
        let apex = requests.last().unwrap();
        assert_eq!(
            apex.body["metadata"]["labels"],
            json!({ "tier": "web" }),
            "{provider}"
        );
        assert!(
            apex.body["metadata"].get("annotations").is_none(),
            "{provider}: {}",
            apex.body["metadata"]
        );
    }
}

#[tokio::test]
async fn gateway_api_applies_one_http_route_in_the_requested_version() {
    let (result, requests) = set_routes("gatewayapi:v1", 90, 10).await;
    result.unwrap();
    assert_eq!(requests.len(), 1);
    requests[0]
        .assert_apply("/apis/gateway.networking.k8s.io/v1/namespaces/test/httproutes/podinfo");
    assert_eq!(requests[0].body["kind"], "HTTPRoute");
    assert_eq!(
        requests[0].body["spec"]["rules"][0]["backendRefs"],
        json!([
            { "group": "", "kind": "Service", "name": "podinfo-primary", "port": 9898, "weight": 90 },
            { "group": "", "kind": "Service", "name": "podinfo-canary", "port": 9898, "weight": 10 }
        ])
    );

    let (result, requests) = set_routes("gatewayapi:v1beta1", 90, 10).await;
    result.unwrap();
    requests[0]
        .assert_apply("/apis/gateway.networking.k8s.io/v1beta1/namespaces/test/httproutes/podinfo");
}

#[tokio::test]
async fn kubernetes_provider_writes_no_routing_object() {
    let (result, requests) = set_routes("kubernetes", 0, 100).await;
    result.unwrap();
    assert!(requests.is_empty());
}

#[tokio::test]
async fn an_unknown_provider_is_an_error_without_requests() {
    let (result, requests) = set_routes("linkerd", 90, 10).await;
    assert_eq!(
        result.unwrap_err(),
        "unsupported mesh provider \"linkerd\" (supported: istio, gatewayapi:v1, kubernetes)"
    );
    assert!(requests.is_empty());
}
