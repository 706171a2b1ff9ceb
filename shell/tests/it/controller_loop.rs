//! The decide → gather → decide loop and in-order execution, with the outside world faked.

use std::sync::Mutex;

use crate::controller_support::canary;
use flagger::controller::run::{Answer, Effects, MAX_PASSES, decide_and_execute};
use flagger_core::api::{Canary, CanaryMetric, CanaryWebhook};
use flagger_core::command::{Command, Request};
use flagger_core::snapshot::{
    Answers, CanaryMeta, HookAnswer, MetricAnswer, OperatorConfig, Routes, Snapshot, Workload,
};
use flagger_core::{CanaryStatus, Phase};
use jiff::Timestamp;

#[derive(Default)]
struct Fake {
    /// Each pass's requests, by key.
    asked: Mutex<Vec<Vec<String>>>,
    executed: Mutex<Vec<Command>>,
    /// Fail the command at this position.
    fail_at: Option<usize>,
    /// Answer hooks with a metric value (a broken answerer).
    confused: bool,
    hook: Option<HookAnswer>,
    /// The key of a hook that fails (others answer `hook`).
    failing: Option<String>,
}

impl Effects for Fake {
    async fn answer(&self, _: &Canary, request: &Request) -> Answer {
        let mut asked = self.asked.lock().unwrap();
        asked.push(vec![request.key()]);
        match request {
            Request::Hook(_) if self.confused => Answer::Metric(MetricAnswer::Value(1.0)),
            Request::Hook(_) if self.failing.as_deref() == Some(request.key().as_str()) => {
                Answer::Hook(HookAnswer::Failed("500".into()))
            }
            Request::Hook(_) => Answer::Hook(self.hook.clone().unwrap_or(HookAnswer::Passed)),
            Request::Metric(_) => Answer::Metric(MetricAnswer::Value(99.9)),
        }
    }

    async fn execute(&self, _: &Canary, command: &Command) -> Result<(), String> {
        let mut executed = self.executed.lock().unwrap();
        if Some(executed.len()) == self.fail_at {
            return Err("the API server said no".into());
        }
        executed.push(command.clone());
        Ok(())
    }
}

fn ready(hash: &str, replicas: i32) -> Workload {
    Workload {
        template_hash: hash.into(),
        replicas,
        generation: 1,
        observed_generation: 1,
        updated_replicas: replicas,
        available_replicas: replicas,
        total_replicas: replicas,
        ..Workload::default()
    }
}

/// An initialized canary whose target has a new revision, gated by a confirm-rollout hook.
fn gated() -> (Canary, Snapshot) {
    let mut c = canary();
    let analysis = c.spec.analysis.as_mut().unwrap();
    analysis.webhooks = Some(vec![CanaryWebhook {
        name: "gate".into(),
        type_: Some("confirm-rollout".into()),
        url: "http://gate.test/approve".into(),
        ..CanaryWebhook::default()
    }]);
    analysis.metrics = Some(vec![CanaryMetric {
        name: "error-rate".into(),
        query: Some("vector(0)".into()),
        threshold: Some(1.0),
        ..CanaryMetric::default()
    }]);
    let now: Timestamp = "2026-03-01T12:00:00Z".parse().unwrap();
    let snap = Snapshot {
        now,
        canary: CanaryMeta {
            name: "podinfo".into(),
            namespace: "test".into(),
            ..CanaryMeta::default()
        },
        spec: c.spec.clone(),
        status: CanaryStatus {
            phase: Some(Phase::Initialized),
            last_applied_spec: Some("old".into()),
            last_promoted_spec: Some("old".into()),
            last_transition_time: Some("2026-03-01T11:00:00Z".parse().unwrap()),
            ..CanaryStatus::default()
        },
        config: OperatorConfig::default(),
        target: Some(ready("new", 2)),
        primary: Some(ready("old", 2)),
        routes: Some(Routes {
            primary_weight: 100,
            canary_weight: 0,
            mirrored: false,
        }),
        routes_not_ready: None,
        services_present: true,
        apex_selects_primary: true,
        drift: Default::default(),
        answers: Answers::default(),
    };
    (c, snap)
}

#[tokio::test]
async fn needed_answers_are_gathered_then_the_decision_runs_in_order() {
    let (canary, snap) = gated();
    let fake = Fake::default();
    let run = decide_and_execute(&fake, &canary, snap).await.unwrap();

    assert_eq!(
        *fake.asked.lock().unwrap(),
        vec![vec!["confirm-rollout/gate".to_string()]]
    );
    assert_eq!(run.passes, 2, "one pass to ask, one to decide");
    assert_eq!(
        run.answers.hooks["confirm-rollout/gate"],
        HookAnswer::Passed
    );
    assert_eq!(run.failure, None);
    assert_eq!(run.executed, run.decision.commands.len());
    assert_eq!(*fake.executed.lock().unwrap(), run.decision.commands);
    assert!(
        run.decision
            .commands
            .contains(&Command::ScaleTarget { replicas: 2 }),
        "{:?}",
        run.decision.commands
    );
    assert!(
        matches!(run.decision.commands.last(), Some(Command::WriteStatus(s)) if s.phase == Some(Phase::Progressing))
    );
}

/// A run due for its first analysis step, with `n` pre-rollout hooks `h00`, `h01`, ….
fn pre_rollout_step(n: usize) -> (Canary, Snapshot) {
    let (mut c, mut snap) = gated();
    let analysis = c.spec.analysis.as_mut().unwrap();
    analysis.webhooks = Some(
        (0..n)
            .map(|i| CanaryWebhook {
                name: format!("h{i:02}"),
                type_: Some("pre-rollout".into()),
                url: "http://hooks.test/".into(),
                ..CanaryWebhook::default()
            })
            .collect(),
    );
    snap.spec = c.spec.clone();
    snap.status.phase = Some(Phase::Progressing);
    snap.status.last_applied_spec = Some("new".into());
    (c, snap)
}

fn pre_rollout_keys(range: std::ops::Range<usize>) -> Vec<Vec<String>> {
    range
        .map(|i| vec![format!("pre-rollout/h{i:02}")])
        .collect()
}

#[tokio::test]
async fn seventy_hooks_are_called_in_order_in_one_pass() {
    let (canary, snap) = pre_rollout_step(70);
    let fake = Fake::default();
    let run = decide_and_execute(&fake, &canary, snap).await.unwrap();
    assert_eq!(*fake.asked.lock().unwrap(), pre_rollout_keys(0..70));
    assert_eq!(run.passes, 2, "one pass to ask, one to decide");
    assert!(
        matches!(run.decision.commands.last(), Some(Command::WriteStatus(s)) if s.iterations == 1 && s.failed_checks == 0),
        "{:?}",
        run.decision.commands.last()
    );
}

#[tokio::test]
async fn no_hook_is_called_after_a_failing_one() {
    let (canary, snap) = pre_rollout_step(70);
    let fake = Fake {
        failing: Some("pre-rollout/h05".into()),
        ..Fake::default()
    };
    let run = decide_and_execute(&fake, &canary, snap).await.unwrap();
    assert_eq!(*fake.asked.lock().unwrap(), pre_rollout_keys(0..6));
    assert_eq!(run.passes, 2);
    assert!(
        matches!(run.decision.commands.last(), Some(Command::WriteStatus(s)) if s.iterations == 0 && s.failed_checks == 1),
        "{:?}",
        run.decision.commands.last()
    );
}

#[tokio::test]
async fn a_closed_gate_is_an_answer_not_an_error() {
    let (canary, snap) = gated();
    let fake = Fake {
        hook: Some(HookAnswer::Failed("not yet".into())),
        ..Fake::default()
    };
    let run = decide_and_execute(&fake, &canary, snap).await.unwrap();
    assert!(
        matches!(run.decision.commands.last(), Some(Command::WriteStatus(s)) if s.phase == Some(Phase::Waiting))
    );
    assert!(
        !run.decision
            .commands
            .iter()
            .any(|c| matches!(c, Command::ScaleTarget { .. }))
    );
}

#[tokio::test]
async fn execution_stops_at_the_first_failed_command() {
    let (canary, snap) = gated();
    let fake = Fake {
        fail_at: Some(1),
        ..Fake::default()
    };
    let run = decide_and_execute(&fake, &canary, snap).await.unwrap();
    let failure = run.failure.expect("the second command failed");
    assert_eq!(failure.index, 1);
    assert_eq!(failure.error, "the API server said no");
    assert_eq!(run.executed, 1);
    assert_eq!(
        fake.executed.lock().unwrap().len(),
        1,
        "nothing after the failure ran"
    );
    assert!(run.decision.commands.len() > 2);
}

#[tokio::test]
async fn a_decision_that_never_settles_is_cut_off() {
    let (canary, snap) = gated();
    let fake = Fake {
        confused: true,
        ..Fake::default()
    };
    let err = decide_and_execute(&fake, &canary, snap).await.unwrap_err();
    assert_eq!(err.last, "confirm-rollout/gate");
    assert_eq!(fake.asked.lock().unwrap().len(), MAX_PASSES);
    assert!(
        fake.executed.lock().unwrap().is_empty(),
        "nothing is executed without a decision"
    );
}

/// Which session-affinity cookie each command's executor saw in the Canary's status.
#[derive(Default)]
struct Seen(Mutex<Vec<(String, Option<String>)>>);

impl Effects for Seen {
    async fn answer(&self, _: &Canary, _: &Request) -> Answer {
        Answer::Metric(MetricAnswer::Value(0.0))
    }

    async fn execute(&self, canary: &Canary, command: &Command) -> Result<(), String> {
        let cookie = canary
            .status
            .as_ref()
            .and_then(|s| s.session_affinity_cookie.clone());
        let name = command.to_string();
        self.0.lock().unwrap().push((name, cookie));
        Ok(())
    }
}

#[tokio::test]
async fn routes_are_written_with_the_cookies_of_the_status_the_decision_writes() {
    let mut c = canary();
    c.status = Some(CanaryStatus {
        session_affinity_cookie: Some("flagger-cookie=persisted".into()),
        ..CanaryStatus::default()
    });
    let written = CanaryStatus {
        session_affinity_cookie: Some("flagger-cookie=thisrun".into()),
        ..CanaryStatus::default()
    };
    let decision = flagger_core::command::Decision {
        commands: vec![
            Command::ScaleTarget { replicas: 1 },
            Command::SetRoutes {
                primary_weight: 90,
                canary_weight: 10,
                mirrored: false,
            },
            Command::WriteStatus(written),
        ],
        wake_at: None,
    };
    let seen = Seen::default();
    let (executed, failure) = flagger::controller::run::execute(&seen, &c, &decision).await;
    assert_eq!((executed, failure), (3, None));
    let cookies: Vec<Option<String>> = seen
        .0
        .into_inner()
        .unwrap()
        .into_iter()
        .map(|(_, c)| c)
        .collect();
    assert_eq!(
        cookies,
        [
            Some("flagger-cookie=persisted".to_string()),
            Some("flagger-cookie=thisrun".to_string()),
            Some("flagger-cookie=persisted".to_string()),
        ]
    );
}
