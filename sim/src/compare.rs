//! Two runs of the same inputs side by side (the recorded or original run and a re-run under
//! another Canary), with a summary a person can act on: the outcome, how long the analysis took
//! to decide, how many checks failed, and how much traffic the canary took.
//!
//! Traffic exposure is the canary's route weight (percent) times the minutes it held it, summed
//! from each reconcile to the next (the last one to the end of the run). Mirrored traffic is not
//! counted: users get the primary's answers. "To a failing canary" counts only the intervals that
//! begin at a reconcile whose checks failed (its failed-check count went up). For A/B testing the
//! weight is the share of the requests that match the rules, as the router reports it.

use std::fmt::Write as _;

use flagger_core::Phase;
use flagger_core::api::format_go_duration;
use jiff::{SignedDuration, Timestamp};
use serde::Serialize;

use crate::engine::{Run, Step};
use crate::explain::analysing;

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub outcome: Option<Phase>,
    /// From the start of the last analysis to its promotion or rollback; `None` if undecided.
    pub decided_after_seconds: Option<f64>,
    /// Checks that failed (increments of the failed-check count) over the whole run.
    pub failed_checks: i32,
    /// Percent of traffic times minutes sent to the canary.
    pub exposure_percent_minutes: f64,
    /// The same, counted only while the canary was failing its checks.
    pub failing_exposure_percent_minutes: f64,
}

fn decided_after(steps: &[Step]) -> Option<SignedDuration> {
    let start = steps
        .iter()
        .rev()
        .find(|s| analysing(s.after.phase) && !analysing(s.before.phase))?;
    let end = steps.iter().find(|s| {
        s.at >= start.at
            && matches!(s.after.phase, Some(Phase::Succeeded | Phase::Failed))
            && s.before.phase != s.after.phase
    })?;
    Some(end.at.duration_since(start.at))
}

fn weight(s: &Step) -> f64 {
    s.routes
        .filter(|r| !r.mirrored)
        .map_or(0.0, |r| f64::from(r.canary_weight))
}

pub fn summary(run: &Run) -> Summary {
    let mut exposure = 0.0;
    let mut failing = 0.0;
    for (i, s) in run.steps.iter().enumerate() {
        let until = run
            .steps
            .get(i + 1)
            .map_or(run.end.max(s.at), |next| next.at);
        let minutes = until.duration_since(s.at).as_secs_f64() / 60.0;
        let share = weight(s) * minutes;
        exposure += share;
        if s.after.failed_checks > s.before.failed_checks {
            failing += share;
        }
    }
    Summary {
        outcome: run.final_phase(),
        decided_after_seconds: decided_after(&run.steps).map(|d| d.as_secs_f64()),
        failed_checks: run
            .steps
            .iter()
            .map(|s| (s.after.failed_checks - s.before.failed_checks).max(0))
            .sum(),
        exposure_percent_minutes: exposure,
        failing_exposure_percent_minutes: failing,
    }
}

fn offset(start: Timestamp, at: Timestamp) -> String {
    format!("+{}", format_go_duration(at.duration_since(start)))
}

/// The last reconcile of `run` at or before `t`.
fn at(run: &Run, t: Timestamp) -> Option<&Step> {
    run.steps.iter().rev().find(|s| s.at <= t)
}

/// What the comparison marks as different: phase, weight and failed checks (thresholds may
/// differ by design).
fn digest(s: Option<&Step>) -> Option<(Option<Phase>, i32, i32)> {
    s.map(|s| (s.after.phase, s.after.canary_weight, s.after.failed_checks))
}

fn state(s: Option<&Step>) -> String {
    s.map_or_else(
        || "-".to_string(),
        |s| {
            format!(
                "{:<16} {:>3} {:>5}",
                s.after.phase.map_or("-", Phase::as_str),
                s.after.canary_weight,
                format!("{}/{}", s.after.failed_checks, s.threshold)
            )
        },
    )
}

/// The two timelines side by side: a row wherever either run changed something, each side
/// showing its state then (`!` marks rows where they differ), then the summaries.
pub fn text(left: &Run, left_name: &str, right: &Run, right_name: &str) -> String {
    let start = left.start;
    let mut times: Vec<Timestamp> = left
        .steps
        .iter()
        .chain(&right.steps)
        .filter(|s| s.changed())
        .map(|s| s.at)
        .collect();
    times.sort();
    // A live run acts milliseconds after a step is due and a re-run exactly on time: reconciles
    // less than a second apart are one row, showing each run's state at the last of them.
    let mut rows: Vec<Timestamp> = Vec::new();
    for t in times {
        match rows.last_mut() {
            Some(last) if t.duration_since(*last) < SignedDuration::from_secs(1) => *last = t,
            _ => rows.push(t),
        }
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "compare {}: canary {}, {left_name} and {right_name}",
        left.trace, left.canary
    );
    let _ = writeln!(
        out,
        "  {:>10}  {:<27}  {:<27}",
        "TIME",
        short(left_name),
        short(right_name)
    );
    for t in rows {
        let (l, r) = (at(left, t), at(right, t));
        let mark = if digest(l) == digest(r) { ' ' } else { '!' };
        let _ = writeln!(
            out,
            "{mark} {:>10}  {:<27}  {:<27}",
            offset(start, t),
            state(l),
            state(r)
        );
    }
    let (a, b) = (summary(left), summary(right));
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "  {:<24} {:<20} {:<20}",
        "",
        short(left_name),
        short(right_name)
    );
    let rows: [(&str, String, String); 5] = [
        (
            "outcome",
            phase_name(a.outcome).into(),
            phase_name(b.outcome).into(),
        ),
        (
            "decided after",
            seconds(a.decided_after_seconds),
            seconds(b.decided_after_seconds),
        ),
        (
            "failed checks",
            a.failed_checks.to_string(),
            b.failed_checks.to_string(),
        ),
        (
            "traffic to canary",
            percent_minutes(a.exposure_percent_minutes),
            percent_minutes(b.exposure_percent_minutes),
        ),
        (
            "to a failing canary",
            percent_minutes(a.failing_exposure_percent_minutes),
            percent_minutes(b.failing_exposure_percent_minutes),
        ),
    ];
    for (what, l, r) in rows {
        let mark = if l == r { ' ' } else { '!' };
        let _ = writeln!(out, "{mark} {what:<24} {l:<20} {r:<20}");
    }
    out
}

fn short(name: &str) -> String {
    name.chars().take(27).collect()
}

fn phase_name(p: Option<Phase>) -> &'static str {
    p.map_or("-", Phase::as_str)
}

fn seconds(s: Option<f64>) -> String {
    s.map_or_else(
        || "not decided".to_string(),
        |s| format_go_duration(SignedDuration::from_secs_f64(s)),
    )
}

fn percent_minutes(v: f64) -> String {
    format!("{v:.1} %·min")
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsonCompare<'a> {
    left: &'a str,
    right: &'a str,
    summaries: [Summary; 2],
}

/// The two summaries as JSON (each run's own steps come from `timeline::json`).
pub fn json(left: &Run, left_name: &str, right: &Run, right_name: &str) -> serde_json::Value {
    serde_json::to_value(JsonCompare {
        left: left_name,
        right: right_name,
        summaries: [summary(left), summary(right)],
    })
    .unwrap_or(serde_json::Value::Null)
}
