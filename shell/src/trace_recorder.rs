//! `-record-traces DIR`: every reconcile of a Canary appended to `DIR/<namespace>.<name>.jsonl`
//! as one JSON object: the complete snapshot the core decided on (including every webhook and
//! metric answer it was given) and the decision it returned.
//!
//! The line is written before any of the decision's commands runs, counting all of them as
//! executed: a process killed while carrying them out (SIGKILL, OOM) must not leave a route or
//! status change in the cluster that the recording lacks. When a command fails and the rest are
//! skipped, a second line `{"executed": N}` corrects the count of the line before it.
//!
//! Because the core is a pure function, feeding a recorded snapshot back to
//! `flagger_core::decide` must give the recorded decision; a difference after a code change is a
//! behaviour change on real inputs.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use flagger_core::api::Canary;
use flagger_core::command::{Command, Decision};
use flagger_core::snapshot::{Answers, Snapshot};
use jiff::Timestamp;
use kube::ResourceExt;
use serde::{Deserialize, Serialize};

use crate::controller::run::Run;

/// One reconcile as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reconcile {
    pub snapshot: Snapshot,
    pub decision: Decision,
    /// Commands that may have taken effect: all of them, unless a [`Stopped`] line says fewer ran.
    pub executed: usize,
}

/// The line written after a reconcile whose execution stopped at a failed command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stopped {
    /// Commands carried out before the one that failed.
    pub executed: usize,
}

/// A reconcile line written before its commands ran, to be corrected if they stop early.
#[derive(Debug)]
pub struct Pending {
    path: PathBuf,
    commands: usize,
}

pub struct TraceRecorder {
    dir: PathBuf,
    /// The last snapshot recorded per file (with `now` cleared); also serializes appends so
    /// concurrent reconciles never interleave lines.
    last: Mutex<HashMap<PathBuf, Snapshot>>,
}

impl TraceRecorder {
    pub fn new(dir: &Path) -> std::io::Result<TraceRecorder> {
        std::fs::create_dir_all(dir)?;
        Ok(TraceRecorder {
            dir: dir.to_path_buf(),
            last: Mutex::new(HashMap::new()),
        })
    }

    pub fn path_for(&self, namespace: &str, name: &str) -> PathBuf {
        self.dir.join(format!("{namespace}.{name}.jsonl"))
    }

    /// Appends a decision before its commands run (see the module comment); `None` when nothing
    /// was written. Failures are logged, never fatal: recording must not stop rollouts.
    ///
    /// A reconcile that saw exactly what the previous recorded one saw (only the clock moved) and
    /// decided nothing but gauges is left out: periodic resyncs would otherwise fill the file
    /// with copies that tell a replay nothing new.
    pub fn record_decision(
        &self,
        canary: &Canary,
        snapshot: &Snapshot,
        answers: &Answers,
        decision: &Decision,
    ) -> Option<Pending> {
        let mut snapshot = snapshot.clone();
        snapshot.answers = answers.clone();
        let path = self.path_for(&canary.namespace().unwrap_or_default(), &canary.name_any());
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let mut timeless = snapshot.clone();
        timeless.now = Timestamp::UNIX_EPOCH;
        let idle = decision
            .commands
            .iter()
            .all(|c| matches!(c, Command::RecordMetric(_)));
        if idle && last.get(&path) == Some(&timeless) {
            return None;
        }
        let entry = Reconcile {
            snapshot,
            decision: decision.clone(),
            executed: decision.commands.len(),
        };
        match append(&path, &entry) {
            Ok(()) => {
                last.insert(path.clone(), timeless);
                Some(Pending {
                    path,
                    commands: decision.commands.len(),
                })
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "recording the trace failed");
                None
            }
        }
    }

    /// Records that only `executed` commands of the pending decision ran. Kube-runtime never
    /// reconciles one Canary twice at once, so this line directly follows its decision's.
    pub fn record_executed(&self, pending: Pending, executed: usize) {
        if executed >= pending.commands {
            return;
        }
        let _serialized = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = append(&pending.path, &Stopped { executed }) {
            tracing::warn!(path = %pending.path.display(), error = %e, "recording the trace failed");
        }
    }

    /// Records a reconcile that has already run (both lines at once).
    pub fn record(&self, canary: &Canary, snapshot: &Snapshot, run: &Run) {
        if let Some(pending) = self.record_decision(canary, snapshot, &run.answers, &run.decision) {
            self.record_executed(pending, run.executed);
        }
    }
}

/// One `write(2)` on an unbuffered append-mode file: once it returns, the line is in the kernel and
/// outlives the process however it dies (only a crash of the machine itself could lose it).
fn append(path: &Path, entry: &impl Serialize) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(entry)?;
    line.push(b'\n');
    let mut f = OpenOptions::new().create(true).append(true).open(path)?;
    f.write_all(&line)
}

/// Reads a recorded file back, with each `executed` count corrected by its [`Stopped`] line.
pub fn read(path: &Path) -> Result<Vec<Reconcile>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out: Vec<Reconcile> = Vec::new();
    for (i, l) in text.lines().enumerate() {
        if l.trim().is_empty() {
            continue;
        }
        let at = || format!("{}:{}", path.display(), i + 1);
        match serde_json::from_str::<Reconcile>(l) {
            Ok(r) => out.push(r),
            Err(e) => {
                let stopped: Stopped =
                    serde_json::from_str(l).map_err(|_| format!("{}: {e}", at()))?;
                let last = out
                    .last_mut()
                    .ok_or_else(|| format!("{}: an executed count before any reconcile", at()))?;
                last.executed = stopped.executed.min(last.decision.commands.len());
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use flagger_core::command::Command;
    use flagger_core::snapshot::{CanaryMeta, OperatorConfig, Routes};
    use serde_json::json;

    use super::*;

    fn canary() -> Canary {
        serde_json::from_value(json!({
            "apiVersion": "flagger.app/v1beta1",
            "kind": "Canary",
            "metadata": {"name": "podinfo", "namespace": "test"},
            "spec": {
                "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
                "service": {"port": 9898}
            }
        }))
        .unwrap()
    }

    fn snapshot(c: &Canary) -> Snapshot {
        Snapshot {
            now: "2026-03-01T12:00:00Z".parse().unwrap(),
            canary: CanaryMeta {
                name: "podinfo".into(),
                namespace: "test".into(),
                ..Default::default()
            },
            spec: c.spec.clone(),
            status: Default::default(),
            config: OperatorConfig::default(),
            target: None,
            primary: None,
            routes: Some(Routes {
                primary_weight: 70,
                canary_weight: 30,
                mirrored: false,
            }),
            routes_not_ready: None,
            services_present: true,
            apex_selects_primary: true,
            drift: Default::default(),
            answers: Default::default(),
        }
    }

    fn step() -> Decision {
        Decision {
            commands: vec![
                Command::SetRoutes {
                    primary_weight: 60,
                    canary_weight: 40,
                    mirrored: false,
                },
                Command::WriteStatus(Default::default()),
            ],
            wake_at: None,
        }
    }

    struct Dir(PathBuf);

    impl Dir {
        fn new(name: &str) -> Dir {
            let d = std::env::temp_dir().join(format!("flagger-rec-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&d);
            Dir(d)
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn a_decision_is_on_disk_before_its_commands_run() {
        let dir = Dir::new("ahead");
        let recorder = TraceRecorder::new(&dir.0).unwrap();
        let c = canary();
        let pending = recorder.record_decision(&c, &snapshot(&c), &Default::default(), &step());
        assert!(pending.is_some());
        // The process dies here, before any command finished: the step it was taking is recorded,
        // counted as possibly carried out in full.
        let read_back = read(&recorder.path_for("test", "podinfo")).unwrap();
        assert_eq!(read_back.len(), 1);
        assert_eq!(read_back[0].decision, step());
        assert_eq!(read_back[0].executed, 2);
    }

    #[test]
    fn a_failed_command_corrects_the_count_for_every_reader() {
        let dir = Dir::new("stopped");
        let recorder = TraceRecorder::new(&dir.0).unwrap();
        let c = canary();
        let snap = snapshot(&c);
        let pending = recorder
            .record_decision(&c, &snap, &Default::default(), &step())
            .unwrap();
        recorder.record_executed(pending, 1);
        let done = recorder
            .record_decision(&c, &snap, &Default::default(), &step())
            .unwrap();
        recorder.record_executed(done, 2);
        let path = recorder.path_for("test", "podinfo");
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 3, "{text}");
        assert_eq!(text.lines().nth(1), Some(r#"{"executed":1}"#));

        let ours: Vec<usize> = read(&path).unwrap().iter().map(|r| r.executed).collect();
        assert_eq!(ours, [1, 2]);
        let replay: Vec<usize> = flagger_sim::recording::parse("rec.jsonl", &text)
            .unwrap()
            .iter()
            .map(|r| r.executed)
            .collect();
        assert_eq!(replay, [1, 2]);
    }

    #[test]
    fn a_count_without_a_reconcile_before_it_is_rejected() {
        let dir = Dir::new("orphan");
        std::fs::create_dir_all(&dir.0).unwrap();
        let path = dir.0.join("test.podinfo.jsonl");
        std::fs::write(&path, "{\"executed\":1}\n").unwrap();
        let err = read(&path).unwrap_err();
        assert!(
            err.ends_with(":1: an executed count before any reconcile"),
            "{err}"
        );
    }
}
