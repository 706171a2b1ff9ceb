//! Which rule of the rollout algorithm decided a step, in words a person can check against the
//! Canary spec: "weight 50 reached maxWeight 50: promote", "failed checks 2 reached threshold 2:
//! roll back", "gate confirm-promotion closed: wait". Read off what the step saw and did (its
//! status before and after, the webhook answers, the events), so it works the same for simulated
//! and recorded runs.

use flagger_core::policy::{Steps, Strategy};
use flagger_core::snapshot::HookAnswer;
use flagger_core::{Phase, Policy};

use crate::engine::{Digest, Inputs};
use crate::world::EventRecord;

/// What a step saw and did, as the rule finder needs it.
pub struct Seen<'a> {
    pub before: &'a Digest,
    pub after: &'a Digest,
    pub inputs: &'a Inputs,
    pub events: &'a [EventRecord],
}

/// The rule that decided the step, if it is one the algorithm names.
pub fn rule(p: &Policy, s: &Seen) -> Option<String> {
    restart(s)
        .or_else(|| rollback(p, s))
        .or_else(|| promotion(p, s))
        .or_else(|| gate(s))
        .or_else(|| check_failed(p, s))
        .or_else(|| advance(p, s))
}

fn has_event(s: &Seen, text: &str) -> bool {
    s.events.iter().any(|e| e.message.contains(text))
}

/// Whether a run is under way in `phase` (between the start of an analysis and its end).
pub(crate) fn analysing(phase: Option<Phase>) -> bool {
    matches!(
        phase,
        Some(Phase::Progressing | Phase::WaitingPromotion | Phase::Promoting | Phase::Finalising)
    )
}

fn restart(s: &Seen) -> Option<String> {
    (analysing(s.before.phase) && has_event(s, "New revision detected! Restarting analysis"))
        .then(|| "revision changed mid-analysis: restart".to_string())
}

fn rollback(p: &Policy, s: &Seen) -> Option<String> {
    if s.after.phase != Some(Phase::Failed) || s.before.phase == Some(Phase::Failed) {
        return None;
    }
    let failed = s.after.failed_checks.max(s.before.failed_checks);
    if has_event(s, "progress deadline exceeded") || has_event(s, "Progress deadline exceeded") {
        return Some("progress deadline exceeded: roll back".into());
    }
    if let Some(gate) = hook_answered(s, "rollback/", true) {
        return Some(format!("gate {gate} opened: roll back"));
    }
    (failed >= p.threshold).then(|| {
        format!(
            "failed checks {failed} reached threshold {}: roll back",
            p.threshold
        )
    })
}

fn promotion(p: &Policy, s: &Seen) -> Option<String> {
    let starts = s.after.phase == Some(Phase::Promoting)
        && matches!(
            s.before.phase,
            Some(Phase::Progressing | Phase::WaitingPromotion)
        );
    if !starts {
        return None;
    }
    Some(match &p.strategy {
        Strategy::Canary(c) => {
            let weight = s.before.canary_weight.max(s.after.canary_weight);
            match &c.steps {
                Steps::Ladder(_) => format!("weight {weight} reached the last step: promote"),
                Steps::Linear(_) => {
                    format!(
                        "weight {weight} reached maxWeight {}: promote",
                        c.max_weight
                    )
                }
            }
        }
        Strategy::AbTesting { iterations } | Strategy::BlueGreen { iterations, .. } => format!(
            "iteration {} reached iterations {iterations}: promote",
            s.before.iterations.min(*iterations)
        ),
    })
}

/// The name of the first webhook of `prefix` (`type/`) whose answer is `passed` (or failed).
fn hook_answered(s: &Seen, prefix: &str, passed: bool) -> Option<String> {
    s.inputs
        .hooks
        .iter()
        .filter(|h| h.key.starts_with(prefix))
        .find(|h| (h.answer == HookAnswer::Passed) == passed)
        .map(|h| h.key.trim_start_matches(prefix).to_string())
}

fn gate(s: &Seen) -> Option<String> {
    [
        "confirm-rollout/",
        "confirm-traffic-increase/",
        "confirm-promotion/",
    ]
    .into_iter()
    .find_map(|prefix| {
        hook_answered(s, prefix, false).map(|name| format!("gate {prefix}{name} closed: wait"))
    })
}

fn check_failed(p: &Policy, s: &Seen) -> Option<String> {
    (s.after.failed_checks > s.before.failed_checks).then(|| {
        format!(
            "a check failed: failed checks {}/{}",
            s.after.failed_checks, p.threshold
        )
    })
}

fn advance(p: &Policy, s: &Seen) -> Option<String> {
    if s.after.phase != Some(Phase::Progressing) {
        return None;
    }
    match &p.strategy {
        Strategy::Canary(_) if s.after.canary_weight > s.before.canary_weight => Some(format!(
            "checks passed: weight {} to {}",
            s.before.canary_weight, s.after.canary_weight
        )),
        Strategy::BlueGreen { iterations, .. } if s.after.iterations > *iterations => Some(
            format!("iterations {iterations}/{iterations} done: blue/green switch to the canary"),
        ),
        Strategy::AbTesting { iterations } | Strategy::BlueGreen { iterations, .. }
            if s.after.iterations > s.before.iterations =>
        {
            Some(format!(
                "checks passed: iteration {}/{iterations}",
                s.after.iterations
            ))
        }
        _ => None,
    }
}
