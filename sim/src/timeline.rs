//! What a replay prints: a timeline a person reads (one line per reconcile that changed something,
//! then one line per further event), optionally with the inputs behind each decision, or the same
//! as JSON for machines.

use std::fmt::Write as _;

use flagger_core::Phase;
use flagger_core::api::format_go_duration;
use flagger_core::events::go_float;
use flagger_core::snapshot::{HookAnswer, MetricAnswer};
use jiff::Timestamp;
use serde::Serialize;

use crate::engine::{Digest, MetricInput, Run, Step};
use crate::invariants::Violation;

const INDENT: &str = "                                            ";

fn offset(run: &Run, at: Timestamp) -> String {
    format!("+{}", format_go_duration(at.duration_since(run.start)))
}

fn phase(p: Option<Phase>) -> &'static str {
    p.map_or("-", Phase::as_str)
}

pub fn text(run: &Run, explain: bool) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "replay {}: canary {}, {} to {}",
        run.trace, run.canary, run.start, run.end
    );
    for m in missing(run) {
        let _ = writeln!(out, "assumed: {m}");
    }
    let _ = writeln!(
        out,
        "{:>10}  {:<16} {:>6} {:>6}  EVENTS",
        "TIME", "PHASE", "WEIGHT", "FAILED"
    );
    for step in run.steps.iter().filter(|s| s.changed()) {
        line(&mut out, run, step);
        if explain {
            explain_step(&mut out, step);
        }
    }
    summary(&mut out, run);
    out
}

/// The inputs the trace lacked, one line per metric or webhook: how often and when it was asked.
pub fn missing(run: &Run) -> Vec<String> {
    let mut seen: Vec<(&crate::engine::Missing, usize, Timestamp)> = Vec::new();
    for m in &run.missing {
        match seen
            .iter_mut()
            .find(|(s, _, _)| s.kind == m.kind && s.key == m.key)
        {
            Some((_, n, last)) => {
                *n += 1;
                *last = m.at;
            }
            None => seen.push((m, 1, m.at)),
        }
    }
    seen.iter()
        .map(|(m, n, last)| {
            let kind = match m.kind {
                crate::engine::InputKind::Metric => "metric",
                crate::engine::InputKind::Hook => "webhook",
            };
            let when = if *n == 1 {
                format!("at {}", offset(run, m.at))
            } else {
                format!("{n} times, {} to {}", offset(run, m.at), offset(run, *last))
            };
            format!(
                "{kind} {}: not in the trace, answered {} ({when})",
                m.key, m.answered
            )
        })
        .collect()
}

fn line(out: &mut String, run: &Run, s: &Step) {
    let mut lines: Vec<String> = s
        .events
        .iter()
        .map(|e| {
            if e.warning {
                format!("Warning: {}", e.message)
            } else {
                e.message.clone()
            }
        })
        .collect();
    for f in &s.faults {
        lines.push(format!("[fault] {f}"));
    }
    if lines.is_empty() {
        let actions: Vec<String> = s.commands[..s.applied]
            .iter()
            .filter(|c| !matches!(c, flagger_core::Command::RecordMetric(_)))
            .map(|c| match c {
                flagger_core::Command::WriteStatus(_) => "write status".to_string(),
                other => other.to_string(),
            })
            .collect();
        // A step that only wrote the status says why it did.
        match &s.rule {
            Some(rule) => lines.push(format!("[{}] {rule}", actions.join(", "))),
            None => lines.push(format!("[{}]", actions.join(", "))),
        }
    }
    let _ = writeln!(
        out,
        "{:>10}  {:<16} {:>6} {:>6}  {}",
        offset(run, s.at),
        phase(s.after.phase),
        s.after.canary_weight,
        format!("{}/{}", s.after.failed_checks, s.threshold),
        lines[0]
    );
    for l in &lines[1..] {
        let _ = writeln!(out, "{INDENT}{l}");
    }
}

fn explain_step(out: &mut String, s: &Step) {
    let reasons: Vec<&str> = s.reasons.iter().map(|r| r.as_str()).collect();
    if let Some(rule) = &s.rule {
        let _ = writeln!(out, "{INDENT}  rule: {rule}");
    }
    let _ = writeln!(out, "{INDENT}  why: reconcile on {}", reasons.join(", "));
    if let Some(p) = &s.inputs.primary {
        let _ = writeln!(out, "{INDENT}  primary: {p}");
    }
    if let Some(c) = &s.inputs.canary {
        let _ = writeln!(out, "{INDENT}  canary: {c}");
    }
    if s.inputs.stale {
        let _ = writeln!(out, "{INDENT}  status: stale (before the last write)");
    }
    for h in &s.inputs.hooks {
        let answer = match &h.answer {
            HookAnswer::Passed => "passed".to_string(),
            HookAnswer::Failed(m) if m.is_empty() => "failed".to_string(),
            HookAnswer::Failed(m) => format!("failed: {m}"),
        };
        let _ = writeln!(out, "{INDENT}  hook {}: {answer}", h.key);
    }
    for m in &s.inputs.metrics {
        let _ = writeln!(out, "{INDENT}  metric {}", metric(m));
    }
    let commands: Vec<String> = s.commands[..s.applied]
        .iter()
        .filter(|c| {
            !matches!(
                c,
                flagger_core::Command::EmitEvent { .. } | flagger_core::Command::RecordMetric(_)
            )
        })
        .map(ToString::to_string)
        .collect();
    if !commands.is_empty() {
        let _ = writeln!(out, "{INDENT}  did: {}", commands.join("; "));
    }
    if s.applied < s.commands.len() {
        let _ = writeln!(
            out,
            "{INDENT}  not done: {} of {} commands",
            s.commands.len() - s.applied,
            s.commands.len()
        );
    }
}

fn metric(m: &MetricInput) -> String {
    let bounds = match (m.min, m.max) {
        (Some(lo), Some(hi)) => format!("within [{}, {}]", go_float(lo), go_float(hi)),
        (Some(lo), None) => format!(">= {}", go_float(lo)),
        (None, Some(hi)) => format!("<= {}", go_float(hi)),
        (None, None) => "no threshold".to_string(),
    };
    match &m.answer {
        MetricAnswer::Value(v) if v.is_nan() => format!("{} = NaN (needs {bounds}): fail", m.name),
        MetricAnswer::Value(v) => {
            let ok = m.min.is_none_or(|lo| *v >= lo) && m.max.is_none_or(|hi| *v <= hi);
            format!(
                "{} = {} (needs {bounds}): {}",
                m.name,
                go_float(*v),
                if ok { "ok" } else { "fail" }
            )
        }
        MetricAnswer::NoValues(e) => format!("{}: no values ({e}): fail", m.name),
        MetricAnswer::Error(e) => format!("{}: query error ({e}): fail", m.name),
    }
}

fn summary(out: &mut String, run: &Run) {
    // The last change, not the last reconcile: resyncs after the end change nothing.
    let last = run.steps.iter().rev().find(|s| s.changed());
    let end = last.map_or(run.start, |s| s.at);
    let changed = run.steps.iter().filter(|s| s.changed()).count();
    let result = if run.world.removed {
        "Canary deleted"
    } else {
        phase(run.final_phase())
    };
    let _ = writeln!(
        out,
        "result: {} after {} ({} reconciles, {} changed something)",
        result,
        offset(run, end),
        run.steps.len(),
        changed
    );
    for v in &run.violations {
        let _ = writeln!(
            out,
            "invariant violated at {} (reconcile {}): {}: {}",
            offset(run, v.at),
            v.step,
            v.rule,
            v.detail
        );
    }
    if let Some(e) = &run.error {
        let _ = writeln!(out, "error: {e}");
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsonRun<'a> {
    version: u32,
    trace: &'a str,
    canary: &'a str,
    start: Timestamp,
    end: Timestamp,
    /// Inputs the trace did not have, and when they were asked.
    missing: &'a [crate::engine::Missing],
    steps: Vec<JsonStep<'a>>,
    result: JsonResult<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsonStep<'a> {
    /// Seconds since the start, and the same as the timeline shows it.
    offset_seconds: f64,
    offset: String,
    #[serde(flatten)]
    step: &'a Step,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsonResult<'a> {
    phase: Option<Phase>,
    /// Seconds from the start to the last reconcile.
    end_offset_seconds: f64,
    deleted: bool,
    status: Digest,
    reconciles: usize,
    violations: &'a [Violation],
    error: Option<&'a str>,
}

/// Every reconcile that changed something, with its inputs and commands.
pub fn json(run: &Run) -> String {
    let doc = JsonRun {
        version: crate::trace::FORMAT_VERSION,
        trace: &run.trace,
        canary: &run.canary,
        start: run.start,
        end: run.end,
        missing: &run.missing,
        steps: run
            .steps
            .iter()
            .filter(|s| s.changed())
            .map(|step| JsonStep {
                offset_seconds: step.at.duration_since(run.start).as_secs_f64(),
                offset: offset(run, step.at),
                step,
            })
            .collect(),
        result: JsonResult {
            phase: run.final_phase(),
            end_offset_seconds: run
                .steps
                .last()
                .map_or(0.0, |s| s.at.duration_since(run.start).as_secs_f64()),
            deleted: run.world.removed,
            status: Digest {
                phase: run.world.status.phase,
                canary_weight: run.world.status.canary_weight,
                failed_checks: run.world.status.failed_checks,
                iterations: run.world.status.iterations,
            },
            reconciles: run.steps.len(),
            violations: &run.violations,
            error: run.error.as_deref(),
        },
    };
    let mut s =
        serde_json::to_string_pretty(&doc).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
    s.push('\n');
    s
}
