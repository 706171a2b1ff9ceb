//! What is left of an object before it enters a cache: the fields some decision reads, nothing
//! else. Readers, by kind:
//! - Deployment: the pod template (revision hash, copy identity, config refs), replicas,
//!   selector, strategy and deadlines (the primary copy, [`crate::executor::deployment`]),
//!   labels and annotations (copied per `-include-label-prefix`), generation and the rollout
//!   status in [`crate::observe::workload`] (observed generation, replica counts, the
//!   `Progressing` and `Available` conditions' type, status, reason and update time);
//! - Service: metadata and spec ([`crate::executor::services`] drift), never status;
//! - HorizontalPodAutoscaler: metadata and spec (the primary copy, min replicas), never status;
//! - ConfigMap and Secret: `.data` (the checksum), the Secret's type and the
//!   `flagger.app/config-tracking` annotation; the executor reads the content it copies with a
//!   GET of its own.
//!
//! Managed fields are dropped but for our own server-side apply entry ([`crate::drift`] reads
//! it); kubectl's `last-applied-configuration` (a second copy of the whole object) is dropped
//! unless `-include-label-prefix` would copy it to the primary, as Flagger does.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::executor::LabelSettings;
use crate::executor::routes::KUBECTL_LAST_APPLIED;
use crate::observe::{CONFIG_TRACKING_ANNOTATION, TRACKED_SECRET_TYPES};

/// Strips what no decision reads.
pub trait Prune {
    fn prune(&mut self, labels: &LabelSettings);
}

/// Managed fields but our own apply entry (as text); kubectl's record unless it would be copied.
fn prune_meta(meta: &mut ObjectMeta, labels: &LabelSettings) {
    if let Some(entries) = &mut meta.managed_fields {
        crate::drift::keep_our_apply_entry(entries, crate::executor::FIELD_MANAGER);
        if entries.is_empty() {
            meta.managed_fields = None;
        }
    }
    let copied = |key: &str| {
        !labels
            .included(Some(&BTreeMap::from([(key.to_string(), String::new())])))
            .is_empty()
    };
    if let Some(annotations) = &mut meta.annotations
        && !copied(KUBECTL_LAST_APPLIED)
    {
        annotations.remove(KUBECTL_LAST_APPLIED);
    }
}

impl Prune for Deployment {
    fn prune(&mut self, labels: &LabelSettings) {
        prune_meta(&mut self.metadata, labels);
        self.status = self.status.take().map(|s| DeploymentStatus {
            observed_generation: s.observed_generation,
            replicas: s.replicas,
            updated_replicas: s.updated_replicas,
            available_replicas: s.available_replicas,
            conditions: s.conditions.map(|cs| {
                cs.into_iter()
                    .filter(|c| c.type_ == "Progressing" || c.type_ == "Available")
                    .map(|c| DeploymentCondition {
                        type_: c.type_,
                        status: c.status,
                        reason: c.reason,
                        last_update_time: c.last_update_time,
                        ..DeploymentCondition::default()
                    })
                    .collect()
            }),
            ..DeploymentStatus::default()
        });
    }
}

impl Prune for Service {
    fn prune(&mut self, labels: &LabelSettings) {
        prune_meta(&mut self.metadata, labels);
        self.status = None;
    }
}

impl Prune for HorizontalPodAutoscaler {
    fn prune(&mut self, labels: &LabelSettings) {
        prune_meta(&mut self.metadata, labels);
        self.status = None;
    }
}

/// A config keeps its name, version and the tracking opt-out: its content is hashed, not copied.
fn config_meta(meta: &mut ObjectMeta) {
    let annotations = meta.annotations.take().and_then(|a| {
        let kept: BTreeMap<_, _> = a
            .into_iter()
            .filter(|(k, _)| k == CONFIG_TRACKING_ANNOTATION)
            .collect();
        (!kept.is_empty()).then_some(kept)
    });
    *meta = ObjectMeta {
        name: meta.name.take(),
        namespace: meta.namespace.take(),
        resource_version: meta.resource_version.take(),
        annotations,
        ..ObjectMeta::default()
    };
}

impl Prune for ConfigMap {
    fn prune(&mut self, _: &LabelSettings) {
        config_meta(&mut self.metadata);
        // Flagger's checksum covers `.data` only.
        self.binary_data = None;
    }
}

impl Prune for Secret {
    fn prune(&mut self, _: &LabelSettings) {
        config_meta(&mut self.metadata);
        self.string_data = None;
        // Tokens and registry credentials are never tracked: their content is of no use here.
        let type_ = self.type_.as_deref().unwrap_or("Opaque");
        if !TRACKED_SECRET_TYPES.contains(&type_) {
            self.data = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn own_and_others() -> serde_json::Value {
        json!([
            { "manager": "flagger", "operation": "Apply", "fieldsV1": { "f:spec": {} } },
            { "manager": "flagger", "operation": "Update", "subresource": "status" },
            { "manager": "kubectl-client-side-apply", "operation": "Update" },
            { "manager": "kube-controller-manager", "operation": "Update", "subresource": "status" }
        ])
    }

    #[test]
    fn a_deployment_keeps_its_spec_and_the_status_fields_observed() {
        let mut d: Deployment = serde_json::from_value(json!({
            "metadata": {
                "name": "podinfo", "namespace": "test", "generation": 3, "resourceVersion": "42",
                "labels": { "app": "podinfo" },
                "annotations": {
                    "kubectl.kubernetes.io/last-applied-configuration": "{\"huge\":true}",
                    "team": "a"
                },
                "managedFields": own_and_others()
            },
            "spec": {
                "replicas": 2,
                "selector": { "matchLabels": { "app": "podinfo" } },
                "template": {
                    "metadata": { "labels": { "app": "podinfo" }, "annotations": { "x": "y" } },
                    "spec": { "containers": [{ "name": "app", "image": "podinfo:1" }] }
                }
            },
            "status": {
                "observedGeneration": 3, "replicas": 2, "updatedReplicas": 2, "readyReplicas": 2,
                "availableReplicas": 2, "unavailableReplicas": 0, "collisionCount": 1,
                "conditions": [
                    { "type": "Available", "status": "True", "reason": "MinimumReplicasAvailable",
                      "message": "Deployment has minimum availability.",
                      "lastUpdateTime": "2026-01-01T00:00:00Z",
                      "lastTransitionTime": "2026-01-01T00:00:00Z" },
                    { "type": "ReplicaFailure", "status": "False" }
                ]
            }
        }))
        .unwrap();
        let spec_before = serde_json::to_value(&d.spec).unwrap();
        d.prune(&LabelSettings::default());
        assert_eq!(serde_json::to_value(&d.spec).unwrap(), spec_before);
        assert_eq!(
            serde_json::to_value(&d.metadata).unwrap(),
            json!({
                "name": "podinfo", "namespace": "test", "generation": 3, "resourceVersion": "42",
                "labels": { "app": "podinfo" },
                "annotations": { "team": "a" },
                "managedFields": [
                    { "manager": "flagger", "operation": "Apply", "fieldsV1": "{\"f:spec\":{}}" }
                ]
            })
        );
        assert_eq!(
            serde_json::to_value(&d.status).unwrap(),
            json!({
                "observedGeneration": 3, "replicas": 2, "updatedReplicas": 2,
                "availableReplicas": 2,
                "conditions": [
                    { "type": "Available", "status": "True", "reason": "MinimumReplicasAvailable",
                      "lastUpdateTime": "2026-01-01T00:00:00Z" }
                ]
            })
        );
    }

    #[test]
    fn kubectls_record_stays_when_the_primary_copies_every_annotation() {
        let mut d: Deployment = serde_json::from_value(json!({
            "metadata": { "name": "podinfo", "annotations": {
                "kubectl.kubernetes.io/last-applied-configuration": "{}"
            }}
        }))
        .unwrap();
        let all = LabelSettings {
            include_label_prefixes: vec!["*".into()],
            ..LabelSettings::default()
        };
        d.prune(&all);
        assert_eq!(d.metadata.annotations.unwrap().len(), 1);
    }

    #[test]
    fn services_and_autoscalers_lose_their_status() {
        let mut s: Service = serde_json::from_value(json!({
            "metadata": { "name": "web", "managedFields": own_and_others() },
            "spec": { "selector": { "app": "web" } },
            "status": { "loadBalancer": { "ingress": [{ "ip": "10.0.0.1" }] } }
        }))
        .unwrap();
        s.prune(&LabelSettings::default());
        assert_eq!(
            serde_json::to_value(&s).unwrap(),
            json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": { "name": "web", "managedFields": [
                    { "manager": "flagger", "operation": "Apply", "fieldsV1": "{\"f:spec\":{}}" }
                ]},
                "spec": { "selector": { "app": "web" } }
            })
        );
        let mut h: HorizontalPodAutoscaler = serde_json::from_value(json!({
            "metadata": { "name": "web", "managedFields": [{ "manager": "kubectl", "operation": "Update" }] },
            "spec": { "minReplicas": 2, "maxReplicas": 4,
                      "scaleTargetRef": { "kind": "Deployment", "name": "web" } },
            "status": { "currentReplicas": 2, "desiredReplicas": 2 }
        }))
        .unwrap();
        h.prune(&LabelSettings::default());
        assert_eq!(
            serde_json::to_value(&h).unwrap(),
            json!({
                "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
                "metadata": { "name": "web" },
                "spec": { "minReplicas": 2, "maxReplicas": 4,
                          "scaleTargetRef": { "kind": "Deployment", "name": "web" } }
            })
        );
    }

    #[test]
    fn configs_keep_only_what_their_checksum_and_opt_out_read() {
        let mut cm: ConfigMap = serde_json::from_value(json!({
            "metadata": {
                "name": "cfg", "namespace": "test", "resourceVersion": "7", "uid": "u",
                "labels": { "a": "b" },
                "annotations": {
                    "flagger.app/config-tracking": "disabled",
                    "kubectl.kubernetes.io/last-applied-configuration": "{}"
                },
                "managedFields": own_and_others()
            },
            "data": { "k": "v" },
            "binaryData": { "b": "AAAA" }
        }))
        .unwrap();
        cm.prune(&LabelSettings::default());
        assert_eq!(
            serde_json::to_value(&cm).unwrap(),
            json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": { "name": "cfg", "namespace": "test", "resourceVersion": "7",
                              "annotations": { "flagger.app/config-tracking": "disabled" } },
                "data": { "k": "v" }
            })
        );
        let mut s: Secret = serde_json::from_value(json!({
            "metadata": { "name": "s", "labels": { "a": "b" } },
            "type": "Opaque",
            "data": { "k": "dg==" }
        }))
        .unwrap();
        s.prune(&LabelSettings::default());
        assert_eq!(
            serde_json::to_value(&s).unwrap(),
            json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": { "name": "s" }, "type": "Opaque", "data": { "k": "dg==" }
            })
        );
        let mut token: Secret = serde_json::from_value(json!({
            "metadata": { "name": "t" },
            "type": "kubernetes.io/service-account-token",
            "data": { "token": "dg==" }
        }))
        .unwrap();
        token.prune(&LabelSettings::default());
        assert_eq!(token.data, None);
    }
}
