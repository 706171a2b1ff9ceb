//! The decision function must never panic and must keep its output contract whatever it is fed:
//! hostile specs, corrupted statuses, impossible observations and arbitrary answers.

use flagger_core::api::{CanaryStatus, Phase};
use flagger_core::command::{Command, Outcome, Request};
use flagger_core::snapshot::CanaryMeta;
use flagger_core::{HookAnswer, MetricAnswer, OperatorConfig, Routes, Snapshot, Workload, decide};
use jiff::{SignedDuration, Timestamp};
use proptest::prelude::*;
use serde_json::json;

const PHASES: [Phase; 11] = [
    Phase::Initializing,
    Phase::Initialized,
    Phase::Waiting,
    Phase::Progressing,
    Phase::WaitingPromotion,
    Phase::Promoting,
    Phase::Finalising,
    Phase::Succeeded,
    Phase::Failed,
    Phase::Terminating,
    Phase::Terminated,
];

fn edge_int() -> impl Strategy<Value = i32> {
    prop_oneof![
        -5..=110i32,
        Just(i32::MIN),
        Just(i32::MAX),
        Just(0),
        Just(100)
    ]
}

fn spec() -> impl Strategy<Value = serde_json::Value> {
    (
        prop_oneof![Just("1m"), Just("10s"), Just("0s"), Just("-1m"), Just("1x"), Just(""), Just("2562047h")],
        proptest::option::of(edge_int()),
        proptest::option::of(edge_int()),
        proptest::option::of(edge_int()),
        proptest::option::of(proptest::collection::vec(edge_int(), 0..4)),
        proptest::option::of(edge_int()),
        any::<bool>(),
        prop_oneof![Just("istio"), Just("kubernetes"), Just("gatewayapi:v1"), Just("linkerd")],
        proptest::option::of(edge_int()),
        (any::<bool>(), any::<bool>(), any::<bool>(), proptest::option::of(edge_int())),
    )
        .prop_map(|(interval, threshold, max, step, steps, iterations, mirror, provider, promo, flags)| {
            json!({
                "provider": provider,
                "targetRef": {"kind": "Deployment", "name": "podinfo"},
                "service": {"port": 9898},
                "skipAnalysis": flags.0,
                "suspend": flags.1,
                "revertOnDeletion": flags.2,
                "progressDeadlineSeconds": flags.3,
                "analysis": {
                    "interval": interval, "threshold": threshold, "maxWeight": max, "stepWeight": step,
                    "stepWeights": steps, "iterations": iterations, "mirror": mirror, "stepWeightPromotion": promo,
                    "match": if mirror { json!([{"headers": {"x": {"exact": "y"}}}]) } else { json!(null) },
                    "metrics": [
                        {"name": "request-success-rate", "thresholdRange": {"min": 99}},
                        {"name": "latency", "templateRef": {"name": "t"}, "thresholdRange": {"max": 5}}
                    ],
                    "webhooks": [
                        {"name": "a", "type": "confirm-rollout", "url": "http://127.0.0.1:1"},
                        {"name": "b", "type": "pre-rollout", "url": "http://127.0.0.1:1"},
                        {"name": "c", "type": "rollout", "url": "http://127.0.0.1:1"},
                        {"name": "d", "type": "confirm-traffic-increase", "url": "http://127.0.0.1:1"},
                        {"name": "e", "type": "confirm-promotion", "url": "http://127.0.0.1:1"},
                        {"name": "f", "type": "rollback", "url": "http://127.0.0.1:1"},
                        {"name": "g", "type": "post-rollout", "url": "http://127.0.0.1:1"}
                    ],
                    "alerts": [{"name": "x", "severity": "warn", "providerRef": {"name": "slack"}}]
                }
            })
        })
}

fn workload() -> impl Strategy<Value = Option<Workload>> {
    proptest::option::of(
        (
            prop_oneof![Just("v1"), Just("v2")],
            edge_int(),
            edge_int(),
            edge_int(),
            edge_int(),
            -2i64..3,
            any::<bool>(),
            proptest::option::of(-1_000_000i64..1_000_000),
        )
            .prop_map(
                |(hash, replicas, updated, available, total, gen_lag, deadline, since)| Workload {
                    template_hash: hash.into(),
                    copy_identity: hash.into(),
                    replicas,
                    generation: 5,
                    observed_generation: 5 - gen_lag,
                    updated_replicas: updated,
                    available_replicas: available,
                    total_replicas: total,
                    progress_deadline_exceeded: deadline,
                    unavailable_since: since
                        .map(|s| Timestamp::UNIX_EPOCH + SignedDuration::from_secs(s)),
                    autoscaler_min_replicas: None,
                    configs: Default::default(),
                    missing_configs: if deadline {
                        vec!["configmap/podinfo-env".into()]
                    } else {
                        Vec::new()
                    },
                },
            ),
    )
}

fn snapshot() -> impl Strategy<Value = Snapshot> {
    (
        spec(),
        proptest::option::of(proptest::sample::select(PHASES.to_vec())),
        (edge_int(), edge_int(), edge_int()),
        proptest::option::of(-1_000_000i64..1_000_000),
        (workload(), workload()),
        proptest::option::of((edge_int(), edge_int(), any::<bool>())),
        (any::<bool>(), any::<bool>(), any::<bool>()),
        prop_oneof![Just(None), Just(Some("v1")), Just(Some("v2"))],
        any::<bool>(),
    )
        .prop_map(
            |(
                spec,
                phase,
                (failed, weight, iterations),
                last,
                (target, primary),
                routes,
                flags,
                applied,
                routes_waiting,
            )| {
                Snapshot {
                    now: Timestamp::UNIX_EPOCH + SignedDuration::from_secs(500_000),
                    canary: CanaryMeta {
                        name: "podinfo".into(),
                        namespace: "test".into(),
                        deleting: flags.0,
                        has_finalizer: flags.1,
                    },
                    spec: serde_json::from_value(spec).expect("generated specs deserialize"),
                    status: CanaryStatus {
                        phase,
                        failed_checks: failed,
                        canary_weight: weight,
                        iterations,
                        last_applied_spec: applied.map(String::from),
                        last_promoted_spec: Some("v1".into()),
                        last_transition_time: last
                            .map(|s| Timestamp::UNIX_EPOCH + SignedDuration::from_secs(s)),
                        ..CanaryStatus::default()
                    },
                    config: OperatorConfig {
                        global_notifier: flags.2,
                        ..OperatorConfig::default()
                    },
                    target,
                    primary,
                    routes: routes.map(|(p, c, m)| Routes {
                        primary_weight: p,
                        canary_weight: c,
                        mirrored: m,
                    }),
                    routes_not_ready: routes_waiting.then(|| "parent gw is not ready".to_string()),
                    services_present: flags.2,
                    apex_selects_primary: flags.1,
                    drift: Default::default(),
                    answers: Default::default(),
                }
            },
        )
}

fn answer_hook(seed: u64, i: usize) -> HookAnswer {
    if (seed >> (i % 64)) & 1 == 0 {
        HookAnswer::Passed
    } else {
        HookAnswer::Failed("no".into())
    }
}

fn answer_metric(seed: u64, i: usize) -> MetricAnswer {
    match (seed >> (i % 60)) & 7 {
        0 => MetricAnswer::Value(f64::NAN),
        1 => MetricAnswer::Value(f64::INFINITY),
        2 => MetricAnswer::NoValues("none".into()),
        3 => MetricAnswer::Error("down".into()),
        4 => MetricAnswer::Value(-1.0),
        _ => MetricAnswer::Value(99.9),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn decide_never_panics_and_keeps_its_contract(mut snap in snapshot(), seed in any::<u64>()) {
        let mut passes = 0;
        let decision = loop {
            passes += 1;
            prop_assert!(passes <= 64, "the Need loop must converge");
            match decide(&snap) {
                Outcome::Decided(d) => break d,
                Outcome::Need(requests) => {
                    prop_assert!(!requests.is_empty());
                    for (i, r) in requests.into_iter().enumerate() {
                        let key = r.key();
                        match r {
                            Request::Hook(_) => {
                                prop_assert!(!snap.answers.hooks.contains_key(&key), "asked twice for {key}");
                                snap.answers.hooks.insert(key, answer_hook(seed, passes + i));
                            }
                            Request::Metric(_) => {
                                prop_assert!(!snap.answers.metrics.contains_key(&key), "asked twice for {key}");
                                snap.answers.metrics.insert(key, answer_metric(seed, passes + i));
                            }
                        }
                    }
                }
            }
        };
        let writes = decision.commands.iter().filter(|c| matches!(c, Command::WriteStatus(_))).count();
        prop_assert!(writes <= 1);
        if writes == 1 {
            prop_assert!(matches!(decision.commands.last(), Some(Command::WriteStatus(_))), "status write must be last");
        }
        for c in &decision.commands {
            if let Command::SetRoutes { primary_weight, canary_weight, .. } = c {
                prop_assert!((0..=100).contains(primary_weight) && (0..=100).contains(canary_weight));
                prop_assert_eq!(primary_weight + canary_weight, 100);
            }
            if let Command::ScaleTarget { replicas } = c {
                prop_assert!(*replicas >= 0);
            }
        }
        if let Some(at) = decision.wake_at {
            prop_assert!(at > snap.now, "a wake-up at or before now would spin");
        }
        // The same snapshot always gives the same decision.
        prop_assert_eq!(decide(&snap), Outcome::Decided(decision));
    }
}
