//! Offline simulation of the Flagger operator: a trace (a Canary and what the world does over
//! time) is replayed in virtual time against `flagger-core`'s decision function, in an in-memory
//! cluster, with optional seeded faults and invariants checked after every step.
//!
//! Entry points: [`Trace::load`] / [`Trace::parse`], [`replay`], [`timeline::text`] and
//! [`timeline::json`]. The format is documented in `docs/trace-format.md`. Policy tests of a
//! team's own Canary (`flagger test`) are [`policy_test`], documented in `docs/policy-testing.md`.

pub mod chart;
pub mod compare;
pub mod engine;
pub mod explain;
pub mod faults;
pub mod generate;
pub mod inputs;
pub mod invariants;
pub mod policy_test;
pub mod prng;
pub mod recorded;
pub mod recording;
pub mod strict;
pub mod timeline;
pub mod trace;
pub mod world;

pub use engine::{Crash, Options, Run, Step, replay};
pub use trace::{InputError, Trace};
