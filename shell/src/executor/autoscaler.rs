//! `<hpa>-primary`: the target's HorizontalPodAutoscaler (autoscaling/v2) retargeted at the
//! primary. Created once; its settings follow the target's only on promotion, as in Flagger, so
//! an autoscaler change is tested with the canary before the primary gets it.

use flagger_core::api::Canary;
use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HorizontalPodAutoscaler, HorizontalPodAutoscalerSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::Api;

use super::{ExecContext, ExecError, Executor, namespace, wrap};
use crate::router::{Names, owner_references};

pub(super) async fn apply_primary(
    exec: &Executor,
    canary: &Canary,
    ctx: &ExecContext,
    promote: bool,
) -> Result<(), ExecError> {
    let desired = desired_primary_hpa(canary, ctx)?;
    let name = desired.metadata.name.clone().unwrap_or_default();
    let ns = namespace(canary)?;
    let api: Api<HorizontalPodAutoscaler> = Api::namespaced(exec.client.clone(), &ns);
    // A promotion updates the copy made at initialization; otherwise it is created once.
    let before = if promote {
        format!("updating HorizontalPodAutoscaler v2 {name}.{ns} failed: ")
    } else {
        let existing = api.get_opt(&name).await.map_err(wrap(
            format!("HorizontalPodAutoscaler v2 {name}.{ns} get query failed: "),
            "",
        ))?;
        if existing.is_some() {
            return Ok(());
        }
        format!("creating HorizontalPodAutoscaler v2 {name}.{ns} failed: ")
    };
    exec.apply(&api, &name, &desired, wrap(before, "")).await
}

pub fn primary_hpa_name(canary: &Canary) -> Option<String> {
    canary
        .spec
        .autoscaler_ref
        .as_ref()
        .map(|r| format!("{}-primary", r.name))
}

pub fn desired_primary_hpa(
    canary: &Canary,
    ctx: &ExecContext,
) -> Result<HorizontalPodAutoscaler, ExecError> {
    let reference = canary.spec.autoscaler_ref.as_ref();
    let missing =
        || ExecError::AutoscalerMissing(reference.map(|r| r.name.clone()).unwrap_or_default());
    let target = ctx.target_hpa.as_ref().ok_or_else(missing)?;
    let name = primary_hpa_name(canary).ok_or_else(missing)?;
    let spec = target.spec.clone().unwrap_or_default();
    let overrides = reference.and_then(|r| r.primary_scaler_replicas.as_ref());
    Ok(HorizontalPodAutoscaler {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: canary.metadata.namespace.clone(),
            labels: Some(ctx.labels.included(target.metadata.labels.as_ref())),
            annotations: Some(ctx.labels.included(target.metadata.annotations.as_ref())),
            owner_references: owner_references(canary),
            ..ObjectMeta::default()
        },
        spec: Some(HorizontalPodAutoscalerSpec {
            scale_target_ref: CrossVersionObjectReference {
                api_version: Some("apps/v1".into()),
                kind: "Deployment".into(),
                name: Names::of(canary).primary,
            },
            min_replicas: overrides.and_then(|o| o.min_replicas).or(spec.min_replicas),
            max_replicas: overrides
                .and_then(|o| o.max_replicas)
                .unwrap_or(spec.max_replicas),
            metrics: spec.metrics,
            behavior: spec.behavior,
        }),
        status: None,
    })
}
