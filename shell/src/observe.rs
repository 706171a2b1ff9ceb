//! Cluster objects turned into what the decision function observes: a Deployment becomes a
//! [`Workload`], the ConfigMaps and Secrets its pods use become checksums, a mesh object becomes
//! the [`Routes`] it currently sends.

use std::collections::{BTreeMap, BTreeSet};

use flagger_core::{Routes, Workload};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Container, PodSpec, PodTemplateSpec, Secret, Service};
use kube::core::DynamicObject;
use sha2::{Digest, Sha256};

use crate::router::{Router, RouterError};

/// Opt-out annotation: values starting with `disable` exclude the object from tracking.
pub const CONFIG_TRACKING_ANNOTATION: &str = "flagger.app/config-tracking";

/// Secret types whose content is application configuration; service-account tokens, registry
/// credentials and the like change for reasons that are not a new revision.
pub const TRACKED_SECRET_TYPES: &[&str] = &[
    "Opaque",
    "kubernetes.io/basic-auth",
    "kubernetes.io/ssh-auth",
    "kubernetes.io/tls",
];

pub fn workload(
    deployment: &Deployment,
    hpa: Option<&HorizontalPodAutoscaler>,
    configs: BTreeMap<String, String>,
) -> Workload {
    let spec = deployment.spec.as_ref();
    let status = deployment.status.as_ref();
    let template = spec.map(|s| &s.template);
    let conditions = status.and_then(|s| s.conditions.as_deref()).unwrap_or(&[]);
    let progress_deadline_exceeded = conditions.iter().any(|c| {
        c.type_ == "Progressing" && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
    });
    let unavailable_since = conditions
        .iter()
        .find(|c| {
            c.type_ == "Available"
                && c.status == "False"
                && c.reason.as_deref() == Some("MinimumReplicasUnavailable")
        })
        .and_then(|c| c.last_update_time.as_ref())
        .map(|t| t.0);
    Workload {
        template_hash: template.map(template_hash).unwrap_or_default(),
        copy_identity: template
            .map(crate::identity::copy_identity)
            .unwrap_or_default(),
        configs,
        missing_configs: Vec::new(),
        // The API server defaults a missing `spec.replicas` to 1.
        replicas: spec.and_then(|s| s.replicas).unwrap_or(1),
        generation: deployment.metadata.generation.unwrap_or(0),
        observed_generation: status.and_then(|s| s.observed_generation).unwrap_or(0),
        updated_replicas: status.and_then(|s| s.updated_replicas).unwrap_or(0),
        available_replicas: status.and_then(|s| s.available_replicas).unwrap_or(0),
        total_replicas: status.and_then(|s| s.replicas).unwrap_or(0),
        progress_deadline_exceeded,
        unavailable_since,
        autoscaler_min_replicas: hpa
            .map(|h| h.spec.as_ref().and_then(|s| s.min_replicas).unwrap_or(1)),
    }
}

/// Whether `service` selects exactly the pods `deployment` selects. Both Flagger and this
/// operator replace the apex's whole selector with the primary's label, so equality is the test;
/// a selector left with other keys (or an empty one) selects something else.
pub fn selects_pods_of(service: &Service, deployment: &Deployment) -> bool {
    let selector = service.spec.as_ref().and_then(|s| s.selector.as_ref());
    let match_labels = deployment
        .spec
        .as_ref()
        .and_then(|s| s.selector.match_labels.as_ref());
    match (selector, match_labels) {
        (Some(selector), Some(labels)) => !labels.is_empty() && selector == labels,
        _ => false,
    }
}

/// The revision identity of a pod template.
pub fn template_hash(template: &PodTemplateSpec) -> String {
    let json = serde_json::to_value(template).expect("a PodTemplateSpec serializes");
    flagger_core::hash::template_hash(&json)
}

/// Checksums of the ConfigMaps and Secrets `template` refers to, keyed `configmap/<name>` and
/// `secret/<name>`. Referenced objects absent from `configmaps`/`secrets` are left out: an
/// optional reference may legitimately point at nothing, and a missing required one keeps the
/// pods from starting, which the readiness checks report.
pub fn tracked_configs(
    template: &PodTemplateSpec,
    configmaps: &[ConfigMap],
    secrets: &[Secret],
) -> BTreeMap<String, String> {
    let refs = template
        .spec
        .as_ref()
        .map(ConfigRefs::of)
        .unwrap_or_default();
    let mut out = BTreeMap::new();
    for cm in configmaps {
        let Some(name) = cm.metadata.name.as_deref() else {
            continue;
        };
        if refs.configmaps.contains(name) && !tracking_disabled(&cm.metadata) {
            out.insert(format!("configmap/{name}"), checksum(&cm.data));
        }
    }
    for secret in secrets {
        let Some(name) = secret.metadata.name.as_deref() else {
            continue;
        };
        let type_ = secret.type_.as_deref().unwrap_or("Opaque");
        if refs.secrets.contains(name)
            && TRACKED_SECRET_TYPES.contains(&type_)
            && !tracking_disabled(&secret.metadata)
        {
            out.insert(format!("secret/{name}"), checksum(&secret.data));
        }
    }
    out
}

/// The weights a provider's routing object sends, `None` for providers without one or when the
/// object is not shaped like ours.
pub fn routes(
    provider: &str,
    canary: &flagger_core::api::Canary,
    object: &DynamicObject,
) -> Result<Option<Routes>, RouterError> {
    Ok(Router::for_provider(provider)?.read_routes(canary, object))
}

/// Why the provider's routing object does not route by its current spec yet (see
/// [`Router::routes_not_ready`]); `None` when it does or the provider is unknown.
pub fn routes_not_ready(provider: &str, object: &DynamicObject) -> Option<String> {
    Router::for_provider(provider)
        .ok()?
        .routes_not_ready(object)
}

fn tracking_disabled(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> bool {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(CONFIG_TRACKING_ANNOTATION))
        .is_some_and(|v| v.starts_with("disable"))
}

/// Flagger's checksum: the first 8 bytes of the SHA-256 of the JSON of `.data`, in hex. Go
/// marshals maps with sorted keys and `[]byte` as base64, which is exactly what serializing the
/// k8s-openapi map does, so checksums match those Flagger wrote into `status.trackedConfigs`.
fn checksum<T: serde::Serialize>(data: &T) -> String {
    let json = serde_json::to_vec(data).expect("config data serializes");
    let digest = Sha256::digest(&json);
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// The names of the ConfigMaps and Secrets a pod spec mounts or reads.
#[derive(Default, Debug, PartialEq)]
pub struct ConfigRefs {
    pub configmaps: BTreeSet<String>,
    pub secrets: BTreeSet<String>,
    /// Those referenced at least once without `optional: true`: the pods cannot start without
    /// them, and Flagger refuses to go on while one is missing.
    pub required_configmaps: BTreeSet<String>,
    pub required_secrets: BTreeSet<String>,
}

impl ConfigRefs {
    pub fn of(spec: &PodSpec) -> ConfigRefs {
        let mut refs = ConfigRefs::default();
        for volume in spec.volumes.iter().flatten() {
            if let Some(cm) = &volume.config_map {
                refs.configmap(&cm.name, cm.optional);
            }
            if let Some(secret) = &volume.secret
                && let Some(name) = &secret.secret_name
            {
                refs.secret(name, secret.optional);
            }
            let sources = volume.projected.as_ref().and_then(|p| p.sources.as_ref());
            for source in sources.into_iter().flatten() {
                if let Some(cm) = &source.config_map {
                    refs.configmap(&cm.name, cm.optional);
                }
                if let Some(secret) = &source.secret {
                    refs.secret(&secret.name, secret.optional);
                }
            }
        }
        let containers = spec
            .containers
            .iter()
            .chain(spec.init_containers.iter().flatten());
        for container in containers {
            refs.add_env(container);
        }
        refs
    }

    fn configmap(&mut self, name: &str, optional: Option<bool>) {
        self.configmaps.insert(name.to_string());
        if optional != Some(true) {
            self.required_configmaps.insert(name.to_string());
        }
    }

    fn secret(&mut self, name: &str, optional: Option<bool>) {
        self.secrets.insert(name.to_string());
        if optional != Some(true) {
            self.required_secrets.insert(name.to_string());
        }
    }

    fn add_env(&mut self, container: &Container) {
        for var in container.env.iter().flatten() {
            let Some(from) = &var.value_from else {
                continue;
            };
            if let Some(key) = &from.config_map_key_ref {
                self.configmap(&key.name, key.optional);
            }
            if let Some(key) = &from.secret_key_ref {
                self.secret(&key.name, key.optional);
            }
        }
        for source in container.env_from.iter().flatten() {
            if let Some(cm) = &source.config_map_ref {
                self.configmap(&cm.name, cm.optional);
            }
            if let Some(secret) = &source.secret_ref {
                self.secret(&secret.name, secret.optional);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment(status: serde_json::Value) -> Deployment {
        serde_json::from_value(json!({
            "metadata": { "name": "podinfo", "generation": 4 },
            "spec": {
                "replicas": 3,
                "selector": { "matchLabels": { "app": "podinfo" } },
                "template": {
                    "metadata": { "labels": { "app": "podinfo" } },
                    "spec": { "containers": [{ "name": "podinfod", "image": "podinfo:6.0.0" }] }
                }
            },
            "status": status
        }))
        .unwrap()
    }

    #[test]
    fn rollout_state_is_read_from_status_and_conditions() {
        let d = deployment(json!({
            "observedGeneration": 3,
            "replicas": 4,
            "updatedReplicas": 2,
            "availableReplicas": 3,
            "conditions": [
                { "type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded" },
                { "type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable",
                  "lastUpdateTime": "2026-11-26T14:00:00Z" }
            ]
        }));
        let w = workload(&d, None, BTreeMap::new());
        assert_eq!((w.replicas, w.generation, w.observed_generation), (3, 4, 3));
        assert_eq!(
            (w.total_replicas, w.updated_replicas, w.available_replicas),
            (4, 2, 3)
        );
        assert!(w.progress_deadline_exceeded);
        assert_eq!(
            w.unavailable_since,
            Some("2026-11-26T14:00:00Z".parse().unwrap())
        );
        assert_eq!(w.autoscaler_min_replicas, None);
    }

    #[test]
    fn a_healthy_deployment_has_no_deadline_or_outage() {
        let d = deployment(json!({
            "conditions": [
                { "type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable" },
                { "type": "Available", "status": "True", "lastUpdateTime": "2026-11-26T14:00:00Z" }
            ]
        }));
        let w = workload(&d, None, BTreeMap::new());
        assert!(!w.progress_deadline_exceeded);
        assert_eq!(w.unavailable_since, None);
    }

    #[test]
    fn autoscaler_minimum_defaults_to_one() {
        let d = deployment(json!({}));
        let mut hpa: HorizontalPodAutoscaler = serde_json::from_value(json!({
            "metadata": { "name": "podinfo" },
            "spec": { "scaleTargetRef": { "kind": "Deployment", "name": "podinfo" }, "maxReplicas": 4 }
        }))
        .unwrap();
        assert_eq!(
            workload(&d, Some(&hpa), BTreeMap::new()).autoscaler_min_replicas,
            Some(1)
        );
        hpa.spec.as_mut().unwrap().min_replicas = Some(2);
        assert_eq!(
            workload(&d, Some(&hpa), BTreeMap::new()).autoscaler_min_replicas,
            Some(2)
        );
    }

    #[test]
    fn template_hash_follows_the_template_only() {
        let a = deployment(json!({ "replicas": 3 }));
        let mut b = deployment(json!({ "replicas": 1, "observedGeneration": 9 }));
        b.spec.as_mut().unwrap().replicas = Some(0);
        b.metadata.labels = Some([("team".to_string(), "web".to_string())].into());
        let hash = |d: &Deployment| workload(d, None, BTreeMap::new()).template_hash;
        assert_eq!(hash(&a), hash(&b), "scale and status are not a revision");
        // Stable across a JSON round trip, as every read from the API server is one.
        let reread: Deployment = serde_json::from_value(serde_json::to_value(&a).unwrap()).unwrap();
        assert_eq!(hash(&a), hash(&reread));
        let mut c = deployment(json!({}));
        c.spec
            .as_mut()
            .unwrap()
            .template
            .spec
            .as_mut()
            .unwrap()
            .containers[0]
            .image = Some("podinfo:6.0.1".into());
        assert_ne!(hash(&a), hash(&c));
    }

    fn template() -> PodTemplateSpec {
        serde_json::from_value(json!({
            "spec": {
                "volumes": [
                    { "name": "cfg", "configMap": { "name": "podinfo-config" } },
                    { "name": "tls", "secret": { "secretName": "podinfo-tls" } },
                    { "name": "all", "projected": { "sources": [
                        { "configMap": { "name": "projected-config" } },
                        { "secret": { "name": "projected-secret" } }
                    ]}}
                ],
                "initContainers": [{ "name": "init", "envFrom": [{ "configMapRef": { "name": "init-env" } }] }],
                "containers": [{
                    "name": "podinfod",
                    "env": [
                        { "name": "A", "valueFrom": { "configMapKeyRef": { "name": "env-config", "key": "a" } } },
                        { "name": "B", "valueFrom": { "secretKeyRef": { "name": "env-secret", "key": "b" } } },
                        { "name": "C", "value": "plain" }
                    ],
                    "envFrom": [{ "secretRef": { "name": "env-from-secret" } }]
                }]
            }
        }))
        .unwrap()
    }

    fn configmap(name: &str, data: serde_json::Value) -> ConfigMap {
        serde_json::from_value(json!({ "metadata": { "name": name }, "data": data })).unwrap()
    }

    fn secret(name: &str, type_: &str) -> Secret {
        serde_json::from_value(
            json!({ "metadata": { "name": name }, "type": type_, "data": { "k": "dg==" } }),
        )
        .unwrap()
    }

    #[test]
    fn every_kind_of_reference_is_found() {
        let refs = ConfigRefs::of(template().spec.as_ref().unwrap());
        let names = |s: &BTreeSet<String>| s.iter().cloned().collect::<Vec<_>>();
        assert_eq!(
            names(&refs.configmaps),
            [
                "env-config",
                "init-env",
                "podinfo-config",
                "projected-config"
            ]
        );
        assert_eq!(
            names(&refs.secrets),
            [
                "env-from-secret",
                "env-secret",
                "podinfo-tls",
                "projected-secret"
            ]
        );
    }

    #[test]
    fn checksums_cover_used_objects_of_tracked_types() {
        let configmaps = [
            configmap("podinfo-config", json!({ "b": "2", "a": "1" })),
            configmap("unused", json!({ "a": "1" })),
        ];
        let secrets = [
            secret("podinfo-tls", "kubernetes.io/tls"),
            secret("env-secret", "kubernetes.io/dockerconfigjson"),
            secret("env-from-secret", "Opaque"),
        ];
        let tracked = tracked_configs(&template(), &configmaps, &secrets);
        assert_eq!(
            tracked.keys().collect::<Vec<_>>(),
            [
                "configmap/podinfo-config",
                "secret/env-from-secret",
                "secret/podinfo-tls"
            ]
        );
        // `printf '{"a":"1","b":"2"}' | sha256sum`: Go's sorted-key JSON, first 8 bytes.
        assert_eq!(tracked["configmap/podinfo-config"], "21f76dfbfe6dfe21");
        assert!(tracked.values().all(|c| c.len() == 16));
    }

    #[test]
    fn a_data_change_changes_the_checksum_and_opt_out_hides_the_object() {
        let before = tracked_configs(
            &template(),
            &[configmap("podinfo-config", json!({ "a": "1" }))],
            &[],
        );
        let after = tracked_configs(
            &template(),
            &[configmap("podinfo-config", json!({ "a": "2" }))],
            &[],
        );
        assert_ne!(
            before["configmap/podinfo-config"],
            after["configmap/podinfo-config"]
        );

        let mut disabled = configmap("podinfo-config", json!({ "a": "1" }));
        disabled.metadata.annotations = Some(
            [(
                CONFIG_TRACKING_ANNOTATION.to_string(),
                "disabled".to_string(),
            )]
            .into(),
        );
        assert!(tracked_configs(&template(), &[disabled], &[]).is_empty());
    }

    #[test]
    fn routes_are_read_with_the_providers_reader() {
        let mut vs =
            DynamicObject::new("podinfo", &crate::router::istio::virtual_service_resource());
        vs.data = json!({ "spec": { "http": [{ "route": [
            { "destination": { "host": "podinfo-primary" }, "weight": 60 },
            { "destination": { "host": "podinfo-canary" }, "weight": 40 }
        ]}]}});
        let expected = Routes {
            primary_weight: 60,
            canary_weight: 40,
            mirrored: false,
        };
        let canary = flagger_core::api::Canary::new("podinfo", Default::default());
        assert_eq!(routes("istio", &canary, &vs).unwrap(), Some(expected));
        assert_eq!(routes("kubernetes", &canary, &vs).unwrap(), None);
        assert!(routes("linkerd", &canary, &vs).is_err());
    }
}
