//! No reconcile may start before every watch cache holds its initial list: a cache still listing
//! shows the target, primary or routes as missing, and the core acts on that (a false "Deployment
//! … not found" warning, a `Blocked` condition, a new transition time that delays the analysis).
//!
//! kube-runtime holds its reconcile runner only until the store of the controller's own kind (the
//! Canaries') has listed, and the other watches start at the same moment, so that store is
//! usually ready first. Hence the Canary watch itself starts only once every other cache has
//! listed ([`after`]): the Canary store becomes ready last, the runner waits for it, and the
//! Canary watch's first complete list is the moment every cache is synced.

use std::future::Future;
use std::time::Duration;

use futures::{Stream, StreamExt, stream};
use kube::runtime::reflector::Store;

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

/// Resolves once every cache a reconcile reads besides the Canaries' holds its initial list;
/// false if one never will.
pub async fn dependencies_listed(stores: &Stores) -> bool {
    let s = stores;
    let mut ok = listed("Deployment", &s.deployments).await
        && listed("Service", &s.services).await
        && listed("HorizontalPodAutoscaler", &s.autoscalers).await
        && listed("MetricTemplate", &s.templates).await
        && listed("AlertProvider", &s.providers).await;
    if let Some(cms) = &s.config_maps {
        ok = ok && listed("ConfigMap", cms).await;
    }
    if let Some(secrets) = &s.secrets {
        ok = ok && listed("Secret", secrets).await;
    }
    for (kind, _, store) in &s.routes {
        ok = ok && listed(kind.group_and_kind().1, store).await;
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
    use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
    use kube::runtime::reflector::{self, store::Writer};
    use kube::runtime::watcher::Event;

    use super::*;
    use crate::controller::watch::RouteKind;

    #[tokio::test]
    async fn the_gate_opens_only_once_every_cache_but_the_canaries_has_listed() {
        let (canaries, _canaries_w) = reflector::store();
        let (deployments, mut deployments_w) = reflector::store();
        let (services, mut services_w) = reflector::store();
        let (autoscalers, mut autoscalers_w) = reflector::store();
        let (config_maps, mut config_maps_w) = reflector::store();
        let (secrets, mut secrets_w) = reflector::store();
        let (templates, mut templates_w) = reflector::store();
        let (providers, mut providers_w) = reflector::store();
        let vs = ApiResource::from_gvk(&GroupVersionKind::gvk(
            "networking.istio.io",
            "v1",
            "VirtualService",
        ));
        let mut routes_w: Writer<DynamicObject> = Writer::new(vs.clone());
        let stores = Stores {
            canaries,
            deployments,
            services,
            autoscalers,
            config_maps: Some(config_maps),
            secrets: Some(secrets),
            templates,
            providers,
            routes: vec![(RouteKind::VirtualService, vs, routes_w.as_reader())],
        };
        let gate = tokio::spawn(async move { dependencies_listed(&stores).await });

        deployments_w.apply_watcher_event(&Event::InitDone);
        services_w.apply_watcher_event(&Event::InitDone);
        autoscalers_w.apply_watcher_event(&Event::InitDone);
        config_maps_w.apply_watcher_event(&Event::InitDone);
        secrets_w.apply_watcher_event(&Event::InitDone);
        templates_w.apply_watcher_event(&Event::InitDone);
        // A cache in the middle of its initial list has not listed yet.
        providers_w.apply_watcher_event(&Event::Init);
        tokio::time::sleep(POLL * 5).await;
        assert!(
            !gate.is_finished(),
            "opened before the AlertProviders listed"
        );
        providers_w.apply_watcher_event(&Event::InitDone);
        tokio::time::sleep(POLL * 5).await;
        assert!(!gate.is_finished(), "opened before the mesh routes listed");

        routes_w.apply_watcher_event(&Event::InitDone);
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
