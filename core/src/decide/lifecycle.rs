//! Phases outside an analysis run: initialization, resting (Initialized, Succeeded, Failed,
//! Waiting) with new-revision detection, the start of a run, rollback and termination.

use std::collections::BTreeMap;

use super::active;
use super::tick::{Step, Tick, blocked};
use crate::api::Phase;
use crate::command::{AlertSeverity, Command, MetricRecord};
use crate::events;
use crate::policy::{HookType, Provider};
use crate::readiness::{Readiness, readiness};
use crate::snapshot::{HookAnswer, Routes};

pub fn reconcile(t: &mut Tick) -> Step {
    let snap = t.snap;
    if snap.canary.deleting {
        return terminate(t);
    }
    if t.p.revert_on_deletion && !snap.canary.has_finalizer {
        t.push(Command::AddFinalizer);
    } else if !t.p.revert_on_deletion && snap.canary.has_finalizer {
        t.push(Command::RemoveFinalizer);
    }
    if t.p.suspend {
        return Ok(());
    }
    let Some(target) = t.target() else {
        // Flagger's words (`GetMetadata`), said once here with a Blocked condition instead of
        // at every tick.
        let message = format!(
            "deployment {0}.{1} get query error: deployments.apps \"{0}\" not found",
            t.p.target, t.p.namespace
        );
        return block(t, "TargetNotFound", message);
    };
    if let Some(missing) = target.missing_configs.first() {
        // Flagger cannot read the target's configuration: it neither copies the primary nor
        // judges a revision until the ConfigMap or Secret exists.
        let message = missing_config_message(missing, &t.p.namespace, snap.primary.is_none());
        return block(t, "ConfigNotFound", message);
    }
    match t.phase() {
        None | Some(Phase::Initializing) => initialize(t),
        Some(Phase::Initialized | Phase::Succeeded | Phase::Failed | Phase::Waiting) => rest(t),
        Some(Phase::Terminating | Phase::Terminated) => rest(t),
        Some(
            Phase::Progressing | Phase::WaitingPromotion | Phase::Promoting | Phase::Finalising,
        ) => active::step(t),
    }
}

/// Holds the Canary where it is, with a Blocked condition and one warning event.
fn block(t: &mut Tick, reason: &str, message: String) -> Step {
    for c in blocked(t.snap, reason, message).commands {
        match c {
            Command::WriteStatus(s) => t.status = s,
            other => t.push(other),
        }
    }
    t.keep_blocked = true;
    Ok(())
}

/// Flagger's error for a required ConfigMap or Secret (`configmap/x`, `secret/y`) that does not
/// exist, as its config tracker words it while creating the primary or checking for changes.
fn missing_config_message(missing: &str, namespace: &str, creating_primary: bool) -> String {
    let (kind, name) = missing.split_once('/').unwrap_or(("configmap", missing));
    let prefix = if creating_primary {
        "createPrimaryDeployment failed: "
    } else {
        ""
    };
    format!(
        "{prefix}GetTargetConfigs failed: {kind} {name}.{namespace} get query error: {kind}s \"{name}\" not found"
    )
}

/// Create the primary as a copy of the target, wait until it serves, then move the apex Service
/// to it, route all traffic to it and scale the target down.
fn initialize(t: &mut Tick) -> Step {
    t.set_phase(Phase::Initializing);
    if t.snap.primary.is_none() {
        // Flagger's order: the primary and canary Services, then the primary. The apex keeps
        // serving the target's pods until the primary is ready.
        apply_services(t);
        t.push(Command::CreatePrimary);
        if t.p.has_autoscaler {
            t.push(Command::ApplyPrimaryAutoscaler { promote: false });
        }
        // Remember what the primary is copied from: a revision that lands before it is ready
        // must still be analysed, not taken for the promoted one.
        let target = t.target().cloned().unwrap_or_default();
        t.status.last_promoted_spec = Some(target.template_hash);
        t.status.tracked_configs = tracked(&target.configs);
        return Ok(());
    }
    apply_services(t);
    if !t.p.skip_analysis && !wait_for_primary(t)? {
        return Ok(());
    }
    point_apex_at_primary(t);
    reconcile_routes(t);
    let target = t.target().cloned().unwrap_or_default();
    if target.replicas != 0 {
        t.push(Command::ScaleTarget { replicas: 0 });
    }
    t.set_routes(100, 0, false);
    t.set_phase(Phase::Initialized);
    t.status.canary_weight = 0;
    t.status.failed_checks = 0;
    t.status.iterations = 0;
    // The primary runs what it was created from (recorded above); without that record (a
    // primary that already existed) the target's current revision is taken as promoted.
    let promoted = match t.snap.status.last_promoted_spec.clone() {
        Some(created_from) => created_from,
        None => {
            t.status.tracked_configs = tracked(&target.configs);
            target.template_hash
        }
    };
    t.status.last_applied_spec = Some(promoted.clone());
    t.status.last_promoted_spec = Some(promoted);
    t.event(events::initialization_done(t.p));
    t.alert(AlertSeverity::Info, events::ALERT_INITIALIZED, true);
    Ok(())
}

fn tracked(configs: &BTreeMap<String, String>) -> Option<BTreeMap<String, String>> {
    (!configs.is_empty()).then(|| configs.clone())
}

/// Whether the target differs from what the last run started with: a new pod template (unless it
/// is the one the primary already runs, so reverting to it starts nothing) or changed configs.
pub fn revision_changed(t: &Tick) -> bool {
    let Some(target) = t.target() else {
        return false;
    };
    let status = &t.snap.status;
    let spec_changed = match status.last_applied_spec.as_deref() {
        None => true,
        Some(applied) => {
            target.template_hash != applied
                && status.last_promoted_spec.as_deref() != Some(&target.template_hash)
        }
    };
    let empty = BTreeMap::new();
    let configs_changed = status.tracked_configs.as_ref().unwrap_or(&empty) != &target.configs;
    spec_changed || configs_changed
}

/// A Canary another operator (Flagger) left at rest records its revisions as hashes of its own,
/// which never equal ours: taken at face value, the target would look new and run a whole
/// analysis. When the primary already runs the target's template and the recorded configs are
/// the target's, nothing is new: record our hash of it as applied and promoted (keeping the
/// status's `lastTransitionTime`), and stay.
fn adopt(t: &mut Tick) -> bool {
    if !matches!(
        t.phase(),
        Some(Phase::Initialized | Phase::Succeeded | Phase::Failed)
    ) {
        return false;
    }
    let (Some(target), Some(primary)) = (t.target(), t.snap.primary.as_ref()) else {
        return false;
    };
    let status = &t.snap.status;
    let ours = Some(target.template_hash.as_str());
    let recorded_elsewhere = status.last_applied_spec.is_some()
        && status.last_applied_spec.as_deref() != ours
        && status.last_promoted_spec.as_deref() != ours;
    let primary_runs_target =
        !target.copy_identity.is_empty() && primary.copy_identity == target.copy_identity;
    let configs_promoted = status.tracked_configs.clone().unwrap_or_default() == target.configs;
    if !(recorded_elsewhere && primary_runs_target && configs_promoted) {
        return false;
    }
    let hash = target.template_hash.clone();
    t.status.last_applied_spec = Some(hash.clone());
    t.status.last_promoted_spec = Some(hash);
    // Flagger would have written nothing: `kubectl get canary` keeps showing its last transition.
    t.keep_transition_time = true;
    true
}

/// Resting phases wait for a new revision; `Waiting` retries its confirm-rollout gate each interval.
fn rest(t: &mut Tick) -> Step {
    if t.snap.primary.is_none() {
        t.push(Command::CreatePrimary);
        return Ok(());
    }
    apply_services(t);
    point_apex_at_primary(t);
    reconcile_routes(t);
    // At rest all traffic goes to the primary: a missing object, or weights edited by hand
    // (the canary is scaled to zero), are put back.
    let at_rest = matches!(
        t.phase(),
        Some(Phase::Initialized | Phase::Succeeded | Phase::Failed | Phase::Waiting)
    );
    let all_primary = Routes {
        primary_weight: 100,
        canary_weight: 0,
        mirrored: false,
    };
    if t.snap.routes.is_none() || (at_rest && t.routes != Some(all_primary)) {
        t.set_routes(100, 0, false);
    }
    if adopt(t) {
        return Ok(());
    }
    let waiting = t.phase() == Some(Phase::Waiting);
    if waiting && !t.due() {
        return Ok(());
    }
    if !waiting && !revision_changed(t) {
        return Ok(());
    }
    if !t.p.skip_analysis && !wait_for_primary(t)? {
        return Ok(());
    }
    if !wait_for_routes(t) {
        return Ok(());
    }
    let hooks: Vec<_> = t.p.hooks_of(HookType::ConfirmRollout).collect();
    let phase = t.phase().unwrap_or(Phase::Initialized);
    for (hook, answer) in t.ask_hooks(&hooks, phase)? {
        match answer {
            HookAnswer::Passed => t.event(events::hook_passed("Confirm-rollout", &hook.name)),
            HookAnswer::Failed(_) => {
                if !waiting {
                    t.set_phase(Phase::Waiting);
                    t.warn(events::waiting_for_approval(t.p, &hook.name));
                    if !hook.mute_alert {
                        t.alert(AlertSeverity::Warn, events::ALERT_WAITING_ROLLOUT, false);
                    }
                }
                t.touch();
                return Ok(());
            }
        }
    }
    start_run(t);
    Ok(())
}

/// A new revision passed its gates: scale the canary up and begin the analysis.
fn start_run(t: &mut Tick) {
    let target = t.target().cloned().unwrap_or_default();
    t.event(events::new_revision(t.p));
    t.alert(AlertSeverity::Info, events::ALERT_NEW_REVISION, true);
    let replicas = t.scale_up_replicas();
    t.push(Command::ScaleTarget { replicas });
    t.set_phase(Phase::Progressing);
    t.status.canary_weight = 0;
    t.status.failed_checks = 0;
    t.status.iterations = 0;
    t.status.last_applied_spec = Some(target.template_hash);
    t.status.tracked_configs = tracked(&target.configs);
}

/// A new revision arrived mid-analysis: send all traffic back to the primary and start over.
pub fn restart_run(t: &mut Tick) {
    let target = t.target().cloned().unwrap_or_default();
    t.event(events::restarting(t.p));
    t.set_routes(100, 0, false);
    t.set_phase(Phase::Progressing);
    t.status.canary_weight = 0;
    t.status.failed_checks = 0;
    t.status.iterations = 0;
    t.status.last_applied_spec = Some(target.template_hash);
    t.status.tracked_configs = tracked(&target.configs);
}

/// The primary and canary Services, when one is missing or differs from the spec.
pub fn apply_services(t: &mut Tick) {
    if !t.snap.services_present || t.snap.drift.services {
        t.push(Command::ApplyServices);
    }
}

/// The apex Service moves to the primary's pods only once they serve; until then it keeps
/// selecting what it selects now (the target's pods, for a Service that existed before the
/// Canary). Flagger skips this check, like every readiness check, when analysis is skipped.
/// An apex that already selects the primary is rewritten when the rest of it drifted.
pub fn point_apex_at_primary(t: &mut Tick) {
    let snap = t.snap;
    let move_to_primary = !snap.apex_selects_primary && (t.p.skip_analysis || primary_serves(t));
    let repair = snap.apex_selects_primary && snap.drift.apex;
    if move_to_primary || repair {
        t.push(Command::ApplyApexService);
    }
}

/// Flagger re-applies its routing objects on every reconcile once the primary serves; here
/// they are rewritten, with the weights they send now, only when they drifted from the spec.
pub fn reconcile_routes(t: &mut Tick) {
    if t.snap.drift.routes && t.p.provider != Provider::Kubernetes {
        t.routes_to_repair = true;
    }
}

fn primary_serves(t: &Tick) -> bool {
    t.snap.primary.as_ref().is_some_and(|primary| {
        let ready = readiness(
            t.p.primary_name(),
            primary,
            t.p.primary_ready_threshold,
            t.p.progress_deadline,
            t.now,
        );
        ready == Readiness::Ready
    })
}

/// Whether the primary serves. While it rolls out, say so once per interval; a blown deadline
/// fails the run (or the promotion).
pub fn wait_for_primary(t: &mut Tick) -> Step<bool> {
    let Some(primary) = t.snap.primary.as_ref() else {
        return Ok(false);
    };
    let name = t.p.primary_name();
    match readiness(
        name,
        primary,
        t.p.primary_ready_threshold,
        t.p.progress_deadline,
        t.now,
    ) {
        Readiness::Ready => Ok(true),
        Readiness::Waiting(why) => {
            if t.due() {
                t.warn(events::not_ready(name, &t.p.namespace, &why));
                t.touch();
            }
            Ok(false)
        }
        Readiness::DeadlineExceeded(why) => {
            rollback(
                t,
                Rollback::Deadline(events::not_ready(name, &t.p.namespace, &why)),
            )?;
            Ok(false)
        }
    }
}

/// Whether the routing object carries its current spec (Flagger reads its routes only then):
/// until it does, nothing that depends on traffic moves; say why once per interval.
pub fn wait_for_routes(t: &mut Tick) -> bool {
    let Some(why) = t.snap.routes_not_ready.as_deref() else {
        return true;
    };
    if t.due() {
        t.warn(why.to_string());
        t.touch();
    }
    false
}

pub enum Rollback {
    Threshold,
    Deadline(String),
    Manual,
}

/// Route everything to the primary, scale the canary to zero and mark the run Failed.
pub fn rollback(t: &mut Tick, why: Rollback) -> Step {
    match &why {
        Rollback::Threshold => {}
        Rollback::Deadline(e) => {
            t.warn(events::rolling_back_deadline(t.p, e));
            t.alert(AlertSeverity::Error, &events::alert_deadline(e), false);
        }
        Rollback::Manual => {
            t.warn(events::rolling_back_manual(t.p));
            t.alert(AlertSeverity::Warn, events::ALERT_MANUAL_ROLLBACK, false);
        }
    }
    // Flagger's rollback announces a reached threshold whatever else triggered it.
    if t.status.failed_checks >= t.p.threshold {
        t.warn(events::rolling_back_threshold(t.p, t.status.failed_checks));
        t.alert(
            AlertSeverity::Error,
            &events::alert_threshold(t.status.failed_checks),
            false,
        );
    }
    t.set_routes(100, 0, false);
    t.warn(events::canary_failed(t.p));
    if t.target().is_some_and(|w| w.replicas != 0) {
        t.push(Command::ScaleTarget { replicas: 0 });
    }
    t.set_phase(Phase::Failed);
    t.status.canary_weight = 0;
    t.status.iterations = 0;
    t.push(Command::RecordMetric(MetricRecord::Failure {
        strategy: t.p.declared_strategy.label().into(),
        analysis_status: "completed".into(),
    }));
    post_rollout(t, Phase::Failed);
    Ok(())
}

pub fn post_rollout(t: &mut Tick, phase: Phase) {
    let hooks: Vec<_> =
        t.p.hooks_of(HookType::PostRollout)
            .map(|h| t.hook_call(h, phase))
            .collect();
    if !hooks.is_empty() {
        t.push(Command::RunPostRolloutHooks { phase, hooks });
    }
}

/// Deletion with the finalizer: give the target its traffic and replicas back, then let go.
fn terminate(t: &mut Tick) -> Step {
    if !t.snap.canary.has_finalizer {
        return Ok(());
    }
    if t.phase() != Some(Phase::Terminating) {
        t.set_phase(Phase::Terminating);
        t.event(events::terminating(t.p));
    }
    if let Some(target) = t.target() {
        // Flagger's `Finalize`: the target takes over at the primary's current size. With an
        // autoscaler on the target only a scaled-down target is resized, so the two never fight
        // while its pods get ready.
        let replicas = t.revert_replicas();
        if target.replicas == 0 || (!t.p.has_autoscaler && target.replicas != replicas) {
            t.push(Command::ScaleTarget { replicas });
            return Ok(());
        }
        let ready = readiness(
            &t.p.target,
            target,
            t.p.canary_ready_threshold,
            t.p.progress_deadline,
            t.now,
        );
        if let Readiness::Waiting(_) = ready {
            // Do not move traffic to pods that cannot serve it yet; a blown deadline moves on anyway.
            return Ok(());
        }
        t.push(Command::RevertApexService);
        t.set_routes(0, 100, false);
    }
    t.event(events::terminated(t.p));
    t.push(Command::RemoveFinalizer);
    // The object disappears with its finalizer: nothing is left to write.
    t.skip_status = true;
    Ok(())
}
