//! Kubernetes events about Canaries (`events.k8s.io/v1`), with Flagger's reason `Synced` and its
//! wording as the note.
//!
//! kube-runtime's `Recorder` folds an event into an earlier one (a series PATCH that keeps the
//! first note) when type, action, reason and object are the same within six minutes. Flagger's
//! events all share one reason, so "Advance podinfo.test canary weight 20" would vanish into the
//! "… weight 10" event. The action therefore carries a digest of the message: distinct messages
//! stay distinct events, and only a message repeated word for word becomes a series, which is
//! what client-go's aggregation does for Flagger.

use flagger_core::command::EventSeverity;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};

pub const REASON: &str = "Synced";
pub const REPORTER: &str = "flagger";
/// The API server rejects notes above 1 kB.
const MAX_NOTE_BYTES: usize = 1024;

/// One per process: the recorder's de-duplication cache only works when it is long-lived.
#[derive(Clone)]
pub struct EventPublisher {
    recorder: Recorder,
}

impl EventPublisher {
    /// `instance` names this replica (the pod name); `None` uses the controller name.
    pub fn new(client: Client, instance: Option<String>) -> Self {
        let reporter = Reporter {
            controller: REPORTER.to_string(),
            instance,
        };
        EventPublisher {
            recorder: Recorder::new(client, reporter),
        }
    }

    pub async fn publish(
        &self,
        regarding: &ObjectReference,
        severity: EventSeverity,
        message: &str,
    ) -> Result<(), kube::Error> {
        let event = Event {
            type_: match severity {
                EventSeverity::Normal => EventType::Normal,
                EventSeverity::Warning => EventType::Warning,
            },
            reason: REASON.to_string(),
            note: Some(truncate(message, MAX_NOTE_BYTES).to_string()),
            action: action_for(message),
            secondary: None,
        };
        self.recorder.publish(&event, regarding).await
    }
}

/// `Synced-` and a 64-bit FNV-1a digest of the message: stable across restarts and replicas
/// (unlike std's randomly seeded hasher), and far below the 128-character limit.
pub fn action_for(message: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in message.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{REASON}-{h:016x}")
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_differ_per_message_and_are_stable() {
        let a = action_for("Advance podinfo.test canary weight 10");
        let b = action_for("Advance podinfo.test canary weight 20");
        assert_ne!(a, b);
        assert_eq!(a, action_for("Advance podinfo.test canary weight 10"));
        assert!(a.starts_with("Synced-") && a.len() <= 128);
    }

    #[test]
    fn long_notes_are_cut_on_a_character_boundary() {
        let s = "é".repeat(600);
        let t = truncate(&s, MAX_NOTE_BYTES);
        assert_eq!(t.len(), 1024);
        assert!(t.chars().all(|c| c == 'é'));
    }
}
