//! Generated traces — random specs, metric series, readiness delays, gate answers and faults —
//! replayed with every invariant checked after every step. A failing case prints its seed; the
//! trace is reproduced with `flagger_sim::generate::trace(seed, ...)`.

use flagger_sim::generate::{self, Inputs};
use flagger_sim::trace::FaultRates;
use flagger_sim::{Options, replay};
use proptest::prelude::*;

mod common;
use common::config;

/// Fault rates; `staleSnapshot` stays 0: the core's contract is to decide on the latest status,
/// and keeping a lagging cache from reaching it is the shell's job (a decision on a stale status
/// acts before its conflicting status write is refused). The fault remains available to traces.
fn rates() -> impl Strategy<Value = FaultRates> {
    let p = || prop_oneof![3 => Just(0.0), 1 => 0.0..0.3f64];
    (p(), p(), p(), p(), p(), p(), p(), p()).prop_map(
        |(
            metric_error,
            metric_nan,
            metric_missing,
            conflict,
            restart,
            duplicate_reconcile,
            early_reconcile,
            apply_twice,
        )| FaultRates {
            metric_error,
            metric_nan,
            metric_missing,
            conflict,
            restart,
            duplicate_reconcile,
            early_reconcile,
            stale_snapshot: 0.0,
            apply_twice,
        },
    )
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn invariants_hold_on_chaotic_inputs(seed in any::<u64>(), rates in rates()) {
        let (trace, _) = generate::trace(seed, Inputs::Chaotic, rates);
        let run = replay(&trace, &Options::default());
        prop_assert!(run.error.is_none(), "seed {seed}: {:?}", run.error);
        prop_assert!(run.violations.is_empty(), "seed {seed} rates {rates:?}: {:#?}", run.violations);
    }

    #[test]
    fn a_seed_reproduces_its_run_byte_for_byte(seed in any::<u64>(), rates in rates()) {
        let (trace, _) = generate::trace(seed, Inputs::Chaotic, rates);
        let (again, _) = generate::trace(seed, Inputs::Chaotic, rates);
        let a = flagger_sim::timeline::json(&replay(&trace, &Options::default()));
        let b = flagger_sim::timeline::json(&replay(&again, &Options::default()));
        prop_assert!(a == b, "seed {seed}: two replays differ");
    }
}

/// Any spec the API server would store — valid or not — as Canary JSON.
fn any_spec() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::json;
    let interval = prop::sample::select(vec!["10s", "1m", "1.5m", "0s", "-1m", "soon", "", "1h"]);
    let weight = || prop_oneof![Just(None), (-5i32..=105).prop_map(Some)];
    let hook_type = prop::sample::select(vec![
        "",
        "confirm-rollout",
        "pre-rollout",
        "rollout",
        "confirm-traffic-increase",
        "confirm-promotion",
        "post-rollout",
        "rollback",
        "event",
        "bogus",
    ]);
    (
        (interval, prop_oneof![Just(None), (-2i32..8).prop_map(Some)], weight(), weight()),
        (
            prop::option::of(prop::collection::vec(-5i32..=105, 0..6)),
            prop_oneof![Just(None), (-2i32..6).prop_map(Some)],
            any::<bool>(),
            any::<bool>(),
        ),
        (
            prop::collection::vec((hook_type, any::<bool>()), 0..4),
            prop::option::of(-100.0f64..1000.0),
            prop_oneof![Just(None), (-60i32..900).prop_map(Some)],
            prop::sample::select(vec!["istio", "kubernetes", "gatewayapi:v1", "linkerd"]),
            any::<bool>(),
        ),
    )
        .prop_map(
            |((interval, threshold, max, step), (ladder, iterations, mirror, ab), (hooks, bound, deadline, provider, skip))| {
                let hooks: Vec<_> = hooks
                    .iter()
                    .enumerate()
                    .map(|(i, (t, empty_url))| {
                        json!({"name": format!("h{i}"), "type": t, "url": if *empty_url { "" } else { "http://h.test/" }})
                    })
                    .collect();
                let mut analysis = json!({
                    "interval": interval,
                    "threshold": threshold,
                    "maxWeight": max,
                    "stepWeight": step,
                    "stepWeights": ladder,
                    "iterations": iterations,
                    "mirror": mirror,
                    "metrics": [
                        {"name": "request-success-rate", "thresholdRange": {"min": bound}},
                        {"name": "request-duration", "threshold": bound}
                    ],
                    "webhooks": hooks
                });
                if ab {
                    analysis["match"] = json!([{"headers": {"x-canary": {"exact": "insider"}}}]);
                }
                json!({
                    "provider": provider,
                    "targetRef": {"name": "podinfo"},
                    "service": {"port": 9898},
                    "progressDeadlineSeconds": deadline,
                    "skipAnalysis": skip,
                    "analysis": analysis
                })
            },
        )
}

proptest! {
    #![proptest_config(config())]

    /// Invalid specs are blocked with a message and odd valid ones run: the core never panics,
    /// never livelocks, and keeps every invariant whatever the spec.
    #[test]
    fn any_spec_is_handled(seed in any::<u64>(), spec in any_spec()) {
        let (mut trace, _) = generate::trace(seed, Inputs::Chaotic, FaultRates::default());
        trace.canary.spec = serde_json::from_value(spec.clone()).expect("spec shape");
        let run = replay(&trace, &Options::default());
        prop_assert!(run.error.is_none(), "seed {seed} spec {spec}: {:?}", run.error);
        prop_assert!(run.violations.is_empty(), "seed {seed} spec {spec}: {:#?}", run.violations);
    }
}
