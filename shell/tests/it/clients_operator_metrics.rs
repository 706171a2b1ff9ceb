//! The `/metrics` exposition must carry Flagger's metric names and label sets, so dashboards
//! and alert rules written for Flagger keep working.

use std::collections::{BTreeMap, BTreeSet};

use flagger::operator_metrics::OperatorMetrics;
use flagger_core::command::MetricRecord;

/// One sample line: name, labels, value.
fn samples(text: &str) -> Vec<(String, BTreeMap<String, String>, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').unwrap();
            let (name, labels) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let labels = labels
                .split(',')
                .filter(|kv| !kv.is_empty())
                .map(|kv| {
                    let (k, v) = kv.split_once('=').unwrap();
                    (k.to_string(), v.trim_matches('"').to_string())
                })
                .collect();
            (name.to_string(), labels, value.parse().unwrap())
        })
        .collect()
}

fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let want: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    samples(text)
        .into_iter()
        .find(|(n, l, _)| n == name && *l == want)
        .map(|(_, _, v)| v)
}

fn recorded() -> OperatorMetrics {
    let m = OperatorMetrics::new();
    m.set_info("1.44.0", "istio");
    m.set_total("test", 2);
    m.observe_duration("podinfo", "test", 0.3);
    m.count_kube_request("patch", "deployments");
    m.count_kube_request("patch", "deployments");
    m.record(&MetricRecord::Status { value: 0 }, "podinfo", "test");
    m.record(
        &MetricRecord::Weight {
            primary: 90,
            canary: 10,
        },
        "podinfo",
        "test",
    );
    m.record(
        &MetricRecord::Analysis {
            metric: "request-success-rate".into(),
            value: 99.5,
        },
        "podinfo",
        "test",
    );
    for rec in [
        MetricRecord::Success {
            strategy: "canary".into(),
            analysis_status: "completed".into(),
        },
        MetricRecord::Failure {
            strategy: "blue-green".into(),
            analysis_status: "completed".into(),
        },
    ] {
        m.record(&rec, "podinfo", "test");
    }
    m
}

#[test]
fn names_types_and_label_sets_are_flaggers() {
    let text = recorded().encode();
    let types: BTreeSet<(String, String)> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| {
            let (n, t) = l.split_once(' ').unwrap();
            (n.to_string(), t.to_string())
        })
        .collect();
    let expected: BTreeSet<(String, String)> = [
        ("flagger_info", "gauge"),
        ("flagger_canary_total", "gauge"),
        ("flagger_canary_status", "gauge"),
        ("flagger_canary_weight", "gauge"),
        ("flagger_canary_duration_seconds", "histogram"),
        ("flagger_canary_metric_analysis", "gauge"),
        ("flagger_canary_successes_total", "counter"),
        ("flagger_canary_failures_total", "counter"),
        ("flagger_kube_requests_total", "counter"),
    ]
    .into_iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(types, expected);

    let label_sets: BTreeMap<String, BTreeSet<String>> =
        samples(&text)
            .into_iter()
            .fold(BTreeMap::new(), |mut acc, (name, labels, _)| {
                let family = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s))
                    .filter(|f| *f == "flagger_canary_duration_seconds")
                    .unwrap_or(&name)
                    .to_string();
                let keys = labels
                    .keys()
                    .filter(|k| *k != "le")
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(",");
                acc.entry(family).or_default().insert(keys);
                acc
            });
    let want = |pairs: &[(&str, &str)]| -> BTreeMap<String, BTreeSet<String>> {
        pairs
            .iter()
            .map(|(f, l)| (f.to_string(), BTreeSet::from([l.to_string()])))
            .collect()
    };
    assert_eq!(
        label_sets,
        want(&[
            ("flagger_info", "mesh_provider,version"),
            ("flagger_canary_total", "namespace"),
            ("flagger_canary_status", "name,namespace"),
            ("flagger_canary_weight", "namespace,workload"),
            ("flagger_canary_duration_seconds", "name,namespace"),
            ("flagger_canary_metric_analysis", "metric,name,namespace"),
            (
                "flagger_canary_successes_total",
                "analysis_status,deployment_strategy,name,namespace"
            ),
            (
                "flagger_canary_failures_total",
                "analysis_status,deployment_strategy,name,namespace"
            ),
            ("flagger_kube_requests_total", "resource,verb"),
        ])
    );
}

#[test]
fn values_land_on_the_right_series() {
    let text = recorded().encode();
    let ns = ("namespace", "test");
    assert_eq!(
        value(
            &text,
            "flagger_info",
            &[("version", "1.44.0"), ("mesh_provider", "istio")]
        ),
        Some(1.0)
    );
    assert_eq!(value(&text, "flagger_canary_total", &[ns]), Some(2.0));
    assert_eq!(
        value(&text, "flagger_canary_status", &[("name", "podinfo"), ns]),
        Some(0.0)
    );
    assert_eq!(
        value(
            &text,
            "flagger_canary_weight",
            &[("workload", "podinfo-primary"), ns]
        ),
        Some(90.0)
    );
    assert_eq!(
        value(
            &text,
            "flagger_canary_weight",
            &[("workload", "podinfo"), ns]
        ),
        Some(10.0)
    );
    assert_eq!(
        value(
            &text,
            "flagger_canary_metric_analysis",
            &[("name", "podinfo"), ns, ("metric", "request-success-rate")]
        ),
        Some(99.5)
    );
    let outcome = |strategy| {
        [
            ("name", "podinfo"),
            ns,
            ("deployment_strategy", strategy),
            ("analysis_status", "completed"),
        ]
    };
    assert_eq!(
        value(&text, "flagger_canary_successes_total", &outcome("canary")),
        Some(1.0)
    );
    assert_eq!(
        value(
            &text,
            "flagger_canary_failures_total",
            &outcome("blue-green")
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &text,
            "flagger_kube_requests_total",
            &[("verb", "patch"), ("resource", "deployments")]
        ),
        Some(2.0)
    );
    assert_eq!(
        value(
            &text,
            "flagger_canary_duration_seconds_count",
            &[("name", "podinfo"), ns]
        ),
        Some(1.0)
    );
    // Default buckets: 0.3 s falls in le="0.5" but not le="0.25".
    assert_eq!(
        value(
            &text,
            "flagger_canary_duration_seconds_bucket",
            &[("name", "podinfo"), ns, ("le", "0.25")]
        ),
        Some(0.0)
    );
    assert_eq!(
        value(
            &text,
            "flagger_canary_duration_seconds_bucket",
            &[("name", "podinfo"), ns, ("le", "0.5")]
        ),
        Some(1.0)
    );
}

#[test]
fn forgetting_a_canary_drops_its_gauges_only() {
    let m = recorded();
    m.record(&MetricRecord::Status { value: 1 }, "other", "test");
    m.forget_canary("podinfo", "test");
    let text = m.encode();
    let ns = ("namespace", "test");
    assert_eq!(
        value(&text, "flagger_canary_status", &[("name", "podinfo"), ns]),
        None
    );
    assert_eq!(
        value(
            &text,
            "flagger_canary_weight",
            &[("workload", "podinfo-primary"), ns]
        ),
        None
    );
    assert!(!text.contains("flagger_canary_metric_analysis{"));
    assert_eq!(
        value(&text, "flagger_canary_status", &[("name", "other"), ns]),
        Some(1.0)
    );
    assert!(
        value(
            &text,
            "flagger_canary_successes_total",
            &[
                ("name", "podinfo"),
                ns,
                ("deployment_strategy", "canary"),
                ("analysis_status", "completed")
            ]
        )
        .is_some()
    );
}

#[test]
fn content_type_is_the_text_format() {
    assert_eq!(
        OperatorMetrics::new().content_type(),
        "text/plain; version=0.0.4"
    );
}
