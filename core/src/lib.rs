//! Flagger's progressive-delivery algorithm as a pure function.
//!
//! [`decide`] takes a [`Snapshot`] — the Canary's spec and status, what is observed of its
//! workloads and routes, answers from webhooks and metric queries, and `now` — and returns an
//! [`Outcome`]: either the inputs it still needs, or a [`Decision`]: an ordered list of
//! [`Command`]s and when to be called again. No I/O, no clock, no randomness: the same snapshot
//! always yields the same outcome, which is what makes offline replay exact.
//!
//! Reading order for the algorithm: [`policy`] (what a spec means), `decide::lifecycle`
//! (initialization, new revisions, rollback), `decide::active` (one analysis step), [`events`]
//! (what users are told).

pub mod alerts;
pub mod api;
pub mod checks;
pub mod command;
mod decide;
pub mod events;
pub mod hash;
pub mod policy;
pub mod readiness;
mod serde_duration;
pub mod snapshot;

pub use api::{Canary, CanarySpec, CanaryStatus, Phase};
pub use command::{Command, Decision, Outcome, Request};
pub use decide::{decide, decide_with};
pub use policy::{Policy, SpecError};
pub use snapshot::{Answers, HookAnswer, MetricAnswer, OperatorConfig, Routes, Snapshot, Workload};
