//! A/B testing: only requests with the `x-canary: insider` header reach the canary for the
//! analysis iterations; then the new revision is promoted to everyone.

use flagger_core::api::Phase;
use flagger_e2e::Result;
use flagger_e2e::fixtures::{self, IMAGE_V1, IMAGE_V2};
use flagger_e2e::operator::OperatorOpts;
use flagger_e2e::scenario::Scenario;
use flagger_e2e::watch;
use serde_json::Value;

use crate::common::*;

fn destinations(route: &Value) -> Vec<(String, i64)> {
    route["route"]
        .as_array()
        .map(|ds| {
            ds.iter()
                .map(|d| {
                    (
                        d["destination"]["host"]
                            .as_str()
                            .unwrap_or_default()
                            .to_string(),
                        d["weight"].as_i64().unwrap_or(100),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
#[ignore = "needs the processes of tests/e2e/run.sh"]
async fn istio_ab_testing() -> Result<()> {
    let s = Scenario::new("istio_ab_testing").await?;
    let ns = s.ns.clone();
    s.apply(&fixtures::deployment(&ns, "podinfo", IMAGE_V1))
        .await?;
    let mut op = s.operator(&OperatorOpts::new("flagger-0", "istio")).await?;
    let status = watch::canary_status(s.client.clone(), &ns, "podinfo")?;
    let mut canary = fixtures::ab_canary(&ns, "podinfo", "istio", 3);
    // The canary's first series appear only once the matched route sends it traffic, one
    // interval before the first check; `rate()` needs two 1 s scrapes of them by then, which
    // 3 s left too tight on a loaded machine (an occasional "no values found").
    canary["spec"]["analysis"]["interval"] = "5s".into();
    s.apply(&canary).await?;
    initialized(&s, "podinfo").await?;

    s.set_image("podinfo", IMAGE_V2).await?;
    let vs = s
        .wait_for(
            "the header route to the canary",
            ROLLOUT_TIMEOUT,
            || async {
                let vs = s
                    .get("networking.istio.io/v1", "VirtualService", "podinfo")
                    .await?;
                Ok(vs.filter(|v| {
                    v["spec"]["http"].as_array().is_some_and(|h| {
                        h.len() == 2
                            && destinations(&h[0])
                                .iter()
                                .any(|(d, w)| d.starts_with("podinfo-canary") && *w == 100)
                    })
                }))
            },
        )
        .await?;
    let http = vs["spec"]["http"].as_array().expect("http routes");
    assert_eq!(
        http[0]["match"][0]["headers"]["x-canary"]["exact"], "insider",
        "the canary route matches the test users only: {}",
        http[0]
    );
    assert!(
        destinations(&http[1])
            .iter()
            .all(|(d, w)| !d.starts_with("podinfo-canary") || *w == 0),
        "everyone else stays on the primary: {}",
        http[1]
    );
    s.wait_phase("podinfo", Phase::Succeeded, ROLLOUT_TIMEOUT)
        .await?;

    assert_eq!(
        watch::phases(&status.values()),
        [
            "Initializing",
            "Initialized",
            "Progressing",
            "Promoting",
            "Finalising",
            "Succeeded"
        ]
    );
    assert_eq!(s.image("podinfo-primary").await?.as_deref(), Some(IMAGE_V2));
    assert_eq!(s.replicas("podinfo").await?, Some(0));
    let vs = s
        .wait_for("all routes on the primary", ROLLOUT_TIMEOUT, || async {
            let vs = s
                .get("networking.istio.io/v1", "VirtualService", "podinfo")
                .await?;
            Ok(vs.filter(|v| {
                v["spec"]["http"].as_array().is_some_and(|h| {
                    h.iter().all(|r| {
                        destinations(r)
                            .iter()
                            .all(|(d, w)| !d.starts_with("podinfo-canary") || *w == 0)
                    })
                })
            }))
        })
        .await?;
    assert!(vs["spec"]["http"].as_array().is_some_and(|h| !h.is_empty()));

    let notes = s.event_notes("podinfo").await?;
    let id = format!("podinfo.{ns}");
    assert_events_in_order(
        &notes,
        &[
            &format!("Starting canary analysis for {id}"),
            &format!("Advance {id} canary iteration 1/3"),
            &format!("Advance {id} canary iteration 3/3"),
            &format!("Copying {id} template spec to podinfo-primary.{ns}"),
            &format!("Promotion completed! Scaling down {id}"),
        ],
    );
    assert!(!notes.iter().any(|n| n.starts_with("Halt")), "{notes:#?}");
    stop_and_check_fidelity(&s, vec![&mut op]).await?;
    s.finish().await;
    Ok(())
}
