//! `SetRoutes`: the provider's routing objects with the decided split, applied in order.

use flagger_core::Routes;
use flagger_core::api::Canary;
use kube::api::Api;
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};

use super::{ExecContext, ExecError, Executor, namespace, wrap};
use crate::router::{RouteKind, Router};

pub(super) async fn apply(
    exec: &Executor,
    canary: &Canary,
    ctx: &ExecContext,
    routes: Routes,
) -> Result<(), ExecError> {
    let ns = namespace(canary)?;
    for object in prepared_objects(canary, ctx, routes)? {
        let resource = resource_of(&object);
        let api: Api<DynamicObject> = Api::namespaced_with(exec.client.clone(), &ns, &resource);
        let name = object.metadata.name.clone().unwrap_or_default();
        let (before, after) = flagger_wording(&resource.kind, &name, &ns);
        exec.apply(&api, &name, &object, wrap(before, after))
            .await?;
    }
    Ok(())
}

/// The provider's routing objects for `routes` exactly as [`apply`] writes them, in order.
pub fn prepared_objects(
    canary: &Canary,
    ctx: &ExecContext,
    routes: Routes,
) -> Result<Vec<DynamicObject>, ExecError> {
    let router = Router::for_provider(&ctx.provider)?;
    let mut objects = router.desired_objects(canary, ctx.ingress.as_ref(), routes)?;
    for object in &mut objects {
        if let Some(users) = ctx.existing_routes.iter().find(|e| same_object(e, object)) {
            take_over(canary, users, object);
        }
    }
    Ok(objects)
}

/// How the cached `actual` differs from `desired` (one of [`prepared_objects`]) in the fields
/// we write; `None` when applying `desired` would change nothing.
pub fn object_drift(desired: &DynamicObject, actual: &DynamicObject) -> Option<String> {
    let kind = RouteKind::of(desired)?;
    let shape = crate::router::shape(kind);
    let desired_json = serde_json::to_value(desired).ok()?;
    let actual_json = serde_json::to_value(actual).ok()?;
    crate::drift::value_drift(
        &crate::drift::written_parts(&desired_json),
        &crate::drift::written_parts(&actual_json),
        &shape,
    )
    .or_else(|| {
        let ours = crate::drift::our_apply_entry(
            actual.metadata.managed_fields.as_deref(),
            super::FIELD_MANAGER,
        );
        crate::drift::owned_field_drift(ours, &desired_json)
    })
}

/// Flagger's annotation holding the spec a routing object had before the Canary took it over.
pub const ORIGINAL_CONFIGURATION: &str = "flagger.kubernetes.io/original-configuration";
/// kubectl's own record of what was applied; with it, Flagger stores no copy of its own.
pub const KUBECTL_LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

fn same_object(existing: &DynamicObject, desired: &DynamicObject) -> bool {
    let kind = |o: &DynamicObject| o.types.as_ref().map(|t| t.kind.clone());
    existing.metadata.name == desired.metadata.name && kind(existing) == kind(desired)
}

/// Whether `object` carries `canary` as an owner, i.e. was created by it.
fn owned_by(object: &DynamicObject, canary: &Canary) -> bool {
    let refs = object.metadata.owner_references.iter().flatten();
    let mut refs = refs.filter(|r| r.kind == "Canary");
    match &canary.metadata.uid {
        Some(uid) => refs.any(|r| &r.uid == uid),
        None => refs.any(|r| Some(&r.name) == canary.metadata.name.as_ref()),
    }
}

/// A routing object that existed before the Canary is the user's, as in Flagger: it is rewritten
/// but gets no owner reference, so deleting the Canary never deletes it. A VirtualService also
/// keeps the spec it had (unless kubectl's last-applied record already holds it) in
/// [`ORIGINAL_CONFIGURATION`], and is handed back with that spec when a Canary with
/// `revertOnDeletion` goes away.
fn take_over(canary: &Canary, users: &DynamicObject, object: &mut DynamicObject) {
    if owned_by(users, canary) {
        return;
    }
    object.metadata.owner_references = None;
    if object.types.as_ref().map(|t| t.kind.as_str()) != Some("VirtualService") {
        return;
    }
    let annotations = users.metadata.annotations.clone().unwrap_or_default();
    let original = match annotations.get(KUBECTL_LAST_APPLIED) {
        Some(applied) => serde_json::from_str::<serde_json::Value>(applied)
            .ok()
            .and_then(|o| o.get("spec").cloned()),
        None => None,
    };
    let stored = match (
        annotations.get(KUBECTL_LAST_APPLIED),
        annotations.get(ORIGINAL_CONFIGURATION),
    ) {
        // kubectl's record is the original: nothing of ours to keep.
        (Some(_), _) => None,
        (None, Some(kept)) => Some(kept.clone()),
        (None, None) => users.data.get("spec").map(|s| s.to_string()),
    };
    let original =
        original.or_else(|| stored.as_deref().and_then(|s| serde_json::from_str(s).ok()));
    if let Some(stored) = stored {
        object
            .metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(ORIGINAL_CONFIGURATION.to_string(), stored);
    }
    // The Canary is going away with revertOnDeletion (its finalizer is what lets the core act
    // now): the user's object gets its own spec back instead of the final split.
    if canary.metadata.deletion_timestamp.is_some()
        && let Some(original) = original
    {
        object.data["spec"] = original;
    }
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
