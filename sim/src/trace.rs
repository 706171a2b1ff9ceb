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
pub struct InputError {
    pub file: String,
    pub what: String,
}

/// `FILE: what` on one line: control characters (in a name quoted from the file, say) escaped.
impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use crate::strict::escape_control as esc;
        write!(f, "{}: {}", esc(&self.file, false), esc(&self.what, false))
    }
}

impl InputError {
    pub fn new(file: &str, what: impl Into<String>) -> Self {
        InputError {
            file: file.to_string(),
            what: what.into(),
        }
    }

    /// The same place, another text.
    pub fn with_what(self, what: String) -> Self {
        InputError { what, ..self }
    }

    /// An error at a line of the file: printed as `FILE:LINE: what`.
    pub fn at(file: &str, line: usize, what: impl Into<String>) -> Self {
        InputError {
            file: format!("{file}:{line}"),
            what: what.into(),
        }
    }
}

/// The longest virtual time a replay may cover. A canary run lasts minutes to hours, a recording
/// of a busy operator days; a month is far beyond any of them, and bounding it keeps a typo (a
/// year instead of an hour) from running for hours and filling memory.
pub const MAX_SPAN: SignedDuration = SignedDuration::from_hours(31 * 24);

/// How a trace is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Yaml,
    /// JSON when the text starts with `{`, YAML otherwise (standard input).
    Auto,
}

impl Format {
    /// The format a file's extension says: `.yaml`/`.yml` are YAML, `.json` JSON, anything else
    /// is judged by content.
    pub fn of(path: &Path) -> Format {
        match path.extension().and_then(|e| e.to_str()) {
            Some("yaml" | "yml") => Format::Yaml,
            Some("json") => Format::Json,
            _ => Format::Auto,
        }
    }
}

/// Whether a file is a `-record-traces` recording: by its `.jsonl` extension, or for standard
/// input (or an unknown extension) by content: JSON lines whose first object holds a snapshot.
pub fn is_recording(path: &Path, text: &str) -> bool {
    match path.extension().and_then(|e| e.to_str()) {
        Some("jsonl") => true,
        Some("json" | "yaml" | "yml") => false,
        _ => text
            .lines()
            .find(|l| !l.trim().is_empty())
            .and_then(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .is_some_and(|v| v.get("snapshot").is_some()),
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

/// A time in RFC 3339, refused in our words rather than the parser's.
fn rfc3339<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
    let text = String::deserialize(d)?;
    text.parse::<Timestamp>().map_err(|_| {
        serde::de::Error::custom(format!(
            "{text:?} is not an RFC 3339 time (such as \"2026-01-01T00:00:00Z\")"
        ))
    })
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
    #[serde(deserialize_with = "rfc3339")]
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
    /// Operator crashes at exact command boundaries (`flagger test`'s restart sweep).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub crashes: Vec<CrashFile>,
}

/// The operator process dies after carrying out the first `afterCommands` commands of reconcile
/// number `reconcile` (counted from 0, as `--output json` numbers reconciles), and starts again at
/// once from what the cluster persisted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CrashFile {
    pub reconcile: usize,
    pub after_commands: usize,
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
    /// `faults.crashes`, as the engine's [`crate::Crash`].
    pub crashes: Vec<crate::Crash>,
}

impl Trace {
    /// Reads and validates a trace file (`-`: standard input): JSON, YAML, or a recording.
    pub fn load(path: &Path) -> Result<Trace, InputError> {
        let src = crate::strict::read_source(path)?;
        if is_recording(path, &src.text) {
            let recording = crate::recording::parse(&src.file, &src.text)?;
            return crate::recording::to_trace(&src.name, &recording).map_err(|e| InputError {
                file: src.file.clone(),
                what: e.what,
            });
        }
        Trace::parse_as(&src.name, &src.file, &src.text, Format::of(path))
    }

    /// Parses a trace from JSON or YAML text; `name` is used in error messages and the timeline
    /// header.
    pub fn parse(name: &str, text: &str) -> Result<Trace, InputError> {
        Trace::parse_as(name, name, text, Format::Auto)
    }

    /// Parses a trace written by a person: every field known (in `canary` and `initial.status`
    /// too), every answer and schedule for a metric or webhook of the Canary. `file` names the
    /// file in errors, each of which is one line: `FILE:LINE: field: cause`.
    pub fn parse_as(
        name: &str,
        file: &str,
        text: &str,
        format: Format,
    ) -> Result<Trace, InputError> {
        let yaml = match format {
            Format::Json => false,
            Format::Yaml => true,
            Format::Auto => !text.trim_start().starts_with('{'),
        };
        let (raw, value): (TraceFile, serde_json::Value) = if yaml {
            let mut docs = crate::strict::yaml_documents(file, text)?;
            let value = match docs.len() {
                1 => docs.remove(0),
                0 => return Err(InputError::new(file, "holds no trace (the file is empty)")),
                n => {
                    return Err(InputError::new(
                        file,
                        format!("holds {n} YAML documents; a trace is one document"),
                    ));
                }
            };
            (
                crate::strict::from_value(file, text, "", value.clone())?,
                value,
            )
        } else {
            let raw = from_json(file, text)?;
            (raw, serde_json::from_str(text).unwrap_or_default())
        };
        let strict = |path: String, cause: String| {
            let path = if cause.starts_with("unknown field") {
                strip_indices(&path)
            } else {
                path
            };
            crate::strict::located(file, text, &path, &cause)
        };
        if let Some(c) = value.get("canary") {
            crate::strict::check_canary_fields(c).map_err(|(p, m)| {
                let path = format!("canary.{p}");
                strict(path.clone(), m.clone()).with_what(format!("{path}: {m}"))
            })?;
        }
        if let Some(s) = value.get("initial").and_then(|i| i.get("status")) {
            crate::strict::check_status_fields(s).map_err(|(p, m)| {
                let path = format!("initial.status.{p}");
                strict(path.clone(), m.clone()).with_what(format!("{path}: {m}"))
            })?;
        }
        check_keys(&raw).map_err(|(p, m)| crate::strict::located(file, text, &p, &m))?;
        Trace::from_file(name, raw).map_err(|e| {
            let field = e.what.split(": ").next().unwrap_or_default();
            match crate::strict::line_of(text, field) {
                Some(line) if !field.contains(' ') => InputError::at(file, line, e.what),
                _ => InputError::new(file, e.what),
            }
        })
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
        if end.duration_since(start) > MAX_SPAN {
            let field = if raw.duration.is_some() {
                "duration"
            } else {
                "end"
            };
            return fail(
                field,
                format!(
                    "the replay would cover {}, more than the {} days a replay may cover",
                    flagger_core::api::format_go_duration(end.duration_since(start)),
                    MAX_SPAN.as_hours() / 24
                ),
            );
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
            crashes: raw
                .faults
                .crashes
                .iter()
                .map(|c| crate::Crash {
                    reconcile: c.reconcile,
                    keep: c.after_commands,
                })
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

/// `a[1].b` → `a.b`: the path an unknown field's line is looked up by (its first occurrence).
fn strip_indices(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut depth = 0;
    for c in path.chars() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

/// Every answer and schedule must be for a metric or webhook of the trace's Canary: one for
/// anything else is never asked for, so it is a typo or a leftover that would silently not count.
fn check_keys(raw: &TraceFile) -> Result<(), (String, String)> {
    let analysis = raw.canary.spec.analysis();
    let metrics: Vec<&str> = analysis
        .and_then(|a| a.metrics.as_ref())
        .into_iter()
        .flatten()
        .map(|m| m.name.as_str())
        .collect();
    let hooks: Vec<(String, &str)> = analysis
        .and_then(|a| a.webhooks.as_ref())
        .into_iter()
        .flatten()
        .map(|w| {
            let t = w
                .type_
                .as_deref()
                .filter(|t| !t.is_empty())
                .unwrap_or("rollout");
            (format!("{t}/{}", w.name), w.name.as_str())
        })
        .collect();
    let hook_keys: Vec<&str> = hooks.iter().map(|(k, _)| k.as_str()).collect();
    let not_in = |what: &str, key: &str, known: &[&str]| {
        let known_text = if known.is_empty() {
            "it has none".to_string()
        } else {
            format!("it has {}", known.join(", "))
        };
        match crate::strict::nearest(key, known.iter().copied()) {
            Some(k) => {
                format!("{key:?} is not a {what} of the Canary, did you mean {k}? ({known_text})")
            }
            None => format!("{key:?} is not a {what} of the Canary ({known_text})"),
        }
    };
    for key in raw.metrics.keys() {
        if !metrics.contains(&key.as_str()) {
            return Err((format!("metrics.{key}"), not_in("metric", key, &metrics)));
        }
    }
    for key in raw.webhooks.keys() {
        if !hooks.iter().any(|(k, n)| k == key || n == key) {
            return Err((
                format!("webhooks.{key}"),
                not_in("webhook", key, &hook_keys),
            ));
        }
    }
    for (i, a) in raw.answers.iter().enumerate() {
        let field = format!("answers[{i}].key");
        if a.metric.is_some() && !metrics.contains(&a.key.as_str()) {
            return Err((field, not_in("metric", &a.key, &metrics)));
        }
        if a.hook.is_some() && !hook_keys.contains(&a.key.as_str()) {
            return Err((field, not_in("webhook", &a.key, &hook_keys)));
        }
    }
    Ok(())
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

/// Deserializes JSON, naming the field path and the line of the first problem, in our words.
pub fn from_json<T: serde::de::DeserializeOwned>(file: &str, text: &str) -> Result<T, InputError> {
    let json_error = |path: &str, inner: serde_json::Error| {
        let raw = strip_position(&inner.to_string());
        let cause = match inner.classify() {
            serde_json::error::Category::Data => crate::strict::plain(&raw),
            _ => crate::strict::json_syntax(&raw),
        };
        let (path, cause) = crate::strict::describe(path, &cause);
        let what = if path.is_empty() {
            cause
        } else {
            format!("{path}: {cause}")
        };
        InputError::at(file, inner.line().max(1), what)
    };
    let mut de = serde_json::Deserializer::from_str(text);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        json_error(&path, e.into_inner())
    })?;
    de.end().map_err(|e| json_error("", e))?;
    Ok(value)
}

/// A Canary from YAML or JSON (`--canary FILE`), as strictly as a trace: every field known. A file
/// with several YAML documents (a Canary with its Ingress, say) gives its one Canary.
pub fn canary_from_text(file: &str, text: &str) -> Result<CanaryObject, InputError> {
    let docs = if text.trim_start().starts_with('{') {
        vec![from_json::<serde_json::Value>(file, text)?]
    } else {
        crate::strict::yaml_documents(file, text)?
    };
    let kind = |d: &serde_json::Value| d.get("kind").and_then(|k| k.as_str()).map(str::to_string);
    let value = match docs.len() {
        0 => return Err(InputError::new(file, "holds no Canary (the file is empty)")),
        // One document: a Canary, or an error naming what it is (or its missing kind).
        1 if kind(&docs[0]).is_none_or(|k| k == "Canary") => docs.into_iter().next(),
        _ => {
            let canaries: Vec<&serde_json::Value> = docs
                .iter()
                .filter(|d| kind(d).as_deref() == Some("Canary"))
                .collect();
            match canaries.len() {
                1 => Some(canaries[0].clone()),
                0 => {
                    let kinds: Vec<String> = docs
                        .iter()
                        .map(|d| kind(d).map_or("document without a kind".into(), |k| k))
                        .collect();
                    return Err(InputError::new(
                        file,
                        format!("holds {}, not a Canary", with_articles(&kinds)),
                    ));
                }
                n => {
                    let names: Vec<String> = canaries
                        .iter()
                        .map(|c| {
                            c.get("metadata")
                                .and_then(|m| m.get("name"))
                                .and_then(|n| n.as_str())
                                .unwrap_or("(unnamed)")
                                .to_string()
                        })
                        .collect();
                    return Err(InputError::new(
                        file,
                        format!(
                            "holds {n} Canaries ({}); give a file with one of them",
                            names.join(", ")
                        ),
                    ));
                }
            }
        }
    }
    .unwrap_or_default();
    crate::strict::check_canary_fields(&value).map_err(|(path, cause)| {
        crate::strict::located(file, text, &strip_indices(&path), &cause)
            .with_what(format!("{path}: {cause}"))
    })?;
    crate::strict::from_value(file, text, "", value)
}

/// `["MetricTemplate", "AlertProvider"]` → `a MetricTemplate and an AlertProvider`.
fn with_articles(kinds: &[String]) -> String {
    let one = |k: &String| {
        let vowel = k.chars().next().is_some_and(|c| "AEIOUaeiou".contains(c));
        if k.starts_with("document") {
            format!("a {k}")
        } else if vowel {
            format!("an {k}")
        } else {
            format!("a {k}")
        }
    };
    match kinds {
        [] => "nothing".into(),
        [k] => one(k),
        [rest @ .., last] => format!(
            "{} and {}",
            rest.iter().map(one).collect::<Vec<_>>().join(", "),
            one(last)
        ),
    }
}

/// Reads a Canary (`--canary FILE`; `-` is standard input).
pub fn load_canary(path: &Path) -> Result<CanaryObject, InputError> {
    let src = crate::strict::read_source(path)?;
    canary_from_text(&src.file, &src.text)
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
