//! Policy tests (`flagger_sim::policy_test`) over the fixtures in `fixtures/policies/`: the safe
//! policies keep their suites, the deliberately unsafe one is caught with a shrunk counterexample
//! whose trace file replays to the same failure, and every expectation can fail.

use std::path::PathBuf;

use flagger_core::{Command, Phase};
use flagger_sim::policy_test::expect::parse_suite;
use flagger_sim::policy_test::scenario::Behaviour;
use flagger_sim::policy_test::{Expectation, Family, Level, Plan, Subject, Suite, Verdict};
use flagger_sim::trace::load_canary;
use flagger_sim::{Options, Trace, replay};
use jiff::SignedDuration;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/policies")
        .join(name)
}

fn plan(canary: &str, suite: Option<&str>) -> Plan {
    let path = fixture(canary);
    let subject = Subject::new(canary, load_canary(&path).unwrap()).unwrap();
    let suite = match suite {
        Some(s) => {
            let text = std::fs::read_to_string(fixture(s)).unwrap();
            parse_suite(s, &text)
                .unwrap()
                .validate(s, &subject)
                .unwrap()
        }
        None => Suite::default_for(&subject),
    };
    Plan::new(subject, suite)
}

fn with_expectations(p: &Plan, extra: Vec<Expectation>) -> Plan {
    let mut suite = p.suite.clone();
    suite.expectations = std::iter::once(Expectation::Invariants)
        .chain(extra)
        .collect();
    Plan::new(p.subject.clone(), suite)
}

#[test]
fn podinfo_keeps_its_suite_and_every_expectation_is_exercised() {
    let p = plan("podinfo.yaml", Some("podinfo.suite.yaml"));
    let outcome = p.run(1, 200);
    for t in &outcome.tallies {
        assert_eq!(
            t.broken,
            0,
            "{}: {:?}",
            t.expectation.name(),
            t.counterexample
        );
        // An expectation no case applies to would be a test that cannot fail.
        assert!(t.applicable > 0, "{} never applied", t.expectation.name());
    }
}

#[test]
fn every_family_of_podinfo_is_generated_and_replays() {
    let p = plan("podinfo.yaml", Some("podinfo.suite.yaml"));
    let families = p.families().to_vec();
    for f in [
        Family::Healthy,
        Family::MetricFails("request-success-rate".into()),
        Family::MetricWorseThan("request-duration".into(), Level::Above(500.0)),
        Family::MetricFlaps("request-duration".into()),
        Family::MetricCreeps("request-success-rate".into()),
        Family::MetricMissing("request-success-rate".into()),
        Family::BackendDown,
        Family::SlowReady,
        Family::NeverReady,
        Family::GateClosed("confirm-promotion/release-gate".into()),
        Family::GateLate("confirm-promotion/release-gate".into()),
        Family::GateFlaps("confirm-promotion/release-gate".into()),
        Family::NewRevisionMidAnalysis,
        Family::OperatorRestarts,
        Family::OperatorFaults,
    ] {
        assert!(families.contains(&f), "missing family {f}");
    }
    for (case, family) in families.iter().enumerate() {
        let s = p.scenario(3, case);
        assert_eq!(&s.family, family);
        let run = p.replay(&s);
        assert!(run.error.is_none(), "{}: {:?}", s.family, run.error);
        let end = run.final_phase();
        match &s.family {
            Family::Healthy
            | Family::SlowReady
            | Family::NewRevisionMidAnalysis
            | Family::OperatorRestarts
            | Family::OperatorFaults
            | Family::GateLate(_) => assert_eq!(end, Some(Phase::Succeeded), "{}", s.family),
            Family::NeverReady => assert_eq!(end, Some(Phase::Failed)),
            // Rolled back, unless the metrics went away only after the promotion.
            Family::BackendDown | Family::MetricMissing(_) => {
                let since = s.fails_since(&p.subject, run.start).unwrap();
                let promoted = run.steps.iter().find(|st| {
                    st.commands[..st.applied]
                        .iter()
                        .any(|c| matches!(c, Command::PromoteTemplate))
                });
                match promoted {
                    Some(st) => assert!(st.at <= since, "{}", s.describe()),
                    None => assert_eq!(end, Some(Phase::Failed), "{}", s.describe()),
                }
            }
            Family::GateClosed(_) => {
                assert!(
                    !run.steps.iter().any(|st| st
                        .commands
                        .iter()
                        .any(|c| matches!(c, Command::PromoteTemplate))),
                    "closed gate promoted"
                )
            }
            _ => {}
        }
    }
}

#[test]
fn a_revision_mid_analysis_is_the_one_promoted() {
    let p = plan("podinfo.yaml", None);
    let s = (0..200)
        .map(|i| p.scenario(5, i))
        .find(|s| s.family == Family::NewRevisionMidAnalysis)
        .unwrap();
    let run = p.replay(&s);
    let promoted = run
        .steps
        .iter()
        .rev()
        .find(|st| {
            st.commands[..st.applied]
                .iter()
                .any(|c| matches!(c, Command::PromoteTemplate))
        })
        .unwrap();
    assert!(
        promoted.at >= s.last_revision_at(run.start),
        "{}",
        s.describe()
    );
}

#[test]
fn unsafe_policy_is_caught_with_a_shrunk_counterexample_that_replays_from_its_file() {
    let p = plan(
        "unsafe/lax-success-rate.yaml",
        Some("unsafe/lax-success-rate.suite.yaml"),
    );
    let outcome = p.run(1, 200);
    assert!(!outcome.passed());
    let tally = outcome
        .tallies
        .iter()
        .find(|t| matches!(t.expectation, Expectation::NeverPromotesWhen { .. }))
        .unwrap();
    assert!(tally.broken > 0);
    let c = tally.counterexample.as_ref().unwrap();
    // Shrunk to one plainly failing metric, the value between the spec's lax bound (80) and the
    // team's level (95), from the moment the revision lands: nothing else happens.
    let [(name, Behaviour::Fails { value, after })] =
        c.scenario.metrics.iter().collect::<Vec<_>>()[..]
    else {
        panic!("not shrunk to one failing metric: {:?}", c.scenario);
    };
    assert_eq!(name, "request-success-rate");
    assert!((80.0..95.0).contains(value), "{value}");
    assert_eq!(*after, 0);
    assert!(c.scenario.gates.is_empty() && c.scenario.restarts.is_empty());
    assert_eq!(c.scenario.revision_at, 1);
    assert_eq!(c.scenario.readiness_delay, 0);
    assert!(
        c.broken.detail.contains("promoted at"),
        "{}",
        c.broken.detail
    );
    assert!(
        c.timeline.contains("Promotion completed!"),
        "{}",
        c.timeline
    );

    // The file written for it is a trace that replays to the same promotion.
    let dir = std::env::temp_dir().join(format!("flagger-policy-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("counterexample.json");
    std::fs::write(&path, c.trace_json()).unwrap();
    let trace = Trace::load(&path).unwrap();
    let run = replay(&trace, &Options::default());
    let judged =
        flagger_sim::policy_test::expect::judge(&tally.expectation, &p.subject, &c.scenario, &run);
    assert_eq!(judged, Verdict::Broken(c.broken.clone()));
    assert_eq!(run.final_phase(), Some(Phase::Succeeded));
    let body = |t: &str| t.lines().skip(1).collect::<Vec<_>>().join("\n");
    assert_eq!(
        body(&flagger_sim::timeline::text(&run, false)),
        body(&c.timeline)
    );

    // And its seed and case index reproduce the case as generated.
    let again = p.run_cases(c.seed, [c.case]);
    let t = again
        .tallies
        .iter()
        .find(|t| t.expectation == tally.expectation)
        .unwrap();
    assert_eq!(t.broken, 1);
    assert_eq!(t.counterexample.as_ref().unwrap().original, c.original);
    assert_eq!(t.counterexample.as_ref().unwrap().scenario, c.scenario);
}

#[test]
fn the_same_seed_gives_the_same_cases_and_another_seed_others() {
    let p = plan("podinfo.yaml", Some("podinfo.suite.yaml"));
    let a: Vec<_> = (0..40).map(|i| p.scenario(9, i)).collect();
    let b: Vec<_> = (0..40).map(|i| p.scenario(9, i)).collect();
    let c: Vec<_> = (0..40).map(|i| p.scenario(10, i)).collect();
    assert_eq!(a, b);
    assert_ne!(a, c);
}

/// Each expectation breaks when set tighter than the policy can keep: none is vacuous.
#[test]
fn tightened_expectations_break() {
    let p = plan("podinfo.yaml", None);
    let p = with_expectations(
        &p,
        vec![
            Expectation::PromotesHealthyWithin(SignedDuration::from_mins(2)),
            Expectation::RollsBackWithin(SignedDuration::from_mins(1)),
            Expectation::MaxFailingExposure(0.0),
            Expectation::MaxGateCalls {
                gate: "release-gate".into(),
                times: 3,
            },
        ],
    );
    let outcome = p.run(1, 60);
    assert_eq!(outcome.tallies[0].broken, 0, "invariants");
    for t in &outcome.tallies[1..] {
        assert!(t.broken > 0, "{} never broke", t.expectation.name());
        let c = t.counterexample.as_ref().unwrap();
        assert!(!c.broken.detail.is_empty());
    }
    let gate = outcome.tallies[4].counterexample.as_ref().unwrap();
    assert!(
        gate.broken.detail.contains("called 4 times"),
        "{}",
        gate.broken.detail
    );
}

#[test]
fn suites_are_parsed_strictly_naming_the_field() {
    let p = plan("podinfo.yaml", None);
    // Every error is one line naming the file and the field.
    let err = |text: &str| {
        let e = match parse_suite("s.yaml", text) {
            Err(e) => e.to_string(),
            Ok(f) => f.validate("s.yaml", &p.subject).unwrap_err().to_string(),
        };
        assert_eq!(e.lines().count(), 1, "{e}");
        e
    };
    let e = err("expect:\n  - neverPromoteWhen: {metric: request-success-rate, below: 95}\n");
    assert!(e.starts_with("s.yaml: expect[0]"), "{e}");
    assert!(e.contains("neverPromoteWhen"), "{e}");
    let e = err("expect:\n  - neverPromotesWhen: {metric: request-success-rate, bellow: 95}\n");
    assert!(
        e.contains("expect[0].neverPromotesWhen") && e.contains("bellow"),
        "{e}"
    );
    let e = err("expect:\n  - neverPromotesWhen: {metric: error-rate, below: 1}\n");
    assert!(e.contains("expect[0].neverPromotesWhen.metric"), "{e}");
    assert!(e.contains("request-success-rate, request-duration"), "{e}");
    let e = err("expect:\n  - neverPromotesWhen: {metric: request-duration, below: 1, above: 2}\n");
    assert!(e.contains("exactly one of below, above"), "{e}");
    let e = err("expect:\n  - promotesHealthyWithin: 30 minutes\n");
    assert!(e.contains("expect[0].promotesHealthyWithin"), "{e}");
    let e = err("expect:\n  - maxGateCalls: {gate: nope, times: 2}\n");
    assert!(
        e.contains("expect[0].maxGateCalls.gate") && e.contains("release-gate"),
        "{e}"
    );
    let e = err("expct: []\n");
    assert!(e.contains("expct"), "{e}");
}

#[test]
fn default_suite_guards_each_metric_at_its_own_bound() {
    let p = plan("podinfo.yaml", None);
    let names: Vec<String> = p.suite.expectations.iter().map(Expectation::name).collect();
    assert!(names.contains(&"neverPromotesWhen request-success-rate below 99".to_string()));
    assert!(names.contains(&"neverPromotesWhen request-duration above 500".to_string()));
    assert!(p.run(2, 100).passed());
}
