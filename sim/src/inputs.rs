//! Answering the core's requests from a trace: a recorded sample of a live run (or a trace's
//! `answers`) wins, then the schedules (step functions over time); an input found in neither is
//! missing, and the replay's [`Assume`] decides how it answers.
//!
//! A recorded sample is a measurement taken at one moment, and a replay under another Canary
//! asks at other moments: a reconcile at `t` uses the recorded sample nearest to `t`, the later
//! one on a tie, if it lies within [`Trace::sample_window`] (half the recorded analysis
//! interval); further away, nothing was measured then and the input is missing. The live
//! operator acts a few milliseconds after each step is due, so a replayed step, which runs exactly
//! when due, gets the sample of the live step it stands for.

use flagger_core::snapshot::{HookAnswer, MetricAnswer};
use jiff::{SignedDuration, Timestamp};
use serde::Serialize;

use crate::trace::Trace;

/// The latest entry at or before `now` of a time-ordered series.
fn latest<T>(series: Option<&Vec<(Timestamp, T)>>, now: Timestamp) -> Option<&T> {
    let series = series?;
    let n = series.partition_point(|(at, _)| *at <= now);
    n.checked_sub(1).map(|i| &series[i].1)
}

/// The entry of a time-ordered series nearest to `now` (the later on a tie), within `window`.
fn nearest<T>(
    series: Option<&Vec<(Timestamp, T)>>,
    now: Timestamp,
    window: SignedDuration,
) -> Option<&T> {
    let series = series?;
    let n = series.partition_point(|(at, _)| *at < now);
    let after = series.get(n).map(|(at, v)| (at.duration_since(now), v));
    let before = n
        .checked_sub(1)
        .map(|i| (now.duration_since(series[i].0), &series[i].1));
    let best = match (before, after) {
        (Some(b), Some(a)) => Some(if b.0 < a.0 { b } else { a }),
        (b, a) => a.or(b),
    };
    best.filter(|(distance, _)| *distance <= window)
        .map(|(_, v)| v)
}

pub const NO_SAMPLES: &str = "no samples for this metric in the trace";
const NOT_RECORDED: &str = "not in the recording or trace";

/// The metric's answer at `now`; `None` when the trace has none.
pub fn metric(trace: &Trace, key: &str, now: Timestamp) -> Option<MetricAnswer> {
    nearest(trace.recorded_metrics.get(key), now, trace.sample_window)
        .or_else(|| latest(trace.metrics.get(key), now))
        .cloned()
}

/// `key` is `type/name` (`confirm-promotion/gate`); schedules may be written under either that
/// key or the bare hook name. `None` when the trace has no answer.
pub fn hook(trace: &Trace, key: &str, now: Timestamp) -> Option<HookAnswer> {
    let name = key.split_once('/').map_or(key, |(_, n)| n);
    nearest(trace.recorded_hooks.get(key), now, trace.sample_window)
        .or_else(|| latest(trace.webhooks.get(key), now))
        .or_else(|| latest(trace.webhooks.get(name), now))
        .cloned()
}

/// How an input the trace does not have answers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Assume {
    /// A hand-written trace's documented defaults: a metric without samples has no values, a
    /// webhook without answers passes (a reachable, approving hook).
    #[default]
    TraceDefaults,
    /// Every missing metric is within its thresholds and every missing webhook approves.
    Pass,
    /// Every missing metric query and webhook call fails.
    Fail,
    /// Every missing metric returns no values; every missing webhook is unreachable.
    NoData,
}

impl Assume {
    pub fn metric(self, min: Option<f64>, max: Option<f64>) -> MetricAnswer {
        match self {
            Assume::TraceDefaults => MetricAnswer::NoValues(NO_SAMPLES.into()),
            // A bound itself is inside the range; a metric without bounds takes any value.
            Assume::Pass => MetricAnswer::Value(min.or(max).unwrap_or(0.0)),
            Assume::Fail => MetricAnswer::Error(format!("assumed failing: {NOT_RECORDED}")),
            Assume::NoData => MetricAnswer::NoValues(NOT_RECORDED.into()),
        }
    }

    pub fn hook(self) -> HookAnswer {
        match self {
            Assume::TraceDefaults | Assume::Pass => HookAnswer::Passed,
            Assume::Fail => HookAnswer::Failed(format!("assumed failing: {NOT_RECORDED}")),
            Assume::NoData => HookAnswer::Failed(format!("no answer: {NOT_RECORDED}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    #[test]
    fn nearest_prefers_the_closer_sample_and_the_later_on_a_tie() {
        let series = Some(vec![(at(60), 'a'), (at(120), 'b')]);
        let w = SignedDuration::from_secs(30);
        assert_eq!(nearest(series.as_ref(), at(119), w), Some(&'b'));
        assert_eq!(nearest(series.as_ref(), at(121), w), Some(&'b'));
        assert_eq!(nearest(series.as_ref(), at(89), w), Some(&'a'));
        assert_eq!(nearest(series.as_ref(), at(90), w), Some(&'b'));
        assert_eq!(nearest(series.as_ref(), at(151), w), None);
        assert_eq!(nearest(series.as_ref(), at(29), w), None);
        assert_eq!(nearest::<char>(None, at(60), w), None);
    }

    #[test]
    fn assumed_pass_is_inside_the_bounds() {
        assert_eq!(
            Assume::Pass.metric(Some(99.0), None),
            MetricAnswer::Value(99.0)
        );
        assert_eq!(
            Assume::Pass.metric(None, Some(500.0)),
            MetricAnswer::Value(500.0)
        );
        assert!(matches!(
            Assume::Fail.metric(Some(99.0), None),
            MetricAnswer::Error(_)
        ));
        assert!(matches!(Assume::NoData.hook(), HookAnswer::Failed(_)));
    }
}
