//! ApplyPrimaryAutoscaler as API requests.

use crate::executor_support::*;
use flagger_core::Command;
use flagger_core::api::{AutoscalerReference, ScalerReplicas};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use serde_json::{Value, json};
use std::sync::Arc;

fn target_hpa() -> HorizontalPodAutoscaler {
    serde_json::from_value(json!({
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": { "name": "podinfo", "namespace": "test" },
        "spec": {
            "scaleTargetRef": { "apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo" },
            "minReplicas": 2,
            "maxReplicas": 4,
            "metrics": [{ "type": "Resource", "resource": {
                "name": "cpu", "target": { "type": "Utilization", "averageUtilization": 99 }
            }}],
            "behavior": { "scaleDown": { "stabilizationWindowSeconds": 60 } }
        }
    }))
    .unwrap()
}

fn autoscaled_canary(overrides: Option<ScalerReplicas>) -> flagger_core::Canary {
    let mut c = canary();
    c.spec.autoscaler_ref = Some(AutoscalerReference {
        api_version: Some("autoscaling/v2".into()),
        kind: Some("HorizontalPodAutoscaler".into()),
        name: "podinfo".into(),
        primary_scaler_replicas: overrides,
        ..AutoscalerReference::default()
    });
    c
}

async fn apply(canary: flagger_core::Canary, promote: bool, primary_exists: bool) -> Vec<Captured> {
    let mut ctx = context("istio");
    ctx.target_hpa = Some(Arc::new(target_hpa()));
    let echo = echo(canary.clone());
    let respond = move |req: &Captured| {
        if req.method == "GET" && primary_exists {
            let mut existing = serde_json::to_value(target_hpa()).unwrap();
            existing["metadata"]["name"] = json!("podinfo-primary");
            (200, existing)
        } else {
            echo(req)
        }
    };
    let (result, requests) = run(respond, |exec| async move {
        exec.execute(&canary, &ctx, &Command::ApplyPrimaryAutoscaler { promote })
            .await
    })
    .await;
    result.unwrap();
    requests
}

fn assert_primary_hpa(body: &Value, min: i64, max: i64) {
    assert_eq!(body["apiVersion"], "autoscaling/v2");
    assert_eq!(body["kind"], "HorizontalPodAutoscaler");
    assert_eq!(body["metadata"]["name"], "podinfo-primary");
    assert_owned_by_canary(body);
    let spec = &body["spec"];
    assert_eq!(
        spec["scaleTargetRef"],
        json!({ "apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo-primary" })
    );
    assert_eq!(
        (spec["minReplicas"].as_i64(), spec["maxReplicas"].as_i64()),
        (Some(min), Some(max))
    );
    assert_eq!(
        spec["metrics"][0]["resource"]["target"]["averageUtilization"],
        99
    );
    assert_eq!(
        spec["behavior"]["scaleDown"]["stabilizationWindowSeconds"],
        60
    );
}

#[tokio::test]
async fn creates_the_primary_autoscaler_when_missing() {
    let requests = apply(autoscaled_canary(None), false, false).await;
    assert_eq!(requests.len(), 2);
    requests[0].assert_get(&format!("{HPAS}/podinfo-primary"));
    requests[1].assert_apply(&format!("{HPAS}/podinfo-primary"));
    assert_primary_hpa(&requests[1].body, 2, 4);
}

#[tokio::test]
async fn leaves_an_existing_primary_autoscaler_alone_outside_promotion() {
    let requests = apply(autoscaled_canary(None), false, true).await;
    assert_eq!(requests.len(), 1);
    requests[0].assert_get(&format!("{HPAS}/podinfo-primary"));
}

#[tokio::test]
async fn promotion_copies_the_settings_with_primary_overrides() {
    let overrides = ScalerReplicas {
        min_replicas: Some(3),
        max_replicas: None,
    };
    let requests = apply(autoscaled_canary(Some(overrides)), true, true).await;
    assert_eq!(requests.len(), 1);
    requests[0].assert_apply(&format!("{HPAS}/podinfo-primary"));
    assert_primary_hpa(&requests[0].body, 3, 4);
}

#[tokio::test]
async fn a_missing_target_autoscaler_is_an_error() {
    let c = autoscaled_canary(None);
    let ctx = context("istio");
    let (result, requests) = run(echo(c.clone()), |exec| async move {
        exec.execute(&c, &ctx, &Command::ApplyPrimaryAutoscaler { promote: true })
            .await
    })
    .await;
    assert_eq!(
        result.unwrap_err().to_string(),
        "autoscaler podinfo not found"
    );
    assert!(requests.is_empty());
}
