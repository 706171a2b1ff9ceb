//! Where events go besides Kubernetes, and what a Canary deleted without `revertOnDeletion`
//! gives back to its target.

use crate::controller_support::*;
use flagger::controller::deletion::replicas_to_restore;
use flagger::controller::dispatch::event_deliveries;
use flagger::controller::outbox::Delivery;
use flagger_core::api::{AutoscalerReference, CanaryWebhook};
use flagger_core::command::EventSeverity;
use flagger_core::{CanaryStatus, Phase};
use jiff::Timestamp;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use serde_json::json;

fn at() -> Timestamp {
    "2026-03-01T12:00:00Z".parse().unwrap()
}

#[test]
fn events_go_to_the_canarys_event_hooks_with_flaggers_payload() {
    let mut c = canary();
    c.status = Some(CanaryStatus {
        phase: Some(Phase::Progressing),
        ..Default::default()
    });
    c.spec.analysis.as_mut().unwrap().webhooks = Some(vec![
        CanaryWebhook {
            name: "audit".into(),
            type_: Some("event".into()),
            url: "http://127.0.0.1:1/audit".into(),
            metadata: Some([("team".to_string(), "web".to_string())].into()),
            ..Default::default()
        },
        CanaryWebhook {
            name: "load".into(),
            type_: Some("rollout".into()),
            url: "http://127.0.0.1:1/load".into(),
            ..Default::default()
        },
    ]);
    let mut s = settings();
    s.event_webhook = Some("http://127.0.0.1:1/global".into());
    let out = event_deliveries(
        &c,
        &s,
        EventSeverity::Warning,
        "Halt podinfo.test advancement",
        at(),
    );
    assert_eq!(
        out.len(),
        1,
        "only event hooks, and the global one is not used then"
    );
    let Delivery::EventHook(call) = &out[0] else {
        panic!("expected the canary's event hook");
    };
    assert_eq!(call.url, "http://127.0.0.1:1/audit");
    assert_eq!(call.hook_type, "event");
    assert_eq!(call.payload.name, "podinfo");
    assert_eq!(call.payload.phase, "Progressing");
    assert_eq!(
        call.payload.metadata["eventMessage"],
        "Halt podinfo.test advancement"
    );
    assert_eq!(call.payload.metadata["eventType"], "Warning");
    assert_eq!(
        call.payload.metadata["timestamp"],
        at().as_millisecond().to_string()
    );
    assert_eq!(call.payload.metadata["team"], "web");
}

#[test]
fn without_event_hooks_events_go_to_the_operators_event_webhook() {
    let c = canary();
    let mut s = settings();
    assert!(event_deliveries(&c, &s, EventSeverity::Normal, "x", at()).is_empty());
    s.event_webhook = Some("http://127.0.0.1:1/global".into());
    let out = event_deliveries(
        &c,
        &s,
        EventSeverity::Normal,
        "Initialization done! podinfo.test",
        at(),
    );
    match out.as_slice() {
        [Delivery::EventWebhook { url, payload }] => {
            assert_eq!(url, "http://127.0.0.1:1/global");
            assert_eq!(payload.metadata["eventType"], "Normal");
            assert_eq!(
                payload.metadata["eventMessage"],
                "Initialization done! podinfo.test"
            );
        }
        _ => panic!("expected one delivery to -event-webhook"),
    }
}

/// Flagger sends the events that announce where a run starts or ends with that phase set, and
/// every other event with the phase the Canary had when the reconcile began (here Progressing).
#[test]
fn event_webhooks_carry_the_phase_an_ending_announces() {
    let mut c = canary();
    c.status = Some(CanaryStatus {
        phase: Some(Phase::Progressing),
        ..Default::default()
    });
    let mut s = settings();
    s.event_webhook = Some("http://127.0.0.1:1/global".into());
    let phase_of =
        |message: &str| match event_deliveries(&c, &s, EventSeverity::Normal, message, at())
            .as_slice()
        {
            [Delivery::EventWebhook { payload, .. }] => payload.phase.clone(),
            _ => panic!("expected one delivery to -event-webhook"),
        };
    assert_eq!(
        phase_of("Canary failed! Scaling down podinfo.test"),
        "Failed"
    );
    assert_eq!(
        phase_of("Promotion completed! Scaling down podinfo.test"),
        "Succeeded"
    );
    assert_eq!(
        phase_of("Promotion completed! Canary analysis was skipped for podinfo.test"),
        "Succeeded"
    );
    assert_eq!(phase_of("Initialization done! podinfo.test"), "Initialized");
    assert_eq!(
        phase_of("New revision detected! Scaling up podinfo.test"),
        "Progressing"
    );
    assert_eq!(
        phase_of("New revision detected! Restarting analysis for podinfo-primary.test"),
        "Progressing"
    );
    assert_eq!(
        phase_of("Rolling back podinfo.test failed checks threshold reached 2"),
        "Progressing"
    );
}

#[test]
fn a_deleted_canarys_target_gets_the_primarys_replicas_back() {
    let c = canary();
    let mut caches = Caches::new();
    caches.deployment(&deployment("podinfo", 0, "podinfo:2"));
    caches.deployment(&deployment("podinfo-primary", 3, "podinfo:2"));
    assert_eq!(replicas_to_restore(&caches.stores, &c), Some(3));

    caches.deployment(&deployment("podinfo", 2, "podinfo:2"));
    assert_eq!(
        replicas_to_restore(&caches.stores, &c),
        None,
        "a running target is left alone"
    );
}

#[test]
fn without_a_primary_the_autoscaler_minimum_or_one_is_restored() {
    let mut c = canary();
    let mut caches = Caches::new();
    caches.deployment(&deployment("podinfo", 0, "podinfo:2"));
    assert_eq!(replicas_to_restore(&caches.stores, &c), Some(1));

    let hpa: HorizontalPodAutoscaler = serde_json::from_value(json!({
        "metadata": {"name": "podinfo", "namespace": "test"},
        "spec": {"minReplicas": 2, "maxReplicas": 4,
                 "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"}}
    }))
    .unwrap();
    caches.stores.autoscalers.put(hpa);
    c.spec.autoscaler_ref = Some(AutoscalerReference {
        name: "podinfo".into(),
        ..Default::default()
    });
    assert_eq!(replicas_to_restore(&caches.stores, &c), Some(2));

    let mut gone = Caches::new();
    gone.deployment(&deployment("other", 0, "x"));
    assert_eq!(
        replicas_to_restore(&gone.stores, &c),
        None,
        "no target, nothing to restore"
    );
}
