//! Carries out core's commands against the API server.
//!
//! Every write is idempotent, so repeating a command after a crash or a conflict converges to
//! the same state: generated objects and the status are written whole with server-side apply
//! under one field manager (`flagger`); the target's replicas take a merge patch (the target is
//! the user's, we own only that field's value); finalizers take a JSON patch guarded by a `test`
//! of the list it was computed from, and none at all when already in the wanted state. An error
//! is returned as is; the controller retries on the next reconcile, which re-derives the
//! commands from the persisted status.
//!
//! Command families live in their own files: `deployment` (primary, promotion, scaling),
//! `configs` (the primary's copies of tracked ConfigMaps and Secrets),
//! `autoscaler` (primary HPA), `services` (apex/primary/canary Services), `canary` (finalizer,
//! status) and `routes` (the provider's routing objects).

pub mod autoscaler;
pub mod canary;
pub mod configs;
pub mod deployment;
pub mod routes;
pub mod services;

use std::collections::BTreeMap;
use std::sync::Arc;

use flagger_core::Command;
use flagger_core::api::Canary;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::Service;
use kube::Client;
use kube::api::{Patch, PatchParams};
use serde::Serialize;

use crate::router::RouterError;

/// The field manager of every write, and the name `kubectl` shows as the owner of our fields.
pub const FIELD_MANAGER: &str = "flagger";

/// `-selector-labels` default: the first of these present in the target's `matchLabels` is the
/// label whose value becomes `<value>-primary` on the primary.
pub const DEFAULT_SELECTOR_LABELS: &[&str] = &["app", "name", "app.kubernetes.io/name"];

pub use crate::router::{FLUX_ANNOTATIONS, TOOLKIT_MARKER};

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// Shown as client-go shows an API error (the Status message alone), which is what
    /// Flagger's `%v` of a wrapped error prints.
    #[error("{}", api_message(.0))]
    Kube(#[from] kube::Error),
    /// An error in Flagger's words: what failed, the cause, and what Flagger appends after it
    /// (e.g. `HTTPRoute podinfo.test update error: … while setting weights`).
    #[error("{before}{source}{after}")]
    Context {
        before: String,
        source: Box<ExecError>,
        after: String,
    },
    #[error("deployment {0} not found")]
    TargetMissing(String),
    #[error("deployment {deployment} spec.selector.matchLabels must contain one of {labels:?}")]
    NoSelectorLabel {
        deployment: String,
        labels: Vec<String>,
    },
    #[error("autoscaler {0} not found")]
    AutoscalerMissing(String),
    #[error(transparent)]
    Router(#[from] RouterError),
    #[error("the finalizers of canary {0} changed since they were read")]
    FinalizersChanged(String),
    #[error("canary {0} has no namespace")]
    NoNamespace(String),
}

impl ExecError {
    /// Someone else changed the object between our read and our write; retrying from a fresh
    /// read is the whole remedy.
    pub fn is_conflict(&self) -> bool {
        match self {
            ExecError::Kube(kube::Error::Api(s)) => s.is_conflict(),
            ExecError::FinalizersChanged(_) => true,
            ExecError::Context { source, .. } => source.is_conflict(),
            _ => false,
        }
    }
}

/// Wraps an error as Flagger words it: `before` + the cause + `after`.
pub(crate) fn wrap(
    before: impl Into<String>,
    after: impl Into<String>,
) -> impl FnOnce(kube::Error) -> ExecError {
    let (before, after) = (before.into(), after.into());
    move |e| ExecError::Context {
        before,
        source: Box::new(ExecError::Kube(e)),
        after,
    }
}

/// client-go's text for an API error: the Status message; kube's own text for anything else.
fn api_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) if !s.message.is_empty() => s.message.clone(),
        other => other.to_string(),
    }
}

/// The operator flags that shape generated objects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabelSettings {
    /// `-selector-labels`, in priority order.
    pub selector_labels: Vec<String>,
    /// `-include-label-prefix`: target labels and annotations with these prefixes are copied to
    /// the primary (`*` copies all, empty copies none).
    pub include_label_prefixes: Vec<String>,
}

impl Default for LabelSettings {
    fn default() -> Self {
        LabelSettings {
            selector_labels: DEFAULT_SELECTOR_LABELS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            include_label_prefixes: Vec::new(),
        }
    }
}

impl LabelSettings {
    /// From the comma-separated flag values, as Flagger reads them.
    pub fn from_flags(selector_labels: &str, include_label_prefix: &str) -> LabelSettings {
        let split = |s: &str| -> Vec<String> {
            s.split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(str::to_string)
                .collect()
        };
        LabelSettings {
            selector_labels: split(selector_labels),
            include_label_prefixes: split(include_label_prefix),
        }
    }

    /// Flagger's `includeLabelsByPrefix`: Flux markers never, `*` everything, else by prefix.
    pub fn included(&self, map: Option<&BTreeMap<String, String>>) -> BTreeMap<String, String> {
        map.into_iter()
            .flatten()
            .filter(|(k, _)| !k.contains(TOOLKIT_MARKER))
            .filter(|(k, _)| {
                self.include_label_prefixes
                    .iter()
                    .any(|p| p == "*" || k.starts_with(p.as_str()))
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

/// What was observed this reconcile and the settings the commands need.
#[derive(Clone, Debug, Default)]
pub struct ExecContext {
    /// The user's Deployment (`spec.targetRef`), when it exists. Shared with the cache, not
    /// copied: thousands of commands may wait with their context at once.
    pub target: Option<Arc<Deployment>>,
    /// The generated `<target>-primary`, when it exists.
    pub primary: Option<Arc<Deployment>>,
    /// The apex Service as cached, so writing it needs no read first.
    pub apex: Known<Arc<Service>>,
    /// The autoscaler named by `spec.autoscalerRef`, when it exists.
    pub target_hpa: Option<Arc<HorizontalPodAutoscaler>>,
    /// The user's Ingress (`spec.ingressRef`), when it exists: nginx clones it.
    pub ingress: Option<kube::core::DynamicObject>,
    /// The routing objects the Canary writes (VirtualService and DestinationRules, HTTPRoute)
    /// that exist, as cached: one without the Canary as owner is the user's (see
    /// `routes::take_over`).
    pub existing_routes: Vec<kube::core::DynamicObject>,
    /// The effective provider (`spec.provider` or `-mesh-provider`).
    pub provider: String,
    pub labels: LabelSettings,
    /// Checksums of the target's ConfigMaps and Secrets ([`crate::observe::tracked_configs`]);
    /// part of the promoted revision so a configuration change also rolls the primary.
    pub tracked_configs: BTreeMap<String, String>,
}

/// What a cache knows of one object.
#[derive(Clone, Debug, Default)]
pub enum Known<T> {
    /// Nothing: read it.
    #[default]
    Unknown,
    /// It does not exist.
    Absent,
    Found(T),
}

/// The selector label of the target and its value, e.g. `("app", "podinfo")`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selector {
    pub label: String,
    pub value: String,
}

impl Selector {
    pub fn primary_value(&self) -> String {
        format!("{}-primary", self.value)
    }
}

impl ExecContext {
    pub fn target(&self, canary: &Canary) -> Result<&Deployment, ExecError> {
        self.target
            .as_deref()
            .ok_or_else(|| ExecError::TargetMissing(canary.spec.target_ref.name.clone()))
    }

    /// The first `-selector-labels` entry in the target's `matchLabels`. Without a target (it
    /// may be deleted before its Canary), the primary's selector tells the same, minus `-primary`.
    pub fn selector(&self, canary: &Canary) -> Result<Selector, ExecError> {
        let match_labels = |d: &Deployment| {
            d.spec
                .as_ref()
                .and_then(|s| s.selector.match_labels.clone())
                .unwrap_or_default()
        };
        if let Some(target) = &self.target {
            let labels = match_labels(target);
            for label in &self.labels.selector_labels {
                if let Some(value) = labels.get(label) {
                    return Ok(Selector {
                        label: label.clone(),
                        value: value.clone(),
                    });
                }
            }
        } else if let Some(primary) = &self.primary {
            let labels = match_labels(primary);
            for label in &self.labels.selector_labels {
                if let Some(value) = labels.get(label).and_then(|v| v.strip_suffix("-primary")) {
                    return Ok(Selector {
                        label: label.clone(),
                        value: value.to_string(),
                    });
                }
            }
        }
        Err(ExecError::NoSelectorLabel {
            deployment: canary.spec.target_ref.name.clone(),
            labels: self.labels.selector_labels.clone(),
        })
    }
}

/// Whether `command` changes cluster objects (and so belongs to [`Executor::execute`]); events,
/// alerts, metrics and post-rollout hooks are routed by the controller.
pub fn is_kube_command(command: &Command) -> bool {
    !matches!(
        command,
        Command::EmitEvent { .. }
            | Command::SendAlert(_)
            | Command::RecordMetric(_)
            | Command::RunPostRolloutHooks { .. }
    )
}

#[derive(Clone)]
pub struct Executor {
    client: Client,
    field_manager: String,
}

impl Executor {
    pub fn new(client: Client) -> Executor {
        Executor {
            client,
            field_manager: FIELD_MANAGER.to_string(),
        }
    }

    /// Carries out one kube-facing command; the others are accepted and ignored (see
    /// [`is_kube_command`]).
    pub async fn execute(
        &self,
        canary: &Canary,
        ctx: &ExecContext,
        command: &Command,
    ) -> Result<(), ExecError> {
        match command {
            Command::AddFinalizer => canary::add_finalizer(self, canary).await,
            Command::RemoveFinalizer => canary::remove_finalizer(self, canary).await,
            Command::WriteStatus(status) => {
                canary::write_status(self, canary, status, false).await?;
                Ok(())
            }
            Command::CreatePrimary | Command::PromoteTemplate => {
                deployment::apply_primary(self, canary, ctx).await
            }
            Command::ScaleTarget { replicas } => {
                deployment::scale_target(self, canary, *replicas).await
            }
            Command::ApplyPrimaryAutoscaler { promote } => {
                autoscaler::apply_primary(self, canary, ctx, *promote).await
            }
            Command::ApplyServices => services::apply(self, canary, ctx).await,
            Command::ApplyApexService => services::apply_apex(self, canary, ctx).await,
            Command::RevertApexService => services::revert_apex(self, canary, ctx).await,
            Command::SetRoutes {
                primary_weight,
                canary_weight,
                mirrored,
            } => {
                let routes = flagger_core::Routes {
                    primary_weight: *primary_weight,
                    canary_weight: *canary_weight,
                    mirrored: *mirrored,
                };
                routes::apply(self, canary, ctx, routes).await
            }
            Command::EmitEvent { .. }
            | Command::SendAlert(_)
            | Command::RecordMetric(_)
            | Command::RunPostRolloutHooks { .. } => Ok(()),
        }
    }

    /// `WriteStatus`, for a controller that must know what it wrote: the stored Canary comes back
    /// (its resourceVersion tells a stale cache from a fresh one), and with `if_unchanged` the
    /// write is refused with a conflict when the Canary changed since `canary` was read, so a
    /// decision taken on a stale copy never overwrites a newer status.
    pub async fn write_status(
        &self,
        canary: &Canary,
        status: &flagger_core::CanaryStatus,
        if_unchanged: bool,
    ) -> Result<Canary, ExecError> {
        canary::write_status(self, canary, status, if_unchanged).await
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    fn apply_params(&self) -> PatchParams {
        PatchParams::apply(&self.field_manager).force()
    }

    fn patch_params(&self) -> PatchParams {
        PatchParams {
            field_manager: Some(self.field_manager.clone()),
            ..PatchParams::default()
        }
    }

    /// Server-side apply of a whole object we own, its API error worded by `on_error`.
    async fn apply<K>(
        &self,
        api: &kube::Api<K>,
        name: &str,
        object: &K,
        on_error: impl FnOnce(kube::Error) -> ExecError,
    ) -> Result<(), ExecError>
    where
        K: Clone + serde::de::DeserializeOwned + Serialize + std::fmt::Debug,
    {
        api.patch(name, &self.apply_params(), &Patch::Apply(object))
            .await
            .map_err(on_error)?;
        Ok(())
    }
}

fn namespace(canary: &Canary) -> Result<String, ExecError> {
    canary
        .metadata
        .namespace
        .clone()
        .ok_or_else(|| ExecError::NoNamespace(canary.metadata.name.clone().unwrap_or_default()))
}
