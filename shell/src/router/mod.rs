//! Traffic routing per provider: the objects that send a given split between the primary and the
//! canary Services, and the split an existing object sends.
//!
//! Building objects is pure (no client, no clock), so every provider's output is unit-tested; the
//! executor applies them with server-side apply.

pub mod gatewayapi;
pub mod istio;
pub mod kubernetes;
pub mod nginx;
pub mod session_affinity;

use flagger_core::Routes;
use flagger_core::api::Canary;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Resource;
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use serde_json::{Map, Value};

/// Annotations that stop Flux from reverting objects Flagger generates.
pub const FLUX_ANNOTATIONS: &[(&str, &str)] = &[
    ("kustomize.toolkit.fluxcd.io/reconcile", "disabled"),
    ("helm.toolkit.fluxcd.io/driftDetection", "disabled"),
];

/// Keys containing this belong to Flux's ownership tracking and are never copied.
pub const TOOLKIT_MARKER: &str = "toolkit.fluxcd.io";

/// The routing kinds the routers write, each watched once (see `controller::watch`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RouteKind {
    /// Istio `VirtualService`.
    VirtualService,
    /// Istio `DestinationRule`.
    DestinationRule,
    /// Gateway API `HTTPRoute`.
    HttpRoute,
    /// `networking.k8s.io` `Ingress`: both the user's (nginx clones it) and the canary clone.
    Ingress,
}

impl RouteKind {
    pub const ALL: [RouteKind; 4] = [
        RouteKind::VirtualService,
        RouteKind::DestinationRule,
        RouteKind::HttpRoute,
        RouteKind::Ingress,
    ];

    pub fn group_and_kind(self) -> (&'static str, &'static str) {
        match self {
            RouteKind::VirtualService => ("networking.istio.io", "VirtualService"),
            RouteKind::DestinationRule => ("networking.istio.io", "DestinationRule"),
            RouteKind::HttpRoute => ("gateway.networking.k8s.io", "HTTPRoute"),
            RouteKind::Ingress => ("networking.k8s.io", "Ingress"),
        }
    }

    /// The kind of an object a router built (routers always set apiVersion and kind).
    pub fn of(object: &DynamicObject) -> Option<RouteKind> {
        let types = object.types.as_ref()?;
        let group = types.api_version.split_once('/').map_or("", |(g, _)| g);
        RouteKind::ALL
            .into_iter()
            .find(|k| k.group_and_kind() == (group, types.kind.as_str()))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    #[error("unsupported mesh provider {0:?} (supported: istio, gatewayapi:v1, kubernetes, nginx)")]
    UnsupportedProvider(String),
    #[error("the nginx provider needs spec.ingressRef.name")]
    NoIngressRef,
    #[error("ingress {0} not found")]
    IngressMissing(String),
    #[error("backend {backend} not found in ingress {ingress}")]
    BackendNotFound { backend: String, ingress: String },
}

/// One routing provider. Unknown names are an error, never a fallback: core validation refuses
/// them first, so reaching this with one is a bug worth surfacing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Router {
    Istio,
    GatewayApi {
        version: &'static str,
    },
    /// No routing object: the apex Service alone decides (blue/green only).
    Kubernetes,
    /// A canary clone of the user's Ingress, annotated for the NGINX ingress controller.
    Nginx,
}

impl Router {
    pub fn for_provider(provider: &str) -> Result<Router, RouterError> {
        match provider {
            "istio" => Ok(Router::Istio),
            "gatewayapi" | "gatewayapi:v1" => Ok(Router::GatewayApi { version: "v1" }),
            "gatewayapi:v1beta1" => Ok(Router::GatewayApi { version: "v1beta1" }),
            "kubernetes" => Ok(Router::Kubernetes),
            "nginx" => Ok(Router::Nginx),
            other => Err(RouterError::UnsupportedProvider(other.to_string())),
        }
    }

    /// Every object this provider needs for `routes`, in the order they should be applied
    /// (objects others refer to first). `ingress` is the user's Ingress (`spec.ingressRef`),
    /// which only nginx reads: its canary Ingress is a clone of it.
    pub fn desired_objects(
        &self,
        canary: &Canary,
        ingress: Option<&DynamicObject>,
        routes: Routes,
    ) -> Result<Vec<DynamicObject>, RouterError> {
        Ok(match self {
            Router::Istio => istio::desired_objects(canary, routes),
            Router::GatewayApi { version } => gatewayapi::desired_objects(canary, version, routes),
            Router::Kubernetes => kubernetes::desired_objects(canary, routes),
            Router::Nginx => nginx::desired_objects(canary, ingress, routes)?,
        })
    }

    /// The kind and name of the object whose weights [`Router::read_routes`] reads, as watched.
    pub fn routes_kind(&self, canary: &Canary) -> Option<(RouteKind, String)> {
        let name = Names::of(canary).apex_service;
        match self {
            Router::Istio => Some((RouteKind::VirtualService, name)),
            Router::GatewayApi { .. } => Some((RouteKind::HttpRoute, name)),
            Router::Kubernetes => None,
            Router::Nginx => nginx::canary_ingress_name(canary).map(|n| (RouteKind::Ingress, n)),
        }
    }

    /// The kind and name of the object whose weights [`Router::read_routes`] reads.
    pub fn routes_object(&self, canary: &Canary) -> Option<(ApiResource, String)> {
        let name = Names::of(canary).apex_service;
        match self {
            Router::Istio => Some((istio::virtual_service_resource(), name)),
            Router::GatewayApi { version } => {
                Some((gatewayapi::http_route_resource(version), name))
            }
            Router::Kubernetes => None,
            Router::Nginx => {
                nginx::canary_ingress_name(canary).map(|n| (nginx::ingress_resource(), n))
            }
        }
    }

    /// Why `object` (as named by [`Router::routes_object`]) does not route by its current spec
    /// yet; `None` when it does. Only Gateway API reports acceptance per parent.
    pub fn routes_not_ready(&self, object: &DynamicObject) -> Option<String> {
        match self {
            Router::GatewayApi { .. } => gatewayapi::not_ready(object),
            Router::Istio | Router::Kubernetes | Router::Nginx => None,
        }
    }

    /// The split `object` (as named by [`Router::routes_object`]) sends; `None` when it has no
    /// route to the canary Service, e.g. when someone else rewrote it.
    pub fn read_routes(&self, canary: &Canary, object: &DynamicObject) -> Option<Routes> {
        match self {
            Router::Istio => istio::read_routes(object),
            Router::GatewayApi { .. } => gatewayapi::read_routes(object),
            Router::Kubernetes => None,
            Router::Nginx => nginx::read_routes(canary, object),
        }
    }
}

/// How a routing kind merges under server-side apply and what its API server fills in (see
/// [`crate::drift`]). Istio's CRDs default nothing; Gateway API's fill in the group and kind of
/// references, match types, the default path match and backend weights.
pub fn shape(kind: RouteKind) -> crate::drift::Shape {
    let server_default: fn(&str, &Value) -> bool = match kind {
        RouteKind::HttpRoute => gatewayapi::server_default,
        RouteKind::VirtualService | RouteKind::DestinationRule | RouteKind::Ingress => |_, _| false,
    };
    crate::drift::Shape {
        keyed: crate::drift::metadata_keyed,
        server_default,
    }
}

/// The names Flagger derives from a Canary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Names {
    /// The user's Deployment.
    pub target: String,
    /// The generated `<target>-primary` Deployment.
    pub primary: String,
    /// `spec.service().name`, defaulting to the target's name.
    pub apex_service: String,
    pub primary_service: String,
    pub canary_service: String,
}

impl Names {
    pub fn of(canary: &Canary) -> Names {
        let target = canary.spec.target_ref.name.clone();
        let apex = canary
            .spec
            .service()
            .name
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| target.clone());
        Names {
            primary: format!("{target}-primary"),
            primary_service: format!("{apex}-primary"),
            canary_service: format!("{apex}-canary"),
            apex_service: apex,
            target,
        }
    }
}

/// The controller reference that makes the garbage collector delete generated objects with
/// their Canary. Empty when the Canary has no uid yet (never the case for a stored object).
pub fn owner_references(canary: &Canary) -> Option<Vec<OwnerReference>> {
    canary.controller_owner_ref(&()).map(|r| vec![r])
}

pub(crate) fn api_resource(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
}

/// A namespaced object of `resource` owned by `canary`, with the apex metadata
/// (`spec.service().apex`) Flagger puts on mesh objects.
pub(crate) fn owned_object(
    canary: &Canary,
    resource: &ApiResource,
    name: &str,
    spec: Value,
    apex_metadata: bool,
) -> DynamicObject {
    let mut object = DynamicObject::new(name, resource).data(serde_json::json!({ "spec": spec }));
    object.metadata.namespace = canary.metadata.namespace.clone();
    object.metadata.owner_references = owner_references(canary);
    let apex = apex_metadata
        .then(|| canary.spec.service().apex.clone())
        .flatten()
        .unwrap_or_default();
    let mut labels = apex.labels.unwrap_or_default();
    let mut annotations = apex.annotations.unwrap_or_default();
    // As Flagger marks the objects that carry the weights (not the DestinationRules): Flux must
    // not put the weights back.
    if apex_metadata {
        for (k, v) in FLUX_ANNOTATIONS {
            annotations.insert(k.to_string(), v.to_string());
        }
    }
    if let Some(unmanaged) = &canary.spec.service().unmanaged_metadata {
        unmanaged.strip(&mut labels, &mut annotations);
    }
    object.metadata.labels = Some(labels).filter(|m| !m.is_empty());
    object.metadata.annotations = Some(annotations).filter(|m| !m.is_empty());
    object
}

/// Copies `value` into `map[key]` when present; mesh fields the user did not set stay absent so
/// the server-side apply never claims them.
pub(crate) fn put(map: &mut Map<String, Value>, key: &str, value: Option<&Value>) {
    if let Some(v) = value {
        map.insert(key.to_string(), v.clone());
    }
}

fn weight_of(value: &Value) -> i32 {
    value
        .as_i64()
        .and_then(|w| i32::try_from(w).ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flagger_core::api::{CanaryService, CanarySpec, ObjectReference};

    fn canary(service_name: Option<&str>) -> Canary {
        Canary::new(
            "podinfo",
            CanarySpec {
                target_ref: ObjectReference {
                    name: "podinfo".into(),
                    ..ObjectReference::default()
                },
                service: Some(CanaryService {
                    name: service_name.map(str::to_string),
                    port: 9898,
                    ..CanaryService::default()
                }),
                ..CanarySpec::default()
            },
        )
    }

    #[test]
    fn every_provider_core_accepts_has_a_router_and_others_are_errors() {
        for name in crate::crd::providers() {
            let supported = flagger_core::policy::Provider::parse(name).is_some();
            assert_eq!(Router::for_provider(name).is_ok(), supported, "{name}");
        }
        assert_eq!(
            Router::for_provider("gatewayapi").unwrap(),
            Router::GatewayApi { version: "v1" }
        );
        assert_eq!(
            Router::for_provider("gatewayapi:v1beta1").unwrap(),
            Router::GatewayApi { version: "v1beta1" }
        );
        assert!(Router::for_provider("linkerd").is_err());
        assert!(Router::for_provider("").is_err());
    }

    #[test]
    fn service_names_default_to_the_target() {
        let names = Names::of(&canary(None));
        assert_eq!(
            (
                names.apex_service.as_str(),
                names.primary_service.as_str(),
                names.canary_service.as_str()
            ),
            ("podinfo", "podinfo-primary", "podinfo-canary")
        );
        let names = Names::of(&canary(Some("web")));
        assert_eq!(
            (
                names.apex_service.as_str(),
                names.primary_service.as_str(),
                names.primary.as_str()
            ),
            ("web", "web-primary", "podinfo-primary")
        );
    }

    #[test]
    fn routes_are_read_from_the_object_named_after_the_apex_service() {
        let c = canary(Some("web"));
        let (resource, name) = Router::Istio.routes_object(&c).unwrap();
        assert_eq!(
            (
                resource.api_version.as_str(),
                resource.plural.as_str(),
                name.as_str()
            ),
            ("networking.istio.io/v1beta1", "virtualservices", "web")
        );
        let (resource, _) = Router::GatewayApi { version: "v1" }
            .routes_object(&c)
            .unwrap();
        assert_eq!(resource.api_version, "gateway.networking.k8s.io/v1");
        assert_eq!(Router::Kubernetes.routes_object(&c), None);
    }
}
