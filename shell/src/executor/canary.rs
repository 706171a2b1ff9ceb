//! Writes to the Canary itself: its finalizer and its status.

use flagger_core::api::{Canary, CanaryStatus};
use kube::api::{Api, Patch};
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::{ExecError, Executor, namespace};

pub const FINALIZER: &str = "finalizer.flagger.app";

pub(super) async fn add_finalizer(exec: &Executor, canary: &Canary) -> Result<(), ExecError> {
    let mut finalizers = canary.metadata.finalizers.clone().unwrap_or_default();
    if finalizers.iter().any(|f| f == FINALIZER) {
        return Ok(());
    }
    finalizers.push(FINALIZER.to_string());
    set_finalizers(exec, canary, finalizers).await
}

pub(super) async fn remove_finalizer(exec: &Executor, canary: &Canary) -> Result<(), ExecError> {
    let finalizers = canary.metadata.finalizers.clone().unwrap_or_default();
    if !finalizers.iter().any(|f| f == FINALIZER) {
        return Ok(());
    }
    let rest = finalizers.into_iter().filter(|f| f != FINALIZER).collect();
    set_finalizers(exec, canary, rest).await
}

/// A merge patch replaces the whole list, so it carries the `resourceVersion` it was computed
/// from: if another controller changed the finalizers meanwhile, the server answers 409 instead
/// of silently dropping theirs.
async fn set_finalizers(
    exec: &Executor,
    canary: &Canary,
    finalizers: Vec<String>,
) -> Result<(), ExecError> {
    let api: Api<Canary> = Api::namespaced(exec.client.clone(), &namespace(canary)?);
    let mut metadata = json!({ "finalizers": finalizers });
    if let Some(rv) = &canary.metadata.resource_version {
        metadata["resourceVersion"] = json!(rv);
    }
    api.patch(
        &canary.name_any(),
        &exec.merge_params(),
        &Patch::Merge(json!({ "metadata": metadata })),
    )
    .await?;
    Ok(())
}

/// The full status, applied on the status subresource: fields left out are removed, so what
/// is stored is exactly what core decided.
pub(super) async fn write_status(
    exec: &Executor,
    canary: &Canary,
    status: &CanaryStatus,
) -> Result<(), ExecError> {
    let api: Api<Canary> = Api::namespaced(exec.client.clone(), &namespace(canary)?);
    let body = json!({
        "apiVersion": Canary::api_version(&()),
        "kind": Canary::kind(&()),
        "status": status,
    });
    api.patch_status(
        &canary.name_any(),
        &exec.apply_params(),
        &Patch::Apply(body),
    )
    .await?;
    Ok(())
}
