//! Watch caches for everything a reconcile reads, and the mapping from a changed object to the
//! Canaries it concerns. Each kind is watched once: the same reflected stream both fills the
//! store that snapshots are built from and triggers reconciles, so the steady state costs no
//! API requests beyond the watches themselves.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::sync::Arc;

use flagger_core::api::{AlertProvider, Canary, MetricTemplate};
use futures::{Stream, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use kube::api::{Api, ApiResource, DynamicObject};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use super::cache::Cache;
use super::canary_index::CanaryIndex;
use super::refs::{Kind, Ref, Registry, references};
use super::route_store::RouteStore;
use crate::executor::{Known, LabelSettings};
use crate::observe::ConfigRefs;

pub use crate::router::RouteKind;

/// Read access to the cluster as last observed. Implemented by the watch caches, and by plain
/// maps in tests, so that building a snapshot needs no cluster.
pub trait ClusterView {
    fn deployment(&self, namespace: &str, name: &str) -> Option<Arc<Deployment>>;
    fn service(&self, namespace: &str, name: &str) -> Option<Arc<Service>>;
    /// The Service `name`, or that it does not exist, or that the cache cannot tell yet.
    fn known_service(&self, namespace: &str, name: &str) -> Known<Arc<Service>>;
    fn autoscaler(&self, namespace: &str, name: &str) -> Option<Arc<HorizontalPodAutoscaler>>;
    /// Those of `names` that exist; `None` when config tracking is off.
    fn config_maps(&self, namespace: &str, names: &BTreeSet<String>) -> Option<Vec<ConfigMap>>;
    /// Those of `names` that exist; `None` when config tracking is off.
    fn secrets(&self, namespace: &str, names: &BTreeSet<String>) -> Option<Vec<Secret>>;
    /// The mesh object `name` of `kind`, or why there is none.
    fn route(&self, kind: RouteKind, namespace: &str, name: &str) -> RouteLookup;
}

#[derive(Debug, Clone)]
pub enum RouteLookup {
    /// The CRD is not installed (or could not be watched).
    Unavailable,
    Missing,
    Found(Arc<DynamicObject>),
}

/// The caches: Canaries, templates and alert providers whole (reflector stores); routing objects
/// whole as JSON text ([`RouteStore`]); Deployments, Services, autoscalers and configs as JSON
/// text, only as far as some Canary references them ([`Cache`], [`super::refs`]).
#[derive(Clone)]
pub struct Stores {
    pub canaries: Store<Canary>,
    pub deployments: Cache<Deployment>,
    pub services: Cache<Service>,
    pub autoscalers: Cache<HorizontalPodAutoscaler>,
    pub config_maps: Option<Cache<ConfigMap>>,
    pub secrets: Option<Cache<Secret>>,
    pub templates: Store<MetricTemplate>,
    pub providers: Store<AlertProvider>,
    pub routes: Vec<(RouteKind, ApiResource, RouteStore)>,
    /// What the Canaries reference.
    pub refs: Arc<Registry>,
    /// `-include-label-prefix`, which decides what pruning keeps.
    pub labels: LabelSettings,
}

impl Stores {
    /// Records what `canary` references now and drops what nobody references any more.
    pub fn refresh_refs(&self, canary: &Canary) {
        let ns = canary.namespace().unwrap_or_default();
        let target = self.deployments.get(&ns, &canary.spec.target_ref.name);
        let refs = references(canary, target.as_deref(), self.config_maps.is_some());
        let change = self.refs.set(&(ns, canary.name_any()), refs);
        self.forget_all(&change.removed);
    }

    /// Forgets a deleted Canary's references.
    pub fn forget_canary(&self, namespace: &str, name: &str) {
        let change = self.refs.remove(&(namespace.to_string(), name.to_string()));
        self.forget_all(&change.removed);
    }

    /// The target `name` changed: the configs its Canaries reference may have.
    pub fn target_changed(&self, namespace: &str, name: &str) {
        if self.config_maps.is_none() {
            return;
        }
        let r = Ref::new(Kind::Deployment, namespace, name);
        for canary in self.refs.canaries(&r) {
            let key = ObjectRef::new(&canary).within(namespace);
            if let Some(c) = self.canaries.get(&key)
                && c.spec.target_ref.name == name
            {
                self.refresh_refs(&c);
            }
        }
    }

    fn forget_all(&self, removed: &[Ref]) {
        for r in removed {
            let (ns, name) = (r.namespace.as_str(), r.name.as_str());
            match r.kind {
                Kind::Deployment => self.deployments.forget(ns, name),
                Kind::Service => self.services.forget(ns, name),
                Kind::Autoscaler => self.autoscalers.forget(ns, name),
                Kind::ConfigMap => self.config_maps.iter().for_each(|c| c.forget(ns, name)),
                Kind::Secret => self.secrets.iter().for_each(|c| c.forget(ns, name)),
            }
        }
    }

    /// The Canaries referencing the object `name` of `kind`.
    pub fn referencing(&self, kind: Kind, namespace: &str, name: &str) -> Vec<ObjectRef<Canary>> {
        self.refs
            .canaries(&Ref::new(kind, namespace, name))
            .into_iter()
            .map(|c| ObjectRef::new(&c).within(namespace))
            .collect()
    }
}

impl ClusterView for Stores {
    fn deployment(&self, namespace: &str, name: &str) -> Option<Arc<Deployment>> {
        self.deployments.get(namespace, name)
    }

    fn service(&self, namespace: &str, name: &str) -> Option<Arc<Service>> {
        self.services.get(namespace, name)
    }

    fn known_service(&self, namespace: &str, name: &str) -> Known<Arc<Service>> {
        self.services.known(namespace, name)
    }

    fn autoscaler(&self, namespace: &str, name: &str) -> Option<Arc<HorizontalPodAutoscaler>> {
        self.autoscalers.get(namespace, name)
    }

    fn config_maps(&self, namespace: &str, names: &BTreeSet<String>) -> Option<Vec<ConfigMap>> {
        let cache = self.config_maps.as_ref()?;
        Some(named(cache, namespace, names))
    }

    fn secrets(&self, namespace: &str, names: &BTreeSet<String>) -> Option<Vec<Secret>> {
        let cache = self.secrets.as_ref()?;
        Some(named(cache, namespace, names))
    }

    fn route(&self, kind: RouteKind, namespace: &str, name: &str) -> RouteLookup {
        let Some((_, _, store)) = self.routes.iter().find(|(k, _, _)| *k == kind) else {
            return RouteLookup::Unavailable;
        };
        match store.get(namespace, name) {
            Some(o) => RouteLookup::Found(o),
            None => RouteLookup::Missing,
        }
    }
}

fn named<K: Resource + serde::Serialize + DeserializeOwned>(
    cache: &Cache<K>,
    namespace: &str,
    names: &BTreeSet<String>,
) -> Vec<K> {
    names
        .iter()
        .filter_map(|n| cache.get_owned(namespace, n))
        .collect()
}

/// Checksums of the ConfigMaps and Secrets a pod template uses, when config tracking is on.
pub fn tracked_configs(
    view: &impl ClusterView,
    namespace: &str,
    template: &k8s_openapi::api::core::v1::PodTemplateSpec,
) -> BTreeMap<String, String> {
    let refs = template
        .spec
        .as_ref()
        .map(ConfigRefs::of)
        .unwrap_or_default();
    match (
        view.config_maps(namespace, &refs.configmaps),
        view.secrets(namespace, &refs.secrets),
    ) {
        (Some(cms), Some(secrets)) => crate::observe::tracked_configs(template, &cms, &secrets),
        _ => BTreeMap::new(),
    }
}

/// The ConfigMaps and Secrets a pod template needs (not `optional`) that do not exist, as
/// `configmap/<name>` and `secret/<name>`; empty when config tracking is off, as Flagger's
/// no-op tracker checks nothing then.
pub fn missing_configs(
    view: &impl ClusterView,
    namespace: &str,
    template: &k8s_openapi::api::core::v1::PodTemplateSpec,
) -> Vec<String> {
    let refs = template
        .spec
        .as_ref()
        .map(ConfigRefs::of)
        .unwrap_or_default();
    let (Some(cms), Some(secrets)) = (
        view.config_maps(namespace, &refs.required_configmaps),
        view.secrets(namespace, &refs.required_secrets),
    ) else {
        return Vec::new();
    };
    let found = |items: Vec<Option<String>>| items.into_iter().flatten().collect::<BTreeSet<_>>();
    let cms = found(cms.into_iter().map(|c| c.metadata.name).collect());
    let secrets = found(secrets.into_iter().map(|s| s.metadata.name).collect());
    let missing_cms = refs.required_configmaps.difference(&cms);
    let missing_secrets = refs.required_secrets.difference(&secrets);
    missing_cms
        .map(|n| format!("configmap/{n}"))
        .chain(missing_secrets.map(|n| format!("secret/{n}")))
        .collect()
}

/// `Api::all` or `Api::namespaced`, per `-namespace`.
pub fn scoped_api<K>(client: &Client, namespace: &str) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    if namespace.is_empty() {
        Api::all(client.clone())
    } else {
        Api::namespaced(client.clone(), namespace)
    }
}

/// Managed fields are large and mostly of no use here: only our own server-side apply entry is
/// kept, which tells the fields we set last (see [`crate::drift`]), as text
/// ([`crate::drift::compact_fields`]).
pub fn keep_own_apply_entry<K: Resource>(object: &mut K) {
    crate::drift::keep_our_apply_entry(object.managed_fields_mut(), crate::executor::FIELD_MANAGER);
}

/// A watch that fills `writer` and yields every object it sees change or disappear, keeping
/// only our own managed-fields entry ([`keep_own_apply_entry`]).
pub fn reflected<K>(
    api: Api<K>,
    writer: reflector::store::Writer<K>,
) -> impl Stream<Item = Result<K, watcher::Error>> + Send + 'static
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone + Send + Sync,
{
    watcher(api, watcher::Config::default().any_semantic())
        .default_backoff()
        .modify(keep_own_apply_entry)
        .reflect(writer)
        .touched_objects()
}

/// Secret types that never hold application configuration, left out of the Secret watch:
/// Helm release records and service-account tokens are numerous and large in real clusters.
pub const UNTRACKED_SECRET_TYPES_SELECTOR: &str = "type!=helm.sh/release.v1,type!=kubernetes.io/service-account-token,type!=kubernetes.io/dockerconfigjson,type!=kubernetes.io/dockercfg,type!=bootstrap.kubernetes.io/token";

/// The watch of a routing kind known only at run time, filling `store`, yielding every object
/// it sees change or disappear, with only our own managed-fields entry kept.
pub fn routes(
    api: Api<DynamicObject>,
    store: RouteStore,
) -> impl Stream<Item = Result<DynamicObject, watcher::Error>> + Send + 'static {
    watcher(api, watcher::Config::default().any_semantic())
        .default_backoff()
        .modify(keep_own_apply_entry)
        .inspect_ok(move |event| store.apply(event))
        .touched_objects()
}

/// The Canary that owns `object`, by its controller ownerReference.
pub fn owning_canaries(object: &impl Resource) -> Vec<ObjectRef<Canary>> {
    let namespace = object.meta().namespace.clone().unwrap_or_default();
    object
        .owner_references()
        .iter()
        .filter(|o| o.kind == "Canary" && o.api_version.starts_with("flagger.app/"))
        .map(|o| ObjectRef::new(&o.name).within(&namespace))
        .collect()
}

/// A routing object: the Canary owning it, and for an Ingress the Canaries whose `ingressRef`
/// names it, so an edit of the user's Ingress reaches the canary clone without waiting.
/// The kind comes from the watch, not the object: list items of built-in kinds carry none.
pub fn map_route(
    canaries: &CanaryIndex,
    kind: RouteKind,
    object: &DynamicObject,
) -> Vec<ObjectRef<Canary>> {
    let mut out = owning_canaries(object);
    if kind == RouteKind::Ingress {
        let ns = object.namespace().unwrap_or_default();
        out.extend(canaries.routed_by_ingress(&ns, &object.name_any()));
    }
    out.sort_by_key(|r| r.name.clone());
    out.dedup();
    out
}

/// A Deployment, Service or autoscaler: the Canary owning it (a generated object) and the
/// Canaries referencing it by name (a target, an autoscaler, an apex Service).
pub fn map_referenced(
    stores: &Stores,
    kind: Kind,
    object: &impl Resource,
) -> Vec<ObjectRef<Canary>> {
    let mut out = owning_canaries(object);
    let meta = object.meta();
    let ns = meta.namespace.clone().unwrap_or_default();
    let name = meta.name.clone().unwrap_or_default();
    out.extend(stores.referencing(kind, &ns, &name));
    out.sort_by_key(|r| r.name.clone());
    out.dedup();
    out
}

/// A ConfigMap or Secret: every Canary whose target's pods use it (a change is a new revision).
pub fn map_config(stores: &Stores, kind: Kind, object: &impl Resource) -> Vec<ObjectRef<Canary>> {
    let meta = object.meta();
    let ns = meta.namespace.clone().unwrap_or_default();
    stores.referencing(kind, &ns, meta.name.as_deref().unwrap_or_default())
}

/// Discovers the preferred version of a mesh kind; `None` (logged once by the caller) when
/// the CRD is not installed.
pub async fn discover_route_kind(
    client: &Client,
    kind: RouteKind,
) -> Result<Option<ApiResource>, kube::Error> {
    let (group, kind_name) = kind.group_and_kind();
    let group = match kube::discovery::group(client, group).await {
        Ok(g) => g,
        Err(kube::Error::Api(s)) if s.is_not_found() => return Ok(None),
        Err(kube::Error::Discovery(_)) => return Ok(None),
        Err(e) => return Err(e),
    };
    Ok(group.recommended_kind(kind_name).map(|(ar, _)| ar))
}

#[cfg(test)]
mod tests {
    use super::*;
    use flagger_core::api::{CanarySpec, ObjectReference};

    fn canary(name: &str, ingress: Option<&str>) -> Canary {
        let mut c = Canary::new(
            name,
            CanarySpec {
                ingress_ref: ingress.map(|n| ObjectReference {
                    name: n.into(),
                    ..ObjectReference::default()
                }),
                ..CanarySpec::default()
            },
        );
        c.metadata.namespace = Some("test".into());
        c
    }

    #[test]
    fn an_ingress_concerns_the_canaries_naming_it_other_routes_only_their_owner() {
        let store = CanaryIndex::of(&[
            canary("web", Some("public")),
            canary("api", Some("internal")),
            canary("plain", None),
        ]);
        // As listed: built-in kinds come without apiVersion and kind.
        let mut object = DynamicObject::new("public", &crate::router::nginx::ingress_resource());
        object.types = None;
        object.metadata.namespace = Some("test".into());
        let names =
            |refs: Vec<ObjectRef<Canary>>| refs.into_iter().map(|r| r.name).collect::<Vec<_>>();
        assert_eq!(
            names(map_route(&store, RouteKind::Ingress, &object)),
            ["web"]
        );
        assert!(map_route(&store, RouteKind::VirtualService, &object).is_empty());
        object.metadata.namespace = Some("prod".into());
        assert!(map_route(&store, RouteKind::Ingress, &object).is_empty());
    }
}
