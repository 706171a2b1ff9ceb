//! The primary Deployment (created and promoted as a copy of the target) and the target's scale.

use std::collections::BTreeMap;

use flagger_core::api::Canary;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};

use super::configs;
use super::{ExecContext, ExecError, Executor, Selector, TOOLKIT_MARKER, namespace, wrap};
use crate::observe::{ConfigRefs, template_hash};
use crate::router::{Names, owner_references};

/// The target template revision last copied into the primary. Flagger forces a rollout with a
/// random id instead; a hash keeps the output deterministic and changes exactly when the copied
/// content does.
pub const PROMOTED_REVISION_ANNOTATION: &str = "flagger.app/promoted-revision";
/// The checksum of the target's tracked ConfigMaps and Secrets at promotion, so that a
/// configuration-only change also rolls the primary's pods.
pub const PROMOTED_CONFIGS_ANNOTATION: &str = "flagger.app/promoted-configs";

/// `CreatePrimary` and `PromoteTemplate` write the same thing: the primary as the target is now.
/// With server-side apply both must send the same set of fields, or one would drop the other's.
pub(super) async fn apply_primary(
    exec: &Executor,
    canary: &Canary,
    ctx: &ExecContext,
) -> Result<(), ExecError> {
    // Fail on a missing target or selector label before writing any copy.
    ctx.target(canary)?;
    ctx.selector(canary)?;
    let copied = configs::copy_tracked(exec, canary, ctx).await?;
    let primary = desired_primary(canary, ctx, &copied)?;
    let ns = namespace(canary)?;
    let api: Api<Deployment> = Api::namespaced(exec.client.clone(), &ns);
    let name = Names::of(canary).primary;
    // Flagger's words for a first copy and for a promotion.
    let before = match ctx.primary {
        None => format!("createPrimaryDeployment failed: creating deployment {name}.{ns} failed: "),
        Some(_) => format!("updating deployment {name}.{ns} template spec failed: "),
    };
    exec.apply(&api, &name, &primary, wrap(before, "")).await?;
    if ctx.primary.is_none()
        && let Some(replicas) = primary.spec.as_ref().and_then(|s| s.replicas)
        && canary.spec.autoscaler_ref.is_some()
    {
        hand_replicas_to_autoscaler(&api, &name, replicas).await?;
    }
    Ok(())
}

/// The field manager that keeps an autoscaled primary's first replica count.
pub const INITIAL_REPLICAS_MANAGER: &str = "flagger-initial-replicas";

/// An autoscaled primary starts with the target's replicas, as Flagger's does, so the apex never
/// moves onto a single pod while the autoscaler has yet to act. Later copies leave `replicas`
/// out, and server-side apply would reset a field its manager stops sending: a second manager
/// co-owns the first value, so it stays until the autoscaler changes it (and takes it over).
async fn hand_replicas_to_autoscaler(
    api: &Api<Deployment>,
    name: &str,
    replicas: i32,
) -> Result<(), ExecError> {
    let body = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": { "name": name },
        "spec": { "replicas": replicas },
    });
    api.patch(
        name,
        &PatchParams::apply(INITIAL_REPLICAS_MANAGER).force(),
        &Patch::Apply(body),
    )
    .await
    .map_err(wrap(
        format!("createPrimaryDeployment failed: setting the replicas of {name} failed: "),
        "",
    ))?;
    Ok(())
}

pub(super) async fn scale_target(
    exec: &Executor,
    canary: &Canary,
    replicas: i32,
) -> Result<(), ExecError> {
    let ns = namespace(canary)?;
    let api: Api<Deployment> = Api::namespaced(exec.client.clone(), &ns);
    let name = &canary.spec.target_ref.name;
    api.patch(
        name,
        &exec.patch_params(),
        &Patch::Merge(json!({ "spec": { "replicas": replicas } })),
    )
    .await
    .map_err(wrap(
        format!("scaling {name}.{ns} to {replicas} failed: "),
        "",
    ))?;
    Ok(())
}

/// `<target>-primary`: the target's pod template and rollout settings, selected by the
/// selector label's value suffixed `-primary`, owned by the Canary, reading the `-primary`
/// copies of the ConfigMaps and Secrets in `copied`.
pub fn desired_primary(
    canary: &Canary,
    ctx: &ExecContext,
    copied: &ConfigRefs,
) -> Result<Deployment, ExecError> {
    let target = ctx.target(canary)?;
    let selector = ctx.selector(canary)?;
    let names = Names::of(canary);
    let spec = target.spec.clone().unwrap_or_default();
    // The selector is immutable: an existing primary keeps whatever it was created with.
    let match_labels = ctx
        .primary
        .as_ref()
        .and_then(|p| p.spec.as_ref())
        .and_then(|s| s.selector.match_labels.clone())
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| BTreeMap::from([(selector.label.clone(), selector.primary_value())]));

    let mut labels = ctx.labels.included(target.metadata.labels.as_ref());
    labels.insert(selector.label.clone(), selector.primary_value());
    // One rule for every copy (Flagger's first copy takes every annotation, and its first
    // promotion drops all but these): see docs/differences.md.
    let annotations = ctx.labels.included(target.metadata.annotations.as_ref());

    // An autoscaler owns the primary's replicas once it exists; sending them would fight it on
    // every promotion. The first copy starts with the target's (see `hand_replicas_to_autoscaler`).
    let replicas = (canary.spec.autoscaler_ref.is_none() || ctx.primary.is_none()).then(|| {
        spec.replicas
            .filter(|r| *r > 0)
            .or_else(|| ctx.primary.as_ref().and_then(|p| p.spec.as_ref()?.replicas))
            .unwrap_or(1)
    });

    let mut template = primary_template(&spec.template, &selector, &match_labels);
    if let Some(pod) = &mut template.spec {
        configs::rename_refs(pod, copied);
    }
    let template_annotations = template
        .metadata
        .get_or_insert_with(Default::default)
        .annotations
        .get_or_insert_with(Default::default);
    template_annotations.insert(
        PROMOTED_REVISION_ANNOTATION.into(),
        template_hash(&spec.template),
    );
    if !ctx.tracked_configs.is_empty() {
        template_annotations.insert(
            PROMOTED_CONFIGS_ANNOTATION.into(),
            flagger_core::hash::checksum(Some(&ctx.tracked_configs), None),
        );
    }

    Ok(Deployment {
        metadata: ObjectMeta {
            name: Some(names.primary),
            namespace: canary.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: Some(annotations),
            owner_references: owner_references(canary),
            ..ObjectMeta::default()
        },
        spec: Some(DeploymentSpec {
            replicas,
            strategy: spec.strategy,
            progress_deadline_seconds: spec.progress_deadline_seconds,
            min_ready_seconds: spec.min_ready_seconds,
            revision_history_limit: spec.revision_history_limit,
            selector: LabelSelector {
                match_labels: Some(match_labels),
                ..LabelSelector::default()
            },
            template,
            ..DeploymentSpec::default()
        }),
        status: None,
    })
}

fn without_toolkit(map: Option<&BTreeMap<String, String>>) -> BTreeMap<String, String> {
    map.into_iter()
        .flatten()
        .filter(|(k, _)| !k.contains(TOOLKIT_MARKER))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn primary_template(
    template: &PodTemplateSpec,
    selector: &Selector,
    match_labels: &BTreeMap<String, String>,
) -> PodTemplateSpec {
    let meta = template.metadata.as_ref();
    let mut labels = without_toolkit(meta.and_then(|m| m.labels.as_ref()));
    labels.insert(selector.label.clone(), selector.primary_value());
    labels.extend(match_labels.clone());
    let annotations = without_toolkit(meta.and_then(|m| m.annotations.as_ref()));
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(labels),
            annotations: Some(annotations),
            ..ObjectMeta::default()
        }),
        spec: template
            .spec
            .as_ref()
            .map(|s| with_primary_selectors(s, selector)),
    }
}

/// Pod (anti-)affinity and topology spread written against the target's pods must mean the
/// primary's pods in the copy, or the primary would spread around (or avoid) the canary.
fn with_primary_selectors(spec: &PodSpec, selector: &Selector) -> PodSpec {
    let mut value = serde_json::to_value(spec).expect("a PodSpec serializes");
    let primary = Value::String(selector.primary_value());
    let rename = |label_selector: Option<&mut Value>| {
        let Some(label_selector) = label_selector else {
            return;
        };
        if let Some(labels) = label_selector
            .get_mut("matchLabels")
            .and_then(Value::as_object_mut)
            && labels.get(&selector.label).and_then(Value::as_str) == Some(&selector.value)
        {
            labels.insert(selector.label.clone(), primary.clone());
        }
        // `app In (podinfo, …)` means the target's pods as much as `app: podinfo` does.
        let expressions = label_selector.get_mut("matchExpressions");
        for expression in expressions
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            if expression.get("key").and_then(Value::as_str) != Some(&selector.label) {
                continue;
            }
            let values = expression.get_mut("values").and_then(Value::as_array_mut);
            for value in values.into_iter().flatten() {
                if value.as_str() == Some(&selector.value) {
                    *value = primary.clone();
                }
            }
        }
    };
    for kind in ["podAffinity", "podAntiAffinity"] {
        let base = format!("/affinity/{kind}");
        let required = format!("{base}/requiredDuringSchedulingIgnoredDuringExecution");
        if let Some(terms) = value.pointer_mut(&required).and_then(Value::as_array_mut) {
            for term in terms {
                rename(term.get_mut("labelSelector"));
            }
        }
        let preferred = format!("{base}/preferredDuringSchedulingIgnoredDuringExecution");
        if let Some(terms) = value.pointer_mut(&preferred).and_then(Value::as_array_mut) {
            for term in terms {
                rename(term.pointer_mut("/podAffinityTerm/labelSelector"));
            }
        }
    }
    if let Some(constraints) = value
        .get_mut("topologySpreadConstraints")
        .and_then(Value::as_array_mut)
    {
        for constraint in constraints {
            rename(constraint.get_mut("labelSelector"));
        }
    }
    serde_json::from_value(value).expect("renaming label values keeps the PodSpec shape")
}
