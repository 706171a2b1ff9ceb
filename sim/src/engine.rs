//! The replay: a discrete-event loop in virtual time. Each reconcile builds a [`Snapshot`] from the
//! world, asks [`decide`] until it has every input, carries out the commands, checks the
//! invariants, and jumps to the next moment anything can happen: the core's `wake_at`, a revision
//! of the target, a workload finishing its rollout, or a fault. Metric and webhook schedules do not
//! wake the operator (nothing watches them); they are read when the core asks.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};

use flagger_core::api::CanaryStatus;
use flagger_core::readiness::{Readiness, readiness};
use flagger_core::snapshot::{CanaryMeta, HookAnswer, MetricAnswer, Routes};
use flagger_core::{Command, Outcome, Phase, Policy, Request, Snapshot, decide_with};
use jiff::{SignedDuration, Timestamp};
use serde::Serialize;

use crate::faults::Injector;
use crate::inputs::{self, Assume};
use crate::invariants::{Checker, Violation};
use crate::trace::{FaultKind, FaultRates, Trace};
use crate::world::{EventRecord, World};

/// Passes of one reconcile (each answering the previous pass's requests); the core asks for a
/// step's hooks of one type, or its metrics, together, so one reconcile needs a handful of passes
/// and hitting this means it keeps asking for the same thing.
const MAX_PASSES: usize = 64;
/// Reconciles at one instant before the replay calls it a livelock.
const MAX_AT_ONE_INSTANT: usize = 64;
const RETRY_AFTER: SignedDuration = SignedDuration::from_secs(1);
/// Reconciles one replay may run. The operator reconciles once per analysis interval (10s at the
/// least) plus watch events and 1s retries: a month of virtual time (the longest a trace may
/// cover, [`crate::trace::MAX_SPAN`]) at one reconcile per 10s is about 270,000, and the densest
/// realistic run (a retry every second for a day) about 86,400. A million is far above both and
/// still stops a runaway replay in seconds rather than hours.
pub const MAX_RECONCILES: usize = 1_000_000;

#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Overrides the trace's `faults.seed`.
    pub seed: Option<u64>,
    /// Overrides the trace's `faults.rates`.
    pub rates: Option<FaultRates>,
    /// Stop after a prefix of one decision's commands and restart (crash-safety tests).
    pub crash: Option<Crash>,
    /// Upper bound on reconciles; default scales with the trace's length.
    pub max_reconciles: Option<usize>,
    /// Keep every reconcile's snapshot and decision, as `-record-traces` writes them.
    pub record: bool,
    /// How inputs the trace does not have answer (each is listed in [`Run::missing`]).
    pub assume: Assume,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum InputKind {
    Metric,
    Hook,
}

/// An input the core asked for that the trace does not have, answered as [`Options::assume`]
/// says: one entry per input and answer, however often it was asked (a long wait asks every
/// interval, and memory must not grow with it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Missing {
    /// When it was first asked.
    pub at: Timestamp,
    /// When it was last asked.
    pub last: Timestamp,
    /// How many times it was asked.
    pub times: usize,
    pub kind: InputKind,
    pub key: String,
    /// The answer given instead, in words.
    pub answered: String,
}

/// Counts `m` into the entry for the same input and answer, or adds it.
fn note_missing(all: &mut Vec<Missing>, m: Missing) {
    match all
        .iter_mut()
        .find(|e| e.kind == m.kind && e.key == m.key && e.answered == m.answered)
    {
        Some(e) => {
            e.times += 1;
            e.last = m.at;
        }
        None => all.push(m),
    }
}

impl Missing {
    fn metric(at: Timestamp, key: &str, answer: &MetricAnswer) -> Missing {
        let answered = match answer {
            MetricAnswer::Value(v) => format!("value {}", flagger_core::events::go_float(*v)),
            MetricAnswer::NoValues(_) => "no values".into(),
            MetricAnswer::Error(_) => "query error".into(),
        };
        Missing {
            at,
            last: at,
            times: 1,
            kind: InputKind::Metric,
            key: key.to_string(),
            answered,
        }
    }

    fn hook(at: Timestamp, key: &str, answer: &HookAnswer) -> Missing {
        let answered = match answer {
            HookAnswer::Passed => "passed",
            HookAnswer::Failed(_) => "failed",
        };
        Missing {
            at,
            last: at,
            times: 1,
            kind: InputKind::Hook,
            key: key.to_string(),
            answered: answered.into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Crash {
    /// Index of the reconcile (as numbered in [`Step::index`]).
    pub reconcile: usize,
    /// How many of its commands are carried out before the crash.
    pub keep: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Reason {
    Start,
    Wake,
    Revision,
    Ready,
    Retry,
    Restart,
    Duplicate,
    Early,
    Delete,
    /// The operator's periodic resync (`-control-loop-interval`).
    Resync,
    /// A recording's reconcile that none of the above explains: a watch event (the Canary or
    /// another watched object changed) or a periodic resync.
    Watch,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Start => "start",
            Reason::Wake => "wake",
            Reason::Revision => "revision",
            Reason::Ready => "ready",
            Reason::Retry => "retry",
            Reason::Restart => "restart",
            Reason::Duplicate => "duplicate",
            Reason::Early => "early",
            Reason::Delete => "delete",
            Reason::Resync => "resync",
            Reason::Watch => "watch event",
        }
    }
}

/// What the core was told, for `--explain`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Inputs {
    pub primary: Option<Cow<'static, str>>,
    pub canary: Option<Cow<'static, str>>,
    pub metrics: Vec<MetricInput>,
    pub hooks: Vec<HookInput>,
    /// The core saw the status as it was before the last write.
    pub stale: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricInput {
    pub name: String,
    pub answer: MetricAnswer,
    pub min: Option<f64>,
    pub max: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HookInput {
    pub key: String,
    pub answer: HookAnswer,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Digest {
    pub phase: Option<Phase>,
    pub canary_weight: i32,
    pub failed_checks: i32,
    pub iterations: i32,
}

impl Digest {
    pub(crate) fn of(s: &CanaryStatus) -> Digest {
        Digest {
            phase: s.phase,
            canary_weight: s.canary_weight,
            failed_checks: s.failed_checks,
            iterations: s.iterations,
        }
    }
}

/// One reconcile.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Step {
    pub index: usize,
    pub at: Timestamp,
    pub reasons: Vec<Reason>,
    /// Faults that hit this reconcile, in words.
    pub faults: Vec<String>,
    pub inputs: Inputs,
    pub commands: Vec<Command>,
    /// How many commands were carried out (fewer after a crash or a conflict).
    pub applied: usize,
    pub before: Digest,
    pub after: Digest,
    pub routes: Option<Routes>,
    pub events: Vec<EventRecord>,
    pub wake_at: Option<Timestamp>,
    /// The rule of the algorithm that decided this step, in words (see [`crate::explain`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// The spec's `analysis.threshold`, the bound of `after.failed_checks` (0 for an invalid spec).
    pub threshold: i32,
    /// Further reconciles identical to this one that followed it (a run waiting at a closed gate):
    /// kept as a count so that memory does not grow with the wait.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub repeats: usize,
    /// When the first and the last of those repeats happened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeats_from: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeats_until: Option<Timestamp>,
    /// Reconciles after this one that changed nothing but gauges (periodic resyncs), kept as a
    /// count so that a wait does not grow memory.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub quiet: usize,
}

impl Step {
    /// A reconcile at `at` whose status was `before`, with `applied` of its `commands` carried
    /// out; what it led to (status after, routes, events) is set by the caller, and nothing is
    /// folded into it or explained yet.
    pub fn new(
        index: usize,
        at: Timestamp,
        inputs: Inputs,
        commands: Vec<Command>,
        applied: usize,
        before: Digest,
    ) -> Step {
        Step {
            index,
            at,
            reasons: Vec::new(),
            faults: Vec::new(),
            inputs,
            commands,
            applied,
            before,
            after: before,
            routes: None,
            events: Vec::new(),
            wake_at: None,
            rule: None,
            threshold: 0,
            repeats: 0,
            repeats_from: None,
            repeats_until: None,
            quiet: 0,
        }
    }

    /// Names the rule that decided the step under `policy`.
    pub(crate) fn explain(&mut self, policy: Result<&Policy, &flagger_core::SpecError>) {
        let Ok(p) = policy else {
            return;
        };
        self.threshold = p.threshold;
        self.rule = crate::explain::rule(
            p,
            &crate::explain::Seen {
                before: &self.before,
                after: &self.after,
                inputs: &self.inputs,
                events: &self.events,
            },
        );
    }
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl Step {
    /// The time of the last reconcile this step stands for.
    pub fn last_at(&self) -> Timestamp {
        self.repeats_until.unwrap_or(self.at)
    }

    /// Whether `next` repeats this step exactly: a wait that changes nothing a person sees (same
    /// phase, weight, failed checks, inputs and routes, no event, no fault, every command
    /// carried out, the status written again with only its times moved).
    pub fn is_repeated_by(&self, next: &Step) -> bool {
        let quiet = |s: &Step| {
            s.events.is_empty()
                && s.faults.is_empty()
                && s.applied == s.commands.len()
                && s.before == s.after
        };
        quiet(self)
            && quiet(next)
            && self.after == next.after
            && self.reasons == next.reasons
            && self.routes == next.routes
            && self.inputs == next.inputs
            && self.commands.len() == next.commands.len()
            && self
                .commands
                .iter()
                .zip(&next.commands)
                .all(|(a, b)| same_but_times(a, b))
    }

    /// Whether this reconcile changed anything a person would care about (gauges alone do not).
    pub fn changed(&self) -> bool {
        self.commands[..self.applied]
            .iter()
            .any(|c| !matches!(c, Command::RecordMetric(_)))
            || !self.events.is_empty()
            || !self.faults.is_empty()
    }
}

#[derive(Debug, Clone)]
pub struct Run {
    pub trace: String,
    pub canary: String,
    pub start: Timestamp,
    pub end: Timestamp,
    pub steps: Vec<Step>,
    pub violations: Vec<Violation>,
    /// Why the replay stopped early (a livelock, a panic in the core, the reconcile bound).
    pub error: Option<String>,
    pub world: World,
    /// Filled when [`Options::record`] is set.
    pub recording: Vec<crate::recording::Reconcile>,
    /// Every input the trace did not have, in the order asked.
    pub missing: Vec<Missing>,
}

impl Run {
    /// Reconciles the replay ran, with every folded repeat counted.
    pub fn reconciles(&self) -> usize {
        self.steps.iter().map(|s| 1 + s.repeats + s.quiet).sum()
    }

    pub fn final_phase(&self) -> Option<Phase> {
        self.world.status.phase
    }
}

struct Engine<'a> {
    trace: &'a Trace,
    /// The spec validated once for the whole replay (the spec never changes within it).
    policy: Result<Policy, flagger_core::SpecError>,
    world: World,
    faults: Injector,
    checker: Checker,
    steps: Vec<Step>,
    /// Reconciles so far (steps plus folded repeats).
    reconciles: usize,
    violations: Vec<Violation>,
    wake: Option<Timestamp>,
    extra: BTreeMap<Timestamp, Vec<Reason>>,
    next_revision: usize,
    crash: Option<Crash>,
    /// Boxed: a snapshot holds the whole spec, and moving it in and out every reconcile costs.
    snap: Option<Box<Snapshot>>,
    record: bool,
    recording: Vec<crate::recording::Reconcile>,
    assume: Assume,
    missing: Vec<Missing>,
    /// Whether the last reconcile changed something (gauges aside): only then is the next
    /// periodic resync worth replaying.
    last_changed: bool,
}

pub fn replay(trace: &Trace, opts: &Options) -> Run {
    let mut faults = trace.faults.clone();
    if let Some(r) = opts.rates {
        faults.rates = r;
    }
    let seed = opts.seed.unwrap_or(faults.seed);
    let policy = Policy::from_spec(
        &trace.canary.metadata.name,
        &trace.canary.metadata.namespace,
        &trace.canary.spec,
        &trace.config,
    );
    let mut e = Engine {
        trace,
        checker: Checker::new(policy.as_ref().ok().cloned()),
        policy,
        world: World::new(trace.readiness.clone()),
        faults: Injector::new(&faults, seed),
        steps: Vec::new(),
        reconciles: 0,
        violations: Vec::new(),
        wake: None,
        extra: BTreeMap::new(),
        next_revision: 0,
        crash: opts.crash,
        snap: None,
        record: opts.record,
        recording: Vec::new(),
        assume: opts.assume,
        missing: Vec::new(),
        last_changed: false,
    };
    e.world.init(&trace.initial, trace.start);
    e.extra.insert(trace.start, vec![Reason::Start]);
    let max = opts
        .max_reconciles
        .unwrap_or_else(|| reconcile_bound(trace.end.duration_since(trace.start)));
    let error = e.run(max).err();
    Run {
        trace: trace.name.clone(),
        canary: format!(
            "{}.{}",
            trace.canary.metadata.name, trace.canary.metadata.namespace
        ),
        start: trace.start,
        end: trace.end,
        steps: e.steps,
        violations: e.violations,
        error,
        world: e.world,
        recording: e.recording,
        missing: e.missing,
    }
}

/// The reconciles a replay of this length may run: four a second of virtual time (retries come
/// at most once a second, with room for watch events) plus a margin, never above
/// [`MAX_RECONCILES`].
pub fn reconcile_bound(span: SignedDuration) -> usize {
    let secs = span.as_secs().max(1) as usize;
    (secs.saturating_mul(4) + 1000).min(MAX_RECONCILES)
}

impl Engine<'_> {
    fn run(&mut self, max: usize) -> Result<(), String> {
        let mut last = self.trace.start;
        let mut same_instant = 0;
        loop {
            let Some((now, reasons)) = self.next_moment(last) else {
                return Ok(());
            };
            if now > self.trace.end || self.world.removed {
                return Ok(());
            }
            same_instant = if now == last { same_instant + 1 } else { 0 };
            if same_instant > MAX_AT_ONE_INSTANT {
                return Err(format!(
                    "livelock: {MAX_AT_ONE_INSTANT} reconciles at {now} without time advancing"
                ));
            }
            if self.reconciles >= max {
                return Err(format!(
                    "stopped after {max} reconciles at {now}: the replay reconciles more often than any real run (see the bound in docs/trace-format.md)"
                ));
            }
            last = now;
            while let Some(r) = self.trace.revisions.get(self.next_revision)
                && r.at <= now
            {
                self.world.apply_revision(r, now);
                self.next_revision += 1;
            }
            if self.trace.delete_at.is_some_and(|d| d <= now) && !self.world.deleting {
                self.world.delete();
                if self.world.removed {
                    return Ok(());
                }
            }
            self.faults.arm(now);
            self.reconcile(now, reasons)?;
        }
    }

    /// The earliest pending moment at or after `last`, with every reason that falls on it.
    fn next_moment(&mut self, last: Timestamp) -> Option<(Timestamp, Vec<Reason>)> {
        let kube_deadline = self.trace.readiness.kube_progress_deadline;
        let mut sources: Vec<(Timestamp, Reason)> = Vec::new();
        if let Some(w) = self.wake {
            sources.push((w.max(last), Reason::Wake));
        }
        if let Some(r) = self.trace.revisions.get(self.next_revision) {
            sources.push((r.at.max(last), Reason::Revision));
        }
        if let Some(t) = self.world.next_ready_change(last) {
            sources.push((t, Reason::Ready));
        }
        if let Some(d) = kube_deadline {
            // Kubernetes flags ProgressDeadlineExceeded on the Deployment: a watch event.
            for w in [&self.world.target, &self.world.primary]
                .into_iter()
                .flatten()
            {
                if let Ok(at) = w.rollout_started.checked_add(d)
                    && at > last
                    && !w.is_ready(at)
                {
                    sources.push((at + SignedDuration::from_secs(1), Reason::Ready));
                }
            }
        }
        if let Some(t) = self.trace.delete_at
            && !self.world.deleting
        {
            sources.push((t.max(last), Reason::Delete));
        }
        if let Some(t) = self.faults.next_restart() {
            sources.push((t.max(last), Reason::Restart));
        }
        if let Some(t) = self.next_resync(last) {
            sources.push((t, Reason::Resync));
        }
        // Extra reconciles (start, retries, restarts, injected ones) carry their own reasons.
        let extra_at = self.extra.first_key_value().map(|(t, _)| *t);
        let now = sources.iter().map(|(t, _)| *t).chain(extra_at).min()?;
        let mut reasons: Vec<Reason> = sources
            .iter()
            .filter(|(t, _)| *t == now)
            .map(|(_, r)| *r)
            .collect();
        if self.wake.is_some_and(|w| w.max(last) == now) {
            self.wake = None;
        }
        if let Some((t, _)) = self.extra.first_key_value()
            && *t == now
            && let Some((_, mut rs)) = self.extra.pop_first()
        {
            reasons.append(&mut rs);
        }
        reasons.sort();
        reasons.dedup();
        Some((now, reasons))
    }

    /// The next tick of the operator's resync after `last`, if it can matter: a reconcile that saw
    /// the same world as the last one gives the same decision unless time alone changes it, and
    /// the core asks for a wake-up whenever it does. So after a reconcile that changed nothing
    /// (gauges aside) the resync is skipped until something happens; after one that did, the
    /// next tick reconciles again, as the operator would (a revision that landed while the
    /// primary was initializing is noticed this way).
    fn next_resync(&self, last: Timestamp) -> Option<Timestamp> {
        let step = self.trace.control_loop_interval;
        if !self.last_changed {
            return None;
        }
        let since = last.duration_since(self.trace.start).as_nanos();
        let ticks = since / step.as_nanos().max(1) + 1;
        let offset =
            SignedDuration::from_nanos(i64::try_from(ticks.saturating_mul(step.as_nanos())).ok()?);
        self.trace.start.checked_add(offset).ok()
    }

    fn reconcile(&mut self, now: Timestamp, reasons: Vec<Reason>) -> Result<(), String> {
        let index = self.reconciles;
        let mut faults = Vec::new();
        let trace = self.trace;

        let stale =
            self.world.previous_status.is_some() && self.faults.hits(FaultKind::StaleSnapshot);
        let (status, base) = match (&self.world.previous_status, stale) {
            (Some((s, v)), true) => {
                faults.push("stale snapshot: status before the last write".to_string());
                (s.clone(), *v)
            }
            _ => (self.world.status.clone(), self.world.status_version),
        };
        let before = Digest::of(&self.world.status);
        let kube_deadline = trace.readiness.kube_progress_deadline;
        // One snapshot is reused across reconciles: the spec and settings never change, and
        // cloning them every step would dominate a long replay.
        let mut snap = self.snap.take().unwrap_or_else(|| {
            Box::new(Snapshot {
                now,
                canary: CanaryMeta {
                    name: trace.canary.metadata.name.clone(),
                    namespace: trace.canary.metadata.namespace.clone(),
                    deleting: false,
                    has_finalizer: false,
                },
                spec: trace.canary.spec.clone(),
                status: CanaryStatus::default(),
                config: trace.config.clone(),
                target: None,
                primary: None,
                routes: None,
                // The sim's routing objects take effect at once: never waiting for a parent.
                routes_not_ready: None,
                services_present: false,
                apex_selects_primary: false,
                drift: Default::default(),
                answers: Default::default(),
            })
        });
        snap.now = now;
        snap.canary.has_finalizer = self.world.finalizer;
        snap.canary.deleting = self.world.deleting;
        snap.status = status;
        snap.target = self
            .world
            .target
            .as_ref()
            .map(|d| d.observe(now, kube_deadline));
        snap.primary = self
            .world
            .primary
            .as_ref()
            .map(|d| d.observe(now, kube_deadline));
        snap.routes = self.world.routes;
        snap.services_present = self.world.services;
        snap.apex_selects_primary = self.world.apex_on_primary;
        snap.answers.hooks.clear();
        snap.answers.metrics.clear();
        let mut inputs = describe_readiness(self.policy.as_ref(), &snap);
        inputs.stale = stale;

        let mut passes = 0;
        let decision = loop {
            let outcome = catch_unwind(AssertUnwindSafe(|| {
                decide_with(self.policy.as_ref(), &snap)
            }))
            .map_err(|p| {
                let msg = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                format!("the core panicked at {now}: {msg}")
            })?;
            match outcome {
                Outcome::Decided(d) => break d,
                Outcome::Need(requests) => {
                    passes += 1;
                    if passes > MAX_PASSES || requests.is_empty() {
                        return Err(format!(
                            "the core keeps asking for inputs at {now}: {:?}",
                            requests.iter().map(Request::key).collect::<Vec<_>>()
                        ));
                    }
                    // Hooks are called in order up to the one that settles the step, as the
                    // operator does; the rest are not called.
                    let mut settled = false;
                    for r in &requests {
                        let key = r.key();
                        match r {
                            Request::Hook(_) if settled => {}
                            Request::Metric(_) => {
                                let (min, max) = thresholds(self.policy.as_ref(), &key);
                                let found = inputs::metric(trace, &key, now).unwrap_or_else(|| {
                                    let a = self.assume.metric(min, max);
                                    note_missing(&mut self.missing, Missing::metric(now, &key, &a));
                                    a
                                });
                                let (answer, fault) = self.faults.metric(found);
                                if let Some(f) = fault {
                                    faults.push(format!("{f}: {key}"));
                                }
                                inputs.metrics.push(MetricInput {
                                    name: key.clone(),
                                    answer: answer.clone(),
                                    min,
                                    max,
                                });
                                snap.answers.metrics.insert(key, answer);
                            }
                            Request::Hook(call) => {
                                let answer = inputs::hook(trace, &key, now).unwrap_or_else(|| {
                                    let a = self.assume.hook();
                                    note_missing(&mut self.missing, Missing::hook(now, &key, &a));
                                    a
                                });
                                settled = call.ends_sequence(&answer);
                                inputs.hooks.push(HookInput {
                                    key: key.clone(),
                                    answer: answer.clone(),
                                });
                                snap.answers.hooks.insert(key, answer);
                            }
                        }
                    }
                }
            }
        };

        if self.record {
            self.recording.push(crate::recording::Reconcile {
                snapshot: (*snap).clone(),
                decision: decision.clone(),
                executed: decision.commands.len(),
            });
        }
        let n = decision.commands.len();
        let mut keep = n;
        let mut restart = false;
        let mut retry = false;
        if let Some(c) = self.crash.filter(|c| c.reconcile == index).or_else(|| {
            trace
                .faults
                .crashes
                .iter()
                .find(|c| c.reconcile == index)
                .copied()
        }) {
            keep = c.keep.min(n);
            restart = true;
            faults.push(format!("crash after {keep} of {n} commands"));
        } else if n > 0 && self.faults.hits(FaultKind::Restart) {
            keep = self.faults.pick(n + 1);
            restart = true;
            faults.push(format!("operator restart after {keep} of {n} commands"));
        }
        // Only writes to the API server can conflict; events, alerts and gauges do not.
        let writes: Vec<usize> = decision
            .commands
            .iter()
            .enumerate()
            .filter(|(_, c)| is_api_write(c))
            .map(|(i, _)| i)
            .collect();
        let conflict_at = (!writes.is_empty() && self.faults.hits(FaultKind::Conflict))
            .then(|| writes[self.faults.pick(writes.len())]);
        let twice_at =
            (n > 0 && self.faults.hits(FaultKind::ApplyTwice)).then(|| self.faults.pick(n));

        let events_before = self.world.events.len();
        let mut applied = 0;
        for (i, command) in decision.commands.iter().enumerate().take(keep) {
            if conflict_at == Some(i) {
                faults.push(format!("API conflict on: {command}"));
                retry = true;
                break;
            }
            let (assume, missing) = (self.assume, &mut self.missing);
            let mut post = |key: &str| {
                inputs::hook(trace, key, now).unwrap_or_else(|| {
                    let a = assume.hook();
                    note_missing(missing, Missing::hook(now, key, &a));
                    a
                })
            };
            if self.world.apply(command, now, base, &mut post).is_err() {
                faults.push("status write conflict (stale resource version)".into());
                retry = true;
                break;
            }
            if twice_at == Some(i) {
                faults.push(format!("applied twice: {command}"));
                // A resent status write carries the version the first one was based on, which
                // the first write just bumped: the copy lands on top of itself.
                let _ = self.world.apply(
                    command,
                    now,
                    self.world.status_version.wrapping_sub(1),
                    &mut post,
                );
            }
            applied += 1;
        }
        let complete = applied == n;
        if let Some(r) = self.recording.last_mut()
            && self.record
        {
            r.executed = applied;
        }

        // A workload that became ready within this instant (a zero readiness delay) is a watch
        // event the operator sees at once, as it would see the Deployment's status change.
        let was_ready = |w: &Option<flagger_core::Workload>| {
            w.as_ref()
                .is_some_and(|w| w.replicas > 0 && w.available_replicas == w.replicas)
        };
        let ready_now = |d: &Option<crate::world::Deployment>| {
            d.as_ref()
                .is_some_and(|d| d.replicas > 0 && d.is_ready(now))
        };
        if (ready_now(&self.world.target) && !was_ready(&snap.target))
            || (ready_now(&self.world.primary) && !was_ready(&snap.primary))
        {
            self.extra.entry(now).or_default().push(Reason::Ready);
        }
        if restart {
            // The process is gone with its timers; the new one reconciles everything at start-up.
            self.wake = None;
            self.extra.entry(now).or_default().push(Reason::Restart);
        } else if retry {
            let at = now + RETRY_AFTER;
            self.wake = Some(decision.wake_at.map_or(at, |w| w.min(at)));
        } else {
            self.wake = decision.wake_at;
            if self.faults.hits(FaultKind::DuplicateReconcile) {
                faults.push("duplicate reconcile".into());
                self.extra.entry(now).or_default().push(Reason::Duplicate);
            }
            if let Some(w) = decision.wake_at
                && self.faults.hits(FaultKind::EarlyReconcile)
                && let Some(at) = self.faults.between(now, w)
            {
                faults.push(format!("early reconcile at {at}"));
                self.extra.entry(at).or_default().push(Reason::Early);
            }
        }

        let step = Step {
            reasons,
            faults,
            after: Digest::of(&self.world.status),
            routes: self.world.routes,
            events: self.world.events[events_before..].to_vec(),
            wake_at: decision.wake_at,
            ..Step::new(index, now, inputs, decision.commands, applied, before)
        };
        let found = self
            .checker
            .check(&step, &snap.status, snap.routes, complete, &self.world);
        self.violations.extend(found);
        self.reconciles += 1;
        // A wait repeats itself every interval for as long as it lasts: keep one step and a count
        // (a recording keeps every reconcile, as the live recorder writes them).
        self.last_changed = step.changed();
        match self.steps.last_mut() {
            Some(last) if !self.record && !step.changed() => last.quiet += 1,
            Some(last) if !self.record && last.is_repeated_by(&step) => {
                last.repeats += 1;
                last.repeats_from.get_or_insert(step.at);
                last.repeats_until = Some(step.at);
                last.wake_at = step.wake_at;
            }
            // Only the steps kept are explained: a repeat is explained by the step it repeats.
            _ => {
                let mut step = step;
                step.explain(self.policy.as_ref());
                self.steps.push(step);
            }
        }
        self.snap = Some(snap);
        Ok(())
    }
}

/// The bounds of `metric` under `policy`, for `--explain`.
pub(crate) fn thresholds(
    policy: Result<&Policy, &flagger_core::SpecError>,
    metric: &str,
) -> (Option<f64>, Option<f64>) {
    policy
        .ok()
        .and_then(|p| p.metrics.iter().find(|m| m.name == metric))
        .map_or((None, None), |m| (m.min, m.max))
}

/// The readiness of primary and canary in words, as the core judges it, for `--explain`.
pub(crate) fn describe_readiness(
    policy: Result<&Policy, &flagger_core::SpecError>,
    snap: &Snapshot,
) -> Inputs {
    let Ok(p) = policy else {
        return Inputs::default();
    };
    let text = |name: &str, w: &flagger_core::Workload, threshold: i32| {
        if w.replicas == 0 {
            return Cow::Borrowed("scaled to zero");
        }
        match readiness(name, w, threshold, p.progress_deadline, snap.now) {
            Readiness::Ready => Cow::Borrowed("ready"),
            Readiness::Waiting(m) | Readiness::DeadlineExceeded(m) => Cow::Owned(m),
        }
    };
    Inputs {
        primary: snap
            .primary
            .as_ref()
            .map(|w| text(p.primary_name(), w, p.primary_ready_threshold)),
        canary: snap
            .target
            .as_ref()
            .map(|w| text(&p.target, w, p.canary_ready_threshold)),
        ..Inputs::default()
    }
}

/// Equal commands, where two status writes count as equal when they differ only in their times
/// (`lastTransitionTime` and the conditions' times move with every write).
fn same_but_times(a: &Command, b: &Command) -> bool {
    match (a, b) {
        (Command::WriteStatus(x), Command::WriteStatus(y)) => same_status_but_times(x, y),
        _ => a == b,
    }
}

/// Statuses equal in all but their times, compared in place (a long wait compares one pair per
/// reconcile). The pattern names every field, so a new one must be considered here.
fn same_status_but_times(x: &CanaryStatus, y: &CanaryStatus) -> bool {
    let CanaryStatus {
        phase,
        failed_checks,
        canary_weight,
        iterations,
        tracked_configs,
        last_applied_spec,
        last_promoted_spec,
        last_transition_time: _,
        conditions,
        session_affinity_cookie,
        previous_session_affinity_cookie,
        primary_session_affinity_cookie,
    } = x;
    *phase == y.phase
        && *failed_checks == y.failed_checks
        && *canary_weight == y.canary_weight
        && *iterations == y.iterations
        && *tracked_configs == y.tracked_configs
        && *last_applied_spec == y.last_applied_spec
        && *last_promoted_spec == y.last_promoted_spec
        && *session_affinity_cookie == y.session_affinity_cookie
        && *previous_session_affinity_cookie == y.previous_session_affinity_cookie
        && *primary_session_affinity_cookie == y.primary_session_affinity_cookie
        && conditions.len() == y.conditions.len()
        && conditions.iter().zip(&y.conditions).all(|(a, b)| {
            let flagger_core::api::CanaryCondition {
                type_,
                status,
                last_update_time: _,
                last_transition_time: _,
                reason,
                message,
            } = a;
            *type_ == b.type_ && *status == b.status && *reason == b.reason && *message == b.message
        })
}

pub(crate) fn is_api_write(c: &Command) -> bool {
    !matches!(
        c,
        Command::EmitEvent { .. }
            | Command::SendAlert(_)
            | Command::RecordMetric(_)
            | Command::RunPostRolloutHooks { .. }
    )
}
