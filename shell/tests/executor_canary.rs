//! Finalizer and status writes on the Canary, errors, and the commands the executor leaves to
//! the controller.

mod executor_support;

use executor_support::*;
use flagger::executor::is_kube_command;
use flagger_core::api::{CanaryStatus, Phase};
use flagger_core::command::{EventSeverity, MetricRecord};
use flagger_core::{Canary, Command};
use serde_json::json;

async fn execute(canary: Canary, command: Command) -> (Result<(), String>, Vec<Captured>) {
    let ctx = context("istio");
    let (result, requests) = run(echo(canary.clone()), |exec| async move {
        exec.execute(&canary, &ctx, &command)
            .await
            .map_err(|e| e.to_string())
    })
    .await;
    (result, requests)
}

#[tokio::test]
async fn add_finalizer_keeps_others_and_guards_with_the_resource_version() {
    let mut c = canary();
    c.metadata.finalizers = Some(vec!["example.com/other".into()]);
    let (result, requests) = execute(c, Command::AddFinalizer).await;
    result.unwrap();
    assert_eq!(requests.len(), 1);
    requests[0].assert_merge(&format!("{CANARIES}/podinfo"));
    assert_eq!(
        requests[0].body,
        json!({ "metadata": {
            "finalizers": ["example.com/other", "finalizer.flagger.app"],
            "resourceVersion": "7"
        }})
    );
}

#[tokio::test]
async fn finalizer_commands_are_no_ops_when_already_done() {
    let mut with = canary();
    with.metadata.finalizers = Some(vec!["finalizer.flagger.app".into()]);
    let (result, requests) = execute(with.clone(), Command::AddFinalizer).await;
    result.unwrap();
    assert!(requests.is_empty());
    let (result, requests) = execute(canary(), Command::RemoveFinalizer).await;
    result.unwrap();
    assert!(requests.is_empty());

    let (result, requests) = execute(with, Command::RemoveFinalizer).await;
    result.unwrap();
    assert_eq!(requests.len(), 1);
    assert_eq!(
        requests[0].body,
        json!({ "metadata": { "finalizers": [], "resourceVersion": "7" } })
    );
}

#[tokio::test]
async fn write_status_applies_the_whole_status_on_the_subresource() {
    let status = CanaryStatus {
        phase: Some(Phase::Progressing),
        canary_weight: 20,
        failed_checks: 1,
        iterations: 0,
        last_applied_spec: Some("5d8f7c6b".into()),
        last_transition_time: Some("2026-11-26T14:00:00Z".parse().unwrap()),
        ..CanaryStatus::default()
    };
    let (result, requests) = execute(canary(), Command::WriteStatus(status)).await;
    result.unwrap();
    assert_eq!(requests.len(), 1);
    requests[0].assert_apply(&format!("{CANARIES}/podinfo/status"));
    assert_eq!(
        requests[0].body,
        json!({
            "apiVersion": "flagger.app/v1beta1",
            "kind": "Canary",
            "status": {
                "phase": "Progressing",
                "canaryWeight": 20,
                "failedChecks": 1,
                "iterations": 0,
                "lastAppliedSpec": "5d8f7c6b",
                "lastTransitionTime": "2026-11-26T14:00:00Z"
            }
        })
    );
}

#[tokio::test]
async fn a_conflict_is_reported_as_such() {
    let c = canary();
    let ctx = context("istio");
    let (result, requests) = run(
        |_: &Captured| conflict(),
        |exec| async move { exec.execute(&c, &ctx, &Command::AddFinalizer).await },
    )
    .await;
    assert_eq!(requests.len(), 1);
    let err = result.unwrap_err();
    assert!(err.is_conflict(), "{err}");
}

#[tokio::test]
async fn a_not_found_is_not_a_conflict() {
    let c = canary();
    let ctx = context("istio");
    let (result, _) = run(
        |_: &Captured| not_found(),
        |exec| async move {
            exec.execute(&c, &ctx, &Command::ScaleTarget { replicas: 1 })
                .await
        },
    )
    .await;
    let err = result.unwrap_err();
    assert!(!err.is_conflict());
}

#[tokio::test]
async fn controller_side_commands_make_no_requests() {
    let commands = [
        Command::EmitEvent {
            severity: EventSeverity::Normal,
            message: "New revision detected".into(),
        },
        Command::RecordMetric(MetricRecord::Status { value: 1 }),
        Command::RunPostRolloutHooks {
            phase: Phase::Succeeded,
            hooks: vec![],
        },
    ];
    for command in commands {
        assert!(!is_kube_command(&command));
        let (result, requests) = execute(canary(), command).await;
        result.unwrap();
        assert!(requests.is_empty());
    }
    assert!(is_kube_command(&Command::ApplyServices));
    assert!(is_kube_command(&Command::WriteStatus(
        CanaryStatus::default()
    )));
}
