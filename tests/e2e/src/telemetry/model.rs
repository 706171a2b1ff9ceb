//! The counters a mesh (Istio's `destination` reporter), an instrumented application (podinfo's
//! `http_request_duration_seconds`) and the NGINX ingress controller
//! (`nginx_ingress_controller_requests`, `nginx_ingress_controller_response_duration_seconds`)
//! would export for simulated requests, and their Prometheus text exposition.

use std::collections::BTreeMap;
use std::fmt::Write;

/// Istio's default `istio_request_duration_milliseconds` buckets (up to 60 s).
pub const ISTIO_BUCKETS_MS: &[f64] = &[
    1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0,
    60000.0,
];
/// The Prometheus client's default buckets, which podinfo's histogram uses (seconds).
pub const APP_BUCKETS_S: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// What a scenario makes a workload do.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Behaviour {
    /// Fraction of requests answered with HTTP 500, 0..=1.
    pub error_rate: f64,
    /// Latency of every request.
    pub latency_ms: f64,
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour {
            error_rate: 0.0,
            latency_ms: 20.0,
        }
    }
}

impl Behaviour {
    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.error_rate) {
            return Err(format!("errorRate {} is not within 0..1", self.error_rate));
        }
        if !(self.latency_ms.is_finite() && self.latency_ms >= 0.0) {
            return Err(format!("latencyMs {} is not a duration", self.latency_ms));
        }
        Ok(())
    }
}

/// A workload's identity in the exported labels.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct WorkloadKey {
    pub namespace: String,
    /// Deployment name: `podinfo` (the canary) or `podinfo-primary`.
    pub workload: String,
}

impl WorkloadKey {
    /// A pod name as a Deployment would give it (`<name>-<replicaset hash>-<suffix>`), stable for
    /// the workload so series do not churn; the built-in queries for the gatewayapi and
    /// kubernetes providers select the target's pods by this shape.
    pub fn pod_name(&self) -> String {
        const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in self
            .namespace
            .bytes()
            .chain([b'/'])
            .chain(self.workload.bytes())
        {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        let mut part = |n: usize| -> String {
            (0..n)
                .map(|_| {
                    let c = ALPHABET[(h % ALPHABET.len() as u64) as usize] as char;
                    h /= ALPHABET.len() as u64;
                    c
                })
                .collect()
        };
        let rs = part(9);
        let pod = part(5);
        format!("{}-{rs}-{pod}", self.workload)
    }
}

/// The NGINX ingress controller's labels for one flow of requests: the Ingress the built-in
/// queries select (the Canary's `ingressRef`) and `canary`, empty for the traffic the main
/// Ingress sends to the primary, the canary upstream (`<namespace>-<service>-<port>`) for the
/// traffic the canary Ingress takes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct IngressKey {
    pub namespace: String,
    pub ingress: String,
    /// The backend Service of the flow.
    pub service: String,
    pub canary: String,
}

/// Cumulative counts the controller exports for one flow and one status.
#[derive(Debug, Clone, Default, PartialEq)]
struct IngressSeries {
    requests: f64,
    latency_sum_s: f64,
    /// Non-cumulative count per [`APP_BUCKETS_S`] index (the controller's default buckets).
    buckets: Vec<f64>,
}

/// Cumulative counts for one workload and one response code.
#[derive(Debug, Clone, Default, PartialEq)]
struct Series {
    requests: f64,
    /// Sum of latencies in milliseconds.
    latency_sum_ms: f64,
    /// Non-cumulative count per bucket index; `ISTIO_BUCKETS_MS.len()` is +Inf.
    istio_buckets: Vec<f64>,
    app_buckets: Vec<f64>,
}

fn bucket_index(bounds: &[f64], value: f64) -> usize {
    bounds
        .iter()
        .position(|b| value <= *b)
        .unwrap_or(bounds.len())
}

/// Every counter the generator exports; counters only grow, as Prometheus expects.
#[derive(Debug, Default)]
pub struct Telemetry {
    series: BTreeMap<(WorkloadKey, u16), Series>,
    ingress: BTreeMap<(IngressKey, u16), IngressSeries>,
}

impl Telemetry {
    /// Records `requests` requests (fractional: a rate times an elapsed time) served by `key`.
    /// The series exist (at zero) from the first call on, so Prometheus holds a history before
    /// the first request arrives and `rate()` sees the very first increase.
    pub fn observe(&mut self, key: &WorkloadKey, requests: f64, behaviour: Behaviour) {
        let requests = requests.max(0.0);
        let errors = requests * behaviour.error_rate;
        for (code, n) in [(200u16, requests - errors), (500u16, errors)] {
            let s = self
                .series
                .entry((key.clone(), code))
                .or_insert_with(|| Series {
                    istio_buckets: vec![0.0; ISTIO_BUCKETS_MS.len() + 1],
                    app_buckets: vec![0.0; APP_BUCKETS_S.len() + 1],
                    ..Series::default()
                });
            if n <= 0.0 {
                continue;
            }
            s.requests += n;
            s.latency_sum_ms += n * behaviour.latency_ms;
            s.istio_buckets[bucket_index(ISTIO_BUCKETS_MS, behaviour.latency_ms)] += n;
            s.app_buckets[bucket_index(APP_BUCKETS_S, behaviour.latency_ms / 1000.0)] += n;
        }
    }

    /// Records `requests` requests the ingress controller proxied for `key`, answered as
    /// `behaviour` says; like [`Telemetry::observe`] the series exist from the first call.
    pub fn observe_ingress(&mut self, key: &IngressKey, requests: f64, behaviour: Behaviour) {
        let requests = requests.max(0.0);
        let errors = requests * behaviour.error_rate;
        let seconds = behaviour.latency_ms / 1000.0;
        for (code, n) in [(200u16, requests - errors), (500u16, errors)] {
            let s = self
                .ingress
                .entry((key.clone(), code))
                .or_insert_with(|| IngressSeries {
                    buckets: vec![0.0; APP_BUCKETS_S.len() + 1],
                    ..IngressSeries::default()
                });
            if n <= 0.0 {
                continue;
            }
            s.requests += n;
            s.latency_sum_s += n * seconds;
            s.buckets[bucket_index(APP_BUCKETS_S, seconds)] += n;
        }
    }

    /// Drops the series of workloads no longer under test (their Canary is gone).
    pub fn retain(&mut self, keep: impl Fn(&WorkloadKey) -> bool) {
        self.series.retain(|(k, _), _| keep(k));
    }

    /// Drops the ingress controller's series of flows no longer routed.
    pub fn retain_ingress(&mut self, keep: impl Fn(&IngressKey) -> bool) {
        self.ingress.retain(|(k, _), _| keep(k));
    }

    /// The Prometheus text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::new();
        let istio = |k: &WorkloadKey| {
            format!(
                "reporter=\"destination\",destination_workload_namespace=\"{}\",destination_workload=\"{}\",destination_service_namespace=\"{}\"",
                k.namespace, k.workload, k.namespace
            )
        };
        let app = |k: &WorkloadKey| {
            format!(
                "kubernetes_namespace=\"{}\",kubernetes_pod_name=\"{}\",method=\"GET\",path=\"root\"",
                k.namespace,
                k.pod_name()
            )
        };

        out.push_str("# HELP istio_requests_total Requests seen by the destination proxy.\n");
        out.push_str("# TYPE istio_requests_total counter\n");
        for ((k, code), s) in &self.series {
            let _ = writeln!(
                out,
                "istio_requests_total{{{},response_code=\"{code}\"}} {}",
                istio(k),
                num(s.requests)
            );
        }
        out.push_str("# HELP istio_request_duration_milliseconds Request latency seen by the destination proxy.\n");
        out.push_str("# TYPE istio_request_duration_milliseconds histogram\n");
        for ((k, code), s) in &self.series {
            let labels = format!("{},response_code=\"{code}\"", istio(k));
            histogram(
                &mut out,
                "istio_request_duration_milliseconds",
                &labels,
                ISTIO_BUCKETS_MS,
                &s.istio_buckets,
                s.latency_sum_ms,
            );
        }
        out.push_str("# HELP http_request_duration_seconds Seconds spent serving HTTP requests.\n");
        out.push_str("# TYPE http_request_duration_seconds histogram\n");
        for ((k, code), s) in &self.series {
            let labels = format!("{},status=\"{code}\"", app(k));
            histogram(
                &mut out,
                "http_request_duration_seconds",
                &labels,
                APP_BUCKETS_S,
                &s.app_buckets,
                s.latency_sum_ms / 1000.0,
            );
        }
        let nginx = |k: &IngressKey, code: u16| {
            format!(
                "controller_class=\"k8s.io/ingress-nginx\",namespace=\"{}\",ingress=\"{}\",service=\"{}\",canary=\"{}\",method=\"GET\",path=\"/\",status=\"{code}\"",
                k.namespace, k.ingress, k.service, k.canary
            )
        };
        out.push_str(
            "# HELP nginx_ingress_controller_requests The total number of client requests\n",
        );
        out.push_str("# TYPE nginx_ingress_controller_requests counter\n");
        for ((k, code), s) in &self.ingress {
            let _ = writeln!(
                out,
                "nginx_ingress_controller_requests{{{}}} {}",
                nginx(k, *code),
                num(s.requests)
            );
        }
        out.push_str("# HELP nginx_ingress_controller_response_duration_seconds The time spent on receiving the response from the upstream server\n");
        out.push_str("# TYPE nginx_ingress_controller_response_duration_seconds histogram\n");
        for ((k, code), s) in &self.ingress {
            histogram(
                &mut out,
                "nginx_ingress_controller_response_duration_seconds",
                &nginx(k, *code),
                APP_BUCKETS_S,
                &s.buckets,
                s.latency_sum_s,
            );
        }
        out
    }
}

fn histogram(out: &mut String, name: &str, labels: &str, bounds: &[f64], counts: &[f64], sum: f64) {
    let mut cumulative = 0.0;
    for (i, c) in counts.iter().enumerate() {
        cumulative += c;
        let le = bounds
            .get(i)
            .map_or_else(|| "+Inf".to_string(), |b| num(*b));
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels},le=\"{le}\"}} {}",
            num(cumulative)
        );
    }
    let _ = writeln!(out, "{name}_sum{{{labels}}} {}", num(sum));
    let _ = writeln!(out, "{name}_count{{{labels}}} {}", num(cumulative));
}

fn num(v: f64) -> String {
    if v == v.trunc() && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(w: &str) -> WorkloadKey {
        WorkloadKey {
            namespace: "test".into(),
            workload: w.into(),
        }
    }

    #[test]
    fn errors_are_counted_as_500_and_latency_lands_in_its_bucket() {
        let mut t = Telemetry::default();
        t.observe(
            &key("podinfo"),
            10.0,
            Behaviour {
                error_rate: 0.5,
                latency_ms: 800.0,
            },
        );
        let text = t.render();
        let istio = "reporter=\"destination\",destination_workload_namespace=\"test\",destination_workload=\"podinfo\",destination_service_namespace=\"test\"";
        assert!(
            text.contains(&format!(
                "istio_requests_total{{{istio},response_code=\"500\"}} 5\n"
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "istio_requests_total{{{istio},response_code=\"200\"}} 5\n"
            )),
            "{text}"
        );
        // 800 ms is above the 500 bucket and within the 1000 bucket.
        assert!(text.contains(&format!(
            "istio_request_duration_milliseconds_bucket{{{istio},response_code=\"200\",le=\"500\"}} 0\n"
        )), "{text}");
        assert!(text.contains(&format!(
            "istio_request_duration_milliseconds_bucket{{{istio},response_code=\"200\",le=\"1000\"}} 5\n"
        )), "{text}");
        assert!(text.contains("le=\"+Inf\"} 5\n"), "{text}");
        assert!(text.contains("status=\"500\",le=\"1\"} 5\n"), "{text}");
    }

    #[test]
    fn pod_names_match_the_builtin_query_for_the_target_only() {
        let canary = key("podinfo").pod_name();
        let primary = key("podinfo-primary").pod_name();
        // The query's shape: `<target>-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)`, fully anchored.
        let matches_target = |pod: &str| {
            pod.strip_prefix("podinfo-").is_some_and(|rest| {
                let parts: Vec<_> = rest.split('-').collect();
                parts.len() == 2
                    && parts
                        .iter()
                        .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric()))
            })
        };
        assert!(matches_target(&canary), "{canary}");
        assert!(!matches_target(&primary), "{primary}");
        assert_eq!(canary, key("podinfo").pod_name());
    }

    #[test]
    fn behaviour_rejects_impossible_values() {
        assert!(
            Behaviour {
                error_rate: 1.5,
                latency_ms: 1.0
            }
            .validate()
            .is_err()
        );
        assert!(
            Behaviour {
                error_rate: 0.1,
                latency_ms: -1.0
            }
            .validate()
            .is_err()
        );
        assert!(Behaviour::default().validate().is_ok());
    }

    #[test]
    fn ingress_series_carry_the_canary_label_status_and_seconds() {
        let mut t = Telemetry::default();
        let canary = IngressKey {
            namespace: "test".into(),
            ingress: "podinfo".into(),
            service: "podinfo-canary".into(),
            canary: "test-podinfo-canary-9898".into(),
        };
        let primary = IngressKey {
            service: "podinfo".into(),
            canary: String::new(),
            ..canary.clone()
        };
        t.observe_ingress(
            &canary,
            10.0,
            Behaviour {
                error_rate: 0.5,
                latency_ms: 800.0,
            },
        );
        t.observe_ingress(&primary, 4.0, Behaviour::default());
        let text = t.render();
        let labels = |service: &str, canary: &str, status: &str| {
            format!(
                "controller_class=\"k8s.io/ingress-nginx\",namespace=\"test\",ingress=\"podinfo\",service=\"{service}\",canary=\"{canary}\",method=\"GET\",path=\"/\",status=\"{status}\""
            )
        };
        let c500 = labels("podinfo-canary", "test-podinfo-canary-9898", "500");
        assert!(
            text.contains(&format!("nginx_ingress_controller_requests{{{c500}}} 5\n")),
            "{text}"
        );
        // 5 requests of 0.8 s each.
        assert!(
            text.contains(&format!(
                "nginx_ingress_controller_response_duration_seconds_sum{{{c500}}} 4\n"
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "nginx_ingress_controller_response_duration_seconds_bucket{{{c500},le=\"0.5\"}} 0\n"
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "nginx_ingress_controller_response_duration_seconds_count{{{c500}}} 5\n"
            )),
            "{text}"
        );
        let p200 = labels("podinfo", "", "200");
        assert!(
            text.contains(&format!("nginx_ingress_controller_requests{{{p200}}} 4\n")),
            "{text}"
        );
        t.retain_ingress(|k| k.canary.is_empty());
        assert!(!t.render().contains("test-podinfo-canary-9898"));
    }

    #[test]
    fn retain_forgets_removed_workloads() {
        let mut t = Telemetry::default();
        t.observe(&key("podinfo"), 1.0, Behaviour::default());
        t.retain(|k| k.workload != "podinfo");
        assert!(!t.render().contains("podinfo"));
    }
}
