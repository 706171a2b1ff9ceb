//! `-record-traces DIR`: every reconcile of a Canary appended to `DIR/<namespace>.<name>.jsonl`
//! as one JSON object: the complete snapshot the core decided on (including every webhook and
//! metric answer it was given) and the decision it returned.
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
use flagger_core::snapshot::Snapshot;
use jiff::Timestamp;
use kube::ResourceExt;
use serde::{Deserialize, Serialize};

use crate::controller::run::Run;

/// One reconcile as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reconcile {
    pub snapshot: Snapshot,
    pub decision: Decision,
    /// Commands carried out before one failed (all of them when none did).
    pub executed: usize,
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

    /// Appends the reconcile; failures are logged, never fatal: recording must not stop rollouts.
    ///
    /// A reconcile that saw exactly what the previous recorded one saw (only the clock moved) and
    /// decided nothing but gauges is left out: periodic resyncs would otherwise fill the file
    /// with copies that tell a replay nothing new.
    pub fn record(&self, canary: &Canary, snapshot: &Snapshot, run: &Run) {
        let mut snapshot = snapshot.clone();
        snapshot.answers = run.answers.clone();
        let path = self.path_for(&canary.namespace().unwrap_or_default(), &canary.name_any());
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let mut timeless = snapshot.clone();
        timeless.now = Timestamp::UNIX_EPOCH;
        let idle = run
            .decision
            .commands
            .iter()
            .all(|c| matches!(c, Command::RecordMetric(_)));
        if idle && last.get(&path) == Some(&timeless) {
            return;
        }
        let entry = Reconcile {
            snapshot,
            decision: run.decision.clone(),
            executed: run.executed,
        };
        match append(&path, &entry) {
            Ok(()) => {
                last.insert(path, timeless);
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "recording the trace failed")
            }
        }
    }
}

fn append(path: &Path, entry: &Reconcile) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(entry)?;
    line.push(b'\n');
    let mut f = OpenOptions::new().create(true).append(true).open(path)?;
    f.write_all(&line)
}

/// Reads a recorded file back.
pub fn read(path: &Path) -> Result<Vec<Reconcile>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| format!("{}:{}: {e}", path.display(), i + 1))
        })
        .collect()
}
