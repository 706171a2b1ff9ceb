//! What a Canary spec means: Flagger's defaults, the seed's `v1alpha1` shape, and clear errors
//! that name the offending field.

use flagger_core::command::{AlertSeverity, MetricSource};
use flagger_core::policy::{HookType, Provider, Steps, Strategy};
use flagger_core::{Canary, OperatorConfig, Policy};
use jiff::SignedDuration;
use serde_json::json;

fn policy(spec: serde_json::Value) -> Result<Policy, String> {
    let canary: Canary = serde_json::from_value(json!({
        "apiVersion": "flagger.app/v1beta1", "kind": "Canary",
        "metadata": {"name": "podinfo", "namespace": "test"},
        "spec": spec,
    }))
    .map_err(|e| e.to_string())?;
    Policy::from_spec("podinfo", "test", &canary.spec, &OperatorConfig::default())
        .map_err(|e| e.to_string())
}

#[test]
fn flaggers_podinfo_example_means_what_flagger_says() {
    let p = policy(json!({
        "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
        "autoscalerRef": {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "name": "podinfo"},
        "service": {"port": 9898, "targetPort": 9898, "gateways": ["public-gateway.istio-system.svc.cluster.local"], "hosts": ["app.example.com"]},
        "analysis": {
            "interval": "1m", "threshold": 5, "maxWeight": 50, "stepWeight": 10,
            "metrics": [
                {"name": "request-success-rate", "thresholdRange": {"min": 99}, "interval": "1m"},
                {"name": "request-duration", "thresholdRange": {"max": 500}, "interval": "30s"}
            ],
            "webhooks": [
                {"name": "acceptance-test", "type": "pre-rollout", "url": "http://flagger-loadtester.test/", "timeout": "30s",
                 "metadata": {"type": "bash", "cmd": "curl -sd 'test' http://podinfo-canary.test:9898/token | grep token"}},
                {"name": "load-test", "url": "http://flagger-loadtester.test/", "timeout": "5s",
                 "metadata": {"cmd": "hey -z 1m -q 10 -c 2 http://podinfo-canary.test:9898/"}}
            ]
        }
    }))
    .unwrap();
    assert_eq!(p.interval, SignedDuration::from_secs(60));
    assert_eq!(p.threshold, 5);
    assert_eq!(p.provider, Provider::Istio);
    assert!(p.has_autoscaler);
    let Strategy::Canary(c) = &p.strategy else {
        panic!("canary strategy expected")
    };
    assert_eq!(
        (c.max_weight, &c.steps, c.promotion_step),
        (50, &Steps::Linear(10), 0)
    );
    assert_eq!(p.metrics[0].source, MetricSource::RequestSuccessRate);
    assert_eq!((p.metrics[0].min, p.metrics[0].max), (Some(99.0), None));
    assert_eq!((p.metrics[1].min, p.metrics[1].max), (None, Some(500.0)));
    assert_eq!(p.hooks[0].hook_type, HookType::PreRollout);
    assert_eq!(
        p.hooks[1].hook_type,
        HookType::Rollout,
        "an empty type means rollout"
    );
    assert_eq!(p.hooks[1].timeout, SignedDuration::from_secs(5));
    assert_eq!(p.progress_deadline, SignedDuration::from_secs(600));
    assert!(!p.skip_analysis);
}

#[test]
fn the_seeds_v1alpha1_shape_still_works() {
    let p = policy(json!({
        "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
        "service": {"port": 9898, "gateways": ["public-gateway.istio-system.svc.cluster.local"], "hosts": ["app.istio.weavedx.com"]},
        "canaryAnalysis": {
            "threshold": 10, "maxWeight": 50, "stepWeight": 5,
            "metrics": [
                {"name": "istio_requests_total", "threshold": 99, "interval": "1m"},
                {"name": "istio_request_duration_seconds_bucket", "threshold": 500, "interval": "30s"}
            ]
        }
    }))
    .unwrap();
    assert_eq!(p.threshold, 10);
    assert_eq!(p.metrics[0].source, MetricSource::RequestSuccessRate);
    assert_eq!(
        p.metrics[0].min,
        Some(99.0),
        "the legacy success-rate threshold is a minimum"
    );
    assert_eq!(p.metrics[1].source, MetricSource::RequestDuration);
    assert_eq!(
        p.metrics[1].max,
        Some(500.0),
        "the legacy latency threshold is a maximum in ms"
    );
}

/// The bounds of each metric of `metrics`, in spec order.
fn bounds(metrics: serde_json::Value) -> Vec<(Option<f64>, Option<f64>)> {
    let p = policy(
        json!({"targetRef": {"name": "podinfo"}, "service": {"port": 80},
        "analysis": {"interval": "1m", "stepWeight": 10, "metrics": metrics}}),
    )
    .unwrap();
    p.metrics.iter().map(|m| (m.min, m.max)).collect()
}

#[test]
fn a_missing_threshold_is_flaggers_zero() {
    assert_eq!(
        bounds(json!([
            {"name": "request-success-rate"},
            {"name": "request-duration"},
            {"name": "errors", "query": "up"},
            {"name": "latency", "templateRef": {"name": "latency"}}
        ])),
        vec![
            (Some(0.0), None),
            (None, Some(0.0)),
            (None, Some(0.0)),
            (None, Some(0.0))
        ],
        "a minimum of 0 for the success rate, a maximum of 0 for everything else"
    );
}

#[test]
fn a_threshold_range_makes_threshold_ignored() {
    assert_eq!(
        bounds(json!([
            {"name": "request-success-rate", "threshold": 99, "thresholdRange": {"max": 100}},
            {"name": "request-duration", "threshold": 500, "thresholdRange": {"min": 10}},
            {"name": "errors", "query": "up", "threshold": 5, "thresholdRange": {"min": 1, "max": 3}},
            {"name": "latency", "templateRef": {"name": "latency"}, "threshold": 5, "thresholdRange": {}}
        ])),
        vec![
            (None, Some(100.0)),
            (Some(10.0), None),
            (Some(1.0), Some(3.0)),
            (None, None)
        ],
        "only the range counts, even an empty one"
    );
}

#[test]
fn a_threshold_alone_is_a_maximum_except_for_the_success_rate() {
    assert_eq!(
        bounds(json!([
            {"name": "request-success-rate", "threshold": 99},
            {"name": "request-duration", "threshold": 500},
            {"name": "latency", "templateRef": {"name": "latency", "namespace": "flagger"}, "threshold": 5}
        ])),
        vec![(Some(99.0), None), (None, Some(500.0)), (None, Some(5.0))]
    );
}

#[test]
fn latency_bounds_are_whole_milliseconds_as_in_flagger() {
    assert_eq!(
        bounds(json!([
            {"name": "request-duration", "threshold": 500.9},
            {"name": "request-duration", "thresholdRange": {"min": 10.5, "max": 99.99}},
            {"name": "errors", "query": "up", "threshold": 0.5}
        ])),
        vec![
            (None, Some(500.0)),
            (Some(10.0), Some(99.0)),
            (None, Some(0.5))
        ],
        "only the latency is converted to a Go Duration of milliseconds"
    );
}

#[test]
fn flaggers_defaults_and_clamps() {
    let p = policy(
        json!({"targetRef": {"name": "podinfo"}, "service": {"port": 80},
        "analysis": {"interval": "5s", "threshold": 0, "iterations": 3}}),
    )
    .unwrap();
    assert_eq!(
        p.interval,
        SignedDuration::from_secs(10),
        "intervals below 10s are raised to 10s"
    );
    assert_eq!(p.threshold, 1, "a threshold of 0 means 1");
    assert_eq!(
        p.strategy,
        Strategy::BlueGreen {
            iterations: 3,
            mirror: false,
            promotion_step: 0,
        }
    );

    let p = policy(json!({"targetRef": {"name": "podinfo"}, "service": {"port": 80},
        "analysis": {"interval": "1m", "iterations": 3, "match": [{"headers": {"user-agent": {"regex": ".*Firefox.*"}}}]}}))
    .unwrap();
    assert_eq!(p.strategy, Strategy::AbTesting { iterations: 3 });

    let p = policy(json!({"targetRef": {"name": "podinfo"}, "service": {"port": 80}})).unwrap();
    assert!(
        p.skip_analysis,
        "a canary without analysis is promoted without analysis"
    );

    let cfg = OperatorConfig {
        min_interval: SignedDuration::from_secs(1),
        ..OperatorConfig::default()
    };
    let canary: Canary = serde_json::from_value(json!({"apiVersion": "flagger.app/v1beta1", "kind": "Canary",
        "metadata": {"name": "p"}, "spec": {"targetRef": {"name": "podinfo"}, "service": {"port": 80},
        "analysis": {"interval": "2s", "stepWeight": 50}}}))
    .unwrap();
    let p = Policy::from_spec("p", "t", &canary.spec, &cfg).unwrap();
    assert_eq!(
        p.interval,
        SignedDuration::from_secs(2),
        "-min-analysis-interval lowers the floor"
    );
}

#[test]
fn empty_alert_severity_means_info() {
    let p = policy(json!({"targetRef": {"name": "podinfo"}, "service": {"port": 80},
        "analysis": {"interval": "1m", "stepWeight": 10, "alerts": [{"name": "a", "providerRef": {"name": "slack"}}]}}))
    .unwrap();
    assert_eq!(p.alerts[0].severity, AlertSeverity::Info);
    assert!(p.alerts[0].accepts(AlertSeverity::Info));
}

#[test]
fn bad_values_are_errors_that_name_the_field() {
    let cases = [
        (
            json!({"interval": "1x", "stepWeight": 10}),
            "spec.analysis.interval: invalid duration \"1x\": unknown unit",
        ),
        (
            json!({"interval": "1m"}),
            "spec.analysis: one of stepWeight, stepWeights or iterations must be set (got none)",
        ),
        (
            json!({"stepWeight": 150}),
            "spec.analysis.stepWeight: 150 is not a percentage",
        ),
        (
            json!({"stepWeights": [10, 5]}),
            "spec.analysis.stepWeights[1]: weights must increase strictly",
        ),
        (
            json!({"stepWeight": 10, "maxWeight": -5}),
            "spec.analysis.maxWeight: -5 must be between 1 and 100",
        ),
        (
            json!({"stepWeight": 10, "metrics": [{"name": "error-rate"}]}),
            "spec.analysis.metrics[0]: metric \"error-rate\" is not built in and has neither query nor templateRef",
        ),
        (
            json!({"stepWeight": 10, "metrics": [{"name": "request-duration", "interval": "30"}]}),
            "spec.analysis.metrics[0].interval: invalid duration \"30\": missing unit",
        ),
        (
            json!({"stepWeight": 10, "metrics": [{"name": "x", "query": "up", "thresholdRange": {"min": 5, "max": 1}}]}),
            "spec.analysis.metrics[0].thresholdRange: min 5 is above max 1",
        ),
        (
            json!({"stepWeight": 10, "webhooks": [{"name": "w", "type": "pre-rollot", "url": "http://x"}]}),
            "spec.analysis.webhooks[0].type: unknown webhook type \"pre-rollot\"",
        ),
        (
            json!({"stepWeight": 10, "webhooks": [{"name": "w", "url": "http://x", "timeout": "soon"}]}),
            "spec.analysis.webhooks[0].timeout: invalid duration \"soon\": expected a number",
        ),
        (
            json!({"stepWeight": 10, "alerts": [{"name": "a", "severity": "critical", "providerRef": {"name": "s"}}]}),
            "spec.analysis.alerts[0].severity: \"critical\" is not one of info, warn, error",
        ),
        (
            json!({"stepWeight": 10, "sessionAffinity": {"cookieName": "c", "primaryCookieName": "c"}}),
            "spec.analysis.sessionAffinity: cookieName and primaryCookieName must differ (both \"c\")",
        ),
        (
            json!({"stepWeight": 10, "sessionAffinity": {"maxAge": 60}}),
            "spec.analysis.sessionAffinity: cookieName is required",
        ),
    ];
    for (analysis, expected) in cases {
        let got = policy(
            json!({"targetRef": {"name": "podinfo"}, "service": {"port": 80}, "analysis": analysis}),
        );
        assert_eq!(got.unwrap_err(), expected);
    }
    let got = policy(
        json!({"provider": "linkerd", "targetRef": {"name": "podinfo"}, "service": {"port": 80}}),
    );
    assert_eq!(
        got.unwrap_err(),
        "spec.provider: provider \"linkerd\" is not supported yet (supported: istio, gatewayapi:v1, kubernetes, nginx)"
    );
    let got = policy(
        json!({"provider": "linkerdd", "targetRef": {"name": "podinfo"}, "service": {"port": 80}}),
    );
    assert_eq!(
        got.unwrap_err(),
        "spec.provider: unsupported mesh provider \"linkerdd\" (supported: istio, gatewayapi:v1, kubernetes, nginx)"
    );
    let got =
        policy(json!({"targetRef": {"kind": "DaemonSet", "name": "x"}, "service": {"port": 80}}));
    assert_eq!(
        got.unwrap_err(),
        "spec.targetRef.kind: DaemonSet targets are not supported yet (only Deployment)"
    );
    let got =
        policy(json!({"targetRef": {"kind": "StatefulSet", "name": "x"}, "service": {"port": 80}}));
    assert_eq!(
        got.unwrap_err(),
        "spec.targetRef.kind: \"StatefulSet\" is not a target kind (Deployment, DaemonSet or Service)"
    );
}

#[test]
fn nginx_routes_through_the_named_ingress() {
    let p = policy(json!({
        "provider": "nginx",
        "targetRef": {"name": "podinfo"},
        "ingressRef": {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "name": "podinfo"},
        "service": {"port": 80},
        "analysis": {"interval": "1m", "stepWeight": 10, "maxWeight": 50},
    }))
    .unwrap();
    assert_eq!(p.provider, Provider::Nginx);
    assert_eq!(p.provider_name, "nginx");
    assert!(matches!(p.strategy, Strategy::Canary(_)));
    let ab = policy(json!({
        "provider": "nginx",
        "targetRef": {"name": "podinfo"},
        "ingressRef": {"name": "podinfo"},
        "service": {"port": 80},
        "analysis": {"iterations": 5, "match": [{"headers": {"x-canary": {"exact": "insider"}}}]},
    }))
    .unwrap();
    assert_eq!(ab.strategy, Strategy::AbTesting { iterations: 5 });
}

#[test]
fn gateway_api_without_gateway_refs_is_refused_with_flaggers_words() {
    for refs in [json!(null), json!([])] {
        let e = policy(json!({
            "provider": "gatewayapi:v1",
            "targetRef": {"name": "podinfo"},
            "service": {"port": 80, "gatewayRefs": refs},
        }))
        .unwrap_err();
        assert_eq!(
            e,
            "spec.service.gatewayRefs: GatewayRefs must be specified when using Gateway API as a provider."
        );
    }
    let ok = policy(json!({
        "provider": "gatewayapi:v1",
        "targetRef": {"name": "podinfo"},
        "service": {"port": 80, "gatewayRefs": [{"name": "public", "namespace": "gw"}]},
    }));
    assert!(ok.is_ok(), "{ok:?}");
}

#[test]
fn nginx_without_an_ingress_ref_or_with_a_mirrored_canary_is_refused() {
    for ingress_ref in [json!(null), json!({"name": ""})] {
        let e = policy(json!({
            "provider": "nginx",
            "targetRef": {"name": "podinfo"},
            "ingressRef": ingress_ref,
            "service": {"port": 80},
        }))
        .unwrap_err();
        assert_eq!(
            e,
            "spec.ingressRef: the nginx provider needs the Ingress to clone (spec.ingressRef.name)"
        );
    }
    let e = policy(json!({
        "provider": "nginx",
        "targetRef": {"name": "podinfo"},
        "ingressRef": {"name": "podinfo"},
        "service": {"port": 80},
        "analysis": {"stepWeight": 10, "mirror": true},
    }))
    .unwrap_err();
    assert_eq!(
        e,
        "spec.analysis.mirror: traffic mirroring is not supported by the nginx provider"
    );
    // Blue/green runs as in Flagger, without the mirror it cannot set, and says so.
    let p = policy(json!({
        "provider": "nginx",
        "targetRef": {"name": "podinfo"},
        "ingressRef": {"name": "podinfo"},
        "service": {"port": 80},
        "analysis": {"iterations": 5, "mirror": true},
    }))
    .unwrap();
    assert_eq!(
        p.strategy,
        Strategy::BlueGreen {
            iterations: 5,
            mirror: false,
            promotion_step: 0,
        }
    );
    assert_eq!(
        p.provider_warnings,
        vec!["Traffic mirroring is not supported when using the nginx provider".to_string()]
    );
}

/// Every provider Flagger's CRD accepts either routes here or is "not supported yet" (reason
/// NotSupported), never "unknown"; the operator's default provider counts the same way.
#[test]
fn flaggers_providers_are_supported_or_not_supported_yet() {
    for name in flagger_core::policy::FLAGGER_PROVIDERS {
        let canary: Canary = serde_json::from_value(json!({
            "apiVersion": "flagger.app/v1beta1", "kind": "Canary",
            "metadata": {"name": "podinfo", "namespace": "test"},
            "spec": {"provider": name, "targetRef": {"name": "podinfo"},
                     "service": {"port": 80, "gatewayRefs": [{"name": "gw"}]},
                     "ingressRef": {"name": "podinfo"}},
        }))
        .unwrap();
        let got = Policy::from_spec("podinfo", "test", &canary.spec, &OperatorConfig::default());
        match Provider::parse(name) {
            Some(p) => assert_eq!(got.unwrap().provider, p, "{name}"),
            None => {
                let e = got.unwrap_err();
                assert_eq!(e.reason(), "NotSupported", "{name}");
                assert_eq!(e.field, "spec.provider");
                assert!(
                    e.message
                        .contains(&format!("{name:?} is not supported yet"))
                );
            }
        }
    }
    let config = OperatorConfig {
        mesh_provider: "smi:v1alpha3:linkerd".into(),
        ..OperatorConfig::default()
    };
    let canary: Canary = serde_json::from_value(json!({
        "apiVersion": "flagger.app/v1beta1", "kind": "Canary",
        "metadata": {"name": "podinfo", "namespace": "test"},
        "spec": {"targetRef": {"name": "podinfo"}, "service": {"port": 80}},
    }))
    .unwrap();
    let e = Policy::from_spec("podinfo", "test", &canary.spec, &config).unwrap_err();
    assert_eq!(
        e.to_string(),
        "spec.provider: provider \"smi:v1alpha3:linkerd\" (from -mesh-provider) is not supported yet (supported: istio, gatewayapi:v1, kubernetes, nginx)"
    );
}

#[test]
fn max_weight_zero_means_unset_as_in_flagger() {
    let p = policy(
        json!({"targetRef": {"name": "podinfo"}, "service": {"port": 80},
        "analysis": {"interval": "1m", "threshold": 5, "stepWeight": 10, "maxWeight": 0}}),
    )
    .unwrap();
    let Strategy::Canary(c) = &p.strategy else {
        panic!("canary strategy expected")
    };
    assert_eq!(c.max_weight, 100);
    assert!(
        policy(
            json!({"targetRef": {"name": "podinfo"}, "service": {"port": 80},
            "analysis": {"interval": "1m", "threshold": 5, "stepWeight": 10, "maxWeight": 150}})
        )
        .unwrap_err()
        .starts_with("spec.analysis.maxWeight: 150 must be between 1 and 100")
    );
}

/// Flagger labels its success and failure counters with the strategy the spec asks for
/// (`Canary.DeploymentStrategy()`), also when the kubernetes provider runs it as blue/green.
#[test]
fn counters_are_labelled_with_the_strategy_the_spec_asks_for() {
    let label = |provider: &str, analysis: serde_json::Value| {
        let p = policy(
            json!({"provider": provider, "targetRef": {"name": "podinfo"},
            "service": {"port": 80}, "analysis": analysis}),
        )
        .unwrap();
        (p.strategy.label(), p.declared_strategy.label())
    };
    let weighted = json!({"interval": "1m", "threshold": 2, "stepWeight": 10});
    assert_eq!(
        label("kubernetes", weighted.clone()),
        ("blue-green", "canary")
    );
    assert_eq!(label("istio", weighted), ("canary", "canary"));
    let ab = json!({"interval": "1m", "threshold": 2, "iterations": 3,
        "match": [{"headers": {"x-canary": {"exact": "on"}}}]});
    assert_eq!(label("kubernetes", ab), ("blue-green", "ab-testing"));
}

/// Flagger's alerts describe the routing the spec asks for (`alertMetadata` switches on
/// `DeploymentStrategy()`), so a kubernetes-provider Canary written with weight steps reads
/// "Weight step: …" although it runs as blue/green.
#[test]
fn alert_routing_field_names_the_strategy_the_spec_asks_for() {
    let routing = |provider: &str, analysis: serde_json::Value| {
        let p = policy(
            json!({"provider": provider, "targetRef": {"name": "podinfo"},
            "service": {"port": 80}, "analysis": analysis}),
        )
        .unwrap();
        flagger_core::alerts::metadata_fields(&p)
            .into_iter()
            .find(|(k, _)| k == "Traffic routing")
            .map(|(_, v)| v)
            .unwrap()
    };
    let weighted = json!({"interval": "1m", "stepWeight": 10, "maxWeight": 50});
    assert_eq!(
        routing("kubernetes", weighted.clone()),
        "Weight step: 10 max: 50"
    );
    assert_eq!(routing("istio", weighted), "Weight step: 10 max: 50");
    let ladder = json!({"interval": "1m", "stepWeights": [1, 5, 20]});
    assert_eq!(
        routing("kubernetes", ladder),
        "Weight steps: 1,5,20 max: 20"
    );
    let ab = json!({"interval": "1m", "iterations": 3,
        "match": [{"headers": {"x-canary": {"exact": "on"}}}]});
    assert_eq!(routing("kubernetes", ab), "A/B Testing");
    let bg = json!({"interval": "1m", "iterations": 3});
    assert_eq!(routing("kubernetes", bg), "Blue/Green");
}
