//! The decision function: one reconcile of one Canary.
//!
//! [`decide`] is pure: the same [`Snapshot`] always gives the same [`Outcome`]. What is due is read
//! from `status.lastTransitionTime` and `now`: an analysis step runs at most once per interval, so a
//! reconcile that comes early (a watch event, a restart) changes nothing that is not already due.
//! Only changes that must not wait — a new revision, a workload becoming ready during
//! initialization, deletion — are acted on at once.
//!
//! When the decision needs an input it does not have (a webhook's answer, a metric's value), it
//! returns [`Outcome::Need`]; the caller gathers those answers into the snapshot and calls again.

mod active;
mod lifecycle;
mod tick;

use crate::command::Outcome;
use crate::policy::{Policy, SpecError};
use crate::snapshot::Snapshot;

pub use tick::Need;

pub fn decide(snap: &Snapshot) -> Outcome {
    let policy = Policy::from_spec(
        &snap.canary.name,
        &snap.canary.namespace,
        &snap.spec,
        &snap.config,
    );
    decide_with(policy.as_ref(), snap)
}

/// [`decide`] with the spec already validated, for callers that decide many times on one spec
/// (the Need loop, replays). `policy` must be `Policy::from_spec` of this snapshot's canary, spec
/// and config; anything else gives decisions for another Canary.
pub fn decide_with(policy: Result<&Policy, &SpecError>, snap: &Snapshot) -> Outcome {
    match tick::run(policy, snap) {
        Ok(decision) => Outcome::Decided(decision),
        Err(Need(requests)) => Outcome::Need(requests),
    }
}
