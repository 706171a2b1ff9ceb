//! One step of a run under way: readiness, the analysis (hooks, then metrics), and the strategy's
//! move — a weight step, an iteration, promotion, or the traffic shift back to the primary.

use super::lifecycle::{
    Rollback, apply_services, point_apex_at_primary, post_rollout, reconcile_routes, restart_run,
    revision_changed, rollback, wait_for_primary, wait_for_routes,
};
use super::tick::{Step, Tick};
use crate::api::Phase;
use crate::checks::judge;
use crate::command::{AlertSeverity, Command, MetricRecord, MetricSource};
use crate::events;
use crate::policy::{HookType, MetricCheck, Provider, Strategy};
use crate::readiness::{Readiness, readiness};
use crate::snapshot::{HookAnswer, Routes};

pub fn step(t: &mut Tick) -> Step {
    let phase = t.phase().unwrap_or(Phase::Progressing);
    if t.snap.primary.is_none() {
        t.push(Command::CreatePrimary);
        return Ok(());
    }
    apply_services(t);
    point_apex_at_primary(t);
    reconcile_routes(t);
    if matches!(phase, Phase::Progressing | Phase::WaitingPromotion) && revision_changed(t) {
        restart_run(t);
        return Ok(());
    }
    if recover_lost_step(t, phase) {
        return Ok(());
    }
    if !t.due() {
        return Ok(());
    }
    let routes = match t.routes {
        Some(r) => r,
        None => {
            // The mesh object went missing: put back the weights the status records.
            let w = t.status.canary_weight.clamp(0, 100);
            t.set_routes(100 - w, w, false);
            Routes {
                primary_weight: 100 - w,
                canary_weight: w,
                mirrored: false,
            }
        }
    };
    if !t.p.skip_analysis && !wait_for_primary(t)? {
        return Ok(());
    }
    if !wait_for_routes(t) {
        return Ok(());
    }
    if !wait_for_canary(t)? {
        return Ok(());
    }
    if t.p.skip_analysis {
        promote_without_analysis(t);
        return Ok(());
    }
    if matches!(phase, Phase::Progressing | Phase::WaitingPromotion) {
        let hooks: Vec<_> = t.p.hooks_of(HookType::Rollback).collect();
        for (hook, answer) in t.ask_hooks(&hooks, phase)? {
            match answer {
                HookAnswer::Passed => {
                    t.warn(events::rollback_hook_passed(&hook.name));
                    return rollback(t, Rollback::Manual);
                }
                HookAnswer::Failed(_) => t.event(events::rollback_hook_idle(&hook.name)),
            }
        }
    }
    match phase {
        Phase::Promoting => return shift_to_primary(t, routes),
        Phase::Finalising => return finalise(t),
        _ => {}
    }
    if t.status.failed_checks >= t.p.threshold {
        return rollback(t, Rollback::Threshold);
    }
    t.touch();
    let mirroring = match &t.p.strategy {
        Strategy::Canary(c) => c.mirror,
        Strategy::BlueGreen { mirror, .. } => *mirror,
        Strategy::AbTesting { .. } => false,
    };
    if routes.canary_weight == 0 && t.status.iterations == 0 && !(mirroring && routes.mirrored) {
        for w in t.p.provider_warnings.iter().cloned() {
            t.warn(w);
        }
        t.event(events::starting_analysis(t.p));
        if !pre_rollout(t)? {
            t.status.failed_checks = t.status.failed_checks.saturating_add(1);
            return Ok(());
        }
    } else if !analyse(t)? {
        t.status.failed_checks = t.status.failed_checks.saturating_add(1);
        return Ok(());
    }
    let p = t.p;
    match p.strategy {
        Strategy::Canary(ref steps) => {
            if routes.canary_weight < steps.max_weight {
                if !routes.mirrored
                    && phase != Phase::WaitingPromotion
                    && !gate_traffic_increase(t)?
                {
                    return Ok(());
                }
                let (weight, mirrored) =
                    if steps.mirror && routes.canary_weight == 0 && !routes.mirrored {
                        (0, true)
                    } else if steps.mirror && routes.canary_weight == 0 {
                        (steps.first_weight(), false)
                    } else {
                        (steps.next_weight(routes.canary_weight), false)
                    };
                t.set_routes(100 - weight, weight, mirrored);
                t.status.canary_weight = weight;
                t.event(events::advance_weight(t.p, weight));
            } else if gate_promotion(t, phase)? {
                promote(t);
            }
        }
        Strategy::AbTesting { iterations } => {
            if t.status.iterations < iterations {
                t.set_routes(0, 100, false);
                t.status.iterations = t.status.iterations.saturating_add(1);
                t.event(events::advance_iteration(
                    t.p,
                    t.status.iterations,
                    iterations,
                ));
            } else if gate_promotion(t, phase)? {
                promote(t);
            }
        }
        Strategy::BlueGreen {
            iterations, mirror, ..
        } => {
            if t.status.iterations < iterations {
                if mirror && !routes.mirrored {
                    t.set_routes(100, 0, true);
                }
                t.status.iterations = t.status.iterations.saturating_add(1);
                t.event(events::advance_iteration(
                    t.p,
                    t.status.iterations,
                    iterations,
                ));
            } else if gate_promotion(t, phase)? {
                if t.status.iterations == iterations {
                    if t.p.provider != Provider::Kubernetes {
                        t.event(
                            if mirror {
                                events::STOP_MIRRORING
                            } else {
                                events::ROUTING_ALL_TO_CANARY
                            }
                            .into(),
                        );
                        t.set_routes(0, 100, false);
                    }
                    t.status.iterations = t.status.iterations.saturating_add(1);
                } else {
                    promote(t);
                }
            }
        }
    }
    Ok(())
}

/// Routes are written before the status, so routes ahead of the status mean the last step's status
/// write was lost (a crash, a conflict). Record the step that happened instead of taking another:
/// at most one weight change per interval.
fn recover_lost_step(t: &mut Tick, phase: Phase) -> bool {
    let (Strategy::Canary(_), Some(routes)) = (&t.p.strategy, t.routes) else {
        return false;
    };
    let recorded = t.status.canary_weight;
    let ahead = match phase {
        Phase::Progressing | Phase::WaitingPromotion => routes.canary_weight > recorded,
        Phase::Promoting => routes.canary_weight < recorded,
        _ => false,
    };
    if ahead {
        t.status.canary_weight = routes.canary_weight;
        t.touch();
    }
    ahead
}

/// Canary readiness; a blown deadline rolls back, a rollout in progress waits.
fn wait_for_canary(t: &mut Tick) -> Step<bool> {
    let Some(target) = t.target() else {
        return Ok(false);
    };
    if target.replicas == 0
        && matches!(
            t.phase(),
            Some(Phase::Progressing | Phase::WaitingPromotion)
        )
    {
        // The canary was scaled down under a running analysis: a rollback that stopped part-way
        // (finish it), or someone else (bring it back and wait; it never gets traffic at zero).
        if t.status.failed_checks >= t.p.threshold {
            rollback(t, Rollback::Threshold)?;
        } else {
            let replicas = t.scale_up_replicas();
            t.push(Command::ScaleTarget { replicas });
            t.touch();
        }
        return Ok(false);
    }
    // Elsewhere a Deployment scaled to zero counts as rolled out, as in Flagger, so a promotion
    // interrupted right after scaling the canary down still finishes.
    let verdict = readiness(
        &t.p.target,
        target,
        t.p.canary_ready_threshold,
        t.p.progress_deadline,
        t.now,
    );
    match verdict {
        Readiness::Ready => Ok(true),
        Readiness::Waiting(why) => {
            t.warn(events::canary_not_ready(t.p, &why));
            t.touch();
            Ok(false)
        }
        Readiness::DeadlineExceeded(why) => {
            rollback(t, Rollback::Deadline(events::canary_not_ready(t.p, &why)))?;
            Ok(false)
        }
    }
}

fn pre_rollout(t: &mut Tick) -> Step<bool> {
    let hooks: Vec<_> = t.p.hooks_of(HookType::PreRollout).collect();
    for (hook, answer) in t.ask_hooks(&hooks, Phase::Progressing)? {
        match answer {
            HookAnswer::Passed => t.event(events::hook_passed("Pre-rollout", &hook.name)),
            HookAnswer::Failed(e) => {
                t.warn(events::pre_rollout_failed(t.p, &hook.name, e));
                return Ok(false);
            }
        }
    }
    Ok(true)
}

/// Rollout hooks, then every metric in spec order; the first failure fails the step.
fn analyse(t: &mut Tick) -> Step<bool> {
    let hooks: Vec<_> = t.p.hooks_of(HookType::Rollout).collect();
    for (hook, answer) in t.ask_hooks(&hooks, Phase::Progressing)? {
        if let HookAnswer::Failed(e) = answer {
            t.warn(events::rollout_hook_failed(t.p, &hook.name, e));
            return Ok(false);
        }
    }
    // Flagger runs the built-in checks before the template and inline ones.
    let mut checks: Vec<&MetricCheck> = t.p.metrics.iter().collect();
    checks.sort_by_key(|c| {
        !matches!(
            c.source,
            MetricSource::RequestSuccessRate | MetricSource::RequestDuration
        )
    });
    let answers = t.ask_metrics(&checks)?;
    for (check, answer) in checks.iter().zip(&answers) {
        let verdict = judge(t.p, check, answer);
        if let Some(value) = verdict.recorded {
            t.push(Command::RecordMetric(MetricRecord::Analysis {
                metric: check.name.clone(),
                value,
            }));
        }
        if let Some(message) = verdict.failure {
            t.warn(message);
            return Ok(false);
        }
    }
    Ok(true)
}

fn gate_traffic_increase(t: &mut Tick) -> Step<bool> {
    let hooks: Vec<_> = t.p.hooks_of(HookType::ConfirmTrafficIncrease).collect();
    for (hook, answer) in t.ask_hooks(&hooks, Phase::Progressing)? {
        match answer {
            HookAnswer::Passed => {
                t.event(events::hook_passed("Confirm-traffic-increase", &hook.name))
            }
            HookAnswer::Failed(_) => {
                t.warn(events::waiting_for_traffic_increase(t.p, &hook.name));
                if !hook.mute_alert {
                    t.alert(AlertSeverity::Warn, events::ALERT_WAITING_TRAFFIC, false);
                }
                return Ok(false);
            }
        }
    }
    Ok(true)
}

/// The confirm-promotion gate: a closed gate parks the run in WaitingPromotion (announced once)
/// while the analysis keeps running every interval.
fn gate_promotion(t: &mut Tick, phase: Phase) -> Step<bool> {
    let hooks: Vec<_> = t.p.hooks_of(HookType::ConfirmPromotion).collect();
    for (hook, answer) in t.ask_hooks(&hooks, Phase::Progressing)? {
        match answer {
            HookAnswer::Passed => t.event(events::hook_passed("Confirm-promotion", &hook.name)),
            HookAnswer::Failed(_) => {
                if phase != Phase::WaitingPromotion {
                    t.set_phase(Phase::WaitingPromotion);
                    t.warn(events::waiting_for_promotion(t.p, &hook.name));
                    if !hook.mute_alert {
                        t.alert(AlertSeverity::Warn, events::ALERT_WAITING_PROMOTION, false);
                    }
                }
                return Ok(false);
            }
        }
    }
    Ok(true)
}

fn promote(t: &mut Tick) {
    t.event(events::copying_template(t.p));
    t.push(Command::PromoteTemplate);
    t.set_phase(Phase::Promoting);
}

/// Promoting: move traffic back to the (now updated) primary, at once or by `stepWeightPromotion`.
fn shift_to_primary(t: &mut Tick, routes: Routes) -> Step {
    t.touch();
    if t.p.has_autoscaler {
        t.push(Command::ApplyPrimaryAutoscaler { promote: true });
    }
    // Flagger steps back by `stepWeightPromotion` from the canary's share; an A/B run has none
    // on the weighted route (Flagger then never finishes promoting), so it shifts at once.
    let step = match &t.p.strategy {
        _ if t.p.provider == Provider::Kubernetes => 0,
        Strategy::Canary(c) => c.promotion_step,
        Strategy::BlueGreen { promotion_step, .. } => *promotion_step,
        Strategy::AbTesting { .. } => 0,
    };
    let primary = if step == 0 {
        100
    } else {
        (routes.primary_weight + step).min(100)
    };
    // Flagger's wording: all at once is "Routing all traffic to primary"; in steps, every step
    // (the last, reaching 100, too) is "Advance ... primary weight N"; the kubernetes provider
    // has no traffic to shift and says nothing.
    if step == 0 && t.p.provider != Provider::Kubernetes {
        t.event(events::ROUTING_ALL_TO_PRIMARY.into());
    }
    t.set_routes(primary, 100 - primary, false);
    t.status.canary_weight = 100 - primary;
    if step > 0 {
        t.event(events::advance_primary_weight(t.p, primary));
    }
    if primary >= 100 {
        // Flagger's phase write zeroes the counters: a finished run has no iterations left.
        t.set_phase(Phase::Finalising);
        t.status.iterations = 0;
    }
    Ok(())
}

/// Finalising: all traffic is on the promoted primary; scale the canary down and finish.
fn finalise(t: &mut Tick) -> Step {
    if t.target().is_some_and(|w| w.replicas != 0) {
        t.push(Command::ScaleTarget { replicas: 0 });
    }
    succeed(t, "completed");
    // Flagger calls the post-rollout hooks before it announces the promotion.
    post_rollout(t, Phase::Succeeded);
    t.event(events::promotion_completed(t.p));
    t.alert(AlertSeverity::Info, events::ALERT_SUCCEEDED, false);
    Ok(())
}

fn succeed(t: &mut Tick, analysis_status: &str) {
    t.set_phase(Phase::Succeeded);
    t.status.canary_weight = 0;
    t.status.iterations = 0;
    t.status.last_promoted_spec = t.status.last_applied_spec.clone();
    t.push(Command::RecordMetric(MetricRecord::Success {
        strategy: t.p.declared_strategy.label().into(),
        analysis_status: analysis_status.into(),
    }));
}

/// `skipAnalysis`: promote as soon as the canary is ready.
fn promote_without_analysis(t: &mut Tick) {
    t.set_routes(100, 0, false);
    t.event(events::copying_template(t.p));
    t.push(Command::PromoteTemplate);
    // As when promoting after an analysis, the primary's autoscaler takes the target's bounds.
    if t.p.has_autoscaler {
        t.push(Command::ApplyPrimaryAutoscaler { promote: true });
    }
    t.push(Command::ScaleTarget { replicas: 0 });
    succeed(t, "skipped");
    post_rollout(t, Phase::Succeeded);
    t.event(events::promotion_skipped(t.p));
    t.alert(AlertSeverity::Info, events::ALERT_SKIPPED, false);
}
