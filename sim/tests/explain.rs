//! `--explain` names the rule that decided each step, in the words of the Canary spec.

use std::path::Path;

use flagger_core::Phase;
use flagger_sim::{Options, Run, Trace, replay};

fn run(fixture: &str) -> Run {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/traces")
        .join(fixture);
    replay(&Trace::load(&path).unwrap(), &Options::default())
}

/// The rule of the step that first entered `phase`.
fn rule_into(run: &Run, phase: Phase) -> Option<String> {
    run.steps
        .iter()
        .find(|s| s.after.phase == Some(phase) && s.before.phase != Some(phase))
        .and_then(|s| s.rule.clone())
}

#[test]
fn the_step_that_promotes_names_the_weight_bound() {
    let r = run("promote.json");
    assert_eq!(
        rule_into(&r, Phase::Promoting).as_deref(),
        Some("weight 50 reached maxWeight 50: promote")
    );
}

#[test]
fn the_step_that_rolls_back_names_the_threshold() {
    let r = run("rollback-errors.json");
    assert_eq!(
        rule_into(&r, Phase::Failed).as_deref(),
        Some("failed checks 5 reached threshold 5: roll back")
    );
    // Every step that counted a failure shows it against the threshold.
    let counted: Vec<String> = r
        .steps
        .iter()
        .filter(|s| s.after.failed_checks > s.before.failed_checks)
        .map(|s| format!("{}/{}", s.after.failed_checks, s.threshold))
        .collect();
    assert_eq!(counted, ["1/5", "2/5", "3/5", "4/5", "5/5"]);
}

#[test]
fn a_closed_gate_is_why_a_status_only_step_waits() {
    let r = run("confirm-promotion-gate.json");
    let waiting: Vec<&str> = r
        .steps
        .iter()
        .filter(|s| s.after.phase == Some(Phase::WaitingPromotion))
        .filter_map(|s| s.rule.as_deref())
        .collect();
    assert!(!waiting.is_empty());
    assert!(
        waiting
            .iter()
            .all(|w| *w == "gate confirm-promotion/approve-promotion closed: wait"),
        "{waiting:?}"
    );
    let text = flagger_sim::timeline::text(&r, false);
    assert!(
        text.contains("[write status] gate confirm-promotion/approve-promotion closed: wait"),
        "{text}"
    );
}

#[test]
fn a_revision_mid_analysis_restarts() {
    let r = run("restart-mid-analysis.json");
    assert!(
        r.steps
            .iter()
            .any(|s| s.rule.as_deref() == Some("revision changed mid-analysis: restart"))
    );
}

#[test]
fn iterations_promote_ab_tests() {
    let r = run("ab-testing.json");
    let rule = rule_into(&r, Phase::Promoting).unwrap();
    assert!(
        rule.starts_with("iteration ") && rule.ends_with(": promote"),
        "{rule}"
    );
}
