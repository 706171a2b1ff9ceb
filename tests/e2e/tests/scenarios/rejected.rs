//! Canaries the API server must refuse: the CRD's schema and rules catch them at admission
//! with a message naming the field, and nothing is stored. And Flagger YAML this operator cannot
//! run yet, which the API server must accept: the operator blocks it with the real cause.

use flagger_core::api::ConditionStatus;
use flagger_e2e::Result;
use flagger_e2e::fixtures::{self, IMAGE_V1};
use flagger_e2e::operator::OperatorOpts;
use flagger_e2e::scenario::Scenario;
use serde_json::json;

use crate::common::*;

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

    let mut c = fixtures::weighted_canary(&ns, "bad-port", "istio");
    c["spec"]["service"]["port"] = json!(70000);
    let m = rejection(&s, c).await?;
    assert!(m.contains("spec.service.port"), "{m}");

    let mut c = fixtures::weighted_canary(&ns, "typo-provider", "istio");
    c["spec"]["provider"] = json!("istoi");
    let m = rejection(&s, c).await?;
    assert!(m.contains("spec.provider"), "{m}");

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

/// Flagger's Knative and KEDA examples and a Canary left to a `-mesh-provider` not built yet: the
/// API server stores them (a `kubectl apply` of Flagger YAML works), the operator starts with
/// Flagger's provider name, and each Canary gets a `Blocked` condition of reason NotSupported and
/// one warning event naming the cause, while a supported Canary next to them initializes.
#[tokio::test]
#[ignore = "needs the processes of tests/e2e/run.sh"]
async fn flagger_canaries_not_supported_yet_are_blocked() -> Result<()> {
    let s = Scenario::new("flagger_canaries_not_supported_yet_are_blocked").await?;
    let ns = s.ns.clone();
    s.apply(&fixtures::deployment(&ns, "podinfo", IMAGE_V1))
        .await?;
    let mut op = s
        .operator(&OperatorOpts::new("flagger-0", "linkerd"))
        .await?;
    let analysis = json!({"interval": "10s", "threshold": 5, "maxWeight": 50, "stepWeight": 10});
    let knative = json!({
        "apiVersion": "flagger.app/v1beta1", "kind": "Canary",
        "metadata": {"name": "hello", "namespace": ns},
        "spec": {
            "provider": "knative",
            "targetRef": {"apiVersion": "serving.knative.dev/v1", "kind": "Service", "name": "hello"},
            "analysis": analysis
        }
    });
    let keda = json!({
        "apiVersion": "flagger.app/v1beta1", "kind": "Canary",
        "metadata": {"name": "consumer", "namespace": ns},
        "spec": {
            "provider": "istio",
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "consumer"},
            "autoscalerRef": {"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "name": "podinfo-so",
                              "primaryScalerQueries": {"lag": "sum(lag)"}},
            "service": {"port": 9898},
            "analysis": analysis
        }
    });
    let mut from_flag = fixtures::weighted_canary(&ns, "defaulted", "istio");
    from_flag["spec"]
        .as_object_mut()
        .expect("spec")
        .remove("provider");
    let supported = fixtures::weighted_canary(&ns, "podinfo", "istio");
    for canary in [&knative, &keda, &from_flag, &supported] {
        s.apply(canary).await?;
    }
    let supported_list = "(supported: istio, gatewayapi:v1, kubernetes, nginx)";
    let cases = [
        (
            "hello",
            format!(
                "Canary hello.{ns} cannot be run here: spec.provider: provider \"knative\" is not supported yet {supported_list}"
            ),
        ),
        (
            "consumer",
            format!(
                "Canary consumer.{ns} cannot be run here: spec.autoscalerRef.kind: KEDA ScaledObject autoscalers are not supported yet (only HorizontalPodAutoscaler)"
            ),
        ),
        (
            "defaulted",
            format!(
                "Canary defaulted.{ns} cannot be run here: spec.provider: provider \"linkerd\" (from -mesh-provider) is not supported yet {supported_list}"
            ),
        ),
    ];
    for (name, message) in &cases {
        let blocked = s
            .wait_for(&format!("{name} to be blocked"), INIT_TIMEOUT, || async {
                let c = s.canary(name).await?;
                Ok(c.status
                    .and_then(|st| st.conditions.into_iter().find(|c| c.type_ == "Blocked")))
            })
            .await?;
        assert_eq!(blocked.status, ConditionStatus::True);
        assert_eq!(blocked.reason, "NotSupported", "{name}");
        assert_eq!(&blocked.message, message);
    }
    // The supported Canary is not held up.
    initialized(&s, "podinfo").await?;
    for (name, message) in &cases {
        let notes = s.event_notes(name).await?;
        let warnings: Vec<_> = notes.iter().filter(|n| *n == message).collect();
        assert_eq!(warnings.len(), 1, "{name}: {notes:#?}");
        assert!(
            s.get("flagger.app/v1beta1", "Canary", name)
                .await?
                .is_some_and(|c| c["spec"].is_object()),
            "{name} is stored"
        );
    }
    assert!(s.deployment("hello-primary").await?.is_none());
    stop_and_check_fidelity(&s, vec![&mut op]).await?;
    s.finish().await;
    Ok(())
}
