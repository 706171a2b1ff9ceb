//! Which objects the Canaries reference, so the caches keep those and nothing else: memory then
//! follows the number of Canaries, not the size of the cluster.
//!
//! A Canary references, by name in its namespace: its target and the generated `-primary`
//! Deployment, the apex, `-primary` and `-canary` Services, the autoscaler it names and its
//! `-primary` copy, and (with config tracking) the ConfigMaps and Secrets its target's pod
//! template uses. That is everything a snapshot, the executor and the deletion handler read
//! by name (see [`super::snapshot`], [`super::apply`], [`super::deletion`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;

use flagger_core::api::Canary;
use k8s_openapi::api::apps::v1::Deployment;
use kube::ResourceExt;

use crate::observe::ConfigRefs;
use crate::router::Names;

/// The kinds cached by reference.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Deployment,
    Service,
    Autoscaler,
    ConfigMap,
    Secret,
}

impl Kind {
    pub const ALL: [Kind; 5] = [
        Kind::Deployment,
        Kind::Service,
        Kind::Autoscaler,
        Kind::ConfigMap,
        Kind::Secret,
    ];

    /// The Kubernetes kind, as in `flagger_cache_objects{kind}`.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Deployment => "Deployment",
            Kind::Service => "Service",
            Kind::Autoscaler => "HorizontalPodAutoscaler",
            Kind::ConfigMap => "ConfigMap",
            Kind::Secret => "Secret",
        }
    }
}

/// One referenced object.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ref {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
}

impl Ref {
    pub fn new(kind: Kind, namespace: &str, name: &str) -> Ref {
        Ref {
            kind,
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }
}

/// What `canary` references, given its target as cached (`None`: not known yet, so no configs).
pub fn references(
    canary: &Canary,
    target: Option<&Deployment>,
    config_tracking: bool,
) -> BTreeSet<Ref> {
    let ns = canary.namespace().unwrap_or_default();
    let names = Names::of(canary);
    let mut out = BTreeSet::new();
    let mut add = |kind, name: &str| {
        if !name.is_empty() {
            out.insert(Ref::new(kind, &ns, name));
        }
    };
    if !names.target.is_empty() {
        add(Kind::Deployment, &names.target);
        add(Kind::Deployment, &names.primary);
    }
    if !names.apex_service.is_empty() {
        add(Kind::Service, &names.apex_service);
        add(Kind::Service, &names.primary_service);
        add(Kind::Service, &names.canary_service);
    }
    if let Some(hpa) = canary.spec.autoscaler_ref.as_ref().map(|a| a.name.as_str())
        && !hpa.is_empty()
    {
        add(Kind::Autoscaler, hpa);
        add(Kind::Autoscaler, &format!("{hpa}-primary"));
    }
    let pod = target.and_then(|d| d.spec.as_ref()?.template.spec.as_ref());
    if config_tracking && let Some(pod) = pod {
        let refs = ConfigRefs::of(pod);
        for name in &refs.configmaps {
            add(Kind::ConfigMap, name);
        }
        for name in &refs.secrets {
            add(Kind::Secret, name);
        }
    }
    out
}

/// A Canary, by namespace and name.
pub type CanaryKey = (String, String);

/// The references of every Canary, indexed both ways. `added` counts when a reference first
/// appeared, so a cache can tell the references its last list covered from later ones.
#[derive(Default, Debug)]
pub struct Registry {
    inner: Mutex<Inner>,
}

#[derive(Default, Debug)]
struct Inner {
    by_canary: HashMap<CanaryKey, BTreeSet<Ref>>,
    /// For each referenced object: the names of the Canaries (in its namespace) referencing
    /// it, and the epoch at which it became referenced.
    by_ref: HashMap<Ref, (BTreeSet<String>, u64)>,
    epoch: u64,
}

/// What changed in the referenced set: objects nobody referenced before, and objects nobody
/// references any more (the caches drop them).
#[derive(Debug, Default, PartialEq)]
pub struct Change {
    pub added: Vec<Ref>,
    pub removed: Vec<Ref>,
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records that the Canary `key` references exactly `refs`.
    pub fn set(&self, key: &CanaryKey, refs: BTreeSet<Ref>) -> Change {
        let mut inner = self.lock();
        let before = inner.by_canary.get(key).cloned().unwrap_or_default();
        if before == refs {
            return Change::default();
        }
        inner.epoch += 1;
        let epoch = inner.epoch;
        let mut change = Change::default();
        for r in before.difference(&refs) {
            if inner.unlink(r, &key.1) {
                change.removed.push(r.clone());
            }
        }
        for r in refs.difference(&before) {
            let entry = inner
                .by_ref
                .entry(r.clone())
                .or_insert_with(|| (BTreeSet::new(), epoch));
            if entry.0.is_empty() {
                change.added.push(r.clone());
            }
            entry.0.insert(key.1.clone());
        }
        inner.by_canary.insert(key.clone(), refs);
        change
    }

    /// Forgets the Canary `key`.
    pub fn remove(&self, key: &CanaryKey) -> Change {
        let mut inner = self.lock();
        let before = inner.by_canary.remove(key).unwrap_or_default();
        let mut change = Change::default();
        for r in &before {
            if inner.unlink(r, &key.1) {
                change.removed.push(r.clone());
            }
        }
        change
    }

    pub fn contains(&self, r: &Ref) -> bool {
        self.lock().by_ref.contains_key(r)
    }

    /// The names of the Canaries referencing `r` (all in its namespace).
    pub fn canaries(&self, r: &Ref) -> Vec<String> {
        self.lock()
            .by_ref
            .get(r)
            .map(|(names, _)| names.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// What the Canary `key` references, as last recorded.
    pub fn of(&self, key: &CanaryKey) -> BTreeSet<Ref> {
        self.lock().by_canary.get(key).cloned().unwrap_or_default()
    }

    /// The Canaries recorded that are not in `listed` (deleted while the watch was down).
    pub fn canaries_not_in(&self, listed: &BTreeSet<CanaryKey>) -> Vec<CanaryKey> {
        self.lock()
            .by_canary
            .keys()
            .filter(|k| !listed.contains(*k))
            .cloned()
            .collect()
    }

    /// The current epoch: references recorded from now on are newer than it.
    pub fn epoch(&self) -> u64 {
        self.lock().epoch
    }

    /// The referenced objects of `kind` that were referenced at or before `epoch`.
    pub fn referenced_at(&self, kind: Kind, epoch: u64) -> Vec<Ref> {
        self.lock()
            .by_ref
            .iter()
            .filter(|(r, (_, added))| r.kind == kind && *added <= epoch)
            .map(|(r, _)| r.clone())
            .collect()
    }

    /// Referenced objects per kind, for the log and tests.
    pub fn counts(&self) -> BTreeMap<Kind, usize> {
        let mut out = BTreeMap::new();
        for r in self.lock().by_ref.keys() {
            *out.entry(r.kind).or_insert(0) += 1;
        }
        out
    }
}

impl Inner {
    /// Drops `canary`'s link to `r`; true when nobody references `r` any more.
    fn unlink(&mut self, r: &Ref, canary: &str) -> bool {
        let Some((names, _)) = self.by_ref.get_mut(r) else {
            return false;
        };
        names.remove(canary);
        if names.is_empty() {
            self.by_ref.remove(r);
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn canary(name: &str, spec: serde_json::Value) -> Canary {
        serde_json::from_value(json!({
            "apiVersion": "flagger.app/v1beta1",
            "kind": "Canary",
            "metadata": { "name": name, "namespace": "test" },
            "spec": spec
        }))
        .unwrap()
    }

    fn target() -> Deployment {
        serde_json::from_value(json!({
            "metadata": { "name": "podinfo", "namespace": "test" },
            "spec": {
                "selector": { "matchLabels": { "app": "podinfo" } },
                "template": { "spec": {
                    "volumes": [{ "name": "c", "configMap": { "name": "podinfo-config" } }],
                    "containers": [{
                        "name": "app", "image": "podinfo",
                        "envFrom": [{ "secretRef": { "name": "podinfo-env" } }]
                    }]
                }}
            }
        }))
        .unwrap()
    }

    fn names(refs: &BTreeSet<Ref>) -> Vec<String> {
        refs.iter()
            .map(|r| format!("{}/{}/{}", r.kind.name(), r.namespace, r.name))
            .collect()
    }

    #[test]
    fn a_canary_references_its_target_services_autoscaler_and_tracked_configs() {
        let c = canary(
            "podinfo",
            json!({
                "targetRef": { "apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo" },
                "autoscalerRef": { "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "name": "podinfo-hpa" },
                "service": { "port": 9898, "name": "web" }
            }),
        );
        assert_eq!(
            names(&references(&c, Some(&target()), true)),
            [
                "Deployment/test/podinfo",
                "Deployment/test/podinfo-primary",
                "Service/test/web",
                "Service/test/web-canary",
                "Service/test/web-primary",
                "HorizontalPodAutoscaler/test/podinfo-hpa",
                "HorizontalPodAutoscaler/test/podinfo-hpa-primary",
                "ConfigMap/test/podinfo-config",
                "Secret/test/podinfo-env",
            ]
        );
        // Without tracking, or before the target is known, no configs.
        assert_eq!(references(&c, Some(&target()), false).len(), 7);
        assert_eq!(references(&c, None, true).len(), 7);
    }

    #[test]
    fn the_apex_defaults_to_the_target_and_no_autoscaler_means_none() {
        let c = canary(
            "podinfo",
            json!({
                "targetRef": { "apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo" },
                "service": { "port": 9898 }
            }),
        );
        assert_eq!(
            names(&references(&c, None, true)),
            [
                "Deployment/test/podinfo",
                "Deployment/test/podinfo-primary",
                "Service/test/podinfo",
                "Service/test/podinfo-canary",
                "Service/test/podinfo-primary",
            ]
        );
    }

    fn key(name: &str) -> CanaryKey {
        ("test".into(), name.into())
    }

    fn refs(names: &[&str]) -> BTreeSet<Ref> {
        names
            .iter()
            .map(|n| Ref::new(Kind::Deployment, "test", n))
            .collect()
    }

    #[test]
    fn the_registry_reports_objects_first_referenced_and_no_longer_referenced() {
        let reg = Registry::default();
        let change = reg.set(&key("a"), refs(&["shared", "a-only"]));
        assert_eq!(
            change.added,
            refs(&["a-only", "shared"]).into_iter().collect::<Vec<_>>()
        );
        assert!(change.removed.is_empty());
        let change = reg.set(&key("b"), refs(&["shared"]));
        assert!(change.added.is_empty(), "already referenced by a");
        assert_eq!(
            reg.canaries(&Ref::new(Kind::Deployment, "test", "shared")),
            ["a", "b"]
        );

        let change = reg.set(&key("a"), refs(&["shared", "a-new"]));
        assert_eq!(
            change.added,
            refs(&["a-new"]).into_iter().collect::<Vec<_>>()
        );
        assert_eq!(
            change.removed,
            refs(&["a-only"]).into_iter().collect::<Vec<_>>()
        );
        assert_eq!(
            reg.set(&key("a"), refs(&["shared", "a-new"])),
            Change::default()
        );

        let change = reg.remove(&key("b"));
        assert!(change.removed.is_empty(), "a still references it");
        let change = reg.remove(&key("a"));
        assert_eq!(
            change.removed,
            refs(&["a-new", "shared"]).into_iter().collect::<Vec<_>>()
        );
        assert!(reg.counts().is_empty());
    }

    #[test]
    fn references_added_after_an_epoch_are_told_apart() {
        let reg = Registry::default();
        reg.set(&key("a"), refs(&["early"]));
        let listed_from = reg.epoch();
        reg.set(&key("b"), refs(&["late", "early"]));
        let mut covered = reg.referenced_at(Kind::Deployment, listed_from);
        covered.sort();
        assert_eq!(covered, refs(&["early"]).into_iter().collect::<Vec<_>>());
        assert!(reg.referenced_at(Kind::Service, listed_from).is_empty());
    }
}
