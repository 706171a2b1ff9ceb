//! Where traffic could go, watched throughout a scenario: every Pod, Service, EndpointSlice and
//! VirtualService of the namespace, each change kept with its resourceVersion.
//!
//! The four watches are separate streams and may deliver changes in any order relative to each
//! other; all the objects live in the one etcd of the test cluster, whose revision is every
//! resourceVersion, so sorting the changes by it rebuilds the order in which they happened. The
//! checks replay that order and look at the namespace after every change: which pods a Service
//! selects, which are Ready, how many ready endpoints its EndpointSlices list, which Services a
//! VirtualService sends a share of the traffic to.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::watcher::{self, Event};
use serde_json::Value;
use tokio::task::JoinHandle;

use crate::Result;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Pod,
    Service,
    EndpointSlice,
    VirtualService,
}

/// One change: the object after it, `None` once deleted.
#[derive(Debug, Clone)]
pub struct Change {
    pub rv: u64,
    pub kind: Kind,
    pub name: String,
    pub object: Option<Value>,
}

pub struct TrafficWatch {
    changes: Arc<Mutex<Vec<Change>>>,
    tasks: Vec<JoinHandle<()>>,
}

fn resource_version(obj: &Value) -> Option<u64> {
    obj["metadata"]["resourceVersion"].as_str()?.parse().ok()
}

impl TrafficWatch {
    pub fn start(client: Client, namespace: &str) -> Result<TrafficWatch> {
        let changes: Arc<Mutex<Vec<Change>>> = Arc::default();
        let kinds = [
            (Kind::Pod, "", "v1", "Pod", "pods"),
            (Kind::Service, "", "v1", "Service", "services"),
            (
                Kind::EndpointSlice,
                "discovery.k8s.io",
                "v1",
                "EndpointSlice",
                "endpointslices",
            ),
            (
                Kind::VirtualService,
                "networking.istio.io",
                "v1",
                "VirtualService",
                "virtualservices",
            ),
        ];
        let mut tasks = Vec::new();
        for (kind, group, version, k, plural) in kinds {
            let ar = ApiResource::from_gvk_with_plural(
                &GroupVersionKind::gvk(group, version, k),
                plural,
            );
            let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &ar);
            let sink = changes.clone();
            tasks.push(tokio::spawn(async move {
                let mut stream = watcher::watcher(api, watcher::Config::default()).boxed();
                while let Some(event) = stream.next().await {
                    let (obj, deleted) = match event {
                        Ok(Event::Apply(o) | Event::InitApply(o)) => (o, false),
                        Ok(Event::Delete(o)) => (o, true),
                        _ => continue,
                    };
                    let value = serde_json::to_value(&obj).unwrap_or(Value::Null);
                    let Some(rv) = resource_version(&value) else {
                        continue;
                    };
                    let name = obj.metadata.name.clone().unwrap_or_default();
                    sink.lock().unwrap_or_else(|e| e.into_inner()).push(Change {
                        rv,
                        kind,
                        name,
                        object: (!deleted).then_some(value),
                    });
                }
            }));
        }
        Ok(TrafficWatch { changes, tasks })
    }

    /// Every change so far, in the order they happened (by resourceVersion).
    pub fn changes(&self) -> Vec<Change> {
        let mut all = self
            .changes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        all.sort_by_key(|c| c.rv);
        all
    }

    /// The namespace after each change, in order, each with the resourceVersion that made it.
    pub fn states(&self) -> Vec<(u64, State)> {
        let mut state = State::default();
        let mut out: Vec<(u64, State)> = Vec::new();
        for c in self.changes() {
            let map = match c.kind {
                Kind::Pod => &mut state.pods,
                Kind::Service => &mut state.services,
                Kind::EndpointSlice => &mut state.slices,
                Kind::VirtualService => &mut state.virtual_services,
            };
            // A relisted object replays an older version: keep the newest.
            let newer = map
                .get(&c.name)
                .is_none_or(|old| resource_version(old).is_none_or(|rv| rv <= c.rv));
            if !newer {
                continue;
            }
            match c.object {
                Some(o) => map.insert(c.name.clone(), o),
                None => map.remove(&c.name),
            };
            match out.last_mut() {
                Some((rv, last)) if *rv == c.rv => *last = state.clone(),
                _ => out.push((c.rv, state.clone())),
            }
        }
        out
    }
}

impl Drop for TrafficWatch {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// The namespace's pods, Services, EndpointSlices and VirtualServices at one point.
#[derive(Debug, Clone, Default)]
pub struct State {
    pub pods: BTreeMap<String, Value>,
    pub services: BTreeMap<String, Value>,
    pub slices: BTreeMap<String, Value>,
    pub virtual_services: BTreeMap<String, Value>,
}

fn pod_ready(pod: &Value) -> bool {
    pod["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

/// Selected pods of a Service: (live, ready) pod names; a pod being deleted is not live.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selected {
    pub live: Vec<String>,
    pub ready: Vec<String>,
}

impl State {
    /// The selector of Service `name`, `None` when it does not exist.
    pub fn selector(&self, name: &str) -> Option<BTreeMap<String, String>> {
        let svc = self.services.get(name)?;
        Some(
            svc["spec"]["selector"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                        .collect()
                })
                .unwrap_or_default(),
        )
    }

    /// The pods Service `name` selects; `None` when it does not exist or selects nothing.
    pub fn selected(&self, name: &str) -> Option<Selected> {
        let selector = self.selector(name)?;
        if selector.is_empty() {
            return None;
        }
        let mut out = Selected::default();
        for (pod_name, pod) in &self.pods {
            let labels = &pod["metadata"]["labels"];
            let matches = selector
                .iter()
                .all(|(k, v)| labels[k].as_str() == Some(v.as_str()));
            if !matches || !pod["metadata"]["deletionTimestamp"].is_null() {
                continue;
            }
            out.live.push(pod_name.clone());
            if pod_ready(pod) {
                out.ready.push(pod_name.clone());
            }
        }
        Some(out)
    }

    /// Ready endpoints in the EndpointSlices of Service `name` (a missing `ready` condition
    /// counts as ready, as the API documents).
    pub fn ready_endpoints(&self, service: &str) -> usize {
        self.slices
            .values()
            .filter(|s| s["metadata"]["labels"]["kubernetes.io/service-name"] == service)
            .flat_map(|s| s["endpoints"].as_array().cloned().unwrap_or_default())
            .filter(|e| e["conditions"]["ready"].as_bool() != Some(false))
            .count()
    }

    /// The (short host, weight) pairs of every route of VirtualService `name` that carry traffic
    /// (a lone destination without a weight carries all of its route's).
    pub fn routed_hosts(&self, name: &str) -> Option<Vec<(String, i64)>> {
        let vs = self.virtual_services.get(name)?;
        let mut out = Vec::new();
        for route in vs["spec"]["http"].as_array().into_iter().flatten() {
            let dests = route["route"].as_array().cloned().unwrap_or_default();
            for d in &dests {
                let host = d["destination"]["host"].as_str().unwrap_or_default();
                let short = host.split('.').next().unwrap_or(host).to_string();
                let weight = d["weight"]
                    .as_i64()
                    .unwrap_or(if dests.len() == 1 { 100 } else { 0 });
                if weight > 0 {
                    out.push((short, weight));
                }
            }
        }
        Some(out)
    }
}

/// What went wrong with the traffic of an apex Service `apex` and its VirtualService of the same
/// name in the states from `from_rv` on:
/// - once the apex has selected a ready pod, it always selects one, and whenever its selector
///   changes every live pod it selects from then on is Ready;
/// - once its EndpointSlices have listed a ready endpoint, they always list one;
/// - every Service the VirtualService sends a share of the traffic to exists and selects a
///   ready pod.
///
/// Each finding names the resourceVersion where it was seen.
pub fn violations(states: &[(u64, State)], apex: &str, from_rv: u64) -> Vec<String> {
    let mut out = Vec::new();
    let mut serving = false;
    let mut had_endpoint = false;
    let mut last_selector = None;
    for (rv, st) in states {
        let selected = st.selected(apex);
        let selector = st.selector(apex);
        let ready = selected.as_ref().map_or(0, |s| s.ready.len());
        let endpoints = st.ready_endpoints(apex);
        let checked = *rv >= from_rv;
        if checked && serving && ready == 0 {
            out.push(format!(
                "rv {rv}: Service {apex} (selector {selector:?}) selects no ready pod: {selected:?}"
            ));
        }
        if checked
            && serving
            && last_selector.is_some()
            && selector != last_selector
            && let Some(s) = &selected
            && s.ready.len() != s.live.len()
        {
            out.push(format!(
                "rv {rv}: Service {apex} switched to selector {selector:?} with unready pods: {s:?}"
            ));
        }
        if checked && had_endpoint && endpoints == 0 {
            out.push(format!(
                "rv {rv}: the EndpointSlices of Service {apex} list no ready endpoint"
            ));
        }
        if checked && let Some(hosts) = st.routed_hosts(apex) {
            for (host, weight) in hosts {
                let target = st.selected(&host);
                if target.as_ref().is_none_or(|t| t.ready.is_empty()) {
                    out.push(format!(
                        "rv {rv}: VirtualService {apex} sends {weight}% to {host}, which selects no ready pod: {target:?}"
                    ));
                }
            }
        }
        serving |= ready > 0;
        had_endpoint |= endpoints > 0;
        last_selector = selector;
    }
    out
}

/// The distinct consecutive selectors of Service `name` (absent: `None`).
pub fn selector_history(
    states: &[(u64, State)],
    name: &str,
) -> Vec<Option<BTreeMap<String, String>>> {
    let mut out = Vec::new();
    for (_, st) in states {
        let s = st.selector(name);
        if out.last() != Some(&s) {
            out.push(s);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(app: &str, ready: bool) -> Value {
        json!({
            "metadata": {"labels": {"app": app}},
            "status": {"conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}
        })
    }

    fn svc(app: &str) -> Value {
        json!({"spec": {"selector": {"app": app}}})
    }

    fn state(pods: &[(&str, Value)], apex_app: &str) -> State {
        let mut st = State::default();
        for (n, p) in pods {
            st.pods.insert((*n).into(), p.clone());
        }
        st.services.insert("podinfo".into(), svc(apex_app));
        st
    }

    #[test]
    fn switching_the_apex_to_unready_pods_is_a_violation() {
        let before = state(&[("a", pod("podinfo", true))], "podinfo");
        let after = state(
            &[
                ("a", pod("podinfo", true)),
                ("p", pod("podinfo-primary", false)),
            ],
            "podinfo-primary",
        );
        let v = violations(&[(1, before.clone()), (2, after)], "podinfo", 0);
        assert_eq!(v.len(), 2, "{v:?}");
        let ready_after = state(
            &[
                ("a", pod("podinfo", true)),
                ("p", pod("podinfo-primary", true)),
            ],
            "podinfo-primary",
        );
        assert!(violations(&[(1, before), (2, ready_after)], "podinfo", 0).is_empty());
    }

    #[test]
    fn weights_on_a_service_without_ready_pods_are_a_violation() {
        let mut st = state(&[("p", pod("podinfo-primary", true))], "podinfo-primary");
        st.services
            .insert("podinfo-primary".into(), svc("podinfo-primary"));
        st.services.insert("podinfo-canary".into(), svc("podinfo"));
        st.virtual_services.insert(
            "podinfo".into(),
            json!({"spec": {"http": [{"route": [
                {"destination": {"host": "podinfo-primary"}, "weight": 80},
                {"destination": {"host": "podinfo-canary.ns.svc.cluster.local"}, "weight": 20}
            ]}]}}),
        );
        let v = violations(&[(5, st.clone())], "podinfo", 0);
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].contains("podinfo-canary"), "{v:?}");
        assert!(
            violations(&[(5, st)], "podinfo", 6).is_empty(),
            "before from_rv"
        );
    }
}
