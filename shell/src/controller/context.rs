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

use super::canary_index::CanaryIndex;
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
    /// `-selector-labels` and `-include-label-prefix`: what the generated objects look like,
    /// against which the cached ones are compared.
    pub labels: crate::executor::LabelSettings,
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
    pub canary_counts: Mutex<CanaryCounts>,
    /// Which failures were reported as Warning events, and when.
    pub failure_reports: FailureReports,
    /// With `-shards`: the shards this replica may act on.
    pub shards: Option<Arc<crate::shard::Shards>>,
    /// Slots of the reconciles that initialize Canaries.
    pub initializations: super::initializations::Initializations,
    /// Canaries by target, autoscaler, Ingress and namespace, fed by the Canary watch.
    pub canary_index: CanaryIndex,
}

/// `flagger_canary_total` as last exported.
#[derive(Debug, Default)]
pub struct CanaryCounts {
    /// The index generation counted.
    generation: u64,
    per_namespace: BTreeMap<String, usize>,
}

/// How often one failure is reported on its Canary. A write that keeps failing is retried at a
/// backoff that grows to 5 minutes; Flagger reports it at every attempt and client-go's spam
/// filter then lets one event per object through every 5 minutes. Once per message per 5
/// minutes keeps `kubectl describe canary` current without an API write per retry, and the
/// recorder folds the repeats into a series on the first event.
pub const FAILURE_REPORT_WINDOW: Duration = Duration::from_secs(300);

/// Rate limit of failure events, per Canary and message.
#[derive(Debug)]
pub struct FailureReports {
    window: Duration,
    last: Mutex<HashMap<(ObjectRef<Canary>, String), std::time::Instant>>,
}

impl Default for FailureReports {
    fn default() -> Self {
        FailureReports::new(FAILURE_REPORT_WINDOW)
    }
}

impl FailureReports {
    pub fn new(window: Duration) -> FailureReports {
        FailureReports {
            window,
            last: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `message` about `canary` is due a report at `now`, i.e. was not reported within
    /// the window; if so, it counts as reported. Entries older than the window are dropped.
    pub fn due(&self, canary: &ObjectRef<Canary>, message: &str, now: std::time::Instant) -> bool {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        last.retain(|_, at| now.saturating_duration_since(*at) < self.window);
        let key = (canary.clone(), message.to_string());
        if last.contains_key(&key) {
            return false;
        }
        last.insert(key, now);
        true
    }
}

impl Context {
    /// Backoff after the n-th consecutive failure: 5s, 10s, 20s … capped at 5 minutes.
    pub fn failure_backoff(&self, canary: &ObjectRef<Canary>) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let n = failures.entry(canary.clone()).or_insert(0);
        *n = n.saturating_add(1);
        backoff(*n)
    }

    /// `flagger_canary_total{namespace}` from the index; namespaces whose last Canary went away
    /// drop to zero rather than keep their old count. Called after every reconcile, so it does
    /// nothing unless a Canary appeared or went since it last counted.
    pub fn count_canaries(&self) {
        let mut seen = self.canary_counts.lock().unwrap_or_else(|e| e.into_inner());
        let Some((generation, counts)) = self.canary_index.counts_since(seen.generation) else {
            return;
        };
        seen.generation = generation;
        for count in seen.per_namespace.values_mut() {
            *count = 0;
        }
        seen.per_namespace.extend(counts);
        for (ns, count) in seen.per_namespace.iter() {
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
    fn a_failure_is_reported_once_per_canary_and_message_within_the_window() {
        let reports = FailureReports::new(Duration::from_secs(300));
        let a = ObjectRef::<Canary>::new("podinfo").within("test");
        let b = ObjectRef::<Canary>::new("other").within("test");
        let t0 = std::time::Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert!(reports.due(&a, "HTTPRoute podinfo.test update error: x", at(0)));
        assert!(!reports.due(&a, "HTTPRoute podinfo.test update error: x", at(5)));
        assert!(reports.due(&a, "another error", at(10)), "another message");
        assert!(
            reports.due(&b, "HTTPRoute podinfo.test update error: x", at(10)),
            "another canary"
        );
        assert!(!reports.due(&a, "HTTPRoute podinfo.test update error: x", at(299)));
        assert!(
            reports.due(&a, "HTTPRoute podinfo.test update error: x", at(300)),
            "window over"
        );
    }

    #[test]
    fn failures_back_off_exponentially_up_to_five_minutes() {
        let secs: Vec<u64> = [1, 2, 3, 4, 7, 50]
            .iter()
            .map(|n| backoff(*n).as_secs())
            .collect();
        assert_eq!(secs, vec![5, 10, 20, 40, 300, 300]);
    }
}
