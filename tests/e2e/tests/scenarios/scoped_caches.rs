//! The operator's caches hold what its Canaries reference, not the cluster: with hundreds of
//! unrelated Deployments, ConfigMaps and Secrets in the namespace (listed at start-up, and more
//! created while it runs), `flagger_cache_objects{kind}` counts only the target and primary,
//! the three Services, and the ConfigMap and Secret the target uses; the Canary still rolls
//! out a new revision made of a ConfigMap change (config tracking), the primary's copy takes
//! the new data, and an idle Canary costs no GET.

use std::time::Duration;

use flagger_core::api::Phase;
use flagger_e2e::Result;
use flagger_e2e::fixtures::{self, IMAGE_V1};
use flagger_e2e::operator::{Operator, OperatorOpts, sample};
use flagger_e2e::scenario::Scenario;
use flagger_e2e::unrelated::{create_unrelated_objects, create_unrelated_range};
use serde_json::json;

use crate::common::*;

/// Unrelated objects of each kind present before the operator starts, and added after.
const BEFORE: usize = 300;
const AFTER: usize = 100;

fn config_map(ns: &str, message: &str) -> serde_json::Value {
    json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": { "name": "podinfo-config", "namespace": ns },
        "data": { "PODINFO_UI_MESSAGE": message }
    })
}

/// The cached objects per kind, as the operator reports them.
async fn cached(op: &Operator) -> Result<Vec<(&'static str, Option<f64>)>> {
    let metrics = op.metrics().await?;
    Ok([
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "ConfigMap",
        "Secret",
    ]
    .into_iter()
    .map(|kind| {
        (
            kind,
            sample(&metrics, "flagger_cache_objects", &[("kind", kind)]),
        )
    })
    .collect())
}

/// What the Canary references: target and primary, apex, -primary and -canary Services, no
/// autoscaler, the ConfigMap and the Secret its pods use.
const REFERENCED: [(&str, Option<f64>); 5] = [
    ("Deployment", Some(2.0)),
    ("Service", Some(3.0)),
    ("HorizontalPodAutoscaler", Some(0.0)),
    ("ConfigMap", Some(1.0)),
    ("Secret", Some(1.0)),
];

#[tokio::test]
#[ignore = "needs the processes of tests/e2e/run.sh"]
async fn scoped_caches() -> Result<()> {
    let s = Scenario::new("scoped_caches").await?;
    let ns = s.ns.clone();
    create_unrelated_objects(&s.client, &ns, BEFORE).await?;
    s.apply(&config_map(&ns, "v1")).await?;
    s.apply(&json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": { "name": "podinfo-secret", "namespace": ns },
        "type": "Opaque",
        "stringData": { "PODINFO_TOKEN": "t1" }
    }))
    .await?;
    let mut target = fixtures::deployment(&ns, "podinfo", IMAGE_V1);
    target["spec"]["template"]["spec"]["containers"][0]["envFrom"] = json!([
        { "configMapRef": { "name": "podinfo-config" } },
        { "secretRef": { "name": "podinfo-secret" } }
    ]);
    s.apply(&target).await?;
    let mut op = s.operator(&OperatorOpts::new("flagger-0", "istio")).await?;
    s.apply(&fixtures::weighted_canary(&ns, "podinfo", "istio"))
        .await?;
    initialized(&s, "podinfo").await?;
    assert_eq!(cached(&op).await?, REFERENCED, "after the initial lists");

    // More unrelated objects while running: the watches see them and drop them.
    create_unrelated_range(&s.client, &ns, BEFORE..BEFORE + AFTER).await?;
    let primary_copy = s
        .get("v1", "ConfigMap", "podinfo-config-primary")
        .await?
        .expect("the primary's ConfigMap copy");
    assert_eq!(primary_copy["data"]["PODINFO_UI_MESSAGE"], "v1");

    // A ConfigMap change is a new revision: analysed, promoted, copied to the primary's copy.
    s.apply(&config_map(&ns, "v2")).await?;
    s.wait_phase("podinfo", Phase::Progressing, Duration::from_secs(30))
        .await?;
    let done = s
        .wait_phase("podinfo", Phase::Succeeded, ROLLOUT_TIMEOUT)
        .await?;
    let tracked = done
        .status
        .and_then(|st| st.tracked_configs)
        .unwrap_or_default();
    assert_eq!(
        tracked.keys().map(String::as_str).collect::<Vec<_>>(),
        ["configmap/podinfo-config", "secret/podinfo-secret"]
    );
    let primary_copy = s
        .get("v1", "ConfigMap", "podinfo-config-primary")
        .await?
        .expect("the primary's ConfigMap copy");
    assert_eq!(primary_copy["data"]["PODINFO_UI_MESSAGE"], "v2");
    let notes = s.event_notes("podinfo").await?;
    let id = format!("podinfo.{ns}");
    assert_events_in_order(
        &notes,
        &[
            &format!("Initialization done! {id}"),
            &format!("New revision detected! Scaling up {id}"),
            &format!("Promotion completed! Scaling down {id}"),
        ],
    );
    assert_eq!(cached(&op).await?, REFERENCED, "after the rollout");

    // Idle: the watches carry everything; no GET, no write over several control loops.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let before = writes_and_gets(&op).await?;
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(
        writes_and_gets(&op).await? - before,
        0.0,
        "requests while idle; metrics:\n{}",
        op.metrics().await?
    );

    stop_and_check_fidelity(&s, vec![&mut op]).await?;
    s.finish().await;
    Ok(())
}
