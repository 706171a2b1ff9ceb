//! Replay fidelity through the user's path: each operator's `-record-traces` recording
//! (`<dir>/<namespace>.<name>.jsonl`, one reconcile per line: the snapshot with every answer the
//! core was given, the decision, how many commands ran) is handed, raw, to
//! `flagger replay FILE --output json`, exactly as a user would run it. The replay must exit 0
//! (every recorded decision reproduced on its recorded inputs) and list, in order and at the same
//! instants, exactly the commands (and so the events) that the live run carried out.
//!
//! Nothing is aligned, folded or dropped on either side: a difference is a finding.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use flagger_core::command::{Command, Decision};
use flagger_core::snapshot::Snapshot;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Result;

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

/// Whether a reconcile's carried-out commands changed anything beyond gauges: the reconciles a
/// replay's timeline lists.
fn changed(commands: &[Command]) -> bool {
    commands
        .iter()
        .any(|c| !matches!(c, Command::RecordMetric(_)))
}

fn describe(at: &str, commands: &[Command]) -> String {
    let list: Vec<String> = commands.iter().map(ToString::to_string).collect();
    format!("{at}: {}", list.join("; "))
}

/// The live run's reconciles that changed something: instant and carried-out commands.
pub fn live_steps(recording: &[Reconcile]) -> Vec<String> {
    recording
        .iter()
        .map(|r| {
            let n = r.executed.min(r.decision.commands.len());
            (r.snapshot.now.to_string(), &r.decision.commands[..n])
        })
        .filter(|(_, c)| changed(c))
        .map(|(at, c)| describe(&at, c))
        .collect()
}

/// The same for `flagger replay --output json`'s steps.
pub fn replay_steps(replay: &Value) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for step in replay["steps"]
        .as_array()
        .ok_or("replay output has no steps")?
    {
        let commands: Vec<Command> = serde_json::from_value(step["commands"].clone())?;
        let applied = step["applied"]
            .as_u64()
            .ok_or("a replayed step has no applied count")? as usize;
        let at = step["at"].as_str().ok_or("a replayed step has no time")?;
        let done = &commands[..applied.min(commands.len())];
        if changed(done) {
            out.push(describe(at, done));
        }
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
    let mut out = format!("the live run and its replay differ at step {first}:\n");
    for i in 0..live.len().max(sim.len()) {
        let a = live.get(i).map_or("", String::as_str);
        let b = sim.get(i).map_or("", String::as_str);
        let mark = if a == b { ' ' } else { '!' };
        let _ = writeln!(out, "{mark} {i:>3} live: {a}\n        sim:  {b}");
    }
    Some(out)
}

/// Checks every recording in `dir`, writing `<name>.replay.json` and `<name>.fidelity.txt` next
/// to each.
pub async fn check_dir(dir: &Path, flagger_bin: &Path) -> Result<()> {
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
        if let Err(e) = check_file(&f, flagger_bin).await {
            failures.push(format!("{}: {e}", f.display()));
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("\n").into())
    }
}

pub async fn check_file(file: &Path, flagger_bin: &Path) -> Result<()> {
    let recording = read_recording(file)?;
    let stem = file.with_extension("").display().to_string();
    let sibling = |suffix: &str| PathBuf::from(format!("{stem}.{suffix}"));
    let report = sibling("fidelity.txt");
    let out = tokio::process::Command::new(flagger_bin)
        .arg("replay")
        .arg(file)
        .args(["--output", "json"])
        .output()
        .await?;
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    std::fs::write(sibling("replay.json"), &stdout)?;
    if !out.status.success() {
        let why = format!(
            "flagger replay {} exited with {}: {}{}",
            file.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr),
            serde_json::from_str::<Value>(&stdout)
                .ok()
                .and_then(|v| v["result"]["error"].as_str().map(str::to_string))
                .unwrap_or_default()
        );
        std::fs::write(&report, &why)?;
        return Err(why.into());
    }
    let replay: Value = serde_json::from_str(&stdout)
        .map_err(|e| format!("flagger replay output is not JSON: {e}"))?;
    let live = live_steps(&recording);
    let replayed = replay_steps(&replay)?;
    match diff(&live, &replayed) {
        None => {
            std::fs::write(
                &report,
                format!(
                    "replay: identical ({} reconciles that changed something)\n{}\n",
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
    fn gauges_alone_are_not_a_step() {
        let gauge = Command::RecordMetric(flagger_core::command::MetricRecord::Status { value: 1 });
        let route = Command::SetRoutes {
            primary_weight: 80,
            canary_weight: 20,
            mirrored: false,
        };
        assert!(!changed(std::slice::from_ref(&gauge)));
        assert!(changed(&[gauge, route]));
    }

    #[test]
    fn diff_marks_the_first_difference() {
        let a = vec!["routes 80/20".to_string(), "routes 60/40".to_string()];
        let b = vec!["routes 80/20".to_string()];
        let d = diff(&a, &b).unwrap();
        assert!(d.contains("differ at step 1"), "{d}");
        assert!(diff(&a, &a).is_none());
    }
}
