//! Objects no Canary refers to, created beside the canaries: what a real cluster holds besides
//! the workloads under progressive delivery. An operator's memory should not grow with them.
//! Deployments have zero replicas, so they cost the cluster no pods.

use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::Client;
use kube::api::{Api, PostParams};
use serde_json::json;

use crate::Result;

pub const LABEL: &str = "flagger-e2e/unrelated";
const CREATES_IN_FLIGHT: usize = 16;

/// `count` Deployments, `count` ConfigMaps and `count` Secrets named `unrelated-<i>` in `ns`,
/// each with about 1 KiB of data or environment, as small real objects carry.
pub async fn create(client: &Client, ns: &str, count: usize) -> Result<()> {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let pp = PostParams::default();
    stream::iter((0..count).map(|i| {
        let (deployments, configmaps, secrets, pp) = (
            deployments.clone(),
            configmaps.clone(),
            secrets.clone(),
            pp.clone(),
        );
        async move {
            let name = format!("unrelated-{i:05}");
            deployments
                .create(&pp, &serde_json::from_value(deployment(ns, &name))?)
                .await?;
            configmaps
                .create(&pp, &serde_json::from_value(config_map(ns, &name))?)
                .await?;
            secrets
                .create(&pp, &serde_json::from_value(secret(ns, &name))?)
                .await?;
            Ok::<_, crate::Error>(())
        }
    }))
    .buffer_unordered(CREATES_IN_FLIGHT)
    .try_collect::<()>()
    .await
}

fn filler() -> String {
    "x".repeat(1024)
}

fn deployment(ns: &str, name: &str) -> serde_json::Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns, "labels": {"app": name, LABEL: "true"}},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{
                    "name": "app",
                    "image": "registry.invalid/unrelated:1",
                    "env": [{"name": "FILLER", "value": filler()}]
                }]}
            }
        }
    })
}

fn config_map(ns: &str, name: &str) -> serde_json::Value {
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": ns, "labels": {LABEL: "true"}},
        "data": {"filler": filler()}
    })
}

fn secret(ns: &str, name: &str) -> serde_json::Value {
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": ns, "labels": {LABEL: "true"}},
        "stringData": {"filler": filler()}
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unrelated_objects_parse_as_their_types_and_run_no_pods() {
        let d: Deployment = serde_json::from_value(deployment("ns", "unrelated-00001")).unwrap();
        assert_eq!(d.spec.unwrap().replicas, Some(0));
        let _: ConfigMap = serde_json::from_value(config_map("ns", "u")).unwrap();
        let s: Secret = serde_json::from_value(secret("ns", "u")).unwrap();
        assert_eq!(s.string_data.unwrap()["filler"].len(), 1024);
    }
}
