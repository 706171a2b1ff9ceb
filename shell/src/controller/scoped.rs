//! The watches behind the reference-scoped caches ([`super::cache`]), and the GETs that fill in
//! objects referenced after their watch passed them.
//!
//! Deployments, Services, autoscalers and ConfigMaps are watched whole: each event is pruned and
//! kept only if referenced, so a change of a referenced object needs no request. Secrets are
//! watched by metadata only (no Secret's content crosses the wire unless a Canary uses it): a
//! referenced Secret whose resourceVersion changed is read with one GET.

use std::fmt::Debug;
use std::sync::Arc;

use flagger_core::api::Canary;
use futures::{Stream, TryStreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event, watcher};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::cache::Cache;
use super::prune::Prune;
use super::refs::{Kind, Ref, Registry};
use super::watch::Stores;
use crate::executor::LabelSettings;

/// A whole-object watch filling `cache`; `seen` runs after each event is applied. Yields every
/// object it sees change, referenced or not, for the reconcile triggers.
pub fn full<K>(
    api: Api<K>,
    config: watcher::Config,
    cache: Cache<K>,
    refs: Arc<Registry>,
    labels: LabelSettings,
    seen: impl Fn(&Event<K>) + Send + 'static,
) -> impl Stream<Item = Result<K, watcher::Error>> + Send + 'static
where
    K: Resource + Prune + Clone + Serialize + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone + Send + Sync,
{
    watcher(api, config.any_semantic())
        .default_backoff()
        .modify(move |o| o.prune(&labels))
        .inspect_ok(move |event| {
            cache.apply(event, &refs);
            seen(event);
        })
        .touched_objects()
}

/// A metadata-only watch of Secrets filling `cache` with the content of referenced ones.
pub fn secrets(
    api: Api<PartialObjectMeta<Secret>>,
    config: watcher::Config,
    cache: Cache<Secret>,
    refs: Arc<Registry>,
    labels: LabelSettings,
) -> impl Stream<Item = Result<PartialObjectMeta<Secret>, watcher::Error>> + Send + 'static {
    let client = api.clone().into_client();
    watcher(api, config.any_semantic())
        .default_backoff()
        .and_then(move |event| {
            let (client, cache, refs, labels) =
                (client.clone(), cache.clone(), refs.clone(), labels.clone());
            async move {
                if let Some(full) = with_content(&client, &cache, &refs, &labels, &event).await {
                    cache.apply(&full, &refs);
                }
                Ok(event)
            }
        })
        .touched_objects()
}

/// A Secret carrying only `meta`: enough for the cache to drop or skip it.
fn shell(meta: &PartialObjectMeta<Secret>) -> Secret {
    Secret {
        metadata: meta.metadata.clone(),
        ..Secret::default()
    }
}

/// The metadata event as a whole-object event: the cached content when its resourceVersion is
/// unchanged, else one GET. `None` when the GET failed (the Secret is then left unresolved, and
/// the next reconcile that needs it reads it again).
async fn with_content(
    client: &Client,
    cache: &Cache<Secret>,
    refs: &Registry,
    labels: &LabelSettings,
    event: &Event<PartialObjectMeta<Secret>>,
) -> Option<Event<Secret>> {
    let (meta, initial) = match event {
        Event::Init => return Some(Event::Init),
        Event::InitDone => return Some(Event::InitDone),
        Event::Delete(m) => return Some(Event::Delete(shell(m))),
        Event::Apply(m) => (m, false),
        Event::InitApply(m) => (m, true),
    };
    let wrap = |s: Secret| {
        if initial {
            Event::InitApply(s)
        } else {
            Event::Apply(s)
        }
    };
    let (ns, name) = (meta.namespace().unwrap_or_default(), meta.name_any());
    if !refs.contains(&Ref::new(Kind::Secret, &ns, &name)) {
        return Some(wrap(shell(meta)));
    }
    if let Some(cached) = cache.get(&ns, &name)
        && cached.metadata.resource_version == meta.metadata.resource_version
    {
        return Some(wrap((*cached).clone()));
    }
    match Api::<Secret>::namespaced(client.clone(), &ns)
        .get_opt(&name)
        .await
    {
        Ok(Some(mut s)) => {
            s.prune(labels);
            Some(wrap(s))
        }
        Ok(None) => Some(Event::Delete(shell(meta))),
        Err(e) => {
            tracing::warn!(secret = %format!("{name}.{ns}"), error = %e, "cannot read a referenced Secret; retried when needed");
            cache.forget(&ns, &name);
            cache.exists(&ns, &name);
            None
        }
    }
}

/// Reads, with one GET each, the objects `canary` references that no watch has resolved yet
/// (it started referencing them after their watch passed them). Nothing to read in the steady
/// state: an idle interval costs no request.
pub async fn resolve(client: &Client, stores: &Stores, canary: &Canary) -> Result<(), String> {
    stores.refresh_refs(canary);
    let key = (canary.namespace().unwrap_or_default(), canary.name_any());
    // A target read here may reference configs: a second round reads those.
    for _ in 0..2 {
        let mut target_read = false;
        for r in stores.refs.of(&key) {
            let read = match r.kind {
                Kind::Deployment => fetch(client, &stores.deployments, &r, stores).await?,
                Kind::Service => fetch(client, &stores.services, &r, stores).await?,
                Kind::Autoscaler => fetch(client, &stores.autoscalers, &r, stores).await?,
                Kind::ConfigMap => match &stores.config_maps {
                    Some(cache) => fetch(client, cache, &r, stores).await?,
                    None => false,
                },
                Kind::Secret => match &stores.secrets {
                    Some(cache) => fetch(client, cache, &r, stores).await?,
                    None => false,
                },
            };
            target_read |=
                read && r.kind == Kind::Deployment && r.name == canary.spec.target_ref.name;
        }
        if !target_read {
            break;
        }
        stores.refresh_refs(canary);
    }
    Ok(())
}

/// One GET if `r` is unresolved; true if it was read.
async fn fetch<K>(
    client: &Client,
    cache: &Cache<K>,
    r: &Ref,
    stores: &Stores,
) -> Result<bool, String>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Prune
        + Clone
        + Serialize
        + DeserializeOwned
        + Debug,
    K::DynamicType: Default,
{
    if !cache.is_listed() || cache.is_resolved(&r.namespace, &r.name) {
        return Ok(false);
    }
    let api: Api<K> = Api::namespaced(client.clone(), &r.namespace);
    let object = api.get_opt(&r.name).await.map_err(|e| {
        format!(
            "{} {}.{} get query failed: {e}",
            r.kind.name(),
            r.name,
            r.namespace
        )
    })?;
    cache.fetched(
        &r.namespace,
        &r.name,
        object.map(|mut o| {
            o.prune(&stores.labels);
            o
        }),
    );
    Ok(true)
}
