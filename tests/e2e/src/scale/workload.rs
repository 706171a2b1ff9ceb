//! What the benchmark deploys: one namespace per implementation, N podinfo-like target
//! Deployments (one replica, made Ready by the cluster's `podready`) and N Canaries on the
//! istio provider with a 10 s interval and no metric checks (nothing to query; the figures are
//! about the operator and the API server).

use std::collections::HashSet;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Namespace;
use kube::Client;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::{Value, json};

use crate::Result;
use crate::fixtures;
use crate::scenario::resource;

/// Label on everything the benchmark creates for a canary's target.
pub const ROLE_LABEL: &str = "flagger-scale/role";
/// Creations in flight at once: enough to keep the API server busy without queueing past its
/// request timeout.
const CREATES_IN_FLIGHT: usize = 16;

pub fn canary_name(i: usize) -> String {
    format!("app-{i:05}")
}

/// Replaces a leftover namespace of a previous run (waiting until it is gone), then creates it.
pub async fn fresh_namespace(client: &Client, ns: &str, timeout: Duration) -> Result<()> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    if namespaces.get_opt(ns).await?.is_some() {
        delete_namespace(client, ns, timeout).await?;
    }
    let object: Namespace = serde_json::from_value(json!({"metadata": {"name": ns}}))?;
    namespaces.create(&PostParams::default(), &object).await?;
    Ok(())
}

/// Deletes `ns` and waits until the namespace controller has removed it and everything in it.
pub async fn delete_namespace(client: &Client, ns: &str, timeout: Duration) -> Result<()> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let _ = namespaces.delete(ns, &DeleteParams::background()).await;
    let deadline = tokio::time::Instant::now() + timeout;
    while namespaces.get_opt(ns).await?.is_some() {
        if tokio::time::Instant::now() > deadline {
            return Err(format!("namespace {ns} still there after {timeout:?}").into());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Ok(())
}

pub fn target(ns: &str, name: &str) -> Value {
    let mut d = fixtures::deployment(ns, name, fixtures::IMAGE_V1);
    d["spec"]["replicas"] = json!(1);
    d["metadata"]["labels"][ROLE_LABEL] = json!("target");
    d
}

pub fn canary(ns: &str, name: &str) -> Value {
    json!({
        "apiVersion": "flagger.app/v1beta1",
        "kind": "Canary",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "provider": "istio",
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "progressDeadlineSeconds": 120,
            "service": {"port": 9898, "targetPort": 9898},
            "analysis": {
                "interval": "10s",
                "threshold": 5,
                "maxWeight": 50,
                "stepWeight": 25,
                "metrics": []
            }
        }
    })
}

/// Creates the target Deployments of canaries `range`.
pub async fn create_targets(
    client: &Client,
    ns: &str,
    range: std::ops::Range<usize>,
) -> Result<()> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), ns);
    stream::iter(range.map(|i| {
        let api = api.clone();
        async move {
            let d: Deployment = serde_json::from_value(target(ns, &canary_name(i)))?;
            api.create(&PostParams::default(), &d).await?;
            Ok::<_, crate::Error>(())
        }
    }))
    .buffer_unordered(CREATES_IN_FLIGHT)
    .try_collect::<()>()
    .await
}

/// Creates the Canaries `range`.
pub async fn create_canaries(
    client: &Client,
    ns: &str,
    range: std::ops::Range<usize>,
) -> Result<()> {
    let api: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        ns,
        &resource("flagger.app/v1beta1", "Canary")?,
    );
    stream::iter(range.map(|i| {
        let api = api.clone();
        async move {
            let c: DynamicObject = serde_json::from_value(canary(ns, &canary_name(i)))?;
            api.create(&PostParams::default(), &c).await?;
            Ok::<_, crate::Error>(())
        }
    }))
    .buffer_unordered(CREATES_IN_FLIGHT)
    .try_collect::<()>()
    .await
}

/// `kubectl set image deployment/<name> podinfod=<image>`: a new revision of the target.
pub async fn set_image(client: &Client, ns: &str, name: &str, image: &str) -> Result<()> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let patch = json!({"spec": {"template": {"spec": {"containers": [
        {"name": "podinfod", "image": image}
    ]}}}});
    api.patch(name, &PatchParams::default(), &Patch::Strategic(&patch))
        .await?;
    Ok(())
}

/// Waits until `n` target Deployments of `ns` have a ready replica, with one watch.
pub async fn wait_targets_ready(
    client: &Client,
    ns: &str,
    n: usize,
    timeout: Duration,
) -> Result<()> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let config = watcher::Config::default().labels(&format!("{ROLE_LABEL}=target"));
    let mut stream = watcher(api, config)
        .default_backoff()
        .applied_objects()
        .boxed();
    let mut ready = HashSet::new();
    let wait = async {
        while ready.len() < n {
            let Some(item) = stream.next().await else {
                break;
            };
            let Ok(d) = item else { continue };
            let is_ready = d
                .status
                .as_ref()
                .and_then(|s| s.ready_replicas)
                .unwrap_or(0)
                >= 1;
            let name = d.metadata.name.unwrap_or_default();
            if is_ready && !name.ends_with("-primary") {
                ready.insert(name);
            }
        }
    };
    tokio::time::timeout(timeout, wait)
        .await
        .map_err(|_| format!("targets not ready after {timeout:?}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canaries_name_their_target_and_stay_above_flaggers_minimum_interval() {
        let c = canary("ns", &canary_name(7));
        assert_eq!(c["spec"]["targetRef"]["name"], "app-00007");
        assert_eq!(c["spec"]["analysis"]["interval"], "10s");
        let t = target("ns", "app-00007");
        assert_eq!(t["spec"]["replicas"], 1);
        assert_eq!(t["metadata"]["labels"]["app"], "app-00007");
    }
}
