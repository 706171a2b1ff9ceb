//! One decision for a Progressing canary with two metrics (answers already gathered): prints the
//! median time per call. Target: under 2 µs. Run with `cargo bench -p flagger-sim --bench decide`.

use std::hint::black_box;
use std::time::Instant;

// The allocator the `flagger` binary ships with (shell/src/main.rs), so the figures are those
// of `flagger replay`.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use flagger_core::api::{CanaryStatus, Phase};
use flagger_core::snapshot::{Answers, CanaryMeta, MetricAnswer, OperatorConfig, Routes, Workload};
use flagger_core::{Outcome, Snapshot, decide};
use jiff::{SignedDuration, Timestamp};

fn snapshot() -> Snapshot {
    let spec = serde_json::from_value(serde_json::json!({
        "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
        "service": {"port": 9898},
        "analysis": {
            "interval": "1m", "threshold": 5, "maxWeight": 50, "stepWeight": 10,
            "metrics": [
                {"name": "request-success-rate", "thresholdRange": {"min": 99}, "interval": "1m"},
                {"name": "request-duration", "thresholdRange": {"max": 500}, "interval": "30s"}
            ]
        }
    }))
    .expect("spec");
    let now: Timestamp = "2026-01-01T00:10:00Z".parse().expect("time");
    let workload = |hash: &str| Workload {
        template_hash: hash.into(),
        replicas: 2,
        generation: 3,
        observed_generation: 3,
        updated_replicas: 2,
        available_replicas: 2,
        total_replicas: 2,
        ..Workload::default()
    };
    let mut answers = Answers::default();
    answers
        .metrics
        .insert("request-success-rate".into(), MetricAnswer::Value(99.9));
    answers
        .metrics
        .insert("request-duration".into(), MetricAnswer::Value(250.0));
    Snapshot {
        now,
        canary: CanaryMeta {
            name: "podinfo".into(),
            namespace: "test".into(),
            ..CanaryMeta::default()
        },
        spec,
        status: CanaryStatus {
            phase: Some(Phase::Progressing),
            canary_weight: 20,
            last_applied_spec: Some("new".into()),
            last_promoted_spec: Some("old".into()),
            last_transition_time: Some(now - SignedDuration::from_secs(60)),
            ..CanaryStatus::default()
        },
        config: OperatorConfig::default(),
        target: Some(workload("new")),
        primary: Some(workload("old")),
        routes: Some(Routes {
            primary_weight: 80,
            canary_weight: 20,
            mirrored: false,
        }),
        routes_not_ready: None,
        services_present: true,
        apex_selects_primary: true,
        drift: Default::default(),
        answers,
    }
}

fn main() {
    let snap = snapshot();
    match decide(&snap) {
        Outcome::Decided(d) => assert!(
            d.commands.iter().any(|c| matches!(
                c,
                flagger_core::Command::SetRoutes {
                    canary_weight: 30,
                    ..
                }
            )),
            "the benchmark must measure an analysis step that advances the weight"
        ),
        Outcome::Need(n) => panic!("the snapshot lacks inputs: {n:?}"),
    }
    const CALLS: u32 = 2_000;
    let mut samples: Vec<f64> = (0..101)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..CALLS {
                black_box(decide(black_box(&snap)));
            }
            t.elapsed().as_secs_f64() * 1e6 / f64::from(CALLS)
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    println!(
        "decide (Progressing, two metrics): median {:.2} µs per call (min {:.2}, max {:.2}; target < 2 µs)",
        samples[samples.len() / 2],
        samples[0],
        samples[samples.len() - 1]
    );
}
