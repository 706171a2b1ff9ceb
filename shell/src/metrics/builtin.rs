//! The built-in checks `request-success-rate` (percent of non-5xx requests) and
//! `request-duration` (P99 latency in milliseconds), as PromQL templates per provider.
//!
//! Istio reads its own proxy telemetry (`istio_requests_total`,
//! `istio_request_duration_milliseconds_bucket`, reporter `destination`). Gateway API and plain
//! Kubernetes have no mesh telemetry, so, like Flagger, they read the application's own
//! `http_request_duration_seconds` histogram from the target's pods (podinfo-style metrics with
//! `kubernetes_namespace`/`kubernetes_pod_name` labels). Any other provider name uses Istio's
//! queries, which is Flagger's fallback too. NGINX reads the ingress controller's own
//! `nginx_ingress_controller_*` series of the canary Ingress (`canary!=""`), keyed by the
//! `ingressRef` name, its latency already scaled to milliseconds by the query.
//!
//! The templates go through [`super::template::render`], so the namespace and target are escaped
//! like any other value; the target is a regex matcher operand and therefore matched literally.

/// Which built-in check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Builtin {
    SuccessRate,
    Duration,
}

const ISTIO_SUCCESS_RATE: &str = r#"
sum(rate(istio_requests_total{
        reporter="destination",
        destination_workload_namespace="{{ namespace }}",
        destination_workload=~"{{ target }}",
        response_code!~"5.*"
    }[{{ interval }}]))
  / sum(rate(istio_requests_total{
        reporter="destination",
        destination_workload_namespace="{{ namespace }}",
        destination_workload=~"{{ target }}"
    }[{{ interval }}]))
  * 100
"#;

const ISTIO_DURATION: &str = r#"
histogram_quantile(0.99,
    sum by (le) (rate(istio_request_duration_milliseconds_bucket{
        reporter="destination",
        destination_workload_namespace="{{ namespace }}",
        destination_workload=~"{{ target }}"
    }[{{ interval }}])))
"#;

// Pod names of a Deployment are `<target>-<replicaset hash>-<pod suffix>`.
const HTTP_SUCCESS_RATE: &str = r#"
sum(rate(http_request_duration_seconds_count{
        kubernetes_namespace="{{ namespace }}",
        kubernetes_pod_name=~"{{ target }}-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)",
        status!~"5.*"
    }[{{ interval }}]))
  / sum(rate(http_request_duration_seconds_count{
        kubernetes_namespace="{{ namespace }}",
        kubernetes_pod_name=~"{{ target }}-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)"
    }[{{ interval }}]))
  * 100
"#;

const HTTP_DURATION: &str = r#"
histogram_quantile(0.99,
    sum by (le) (rate(http_request_duration_seconds_bucket{
        kubernetes_namespace="{{ namespace }}",
        kubernetes_pod_name=~"{{ target }}-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)"
    }[{{ interval }}])))
"#;

const NGINX_SUCCESS_RATE: &str = r#"
sum(rate(nginx_ingress_controller_requests{
        namespace="{{ namespace }}",
        ingress="{{ ingress }}",
        canary!="",
        status!~"5.*"
    }[{{ interval }}]))
  / sum(rate(nginx_ingress_controller_requests{
        namespace="{{ namespace }}",
        ingress="{{ ingress }}",
        canary!=""
    }[{{ interval }}]))
  * 100
"#;

// The average, not a percentile: the controller's histogram has no per-canary buckets in
// Flagger's query either.
const NGINX_DURATION: &str = r#"
sum(rate(nginx_ingress_controller_response_duration_seconds_sum{
        namespace="{{ namespace }}",
        ingress="{{ ingress }}",
        canary!=""
    }[{{ interval }}]))
  / sum(rate(nginx_ingress_controller_response_duration_seconds_count{
        namespace="{{ namespace }}",
        ingress="{{ ingress }}",
        canary!=""
    }[{{ interval }}]))
  * 1000
"#;

/// Whether `provider` reads application metrics (seconds) rather than Istio's (milliseconds).
fn uses_app_metrics(provider: &str) -> bool {
    provider == "kubernetes" || provider.starts_with("gatewayapi")
}

/// The query template of `which` for routing `provider`.
pub fn query_template(provider: &str, which: Builtin) -> &'static str {
    if provider == "nginx" {
        return match which {
            Builtin::SuccessRate => NGINX_SUCCESS_RATE,
            Builtin::Duration => NGINX_DURATION,
        };
    }
    match (uses_app_metrics(provider), which) {
        (false, Builtin::SuccessRate) => ISTIO_SUCCESS_RATE,
        (false, Builtin::Duration) => ISTIO_DURATION,
        (true, Builtin::SuccessRate) => HTTP_SUCCESS_RATE,
        (true, Builtin::Duration) => HTTP_DURATION,
    }
}

/// The duration query's result as whole milliseconds, truncated as Flagger does (it converts
/// to a Go `time.Duration` of whole milliseconds before comparing with the threshold).
pub fn duration_millis(provider: &str, raw: f64) -> f64 {
    let ms = if uses_app_metrics(provider) {
        raw * 1000.0
    } else {
        raw
    };
    ms.trunc()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::template::{TemplateModel, collapse_whitespace, render};

    fn model() -> TemplateModel {
        TemplateModel {
            namespace: "test".into(),
            target: "podinfo".into(),
            interval: "1m".into(),
            ..TemplateModel::default()
        }
    }

    #[test]
    fn istio_success_rate_excludes_5xx_over_all_requests() {
        let q = collapse_whitespace(
            &render(query_template("istio", Builtin::SuccessRate), &model()).unwrap(),
        );
        assert_eq!(
            q,
            "sum(rate(istio_requests_total{ reporter=\"destination\", \
             destination_workload_namespace=\"test\", destination_workload=~\"podinfo\", \
             response_code!~\"5.*\" }[1m])) / sum(rate(istio_requests_total{ \
             reporter=\"destination\", destination_workload_namespace=\"test\", \
             destination_workload=~\"podinfo\" }[1m])) * 100"
        );
    }

    #[test]
    fn gateway_and_kubernetes_read_pod_metrics() {
        for provider in ["kubernetes", "gatewayapi:v1", "gatewayapi"] {
            let q = render(query_template(provider, Builtin::Duration), &model()).unwrap();
            assert!(q.contains("http_request_duration_seconds_bucket"), "{q}");
            assert!(
                q.contains(r#"kubernetes_pod_name=~"podinfo-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)""#),
                "{q}"
            );
            assert!(q.contains("histogram_quantile(0.99"), "{q}");
            assert!(q.contains("sum by (le)"), "{q}");
        }
    }

    #[test]
    fn nginx_reads_the_canary_ingress_series_in_milliseconds() {
        let model = TemplateModel {
            ingress: "web".into(),
            ..model()
        };
        let q = collapse_whitespace(
            &render(query_template("nginx", Builtin::SuccessRate), &model).unwrap(),
        );
        assert_eq!(
            q,
            "sum(rate(nginx_ingress_controller_requests{ namespace=\"test\", ingress=\"web\", \
             canary!=\"\", status!~\"5.*\" }[1m])) / \
             sum(rate(nginx_ingress_controller_requests{ namespace=\"test\", ingress=\"web\", \
             canary!=\"\" }[1m])) * 100"
        );
        let q = collapse_whitespace(
            &render(query_template("nginx", Builtin::Duration), &model).unwrap(),
        );
        assert_eq!(
            q,
            "sum(rate(nginx_ingress_controller_response_duration_seconds_sum{ \
             namespace=\"test\", ingress=\"web\", canary!=\"\" }[1m])) / \
             sum(rate(nginx_ingress_controller_response_duration_seconds_count{ \
             namespace=\"test\", ingress=\"web\", canary!=\"\" }[1m])) * 1000"
        );
        assert_eq!(duration_millis("nginx", 12.7), 12.0);
    }

    #[test]
    fn unknown_providers_fall_back_to_istio() {
        assert_eq!(
            query_template("linkerd", Builtin::SuccessRate),
            query_template("istio", Builtin::SuccessRate)
        );
    }

    #[test]
    fn durations_become_whole_milliseconds() {
        assert_eq!(duration_millis("istio", 512.9), 512.0);
        assert_eq!(duration_millis("kubernetes", 0.2519), 251.0);
        assert_eq!(duration_millis("gatewayapi:v1", 1.5), 1500.0);
        assert!(duration_millis("istio", f64::INFINITY).is_infinite());
    }
}
