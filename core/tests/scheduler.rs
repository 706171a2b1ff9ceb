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
