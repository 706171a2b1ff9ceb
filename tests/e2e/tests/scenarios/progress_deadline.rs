//! A new revision whose pods never become ready is rolled back once the Canary's progress
//! deadline passes; no traffic ever moves to it.

use std::time::{Duration, Instant};

use flagger_core::api::Phase;
use flagger_e2e::Result;
use flagger_e2e::fixtures::{self, IMAGE_V1, IMAGE_V2, UNREADY_LABEL};
use flagger_e2e::operator::OperatorOpts;
use flagger_e2e::scenario::Scenario;
use flagger_e2e::watch;
use serde_json::json;

use crate::common::*;

#[tokio::test]
#[ignore = "needs the processes of tests/e2e/run.sh"]
async fn progress_deadline_rolls_back() -> Result<()> {
    let s = Scenario::new("progress_deadline_rolls_back").await?;
    let ns = s.ns.clone();
    s.apply(&fixtures::deployment(&ns, "podinfo", IMAGE_V1))
        .await?;
    let mut op = s.operator(&OperatorOpts::new("flagger-0", "istio")).await?;
    let mut canary = fixtures::weighted_canary(&ns, "podinfo", "istio");
    canary["spec"]["progressDeadlineSeconds"] = 12.into();
    s.apply(&canary).await?;
    initialized(&s, "podinfo").await?;
    let status = watch::canary_status(s.client.clone(), &ns, "podinfo")?;
    let weights = watch::virtual_service_weights(s.client.clone(), &ns, "podinfo")?;
    // Both watches have listed the objects before the new revision lands.
    status.settled(|v| !v.is_empty()).await;
    weights.settled(|v| !v.is_empty()).await;

    // The new revision's pods stay unready (as with a failing readiness probe).
    let started = Instant::now();
    s.patch_deployment(
        "podinfo",
        json!({"spec": {"template": {
            "metadata": {"labels": {UNREADY_LABEL: "true"}},
            "spec": {"containers": [{"name": "podinfod", "image": IMAGE_V2,
                "command": ["./podinfo", "--port=9898", "--port-metrics=9797", "--level=info"],
                "ports": [{"name": "http", "containerPort": 9898, "protocol": "TCP"},
                          {"name": "http-metrics", "containerPort": 9797, "protocol": "TCP"}],
                "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]}
        }}}),
    )
    .await?;
    s.wait_phase("podinfo", Phase::Failed, ROLLOUT_TIMEOUT)
        .await?;
    // The deadline counts from the Deployment's condition time, which Kubernetes stores in whole
    // seconds: up to a second before the patch.
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_secs(11),
        "rolled back after {elapsed:?}, before the 12s deadline"
    );

    let history = status
        .settled(|v| v.last().is_some_and(|d| d.phase == "Failed"))
        .await;
    assert_eq!(
        watch::phases(&history),
        ["Initialized", "Progressing", "Failed"]
    );
    assert_eq!(
        weights.values(),
        [(100, 0)],
        "no traffic ever reached the unready canary"
    );
    assert_eq!(s.image("podinfo-primary").await?.as_deref(), Some(IMAGE_V1));
    s.wait_for("canary scaled down", ROLLOUT_TIMEOUT, || async {
        Ok((s.replicas("podinfo").await? == Some(0)).then_some(()))
    })
    .await?;
    let notes = s.event_notes("podinfo").await?;
    let prefix = format!("Rolling back podinfo.{ns} progress deadline exceeded");
    assert!(notes.iter().any(|n| n.starts_with(&prefix)), "{notes:#?}");
    assert_event(&notes, &format!("Canary failed! Scaling down podinfo.{ns}"));
    stop_and_check_fidelity(&s, vec![&mut op]).await?;
    s.finish().await;
    Ok(())
}
