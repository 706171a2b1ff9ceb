//! The Flagger operator's shell: everything that touches the network, the cluster or the clock.
//! Decisions come from `flagger-core`; this crate gathers inputs and carries out commands.
pub mod cli;
pub mod compact;
pub mod controller;
pub mod crd;
pub mod drift;
pub mod events;
pub mod executor;
pub mod identity;
pub mod kube_metrics;
pub mod leader;
pub mod metrics;
pub mod notifier;
pub mod observe;
pub mod operator_metrics;
pub mod policy_regression;
pub mod policy_test;
pub mod rate_limit;
pub mod recordings;
pub mod replay;
pub mod router;
pub mod server;
pub mod shard;
pub mod telemetry;
pub mod trace_recorder;
pub mod webhook;
pub mod write_pacing;
