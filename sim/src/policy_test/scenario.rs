//! Scenarios around one Canary spec: what the world does to a new revision of the user's own
//! workload (metrics failing, flapping, creeping or missing, the metrics backend down, slow or
//! stuck rollouts, gates closed or late, another revision mid-analysis, the operator restarting).
//! A [`Scenario`] is plain parameters, so it can be shrunk field by field; [`Scenario::trace`]
//! turns it into a trace file (`docs/trace-format.md`) that `flagger replay` reproduces exactly.

use std::collections::BTreeMap;
use std::fmt;

use flagger_core::Policy;
use flagger_core::command::MetricSource;
use flagger_core::policy::{HookType, Steps, Strategy};
use jiff::{SignedDuration, Timestamp};
use serde_json::json;

use crate::Crash;
use crate::prng::Rng;
use crate::trace::{
    At, CanaryObject, CrashFile, FaultKind, FaultRates, FaultsFile, GoDuration, HookSampleFile,
    InputError, OperatorFile, ReadinessFile, ReadinessRuleFile, RevisionFile, SampleFile,
    ScheduledFault, TraceFile, WorkloadKind,
};

use super::expect::{Level, Suite};

/// When the scenarios start (any fixed instant: only offsets matter).
pub const START: &str = "2026-01-01T00:00:00Z";

/// One metric of the spec and its bounds as the core judges them.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricSubject {
    pub name: String,
    pub min: Option<f64>,
    pub max: Option<f64>,
    /// Built-in success rate: a percentage, never above 100.
    pub percent: bool,
}

impl MetricSubject {
    /// Whether `value` passes the spec's own check (as `flagger_core::checks::judge`).
    pub fn passes(&self, value: f64) -> bool {
        self.min.is_none_or(|m| value >= m) && self.max.is_none_or(|m| value <= m)
    }

    /// The side on which the spec itself fails the metric.
    pub fn bound(&self) -> Option<Level> {
        match (self.min, self.max) {
            (Some(min), _) => Some(Level::Below(min)),
            (None, Some(max)) => Some(Level::Above(max)),
            (None, None) => None,
        }
    }
}

/// The Canary under test and what scenarios can vary about it.
#[derive(Debug, Clone)]
pub struct Subject {
    pub canary: CanaryObject,
    pub operator: OperatorFile,
    pub policy: Policy,
    pub metrics: Vec<MetricSubject>,
    /// Every webhook as `type/name`, in spec order.
    pub hook_keys: Vec<String>,
    /// The `confirm-*` webhooks: gates a person or a system opens.
    pub gate_keys: Vec<String>,
    /// The `pre-rollout`, `rollout` and `rollback` webhooks: checks a system answers.
    pub check_hooks: Vec<CheckHook>,
}

/// A `pre-rollout`, `rollout` or `rollback` webhook of the Canary.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckHook {
    /// `type/name`, as the core keys its calls.
    pub key: String,
    pub hook_type: HookType,
    pub url: String,
    /// The hook's timeout (Flagger's 10s when it sets none).
    pub timeout_secs: f64,
}

impl Subject {
    /// Validates the Canary as the operator would; `file` names it in errors.
    pub fn new(file: &str, canary: CanaryObject) -> Result<Subject, InputError> {
        let mut canary = canary;
        if canary.metadata.namespace.is_empty() {
            canary.metadata.namespace = "default".into();
        }
        if canary.kind != "Canary" {
            return Err(InputError::new(
                file,
                format!("kind: {:?} is not Canary", canary.kind),
            ));
        }
        let operator = OperatorFile::default();
        let config = flagger_core::OperatorConfig {
            mesh_provider: operator.mesh_provider.clone(),
            min_interval: operator.min_interval.0,
            cluster_name: String::new(),
            global_notifier: false,
        };
        let policy = Policy::from_spec(
            &canary.metadata.name,
            &canary.metadata.namespace,
            &canary.spec,
            &config,
        )
        .map_err(|e| InputError::new(file, format!("{}: {}", e.field, e.message)))?;
        let metrics = policy
            .metrics
            .iter()
            .map(|m| MetricSubject {
                name: m.name.clone(),
                min: m.min,
                max: m.max,
                percent: matches!(m.source, MetricSource::RequestSuccessRate),
            })
            .collect();
        let hook_keys = policy.hooks.iter().map(|h| h.key.clone()).collect();
        let gate_keys = policy
            .hooks
            .iter()
            .filter(|h| {
                matches!(
                    h.hook_type,
                    HookType::ConfirmRollout
                        | HookType::ConfirmTrafficIncrease
                        | HookType::ConfirmPromotion
                )
            })
            .map(|h| h.key.clone())
            .collect();
        let check_hooks = policy
            .hooks
            .iter()
            .filter(|h| {
                matches!(
                    h.hook_type,
                    HookType::PreRollout | HookType::Rollout | HookType::Rollback
                )
            })
            .map(|h| CheckHook {
                key: h.key.clone(),
                hook_type: h.hook_type,
                url: h.url.clone(),
                timeout_secs: if h.timeout.is_positive() {
                    h.timeout.as_secs_f64()
                } else {
                    10.0
                },
            })
            .collect();
        Ok(Subject {
            canary,
            operator,
            policy,
            metrics,
            hook_keys,
            gate_keys,
            check_hooks,
        })
    }

    pub fn name(&self) -> String {
        format!(
            "{}.{}",
            self.canary.metadata.name, self.canary.metadata.namespace
        )
    }

    pub fn interval_secs(&self) -> i64 {
        self.policy.interval.as_secs().max(1)
    }

    /// A generous estimate of one analysis from start to decision, in seconds: every traffic
    /// step, the promotion steps, the threshold's worth of failed checks and the deadline.
    pub fn analysis_secs(&self) -> i64 {
        let steps = match &self.policy.strategy {
            Strategy::Canary(c) => {
                let up = match &c.steps {
                    Steps::Linear(s) => (c.max_weight + s - 1) / (*s).max(1),
                    Steps::Ladder(l) => l.len() as i32,
                };
                let down = if c.promotion_step == 0 {
                    1
                } else {
                    (c.max_weight + c.promotion_step - 1) / c.promotion_step
                };
                up + down + i32::from(c.mirror) + 3
            }
            Strategy::AbTesting { iterations } | Strategy::BlueGreen { iterations, .. } => {
                iterations + 4
            }
        };
        let steps = i64::from(steps + self.policy.threshold.max(1));
        self.interval_secs() * steps + self.policy.progress_deadline.as_secs()
    }

    fn metric(&self, name: &str) -> Option<&MetricSubject> {
        self.metrics.iter().find(|m| m.name == name)
    }

    fn check_hook(&self, key: &str) -> Option<&CheckHook> {
        self.check_hooks.iter().find(|h| h.key == key)
    }

    /// Whether the Canary hands the target back when it is deleted (`revertOnDeletion`).
    pub fn reverts_on_deletion(&self) -> bool {
        self.policy.revert_on_deletion
    }
}

/// What a metric does once the new revision is live.
#[derive(Debug, Clone, PartialEq)]
pub enum Behaviour {
    /// Reads `value` from `after` seconds past the revision on.
    Fails { value: f64, after: i64 },
    /// Alternates between `value` and the healthy value every `period` seconds from `after` on.
    Flaps { value: f64, period: i64, after: i64 },
    /// Moves in a straight line from `from` (healthy) to `to` over `over` seconds, then stays.
    Creeps { from: f64, to: f64, over: i64 },
    /// The query returns no series (no traffic reaches the canary) from `after` on.
    Missing { after: i64 },
    /// The metrics backend refuses queries from `after` on.
    Errors { after: i64 },
    /// The query answers NaN (Prometheus' answer to 0/0, e.g. no requests in the window) from
    /// `after` on.
    NaN { after: i64 },
}

/// What a `pre-rollout`, `rollout` or `rollback` webhook answers once the new revision lands.
/// Without one, pre-rollout and rollout hooks pass and rollback hooks answer that no rollback
/// is wanted (a non-2xx answer, as Flagger reads it).
#[derive(Debug, Clone, PartialEq)]
pub enum HookBehaviour {
    /// A pre-rollout or rollout hook answers an error (HTTP 500) from `after` on.
    Fails { after: i64 },
    /// The hook times out (no answer within its `timeout`) from `after` on. For a rollback hook
    /// that means no rollback is asked for.
    TimesOut { after: i64 },
    /// Failing and passing in turns of `period` seconds from the revision on (for a rollback
    /// hook: asking for a rollback and not).
    Flaps { period: i64 },
    /// A rollback hook answers 2xx, asking for a rollback, from `after` on.
    AsksRollback { after: i64 },
}

impl HookBehaviour {
    /// From when the hook fails the analysis steadily (a failing pre-rollout or rollout hook, a
    /// rollback hook asking for a rollback), in seconds after the revision.
    pub fn fails_since(&self, hook_type: HookType) -> Option<i64> {
        match (self, hook_type) {
            (
                HookBehaviour::Fails { after } | HookBehaviour::TimesOut { after },
                HookType::PreRollout | HookType::Rollout,
            ) => Some(*after),
            (HookBehaviour::AsksRollback { after }, HookType::Rollback) => Some(*after),
            _ => None,
        }
    }

    /// Whether a run with this hook behaviour is still a healthy one: only a rollback hook that
    /// times out (and so asks for nothing).
    pub fn harmless(&self, hook_type: HookType) -> bool {
        matches!(
            (self, hook_type),
            (HookBehaviour::TimesOut { .. }, HookType::Rollback)
        )
    }
}

/// What a `confirm-*` webhook answers once the new revision lands.
#[derive(Debug, Clone, PartialEq)]
pub enum Gate {
    Closed,
    /// Closed until `at` seconds past the revision.
    OpensAfter(i64),
    /// Closed and open in turns of `period` seconds.
    Flaps {
        period: i64,
    },
}

/// How the canary workload's rollouts finish.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CanaryReady {
    Normal,
    /// Every canary rollout from the revision on takes this many seconds.
    Slow(i64),
    Never,
}

/// What a scenario exercises, for case names and coverage.
#[derive(Debug, Clone, PartialEq)]
pub enum Family {
    Healthy,
    MetricFails(String),
    MetricWorseThan(String, Level),
    MetricFlaps(String),
    MetricCreeps(String),
    MetricMissing(String),
    MetricNaN(String),
    BackendDown,
    SlowReady,
    NeverReady,
    GateClosed(String),
    GateLate(String),
    GateFlaps(String),
    /// A pre-rollout or rollout hook (`type/name`) fails.
    HookFails(String),
    /// A pre-rollout, rollout or rollback hook times out.
    HookTimesOut(String),
    /// A pre-rollout, rollout or rollback hook flaps.
    HookFlaps(String),
    /// A rollback hook asks for a rollback.
    RollbackRequested(String),
    NewRevisionMidAnalysis,
    /// The Canary is deleted during the analysis.
    CanaryDeleted,
    OperatorRestarts,
    OperatorFaults,
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Family::Healthy => write!(f, "healthy version"),
            Family::MetricFails(m) => write!(f, "metric {m} fails"),
            Family::MetricWorseThan(m, Level::Below(l)) => write!(f, "metric {m} below {l}"),
            Family::MetricWorseThan(m, Level::Above(l)) => write!(f, "metric {m} above {l}"),
            Family::MetricFlaps(m) => write!(f, "metric {m} flaps"),
            Family::MetricCreeps(m) => write!(f, "metric {m} creeps"),
            Family::MetricMissing(m) => write!(f, "metric {m} has no values"),
            Family::MetricNaN(m) => write!(f, "metric {m} answers NaN"),
            Family::BackendDown => write!(f, "metrics backend down"),
            Family::SlowReady => write!(f, "slow canary rollout"),
            Family::NeverReady => write!(f, "canary never ready"),
            Family::GateClosed(g) => write!(f, "gate {g} closed"),
            Family::GateLate(g) => write!(f, "gate {g} opens late"),
            Family::GateFlaps(g) => write!(f, "gate {g} flaps"),
            Family::HookFails(h) => write!(f, "hook {h} fails"),
            Family::HookTimesOut(h) => write!(f, "hook {h} times out"),
            Family::HookFlaps(h) => write!(f, "hook {h} flaps"),
            Family::RollbackRequested(h) => write!(f, "hook {h} asks for a rollback"),
            Family::NewRevisionMidAnalysis => write!(f, "new revision mid-analysis"),
            Family::CanaryDeleted => write!(f, "Canary deleted mid-analysis"),
            Family::OperatorRestarts => write!(f, "operator restarts"),
            Family::OperatorFaults => write!(f, "operator faults"),
        }
    }
}

/// Every family that applies to `subject` under `suite`, in a fixed order: case `i` of a run
/// belongs to family `i % len`, so a handful of cases already covers each.
pub fn families(subject: &Subject, suite: &Suite) -> Vec<Family> {
    let mut out = vec![Family::Healthy];
    for m in &subject.metrics {
        for level in suite.levels(&m.name) {
            out.push(Family::MetricWorseThan(m.name.clone(), level));
        }
        if m.bound().is_some() {
            out.push(Family::MetricFails(m.name.clone()));
            out.push(Family::MetricFlaps(m.name.clone()));
            out.push(Family::MetricCreeps(m.name.clone()));
        }
        out.push(Family::MetricMissing(m.name.clone()));
        out.push(Family::MetricNaN(m.name.clone()));
    }
    if !subject.metrics.is_empty() {
        out.push(Family::BackendDown);
    }
    out.extend([Family::SlowReady, Family::NeverReady]);
    for g in &subject.gate_keys {
        out.push(Family::GateClosed(g.clone()));
        out.push(Family::GateLate(g.clone()));
        out.push(Family::GateFlaps(g.clone()));
    }
    for h in &subject.check_hooks {
        if h.hook_type == HookType::Rollback {
            out.push(Family::RollbackRequested(h.key.clone()));
        } else {
            out.push(Family::HookFails(h.key.clone()));
        }
        out.push(Family::HookTimesOut(h.key.clone()));
        out.push(Family::HookFlaps(h.key.clone()));
    }
    out.extend([
        Family::NewRevisionMidAnalysis,
        Family::CanaryDeleted,
        Family::OperatorRestarts,
        Family::OperatorFaults,
    ]);
    out
}

/// One generated world around the subject. Times are seconds; `revision_at` is from the trace
/// start, the others from the revision (so shrinking one does not move the others).
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    pub family: Family,
    /// The seed the scenario was generated from (also the trace's fault seed).
    pub seed: u64,
    /// How long every workload rollout takes.
    pub readiness_delay: i64,
    /// When the new revision of the target lands.
    pub revision_at: i64,
    pub canary_ready: CanaryReady,
    /// Healthy value of every metric; behaviours below override it.
    pub healthy: BTreeMap<String, f64>,
    pub metrics: BTreeMap<String, Behaviour>,
    pub gates: BTreeMap<String, Gate>,
    /// Pre-rollout, rollout and rollback hooks that misbehave, by `type/name`.
    pub hooks: BTreeMap<String, HookBehaviour>,
    /// A further revision this long after the first one.
    pub another_revision: Option<i64>,
    /// Operator restarts, each armed at this offset from the revision and spent on the next
    /// reconcile that carries out commands (after a random prefix of them).
    pub restarts: Vec<i64>,
    /// The operator dies at an exact command boundary (the restart sweep, [`super::Plan::run`]).
    pub crash: Option<Crash>,
    /// The Canary is deleted this long after the revision.
    pub delete_at: Option<i64>,
    pub rates: FaultRates,
    /// The trace lasts this long after the revision.
    pub horizon: i64,
}

/// The healthy value of `m`: inside its bounds and better than every level the suite names, so
/// that a healthy scenario is healthy by the user's own standard too.
pub fn healthy_value(m: &MetricSubject, levels: &[Level]) -> f64 {
    let mut lo = m.min;
    let mut hi = m.max;
    for l in levels {
        match *l {
            Level::Below(v) => lo = Some(lo.map_or(v, |x| x.max(v))),
            Level::Above(v) => hi = Some(hi.map_or(v, |x| x.min(v))),
        }
    }
    let v = match (lo, hi) {
        (Some(lo), Some(hi)) => (lo + hi) / 2.0,
        (Some(lo), None) if lo < 100.0 => lo + (100.0 - lo) * 0.9,
        (Some(lo), None) => lo * 1.1 + 1.0,
        (None, Some(hi)) if hi > 0.0 => hi / 2.0,
        (None, Some(hi)) => hi - 1.0,
        (None, None) => 1.0,
    };
    round(v)
}

/// Two decimals: values a person reads in a counterexample.
pub fn round(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// A value worse than `level` by a random amount (a few percent of the level up to a third).
fn worse_than(rng: &mut Rng, level: Level, percent: bool) -> f64 {
    let scale = |l: f64| l.abs().max(1.0);
    let v = match level {
        Level::Below(l) => {
            let d = 0.05 + rng.unit() * scale(l) * 0.35;
            l - d
        }
        Level::Above(l) => l + 0.05 + rng.unit() * scale(l) * 1.5,
    };
    let v = if percent { v.clamp(0.0, 100.0) } else { v };
    round(v)
}

/// SplitMix-style mixing of the run seed and the case index into the case's own seed.
pub fn case_seed(seed: u64, case: usize) -> u64 {
    let mut r = Rng::new(seed ^ (case as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    r.next_u64()
}

/// Case `case` of the run seeded `seed`.
pub fn generate(subject: &Subject, suite: &Suite, seed: u64, case: usize) -> Scenario {
    let fams = families(subject, suite);
    let family = fams[case % fams.len()].clone();
    let seed = case_seed(seed, case);
    build(subject, suite, family, seed)
}

/// The scenario of `family` drawn from `seed`.
pub fn build(subject: &Subject, suite: &Suite, family: Family, seed: u64) -> Scenario {
    let mut rng = Rng::new(seed);
    let interval = subject.interval_secs();
    let analysis = subject.analysis_secs();
    let deadline = subject.policy.progress_deadline.as_secs().max(1);
    let readiness_delay = rng.range(0, interval.min(30));
    let revision_at = readiness_delay + rng.range(1, 3 * interval);
    let horizon = (4 * analysis)
        .max(2 * 3600)
        .max(2 * suite.longest_bound().as_secs().min(24 * 3600))
        .min(24 * 3600);
    let healthy: BTreeMap<String, f64> = subject
        .metrics
        .iter()
        .map(|m| (m.name.clone(), healthy_value(m, &suite.levels(&m.name))))
        .collect();
    let mut s = Scenario {
        family: family.clone(),
        seed,
        readiness_delay,
        revision_at,
        canary_ready: CanaryReady::Normal,
        healthy,
        metrics: BTreeMap::new(),
        gates: BTreeMap::new(),
        hooks: BTreeMap::new(),
        another_revision: None,
        restarts: Vec::new(),
        crash: None,
        delete_at: None,
        rates: FaultRates::default(),
        horizon,
    };
    let after = |rng: &mut Rng| rng.range(0, analysis / 2);
    match &family {
        Family::Healthy => {}
        Family::MetricWorseThan(name, level) => {
            let percent = subject.metric(name).is_some_and(|m| m.percent);
            let value = worse_than(&mut rng, *level, percent);
            if rng.chance(0.5) {
                let a = after(&mut rng);
                s.metrics
                    .insert(name.clone(), Behaviour::Fails { value, after: a });
            } else {
                let from = s.healthy[name];
                let over = rng.range(interval, analysis);
                s.metrics.insert(
                    name.clone(),
                    Behaviour::Creeps {
                        from,
                        to: value,
                        over,
                    },
                );
            }
        }
        Family::MetricFails(name) | Family::MetricFlaps(name) | Family::MetricCreeps(name) => {
            let Some(m) = subject.metric(name) else {
                return s;
            };
            let Some(bound) = m.bound() else {
                return s;
            };
            let value = worse_than(&mut rng, bound, m.percent);
            let behaviour = match family {
                Family::MetricFails(_) => Behaviour::Fails {
                    value,
                    after: after(&mut rng),
                },
                Family::MetricFlaps(_) => Behaviour::Flaps {
                    value,
                    period: rng.range(interval, 4 * interval),
                    after: after(&mut rng),
                },
                _ => Behaviour::Creeps {
                    from: s.healthy[name],
                    to: value,
                    over: rng.range(interval, analysis),
                },
            };
            s.metrics.insert(name.clone(), behaviour);
        }
        Family::MetricMissing(name) => {
            let a = after(&mut rng);
            s.metrics
                .insert(name.clone(), Behaviour::Missing { after: a });
        }
        Family::MetricNaN(name) => {
            let a = after(&mut rng);
            s.metrics.insert(name.clone(), Behaviour::NaN { after: a });
        }
        Family::HookFails(key) | Family::HookTimesOut(key) => {
            // A pre-rollout hook is called once, when the analysis starts: it fails from the
            // revision on, or it would never be asked while failing.
            let pre = subject
                .check_hook(key)
                .is_some_and(|h| h.hook_type == HookType::PreRollout);
            let a = if pre { 0 } else { after(&mut rng) };
            let b = match family {
                Family::HookFails(_) => HookBehaviour::Fails { after: a },
                _ => HookBehaviour::TimesOut { after: a },
            };
            s.hooks.insert(key.clone(), b);
        }
        Family::HookFlaps(key) => {
            let period = rng.range(interval, 4 * interval);
            s.hooks.insert(key.clone(), HookBehaviour::Flaps { period });
        }
        Family::RollbackRequested(key) => {
            let a = after(&mut rng);
            s.hooks
                .insert(key.clone(), HookBehaviour::AsksRollback { after: a });
        }
        Family::CanaryDeleted => {
            s.delete_at = Some(rng.range(1, analysis.max(2)));
        }
        Family::BackendDown => {
            let a = after(&mut rng);
            for m in &subject.metrics {
                s.metrics
                    .insert(m.name.clone(), Behaviour::Errors { after: a });
            }
        }
        Family::SlowReady => {
            // Slow but within the deadline: still a healthy version.
            s.canary_ready = CanaryReady::Slow(rng.range(1, (deadline - 1).max(1)));
        }
        Family::NeverReady => s.canary_ready = CanaryReady::Never,
        Family::GateClosed(g) => {
            s.gates.insert(g.clone(), Gate::Closed);
        }
        Family::GateLate(g) => {
            let at = rng.range(interval, analysis);
            s.gates.insert(g.clone(), Gate::OpensAfter(at));
        }
        Family::GateFlaps(g) => {
            let period = rng.range(interval, 4 * interval);
            s.gates.insert(g.clone(), Gate::Flaps { period });
        }
        Family::NewRevisionMidAnalysis => {
            s.another_revision = Some(rng.range(1, analysis.max(2)));
        }
        Family::OperatorRestarts => {
            let n = rng.range(1, 3);
            let mut at: Vec<i64> = (0..n).map(|_| rng.range(0, analysis)).collect();
            at.sort_unstable();
            s.restarts = at;
        }
        Family::OperatorFaults => {
            s.rates = FaultRates {
                restart: 0.05,
                conflict: 0.05,
                duplicate_reconcile: 0.05,
                early_reconcile: 0.05,
                ..FaultRates::default()
            };
        }
    }
    s
}

fn at(secs: i64) -> At {
    At::Offset(SignedDuration::from_secs(secs))
}

fn value(t: i64, v: f64) -> SampleFile {
    SampleFile {
        at: at(t),
        value: Some(v),
        nan: false,
        no_values: None,
        error: None,
    }
}

fn hook(t: i64, pass: bool) -> HookSampleFile {
    HookSampleFile {
        at: at(t),
        pass,
        message: if pass {
            String::new()
        } else {
            "gate closed".into()
        },
    }
}

/// What a rollback hook answers while no rollback is wanted.
const NO_ROLLBACK: &str = "no rollback requested";

fn hook_answer(pass: bool, message: &str) -> HookSampleFile {
    HookSampleFile {
        at: at(0),
        pass,
        message: message.into(),
    }
}

fn template(target: &str, version: u32) -> serde_json::Value {
    json!({
        "metadata": {"labels": {"app": target}},
        "spec": {"containers": [{
            "name": target,
            "image": format!("registry.example/{target}:1.0.{version}"),
        }]}
    })
}

impl Scenario {
    /// When the last revision lands.
    pub fn last_revision_at(&self, start: Timestamp) -> Timestamp {
        let secs = self.revision_at + self.another_revision.unwrap_or(0);
        start
            .checked_add(SignedDuration::from_secs(secs))
            .unwrap_or(Timestamp::MAX)
    }

    /// Metrics within bounds, gates open, the canary ready before its deadline (operator
    /// restarts and faults allowed): a version the policy should promote.
    pub fn is_healthy(&self, subject: &Subject) -> bool {
        let deadline = subject.policy.progress_deadline.as_secs();
        self.metrics.is_empty()
            && self.gates.is_empty()
            && self.delete_at.is_none()
            && self.hooks.iter().all(|(k, b)| {
                subject
                    .check_hook(k)
                    .is_some_and(|h| b.harmless(h.hook_type))
            })
            && match self.canary_ready {
                CanaryReady::Normal => self.readiness_delay < deadline,
                CanaryReady::Slow(d) => d < deadline,
                CanaryReady::Never => false,
            }
            && self
                .healthy
                .iter()
                .all(|(m, v)| subject.metric(m).is_none_or(|m| m.passes(*v)))
    }

    /// Whether `metric` becomes worse than `level` and stays so (failing steadily or creeping
    /// into it), the case `neverPromotesWhen` judges.
    pub fn stays_worse(&self, _subject: &Subject, metric: &str, level: Level) -> bool {
        match self.metrics.get(metric) {
            Some(Behaviour::Fails { value, .. }) => level.is_worse(*value),
            Some(Behaviour::Creeps { to, .. }) => level.is_worse(*to),
            _ => false,
        }
    }

    /// From when a check fails steadily by the spec's own judgment (a metric outside its bounds,
    /// with no values, NaN or query errors; a pre-rollout or rollout hook failing or timing out;
    /// a rollback hook asking for a rollback): the case `rollsBackWithin` judges.
    pub fn fails_since(&self, subject: &Subject, start: Timestamp) -> Option<Timestamp> {
        let mut first: Option<i64> = None;
        for (name, b) in &self.metrics {
            let Some(m) = subject.metric(name) else {
                continue;
            };
            let since = match b {
                Behaviour::Fails { value, after } if !m.passes(*value) => Some(*after),
                Behaviour::Missing { after }
                | Behaviour::Errors { after }
                | Behaviour::NaN { after } => Some(*after),
                Behaviour::Creeps { from, to, over } if !m.passes(*to) => {
                    creep_samples(*from, *to, *over, subject.interval_secs())
                        .into_iter()
                        .find(|(_, v)| !m.passes(*v))
                        .map(|(t, _)| t)
                }
                _ => None,
            };
            if let Some(t) = since {
                first = Some(first.map_or(t, |f| f.min(t)));
            }
        }
        for (key, b) in &self.hooks {
            if let Some(t) = subject
                .check_hook(key)
                .and_then(|h| b.fails_since(h.hook_type))
            {
                first = Some(first.map_or(t, |f| f.min(t)));
            }
        }
        let secs = self.revision_at + first?;
        start.checked_add(SignedDuration::from_secs(secs)).ok()
    }

    /// One line describing what happens, for reports.
    pub fn describe(&self) -> String {
        let mut parts = vec![format!("revision at +{}s", self.revision_at)];
        if self.readiness_delay > 0 {
            parts.push(format!("rollouts take {}s", self.readiness_delay));
        }
        match self.canary_ready {
            CanaryReady::Normal => {}
            CanaryReady::Slow(d) => parts.push(format!("canary rollout takes {d}s")),
            CanaryReady::Never => parts.push("canary never ready".into()),
        }
        for (name, b) in &self.metrics {
            parts.push(match b {
                Behaviour::Fails { value, after } => {
                    format!("{name} reads {value} from revision+{after}s")
                }
                Behaviour::Flaps {
                    value,
                    period,
                    after,
                } => format!(
                    "{name} alternates {value} / {} every {period}s from revision+{after}s",
                    self.healthy[name]
                ),
                Behaviour::Creeps { from, to, over } => {
                    format!("{name} moves from {from} to {to} over {over}s")
                }
                Behaviour::Missing { after } => {
                    format!("{name} has no values from revision+{after}s")
                }
                Behaviour::Errors { after } => {
                    format!("{name} query errors from revision+{after}s")
                }
                Behaviour::NaN { after } => {
                    format!("{name} answers NaN from revision+{after}s")
                }
            });
        }
        for (h, b) in &self.hooks {
            parts.push(match b {
                HookBehaviour::Fails { after } => format!("hook {h} fails from revision+{after}s"),
                HookBehaviour::TimesOut { after } => {
                    format!("hook {h} times out from revision+{after}s")
                }
                HookBehaviour::Flaps { period } => {
                    format!("hook {h} fails/passes every {period}s")
                }
                HookBehaviour::AsksRollback { after } => {
                    format!("hook {h} asks for a rollback from revision+{after}s")
                }
            });
        }
        if let Some(t) = self.delete_at {
            parts.push(format!("Canary deleted at revision+{t}s"));
        }
        for (g, b) in &self.gates {
            parts.push(match b {
                Gate::Closed => format!("gate {g} closed"),
                Gate::OpensAfter(t) => format!("gate {g} opens at revision+{t}s"),
                Gate::Flaps { period } => format!("gate {g} open/closed every {period}s"),
            });
        }
        if let Some(t) = self.another_revision {
            parts.push(format!("another revision at revision+{t}s"));
        }
        for t in &self.restarts {
            parts.push(format!("operator restart at revision+{t}s"));
        }
        if let Some(c) = self.crash {
            parts.push(format!(
                "operator restarts after {} command(s) of reconcile {}",
                c.keep, c.reconcile
            ));
        }
        if self.rates.any() {
            parts.push("random operator faults".into());
        }
        parts.join(", ")
    }

    /// The trace of this scenario (`docs/trace-format.md`), exactly what is replayed.
    pub fn trace(&self, subject: &Subject) -> TraceFile {
        let r = self.revision_at;
        let target = subject.policy.target.clone();
        let end = r + self.horizon;
        let mut revisions = vec![
            RevisionFile {
                at: at(0),
                template: Some(template(&target, 0)),
                template_hash: None,
                configs: BTreeMap::new(),
                replicas: Some(2),
                autoscaler_min_replicas: None,
            },
            RevisionFile {
                at: at(r),
                template: Some(template(&target, 1)),
                template_hash: None,
                configs: BTreeMap::new(),
                replicas: None,
                autoscaler_min_replicas: None,
            },
        ];
        if let Some(t) = self.another_revision {
            revisions.push(RevisionFile {
                at: at(r + t),
                template: Some(template(&target, 2)),
                template_hash: None,
                configs: BTreeMap::new(),
                replicas: None,
                autoscaler_min_replicas: None,
            });
        }
        let mut rules = Vec::new();
        match self.canary_ready {
            CanaryReady::Normal => {}
            CanaryReady::Slow(d) => rules.push(ReadinessRuleFile {
                workload: WorkloadKind::Canary,
                from: at(r),
                until: None,
                delay: Some(GoDuration(SignedDuration::from_secs(d))),
                never: false,
            }),
            CanaryReady::Never => rules.push(ReadinessRuleFile {
                workload: WorkloadKind::Canary,
                from: at(r),
                until: None,
                delay: None,
                never: true,
            }),
        }
        let interval = subject.interval_secs();
        let mut metrics = BTreeMap::new();
        for m in &subject.metrics {
            let good = self.healthy.get(&m.name).copied().unwrap_or(1.0);
            let mut series = vec![value(0, good)];
            match self.metrics.get(&m.name) {
                None => {}
                Some(Behaviour::Fails { value: v, after }) => series.push(value(r + after, *v)),
                Some(Behaviour::Flaps {
                    value: v,
                    period,
                    after,
                }) => {
                    let mut t = r + after;
                    let mut bad = true;
                    while t < end {
                        series.push(value(t, if bad { *v } else { good }));
                        bad = !bad;
                        t += (*period).max(1);
                    }
                }
                Some(Behaviour::Creeps { from, to, over }) => {
                    for (t, v) in creep_samples(*from, *to, *over, interval) {
                        series.push(value(r + t, v));
                    }
                }
                Some(Behaviour::Missing { after }) => series.push(SampleFile {
                    no_values: Some("no series: no traffic reached the canary".into()),
                    value: None,
                    ..value(r + after, 0.0)
                }),
                Some(Behaviour::Errors { after }) => series.push(SampleFile {
                    error: Some("connection refused".into()),
                    value: None,
                    ..value(r + after, 0.0)
                }),
                Some(Behaviour::NaN { after }) => series.push(SampleFile {
                    nan: true,
                    value: None,
                    ..value(r + after, 0.0)
                }),
            }
            metrics.insert(m.name.clone(), series);
        }
        let mut webhooks = BTreeMap::new();
        for (g, b) in &self.gates {
            let series = match b {
                Gate::Closed => vec![hook(0, false)],
                Gate::OpensAfter(t) => vec![hook(0, false), hook(r + t, true)],
                Gate::Flaps { period } => {
                    let mut out = Vec::new();
                    let mut t = 0;
                    let mut open = false;
                    while t < end {
                        out.push(hook(t, open));
                        open = !open;
                        t += (*period).max(1);
                    }
                    out
                }
            };
            webhooks.insert(g.clone(), series);
        }
        for h in &subject.check_hooks {
            let rollback = h.hook_type == HookType::Rollback;
            // What the hook answers when all is well, and when it misbehaves.
            let fine = hook_answer(!rollback, if rollback { NO_ROLLBACK } else { "" });
            let bad = |t: i64| {
                if rollback {
                    hook(t, true)
                } else {
                    HookSampleFile {
                        at: at(t),
                        ..hook_answer(false, "500 Internal Server Error")
                    }
                }
            };
            let timeout = HookSampleFile {
                message: format!("POST {} timed out after {}s", h.url, h.timeout_secs),
                ..hook_answer(false, "")
            };
            let mut series = vec![fine.clone()];
            match self.hooks.get(&h.key) {
                None => {}
                Some(HookBehaviour::Fails { after }) => series.push(bad(r + after)),
                Some(HookBehaviour::AsksRollback { after }) => series.push(bad(r + after)),
                Some(HookBehaviour::TimesOut { after }) => series.push(HookSampleFile {
                    at: at(r + after),
                    ..timeout
                }),
                Some(HookBehaviour::Flaps { period }) => {
                    let mut t = r;
                    let mut failing = true;
                    while t < end {
                        series.push(if failing {
                            bad(t)
                        } else {
                            HookSampleFile {
                                at: at(t),
                                ..fine.clone()
                            }
                        });
                        failing = !failing;
                        t += (*period).max(1);
                    }
                }
            }
            // A pre-rollout or rollout hook that passes needs no answers (a hook without one
            // passes); a rollback hook always does, or it would ask for a rollback.
            if rollback || series.len() > 1 {
                webhooks.insert(h.key.clone(), series);
            }
        }
        TraceFile {
            version: crate::trace::FORMAT_VERSION,
            description: format!("flagger test: {}: {}", self.family, self.describe()),
            start: START.parse().unwrap_or(Timestamp::UNIX_EPOCH),
            duration: Some(GoDuration(SignedDuration::from_secs(end))),
            end: None,
            operator: subject.operator.clone(),
            canary: subject.canary.clone(),
            revisions,
            readiness: ReadinessFile {
                delay: Some(GoDuration(SignedDuration::from_secs(self.readiness_delay))),
                kube_progress_deadline: None,
                rules,
            },
            metrics,
            webhooks,
            faults: FaultsFile {
                seed: self.seed,
                rates: self.rates,
                scheduled: self
                    .restarts
                    .iter()
                    .map(|t| ScheduledFault {
                        at: at(r + t),
                        kind: FaultKind::Restart,
                    })
                    .collect(),
                crashes: self
                    .crash
                    .map(|c| CrashFile {
                        reconcile: c.reconcile,
                        after_commands: c.keep,
                    })
                    .into_iter()
                    .collect(),
            },
            answers: Vec::new(),
            initial: Default::default(),
            delete_at: self.delete_at.map(|t| at(r + t)),
        }
    }
}

/// The samples of a creeping metric (offsets from the revision): one per analysis interval, at
/// most 20, ending at `to`.
pub fn creep_samples(from: f64, to: f64, over: i64, interval: i64) -> Vec<(i64, f64)> {
    let n = (over / interval.max(1)).clamp(1, 20);
    (1..=n)
        .map(|k| {
            let t = over * k / n;
            let v = if k == n {
                to
            } else {
                round(from + (to - from) * k as f64 / n as f64)
            };
            (t, v)
        })
        .collect()
}
