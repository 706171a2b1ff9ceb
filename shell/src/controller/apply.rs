//! The executor fed from the watch caches: each kube-facing command gets an [`ExecContext`]
//! built from what is cached at the moment it runs, so a command sees the objects earlier
//! commands of the same decision created as soon as the watch delivers them, without a GET.

use flagger_core::api::Canary;
use flagger_core::command::Command;
use futures::FutureExt;
use futures::future::BoxFuture;
use kube::ResourceExt;

use super::context::KubeExecutor;
use super::watch::{ClusterView, RouteKind, RouteLookup, Stores};
use crate::executor::{ExecContext, Executor, LabelSettings};

pub struct CachedExecutor {
    pub executor: Executor,
    pub stores: Stores,
    pub labels: LabelSettings,
    /// `-mesh-provider`, for Canaries that name no provider.
    pub mesh_provider: String,
}

impl CachedExecutor {
    pub fn exec_context(&self, canary: &Canary) -> ExecContext {
        exec_context(&self.stores, canary, &self.labels, &self.mesh_provider)
    }
}

/// What the executor needs to know about a Canary's objects, from `view`.
pub fn exec_context(
    view: &impl ClusterView,
    canary: &Canary,
    labels: &LabelSettings,
    mesh_provider: &str,
) -> ExecContext {
    let ns = canary.namespace().unwrap_or_default();
    let target_name = &canary.spec.target_ref.name;
    let target = view.deployment(&ns, target_name);
    let tracked_configs = target
        .as_ref()
        .and_then(|t| t.spec.as_ref())
        .map(|spec| super::watch::tracked_configs(view, &ns, &spec.template))
        .unwrap_or_default();
    let provider = canary
        .spec
        .provider
        .clone()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| mesh_provider.to_string());
    let ingress = crate::router::nginx::user_ingress_name(canary).and_then(|name| {
        match view.route(RouteKind::Ingress, &ns, name) {
            RouteLookup::Found(o) => Some((*o).clone()),
            RouteLookup::Missing | RouteLookup::Unavailable => None,
        }
    });
    let existing_routes = existing_routes(view, canary, &provider, ingress.as_ref());
    ExecContext {
        existing_routes,
        primary: view.deployment(&ns, &format!("{target_name}-primary")),
        apex: view.known_service(&ns, &crate::router::Names::of(canary).apex_service),
        target_hpa: canary
            .spec
            .autoscaler_ref
            .as_ref()
            .and_then(|a| view.autoscaler(&ns, &a.name)),
        provider,
        ingress,
        labels: labels.clone(),
        tracked_configs,
        target,
    }
}

/// The cached copies of the routing objects the provider writes for `canary`, any of which may
/// be the user's (a VirtualService, HTTPRoute or DestinationRule made before the Canary);
/// nginx's canary Ingress is always ours.
fn existing_routes(
    view: &impl ClusterView,
    canary: &Canary,
    provider: &str,
    ingress: Option<&kube::core::DynamicObject>,
) -> Vec<kube::core::DynamicObject> {
    let Ok(router) = crate::router::Router::for_provider(provider) else {
        return Vec::new();
    };
    let Ok(desired) = router.desired_objects(canary, ingress, Default::default()) else {
        return Vec::new();
    };
    let ns = canary.namespace().unwrap_or_default();
    desired
        .iter()
        .filter_map(|o| Some((RouteKind::of(o)?, o.name_any())))
        .filter(|(kind, _)| *kind != RouteKind::Ingress)
        .filter_map(|(kind, name)| match view.route(kind, &ns, &name) {
            RouteLookup::Found(o) => Some((*o).clone()),
            RouteLookup::Missing | RouteLookup::Unavailable => None,
        })
        .collect()
}

impl KubeExecutor for CachedExecutor {
    fn execute<'a>(
        &'a self,
        canary: &'a Canary,
        command: &'a Command,
    ) -> BoxFuture<'a, Result<(), String>> {
        async move {
            let ctx = self.exec_context(canary);
            self.executor
                .execute(canary, &ctx, command)
                .await
                .map_err(|e| e.to_string())
        }
        .boxed()
    }
}
