//! The three ClusterIP Services every provider routes through: `<svc>-canary` selects the
//! target's pods, `<svc>-primary` and the apex `<svc>` the primary's. The apex is written by a
//! command of its own, so that it moves to the primary only once the primary is ready.
//!
//! An apex Service that existed before the Canary is the user's: it is taken over (selector
//! and ports rewritten) but gets no owner reference and none of our metadata, so deleting the
//! Canary never deletes it, and [`revert_apex`] hands it back pointing at the target.

use std::collections::BTreeMap;
use std::sync::Arc;

use flagger_core::api::{Canary, CustomMetadata};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, Patch};
use serde_json::{Value, json};

use super::{
    ExecContext, ExecError, Executor, FIELD_MANAGER, FLUX_ANNOTATIONS, Known, Selector, namespace,
    wrap,
};
use crate::drift::{
    Shape, metadata_keyed, our_apply_entry, owned_field_drift, value_drift, written_parts,
};
use crate::router::{Names, owner_references};

/// Sidecars whose ports are the mesh's, not the application's.
const SIDECARS: &[&str] = &["istio-proxy", "envoy"];

/// `ApplyServices`: the canary and primary Services, which select only pods of their own.
pub(super) async fn apply(
    exec: &Executor,
    canary: &Canary,
    ctx: &ExecContext,
) -> Result<(), ExecError> {
    let api: Api<Service> = Api::namespaced(exec.client.clone(), &namespace(canary)?);
    let [canary_svc, primary_svc, _] = desired_services(canary, ctx)?;
    for service in [canary_svc, primary_svc] {
        let name = service.metadata.name.clone().unwrap_or_default();
        exec.apply(&api, &name, &service, update_error(&name))
            .await?;
    }
    Ok(())
}

/// `ApplyApexService`: the apex selects the primary's pods from now on. A Service the user
/// created before the Canary is taken over in place (see [`take_over_patch`]).
pub(super) async fn apply_apex(
    exec: &Executor,
    canary: &Canary,
    ctx: &ExecContext,
) -> Result<(), ExecError> {
    let names = Names::of(canary);
    let selector = ctx.selector(canary)?;
    let api: Api<Service> = Api::namespaced(exec.client.clone(), &namespace(canary)?);
    let [_, _, apex] = desired_services(canary, ctx)?;
    let apex_name = &names.apex_service;
    let ns = namespace(canary)?;
    // The cache's answer when it has one: a user's Service created in the instant before the
    // watch reports it is then written as ours (as if it had been created just after).
    let existing = match &ctx.apex {
        Known::Found(s) => Some(s.clone()),
        Known::Absent => None,
        Known::Unknown => api
            .get_opt(apex_name)
            .await
            .map_err(wrap(format!("service {apex_name} get query error: "), ""))?
            .map(Arc::new),
    };
    match existing {
        Some(user_service) if !owned_by(&user_service, canary) => {
            let patch = take_over_patch(
                canary,
                ctx,
                &user_service,
                &selector.label,
                &selector.primary_value(),
            );
            api.patch(
                &names.apex_service,
                &exec.patch_params(),
                &Patch::Merge(patch),
            )
            .await
            .map_err(update_error(apex_name))?;
            Ok(())
        }
        Some(_) => {
            exec.apply(&api, apex_name, &apex, update_error(apex_name))
                .await
        }
        None => {
            let before =
                format!("reconcileService failed: service {apex_name}.{ns} create error: ");
            exec.apply(&api, apex_name, &apex, wrap(before, "")).await
        }
    }
}

/// Flagger's words for a failed Service write (server-side apply creates or updates; an update
/// is what a failure nearly always is, as the Services exist after the first reconcile).
fn update_error(name: &str) -> impl FnOnce(kube::Error) -> ExecError {
    wrap(
        format!("reconcileService failed: service {name} update error: "),
        "",
    )
}

/// Points the apex back at the target's pods and drops everything else this operator set on it
/// (owner reference included), so it outlives the Canary and serves the target alone.
pub(super) async fn revert_apex(
    exec: &Executor,
    canary: &Canary,
    ctx: &ExecContext,
) -> Result<(), ExecError> {
    let names = Names::of(canary);
    let selector = ctx.selector(canary)?;
    let api: Api<Service> = Api::namespaced(exec.client.clone(), &namespace(canary)?);
    let apex_name = &names.apex_service;
    match api
        .get_opt(apex_name)
        .await
        .map_err(wrap(format!("service {apex_name} get query error: "), ""))?
    {
        Some(user_service) if !owned_by(&user_service, canary) => {
            let patch = match kubectl_selector(&user_service) {
                Some(recorded) => selector_patch(&user_service, recorded),
                None => {
                    take_over_patch(canary, ctx, &user_service, &selector.label, &selector.value)
                }
            };
            api.patch(
                &names.apex_service,
                &exec.patch_params(),
                &Patch::Merge(patch),
            )
            .await
            .map_err(update_error(apex_name))?;
            Ok(())
        }
        _ => {
            let apex = reverted_apex(canary, ctx)?;
            exec.apply(&api, apex_name, &apex, update_error(apex_name))
                .await
        }
    }
}

/// The selector kubectl last applied to `service`, which Flagger restores on revert: the user's
/// own selector (a `tier: web` beside `app: podinfo`), not just the target's label.
fn kubectl_selector(service: &Service) -> Option<serde_json::Map<String, Value>> {
    let applied = service
        .metadata
        .annotations
        .as_ref()?
        .get(super::routes::KUBECTL_LAST_APPLIED)?;
    let applied: Value = serde_json::from_str(applied).ok()?;
    applied.pointer("/spec/selector")?.as_object().cloned()
}

/// A merge patch that sets the selector of `service` to exactly `selector`.
fn selector_patch(service: &Service, selector: serde_json::Map<String, Value>) -> Value {
    let mut patch = serde_json::Map::new();
    let current = service.spec.as_ref().and_then(|s| s.selector.as_ref());
    for key in current.into_iter().flatten().map(|(k, _)| k) {
        patch.insert(key.clone(), Value::Null);
    }
    patch.extend(selector);
    json!({ "spec": { "selector": patch } })
}

/// Canary, primary, then apex (as created by us). The core sends the apex on its own, once the
/// primary's pods serve.
pub fn desired_services(canary: &Canary, ctx: &ExecContext) -> Result<[Service; 3], ExecError> {
    let selector = ctx.selector(canary)?;
    let names = Names::of(canary);
    let spec = &canary.spec.service();
    let ports = service_ports(canary, ctx.target.as_deref());
    let headless = spec.headless.unwrap_or(false);
    let canary_svc = owned_service(
        canary,
        &names.canary_service,
        &selector,
        &selector.value,
        spec.canary.as_ref(),
        headless,
        ports.clone(),
    );
    let primary_svc = owned_service(
        canary,
        &names.primary_service,
        &selector,
        &selector.primary_value(),
        spec.primary.as_ref(),
        headless,
        ports.clone(),
    );
    let apex = owned_service(
        canary,
        &names.apex_service,
        &selector,
        &selector.primary_value(),
        spec.apex.as_ref(),
        false,
        ports,
    );
    Ok([canary_svc, primary_svc, apex])
}

/// The apex as handed back: target selector, no owner reference, none of our metadata.
pub fn reverted_apex(canary: &Canary, ctx: &ExecContext) -> Result<Service, ExecError> {
    let selector = ctx.selector(canary)?;
    let ports = service_ports(canary, ctx.target.as_deref());
    Ok(bare_service(
        canary,
        &Names::of(canary).apex_service,
        &selector,
        &selector.value,
        ports,
    ))
}

/// A merge patch that makes someone else's Service select `<label>: selector_value` and serve
/// exactly our ports, as Flagger's update does. Server-side apply cannot do this: it merges
/// ports by number with the owner's (two ports named `http` are then invalid) and leaves their
/// selector keys in place. Metadata, type and owner stay the user's; node ports are kept.
pub fn take_over_patch(
    canary: &Canary,
    ctx: &ExecContext,
    existing: &Service,
    label: &str,
    selector_value: &str,
) -> Value {
    let spec = existing.spec.as_ref();
    let mut selector = serde_json::Map::new();
    for key in spec
        .and_then(|s| s.selector.as_ref())
        .into_iter()
        .flatten()
        .map(|(k, _)| k)
    {
        selector.insert(key.clone(), Value::Null);
    }
    selector.insert(label.to_string(), json!(selector_value));
    let old_ports = spec.and_then(|s| s.ports.as_deref()).unwrap_or_default();
    let ports: Vec<ServicePort> = service_ports(canary, ctx.target.as_deref())
        .into_iter()
        .map(|mut port| {
            port.node_port = old_ports
                .iter()
                .find(|old| old.name == port.name)
                .and_then(|old| old.node_port);
            port
        })
        .collect();
    json!({ "spec": { "selector": selector, "ports": ports } })
}

/// How the Services as cached differ from what [`apply`] and [`apply_apex`] would write
/// (canary, primary, apex; `None` where nothing differs or the Service is missing). A Service
/// of ours is compared in everything we write; a user's apex only in its ports, the one field
/// besides the selector that taking it over writes (the selector is the core's own question).
pub fn drift(
    canary: &Canary,
    ctx: &ExecContext,
    cached: [Option<&Service>; 3],
) -> Result<[Option<String>; 3], ExecError> {
    let desired = desired_services(canary, ctx)?;
    let mut out: [Option<String>; 3] = Default::default();
    for (i, (desired, actual)) in desired.iter().zip(cached).enumerate() {
        let Some(actual) = actual else { continue };
        out[i] = if i < 2 || owned_by(actual, canary) {
            owned_service_drift(desired, actual)
        } else {
            user_apex_drift(canary, ctx, actual)
        };
    }
    Ok(out)
}

/// Ports merge by port and protocol; the API server adds node ports (to non-ClusterIP types).
const SERVICE_SHAPE: Shape = Shape {
    keyed: |path| match path {
        ["spec", "ports"] => Some(&["port", "protocol"]),
        other => metadata_keyed(other),
    },
    server_default: |key, _| key == "nodePort",
};

fn owned_service_drift(desired: &Service, actual: &Service) -> Option<String> {
    let desired = serde_json::to_value(desired).ok()?;
    let actual_json = serde_json::to_value(actual).ok()?;
    value_drift(
        &written_parts(&desired),
        &written_parts(&actual_json),
        &SERVICE_SHAPE,
    )
    .or_else(|| {
        let ours = our_apply_entry(actual.metadata.managed_fields.as_deref(), FIELD_MANAGER);
        owned_field_drift(ours, &desired)
    })
}

/// Taking a user's apex over writes its whole port list (a merge patch replaces lists).
fn user_apex_drift(canary: &Canary, ctx: &ExecContext, actual: &Service) -> Option<String> {
    let ports = service_ports(canary, ctx.target.as_deref());
    let actual_ports = actual.spec.as_ref().and_then(|s| s.ports.clone());
    let shape = Shape {
        keyed: |_| None,
        server_default: |key, _| key == "nodePort",
    };
    value_drift(
        &json!({ "ports": ports }),
        &json!({ "ports": actual_ports }),
        &shape,
    )
}

fn owned_by(service: &Service, canary: &Canary) -> bool {
    let refs = service.metadata.owner_references.iter().flatten();
    let mut refs = refs.filter(|r| r.kind == "Canary");
    match &canary.metadata.uid {
        Some(uid) => refs.any(|r| &r.uid == uid),
        None => refs.any(|r| Some(&r.name) == canary.metadata.name.as_ref()),
    }
}

fn owned_service(
    canary: &Canary,
    name: &str,
    selector: &Selector,
    selector_value: &str,
    metadata: Option<&CustomMetadata>,
    headless: bool,
    ports: Vec<ServicePort>,
) -> Service {
    let mut labels = metadata.and_then(|m| m.labels.clone()).unwrap_or_default();
    labels.insert(selector.label.clone(), name.to_string());
    let mut annotations = metadata
        .and_then(|m| m.annotations.clone())
        .unwrap_or_default();
    for (k, v) in FLUX_ANNOTATIONS {
        annotations.insert(k.to_string(), v.to_string());
    }
    if let Some(unmanaged) = &canary.spec.service().unmanaged_metadata {
        unmanaged.strip(&mut labels, &mut annotations);
    }
    let mut service = bare_service(canary, name, selector, selector_value, ports);
    service.metadata.labels = Some(labels);
    service.metadata.annotations = Some(annotations);
    service.metadata.owner_references = owner_references(canary);
    let spec = service.spec.get_or_insert_with(Default::default);
    spec.type_ = Some("ClusterIP".into());
    if headless {
        spec.cluster_ip = Some("None".into());
    }
    service
}

/// Only the routing fields: what is needed to take over (or hand back) a Service we do not own.
fn bare_service(
    canary: &Canary,
    name: &str,
    selector: &Selector,
    selector_value: &str,
    ports: Vec<ServicePort>,
) -> Service {
    Service {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: canary.metadata.namespace.clone(),
            ..ObjectMeta::default()
        },
        spec: Some(ServiceSpec {
            selector: Some(BTreeMap::from([(
                selector.label.clone(),
                selector_value.to_string(),
            )])),
            ports: Some(ports),
            traffic_distribution: canary.spec.service().traffic_distribution.clone(),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

/// `spec.service().port` (named `portName`, default `http`) and, with `portDiscovery`, every other
/// container port of the target except the sidecars'.
pub fn service_ports(canary: &Canary, target: Option<&Deployment>) -> Vec<ServicePort> {
    let spec = &canary.spec.service();
    let target_port = match &spec.target_port {
        Some(Value::Number(n)) => n
            .as_i64()
            .and_then(|n| i32::try_from(n).ok())
            .map_or(IntOrString::Int(spec.port), IntOrString::Int),
        Some(Value::String(s)) if !s.is_empty() => IntOrString::String(s.clone()),
        _ => IntOrString::Int(spec.port),
    };
    let mut ports = vec![ServicePort {
        name: Some(
            spec.port_name
                .clone()
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| "http".into()),
        ),
        port: spec.port,
        target_port: Some(target_port.clone()),
        protocol: Some("TCP".into()),
        app_protocol: spec.app_protocol.clone(),
        ..ServicePort::default()
    }];
    if !spec.port_discovery.unwrap_or(false) {
        return ports;
    }
    let containers = target
        .and_then(|t| t.spec.as_ref())
        .and_then(|s| s.template.spec.as_ref())
        .map(|s| s.containers.as_slice())
        .unwrap_or_default();
    for container in containers
        .iter()
        .filter(|c| !SIDECARS.contains(&c.name.as_str()))
    {
        for (index, cp) in container.ports.iter().flatten().enumerate() {
            let is_main = match &target_port {
                IntOrString::Int(p) => *p == cp.container_port,
                IntOrString::String(n) => cp.name.as_deref() == Some(n.as_str()),
            };
            if is_main || ports.iter().any(|p| p.port == cp.container_port) {
                continue;
            }
            let name = cp
                .name
                .clone()
                .unwrap_or_else(|| format!("tcp-{}-{index}", container.name));
            ports.push(ServicePort {
                name: Some(name),
                port: cp.container_port,
                target_port: Some(IntOrString::Int(cp.container_port)),
                protocol: Some("TCP".into()),
                ..ServicePort::default()
            });
        }
    }
    ports
}
