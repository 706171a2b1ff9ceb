//! The telemetry generator: what a service mesh and an instrumented application would export
//! for simulated traffic, split the way the operator's routing objects say.

pub mod generator;
pub mod model;
pub mod split;
