//! A Canary whose Deployment does not exist is blocked (a warning event and a `Blocked`
//! condition) without holding up another Canary in the same namespace; once the Deployment
//! appears, it initializes.

use flagger_core::api::{ConditionStatus, Phase};
use flagger_e2e::Result;
use flagger_e2e::fixtures::{self, IMAGE_V1, IMAGE_V2};
use flagger_e2e::operator::OperatorOpts;
use flagger_e2e::scenario::{EventInfo, Scenario};

use crate::common::*;

#[tokio::test]
#[ignore = "needs the processes of tests/e2e/run.sh"]
async fn missing_target_is_blocked_others_progress() -> Result<()> {
    let s = Scenario::new("missing_target_is_blocked_others_progress").await?;
    let ns = s.ns.clone();
    s.apply(&fixtures::deployment(&ns, "podinfo", IMAGE_V1))
        .await?;
    let mut op = s.operator(&OperatorOpts::new("flagger-0", "istio")).await?;
    s.apply(&fixtures::weighted_canary(&ns, "ghost", "istio"))
        .await?;
    s.apply(&fixtures::weighted_canary(&ns, "podinfo", "istio"))
        .await?;

    let not_found =
        format!("deployment ghost.{ns} get query error: deployments.apps \"ghost\" not found");
    let blocked = s
        .wait_for("the ghost canary to be blocked", INIT_TIMEOUT, || async {
            let c = s.canary("ghost").await?;
            Ok(c.status
                .and_then(|st| st.conditions.into_iter().find(|c| c.type_ == "Blocked")))
        })
        .await?;
    assert_eq!(blocked.status, ConditionStatus::True);
    assert_eq!(blocked.reason, "TargetNotFound");
    assert_eq!(blocked.message, not_found);
    let events: Vec<EventInfo> = s.events("ghost").await?;
    assert!(
        events
            .iter()
            .any(|e| e.type_ == "Warning" && e.note == not_found),
        "{events:#?}"
    );

    // The other canary is not held up.
    initialized(&s, "podinfo").await?;
    s.set_image("podinfo", IMAGE_V2).await?;
    s.wait_phase("podinfo", Phase::Succeeded, ROLLOUT_TIMEOUT)
        .await?;
    assert_eq!(s.image("podinfo-primary").await?.as_deref(), Some(IMAGE_V2));
    // The warning is not repeated on every reconcile.
    let events = s.events("ghost").await?;
    let warnings: Vec<_> = events.iter().filter(|e| e.note == not_found).collect();
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert_eq!(warnings[0].count, 1, "{warnings:#?}");
    assert!(s.deployment("ghost-primary").await?.is_none());

    // The Deployment appears: the canary initializes and the condition goes away.
    s.apply(&fixtures::deployment(&ns, "ghost", IMAGE_V1))
        .await?;
    initialized(&s, "ghost").await?;
    let ghost = s.canary("ghost").await?.status.expect("status");
    assert!(
        !ghost.conditions.iter().any(|c| c.type_ == "Blocked"),
        "{:?}",
        ghost.conditions
    );
    stop_and_check_fidelity(&s, vec![&mut op]).await?;
    s.finish().await;
    Ok(())
}
