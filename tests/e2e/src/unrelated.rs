//! Objects no Canary references, the bulk of a real cluster: Deployments scaled to zero (no
//! pod is started), ConfigMaps and Secrets, each carrying kubectl's `last-applied-configuration`
//! as `kubectl apply` leaves it. The operator must not keep them: its memory has to follow the
//! number of Canaries, not the size of the cluster (scenario `scoped_caches`, and the scale
//! benchmark's "unrelated objects" figure).

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::Client;
use kube::api::{Api, PostParams};
use serde_json::{Value, json};

use crate::Result;

/// Requests in flight at once while creating.
const PARALLEL: usize = 16;

/// The name of the `i`-th unrelated object of each kind.
pub fn unrelated_name(i: usize) -> String {
    format!("unrelated-{i}")
}

/// Creates `n` Deployments (replicas 0), `n` ConfigMaps and `n` Secrets named
/// [`unrelated_name`] in `namespace`; objects that already exist are left as they are.
pub async fn create_unrelated_objects(client: &Client, namespace: &str, n: usize) -> Result<()> {
    create_unrelated_range(client, namespace, 0..n).await
}

/// [`create_unrelated_objects`] for the indices in `range`.
pub async fn create_unrelated_range(
    client: &Client,
    namespace: &str,
    range: std::ops::Range<usize>,
) -> Result<()> {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    futures::stream::iter(range)
        .map(|i| {
            let (deployments, configmaps, secrets) =
                (deployments.clone(), configmaps.clone(), secrets.clone());
            async move {
                let name = unrelated_name(i);
                create(
                    &deployments,
                    serde_json::from_value(deployment(namespace, &name))?,
                )
                .await?;
                create(
                    &configmaps,
                    serde_json::from_value(config_map(namespace, &name))?,
                )
                .await?;
                create(&secrets, serde_json::from_value(secret(namespace, &name))?).await?;
                Ok::<_, crate::Error>(())
            }
        })
        .buffer_unordered(PARALLEL)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

async fn create<K>(api: &Api<K>, object: K) -> Result<()>
where
    K: Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    match api.create(&PostParams::default(), &object).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// `object` with the annotation `kubectl apply` adds: a second copy of the object.
fn applied(mut object: Value) -> Value {
    let record = object.to_string();
    object["metadata"]["annotations"] =
        json!({ "kubectl.kubernetes.io/last-applied-configuration": record });
    object
}

fn deployment(namespace: &str, name: &str) -> Value {
    applied(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": { "name": name, "namespace": namespace, "labels": { "app": name } },
        "spec": {
            "replicas": 0,
            "selector": { "matchLabels": { "app": name } },
            "template": {
                "metadata": { "labels": { "app": name } },
                "spec": {
                    "containers": [{
                        "name": "app",
                        "image": "registry.invalid/unrelated:1",
                        "envFrom": [{ "configMapRef": { "name": name } }, { "secretRef": { "name": name } }]
                    }]
                }
            }
        }
    }))
}

fn config_map(namespace: &str, name: &str) -> Value {
    applied(json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": { "name": name, "namespace": namespace },
        "data": { "settings.yaml": "x".repeat(512) }
    }))
}

fn secret(namespace: &str, name: &str) -> Value {
    applied(json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": { "name": name, "namespace": namespace },
        "type": "Opaque",
        "stringData": { "password": "y".repeat(64) }
    }))
}
