//! The restart sweep and the scenario families added for hooks, NaN metrics and deletion, over
//! the fixtures in `fixtures/policies/`: every command boundary of the sweep's base cases is
//! replayed, a restart at one named boundary is carried out exactly there (also from the trace
//! file written for it), and each family replays through the real core as the policy says.

use std::path::PathBuf;

use flagger_core::{Command, Phase};
use flagger_sim::policy_test::expect::{judge, parse_suite};
use flagger_sim::policy_test::{
    Expectation, Family, Plan, RestartPoint, Scenario, Subject, Suite, Verdict,
};
use flagger_sim::trace::load_canary;
use flagger_sim::{Crash, Options, Run, Trace, replay};
use jiff::SignedDuration;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/policies")
        .join(name)
}

fn plan(canary: &str, suite: Option<&str>) -> Plan {
    let subject = Subject::new(canary, load_canary(&fixture(canary)).unwrap()).unwrap();
    let suite = match suite {
        Some(s) => parse_suite(s, &std::fs::read_to_string(fixture(s)).unwrap())
            .unwrap()
            .validate(s, &subject)
            .unwrap(),
        None => Suite::default_for(&subject),
    };
    Plan::new(subject, suite)
}

fn promoted_at(run: &Run) -> Option<jiff::Timestamp> {
    run.steps
        .iter()
        .find(|st| {
            st.commands[..st.applied]
                .iter()
                .any(|c| matches!(c, Command::PromoteTemplate))
        })
        .map(|st| st.at)
}

/// Rolled back, unless the promotion came before the checks started failing.
fn rolled_back_or_promoted_first(p: &Plan, s: &Scenario, run: &Run) {
    let since = s
        .fails_since(&p.subject, run.start)
        .expect("a failing case");
    match promoted_at(run) {
        Some(at) => assert!(at <= since, "{}: {}", s.family, s.describe()),
        None => assert_eq!(run.final_phase(), Some(Phase::Failed), "{}", s.describe()),
    }
}

#[test]
fn the_restart_sweep_covers_every_command_boundary_of_its_base_cases() {
    let p = plan("podinfo.yaml", Some("podinfo.suite.yaml"));
    let bases = p.sweep_bases();
    let fails = p
        .families()
        .iter()
        .position(|f| matches!(f, Family::MetricFails(_)))
        .unwrap();
    // A promotion and a rollback; podinfo does not revert on deletion.
    assert_eq!(bases, vec![0, fails]);
    let sweep = p.sweep(1);
    assert_eq!(
        sweep.points.len(),
        sweep.boundaries,
        "capped below its size"
    );
    for &case in &bases {
        let base = p.scenario(1, case);
        let run = replay(
            &p.trace(&base),
            &Options {
                record: true,
                ..Options::default()
            },
        );
        let mut expected = 0;
        for (reconcile, r) in run.recording.iter().enumerate() {
            let n = r.decision.commands.len();
            if n == 0 {
                continue;
            }
            for keep in 0..=n {
                expected += 1;
                let point = RestartPoint {
                    case,
                    crash: Crash { reconcile, keep },
                };
                assert!(sweep.points.contains(&point), "{point:?} not swept");
            }
        }
        assert!(expected > 50, "case {case}: only {expected} boundaries");
    }
    let outcome = p.run(1, 30);
    assert!(outcome.passed(), "{:?}", outcome.tallies);
    assert_eq!(outcome.cases, 30);
    assert_eq!(outcome.restart_points, sweep.points.len());
    // The invariants judged every generated case and every restart point.
    assert_eq!(outcome.tallies[0].applicable, 30 + sweep.points.len());
}

#[test]
fn a_restart_right_before_and_right_after_the_promotion_is_carried_out_there() {
    let p = plan("podinfo.yaml", Some("podinfo.suite.yaml"));
    let base = p.scenario(1, 0);
    assert_eq!(base.family, Family::Healthy);
    let recorded = replay(
        &p.trace(&base),
        &Options {
            record: true,
            ..Options::default()
        },
    );
    let (reconcile, at) = recorded
        .recording
        .iter()
        .enumerate()
        .find_map(|(i, r)| {
            r.decision
                .commands
                .iter()
                .position(|c| matches!(c, Command::PromoteTemplate))
                .map(|j| (i, j))
        })
        .expect("the healthy case promotes");
    let n = recorded.recording[reconcile].decision.commands.len();
    for keep in [at, at + 1] {
        let crash = Crash { reconcile, keep };
        let s = p.restart_scenario(1, RestartPoint { case: 0, crash });
        assert_eq!(s.crash, Some(crash));
        assert!(s.describe().contains(&format!(
            "operator restarts after {keep} command(s) of reconcile {reconcile}"
        )));
        // The trace written for it names the boundary, and replaying that file crashes there.
        let json = serde_json::to_string(&s.trace(&p.subject)).unwrap();
        assert!(
            json.contains(&format!(
                "\"crashes\":[{{\"reconcile\":{reconcile},\"afterCommands\":{keep}}}]"
            )),
            "{json}"
        );
        let run = replay(
            &Trace::parse("restart.json", &json).unwrap(),
            &Options::default(),
        );
        let step = run
            .steps
            .iter()
            .find(|st| st.index == reconcile)
            .expect("the crashed reconcile is kept");
        assert_eq!(step.applied, keep);
        assert!(
            step.faults
                .contains(&format!("crash after {keep} of {n} commands")),
            "{:?}",
            step.faults
        );
        assert!(run.violations.is_empty(), "{:?}", run.violations);
        assert_eq!(run.final_phase(), Some(Phase::Succeeded));
        for e in &p.suite.expectations {
            assert!(
                !matches!(judge(e, &p.subject, &s, &run), Verdict::Broken(_)),
                "{}",
                e.name()
            );
        }
        // Reporting a restart point names it, with the flags that run it alone.
        let mut tight = p.suite.clone();
        tight.expectations = vec![Expectation::PromotesHealthyWithin(
            SignedDuration::from_secs(1),
        )];
        let outcome =
            Plan::new(p.subject.clone(), tight).run_restart(1, RestartPoint { case: 0, crash });
        let c = outcome.tallies[0].counterexample.as_ref().unwrap();
        assert_eq!(c.restart, Some(crash));
        assert_eq!(outcome.restart_points, 1);
        let text = flagger_sim::policy_test::report::text(std::slice::from_ref(&outcome));
        assert!(
            text.contains(&format!("--case 0 --restart {reconcile}:{keep}")),
            "{text}"
        );
    }
}

#[test]
fn hook_nan_and_deletion_families_exist_only_where_the_canary_has_the_thing() {
    let payments = plan(
        "payments/payments.yaml",
        Some("payments/payments.suite.yaml"),
    );
    let families = payments.families().to_vec();
    for f in [
        Family::HookFails("pre-rollout/smoke-test".into()),
        Family::HookTimesOut("pre-rollout/smoke-test".into()),
        Family::HookFlaps("pre-rollout/smoke-test".into()),
        Family::HookFails("rollout/load-test".into()),
        Family::HookTimesOut("rollout/load-test".into()),
        Family::HookFlaps("rollout/load-test".into()),
        Family::RollbackRequested("rollback/abort-switch".into()),
        Family::HookTimesOut("rollback/abort-switch".into()),
        Family::HookFlaps("rollback/abort-switch".into()),
        Family::MetricNaN("request-success-rate".into()),
        Family::MetricNaN("error-rate".into()),
        Family::CanaryDeleted,
    ] {
        assert!(families.contains(&f), "missing family {f}");
    }
    // A rollback hook is never "failing" (that is its quiet answer).
    assert!(!families.contains(&Family::HookFails("rollback/abort-switch".into())));
    // podinfo has no such hooks: no hook families.
    let podinfo = plan("podinfo.yaml", None);
    assert!(!podinfo.families().iter().any(|f| matches!(
        f,
        Family::HookFails(_)
            | Family::HookTimesOut(_)
            | Family::HookFlaps(_)
            | Family::RollbackRequested(_)
    )));
    // The payments sweep includes the deletion (it reverts on deletion).
    let deleted = families
        .iter()
        .position(|f| *f == Family::CanaryDeleted)
        .unwrap();
    assert!(payments.sweep_bases().contains(&deleted));
}

#[test]
fn hook_nan_and_deletion_cases_replay_through_the_core_as_the_policy_says() {
    let p = plan(
        "payments/payments.yaml",
        Some("payments/payments.suite.yaml"),
    );
    for seed in [1, 2, 3] {
        for case in 0..p.families().len() {
            let s = p.scenario(seed, case);
            let run = p.replay(&s);
            assert!(run.error.is_none(), "{}: {:?}", s.family, run.error);
            assert!(
                run.violations.is_empty(),
                "{}: {:?}",
                s.family,
                run.violations
            );
            let text = flagger_sim::timeline::text(&run, false);
            match &s.family {
                Family::Healthy => assert_eq!(run.final_phase(), Some(Phase::Succeeded)),
                Family::HookFails(h) | Family::HookTimesOut(h) if h.starts_with("pre-rollout") => {
                    assert!(promoted_at(&run).is_none(), "{}", s.describe());
                    assert_eq!(run.final_phase(), Some(Phase::Failed), "{text}");
                    assert!(
                        text.contains("pre-rollout check smoke-test failed"),
                        "{text}"
                    );
                    if matches!(s.family, Family::HookTimesOut(_)) {
                        assert!(
                            text.contains("POST http://smoke.pay/run timed out after 30s"),
                            "{text}"
                        );
                    }
                }
                Family::HookFails(_)
                | Family::HookTimesOut(_)
                | Family::RollbackRequested(_)
                | Family::MetricNaN(_)
                    if !(s.family == Family::HookTimesOut("rollback/abort-switch".into())) =>
                {
                    rolled_back_or_promoted_first(&p, &s, &run)
                }
                // A rollback hook that does not answer asks for nothing.
                Family::HookTimesOut(_) => {
                    assert_eq!(run.final_phase(), Some(Phase::Succeeded), "{text}");
                    assert!(s.is_healthy(&p.subject));
                }
                // The abort switch is flipped from the revision on: the first check rolls back.
                Family::HookFlaps(h) if h.starts_with("rollback") => {
                    assert_eq!(run.final_phase(), Some(Phase::Failed), "{text}");
                    assert!(
                        text.contains("Rollback check abort-switch passed"),
                        "{text}"
                    );
                }
                Family::CanaryDeleted => {
                    assert!(run.world.removed, "{text}");
                    assert!(text.contains("result: Canary deleted"), "{text}");
                    // revertOnDeletion: the target is given back, with all the traffic.
                    let t = run.world.target.as_ref().unwrap();
                    assert!(t.replicas > 0);
                    assert!(!run.world.apex_on_primary);
                }
                _ => {}
            }
        }
    }
    // The whole suite holds, and each expectation applied to some case.
    let outcome = p.run(1, 300);
    for t in &outcome.tallies {
        assert_eq!(
            t.broken,
            0,
            "{}: {:?}",
            t.expectation.name(),
            t.counterexample
        );
        assert!(t.applicable > 0, "{} never applied", t.expectation.name());
    }
}

#[test]
fn a_deletion_that_does_not_hand_the_target_back_breaks_the_invariants_under_revert() {
    // podinfo does not revert on deletion: the Canary is simply gone.
    let p = plan("podinfo.yaml", None);
    let case = p
        .families()
        .iter()
        .position(|f| *f == Family::CanaryDeleted)
        .unwrap();
    let s = p.scenario(1, case);
    let run = p.replay(&s);
    assert!(run.world.removed);
    assert_eq!(
        judge(&Expectation::Invariants, &p.subject, &s, &run),
        Verdict::Holds
    );
    // Judged as if the Canary asked for revertOnDeletion, the same run breaks them.
    let mut canary = p.subject.canary.clone();
    canary.spec.revert_on_deletion = Some(true);
    let reverting = Subject::new("podinfo-revert.yaml", canary).unwrap();
    match judge(&Expectation::Invariants, &reverting, &s, &run) {
        Verdict::Broken(b) => assert!(b.detail.contains("revertOnDeletion: true"), "{}", b.detail),
        v => panic!("{v:?}"),
    }
}
