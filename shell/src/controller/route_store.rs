//! The cache of one routing kind (VirtualServices, DestinationRules, HTTPRoutes, Ingresses, ...),
//! fed by its watch. Objects are kept as JSON text ([`Compact`]): a `serde_json::Value` tree
//! costs an allocation per field, and a Canary's routes are read only when it is reconciled.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use kube::ResourceExt;
use kube::api::DynamicObject;
use kube::runtime::watcher::Event;

use crate::compact::Compact;

type Key = (String, String);

#[derive(Clone)]
pub struct RouteStore {
    inner: Arc<Inner>,
}

struct Inner {
    state: Mutex<State>,
    listed: tokio::sync::watch::Sender<bool>,
}

#[derive(Default)]
struct State {
    objects: HashMap<Key, Compact<DynamicObject>>,
    /// A list in progress: what it found so far.
    relist: Option<HashMap<Key, Compact<DynamicObject>>>,
}

fn key_of(o: &DynamicObject) -> Key {
    (o.namespace().unwrap_or_default(), o.name_any())
}

impl Default for RouteStore {
    fn default() -> Self {
        RouteStore {
            inner: Arc::new(Inner {
                state: Mutex::default(),
                listed: tokio::sync::watch::Sender::new(false),
            }),
        }
    }
}

impl RouteStore {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn get(&self, namespace: &str, name: &str) -> Option<Arc<DynamicObject>> {
        self.lock()
            .objects
            .get(&(namespace.to_string(), name.to_string()))
            .and_then(Compact::get)
            .map(Arc::new)
    }

    pub fn len(&self) -> usize {
        self.lock().objects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Resolves once the first list is in (false: the store is gone).
    pub async fn wait_listed(&self) -> bool {
        let mut rx = self.inner.listed.subscribe();
        rx.wait_for(|listed| *listed).await.is_ok()
    }

    /// Applies one watch event; a relist replaces everything once complete.
    pub fn apply(&self, event: &Event<DynamicObject>) {
        let mut state = self.lock();
        match event {
            Event::Apply(o) => {
                match Compact::new(o) {
                    Some(c) => state.objects.insert(key_of(o), c),
                    None => state.objects.remove(&key_of(o)),
                };
            }
            Event::Delete(o) => {
                state.objects.remove(&key_of(o));
            }
            Event::Init => state.relist = Some(HashMap::new()),
            Event::InitApply(o) => {
                if let (Some(relist), Some(c)) = (&mut state.relist, Compact::new(o)) {
                    relist.insert(key_of(o), c);
                }
            }
            Event::InitDone => {
                if let Some(found) = state.relist.take() {
                    state.objects = found;
                }
                drop(state);
                self.inner.listed.send_replace(true);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vs(name: &str, weight: i64) -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": { "name": name, "namespace": "test" },
            "spec": { "http": [{ "route": [{ "destination": { "host": "podinfo-primary" }, "weight": weight }] }] }
        }))
        .unwrap()
    }

    #[tokio::test]
    async fn the_store_follows_its_watch_and_reads_objects_back_whole() {
        let store = RouteStore::default();
        store.apply(&Event::Init);
        store.apply(&Event::InitApply(vs("a", 100)));
        assert!(
            store.get("test", "a").is_none(),
            "not before the list is complete"
        );
        store.apply(&Event::InitDone);
        assert!(store.wait_listed().await);
        assert_eq!(*store.get("test", "a").unwrap(), vs("a", 100));
        store.apply(&Event::Apply(vs("a", 90)));
        store.apply(&Event::Apply(vs("b", 100)));
        assert_eq!(*store.get("test", "a").unwrap(), vs("a", 90));
        store.apply(&Event::Delete(vs("b", 100)));
        assert!(store.get("test", "b").is_none());
        // A relist forgets what it no longer finds.
        store.apply(&Event::Init);
        store.apply(&Event::InitDone);
        assert!(store.is_empty());
    }
}
