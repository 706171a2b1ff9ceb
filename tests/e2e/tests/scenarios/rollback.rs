//! A canary that answers badly is rolled back after `threshold` failed checks: traffic returns
//! to the primary, which keeps the old revision, and the canary scales to zero.

use flagger_core::api::Phase;
use flagger_e2e::Result;
use flagger_e2e::fixtures::{self, IMAGE_V1, IMAGE_V2};
use flagger_e2e::operator::{OperatorOpts, sample};
use flagger_e2e::scenario::Scenario;
use flagger_e2e::watch;

use crate::common::*;

/// Runs a rollout whose canary answers with `error_rate` and `latency_ms`; returns the events.
async fn failing_rollout(
    name: &str,
    error_rate: f64,
    latency_ms: f64,
) -> Result<(Scenario, Vec<String>)> {
    let s = Scenario::new(name).await?;
    let ns = s.ns.clone();
    s.apply(&fixtures::deployment(&ns, "podinfo", IMAGE_V1))
        .await?;
    let mut op = s.operator(&OperatorOpts::new("flagger-0", "istio")).await?;
    let status = watch::canary_status(s.client.clone(), &ns, "podinfo")?;
    let mut canary = fixtures::weighted_canary(&ns, "podinfo", "istio");
    canary["spec"]["analysis"]["threshold"] = 2.into();
    s.apply(&canary).await?;
    initialized(&s, "podinfo").await?;
    let weights = watch::virtual_service_weights(s.client.clone(), &ns, "podinfo")?;

    s.behave("podinfo", error_rate, latency_ms).await?;
    s.set_image("podinfo", IMAGE_V2).await?;
    let failed = s
        .wait_phase("podinfo", Phase::Failed, ROLLOUT_TIMEOUT)
        .await?;

    // The phase was read with a GET; the watch may deliver the same change a moment later.
    s.wait_for(
        "the status watch to see Failed",
        ROLLOUT_TIMEOUT,
        || async {
            Ok(watch::phases(&status.values())
                .last()
                .is_some_and(|p| p == "Failed")
                .then_some(()))
        },
    )
    .await?;
    let history = status.values();
    assert_eq!(
        watch::phases(&history),
        ["Initializing", "Initialized", "Progressing", "Failed"]
    );
    let checks: Vec<i64> = history.iter().map(|d| d.failed_checks).collect();
    assert!(
        checks.contains(&1) && checks.contains(&2),
        "failed checks went {checks:?}"
    );
    assert!(history.iter().all(|d| d.canary_weight <= 20), "{history:?}");
    s.wait_for("routes back on the primary", ROLLOUT_TIMEOUT, || async {
        Ok((weights.values().last() == Some(&(100, 0))).then_some(()))
    })
    .await?;
    assert_eq!(
        weights.values(),
        [(100, 0), (80, 20), (100, 0)],
        "routed weights"
    );
    assert_eq!(
        s.image("podinfo-primary").await?.as_deref(),
        Some(IMAGE_V1),
        "primary keeps the old revision"
    );
    assert_eq!(s.replicas("podinfo").await?, Some(0), "canary scaled down");
    let st = failed.status.expect("status");
    assert_eq!(st.canary_weight, 0);
    assert_ne!(st.last_promoted_spec, st.last_applied_spec);

    let notes = s.event_notes("podinfo").await?;
    let id = format!("podinfo.{ns}");
    assert_events_in_order(
        &notes,
        &[
            &format!("Advance {id} canary weight 20"),
            &format!("Rolling back {id} failed checks threshold reached 2"),
            &format!("Canary failed! Scaling down {id}"),
        ],
    );
    assert!(
        !notes.iter().any(|n| n.contains("Promotion completed")),
        "{notes:#?}"
    );
    let metrics = op.metrics().await?;
    let canary_labels = [("name", "podinfo"), ("namespace", ns.as_str())];
    assert_eq!(
        sample(&metrics, "flagger_canary_status", &canary_labels),
        Some(2.0),
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, "flagger_canary_failures_total", &canary_labels),
        Some(1.0),
        "{metrics}"
    );
    stop_and_check_fidelity(&s, vec![&mut op]).await?;
    Ok((s, notes))
}

#[tokio::test]
#[ignore = "needs the processes of tests/e2e/run.sh"]
async fn rollback_on_errors() -> Result<()> {
    let (s, notes) = failing_rollout("rollback_on_errors", 0.5, 20.0).await?;
    assert_event(
        &notes,
        &format!(
            "Halt podinfo.{} advancement success rate 50.00% < 99%",
            s.ns
        ),
    );
    s.finish().await;
    Ok(())
}

#[tokio::test]
#[ignore = "needs the processes of tests/e2e/run.sh"]
async fn rollback_on_latency() -> Result<()> {
    let (s, notes) = failing_rollout("rollback_on_latency", 0.0, 800.0).await?;
    // Every request takes 800 ms: the P99 interpolates within the (500, 1000] bucket.
    let prefix = format!("Halt podinfo.{} advancement request duration ", s.ns);
    let halt = notes
        .iter()
        .find_map(|n| n.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no latency halt event: {notes:#?}"));
    let value = halt
        .strip_suffix(" > 500ms")
        .and_then(|v| v.strip_suffix("ms"))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("unexpected halt wording {halt:?}"));
    assert!((500.0..=1000.0).contains(&value), "P99 {value} ms");
    assert!(
        !notes.iter().any(|n| n.contains("success rate")),
        "{notes:#?}"
    );
    s.finish().await;
    Ok(())
}
