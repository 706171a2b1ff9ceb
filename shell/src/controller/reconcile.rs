//! The kube-runtime reconciler: snapshot from the caches, decide and execute, requeue when the
//! core wants to be called again.

use std::sync::Arc;
use std::time::Duration;

use flagger_core::api::{Canary, Phase};
use flagger_core::command::{Command, Decision, EventSeverity};
use flagger_core::snapshot::{Answers, Snapshot};
use jiff::Timestamp;
use kube::ResourceExt;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;

use super::context::Context;
use super::dispatch::ClusterEffects;
use super::run::{self, CommandFailure, Run, TooManyPasses};
use super::snapshot;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    TooManyPasses(#[from] TooManyPasses),
    #[error("{} failed: {}", .0.command, .0.error)]
    Command(CommandFailure),
}

impl Error {
    /// A short label for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::TooManyPasses(_) => "too_many_passes",
            Error::Command(_) => "command_failed",
        }
    }
}

pub async fn reconcile(canary: Arc<Canary>, ctx: Arc<Context>) -> Result<Action, Error> {
    let Some(shards) = ctx.shards.clone() else {
        return reconcile_held(canary, ctx).await;
    };
    let namespace = canary.namespace().unwrap_or_default();
    // Another replica's Canary: no write; this replica reconciles it when it gains the shard.
    let Some(permit) = shards.permit(&namespace, &canary.name_any()) else {
        return Ok(Action::await_change());
    };
    tokio::select! {
        result = reconcile_held(canary.clone(), ctx) => result,
        _ = permit.lost() => {
            // Another replica may take the shard soon: stop here, as a killed process would.
            tracing::warn!(
                canary = %format!("{}.{namespace}", canary.name_any()),
                shard = permit.shard(),
                "shard lost; reconcile cancelled"
            );
            Ok(Action::await_change())
        }
    }
}

/// The reconcile of a Canary this replica acts on.
async fn reconcile_held(canary: Arc<Canary>, ctx: Arc<Context>) -> Result<Action, Error> {
    if !ctx.state.readiness.caches_synced() {
        // A cache still listing would show the target, primary or routes as missing, and the
        // core would act on that (block the Canary, reset its routes): wait until all are in.
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    let lane = super::initializations::lane_of(&canary);
    let initializations = ctx.initializations.clone();
    // The reconcile's future is large (tens of KB) and a burst of new Canaries waits for
    // initialization slots by the thousand: box it only once its slot is granted, so a waiting
    // reconcile holds just its two Arcs.
    initializations
        .run(lane, async move {
            Box::pin(reconcile_synced(canary, ctx)).await
        })
        .await
}

/// A reconcile once every cache has listed, in its Canary's lane.
async fn reconcile_synced(canary: Arc<Canary>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = std::time::Instant::now();
    let key = ObjectRef::from_obj(canary.as_ref());
    let namespace = canary.namespace().unwrap_or_default();
    let rivals = ctx
        .canary_index
        .targeting(&namespace, &canary.spec.target_ref.name);
    if rivals.len() > 1 {
        // Flagger's warning: both Canaries will drive the same Deployment against each other.
        tracing::warn!(
            canary = %format!("{}.{namespace}", canary.name_any()),
            target = %canary.spec.target_ref.name,
            canaries = ?rivals.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
            "Bad things will happen! Found more than one canary with the same target"
        );
    }
    // Objects this Canary started referencing after their watch passed them: one GET each.
    if let Err(e) = super::scoped::resolve(&ctx.client, &ctx.stores, &canary).await {
        tracing::warn!(canary = %format!("{}.{namespace}", canary.name_any()), error = %e, "cannot read a referenced object; retrying");
        return Ok(Action::requeue(Duration::from_secs(5)));
    }
    let now = Timestamp::now();
    let snap = snapshot::build_with(
        &ctx.stores,
        &canary,
        &ctx.settings.config,
        &ctx.settings.labels,
        now,
        Answers::default(),
    );
    let phase_before = canary.status.as_ref().and_then(|s| s.phase);
    let result = decide_record_execute(&ctx, &canary, snap).await;
    if let Ok(run) = &result
        && was_analysis_step(phase_before, &run.decision)
    {
        ctx.state.metrics.observe_duration(
            &canary.spec.target_ref.name,
            &namespace,
            started.elapsed().as_secs_f64(),
        );
    }
    let failed = match &result {
        Err(e) => Some(e.to_string()),
        Ok(run) => run.failure.as_ref().map(|f| f.error.clone()),
    };
    if let Some(message) = failed {
        report_failure(&ctx, &canary, &key, &message).await;
    }
    let run = result?;
    tracing::debug!(
        canary = %format!("{}.{namespace}", canary.name_any()),
        passes = run.passes,
        commands = run.decision.commands.len(),
        wake_at = ?run.decision.wake_at,
        "reconciled"
    );
    if let Some(failure) = run.failure {
        return Err(Error::Command(failure));
    }
    ctx.clear_failures(&key);
    Ok(requeue(run.decision.wake_at, Timestamp::now()))
}

/// The recording gets the decision before its commands run: a process killed between a route
/// write and the end of the reconcile must still leave that step in the trace.
async fn decide_record_execute(
    ctx: &Context,
    canary: &Canary,
    snap: Snapshot,
) -> Result<Run, TooManyPasses> {
    let effects = ClusterEffects { ctx };
    let (decision, answers, passes) = run::decide(&effects, canary, snap.clone()).await?;
    let pending = ctx
        .traces
        .as_ref()
        .and_then(|t| t.record_decision(canary, &snap, &answers, &decision));
    let (executed, failure) = run::execute(&effects, canary, &decision).await;
    if let (Some(traces), Some(pending)) = (&ctx.traces, pending) {
        traces.record_executed(pending, executed);
    }
    Ok(Run {
        answers,
        passes,
        decision,
        executed,
        failure,
    })
}

/// A failed command or decision as a Warning event on the Canary (and to its event webhooks),
/// in the cause's words, which are Flagger's for the writes Flagger also makes. Rate-limited per
/// Canary and message ([`super::context::FAILURE_REPORT_WINDOW`]): the reconcile is retried
/// with a backoff, and each retry that fails the same way adds nothing new.
async fn report_failure(ctx: &Context, canary: &Canary, key: &ObjectRef<Canary>, message: &str) {
    if ctx
        .failure_reports
        .due(key, message, std::time::Instant::now())
    {
        ClusterEffects { ctx }
            .emit(canary, EventSeverity::Warning, message)
            .await;
    }
}

/// Call again at `wake_at` (at least a second from now), or only when something changes.
const REQUEUE_FLOOR: Duration = Duration::from_millis(20);

pub fn requeue(wake_at: Option<Timestamp>, now: Timestamp) -> Action {
    match wake_at {
        None => Action::await_change(),
        Some(at) => {
            // The core never asks for a wake-up at or before `now`, so the floor only guards
            // against clock skew between deciding and requeueing. It is small because a reconcile
            // that lands just before a step is due (a resync, a watch event) must not push that
            // step back by the whole floor.
            let wait = at
                .duration_since(now)
                .as_secs_f64()
                .max(REQUEUE_FLOOR.as_secs_f64());
            Action::requeue(Duration::from_secs_f64(wait))
        }
    }
}

/// One Canary's failure never holds up the others: log it and retry with a growing backoff.
pub fn error_policy(canary: Arc<Canary>, error: &Error, ctx: Arc<Context>) -> Action {
    let key = ObjectRef::from_obj(canary.as_ref());
    let wait = ctx.failure_backoff(&key);
    tracing::warn!(
        canary = %format!("{}.{}", canary.name_any(), canary.namespace().unwrap_or_default()),
        error = %error,
        kind = error.kind(),
        retry_in = ?wait,
        "reconcile failed"
    );
    Action::requeue(wait)
}

/// Whether a reconcile was an analysis step in Flagger's sense, the only reconciles whose time
/// Flagger observes in `flagger_canary_duration_seconds`: one that began analysing
/// (`Progressing`/`WaitingPromotion`), wrote its step, and did not roll back.
pub fn was_analysis_step(phase_before: Option<Phase>, decision: &Decision) -> bool {
    let analysing = matches!(
        phase_before,
        Some(Phase::Progressing | Phase::WaitingPromotion)
    );
    let written = decision.commands.iter().find_map(|c| match c {
        Command::WriteStatus(status) => Some(status.phase),
        _ => None,
    });
    analysing && matches!(written, Some(Some(phase)) if phase != Phase::Failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requeue_waits_until_wake_at_with_a_small_floor() {
        let now: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let later: Timestamp = "2026-01-01T00:00:30Z".parse().unwrap();
        let earlier: Timestamp = "2025-12-31T23:59:00Z".parse().unwrap();
        assert_eq!(
            requeue(Some(later), now),
            Action::requeue(Duration::from_secs(30))
        );
        assert_eq!(requeue(Some(earlier), now), Action::requeue(REQUEUE_FLOOR));
        let just_before: Timestamp = "2026-01-01T00:00:00.002Z".parse().unwrap();
        assert_eq!(
            requeue(Some(just_before), now),
            Action::requeue(REQUEUE_FLOOR)
        );
        assert_eq!(requeue(None, now), Action::await_change());
    }
}
