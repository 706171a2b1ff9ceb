//! Two replicas with `-enable-leader-election`: only the lease holder reconciles (records
//! traces, writes, emits events); when it shuts down, the standby takes over the next rollout.

use std::time::Duration;

use flagger_core::api::Phase;
use flagger_e2e::Result;
use flagger_e2e::fixtures::{self, IMAGE_V1, IMAGE_V2, IMAGE_V3};
use flagger_e2e::operator::OperatorOpts;
use flagger_e2e::scenario::Scenario;

use crate::common::*;

fn recorded_lines(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| e.path().extension().is_some_and(|x| x == "jsonl"))
                .map(|e| {
                    std::fs::read_to_string(e.path())
                        .unwrap_or_default()
                        .lines()
                        .count()
                })
                .sum()
        })
        .unwrap_or(0)
}

#[tokio::test]
#[ignore = "needs the processes of tests/e2e/run.sh"]
async fn leader_election_one_replica_acts() -> Result<()> {
    let s = Scenario::new("leader_election_one_replica_acts").await?;
    let ns = s.ns.clone();
    s.apply(&fixtures::deployment(&ns, "podinfo", IMAGE_V1))
        .await?;
    let replica = |name: &str| {
        let mut o = OperatorOpts::new(name, "istio");
        o.leader_election = true;
        o
    };
    let mut a = s.operator(&replica("flagger-a")).await?;
    // Let the first replica take the lease before the second one starts competing.
    s.wait_for("a lease holder", Duration::from_secs(30), || async {
        let lease = s
            .get("coordination.k8s.io/v1", "Lease", "flagger-leader-election")
            .await?;
        Ok(lease.and_then(|l| l["spec"]["holderIdentity"].as_str().map(str::to_string)))
    })
    .await?;
    let mut b = s.operator(&replica("flagger-b")).await?;
    s.apply(&fixtures::weighted_canary(&ns, "podinfo", "istio"))
        .await?;
    initialized(&s, "podinfo").await?;
    s.set_image("podinfo", IMAGE_V2).await?;
    s.wait_phase("podinfo", Phase::Succeeded, ROLLOUT_TIMEOUT)
        .await?;

    let events = s.events("podinfo").await?;
    assert!(!events.is_empty());
    assert!(
        events.iter().all(|e| e.reporting_instance == "flagger-a"),
        "only the leader reports: {events:#?}"
    );
    assert!(recorded_lines(&a.traces) > 0, "the leader reconciled");
    assert_eq!(
        recorded_lines(&b.traces),
        0,
        "the standby reconciled nothing"
    );

    // Graceful shutdown of the leader: the standby takes the lease and drives the next rollout.
    a.terminate(Duration::from_secs(10)).await?;
    s.set_image("podinfo", IMAGE_V3).await?;
    s.wait_for(
        "the standby to promote the next revision",
        Duration::from_secs(150),
        || async {
            Ok((s.image("podinfo-primary").await?.as_deref() == Some(IMAGE_V3)).then_some(()))
        },
    )
    .await?;
    s.wait_phase("podinfo", Phase::Succeeded, ROLLOUT_TIMEOUT)
        .await?;
    let later = s.events("podinfo").await?;
    assert!(
        later.iter().any(|e| e.reporting_instance == "flagger-b"),
        "the new leader reports: {later:#?}"
    );
    assert!(recorded_lines(&b.traces) > 0);
    // Taking over must not start from an empty cache: the target exists all along.
    let not_found =
        format!("deployment podinfo.{ns} get query error: deployments.apps \"podinfo\" not found");
    assert!(
        !later.iter().any(|e| e.note == not_found),
        "the new leader reconciled before its caches were filled: {later:#?}"
    );
    stop_and_check_fidelity(&s, vec![&mut a, &mut b]).await?;
    s.finish().await;
    Ok(())
}
