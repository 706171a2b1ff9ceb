//! Canaries the API server must refuse: the CRD's schema and rules catch them at admission
//! with a message naming the field, and nothing is stored.

use flagger_e2e::Result;
use flagger_e2e::fixtures;
use flagger_e2e::scenario::Scenario;
use serde_json::json;

async fn rejection(s: &Scenario, canary: serde_json::Value) -> Result<String> {
    match s.create(&canary).await {
        Ok(()) => Err(format!("the API server accepted an invalid Canary: {canary}").into()),
        Err(kube::Error::Api(e)) => {
            assert_eq!(e.code, 422, "{e:?}");
            assert_eq!(e.reason, "Invalid", "{e:?}");
            let name = canary["metadata"]["name"].as_str().unwrap_or_default();
            assert!(
                s.get("flagger.app/v1beta1", "Canary", name)
                    .await?
                    .is_none(),
                "a rejected Canary must not be stored"
            );
            Ok(e.message)
        }
        Err(other) => Err(format!("unexpected error: {other}").into()),
    }
}

#[tokio::test]
#[ignore = "needs the processes of tests/e2e/run.sh"]
async fn invalid_canaries_are_rejected() -> Result<()> {
    let s = Scenario::new("invalid_canaries_are_rejected").await?;
    let ns = s.ns.clone();

    let mut c = fixtures::weighted_canary(&ns, "bad-step", "istio");
    c["spec"]["analysis"]["stepWeight"] = json!("abc");
    let m = rejection(&s, c).await?;
    assert!(m.contains("spec.analysis.stepWeight"), "{m}");
    assert!(m.contains("integer"), "{m}");

    let mut c = fixtures::weighted_canary(&ns, "no-port", "istio");
    c["spec"]["service"] = json!({"targetPort": 9898});
    let m = rejection(&s, c).await?;
    assert!(m.contains("spec.service.port"), "{m}");
    assert!(m.contains("Required value"), "{m}");

    let mut c = fixtures::weighted_canary(&ns, "no-target", "istio");
    c["spec"].as_object_mut().expect("spec").remove("targetRef");
    let m = rejection(&s, c).await?;
    assert!(m.contains("spec.targetRef"), "{m}");

    let mut c = fixtures::weighted_canary(&ns, "too-heavy", "istio");
    c["spec"]["analysis"]["maxWeight"] = json!(150);
    let m = rejection(&s, c).await?;
    assert!(m.contains("maxWeight"), "{m}");

    // The same object with valid values is accepted: the rejections were about those fields.
    s.create(&fixtures::weighted_canary(&ns, "good", "istio"))
        .await?;
    assert!(
        s.get("flagger.app/v1beta1", "Canary", "good")
            .await?
            .is_some()
    );
    s.finish().await;
    Ok(())
}
