//! Kubernetes events about Canaries, written as Flagger's client-go recorder writes them: `core/v1`
//! Events with `source.component: flagger` (which event exporters and alerting rules filter on),
//! reason `Synced`, Flagger's wording as the message.
//!
//! client-go folds an event that repeats word for word (same object, type, reason and message)
//! into the first one by bumping its `count` and `lastTimestamp`; distinct messages are distinct
//! events. The same here, with a bounded memory of the events written: one publisher per process,
//! because the memory is what makes repeats fold.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use flagger_core::command::EventSeverity;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

pub const REASON: &str = "Synced";
/// `source.component` and `reportingComponent`, Flagger's controller agent name.
pub const COMPONENT: &str = "flagger";
/// Events kept in memory for folding repeats (client-go's cache holds 4096).
const REMEMBERED: usize = 4096;
/// Longer messages are cut: `events.k8s.io` readers (whose `note` is limited to 1 kB) see the
/// same text, and nobody reads further in `kubectl describe`.
const MAX_MESSAGE_BYTES: usize = 1024;

#[derive(Clone)]
pub struct EventPublisher {
    client: Client,
    /// This replica's name (the pod), as `reportingInstance`; Flagger leaves it empty.
    instance: Option<String>,
    written: Arc<Mutex<Written>>,
}

/// What has been written, keyed by what makes two events the same one.
#[derive(Default)]
struct Written {
    events: HashMap<Key, Series>,
    order: VecDeque<Key>,
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct Key {
    namespace: String,
    object: String,
    type_: &'static str,
    message: String,
}

#[derive(Clone)]
struct Series {
    name: String,
    count: i32,
}

impl EventPublisher {
    /// `instance` names this replica (the pod name); `None` leaves `reportingInstance` empty.
    pub fn new(client: Client, instance: Option<String>) -> Self {
        EventPublisher {
            client,
            instance,
            written: Arc::default(),
        }
    }

    pub async fn publish(
        &self,
        regarding: &ObjectReference,
        severity: EventSeverity,
        message: &str,
    ) -> Result<(), kube::Error> {
        let type_ = match severity {
            EventSeverity::Normal => "Normal",
            EventSeverity::Warning => "Warning",
        };
        let namespace = regarding.namespace.clone().unwrap_or_default();
        let key = Key {
            namespace: namespace.clone(),
            object: format!(
                "{}/{}/{}",
                regarding.kind.as_deref().unwrap_or_default(),
                regarding.name.as_deref().unwrap_or_default(),
                regarding.uid.as_deref().unwrap_or_default()
            ),
            type_,
            message: truncate(message, MAX_MESSAGE_BYTES).to_string(),
        };
        let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        let now = Timestamp::now();
        if let Some(series) = self.remembered(&key) {
            let count = series.count + 1;
            let patch = json!({"count": count, "lastTimestamp": Time(now)});
            match api
                .patch(&series.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {
                    self.remember(key, series.name, count);
                    return Ok(());
                }
                // Events expire (an hour by default): start a new one.
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        let event = self.new_event(regarding, &key, now);
        let name = event.metadata.name.clone().unwrap_or_default();
        api.create(&PostParams::default(), &event).await?;
        self.remember(key, name, 1);
        Ok(())
    }

    fn new_event(&self, regarding: &ObjectReference, key: &Key, now: Timestamp) -> Event {
        Event {
            metadata: ObjectMeta {
                // client-go's naming: the object's name and the creation time in hex nanoseconds.
                name: Some(format!(
                    "{}.{:x}",
                    regarding.name.as_deref().unwrap_or("unknown"),
                    now.as_nanosecond()
                )),
                namespace: Some(key.namespace.clone()),
                ..ObjectMeta::default()
            },
            involved_object: regarding.clone(),
            reason: Some(REASON.to_string()),
            message: Some(key.message.clone()),
            type_: Some(key.type_.to_string()),
            source: Some(EventSource {
                component: Some(COMPONENT.to_string()),
                host: None,
            }),
            first_timestamp: Some(Time(now)),
            last_timestamp: Some(Time(now)),
            count: Some(1),
            reporting_component: Some(COMPONENT.to_string()),
            reporting_instance: Some(self.instance.clone().unwrap_or_default()),
            event_time: None::<MicroTime>,
            ..Event::default()
        }
    }

    fn remembered(&self, key: &Key) -> Option<Series> {
        let written = self.written.lock().unwrap_or_else(|e| e.into_inner());
        written.events.get(key).cloned()
    }

    fn remember(&self, key: Key, name: String, count: i32) {
        let mut written = self.written.lock().unwrap_or_else(|e| e.into_inner());
        if written
            .events
            .insert(key.clone(), Series { name, count })
            .is_none()
        {
            written.order.push_back(key);
            while written.order.len() > REMEMBERED {
                if let Some(oldest) = written.order.pop_front() {
                    written.events.remove(&oldest);
                }
            }
        }
    }
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
    fn long_messages_are_cut_on_a_character_boundary() {
        let s = "é".repeat(600);
        let t = truncate(&s, MAX_MESSAGE_BYTES);
        assert_eq!(t.len(), 1024);
        assert!(t.chars().all(|c| c == 'é'));
    }
}
