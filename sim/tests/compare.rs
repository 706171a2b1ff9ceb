//! The compare view's summary: outcome, time to decide, failed checks and traffic exposure.

use std::path::Path;

use flagger_core::Phase;
use flagger_sim::compare::summary;
use flagger_sim::{Options, Run, Trace, replay};

fn run(fixture: &str) -> Run {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/traces")
        .join(fixture);
    replay(&Trace::load(&path).unwrap(), &Options::default())
}

#[test]
fn a_promotion_sums_weight_times_minutes() {
    let s = summary(&run("promote.json"));
    assert_eq!(s.outcome, Some(Phase::Succeeded));
    // 10, 20, 30, 40 and 50 % for a minute each while progressing, 50 % for the minute of
    // promoting; nothing after the traffic went back to the primary.
    assert_eq!(s.exposure_percent_minutes, 200.0);
    assert_eq!(s.failing_exposure_percent_minutes, 0.0);
    assert_eq!(s.failed_checks, 0);
    // From "New revision detected" (+2m) to "Promotion completed" (+10m).
    assert_eq!(s.decided_after_seconds, Some(480.0));
}

#[test]
fn a_rollback_counts_traffic_to_the_failing_canary() {
    let s = summary(&run("rollback-errors.json"));
    assert_eq!(s.outcome, Some(Phase::Failed));
    assert_eq!(s.failed_checks, 5);
    assert!(s.failing_exposure_percent_minutes > 0.0, "{s:?}");
    assert!(
        s.failing_exposure_percent_minutes <= s.exposure_percent_minutes,
        "{s:?}"
    );
}

#[test]
fn the_side_by_side_view_marks_what_differs() {
    let a = run("promote.json");
    let b = run("rollback-errors.json");
    let text = flagger_sim::compare::text(&a, "original", &b, "with other.yaml");
    let line = |what: &str| {
        text.lines()
            .find(|l| l.get(2..).is_some_and(|rest| rest.starts_with(what)))
            .unwrap_or_else(|| panic!("no {what} row in\n{text}"))
            .to_string()
    };
    assert!(line("outcome").starts_with('!'), "{text}");
    assert!(line("outcome").contains("Succeeded"), "{text}");
    assert!(line("outcome").contains("Failed"), "{text}");
    assert!(line("failed checks").starts_with('!'), "{text}");
    // The rows before the runs part agree.
    let first = text.lines().nth(2).unwrap();
    assert!(first.starts_with(' '), "{text}");
}
