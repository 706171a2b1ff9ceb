//! One reconcile against a mocked API server: the snapshot comes from the watch caches (no GET),
//! the core's commands reach the API server in order, events go through the recorder, and a
//! failed write stops the rest of the decision.

use std::sync::Arc;
use std::time::Duration;

use crate::controller_support::*;
use flagger::controller::reconcile::{self, Error};
use flagger_core::Phase;
use kube::runtime::controller::Action;
use serde_json::{Value, json};

const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/test/deployments";
const SERVICES: &str = "/api/v1/namespaces/test/services";
const STATUS: &str = "/apis/flagger.app/v1beta1/namespaces/test/canaries/podinfo/status";
const EVENTS: &str = "/api/v1/namespaces/test/events";

fn lines(seen: &[Seen]) -> Vec<String> {
    seen.iter().map(Seen::line).collect()
}

fn phase(body: &Value) -> &str {
    body["status"]["phase"].as_str().unwrap_or("")
}

#[tokio::test]
async fn a_new_canary_creates_the_primary_and_services_then_writes_its_status() {
    let canary = canary();
    let mut caches = Caches::new();
    caches.canary(&canary);
    caches.deployment(&deployment("podinfo", 2, "podinfo:6.0.0"));
    let (client, server) = mock_client(echo(canary.clone()));
    let ctx = context(client, caches.stores.clone(), settings());

    let action = reconcile::reconcile(Arc::new(canary), ctx.clone())
        .await
        .unwrap();
    drop(ctx);
    let seen = server.await.unwrap();

    // The primary and canary Services, then the primary; the apex is not touched while the
    // primary's pods do not exist.
    let writes: Vec<String> = seen
        .iter()
        .filter(|s| s.method != "GET")
        .map(Seen::line)
        .collect();
    assert_eq!(
        writes,
        vec![
            format!("PATCH {SERVICES}/podinfo-canary"),
            format!("PATCH {SERVICES}/podinfo-primary"),
            format!("PATCH {DEPLOYMENTS}/podinfo-primary"),
            format!("PATCH {STATUS}"),
        ]
    );
    assert!(
        seen.iter()
            .filter(|s| s.method == "GET")
            .all(|s| !s.path.contains("/canaries") && !s.path.contains("/deployments")),
        "the snapshot came from the caches: {:?}",
        lines(&seen)
    );
    assert_eq!(phase(&seen.last().unwrap().body), "Initializing");
    // Initializing waits for the primary: the core asks to be called again within the interval.
    assert_ne!(
        action,
        Action::await_change(),
        "an initializing canary is requeued"
    );
}

#[tokio::test]
async fn a_ready_primary_finishes_initialization_with_an_event_and_scales_the_target_down() {
    let mut canary = canary();
    canary.status = Some(flagger_core::CanaryStatus {
        phase: Some(Phase::Initializing),
        last_transition_time: Some(jiff::Timestamp::now()),
        ..Default::default()
    });
    let mut caches = Caches::new();
    caches.canary(&canary);
    caches.deployment(&deployment("podinfo", 2, "podinfo:6.0.0"));
    caches.deployment(&deployment("podinfo-primary", 2, "podinfo:6.0.0"));
    for s in ["podinfo", "podinfo-primary", "podinfo-canary"] {
        caches.service(s);
    }
    let (client, server) = mock_client(echo(canary.clone()));
    let ctx = context(client, caches.stores.clone(), settings());

    let action = reconcile::reconcile(Arc::new(canary), ctx.clone())
        .await
        .unwrap();
    drop(ctx);
    let seen = server.await.unwrap();

    assert_eq!(
        lines(&seen),
        vec![
            format!("PATCH {DEPLOYMENTS}/podinfo"),
            format!("POST {EVENTS}"),
            format!("PATCH {STATUS}"),
        ]
    );
    assert_eq!(seen[0].body["spec"]["replicas"], json!(0));
    let event = &seen[1].body;
    assert_eq!(event["message"], "Initialization done! podinfo.test");
    assert_eq!(event["reason"], "Synced");
    assert_eq!(event["type"], "Normal");
    assert_eq!(event["involvedObject"]["kind"], "Canary");
    assert_eq!(event["source"]["component"], "flagger");
    assert_eq!(phase(&seen[2].body), "Initialized");
    assert_eq!(
        action,
        Action::await_change(),
        "resting canaries wait for a change"
    );
}

#[tokio::test]
async fn a_users_apex_service_moves_to_the_primary_when_initialization_completes() {
    let mut canary = canary();
    canary.status = Some(flagger_core::CanaryStatus {
        phase: Some(Phase::Initializing),
        last_transition_time: Some(jiff::Timestamp::now()),
        ..Default::default()
    });
    let mut caches = Caches::new();
    caches.canary(&canary);
    caches.deployment(&deployment("podinfo", 2, "podinfo:6.0.0"));
    caches.deployment(&deployment("podinfo-primary", 2, "podinfo:6.0.0"));
    caches.service("podinfo-primary");
    caches.service("podinfo-canary");
    // The user's Service, still serving the target's pods.
    caches.service_selecting("podinfo", "podinfo");
    let (client, server) = mock_client(echo(canary.clone()));
    let ctx = context(client, caches.stores.clone(), settings());

    reconcile::reconcile(Arc::new(canary), ctx.clone())
        .await
        .unwrap();
    drop(ctx);
    let seen = server.await.unwrap();

    // The primary is ready: the apex moves first (taken over as cached, no read), then the
    // target scales down.
    assert_eq!(
        lines(&seen)[..2],
        [
            format!("PATCH {SERVICES}/podinfo"),
            format!("PATCH {DEPLOYMENTS}/podinfo"),
        ]
    );
    assert_eq!(seen[0].body["spec"]["selector"]["app"], "podinfo-primary");
    assert!(
        seen[0].body["metadata"]["ownerReferences"].is_null(),
        "still the user's"
    );
    assert_eq!(seen[1].body["spec"]["replicas"], json!(0));
}

#[tokio::test]
async fn a_failed_write_stops_the_decision_and_backs_off() {
    let canary = canary();
    let mut caches = Caches::new();
    caches.canary(&canary);
    caches.deployment(&deployment("podinfo", 2, "podinfo:6.0.0"));
    let echo = echo(canary.clone());
    let (client, server) = mock_client(Box::new(move |s| {
        if s.path.ends_with("/podinfo-primary") && s.path.contains("/deployments/") {
            (
                500,
                json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "InternalError", "code": 500, "message": "etcd is sad"}),
            )
        } else {
            echo(s)
        }
    }));
    let ctx = context(client, caches.stores.clone(), settings());

    let err = reconcile::reconcile(Arc::new(canary.clone()), ctx.clone())
        .await
        .unwrap_err();
    // Command 0 wrote the primary and canary Services; command 1, the primary, failed.
    assert!(matches!(&err, Error::Command(f) if f.index == 1), "{err}");
    assert_eq!(
        reconcile::error_policy(Arc::new(canary.clone()), &err, ctx.clone()),
        Action::requeue(Duration::from_secs(5))
    );
    assert_eq!(
        reconcile::error_policy(Arc::new(canary), &err, ctx.clone()),
        Action::requeue(Duration::from_secs(10)),
        "consecutive failures back off further"
    );
    drop(ctx);
    let seen = server.await.unwrap();
    // kube's client retries server errors a few times; nothing after the failed command is
    // sent, only the Warning event that reports it.
    let (event, writes) = seen.split_last().unwrap();
    assert!(
        writes
            .iter()
            .skip(2)
            .all(|s| s.path == format!("{DEPLOYMENTS}/podinfo-primary")),
        "{:?}",
        lines(&seen)
    );
    assert_eq!(event.line(), format!("POST {EVENTS}"));
    assert_eq!(event.body["type"], "Warning");
    assert_eq!(
        event.body["message"],
        "createPrimaryDeployment failed: creating deployment podinfo-primary.test failed: etcd is sad"
    );
}

#[tokio::test]
async fn an_invalid_canary_is_blocked_with_a_warning_and_waits_for_a_change() {
    let mut canary = canary();
    canary.spec.provider = Some("linkerd".into());
    let mut caches = Caches::new();
    caches.canary(&canary);
    caches.deployment(&deployment("podinfo", 2, "podinfo:6.0.0"));
    let (client, server) = mock_client(echo(canary.clone()));
    let ctx = context(client, caches.stores.clone(), settings());

    let action = reconcile::reconcile(Arc::new(canary), ctx.clone())
        .await
        .unwrap();
    drop(ctx);
    let seen = server.await.unwrap();

    assert_eq!(
        lines(&seen),
        vec![format!("POST {EVENTS}"), format!("PATCH {STATUS}")]
    );
    assert_eq!(seen[0].body["type"], "Warning");
    let note = seen[0].body["message"].as_str().unwrap();
    assert_eq!(
        note,
        "Canary podinfo.test cannot be run here: spec.provider: provider \"linkerd\" is not supported yet (supported: istio, gatewayapi:v1, kubernetes, nginx)"
    );
    let conditions = seen[1].body["status"]["conditions"].as_array().unwrap();
    assert!(
        conditions
            .iter()
            .any(|c| c["type"] == "Blocked" && c["reason"] == "NotSupported")
    );
    assert_eq!(action, Action::await_change());
}

#[tokio::test]
async fn canary_totals_follow_the_cache_and_drop_to_zero() {
    let mut caches = Caches::new();
    let mut other = canary();
    other.metadata.namespace = Some("prod".into());
    let mut second = canary();
    second.metadata.name = Some("backend".into());
    for c in [canary(), second.clone(), other.clone()] {
        caches.canary(&c);
    }
    let (client, _server) = mock_client(echo(canary()));
    let ctx = context(client, caches.stores.clone(), settings());
    ctx.count_canaries();
    let text = ctx.state.metrics.encode();
    assert!(
        text.contains(r#"flagger_canary_total{namespace="test"} 2"#),
        "{text}"
    );
    assert!(
        text.contains(r#"flagger_canary_total{namespace="prod"} 1"#),
        "{text}"
    );

    caches.remove_canary(&other);
    ctx.canary_index
        .apply(&kube::runtime::watcher::Event::Delete(other.clone()));
    ctx.count_canaries();
    let text = ctx.state.metrics.encode();
    assert!(
        text.contains(r#"flagger_canary_total{namespace="prod"} 0"#),
        "{text}"
    );
}

#[tokio::test]
async fn nothing_is_decided_before_every_cache_is_listed() {
    // The Deployment cache has not listed yet: the target only looks missing.
    let canary = canary();
    let mut caches = Caches::new();
    caches.canary(&canary);
    let (client, server) = mock_client(echo(canary.clone()));
    let ctx = context(client, caches.stores.clone(), settings());
    ctx.state.readiness.set_caches_synced(false);

    let action = reconcile::reconcile(Arc::new(canary), ctx.clone())
        .await
        .unwrap();
    drop(ctx);
    let seen = server.await.unwrap();
    assert!(seen.is_empty(), "{:?}", lines(&seen));
    assert_eq!(action, Action::requeue(Duration::from_secs(1)));
}

/// A route write the API server refuses is reported once as a Warning event on the Canary, in
/// Flagger's words; the retry that fails the same way within the window reports nothing.
#[tokio::test]
async fn a_failed_route_write_is_one_warning_event_in_flaggers_words() {
    const VIRTUAL_SERVICES: &str =
        "/apis/networking.istio.io/v1beta1/namespaces/test/virtualservices";
    let mut canary = canary();
    canary.spec.provider = Some("istio".into());
    canary.status = Some(flagger_core::CanaryStatus {
        phase: Some(Phase::Initializing),
        last_transition_time: Some(jiff::Timestamp::now()),
        ..Default::default()
    });
    let mut caches = Caches::new();
    caches.canary(&canary);
    caches.deployment(&deployment("podinfo", 2, "podinfo:6.0.0"));
    caches.deployment(&deployment("podinfo-primary", 2, "podinfo:6.0.0"));
    for s in ["podinfo", "podinfo-primary", "podinfo-canary"] {
        caches.service(s);
    }
    let echo = echo(canary.clone());
    let (client, server) = mock_client(Box::new(move |s| {
        if s.path.starts_with(VIRTUAL_SERVICES) {
            (
                403,
                json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Forbidden", "code": 403,
                    "message": "virtualservices.networking.istio.io \"podinfo\" is forbidden: User \"system:serviceaccount:flagger:flagger\" cannot patch resource \"virtualservices\""}),
            )
        } else {
            echo(s)
        }
    }));
    let ctx = context(client, caches.stores.clone(), settings());

    let first = reconcile::reconcile(Arc::new(canary.clone()), ctx.clone()).await;
    let second = reconcile::reconcile(Arc::new(canary.clone()), ctx.clone()).await;
    drop(ctx);
    let seen = server.await.unwrap();

    for result in [&first, &second] {
        assert!(
            matches!(result, Err(Error::Command(f)) if f.command.starts_with("set routes")),
            "{result:?}"
        );
    }
    let events: Vec<&Seen> = seen.iter().filter(|s| s.path == EVENTS).collect();
    assert_eq!(events.len(), 1, "{:?}", lines(&seen));
    assert_eq!(events[0].body["type"], "Warning");
    assert_eq!(events[0].body["reason"], "Synced");
    assert_eq!(events[0].body["involvedObject"]["name"], "podinfo");
    assert_eq!(
        events[0].body["message"],
        "VirtualService podinfo.test update failed: virtualservices.networking.istio.io \"podinfo\" \
         is forbidden: User \"system:serviceaccount:flagger:flagger\" cannot patch resource \
         \"virtualservices\""
    );
    assert_eq!(
        seen.iter()
            .filter(|s| s.path.starts_with(VIRTUAL_SERVICES))
            .count(),
        2,
        "both reconciles tried the write: {:?}",
        lines(&seen)
    );
}

/// `flagger_canary_duration_seconds` observes analysis steps only, as Flagger's: a reconcile that
/// began analysing and wrote its step, not a rollback, nor any reconcile at rest.
#[test]
fn only_analysis_steps_are_timed() {
    use flagger::controller::reconcile::was_analysis_step;
    use flagger_core::CanaryStatus;
    use flagger_core::command::{Command, Decision};
    let writes = |phase| Decision {
        commands: vec![Command::WriteStatus(CanaryStatus {
            phase: Some(phase),
            ..Default::default()
        })],
        wake_at: None,
    };
    let nothing = Decision {
        commands: vec![],
        wake_at: None,
    };
    assert!(was_analysis_step(
        Some(Phase::Progressing),
        &writes(Phase::Progressing)
    ));
    assert!(was_analysis_step(
        Some(Phase::Progressing),
        &writes(Phase::Promoting)
    ));
    assert!(was_analysis_step(
        Some(Phase::WaitingPromotion),
        &writes(Phase::WaitingPromotion)
    ));
    assert!(!was_analysis_step(
        Some(Phase::Progressing),
        &writes(Phase::Failed)
    ));
    assert!(!was_analysis_step(Some(Phase::Progressing), &nothing));
    assert!(!was_analysis_step(
        Some(Phase::Succeeded),
        &writes(Phase::Progressing)
    ));
    assert!(!was_analysis_step(
        Some(Phase::Promoting),
        &writes(Phase::Finalising)
    ));
}
