//! Recordings (`-record-traces` JSON lines) replay: a run recorded in the simulator converts to a
//! trace that replays to the same events, and every recorded decision is still what the core decides.

use std::path::Path;

use flagger_sim::recording;
use flagger_sim::{Options, Trace, replay};

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

#[test]
fn recorded_decisions_verify_and_a_tampered_one_is_reported() {
    let (_, text) = recorded("promote.json");
    let mut rec = recording::parse("promote.jsonl", &text).unwrap();
    assert!(recording::verify(&rec).is_empty());
    let i = rec
        .iter()
        .position(|r| !r.decision.commands.is_empty())
        .unwrap();
    rec[i].decision.commands.pop();
    let found = recording::verify(&rec);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].0, i);
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
