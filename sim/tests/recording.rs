//! Recordings (`-record-traces` JSON lines) replay: exactly, decision for decision, and as a trace
//! the simulator re-runs (the `--canary` path) to the same events.

use std::path::Path;

use flagger_core::snapshot::MetricAnswer;
use flagger_sim::{Options, Trace, replay};
use flagger_sim::{recorded, recording};

fn recorded(fixture: &str) -> (flagger_sim::Run, String) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/traces")
        .join(fixture);
    let trace = Trace::load(&path).unwrap();
    let run = replay(
        &trace,
        &Options {
            record: true,
            ..Options::default()
        },
    );
    let lines: Vec<String> = run
        .recording
        .iter()
        .map(|r| serde_json::to_string(r).unwrap())
        .collect();
    (run, lines.join("\n"))
}

fn messages(run: &flagger_sim::Run) -> Vec<String> {
    run.world.events.iter().map(|e| e.message.clone()).collect()
}

#[test]
fn a_recorded_run_replays_to_the_same_events() {
    for fixture in [
        "promote.json",
        "rollback-errors.json",
        "confirm-promotion-gate.json",
        "progress-deadline.json",
    ] {
        let (original, text) = recorded(fixture);
        let dir = std::env::temp_dir().join(format!("flagger-sim-rec-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join(fixture.replace(".json", ".jsonl"));
        std::fs::write(&file, &text).unwrap();
        let trace = Trace::load(&file).unwrap_or_else(|e| panic!("{e}"));
        let again = replay(&trace, &Options::default());
        assert!(
            again.violations.is_empty() && again.error.is_none(),
            "{fixture}: {:?} {:?}",
            again.violations,
            again.error
        );
        assert_eq!(again.final_phase(), original.final_phase(), "{fixture}");
        assert_eq!(messages(&again), messages(&original), "{fixture}");
    }
}

fn commands_and_events(steps: &[flagger_sim::Step]) -> Vec<String> {
    steps
        .iter()
        .map(|s| {
            let events: Vec<&str> = s.events.iter().map(|e| e.message.as_str()).collect();
            format!(
                "{} {:?} applied {} events {events:?} after {:?}",
                s.at, s.commands, s.applied, s.after
            )
        })
        .collect()
}

#[test]
fn a_recording_replays_exactly_to_the_recorded_steps() {
    for fixture in [
        "promote.json",
        "rollback-errors.json",
        "confirm-promotion-gate.json",
        "ab-testing.json",
        "flaky-operator.json",
    ] {
        let (original, text) = recorded(fixture);
        let rec = recording::parse("rec.jsonl", &text).unwrap();
        let again = recorded::replay("rec.jsonl", &rec);
        assert_eq!(again.error, None, "{fixture}");
        assert_eq!(again.final_phase(), original.final_phase(), "{fixture}");
        // Post-rollout webhook answers are not recorded, so their events are left out.
        let mut live = original.steps.clone();
        for s in &mut live {
            s.events.retain(|e| !e.message.contains("post-rollout"));
        }
        assert_eq!(
            commands_and_events(&again.steps),
            commands_and_events(&live),
            "{fixture}"
        );
    }
}

/// A recording of `fixture` and the index of its first reconcile that was given metric answers.
fn first_measured(fixture: &str) -> (Vec<recording::Reconcile>, usize) {
    let (_, text) = recorded(fixture);
    let rec = recording::parse("rec.jsonl", &text).unwrap();
    let i = rec
        .iter()
        .position(|r| !r.snapshot.answers.metrics.is_empty())
        .unwrap();
    (rec, i)
}

#[test]
fn a_changed_answer_stops_the_replay_at_that_decision() {
    let (mut rec, i) = first_measured("promote.json");
    for a in rec[i].snapshot.answers.metrics.values_mut() {
        *a = MetricAnswer::Value(0.0);
    }
    let run = recorded::replay("promote.jsonl", &rec);
    let error = run.error.unwrap();
    assert!(
        error.starts_with(&format!("recorded reconcile {} (at ", i + 1)),
        "{error}"
    );
    assert!(error.contains("cannot be reproduced: command"), "{error}");
    assert_eq!(
        run.steps.len(),
        i,
        "the timeline stops before the diverging decision"
    );
}

#[test]
fn a_missing_answer_is_named() {
    let (mut rec, i) = first_measured("promote.json");
    let key = rec[i]
        .snapshot
        .answers
        .metrics
        .keys()
        .next()
        .unwrap()
        .clone();
    rec[i].snapshot.answers.metrics.remove(&key);
    let error = recorded::replay("promote.jsonl", &rec).error.unwrap();
    assert!(
        error.contains(&format!(
            "the core asks for metric {key}, which the live decision was not given"
        )),
        "{error}"
    );
}

#[test]
fn a_malformed_recording_names_its_line() {
    let (_, text) = recorded("promote.json");
    let mut lines: Vec<&str> = text.lines().collect();
    lines[2] = "{\"snapshot\": 1}";
    let err = recording::parse("rec.jsonl", &lines.join("\n"))
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("rec.jsonl:3: "), "{err}");
}

#[test]
fn identical_recorded_waits_fold_into_one_line_like_a_replays() {
    let (original, text) = recorded("confirm-promotion-gate.json");
    let rec = recording::parse("rec.jsonl", &text).unwrap();
    let again = recorded::replay("rec.jsonl", &rec);
    // The recording keeps every reconcile; the timeline folds them as the simulator's does.
    assert_eq!(again.steps.len(), again.reconciles());
    let fold = "… 5 identical reconciles (+10m0s to +14m0s): still WaitingPromotion at weight 50, gate confirm-promotion/approve-promotion closed (gate closed)";
    let shown = flagger_sim::timeline::text(&again, false);
    assert!(shown.contains(fold), "{shown}");
    let simulated = flagger_sim::timeline::text(&original, false);
    assert!(simulated.contains(fold), "{simulated}");
}
