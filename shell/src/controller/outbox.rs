//! Alerts and event webhooks leave through one queue, delivered in order by one task: a slow or
//! dead chat service or event receiver must not hold up rollouts, and receivers still see the
//! events of a Canary in the order they happened.

use flagger_core::command::{Alert, HookCall, HookPayload};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::notifier::Notifier;
use crate::webhook;

/// Deliveries waiting beyond this are dropped (and logged) rather than growing without bound.
const CAPACITY: usize = 1024;

pub enum Delivery {
    /// A Canary's own `event` hook, with its timeout and retries.
    EventHook(HookCall),
    /// `-event-webhook`.
    EventWebhook { url: String, payload: HookPayload },
    Alert {
        notifier: Notifier,
        alert: Alert,
        canary: String,
        namespace: String,
    },
}

#[derive(Clone)]
pub struct Outbox {
    tx: mpsc::Sender<Delivery>,
}

impl Outbox {
    /// Starts the delivery task; it ends when every `Outbox` clone is dropped.
    pub fn start(http: reqwest::Client) -> (Outbox, JoinHandle<()>) {
        let (tx, mut rx) = mpsc::channel(CAPACITY);
        let task = tokio::spawn(async move {
            while let Some(d) = rx.recv().await {
                deliver(&http, d).await;
            }
        });
        (Outbox { tx }, task)
    }

    pub fn send(&self, d: Delivery) {
        if let Err(e) = self.tx.try_send(d) {
            tracing::warn!(error = %e, "outgoing notification dropped");
        }
    }
}

async fn deliver(http: &reqwest::Client, d: Delivery) {
    match d {
        Delivery::EventHook(call) => {
            if let flagger_core::HookAnswer::Failed(e) = webhook::call(http, &call).await {
                tracing::warn!(
                    canary = %format!("{}.{}", call.payload.name, call.payload.namespace),
                    hook = %call.name, error = %e, "event webhook failed"
                );
            }
        }
        Delivery::EventWebhook { url, payload } => {
            if let Err(e) = webhook::post_event(http, &url, &payload).await {
                tracing::warn!(
                    canary = %format!("{}.{}", payload.name, payload.namespace),
                    %url, error = %e, "event webhook failed"
                );
            }
        }
        Delivery::Alert {
            notifier,
            alert,
            canary,
            namespace,
        } => {
            if let Err(e) = notifier.post(&alert, &canary, &namespace).await {
                tracing::warn!(canary = %format!("{canary}.{namespace}"), error = %e, "alert failed");
            }
        }
    }
}
