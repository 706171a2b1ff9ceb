//! `-record-traces`: what is recorded is enough to reproduce each decision exactly.

use std::sync::Mutex;

use crate::controller_support::*;
use flagger::controller::run::{Answer, Effects, decide_and_execute};
use flagger::controller::snapshot;
use flagger::trace_recorder::{self, TraceRecorder};
use flagger_core::api::{Canary, CanaryMetric};
use flagger_core::command::{Command, Request};
use flagger_core::snapshot::{MetricAnswer, OperatorConfig};
use flagger_core::{CanaryStatus, Outcome, Phase};
use jiff::Timestamp;

struct Answering(Mutex<usize>);

impl Effects for Answering {
    async fn answer(&self, _: &Canary, r: &Request) -> Answer {
        *self.0.lock().unwrap() += 1;
        match r {
            Request::Hook(_) => Answer::Hook(flagger_core::HookAnswer::Passed),
            Request::Metric(_) => Answer::Metric(MetricAnswer::Value(0.5)),
        }
    }
    async fn execute(&self, _: &Canary, _: &Command) -> Result<(), String> {
        Ok(())
    }
}

#[tokio::test]
async fn a_recorded_reconcile_replays_to_the_same_decision() {
    let mut c = canary();
    c.spec.analysis.as_mut().unwrap().metrics = Some(vec![CanaryMetric {
        name: "errors".into(),
        query: Some("vector(0.5)".into()),
        threshold: Some(1.0),
        ..Default::default()
    }]);
    c.status = Some(CanaryStatus {
        phase: Some(Phase::Progressing),
        iterations: 1,
        last_applied_spec: Some("will-be-replaced".into()),
        last_transition_time: Some("2026-03-01T11:00:00Z".parse().unwrap()),
        ..Default::default()
    });
    let mut caches = Caches::new();
    let target = deployment("podinfo", 2, "podinfo:2");
    let hash = flagger::observe::template_hash(&target.spec.clone().unwrap().template);
    c.status.as_mut().unwrap().last_applied_spec = Some(hash);
    caches.deployment(&target);
    caches.deployment(&deployment("podinfo-primary", 2, "podinfo:1"));
    for s in ["podinfo", "podinfo-primary", "podinfo-canary"] {
        caches.service(s);
    }
    let now: Timestamp = "2026-03-01T12:00:00Z".parse().unwrap();
    let snap = snapshot::build(
        &caches.stores,
        &c,
        &OperatorConfig::default(),
        now,
        Default::default(),
    );
    let effects = Answering(Mutex::new(0));
    let run = decide_and_execute(&effects, &c, snap.clone())
        .await
        .unwrap();
    assert!(
        *effects.0.lock().unwrap() > 0,
        "the decision needed a metric answer"
    );

    let dir = std::env::temp_dir().join(format!("flagger-traces-{}", std::process::id()));
    let recorder = TraceRecorder::new(&dir).unwrap();
    recorder.record(&c, &snap, &run);
    recorder.record(&c, &snap, &run);
    let path = recorder.path_for("test", "podinfo");
    let recorded = trace_recorder::read(&path).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();

    assert_eq!(recorded.len(), 2, "one line per reconcile, appended");
    let r = &recorded[0];
    assert_eq!(r.executed, run.decision.commands.len());
    assert_eq!(
        r.snapshot.answers, run.answers,
        "every answer given is recorded"
    );
    assert_eq!(
        flagger_core::decide(&r.snapshot),
        Outcome::Decided(r.decision.clone()),
        "the recorded snapshot alone reproduces the decision"
    );
}

#[tokio::test]
async fn idle_resyncs_that_saw_nothing_new_are_not_recorded_twice() {
    let mut c = canary();
    let target = deployment("podinfo", 0, "podinfo:1");
    let hash = flagger::observe::template_hash(&target.spec.clone().unwrap().template);
    c.status = Some(CanaryStatus {
        phase: Some(Phase::Succeeded),
        last_applied_spec: Some(hash.clone()),
        last_promoted_spec: Some(hash),
        last_transition_time: Some("2026-03-01T11:00:00Z".parse().unwrap()),
        ..Default::default()
    });
    let mut caches = Caches::new();
    caches.deployment(&target);
    caches.deployment(&deployment("podinfo-primary", 2, "podinfo:1"));
    for s in ["podinfo", "podinfo-primary", "podinfo-canary"] {
        caches.service(s);
    }
    // Settle the status first (the core adds its Promoted condition once).
    let first: Timestamp = "2026-03-01T11:59:00Z".parse().unwrap();
    let snap = snapshot::build(
        &caches.stores,
        &c,
        &OperatorConfig::default(),
        first,
        Default::default(),
    );
    if let Outcome::Decided(d) = flagger_core::decide(&snap)
        && let Some(Command::WriteStatus(settled)) = d.commands.last()
    {
        c.status = Some(settled.clone());
    }
    let dir = std::env::temp_dir().join(format!("flagger-idle-traces-{}", std::process::id()));
    let recorder = TraceRecorder::new(&dir).unwrap();
    let effects = Answering(Mutex::new(0));
    for (i, at) in [
        "2026-03-01T12:00:00Z",
        "2026-03-01T12:00:10Z",
        "2026-03-01T12:00:20Z",
    ]
    .iter()
    .enumerate()
    {
        if i == 2 {
            // The target is scaled up by someone: a new observation, recorded even though idle.
            caches.deployment(&deployment("podinfo", 1, "podinfo:1"));
        }
        let now: Timestamp = at.parse().unwrap();
        let snap = snapshot::build(
            &caches.stores,
            &c,
            &OperatorConfig::default(),
            now,
            Default::default(),
        );
        let run = decide_and_execute(&effects, &c, snap.clone())
            .await
            .unwrap();
        assert!(
            run.decision
                .commands
                .iter()
                .all(|c| matches!(c, Command::RecordMetric(_))),
            "{:?}",
            run.decision.commands
        );
        recorder.record(&c, &snap, &run);
    }
    let recorded = trace_recorder::read(&recorder.path_for("test", "podinfo")).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let times: Vec<String> = recorded
        .iter()
        .map(|r| r.snapshot.now.to_string())
        .collect();
    assert_eq!(times, vec!["2026-03-01T12:00:00Z", "2026-03-01T12:00:20Z"]);
}
