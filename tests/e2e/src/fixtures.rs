//! The podinfo example the scenarios deploy: a Deployment and Canaries for each strategy, with
//! intervals short enough for a suite that runs in minutes. Nothing pulls the image: no kubelet
//! runs, and `podready` marks the pods Ready.

use serde_json::{Value, json};

pub const IMAGE_V1: &str = "ghcr.io/stefanprodan/podinfo:6.7.0";
pub const IMAGE_V2: &str = "ghcr.io/stefanprodan/podinfo:6.7.1";
pub const IMAGE_V3: &str = "ghcr.io/stefanprodan/podinfo:6.8.0";
/// Pods carrying this label are kept unready by the cluster's kubelet stand-in.
pub const UNREADY_LABEL: &str = "flagger-test/unready";

/// The analysis interval: several steps fit in a few seconds, and each step still sees at least
/// two 1 s Prometheus scrapes of the traffic it shifted.
pub const INTERVAL: &str = "3s";
/// The metrics' range window; 1 s scrapes leave plenty of samples in it.
pub const METRIC_INTERVAL: &str = "30s";

pub fn deployment(namespace: &str, name: &str, image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
        "spec": {
            "replicas": 2,
            "progressDeadlineSeconds": 60,
            "revisionHistoryLimit": 2,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {
                    "labels": {"app": name},
                    "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": "9797"}
                },
                "spec": {
                    "containers": [{
                        "name": "podinfod",
                        "image": image,
                        "command": ["./podinfo", "--port=9898", "--port-metrics=9797", "--level=info"],
                        "ports": [
                            {"name": "http", "containerPort": 9898, "protocol": "TCP"},
                            {"name": "http-metrics", "containerPort": 9797, "protocol": "TCP"}
                        ],
                        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}
                    }]
                }
            }
        }
    })
}

/// The built-in checks: at least 99% non-5xx responses, P99 latency at most 500 ms.
pub fn builtin_metrics() -> Value {
    json!([
        {"name": "request-success-rate", "thresholdRange": {"min": 99}, "interval": METRIC_INTERVAL},
        {"name": "request-duration", "thresholdRange": {"max": 500}, "interval": METRIC_INTERVAL}
    ])
}

/// The user's Ingress for the `nginx` provider: `podinfo.example.com/` to the apex Service
/// `name` on port 9898; the operator clones it into `<name>-canary`.
pub fn ingress(namespace: &str, name: &str) -> Value {
    json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
        "spec": {
            "ingressClassName": "nginx",
            "rules": [{
                "host": "podinfo.example.com",
                "http": {"paths": [{
                    "path": "/",
                    "pathType": "Prefix",
                    "backend": {"service": {"name": name, "port": {"number": 9898}}}
                }]}
            }]
        }
    })
}

/// With the `nginx` provider the Canary names the Ingress [`ingress`] creates (same name as the
/// target).
fn canary_with(namespace: &str, name: &str, provider: &str, analysis: Value) -> Value {
    let mut canary = json!({
        "apiVersion": "flagger.app/v1beta1",
        "kind": "Canary",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "provider": provider,
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "progressDeadlineSeconds": 60,
            "service": {"port": 9898, "targetPort": 9898},
            "analysis": analysis
        }
    });
    if provider == "nginx" {
        canary["spec"]["ingressRef"] =
            json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "name": name});
    }
    canary
}

/// Weighted canary: 20, 40, 60 % then promotion.
pub fn weighted_canary(namespace: &str, name: &str, provider: &str) -> Value {
    canary_with(
        namespace,
        name,
        provider,
        json!({
            "interval": INTERVAL,
            "threshold": 3,
            "maxWeight": 60,
            "stepWeight": 20,
            "metrics": builtin_metrics()
        }),
    )
}

/// Blue/green: a fixed number of analysis iterations, then all traffic switches.
pub fn blue_green_canary(namespace: &str, name: &str, provider: &str, iterations: i64) -> Value {
    canary_with(
        namespace,
        name,
        provider,
        json!({
            "interval": INTERVAL,
            "threshold": 3,
            "iterations": iterations,
            "metrics": builtin_metrics()
        }),
    )
}

/// A/B testing: users with the `x-canary: insider` header see the canary.
pub fn ab_canary(namespace: &str, name: &str, provider: &str, iterations: i64) -> Value {
    canary_with(
        namespace,
        name,
        provider,
        json!({
            "interval": INTERVAL,
            "threshold": 3,
            "iterations": iterations,
            "match": [{"headers": {"x-canary": {"exact": "insider"}}}],
            "metrics": builtin_metrics()
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canaries_name_their_target_and_one_strategy() {
        let c = weighted_canary("ns", "podinfo", "istio");
        assert_eq!(c["spec"]["targetRef"]["name"], "podinfo");
        assert!(c["spec"]["analysis"]["iterations"].is_null());
        let bg = blue_green_canary("ns", "podinfo", "kubernetes", 3);
        assert!(bg["spec"]["analysis"]["stepWeight"].is_null());
        assert_eq!(bg["spec"]["analysis"]["iterations"], 3);
        let d = deployment("ns", "podinfo", IMAGE_V1);
        assert_eq!(
            d["spec"]["selector"]["matchLabels"],
            d["spec"]["template"]["metadata"]["labels"]
        );
    }

    #[test]
    fn nginx_canaries_name_the_ingress_that_routes_to_the_apex_service() {
        let c = weighted_canary("ns", "podinfo", "nginx");
        assert_eq!(c["spec"]["ingressRef"]["kind"], "Ingress");
        assert_eq!(c["spec"]["ingressRef"]["name"], "podinfo");
        assert!(weighted_canary("ns", "podinfo", "istio")["spec"]["ingressRef"].is_null());
        let i = ingress("ns", "podinfo");
        let backend = &i["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"];
        assert_eq!(backend["name"], "podinfo");
        assert_eq!(backend["port"]["number"], c["spec"]["service"]["port"]);
    }
}
