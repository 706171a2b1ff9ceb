//! Generated traces — random specs, metric series, readiness delays, gate answers and faults —
//! replayed with every invariant checked after every step. A failing case prints its seed; the
//! trace is reproduced with `flagger_sim::generate::trace(seed, ...)`.

use flagger_sim::generate::{self, Inputs};
use flagger_sim::trace::FaultRates;
use flagger_sim::{Options, replay};
use proptest::prelude::*;

fn config() -> ProptestConfig {
    // CI-friendly by default; PROPTEST_CASES raises it for a long soak.
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(128);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Fault rates; `staleSnapshot` stays 0: the core's contract is to decide on the latest status,
/// and keeping a lagging cache from reaching it is the shell's job (a decision on a stale status
/// acts before its conflicting status write is refused). The fault remains available to traces.
fn rates() -> impl Strategy<Value = FaultRates> {
    let p = || prop_oneof![3 => Just(0.0), 1 => 0.0..0.3f64];
    (p(), p(), p(), p(), p(), p(), p(), p()).prop_map(
        |(
            metric_error,
            metric_nan,
            metric_missing,
            conflict,
            restart,
            duplicate_reconcile,
            early_reconcile,
            apply_twice,
        )| FaultRates {
            metric_error,
            metric_nan,
            metric_missing,
            conflict,
            restart,
            duplicate_reconcile,
            early_reconcile,
            stale_snapshot: 0.0,
            apply_twice,
        },
    )
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn invariants_hold_on_chaotic_inputs(seed in any::<u64>(), rates in rates()) {
        let (trace, _) = generate::trace(seed, Inputs::Chaotic, rates);
        let run = replay(&trace, &Options::default());
        prop_assert!(run.error.is_none(), "seed {seed}: {:?}", run.error);
        prop_assert!(run.violations.is_empty(), "seed {seed} rates {rates:?}: {:#?}", run.violations);
    }

    #[test]
    fn a_seed_reproduces_its_run_byte_for_byte(seed in any::<u64>(), rates in rates()) {
        let (trace, _) = generate::trace(seed, Inputs::Chaotic, rates);
        let (again, _) = generate::trace(seed, Inputs::Chaotic, rates);
        let a = flagger_sim::timeline::json(&replay(&trace, &Options::default()));
        let b = flagger_sim::timeline::json(&replay(&again, &Options::default()));
        prop_assert!(a == b, "seed {seed}: two replays differ");
    }
}
