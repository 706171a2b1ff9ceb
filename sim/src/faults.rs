//! Seeded fault injection: which faults hit a reconcile, decided by one PRNG in a fixed order so a
//! seed reproduces a run. Scheduled faults are armed at their time and consumed by the first
//! reconcile they can affect.

use flagger_core::snapshot::MetricAnswer;
use jiff::Timestamp;

use crate::prng::Rng;
use crate::trace::{FaultKind, FaultRates, Faults};

pub const INJECTED: &str = "injected fault";

pub struct Injector {
    rng: Rng,
    rates: FaultRates,
    scheduled: Vec<(Timestamp, FaultKind)>,
    armed: Vec<FaultKind>,
}

impl Injector {
    pub fn new(faults: &Faults, seed: u64) -> Injector {
        let mut scheduled = faults.scheduled.clone();
        scheduled.sort_by_key(|(at, _)| *at);
        scheduled.reverse();
        Injector {
            rng: Rng::new(seed),
            rates: faults.rates,
            scheduled,
            armed: Vec::new(),
        }
    }

    /// Arms the scheduled faults due by `now`.
    pub fn arm(&mut self, now: Timestamp) {
        while self.scheduled.last().is_some_and(|(at, _)| *at <= now) {
            if let Some((_, kind)) = self.scheduled.pop() {
                self.armed.push(kind);
            }
        }
    }

    /// The next scheduled restart: restarting makes the operator reconcile at once.
    pub fn next_restart(&self) -> Option<Timestamp> {
        self.scheduled
            .iter()
            .rev()
            .find(|(_, k)| *k == FaultKind::Restart)
            .map(|(at, _)| *at)
    }

    fn take(&mut self, kind: FaultKind) -> bool {
        match self.armed.iter().position(|k| *k == kind) {
            Some(i) => {
                self.armed.remove(i);
                true
            }
            None => false,
        }
    }

    /// Whether `kind` hits now: an armed scheduled fault, or a draw at its rate.
    pub fn hits(&mut self, kind: FaultKind) -> bool {
        let rate = match kind {
            FaultKind::MetricError => self.rates.metric_error,
            FaultKind::MetricNan => self.rates.metric_nan,
            FaultKind::MetricMissing => self.rates.metric_missing,
            FaultKind::Conflict => self.rates.conflict,
            FaultKind::Restart => self.rates.restart,
            FaultKind::DuplicateReconcile => self.rates.duplicate_reconcile,
            FaultKind::EarlyReconcile => self.rates.early_reconcile,
            FaultKind::StaleSnapshot => self.rates.stale_snapshot,
            FaultKind::ApplyTwice => self.rates.apply_twice,
        };
        self.take(kind) || self.rng.chance(rate)
    }

    /// A metric answer as a flaky provider might return it.
    pub fn metric(&mut self, answer: MetricAnswer) -> (MetricAnswer, Option<&'static str>) {
        if self.hits(FaultKind::MetricError) {
            return (
                MetricAnswer::Error(INJECTED.into()),
                Some("metric query error"),
            );
        }
        if self.hits(FaultKind::MetricNan) {
            return (MetricAnswer::Value(f64::NAN), Some("metric NaN"));
        }
        if self.hits(FaultKind::MetricMissing) {
            return (
                MetricAnswer::NoValues(INJECTED.into()),
                Some("metric missing"),
            );
        }
        (answer, None)
    }

    /// Uniform index in `0..n`.
    pub fn pick(&mut self, n: usize) -> usize {
        self.rng.below(n.max(1) as u64) as usize
    }

    /// Uniform instant strictly between `lo` and `hi` (whole seconds), if there is one.
    pub fn between(&mut self, lo: Timestamp, hi: Timestamp) -> Option<Timestamp> {
        let span = hi.duration_since(lo).as_secs();
        if span < 2 {
            return None;
        }
        let s = self.rng.range(1, span - 1);
        lo.checked_add(jiff::SignedDuration::from_secs(s)).ok()
    }
}
