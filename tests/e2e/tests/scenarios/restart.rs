//! A new revision during the analysis restarts it: routes go back to the primary, the status
//! resets, and the newest revision is the one analysed and promoted.

use flagger_core::api::Phase;
use flagger_e2e::Result;
use flagger_e2e::fixtures::{self, IMAGE_V1, IMAGE_V2, IMAGE_V3};
use flagger_e2e::operator::OperatorOpts;
use flagger_e2e::scenario::Scenario;
use flagger_e2e::watch;

use crate::common::*;

#[tokio::test]
#[ignore = "needs the processes of tests/e2e/run.sh"]
async fn new_revision_restarts_analysis() -> Result<()> {
    let s = Scenario::new("new_revision_restarts_analysis").await?;
    let ns = s.ns.clone();
    s.apply(&fixtures::deployment(&ns, "podinfo", IMAGE_V1))
        .await?;
    let mut op = s.operator(&OperatorOpts::new("flagger-0", "istio")).await?;
    s.apply(&fixtures::weighted_canary(&ns, "podinfo", "istio"))
        .await?;
    initialized(&s, "podinfo").await?;
    let status = watch::canary_status(s.client.clone(), &ns, "podinfo")?;
    let weights = watch::virtual_service_weights(s.client.clone(), &ns, "podinfo")?;

    s.set_image("podinfo", IMAGE_V2).await?;
    canary_weight_reached(&s, "podinfo", 40).await?;
    s.set_image("podinfo", IMAGE_V3).await?;
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
            (80, 20),
            (60, 40),
            (100, 0),
            (80, 20),
            (60, 40),
            (40, 60),
            (100, 0)
        ],
        "the analysis starts over from the primary"
    );
    let history = status.values();
    assert_eq!(
        watch::phases(&history),
        [
            "Initialized",
            "Progressing",
            "Promoting",
            "Finalising",
            "Succeeded"
        ]
    );
    assert_eq!(s.image("podinfo-primary").await?.as_deref(), Some(IMAGE_V3));
    assert_eq!(s.replicas("podinfo").await?, Some(0));
    let notes = s.event_notes("podinfo").await?;
    let id = format!("podinfo.{ns}");
    assert_events_in_order(
        &notes,
        &[
            &format!("New revision detected! Scaling up {id}"),
            &format!("Advance {id} canary weight 40"),
            &format!("New revision detected! Restarting analysis for {id}"),
            &format!("Advance {id} canary weight 60"),
            &format!("Promotion completed! Scaling down {id}"),
        ],
    );
    stop_and_check_fidelity(&s, vec![&mut op]).await?;
    s.finish().await;
    Ok(())
}
