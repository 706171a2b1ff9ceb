//! Recordings of live runs (`flagger -record-traces DIR` writes one JSON object per reconcile:
//! `{snapshot, decision, executed}`, possibly followed by `{executed}` when fewer commands ran)
//! turned into replayable traces, and checked against the core.
//!
//! The conversion keeps what the recording knows: the Canary and settings of its first reconcile,
//! the cluster as that reconcile saw it (`initial`), every change of the target's template hash or
//! config checksums (`revisions` with `templateHash`), readiness as observed at each reconcile, and
//! every answer the core was given (`answers`). It cannot know how long a rollout would have taken
//! had the operator acted at other moments, so a replay under another Canary is an estimate.

use std::collections::BTreeMap;

use flagger_core::snapshot::Workload;
use flagger_core::{Decision, Snapshot};
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use crate::trace::{
    CanaryObject, Faults, Initial, InitialPrimary, InputError, ObjectMeta, Readiness, Revision,
    Trace, WorkloadKind,
};

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Reconcile {
    pub snapshot: Snapshot,
    pub decision: Decision,
    /// Commands that may have taken effect. The recorder writes each reconcile before carrying
    /// out its commands, with all of them counted, so a process killed part-way leaves no effect
    /// unrecorded; a [`Stopped`] line corrects the count when execution stopped at a failure.
    #[serde(default)]
    pub executed: usize,
}

/// A line that only states how many commands of the reconcile on the line before it ran,
/// written when a command failed and the rest were not carried out.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Stopped {
    pub executed: usize,
}

/// Parses a recording (JSON lines), naming the line of the first malformed one.
pub fn parse(file: &str, text: &str) -> Result<Vec<Reconcile>, InputError> {
    let mut out: Vec<Reconcile> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = || format!("{file}:{}", i + 1);
        match crate::trace::from_json::<Reconcile>(file, line) {
            Ok(r) => out.push(r),
            Err(e) => {
                let Ok(stopped) = serde_json::from_str::<Stopped>(line) else {
                    return Err(InputError {
                        file: at(),
                        what: e.what,
                    });
                };
                let Some(last) = out.last_mut() else {
                    return Err(InputError {
                        file: at(),
                        what: "a count of executed commands precedes every reconcile".into(),
                    });
                };
                last.executed = stopped.executed.min(last.decision.commands.len());
            }
        }
    }
    if out.is_empty() {
        return Err(InputError {
            file: file.to_string(),
            what: "the recording holds no reconcile".into(),
        });
    }
    Ok(out)
}

fn ready(w: &Workload) -> bool {
    w.replicas == 0
        || (w.observed_generation >= w.generation
            && w.updated_replicas >= w.replicas
            && w.total_replicas <= w.updated_replicas
            && w.available_replicas >= w.replicas)
}

/// A trace that replays the recording.
pub fn to_trace(name: &str, recording: &[Reconcile]) -> Result<Trace, InputError> {
    let first = &recording[0].snapshot;
    let last = &recording[recording.len() - 1].snapshot;
    let start = first.now;
    let end = last.now + SignedDuration::from_secs(1);
    let canary = CanaryObject {
        api_version: "flagger.app/v1beta1".into(),
        kind: "Canary".into(),
        metadata: ObjectMeta {
            name: first.canary.name.clone(),
            namespace: first.canary.namespace.clone(),
        },
        spec: first.spec.clone(),
    };

    let mut revisions: Vec<Revision> = Vec::new();
    let mut observed: BTreeMap<WorkloadKind, Vec<(Timestamp, bool)>> = BTreeMap::new();
    let mut metrics: BTreeMap<String, Vec<_>> = BTreeMap::new();
    let mut hooks: BTreeMap<String, Vec<_>> = BTreeMap::new();
    for r in recording {
        let s = &r.snapshot;
        if let Some(t) = &s.target {
            let changed = revisions
                .last()
                .is_none_or(|p| p.template_hash != t.template_hash || p.configs != t.configs);
            if changed {
                revisions.push(Revision {
                    at: s.now,
                    template: serde_json::Value::Null,
                    template_hash: t.template_hash.clone(),
                    configs: t.configs.clone(),
                    replicas: revisions.is_empty().then_some(t.replicas),
                    autoscaler_min_replicas: t.autoscaler_min_replicas,
                });
            }
            observed
                .entry(WorkloadKind::Canary)
                .or_default()
                .push((s.now, ready(t)));
        }
        if let Some(p) = &s.primary {
            observed
                .entry(WorkloadKind::Primary)
                .or_default()
                .push((s.now, ready(p)));
        }
        for (k, a) in &s.answers.metrics {
            metrics
                .entry(k.clone())
                .or_default()
                .push((s.now, a.clone()));
        }
        for (k, a) in &s.answers.hooks {
            hooks.entry(k.clone()).or_default().push((s.now, a.clone()));
        }
    }
    if revisions.is_empty() {
        return Err(InputError {
            file: name.to_string(),
            what: "no reconcile of the recording saw the target Deployment".into(),
        });
    }
    let initial = Initial {
        status: first.status.clone(),
        primary: first.primary.as_ref().map(|p| InitialPrimary {
            template_hash: p.template_hash.clone(),
            configs: p.configs.clone(),
            replicas: p.replicas,
        }),
        routes: first.routes,
        services_present: first.services_present,
        apex_selects_primary: first.apex_selects_primary,
        finalizer: first.canary.has_finalizer,
    };
    Ok(Trace {
        // Not recorded; Flagger's and the operator's default.
        control_loop_interval: SignedDuration::from_secs(10),
        sample_window: crate::trace::sample_window(&canary, &first.config),
        name: name.to_string(),
        start,
        end,
        config: first.config.clone(),
        canary,
        revisions,
        readiness: Readiness {
            observed,
            ..Readiness::default()
        },
        metrics: BTreeMap::new(),
        webhooks: BTreeMap::new(),
        faults: Faults::default(),
        recorded_metrics: metrics,
        recorded_hooks: hooks,
        initial,
        delete_at: recording
            .iter()
            .find(|r| r.snapshot.canary.deleting)
            .map(|r| r.snapshot.now),
    })
}
