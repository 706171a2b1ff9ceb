//! The trace format (version 1): a Canary, the operator's settings and everything the outside world
//! does over time. `docs/trace-format.md` documents every field; this module is its parser. Parsing
//! resolves every time to an absolute instant and validates the Canary, so the engine never meets a
//! malformed input and every error names the file, the field and, where known, the line.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use flagger_core::api::{CanarySpec, parse_go_duration};
use flagger_core::snapshot::{HookAnswer, MetricAnswer, OperatorConfig};
use flagger_core::{Policy, hash};
use jiff::{SignedDuration, Timestamp};
use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};

pub const FORMAT_VERSION: u32 = 1;

/// A malformed trace or Canary: one line naming the file, the field and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {what}")]
pub struct InputError {
    pub file: String,
    pub what: String,
}

impl InputError {
    pub fn new(file: &str, what: impl Into<String>) -> Self {
        InputError {
            file: file.to_string(),
            what: what.into(),
        }
    }
}

/// A point in time written either as an offset from the trace start (`"90s"`) or as an RFC 3339
/// timestamp.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum At {
    Offset(SignedDuration),
    Time(Timestamp),
}

impl At {
    pub fn resolve(self, start: Timestamp) -> Timestamp {
        match self {
            At::Offset(d) => start.checked_add(d).unwrap_or(Timestamp::MAX),
            At::Time(t) => t,
        }
    }
}

impl<'de> Deserialize<'de> for At {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        if let Ok(t) = text.parse::<Timestamp>() {
            return Ok(At::Time(t));
        }
        parse_go_duration(&text).map(At::Offset).map_err(|e| {
            de::Error::custom(format!(
                "{e} (expected an offset such as \"90s\" or an RFC 3339 time)"
            ))
        })
    }
}

impl Serialize for At {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            At::Offset(d) => s.serialize_str(&flagger_core::api::format_go_duration(*d)),
            At::Time(t) => s.serialize_str(&t.to_string()),
        }
    }
}

/// A Go duration string (`"30s"`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GoDuration(pub SignedDuration);

impl<'de> Deserialize<'de> for GoDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        match parse_go_duration(&text) {
            Ok(v) if v.is_negative() => {
                Err(de::Error::custom(format!("{text:?} must not be negative")))
            }
            Ok(v) => Ok(GoDuration(v)),
            Err(e) => Err(de::Error::custom(e)),
        }
    }
}

impl Serialize for GoDuration {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&flagger_core::api::format_go_duration(self.0))
    }
}

/// The file as written.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TraceFile {
    pub version: u32,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    pub start: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<GoDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<Timestamp>,
    #[serde(default)]
    pub operator: OperatorFile,
    pub canary: CanaryObject,
    pub revisions: Vec<RevisionFile>,
    #[serde(default)]
    pub readiness: ReadinessFile,
    #[serde(default)]
    pub metrics: BTreeMap<String, Vec<SampleFile>>,
    #[serde(default)]
    pub webhooks: BTreeMap<String, Vec<HookSampleFile>>,
    #[serde(default)]
    pub faults: FaultsFile,
    #[serde(default)]
    pub answers: Vec<RecordedAnswer>,
    #[serde(default)]
    pub initial: Initial,
    /// When the Canary is deleted (`kubectl delete canary`); never when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_at: Option<At>,
}

/// The cluster as it is at `start`, for traces that begin mid-life (recordings); empty by default.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Initial {
    #[serde(default)]
    pub status: flagger_core::CanaryStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary: Option<InitialPrimary>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routes: Option<flagger_core::Routes>,
    #[serde(default)]
    pub services_present: bool,
    #[serde(default)]
    pub apex_selects_primary: bool,
    #[serde(default)]
    pub finalizer: bool,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InitialPrimary {
    pub template_hash: String,
    #[serde(default)]
    pub configs: BTreeMap<String, String>,
    pub replicas: i32,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OperatorFile {
    #[serde(default = "default_mesh")]
    pub mesh_provider: String,
    #[serde(default = "default_min_interval")]
    pub min_interval: GoDuration,
    #[serde(default)]
    pub cluster_name: String,
    #[serde(default)]
    pub global_notifier: bool,
    /// `-control-loop-interval`: the operator reconciles every Canary at least this often.
    #[serde(default = "default_min_interval")]
    pub control_loop_interval: GoDuration,
}

fn default_mesh() -> String {
    "istio".into()
}

fn default_min_interval() -> GoDuration {
    GoDuration(SignedDuration::from_secs(10))
}

impl Default for OperatorFile {
    fn default() -> Self {
        OperatorFile {
            mesh_provider: default_mesh(),
            min_interval: default_min_interval(),
            cluster_name: String::new(),
            global_notifier: false,
            control_loop_interval: default_min_interval(),
        }
    }
}

/// A Canary object: `flagger.app/v1beta1`, or the seed's `v1alpha*` with `canaryAnalysis`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CanaryObject {
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    pub spec: CanarySpec,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct ObjectMeta {
    pub name: String,
    /// Empty when not written: `default` for a trace's Canary, the trace's namespace for `--canary`.
    #[serde(default)]
    pub namespace: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RevisionFile {
    pub at: At,
    /// The target's `spec.template` (any JSON object).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<serde_json::Value>,
    /// The template's hash alone, as a recording knows it (instead of `template`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_hash: Option<String>,
    #[serde(default)]
    pub configs: BTreeMap<String, String>,
    /// The target's `spec.replicas`; only on the first revision (later ones keep what Flagger set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaler_min_replicas: Option<i32>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReadinessFile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<GoDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kube_progress_deadline: Option<GoDuration>,
    #[serde(default)]
    pub rules: Vec<ReadinessRuleFile>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReadinessRuleFile {
    pub workload: WorkloadKind,
    pub from: At,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<At>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<GoDuration>,
    #[serde(default)]
    pub never: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum WorkloadKind {
    Canary,
    Primary,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SampleFile {
    pub at: At,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub nan: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_values: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HookSampleFile {
    pub at: At,
    pub pass: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FaultsFile {
    #[serde(default)]
    pub seed: u64,
    #[serde(default)]
    pub rates: FaultRates,
    #[serde(default)]
    pub scheduled: Vec<ScheduledFault>,
}

/// Probability per reconcile (per metric answer for the metric faults), each within 0..=1.
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FaultRates {
    #[serde(default)]
    pub metric_error: f64,
    #[serde(default)]
    pub metric_nan: f64,
    #[serde(default)]
    pub metric_missing: f64,
    #[serde(default)]
    pub conflict: f64,
    #[serde(default)]
    pub restart: f64,
    #[serde(default)]
    pub duplicate_reconcile: f64,
    #[serde(default)]
    pub early_reconcile: f64,
    #[serde(default)]
    pub stale_snapshot: f64,
    #[serde(default)]
    pub apply_twice: f64,
}

impl FaultRates {
    pub fn named(&self) -> [(&'static str, f64); 9] {
        [
            ("metricError", self.metric_error),
            ("metricNaN", self.metric_nan),
            ("metricMissing", self.metric_missing),
            ("conflict", self.conflict),
            ("restart", self.restart),
            ("duplicateReconcile", self.duplicate_reconcile),
            ("earlyReconcile", self.early_reconcile),
            ("staleSnapshot", self.stale_snapshot),
            ("applyTwice", self.apply_twice),
        ]
    }

    pub fn any(&self) -> bool {
        self.named().iter().any(|(_, r)| *r > 0.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum FaultKind {
    MetricError,
    #[serde(rename = "metricNaN")]
    MetricNan,
    MetricMissing,
    Conflict,
    Restart,
    DuplicateReconcile,
    EarlyReconcile,
    StaleSnapshot,
    ApplyTwice,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScheduledFault {
    pub at: At,
    pub kind: FaultKind,
}

/// One input given to the core during a recorded run, keyed as `Request::key()`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RecordedAnswer {
    pub at: At,
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<MetricAnswer>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hook: Option<HookAnswer>,
}

/// A validated trace with every time resolved.
#[derive(Debug, Clone)]
pub struct Trace {
    pub name: String,
    pub start: Timestamp,
    pub end: Timestamp,
    pub config: OperatorConfig,
    pub canary: CanaryObject,
    pub revisions: Vec<Revision>,
    pub readiness: Readiness,
    pub metrics: BTreeMap<String, Vec<(Timestamp, MetricAnswer)>>,
    pub webhooks: BTreeMap<String, Vec<(Timestamp, HookAnswer)>>,
    pub faults: Faults,
    pub recorded_metrics: BTreeMap<String, Vec<(Timestamp, MetricAnswer)>>,
    pub recorded_hooks: BTreeMap<String, Vec<(Timestamp, HookAnswer)>>,
    pub initial: Initial,
    pub delete_at: Option<Timestamp>,
    /// How far from a reconcile a recorded answer may lie and still be used (see
    /// [`crate::inputs`]): half the analysis interval of the Canary that was recorded.
    pub sample_window: SignedDuration,
    /// The operator's periodic resync (`-control-loop-interval`, 10s by default).
    pub control_loop_interval: SignedDuration,
}

/// Half the effective analysis interval of `canary` (1m when its spec is invalid).
pub fn sample_window(canary: &CanaryObject, config: &OperatorConfig) -> SignedDuration {
    let interval = Policy::from_spec(
        &canary.metadata.name,
        &canary.metadata.namespace,
        &canary.spec,
        config,
    )
    .map_or(SignedDuration::from_mins(1), |p| p.interval);
    interval / 2
}

#[derive(Debug, Clone)]
pub struct Revision {
    pub at: Timestamp,
    pub template: serde_json::Value,
    pub template_hash: String,
    pub configs: BTreeMap<String, String>,
    pub replicas: Option<i32>,
    pub autoscaler_min_replicas: Option<i32>,
}

#[derive(Debug, Clone, Default)]
pub struct Readiness {
    pub delay: SignedDuration,
    pub kube_progress_deadline: Option<SignedDuration>,
    pub rules: Vec<ReadinessRule>,
    /// Readiness as a recording observed it, per workload, in time order: a rollout started at `t`
    /// finishes at the first later observation that saw the workload ready.
    pub observed: BTreeMap<WorkloadKind, Vec<(Timestamp, bool)>>,
}

#[derive(Debug, Clone)]
pub struct ReadinessRule {
    pub workload: WorkloadKind,
    pub from: Timestamp,
    pub until: Option<Timestamp>,
    /// `None`: a rollout started in the window never finishes.
    pub delay: Option<SignedDuration>,
}

impl Readiness {
    /// How long a rollout of `workload` started at `at` takes; `None` when it never finishes.
    /// The last matching rule wins, so later rules refine earlier ones.
    pub fn delay_for(&self, workload: WorkloadKind, at: Timestamp) -> Option<SignedDuration> {
        self.rules
            .iter()
            .rev()
            .find(|r| r.workload == workload && r.from <= at && r.until.is_none_or(|u| at < u))
            .map_or_else(|| self.observed_delay(workload, at), |r| r.delay)
    }

    fn observed_delay(&self, workload: WorkloadKind, at: Timestamp) -> Option<SignedDuration> {
        match self.observed.get(&workload) {
            Some(seen) if !seen.is_empty() => seen
                .iter()
                .find(|(t, ready)| *ready && *t > at)
                .map(|(t, _)| t.duration_since(at)),
            _ => Some(self.delay),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Faults {
    pub seed: u64,
    pub rates: FaultRates,
    pub scheduled: Vec<(Timestamp, FaultKind)>,
}

impl Trace {
    /// Reads and validates a trace file.
    pub fn load(path: &Path) -> Result<Trace, InputError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| InputError::new(&file, format!("cannot read: {e}")))?;
        let name = path
            .file_name()
            .map_or_else(|| file.clone(), |n| n.to_string_lossy().into_owned());
        if path.extension().is_some_and(|e| e == "jsonl") {
            let recording = crate::recording::parse(&file, &text)?;
            return crate::recording::to_trace(&name, &recording)
                .map_err(|e| InputError { file, what: e.what });
        }
        Trace::parse(&name, &text).map_err(|e| InputError { file, what: e.what })
    }

    /// Parses a trace from JSON text; `name` is used in error messages and the timeline header.
    pub fn parse(name: &str, text: &str) -> Result<Trace, InputError> {
        let raw: TraceFile = from_json(name, text)?;
        Trace::from_file(name, raw)
    }

    pub fn from_file(name: &str, raw: TraceFile) -> Result<Trace, InputError> {
        let fail = |field: &str, message: String| {
            Err(InputError::new(name, format!("{field}: {message}")))
        };
        if raw.version != FORMAT_VERSION {
            return fail(
                "version",
                format!(
                    "{} is not supported (this replay reads version {FORMAT_VERSION})",
                    raw.version
                ),
            );
        }
        let start = raw.start;
        let end = match (raw.duration, raw.end) {
            (Some(_), Some(_)) => {
                return fail("end", "give either duration or end, not both".into());
            }
            (Some(d), None) => start.checked_add(d.0).unwrap_or(Timestamp::MAX),
            (None, Some(e)) => e,
            (None, None) => return fail("duration", "missing (or give end)".into()),
        };
        if end <= start {
            return fail("end", format!("{end} is not after start {start}"));
        }
        let mut raw = raw;
        if raw.canary.metadata.namespace.is_empty() {
            raw.canary.metadata.namespace = "default".into();
        }
        check_canary(name, "canary.", &raw.canary)?;
        let config = OperatorConfig {
            mesh_provider: raw.operator.mesh_provider.clone(),
            min_interval: raw.operator.min_interval.0,
            cluster_name: raw.operator.cluster_name.clone(),
            global_notifier: raw.operator.global_notifier,
        };
        if config.min_interval <= SignedDuration::ZERO {
            return fail("operator.minInterval", "must be positive".into());
        }
        let control_loop_interval = raw.operator.control_loop_interval.0;
        if control_loop_interval <= SignedDuration::ZERO {
            return fail("operator.controlLoopInterval", "must be positive".into());
        }
        if let Err(e) = Policy::from_spec(
            &raw.canary.metadata.name,
            &raw.canary.metadata.namespace,
            &raw.canary.spec,
            &config,
        ) {
            return fail(&format!("canary.{}", e.field), e.message);
        }

        if raw.revisions.is_empty() {
            return fail(
                "revisions",
                "at least one revision (the initial target) is required".into(),
            );
        }
        let mut revisions = Vec::with_capacity(raw.revisions.len());
        for (i, r) in raw.revisions.iter().enumerate() {
            let at = r.at.resolve(start);
            let field = format!("revisions[{i}]");
            if at < start {
                return fail(&format!("{field}.at"), format!("{at} is before start"));
            }
            if let Some(prev) = revisions.last().map(|p: &Revision| p.at)
                && at < prev
            {
                return fail(
                    &format!("{field}.at"),
                    "revisions must be in time order".into(),
                );
            }
            let (template, template_hash) = match (&r.template, &r.template_hash) {
                (Some(t), None) if t.is_object() => (t.clone(), hash::template_hash(t)),
                (Some(_), None) => {
                    return fail(
                        &format!("{field}.template"),
                        "must be a JSON object (the pod template)".into(),
                    );
                }
                (None, Some(h)) if !h.is_empty() => (serde_json::Value::Null, h.clone()),
                _ => {
                    return fail(&field, "give exactly one of template, templateHash".into());
                }
            };
            if i > 0 && r.replicas.is_some() {
                return fail(
                    &format!("{field}.replicas"),
                    "only the first revision sets replicas (afterwards Flagger owns them)".into(),
                );
            }
            if let Some(n) = r.replicas
                && n < 0
            {
                return fail(
                    &format!("{field}.replicas"),
                    format!("{n} must not be negative"),
                );
            }
            revisions.push(Revision {
                at,
                template_hash,
                template,
                configs: r.configs.clone(),
                replicas: r.replicas,
                autoscaler_min_replicas: r.autoscaler_min_replicas,
            });
        }
        if revisions[0].at != start {
            return fail(
                "revisions[0].at",
                "the first revision must be at the start (offset 0s)".into(),
            );
        }

        let mut rules = Vec::new();
        for (i, r) in raw.readiness.rules.iter().enumerate() {
            let field = format!("readiness.rules[{i}]");
            let delay = match (r.never, r.delay) {
                (true, Some(_)) => {
                    return fail(&field, "give either delay or never, not both".into());
                }
                (true, None) => None,
                (false, Some(d)) => Some(d.0),
                (false, None) => return fail(&field, "missing delay (or never: true)".into()),
            };
            let from = r.from.resolve(start);
            let until = r.until.map(|u| u.resolve(start));
            if until.is_some_and(|u| u <= from) {
                return fail(&format!("{field}.until"), "must be after from".into());
            }
            rules.push(ReadinessRule {
                workload: r.workload,
                from,
                until,
                delay,
            });
        }
        let readiness = Readiness {
            delay: raw.readiness.delay.map_or(SignedDuration::ZERO, |d| d.0),
            kube_progress_deadline: raw.readiness.kube_progress_deadline.map(|d| d.0),
            rules,
            observed: BTreeMap::new(),
        };

        let mut metrics = BTreeMap::new();
        for (metric, samples) in &raw.metrics {
            let mut series = Vec::with_capacity(samples.len());
            for (i, s) in samples.iter().enumerate() {
                let field = format!("metrics.{metric}[{i}]");
                let answer = match (s.value, s.nan, &s.no_values, &s.error) {
                    (Some(v), false, None, None) => MetricAnswer::Value(v),
                    (None, true, None, None) => MetricAnswer::Value(f64::NAN),
                    (None, false, Some(m), None) => MetricAnswer::NoValues(m.clone()),
                    (None, false, None, Some(e)) => MetricAnswer::Error(e.clone()),
                    _ => {
                        return fail(
                            &field,
                            "give exactly one of value, nan, noValues, error".into(),
                        );
                    }
                };
                series.push((s.at.resolve(start), answer));
            }
            check_order(name, &format!("metrics.{metric}"), &series)?;
            metrics.insert(metric.clone(), series);
        }
        let mut webhooks = BTreeMap::new();
        for (hook, samples) in &raw.webhooks {
            let series: Vec<_> = samples
                .iter()
                .map(|s| {
                    let answer = if s.pass {
                        HookAnswer::Passed
                    } else {
                        HookAnswer::Failed(s.message.clone())
                    };
                    (s.at.resolve(start), answer)
                })
                .collect();
            check_order(name, &format!("webhooks.{hook}"), &series)?;
            webhooks.insert(hook.clone(), series);
        }

        for (field, rate) in raw.faults.rates.named() {
            if !(0.0..=1.0).contains(&rate) {
                return fail(
                    &format!("faults.rates.{field}"),
                    format!("{rate} is not a probability (0 to 1)"),
                );
            }
        }
        let faults = Faults {
            seed: raw.faults.seed,
            rates: raw.faults.rates,
            scheduled: raw
                .faults
                .scheduled
                .iter()
                .map(|f| (f.at.resolve(start), f.kind))
                .collect(),
        };

        let mut recorded_metrics: BTreeMap<String, Vec<(Timestamp, MetricAnswer)>> =
            BTreeMap::new();
        let mut recorded_hooks: BTreeMap<String, Vec<(Timestamp, HookAnswer)>> = BTreeMap::new();
        for (i, a) in raw.answers.iter().enumerate() {
            let at = a.at.resolve(start);
            match (&a.metric, &a.hook) {
                (Some(m), None) => recorded_metrics
                    .entry(a.key.clone())
                    .or_default()
                    .push((at, m.clone())),
                (None, Some(h)) => recorded_hooks
                    .entry(a.key.clone())
                    .or_default()
                    .push((at, h.clone())),
                _ => {
                    return fail(
                        &format!("answers[{i}]"),
                        "give exactly one of metric, hook".into(),
                    );
                }
            }
        }
        for series in recorded_metrics.values_mut() {
            series.sort_by_key(|(t, _)| *t);
        }
        for series in recorded_hooks.values_mut() {
            series.sort_by_key(|(t, _)| *t);
        }

        Ok(Trace {
            control_loop_interval,
            sample_window: sample_window(&raw.canary, &config),
            name: name.to_string(),
            start,
            end,
            config,
            canary: raw.canary,
            revisions,
            readiness,
            metrics,
            webhooks,
            faults,
            recorded_metrics,
            recorded_hooks,
            initial: raw.initial,
            delete_at: raw.delete_at.map(|d| d.resolve(start)),
        })
    }

    /// The same recorded inputs under another Canary (the `--canary` override).
    pub fn with_canary(&self, canary: CanaryObject, file: &str) -> Result<Trace, InputError> {
        let mut canary = canary;
        if canary.metadata.namespace.is_empty() {
            canary.metadata.namespace = self.canary.metadata.namespace.clone();
        }
        check_canary(file, "", &canary)?;
        if let Err(e) = Policy::from_spec(
            &canary.metadata.name,
            &canary.metadata.namespace,
            &canary.spec,
            &self.config,
        ) {
            return Err(InputError::new(file, format!("{}: {}", e.field, e.message)));
        }
        let mut t = self.clone();
        t.canary = canary;
        Ok(t)
    }
}

fn check_order<T>(file: &str, field: &str, series: &[(Timestamp, T)]) -> Result<(), InputError> {
    if let Some(i) = series.windows(2).position(|w| w[1].0 < w[0].0) {
        return Err(InputError::new(
            file,
            format!("{field}[{}].at: samples must be in time order", i + 1),
        ));
    }
    Ok(())
}

fn check_canary(file: &str, prefix: &str, c: &CanaryObject) -> Result<(), InputError> {
    if !c.api_version.starts_with("flagger.app/") {
        return Err(InputError::new(
            file,
            format!(
                "{prefix}apiVersion: {:?} is not a flagger.app version",
                c.api_version
            ),
        ));
    }
    if c.kind != "Canary" {
        return Err(InputError::new(
            file,
            format!("{prefix}kind: {:?} is not Canary", c.kind),
        ));
    }
    if c.metadata.name.is_empty() {
        return Err(InputError::new(
            file,
            format!("{prefix}metadata.name: must not be empty"),
        ));
    }
    Ok(())
}

/// Deserializes JSON, naming the field path and the line of the first problem.
pub fn from_json<T: serde::de::DeserializeOwned>(file: &str, text: &str) -> Result<T, InputError> {
    let mut de = serde_json::Deserializer::from_str(text);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = strip_position(&inner.to_string());
        let at = format!("line {} column {}", inner.line(), inner.column());
        if path == "." || path.is_empty() {
            InputError::new(file, format!("{message} ({at})"))
        } else {
            InputError::new(file, format!("{path}: {message} ({at})"))
        }
    })?;
    de.end().map_err(|e| InputError::new(file, e.to_string()))?;
    Ok(value)
}

/// A Canary from YAML or JSON (`--canary FILE`).
pub fn canary_from_text(file: &str, text: &str) -> Result<CanaryObject, InputError> {
    if text.trim_start().starts_with('{') {
        return from_json(file, text);
    }
    let value: serde_json::Value = serde_saphyr::from_str(text).map_err(|e| {
        let text = e.to_string();
        let first = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or("invalid YAML");
        // The rendered message repeats the position we print ourselves.
        let first = first.strip_prefix("error: ").unwrap_or(first);
        let first = match e.location() {
            Some(l) => first
                .strip_prefix(&format!("line {} column {}: ", l.line(), l.column()))
                .unwrap_or(first),
            None => first,
        }
        .to_string();
        match e.location() {
            Some(l) => InputError::new(
                file,
                format!("line {} column {}: {first}", l.line(), l.column()),
            ),
            None => InputError::new(file, first),
        }
    })?;
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        InputError::new(file, format!("{path}: {}", e.into_inner()))
    })
}

pub fn load_canary(path: &Path) -> Result<CanaryObject, InputError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| InputError::new(&file, format!("cannot read: {e}")))?;
    canary_from_text(&file, &text)
}

/// serde_json appends " at line X column Y"; the caller reports the position itself.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

impl fmt::Display for WorkloadKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WorkloadKind::Canary => "canary",
            WorkloadKind::Primary => "primary",
        })
    }
}
