//! The same trace replayed twice gives byte-identical output, in every format.

use std::path::Path;

use flagger_sim::{Options, Trace, replay, timeline};

#[test]
fn fixtures_replay_byte_identically() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/traces");
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let once = || {
            let trace = Trace::load(&path).unwrap();
            let run = replay(&trace, &Options::default());
            (timeline::text(&run, true), timeline::json(&run))
        };
        assert_eq!(once(), once(), "{}", path.display());
    }
}

#[test]
fn faults_are_reproduced_by_their_seed_and_vary_with_it() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/traces/promote.json");
    let trace = Trace::load(&path).unwrap();
    let rates = flagger_sim::trace::FaultRates {
        metric_error: 0.2,
        duplicate_reconcile: 0.2,
        early_reconcile: 0.2,
        ..Default::default()
    };
    let with = |seed| {
        timeline::json(&replay(
            &trace,
            &Options {
                seed: Some(seed),
                rates: Some(rates),
                ..Options::default()
            },
        ))
    };
    assert_eq!(with(7), with(7));
    assert_ne!(with(7), with(8), "the seed should drive the faults");
}
