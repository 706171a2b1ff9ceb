//! Histories built from watches, so a scenario sees every status the operator wrote and every
//! weight it routed, however quickly they follow each other.

use std::sync::{Arc, Mutex};

use futures::StreamExt;
use kube::Client;
use kube::api::{Api, DynamicObject};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::Value;
use tokio::task::JoinHandle;

use crate::Result;
use crate::scenario::resource;

/// The parts of a Canary status the scenarios assert on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusDigest {
    pub phase: String,
    pub canary_weight: i64,
    pub failed_checks: i64,
    pub iterations: i64,
}

/// Routed weights (primary, canary).
pub type Weights = (i64, i64);

/// A sequence of distinct consecutive values extracted from one object's watch events.
pub struct History<T> {
    values: Arc<Mutex<Vec<T>>>,
    task: JoinHandle<()>,
}

impl<T: Clone + PartialEq + Send + 'static> History<T> {
    fn start(
        client: Client,
        namespace: &str,
        api_version: &str,
        kind: &str,
        name: &str,
        extract: impl Fn(&Value) -> Option<T> + Send + 'static,
    ) -> Result<History<T>> {
        let api: Api<DynamicObject> =
            Api::namespaced_with(client, namespace, &resource(api_version, kind)?);
        let values: Arc<Mutex<Vec<T>>> = Arc::default();
        let sink = values.clone();
        let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
        let task = tokio::spawn(async move {
            let mut stream = watcher(api, config)
                .default_backoff()
                .applied_objects()
                .boxed();
            while let Some(item) = stream.next().await {
                let Ok(obj) = item else { continue };
                let Some(v) = extract(&serde_json::to_value(&obj).unwrap_or(Value::Null)) else {
                    continue;
                };
                let mut all = sink.lock().unwrap_or_else(|e| e.into_inner());
                if all.last() != Some(&v) {
                    all.push(v);
                }
            }
        });
        Ok(History { values, task })
    }

    pub fn values(&self) -> Vec<T> {
        self.values
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The values once `done` holds for them (or after 15 s, as they are then): a GET can see
    /// a change before this watch delivers it, and a watch started on an existing object has
    /// seen nothing until its first list.
    pub async fn settled(&self, done: impl Fn(&[T]) -> bool) -> Vec<T> {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
        loop {
            let values = self.values();
            if done(&values) || tokio::time::Instant::now() >= deadline {
                return values;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}

impl<T> Drop for History<T> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Every distinct (phase, weight, failed checks, iterations) the Canary `name` went through.
pub fn canary_status(client: Client, namespace: &str, name: &str) -> Result<History<StatusDigest>> {
    History::start(
        client,
        namespace,
        "flagger.app/v1beta1",
        "Canary",
        name,
        |c| {
            let s = &c["status"];
            Some(StatusDigest {
                phase: s["phase"].as_str()?.to_string(),
                canary_weight: s["canaryWeight"].as_i64().unwrap_or(0),
                failed_checks: s["failedChecks"].as_i64().unwrap_or(0),
                iterations: s["iterations"].as_i64().unwrap_or(0),
            })
        },
    )
}

/// The phases alone, consecutive repeats folded.
pub fn phases(history: &[StatusDigest]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for d in history {
        if out.last() != Some(&d.phase) {
            out.push(d.phase.clone());
        }
    }
    out
}

/// Weights of the default route of the VirtualService `name` (the last `http` route: with A/B
/// testing the first ones are the header matches).
pub fn virtual_service_weights(
    client: Client,
    namespace: &str,
    name: &str,
) -> Result<History<Weights>> {
    let svc = name.to_string();
    History::start(
        client,
        namespace,
        "networking.istio.io/v1",
        "VirtualService",
        name,
        move |vs| {
            let route = vs["spec"]["http"].as_array()?.last()?["route"]
                .as_array()?
                .clone();
            weights(&route, &svc, |d| d["destination"]["host"].as_str())
        },
    )
}

/// Weights of the last rule of the HTTPRoute `name`.
pub fn http_route_weights(client: Client, namespace: &str, name: &str) -> Result<History<Weights>> {
    let svc = name.to_string();
    History::start(
        client,
        namespace,
        "gateway.networking.k8s.io/v1",
        "HTTPRoute",
        name,
        move |r| {
            let refs = r["spec"]["rules"].as_array()?.last()?["backendRefs"]
                .as_array()?
                .clone();
            weights(&refs, &svc, |b| b["name"].as_str())
        },
    )
}

/// The NGINX canary annotation carrying the canary's share of the traffic.
pub const NGINX_CANARY_WEIGHT: &str = "nginx.ingress.kubernetes.io/canary-weight";

/// Weights of the canary Ingress `<name>-canary` the `nginx` provider clones from the user's
/// Ingress `name`: (100 - w, w) from its `canary-weight` annotation (absent: 0). Nothing is seen
/// before the clone exists.
pub fn canary_ingress_weights(
    client: Client,
    namespace: &str,
    name: &str,
) -> Result<History<Weights>> {
    History::start(
        client,
        namespace,
        "networking.k8s.io/v1",
        "Ingress",
        &format!("{name}-canary"),
        ingress_weights,
    )
}

fn ingress_weights(ingress: &Value) -> Option<Weights> {
    let w = match ingress["metadata"]["annotations"][NGINX_CANARY_WEIGHT].as_str() {
        Some(w) => w.parse::<i64>().ok()?,
        None => 0,
    };
    Some((100 - w, w))
}

fn weights(
    dests: &[Value],
    service: &str,
    name: impl Fn(&Value) -> Option<&str>,
) -> Option<Weights> {
    let mut primary = 0;
    let mut canary = 0;
    for d in dests {
        let n = name(d)?;
        let short = n.split('.').next().unwrap_or(n);
        let w = d["weight"]
            .as_i64()
            .unwrap_or(if dests.len() == 1 { 100 } else { 0 });
        if short == format!("{service}-primary") {
            primary = w;
        } else if short == format!("{service}-canary") {
            canary = w;
        }
    }
    Some((primary, canary))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn weights_follow_host_names() {
        let route = json!([
            {"destination": {"host": "podinfo-primary"}, "weight": 60},
            {"destination": {"host": "podinfo-canary.ns.svc.cluster.local"}, "weight": 40}
        ]);
        let got = weights(route.as_array().unwrap(), "podinfo", |d| {
            d["destination"]["host"].as_str()
        });
        assert_eq!(got, Some((60, 40)));
    }

    #[test]
    fn ingress_weights_come_from_the_canary_weight_annotation() {
        let i = json!({"metadata": {"annotations": {NGINX_CANARY_WEIGHT: "40"}}});
        assert_eq!(ingress_weights(&i), Some((60, 40)));
        assert_eq!(ingress_weights(&json!({"metadata": {}})), Some((100, 0)));
        let bad = json!({"metadata": {"annotations": {NGINX_CANARY_WEIGHT: "x"}}});
        assert_eq!(ingress_weights(&bad), None);
    }

    #[test]
    fn phases_fold_repeats() {
        let d = |p: &str, w| StatusDigest {
            phase: p.into(),
            canary_weight: w,
            failed_checks: 0,
            iterations: 0,
        };
        let h = [
            d("Initialized", 0),
            d("Progressing", 0),
            d("Progressing", 20),
            d("Succeeded", 0),
        ];
        assert_eq!(phases(&h), ["Initialized", "Progressing", "Succeeded"]);
    }
}
