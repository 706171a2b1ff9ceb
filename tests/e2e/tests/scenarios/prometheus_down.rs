//! Prometheus goes away in the middle of the analysis: every check fails, the canary stays at
//! its weight and counts failed checks until the threshold rolls it back. It never promotes on
//! missing data.

use flagger_core::api::Phase;
use flagger_e2e::Result;
use flagger_e2e::fixtures::{self, IMAGE_V1, IMAGE_V2};
use flagger_e2e::operator::OperatorOpts;
use flagger_e2e::prometheus::Prometheus;
use flagger_e2e::scenario::Scenario;
use flagger_e2e::watch;

use crate::common::*;

#[tokio::test]
#[ignore = "needs the processes of tests/e2e/run.sh"]
async fn prometheus_down_mid_analysis() -> Result<()> {
    let s = Scenario::new("prometheus_down_mid_analysis").await?;
    let ns = s.ns.clone();
    let mut prometheus = Prometheus::start(&s.env, &s.dir).await?;
    s.apply(&fixtures::deployment(&ns, "podinfo", IMAGE_V1))
        .await?;
    let mut opts = OperatorOpts::new("flagger-0", "istio");
    opts.metrics_server = Some(prometheus.url.clone());
    let mut op = s.operator(&opts).await?;
    let mut canary = fixtures::weighted_canary(&ns, "podinfo", "istio");
    canary["spec"]["analysis"]["stepWeight"] = 10.into();
    canary["spec"]["analysis"]["maxWeight"] = 50.into();
    s.apply(&canary).await?;
    initialized(&s, "podinfo").await?;
    let status = watch::canary_status(s.client.clone(), &ns, "podinfo")?;

    s.set_image("podinfo", IMAGE_V2).await?;
    canary_weight_reached(&s, "podinfo", 20).await?;
    prometheus.stop().await?;
    let weight_at_stop = s
        .canary("podinfo")
        .await?
        .status
        .expect("status")
        .canary_weight;
    s.wait_phase("podinfo", Phase::Failed, ROLLOUT_TIMEOUT)
        .await?;

    let history = status.values();
    let phases = watch::phases(&history);
    assert_eq!(
        phases,
        ["Initialized", "Progressing", "Failed"],
        "never promoting: {history:?}"
    );
    let max_weight = history.iter().map(|d| d.canary_weight).max().unwrap_or(0);
    assert!(
        max_weight <= i64::from(weight_at_stop) + 10,
        "at most the step already under way after Prometheus stopped: {history:?}"
    );
    let checks: Vec<i64> = history.iter().map(|d| d.failed_checks).collect();
    for n in 1..=3 {
        assert!(
            checks.contains(&n),
            "failed checks counted one by one: {checks:?}"
        );
    }
    assert_eq!(s.image("podinfo-primary").await?.as_deref(), Some(IMAGE_V1));
    let notes = s.event_notes("podinfo").await?;
    assert!(
        notes
            .iter()
            .any(|n| n.starts_with("Prometheus query failed")
                || n.starts_with("Halt advancement no values found")),
        "a failed query is reported: {notes:#?}"
    );
    assert_event(
        &notes,
        &format!("Rolling back podinfo.{ns} failed checks threshold reached 3"),
    );
    assert!(
        !notes.iter().any(|n| n.contains("Promotion completed")),
        "{notes:#?}"
    );
    stop_and_check_fidelity(&s, vec![&mut op]).await?;
    s.finish().await;
    Ok(())
}
