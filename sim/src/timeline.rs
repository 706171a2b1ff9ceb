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
    let run = &*escaped(run);
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
    for (step, fold) in folded(run) {
        line(&mut out, run, step);
        if explain {
            explain_step(&mut out, step);
        }
        if let Some(f) = fold {
            fold_line(&mut out, run, step, &f);
        }
    }
    summary(&mut out, run);
    crate::strict::escape_control(&out, true).into_owned()
}

/// A run of reconciles that repeat the one before them exactly.
struct Fold {
    count: usize,
    from: Timestamp,
    until: Timestamp,
}

/// The steps that changed something, each with the identical reconciles that followed it (folded
/// by the engine, or consecutive in a recording).
fn folded(run: &Run) -> Vec<(&Step, Option<Fold>)> {
    let mut out: Vec<(&Step, Option<Fold>)> = Vec::new();
    let mut prev: Option<&Step> = None;
    for step in run.steps.iter().filter(|s| s.changed()) {
        match (out.last_mut(), prev) {
            (Some((_, fold)), Some(p)) if p.is_repeated_by(step) => {
                let f = fold.get_or_insert(Fold {
                    count: 0,
                    from: step.at,
                    until: step.at,
                });
                f.count += 1 + step.repeats;
                f.until = step.last_at();
            }
            _ => {
                let fold = (step.repeats > 0).then(|| Fold {
                    count: step.repeats,
                    from: step.repeats_from.unwrap_or(step.at),
                    until: step.last_at(),
                });
                out.push((step, fold));
            }
        }
        prev = Some(step);
    }
    out
}

/// `… 118 identical reconciles (+10m0s to +2h0m0s): still WaitingPromotion at weight 50, gate
/// confirm-promotion/approve closed (gate closed)`: what repeated and for how long.
fn fold_line(out: &mut String, run: &Run, s: &Step, f: &Fold) {
    let mut what = format!(
        "still {} at weight {}",
        phase(s.after.phase),
        s.after.canary_weight
    );
    for h in &s.inputs.hooks {
        if let HookAnswer::Failed(m) = &h.answer {
            let detail = if m.is_empty() {
                String::new()
            } else {
                format!(" ({m})")
            };
            if h.key.starts_with("confirm-") {
                let _ = write!(what, ", gate {} closed{detail}", h.key);
            } else {
                let _ = write!(what, ", webhook {} failing{detail}", h.key);
            }
        }
    }
    let when = if f.count == 1 {
        format!("at {}", offset(run, f.from))
    } else {
        format!("{} to {}", offset(run, f.from), offset(run, f.until))
    };
    let plural = if f.count == 1 { "" } else { "s" };
    let _ = writeln!(
        out,
        "{INDENT}… {} identical reconcile{plural} ({when}): {what}",
        f.count
    );
}

/// The run with control characters in its free text (names, messages, errors) escaped, so a
/// name or message holding `\x1b` or `\n` cannot drive the terminal or forge a line. Cloned only
/// when something needs escaping.
fn escaped(run: &Run) -> std::borrow::Cow<'_, Run> {
    use crate::strict::escape_control as esc;
    use std::borrow::Cow;
    let needs = |t: &str| t.chars().any(char::is_control);
    fn hook_text(a: &HookAnswer) -> &str {
        match a {
            HookAnswer::Failed(m) => m,
            HookAnswer::Passed => "",
        }
    }
    fn metric_text(a: &MetricAnswer) -> &str {
        match a {
            MetricAnswer::NoValues(m) | MetricAnswer::Error(m) => m,
            MetricAnswer::Value(_) => "",
        }
    }
    let dirty = needs(&run.trace)
        || needs(&run.canary)
        || run.error.as_deref().is_some_and(needs)
        || run.violations.iter().any(|v| needs(&v.detail))
        || run.missing.iter().any(|m| needs(&m.key))
        || run.steps.iter().any(|s| {
            s.events.iter().any(|e| needs(&e.message))
                || s.faults.iter().any(|f| needs(f))
                || s.inputs.primary.as_deref().is_some_and(needs)
                || s.inputs.canary.as_deref().is_some_and(needs)
                || s.inputs
                    .hooks
                    .iter()
                    .any(|h| needs(&h.key) || needs(hook_text(&h.answer)))
                || s.inputs
                    .metrics
                    .iter()
                    .any(|m| needs(&m.name) || needs(metric_text(&m.answer)))
        });
    if !dirty {
        return Cow::Borrowed(run);
    }
    let own = |t: &str| esc(t, false).into_owned();
    let mut r = run.clone();
    r.trace = own(&r.trace);
    r.canary = own(&r.canary);
    r.error = r.error.as_deref().map(own);
    for v in &mut r.violations {
        v.detail = own(&v.detail);
    }
    for m in &mut r.missing {
        m.key = own(&m.key);
    }
    for s in &mut r.steps {
        for e in &mut s.events {
            e.message = own(&e.message);
        }
        for f in &mut s.faults {
            *f = own(f);
        }
        for t in [&mut s.inputs.primary, &mut s.inputs.canary]
            .into_iter()
            .flatten()
        {
            *t = own(t).into();
        }
        for h in &mut s.inputs.hooks {
            h.key = own(&h.key);
            if let HookAnswer::Failed(m) = &mut h.answer {
                *m = own(m);
            }
        }
        for m in &mut s.inputs.metrics {
            m.name = own(&m.name);
            if let MetricAnswer::NoValues(t) | MetricAnswer::Error(t) = &mut m.answer {
                *t = own(t);
            }
        }
    }
    Cow::Owned(r)
}

/// The inputs the trace lacked, one line per metric or webhook: how often and when it was asked.
pub fn missing(run: &Run) -> Vec<String> {
    run.missing
        .iter()
        .map(|m| {
            let kind = match m.kind {
                crate::engine::InputKind::Metric => "metric",
                crate::engine::InputKind::Hook => "webhook",
            };
            let when = if m.times == 1 {
                format!("at {}", offset(run, m.at))
            } else {
                format!(
                    "{} times, {} to {}",
                    m.times,
                    offset(run, m.at),
                    offset(run, m.last)
                )
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
    let end = last.map_or(run.start, Step::last_at);
    let changed: usize = run
        .steps
        .iter()
        .filter(|s| s.changed())
        .map(|s| 1 + s.repeats)
        .sum();
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
        run.reconciles(),
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
            reconciles: run.reconciles(),
            violations: &run.violations,
            error: run.error.as_deref(),
        },
    };
    let mut s =
        serde_json::to_string_pretty(&doc).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
    s.push('\n');
    s
}
