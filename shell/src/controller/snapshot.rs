//! What the core sees of one Canary, built from the watch caches alone: a pure function of the
//! Canary, the cached objects, the operator's settings and `now`.

use flagger_core::api::Canary;
use flagger_core::snapshot::{Answers, CanaryMeta, Drift, OperatorConfig, Routes, Snapshot};
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::Deployment;
use kube::ResourceExt;

use super::apply::exec_context;
use super::watch::{ClusterView, RouteKind, RouteLookup};
use crate::executor::routes as executor_routes;
use crate::executor::{LabelSettings, services};
use crate::observe;
use crate::router::{Names, Router};

pub const FINALIZER: &str = "finalizer.flagger.app";

pub fn build(
    view: &impl ClusterView,
    canary: &Canary,
    config: &OperatorConfig,
    now: Timestamp,
    answers: Answers,
) -> Snapshot {
    build_with(
        view,
        canary,
        config,
        &LabelSettings::default(),
        now,
        answers,
    )
}

/// [`build`] under the operator's `-selector-labels` (which the generated Services select by).
pub fn build_with(
    view: &impl ClusterView,
    canary: &Canary,
    config: &OperatorConfig,
    labels: &LabelSettings,
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
        let mut workload = observe::workload(&d, hpa.as_deref(), configs);
        if let Some(spec) = d.spec.as_ref() {
            workload.missing_configs =
                super::watch::missing_configs(view, &namespace, &spec.template);
        }
        workload
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
    let (routes, routes_not_ready) = routes(view, canary, &provider, &namespace);
    let drift = drift(view, canary, labels, &config.mesh_provider, routes);
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
        drift,
        answers,
    }
}

/// Which existing generated objects differ from what the executor would write now: the
/// Services, and the routing objects with the weights they send now (so that weights, which
/// are the core's to judge, never count as drift). Errors building the desired objects (no
/// selector label, no Ingress to clone) are the executor's to report when it writes.
fn drift(
    view: &impl ClusterView,
    canary: &Canary,
    labels: &LabelSettings,
    mesh_provider: &str,
    observed: Option<Routes>,
) -> Drift {
    let ctx = exec_context(view, canary, labels, mesh_provider);
    let ns = canary.namespace().unwrap_or_default();
    let names = Names::of(canary);
    let mut drift = Drift::default();
    let cached = [
        view.service(&ns, &names.canary_service),
        view.service(&ns, &names.primary_service),
        view.service(&ns, &names.apex_service),
    ];
    let name = canary.name_any();
    if let Ok([canary_svc, primary_svc, apex]) =
        services::drift(canary, &ctx, cached.each_ref().map(Option::as_deref))
    {
        for (service, why) in [
            (&names.canary_service, &canary_svc),
            (&names.primary_service, &primary_svc),
            (&names.apex_service, &apex),
        ] {
            if let Some(why) = why {
                tracing::info!(canary = %format!("{name}.{ns}"), service = %service, field = %why, "Service drifted");
            }
        }
        drift.services = canary_svc.is_some() || primary_svc.is_some();
        drift.apex = apex.is_some();
    }
    let weights = observed.filter(plausible).unwrap_or_else(|| {
        let w = canary
            .status
            .as_ref()
            .map_or(0, |s| s.canary_weight)
            .clamp(0, 100);
        Routes {
            primary_weight: 100 - w,
            canary_weight: w,
            mirrored: false,
        }
    });
    let Ok(objects) = executor_routes::prepared_objects(canary, &ctx, weights) else {
        return drift;
    };
    let weights_object = Router::for_provider(&ctx.provider)
        .ok()
        .and_then(|r| r.routes_kind(canary));
    // Until the weights' own object exists the routes have never been written (the core writes
    // them all once the primary serves): nothing can have drifted yet.
    let routes_written = weights_object
        .as_ref()
        .is_some_and(|(kind, name)| matches!(view.route(*kind, &ns, name), RouteLookup::Found(_)));
    if !routes_written {
        return drift;
    }
    for desired in &objects {
        let (Some(kind), Some(object_name)) =
            (RouteKind::of(desired), desired.metadata.name.clone())
        else {
            continue;
        };
        let why = match view.route(kind, &ns, &object_name) {
            RouteLookup::Found(actual) => executor_routes::object_drift(desired, &actual),
            // Another object of the routes (a DestinationRule) deleted: the next write of the
            // routes creates it.
            RouteLookup::Missing => Some("missing".to_string()),
            RouteLookup::Unavailable => None,
        };
        if let Some(why) = why {
            tracing::info!(canary = %format!("{name}.{ns}"), kind = kind.group_and_kind().1, object = %object_name, field = %why, "routing object drifted");
            drift.routes = true;
        }
    }
    drift
}

/// Weights that add up; anything else the core treats as a missing object.
fn plausible(r: &Routes) -> bool {
    (0..=100).contains(&r.primary_weight)
        && (0..=100).contains(&r.canary_weight)
        && r.primary_weight + r.canary_weight == 100
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
) -> (Option<Routes>, Option<String>) {
    // The Kubernetes provider has no object: the core derives its routing from the status.
    let Some((kind, name)) = Router::for_provider(provider)
        .ok()
        .and_then(|r| r.routes_kind(canary))
    else {
        return (None, None);
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
