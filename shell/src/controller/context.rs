//! What every reconcile shares: the client, the watch caches, the clients for webhooks, metrics
//! and alerts, the event recorder, the operator's metrics and settings.
//!
//! [`State`] is the part the HTTP server also reads (metrics, readiness); [`Context`] is what
//! the reconciler sees. Both are built once per process: the event recorder's de-duplication
//! and the metrics only work when long-lived.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flagger_core::api::Canary;
use flagger_core::command::Command;
use flagger_core::snapshot::OperatorConfig;
use futures::future::BoxFuture;
use kube::Client;
use kube::runtime::reflector::ObjectRef;

use super::outbox::Outbox;
use super::watch::Stores;
use crate::events::EventPublisher;
use crate::metrics::MetricsClient;
use crate::notifier::Notifier;
use crate::operator_metrics::OperatorMetrics;
use crate::server::Readiness;
use crate::trace_recorder::TraceRecorder;

/// The commands that change Kubernetes objects (everything but events, alerts, metrics and
/// post-rollout hooks), behind a trait so the reconciler does not depend on how they are applied.
pub trait KubeExecutor: Send + Sync {
    fn execute<'a>(
        &'a self,
        canary: &'a Canary,
        command: &'a Command,
    ) -> BoxFuture<'a, Result<(), String>>;
}

/// Shared with the HTTP server.
#[derive(Clone)]
pub struct State {
    pub metrics: OperatorMetrics,
    pub readiness: Arc<Readiness>,
}

impl State {
    pub fn new(version: &str, mesh_provider: &str) -> State {
        let metrics = OperatorMetrics::new();
        metrics.set_info(version, mesh_provider);
        State {
            metrics,
            readiness: Arc::new(Readiness::default()),
        }
    }
}

/// Operator settings the reconciler reads (from the flags).
#[derive(Clone, Debug)]
pub struct Settings {
    /// `-namespace`: empty for all namespaces.
    pub namespace: String,
    pub config: OperatorConfig,
    /// `-metrics-server`.
    pub metrics_server: String,
    /// `-event-webhook`.
    pub event_webhook: Option<String>,
    /// `-enable-config-tracking`.
    pub config_tracking: bool,
    /// How long a reconcile waits for the watch cache to show the status it just wrote, so the
    /// next reconcile never decides on the status from before.
    pub status_sync_timeout: Duration,
}

pub struct Context {
    pub client: Client,
    pub stores: Stores,
    pub settings: Settings,
    pub state: State,
    pub events: EventPublisher,
    /// Webhook calls.
    pub http: reqwest::Client,
    pub metrics_client: MetricsClient,
    /// `-slack-url` / `-msteams-url`; disabled when not configured.
    pub global_notifier: Notifier,
    /// Carries out the commands that change Kubernetes objects.
    pub executor: Arc<dyn KubeExecutor>,
    /// Alerts and event webhooks, delivered in order off the reconcile path.
    pub outbox: Outbox,
    pub traces: Option<TraceRecorder>,
    /// Consecutive failed reconciles per Canary, for the error backoff.
    pub failures: Mutex<HashMap<ObjectRef<Canary>, u32>>,
    /// Canaries per namespace as last exported, so emptied namespaces drop to zero.
    pub canary_counts: Mutex<BTreeMap<String, usize>>,
}

impl Context {
    /// Backoff after the n-th consecutive failure: 5s, 10s, 20s … capped at 5 minutes.
    pub fn failure_backoff(&self, canary: &ObjectRef<Canary>) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let n = failures.entry(canary.clone()).or_insert(0);
        *n = n.saturating_add(1);
        backoff(*n)
    }

    /// `flagger_canary_total{namespace}` from the cache; namespaces whose last Canary went away
    /// drop to zero rather than keep their old count.
    pub fn count_canaries(&self) {
        let mut seen = self.canary_counts.lock().unwrap_or_else(|e| e.into_inner());
        for count in seen.values_mut() {
            *count = 0;
        }
        for c in self.stores.canaries.state() {
            *seen
                .entry(kube::ResourceExt::namespace(c.as_ref()).unwrap_or_default())
                .or_insert(0) += 1;
        }
        for (ns, count) in seen.iter() {
            self.state.metrics.set_total(ns, *count);
        }
    }

    pub fn clear_failures(&self, canary: &ObjectRef<Canary>) {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(canary);
    }
}

pub fn backoff(failures: u32) -> Duration {
    let secs = 5u64.saturating_mul(1u64 << failures.saturating_sub(1).min(10));
    Duration::from_secs(secs.min(300))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_back_off_exponentially_up_to_five_minutes() {
        let secs: Vec<u64> = [1, 2, 3, 4, 7, 50]
            .iter()
            .map(|n| backoff(*n).as_secs())
            .collect();
        assert_eq!(secs, vec![5, 10, 20, 40, 300, 300]);
    }
}
