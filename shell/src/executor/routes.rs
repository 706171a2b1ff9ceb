//! `SetRoutes`: the provider's routing objects with the decided split, applied in order.

use flagger_core::Routes;
use flagger_core::api::Canary;
use kube::api::Api;
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};

use super::{ExecContext, ExecError, Executor, namespace, wrap};
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
        let (before, after) = flagger_wording(&resource.kind, &name, &ns);
        exec.apply(&api, &name, &object, wrap(before, after))
            .await?;
    }
    Ok(())
}

/// How Flagger words a failed write of each routing object (`before` the cause, `after` it):
/// the weights' own object as its `SetRoutes` says it, the others as its `Reconcile` does.
fn flagger_wording(kind: &str, name: &str, ns: &str) -> (String, String) {
    match kind {
        "VirtualService" => (
            format!("VirtualService {name}.{ns} update failed: "),
            String::new(),
        ),
        "DestinationRule" => (
            format!("reconcileDestinationRule failed: DestinationRule {name}.{ns} update error: "),
            String::new(),
        ),
        "HTTPRoute" => (
            format!("HTTPRoute {name}.{ns} update error: "),
            " while setting weights".to_string(),
        ),
        "Ingress" => (format!("ingress {name}.{ns} update error "), String::new()),
        other => (format!("{other} {name}.{ns} update error: "), String::new()),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn forbidden() -> kube::Error {
        kube::Error::Api(Box::new(kube::core::Status {
            code: 403,
            reason: "Forbidden".into(),
            message: "httproutes.gateway.networking.k8s.io \"podinfo\" is forbidden".into(),
            ..kube::core::Status::default()
        }))
    }

    #[test]
    fn route_write_errors_read_as_flaggers() {
        let (before, after) = flagger_wording("HTTPRoute", "podinfo", "test");
        assert_eq!(
            wrap(before, after)(forbidden()).to_string(),
            "HTTPRoute podinfo.test update error: httproutes.gateway.networking.k8s.io \
             \"podinfo\" is forbidden while setting weights"
        );
        let (before, after) = flagger_wording("Ingress", "podinfo-canary", "test");
        let e = wrap(before, after)(forbidden());
        assert!(
            e.to_string()
                .starts_with("ingress podinfo-canary.test update error httproutes"),
            "{e}"
        );
        assert!(!e.is_conflict());
    }
}
