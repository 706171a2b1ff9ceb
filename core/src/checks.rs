//! Judging one metric answer against its thresholds, with Flagger's halt messages. No data, NaN and
//! query errors all fail the check, each with its own explanation.

use crate::command::MetricSource;
use crate::events;
use crate::policy::{MetricCheck, Policy};
use crate::snapshot::MetricAnswer;

#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// The value to export as `flagger_canary_metric_analysis` (durations in seconds).
    pub recorded: Option<f64>,
    /// `None` when the check passed; otherwise the warning event text.
    pub failure: Option<String>,
}

pub fn judge(p: &Policy, check: &MetricCheck, answer: &MetricAnswer) -> Verdict {
    let builtin = matches!(
        check.source,
        MetricSource::RequestSuccessRate | MetricSource::RequestDuration
    );
    let no_values = |detail: &str| match check.source {
        MetricSource::RequestSuccessRate => events::no_values_builtin(p, &check.name, Some(detail)),
        MetricSource::RequestDuration => events::no_values_builtin(p, &check.name, None),
        MetricSource::Inline { .. } => events::no_values_inline(&check.name),
        MetricSource::Template { .. } => events::no_values_custom(&check.name, detail),
    };
    let inline = matches!(check.source, MetricSource::Inline { .. });
    let value = match answer {
        MetricAnswer::Error(e) if builtin => return fail(None, events::builtin_query_failed(e)),
        MetricAnswer::Error(e) if inline => {
            return fail(None, events::inline_query_failed(&check.name, e));
        }
        MetricAnswer::Error(e) => return fail(None, events::custom_query_failed(&check.name, e)),
        MetricAnswer::NoValues(e) => return fail(None, no_values(e)),
        MetricAnswer::Value(v) if v.is_nan() => {
            return fail(None, no_values("no values found (NaN)"));
        }
        MetricAnswer::Value(v) => *v,
    };
    let recorded = Some(match check.source {
        MetricSource::RequestDuration => value / 1000.0,
        _ => value,
    });
    let violated = match (check.min, check.max) {
        (Some(min), _) if value < min => Some(('<', min)),
        (_, Some(max)) if value > max => Some(('>', max)),
        _ => None,
    };
    let failure = violated.map(|(op, bound)| match check.source {
        MetricSource::RequestSuccessRate => events::success_rate_halt(p, value, op, bound),
        MetricSource::RequestDuration => events::duration_halt(p, value, op, bound),
        _ => events::custom_halt(p, &check.name, value, op, bound),
    });
    Verdict { recorded, failure }
}

fn fail(recorded: Option<f64>, message: String) -> Verdict {
    Verdict {
        recorded,
        failure: Some(message),
    }
}
