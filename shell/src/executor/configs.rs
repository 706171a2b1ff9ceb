//! Copies of the target's tracked ConfigMaps and Secrets for the primary (`<name>-primary`).
//!
//! Without them the primary would read the very objects the canary is testing: a ConfigMap edit
//! would reach production pods (mounted files update in place) before any analysis, and a
//! rollback could not restore the old configuration. As in Flagger, the primary's template
//! refers to the copies, and the copies change only when a revision is promoted.

use flagger_core::api::Canary;
use k8s_openapi::api::core::v1::{ConfigMap, PodSpec, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::Api;

use super::{ExecContext, ExecError, Executor, namespace, wrap};
use crate::observe::ConfigRefs;
use crate::router::owner_references;

/// Writes the `-primary` copies of every object in `ctx.tracked_configs` that still exists and
/// returns the names copied, for [`rename_refs`].
pub(super) async fn copy_tracked(
    exec: &Executor,
    canary: &Canary,
    ctx: &ExecContext,
) -> Result<ConfigRefs, ExecError> {
    let mut copied = ConfigRefs::default();
    if ctx.tracked_configs.is_empty() {
        return Ok(copied);
    }
    let ns = namespace(canary)?;
    let configmaps: Api<ConfigMap> = Api::namespaced(exec.client.clone(), &ns);
    let secrets: Api<Secret> = Api::namespaced(exec.client.clone(), &ns);
    for key in ctx.tracked_configs.keys() {
        if let Some(name) = key.strip_prefix("configmap/") {
            // Gone since it was observed: nothing to copy, and the template keeps the original
            // reference, which fails the same way for the canary.
            let Some(original) = configmaps.get_opt(name).await.map_err(wrap(
                format!("configmap {name}.{ns} get query failed : "),
                "",
            ))?
            else {
                continue;
            };
            let copy = primary_configmap(canary, ctx, &original);
            let copy_name = primary_name(name);
            let before = format!("updating configmap {copy_name}.{ns} failed: ");
            exec.apply(&configmaps, &copy_name, &copy, wrap(before, ""))
                .await?;
            copied.configmaps.insert(name.to_string());
        } else if let Some(name) = key.strip_prefix("secret/") {
            let Some(original) = secrets
                .get_opt(name)
                .await
                .map_err(wrap(format!("secret {name}.{ns} get query failed : "), ""))?
            else {
                continue;
            };
            let copy = primary_secret(canary, ctx, &original);
            let copy_name = primary_name(name);
            let before = format!("updating secret {copy_name}.{ns} failed: ");
            exec.apply(&secrets, &copy_name, &copy, wrap(before, ""))
                .await?;
            copied.secrets.insert(name.to_string());
        }
    }
    Ok(copied)
}

fn primary_name(name: &str) -> String {
    format!("{name}-primary")
}

fn copy_metadata(canary: &Canary, ctx: &ExecContext, original: &ObjectMeta) -> ObjectMeta {
    ObjectMeta {
        name: original.name.as_deref().map(primary_name),
        namespace: canary.metadata.namespace.clone(),
        labels: Some(ctx.labels.included(original.labels.as_ref())),
        owner_references: owner_references(canary),
        ..ObjectMeta::default()
    }
}

pub fn primary_configmap(canary: &Canary, ctx: &ExecContext, original: &ConfigMap) -> ConfigMap {
    ConfigMap {
        metadata: copy_metadata(canary, ctx, &original.metadata),
        data: original.data.clone(),
        binary_data: original.binary_data.clone(),
        immutable: None,
    }
}

pub fn primary_secret(canary: &Canary, ctx: &ExecContext, original: &Secret) -> Secret {
    Secret {
        metadata: copy_metadata(canary, ctx, &original.metadata),
        data: original.data.clone(),
        type_: original.type_.clone(),
        immutable: None,
        string_data: None,
    }
}

/// Points every reference to a copied object at its copy.
pub fn rename_refs(spec: &mut PodSpec, copied: &ConfigRefs) {
    let cm = |name: &mut String| {
        if copied.configmaps.contains(name.as_str()) {
            *name = primary_name(name);
        }
    };
    let secret = |name: &mut String| {
        if copied.secrets.contains(name.as_str()) {
            *name = primary_name(name);
        }
    };
    for volume in spec.volumes.iter_mut().flatten() {
        if let Some(source) = &mut volume.config_map {
            cm(&mut source.name);
        }
        if let Some(name) = volume.secret.as_mut().and_then(|s| s.secret_name.as_mut()) {
            secret(name);
        }
        let sources = volume.projected.as_mut().and_then(|p| p.sources.as_mut());
        for source in sources.into_iter().flatten() {
            if let Some(projection) = &mut source.config_map {
                cm(&mut projection.name);
            }
            if let Some(projection) = &mut source.secret {
                secret(&mut projection.name);
            }
        }
    }
    let containers = spec
        .containers
        .iter_mut()
        .chain(spec.init_containers.iter_mut().flatten());
    for container in containers {
        for var in container.env.iter_mut().flatten() {
            if let Some(from) = &mut var.value_from {
                if let Some(key) = &mut from.config_map_key_ref {
                    cm(&mut key.name);
                }
                if let Some(key) = &mut from.secret_key_ref {
                    secret(&mut key.name);
                }
            }
        }
        for source in container.env_from.iter_mut().flatten() {
            if let Some(r) = &mut source.config_map_ref {
                cm(&mut r.name);
            }
            if let Some(r) = &mut source.secret_ref {
                secret(&mut r.name);
            }
        }
    }
}
