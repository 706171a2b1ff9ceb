//! Drift of the generated objects, judged from cached objects shaped as the API server returns
//! them: server-filled fields (cluster IPs, session affinity, IP families, Gateway API defaults,
//! uids and versions) are not drift; a changed `spec.service`, a hand edit or a field we set
//! before and no longer write are.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::controller_support::deployment;
use flagger::controller::snapshot;
use flagger::controller::watch::{ClusterView, RouteKind, RouteLookup};
use flagger::executor::Known;
use flagger_core::api::Canary;
use flagger_core::snapshot::{Answers, Drift, OperatorConfig, Routes};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use kube::api::DynamicObject;
use serde_json::{Value, json};

const UID: &str = "0f6c2b9e-5d1a-4c55-9a3e-7b2f1d2c3e4f";

#[derive(Default, Clone)]
struct View {
    deployments: BTreeMap<String, Arc<Deployment>>,
    services: BTreeMap<String, Arc<Service>>,
    routes: BTreeMap<(RouteKind, String), Arc<DynamicObject>>,
}

impl ClusterView for View {
    fn known_service(&self, ns: &str, name: &str) -> Known<Arc<Service>> {
        self.service(ns, name).map_or(Known::Absent, Known::Found)
    }
    fn deployment(&self, _: &str, name: &str) -> Option<Arc<Deployment>> {
        self.deployments.get(name).cloned()
    }
    fn service(&self, _: &str, name: &str) -> Option<Arc<Service>> {
        self.services.get(name).cloned()
    }
    fn autoscaler(&self, _: &str, _: &str) -> Option<Arc<HorizontalPodAutoscaler>> {
        None
    }
    fn config_maps(&self, _: &str, _: &BTreeSet<String>) -> Option<Vec<ConfigMap>> {
        None
    }
    fn secrets(&self, _: &str, _: &BTreeSet<String>) -> Option<Vec<Secret>> {
        None
    }
    fn route(&self, kind: RouteKind, _: &str, name: &str) -> RouteLookup {
        self.routes
            .get(&(kind, name.to_string()))
            .cloned()
            .map_or(RouteLookup::Missing, RouteLookup::Found)
    }
}

impl View {
    fn service_json(&self, name: &str) -> Value {
        serde_json::to_value(self.services[name].as_ref()).unwrap()
    }
    fn set_service(&mut self, value: Value) {
        let s: Service = serde_json::from_value(value).unwrap();
        self.services
            .insert(s.metadata.name.clone().unwrap(), Arc::new(s));
    }
    fn route_json(&self, kind: RouteKind, name: &str) -> Value {
        serde_json::to_value(self.routes[&(kind, name.to_string())].as_ref()).unwrap()
    }
    fn set_route(&mut self, kind: RouteKind, value: Value) {
        let o: DynamicObject = serde_json::from_value(value).unwrap();
        self.routes
            .insert((kind, o.metadata.name.clone().unwrap()), Arc::new(o));
    }
}

fn canary(provider: &str, service: Value) -> Canary {
    serde_json::from_value(json!({
        "apiVersion": "flagger.app/v1beta1", "kind": "Canary",
        "metadata": {"name": "podinfo", "namespace": "test", "uid": UID},
        "spec": {
            "provider": provider,
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
            "service": service,
            "analysis": {"interval": "1m", "threshold": 2, "maxWeight": 50, "stepWeight": 10}
        },
        "status": {"phase": "Succeeded", "canaryWeight": 0}
    }))
    .unwrap()
}

fn drift(view: &View, canary: &Canary) -> Drift {
    snapshot::build(
        view,
        canary,
        &OperatorConfig::default(),
        "2026-03-01T12:00:00Z".parse().unwrap(),
        Answers::default(),
    )
    .drift
}

fn owner() -> Value {
    json!([{"apiVersion": "flagger.app/v1beta1", "kind": "Canary", "name": "podinfo",
            "uid": UID, "controller": true, "blockOwnerDeletion": true}])
}

fn apply_entry(api_version: &str, fields: Value) -> Value {
    json!([{"manager": "flagger", "operation": "Apply", "apiVersion": api_version,
            "time": "2026-03-01T11:00:00Z", "fieldsType": "FieldsV1", "fieldsV1": fields}])
}

/// A generated Service as `kubectl get -o json` shows it after our apply: the API server added
/// the cluster IPs, IP families, session affinity and traffic policy.
fn served_service(name: &str, selects: &str, cluster_ip: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {
            "name": name, "namespace": "test", "uid": format!("uid-{name}"),
            "resourceVersion": "4711", "creationTimestamp": "2026-03-01T11:00:00Z",
            "labels": {"app": name},
            "annotations": {"helm.toolkit.fluxcd.io/driftDetection": "disabled",
                            "kustomize.toolkit.fluxcd.io/reconcile": "disabled"},
            "ownerReferences": owner(),
            "managedFields": apply_entry("v1", json!({
                "f:metadata": {
                    "f:annotations": {"f:helm.toolkit.fluxcd.io/driftDetection": {},
                                      "f:kustomize.toolkit.fluxcd.io/reconcile": {}},
                    "f:labels": {"f:app": {}},
                    "f:ownerReferences": {format!("k:{{\"uid\":\"{UID}\"}}"): {}}
                },
                "f:spec": {
                    "f:ports": {"k:{\"port\":9898,\"protocol\":\"TCP\"}": {
                        ".": {}, "f:name": {}, "f:port": {}, "f:protocol": {}, "f:targetPort": {}}},
                    "f:selector": {}, "f:type": {}
                }
            }))
        },
        "spec": {
            "clusterIP": cluster_ip, "clusterIPs": [cluster_ip],
            "internalTrafficPolicy": "Cluster", "ipFamilies": ["IPv4"],
            "ipFamilyPolicy": "SingleStack", "sessionAffinity": "None", "type": "ClusterIP",
            "ports": [{"name": "http", "port": 9898, "protocol": "TCP", "targetPort": 9898}],
            "selector": {"app": selects}
        },
        "status": {"loadBalancer": {}}
    })
}

fn base_view() -> View {
    let mut v = View::default();
    for d in [
        deployment("podinfo", 0, "podinfo:6.0.0"),
        deployment("podinfo-primary", 2, "podinfo:6.0.0"),
    ] {
        v.deployments
            .insert(d.metadata.name.clone().unwrap(), Arc::new(d));
    }
    v.set_service(served_service("podinfo-canary", "podinfo", "10.96.0.11"));
    v.set_service(served_service(
        "podinfo-primary",
        "podinfo-primary",
        "10.96.0.12",
    ));
    v.set_service(served_service("podinfo", "podinfo-primary", "10.96.0.13"));
    v
}

#[test]
fn services_read_back_with_server_defaults_have_not_drifted() {
    let view = base_view();
    let c = canary("kubernetes", json!({"port": 9898}));
    assert_eq!(drift(&view, &c), Drift::default());
}

#[test]
fn a_changed_port_name_or_app_protocol_is_drift_of_every_service() {
    let view = base_view();
    for service in [
        json!({"port": 8080}),
        json!({"port": 9898, "portName": "grpc"}),
        json!({"port": 9898, "appProtocol": "http"}),
        json!({"port": 9898, "targetPort": "http"}),
    ] {
        let d = drift(&view, &canary("kubernetes", service.clone()));
        assert!(d.services && d.apex, "{service}: {d:?}");
    }
    let d = drift(
        &view,
        &canary(
            "kubernetes",
            json!({"port": 9898, "canary": {"labels": {"tier": "web"}}}),
        ),
    );
    assert_eq!(
        (d.services, d.apex),
        (true, false),
        "canary metadata is the canary Service's"
    );
}

#[test]
fn a_hand_edited_service_is_drift_and_others_additions_are_not() {
    let c = canary("kubernetes", json!({"port": 9898}));
    let mut view = base_view();
    let mut s = view.service_json("podinfo-canary");
    s["spec"]["ports"][0]["targetPort"] = json!(8080);
    view.set_service(s);
    assert!(drift(&view, &c).services, "kubectl edit of a port");

    let mut view = base_view();
    let mut s = view.service_json("podinfo-primary");
    s["spec"]["type"] = json!("NodePort");
    s["spec"]["ports"][0]["nodePort"] = json!(31234);
    view.set_service(s);
    assert!(drift(&view, &c).services, "type changed by hand");

    // Someone else's label, annotation or extra port is theirs, and stays.
    let mut view = base_view();
    let mut s = view.service_json("podinfo-canary");
    s["metadata"]["labels"]["team"] = json!("web");
    s["metadata"]["annotations"]["note"] = json!("x");
    s["spec"]["ports"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "metrics", "port": 9797, "protocol": "TCP", "targetPort": 9797}));
    view.set_service(s);
    assert_eq!(drift(&view, &c), Drift::default());
}

#[test]
fn a_label_we_applied_and_the_spec_no_longer_has_is_drift() {
    let mut view = base_view();
    let mut s = view.service_json("podinfo-canary");
    s["metadata"]["labels"]["tier"] = json!("web");
    s["metadata"]["managedFields"][0]["fieldsV1"]["f:metadata"]["f:labels"]["f:tier"] = json!({});
    view.set_service(s);
    let with = canary(
        "kubernetes",
        json!({"port": 9898, "canary": {"labels": {"tier": "web"}}}),
    );
    assert_eq!(drift(&view, &with), Drift::default());
    let without = canary("kubernetes", json!({"port": 9898}));
    assert!(drift(&view, &without).services);
}

#[test]
fn a_users_apex_is_compared_in_its_ports_only() {
    let mut view = base_view();
    // The user's Service, taken over: their type, node port, labels and no owner of ours.
    view.set_service(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "podinfo", "namespace": "test", "uid": "u", "labels": {"team": "web"},
            "managedFields": []},
        "spec": {"type": "NodePort", "clusterIP": "10.96.0.13", "clusterIPs": ["10.96.0.13"],
            "externalTrafficPolicy": "Cluster", "sessionAffinity": "None",
            "ports": [{"name": "http", "port": 9898, "protocol": "TCP", "targetPort": 9898,
                       "nodePort": 30080}],
            "selector": {"app": "podinfo-primary"}}
    }));
    let c = canary("kubernetes", json!({"port": 9898}));
    assert_eq!(drift(&view, &c), Drift::default());
    let d = drift(
        &view,
        &canary("kubernetes", json!({"port": 9898, "appProtocol": "http"})),
    );
    assert!(d.apex, "{d:?}");
}

fn istio_view() -> View {
    let mut view = base_view();
    for host in ["podinfo-primary", "podinfo-canary"] {
        view.set_route(
            RouteKind::DestinationRule,
            json!({
                "apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
                "metadata": {"name": host, "namespace": "test", "uid": format!("dr-{host}"),
                    "generation": 1, "resourceVersion": "5000", "ownerReferences": owner(),
                    "managedFields": apply_entry("networking.istio.io/v1beta1", json!({
                        "f:metadata": {"f:ownerReferences": {format!("k:{{\"uid\":\"{UID}\"}}"): {}}},
                        "f:spec": {"f:host": {}, "f:trafficPolicy": {}}}))},
                "spec": {"host": host, "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}}}
            }),
        );
    }
    view.set_route(
        RouteKind::VirtualService,
        json!({
            "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": "podinfo", "namespace": "test", "uid": "vs", "generation": 3, "annotations": {"helm.toolkit.fluxcd.io/driftDetection": "disabled", "kustomize.toolkit.fluxcd.io/reconcile": "disabled"},
                "resourceVersion": "5001", "ownerReferences": owner(),
                "managedFields": apply_entry("networking.istio.io/v1beta1", json!({
                    "f:metadata": {"f:annotations": {"f:helm.toolkit.fluxcd.io/driftDetection": {}, "f:kustomize.toolkit.fluxcd.io/reconcile": {}}, "f:ownerReferences": {format!("k:{{\"uid\":\"{UID}\"}}"): {}}},
                    "f:spec": {"f:gateways": {}, "f:hosts": {}, "f:http": {}}}))},
            "spec": {
                "hosts": ["podinfo"], "gateways": ["mesh"],
                "http": [{"timeout": "5s", "route": [
                    {"destination": {"host": "podinfo-primary"}, "weight": 100},
                    {"destination": {"host": "podinfo-canary"}, "weight": 0}]}]
            }
        }),
    );
    view
}

fn istio_service() -> Value {
    json!({"port": 9898, "timeout": "5s", "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}}})
}

#[test]
fn istio_objects_as_read_back_have_not_drifted() {
    let view = istio_view();
    assert_eq!(
        drift(&view, &canary("istio", istio_service())),
        Drift::default()
    );
}

#[test]
fn istio_spec_service_edits_are_drift_of_the_routes() {
    let view = istio_view();
    let edits = [
        ("timeout", json!("10s")),
        ("retries", json!({"attempts": 3, "perTryTimeout": "1s"})),
        ("headers", json!({"request": {"add": {"x-canary": "1"}}})),
        ("match", json!([{"uri": {"prefix": "/api"}}])),
        ("hosts", json!(["podinfo.example.com"])),
        ("gateways", json!(["public-gateway"])),
        ("trafficPolicy", json!({"tls": {"mode": "DISABLE"}})),
    ];
    for (field, value) in edits {
        let mut service = istio_service();
        service[field] = value;
        let d = drift(&view, &canary("istio", service));
        assert_eq!(
            d,
            Drift {
                routes: true,
                ..Drift::default()
            },
            "{field}"
        );
    }
    // Fields dropped from the spec are removed from the objects too.
    for field in ["timeout", "trafficPolicy"] {
        let mut service = istio_service();
        service.as_object_mut().unwrap().remove(field);
        assert!(drift(&view, &canary("istio", service)).routes, "{field}");
    }
    // Apex metadata goes on the VirtualService.
    let mut service = istio_service();
    service["apex"] = json!({"labels": {"tier": "web"}});
    let d = drift(&view, &canary("istio", service));
    assert!(d.routes && d.apex, "{d:?}");
}

#[test]
fn istio_hand_edits_are_drift_but_weights_are_the_cores() {
    let c = canary("istio", istio_service());
    let mut view = istio_view();
    let mut vs = view.route_json(RouteKind::VirtualService, "podinfo");
    vs["spec"]["http"][0]["route"][0]["weight"] = json!(50);
    vs["spec"]["http"][0]["route"][1]["weight"] = json!(50);
    view.set_route(RouteKind::VirtualService, vs);
    let snap = snapshot::build(
        &view,
        &c,
        &OperatorConfig::default(),
        "2026-03-01T12:00:00Z".parse().unwrap(),
        Answers::default(),
    );
    assert_eq!(snap.drift, Drift::default(), "weights are no drift");
    assert_eq!(
        snap.routes,
        Some(Routes {
            primary_weight: 50,
            canary_weight: 50,
            mirrored: false
        })
    );

    let mut view = istio_view();
    let mut vs = view.route_json(RouteKind::VirtualService, "podinfo");
    vs["spec"]["http"][0]["route"]
        .as_array_mut()
        .unwrap()
        .truncate(1);
    view.set_route(RouteKind::VirtualService, vs);
    assert!(drift(&view, &c).routes, "a destination removed");

    let mut view = istio_view();
    let mut vs = view.route_json(RouteKind::VirtualService, "podinfo");
    vs["spec"]["http"][0]["fault"] = json!({"abort": {"httpStatus": 500}});
    view.set_route(RouteKind::VirtualService, vs);
    assert!(drift(&view, &c).routes, "a fault injected into our route");

    let mut view = istio_view();
    view.routes
        .remove(&(RouteKind::DestinationRule, "podinfo-canary".into()));
    assert!(drift(&view, &c).routes, "a DestinationRule deleted");

    // Someone else's top-level field is theirs.
    let mut view = istio_view();
    let mut vs = view.route_json(RouteKind::VirtualService, "podinfo");
    vs["spec"]["exportTo"] = json!(["."]);
    vs["metadata"]["labels"] = json!({"team": "web"});
    view.set_route(RouteKind::VirtualService, vs);
    assert_eq!(drift(&view, &c), Drift::default());
}

fn gateway_view() -> View {
    let mut view = base_view();
    let backend = |name: &str, weight: i64| json!({"group": "", "kind": "Service", "name": name, "port": 9898, "weight": weight});
    view.set_route(
        RouteKind::HttpRoute,
        json!({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": "podinfo", "namespace": "test", "uid": "hr", "generation": 2, "annotations": {"helm.toolkit.fluxcd.io/driftDetection": "disabled", "kustomize.toolkit.fluxcd.io/reconcile": "disabled"},
                "ownerReferences": owner(),
                "managedFields": apply_entry("gateway.networking.k8s.io/v1", json!({
                    "f:metadata": {"f:annotations": {"f:helm.toolkit.fluxcd.io/driftDetection": {}, "f:kustomize.toolkit.fluxcd.io/reconcile": {}}, "f:ownerReferences": {format!("k:{{\"uid\":\"{UID}\"}}"): {}}},
                    "f:spec": {"f:hostnames": {}, "f:parentRefs": {}, "f:rules": {}}}))},
            "spec": {
                // The API server filled in the parent's group and kind and the header match type.
                "parentRefs": [{"group": "gateway.networking.k8s.io", "kind": "Gateway",
                                "name": "public-gateway", "namespace": "gateway-system"}],
                "hostnames": ["podinfo.example.com"],
                "rules": [{
                    "matches": [{"path": {"type": "PathPrefix", "value": "/"},
                                 "headers": [{"type": "Exact", "name": "x-user", "value": "a"}]}],
                    "backendRefs": [backend("podinfo-primary", 100), backend("podinfo-canary", 0)],
                    "timeouts": {"request": "5s"}
                }]
            },
            "status": {"parents": []}
        }),
    );
    view
}

fn gateway_service() -> Value {
    json!({
        "port": 9898, "timeout": "5s", "hosts": ["podinfo.example.com"],
        "gatewayRefs": [{"name": "public-gateway", "namespace": "gateway-system"}],
        "match": [{"headers": {"x-user": {"exact": "a"}}}]
    })
}

#[test]
fn an_http_route_with_server_defaults_has_not_drifted_and_edits_have() {
    let view = gateway_view();
    let c = canary("gatewayapi:v1", gateway_service());
    assert_eq!(drift(&view, &c), Drift::default());
    for (field, value) in [
        ("timeout", json!("10s")),
        ("match", json!([{"headers": {"x-user": {"exact": "b"}}}])),
        ("hosts", json!(["www.example.com"])),
    ] {
        let mut service = gateway_service();
        service[field] = value;
        assert!(
            drift(&view, &canary("gatewayapi:v1", service)).routes,
            "{field}"
        );
    }
    let mut service = gateway_service();
    service.as_object_mut().unwrap().remove("timeout");
    assert!(
        drift(&view, &canary("gatewayapi:v1", service)).routes,
        "timeout dropped"
    );

    let mut view = gateway_view();
    let mut route = view.route_json(RouteKind::HttpRoute, "podinfo");
    route["spec"]["rules"][0]["matches"][0]["headers"][0]["value"] = json!("z");
    view.set_route(RouteKind::HttpRoute, route);
    assert!(drift(&view, &c).routes, "a hand-edited header match");
}

#[test]
fn the_canary_ingress_clone_drifts_with_the_users_ingress() {
    let mut view = base_view();
    let ingress = |name: &str, backend: &str, annotations: Value| {
        json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": name, "namespace": "test", "uid": format!("i-{name}"),
                         "generation": 1, "annotations": annotations},
            "spec": {"ingressClassName": "nginx", "rules": [{"host": "app.example.com", "http": {
                "paths": [{"path": "/", "pathType": "Prefix", "backend": {
                    "service": {"name": backend, "port": {"number": 9898}}}}]}}]},
            "status": {"loadBalancer": {}}
        })
    };
    view.set_route(RouteKind::Ingress, ingress("podinfo", "podinfo", json!({})));
    let mut clone = ingress(
        "podinfo-canary",
        "podinfo-canary",
        json!({"nginx.ingress.kubernetes.io/canary": "true",
               "nginx.ingress.kubernetes.io/canary-weight": "0",
               "helm.toolkit.fluxcd.io/driftDetection": "disabled",
               "kustomize.toolkit.fluxcd.io/reconcile": "disabled"}),
    );
    clone["metadata"]["ownerReferences"] = owner();
    view.set_route(RouteKind::Ingress, clone);
    let mut c = canary("nginx", json!({"port": 9898}));
    c.spec.ingress_ref = Some(flagger_core::api::ObjectReference {
        api_version: Some("networking.k8s.io/v1".into()),
        kind: Some("Ingress".into()),
        name: "podinfo".into(),
        namespace: None,
    });
    assert_eq!(drift(&view, &c), Drift::default());
    let mut user = ingress("podinfo", "podinfo", json!({}));
    user["spec"]["rules"][0]["host"] = json!("www.example.com");
    view.set_route(RouteKind::Ingress, user);
    assert!(drift(&view, &c).routes, "the user's Ingress changed host");
}
