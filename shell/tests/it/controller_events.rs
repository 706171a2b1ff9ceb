//! Kubernetes events: each distinct message stays its own event (the recorder would otherwise
//! fold "weight 20" into the "weight 10" event and keep only the first note); an identical
//! message within minutes becomes a series on the first event, as client-go aggregates them.

use crate::controller_support::*;
use flagger::events::EventPublisher;
use flagger_core::command::EventSeverity;
use kube::Resource;
use serde_json::json;

const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/test/events";

#[tokio::test]
async fn distinct_messages_are_distinct_events_and_repeats_become_a_series() {
    let canary = canary();
    let (client, server) = mock_client(Box::new(|s| {
        // The API server returns the event it stored.
        (if s.method == "POST" { 201 } else { 200 }, s.body.clone())
    }));
    let events = EventPublisher::new(client, Some("flagger-0".into()));
    let regarding = canary.object_ref(&());
    for message in [
        "Advance podinfo.test canary weight 10",
        "Advance podinfo.test canary weight 20",
        "Advance podinfo.test canary weight 10",
    ] {
        events
            .publish(&regarding, EventSeverity::Normal, message)
            .await
            .unwrap();
    }
    drop(events);
    let seen = server.await.unwrap();

    let methods: Vec<_> = seen
        .iter()
        .map(|s| (s.method.as_str(), s.path.as_str()))
        .collect();
    assert_eq!(methods[0], ("POST", EVENTS));
    assert_eq!(methods[1], ("POST", EVENTS), "a new message is a new event");
    assert_eq!(
        methods[2].0, "PATCH",
        "a repeated message updates its first event"
    );
    assert!(methods[2].1.starts_with(&format!("{EVENTS}/podinfo.")));

    assert_eq!(
        seen[0].body["note"],
        "Advance podinfo.test canary weight 10"
    );
    assert_eq!(
        seen[1].body["note"],
        "Advance podinfo.test canary weight 20"
    );
    assert_eq!(
        seen[2].body["note"],
        "Advance podinfo.test canary weight 10"
    );
    assert_eq!(seen[2].body["series"]["count"], json!(2));
    assert_eq!(
        seen[2].body["metadata"]["name"], seen[0].body["metadata"]["name"],
        "the series belongs to the first event"
    );
    for s in &seen {
        assert_eq!(s.body["reason"], "Synced");
        assert_eq!(s.body["reportingController"], "flagger");
        assert_eq!(s.body["reportingInstance"], "flagger-0");
        assert_eq!(s.body["regarding"]["name"], "podinfo");
    }
}

#[tokio::test]
async fn warnings_are_warning_events() {
    let canary = canary();
    let (client, server) = mock_client(Box::new(|s| (201, s.body.clone())));
    let events = EventPublisher::new(client, None);
    events
        .publish(
            &canary.object_ref(&()),
            EventSeverity::Warning,
            "Rolling back podinfo.test failed checks threshold reached 2",
        )
        .await
        .unwrap();
    drop(events);
    let seen = server.await.unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].body["type"], "Warning");
}
