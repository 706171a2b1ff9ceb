//! What every scenario does the same way: wait for initialization, assert on events, check the
//! recorded traces against the simulator.

use std::time::Duration;

use flagger_core::api::Phase;
use flagger_e2e::Result;
use flagger_e2e::fidelity;
use flagger_e2e::operator::Operator;
use flagger_e2e::scenario::Scenario;

pub const INIT_TIMEOUT: Duration = Duration::from_secs(60);
pub const ROLLOUT_TIMEOUT: Duration = Duration::from_secs(120);

/// Fails with the full event list when `wanted` is not among the notes.
pub fn assert_event(notes: &[String], wanted: &str) {
    assert!(
        notes.iter().any(|n| n == wanted),
        "no event {wanted:?}; events were:\n  {}",
        notes.join("\n  ")
    );
}

/// The events in `wanted` must all exist, in that order.
pub fn assert_events_in_order(notes: &[String], wanted: &[&str]) {
    let mut from = 0;
    for w in wanted {
        match notes[from..].iter().position(|n| n == w) {
            Some(i) => from += i + 1,
            None => panic!(
                "event {w:?} missing or out of order (expected order {wanted:#?}); events were:\n  {}",
                notes.join("\n  ")
            ),
        }
    }
}

/// Waits for `Initialized`: primary created and ready, target scaled to zero.
pub async fn initialized(s: &Scenario, name: &str) -> Result<()> {
    s.wait_phase(name, Phase::Initialized, INIT_TIMEOUT).await?;
    let primary = format!("{name}-primary");
    s.wait_for(
        "target scaled to zero and primary serving",
        INIT_TIMEOUT,
        || async {
            let target = s.replicas(name).await?;
            let primary = s.replicas(&primary).await?;
            Ok((target == Some(0) && primary == Some(2)).then_some(()))
        },
    )
    .await
}

/// Waits until the Canary's status shows at least `weight` percent on the canary.
pub async fn canary_weight_reached(s: &Scenario, name: &str, weight: i32) -> Result<()> {
    s.wait_for(
        &format!("canary weight {weight}"),
        ROLLOUT_TIMEOUT,
        || async {
            let c = s.canary(name).await?;
            Ok(c.status
                .is_some_and(|st| st.canary_weight >= weight)
                .then_some(()))
        },
    )
    .await
}

/// Stops the operators, then replays each one's recordings as a user would (`flagger replay
/// FILE`) and compares them with what ran live; the reports are written next to the recordings.
pub async fn stop_and_check_fidelity(s: &Scenario, ops: Vec<&mut Operator>) -> Result<()> {
    let mut dirs = Vec::new();
    for op in ops {
        op.terminate(Duration::from_secs(10)).await?;
        dirs.push(op.traces.clone());
    }
    for d in dirs {
        fidelity::check_dir(&d, &s.env.flagger_bin).await?;
    }
    Ok(())
}

/// Requests that write (or read one object): everything but the watches and their lists, from
/// the operator's `flagger_kube_requests_total`.
pub async fn writes_and_gets(op: &Operator) -> Result<f64> {
    let metrics = op.metrics().await?;
    let mut total = 0.0;
    for line in metrics.lines() {
        let Some(rest) = line.strip_prefix("flagger_kube_requests_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        if labels.contains(r#"verb="watch""#) || labels.contains(r#"verb="list""#) {
            continue;
        }
        total += value.trim().parse::<f64>()?;
    }
    Ok(total)
}
