//! The trace format's rules as documented in docs/trace-format.md.

use std::path::Path;

use flagger_core::Phase;
use flagger_sim::{Options, Trace, replay};
use serde_json::{Value, json};

fn promote() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/traces/promote.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn parse(v: &Value) -> Result<Trace, String> {
    Trace::parse("t.json", &v.to_string()).map_err(|e| e.to_string())
}

fn events(v: &Value) -> Vec<String> {
    let run = replay(&parse(v).unwrap(), &Options::default());
    assert!(run.violations.is_empty() && run.error.is_none());
    run.world.events.into_iter().map(|e| e.message).collect()
}

#[test]
fn recorded_answers_win_over_schedules() {
    let mut t = promote();
    // The schedule says healthy; a live run measured 42% at each step, a few milliseconds after
    // the step was due (as the operator wakes): each replayed step uses its step's sample.
    let samples: Vec<_> = (0..20)
        .map(|m| json!({"at": format!("{m}m5ms"), "key": "request-success-rate", "metric": {"result": "value", "value": 42.0}}))
        .collect();
    t["answers"] = json!(samples);
    let ev = events(&t);
    assert!(
        ev.iter().any(|e| e.contains("success rate 42.00% < 99%")),
        "{ev:?}"
    );
    let run = replay(&parse(&t).unwrap(), &Options::default());
    assert_eq!(run.final_phase(), Some(Phase::Failed));
}

#[test]
fn a_recorded_sample_far_from_a_step_is_not_used() {
    let mut t = promote();
    // One sample, more than half an interval (1m) away from every later step: only the step
    // nearest to it sees 42%; the schedule answers the others, and the canary is promoted.
    t["answers"] = json!([
        {"at": "4m5ms", "key": "request-success-rate", "metric": {"result": "value", "value": 42.0}}
    ]);
    let run = replay(&parse(&t).unwrap(), &Options::default());
    let failed = run
        .steps
        .iter()
        .flat_map(|s| &s.inputs.metrics)
        .filter(|m| m.answer == flagger_core::snapshot::MetricAnswer::Value(42.0))
        .count();
    assert_eq!(failed, 1);
    assert_eq!(run.final_phase(), Some(Phase::Succeeded));
}

#[test]
fn hooks_are_keyed_by_name_or_type_and_name() {
    for key in ["load-test", "rollout/load-test"] {
        let mut t = promote();
        t["webhooks"] =
            json!({ key: [{"at": "0s", "pass": false, "message": "load test failed"}] });
        let ev = events(&t);
        assert!(
            ev.iter()
                .any(|e| e.contains("external check load-test failed load test failed")),
            "{key}: {ev:?}"
        );
    }
}

#[test]
fn absolute_times_equal_offsets() {
    let mut a = promote();
    let mut b = promote();
    a["revisions"][1]["at"] = json!("2m");
    b["revisions"][1]["at"] = json!("2026-01-01T00:02:00Z");
    assert_eq!(events(&a), events(&b));
}

#[test]
fn template_hash_stands_in_for_the_template() {
    let mut t = promote();
    t["revisions"][1] = json!({"at": "2m", "templateHash": "recorded-hash"});
    let run = replay(&parse(&t).unwrap(), &Options::default());
    assert_eq!(run.final_phase(), Some(Phase::Succeeded));
    assert_eq!(run.world.primary.unwrap().template_hash, "recorded-hash");
}

#[test]
fn a_config_change_alone_starts_a_run() {
    let mut t = promote();
    t["revisions"][1] = json!({"at": "2m", "template": t["revisions"][0]["template"].clone(),
                                "configs": {"configmap/podinfo-config": "b2"}});
    let ev = events(&t);
    assert!(
        ev.iter()
            .any(|e| e.starts_with("New revision detected! Scaling up")),
        "{ev:?}"
    );
}

type Edit = Box<dyn Fn(&mut Value)>;

#[test]
fn malformed_fields_are_named() {
    let cases: Vec<(Edit, &str)> = vec![
        (
            Box::new(|t| t["version"] = json!(2)),
            "version: 2 is not supported",
        ),
        (
            Box::new(|t| t["start"] = json!("2026-13-01T00:00:00Z")),
            "start: \"2026-13-01T00:00:00Z\" is not an RFC 3339 time (such as \"2026-01-01T00:00:00Z\")",
        ),
        (
            Box::new(|t| t["surprise"] = json!(1)),
            "surprise: unknown field (known fields: version,",
        ),
        (
            Box::new(|t| t["metrics"]["request-duration"][0]["nan"] = json!(true)),
            "metrics.request-duration[0]: give exactly one of",
        ),
        (
            Box::new(|t| t["revisions"][1]["replicas"] = json!(3)),
            "revisions[1].replicas",
        ),
        (
            Box::new(|t| t["revisions"][0]["at"] = json!("1m")),
            "revisions[0].at",
        ),
        (
            Box::new(|t| t["revisions"][1]["at"] = json!("2 minutes")),
            "revisions[1].at: invalid duration",
        ),
        (
            Box::new(|t| t["readiness"]["rules"] = json!([{"workload": "canary", "from": "0s"}])),
            "readiness.rules[0]: missing delay",
        ),
        (
            Box::new(|t| t["faults"] = json!({"rates": {"conflict": 1.5}})),
            "faults.rates.conflict",
        ),
        (
            Box::new(|t| t["canary"]["kind"] = json!("Deployment")),
            "canary.kind",
        ),
        (
            Box::new(|t| t["canary"]["spec"]["analysis"]["interval"] = json!("1 minute")),
            "canary.spec.analysis.interval",
        ),
        (
            Box::new(|t| {
                t.as_object_mut().unwrap().remove("duration");
            }),
            "duration: missing",
        ),
        (
            Box::new(|t| t["metrics"]["request-duration"][0]["valeu"] = json!(1)),
            "metrics.request-duration[0].valeu: unknown field, did you mean value?",
        ),
        (
            Box::new(|t| t["durtion"] = json!("1h")),
            "durtion: unknown field, did you mean duration?",
        ),
        (
            Box::new(|t| t["canary"]["spec"]["analysis"]["stepWeigth"] = json!(10)),
            "canary.spec.analysis.stepWeigth: unknown field, did you mean stepWeight?",
        ),
        (
            Box::new(|t| t["canary"]["metadata"]["lables"] = json!({})),
            "canary.metadata.lables: unknown field, did you mean labels?",
        ),
        (
            Box::new(|t| {
                t["initial"] = json!({"status": {"phase": "Progressing", "canaryWieght": 10}})
            }),
            "initial.status.canaryWieght: unknown field, did you mean canaryWeight?",
        ),
        (
            Box::new(|t| t["metrics"]["request-sucess-rate"] = json!([])),
            "metrics.request-sucess-rate: \"request-sucess-rate\" is not a metric of the Canary, did you mean request-success-rate?",
        ),
        (
            Box::new(|t| t["webhooks"]["smoke"] = json!([])),
            "webhooks.smoke: \"smoke\" is not a webhook of the Canary",
        ),
        (
            Box::new(|t| {
                t["answers"] = json!([
                    {"at": "0s", "key": "request-duration", "metric": {"result": "value", "value": 1.0}},
                    {"at": "0s", "key": "error-rate", "metric": {"result": "value", "value": 1.0}}
                ])
            }),
            "answers[1].key: \"error-rate\" is not a metric of the Canary",
        ),
        (
            Box::new(
                |t| t["answers"] = json!([{"at": "0s", "key": "confirm-promotion/gate", "hook": {"result": "passed"}}]),
            ),
            "answers[0].key: \"confirm-promotion/gate\" is not a webhook of the Canary",
        ),
        (
            Box::new(|t| t["duration"] = json!("8760h")),
            "duration: the replay would cover 8760h0m0s, more than the 31 days a replay may cover",
        ),
        (
            Box::new(|t| {
                t.as_object_mut().unwrap().remove("duration");
                t["end"] = json!("2027-01-01T00:00:00Z");
            }),
            "end: the replay would cover",
        ),
        (
            Box::new(|t| t["revisions"][0]["replicas"] = json!("two")),
            "revisions[0].replicas: expected a whole number, found the string \"two\"",
        ),
        (
            Box::new(|t| {
                t["readiness"]["rules"] =
                    json!([{"workload": "canry", "from": "0s", "delay": "1s"}])
            }),
            "readiness.rules[0].workload: \"canry\" is not one of canary, primary",
        ),
    ];
    for (edit, expected) in cases {
        let mut t = promote();
        edit(&mut t);
        let err = parse(&t).expect_err(expected);
        assert!(err.starts_with("t.json:"), "{err}");
        assert!(!err.contains('`'), "serde's wording: {err}");
        assert!(err.contains(expected), "expected {expected:?} in {err:?}");
        assert_eq!(err.lines().count(), 1);
    }
}

#[test]
fn a_canary_that_never_becomes_ready_is_rolled_back_at_the_deadline() {
    let mut t = promote();
    t["readiness"]["rules"] = json!([{"workload": "canary", "from": "1m", "never": true}]);
    let run = replay(&parse(&t).unwrap(), &Options::default());
    assert_eq!(run.final_phase(), Some(Phase::Failed));
    let failed = run
        .steps
        .iter()
        .find(|s| s.after.phase == Some(Phase::Failed))
        .unwrap();
    // Scaled up at 2m, progressDeadlineSeconds 60: the first analysis step after 3m rolls back.
    assert_eq!(failed.at.duration_since(run.start).as_secs(), 240);
}

#[test]
fn deleting_with_revert_on_deletion_gives_the_target_back() {
    let mut t = promote();
    t["canary"]["spec"]["revertOnDeletion"] = json!(true);
    t["deleteAt"] = json!("20m");
    let run = replay(&parse(&t).unwrap(), &Options::default());
    assert!(
        run.error.is_none() && run.violations.is_empty(),
        "{:?}",
        run.violations
    );
    assert!(run.world.removed);
    assert!(run.world.apex_reverted);
    let routes = run.world.routes.unwrap();
    assert_eq!((routes.primary_weight, routes.canary_weight), (0, 100));
    assert!(run.world.target.as_ref().unwrap().replicas > 0);
    let ev: Vec<_> = run
        .world
        .events
        .iter()
        .map(|e| e.message.as_str())
        .collect();
    assert!(ev.contains(&"Terminating canary podinfo.test"), "{ev:?}");
    assert!(ev.contains(&"Terminated canary podinfo.test"), "{ev:?}");
    assert!(flagger_sim::timeline::text(&run, false).contains("result: Canary deleted"));

    // Without the finalizer the object just goes: nothing is reverted.
    t["canary"]["spec"]["revertOnDeletion"] = json!(false);
    let run = replay(&parse(&t).unwrap(), &Options::default());
    assert!(run.world.removed && !run.world.apex_reverted);
    assert_eq!(run.world.target.as_ref().unwrap().replicas, 0);
}

#[test]
fn deletion_waits_for_a_slow_target_without_spinning() {
    let mut t = promote();
    t["canary"]["spec"]["revertOnDeletion"] = json!(true);
    t["readiness"] =
        json!({"delay": "10s", "rules": [{"workload": "canary", "from": "15m", "delay": "150s"}]});
    t["deleteAt"] = json!("20m");
    // Longer than the rollout, so the operator waits for the target instead of giving up on it.
    t["canary"]["spec"]["progressDeadlineSeconds"] = json!(600);
    let run = replay(&parse(&t).unwrap(), &Options::default());
    assert!(run.error.is_none(), "{:?}", run.error);
    assert!(run.world.removed);
    let deleted_at = run
        .steps
        .last()
        .unwrap()
        .at
        .duration_since(run.start)
        .as_secs();
    // The target needs 150s to come back; the finalizer goes at the first reconcile after that.
    assert!(
        (1350..=1350 + 60).contains(&deleted_at),
        "removed at +{deleted_at}s"
    );
}

#[test]
fn a_canary_reads_the_same_from_yaml_and_json() {
    use flagger_sim::trace::canary_from_text;
    let yaml = "apiVersion: flagger.app/v1beta1\nkind: Canary\nmetadata:\n  name: podinfo\n  namespace: test\nspec:\n  targetRef:\n    apiVersion: apps/v1\n    kind: Deployment\n    name: podinfo\n  service:\n    port: 9898\n  analysis:\n    interval: 30s\n    threshold: 3\n    stepWeights: [5, 10, 20]\n    metrics:\n      - name: request-success-rate\n        thresholdRange:\n          min: 99\n";
    let from_yaml = canary_from_text("c.yaml", yaml).unwrap();
    let json = serde_json::to_string(&from_yaml).unwrap();
    let from_json = canary_from_text("c.json", &json).unwrap();
    assert_eq!(from_yaml, from_json);
    assert_eq!(
        from_yaml.spec.analysis.unwrap().step_weights,
        Some(vec![5, 10, 20])
    );
    // The seed's v1alpha1 shape: `canaryAnalysis` instead of `analysis`.
    let seed = yaml
        .replace("flagger.app/v1beta1", "flagger.app/v1alpha1")
        .replace("  analysis:", "  canaryAnalysis:");
    let old = canary_from_text("seed.yaml", &seed).unwrap();
    assert!(old.spec.analysis.is_none());
    assert_eq!(old.spec.canary_analysis.unwrap().threshold, Some(3));
}

#[test]
fn an_override_without_namespace_keeps_the_traces() {
    let trace = parse(&promote()).unwrap();
    let yaml = "apiVersion: flagger.app/v1beta1\nkind: Canary\nmetadata:\n  name: podinfo\nspec:\n  targetRef:\n    name: podinfo\n  service:\n    port: 9898\n  analysis:\n    interval: 1m\n    stepWeight: 25\n";
    let canary = flagger_sim::trace::canary_from_text("o.yaml", yaml).unwrap();
    let over = trace.with_canary(canary, "o.yaml").unwrap();
    assert_eq!(over.canary.metadata.namespace, "test");
    let ev = replay(&over, &Options::default()).world.events;
    assert!(
        ev.iter()
            .any(|e| e.message == "Advance podinfo.test canary weight 25")
    );
    // And a trace's own Canary without namespace lives in `default`, as kubectl would put it.
    let mut t = promote();
    t["canary"]["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("namespace");
    assert_eq!(parse(&t).unwrap().canary.metadata.namespace, "default");
}

#[test]
fn a_revision_during_initialization_is_rolled_out_after_it() {
    // The primary takes 90 s to become ready; the new version lands at 60 s, while the operator
    // still initializes. The operator's periodic resync notices it once initialization is done.
    let mut t = promote();
    t["readiness"] = json!({"delay": "90s"});
    t["revisions"][1]["at"] = json!("60s");
    let run = replay(&parse(&t).unwrap(), &Options::default());
    assert_eq!(run.final_phase(), Some(Phase::Succeeded));
    let ev = events(&t);
    assert!(
        ev.iter()
            .any(|e| e.contains("New revision detected! Scaling up")),
        "{ev:?}"
    );
    // Without the resync (an interval longer than the trace) nothing would wake the operator.
    t["operator"]["controlLoopInterval"] = json!("1h");
    let stuck = replay(&parse(&t).unwrap(), &Options::default());
    assert_eq!(stuck.final_phase(), Some(Phase::Initialized));
}

#[test]
fn every_canary_of_flaggers_examples_loads_and_other_kinds_are_named() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/examples");
    let mut canaries = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let result = flagger_sim::trace::load_canary(&path);
        if text.contains("kind: Canary") {
            let c = result.unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(c.metadata.name, "podinfo");
            canaries += 1;
        } else {
            let err = result.unwrap_err().to_string();
            assert!(err.ends_with(", not a Canary"), "{err}");
        }
    }
    assert_eq!(canaries, 4);
    let err = flagger_sim::trace::load_canary(&dir.join("metric-template.yaml"))
        .unwrap_err()
        .to_string();
    assert!(
        err.ends_with("metric-template.yaml: holds a MetricTemplate, not a Canary"),
        "{err}"
    );
}

fn gate_closed_for(duration: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/traces/confirm-promotion-gate.json");
    let mut t: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    t["duration"] = json!(duration);
    t["webhooks"]["approve-promotion"] =
        json!([{"at": "0s", "pass": false, "message": "gate closed"}]);
    t
}

#[test]
fn a_month_at_a_closed_gate_keeps_one_step_for_the_wait_and_folds_it_in_one_line() {
    let run = replay(
        &parse(&gate_closed_for("744h")).unwrap(),
        &Options::default(),
    );
    assert_eq!(run.error, None);
    assert!(run.violations.is_empty());
    // One reconcile a minute for a month, held as a handful of steps.
    assert!(run.reconciles() > 44_000, "{}", run.reconciles());
    assert!(run.steps.len() < 20, "{}", run.steps.len());
    let text = flagger_sim::timeline::text(&run, false);
    assert!(
        text.contains("… 44631 identical reconciles (+10m0s to +744h0m0s): still WaitingPromotion at weight 50, gate confirm-promotion/approve-promotion closed (gate closed)"),
        "{text}"
    );
    assert!(
        // A step a minute, and a periodic resync ten seconds after each that changes nothing.
        text.contains("(89280 reconciles, 44641 changed something)"),
        "{text}"
    );
    let json: Value = serde_json::from_str(&flagger_sim::timeline::json(&run)).unwrap();
    assert_eq!(json["result"]["reconciles"], json!(89280));
    // Inputs the trace lacks are counted, not kept one per question.
    assert_eq!(
        json["missing"].as_array().unwrap().len(),
        1,
        "{}",
        json["missing"]
    );
    assert_eq!(json["missing"][0]["times"], json!(44637));
    let waiting = json["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["repeats"] == json!(44631))
        .expect("the folded wait in the JSON output");
    assert_eq!(waiting["repeatsFrom"], json!("2026-01-01T00:10:00Z"));
}

#[test]
fn the_reconcile_bound_scales_with_the_trace_up_to_a_million() {
    use flagger_sim::engine::{MAX_RECONCILES, reconcile_bound};
    use jiff::SignedDuration;
    assert_eq!(reconcile_bound(SignedDuration::from_mins(30)), 8200);
    assert_eq!(
        reconcile_bound(SignedDuration::from_hours(31 * 24)),
        MAX_RECONCILES
    );
    assert_eq!(MAX_RECONCILES, 1_000_000);
}

#[test]
fn control_characters_in_names_and_messages_print_escaped() {
    let mut t = gate_closed_for("20m");
    t["canary"]["metadata"]["name"] = json!("pod\u{1b}[31minfo");
    t["webhooks"]["approve-promotion"] =
        json!([{"at": "0s", "pass": false, "message": "gate\nclosed\u{7}"}]);
    let run = replay(&parse(&t).unwrap(), &Options::default());
    let text = flagger_sim::timeline::text(&run, true);
    assert!(!text.chars().any(|c| c.is_control() && c != '\n'), "{text}");
    assert!(text.contains("canary pod\\u{1b}[31minfo.test"), "{text}");
    assert!(text.contains("failed: gate\\nclosed\\u{7}"), "{text}");
    // Every line is one the timeline wrote: a message cannot forge one.
    assert!(!text.lines().any(|l| l.starts_with("closed")), "{text}");
    // Errors escape them too.
    let mut t = promote();
    t["canary"]["spec"]["analysis"]["step\u{1b}Weight"] = json!(1);
    let err = parse(&t).unwrap_err();
    assert!(err.contains("step\\u{1b}Weight: unknown field"), "{err}");
    assert!(!err.chars().any(char::is_control), "{err}");
}

#[test]
fn a_yaml_trace_names_the_line_and_field_of_an_error() {
    let yaml = "version: 1\nstart: 2026-01-01T00:00:00Z\nduration: 20m\ncanary:\n  apiVersion: flagger.app/v1beta1\n  kind: Canary\n  metadata:\n    name: podinfo\n  spec:\n    targetRef:\n      name: podinfo\n    service:\n      port: 9898\n    analysis:\n      interval: 1m\n      stepWeight: 10\n      metrics:\n        - name: request-success-rate\n          thresholdRange:\n            min: 99\nrevisions:\n  - at: 0s\n    templateHash: aaa\nmetrics:\n  request-success-rate:\n    - at: 0s\n      value: 99.5\n";
    let trace = Trace::parse("t.yaml", yaml).unwrap();
    assert_eq!(trace.revisions[0].template_hash, "aaa");
    let err = Trace::parse("t.yaml", &yaml.replace("value: 99.5", "valeu: 99.5"))
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "t.yaml:27: metrics.request-success-rate[0].valeu: unknown field, did you mean value?"
    );
    let err = Trace::parse(
        "t.yaml",
        &yaml.replace("      stepWeight: 10\n", "      stepWeigth: 10\n"),
    )
    .unwrap_err()
    .to_string();
    assert_eq!(
        err,
        "t.yaml:16: canary.spec.analysis.stepWeigth: unknown field, did you mean stepWeight?"
    );
    let err = Trace::parse("t.yaml", &format!("{yaml}---\nversion: 1\n"))
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "t.yaml: holds 2 YAML documents; a trace is one document"
    );
}
