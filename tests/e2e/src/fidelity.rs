//! Sim-to-real fidelity: what the operator did against the real cluster (its `-record-traces`
//! recording) must be what the simulator does with the same inputs.
//!
//! Two checks per recorded Canary (`<dir>/<namespace>.<name>.jsonl`, one reconcile per line:
//! the snapshot with every answer the core was given, the decision, how many commands ran):
//!
//! 1. **Re-decision** (exact): `flagger_core::decide` on each recorded snapshot, its requests
//!    answered only from the recorded answers, returns the recorded decision byte for byte. A
//!    request the recording cannot answer means the recording is incomplete.
//! 2. **Replay** (whole run): the recording becomes a trace in the `flagger replay` format
//!    (docs/trace-format.md): the Canary, the target's revisions (the pod templates the scenario
//!    applied, matched by template hash), readiness timings measured on the live run, and every
//!    recorded metric and webhook answer. `flagger replay --output json` replays it; the ordered
//!    effects of both runs (routes, scaling, template promotion, phase and failed-check changes,
//!    events) must be identical.
//!
//! The replay reconciles on its own clock (exactly at each wake-up) while the live operator wakes
//! a few milliseconds late and also on watch events, so the comparison leaves out what only
//! timing decides: repeated identical effects on consecutive reconciles are folded into one, and
//! the "not ready: waiting for rollout to finish" messages, whose presence depends on whether a
//! reconcile happened to fall inside a rollout, are dropped. Recorded answers are matched by order
//! (the replay's `i`-th reconcile that asks gets what the live run's `i`-th got, see
//! [`align_answers`]), not by time, because the replay's clock runs slightly ahead.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use flagger_core::command::{Command, Decision};
use flagger_core::snapshot::{Answers, Snapshot, Workload};
use flagger_core::{Outcome, Request, decide};
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::Result;

/// How long the replay runs past the last recorded reconcile.
const REPLAY_GRACE: SignedDuration = SignedDuration::from_secs(10);

/// One reconcile of a recording (the recorder's format).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reconcile {
    pub snapshot: Snapshot,
    pub decision: Decision,
    pub executed: usize,
}

/// Reads a recording; a `{"executed": N}` line (written when a command failed) corrects the count
/// of the reconcile before it.
pub fn read_recording(path: &Path) -> Result<Vec<Reconcile>> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let name = path.display().to_string();
    Ok(flagger_sim::recording::parse(&name, &text)
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|r| Reconcile {
            snapshot: r.snapshot,
            decision: r.decision,
            executed: r.executed,
        })
        .collect())
}

/// Check 1: every recorded decision follows from its recorded inputs alone.
pub fn redecide(recording: &[Reconcile]) -> Result<()> {
    for (i, r) in recording.iter().enumerate() {
        let recorded = &r.snapshot.answers;
        let mut snap = r.snapshot.clone();
        snap.answers = Answers::default();
        let mut passes = 0;
        let decision = loop {
            match decide(&snap) {
                Outcome::Decided(d) => break d,
                Outcome::Need(requests) => {
                    passes += 1;
                    if passes > 64 {
                        return Err(format!("reconcile {i}: the core keeps asking").into());
                    }
                    // Hooks are answered in order up to the one that settles the step: the
                    // operator called (and recorded) none after it.
                    let mut settled = false;
                    for req in requests {
                        let key = req.key();
                        match req {
                            Request::Hook(_) if settled => {}
                            Request::Metric(_) => {
                                let a = recorded.metrics.get(&key).ok_or_else(|| {
                                    format!("reconcile {i} at {}: the core asks for metric {key}, which the recording lacks", r.snapshot.now)
                                })?;
                                snap.answers.metrics.insert(key, a.clone());
                            }
                            Request::Hook(call) => {
                                let a = recorded.hooks.get(&key).ok_or_else(|| {
                                    format!("reconcile {i} at {}: the core asks for hook {key}, which the recording lacks", r.snapshot.now)
                                })?;
                                settled = call.ends_sequence(a);
                                snap.answers.hooks.insert(key, a.clone());
                            }
                        }
                    }
                }
            }
        };
        if decision != r.decision {
            return Err(format!(
                "reconcile {i} at {}: re-deciding the recorded snapshot gives\n  {}\nbut the live run decided\n  {}",
                r.snapshot.now,
                serde_json::to_string(&decision)?,
                serde_json::to_string(&r.decision)?
            )
            .into());
        }
    }
    Ok(())
}

fn ready(w: &Workload) -> bool {
    w.observed_generation >= w.generation
        && w.updated_replicas >= w.replicas
        && w.available_replicas >= w.replicas
        && w.total_replicas <= w.updated_replicas
}

fn midpoint(a: Timestamp, b: Timestamp) -> Timestamp {
    let half = b.duration_since(a) / 2;
    a.checked_add(half).unwrap_or(b)
}

/// Rollout starts of one workload on the live run and how long each took (`None`: never ready).
/// A start is `(time, observed_at_start)`: rollouts begun by the operator's own command are
/// only visible from the next reconcile on; a revision or the initial state is visible in the
/// reconcile that noticed it.
fn rollouts(
    recording: &[Reconcile],
    workload: fn(&Snapshot) -> Option<&Workload>,
    starts: &[(Timestamp, bool)],
) -> Vec<(Timestamp, Option<SignedDuration>)> {
    starts
        .iter()
        .map(|&(t, inclusive)| {
            // The first later observation that shows the rollout finished. Scaling back to zero
            // first means it never did; observations that do not show the scale-up yet (the
            // operator's cache lagging its own write) say nothing.
            let mut visible = inclusive;
            let mut ready_at = None;
            for r in recording
                .iter()
                .filter(|r| r.snapshot.now > t || (inclusive && r.snapshot.now == t))
            {
                let Some(w) = workload(&r.snapshot) else {
                    continue;
                };
                if w.replicas > 0 {
                    visible = true;
                    if ready(w) {
                        ready_at = Some(r.snapshot.now.duration_since(t));
                        break;
                    }
                } else if visible {
                    break;
                }
            }
            (t, ready_at)
        })
        .collect()
}

fn readiness_rules(
    kind: &str,
    start: Timestamp,
    rollouts: &[(Timestamp, Option<SignedDuration>)],
) -> Vec<Value> {
    rollouts
        .iter()
        .enumerate()
        .map(|(i, (t, delay))| {
            let from = if i == 0 {
                start
            } else {
                midpoint(rollouts[i - 1].0, *t)
            };
            let mut rule = json!({"workload": kind, "from": from.to_string()});
            if let Some((next, _)) = rollouts.get(i + 1) {
                rule["until"] = json!(midpoint(*t, *next).to_string());
            }
            match delay {
                Some(d) => rule["delay"] = json!(format!("{}ms", d.as_millis().max(0))),
                None => rule["never"] = json!(true),
            }
            rule
        })
        .collect()
}

/// Why a recording cannot be replayed from scratch, if it cannot: the replay starts with an
/// empty cluster plus the target, so the recording must begin there too.
pub fn not_replayable(recording: &[Reconcile]) -> Option<String> {
    let first = &recording.first()?.snapshot;
    if first.target.is_none() {
        return Some("the target did not exist when the recording began".into());
    }
    let fresh = matches!(
        first.status.phase,
        None | Some(flagger_core::Phase::Initializing)
    );
    if first.primary.is_some() || !fresh {
        return Some(format!(
            "the recording begins after initialization (phase {:?}): another replica or an earlier process started this Canary",
            first.status.phase
        ));
    }
    None
}

/// Check 2, first half: the recording as a trace `flagger replay` reads. `templates` are the
/// target's pod templates as the API server stored them. The recording must be replayable
/// ([`not_replayable`]).
pub fn to_trace(recording: &[Reconcile], templates: &[Value]) -> Result<Value> {
    if let Some(why) = not_replayable(recording) {
        return Err(why.into());
    }
    let (Some(first), Some(last)) = (recording.first(), recording.last()) else {
        return Err("empty recording".into());
    };
    let first_target = first.snapshot.target.as_ref().ok_or("no target")?;
    let by_hash: BTreeMap<String, &Value> = templates
        .iter()
        .map(|t| (flagger_core::hash::template_hash(t), t))
        .collect();
    let template_for = |hash: &str| {
        by_hash.get(hash).copied().ok_or_else(|| {
            format!(
                "the operator saw target template hash {hash}, which matches none of the {} templates the scenario applied ({:?})",
                templates.len(),
                by_hash.keys().collect::<Vec<_>>()
            )
        })
    };

    let start = first.snapshot.now;
    let mut revisions = vec![json!({
        "at": "0s",
        "template": template_for(&first_target.template_hash)?,
        "replicas": first_target.replicas,
    })];
    let mut seen = first_target.template_hash.clone();
    let mut target_starts = vec![(start, true)];
    let mut primary_starts = Vec::new();
    for r in recording {
        if let Some(t) = &r.snapshot.target
            && t.template_hash != seen
        {
            seen = t.template_hash.clone();
            revisions.push(json!({
                "at": r.snapshot.now.to_string(),
                "template": template_for(&seen)?,
            }));
            if t.replicas > 0 {
                target_starts.push((r.snapshot.now, true));
            }
        }
        for c in &r.decision.commands[..r.executed.min(r.decision.commands.len())] {
            match c {
                Command::CreatePrimary | Command::PromoteTemplate => {
                    primary_starts.push((r.snapshot.now, false))
                }
                Command::ScaleTarget { replicas } if *replicas > 0 => {
                    target_starts.push((r.snapshot.now, false))
                }
                _ => {}
            }
        }
    }
    let mut rules = readiness_rules(
        "canary",
        start,
        &rollouts(recording, |s| s.target.as_ref(), &target_starts),
    );
    rules.extend(readiness_rules(
        "primary",
        start,
        &rollouts(recording, |s| s.primary.as_ref(), &primary_starts),
    ));

    // Answers at the live times first; `align_answers` moves them onto the replay's own ticks.
    let answers = place(&answer_groups(recording), &[]);

    let config = serde_json::to_value(&first.snapshot.config)?;
    // Every scenario stops its operator in a resting state; the replay runs on a little longer,
    // so a step the live run took late (its clock lags the replay's) is inside the window, and a
    // replay that does not come to rest shows up as extra effects.
    let end = last
        .snapshot
        .now
        .checked_add(REPLAY_GRACE)
        .unwrap_or(last.snapshot.now);
    Ok(json!({
        "version": flagger_sim::trace::FORMAT_VERSION,
        "description": format!(
            "recorded by the real-cluster suite: {} reconciles of {}.{}",
            recording.len(), first.snapshot.canary.name, first.snapshot.canary.namespace
        ),
        "start": start.to_string(),
        "end": end.to_string(),
        "operator": {
            "meshProvider": config["meshProvider"],
            "minInterval": config["minInterval"],
            "clusterName": config["clusterName"],
            "globalNotifier": config["globalNotifier"],
        },
        "canary": {
            "apiVersion": "flagger.app/v1beta1",
            "kind": "Canary",
            "metadata": {"name": first.snapshot.canary.name, "namespace": first.snapshot.canary.namespace},
            "spec": first.snapshot.spec,
        },
        "revisions": revisions,
        "readiness": {"rules": rules},
        "answers": answers,
    }))
}

/// The answers of each live reconcile that asked for any, in order, with its time.
fn answer_groups(recording: &[Reconcile]) -> Vec<(Timestamp, Vec<Value>)> {
    recording
        .iter()
        .filter(|r| !r.snapshot.answers.metrics.is_empty() || !r.snapshot.answers.hooks.is_empty())
        .map(|r| {
            let a = &r.snapshot.answers;
            let mut group: Vec<Value> = a
                .metrics
                .iter()
                .map(|(key, m)| json!({"key": key, "metric": m}))
                .collect();
            group.extend(
                a.hooks
                    .iter()
                    .map(|(key, h)| json!({"key": key, "hook": h})),
            );
            (r.snapshot.now, group)
        })
        .collect()
}

/// The trace's `answers`: group `i` at `times[i]` (its live time when the replay asks fewer
/// times), never earlier than the group before it.
fn place(groups: &[(Timestamp, Vec<Value>)], times: &[Timestamp]) -> Vec<Value> {
    let mut out = Vec::new();
    let mut floor = Timestamp::MIN;
    for (i, (live, group)) in groups.iter().enumerate() {
        let at = times.get(i).copied().unwrap_or(*live).max(floor);
        floor = at;
        for a in group {
            let mut a = a.clone();
            a["at"] = json!(at.to_string());
            out.push(a);
        }
    }
    out
}

/// Gives the replay's `i`-th asking reconcile the answers of the live run's `i`-th: the replay
/// wakes exactly when a step is due while the live operator wakes a little later, so matching by
/// time would hand a replayed step the previous step's answers. Replays (with the library) and
/// moves the answers onto the replay's asking times until they stay put.
pub fn align_answers(trace: &mut Value, recording: &[Reconcile]) -> Result<()> {
    let groups = answer_groups(recording);
    for _ in 0..groups.len() + 3 {
        let parsed = flagger_sim::Trace::parse("aligned", &trace.to_string())?;
        let run = flagger_sim::replay(&parsed, &flagger_sim::Options::default());
        let asking: Vec<Timestamp> = run
            .steps
            .iter()
            .filter(|s| !s.inputs.metrics.is_empty() || !s.inputs.hooks.is_empty())
            .map(|s| s.at)
            .collect();
        let answers = Value::Array(place(&groups, &asking));
        if trace["answers"] == answers {
            return Ok(());
        }
        trace["answers"] = answers;
    }
    // Not settled: the replay keeps asking differently; the comparison shows where.
    Ok(())
}

/// The effects of a command list that the comparison looks at, in order.
fn effects(commands: &[Command], phase: &mut String, failed: &mut i32, out: &mut Vec<String>) {
    for c in commands {
        let e = match c {
            Command::CreatePrimary => Some("create primary".to_string()),
            Command::PromoteTemplate => Some("promote template".to_string()),
            Command::ScaleTarget { replicas } => Some(format!("scale target to {replicas}")),
            Command::SetRoutes {
                primary_weight,
                canary_weight,
                mirrored,
            } => Some(format!(
                "routes {primary_weight}/{canary_weight}{}",
                if *mirrored { " mirrored" } else { "" }
            )),
            Command::EmitEvent { message, .. }
                if message.contains(" not ready: waiting for rollout to finish") =>
            {
                None
            }
            Command::EmitEvent { severity, message } => {
                Some(format!("event {severity:?}: {message}"))
            }
            Command::RunPostRolloutHooks { phase, hooks } => Some(format!(
                "post-rollout hooks {:?} ({phase:?})",
                hooks.iter().map(|h| &h.name).collect::<Vec<_>>()
            )),
            Command::WriteStatus(s) => {
                let p = s.phase.map(|p| p.as_str().to_string()).unwrap_or_default();
                if p != *phase {
                    *phase = p.clone();
                    out.push(format!("phase {p}"));
                }
                if s.failed_checks != *failed {
                    *failed = s.failed_checks;
                    out.push(format!("failed checks {}", s.failed_checks));
                }
                None
            }
            _ => None,
        };
        if let Some(e) = e
            && out.last() != Some(&e)
        {
            out.push(e);
        }
    }
}

pub fn live_effects(recording: &[Reconcile]) -> Vec<String> {
    let (mut phase, mut failed, mut out) = (String::new(), 0, Vec::new());
    for r in recording {
        let n = r.executed.min(r.decision.commands.len());
        effects(&r.decision.commands[..n], &mut phase, &mut failed, &mut out);
    }
    out
}

/// The effects of `flagger replay --output json`'s steps.
pub fn replay_effects(replay: &Value) -> Result<Vec<String>> {
    let (mut phase, mut failed, mut out) = (String::new(), 0, Vec::new());
    for step in replay["steps"]
        .as_array()
        .ok_or("replay output has no steps")?
    {
        let commands: Vec<Command> = serde_json::from_value(step["commands"].clone())?;
        let applied = step["applied"]
            .as_u64()
            .map_or(commands.len(), |n| n as usize);
        effects(
            &commands[..applied.min(commands.len())],
            &mut phase,
            &mut failed,
            &mut out,
        );
    }
    Ok(out)
}

/// Side-by-side listing; `None` when both sides agree.
pub fn diff(live: &[String], sim: &[String]) -> Option<String> {
    if live == sim {
        return None;
    }
    let first = live
        .iter()
        .zip(sim)
        .position(|(a, b)| a != b)
        .unwrap_or(live.len().min(sim.len()));
    let mut out = format!("the live run and its replay differ at effect {first}:\n");
    for i in 0..live.len().max(sim.len()) {
        let a = live.get(i).map_or("", String::as_str);
        let b = sim.get(i).map_or("", String::as_str);
        let mark = if a == b { ' ' } else { '!' };
        let _ = writeln!(out, "{mark} {i:>3} live: {a}\n        sim:  {b}");
    }
    Some(out)
}

/// Runs both checks on every recording in `dir`, writing `<name>.trace.json`,
/// `<name>.replay.json` and `<name>.fidelity.txt` next to each. `templates` are the target pod
/// templates the scenario applied, as stored by the API server.
pub async fn check_dir(dir: &Path, flagger_bin: &Path, templates: &[Value]) -> Result<()> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(format!("no recorded traces in {}", dir.display()).into());
    }
    let mut failures = Vec::new();
    for f in files {
        if let Err(e) = check_file(&f, flagger_bin, templates).await {
            failures.push(format!("{}: {e}", f.display()));
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("\n").into())
    }
}

pub async fn check_file(file: &Path, flagger_bin: &Path, templates: &[Value]) -> Result<()> {
    let recording = read_recording(file)?;
    redecide(&recording)?;
    let stem = file.with_extension("").display().to_string();
    let sibling = |suffix: &str| PathBuf::from(format!("{stem}.{suffix}"));
    let report = sibling("fidelity.txt");
    if let Some(why) = not_replayable(&recording) {
        std::fs::write(
            &report,
            format!("re-decision: identical\nreplay: not applicable: {why}\n"),
        )?;
        return Ok(());
    }
    let mut trace = to_trace(&recording, templates)?;
    align_answers(&mut trace, &recording)?;
    let trace_path = sibling("trace.json");
    std::fs::write(&trace_path, serde_json::to_string_pretty(&trace)?)?;
    let out = tokio::process::Command::new(flagger_bin)
        .arg("replay")
        .arg(&trace_path)
        .args(["--output", "json"])
        .output()
        .await?;
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    std::fs::write(sibling("replay.json"), &stdout)?;
    // Exit code 1 means the replay broke an invariant; 2 a malformed trace. Both are findings.
    if !out.status.success() {
        return Err(format!(
            "flagger replay {} exited with {}: {}{}",
            trace_path.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr),
            stdout.lines().rev().take(15).collect::<Vec<_>>().join("\n")
        )
        .into());
    }
    let replay: Value = serde_json::from_str(&stdout)
        .map_err(|e| format!("flagger replay output is not JSON: {e}"))?;
    let live = live_effects(&recording);
    let sim = replay_effects(&replay)?;
    match diff(&live, &sim) {
        None => {
            std::fs::write(
                &report,
                format!(
                    "re-decision: identical\nreplay: identical ({} effects)\n{}\n",
                    live.len(),
                    live.join("\n")
                ),
            )?;
            Ok(())
        }
        Some(d) => {
            std::fs::write(&report, &d)?;
            Err(d.into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn effects_fold_repeats_and_drop_rollout_waits() {
        let cmds = vec![
            Command::SetRoutes {
                primary_weight: 80,
                canary_weight: 20,
                mirrored: false,
            },
            Command::EmitEvent {
                severity: flagger_core::command::EventSeverity::Warning,
                message: "podinfo.test not ready: waiting for rollout to finish: 0 of 2".into(),
            },
            Command::SetRoutes {
                primary_weight: 80,
                canary_weight: 20,
                mirrored: false,
            },
        ];
        let (mut p, mut f, mut out) = (String::new(), 0, Vec::new());
        effects(&cmds, &mut p, &mut f, &mut out);
        assert_eq!(out, ["routes 80/20"]);
    }

    #[test]
    fn diff_marks_the_first_difference() {
        let a = vec!["routes 80/20".to_string(), "routes 60/40".to_string()];
        let b = vec!["routes 80/20".to_string()];
        let d = diff(&a, &b).unwrap();
        assert!(d.contains("differ at effect 1"), "{d}");
        assert!(diff(&a, &a).is_none());
    }

    #[test]
    fn midpoint_is_between() {
        let a: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let b: Timestamp = "2026-01-01T00:00:04Z".parse().unwrap();
        assert_eq!(midpoint(a, b).to_string(), "2026-01-01T00:00:02Z");
    }
}
