//! The operator's own Prometheus metrics, under Flagger's names and labels so existing
//! dashboards and alert rules keep working, plus `flagger_kube_requests_total`.
//!
//! Everything lives in one explicit [`Registry`] (no global state), served as text by
//! [`OperatorMetrics::encode`]. As in Flagger, the `name` label is the *target's* name.

use flagger_core::command::MetricRecord;
use prometheus::core::Collector;
use prometheus::{
    CounterVec, Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

#[derive(Clone)]
pub struct OperatorMetrics {
    registry: Registry,
    info: GaugeVec,
    total: GaugeVec,
    status: GaugeVec,
    weight: GaugeVec,
    duration: HistogramVec,
    analysis: GaugeVec,
    successes: CounterVec,
    failures: CounterVec,
    kube_requests: IntCounterVec,
    cache_objects: IntGaugeVec,
}

impl std::fmt::Debug for OperatorMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OperatorMetrics").finish_non_exhaustive()
    }
}

impl OperatorMetrics {
    /// Registers every metric in a fresh registry.
    pub fn new() -> OperatorMetrics {
        let registry = Registry::new();
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            let g = GaugeVec::new(Opts::new(name, help).subsystem("flagger"), labels)
                .expect("static metric definition is valid");
            registry
                .register(Box::new(g.clone()))
                .expect("each metric is registered once");
            g
        };
        let info = gauge(
            "info",
            "Operator version and default mesh provider (always 1).",
            &["version", "mesh_provider"],
        );
        let total = gauge(
            "canary_total",
            "Number of Canary objects per namespace.",
            &["namespace"],
        );
        let status = gauge(
            "canary_status",
            "Canary state: 0 progressing, 1 idle or succeeded, 2 failed.",
            &["name", "namespace"],
        );
        let weight = gauge(
            "canary_weight",
            "Traffic weight routed to the primary and canary workloads.",
            &["workload", "namespace"],
        );
        let analysis = gauge(
            "canary_metric_analysis",
            "Last value of each analysis metric (durations in seconds).",
            &["name", "namespace", "metric"],
        );
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "canary_duration_seconds",
                "Time taken by one analysis step, in seconds.",
            )
            .subsystem("flagger"),
            &["name", "namespace"],
        )
        .expect("static metric definition is valid");
        registry
            .register(Box::new(duration.clone()))
            .expect("each metric is registered once");
        let outcome_labels = &[
            "name",
            "namespace",
            "deployment_strategy",
            "analysis_status",
        ];
        let counter = |name: &str, help: &str| {
            let c = CounterVec::new(Opts::new(name, help).subsystem("flagger"), outcome_labels)
                .expect("static metric definition is valid");
            registry
                .register(Box::new(c.clone()))
                .expect("each metric is registered once");
            c
        };
        let successes = counter(
            "canary_successes_total",
            "Rollouts that ended in promotion.",
        );
        let failures = counter("canary_failures_total", "Rollouts that ended in rollback.");
        let kube_requests = IntCounterVec::new(
            Opts::new(
                "kube_requests_total",
                "Requests sent to the Kubernetes API server.",
            )
            .subsystem("flagger"),
            &["verb", "resource"],
        )
        .expect("static metric definition is valid");
        registry
            .register(Box::new(kube_requests.clone()))
            .expect("each metric is registered once");
        let cache_objects = IntGaugeVec::new(
            Opts::new(
                "cache_objects",
                "Objects held in the operator's watch caches, per kind.",
            )
            .subsystem("flagger"),
            &["kind"],
        )
        .expect("static metric definition is valid");
        registry
            .register(Box::new(cache_objects.clone()))
            .expect("each metric is registered once");
        OperatorMetrics {
            registry,
            cache_objects,
            info,
            total,
            status,
            weight,
            duration,
            analysis,
            successes,
            failures,
            kube_requests,
        }
    }

    /// `flagger_info{version, mesh_provider} 1`.
    pub fn set_info(&self, version: &str, mesh_provider: &str) {
        self.info
            .with_label_values(&[version, mesh_provider])
            .set(1.0);
    }

    /// `flagger_canary_total{namespace}`.
    pub fn set_total(&self, namespace: &str, count: usize) {
        self.total.with_label_values(&[namespace]).set(count as f64);
    }

    /// Observes how long one analysis step of the Canary targeting `target` took.
    pub fn observe_duration(&self, target: &str, namespace: &str, seconds: f64) {
        self.duration
            .with_label_values(&[target, namespace])
            .observe(seconds);
    }

    /// Counts one request to the API server (`verb`: get, list, create, patch, …).
    pub fn count_kube_request(&self, verb: &str, resource: &str) {
        self.kube_requests
            .with_label_values(&[verb, resource])
            .inc();
    }

    /// `flagger_cache_objects{kind}`: what one cache holds.
    pub fn cache_objects(&self, kind: &str) -> IntGauge {
        self.cache_objects.with_label_values(&[kind])
    }

    /// The `flagger_kube_requests_total{verb,resource}` counter, for request-counting layers.
    pub fn kube_requests(&self) -> IntCounterVec {
        self.kube_requests.clone()
    }

    /// Applies a [`MetricRecord`] command for the Canary whose target is `target`.
    pub fn record(&self, rec: &MetricRecord, target: &str, namespace: &str) {
        match rec {
            MetricRecord::Status { value } => self
                .status
                .with_label_values(&[target, namespace])
                .set(f64::from(*value)),
            MetricRecord::Weight { primary, canary } => {
                let primary_workload = format!("{target}-primary");
                self.weight
                    .with_label_values(&[primary_workload.as_str(), namespace])
                    .set(f64::from(*primary));
                self.weight
                    .with_label_values(&[target, namespace])
                    .set(f64::from(*canary));
            }
            MetricRecord::Analysis { metric, value } => self
                .analysis
                .with_label_values(&[target, namespace, metric.as_str()])
                .set(*value),
            MetricRecord::Success {
                strategy,
                analysis_status,
            } => self
                .successes
                .with_label_values(&[
                    target,
                    namespace,
                    strategy.as_str(),
                    analysis_status.as_str(),
                ])
                .inc(),
            MetricRecord::Failure {
                strategy,
                analysis_status,
            } => self
                .failures
                .with_label_values(&[
                    target,
                    namespace,
                    strategy.as_str(),
                    analysis_status.as_str(),
                ])
                .inc(),
        }
    }

    /// Drops the per-Canary gauges of a deleted Canary so dashboards stop showing it (counters
    /// and the histogram are kept: their history is still meaningful).
    pub fn forget_canary(&self, target: &str, namespace: &str) {
        let _ = self.status.remove_label_values(&[target, namespace]);
        let primary_workload = format!("{target}-primary");
        let _ = self
            .weight
            .remove_label_values(&[primary_workload.as_str(), namespace]);
        let _ = self.weight.remove_label_values(&[target, namespace]);
        // The analysis gauge is keyed by metric too; drop every series of this Canary.
        for family in self.analysis.collect() {
            for m in family.get_metric() {
                let labels: Vec<(&str, &str)> = m
                    .get_label()
                    .iter()
                    .map(|l| (l.name(), l.value()))
                    .collect();
                let get = |k: &str| labels.iter().find(|(n, _)| *n == k).map(|(_, v)| *v);
                if get("name") == Some(target)
                    && get("namespace") == Some(namespace)
                    && let Some(metric) = get("metric")
                {
                    let _ = self
                        .analysis
                        .remove_label_values(&[target, namespace, metric]);
                }
            }
        }
    }

    /// The registry in Prometheus' text exposition format (0.0.4).
    /// Adds a collector read at each scrape (the write pacer's gauges).
    pub fn register(&self, collector: Box<dyn Collector>) -> Result<(), prometheus::Error> {
        self.registry.register(collector)
    }

    pub fn encode(&self) -> String {
        let mut out = Vec::new();
        // Encoding into a Vec only fails for malformed metric families, which the registry
        // never holds.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }

    /// The `Content-Type` to serve [`Self::encode`] with.
    pub fn content_type(&self) -> String {
        TextEncoder::new().format_type().to_string()
    }
}

impl Default for OperatorMetrics {
    fn default() -> Self {
        OperatorMetrics::new()
    }
}
