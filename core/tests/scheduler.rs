//! The tick sequences of Flagger's own scheduler tests (flagger.md section 3.12), replayed
//! against the decision function.

mod support;

use flagger_core::Phase;
use serde_json::json;
use support::{Cluster, spec};

#[test]
fn deployment_analysis_phases() {
    let mut c = Cluster::new(spec(json!({
        "interval": "1m", "threshold": 10, "stepWeight": 100, "stepWeightPromotion": 50,
        "metrics": [{"name": "request-success-rate", "thresholdRange": {"min": 99}, "interval": "1m"}]
    })));
    c.manual_readiness = true;
    c.tick();
    assert_eq!(c.phase(), Some(Phase::Initializing));
    c.make_primary_ready();
    c.tick_after(60);
    assert_eq!(c.phase(), Some(Phase::Initialized));

    c.new_revision("v2");
    c.tick_after(60);
    assert_eq!(c.phase(), Some(Phase::Progressing));
    assert_eq!(c.status.canary_weight, 0);
    c.make_canary_ready();
    c.tick_after(60);
    assert_eq!(
        (c.phase(), c.status.canary_weight),
        (Some(Phase::Progressing), 100)
    );
    c.tick_after(60);
    assert_eq!(
        (c.phase(), c.status.canary_weight),
        (Some(Phase::Promoting), 100)
    );
    c.make_primary_ready();
    c.tick_after(60);
    assert_eq!(
        (c.phase(), c.status.canary_weight),
        (Some(Phase::Promoting), 50)
    );
    c.tick_after(60);
    assert_eq!(
        (c.phase(), c.status.canary_weight),
        (Some(Phase::Finalising), 0)
    );
    c.tick_after(60);
    assert_eq!(c.phase(), Some(Phase::Succeeded));
    assert_eq!(c.primary.as_ref().unwrap().template_hash, "v2");
    assert_eq!(c.target.as_ref().unwrap().replicas, 0);
}

#[test]
fn blue_green_analysis_phases() {
    let mut c = Cluster::new(spec(
        json!({"interval": "1m", "threshold": 10, "iterations": 1}),
    ));
    c.tick();
    // The primary's creation is itself a watch event: the next reconcile comes at once.
    c.tick();
    assert_eq!(c.phase(), Some(Phase::Initialized));
    c.new_revision("v2");
    let mut phases = vec![];
    for _ in 0..6 {
        c.tick_after(60);
        phases.push((c.phase().unwrap(), c.routes.unwrap().canary_weight));
    }
    assert_eq!(
        phases,
        vec![
            (Phase::Progressing, 0),
            (Phase::Progressing, 0), // iteration 1/1, traffic on the primary
            (Phase::Progressing, 100), // all traffic to the canary
            (Phase::Promoting, 100),
            (Phase::Finalising, 0),
            (Phase::Succeeded, 0),
        ]
    );
}

/// Flagger steps a blue/green promotion back by `stepWeightPromotion` from the canary's 100 %,
/// as it does for a canary run; the phase write into Finalising zeroes the iteration counter.
#[test]
fn blue_green_promotion_steps_back_by_step_weight_promotion() {
    let mut c = Cluster::new(spec(
        json!({"interval": "1m", "threshold": 10, "iterations": 1, "stepWeightPromotion": 60}),
    ));
    c.tick();
    c.tick();
    c.new_revision("v2");
    let mut seen = vec![];
    for _ in 0..6 {
        let cmds = c.tick_after(60);
        seen.push((
            c.phase().unwrap(),
            c.routes.unwrap().canary_weight,
            c.status.iterations,
            Cluster::events(&cmds).last().cloned().unwrap_or_default(),
        ));
    }
    let row =
        |phase, weight, iterations, event: &str| (phase, weight, iterations, event.to_string());
    assert_eq!(
        seen,
        vec![
            row(
                Phase::Progressing,
                0,
                0,
                "New revision detected! Scaling up podinfo.test"
            ),
            row(
                Phase::Progressing,
                0,
                1,
                "Advance podinfo.test canary iteration 1/1"
            ),
            row(Phase::Progressing, 100, 2, "Routing all traffic to canary"),
            row(
                Phase::Promoting,
                100,
                2,
                "Copying podinfo.test template spec to podinfo-primary.test"
            ),
            row(
                Phase::Promoting,
                40,
                2,
                "Advance podinfo.test primary weight 60"
            ),
            row(
                Phase::Finalising,
                0,
                0,
                "Advance podinfo.test primary weight 100"
            ),
        ]
    );
}
