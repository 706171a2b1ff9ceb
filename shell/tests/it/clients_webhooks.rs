//! Webhook calls as a receiver sees them (Flagger's load tester reads exactly this body), and
//! how statuses, retries and timeouts turn into answers.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::clients_support::{Reply, TestServer, refused_url};
use flagger::webhook::{self, call_with_backoff, event_payload, http_client_builder, post_event};
use flagger_core::HookAnswer;
use flagger_core::command::{HookCall, HookPayload};
use jiff::{SignedDuration, Timestamp};
use serde_json::json;

const FAST_RETRY: Duration = Duration::from_millis(10);

fn hook(url: &str, retries: i32) -> HookCall {
    HookCall {
        name: "load-test".into(),
        hook_type: "rollout".into(),
        url: url.to_string(),
        timeout: SignedDuration::from_secs(5),
        retries,
        disable_tls: false,
        payload: HookPayload {
            name: "podinfo".into(),
            namespace: "test".into(),
            phase: "Progressing".into(),
            checksum: "5f4c8d9b7".into(),
            metadata: BTreeMap::from([
                ("type".to_string(), "cmd".to_string()),
                (
                    "cmd".to_string(),
                    "hey -z 1m -q 10 -c 2 http://podinfo-canary.test:9898/".to_string(),
                ),
            ]),
        },
    }
}

fn client() -> reqwest::Client {
    http_client_builder().build().unwrap()
}

#[tokio::test]
async fn posts_flaggers_payload_as_json() {
    let server = TestServer::fixed(200, "").await;
    let answer = webhook::call(&client(), &hook(&format!("{}/", server.url), 0)).await;
    assert_eq!(answer, HookAnswer::Passed);
    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert_eq!(r.method, "POST");
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/json")
    );
    assert_eq!(
        r.json(),
        json!({
            "name": "podinfo",
            "namespace": "test",
            "phase": "Progressing",
            "checksum": "5f4c8d9b7",
            "metadata": {
                "type": "cmd",
                "cmd": "hey -z 1m -q 10 -c 2 http://podinfo-canary.test:9898/"
            }
        })
    );
}

#[tokio::test]
async fn every_2xx_passes() {
    for status in [200, 202, 204] {
        let server = TestServer::fixed(status, "").await;
        let answer = webhook::call(&client(), &hook(&server.url, 0)).await;
        assert_eq!(answer, HookAnswer::Passed, "status {status}");
    }
}

#[tokio::test]
async fn client_errors_fail_with_the_body_and_are_not_retried() {
    let server = TestServer::fixed(403, "  gate closed\n").await;
    let answer = call_with_backoff(&client(), &hook(&server.url, 3), FAST_RETRY).await;
    assert_eq!(answer, HookAnswer::Failed("gate closed".into()));
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn an_empty_error_body_is_replaced_by_the_status() {
    let server = TestServer::fixed(404, "").await;
    let answer = webhook::call(&client(), &hook(&server.url, 0)).await;
    assert_eq!(answer, HookAnswer::Failed("404 Not Found".into()));
}

#[tokio::test]
async fn server_errors_are_retried_then_fail() {
    let server = TestServer::fixed(500, "load tester busy").await;
    let answer = call_with_backoff(&client(), &hook(&server.url, 2), FAST_RETRY).await;
    assert_eq!(answer, HookAnswer::Failed("load tester busy".into()));
    assert_eq!(server.requests().len(), 3);
}

#[tokio::test]
async fn a_retry_can_succeed() {
    let server = TestServer::start(|_, i| {
        if i == 0 {
            Reply::new(503, "starting")
        } else {
            Reply::new(200, "ok")
        }
    })
    .await;
    let answer = call_with_backoff(&client(), &hook(&server.url, 1), FAST_RETRY).await;
    assert_eq!(answer, HookAnswer::Passed);
    assert_eq!(server.requests().len(), 2);
}

#[tokio::test]
async fn retries_wait_between_attempts() {
    let server = TestServer::fixed(502, "").await;
    let started = std::time::Instant::now();
    let answer =
        call_with_backoff(&client(), &hook(&server.url, 2), Duration::from_millis(100)).await;
    assert_eq!(answer, HookAnswer::Failed("502 Bad Gateway".into()));
    // 100 ms, then 200 ms.
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn slow_hooks_time_out_per_attempt() {
    let server =
        TestServer::start(|_, _| Reply::new(200, "").delayed(Duration::from_secs(3))).await;
    let mut h = hook(&server.url, 1);
    h.timeout = SignedDuration::from_millis(200);
    let started = std::time::Instant::now();
    let answer = call_with_backoff(&client(), &h, FAST_RETRY).await;
    assert!(started.elapsed() < Duration::from_secs(2));
    match answer {
        HookAnswer::Failed(e) => assert!(e.contains("timed out after 0.2s"), "{e}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(server.requests().len(), 2);
}

#[tokio::test]
async fn unreachable_hooks_fail() {
    let url = refused_url().await;
    let answer = call_with_backoff(&client(), &hook(&url, 1), FAST_RETRY).await;
    assert!(
        matches!(answer, HookAnswer::Failed(ref e) if !e.is_empty()),
        "{answer:?}"
    );
    let answer = webhook::call(&client(), &hook("not a url", 2)).await;
    assert!(matches!(answer, HookAnswer::Failed(_)), "{answer:?}");
}

#[tokio::test]
async fn disable_tls_still_calls_plain_http() {
    let server = TestServer::fixed(200, "").await;
    let mut h = hook(&server.url, 0);
    h.disable_tls = true;
    assert_eq!(webhook::call(&client(), &h).await, HookAnswer::Passed);
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn event_webhook_receives_the_event_in_metadata() {
    let server = TestServer::fixed(202, "").await;
    let base = hook(&server.url, 0).payload;
    let now = Timestamp::from_millisecond(1_700_000_123_456).unwrap();
    let payload = event_payload(
        &base,
        "Advance podinfo.test canary weight 10",
        "Normal",
        now,
    );
    post_event(&client(), &server.url, &payload).await.unwrap();
    let body = server.requests()[0].json();
    assert_eq!(body["name"], "podinfo");
    assert_eq!(body["phase"], "Progressing");
    assert_eq!(
        body["metadata"]["eventMessage"],
        "Advance podinfo.test canary weight 10"
    );
    assert_eq!(body["metadata"]["eventType"], "Normal");
    assert_eq!(body["metadata"]["timestamp"], "1700000123456");
    assert_eq!(body["metadata"]["type"], "cmd");

    let failing = TestServer::fixed(500, "down").await;
    assert_eq!(
        post_event(&client(), &failing.url, &payload).await,
        Err("down".to_string())
    );
    assert_eq!(failing.requests().len(), 1, "-event-webhook is not retried");
}
