//! A Canary deleted without `revertOnDeletion` takes its primary with it (garbage collection)
//! while the target sits at zero replicas: an outage in Flagger. Here the target is scaled back
//! up, best effort, when the watch reports the deletion, so the workload keeps running.
//! (With `revertOnDeletion` the core restores the target itself before the finalizer goes.)

use flagger_core::api::Canary;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::json;

use super::watch::ClusterView;

/// The replicas to give the target back: the primary's (what was serving), else the
/// autoscaler's minimum, else one. `None` when the target is gone or already running.
pub fn replicas_to_restore(view: &impl ClusterView, canary: &Canary) -> Option<i32> {
    let ns = canary.namespace().unwrap_or_default();
    let target_name = &canary.spec.target_ref.name;
    let target = view.deployment(&ns, target_name)?;
    let current = target.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    if current != 0 {
        return None;
    }
    let primary = view
        .deployment(&ns, &format!("{target_name}-primary"))
        .and_then(|p| p.spec.as_ref().and_then(|s| s.replicas))
        .filter(|r| *r > 0);
    let autoscaler_min = canary
        .spec
        .autoscaler_ref
        .as_ref()
        .and_then(|a| view.autoscaler(&ns, &a.name))
        .and_then(|h| h.spec.as_ref().and_then(|s| s.min_replicas))
        .filter(|r| *r > 0);
    Some(primary.or(autoscaler_min).unwrap_or(1))
}

pub async fn restore_target(
    client: &Client,
    view: &impl ClusterView,
    canary: &Canary,
) -> Result<Option<i32>, kube::Error> {
    let Some(replicas) = replicas_to_restore(view, canary) else {
        return Ok(None);
    };
    let ns = canary.namespace().unwrap_or_default();
    let api: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    api.patch(
        &canary.spec.target_ref.name,
        &PatchParams::default(),
        &Patch::Merge(json!({ "spec": { "replicas": replicas } })),
    )
    .await?;
    Ok(Some(replicas))
}
