//! `SetRoutes`: the provider's routing objects with the decided split, applied in order.

use flagger_core::Routes;
use flagger_core::api::Canary;
use kube::api::Api;
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};

use super::{ExecContext, ExecError, Executor, namespace};
use crate::router::Router;

pub(super) async fn apply(
    exec: &Executor,
    canary: &Canary,
    ctx: &ExecContext,
    routes: Routes,
) -> Result<(), ExecError> {
    let router = Router::for_provider(&ctx.provider)?;
    let ns = namespace(canary)?;
    for object in router.desired_objects(canary, ctx.ingress.as_ref(), routes)? {
        let resource = resource_of(&object);
        let api: Api<DynamicObject> = Api::namespaced_with(exec.client.clone(), &ns, &resource);
        let name = object.metadata.name.clone().unwrap_or_default();
        exec.apply(&api, &name, &object).await?;
    }
    Ok(())
}

/// Routing objects are built with their apiVersion and kind; the plural follows the usual
/// lowercase-plural rule for every kind a router emits.
fn resource_of(object: &DynamicObject) -> ApiResource {
    let gvk = object
        .types
        .as_ref()
        .and_then(|t| GroupVersionKind::try_from(t).ok())
        .expect("routers build objects with apiVersion and kind");
    ApiResource::from_gvk(&gvk)
}
