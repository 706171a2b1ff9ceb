//! `cargo run -p flagger-sim --example policy_test -- CANARY.yaml [SEED]`: the policy tests of
//! `flagger test` from Rust. Builds the default suite for the Canary, adds an expectation of its
//! own, runs 200 scenarios and prints the report (exit 1 when an expectation breaks).
use std::process::ExitCode;

use flagger_sim::policy_test::{Expectation, Plan, Subject, Suite, report};
use jiff::SignedDuration;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(path) = args.first() else {
        eprintln!("usage: policy_test CANARY.yaml [SEED]");
        return ExitCode::from(2);
    };
    let seed = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(1);
    let subject =
        match flagger_sim::trace::load_canary(path.as_ref()).and_then(|c| Subject::new(path, c)) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(2);
            }
        };
    let mut suite = Suite::default_for(&subject);
    suite.expectations.push(Expectation::PromotesHealthyWithin(
        SignedDuration::from_mins(30),
    ));
    let plan = Plan::new(subject, suite);
    let mut outcome = plan.run(seed, 200);
    outcome.file = path.clone();
    print!("{}", report::text(std::slice::from_ref(&outcome)));
    if outcome.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
