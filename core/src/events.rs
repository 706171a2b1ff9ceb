//! Flagger's event and alert wording, in one place, because users grep for these exact strings.
//! `%s.%s` in Flagger is `name.namespace`; which name (Canary or target) follows Flagger line by line.

use crate::api::{Phase, format_go_duration};
use crate::command::HookCall;
use crate::policy::Policy;
use crate::snapshot::HookAnswer;

/// The phase an event announces, for the event webhooks' `phase` field. Flagger sends most events
/// with the phase the Canary had when its tick began, but the four that announce where a run
/// starts or ends are sent with that phase already set: Progressing, Initialized, Succeeded and
/// Failed.
pub fn announced_phase(message: &str) -> Option<Phase> {
    const ANNOUNCED: [(&str, Phase); 4] = [
        ("New revision detected! Scaling up ", Phase::Progressing),
        ("Initialization done! ", Phase::Initialized),
        ("Promotion completed! ", Phase::Succeeded),
        ("Canary failed! ", Phase::Failed),
    ];
    ANNOUNCED
        .iter()
        .find(|(prefix, _)| message.starts_with(prefix))
        .map(|(_, phase)| *phase)
}

pub fn initialization_done(p: &Policy) -> String {
    format!("Initialization done! {}.{}", p.name, p.namespace)
}
pub fn new_revision(p: &Policy) -> String {
    format!(
        "New revision detected! Scaling up {}.{}",
        p.target, p.namespace
    )
}
pub fn restarting(p: &Policy) -> String {
    format!(
        "New revision detected! Restarting analysis for {}.{}",
        p.target, p.namespace
    )
}
pub fn starting_analysis(p: &Policy) -> String {
    format!("Starting canary analysis for {}.{}", p.target, p.namespace)
}
pub fn advance_weight(p: &Policy, weight: i32) -> String {
    format!(
        "Advance {}.{} canary weight {}",
        p.name, p.namespace, weight
    )
}
pub fn advance_iteration(p: &Policy, iteration: i32, of: i32) -> String {
    format!(
        "Advance {}.{} canary iteration {}/{}",
        p.name, p.namespace, iteration, of
    )
}
pub fn advance_primary_weight(p: &Policy, weight: i32) -> String {
    format!(
        "Advance {}.{} primary weight {}",
        p.name, p.namespace, weight
    )
}
pub fn copying_template(p: &Policy) -> String {
    format!(
        "Copying {}.{} template spec to {}.{}",
        p.target,
        p.namespace,
        p.primary_name(),
        p.namespace
    )
}
pub const ROUTING_ALL_TO_PRIMARY: &str = "Routing all traffic to primary";
pub const ROUTING_ALL_TO_CANARY: &str = "Routing all traffic to canary";
pub const STOP_MIRRORING: &str = "Stop traffic mirroring and route all traffic to canary";
pub fn promotion_completed(p: &Policy) -> String {
    format!(
        "Promotion completed! Scaling down {}.{}",
        p.target, p.namespace
    )
}
pub fn promotion_skipped(p: &Policy) -> String {
    format!(
        "Promotion completed! Canary analysis was skipped for {}.{}",
        p.target, p.namespace
    )
}
pub fn terminating(p: &Policy) -> String {
    format!("Terminating canary {}.{}", p.name, p.namespace)
}
pub fn terminated(p: &Policy) -> String {
    format!("Terminated canary {}.{}", p.name, p.namespace)
}
pub fn rolling_back_threshold(p: &Policy, failed: i32) -> String {
    format!(
        "Rolling back {}.{} failed checks threshold reached {}",
        p.name, p.namespace, failed
    )
}
pub fn rolling_back_deadline(p: &Policy, err: &str) -> String {
    format!(
        "Rolling back {}.{} progress deadline exceeded {}",
        p.name, p.namespace, err
    )
}
pub fn rolling_back_manual(p: &Policy) -> String {
    format!(
        "Rolling back {}.{} manual webhook invoked",
        p.name, p.namespace
    )
}
pub fn canary_failed(p: &Policy) -> String {
    format!("Canary failed! Scaling down {}.{}", p.name, p.namespace)
}
pub fn promotion_failed(p: &Policy, err: &str) -> String {
    format!(
        "Promotion of {}.{} failed, primary not ready: {}",
        p.name, p.namespace, err
    )
}
pub fn not_ready(workload: &str, namespace: &str, err: &str) -> String {
    format!("{workload}.{namespace} not ready: {err}")
}
/// The canary's readiness carries the kind of workload in front, as Flagger's `IsCanaryReady`.
pub fn canary_not_ready(p: &Policy, err: &str) -> String {
    format!(
        "canary deployment {}.{} not ready: {err}",
        p.target, p.namespace
    )
}

// Hooks.
pub fn hook_passed(kind: &str, hook: &str) -> String {
    format!("{kind} check {hook} passed")
}
pub fn waiting_for_approval(p: &Policy, hook: &str) -> String {
    format!(
        "Halt {}.{} advancement waiting for approval {}",
        p.name, p.namespace, hook
    )
}
pub fn waiting_for_traffic_increase(p: &Policy, hook: &str) -> String {
    format!(
        "Halt {}.{} advancement waiting for traffic increase approval {}",
        p.name, p.namespace, hook
    )
}
pub fn waiting_for_promotion(p: &Policy, hook: &str) -> String {
    format!(
        "Halt {}.{} advancement waiting for promotion approval {}",
        p.name, p.namespace, hook
    )
}
pub fn pre_rollout_failed(p: &Policy, hook: &str, err: &str) -> String {
    format!(
        "Halt {}.{} advancement pre-rollout check {} failed {}",
        p.name, p.namespace, hook, err
    )
}
pub fn rollout_hook_failed(p: &Policy, hook: &str, err: &str) -> String {
    format!(
        "Halt {}.{} advancement external check {} failed {}",
        p.name, p.namespace, hook, err
    )
}
pub fn rollback_hook_idle(hook: &str) -> String {
    format!("Rollback hook {hook} not signaling a rollback")
}
pub fn rollback_hook_passed(hook: &str) -> String {
    format!("Rollback check {hook} passed")
}

/// The event an executor emits for each post-rollout hook it called.
pub fn post_rollout(
    hook: &HookCall,
    answer: &HookAnswer,
) -> (crate::command::EventSeverity, String) {
    match answer {
        HookAnswer::Passed => (
            crate::command::EventSeverity::Normal,
            hook_passed("Post-rollout", &hook.name),
        ),
        HookAnswer::Failed(e) => (
            crate::command::EventSeverity::Warning,
            format!("Post-rollout hook {} failed {}", hook.name, e),
        ),
    }
}

// Metrics.
pub fn success_rate_halt(p: &Policy, value: f64, op: char, bound: f64) -> String {
    format!(
        "Halt {}.{} advancement success rate {:.2}% {} {}%",
        p.name,
        p.namespace,
        value,
        op,
        go_float(bound)
    )
}
pub fn duration_halt(p: &Policy, value_ms: f64, op: char, bound_ms: f64) -> String {
    format!(
        "Halt {}.{} advancement request duration {} {} {}",
        p.name,
        p.namespace,
        ms(value_ms),
        op,
        ms(bound_ms)
    )
}
pub fn custom_halt(p: &Policy, metric: &str, value: f64, op: char, bound: f64) -> String {
    format!(
        "Halt {}.{} advancement {} {:.2} {} {}",
        p.name,
        p.namespace,
        metric,
        value,
        op,
        go_float(bound)
    )
}
pub fn no_values_builtin(p: &Policy, metric: &str, err: Option<&str>) -> String {
    let base = format!(
        "Halt advancement no values found for {} metric {} probably {}.{} is not receiving traffic",
        p.provider_name, metric, p.target, p.namespace
    );
    match err {
        Some(e) => format!("{base}: {e}"),
        None => base,
    }
}
pub fn no_values_custom(metric: &str, err: &str) -> String {
    format!("Halt advancement no values found for custom metric: {metric}: {err}")
}
/// An inline `query` metric: Flagger names the metric and gives no further detail.
pub fn no_values_inline(metric: &str) -> String {
    format!("Halt advancement no values found for metric: {metric}")
}
pub fn inline_query_failed(metric: &str, err: &str) -> String {
    format!("Prometheus query failed for {metric}: {err}")
}
pub fn builtin_query_failed(err: &str) -> String {
    format!("Prometheus query failed: {err}")
}
pub fn custom_query_failed(metric: &str, err: &str) -> String {
    format!("Metric query failed for {metric}: {err}")
}

// Alerts.
pub const ALERT_NEW_REVISION: &str = "New revision detected, progressing canary analysis.";
pub const ALERT_INITIALIZED: &str = "New Deployment detected, initialization completed.";
pub const ALERT_WAITING_ROLLOUT: &str = "Canary is waiting for approval.";
pub const ALERT_WAITING_TRAFFIC: &str = "Canary traffic increase is waiting for approval.";
pub const ALERT_WAITING_PROMOTION: &str = "Canary promotion is waiting for approval.";
pub const ALERT_MANUAL_ROLLBACK: &str = "Rolling back manual webhook invoked";
pub const ALERT_SUCCEEDED: &str = "Canary analysis completed successfully, promotion finished.";
pub const ALERT_SKIPPED: &str = "Canary analysis was skipped, promotion finished.";
pub fn alert_threshold(failed: i32) -> String {
    format!("Failed checks threshold reached {failed}")
}
pub fn alert_deadline(err: &str) -> String {
    format!("Progress deadline exceeded {err}")
}
pub fn alert_promotion_failed(err: &str) -> String {
    format!("Promotion failed, primary not ready: {err}")
}

/// Go's `%v` for a float64: the shortest text that reads back as the same number.
pub fn go_float(v: f64) -> String {
    if v.is_infinite() {
        return if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    format!("{v}")
}

/// Go's `time.Duration` text for a whole number of milliseconds (Flagger truncates the fraction).
fn ms(value_ms: f64) -> String {
    if !value_ms.is_finite() {
        return go_float(value_ms);
    }
    let whole = value_ms.trunc().clamp(-9.2e12, 9.2e12) as i64;
    format_go_duration(jiff::SignedDuration::from_millis(whole))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_and_durations_print_as_go_does() {
        assert_eq!(go_float(99.0), "99");
        assert_eq!(go_float(99.5), "99.5");
        assert_eq!(ms(500.9), "500ms");
        assert_eq!(ms(1500.0), "1.5s");
        assert_eq!(ms(0.0), "0s");
    }
}
