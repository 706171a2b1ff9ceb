//! One reconcile's conversation with the core: decide, gather what it needs, decide again, then
//! carry out the decision in order.
//!
//! The I/O sits behind [`Effects`], so the loop itself (how many passes, what is asked together,
//! where execution stops) is tested without a cluster or webhooks.

use std::future::Future;

use flagger_core::api::Canary;
use flagger_core::command::{Command, Decision, Outcome, Request};
use flagger_core::snapshot::{Answers, HookAnswer, MetricAnswer, Snapshot};
use futures::future::join_all;

/// Passes allowed before a reconcile gives up. The core asks for all of a step's hooks of one
/// type, or all its metrics, in one pass, so a step needs a handful of passes however many hooks
/// it has; reaching this means the answers never satisfy the core.
pub const MAX_PASSES: usize = 64;

#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    Hook(HookAnswer),
    Metric(MetricAnswer),
}

/// The outside world as a reconcile sees it.
pub trait Effects: Sync {
    /// The answer to one request. Never fails: an unreachable webhook or metrics server is an
    /// answer the core judges.
    fn answer(&self, canary: &Canary, request: &Request) -> impl Future<Output = Answer> + Send;

    /// Carries out one command. An error stops the rest of the decision; the persisted status
    /// still describes the previous step, so the next reconcile repeats what is left.
    fn execute(
        &self,
        canary: &Canary,
        command: &Command,
    ) -> impl Future<Output = Result<(), String>> + Send;
}

#[derive(Debug, Clone, PartialEq)]
pub struct CommandFailure {
    /// Position in the decision's command list.
    pub index: usize,
    pub command: String,
    pub error: String,
}

/// What one reconcile did.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    /// Every answer given to the core (for trace recording).
    pub answers: Answers,
    pub passes: usize,
    pub decision: Decision,
    /// Commands carried out successfully, in order.
    pub executed: usize,
    pub failure: Option<CommandFailure>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("the decision still needed inputs after {MAX_PASSES} passes (last asked: {last})")]
pub struct TooManyPasses {
    pub last: String,
}

/// Asks the core until it decides, then executes the decision. `snapshot.answers` may already
/// hold answers (replay); new ones are added to it.
pub async fn decide_and_execute<E: Effects>(
    effects: &E,
    canary: &Canary,
    snapshot: Snapshot,
) -> Result<Run, TooManyPasses> {
    let (decision, answers, passes) = decide(effects, canary, snapshot).await?;
    let (executed, failure) = execute(effects, canary, &decision).await;
    Ok(Run {
        answers,
        passes,
        decision,
        executed,
        failure,
    })
}

/// Carries out the decision's commands in order, stopping at the first that fails: returns how
/// many succeeded and the failure, if any.
pub async fn execute<E: Effects>(
    effects: &E,
    canary: &Canary,
    decision: &Decision,
) -> (usize, Option<CommandFailure>) {
    // The router reads the session-affinity cookies from the status, which the decision writes
    // last: it is shown that status ahead of time, as Flagger's router sets the cookies itself.
    let routed = decision.commands.iter().rev().find_map(|c| match c {
        Command::WriteStatus(status) => {
            let mut ahead = canary.clone();
            ahead.status = Some(status.clone());
            Some(ahead)
        }
        _ => None,
    });
    for (index, command) in decision.commands.iter().enumerate() {
        let canary = match (command, &routed) {
            (Command::SetRoutes { .. }, Some(ahead)) => ahead,
            _ => canary,
        };
        if let Err(error) = effects.execute(canary, command).await {
            let failure = CommandFailure {
                index,
                command: command.to_string(),
                error,
            };
            return (index, Some(failure));
        }
    }
    (decision.commands.len(), None)
}

/// Answers one pass's requests: the metric queries concurrently, and at the same time the hooks
/// one after another in the order asked, stopping after the one that settles the step (Flagger
/// calls no hook after it, and a hook may rely on the ones before it having run).
async fn gather<'r, E: Effects>(
    effects: &E,
    canary: &Canary,
    requests: &'r [Request],
) -> Vec<(&'r Request, Answer)> {
    let hooks = async {
        let mut answered = Vec::new();
        for request in requests {
            let Request::Hook(call) = request else {
                continue;
            };
            let answer = effects.answer(canary, request).await;
            let settled = matches!(&answer, Answer::Hook(a) if call.ends_sequence(a));
            answered.push((request, answer));
            if settled {
                break;
            }
        }
        answered
    };
    let metrics = join_all(
        requests
            .iter()
            .filter(|r| matches!(r, Request::Metric(_)))
            .map(|r| async move { (r, effects.answer(canary, r).await) }),
    );
    let (mut answered, metrics) = futures::join!(hooks, metrics);
    answered.extend(metrics);
    answered
}

/// The decision loop alone: returns the decision, all answers gathered and the number of passes.
pub async fn decide<E: Effects>(
    effects: &E,
    canary: &Canary,
    mut snapshot: Snapshot,
) -> Result<(Decision, Answers, usize), TooManyPasses> {
    let mut last = String::new();
    // The spec and settings are the same in every pass: validate them once.
    let policy = flagger_core::Policy::from_spec(
        &snapshot.canary.name,
        &snapshot.canary.namespace,
        &snapshot.spec,
        &snapshot.config,
    );
    for pass in 1..=MAX_PASSES {
        match flagger_core::decide_with(policy.as_ref(), &snapshot) {
            Outcome::Decided(decision) => return Ok((decision, snapshot.answers, pass)),
            Outcome::Need(requests) => {
                last = requests
                    .iter()
                    .map(Request::key)
                    .collect::<Vec<_>>()
                    .join(", ");
                for (request, answer) in gather(effects, canary, &requests).await {
                    let key = request.key();
                    match answer {
                        Answer::Hook(a) => {
                            snapshot.answers.hooks.insert(key, a);
                        }
                        Answer::Metric(a) => {
                            snapshot.answers.metrics.insert(key, a);
                        }
                    }
                }
            }
        }
    }
    Err(TooManyPasses { last })
}
