//! Building the core's snapshot from cached objects: a pure function of plain data.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::controller_support::{canary, deployment};
use flagger::controller::snapshot::{self, FINALIZER};
use flagger::controller::watch::{ClusterView, RouteKind, RouteLookup};
use flagger::executor::Known;
use flagger::observe;
use flagger_core::api::Canary;
use flagger_core::snapshot::{Answers, HookAnswer, OperatorConfig, Routes};
use flagger_core::{CanaryStatus, Phase};
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use kube::api::DynamicObject;
use serde_json::json;

/// The cluster as plain maps.
#[derive(Default)]
struct Cluster {
    deployments: BTreeMap<String, Arc<Deployment>>,
    services: BTreeMap<String, Arc<Service>>,
    config_maps: Option<Vec<ConfigMap>>,
    virtual_services: Option<BTreeMap<String, Arc<DynamicObject>>>,
    destination_rules: Option<BTreeMap<String, Arc<DynamicObject>>>,
    ingresses: BTreeMap<String, Arc<DynamicObject>>,
    http_routes: BTreeMap<String, Arc<DynamicObject>>,
}

impl ClusterView for Cluster {
    fn known_service(&self, ns: &str, name: &str) -> Known<Arc<Service>> {
        self.service(ns, name).map_or(Known::Absent, Known::Found)
    }
    fn deployment(&self, ns: &str, name: &str) -> Option<Arc<Deployment>> {
        assert_eq!(ns, "test");
        self.deployments.get(name).cloned()
    }
    fn service(&self, _: &str, name: &str) -> Option<Arc<Service>> {
        self.services.get(name).cloned()
    }
    fn autoscaler(&self, _: &str, _: &str) -> Option<Arc<HorizontalPodAutoscaler>> {
        None
    }
    fn config_maps(&self, _: &str, names: &BTreeSet<String>) -> Option<Vec<ConfigMap>> {
        let all = self.config_maps.as_ref()?;
        Some(
            all.iter()
                .filter(|c| names.contains(c.metadata.name.as_deref().unwrap_or("")))
                .cloned()
                .collect(),
        )
    }
    fn secrets(&self, _: &str, _: &BTreeSet<String>) -> Option<Vec<Secret>> {
        self.config_maps.as_ref().map(|_| Vec::new())
    }
    fn route(&self, kind: RouteKind, _: &str, name: &str) -> RouteLookup {
        if kind == RouteKind::Ingress {
            return self
                .ingresses
                .get(name)
                .cloned()
                .map_or(RouteLookup::Missing, RouteLookup::Found);
        }
        if kind == RouteKind::HttpRoute {
            return self
                .http_routes
                .get(name)
                .cloned()
                .map_or(RouteLookup::Missing, RouteLookup::Found);
        }
        if kind == RouteKind::DestinationRule {
            return match &self.destination_rules {
                None => RouteLookup::Unavailable,
                Some(m) => m
                    .get(name)
                    .cloned()
                    .map_or(RouteLookup::Missing, RouteLookup::Found),
            };
        }
        assert_eq!(kind, RouteKind::VirtualService);
        match &self.virtual_services {
            None => RouteLookup::Unavailable,
            Some(m) => m
                .get(name)
                .cloned()
                .map_or(RouteLookup::Missing, RouteLookup::Found),
        }
    }
}

fn istio_canary() -> Canary {
    let mut c = canary();
    c.spec.provider = None;
    c.metadata.finalizers = Some(vec![FINALIZER.into()]);
    c.status = Some(CanaryStatus {
        phase: Some(Phase::Progressing),
        canary_weight: 10,
        ..Default::default()
    });
    c
}

fn virtual_service(primary: i32, canary: i32) -> Arc<DynamicObject> {
    Arc::new(
        serde_json::from_value(json!({
            "apiVersion": "networking.istio.io/v1",
            "kind": "VirtualService",
            "metadata": {"name": "podinfo", "namespace": "test"},
            "spec": {"http": [{"route": [
                {"destination": {"host": "podinfo-primary"}, "weight": primary},
                {"destination": {"host": "podinfo-canary"}, "weight": canary}
            ]}]}
        }))
        .unwrap(),
    )
}

fn full_cluster() -> Cluster {
    let mut c = Cluster::default();
    for d in [
        deployment("podinfo", 2, "podinfo:6.0.1"),
        deployment("podinfo-primary", 3, "podinfo:6.0.0"),
    ] {
        c.deployments
            .insert(d.metadata.name.clone().unwrap(), Arc::new(d));
    }
    for s in ["podinfo", "podinfo-primary", "podinfo-canary"] {
        c.services.insert(s.into(), Arc::new(Service::default()));
    }
    c.virtual_services = Some(BTreeMap::from([(
        "podinfo".to_string(),
        virtual_service(90, 10),
    )]));
    c
}

fn now() -> Timestamp {
    "2026-03-01T12:00:00Z".parse().unwrap()
}

#[test]
fn the_snapshot_reflects_the_cached_objects() {
    let cluster = full_cluster();
    let canary = istio_canary();
    let answers = Answers {
        hooks: BTreeMap::from([("pre-rollout/smoke".to_string(), HookAnswer::Passed)]),
        ..Answers::default()
    };
    let snap = snapshot::build(
        &cluster,
        &canary,
        &OperatorConfig::default(),
        now(),
        answers.clone(),
    );

    assert_eq!(snap.now, now());
    assert_eq!(
        (snap.canary.name.as_str(), snap.canary.namespace.as_str()),
        ("podinfo", "test")
    );
    assert!(snap.canary.has_finalizer);
    assert!(!snap.canary.deleting);
    assert_eq!(snap.status, canary.status.clone().unwrap());
    assert_eq!(snap.spec, canary.spec);
    let target = snap.target.as_ref().unwrap();
    let primary = snap.primary.as_ref().unwrap();
    let template = |name: &str| cluster.deployments[name].spec.clone().unwrap().template;
    assert_eq!(
        target.template_hash,
        observe::template_hash(&template("podinfo"))
    );
    assert_ne!(
        target.template_hash, primary.template_hash,
        "a new revision is visible"
    );
    assert_eq!((target.replicas, primary.replicas), (2, 3));
    assert!(snap.services_present);
    assert_eq!(
        snap.routes,
        Some(Routes {
            primary_weight: 90,
            canary_weight: 10,
            mirrored: false
        })
    );
    assert_eq!(snap.answers, answers);
    assert_eq!(
        snap,
        snapshot::build(
            &cluster,
            &canary,
            &OperatorConfig::default(),
            now(),
            answers
        ),
        "same inputs, same snapshot"
    );
}

fn service_selecting(app: &str) -> Arc<Service> {
    Arc::new(serde_json::from_value(json!({ "spec": { "selector": { "app": app } } })).unwrap())
}

#[test]
fn the_apex_counts_as_moved_only_when_it_selects_exactly_the_primarys_pods() {
    let mut cluster = full_cluster();
    let apex_moved = |cluster: &Cluster| {
        let config = OperatorConfig::default();
        snapshot::build(cluster, &istio_canary(), &config, now(), Answers::default())
            .apex_selects_primary
    };
    // A user's Service, still on the target's pods.
    cluster
        .services
        .insert("podinfo".into(), service_selecting("podinfo"));
    assert!(!apex_moved(&cluster));
    cluster
        .services
        .insert("podinfo".into(), service_selecting("podinfo-primary"));
    assert!(apex_moved(&cluster));
    // An extra key narrows the selection to other pods.
    let mut narrowed = (*service_selecting("podinfo-primary")).clone();
    let selector = narrowed.spec.as_mut().unwrap().selector.as_mut().unwrap();
    selector.insert("version".into(), "v1".into());
    cluster
        .services
        .insert("podinfo".into(), Arc::new(narrowed));
    assert!(!apex_moved(&cluster));
    cluster.services.remove("podinfo");
    assert!(!apex_moved(&cluster));
    // Without a primary there is nothing to select yet.
    cluster
        .services
        .insert("podinfo".into(), service_selecting("podinfo-primary"));
    cluster.deployments.remove("podinfo-primary");
    assert!(!apex_moved(&cluster));
}

#[test]
fn missing_objects_are_absent_from_the_snapshot() {
    let mut cluster = full_cluster();
    cluster.deployments.remove("podinfo-primary");
    cluster.services.remove("podinfo-canary");
    cluster.virtual_services = Some(BTreeMap::new());
    let snap = snapshot::build(
        &cluster,
        &istio_canary(),
        &OperatorConfig::default(),
        now(),
        Answers::default(),
    );
    assert!(snap.primary.is_none());
    assert!(
        !snap.services_present,
        "the primary and canary Services must exist"
    );
    assert_eq!(snap.routes, None, "a missing VirtualService has no weights");

    cluster.deployments.clear();
    let snap = snapshot::build(
        &cluster,
        &istio_canary(),
        &OperatorConfig::default(),
        now(),
        Answers::default(),
    );
    assert!(snap.target.is_none());
}

#[test]
fn routes_are_unknown_without_the_mesh_crd_and_derived_for_the_kubernetes_provider() {
    let mut cluster = full_cluster();
    cluster.virtual_services = None;
    let snap = snapshot::build(
        &cluster,
        &istio_canary(),
        &OperatorConfig::default(),
        now(),
        Answers::default(),
    );
    assert_eq!(snap.routes, None);

    let mut kube_canary = istio_canary();
    kube_canary.spec.provider = Some("kubernetes".into());
    cluster.virtual_services = Some(BTreeMap::from([(
        "podinfo".to_string(),
        virtual_service(50, 50),
    )]));
    let snap = snapshot::build(
        &cluster,
        &kube_canary,
        &OperatorConfig::default(),
        now(),
        Answers::default(),
    );
    assert_eq!(
        snap.routes, None,
        "the kubernetes provider never reads mesh objects"
    );
}

fn ingress(name: &str, annotations: serde_json::Value) -> Arc<DynamicObject> {
    Arc::new(
        serde_json::from_value(json!({
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": {"name": name, "namespace": "test", "annotations": annotations},
            "spec": {"rules": [{"http": {"paths": [{"path": "/", "pathType": "Prefix",
                "backend": {"service": {"name": "podinfo", "port": {"number": 9898}}}}]}}]}
        }))
        .unwrap(),
    )
}

#[test]
fn nginx_weights_come_from_the_canary_ingress_and_the_executor_gets_the_users() {
    let mut cluster = full_cluster();
    cluster
        .ingresses
        .insert("web".into(), ingress("web", json!({})));
    let mut nginx_canary = istio_canary();
    nginx_canary.spec.provider = Some("nginx".into());
    nginx_canary.spec.ingress_ref = Some(flagger_core::api::ObjectReference {
        name: "web".into(),
        ..Default::default()
    });
    let build = |cluster: &Cluster| {
        snapshot::build(
            cluster,
            &nginx_canary,
            &OperatorConfig::default(),
            now(),
            Answers::default(),
        )
    };
    assert_eq!(build(&cluster).routes, None, "no canary Ingress yet");
    cluster.ingresses.insert(
        "web-canary".into(),
        ingress(
            "web-canary",
            json!({"nginx.ingress.kubernetes.io/canary": "true",
                   "nginx.ingress.kubernetes.io/canary-weight": "40"}),
        ),
    );
    assert_eq!(
        build(&cluster).routes,
        Some(Routes {
            primary_weight: 60,
            canary_weight: 40,
            mirrored: false
        })
    );
    let ctx = flagger::controller::apply::exec_context(
        &cluster,
        &nginx_canary,
        &Default::default(),
        "istio",
    );
    assert_eq!(ctx.provider, "nginx");
    assert_eq!(
        ctx.ingress.and_then(|i| i.metadata.name),
        Some("web".to_string())
    );
}

/// The executor learns of every cached object among those the router writes (the apex
/// VirtualService and the DestinationRules), so it can tell the user's from its own.
#[test]
fn the_executor_sees_every_cached_routing_object_of_the_canary() {
    let mut cluster = full_cluster();
    let users_rule: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "DestinationRule",
        "metadata": {"name": "podinfo-canary", "namespace": "test"},
        "spec": {"host": "podinfo-canary"}
    }))
    .unwrap();
    let unrelated: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "DestinationRule",
        "metadata": {"name": "other", "namespace": "test"},
        "spec": {"host": "other"}
    }))
    .unwrap();
    cluster.destination_rules = Some(BTreeMap::from([
        ("podinfo-canary".to_string(), Arc::new(users_rule)),
        ("other".to_string(), Arc::new(unrelated)),
    ]));
    let ctx = flagger::controller::apply::exec_context(
        &cluster,
        &istio_canary(),
        &Default::default(),
        "istio",
    );
    let found: Vec<(String, String)> = ctx
        .existing_routes
        .iter()
        .map(|o| {
            (
                o.types.clone().unwrap().kind,
                o.metadata.name.clone().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        found,
        [
            ("DestinationRule".to_string(), "podinfo-canary".to_string()),
            ("VirtualService".to_string(), "podinfo".to_string()),
        ]
    );
}

/// Required configuration that does not exist is reported to the core; optional references
/// and untracked clusters (config tracking off) report nothing.
#[test]
fn missing_required_configs_are_reported_with_config_tracking() {
    let mut cluster = full_cluster();
    let mut target = deployment("podinfo", 2, "podinfo:6.0.1");
    let mut spec = target.spec.take().unwrap();
    let pod = spec.template.spec.as_mut().unwrap();
    pod.containers[0].env_from = Some(vec![
        serde_json::from_value(json!({"configMapRef": {"name": "podinfo-env"}})).unwrap(),
        serde_json::from_value(json!({"configMapRef": {"name": "extra", "optional": true}}))
            .unwrap(),
        serde_json::from_value(json!({"secretRef": {"name": "podinfo-token"}})).unwrap(),
    ]);
    target.spec = Some(spec);
    cluster
        .deployments
        .insert("podinfo".into(), Arc::new(target));
    let missing = |cluster: &Cluster| {
        snapshot::build(
            cluster,
            &istio_canary(),
            &OperatorConfig::default(),
            now(),
            Answers::default(),
        )
        .target
        .unwrap()
        .missing_configs
    };
    assert!(
        missing(&cluster).is_empty(),
        "tracking off: nothing checked"
    );
    // The test view knows no Secrets: podinfo-token is missing.
    cluster.config_maps = Some(vec![]);
    assert_eq!(
        missing(&cluster),
        ["configmap/podinfo-env", "secret/podinfo-token"]
    );
    cluster.config_maps = Some(vec![
        serde_json::from_value(json!({"metadata": {"name": "podinfo-env", "namespace": "test"}}))
            .unwrap(),
    ]);
    assert_eq!(missing(&cluster), ["secret/podinfo-token"]);
}

#[test]
fn tracked_configs_are_checksummed_only_with_config_tracking() {
    let mut cluster = full_cluster();
    let mut target = deployment("podinfo", 2, "podinfo:6.0.1");
    let mut spec = target.spec.take().unwrap();
    spec.template.spec.as_mut().unwrap().containers[0].env_from = Some(vec![
        serde_json::from_value(json!({"configMapRef": {"name": "podinfo-env"}})).unwrap(),
    ]);
    target.spec = Some(spec);
    cluster
        .deployments
        .insert("podinfo".into(), Arc::new(target));
    let cm: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "podinfo-env", "namespace": "test"},
        "data": {"color": "blue"}
    }))
    .unwrap();

    let snap = snapshot::build(
        &cluster,
        &istio_canary(),
        &OperatorConfig::default(),
        now(),
        Answers::default(),
    );
    assert!(
        snap.target.unwrap().configs.is_empty(),
        "tracking off: nothing tracked"
    );

    cluster.config_maps = Some(vec![cm.clone()]);
    let snap = snapshot::build(
        &cluster,
        &istio_canary(),
        &OperatorConfig::default(),
        now(),
        Answers::default(),
    );
    let configs = snap.target.unwrap().configs;
    assert_eq!(
        configs.keys().collect::<Vec<_>>(),
        vec!["configmap/podinfo-env"]
    );

    let mut changed = cm;
    changed.data = Some(BTreeMap::from([("color".to_string(), "green".to_string())]));
    cluster.config_maps = Some(vec![changed]);
    let snap = snapshot::build(
        &cluster,
        &istio_canary(),
        &OperatorConfig::default(),
        now(),
        Answers::default(),
    );
    assert_ne!(
        snap.target.unwrap().configs,
        configs,
        "a config change is a new checksum"
    );
}

#[test]
fn a_deleted_canary_is_marked_deleting() {
    let mut canary = istio_canary();
    canary.metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now()));
    let snap = snapshot::build(
        &full_cluster(),
        &canary,
        &OperatorConfig::default(),
        now(),
        Answers::default(),
    );
    assert!(snap.canary.deleting);
}

/// An HTTPRoute whose Gateway has accepted only its previous generation.
fn lagging_http_route(observed: i64) -> Arc<DynamicObject> {
    let parent_ref = json!({"group": "gateway.networking.k8s.io", "kind": "Gateway",
        "name": "gateway", "namespace": "istio-ingress"});
    Arc::new(
        serde_json::from_value(json!({
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": {"name": "podinfo", "namespace": "test", "generation": 4},
            "spec": {
                "parentRefs": [parent_ref],
                "rules": [{"backendRefs": [
                    {"name": "podinfo-primary", "port": 9898, "weight": 80},
                    {"name": "podinfo-canary", "port": 9898, "weight": 20}
                ]}]
            },
            "status": {"parents": [{
                "parentRef": parent_ref,
                "controllerName": "istio.io/gateway-controller",
                "conditions": [{"type": "Accepted", "status": "True",
                    "observedGeneration": observed, "reason": "Accepted", "message": "",
                    "lastTransitionTime": "2026-03-01T11:59:00Z"}]
            }]}
        }))
        .unwrap(),
    )
}

#[test]
fn a_gateway_api_route_not_yet_accepted_is_observed_as_not_ready() {
    let mut cluster = full_cluster();
    let mut canary = istio_canary();
    canary.spec.provider = Some("gatewayapi:v1".into());
    cluster
        .http_routes
        .insert("podinfo".into(), lagging_http_route(3));
    let build = |cluster: &Cluster| {
        snapshot::build(
            cluster,
            &canary,
            &OperatorConfig::default(),
            now(),
            Answers::default(),
        )
    };
    let snap = build(&cluster);
    assert_eq!(
        snap.routes_not_ready.as_deref(),
        Some(
            "HTTPRoute podinfo.test parent gateway is not ready (status: True, observed generation: 3, current generation: 4)"
        )
    );
    assert_eq!(snap.routes.map(|r| r.canary_weight), Some(20));

    cluster
        .http_routes
        .insert("podinfo".into(), lagging_http_route(4));
    assert_eq!(build(&cluster).routes_not_ready, None);
    // Other providers never wait.
    let snap = snapshot::build(
        &full_cluster(),
        &istio_canary(),
        &OperatorConfig::default(),
        now(),
        Answers::default(),
    );
    assert_eq!(snap.routes_not_ready, None);
}
