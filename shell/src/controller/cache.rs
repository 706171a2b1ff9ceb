//! A watch cache that keeps only the objects some Canary references ([`super::refs`]), pruned
//! ([`super::prune`]). The watch still sees every object of its kind; unreferenced ones pass
//! through (to trigger their owner's reconcile) and are dropped.
//!
//! For each referenced object the cache knows one of three things: its content, that it does
//! not exist (`absent`), or nothing yet (unresolved: it became referenced after the watch had
//! passed it, e.g. a new Canary naming an existing Deployment). Unresolved objects are read
//! with one GET before the reconcile that needs them ([`super::fetch`]); after that the watch
//! keeps them current, so an idle interval costs no request.
//!
//! Objects are kept as JSON text ([`Compact`]) and decoded when read.
//!
//! The cache also remembers a hash of the key of every object its watch saw exist (8 bytes
//! each, referenced or not). A newly referenced key the watch never saw is known absent at
//! once: a new Canary's primary and Services cost no GET before they are created.

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

use kube::Resource;
use kube::runtime::watcher::Event;
use prometheus::IntGauge;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::refs::{Kind, Ref, Registry};
use crate::compact::Compact;
use crate::executor::Known;

type Key = (String, String);

/// A key's hash, the same in every process (SipHash with fixed keys). Two keys sharing one
/// (odds about n²/2⁶⁵ for n objects) only cost a GET, unless one of them is deleted while the
/// other becomes referenced.
fn hash_of(namespace: &str, name: &str) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    (namespace, name).hash(&mut h);
    h.finish()
}

fn key_of<K: Resource>(o: &K) -> Key {
    let m = o.meta();
    (
        m.namespace.clone().unwrap_or_default(),
        m.name.clone().unwrap_or_default(),
    )
}

pub struct Cache<K> {
    inner: Arc<Inner<K>>,
}

impl<K> Clone for Cache<K> {
    fn clone(&self) -> Self {
        Cache {
            inner: self.inner.clone(),
        }
    }
}

struct Inner<K> {
    kind: Kind,
    state: Mutex<State<K>>,
    listed: tokio::sync::watch::Sender<bool>,
    gauge: Option<IntGauge>,
}

struct State<K> {
    objects: HashMap<Key, Compact<K>>,
    absent: HashSet<Key>,
    /// The hashes ([`hash_of`]) of every object the watch saw exist, referenced or not.
    present: HashSet<u64>,
    /// A list in progress.
    relist: Option<Relist<K>>,
}

struct Relist<K> {
    /// The registry's epoch when the list started.
    from: u64,
    /// The referenced objects found so far.
    found: HashMap<Key, Compact<K>>,
    /// Referenced objects listed whose content could not be read: unresolved, not absent.
    unknown: HashSet<Key>,
    /// Every object listed so far, as [`State::present`].
    present: HashSet<u64>,
}

impl<K> Cache<K> {
    pub fn new(kind: Kind, gauge: Option<IntGauge>) -> Cache<K> {
        Cache {
            inner: Arc::new(Inner {
                kind,
                state: Mutex::new(State {
                    objects: HashMap::new(),
                    absent: HashSet::new(),
                    present: HashSet::new(),
                    relist: None,
                }),
                listed: tokio::sync::watch::Sender::new(false),
                gauge,
            }),
        }
    }

    pub fn kind(&self) -> Kind {
        self.inner.kind
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<K>> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn counted(&self, state: &State<K>) {
        if let Some(g) = &self.inner.gauge {
            g.set(i64::try_from(state.objects.len()).unwrap_or(i64::MAX));
        }
    }

    pub fn get(&self, namespace: &str, name: &str) -> Option<Arc<K>>
    where
        K: Resource + Serialize + DeserializeOwned,
    {
        self.get_owned(namespace, name).map(Arc::new)
    }

    /// The object, decoded for the caller alone.
    pub fn get_owned(&self, namespace: &str, name: &str) -> Option<K>
    where
        K: Resource + Serialize + DeserializeOwned,
    {
        self.lock()
            .objects
            .get(&(namespace.to_string(), name.to_string()))
            .and_then(Compact::get)
    }

    /// The object, that it does not exist, or that the cache cannot tell (see `is_resolved`).
    pub fn known(&self, namespace: &str, name: &str) -> Known<Arc<K>>
    where
        K: Resource + Serialize + DeserializeOwned,
    {
        match self.get(namespace, name) {
            Some(o) => Known::Found(o),
            None if self.is_resolved(namespace, name) => Known::Absent,
            None => Known::Unknown,
        }
    }

    /// Objects held.
    pub fn len(&self) -> usize {
        self.lock().objects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the cache knows `name`'s content or that it does not exist: once listed, an
    /// object the watch never saw does not exist.
    pub fn is_resolved(&self, namespace: &str, name: &str) -> bool {
        let key = (namespace.to_string(), name.to_string());
        let listed = self.is_listed();
        let state = self.lock();
        state.objects.contains_key(&key)
            || state.absent.contains(&key)
            || (listed && !state.present.contains(&hash_of(namespace, name)))
    }

    pub fn is_listed(&self) -> bool {
        *self.inner.listed.borrow()
    }

    /// Resolves once the first list is in (false: the cache is gone).
    pub async fn wait_listed(&self) -> bool {
        let mut rx = self.inner.listed.subscribe();
        rx.wait_for(|listed| *listed).await.is_ok()
    }

    /// Applies one (pruned) watch event, keeping the object only if `refs` references it.
    pub fn apply(&self, event: &Event<K>, refs: &Registry)
    where
        K: Resource + Serialize + DeserializeOwned,
    {
        let kind = self.inner.kind;
        let referenced = |key: &Key| refs.contains(&Ref::new(kind, &key.0, &key.1));
        let mut state = self.lock();
        match event {
            Event::Apply(o) => {
                let key = key_of(o);
                state.present.insert(hash_of(&key.0, &key.1));
                state.absent.remove(&key);
                match Compact::new(o).filter(|_| referenced(&key)) {
                    Some(c) => state.objects.insert(key, c),
                    None => state.objects.remove(&key),
                };
            }
            Event::Delete(o) => {
                let key = key_of(o);
                state.present.remove(&hash_of(&key.0, &key.1));
                state.objects.remove(&key);
                if referenced(&key) {
                    state.absent.insert(key);
                }
            }
            Event::Init => {
                state.relist = Some(Relist {
                    from: refs.epoch(),
                    found: HashMap::new(),
                    unknown: HashSet::new(),
                    present: HashSet::new(),
                })
            }
            Event::InitApply(o) => {
                let key = key_of(o);
                if let Some(relist) = &mut state.relist {
                    relist.present.insert(hash_of(&key.0, &key.1));
                    if referenced(&key)
                        && let Some(c) = Compact::new(o)
                    {
                        relist.found.insert(key, c);
                    }
                }
            }
            Event::InitDone => {
                let Some(relist) = state.relist.take() else {
                    return;
                };
                // Referenced before the list began and not found: gone. Referenced later: the
                // list may have passed them before they were, so they stay unresolved.
                state.absent = refs
                    .referenced_at(kind, relist.from)
                    .into_iter()
                    .map(|r| (r.namespace, r.name))
                    .filter(|k| !relist.found.contains_key(k) && !relist.unknown.contains(k))
                    .collect();
                state.objects = relist.found;
                state.present = relist.present;
                drop(state);
                self.inner.listed.send_replace(true);
                let state = self.lock();
                self.counted(&state);
                return;
            }
        }
        self.counted(&state);
    }

    /// The result of a GET for an unresolved object; ignored if the watch resolved it since.
    pub fn fetched(&self, namespace: &str, name: &str, object: Option<K>)
    where
        K: Resource + Serialize + DeserializeOwned,
    {
        let key = (namespace.to_string(), name.to_string());
        let mut state = self.lock();
        if state.objects.contains_key(&key) || state.absent.contains(&key) {
            return;
        }
        match object {
            Some(o) => {
                if let Some(c) = Compact::new(&o) {
                    state.objects.insert(key, c);
                }
            }
            None => {
                state.absent.insert(key);
            }
        }
        self.counted(&state);
    }

    /// Holds `object` whether referenced or not: for views of the cluster built by hand.
    pub fn put(&self, object: K)
    where
        K: Resource + Serialize + DeserializeOwned,
    {
        let key = key_of(&object);
        let mut state = self.lock();
        state.absent.remove(&key);
        if let Some(c) = Compact::new(&object) {
            state.objects.insert(key, c);
        }
        self.counted(&state);
    }

    /// Records that `name` exists though its content could not be read (a Secret whose GET
    /// failed): unresolved, to be read when needed, not absent.
    pub fn exists(&self, namespace: &str, name: &str) {
        let hash = hash_of(namespace, name);
        let mut state = self.lock();
        match &mut state.relist {
            Some(relist) => relist.present.insert(hash),
            None => state.present.insert(hash),
        };
    }

    /// Drops `name`, no longer referenced (or to be read again): unresolved until read.
    pub fn forget(&self, namespace: &str, name: &str) {
        let key = (namespace.to_string(), name.to_string());
        let mut state = self.lock();
        state.objects.remove(&key);
        state.absent.remove(&key);
        if let Some(relist) = &mut state.relist {
            relist.found.remove(&key);
            relist.unknown.insert(key);
        }
        self.counted(&state);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;
    use std::collections::BTreeSet;

    fn cm(name: &str, value: &str) -> ConfigMap {
        let mut o = ConfigMap::default();
        o.metadata.name = Some(name.into());
        o.metadata.namespace = Some("test".into());
        o.data = Some([("k".to_string(), value.to_string())].into());
        o
    }

    fn reference(reg: &Registry, canary: &str, names: &[&str]) {
        let refs: BTreeSet<Ref> = names
            .iter()
            .map(|n| Ref::new(Kind::ConfigMap, "test", n))
            .collect();
        reg.set(&("test".into(), canary.into()), refs);
    }

    fn value(cache: &Cache<ConfigMap>, name: &str) -> Option<String> {
        cache
            .get("test", name)
            .map(|o| o.data.as_ref().unwrap()["k"].clone())
    }

    #[test]
    fn the_list_keeps_referenced_objects_and_learns_which_are_missing() {
        let reg = Registry::default();
        reference(&reg, "a", &["used", "missing"]);
        let cache = Cache::new(Kind::ConfigMap, None);
        cache.apply(&Event::Init, &reg);
        for name in ["used", "other-1", "other-2"] {
            cache.apply(&Event::InitApply(cm(name, "1")), &reg);
        }
        // Referenced during the list, after it began: the list may have passed it.
        reference(&reg, "b", &["late"]);
        cache.apply(&Event::InitDone, &reg);
        assert!(cache.is_listed());
        assert_eq!(cache.len(), 1);
        assert_eq!(value(&cache, "used").as_deref(), Some("1"));
        assert!(cache.is_resolved("test", "missing"));
        // Never listed: absent, whenever it became referenced.
        assert!(cache.is_resolved("test", "late"));
        // Listed but not kept: a GET reads it once it is referenced.
        assert!(!cache.is_resolved("test", "other-1"));
    }

    #[test]
    fn changes_of_referenced_objects_are_kept_others_dropped() {
        let reg = Registry::default();
        reference(&reg, "a", &["used"]);
        let cache = Cache::new(Kind::ConfigMap, None);
        cache.apply(&Event::Init, &reg);
        cache.apply(&Event::InitDone, &reg);
        assert!(cache.is_resolved("test", "used"), "known absent");
        cache.apply(&Event::Apply(cm("used", "2")), &reg);
        cache.apply(&Event::Apply(cm("other", "2")), &reg);
        assert_eq!(cache.len(), 1);
        assert_eq!(value(&cache, "used").as_deref(), Some("2"));
        cache.apply(&Event::Delete(cm("used", "2")), &reg);
        assert_eq!(cache.len(), 0);
        assert!(cache.is_resolved("test", "used"), "known absent again");
    }

    #[test]
    fn a_get_result_yields_to_what_the_watch_saw_meanwhile() {
        let reg = Registry::default();
        let cache = Cache::new(Kind::ConfigMap, None);
        cache.apply(&Event::Init, &reg);
        cache.apply(&Event::InitApply(cm("x", "old")), &reg);
        cache.apply(&Event::InitApply(cm("y", "old")), &reg);
        cache.apply(&Event::InitDone, &reg);
        reference(&reg, "a", &["x", "y"]);
        assert!(!cache.is_resolved("test", "x"));
        // The watch delivered a newer version while the GET was in flight.
        cache.apply(&Event::Apply(cm("x", "new")), &reg);
        cache.fetched("test", "x", Some(cm("x", "old")));
        assert_eq!(value(&cache, "x").as_deref(), Some("new"));
        cache.fetched("test", "y", None);
        assert!(cache.is_resolved("test", "y"));
        cache.forget("test", "x");
        assert!(!cache.is_resolved("test", "x"));
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn objects_the_watch_never_saw_are_absent_without_a_read() {
        let reg = Registry::default();
        let cache = Cache::new(Kind::ConfigMap, None);
        assert!(
            !cache.is_resolved("test", "new"),
            "nothing is known before the list"
        );
        cache.apply(&Event::Init, &reg);
        cache.apply(&Event::InitApply(cm("old", "1")), &reg);
        cache.apply(&Event::InitDone, &reg);
        reference(&reg, "a", &["new", "old", "later"]);
        assert!(cache.is_resolved("test", "new"));
        assert!(!cache.is_resolved("test", "old"));
        // Created, then deleted, while unreferenced: the watch saw both.
        cache.apply(&Event::Apply(cm("gone", "1")), &Registry::default());
        assert!(!cache.is_resolved("test", "gone"));
        cache.apply(&Event::Delete(cm("gone", "1")), &Registry::default());
        assert!(cache.is_resolved("test", "gone"));
        // A relist forgets what it no longer lists, and learns what exists now.
        cache.apply(&Event::Init, &reg);
        cache.apply(&Event::InitApply(cm("later", "1")), &reg);
        cache.exists("test", "unreadable");
        cache.apply(&Event::InitDone, &reg);
        assert!(
            cache.is_resolved("test", "old"),
            "deleted while the watch was down"
        );
        assert_eq!(value(&cache, "later").as_deref(), Some("1"));
        assert!(!cache.is_resolved("test", "unreadable"));
    }
}
