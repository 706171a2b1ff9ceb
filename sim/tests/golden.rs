//! Golden timelines: every fixture's replay, explained, as a person reads it. A change in the
//! core's behaviour or wording shows up here as a diff (and fails under CI).

use std::path::Path;

use flagger_sim::{Options, Trace, replay, timeline};

fn run(path: &Path) -> flagger_sim::Run {
    let trace = Trace::load(path).unwrap_or_else(|e| panic!("{e}"));
    replay(&trace, &Options::default())
}

#[test]
fn fixture_timelines() {
    insta::glob!("../../fixtures/traces", "*.json", |path| {
        let run = run(path);
        assert!(run.violations.is_empty(), "{:?}", run.violations);
        assert!(run.error.is_none(), "{:?}", run.error);
        insta::assert_snapshot!(timeline::text(&run, true));
    });
}

#[test]
fn promote_as_json() {
    let run = run(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/traces/promote.json"));
    insta::assert_snapshot!(timeline::json(&run));
}

/// The outcomes the fixtures exist to show, independent of the snapshot text.
#[test]
fn fixtures_end_where_their_names_say() {
    use flagger_core::Phase::*;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/traces");
    for (name, phase, event) in [
        (
            "promote.json",
            Succeeded,
            "Promotion completed! Scaling down podinfo.test",
        ),
        (
            "rollback-errors.json",
            Failed,
            "Rolling back podinfo.test failed checks threshold reached 5",
        ),
        (
            "rollback-latency.json",
            Failed,
            "advancement request duration 1.25s > 500ms",
        ),
        (
            "restart-mid-analysis.json",
            Succeeded,
            "New revision detected! Restarting analysis for podinfo.test",
        ),
        (
            "ab-testing.json",
            Succeeded,
            "Advance podinfo.test canary iteration 5/5",
        ),
        (
            "blue-green.json",
            Succeeded,
            "Advance podinfo.test canary iteration 3/3",
        ),
        (
            "progress-deadline.json",
            Failed,
            "Rolling back podinfo.test progress deadline exceeded",
        ),
        (
            "confirm-promotion-gate.json",
            Succeeded,
            "waiting for promotion approval approve-promotion",
        ),
        (
            "mirroring.json",
            Succeeded,
            "Advance podinfo.test canary weight 25",
        ),
        (
            "seed-v1alpha1.json",
            Succeeded,
            "Promotion completed! Scaling down podinfo.test",
        ),
        (
            "flaky-operator.json",
            Succeeded,
            "Promotion completed! Scaling down podinfo.test",
        ),
        (
            "step-weights.json",
            Succeeded,
            "Advance podinfo.test primary weight 75",
        ),
    ] {
        let run = run(&dir.join(name));
        assert_eq!(run.final_phase(), Some(phase), "{name}");
        assert!(
            run.world.events.iter().any(|e| e.message.contains(event)),
            "{name}: no event containing {event:?}"
        );
    }
}

/// Real recordings from the real-cluster suite (fixtures/recordings/), raw as the operator wrote
/// them, replayed exactly as `flagger replay FILE.jsonl` does: every recorded decision must be
/// reproduced, and the explained timeline is golden.
#[test]
fn recorded_timelines() {
    insta::glob!("../../fixtures/recordings", "*.jsonl", |path| {
        let text = std::fs::read_to_string(path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let recording =
            flagger_sim::recording::parse(&name, &text).unwrap_or_else(|e| panic!("{e}"));
        let run = flagger_sim::recorded::replay(&name, &recording);
        assert!(run.error.is_none(), "{name}: {:?}", run.error);
        insta::assert_snapshot!(timeline::text(&run, true));
    });
}
