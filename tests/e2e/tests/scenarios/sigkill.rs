//! The operator is killed with SIGKILL in the middle of a rollout and started again: the new
//! process picks the rollout up from the cluster and finishes it, with every traffic step taken
//! exactly once; the second kill lands right after a step's route write.

use std::time::Duration;

use flagger_core::api::Phase;
use flagger_core::command::Command;
use flagger_e2e::Result;
use flagger_e2e::fidelity;
use flagger_e2e::fixtures::{self, IMAGE_V1, IMAGE_V2};
use flagger_e2e::operator::OperatorOpts;
use flagger_e2e::scenario::Scenario;
use flagger_e2e::watch;

use crate::common::*;

#[tokio::test]
#[ignore = "needs the processes of tests/e2e/run.sh"]
async fn sigkill_mid_rollout() -> Result<()> {
    let s = Scenario::new("sigkill_mid_rollout").await?;
    let ns = s.ns.clone();
    s.apply(&fixtures::deployment(&ns, "podinfo", IMAGE_V1))
        .await?;
    let mut op = s.operator(&OperatorOpts::new("flagger-0", "istio")).await?;
    let mut canary = fixtures::weighted_canary(&ns, "podinfo", "istio");
    canary["spec"]["analysis"]["stepWeight"] = 10.into();
    canary["spec"]["analysis"]["maxWeight"] = 50.into();
    s.apply(&canary).await?;
    initialized(&s, "podinfo").await?;
    let weights = watch::virtual_service_weights(s.client.clone(), &ns, "podinfo")?;

    s.set_image("podinfo", IMAGE_V2).await?;
    canary_weight_reached(&s, "podinfo", 20).await?;
    // First kill: inside an interval, and down for longer than one: the step that was due is
    // not lost, only late.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    op.sigkill().await?;
    let at_kill = s.canary("podinfo").await?.status.expect("status");
    assert_eq!(at_kill.phase, Some(Phase::Progressing));
    tokio::time::sleep(Duration::from_secs(4)).await;
    op.restart().await?;

    // Second kill: the moment the route of a step is written, often before the status write
    // that records it; the restarted process must neither repeat nor skip that step.
    let deadline = tokio::time::Instant::now() + ROLLOUT_TIMEOUT;
    while !weights.values().contains(&(60, 40)) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no 40% step: {:?}",
            weights.values()
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    op.sigkill().await?;
    op.restart().await?;
    s.wait_phase("podinfo", Phase::Succeeded, ROLLOUT_TIMEOUT)
        .await?;
    s.wait_for("routes back on the primary", ROLLOUT_TIMEOUT, || async {
        Ok((weights.values().last() == Some(&(100, 0))).then_some(()))
    })
    .await?;

    assert_eq!(
        weights.values(),
        [
            (100, 0),
            (90, 10),
            (80, 20),
            (70, 30),
            (60, 40),
            (50, 50),
            (100, 0)
        ],
        "every step exactly once, across the restart"
    );
    assert_eq!(s.image("podinfo-primary").await?.as_deref(), Some(IMAGE_V2));
    let events = s.events("podinfo").await?;
    for w in [10, 20, 30, 40, 50] {
        let note = format!("Advance podinfo.{ns} canary weight {w}");
        let matching: Vec<_> = events.iter().filter(|e| e.note == note).collect();
        // The second kill lands right after the 40% route write, possibly before that step's
        // event is posted; the restarted process records the step without announcing it again
        // (an event is a notification, not state). Every other step is announced exactly once.
        let announced = if w == 40 { 0..=1 } else { 1..=1 };
        assert!(announced.contains(&matching.len()), "{note}: {matching:?}");
        assert!(
            matching.iter().all(|e| e.count == 1),
            "{note} emitted more than once: {matching:?}"
        );
    }
    let not_found =
        format!("deployment podinfo.{ns} get query error: deployments.apps \"podinfo\" not found");
    assert!(
        !events.iter().any(|e| e.note == not_found),
        "the restarted operator reconciled before its caches were filled: {events:#?}"
    );
    op.terminate(Duration::from_secs(10)).await?;

    // The three processes appended to the same recording; together they routed each step once.
    let recording = fidelity::read_recording(&op.traces.join(format!("{ns}.podinfo.jsonl")))?;
    let routed: Vec<i32> = recording
        .iter()
        .flat_map(|r| r.decision.commands[..r.executed.min(r.decision.commands.len())].to_vec())
        .filter_map(|c| match c {
            Command::SetRoutes { canary_weight, .. } => Some(canary_weight),
            _ => None,
        })
        .collect();
    // The recording must hold every command that took effect, including those of a reconcile cut
    // short by the kill, or the replay cannot reproduce the run.
    assert_eq!(
        routed,
        [0, 10, 20, 30, 40, 50, 0],
        "SetRoutes in the recording of the three processes (the cluster saw {:?})",
        weights.values()
    );
    stop_and_check_fidelity(&s, vec![&mut op]).await?;
    s.finish().await;
    Ok(())
}
