//! Policy-test throughput: scenarios generated, replayed and judged per second for a typical
//! Canary (fixtures/policies/podinfo.yaml with its suite: 2,000 generated cases and the restart
//! sweep's points, about 240, each one replay). Target: at least 10,000 a minute
//! (167/s) on a 2-core machine, so a suite runs in seconds in CI.
//! Run with `cargo bench -p flagger-sim --bench policy_test`.

use std::path::PathBuf;
use std::time::Instant;

// The allocator the `flagger` binary ships with (shell/src/main.rs).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use flagger_sim::policy_test::expect::parse_suite;
use flagger_sim::policy_test::{Plan, Subject};
use flagger_sim::trace::load_canary;

fn main() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/policies");
    let canary = load_canary(&dir.join("podinfo.yaml")).expect("fixture Canary");
    let subject = Subject::new("podinfo.yaml", canary).expect("valid Canary");
    let text = std::fs::read_to_string(dir.join("podinfo.suite.yaml")).expect("fixture suite");
    let suite = parse_suite("podinfo.suite.yaml", &text)
        .and_then(|s| s.validate("podinfo.suite.yaml", &subject))
        .expect("valid suite");
    let plan = Plan::new(subject, suite);
    let cases = 2_000;
    let mut rates: Vec<f64> = (0..5)
        .map(|round| {
            let t = Instant::now();
            let outcome = plan.run(round, cases);
            assert!(outcome.passed(), "the podinfo suite must hold");
            // Generated cases and the restart sweep's points are each one scenario replayed.
            (outcome.cases + outcome.restart_points) as f64 / t.elapsed().as_secs_f64()
        })
        .collect();
    rates.sort_by(f64::total_cmp);
    let median = rates[rates.len() / 2];
    println!(
        "policy test podinfo ({} families): median {median:.0} scenarios/s = {:.0}/min (min {:.0}/s, max {:.0}/s; target >= 10,000/min)",
        plan.families().len(),
        median * 60.0,
        rates[0],
        rates[rates.len() - 1]
    );
}
