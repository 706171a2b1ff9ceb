//! Blue/green with the `kubernetes` provider: no routing object, the canary is tested through
//! its own Service for a number of iterations (the app's own metrics, read by the built-in
//! queries), then the apex Service switches to the promoted primary all at once.

use flagger_core::api::Phase;
use flagger_e2e::Result;
use flagger_e2e::fixtures::{self, IMAGE_V1, IMAGE_V2};
use flagger_e2e::operator::OperatorOpts;
use flagger_e2e::scenario::Scenario;
use flagger_e2e::watch;

use crate::common::*;

#[tokio::test]
#[ignore = "needs the processes of tests/e2e/run.sh"]
async fn kubernetes_blue_green() -> Result<()> {
    let s = Scenario::new("kubernetes_blue_green").await?;
    let ns = s.ns.clone();
    s.apply(&fixtures::deployment(&ns, "podinfo", IMAGE_V1))
        .await?;
    let mut op = s
        .operator(&OperatorOpts::new("flagger-0", "kubernetes"))
        .await?;
    let status = watch::canary_status(s.client.clone(), &ns, "podinfo")?;
    s.apply(&fixtures::blue_green_canary(
        &ns,
        "podinfo",
        "kubernetes",
        3,
    ))
    .await?;
    initialized(&s, "podinfo").await?;

    let selector = |svc: Option<serde_json::Value>| {
        svc.map(|v| {
            v["spec"]["selector"]["app"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
    };
    assert_eq!(
        selector(s.get("v1", "Service", "podinfo").await?).as_deref(),
        Some("podinfo-primary")
    );
    assert_eq!(
        selector(s.get("v1", "Service", "podinfo-canary").await?).as_deref(),
        Some("podinfo")
    );
    assert_eq!(
        selector(s.get("v1", "Service", "podinfo-primary").await?).as_deref(),
        Some("podinfo-primary")
    );
    assert!(
        s.get("networking.istio.io/v1", "VirtualService", "podinfo")
            .await?
            .is_none()
    );

    s.set_image("podinfo", IMAGE_V2).await?;
    s.wait_for(
        "canary scaled up for its test traffic",
        ROLLOUT_TIMEOUT,
        || async { Ok((s.replicas("podinfo").await? == Some(2)).then_some(())) },
    )
    .await?;
    s.wait_phase("podinfo", Phase::Succeeded, ROLLOUT_TIMEOUT)
        .await?;

    let history = status.values();
    assert_eq!(
        watch::phases(&history),
        [
            "Initializing",
            "Initialized",
            "Progressing",
            "Promoting",
            "Finalising",
            "Succeeded"
        ]
    );
    let mut iterations: Vec<i64> = history
        .iter()
        .map(|d| d.iterations)
        .filter(|i| *i > 0)
        .collect();
    iterations.dedup();
    assert!(
        iterations.windows(2).all(|w| w[0] < w[1]),
        "one iteration per tick: {iterations:?}"
    );
    assert!(iterations.contains(&3), "{iterations:?}");
    assert_eq!(s.image("podinfo-primary").await?.as_deref(), Some(IMAGE_V2));
    assert_eq!(s.replicas("podinfo").await?, Some(0));
    assert_eq!(
        selector(s.get("v1", "Service", "podinfo").await?).as_deref(),
        Some("podinfo-primary")
    );

    let notes = s.event_notes("podinfo").await?;
    let id = format!("podinfo.{ns}");
    assert_events_in_order(
        &notes,
        &[
            &format!("Starting canary analysis for {id}"),
            &format!("Advance {id} canary iteration 1/3"),
            &format!("Advance {id} canary iteration 2/3"),
            &format!("Advance {id} canary iteration 3/3"),
            &format!("Copying {id} template spec to podinfo-primary.{ns}"),
            &format!("Promotion completed! Scaling down {id}"),
        ],
    );
    // The canary's own http_request_duration_seconds series carried the analysis.
    assert!(!notes.iter().any(|n| n.starts_with("Halt")), "{notes:#?}");
    stop_and_check_fidelity(&s, vec![&mut op]).await?;
    s.finish().await;
    Ok(())
}
