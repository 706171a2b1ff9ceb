//! Calling a Canary's webhooks: a JSON POST of Flagger's `CanaryWebhookPayload`, with the hook's
//! timeout, retries and TLS setting. Receivers written for Flagger (its load tester, gates,
//! notification bridges) read the same body.
//!
//! One deliberate difference: every 2xx status passes. Flagger passes only statuses up to 202,
//! so a hook answering `204 No Content` fails there and passes here.
//!
//! Also here: the `event` webhook payload and [`post_event`] for `-event-webhook`, and
//! [`http_client_builder`], which every outgoing HTTP client of this crate starts from.

use std::collections::BTreeMap;
use std::error::Error as _;
use std::time::Duration;

use flagger_core::HookAnswer;
use flagger_core::command::{HookCall, HookPayload};
use jiff::{SignedDuration, Timestamp};
use serde::Serialize;

/// Flagger's timeout for hooks that set none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Wait before the first retry; it doubles on each further one, up to [`RETRY_WAIT_MAX`]
/// (go-retryablehttp's defaults, which Flagger uses).
pub const RETRY_WAIT_MIN: Duration = Duration::from_secs(1);
pub const RETRY_WAIT_MAX: Duration = Duration::from_secs(30);

/// A reqwest builder with a TLS crypto provider in place.
///
/// reqwest is built without a provider of its own (so that only `ring`, which kube uses, is
/// linked) and panics when building a client if none is installed; this installs `ring` as the
/// process default unless one already is.
pub fn http_client_builder() -> reqwest::ClientBuilder {
    // Err only means a provider is already installed, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
}

/// The body Flagger POSTs (`metadata` omitted when empty, as Go's `omitempty` does).
#[derive(Serialize)]
struct WirePayload<'a> {
    name: &'a str,
    namespace: &'a str,
    phase: &'a str,
    checksum: &'a str,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    metadata: &'a BTreeMap<String, String>,
}

impl<'a> From<&'a HookPayload> for WirePayload<'a> {
    fn from(p: &'a HookPayload) -> Self {
        WirePayload {
            name: &p.name,
            namespace: &p.namespace,
            phase: &p.phase,
            checksum: &p.checksum,
            metadata: &p.metadata,
        }
    }
}

/// Calls the hook: `Passed` on any 2xx, otherwise `Failed` with the response body (or the
/// status, or the transport error). Failed attempts that may succeed later (transport errors,
/// 429, 5xx except 501) are retried `retries` times with exponential backoff.
pub async fn call(client: &reqwest::Client, call: &HookCall) -> HookAnswer {
    call_with_backoff(client, call, RETRY_WAIT_MIN).await
}

/// [`call`] with a chosen first retry wait (tests use a short one).
pub async fn call_with_backoff(
    client: &reqwest::Client,
    call: &HookCall,
    first_wait: Duration,
) -> HookAnswer {
    let insecure;
    let client = if call.disable_tls {
        insecure = match http_client_builder()
            .tls_danger_accept_invalid_certs(true)
            .build()
        {
            Ok(c) => c,
            Err(e) => return HookAnswer::Failed(format!("building the HTTP client failed: {e}")),
        };
        &insecure
    } else {
        client
    };
    let timeout = to_std(call.timeout).unwrap_or(DEFAULT_TIMEOUT);
    let body = match serde_json::to_vec(&WirePayload::from(&call.payload)) {
        Ok(b) => b,
        Err(e) => return HookAnswer::Failed(format!("encoding the payload failed: {e}")),
    };
    let attempts = 1 + call.retries.max(0) as u32;
    let mut wait = first_wait;
    let mut attempt = 1;
    loop {
        let (answer, retryable) = attempt_once(client, &call.url, body.clone(), timeout).await;
        if !retryable || attempt >= attempts {
            return answer;
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(RETRY_WAIT_MAX);
        attempt += 1;
    }
}

async fn attempt_once(
    client: &reqwest::Client,
    url: &str,
    body: Vec<u8>,
    timeout: Duration,
) -> (HookAnswer, bool) {
    let sent = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body)
        .timeout(timeout)
        .send()
        .await;
    let response = match sent {
        Ok(r) => r,
        Err(e) => {
            // A malformed URL will not get better by retrying.
            let retryable = !e.is_builder();
            return (HookAnswer::Failed(describe(&e, url, timeout)), retryable);
        }
    };
    let status = response.status();
    if status.is_success() {
        return (HookAnswer::Passed, false);
    }
    let text = match response.text().await {
        Ok(t) => t.trim().to_string(),
        Err(e) => describe(&e, url, timeout),
    };
    let message = if text.is_empty() {
        format!(
            "{} {}",
            status.as_u16(),
            status.canonical_reason().unwrap_or("")
        )
        .trim_end()
        .to_string()
    } else {
        text
    };
    let retryable = status.as_u16() == 429 || (status.is_server_error() && status.as_u16() != 501);
    (HookAnswer::Failed(message), retryable)
}

fn describe(e: &reqwest::Error, url: &str, timeout: Duration) -> String {
    if e.is_timeout() {
        return format!("POST {url} timed out after {}s", timeout.as_secs_f64());
    }
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn to_std(d: SignedDuration) -> Option<Duration> {
    Duration::try_from(d).ok().filter(|d| !d.is_zero())
}

/// The payload of an `event` hook (and of `-event-webhook`): the Canary's identity plus
/// `eventMessage`, `eventType` (`Normal`/`Warning`) and `timestamp` (Unix milliseconds) in
/// `metadata`, then the hook's own metadata for keys those three do not take.
pub fn event_payload(
    canary: &HookPayload,
    message: &str,
    event_type: &str,
    now: Timestamp,
) -> HookPayload {
    let mut metadata = BTreeMap::from([
        ("eventMessage".to_string(), message.to_string()),
        ("eventType".to_string(), event_type.to_string()),
        ("timestamp".to_string(), now.as_millisecond().to_string()),
    ]);
    for (k, v) in &canary.metadata {
        metadata.entry(k.clone()).or_insert_with(|| v.clone());
    }
    HookPayload {
        metadata,
        ..canary.clone()
    }
}

/// POSTs an event payload (built by [`event_payload`]) to `url` the way Flagger treats
/// `-event-webhook`: 10 s timeout, no retries. Canary `event` hooks carry their own timeout and
/// retries: build a [`HookCall`] with the event payload and use [`call`] for them.
pub async fn post_event(
    client: &reqwest::Client,
    url: &str,
    payload: &HookPayload,
) -> Result<(), String> {
    let hook = HookCall {
        name: "events".into(),
        hook_type: "event".into(),
        url: url.to_string(),
        timeout: SignedDuration::ZERO,
        retries: 0,
        disable_tls: false,
        payload: payload.clone(),
    };
    match call(client, &hook).await {
        HookAnswer::Passed => Ok(()),
        HookAnswer::Failed(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload() -> HookPayload {
        HookPayload {
            name: "podinfo".into(),
            namespace: "test".into(),
            phase: "Progressing".into(),
            checksum: "abc".into(),
            metadata: BTreeMap::from([
                ("cmd".to_string(), "hey".to_string()),
                ("eventType".to_string(), "spoofed".to_string()),
            ]),
        }
    }

    #[test]
    fn event_keys_win_over_hook_metadata() {
        let now = Timestamp::from_millisecond(1_700_000_000_123).unwrap();
        let p = event_payload(&payload(), "New revision detected", "Normal", now);
        assert_eq!(p.metadata["eventMessage"], "New revision detected");
        assert_eq!(p.metadata["eventType"], "Normal");
        assert_eq!(p.metadata["timestamp"], "1700000000123");
        assert_eq!(p.metadata["cmd"], "hey");
        assert_eq!(p.name, "podinfo");
    }

    #[test]
    fn empty_metadata_is_omitted_on_the_wire() {
        let mut p = payload();
        p.metadata.clear();
        let json = serde_json::to_value(WirePayload::from(&p)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"name":"podinfo","namespace":"test","phase":"Progressing","checksum":"abc"})
        );
    }

    #[test]
    fn zero_or_negative_timeouts_use_the_default() {
        assert_eq!(to_std(SignedDuration::ZERO), None);
        assert_eq!(to_std(SignedDuration::from_secs(-1)), None);
        assert_eq!(
            to_std(SignedDuration::from_millis(1500)),
            Some(Duration::from_millis(1500))
        );
    }
}
