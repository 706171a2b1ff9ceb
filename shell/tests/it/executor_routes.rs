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
        Router::Istio.read_routes(&canary(), &object),
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
    c.spec.service.as_mut().unwrap().apex = Some(CustomMetadata {
        labels: Some(BTreeMap::from([
            ("team".to_string(), "ours".to_string()),
            ("tier".to_string(), "web".to_string()),
        ])),
        annotations: Some(BTreeMap::from([("owner".to_string(), "ours".to_string())])),
    });
    c.spec.service.as_mut().unwrap().unmanaged_metadata = Some(UnmanagedMetadata {
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
        assert_eq!(
            apex.body["metadata"]["annotations"],
            json!({"helm.toolkit.fluxcd.io/driftDetection": "disabled",
                   "kustomize.toolkit.fluxcd.io/reconcile": "disabled"}),
            "{provider}: only Flagger's Flux markers, not the unmanaged key"
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
        "unsupported mesh provider \"linkerd\" (supported: istio, gatewayapi:v1, kubernetes, nginx)"
    );
    assert!(requests.is_empty());
}

fn nginx_canary(ab: bool) -> flagger_core::Canary {
    let mut c = canary();
    c.spec.ingress_ref = Some(flagger_core::api::ObjectReference {
        api_version: Some("networking.k8s.io/v1".into()),
        kind: Some("Ingress".into()),
        name: "podinfo".into(),
        namespace: None,
    });
    if ab {
        let analysis = c.spec.analysis.as_mut().unwrap();
        analysis.iterations = Some(10);
        analysis.match_ = Some(vec![
            json!({ "headers": { "x-canary": { "regex": "^insider$" } } }),
        ]);
    }
    c
}

/// The user's Ingress as the watch cache holds it.
fn user_ingress() -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {
            "name": "podinfo", "namespace": "test",
            "annotations": { "nginx.ingress.kubernetes.io/proxy-body-size": "1m" },
        },
        "spec": {
            "ingressClassName": "nginx",
            "rules": [{ "host": "app.example.com", "http": { "paths": [{
                "path": "/", "pathType": "Prefix",
                "backend": { "service": { "name": "podinfo", "port": { "number": 9898 } } },
            }]}}],
        },
    }))
    .unwrap()
}

async fn nginx_set_routes(
    c: flagger_core::Canary,
    ingress: Option<DynamicObject>,
    primary: i32,
    canary_weight: i32,
) -> (Result<(), String>, Vec<Captured>) {
    let mut ctx = context("nginx");
    ctx.ingress = ingress;
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
async fn nginx_applies_the_canary_ingress_with_the_weight() {
    let c = nginx_canary(false);
    let (result, requests) = nginx_set_routes(c.clone(), Some(user_ingress()), 70, 30).await;
    result.unwrap();
    assert_eq!(requests.len(), 1);
    requests[0].assert_apply("/apis/networking.k8s.io/v1/namespaces/test/ingresses/podinfo-canary");
    let body = &requests[0].body;
    assert_owned_by_canary(body);
    assert_eq!(
        body["metadata"]["annotations"],
        json!({
            "helm.toolkit.fluxcd.io/driftDetection": "disabled",
            "kustomize.toolkit.fluxcd.io/reconcile": "disabled",
            "nginx.ingress.kubernetes.io/proxy-body-size": "1m",
            "nginx.ingress.kubernetes.io/canary": "true",
            "nginx.ingress.kubernetes.io/canary-weight": "30",
        })
    );
    assert_eq!(
        body["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"],
        json!({ "name": "podinfo-canary", "port": { "number": 9898 } })
    );
    let object: DynamicObject = serde_json::from_value(body.clone()).unwrap();
    assert_eq!(
        Router::Nginx.read_routes(&c, &object),
        Some(Routes {
            primary_weight: 70,
            canary_weight: 30,
            mirrored: false
        })
    );
}

#[tokio::test]
async fn nginx_ab_testing_selects_the_canary_by_header_pattern() {
    let c = nginx_canary(true);
    let (result, requests) = nginx_set_routes(c.clone(), Some(user_ingress()), 0, 100).await;
    result.unwrap();
    assert_eq!(requests.len(), 1);
    let annotations = &requests[0].body["metadata"]["annotations"];
    assert_eq!(
        annotations["nginx.ingress.kubernetes.io/canary-weight"],
        "0"
    );
    assert_eq!(
        annotations["nginx.ingress.kubernetes.io/canary-by-header"],
        "x-canary"
    );
    assert_eq!(
        annotations["nginx.ingress.kubernetes.io/canary-by-header-pattern"],
        "^insider$"
    );
    assert!(
        annotations
            .get("nginx.ingress.kubernetes.io/canary-by-header-value")
            .is_none()
    );
    let object: DynamicObject = serde_json::from_value(requests[0].body.clone()).unwrap();
    assert_eq!(
        Router::Nginx
            .read_routes(&c, &object)
            .map(|r| r.canary_weight),
        Some(100)
    );
}

#[tokio::test]
async fn nginx_without_the_user_ingress_is_an_error_without_requests() {
    let (result, requests) = nginx_set_routes(nginx_canary(false), None, 90, 10).await;
    assert_eq!(result.unwrap_err(), "ingress podinfo not found");
    assert!(requests.is_empty());
}

/// A VirtualService the user made before the Canary, as stored (no owner), with `spec`.
fn users_virtual_service(annotations: serde_json::Value) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "networking.istio.io/v1beta1",
        "kind": "VirtualService",
        "metadata": {"name": "podinfo", "namespace": "test", "annotations": annotations},
        "spec": {"hosts": ["podinfo.example.com"], "gateways": ["public"],
            "http": [{"route": [{"destination": {"host": "podinfo"}}]}]}
    }))
    .unwrap()
}

async fn set_routes_with(
    c: flagger_core::Canary,
    existing: impl IntoIterator<Item = DynamicObject>,
    primary: i32,
    canary_weight: i32,
) -> Vec<Captured> {
    let mut ctx = context("istio");
    ctx.existing_routes = existing.into_iter().collect();
    let (result, requests) = run(echo(c.clone()), |exec| async move {
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
    .await;
    result.unwrap();
    requests
}

/// As Flagger: a DestinationRule that existed before the Canary gets its spec rewritten but no
/// owner reference, so deleting the Canary leaves it; one the Canary made stays owned.
#[tokio::test]
async fn a_users_destination_rule_is_rewritten_without_an_owner() {
    let users: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "networking.istio.io/v1beta1",
        "kind": "DestinationRule",
        "metadata": {"name": "podinfo-primary", "namespace": "test"},
        "spec": {"host": "podinfo-primary", "trafficPolicy": {"tls": {"mode": "DISABLE"}}}
    }))
    .unwrap();
    let requests = set_routes_with(canary(), [users], 100, 0).await;
    let primary_rule = &requests[0].body;
    assert_eq!(primary_rule["metadata"]["name"], "podinfo-primary");
    assert!(
        primary_rule["metadata"].get("ownerReferences").is_none(),
        "{primary_rule}"
    );
    assert!(
        primary_rule["metadata"]["annotations"]
            .get("flagger.kubernetes.io/original-configuration")
            .is_none(),
        "Flagger keeps no original of a DestinationRule"
    );
    assert_eq!(requests[1].body["metadata"]["name"], "podinfo-canary");
    assert_owned_by_canary(&requests[1].body);
}

#[tokio::test]
async fn a_users_virtual_service_is_taken_over_without_an_owner_and_its_spec_kept() {
    let users = users_virtual_service(json!({"team": "web"}));
    let requests = set_routes_with(canary(), Some(users.clone()), 100, 0).await;
    let vs = &requests[2].body;
    assert_eq!(vs["kind"], "VirtualService");
    assert!(
        vs["metadata"].get("ownerReferences").is_none(),
        "the user's object must never be garbage-collected with the Canary: {vs}"
    );
    let kept: serde_json::Value = serde_json::from_str(
        vs["metadata"]["annotations"]["flagger.kubernetes.io/original-configuration"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(kept, users.data["spec"]);
    // Its DestinationRules are new: ours, owned.
    assert_owned_by_canary(&requests[0].body);
    assert_owned_by_canary(&requests[1].body);

    // Later writes keep the first original, not the spec we wrote since.
    let mut taken = users_virtual_service(json!({
        "flagger.kubernetes.io/original-configuration": users.data["spec"].to_string()
    }));
    taken.data["spec"]["http"][0]["route"] = vs["spec"]["http"][0]["route"].clone();
    let requests = set_routes_with(canary(), Some(taken), 90, 10).await;
    let vs = &requests[2].body;
    assert_eq!(
        vs["metadata"]["annotations"]["flagger.kubernetes.io/original-configuration"],
        json!(users.data["spec"].to_string())
    );
    assert_eq!(vs["spec"]["http"][0]["route"][1]["weight"], 10);
}

#[tokio::test]
async fn a_virtual_service_the_canary_created_stays_owned() {
    let mut ours = users_virtual_service(json!({}));
    ours.metadata.owner_references = Some(vec![
        serde_json::from_value(
            json!({"apiVersion": "flagger.app/v1beta1", "kind": "Canary",
            "name": "podinfo", "uid": canary().metadata.uid.clone().unwrap(), "controller": true}),
        )
        .unwrap(),
    ]);
    for existing in [None, Some(ours)] {
        let requests = set_routes_with(canary(), existing, 90, 10).await;
        let vs = &requests[2].body;
        assert_owned_by_canary(vs);
        assert!(
            vs["metadata"]
                .get("annotations")
                .and_then(|a| a.get("flagger.kubernetes.io/original-configuration"))
                .is_none(),
            "{vs}"
        );
    }
}

#[tokio::test]
async fn revert_on_deletion_hands_a_users_virtual_service_its_own_spec_back() {
    let mut deleting = canary();
    deleting.metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            "2026-01-01T00:00:00Z".parse().unwrap(),
        ));
    let original = users_virtual_service(json!({})).data["spec"].clone();
    // From Flagger's (or our) annotation …
    let taken = users_virtual_service(json!({
        "flagger.kubernetes.io/original-configuration": original.to_string()
    }));
    let requests = set_routes_with(deleting.clone(), Some(taken), 0, 100).await;
    assert_eq!(requests[2].body["spec"], original);
    assert!(
        requests[2].body["metadata"]
            .get("ownerReferences")
            .is_none()
    );
    // … or from kubectl's record, which Flagger prefers and then stores no copy of.
    let applied = json!({"apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService",
        "metadata": {"name": "podinfo", "namespace": "test"},
        "spec": {"hosts": ["podinfo"], "http": [{"route": [{"destination": {"host": "podinfo"}}]}]}});
    let by_kubectl = users_virtual_service(json!({
        "kubectl.kubernetes.io/last-applied-configuration": applied.to_string()
    }));
    let requests = set_routes_with(deleting, Some(by_kubectl.clone()), 0, 100).await;
    assert_eq!(requests[2].body["spec"], applied["spec"]);
    assert!(
        requests[2].body["metadata"]
            .get("annotations")
            .and_then(|a| a.get("flagger.kubernetes.io/original-configuration"))
            .is_none()
    );
    // While the Canary lives, the same object routes by weight.
    let requests = set_routes_with(canary(), Some(by_kubectl), 100, 0).await;
    assert_eq!(
        requests[2].body["spec"]["http"][0]["route"][0]["destination"]["host"],
        "podinfo-primary"
    );
}

#[tokio::test]
async fn a_users_http_route_is_taken_over_without_an_owner() {
    let mut c = canary();
    c.spec.service.as_mut().unwrap().gateway_refs = Some(vec![
        json!({"name": "gateway", "namespace": "istio-ingress"}),
    ]);
    let users: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "podinfo", "namespace": "test"},
        "spec": {"parentRefs": [{"name": "gateway"}], "rules": []}
    }))
    .unwrap();
    let mut ctx = context("gatewayapi:v1");
    ctx.existing_routes = vec![users];
    let (result, requests) = run(echo(c.clone()), |exec| async move {
        exec.execute(
            &c,
            &ctx,
            &Command::SetRoutes {
                primary_weight: 100,
                canary_weight: 0,
                mirrored: false,
            },
        )
        .await
        .map_err(|e| e.to_string())
    })
    .await;
    result.unwrap();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].body["kind"], "HTTPRoute");
    assert!(
        requests[0].body["metadata"]
            .get("ownerReferences")
            .is_none()
    );
    // Flagger keeps no copy of an HTTPRoute's spec (and restores none).
    assert!(
        requests[0].body["metadata"]
            .get("annotations")
            .and_then(|a| a.get("flagger.kubernetes.io/original-configuration"))
            .is_none()
    );
}
