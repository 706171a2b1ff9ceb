//! Crash safety: for every fixture and every command boundary of every decision, the operator
//! stops after that prefix of the decision's commands and restarts from what was persisted. Every
//! invariant must still hold and the run must end in the same phase as without the crash.

use std::path::Path;

use flagger_sim::{Crash, Options, Trace, replay};

fn fixtures() -> Vec<(String, Trace)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/traces");
    let mut out: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, Trace::load(&p).unwrap_or_else(|e| panic!("{e}")))
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(out.len() >= 10, "fixtures missing");
    out
}

#[test]
fn every_command_boundary_of_every_fixture() {
    let mut failures = Vec::new();
    let mut runs = 0;
    for (name, trace) in fixtures() {
        let base = replay(&trace, &Options::default());
        assert!(base.violations.is_empty() && base.error.is_none(), "{name}");
        for step in &base.steps {
            for keep in 0..step.commands.len() {
                runs += 1;
                let crash = Crash {
                    reconcile: step.index,
                    keep,
                };
                let run = replay(
                    &trace,
                    &Options {
                        crash: Some(crash),
                        ..Options::default()
                    },
                );
                let what = format!(
                    "{name}: crash at reconcile {} (+{}) after {keep} of {} commands",
                    step.index,
                    step.at.duration_since(trace.start).as_secs(),
                    step.commands.len()
                );
                if let Some(e) = &run.error {
                    failures.push(format!("{what}: error {e}"));
                } else if let Some(v) = run.violations.first() {
                    failures.push(format!("{what}: {} {}", v.rule, v.detail));
                } else if run.final_phase() != base.final_phase() {
                    failures.push(format!(
                        "{what}: ends {:?}, without the crash {:?}",
                        run.final_phase(),
                        base.final_phase()
                    ));
                }
            }
        }
    }
    assert!(runs > 100, "only {runs} crash points");
    assert!(
        failures.is_empty(),
        "{} of {runs} crash points broke the run:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
