//! Exact replay of a recording: every recorded reconcile is decided again on exactly the inputs
//! the live decision had (its snapshot: time, status, readiness, routes, spec) with its requests
//! answered only from the answers the live decision was given, and must come out as the recorded
//! decision. Nothing is re-timed or re-matched, so what the timeline shows is what happened.
//!
//! The first reconcile that decides differently (the core changed since the recording, or the
//! recording is incomplete) ends the replay with [`Run::error`] naming it: a replay never goes on
//! to print a timeline that the live run did not have.

use flagger_core::snapshot::{Answers, Snapshot, Workload};
use flagger_core::{Command, Decision, Outcome, Policy, Request, decide_with};

use crate::engine::{
    Digest, HookInput, Inputs, MetricInput, Reason, Run, Step, describe_readiness, thresholds,
};
use crate::recording::Reconcile;
use crate::trace::Readiness;
use crate::world::World;

/// Passes of one decision before the core is said to keep asking (as the operator's bound).
const MAX_PASSES: usize = 64;

/// Replays `recording` (named `name` in the header) exactly; see the module comment.
pub fn replay(name: &str, recording: &[Reconcile]) -> Run {
    let first = recording.first().map(|r| &r.snapshot);
    let start = first.map_or(jiff::Timestamp::UNIX_EPOCH, |s| s.now);
    let end = recording.last().map_or(start, |r| r.snapshot.now);
    let mut run = Run {
        trace: name.to_string(),
        canary: first.map_or_else(String::new, |s| {
            format!("{}.{}", s.canary.name, s.canary.namespace)
        }),
        start,
        end,
        steps: Vec::with_capacity(recording.len()),
        violations: Vec::new(),
        error: None,
        world: World::new(Readiness::default()),
        recording: Vec::new(),
        missing: Vec::new(),
    };
    for (index, r) in recording.iter().enumerate() {
        let previous = index.checked_sub(1).map(|i| &recording[i]);
        // Validated per reconcile: the Canary may have been edited during the recording.
        let policy = Policy::from_spec(
            &r.snapshot.canary.name,
            &r.snapshot.canary.namespace,
            &r.snapshot.spec,
            &r.snapshot.config,
        );
        match redecide(index, r, &policy) {
            Ok(step) => {
                let mut step = carry_out(&mut run.world, step, r, previous);
                step.explain(policy.as_ref());
                run.steps.push(step);
            }
            Err(why) => {
                run.error = Some(format!(
                    "recorded reconcile {} (at {}) cannot be reproduced: {why}",
                    index + 1,
                    r.snapshot.now
                ));
                break;
            }
        }
    }
    run
}

/// Decides the recorded snapshot again, answering from the recorded answers only; the step's
/// inputs and commands, or why the decision differs from the recorded one.
fn redecide(
    index: usize,
    r: &Reconcile,
    policy: &Result<Policy, flagger_core::SpecError>,
) -> Result<Step, String> {
    let recorded = &r.snapshot.answers;
    let mut snap = Snapshot {
        answers: Answers::default(),
        ..r.snapshot.clone()
    };
    let mut inputs = describe_readiness(policy.as_ref(), &snap);
    let mut passes = 0;
    let decision = loop {
        let requests = match decide_with(policy.as_ref(), &snap) {
            Outcome::Decided(d) => break d,
            Outcome::Need(requests) => requests,
        };
        passes += 1;
        if passes > MAX_PASSES || requests.is_empty() {
            return Err("the core keeps asking for inputs".into());
        }
        // Hooks are answered in order up to the one that settles the step: the operator called
        // (and recorded) none after it.
        let mut settled = false;
        for request in &requests {
            if settled && matches!(request, Request::Hook(_)) {
                continue;
            }
            settled |= answer(request, recorded, &mut snap.answers, &mut inputs, policy)?;
        }
    };
    if let Some(unused) = unused_answer(recorded, &snap.answers) {
        return Err(format!(
            "the live decision was given {unused}, which the core no longer asks for"
        ));
    }
    if decision != r.decision {
        return Err(difference(&decision, &r.decision));
    }
    let applied = r.executed.min(decision.commands.len());
    let wake_at = decision.wake_at;
    let before = Digest::of(&r.snapshot.status);
    Ok(Step {
        routes: r.snapshot.routes,
        wake_at,
        ..Step::new(
            index,
            r.snapshot.now,
            inputs,
            decision.commands,
            applied,
            before,
        )
    })
}

/// Answers one request from what the live decision was given, noting it for `--explain`;
/// `true` when it is a hook answer after which no later hook of the request list is called.
fn answer(
    request: &Request,
    recorded: &Answers,
    answers: &mut Answers,
    inputs: &mut Inputs,
    policy: &Result<Policy, flagger_core::SpecError>,
) -> Result<bool, String> {
    let key = request.key();
    match request {
        Request::Metric(_) => {
            let a = recorded.metrics.get(&key).ok_or_else(|| {
                format!("the core asks for metric {key}, which the live decision was not given")
            })?;
            let (min, max) = thresholds(policy.as_ref(), &key);
            inputs.metrics.push(MetricInput {
                name: key.clone(),
                answer: a.clone(),
                min,
                max,
            });
            answers.metrics.insert(key, a.clone());
            Ok(false)
        }
        Request::Hook(call) => {
            let a = recorded.hooks.get(&key).ok_or_else(|| {
                format!("the core asks for webhook {key}, which the live decision was not given")
            })?;
            inputs.hooks.push(HookInput {
                key: key.clone(),
                answer: a.clone(),
            });
            answers.hooks.insert(key, a.clone());
            Ok(call.ends_sequence(a))
        }
    }
}

/// A recorded answer the replayed decision never asked for: the live run asked for something
/// the core no longer needs, so the two decisions were not reached the same way.
fn unused_answer(recorded: &Answers, asked: &Answers) -> Option<String> {
    let metric = recorded
        .metrics
        .keys()
        .find(|k| !asked.metrics.contains_key(*k))
        .map(|k| format!("metric {k}"));
    metric.or_else(|| {
        recorded
            .hooks
            .keys()
            .find(|k| !asked.hooks.contains_key(*k))
            .map(|k| format!("webhook {k}"))
    })
}

/// The first difference between the replayed and the recorded decision, in words.
fn difference(now: &Decision, then: &Decision) -> String {
    let first = now
        .commands
        .iter()
        .zip(&then.commands)
        .position(|(a, b)| a != b)
        .unwrap_or(now.commands.len().min(then.commands.len()));
    let show = |d: &Decision| {
        d.commands
            .get(first)
            .map_or_else(|| "nothing more".to_string(), |c| format!("`{c}`"))
    };
    if first < now.commands.len().max(then.commands.len()) {
        let detail = match (now.commands.get(first), then.commands.get(first)) {
            (Some(a @ Command::WriteStatus(_)), Some(b @ Command::WriteStatus(_))) => format!(
                " (status now {}, then {})",
                serde_json::to_string(a).unwrap_or_default(),
                serde_json::to_string(b).unwrap_or_default()
            ),
            _ => String::new(),
        };
        return format!(
            "command {} is now {} where the live run decided {}{detail}",
            first + 1,
            show(now),
            show(then)
        );
    }
    let wake = |d: &Decision| {
        d.wake_at
            .map_or_else(|| "none".to_string(), |w| w.to_string())
    };
    format!(
        "the next wake-up is now {} where the live run asked for {}",
        wake(now),
        wake(then)
    )
}

/// Carries out the commands that ran live on the world (so the timeline shows their events,
/// routes and status) and says why the live operator reconciled.
fn carry_out(
    world: &mut World,
    mut step: Step,
    r: &Reconcile,
    previous: Option<&Reconcile>,
) -> Step {
    let s = &r.snapshot;
    world.status = s.status.clone();
    world.routes = s.routes;
    world.services = s.services_present;
    world.finalizer = s.canary.has_finalizer;
    world.deleting = s.canary.deleting;
    let events_before = world.events.len();
    for command in &step.commands[..step.applied] {
        // Post-rollout webhooks are answered while the command runs, and those answers are not
        // in the recording: the timeline shows that they ran, not what they said.
        if matches!(command, Command::RunPostRolloutHooks { .. }) {
            continue;
        }
        let mut unrecorded = |_: &str| flagger_core::snapshot::HookAnswer::Passed;
        // Based on the world's own version, so the recorded write always lands.
        let version = world.status_version;
        let _ = world.apply(command, s.now, version, &mut unrecorded);
    }
    step.after = Digest::of(&world.status);
    step.routes = world.routes;
    step.events = world.events[events_before..].to_vec();
    step.reasons = reasons(r, previous);
    step
}

/// Why the live operator reconciled, as far as the recording shows.
fn reasons(r: &Reconcile, previous: Option<&Reconcile>) -> Vec<Reason> {
    let Some(p) = previous else {
        return vec![Reason::Start];
    };
    let (now, before) = (&r.snapshot, &p.snapshot);
    let mut out = Vec::new();
    if p.executed < p.decision.commands.len() {
        out.push(Reason::Retry);
    }
    if p.decision.wake_at.is_some_and(|w| w <= now.now) {
        out.push(Reason::Wake);
    }
    let identity = |w: &Option<Workload>| {
        w.as_ref()
            .map(|w| (w.template_hash.clone(), w.configs.clone()))
    };
    if identity(&now.target) != identity(&before.target) {
        out.push(Reason::Revision);
    }
    let ready = |w: &Option<Workload>| {
        w.as_ref()
            .map(|w| (w.available_replicas, w.updated_replicas, w.replicas))
    };
    if ready(&now.target) != ready(&before.target) || ready(&now.primary) != ready(&before.primary)
    {
        out.push(Reason::Ready);
    }
    if now.canary.deleting && !before.canary.deleting {
        out.push(Reason::Delete);
    }
    if out.is_empty() {
        out.push(Reason::Watch);
    }
    out.sort();
    out
}
