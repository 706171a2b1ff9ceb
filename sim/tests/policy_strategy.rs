//! The policy tests as a proptest strategy, as a Rust user's own property suite would use them
//! (feature `proptest`): proptest draws scenarios of the user's Canary, finds the unsafe policy's
//! failure and shrinks it to a seed that reproduces it.

use std::path::Path;

use flagger_sim::policy_test::expect::{Verdict, parse_suite};
use flagger_sim::policy_test::{Plan, Subject};
use flagger_sim::trace::load_canary;
use proptest::test_runner::{Config, TestCaseError, TestError, TestRunner};

fn unsafe_plan() -> Plan {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/policies/unsafe");
    let canary = load_canary(&dir.join("lax-success-rate.yaml")).unwrap();
    let subject = Subject::new("lax-success-rate.yaml", canary).unwrap();
    let text = std::fs::read_to_string(dir.join("lax-success-rate.suite.yaml")).unwrap();
    let suite = parse_suite("suite", &text)
        .unwrap()
        .validate("suite", &subject)
        .unwrap();
    Plan::new(subject, suite)
}

#[test]
fn proptest_finds_the_unsafe_policy_and_its_seed_reproduces_it() {
    let plan = unsafe_plan();
    let mut runner = TestRunner::new(Config {
        cases: 300,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&plan.strategy(), |scenario| {
        let run = plan.replay(&scenario);
        for v in plan.judge(&scenario, &run) {
            if let Verdict::Broken(b) = v {
                return Err(TestCaseError::fail(format!(
                    "{}: {}",
                    scenario.seed, b.detail
                )));
            }
        }
        Ok(())
    });
    let Err(TestError::Fail(why, scenario)) = result else {
        panic!("the unsafe policy passed 300 drawn scenarios: {result:?}");
    };
    // The minimal failing scenario's seed gives the same scenario back.
    assert_eq!(plan.scenario_from_seed(scenario.seed), scenario, "{why}");
}
