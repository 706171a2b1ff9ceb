//! Writes to the Canary itself: its finalizer and its status.

use flagger_core::api::{Canary, CanaryStatus};
use kube::api::{Api, Patch};
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};

use super::{ExecError, Executor, namespace, wrap};

pub const FINALIZER: &str = "finalizer.flagger.app";

pub(super) async fn add_finalizer(exec: &Executor, canary: &Canary) -> Result<(), ExecError> {
    let finalizers = canary.finalizers();
    if finalizers.iter().any(|f| f == FINALIZER) {
        return Ok(());
    }
    let ops = if finalizers.is_empty() {
        // `test` against null: the list must still be absent, or empty as the API server
        // stores an empty list, when the patch lands.
        json!([
            { "op": "test", "path": "/metadata/finalizers", "value": null },
            { "op": "add", "path": "/metadata/finalizers", "value": [FINALIZER] }
        ])
    } else {
        json!([
            { "op": "test", "path": "/metadata/finalizers", "value": finalizers },
            { "op": "add", "path": "/metadata/finalizers/-", "value": FINALIZER }
        ])
    };
    json_patch(exec, canary, ops).await
}

pub(super) async fn remove_finalizer(exec: &Executor, canary: &Canary) -> Result<(), ExecError> {
    let Some(index) = canary.finalizers().iter().position(|f| f == FINALIZER) else {
        return Ok(());
    };
    let path = format!("/metadata/finalizers/{index}");
    let removed = json_patch(
        exec,
        canary,
        json!([
            { "op": "test", "path": path, "value": FINALIZER },
            { "op": "remove", "path": path }
        ]),
    )
    .await;
    match removed {
        // Already deleted: there is no finalizer left to remove.
        Err(ExecError::Kube(kube::Error::Api(status))) if status.is_not_found() => Ok(()),
        other => other,
    }
}

/// A JSON patch whose `test` operation makes it apply only to the finalizer list it was
/// computed from: other controllers' finalizers are never dropped, and unrelated changes to the
/// Canary (a status write) do not make it fail the way a resourceVersion precondition would.
async fn json_patch(exec: &Executor, canary: &Canary, ops: Value) -> Result<(), ExecError> {
    let api: Api<Canary> = Api::namespaced(exec.client.clone(), &namespace(canary)?);
    let patch: json_patch::Patch =
        serde_json::from_value(ops).expect("finalizer patches are well-formed JSON patches");
    match api
        .patch(
            &canary.name_any(),
            &exec.patch_params(),
            &Patch::Json::<()>(patch),
        )
        .await
    {
        Ok(_) => Ok(()),
        // A failed `test` is answered 422: the finalizers moved on since our read.
        Err(kube::Error::Api(status)) if status.code == 422 => {
            Err(ExecError::FinalizersChanged(canary.name_any()))
        }
        Err(e) => Err(e.into()),
    }
}

/// The full status, applied on the status subresource: fields left out are removed, so what
/// is stored is exactly what core decided. With `if_unchanged`, the write carries `canary`'s
/// resourceVersion and is refused (409) if anything changed the Canary since it was read.
/// Returns the Canary as stored, whose resourceVersion identifies this write.
pub(super) async fn write_status(
    exec: &Executor,
    canary: &Canary,
    status: &CanaryStatus,
    if_unchanged: bool,
) -> Result<Canary, ExecError> {
    let api: Api<Canary> = Api::namespaced(exec.client.clone(), &namespace(canary)?);
    let mut body = json!({
        "apiVersion": Canary::api_version(&()),
        "kind": Canary::kind(&()),
        "status": status,
    });
    if if_unchanged && let Some(rv) = &canary.metadata.resource_version {
        body["metadata"] = json!({ "resourceVersion": rv });
    }
    let stored = api
        .patch_status(
            &canary.name_any(),
            &exec.apply_params(),
            &Patch::Apply(body),
        )
        .await
        .map_err(wrap(
            format!(
                "failed after retries: updating canary {}.{} status failed: ",
                canary.name_any(),
                namespace(canary)?
            ),
            "",
        ))?;
    Ok(stored)
}
