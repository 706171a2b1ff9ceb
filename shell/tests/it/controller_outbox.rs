//! Alerts and event webhooks leave through one queue: in the order they were emitted, and a
//! receiver that does not answer delays only the queue, never the caller.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::routing::post;
use flagger::controller::outbox::{Delivery, Outbox};
use flagger_core::command::HookPayload;

type Seen = Arc<Mutex<Vec<serde_json::Value>>>;

async fn receiver(delay: Duration) -> (SocketAddr, Seen) {
    let seen: Seen = Arc::default();
    let app = Router::new()
        .route(
            "/events",
            post(
                move |State(seen): State<Seen>, body: axum::body::Bytes| async move {
                    tokio::time::sleep(delay).await;
                    seen.lock()
                        .unwrap()
                        .push(serde_json::from_slice(&body).unwrap());
                    "ok"
                },
            ),
        )
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, seen)
}

fn event(addr: SocketAddr, message: &str) -> Delivery {
    let mut payload = HookPayload {
        name: "podinfo".into(),
        namespace: "test".into(),
        phase: "Progressing".into(),
        checksum: "c".into(),
        metadata: Default::default(),
    };
    payload
        .metadata
        .insert("eventMessage".into(), message.into());
    Delivery::EventWebhook {
        url: format!("http://{addr}/events"),
        payload,
    }
}

#[tokio::test]
async fn events_reach_the_webhook_in_order_without_blocking_the_sender() {
    let (addr, seen) = receiver(Duration::from_millis(100)).await;
    let http = flagger::webhook::http_client_builder().build().unwrap();
    let (outbox, task) = Outbox::start(http);
    let messages = [
        "Advance podinfo.test canary weight 10",
        "Advance podinfo.test canary weight 20",
        "Advance podinfo.test canary weight 30",
    ];
    let started = std::time::Instant::now();
    for m in messages {
        outbox.send(event(addr, m));
    }
    assert!(
        started.elapsed() < Duration::from_millis(100),
        "sending does not wait for the receiver"
    );
    drop(outbox);
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the queue drains and ends once its senders are gone")
        .unwrap();
    let got: Vec<String> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|b| b["metadata"]["eventMessage"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(got, messages);
}
