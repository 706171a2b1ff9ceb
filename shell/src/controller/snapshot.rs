//! What the core sees of one Canary, built from the watch caches alone: a pure function of the
//! Canary, the cached objects, the operator's settings and `now`.

use flagger_core::api::Canary;
use flagger_core::policy::Provider;
use flagger_core::snapshot::{Answers, CanaryMeta, OperatorConfig, Routes, Snapshot};
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::Deployment;
use kube::ResourceExt;

use super::watch::{ClusterView, RouteKind, RouteLookup};
use crate::observe;

pub const FINALIZER: &str = "finalizer.flagger.app";

pub fn build(
    view: &impl ClusterView,
    canary: &Canary,
    config: &OperatorConfig,
    now: Timestamp,
    answers: Answers,
) -> Snapshot {
    let namespace = canary.namespace().unwrap_or_default();
    let spec = &canary.spec;
    let target_name = &spec.target_ref.name;
    let autoscaler = spec
        .autoscaler_ref
        .as_ref()
        .map(|a| a.name.clone())
        .filter(|n| !n.is_empty());
    let target = view.deployment(&namespace, target_name).map(|d| {
        let hpa = autoscaler
            .as_deref()
            .and_then(|n| view.autoscaler(&namespace, n));
        let configs = configs_of(view, &namespace, &d);
        observe::workload(&d, hpa.as_deref(), configs)
    });
    let primary_deployment = view.deployment(&namespace, &format!("{target_name}-primary"));
    let primary = primary_deployment.as_deref().map(|d| {
        let hpa = autoscaler
            .as_deref()
            .and_then(|n| view.autoscaler(&namespace, &format!("{n}-primary")));
        // Revisions are detected on the target; the primary's own config copies are not compared.
        observe::workload(d, hpa.as_deref(), Default::default())
    });
    let apex = spec
        .service()
        .name
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| target_name.clone());
    let services_present = [format!("{apex}-primary"), format!("{apex}-canary")]
        .iter()
        .all(|name| view.service(&namespace, name).is_some());
    let apex_selects_primary = match (view.service(&namespace, &apex), &primary_deployment) {
        (Some(service), Some(primary)) => observe::selects_pods_of(&service, primary),
        _ => false,
    };
    let provider = spec
        .provider
        .clone()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| config.mesh_provider.clone());
    let (routes, routes_not_ready) = routes(view, canary, &provider, &namespace, &apex);
    Snapshot {
        now,
        canary: CanaryMeta {
            name: canary.name_any(),
            namespace: namespace.clone(),
            deleting: canary.metadata.deletion_timestamp.is_some(),
            has_finalizer: canary.finalizers().iter().any(|f| f == FINALIZER),
        },
        spec: spec.clone(),
        status: canary.status.clone().unwrap_or_default(),
        config: config.clone(),
        target,
        primary,
        routes,
        routes_not_ready,
        services_present,
        apex_selects_primary,
        answers,
    }
}

/// Checksums of the configs the target's pods use, when config tracking is on.
fn configs_of(
    view: &impl ClusterView,
    namespace: &str,
    d: &Deployment,
) -> std::collections::BTreeMap<String, String> {
    match d.spec.as_ref() {
        Some(spec) => super::watch::tracked_configs(view, namespace, &spec.template),
        None => Default::default(),
    }
}

/// The weights the provider's routing object sends now (`None` when it does not exist, cannot
/// be read, or its CRD is not installed: the core then writes it), and why it does not route by
/// its current spec yet, if so.
fn routes(
    view: &impl ClusterView,
    canary: &Canary,
    provider: &str,
    namespace: &str,
    apex: &str,
) -> (Option<Routes>, Option<String>) {
    let Some(parsed) = Provider::parse(provider) else {
        return (None, None);
    };
    let (kind, name) = match parsed {
        Provider::Istio => (RouteKind::VirtualService, apex.to_string()),
        Provider::GatewayApi => (RouteKind::HttpRoute, apex.to_string()),
        Provider::Nginx => match crate::router::nginx::canary_ingress_name(canary) {
            Some(name) => (RouteKind::Ingress, name),
            None => return (None, None),
        },
        // The core derives the Kubernetes provider's routing from the status.
        Provider::Kubernetes => return (None, None),
    };
    let apex = name.as_str();
    match view.route(kind, namespace, apex) {
        RouteLookup::Found(object) => {
            let routes = match observe::routes(provider, canary, &object) {
                Ok(routes) => routes,
                Err(e) => {
                    tracing::warn!(%provider, namespace, name = apex, error = %e, "cannot read routes");
                    None
                }
            };
            (routes, observe::routes_not_ready(provider, &object))
        }
        RouteLookup::Missing | RouteLookup::Unavailable => (None, None),
    }
}
