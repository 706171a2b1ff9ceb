//! Kubernetes events as Flagger's client-go recorder writes them: core/v1, `source.component:
//! flagger` (what event exporters filter on); each distinct message its own event, an identical
//! message folded into the first event's `count`.

use crate::controller_support::*;
use flagger::events::EventPublisher;
use flagger_core::command::EventSeverity;
use kube::Resource;
use serde_json::json;

const EVENTS: &str = "/api/v1/namespaces/test/events";

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
        seen[0].body["message"],
        "Advance podinfo.test canary weight 10"
    );
    assert_eq!(
        seen[1].body["message"],
        "Advance podinfo.test canary weight 20"
    );
    assert_eq!(seen[2].body["count"], json!(2));
    assert!(seen[2].body["lastTimestamp"].is_string());
    assert_eq!(
        methods[2].1,
        format!(
            "{EVENTS}/{}",
            seen[0].body["metadata"]["name"].as_str().unwrap()
        ),
        "the repeat bumps the first event"
    );
    for s in &seen[..2] {
        assert_eq!(s.body["reason"], "Synced");
        assert_eq!(s.body["source"]["component"], "flagger");
        assert_eq!(s.body["reportingComponent"], "flagger");
        assert_eq!(s.body["reportingInstance"], "flagger-0");
        assert_eq!(s.body["involvedObject"]["name"], "podinfo");
        assert_eq!(s.body["involvedObject"]["kind"], "Canary");
        assert_eq!(s.body["count"], json!(1));
        assert_eq!(s.body["firstTimestamp"], s.body["lastTimestamp"]);
    }
}

/// An event that expired (the API server keeps them an hour) is written anew on its next repeat.
#[tokio::test]
async fn a_repeat_of_an_expired_event_creates_it_again() {
    let canary = canary();
    let (client, server) = mock_client(Box::new(|s| match s.method.as_str() {
        "PATCH" => (
            404,
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                   "reason": "NotFound", "code": 404, "message": "events not found"}),
        ),
        _ => (201, s.body.clone()),
    }));
    let events = EventPublisher::new(client, None);
    for _ in 0..2 {
        events
            .publish(
                &canary.object_ref(&()),
                EventSeverity::Normal,
                "Halt advancement",
            )
            .await
            .unwrap();
    }
    drop(events);
    let seen = server.await.unwrap();
    let methods: Vec<_> = seen.iter().map(|s| s.method.as_str()).collect();
    assert_eq!(methods, ["POST", "PATCH", "POST"]);
    assert_eq!(seen[2].body["count"], json!(1));
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
