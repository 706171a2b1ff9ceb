//! Everything the decision function may know: the Canary, what is observed of the cluster, the
//! answers gathered so far in this reconcile, the operator's configuration and `now`.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use crate::api::{CanarySpec, CanaryStatus};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub now: Timestamp,
    pub canary: CanaryMeta,
    pub spec: CanarySpec,
    pub status: CanaryStatus,
    pub config: OperatorConfig,
    /// The target workload; `None` when it does not exist.
    pub target: Option<Workload>,
    /// The generated `<target>-primary` workload; `None` until it is created.
    pub primary: Option<Workload>,
    /// Weights read back from the mesh object; `None` when the object does not exist yet.
    pub routes: Option<Routes>,
    /// Why the routing object does not carry its current spec yet, in the provider's words (a
    /// Gateway API parent that has not accepted the route's current generation); `None` when it
    /// does, or the provider has nothing to wait for. Analysis waits while it is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routes_not_ready: Option<String>,
    /// Whether the primary and canary Services exist.
    pub services_present: bool,
    /// Whether the apex Service exists and selects exactly the primary's pods.
    #[serde(default)]
    pub apex_selects_primary: bool,
    /// Which existing generated objects no longer carry what this Canary's spec makes of them
    /// (an edited `spec.service`, a hand edit). Absent: none did, or it was not observed.
    #[serde(default, skip_serializing_if = "Drift::is_none")]
    pub drift: Drift,
    /// Answers to the [`crate::Request`]s of earlier passes of this same reconcile.
    #[serde(default)]
    pub answers: Answers,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CanaryMeta {
    pub name: String,
    pub namespace: String,
    /// The object carries a deletion timestamp.
    #[serde(default)]
    pub deleting: bool,
    /// `finalizer.flagger.app` is present.
    #[serde(default)]
    pub has_finalizer: bool,
}

/// Operator-wide settings that shape decisions (from flags).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OperatorConfig {
    pub mesh_provider: String,
    /// Intervals below this are raised to it (Flagger: 10s).
    #[serde(with = "crate::serde_duration")]
    pub min_interval: SignedDuration,
    #[serde(default)]
    pub cluster_name: String,
    /// Whether a global notifier (`-slack-url`, `-msteams-url`) is configured.
    #[serde(default)]
    pub global_notifier: bool,
}

impl Default for OperatorConfig {
    fn default() -> Self {
        OperatorConfig {
            mesh_provider: "istio".to_string(),
            min_interval: SignedDuration::from_secs(10),
            cluster_name: String::new(),
            global_notifier: false,
        }
    }
}

/// What is observed of a Deployment: its identity for revision detection and its rollout state.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Workload {
    /// [`crate::hash::template_hash`] of the pod template.
    pub template_hash: String,
    /// The template's identity with the primary's rewrites undone (`-primary` suffixes on the
    /// selector label, renamed config references and pod selectors; rollout-forcing annotations
    /// left out): a target and a primary copied from it, by this operator or by Flagger, have
    /// the same one. Empty when unknown.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub copy_identity: String,
    /// Checksums of the ConfigMaps and Secrets the template uses (`configmap/x`, `secret/y`).
    #[serde(default)]
    pub configs: BTreeMap<String, String>,
    /// The ConfigMaps and Secrets the template needs that do not exist (`configmap/x`,
    /// `secret/y`), when config tracking is on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing_configs: Vec<String>,
    /// `spec.replicas`.
    pub replicas: i32,
    pub generation: i64,
    pub observed_generation: i64,
    pub updated_replicas: i32,
    pub available_replicas: i32,
    /// `status.replicas`: all pods, old and new.
    pub total_replicas: i32,
    /// The Progressing condition has reason `ProgressDeadlineExceeded`.
    #[serde(default)]
    pub progress_deadline_exceeded: bool,
    /// `lastUpdateTime` of an `Available=False` condition, when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unavailable_since: Option<Timestamp>,
    /// `minReplicas` of the autoscaler attached to it, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaler_min_replicas: Option<i32>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Routes {
    pub primary_weight: i32,
    pub canary_weight: i32,
    #[serde(default)]
    pub mirrored: bool,
}

/// Objects that exist but differ from what the operator would write for the current state, in
/// the fields it writes (server defaults and other writers' fields are not drift). Flagger
/// rewrites these objects on every reconcile; this operator writes them only when they differ.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Drift {
    /// The primary or canary Service.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub services: bool,
    /// The apex Service, apart from its selector (see [`Snapshot::apex_selects_primary`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub apex: bool,
    /// The provider's routing objects (VirtualService and DestinationRules, HTTPRoute, canary
    /// Ingress), apart from the weights they send (see [`Snapshot::routes`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub routes: bool,
}

impl Drift {
    pub fn is_none(&self) -> bool {
        *self == Drift::default()
    }
}

/// Answers keyed by what was asked, in a sorted map so iteration order never depends on hashing.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Answers {
    #[serde(default)]
    pub hooks: BTreeMap<String, HookAnswer>,
    #[serde(default)]
    pub metrics: BTreeMap<String, MetricAnswer>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "result", content = "message")]
pub enum HookAnswer {
    Passed,
    Failed(String),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "result", content = "value")]
pub enum MetricAnswer {
    Value(f64),
    /// The query returned no series, or NaN.
    NoValues(String),
    /// The provider could not be reached or rejected the query.
    Error(String),
}
