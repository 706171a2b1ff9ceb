//! Liveness: healthy inputs reach Succeeded within the analysis steps the spec implies, and
//! metrics that keep failing reach Failed within threshold + 1 steps after the first analysis step.

use flagger_core::Phase;
use flagger_sim::generate::{self, Inputs};
use flagger_sim::trace::FaultRates;
use flagger_sim::{Options, Run, replay};
use jiff::SignedDuration;
use proptest::prelude::*;

mod common;
use common::config;

fn first_reaching(run: &Run, phase: Phase) -> Option<jiff::Timestamp> {
    run.steps
        .iter()
        .find(|s| s.after.phase == Some(phase))
        .map(|s| s.at)
}

fn first_analysis(run: &Run) -> Option<jiff::Timestamp> {
    run.steps
        .iter()
        .find(|s| {
            s.events
                .iter()
                .any(|e| e.message.starts_with("Starting canary analysis"))
        })
        .map(|s| s.at)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn healthy_runs_succeed_in_the_steps_the_spec_implies(seed in any::<u64>()) {
        let (trace, shape) = generate::trace(seed, Inputs::Healthy, FaultRates::default());
        let run = replay(&trace, &Options::default());
        prop_assert!(run.error.is_none() && run.violations.is_empty(), "seed {seed}: {:?} {:?}", run.error, run.violations);
        let interval = SignedDuration::from_secs(shape.interval_secs);
        let revision = trace.start + SignedDuration::from_secs(shape.revision_secs);
        let steps = shape.strategy.steps_to_succeed();
        let bound = revision + interval * i32::try_from(steps).unwrap();
        let done = first_reaching(&run, Phase::Succeeded);
        prop_assert!(done.is_some(), "seed {seed}: never Succeeded ({shape:?}), ends {:?}", run.final_phase());
        let done = done.unwrap();
        prop_assert!(done <= bound, "seed {seed}: Succeeded at {done}, bound {bound} ({steps} steps, {shape:?})");
        prop_assert!(run.final_phase() == Some(Phase::Succeeded));
    }

    #[test]
    fn failing_metrics_fail_within_threshold_plus_one_steps(seed in any::<u64>()) {
        let (trace, shape) = generate::trace(seed, Inputs::Failing, FaultRates::default());
        let run = replay(&trace, &Options::default());
        prop_assert!(run.error.is_none() && run.violations.is_empty(), "seed {seed}: {:?} {:?}", run.error, run.violations);
        let start = first_analysis(&run);
        prop_assert!(start.is_some(), "seed {seed}: the analysis never started");
        let interval = SignedDuration::from_secs(shape.interval_secs);
        let bound = start.unwrap() + interval * (shape.threshold + 1);
        let failed = first_reaching(&run, Phase::Failed);
        prop_assert!(failed.is_some_and(|f| f <= bound), "seed {seed}: Failed at {failed:?}, bound {bound} ({shape:?})");
        prop_assert!(run.steps.iter().all(|s| !s.commands.contains(&flagger_core::Command::PromoteTemplate)));
    }
}
