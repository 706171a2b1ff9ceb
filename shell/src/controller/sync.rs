//! No reconcile may start before every watch cache holds its initial list: a cache still listing
//! shows the target, primary or routes as missing, and the core acts on that (a false "Deployment
//! … not found" warning, a `Blocked` condition, a new transition time that delays the analysis).
//!
//! The Canaries list first (what they reference decides what the other caches keep, see
//! [`super::refs`]), then the Deployments, Services and autoscalers, then the configs (which the
//! targets' pod templates name). The Canary store is thus ready before the rest, so the events
//! that start reconciles pass only once every cache has listed ([`dependencies_listed`],
//! [`after`]); a reconcile started earlier by another trigger returns at once (see
//! [`super::reconcile`]).

use std::future::Future;
use std::time::Duration;

use futures::{Stream, StreamExt, stream};
use kube::runtime::reflector::Store;

use super::cache::Cache;
use super::route_store::RouteStore;
use super::watch::Stores;

/// How often a pending cache is polled again. The store's readiness future keeps only the waker
/// of its last poller (kube-runtime's controller polls the Canary store too), so a wake-up can
/// be lost: polling again bounds the delay.
const POLL: Duration = Duration::from_millis(20);

/// A cache still listing after this long is reported (RBAC or a missing CRD are the usual causes).
const SLOW: Duration = Duration::from_secs(10);

/// Whether `store` got its initial list (false: its writer is gone, the process is stopping).
pub async fn listed<K>(kind: &str, store: &Store<K>) -> bool
where
    K: kube::Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    tracing::debug!(kind, "waiting for the cache");
    let started = tokio::time::Instant::now();
    let mut reported = false;
    loop {
        if let Ok(result) = tokio::time::timeout(POLL, store.wait_until_ready()).await {
            let ready = result.is_ok();
            tracing::debug!(kind, ready, "cache listed");
            return ready;
        }
        if !reported && started.elapsed() >= SLOW {
            reported = true;
            tracing::warn!(
                kind,
                "the cache has not listed yet; no Canary is reconciled until it has"
            );
        }
    }
}

/// [`listed`] for a reference-scoped cache.
pub async fn cached<K: kube::Resource + Clone>(cache: &Cache<K>) -> bool {
    until_listed(cache.kind().name(), cache.wait_listed()).await
}

/// `listed`, reported as slow after [`SLOW`].
async fn until_listed(kind: &str, listed: impl Future<Output = bool>) -> bool {
    tracing::debug!(kind, "waiting for the cache");
    let slow = async {
        tokio::time::sleep(SLOW).await;
        tracing::warn!(
            kind,
            "the cache has not listed yet; no Canary is reconciled until it has"
        );
        std::future::pending::<()>().await;
    };
    tokio::select! {
        ready = listed => ready,
        _ = slow => false,
    }
}

/// [`listed`] for a routing kind's store.
pub async fn routes_listed(kind: &str, store: &RouteStore) -> bool {
    until_listed(kind, store.wait_listed()).await
}

/// Resolves once every cache a reconcile reads holds its initial list; false if one never will.
pub async fn dependencies_listed(stores: &Stores) -> bool {
    let s = stores;
    let mut ok = listed("Canary", &s.canaries).await
        && cached(&s.deployments).await
        && cached(&s.services).await
        && cached(&s.autoscalers).await
        && listed("MetricTemplate", &s.templates).await
        && listed("AlertProvider", &s.providers).await;
    if let Some(cms) = &s.config_maps {
        ok = ok && cached(cms).await;
    }
    if let Some(secrets) = &s.secrets {
        ok = ok && cached(secrets).await;
    }
    for (kind, _, store) in &s.routes {
        ok = ok && routes_listed(kind.group_and_kind().1, store).await;
    }
    ok
}

/// `stream`, started only once `gate` resolves true (never, if it resolves false).
pub fn after<S>(gate: impl Future<Output = bool>, stream: S) -> impl Stream<Item = S::Item>
where
    S: Stream,
{
    let mut inner = Some(stream);
    stream::once(gate).flat_map(move |open| match (open, inner.take()) {
        (true, Some(s)) => s.left_stream(),
        _ => stream::empty().right_stream(),
    })
}

#[cfg(test)]
mod tests {
    use futures::FutureExt;
    use kube::api::{ApiResource, GroupVersionKind};
    use kube::runtime::reflector;
    use kube::runtime::watcher::Event;

    use super::*;
    use crate::controller::refs::{Kind, Registry};
    use crate::controller::watch::RouteKind;

    #[tokio::test]
    async fn the_gate_opens_only_once_every_cache_has_listed() {
        let (canaries, mut canaries_w) = reflector::store();
        let (templates, mut templates_w) = reflector::store();
        let (providers, mut providers_w) = reflector::store();
        let vs = ApiResource::from_gvk(&GroupVersionKind::gvk(
            "networking.istio.io",
            "v1",
            "VirtualService",
        ));
        let routes = RouteStore::default();
        let stores = Stores {
            canaries,
            deployments: Cache::new(Kind::Deployment, None),
            services: Cache::new(Kind::Service, None),
            autoscalers: Cache::new(Kind::Autoscaler, None),
            config_maps: Some(Cache::new(Kind::ConfigMap, None)),
            secrets: Some(Cache::new(Kind::Secret, None)),
            templates,
            providers,
            routes: vec![(RouteKind::VirtualService, vs, routes.clone())],
            refs: Default::default(),
            labels: Default::default(),
        };
        let scoped = stores.clone();
        let gate = tokio::spawn(async move { dependencies_listed(&stores).await });
        let list = |refs: &Registry| {
            scoped.deployments.apply(&Event::Init, refs);
            scoped.deployments.apply(&Event::InitDone, refs);
            scoped.services.apply(&Event::Init, refs);
            scoped.services.apply(&Event::InitDone, refs);
            scoped.autoscalers.apply(&Event::Init, refs);
            scoped.autoscalers.apply(&Event::InitDone, refs);
            let cms = scoped.config_maps.as_ref().unwrap();
            cms.apply(&Event::Init, refs);
            cms.apply(&Event::InitDone, refs);
        };
        let refs = Registry::default();
        canaries_w.apply_watcher_event(&Event::InitDone);
        list(&refs);
        templates_w.apply_watcher_event(&Event::InitDone);
        providers_w.apply_watcher_event(&Event::InitDone);
        routes.apply(&Event::InitDone);
        // A cache in the middle of its initial list has not listed yet.
        let secrets = scoped.secrets.as_ref().unwrap();
        secrets.apply(&Event::Init, &refs);
        tokio::time::sleep(POLL * 5).await;
        assert!(!gate.is_finished(), "opened before the Secrets listed");

        secrets.apply(&Event::InitDone, &refs);
        let opened = tokio::time::timeout(Duration::from_secs(2), gate)
            .await
            .expect("the gate stayed shut after every cache listed")
            .unwrap();
        assert!(opened);
    }

    #[tokio::test]
    async fn the_gate_waits_for_the_canaries_too() {
        let (canaries, mut canaries_w) = reflector::store();
        let (templates, mut templates_w) = reflector::store();
        let (providers, mut providers_w) = reflector::store();
        let stores = Stores {
            canaries,
            deployments: Cache::new(Kind::Deployment, None),
            services: Cache::new(Kind::Service, None),
            autoscalers: Cache::new(Kind::Autoscaler, None),
            config_maps: None,
            secrets: None,
            templates,
            providers,
            routes: Vec::new(),
            refs: Default::default(),
            labels: Default::default(),
        };
        let refs = Registry::default();
        stores.deployments.apply(&Event::Init, &refs);
        stores.deployments.apply(&Event::InitDone, &refs);
        stores.services.apply(&Event::Init, &refs);
        stores.services.apply(&Event::InitDone, &refs);
        stores.autoscalers.apply(&Event::Init, &refs);
        stores.autoscalers.apply(&Event::InitDone, &refs);
        templates_w.apply_watcher_event(&Event::InitDone);
        providers_w.apply_watcher_event(&Event::InitDone);
        let gate = tokio::spawn(async move { dependencies_listed(&stores).await });
        tokio::time::sleep(POLL * 5).await;
        assert!(!gate.is_finished(), "opened before the Canaries listed");
        canaries_w.apply_watcher_event(&Event::InitDone);
        let opened = tokio::time::timeout(Duration::from_secs(2), gate)
            .await
            .expect("the gate stayed shut after every cache listed")
            .unwrap();
        assert!(opened);
    }

    #[tokio::test]
    async fn the_gated_stream_starts_only_when_the_gate_opens() {
        let (open, gate) = tokio::sync::oneshot::channel::<bool>();
        let mut gated = Box::pin(after(
            gate.map(|r| r.unwrap_or(false)),
            stream::iter([1, 2]),
        ));
        assert_eq!(gated.next().now_or_never(), None);
        open.send(true).unwrap();
        assert_eq!(gated.collect::<Vec<_>>().await, [1, 2]);

        let (shut, gate) = tokio::sync::oneshot::channel::<bool>();
        let gated = after(gate.map(|r| r.unwrap_or(false)), stream::iter([1, 2]));
        shut.send(false).unwrap();
        assert!(gated.collect::<Vec<i32>>().await.is_empty());
    }
}
