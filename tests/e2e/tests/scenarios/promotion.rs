//! A healthy new revision is promoted: traffic moves 20, 40, 60 % to the canary, the primary
//! takes the new template, all traffic returns to the primary and the canary scales to zero.
//! Istio (VirtualService), Gateway API (HTTPRoute) and NGINX (the canary Ingress's
//! `canary-weight` annotation, with the controller's `nginx_ingress_controller_*` series).

use flagger_core::api::Phase;
use flagger_e2e::Result;
use flagger_e2e::fixtures::{self, IMAGE_V1, IMAGE_V2};
use flagger_e2e::operator::{OperatorOpts, sample};
use flagger_e2e::scenario::Scenario;
use flagger_e2e::watch::{self, History, Weights};
use serde_json::json;

use crate::common::*;

async fn weighted_promotion(
    name: &str,
    provider: &str,
    routes: fn(kube::Client, &str, &str) -> Result<History<Weights>>,
) -> Result<()> {
    let s = Scenario::new(name).await?;
    let ns = s.ns.clone();
    s.apply(&fixtures::deployment(&ns, "podinfo", IMAGE_V1))
        .await?;
    let mut op = s
        .operator(&OperatorOpts::new("flagger-0", provider))
        .await?;
    let status = watch::canary_status(s.client.clone(), &ns, "podinfo")?;
    let mut canary = fixtures::weighted_canary(&ns, "podinfo", provider);
    if provider.starts_with("gatewayapi") {
        canary["spec"]["service"]["gatewayRefs"] =
            json!([{"name": "public-gateway", "namespace": "gateway-system"}]);
        canary["spec"]["service"]["hosts"] = json!(["podinfo.example.com"]);
    }
    if provider == "nginx" {
        s.apply(&fixtures::ingress(&ns, "podinfo")).await?;
    }
    s.apply(&canary).await?;
    initialized(&s, "podinfo").await?;
    let weights = routes(s.client.clone(), &ns, "podinfo")?;
    assert_eq!(s.image("podinfo-primary").await?.as_deref(), Some(IMAGE_V1));

    s.set_image("podinfo", IMAGE_V2).await?;
    let done = s
        .wait_phase("podinfo", Phase::Succeeded, ROLLOUT_TIMEOUT)
        .await?;

    status
        .settled(|v| v.last().is_some_and(|d| d.phase == "Succeeded"))
        .await;
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
    let canary_weights: Vec<i64> = status.values().iter().map(|d| d.canary_weight).collect();
    assert!(
        canary_weights.windows(2).all(|w| w[0] <= w[1] || w[1] == 0),
        "{canary_weights:?}"
    );
    s.wait_for("routes back on the primary", ROLLOUT_TIMEOUT, || async {
        Ok((weights.values().last() == Some(&(100, 0))).then_some(()))
    })
    .await?;
    assert_eq!(
        weights.values(),
        [(100, 0), (80, 20), (60, 40), (40, 60), (100, 0)],
        "routed weights"
    );
    assert_eq!(s.image("podinfo-primary").await?.as_deref(), Some(IMAGE_V2));
    assert_eq!(s.replicas("podinfo").await?, Some(0), "canary scaled down");
    assert_eq!(s.replicas("podinfo-primary").await?, Some(2));
    let st = done.status.expect("status");
    assert_eq!(st.canary_weight, 0);
    assert_eq!(st.failed_checks, 0);
    assert_eq!(st.last_promoted_spec, st.last_applied_spec);
    let promoted = st
        .conditions
        .iter()
        .find(|c| c.type_ == "Promoted")
        .expect("Promoted condition");
    assert_eq!(format!("{:?}", promoted.status), "True");
    assert_eq!(promoted.reason, "Succeeded");

    let notes = s.event_notes("podinfo").await?;
    let id = format!("podinfo.{ns}");
    assert_events_in_order(
        &notes,
        &[
            &format!("Initialization done! {id}"),
            &format!("New revision detected! Scaling up {id}"),
            &format!("Starting canary analysis for {id}"),
            &format!("Advance {id} canary weight 20"),
            &format!("Advance {id} canary weight 40"),
            &format!("Advance {id} canary weight 60"),
            &format!("Copying {id} template spec to podinfo-primary.{ns}"),
            "Routing all traffic to primary",
            &format!("Promotion completed! Scaling down {id}"),
        ],
    );
    assert!(
        !notes.iter().any(|n| n.starts_with("Halt")),
        "healthy traffic must never halt the analysis: {notes:#?}"
    );
    let events = s.events("podinfo").await?;
    // As Flagger's client-go recorder writes them: event exporters filter on source.component.
    assert!(
        events.iter().all(|e| e.reason == "Synced"
            && e.source_component == "flagger"
            && e.reporting_controller == "flagger"),
        "{events:#?}"
    );

    if provider == "nginx" {
        // The checks read the controller's series of the canary Ingress from the real
        // Prometheus: the canary's share was scraped under `canary!=""`, none of it a 5xx.
        let canary_requests = format!(
            r#"sum(nginx_ingress_controller_requests{{namespace="{ns}",ingress="podinfo",canary="{ns}-podinfo-canary-9898"}})"#
        );
        let seen = s.prometheus_value(&canary_requests).await?;
        assert!(seen.is_some_and(|n| n > 0.0), "{canary_requests}: {seen:?}");
        let errors = format!(
            r#"sum(nginx_ingress_controller_requests{{namespace="{ns}",ingress="podinfo",canary!="",status=~"5.."}})"#
        );
        assert_eq!(s.prometheus_value(&errors).await?, Some(0.0), "{errors}");
    }

    let metrics = op.metrics().await?;
    let canary_labels = [("name", "podinfo"), ("namespace", ns.as_str())];
    assert_eq!(
        sample(&metrics, "flagger_canary_status", &canary_labels),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, "flagger_canary_successes_total", &canary_labels),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            "flagger_canary_weight",
            &[("workload", "podinfo-primary"), ("namespace", ns.as_str())]
        ),
        Some(100.0),
        "{metrics}"
    );
    stop_and_check_fidelity(&s, vec![&mut op]).await?;
    s.finish().await;
    Ok(())
}

#[tokio::test]
#[ignore = "needs the processes of tests/e2e/run.sh"]
async fn istio_promotion() -> Result<()> {
    weighted_promotion("istio_promotion", "istio", watch::virtual_service_weights).await
}

#[tokio::test]
#[ignore = "needs the processes of tests/e2e/run.sh"]
async fn gatewayapi_promotion() -> Result<()> {
    weighted_promotion(
        "gatewayapi_promotion",
        "gatewayapi:v1",
        watch::http_route_weights,
    )
    .await
}

#[tokio::test]
#[ignore = "needs the processes of tests/e2e/run.sh"]
async fn nginx_promotion() -> Result<()> {
    weighted_promotion("nginx_promotion", "nginx", watch::canary_ingress_weights).await
}
