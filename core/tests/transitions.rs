//! Exact command lists for each transition of the phase machine (openraft style: the whole
//! decision is asserted, so any added, dropped or reordered command fails a test).

mod support;

use flagger_core::api::Phase;
use flagger_core::command::{
    Alert, AlertDestination, AlertSeverity, Command, EventSeverity, MetricRecord, MetricSource,
    Outcome, Request,
};
use flagger_core::{HookAnswer, MetricAnswer, decide};
use jiff::SignedDuration;
use serde_json::json;
use support::{Cluster, ready, spec, t0, unready, without_gauges};

fn ev(m: &str) -> Command {
    Command::EmitEvent {
        severity: EventSeverity::Normal,
        message: m.into(),
    }
}
fn warn(m: &str) -> Command {
    Command::EmitEvent {
        severity: EventSeverity::Warning,
        message: m.into(),
    }
}
/// The `flagger_canary_metric_analysis` value a passing or failing check records.
fn recorded(metric: &str, value: f64) -> Command {
    Command::RecordMetric(MetricRecord::Analysis {
        metric: metric.into(),
        value,
    })
}
fn routes(p: i32, c: i32) -> Command {
    Command::SetRoutes {
        primary_weight: p,
        canary_weight: c,
        mirrored: false,
    }
}
/// The commands with the final status write replaced by its phase, for readable assertions.
fn shape(commands: Vec<Command>) -> (Vec<Command>, Option<Phase>) {
    let mut commands = commands;
    let phase = match commands.last() {
        Some(Command::WriteStatus(s)) => {
            let p = s.phase;
            commands.pop();
            p
        }
        _ => None,
    };
    (commands, phase)
}

fn canary_spec() -> flagger_core::CanarySpec {
    spec(json!({
        "interval": "1m", "threshold": 2, "maxWeight": 50, "stepWeight": 10,
        "metrics": [
            {"name": "request-success-rate", "thresholdRange": {"min": 99}, "interval": "1m"},
            {"name": "request-duration", "thresholdRange": {"max": 500}, "interval": "30s"}
        ]
    }))
}

/// A cluster with the canary initialized and a new revision progressing at weight `w`.
fn progressing_at(w: i32) -> Cluster {
    let mut c = Cluster::new(canary_spec());
    c.start_run();
    while c.status.canary_weight < w {
        c.tick_after(60);
    }
    assert_eq!(
        (c.phase(), c.status.canary_weight),
        (Some(Phase::Progressing), w)
    );
    c
}

#[test]
fn a_new_canary_creates_the_primary_and_services_first() {
    let c = Cluster::new(canary_spec());
    let d = c.decide();
    let (cmds, phase) = shape(without_gauges(d.commands));
    // Not the apex: it keeps serving the target's pods until the primary's are ready.
    assert_eq!(cmds, vec![Command::ApplyServices, Command::CreatePrimary]);
    assert_eq!(phase, Some(Phase::Initializing));
    assert_eq!(d.wake_at, Some(t0() + SignedDuration::from_secs(60)));
}

#[test]
fn a_ready_primary_completes_initialization() {
    let mut c = Cluster::new(canary_spec());
    c.tick();
    let (cmds, phase) = shape(c.tick());
    assert_eq!(
        cmds,
        vec![
            Command::ApplyApexService,
            Command::ScaleTarget { replicas: 0 },
            routes(100, 0),
            ev("Initialization done! podinfo.test")
        ]
    );
    assert_eq!(phase, Some(Phase::Initialized));
    assert_eq!(c.status.last_applied_spec.as_deref(), Some("v1"));
    assert_eq!(c.status.last_promoted_spec.as_deref(), Some("v1"));
    let promoted = c
        .status
        .conditions
        .iter()
        .find(|x| x.type_ == "Promoted")
        .unwrap();
    assert_eq!(
        (promoted.reason.as_str(), promoted.status),
        ("Initialized", flagger_core::api::ConditionStatus::True)
    );
    // Resting with nothing new: no commands, no status write, no wake-up.
    let d = c.decide();
    assert_eq!(without_gauges(d.commands), vec![]);
    assert_eq!(d.wake_at, None);
}

#[test]
fn an_unready_primary_is_reported_once_per_interval() {
    let mut c = Cluster::new(canary_spec());
    c.manual_readiness = true;
    c.tick();
    // Right after creation: not due, nothing to say.
    assert_eq!(c.tick(), vec![]);
    let (cmds, phase) = shape(c.tick_after(60));
    assert_eq!(
        cmds,
        vec![warn(
            "podinfo-primary.test not ready: waiting for rollout to finish: 0 of 2 (readyThreshold 100%) updated replicas are available"
        )]
    );
    assert_eq!(phase, Some(Phase::Initializing));
    assert_eq!(c.tick_after(30), vec![]);
}

#[test]
fn the_apex_moves_to_the_primary_only_once_it_is_ready() {
    let mut c = Cluster::new(canary_spec());
    c.manual_readiness = true;
    c.tick();
    // Waiting for the primary: the apex (maybe the user's Service) stays where it is.
    let waiting = c.tick_after(60);
    assert!(!waiting.contains(&Command::ApplyApexService), "{waiting:?}");
    assert!(!c.apex_on_primary);
    c.make_primary_ready();
    let (cmds, phase) = shape(c.tick());
    assert_eq!(cmds[0], Command::ApplyApexService);
    assert_eq!(phase, Some(Phase::Initialized));
}

#[test]
fn with_analysis_skipped_the_apex_moves_without_a_readiness_check() {
    let mut spec = canary_spec();
    spec.skip_analysis = Some(true);
    let mut c = Cluster::new(spec);
    c.manual_readiness = true;
    c.tick();
    let (cmds, phase) = shape(c.tick());
    assert_eq!(
        cmds,
        vec![
            Command::ApplyApexService,
            Command::ScaleTarget { replicas: 0 },
            routes(100, 0),
            ev("Initialization done! podinfo.test")
        ]
    );
    assert_eq!(phase, Some(Phase::Initialized));
}

#[test]
fn a_resting_canary_moves_a_stray_apex_back_only_to_a_serving_primary() {
    let mut c = Cluster::new(canary_spec());
    c.tick();
    c.tick();
    assert_eq!(c.phase(), Some(Phase::Initialized));
    // Someone pointed the apex elsewhere while the primary is rolling.
    c.apex_on_primary = false;
    c.primary.as_mut().unwrap().available_replicas = 0;
    assert_eq!(c.tick(), vec![]);
    c.make_primary_ready();
    assert_eq!(c.tick(), vec![Command::ApplyApexService]);
}

#[test]
fn a_new_revision_scales_the_canary_up_at_once() {
    let mut c = Cluster::new(canary_spec());
    c.tick();
    c.tick();
    c.new_revision("v2");
    let (cmds, phase) = shape(c.tick_after(1));
    assert_eq!(
        cmds,
        vec![
            ev("New revision detected! Scaling up podinfo.test"),
            Command::ScaleTarget { replicas: 2 }
        ]
    );
    assert_eq!(phase, Some(Phase::Progressing));
    assert_eq!(c.status.last_applied_spec.as_deref(), Some("v2"));
    assert_eq!(c.status.last_promoted_spec.as_deref(), Some("v1"));
}

#[test]
fn an_early_reconcile_changes_nothing() {
    let mut c = progressing_at(10);
    let before = c.status.clone();
    let d = c.decide();
    assert_eq!(without_gauges(d.commands), vec![]);
    assert_eq!(
        d.wake_at,
        Some(before.last_transition_time.unwrap() + SignedDuration::from_secs(60))
    );
    c.now += SignedDuration::from_secs(59);
    assert_eq!(c.tick(), vec![]);
    assert_eq!(c.status, before);
}

#[test]
fn the_first_analysis_step_runs_pre_rollout_and_moves_to_the_first_weight() {
    let mut c = progressing_at(0);
    let (cmds, phase) = shape(c.tick_after(60));
    assert_eq!(
        cmds,
        vec![
            ev("Starting canary analysis for podinfo.test"),
            routes(90, 10),
            ev("Advance podinfo.test canary weight 10")
        ]
    );
    assert_eq!(phase, Some(Phase::Progressing));
}

#[test]
fn passing_metrics_advance_the_weight_and_are_recorded() {
    let mut c = progressing_at(10);
    c.metrics
        .insert("request-duration".into(), MetricAnswer::Value(250.0));
    assert_eq!(without_gauges(c.decide().commands), vec![], "not due yet");
    c.now += SignedDuration::from_secs(60);
    let (cmds, _) = shape(without_gauges(c.decide().commands));
    assert_eq!(
        cmds,
        vec![
            recorded("request-success-rate", 100.0),
            recorded("request-duration", 0.25),
            routes(80, 20),
            ev("Advance podinfo.test canary weight 20"),
        ]
    );
}

#[test]
fn metrics_are_requested_together_with_their_context() {
    let mut c = progressing_at(10);
    c.now += SignedDuration::from_secs(60);
    let Outcome::Need(requests) = decide(&c.snapshot()) else {
        panic!("expected a request for metrics")
    };
    let names: Vec<_> = requests
        .iter()
        .map(|r| match r {
            Request::Metric(m) => (
                m.name.clone(),
                m.source.clone(),
                m.interval.clone(),
                m.target.clone(),
            ),
            Request::Hook(_) => panic!("no hooks configured"),
        })
        .collect();
    assert_eq!(
        names,
        vec![
            (
                "request-success-rate".into(),
                MetricSource::RequestSuccessRate,
                "1m".into(),
                "podinfo".into()
            ),
            (
                "request-duration".into(),
                MetricSource::RequestDuration,
                "30s".into(),
                "podinfo".into()
            ),
        ]
    );
}

#[test]
fn a_failing_metric_halts_and_counts_a_failed_check() {
    let mut c = progressing_at(10);
    c.metrics
        .insert("request-success-rate".into(), MetricAnswer::Value(95.0));
    let (cmds, phase) = shape(c.tick_after(60));
    assert_eq!(
        cmds,
        vec![
            recorded("request-success-rate", 95.0),
            warn("Halt podinfo.test advancement success rate 95.00% < 99%"),
        ]
    );
    assert_eq!(phase, Some(Phase::Progressing));
    assert_eq!((c.status.failed_checks, c.status.canary_weight), (1, 10));
}

#[test]
fn latency_no_data_and_query_errors_each_fail_with_their_own_message() {
    let mut c = progressing_at(10);
    c.metrics
        .insert("request-duration".into(), MetricAnswer::Value(1500.0));
    let cmds = c.tick_after(60);
    assert!(
        cmds.contains(&warn(
            "Halt podinfo.test advancement request duration 1.5s > 500ms"
        )),
        "{cmds:?}"
    );

    let mut c = progressing_at(10);
    c.metrics.insert(
        "request-success-rate".into(),
        MetricAnswer::NoValues("no values found".into()),
    );
    let cmds = c.tick_after(60);
    assert!(cmds.contains(&warn(
        "Halt advancement no values found for istio metric request-success-rate probably podinfo.test is not receiving traffic: no values found"
    )));

    let mut c = progressing_at(10);
    c.metrics
        .insert("request-success-rate".into(), MetricAnswer::Value(f64::NAN));
    let cmds = c.tick_after(60);
    assert!(cmds.iter().any(|x| matches!(x, Command::EmitEvent { message, .. } if message.starts_with("Halt advancement no values found"))));
    assert_eq!(c.status.failed_checks, 1);

    let mut c = progressing_at(10);
    c.metrics.insert(
        "request-success-rate".into(),
        MetricAnswer::Error("connection refused".into()),
    );
    let cmds = c.tick_after(60);
    assert!(cmds.contains(&warn("Prometheus query failed: connection refused")));
    assert_eq!(c.status.failed_checks, 1);
}

/// The analysis step at weight 10 of a Canary whose only metric is `metric`, answered `value`.
fn step_with_metric(metric: serde_json::Value, value: f64) -> Vec<Command> {
    let name = metric["name"].as_str().unwrap().to_string();
    let mut c = Cluster::new(spec(json!({
        "interval": "1m", "threshold": 2, "maxWeight": 50, "stepWeight": 10, "metrics": [metric]
    })));
    c.start_run();
    c.tick_after(60);
    assert_eq!(c.status.canary_weight, 10);
    c.metrics.insert(name, MetricAnswer::Value(value));
    shape(c.tick_after(60)).0
}

#[test]
fn latency_without_a_threshold_fails_on_one_millisecond() {
    let metric = json!({"name": "request-duration", "interval": "30s"});
    assert_eq!(
        step_with_metric(metric.clone(), 1.0),
        vec![
            recorded("request-duration", 0.001),
            warn("Halt podinfo.test advancement request duration 1ms > 0s"),
        ]
    );
    assert_eq!(
        step_with_metric(metric, 0.0),
        vec![
            recorded("request-duration", 0.0),
            routes(80, 20),
            ev("Advance podinfo.test canary weight 20"),
        ],
        "0 ms is not above 0"
    );
}

#[test]
fn success_rate_without_a_threshold_fails_only_below_zero() {
    let metric = json!({"name": "request-success-rate", "interval": "1m"});
    assert_eq!(
        step_with_metric(metric.clone(), 0.0),
        vec![
            recorded("request-success-rate", 0.0),
            routes(80, 20),
            ev("Advance podinfo.test canary weight 20"),
        ]
    );
    assert_eq!(
        step_with_metric(metric, -1.0),
        vec![
            recorded("request-success-rate", -1.0),
            warn("Halt podinfo.test advancement success rate -1.00% < 0%"),
        ]
    );
}

#[test]
fn a_threshold_range_overrides_threshold() {
    let metric =
        json!({"name": "request-duration", "threshold": 100, "thresholdRange": {"max": 500}});
    assert_eq!(
        step_with_metric(metric.clone(), 250.0),
        vec![
            recorded("request-duration", 0.25),
            routes(80, 20),
            ev("Advance podinfo.test canary weight 20"),
        ],
        "250 ms is above the ignored threshold, within the range"
    );
    assert_eq!(
        step_with_metric(metric, 501.0),
        vec![
            recorded("request-duration", 0.501),
            warn("Halt podinfo.test advancement request duration 501ms > 500ms"),
        ]
    );
}

#[test]
fn a_template_metric_threshold_is_a_maximum() {
    let metric = json!({"name": "errors", "templateRef": {"name": "errors"}, "threshold": 5});
    assert_eq!(
        step_with_metric(metric.clone(), 5.0),
        vec![
            recorded("errors", 5.0),
            routes(80, 20),
            ev("Advance podinfo.test canary weight 20"),
        ]
    );
    assert_eq!(
        step_with_metric(metric, 5.5),
        vec![
            recorded("errors", 5.5),
            warn("Halt podinfo.test advancement errors 5.50 > 5"),
        ]
    );
}

#[test]
fn reaching_the_threshold_rolls_back_on_the_next_step() {
    let mut c = progressing_at(10);
    c.metrics
        .insert("request-success-rate".into(), MetricAnswer::Value(50.0));
    c.tick_after(60);
    c.tick_after(60);
    assert_eq!(c.status.failed_checks, 2);
    assert_eq!(c.phase(), Some(Phase::Progressing));
    let (cmds, phase) = shape(c.tick_after(60));
    assert_eq!(
        cmds,
        vec![
            warn("Rolling back podinfo.test failed checks threshold reached 2"),
            routes(100, 0),
            warn("Canary failed! Scaling down podinfo.test"),
            Command::ScaleTarget { replicas: 0 },
            Command::RecordMetric(MetricRecord::Failure {
                strategy: "canary".into(),
                analysis_status: "completed".into()
            }),
        ]
    );
    assert_eq!(phase, Some(Phase::Failed));
    // Failed is a resting phase: nothing happens until a new revision.
    assert_eq!(c.tick_after(600), vec![]);
}

#[test]
fn a_revision_arriving_mid_analysis_restarts_at_once() {
    let mut c = progressing_at(30);
    c.new_revision("v3");
    let (cmds, phase) = shape(c.tick_after(1));
    assert_eq!(
        cmds,
        vec![
            ev("New revision detected! Restarting analysis for podinfo.test"),
            routes(100, 0)
        ]
    );
    assert_eq!(phase, Some(Phase::Progressing));
    assert_eq!((c.status.canary_weight, c.status.failed_checks), (0, 0));
    assert_eq!(c.status.last_applied_spec.as_deref(), Some("v3"));
}

#[test]
fn a_failed_canary_keeps_a_new_revision() {
    let mut c = progressing_at(10);
    c.metrics
        .insert("request-success-rate".into(), MetricAnswer::Value(50.0));
    for _ in 0..3 {
        c.tick_after(60);
    }
    assert_eq!(c.phase(), Some(Phase::Failed));
    c.metrics.clear();
    c.new_revision("v3");
    c.tick_after(5);
    assert_eq!(c.phase(), Some(Phase::Progressing));
    assert_eq!(c.status.last_applied_spec.as_deref(), Some("v3"));
}

#[test]
fn reverting_the_target_to_the_primary_version_starts_nothing() {
    let mut c = progressing_at(10);
    c.metrics
        .insert("request-success-rate".into(), MetricAnswer::Value(50.0));
    for _ in 0..3 {
        c.tick_after(60);
    }
    c.new_revision("v1");
    assert_eq!(c.tick_after(5), vec![]);
    assert_eq!(c.phase(), Some(Phase::Failed));
}

#[test]
fn the_weight_never_overshoots_max_weight_and_promotion_follows() {
    let mut c = Cluster::new(spec(
        json!({"interval": "1m", "threshold": 2, "maxWeight": 50, "stepWeight": 20}),
    ));
    c.start_run();
    let mut weights = vec![];
    while c.phase() == Some(Phase::Progressing) {
        c.tick_after(60);
        weights.push(c.status.canary_weight);
    }
    assert_eq!(weights, vec![20, 40, 50, 50]);
    assert_eq!(c.phase(), Some(Phase::Promoting));
}

#[test]
fn step_weights_follow_the_ladder() {
    let mut c = Cluster::new(spec(
        json!({"interval": "1m", "threshold": 2, "stepWeights": [1, 5, 25, 60]}),
    ));
    c.start_run();
    let mut weights = vec![];
    while c.phase() == Some(Phase::Progressing) {
        c.tick_after(60);
        weights.push(c.status.canary_weight);
    }
    assert_eq!(weights, vec![1, 5, 25, 60, 60]);
}

#[test]
fn mirroring_mirrors_one_step_before_shifting_traffic() {
    let mut c = Cluster::new(spec(
        json!({"interval": "1m", "threshold": 2, "maxWeight": 50, "stepWeight": 25, "mirror": true}),
    ));
    c.start_run();
    let mut seen = vec![];
    for _ in 0..3 {
        c.tick_after(60);
        let r = c.routes.unwrap();
        seen.push((r.canary_weight, r.mirrored));
    }
    assert_eq!(seen, vec![(0, true), (25, false), (50, false)]);
}

#[test]
fn confirm_rollout_closed_waits_and_alerts_once() {
    let mut s = canary_spec();
    let a = s.analysis.as_mut().unwrap();
    a.webhooks = Some(vec![
        serde_json::from_value(
            json!({"name": "gate", "type": "confirm-rollout", "url": "http://127.0.0.1:1/gate"}),
        )
        .unwrap(),
    ]);
    a.alerts = Some(vec![
        serde_json::from_value(
            json!({"name": "on-call", "severity": "warn", "providerRef": {"name": "slack"}}),
        )
        .unwrap(),
    ]);
    let mut c = Cluster::new(s);
    c.tick();
    c.tick();
    c.hooks
        .insert("gate".into(), HookAnswer::Failed("closed".into()));
    c.new_revision("v2");
    let (cmds, phase) = shape(c.tick_after(1));
    assert_eq!(
        cmds,
        vec![
            warn("Halt podinfo.test advancement waiting for approval gate"),
            Command::SendAlert(Alert {
                destination: AlertDestination::Provider {
                    alert: "on-call".into(),
                    name: "slack".into(),
                    namespace: "test".into()
                },
                severity: AlertSeverity::Warn,
                message: "Canary is waiting for approval.".into(),
                fields: vec![],
            }),
        ]
    );
    assert_eq!(phase, Some(Phase::Waiting));
    // Still closed an interval later: retried quietly.
    let (cmds, phase) = shape(c.tick_after(60));
    assert_eq!((cmds, phase), (vec![], Some(Phase::Waiting)));
    c.hooks.insert("gate".into(), HookAnswer::Passed);
    let (cmds, phase) = shape(c.tick_after(60));
    assert_eq!(
        cmds,
        vec![
            ev("Confirm-rollout check gate passed"),
            ev("New revision detected! Scaling up podinfo.test"),
            Command::SendAlert(Alert {
                destination: AlertDestination::Provider {
                    alert: "on-call".into(),
                    name: "slack".into(),
                    namespace: "test".into()
                },
                severity: AlertSeverity::Info,
                message: "New revision detected, progressing canary analysis.".into(),
                fields: vec![],
            })
            .clone(),
            Command::ScaleTarget { replicas: 2 },
        ]
        .into_iter()
        .filter(|x| !matches!(x, Command::SendAlert(_)))
        .collect::<Vec<_>>(),
        "info alerts do not reach a warn-level provider"
    );
    assert_eq!(phase, Some(Phase::Progressing));
}

#[test]
fn confirm_promotion_closed_parks_in_waiting_promotion_while_analysis_continues() {
    let mut s = spec(
        json!({"interval": "1m", "threshold": 2, "maxWeight": 20, "stepWeight": 10,
        "webhooks": [{"name": "promote", "type": "confirm-promotion", "url": "http://127.0.0.1:1/p"}]}),
    );
    s.analysis.as_mut().unwrap().metrics = Some(vec![
        serde_json::from_value(
            json!({"name": "request-success-rate", "thresholdRange": {"min": 99}}),
        )
        .unwrap(),
    ]);
    let mut c = Cluster::new(s);
    c.start_run();
    c.hooks
        .insert("promote".into(), HookAnswer::Failed("no".into()));
    c.tick_after(60);
    c.tick_after(60);
    assert_eq!(c.status.canary_weight, 20);
    let (cmds, phase) = shape(c.tick_after(60));
    assert_eq!(
        cmds,
        vec![
            recorded("request-success-rate", 100.0),
            warn("Halt podinfo.test advancement waiting for promotion approval promote"),
        ]
    );
    assert_eq!(phase, Some(Phase::WaitingPromotion));
    let (cmds, phase) = shape(c.tick_after(60));
    assert_eq!(cmds, vec![recorded("request-success-rate", 100.0)]);
    assert_eq!(phase, Some(Phase::WaitingPromotion));
    c.hooks.insert("promote".into(), HookAnswer::Passed);
    let (cmds, phase) = shape(c.tick_after(60));
    assert_eq!(
        cmds,
        vec![
            recorded("request-success-rate", 100.0),
            ev("Confirm-promotion check promote passed"),
            ev("Copying podinfo.test template spec to podinfo-primary.test"),
            Command::PromoteTemplate,
        ]
    );
    assert_eq!(phase, Some(Phase::Promoting));
}

#[test]
fn a_steps_hooks_are_requested_together_in_order_with_flaggers_payload() {
    let s = spec(json!({"interval": "1m", "threshold": 2, "stepWeight": 10,
    "webhooks": [
        {"name": "load", "type": "pre-rollout", "url": "http://127.0.0.1:1/a", "timeout": "5s", "metadata": {"cmd": "hey"}},
        {"name": "smoke", "type": "pre-rollout", "url": "http://127.0.0.1:1/b"}
    ]}));
    let mut c = Cluster::new(s);
    c.start_run();
    c.now += SignedDuration::from_secs(60);
    let Outcome::Need(requests) = decide(&c.snapshot()) else {
        panic!("expected a hook request")
    };
    let [Request::Hook(call), Request::Hook(next)] = requests.as_slice() else {
        panic!("both pre-rollout hooks at once: {requests:?}")
    };
    assert_eq!((call.name.as_str(), next.name.as_str()), ("load", "smoke"));
    assert_eq!(call.timeout, SignedDuration::from_secs(5));
    assert_eq!(call.payload.name, "podinfo");
    assert_eq!(call.payload.namespace, "test");
    assert_eq!(call.payload.phase, "Progressing");
    assert_eq!(
        call.payload.metadata.get("cmd").map(String::as_str),
        Some("hey")
    );
    assert!(!call.payload.checksum.is_empty());
}

/// A Canary with `n` pre-rollout hooks `h00`, `h01`, …, started and due for its first step.
fn with_pre_rollout_hooks(n: usize) -> Cluster {
    let hooks: Vec<_> = (0..n)
        .map(|i| json!({"name": format!("h{i:02}"), "type": "pre-rollout", "url": "http://127.0.0.1:1/"}))
        .collect();
    let mut c = Cluster::new(spec(
        json!({"interval": "1m", "threshold": 2, "stepWeight": 10, "webhooks": hooks}),
    ));
    c.start_run();
    c.now += SignedDuration::from_secs(60);
    c
}

fn keys(requests: &[Request]) -> Vec<String> {
    requests.iter().map(Request::key).collect()
}

fn pre_rollout_keys(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("pre-rollout/h{i:02}")).collect()
}

#[test]
fn seventy_pre_rollout_hooks_are_asked_in_one_pass() {
    let c = with_pre_rollout_hooks(70);
    let Outcome::Need(requests) = decide(&c.snapshot()) else {
        panic!("expected hook requests")
    };
    assert_eq!(keys(&requests), pre_rollout_keys(0..70));

    let (decision, passes, called) = c.decide_counting();
    assert_eq!((passes, called), (2, pre_rollout_keys(0..70)));
    let mut expected = vec![ev("Starting canary analysis for podinfo.test")];
    expected.extend((0..70).map(|i| ev(&format!("Pre-rollout check h{i:02} passed"))));
    expected.extend([routes(90, 10), ev("Advance podinfo.test canary weight 10")]);
    assert_eq!(shape(without_gauges(decision.commands)).0, expected);
}

#[test]
fn no_hook_after_a_failing_one_is_called() {
    let mut c = with_pre_rollout_hooks(70);
    c.hooks
        .insert("h05".into(), HookAnswer::Failed("500 boom".into()));
    let (decision, passes, called) = c.decide_counting();
    assert_eq!(
        (passes, called),
        (2, pre_rollout_keys(0..6)),
        "called in order up to the failure, as Flagger does"
    );
    let mut expected = vec![ev("Starting canary analysis for podinfo.test")];
    expected.extend((0..5).map(|i| ev(&format!("Pre-rollout check h{i:02} passed"))));
    expected.push(warn(
        "Halt podinfo.test advancement pre-rollout check h05 failed 500 boom",
    ));
    assert_eq!(shape(without_gauges(decision.commands)).0, expected);
}

#[test]
fn a_partly_answered_step_asks_from_the_first_missing_hook_on() {
    let c = with_pre_rollout_hooks(5);
    let mut snap = c.snapshot();
    for key in ["pre-rollout/h00", "pre-rollout/h01", "pre-rollout/h03"] {
        snap.answers.hooks.insert(key.into(), HookAnswer::Passed);
    }
    let Outcome::Need(requests) = decide(&snap) else {
        panic!("expected hook requests")
    };
    assert_eq!(keys(&requests), pre_rollout_keys(2..5));

    snap.answers
        .hooks
        .insert("pre-rollout/h02".into(), HookAnswer::Failed("no".into()));
    assert!(
        matches!(decide(&snap), Outcome::Decided(_)),
        "the hooks after a failure are not needed"
    );
}

#[test]
fn rollback_hooks_are_called_until_one_signals_a_rollback() {
    let s = spec(json!({"interval": "1m", "threshold": 5, "stepWeight": 10,
    "webhooks": [
        {"name": "a", "type": "rollback", "url": "http://127.0.0.1:1/a"},
        {"name": "b", "type": "rollback", "url": "http://127.0.0.1:1/b"}
    ]}));
    let mut c = Cluster::new(s);
    c.start_run();
    for name in ["a", "b"] {
        c.hooks
            .insert(name.into(), HookAnswer::Failed("idle".into()));
    }
    c.tick_after(60);
    assert_eq!(c.status.canary_weight, 10, "both idle: the run goes on");
    c.now += SignedDuration::from_secs(60);
    let Outcome::Need(requests) = decide(&c.snapshot()) else {
        panic!("expected hook requests")
    };
    assert_eq!(keys(&requests), vec!["rollback/a", "rollback/b"]);

    c.hooks.insert("a".into(), HookAnswer::Passed);
    let (decision, passes, called) = c.decide_counting();
    assert_eq!((passes, called), (2, vec!["rollback/a".to_string()]));
    assert_eq!(
        Cluster::events(&decision.commands)[..2],
        [
            "Rollback check a passed",
            "Rolling back podinfo.test manual webhook invoked"
        ]
    );

    c.hooks
        .insert("a".into(), HookAnswer::Failed("idle".into()));
    c.hooks.insert("b".into(), HookAnswer::Passed);
    let (decision, passes, called) = c.decide_counting();
    assert_eq!(
        (passes, called),
        (2, vec!["rollback/a".to_string(), "rollback/b".to_string()])
    );
    assert_eq!(
        Cluster::events(&decision.commands)[..3],
        [
            "Rollback hook a not signaling a rollback",
            "Rollback check b passed",
            "Rolling back podinfo.test manual webhook invoked"
        ]
    );
}

#[test]
fn a_failing_pre_rollout_hook_counts_a_failed_check_and_does_not_advance() {
    let s = spec(json!({"interval": "1m", "threshold": 2, "stepWeight": 10,
        "webhooks": [{"name": "load", "type": "pre-rollout", "url": "http://127.0.0.1:1/a"}]}));
    let mut c = Cluster::new(s);
    c.start_run();
    c.hooks
        .insert("load".into(), HookAnswer::Failed("500 boom".into()));
    let (cmds, _) = shape(c.tick_after(60));
    assert_eq!(
        cmds,
        vec![
            ev("Starting canary analysis for podinfo.test"),
            warn("Halt podinfo.test advancement pre-rollout check load failed 500 boom"),
        ]
    );
    assert_eq!((c.status.failed_checks, c.status.canary_weight), (1, 0));
}

#[test]
fn a_rollback_hook_that_answers_rolls_back() {
    let s = spec(json!({"interval": "1m", "threshold": 5, "stepWeight": 10,
        "webhooks": [{"name": "abort", "type": "rollback", "url": "http://127.0.0.1:1/r"}]}));
    let mut c = Cluster::new(s);
    c.start_run();
    c.hooks
        .insert("abort".into(), HookAnswer::Failed("closed".into()));
    let cmds = c.tick_after(60);
    assert!(cmds.contains(&ev("Rollback hook abort not signaling a rollback")));
    c.hooks.insert("abort".into(), HookAnswer::Passed);
    let (cmds, phase) = shape(c.tick_after(60));
    assert_eq!(cmds[0], warn("Rollback check abort passed"));
    assert_eq!(
        cmds[1],
        warn("Rolling back podinfo.test manual webhook invoked")
    );
    assert_eq!(phase, Some(Phase::Failed));
}

/// Flagger's rollback announces a reached threshold whatever triggered it: a manual rollback
/// with the failed checks already at the threshold says both.
#[test]
fn a_manual_rollback_at_the_threshold_also_says_the_threshold_was_reached() {
    let s = spec(json!({"interval": "1m", "threshold": 1, "stepWeight": 10,
        "webhooks": [{"name": "abort", "type": "rollback", "url": "http://127.0.0.1:1/r"}]}));
    let mut c = Cluster::new(s);
    c.start_run();
    c.status.failed_checks = 1;
    c.hooks.insert("abort".into(), HookAnswer::Passed);
    let (cmds, phase) = shape(c.tick_after(60));
    let events = Cluster::events(&cmds);
    assert_eq!(
        events[..3],
        [
            "Rollback check abort passed",
            "Rolling back podinfo.test manual webhook invoked",
            "Rolling back podinfo.test failed checks threshold reached 1",
        ]
    );
    assert_eq!(phase, Some(Phase::Failed));
}

#[test]
fn a_canary_past_its_progress_deadline_rolls_back() {
    let mut c = progressing_at(10);
    let t = c.target.as_mut().unwrap();
    t.available_replicas = 0;
    t.unavailable_since = Some(c.now);
    let cmds = c.tick_after(60);
    assert_eq!(
        c.phase(),
        Some(Phase::Progressing),
        "still within the deadline: {cmds:?}"
    );
    c.tick_after(600);
    assert_eq!(c.phase(), Some(Phase::Failed));
    let events = Cluster::events(&c.log);
    assert!(
        events.iter().any(|e| e.starts_with(
            "Rolling back podinfo.test progress deadline exceeded canary deployment podinfo.test not ready"
        )),
        "{events:?}"
    );
}

#[test]
fn skip_analysis_promotes_once_the_canary_is_ready() {
    let mut s = canary_spec();
    s.skip_analysis = Some(true);
    let mut c = Cluster::new(s);
    c.start_run();
    let (cmds, phase) = shape(c.tick_after(60));
    assert_eq!(
        cmds,
        vec![
            ev("Copying podinfo.test template spec to podinfo-primary.test"),
            Command::PromoteTemplate,
            Command::ScaleTarget { replicas: 0 },
            Command::RecordMetric(MetricRecord::Success {
                strategy: "canary".into(),
                analysis_status: "skipped".into()
            }),
            ev("Promotion completed! Canary analysis was skipped for podinfo.test"),
        ]
    );
    assert_eq!(phase, Some(Phase::Succeeded));
}

/// Flagger reconciles the primary's autoscaler from the target's when it skips the analysis too.
#[test]
fn skip_analysis_with_an_autoscaler_gives_the_primary_the_targets_bounds() {
    let mut s = canary_spec();
    s.skip_analysis = Some(true);
    s.autoscaler_ref = Some(
        serde_json::from_value(json!({"apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler", "name": "podinfo"}))
        .unwrap(),
    );
    let mut c = Cluster::new(s);
    c.start_run();
    let (cmds, _) = shape(c.tick_after(60));
    assert_eq!(
        cmds[..4],
        [
            ev("Copying podinfo.test template spec to podinfo-primary.test"),
            Command::PromoteTemplate,
            Command::ApplyPrimaryAutoscaler { promote: true },
            Command::ScaleTarget { replicas: 0 },
        ]
    );
}

#[test]
fn ab_testing_routes_matched_traffic_for_each_iteration_then_promotes() {
    let mut c = Cluster::new(spec(
        json!({"interval": "1m", "threshold": 2, "iterations": 2,
        "match": [{"headers": {"x-canary": {"exact": "insider"}}}]}),
    ));
    c.start_run();
    let mut seen = vec![];
    for _ in 0..4 {
        let cmds = c.tick_after(60);
        seen.push((
            c.phase().unwrap(),
            c.status.iterations,
            Cluster::events(&cmds).last().cloned().unwrap_or_default(),
        ));
    }
    assert_eq!(
        seen,
        vec![
            (
                Phase::Progressing,
                1,
                "Advance podinfo.test canary iteration 1/2".into()
            ),
            (
                Phase::Progressing,
                2,
                "Advance podinfo.test canary iteration 2/2".into()
            ),
            (
                Phase::Promoting,
                2,
                "Copying podinfo.test template spec to podinfo-primary.test".into()
            ),
            (
                Phase::Finalising,
                0,
                "Routing all traffic to primary".into()
            ),
        ]
    );
    assert_eq!(c.routes.unwrap().canary_weight, 0);
}

#[test]
fn finalising_scales_down_and_succeeds_with_post_rollout_hooks() {
    let mut c = Cluster::new(spec(
        json!({"interval": "1m", "threshold": 2, "stepWeight": 100,
        "webhooks": [{"name": "notify", "type": "post-rollout", "url": "http://127.0.0.1:1/n"}]}),
    ));
    c.tick();
    c.tick();
    c.new_revision("v2");
    for _ in 0..4 {
        c.tick_after(60);
    }
    assert_eq!(c.phase(), Some(Phase::Finalising));
    let (cmds, phase) = shape(c.tick_after(60));
    assert_eq!(cmds[0], Command::ScaleTarget { replicas: 0 });
    assert_eq!(
        cmds[1],
        Command::RecordMetric(MetricRecord::Success {
            strategy: "canary".into(),
            analysis_status: "completed".into()
        })
    );
    // Flagger calls the post-rollout hooks before it announces the promotion.
    assert_eq!(
        cmds[3],
        ev("Promotion completed! Scaling down podinfo.test")
    );
    let Command::RunPostRolloutHooks {
        phase: hook_phase,
        hooks,
    } = &cmds[2]
    else {
        panic!("{cmds:?}")
    };
    assert_eq!(
        (*hook_phase, hooks.len(), hooks[0].payload.phase.as_str()),
        (Phase::Succeeded, 1, "Succeeded")
    );
    assert_eq!(phase, Some(Phase::Succeeded));
    assert_eq!(c.status.last_promoted_spec.as_deref(), Some("v2"));
}

#[test]
fn an_invalid_spec_is_reported_once_and_blocks_nothing_else() {
    let mut c = Cluster::new(spec(
        json!({"interval": "1x", "threshold": 2, "stepWeight": 10}),
    ));
    let (cmds, _) = shape(c.tick());
    assert_eq!(
        cmds,
        vec![warn(
            "Canary podinfo.test is invalid: spec.analysis.interval: invalid duration \"1x\": unknown unit"
        )]
    );
    let blocked = c
        .status
        .conditions
        .iter()
        .find(|x| x.type_ == "Blocked")
        .unwrap();
    assert_eq!(blocked.reason, "InvalidSpec");
    assert_eq!(c.tick_after(60), vec![]);
    // Fixing the spec clears the condition and initialization begins.
    c.spec = canary_spec();
    c.tick();
    assert!(c.status.conditions.iter().all(|x| x.type_ != "Blocked"));
    assert_eq!(c.phase(), Some(Phase::Initializing));
}

/// Flagger YAML for what is not built yet is blocked with the real cause, once, and nothing else
/// happens: a Knative Canary (no `service`, a Knative Service target), a KEDA autoscaler, a
/// DaemonSet target.
#[test]
fn flagger_specs_not_supported_yet_are_blocked_with_their_cause() {
    let analysis = json!({"interval": "1m", "threshold": 5, "maxWeight": 50, "stepWeight": 10});
    let cases = [
        (
            json!({
                "provider": "knative",
                "targetRef": {"apiVersion": "serving.knative.dev/v1", "kind": "Service", "name": "podinfo"},
                "analysis": analysis,
            }),
            "Canary podinfo.test cannot be run here: spec.provider: provider \"knative\" is not supported yet (supported: istio, gatewayapi:v1, kubernetes, nginx)",
        ),
        (
            json!({
                "provider": "istio",
                "targetRef": {"apiVersion": "serving.knative.dev/v1", "kind": "Service", "name": "podinfo"},
                "analysis": analysis,
            }),
            "Canary podinfo.test cannot be run here: spec.targetRef.kind: Service targets are not supported yet (only Deployment)",
        ),
        (
            json!({
                "targetRef": {"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "podinfo"},
                "service": {"port": 9898},
                "analysis": analysis,
            }),
            "Canary podinfo.test cannot be run here: spec.targetRef.kind: DaemonSet targets are not supported yet (only Deployment)",
        ),
        (
            json!({
                "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
                "autoscalerRef": {"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "name": "podinfo"},
                "service": {"port": 9898},
                "analysis": analysis,
            }),
            "Canary podinfo.test cannot be run here: spec.autoscalerRef.kind: KEDA ScaledObject autoscalers are not supported yet (only HorizontalPodAutoscaler)",
        ),
    ];
    for (spec, message) in cases {
        let mut c = Cluster::new(serde_json::from_value(spec).unwrap());
        let (cmds, phase) = shape(c.tick());
        assert_eq!(cmds, vec![warn(message)]);
        assert_eq!(phase, None, "{message}");
        let blocked = c
            .status
            .conditions
            .iter()
            .find(|x| x.type_ == "Blocked")
            .unwrap();
        assert_eq!(
            (blocked.reason.as_str(), blocked.message.as_str()),
            ("NotSupported", message)
        );
        assert_eq!(c.tick_after(60), vec![], "{message}");
    }
}

/// A Canary without `service` for a provider that routes through Services is wrong, not
/// unsupported: the field is named.
#[test]
fn a_missing_service_is_invalid_for_the_supported_providers() {
    let mut c = Cluster::new(
        serde_json::from_value(json!({
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
            "analysis": {"interval": "1m", "threshold": 5, "stepWeight": 10},
        }))
        .unwrap(),
    );
    let (cmds, _) = shape(c.tick());
    assert_eq!(
        cmds,
        vec![warn(
            "Canary podinfo.test is invalid: spec.service: is required by the istio provider (the Services and routes are made from it)"
        )]
    );
    assert_eq!(c.status.conditions[0].reason, "InvalidSpec");
}

#[test]
fn a_missing_target_is_reported_once() {
    let mut c = Cluster::new(canary_spec());
    c.target = None;
    let (cmds, _) = shape(c.tick());
    assert_eq!(
        cmds,
        vec![warn(
            "deployment podinfo.test get query error: deployments.apps \"podinfo\" not found"
        )]
    );
    assert_eq!(c.tick_after(60), vec![]);
    c.target = Some(ready("v1", 2));
    c.tick();
    assert_eq!(c.phase(), Some(Phase::Initializing));
}

#[test]
fn suspend_freezes_the_run() {
    let mut c = progressing_at(10);
    c.spec.suspend = Some(true);
    assert_eq!(c.tick_after(600), vec![]);
    assert_eq!(c.status.canary_weight, 10);
}

#[test]
fn an_unready_canary_waits_without_counting_failures() {
    let mut c = progressing_at(10);
    *c.target.as_mut().unwrap() = unready("v2", 2);
    let (cmds, _) = shape(c.tick_after(60));
    assert_eq!(
        cmds,
        vec![warn(
            "canary deployment podinfo.test not ready: waiting for rollout to finish: 0 of 2 (readyThreshold 100%) updated replicas are available"
        )]
    );
    assert_eq!((c.status.failed_checks, c.status.canary_weight), (0, 10));
}

/// Flagger's config tracker: a required ConfigMap or Secret that does not exist stops the
/// primary's creation and, later, every revision check, until it exists. Said once here, with
/// a Blocked condition, in Flagger's words.
#[test]
fn a_missing_required_config_holds_the_canary_until_it_exists() {
    let mut c = Cluster::new(canary_spec());
    c.target.as_mut().unwrap().missing_configs = vec!["configmap/podinfo-env".into()];
    let (cmds, _) = shape(c.tick());
    assert_eq!(
        cmds,
        vec![warn(
            "createPrimaryDeployment failed: GetTargetConfigs failed: configmap podinfo-env.test get query error: configmaps \"podinfo-env\" not found"
        )]
    );
    let blocked = c.status.conditions.iter().find(|x| x.type_ == "Blocked");
    assert_eq!(blocked.map(|x| x.reason.as_str()), Some("ConfigNotFound"));
    assert_eq!(c.tick_after(60), vec![]);
    c.target.as_mut().unwrap().missing_configs.clear();
    let cmds = c.tick();
    assert!(cmds.contains(&Command::CreatePrimary), "{cmds:?}");
    c.tick();
    assert_eq!(c.phase(), Some(Phase::Initialized));
    assert!(c.status.conditions.iter().all(|x| x.type_ != "Blocked"));

    // Later, with the primary there: no prefix, and a new revision waits too.
    c.target.as_mut().unwrap().missing_configs = vec!["secret/podinfo-token".into()];
    c.new_revision("v2");
    let (cmds, phase) = shape(c.tick_after(1));
    assert_eq!(
        cmds,
        vec![warn(
            "GetTargetConfigs failed: secret podinfo-token.test get query error: secrets \"podinfo-token\" not found"
        )]
    );
    assert_eq!(phase, Some(Phase::Initialized));
    c.target.as_mut().unwrap().missing_configs.clear();
    c.tick_after(1);
    assert_eq!(c.phase(), Some(Phase::Progressing));
}

#[test]
fn deletion_with_revert_restores_the_target_then_lets_go() {
    let mut s = canary_spec();
    s.revert_on_deletion = Some(true);
    let mut c = Cluster::new(s);
    let cmds = c.tick();
    assert_eq!(cmds[0], Command::AddFinalizer);
    c.tick();
    assert_eq!(c.phase(), Some(Phase::Initialized));
    c.deleting = true;
    let (cmds, phase) = shape(c.tick());
    assert_eq!(
        cmds,
        vec![
            ev("Terminating canary podinfo.test"),
            Command::ScaleTarget { replicas: 2 }
        ]
    );
    assert_eq!(phase, Some(Phase::Terminating));
    let cmds = c.tick();
    assert_eq!(
        cmds,
        vec![
            Command::RevertApexService,
            routes(0, 100),
            ev("Terminated canary podinfo.test"),
            Command::RemoveFinalizer
        ]
    );
}

/// Flagger's `Finalize`: the target takes over at the primary's current size, also when it
/// still runs (mid-analysis) at another size; with an autoscaler the primary's size (the
/// autoscaler's last choice) is used too, not the autoscaler's minimum.
#[test]
fn deletion_with_revert_sizes_the_target_like_the_primary() {
    let mut s = canary_spec();
    s.revert_on_deletion = Some(true);
    let mut c = Cluster::new(s.clone());
    c.tick();
    c.tick();
    assert_eq!(c.phase(), Some(Phase::Initialized));
    c.primary.as_mut().unwrap().replicas = 5;
    c.target.as_mut().unwrap().replicas = 2;
    c.deleting = true;
    let (cmds, _) = shape(c.tick());
    assert_eq!(
        cmds,
        vec![
            ev("Terminating canary podinfo.test"),
            Command::ScaleTarget { replicas: 5 }
        ]
    );

    s.autoscaler_ref = Some(flagger_core::api::AutoscalerReference {
        name: "podinfo".into(),
        ..Default::default()
    });
    let mut c = Cluster::new(s);
    c.tick();
    c.tick();
    assert_eq!(c.phase(), Some(Phase::Initialized));
    c.primary.as_mut().unwrap().replicas = 7;
    c.target.as_mut().unwrap().autoscaler_min_replicas = Some(2);
    c.deleting = true;
    let (cmds, _) = shape(c.tick());
    assert_eq!(
        cmds,
        vec![
            ev("Terminating canary podinfo.test"),
            Command::ScaleTarget { replicas: 7 }
        ]
    );
}

#[test]
fn kubernetes_provider_runs_blue_green_without_routes() {
    let mut s = canary_spec();
    s.provider = Some("kubernetes".into());
    let mut c = Cluster::new(s);
    c.tick();
    c.tick();
    assert_eq!(c.phase(), Some(Phase::Initialized));
    assert!(
        c.log
            .iter()
            .all(|x| !matches!(x, Command::SetRoutes { .. }))
    );
    c.new_revision("v2");
    c.tick_after(1);
    let cmds = c.tick_after(60);
    assert_eq!(
        Cluster::events(&cmds)[..3],
        [
            "Progressive traffic is not supported when using the kubernetes provider".to_string(),
            "Setting canaryAnalysis.iterations: 10".to_string(),
            "Starting canary analysis for podinfo.test".to_string(),
        ]
    );
    // Iterations 2 to 10, the (route-less) switch, promotion, finalising, success.
    for _ in 0..13 {
        c.tick_after(60);
    }
    assert_eq!(c.phase(), Some(Phase::Succeeded));
    assert!(
        c.log
            .iter()
            .all(|x| !matches!(x, Command::SetRoutes { .. }))
    );
}

fn sticky_spec() -> flagger_core::CanarySpec {
    spec(json!({
        "interval": "1m", "threshold": 2, "maxWeight": 20, "stepWeight": 10,
        "sessionAffinity": {"cookieName": "flagger-cookie", "primaryCookieName": "flagger-primary"}
    }))
}

fn status_written(cmds: &[Command]) -> flagger_core::api::CanaryStatus {
    cmds.iter()
        .find_map(|c| match c {
            Command::WriteStatus(s) => Some(s.clone()),
            _ => None,
        })
        .expect("a status write")
}

#[test]
fn session_cookies_are_written_with_the_first_canary_traffic_and_expired_after_the_run() {
    let mut c = Cluster::new(sticky_spec());
    c.start_run();
    assert_eq!(
        c.status.session_affinity_cookie, None,
        "no canary traffic yet"
    );
    let cmds = c.tick_after(60);
    assert!(cmds.contains(&routes(90, 10)));
    let written = status_written(&cmds);
    let cookie = written
        .session_affinity_cookie
        .clone()
        .expect("canary cookie");
    let (name, value) = cookie.split_once('=').unwrap();
    assert_eq!(name, "flagger-cookie");
    assert_eq!(value.len(), 10);
    assert!(value.chars().all(|ch| ch.is_ascii_alphabetic()));
    let primary = written.primary_session_affinity_cookie.clone().unwrap();
    assert!(primary.starts_with("flagger-primary="));
    assert_ne!(primary.split_once('=').unwrap().1, value);

    // The same run keeps its cookie; the same inputs give the same cookie (replays agree).
    c.tick_after(60);
    assert_eq!(c.status.session_affinity_cookie.as_ref(), Some(&cookie));
    let mut again = Cluster::new(sticky_spec());
    again.start_run();
    again.tick_after(60);
    assert_eq!(again.status.session_affinity_cookie, Some(cookie.clone()));

    while c.phase() != Some(Phase::Succeeded) {
        c.tick_after(60);
    }
    assert_eq!(c.status.session_affinity_cookie, None);
    assert_eq!(
        c.status.previous_session_affinity_cookie,
        Some(cookie.clone())
    );
    assert_eq!(c.status.primary_session_affinity_cookie, Some(primary));

    // The next revision's run gets a cookie of its own.
    c.new_revision("v3");
    c.tick_after(1);
    c.tick_after(60);
    let next = c
        .status
        .session_affinity_cookie
        .clone()
        .expect("new run's cookie");
    assert_ne!(next, cookie);
    assert_eq!(c.status.previous_session_affinity_cookie, Some(cookie));
}

#[test]
fn session_affinity_with_the_kubernetes_provider_is_said_not_applied() {
    let mut s = sticky_spec();
    s.provider = Some("kubernetes".into());
    let mut c = Cluster::new(s);
    c.start_run();
    let cmds = c.tick_after(60);
    assert_eq!(
        Cluster::events(&cmds)[..4],
        [
            "Progressive traffic is not supported when using the kubernetes provider".to_string(),
            "Setting canaryAnalysis.iterations: 10".to_string(),
            flagger_core::policy::session_affinity_unsupported("kubernetes"),
            "Starting canary analysis for podinfo.test".to_string(),
        ]
    );
    for _ in 0..15 {
        c.tick_after(60);
    }
    assert_eq!(c.phase(), Some(Phase::Succeeded));
    assert_eq!(c.status.session_affinity_cookie, None);
    assert_eq!(c.status.previous_session_affinity_cookie, None);
}

#[test]
fn the_global_notifier_receives_alerts_when_the_canary_names_no_provider() {
    let mut c = Cluster::new(canary_spec());
    c.config.global_notifier = true;
    c.config.cluster_name = "prod-eu".into();
    c.tick();
    let cmds = c.tick();
    let alert = cmds.iter().find_map(|x| match x {
        Command::SendAlert(a) => Some(a.clone()),
        _ => None,
    });
    let alert = alert.expect("initialization alert");
    assert_eq!(alert.destination, AlertDestination::Global);
    assert_eq!(
        alert.message,
        "New Deployment detected, initialization completed."
    );
    assert_eq!(
        alert.fields.first(),
        Some(&("Cluster".to_string(), "prod-eu".to_string())),
        "Flagger names the cluster first"
    );
    assert!(
        alert
            .fields
            .iter()
            .any(|(k, v)| k == "Traffic routing" && v == "Weight step: 10 max: 50")
    );
}

#[test]
fn a_run_interrupted_after_scaling_the_canary_down_still_finishes() {
    // Finalising crashed right after `ScaleTarget{0}`: the status still says Finalising.
    let mut c = Cluster::new(spec(
        json!({"interval": "1m", "threshold": 2, "stepWeight": 100}),
    ));
    c.tick();
    c.tick();
    c.new_revision("v2");
    for _ in 0..4 {
        c.tick_after(60);
    }
    assert_eq!(c.phase(), Some(Phase::Finalising));
    c.apply(&Command::ScaleTarget { replicas: 0 });
    c.tick_after(60);
    assert_eq!(c.phase(), Some(Phase::Succeeded));

    // A rollback crashed right after `ScaleTarget{0}`: failed checks are still at the threshold.
    let mut c = progressing_at(10);
    c.metrics
        .insert("request-success-rate".into(), MetricAnswer::Value(50.0));
    c.tick_after(60);
    c.tick_after(60);
    c.apply(&Command::ScaleTarget { replicas: 0 });
    c.tick_after(60);
    assert_eq!(c.phase(), Some(Phase::Failed));
}

#[test]
fn a_canary_scaled_down_mid_analysis_is_brought_back_before_any_traffic() {
    let mut c = progressing_at(0);
    c.apply(&Command::ScaleTarget { replicas: 0 });
    let (cmds, phase) = shape(c.tick_after(60));
    assert_eq!(cmds, vec![Command::ScaleTarget { replicas: 2 }]);
    assert_eq!(phase, Some(Phase::Progressing));
    assert_eq!(c.routes.unwrap().canary_weight, 0);
}

#[test]
fn a_lost_status_write_after_a_weight_step_is_recorded_not_repeated() {
    let mut c = progressing_at(10);
    c.now += SignedDuration::from_secs(60);
    let d = c.decide();
    // Apply everything but the status write, as if it hit a conflict.
    for cmd in d
        .commands
        .iter()
        .filter(|x| !matches!(x, Command::WriteStatus(_)))
    {
        c.apply(cmd);
    }
    assert_eq!(
        (c.routes.unwrap().canary_weight, c.status.canary_weight),
        (20, 10)
    );
    let (cmds, phase) = shape(c.tick_after(1));
    assert_eq!(
        cmds,
        vec![],
        "the step already happened: only the status is repaired"
    );
    assert_eq!(
        (phase, c.status.canary_weight),
        (Some(Phase::Progressing), 20)
    );
    // The next step comes a full interval after the repair.
    assert_eq!(c.tick_after(59), vec![]);
    c.tick_after(1);
    assert_eq!(c.routes.unwrap().canary_weight, 30);
}

#[test]
fn a_revision_landing_during_initialization_is_analysed_not_taken_as_promoted() {
    let mut c = Cluster::new(canary_spec());
    c.manual_readiness = true;
    c.tick();
    c.new_revision("v2");
    c.make_primary_ready();
    c.tick_after(5);
    assert_eq!(c.phase(), Some(Phase::Initialized));
    assert_eq!(
        c.status.last_promoted_spec.as_deref(),
        Some("v1"),
        "the primary was copied from v1"
    );
    c.make_canary_ready();
    c.tick_after(1);
    assert_eq!(c.phase(), Some(Phase::Progressing), "v2 starts a run");
    assert_eq!(c.status.last_applied_spec.as_deref(), Some("v2"));
}

const ROUTE_NOT_READY: &str = "HTTPRoute podinfo.test parent gw is not ready (status: True, observed generation: 1, current generation: 2)";

#[test]
fn a_step_waits_for_the_routes_and_says_why_once_per_interval() {
    let mut c = progressing_at(10);
    c.routes_not_ready = Some(ROUTE_NOT_READY.into());
    // Not due: nothing to say, no step.
    assert_eq!(c.tick_after(30), vec![]);
    let (cmds, phase) = shape(c.tick_after(30));
    assert_eq!(cmds, vec![warn(ROUTE_NOT_READY)], "no analysis, no weight");
    assert_eq!(phase, Some(Phase::Progressing));
    assert_eq!(c.status.canary_weight, 10);
    assert_eq!(c.tick_after(30), vec![], "said once per interval");
    // Accepted: the next due step analyses and advances.
    c.routes_not_ready = None;
    let (cmds, _) = shape(c.tick_after(30));
    assert_eq!(
        cmds,
        vec![
            recorded("request-success-rate", 100.0),
            recorded("request-duration", 0.1),
            routes(80, 20),
            ev("Advance podinfo.test canary weight 20"),
        ]
    );
}

#[test]
fn a_new_revision_starts_no_run_until_the_routes_are_ready() {
    let mut c = Cluster::new(canary_spec());
    c.tick();
    c.tick();
    assert_eq!(c.phase(), Some(Phase::Initialized));
    c.routes_not_ready = Some(ROUTE_NOT_READY.into());
    c.new_revision("v2");
    let (cmds, phase) = shape(c.tick_after(60));
    assert_eq!(cmds, vec![warn(ROUTE_NOT_READY)]);
    assert_eq!(phase, Some(Phase::Initialized));
    c.routes_not_ready = None;
    let (cmds, phase) = shape(c.tick_after(60));
    assert_eq!(
        cmds,
        vec![
            ev("New revision detected! Scaling up podinfo.test"),
            Command::ScaleTarget { replicas: 2 },
        ]
    );
    assert_eq!(phase, Some(Phase::Progressing));
}

fn initialized() -> Cluster {
    let mut c = Cluster::new(canary_spec());
    c.tick();
    c.tick();
    assert_eq!(c.phase(), Some(Phase::Initialized));
    assert_eq!(
        c.tick_after(600),
        vec![],
        "an idle canary whose objects match writes nothing"
    );
    c
}

#[test]
fn drifted_services_at_rest_are_reapplied_once_without_a_status_write() {
    let mut c = initialized();
    c.drift.services = true;
    assert_eq!(c.tick_after(60), vec![Command::ApplyServices]);
    assert_eq!(c.tick_after(60), vec![], "repaired: nothing more");
    c.drift.apex = true;
    assert_eq!(c.tick_after(60), vec![Command::ApplyApexService]);
    assert_eq!(c.tick_after(60), vec![]);
}

#[test]
fn drifted_routes_at_rest_are_rewritten_with_all_traffic_on_the_primary() {
    let mut c = initialized();
    c.drift.routes = true;
    assert_eq!(c.tick_after(60), vec![routes(100, 0)]);
    assert_eq!(c.tick_after(60), vec![]);
    // Weights edited by hand while nothing runs (the canary has no pods) are put back too.
    c.routes = Some(flagger_core::Routes {
        primary_weight: 50,
        canary_weight: 50,
        mirrored: false,
    });
    assert_eq!(c.tick_after(60), vec![routes(100, 0)]);
    assert_eq!(c.tick_after(60), vec![]);
}

#[test]
fn every_kind_of_drift_at_once_is_repaired_in_one_reconcile() {
    let mut c = initialized();
    c.drift = flagger_core::snapshot::Drift {
        services: true,
        apex: true,
        routes: true,
    };
    assert_eq!(
        c.tick(),
        vec![
            Command::ApplyServices,
            Command::ApplyApexService,
            routes(100, 0)
        ]
    );
    assert!(c.drift.is_none());
}

#[test]
fn drifted_routes_mid_run_keep_the_current_weights_between_steps() {
    let mut c = progressing_at(20);
    c.drift.routes = true;
    // Not due: the objects are rewritten with the weights they send now, nothing else moves.
    assert_eq!(c.tick_after(10), vec![routes(80, 20)]);
    assert_eq!(c.status.canary_weight, 20);
    assert_eq!(c.tick_after(10), vec![]);
    // Drift found when a step is due: one write, with the step's weights.
    c.drift.routes = true;
    c.drift.services = true;
    let (cmds, phase) = shape(c.tick_after(40));
    assert_eq!(
        cmds,
        vec![
            Command::ApplyServices,
            recorded("request-success-rate", 100.0),
            recorded("request-duration", 0.1),
            routes(70, 30),
            ev("Advance podinfo.test canary weight 30"),
        ]
    );
    assert_eq!(phase, Some(Phase::Progressing));
}

#[test]
fn drifted_routes_keep_mirroring_while_it_runs() {
    let mut s = canary_spec();
    s.analysis.as_mut().unwrap().mirror = Some(true);
    let mut c = Cluster::new(s);
    c.start_run();
    c.tick_after(60);
    assert_eq!(c.routes.map(|r| r.mirrored), Some(true));
    c.drift.routes = true;
    assert_eq!(
        c.tick_after(10),
        vec![Command::SetRoutes {
            primary_weight: 100,
            canary_weight: 0,
            mirrored: true
        }]
    );
}

#[test]
fn drifted_routes_wait_for_the_primary_during_initialization() {
    let mut c = Cluster::new(canary_spec());
    c.manual_readiness = true;
    c.tick();
    c.routes = Some(flagger_core::Routes {
        primary_weight: 100,
        canary_weight: 0,
        mirrored: false,
    });
    c.drift = flagger_core::snapshot::Drift {
        services: true,
        apex: false,
        routes: true,
    };
    // The primary does not serve yet: Services are reconciled, routes are not (as in Flagger,
    // whose mesh router runs only once the primary is ready).
    let (cmds, phase) = shape(c.tick_after(60));
    assert_eq!(cmds[0], Command::ApplyServices);
    assert!(
        !cmds.iter().any(|x| matches!(x, Command::SetRoutes { .. })),
        "{cmds:?}"
    );
    assert_eq!(phase, Some(Phase::Initializing));
    c.make_primary_ready();
    let cmds = c.tick_after(60);
    assert!(cmds.contains(&routes(100, 0)), "{cmds:?}");
    assert!(!c.drift.routes);
}

#[test]
fn drift_is_left_alone_while_suspended_and_without_routes_for_kubernetes() {
    let mut c = progressing_at(10);
    c.spec.suspend = Some(true);
    c.drift.routes = true;
    c.drift.services = true;
    assert_eq!(c.tick_after(600), vec![]);

    let mut s = canary_spec();
    s.provider = Some("kubernetes".into());
    let mut c = Cluster::new(s);
    c.tick();
    c.tick();
    c.drift.routes = true;
    assert_eq!(c.tick_after(60), vec![], "no routing object to repair");
}
