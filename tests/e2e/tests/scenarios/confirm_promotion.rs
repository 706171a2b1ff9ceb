//! A confirm-promotion gate: the analysis reaches the maximum weight and waits, without
//! promoting, while the gate (a webhook server in this test) refuses; it promotes once the gate
//! approves.

use std::time::Duration;

use flagger_core::api::Phase;
use flagger_e2e::Result;
use flagger_e2e::fixtures::{self, IMAGE_V1, IMAGE_V2};
use flagger_e2e::gate::Gate;
use flagger_e2e::operator::OperatorOpts;
use flagger_e2e::scenario::Scenario;
use flagger_e2e::watch;
use serde_json::json;

use crate::common::*;

#[tokio::test]
#[ignore = "needs the processes of tests/e2e/run.sh"]
async fn confirm_promotion_gate() -> Result<()> {
    let gate = Gate::start().await?;
    let s = Scenario::new("confirm_promotion_gate").await?;
    let ns = s.ns.clone();
    s.apply(&fixtures::deployment(&ns, "podinfo", IMAGE_V1))
        .await?;
    let mut op = s.operator(&OperatorOpts::new("flagger-0", "istio")).await?;
    let mut canary = fixtures::weighted_canary(&ns, "podinfo", "istio");
    canary["spec"]["analysis"]["webhooks"] = json!([
        {"name": "gate", "type": "confirm-promotion", "url": gate.url, "timeout": "5s"}
    ]);
    s.apply(&canary).await?;
    initialized(&s, "podinfo").await?;
    let status = watch::canary_status(s.client.clone(), &ns, "podinfo")?;

    s.set_image("podinfo", IMAGE_V2).await?;
    s.wait_phase("podinfo", Phase::WaitingPromotion, ROLLOUT_TIMEOUT)
        .await?;
    // Held: several analysis intervals later nothing has been promoted.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let held = s.canary("podinfo").await?.status.expect("status");
    assert_eq!(held.phase, Some(Phase::WaitingPromotion));
    assert_eq!(held.canary_weight, 60);
    assert_eq!(s.image("podinfo-primary").await?.as_deref(), Some(IMAGE_V1));
    let calls_while_closed = gate.calls().len();
    assert!(
        calls_while_closed >= 2,
        "the gate is asked on every tick: {calls_while_closed} calls"
    );
    let notes = s.event_notes("podinfo").await?;
    assert_event(
        &notes,
        &format!("Halt podinfo.{ns} advancement waiting for promotion approval gate"),
    );

    gate.open();
    s.wait_phase("podinfo", Phase::Succeeded, ROLLOUT_TIMEOUT)
        .await?;
    assert_eq!(s.image("podinfo-primary").await?.as_deref(), Some(IMAGE_V2));
    assert_eq!(
        watch::phases(&status.values()),
        [
            "Initialized",
            "Progressing",
            "WaitingPromotion",
            "Promoting",
            "Finalising",
            "Succeeded"
        ]
    );
    let payload = gate.calls().into_iter().next().expect("a gate call");
    assert_eq!(payload["name"], "podinfo");
    assert_eq!(payload["namespace"], ns);
    assert!(
        payload["checksum"].as_str().is_some_and(|c| !c.is_empty()),
        "{payload}"
    );
    assert!(
        ["Progressing", "WaitingPromotion"]
            .contains(&payload["phase"].as_str().unwrap_or_default()),
        "{payload}"
    );
    stop_and_check_fidelity(&s, vec![&mut op]).await?;
    s.finish().await;
    Ok(())
}
