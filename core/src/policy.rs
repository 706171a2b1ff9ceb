//! The Canary spec validated and with Flagger's defaults applied: the rollout policy the decision
//! function reads. Every value a user can get wrong is checked here, and the error names the field.

use std::collections::BTreeMap;

use jiff::SignedDuration;

use crate::api::{
    CanaryAnalysis, CanaryMetric, CanarySpec, CanaryWebhook, SessionAffinity, parse_go_duration,
};
use crate::command::{AlertSeverity, MetricSource};
use crate::snapshot::{HookAnswer, OperatorConfig};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct SpecError {
    pub field: String,
    pub message: String,
    /// The spec is valid for Flagger but asks for something this operator does not do yet (a
    /// mesh provider, a target or autoscaler kind), as opposed to a spec that is wrong.
    pub unsupported: bool,
}

impl SpecError {
    /// The reason of the `Blocked` condition.
    pub fn reason(&self) -> &'static str {
        if self.unsupported {
            "NotSupported"
        } else {
            "InvalidSpec"
        }
    }
}

fn err<T>(field: impl Into<String>, message: impl Into<String>) -> Result<T, SpecError> {
    Err(SpecError {
        field: field.into(),
        message: message.into(),
        unsupported: false,
    })
}

fn not_yet<T>(field: impl Into<String>, message: impl Into<String>) -> Result<T, SpecError> {
    Err(SpecError {
        field: field.into(),
        message: message.into(),
        unsupported: true,
    })
}

/// The `spec.provider` values Flagger's Canary CRD accepts.
pub const FLAGGER_PROVIDERS: &[&str] = &[
    "apisix",
    "appmesh",
    "appmesh:v1beta2",
    "contour",
    "gatewayapi:v1",
    "gatewayapi:v1beta1",
    "gloo",
    "istio",
    "knative",
    "kubernetes",
    "kuma",
    "linkerd",
    "nginx",
    "osm",
    "skipper",
    "smi:v1alpha1",
    "smi:v1alpha2",
    "smi:v1alpha3",
    "traefik",
];

/// What the supported list reads in messages.
pub const SUPPORTED_PROVIDERS: &str = "istio, gatewayapi:v1, kubernetes, nginx";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    Istio,
    GatewayApi,
    /// No mesh: Services only, so only blue/green is possible.
    Kubernetes,
    /// The NGINX ingress controller: a `<ingressRef>-canary` clone of the user's Ingress whose
    /// canary annotations carry the weight or the A/B match. It cannot mirror.
    Nginx,
}

impl Provider {
    /// The providers this operator can route with; anything else is refused with a clear error
    /// instead of Flagger's silent fallback to Istio.
    pub fn parse(name: &str) -> Option<Provider> {
        match name {
            "istio" => Some(Provider::Istio),
            "gatewayapi" | "gatewayapi:v1" | "gatewayapi:v1beta1" => Some(Provider::GatewayApi),
            "kubernetes" => Some(Provider::Kubernetes),
            "nginx" => Some(Provider::Nginx),
            _ => None,
        }
    }

    /// Whether Flagger's router factory routes with `name` (as `spec.provider` or
    /// `-mesh-provider`): its exact names and the prefixes it matches (`smi:v1alpha3:linkerd`,
    /// `appmesh:v1beta2`, `gloo…`, `gatewayapi:v1…`). Such a provider that [`Provider::parse`]
    /// refuses is one this operator does not support yet; any other name is a mistake.
    pub fn known_to_flagger(name: &str) -> bool {
        const EXACT: &[&str] = &[
            "apisix",
            "appmesh",
            "contour",
            "istio",
            "knative",
            "kubernetes",
            "kuma",
            "linkerd",
            "nginx",
            "osm",
            "skipper",
            "traefik",
        ];
        const PREFIXES: &[&str] = &[
            "appmesh:v1beta2",
            "smi:v1alpha1",
            "smi:v1alpha2",
            "smi:v1alpha3",
            "gloo",
            "gatewayapi:v1",
        ];
        EXACT.contains(&name) || PREFIXES.iter().any(|p| name.starts_with(p))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Strategy {
    Canary(CanarySteps),
    /// Header/cookie-matched traffic goes to the canary for `iterations` analysis steps.
    AbTesting {
        iterations: i32,
    },
    /// Traffic stays on the primary for `iterations` steps, then switches at once.
    BlueGreen {
        iterations: i32,
        mirror: bool,
        /// Primary weight step while promoting (`stepWeightPromotion`); 0 shifts back at once.
        promotion_step: i32,
    },
}

impl Strategy {
    /// The `deployment_strategy` label of Flagger's counters.
    pub fn label(&self) -> &'static str {
        match self {
            Strategy::Canary(_) => "canary",
            Strategy::AbTesting { .. } => "ab-testing",
            Strategy::BlueGreen { .. } => "blue-green",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct CanarySteps {
    pub steps: Steps,
    pub max_weight: i32,
    /// Primary weight step while promoting; 0 shifts all traffic back at once.
    pub promotion_step: i32,
    pub mirror: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Steps {
    Linear(i32),
    Ladder(Vec<i32>),
}

impl CanarySteps {
    /// The canary weight after one more step from `current`, never above `max_weight`.
    pub fn next_weight(&self, current: i32) -> i32 {
        let next = match &self.steps {
            Steps::Linear(step) => current.saturating_add(*step),
            Steps::Ladder(ladder) => ladder
                .iter()
                .copied()
                .find(|w| *w > current)
                .unwrap_or(self.max_weight),
        };
        next.clamp(0, self.max_weight)
    }

    /// The first step's weight, used by the mirroring step.
    pub fn first_weight(&self) -> i32 {
        self.next_weight(0)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct MetricCheck {
    pub name: String,
    pub source: MetricSource,
    pub interval: String,
    pub min: Option<f64>,
    pub max: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum HookType {
    ConfirmRollout,
    PreRollout,
    Rollout,
    ConfirmTrafficIncrease,
    ConfirmPromotion,
    PostRollout,
    Rollback,
    Event,
}

impl HookType {
    pub fn parse(text: &str) -> Option<HookType> {
        Some(match text {
            "confirm-rollout" => HookType::ConfirmRollout,
            "pre-rollout" => HookType::PreRollout,
            "" | "rollout" => HookType::Rollout,
            "confirm-traffic-increase" => HookType::ConfirmTrafficIncrease,
            "confirm-promotion" => HookType::ConfirmPromotion,
            "post-rollout" => HookType::PostRollout,
            "rollback" => HookType::Rollback,
            "event" => HookType::Event,
            _ => return None,
        })
    }

    /// Whether `answer` settles a step's hooks of this type, so that Flagger calls none after
    /// it: a rollback hook that passes starts the rollback, any other hook that fails halts.
    pub fn ends_sequence(self, answer: &HookAnswer) -> bool {
        match self {
            HookType::Rollback => *answer == HookAnswer::Passed,
            _ => matches!(answer, HookAnswer::Failed(_)),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            HookType::ConfirmRollout => "confirm-rollout",
            HookType::PreRollout => "pre-rollout",
            HookType::Rollout => "rollout",
            HookType::ConfirmTrafficIncrease => "confirm-traffic-increase",
            HookType::ConfirmPromotion => "confirm-promotion",
            HookType::PostRollout => "post-rollout",
            HookType::Rollback => "rollback",
            HookType::Event => "event",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Hook {
    pub name: String,
    /// `<type>/<name>`: how answers are looked up, built once so a decision does not allocate it.
    pub key: String,
    pub hook_type: HookType,
    pub url: String,
    pub timeout: SignedDuration,
    pub retries: i32,
    pub metadata: BTreeMap<String, String>,
    pub disable_tls: bool,
    pub mute_alert: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AlertRoute {
    pub name: String,
    pub severity: AlertSeverity,
    pub provider_name: String,
    pub provider_namespace: String,
}

impl AlertRoute {
    /// Flagger's routing: `info` receives everything, `warn` receives warnings and errors,
    /// `error` only errors.
    pub fn accepts(&self, severity: AlertSeverity) -> bool {
        severity >= self.severity
    }
}

pub fn session_affinity_unsupported(provider: &str) -> String {
    format!("Session affinity is not supported when using the {provider} provider")
}

#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub name: String,
    pub namespace: String,
    pub target: String,
    /// `<target>-primary`, kept here because almost every decision names it.
    pub primary: String,
    pub provider: Provider,
    pub provider_name: String,
    pub interval: SignedDuration,
    pub threshold: i32,
    pub strategy: Strategy,
    /// The strategy the spec asks for, before the kubernetes provider turns a canary or A/B
    /// spec into blue/green: Flagger names it in its counters' `deployment_strategy` label and
    /// in the alerts' "Traffic routing" field.
    pub declared_strategy: Strategy,
    pub progress_deadline: SignedDuration,
    pub skip_analysis: bool,
    pub suspend: bool,
    pub revert_on_deletion: bool,
    pub primary_ready_threshold: i32,
    pub canary_ready_threshold: i32,
    pub metrics: Vec<MetricCheck>,
    pub hooks: Vec<Hook>,
    pub alerts: Vec<AlertRoute>,
    pub has_autoscaler: bool,
    /// Cookie-pinned clients during a weighted run (istio and gatewayapi).
    pub session_affinity: Option<SessionAffinity>,
    /// What of the spec is not done as written (the kubernetes provider forcing blue/green, an
    /// unsupported sessionAffinity): said as warning events whenever an analysis starts.
    pub provider_warnings: Vec<String>,
}

impl Policy {
    pub fn primary_name(&self) -> &str {
        &self.primary
    }

    pub fn hooks_of(&self, hook_type: HookType) -> impl Iterator<Item = &Hook> {
        self.hooks.iter().filter(move |h| h.hook_type == hook_type)
    }

    pub fn from_spec(
        name: &str,
        namespace: &str,
        spec: &CanarySpec,
        config: &OperatorConfig,
    ) -> Result<Policy, SpecError> {
        if spec.target_ref.name.is_empty() {
            return err("spec.targetRef.name", "must not be empty");
        }
        let provider_name = spec
            .provider
            .clone()
            .unwrap_or_else(|| config.mesh_provider.clone());
        let Some(provider) = Provider::parse(&provider_name) else {
            let from_flag = if spec.provider.is_none() {
                " (from -mesh-provider)"
            } else {
                ""
            };
            if Provider::known_to_flagger(&provider_name) {
                return not_yet(
                    "spec.provider",
                    format!(
                        "provider {provider_name:?}{from_flag} is not supported yet (supported: {SUPPORTED_PROVIDERS})"
                    ),
                );
            }
            return err(
                "spec.provider",
                format!(
                    "unsupported mesh provider {provider_name:?}{from_flag} (supported: {SUPPORTED_PROVIDERS})"
                ),
            );
        };
        match spec.target_ref.kind.as_deref() {
            None | Some("Deployment") => {}
            Some(kind @ ("DaemonSet" | "Service")) => {
                return not_yet(
                    "spec.targetRef.kind",
                    format!("{kind} targets are not supported yet (only Deployment)"),
                );
            }
            Some(kind) => {
                return err(
                    "spec.targetRef.kind",
                    format!("{kind:?} is not a target kind (Deployment, DaemonSet or Service)"),
                );
            }
        }
        match spec.autoscaler_ref.as_ref().and_then(|a| a.kind.as_deref()) {
            None | Some("HorizontalPodAutoscaler") => {}
            Some("ScaledObject") => {
                return not_yet(
                    "spec.autoscalerRef.kind",
                    "KEDA ScaledObject autoscalers are not supported yet (only HorizontalPodAutoscaler)",
                );
            }
            Some(kind) => {
                return err(
                    "spec.autoscalerRef.kind",
                    format!(
                        "{kind:?} is not an autoscaler kind (HorizontalPodAutoscaler or ScaledObject)"
                    ),
                );
            }
        }
        let Some(service) = &spec.service else {
            return err(
                "spec.service",
                format!(
                    "is required by the {provider_name} provider (the Services and routes are made from it)"
                ),
            );
        };
        if !(1..=65535).contains(&service.port) {
            return err(
                "spec.service.port",
                format!("{} is not a valid port", service.port),
            );
        }
        if provider == Provider::Nginx
            && spec.ingress_ref.as_ref().is_none_or(|r| r.name.is_empty())
        {
            return err(
                "spec.ingressRef",
                "the nginx provider needs the Ingress to clone (spec.ingressRef.name)",
            );
        }
        // Flagger's words: its router refuses every reconcile without them.
        if provider == Provider::GatewayApi
            && service.gateway_refs.as_ref().is_none_or(|r| r.is_empty())
        {
            return err(
                "spec.service.gatewayRefs",
                "GatewayRefs must be specified when using Gateway API as a provider.",
            );
        }
        let progress_deadline = match spec.progress_deadline_seconds {
            None => SignedDuration::from_secs(600),
            Some(s) if s > 0 => SignedDuration::from_secs(i64::from(s)),
            Some(s) => {
                return err(
                    "spec.progressDeadlineSeconds",
                    format!("{s} must be positive"),
                );
            }
        };
        let empty = CanaryAnalysis::default();
        let analysis = spec.analysis().unwrap_or(&empty);
        let field = if spec.analysis.is_some() {
            "spec.analysis"
        } else {
            "spec.canaryAnalysis"
        };

        let interval = match analysis.interval.as_deref() {
            None => SignedDuration::from_secs(60),
            Some(text) => {
                let d = parse_go_duration(text)
                    .or_else(|e| err(format!("{field}.interval"), e.to_string()))?;
                if d <= SignedDuration::ZERO {
                    return err(
                        format!("{field}.interval"),
                        format!("{text:?} must be positive"),
                    );
                }
                d
            }
        }
        .max(config.min_interval);
        let threshold = analysis.threshold.filter(|t| *t > 0).unwrap_or(1);

        let mut provider_warnings = Vec::new();
        let mut strategy = match spec.analysis() {
            Some(a) => strategy(field, a)?,
            // Without analysis the canary is promoted as soon as it is ready; the strategy only
            // labels the success counter.
            None => Strategy::Canary(CanarySteps {
                steps: Steps::Linear(100),
                max_weight: 100,
                promotion_step: 0,
                mirror: false,
            }),
        };
        let declared_strategy = strategy.clone();
        if provider == Provider::Kubernetes {
            match strategy {
                Strategy::BlueGreen { .. } => {}
                Strategy::AbTesting { iterations } => {
                    provider_warnings.push(
                        "A/B testing is not supported when using the kubernetes provider".into(),
                    );
                    strategy = Strategy::BlueGreen {
                        iterations,
                        mirror: false,
                        promotion_step: 0,
                    };
                }
                Strategy::Canary(_) => {
                    provider_warnings.push(
                        "Progressive traffic is not supported when using the kubernetes provider"
                            .into(),
                    );
                    provider_warnings.push("Setting canaryAnalysis.iterations: 10".into());
                    strategy = Strategy::BlueGreen {
                        iterations: 10,
                        mirror: false,
                        promotion_step: 0,
                    };
                }
            }
        }

        // Flagger's nginx router ignores the mirror flag and always reads back "not mirrored":
        // blue/green then runs without mirroring, but a canary repeats its mirror step forever
        // without shifting traffic, so that one is refused.
        if provider == Provider::Nginx {
            match &mut strategy {
                Strategy::Canary(steps) if steps.mirror => {
                    return err(
                        format!("{field}.mirror"),
                        "traffic mirroring is not supported by the nginx provider",
                    );
                }
                Strategy::BlueGreen { mirror, .. } if *mirror => {
                    *mirror = false;
                    provider_warnings.push(
                        "Traffic mirroring is not supported when using the nginx provider".into(),
                    );
                }
                _ => {}
            }
        }

        let session_affinity = match spec.analysis().and_then(|a| a.session_affinity.as_ref()) {
            None => None,
            Some(value) => Some(
                SessionAffinity::from_spec(value)
                    .or_else(|e| err(format!("{field}.sessionAffinity"), e))?,
            ),
        };
        // Only the istio and gatewayapi routers set cookies. Flagger ignores the setting silently
        // elsewhere (nginx's own sticky sessions are the user's Ingress annotations, which the
        // canary Ingress copies); here it is said.
        let session_affinity = match (session_affinity, provider) {
            (Some(_), Provider::Kubernetes | Provider::Nginx) => {
                provider_warnings.push(session_affinity_unsupported(&provider_name));
                None
            }
            (other, _) => other,
        };

        let percent = |value: Option<i32>, f: &str| match value {
            None => Ok(100),
            Some(v) if (0..=100).contains(&v) => Ok(v),
            Some(v) => err(format!("{field}.{f}"), format!("{v} is not a percentage")),
        };
        let primary_ready_threshold =
            percent(analysis.primary_ready_threshold, "primaryReadyThreshold")?;
        let canary_ready_threshold =
            percent(analysis.canary_ready_threshold, "canaryReadyThreshold")?;

        let metrics = analysis
            .metrics
            .iter()
            .flatten()
            .enumerate()
            .map(|(i, m)| metric(&format!("{field}.metrics[{i}]"), m, namespace))
            .collect::<Result<Vec<_>, _>>()?;
        let hooks = analysis
            .webhooks
            .iter()
            .flatten()
            .enumerate()
            .map(|(i, w)| hook(&format!("{field}.webhooks[{i}]"), w))
            .collect::<Result<Vec<_>, _>>()?;
        let alerts = analysis
            .alerts
            .iter()
            .flatten()
            .enumerate()
            .map(|(i, a)| {
                let f = format!("{field}.alerts[{i}]");
                let severity = match a.severity.as_deref().unwrap_or("") {
                    // Flagger documents an empty severity as info, but its code never matches it.
                    "" | "info" => AlertSeverity::Info,
                    "warn" => AlertSeverity::Warn,
                    "error" => AlertSeverity::Error,
                    other => {
                        return err(
                            format!("{f}.severity"),
                            format!("{other:?} is not one of info, warn, error"),
                        );
                    }
                };
                if a.provider_ref.name.is_empty() {
                    return err(format!("{f}.providerRef.name"), "must not be empty");
                }
                Ok(AlertRoute {
                    name: a.name.clone(),
                    severity,
                    provider_name: a.provider_ref.name.clone(),
                    provider_namespace: a
                        .provider_ref
                        .namespace
                        .clone()
                        .unwrap_or_else(|| namespace.to_string()),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;

        Ok(Policy {
            name: name.to_string(),
            namespace: namespace.to_string(),
            target: spec.target_ref.name.clone(),
            primary: format!("{}-primary", spec.target_ref.name),
            provider,
            provider_name,
            interval,
            threshold,
            strategy,
            declared_strategy,
            progress_deadline,
            skip_analysis: spec.skip_analysis.unwrap_or(false) || spec.analysis().is_none(),
            suspend: spec.suspend.unwrap_or(false),
            revert_on_deletion: spec.revert_on_deletion.unwrap_or(false),
            primary_ready_threshold,
            canary_ready_threshold,
            metrics,
            hooks,
            alerts,
            has_autoscaler: spec.autoscaler_ref.is_some(),
            provider_warnings,
            session_affinity,
        })
    }
}

fn strategy(field: &str, a: &CanaryAnalysis) -> Result<Strategy, SpecError> {
    let mirror = a.mirror.unwrap_or(false);
    if let Some(w) = a.mirror_weight
        && !(0..=100).contains(&w)
    {
        return err(
            format!("{field}.mirrorWeight"),
            format!("{w} is not a percentage"),
        );
    }
    let promotion_step = a.step_weight_promotion.unwrap_or(0);
    if !(0..=100).contains(&promotion_step) {
        return err(
            format!("{field}.stepWeightPromotion"),
            format!("{promotion_step} is not a percentage"),
        );
    }
    let iterations = a.iterations.unwrap_or(0);
    if iterations < 0 {
        return err(
            format!("{field}.iterations"),
            format!("{iterations} must not be negative"),
        );
    }
    if iterations > 0 {
        if a.match_.as_ref().is_some_and(|m| !m.is_empty()) {
            return Ok(Strategy::AbTesting { iterations });
        }
        return Ok(Strategy::BlueGreen {
            iterations,
            mirror,
            promotion_step,
        });
    }
    let ladder = a.step_weights.clone().unwrap_or_default();
    let step = a.step_weight.unwrap_or(0);
    if !(0..=100).contains(&step) {
        return err(
            format!("{field}.stepWeight"),
            format!("{step} is not a percentage"),
        );
    }
    let (steps, max_weight) = if step > 0 || ladder.is_empty() {
        if step == 0 {
            return err(
                field.to_string(),
                "one of stepWeight, stepWeights or iterations must be set (got none)",
            );
        }
        // 0 is Go's zero value, which Flagger reads as "not set".
        let max = a.max_weight.filter(|m| *m != 0).unwrap_or(100);
        if !(1..=100).contains(&max) {
            return err(
                format!("{field}.maxWeight"),
                format!("{max} must be between 1 and 100"),
            );
        }
        (Steps::Linear(step), max)
    } else {
        for (i, w) in ladder.iter().enumerate() {
            if !(1..=100).contains(w) {
                return err(
                    format!("{field}.stepWeights[{i}]"),
                    format!("{w} must be between 1 and 100"),
                );
            }
            if i > 0 && *w <= ladder[i - 1] {
                return err(
                    format!("{field}.stepWeights[{i}]"),
                    "weights must increase strictly",
                );
            }
        }
        let max = *ladder.last().unwrap_or(&100);
        (Steps::Ladder(ladder), max)
    };
    Ok(Strategy::Canary(CanarySteps {
        steps,
        max_weight,
        promotion_step,
        mirror,
    }))
}

/// The seed's metric names, which meant the two built-in checks.
fn builtin_name(name: &str) -> Option<MetricSource> {
    match name {
        "request-success-rate" | "istio_requests_total" => Some(MetricSource::RequestSuccessRate),
        "request-duration" | "istio_request_duration_seconds_bucket" => {
            Some(MetricSource::RequestDuration)
        }
        _ => None,
    }
}

fn metric(field: &str, m: &CanaryMetric, namespace: &str) -> Result<MetricCheck, SpecError> {
    let interval = m.interval.clone().unwrap_or_else(|| "1m".to_string());
    match parse_go_duration(&interval) {
        Ok(d) if d > SignedDuration::ZERO => {}
        Ok(_) => {
            return err(
                format!("{field}.interval"),
                format!("{interval:?} must be positive"),
            );
        }
        Err(e) => return err(format!("{field}.interval"), e.to_string()),
    }
    let source = if let Some(t) = &m.template_ref {
        if t.name.is_empty() {
            return err(format!("{field}.templateRef.name"), "must not be empty");
        }
        MetricSource::Template {
            name: t.name.clone(),
            namespace: t.namespace.clone().unwrap_or_else(|| namespace.to_string()),
            variables: m.template_variables.clone().unwrap_or_default(),
        }
    } else if let Some(q) = m.query.as_ref().filter(|q| !q.trim().is_empty()) {
        MetricSource::Inline { query: q.clone() }
    } else if let Some(b) = builtin_name(&m.name) {
        b
    } else {
        return err(
            field.to_string(),
            format!(
                "metric {:?} is not built in and has neither query nor templateRef",
                m.name
            ),
        );
    };
    let (min, max) = bounds(m, &source);
    for (bound, value) in [("min", min), ("max", max)] {
        if value.is_some_and(f64::is_nan) {
            return err(
                format!("{field}.thresholdRange.{bound}"),
                "must be a number",
            );
        }
    }
    if let (Some(lo), Some(hi)) = (min, max)
        && lo > hi
    {
        return err(
            format!("{field}.thresholdRange"),
            format!("min {lo} is above max {hi}"),
        );
    }
    Ok(MetricCheck {
        name: m.name.clone(),
        source,
        interval,
        min,
        max,
    })
}

/// Flagger's bounds for one metric. A `thresholdRange` is used as written and `threshold` is then
/// ignored. Without one, `threshold` — 0 when absent, as Go's zero value — is the success rate's
/// minimum and every other metric's maximum, so a latency or custom metric without any threshold
/// fails on any value above 0.
fn bounds(m: &CanaryMetric, source: &MetricSource) -> (Option<f64>, Option<f64>) {
    let (min, max) = match (&m.threshold_range, source) {
        (Some(r), _) => (r.min, r.max),
        (None, MetricSource::RequestSuccessRate) => (Some(m.threshold.unwrap_or(0.0)), None),
        (None, _) => (None, Some(m.threshold.unwrap_or(0.0))),
    };
    match source {
        // Flagger turns a latency bound into a Go Duration of whole milliseconds (the fraction is
        // truncated) before comparing it, and prints it so in the halt message.
        MetricSource::RequestDuration => (min.map(f64::trunc), max.map(f64::trunc)),
        _ => (min, max),
    }
}

fn hook(field: &str, w: &CanaryWebhook) -> Result<Hook, SpecError> {
    let type_text = w.type_.as_deref().unwrap_or("");
    let Some(hook_type) = HookType::parse(type_text) else {
        return err(
            format!("{field}.type"),
            format!("unknown webhook type {type_text:?}"),
        );
    };
    if w.url.is_empty() {
        return err(format!("{field}.url"), "must not be empty");
    }
    let timeout = match w.timeout.as_deref() {
        None | Some("") => SignedDuration::from_secs(10),
        Some(t) => match parse_go_duration(t) {
            Ok(d) if d > SignedDuration::ZERO => d,
            Ok(_) => {
                return err(
                    format!("{field}.timeout"),
                    format!("{t:?} must be positive"),
                );
            }
            Err(e) => return err(format!("{field}.timeout"), e.to_string()),
        },
    };
    let retries = w.retries.unwrap_or(0);
    if retries < 0 {
        return err(
            format!("{field}.retries"),
            format!("{retries} must not be negative"),
        );
    }
    Ok(Hook {
        name: w.name.clone(),
        key: format!("{}/{}", hook_type.as_str(), w.name),
        hook_type,
        url: w.url.clone(),
        timeout,
        retries,
        metadata: w.metadata.clone().unwrap_or_default(),
        disable_tls: w.disable_tls.unwrap_or(false),
        mute_alert: w.mute_alert.unwrap_or(false),
    })
}
