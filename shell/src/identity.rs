//! The copy identity of a pod template: what a target and the primary copied from it have in
//! common, whichever operator made the copy.
//!
//! Flagger (and this operator) copy the target's pod template into `<target>-primary` with a few
//! rewrites: the selector label's value and pod (anti-)affinity or topology-spread selectors get a
//! `-primary` suffix, tracked ConfigMap and Secret references point at their `-primary` copies,
//! Flux's `toolkit.fluxcd.io` metadata is dropped and a rollout-forcing annotation is added
//! (Flagger's random `flagger-id`, our promoted-revision hashes). The identity undoes those
//! rewrites on any template and hashes the rest, so "the primary already runs the target's
//! template" is an equality of two identities. That is how a Canary left at rest by Flagger,
//! whose recorded revisions are hashes in Flagger's own format, is adopted without a new run.
//!
//! The `-primary` suffix is taken off in the same places on both sides, so a copy always matches
//! its source. Two templates that differ only by such a suffix in those places also match; no
//! real change looks like that (a target does not start reading `app-config-primary` instead of
//! `app-config`), while a miss would merely run one analysis.

use k8s_openapi::api::core::v1::PodTemplateSpec;
use serde_json::{Map, Value};

use crate::executor::TOOLKIT_MARKER;
use crate::executor::deployment::{PROMOTED_CONFIGS_ANNOTATION, PROMOTED_REVISION_ANNOTATION};

const PRIMARY_SUFFIX: &str = "-primary";

/// Pod annotations an operator writes on a primary to force its rollout; never the target's.
const ROLLOUT_ANNOTATIONS: &[&str] = &[
    "flagger-id",
    PROMOTED_REVISION_ANNOTATION,
    PROMOTED_CONFIGS_ANNOTATION,
];

/// The hash of `template` with the primary rewrites undone (see the module documentation).
pub fn copy_identity(template: &PodTemplateSpec) -> String {
    let value = serde_json::to_value(template).expect("a PodTemplateSpec serializes");
    let mut normalized = Map::new();
    if let Some(metadata) = value.get("metadata").map(metadata) {
        normalized.insert("metadata".into(), metadata);
    }
    if let Some(mut spec) = value.get("spec").cloned() {
        unrename_config_refs(&mut spec);
        unrename_pod_selectors(&mut spec);
        normalized.insert("spec".into(), spec);
    }
    flagger_core::hash::template_hash(&Value::Object(normalized))
}

/// Labels and annotations only (the copy keeps nothing else of the template's metadata), without
/// Flux's markers and rollout annotations, label values unsuffixed; empty maps left out, as a
/// copy may write `{}` where the target has nothing.
fn metadata(meta: &Value) -> Value {
    let mut out = Map::new();
    let kept = |key: &str| !key.contains(TOOLKIT_MARKER) && !ROLLOUT_ANNOTATIONS.contains(&key);
    for (field, unsuffix) in [("labels", true), ("annotations", false)] {
        let Some(map) = meta.get(field).and_then(Value::as_object) else {
            continue;
        };
        let map: Map<String, Value> = map
            .iter()
            .filter(|(k, _)| kept(k))
            .map(|(k, v)| {
                let mut v = v.clone();
                if unsuffix {
                    unsuffix_string(&mut v);
                }
                (k.clone(), v)
            })
            .collect();
        if !map.is_empty() {
            out.insert(field.into(), Value::Object(map));
        }
    }
    Value::Object(out)
}

/// Every ConfigMap and Secret reference of volumes, projected volumes, env and envFrom, in
/// containers and init containers: the places a primary's references are renamed.
fn unrename_config_refs(spec: &mut Value) {
    for volume in items(spec, "volumes") {
        unsuffix_at(volume, "/configMap/name");
        unsuffix_at(volume, "/secret/secretName");
        for source in items(volume, "projected/sources") {
            unsuffix_at(source, "/configMap/name");
            unsuffix_at(source, "/secret/name");
        }
    }
    for kind in ["containers", "initContainers"] {
        for container in items(spec, kind) {
            for var in items(container, "env") {
                unsuffix_at(var, "/valueFrom/configMapKeyRef/name");
                unsuffix_at(var, "/valueFrom/secretKeyRef/name");
            }
            for source in items(container, "envFrom") {
                unsuffix_at(source, "/configMapRef/name");
                unsuffix_at(source, "/secretRef/name");
            }
        }
    }
}

/// The label selectors of pod affinity, anti-affinity and topology spread, which a copy points at
/// the primary's pods (Flagger by Deployment name, this operator by selector value).
fn unrename_pod_selectors(spec: &mut Value) {
    for kind in ["podAffinity", "podAntiAffinity"] {
        let base = format!("affinity/{kind}");
        for term in items(
            spec,
            &format!("{base}/requiredDuringSchedulingIgnoredDuringExecution"),
        ) {
            unsuffix_selector(term.get_mut("labelSelector"));
        }
        for term in items(
            spec,
            &format!("{base}/preferredDuringSchedulingIgnoredDuringExecution"),
        ) {
            unsuffix_selector(term.pointer_mut("/podAffinityTerm/labelSelector"));
        }
    }
    for constraint in items(spec, "topologySpreadConstraints") {
        unsuffix_selector(constraint.get_mut("labelSelector"));
    }
}

fn unsuffix_selector(selector: Option<&mut Value>) {
    let Some(selector) = selector else {
        return;
    };
    if let Some(labels) = selector
        .get_mut("matchLabels")
        .and_then(Value::as_object_mut)
    {
        labels.values_mut().for_each(unsuffix_string);
    }
    for expression in items(selector, "matchExpressions") {
        for value in items(expression, "values") {
            unsuffix_string(value);
        }
    }
}

/// The elements of the array at `path` (`a/b`), none when it is absent or not an array.
fn items<'a>(value: &'a mut Value, path: &str) -> impl Iterator<Item = &'a mut Value> {
    value
        .pointer_mut(&format!("/{path}"))
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
}

fn unsuffix_at(value: &mut Value, pointer: &str) {
    if let Some(v) = value.pointer_mut(pointer) {
        unsuffix_string(v);
    }
}

fn unsuffix_string(value: &mut Value) {
    if let Some(stem) = value.as_str().and_then(|s| s.strip_suffix(PRIMARY_SUFFIX)) {
        *value = Value::String(stem.to_string());
    }
}

#[cfg(test)]
mod tests {
    use crate::executor::ExecContext;
    use crate::executor::deployment::desired_primary;
    use crate::observe::{ConfigRefs, workload};
    use k8s_openapi::api::apps::v1::Deployment;
    use serde_json::json;
    use std::collections::BTreeMap;
    use std::sync::Arc;

    /// A target as users write it: Flux metadata, config from a ConfigMap and a Secret, spread
    /// and anti-affinity against its own pods.
    fn target() -> Deployment {
        serde_json::from_value(json!({
            "metadata": { "name": "podinfo", "namespace": "test",
                          "labels": { "kustomize.toolkit.fluxcd.io/name": "apps" } },
            "spec": {
                "replicas": 2,
                "selector": { "matchLabels": { "app": "podinfo" } },
                "template": {
                    "metadata": {
                        "labels": { "app": "podinfo", "kustomize.toolkit.fluxcd.io/name": "apps" },
                        "annotations": { "prometheus.io/scrape": "true" }
                    },
                    "spec": {
                        "containers": [{
                            "name": "podinfod", "image": "ghcr.io/stefanprodan/podinfo:6.0.0",
                            "envFrom": [{ "configMapRef": { "name": "podinfo-config-env" } }],
                            "env": [{ "name": "TOKEN", "valueFrom": {
                                "secretKeyRef": { "name": "podinfo-secret", "key": "token" } } }]
                        }],
                        "volumes": [{ "name": "config", "configMap": { "name": "podinfo-config-vol" } }],
                        "affinity": { "podAntiAffinity": {
                            "preferredDuringSchedulingIgnoredDuringExecution": [{
                                "weight": 100,
                                "podAffinityTerm": {
                                    "topologyKey": "kubernetes.io/hostname",
                                    "labelSelector": { "matchExpressions": [
                                        { "key": "app", "operator": "In", "values": ["podinfo"] }
                                    ]}
                                }
                            }]
                        }},
                        "topologySpreadConstraints": [{
                            "maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
                            "whenUnsatisfiable": "ScheduleAnyway",
                            "labelSelector": { "matchLabels": { "app": "podinfo" } }
                        }]
                    }
                }
            }
        }))
        .unwrap()
    }

    /// `podinfo-primary` as Flagger v1.44 creates it from [`target`] with config tracking on:
    /// suffixed labels and selectors, `-primary` config copies, Flux labels dropped and a random
    /// `flagger-id` on the pods.
    fn flagger_primary() -> Deployment {
        serde_json::from_value(json!({
            "metadata": { "name": "podinfo-primary", "namespace": "test",
                          "labels": { "app": "podinfo-primary" } },
            "spec": {
                "replicas": 2,
                "selector": { "matchLabels": { "app": "podinfo-primary" } },
                "template": {
                    "metadata": {
                        "labels": { "app": "podinfo-primary" },
                        "annotations": {
                            "prometheus.io/scrape": "true",
                            "flagger-id": "8f5a3e4c-0b1d-4f6e-9a27-3c5d1e2f4a6b"
                        }
                    },
                    "spec": {
                        "containers": [{
                            "name": "podinfod", "image": "ghcr.io/stefanprodan/podinfo:6.0.0",
                            "envFrom": [{ "configMapRef": { "name": "podinfo-config-env-primary" } }],
                            "env": [{ "name": "TOKEN", "valueFrom": {
                                "secretKeyRef": { "name": "podinfo-secret-primary", "key": "token" } } }]
                        }],
                        "volumes": [{ "name": "config", "configMap": { "name": "podinfo-config-vol-primary" } }],
                        "affinity": { "podAntiAffinity": {
                            "preferredDuringSchedulingIgnoredDuringExecution": [{
                                "weight": 100,
                                "podAffinityTerm": {
                                    "topologyKey": "kubernetes.io/hostname",
                                    "labelSelector": { "matchExpressions": [
                                        { "key": "app", "operator": "In", "values": ["podinfo-primary"] }
                                    ]}
                                }
                            }]
                        }},
                        "topologySpreadConstraints": [{
                            "maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
                            "whenUnsatisfiable": "ScheduleAnyway",
                            "labelSelector": { "matchLabels": { "app": "podinfo-primary" } }
                        }]
                    }
                }
            }
        }))
        .unwrap()
    }

    fn identity(d: &Deployment) -> String {
        workload(d, None, BTreeMap::new()).copy_identity
    }

    #[test]
    fn a_flagger_primary_has_the_identity_of_its_target() {
        let (target, primary) = (target(), flagger_primary());
        assert_eq!(identity(&primary), identity(&target));
        // The revision hashes themselves differ: the copy is not byte for byte the target.
        let hash = |d: &Deployment| workload(d, None, BTreeMap::new()).template_hash;
        assert_ne!(hash(&primary), hash(&target));
    }

    #[test]
    fn a_primary_running_another_template_does_not_match() {
        let mut target = target();
        let pod = target
            .spec
            .as_mut()
            .unwrap()
            .template
            .spec
            .as_mut()
            .unwrap();
        pod.containers[0].image = Some("ghcr.io/stefanprodan/podinfo:6.0.1".into());
        assert_ne!(identity(&flagger_primary()), identity(&target));

        // Reading another ConfigMap is a new template too, suffix or not.
        let mut target = self::target();
        let pod = target
            .spec
            .as_mut()
            .unwrap()
            .template
            .spec
            .as_mut()
            .unwrap();
        pod.volumes.as_mut().unwrap()[0]
            .config_map
            .as_mut()
            .unwrap()
            .name = "podinfo-config-v2".into();
        assert_ne!(identity(&flagger_primary()), identity(&target));
    }

    #[test]
    fn a_primary_this_operator_copied_has_the_identity_of_its_target() {
        let canary = flagger_core::api::Canary::new(
            "podinfo",
            serde_json::from_value(json!({
                "targetRef": { "apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo" },
                "service": { "port": 9898 }
            }))
            .unwrap(),
        );
        let ctx = ExecContext {
            target: Some(Arc::new(target())),
            tracked_configs: BTreeMap::from([("configmap/podinfo-config-vol".into(), "c".into())]),
            ..ExecContext::default()
        };
        let copied = ConfigRefs::of(target().spec.unwrap().template.spec.as_ref().unwrap());
        let primary = desired_primary(&canary, &ctx, &copied).unwrap();
        assert_eq!(identity(&primary), identity(&target()));
    }
}
