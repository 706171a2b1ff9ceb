//! What the decision function asks the world to do. Executed in order; `WriteStatus`, when present,
//! is always last, so a crash part-way leaves the persisted status describing the previous step and
//! the next reconcile repeats the remaining (idempotent) commands.

use std::collections::BTreeMap;
use std::fmt;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use crate::api::{CanaryStatus, Phase};
use crate::policy::HookType;
use crate::snapshot::HookAnswer;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "command")]
pub enum Command {
    /// Add `finalizer.flagger.app` so deletion can restore the target first.
    AddFinalizer,
    /// Remove the finalizer: the Canary may go.
    RemoveFinalizer,
    /// Create `<target>-primary` as a copy of the target (only issued while it does not exist).
    CreatePrimary,
    /// Create or reconcile `<hpa>-primary` from the target's autoscaler; `promote` also copies
    /// min/max/metrics, which Flagger does only while promoting.
    ApplyPrimaryAutoscaler {
        promote: bool,
    },
    /// Create or reconcile the primary and canary ClusterIP Services. The apex is left alone:
    /// until the primary serves, it must keep selecting the pods it selects now.
    ApplyServices,
    /// Point the apex Service at the primary's pods (creating it, or taking over the user's).
    /// Issued only once the primary is ready, as Flagger moves the selector only then: an
    /// existing Service pointed early at `-primary` pods that do not run yet is an outage.
    ApplyApexService,
    /// Copy the target's pod template (and tracked configs) into the primary.
    PromoteTemplate,
    /// Set the target's replicas (0 scales the canary down).
    ScaleTarget {
        replicas: i32,
    },
    /// Write the mesh routing with these weights (the provider object is derived from the spec).
    SetRoutes {
        #[serde(rename = "primaryWeight", alias = "primary_weight")]
        primary_weight: i32,
        #[serde(rename = "canaryWeight", alias = "canary_weight")]
        canary_weight: i32,
        mirrored: bool,
    },
    /// Point the apex Service back at the target and release it, before the Canary goes away.
    RevertApexService,
    EmitEvent {
        severity: EventSeverity,
        message: String,
    },
    SendAlert(Alert),
    RecordMetric(MetricRecord),
    /// Call the post-rollout hooks; their outcome only produces events (see [`crate::events::post_rollout`]).
    RunPostRolloutHooks {
        phase: Phase,
        hooks: Vec<HookCall>,
    },
    /// Replace the whole status (server-side apply of everything this operator owns).
    WriteStatus(CanaryStatus),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventSeverity {
    Normal,
    Warning,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertSeverity {
    Info,
    Warn,
    Error,
}

impl AlertSeverity {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertSeverity::Info => "info",
            AlertSeverity::Warn => "warn",
            AlertSeverity::Error => "error",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    pub destination: AlertDestination,
    pub severity: AlertSeverity,
    pub message: String,
    pub fields: Vec<(String, String)>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum AlertDestination {
    /// The operator's `-slack-url` / `-msteams-url` notifier.
    Global,
    /// An AlertProvider named by `analysis.alerts[]`.
    Provider {
        alert: String,
        name: String,
        namespace: String,
    },
}

/// Operator metrics, recorded under Flagger's names (the `name` label is the target's name).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum MetricRecord {
    /// `flagger_canary_status`: 0 Progressing, 2 Failed, 1 anything else.
    Status { value: i32 },
    /// `flagger_canary_weight` for `<target>-primary` and `<target>`.
    Weight { primary: i32, canary: i32 },
    /// `flagger_canary_metric_analysis` (durations in seconds).
    Analysis { metric: String, value: f64 },
    /// `flagger_canary_successes_total`.
    Success {
        strategy: String,
        #[serde(rename = "analysisStatus", alias = "analysis_status")]
        analysis_status: String,
    },
    /// `flagger_canary_failures_total`.
    Failure {
        strategy: String,
        #[serde(rename = "analysisStatus", alias = "analysis_status")]
        analysis_status: String,
    },
}

/// Everything needed to POST a webhook, with Flagger's payload.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HookCall {
    pub name: String,
    pub hook_type: String,
    pub url: String,
    #[serde(with = "crate::serde_duration")]
    pub timeout: SignedDuration,
    pub retries: i32,
    pub disable_tls: bool,
    pub payload: HookPayload,
}

impl HookCall {
    /// Whether, after `answer`, no later hook of the same [`Outcome::Need`] may be called.
    pub fn ends_sequence(&self, answer: &HookAnswer) -> bool {
        // The core only builds calls of known types; any other ends at a failure, as all but
        // rollback hooks do.
        HookType::parse(&self.hook_type)
            .unwrap_or(HookType::Rollout)
            .ends_sequence(answer)
    }
}

/// Flagger's `CanaryWebhookPayload`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookPayload {
    pub name: String,
    pub namespace: String,
    pub phase: String,
    pub checksum: String,
    pub metadata: BTreeMap<String, String>,
}

/// An input the decision cannot be made without.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "request")]
pub enum Request {
    /// Call this hook and put the outcome in `answers.hooks[name]`.
    Hook(HookCall),
    /// Evaluate this metric and put the value in `answers.metrics[name]`.
    Metric(MetricQuery),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricQuery {
    pub name: String,
    pub source: MetricSource,
    /// The query's range window, as written in the spec (`1m`).
    pub interval: String,
    /// Values the query template may use.
    pub namespace: String,
    pub target: String,
    pub service: String,
    pub provider: String,
    /// `spec.ingressRef.name`; absent when the Canary names none (the target stands in).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum MetricSource {
    RequestSuccessRate,
    RequestDuration,
    Template {
        name: String,
        namespace: String,
        variables: BTreeMap<String, String>,
    },
    Inline {
        query: String,
    },
}

/// One reconcile's result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Outcome {
    /// Gather these inputs, add them to the snapshot's answers and call again. Metric queries
    /// are independent (ask them together). Hooks are called one after another in the listed
    /// order, stopping after the first answer for which [`HookCall::ends_sequence`] holds:
    /// Flagger calls a step's hooks in order and none after the one that settles the step. The
    /// hooks left uncalled then are not needed by the decision.
    Need(Vec<Request>),
    Decided(Decision),
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Decision {
    pub commands: Vec<Command>,
    /// Call again no later than this, even if nothing changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wake_at: Option<Timestamp>,
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::AddFinalizer => write!(f, "add finalizer"),
            Command::RemoveFinalizer => write!(f, "remove finalizer"),
            Command::CreatePrimary => write!(f, "create primary"),
            Command::ApplyPrimaryAutoscaler { promote } => {
                write!(f, "apply primary autoscaler (promote: {promote})")
            }
            Command::ApplyServices => write!(f, "apply services"),
            Command::ApplyApexService => write!(f, "apply apex service"),
            Command::PromoteTemplate => write!(f, "promote template"),
            Command::ScaleTarget { replicas } => write!(f, "scale target to {replicas}"),
            Command::SetRoutes {
                primary_weight,
                canary_weight,
                mirrored,
            } => write!(
                f,
                "set routes primary={primary_weight} canary={canary_weight}{}",
                if *mirrored { " mirrored" } else { "" }
            ),
            Command::RevertApexService => write!(f, "revert apex service"),
            Command::EmitEvent { severity, message } => write!(f, "event {severity:?}: {message}"),
            Command::SendAlert(a) => write!(f, "alert {}: {}", a.severity.as_str(), a.message),
            Command::RecordMetric(m) => write!(f, "metric {m:?}"),
            Command::RunPostRolloutHooks { phase, hooks } => {
                write!(f, "post-rollout hooks ({phase}): {}", hooks.len())
            }
            Command::WriteStatus(s) => write!(
                f,
                "write status phase={} weight={} failedChecks={} iterations={}",
                s.phase.map_or("", |p| p.as_str()),
                s.canary_weight,
                s.failed_checks,
                s.iterations
            ),
        }
    }
}
