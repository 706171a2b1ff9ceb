//! Answering the core's requests from a trace: the recorded answers of a live run win, then the
//! schedules (step functions over time), then a documented default.

use flagger_core::snapshot::{HookAnswer, MetricAnswer};
use jiff::Timestamp;

use crate::trace::Trace;

/// The latest entry at or before `now` of a time-ordered series.
fn latest<T>(series: Option<&Vec<(Timestamp, T)>>, now: Timestamp) -> Option<&T> {
    let series = series?;
    let n = series.partition_point(|(at, _)| *at <= now);
    n.checked_sub(1).map(|i| &series[i].1)
}

pub const NO_SAMPLES: &str = "no samples for this metric in the trace";

pub fn metric(trace: &Trace, key: &str, now: Timestamp) -> MetricAnswer {
    latest(trace.recorded_metrics.get(key), now)
        .or_else(|| latest(trace.metrics.get(key), now))
        .cloned()
        .unwrap_or_else(|| MetricAnswer::NoValues(NO_SAMPLES.into()))
}

/// `key` is `type/name` (`confirm-promotion/gate`); schedules may be written under either that
/// key or the bare hook name. A hook without any answer passes, as a reachable, approving hook would.
pub fn hook(trace: &Trace, key: &str, now: Timestamp) -> HookAnswer {
    let name = key.split_once('/').map_or(key, |(_, n)| n);
    latest(trace.recorded_hooks.get(key), now)
        .or_else(|| latest(trace.webhooks.get(key), now))
        .or_else(|| latest(trace.webhooks.get(name), now))
        .cloned()
        .unwrap_or(HookAnswer::Passed)
}
