//! Finalizer and status writes on the Canary, errors, and the commands the executor leaves to
//! the controller.

use crate::executor_support::*;
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

fn assert_json_patch(request: &Captured) {
    assert_eq!(
        (request.method.as_str(), request.path.as_str()),
        ("PATCH", format!("{CANARIES}/podinfo").as_str())
    );
    assert_eq!(
        request.content_type.as_deref(),
        Some("application/json-patch+json")
    );
}

#[tokio::test]
async fn add_finalizer_appends_only_to_the_list_it_saw() {
    let mut c = canary();
    c.metadata.finalizers = Some(vec!["example.com/other".into()]);
    let (result, requests) = execute(c, Command::AddFinalizer).await;
    result.unwrap();
    assert_eq!(requests.len(), 1);
    assert_json_patch(&requests[0]);
    assert_eq!(
        requests[0].body,
        json!([
            { "op": "test", "path": "/metadata/finalizers", "value": ["example.com/other"] },
            { "op": "add", "path": "/metadata/finalizers/-", "value": "finalizer.flagger.app" }
        ])
    );

    let (result, requests) = execute(canary(), Command::AddFinalizer).await;
    result.unwrap();
    assert_eq!(
        requests[0].body,
        json!([
            { "op": "test", "path": "/metadata/finalizers", "value": null },
            { "op": "add", "path": "/metadata/finalizers", "value": ["finalizer.flagger.app"] }
        ])
    );
}

#[tokio::test]
async fn remove_finalizer_removes_exactly_ours() {
    let mut c = canary();
    c.metadata.finalizers = Some(vec![
        "example.com/other".into(),
        "finalizer.flagger.app".into(),
    ]);
    let (result, requests) = execute(c, Command::RemoveFinalizer).await;
    result.unwrap();
    assert_json_patch(&requests[0]);
    assert_eq!(
        requests[0].body,
        json!([
            { "op": "test", "path": "/metadata/finalizers/1", "value": "finalizer.flagger.app" },
            { "op": "remove", "path": "/metadata/finalizers/1" }
        ])
    );
}

#[tokio::test]
async fn finalizer_commands_are_no_ops_when_already_done() {
    let mut with = canary();
    with.metadata.finalizers = Some(vec!["finalizer.flagger.app".into()]);
    let (result, requests) = execute(with, Command::AddFinalizer).await;
    result.unwrap();
    assert!(requests.is_empty());
    let (result, requests) = execute(canary(), Command::RemoveFinalizer).await;
    result.unwrap();
    assert!(requests.is_empty());
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
async fn a_conditional_status_write_carries_the_resource_version_it_read() {
    let c = canary();
    let status = CanaryStatus {
        phase: Some(Phase::Failed),
        ..CanaryStatus::default()
    };
    let (stored, requests) = run(echo(c.clone()), |exec| async move {
        exec.write_status(&c, &status, true).await
    })
    .await;
    assert_eq!(stored.unwrap().metadata.name.as_deref(), Some("podinfo"));
    assert_eq!(requests.len(), 1);
    requests[0].assert_apply(&format!("{CANARIES}/podinfo/status"));
    assert_eq!(
        requests[0].body["metadata"],
        json!({ "resourceVersion": "7" })
    );
    assert_eq!(requests[0].body["status"]["phase"], "Failed");

    let c = canary();
    let (_, requests) = run(echo(c.clone()), |exec| async move {
        exec.write_status(&c, &CanaryStatus::default(), false).await
    })
    .await;
    assert!(requests[0].body.get("metadata").is_none());
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
async fn a_failed_finalizer_test_is_a_conflict() {
    let c = canary();
    let ctx = context("istio");
    let (result, _) = run(
        |_: &Captured| {
            (
                422,
                json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Invalid", "code": 422, "message": "the server rejected our request due to an error in our request"}),
            )
        },
        |exec| async move { exec.execute(&c, &ctx, &Command::AddFinalizer).await },
    )
    .await;
    let err = result.unwrap_err();
    assert!(err.is_conflict(), "{err}");
}

#[tokio::test]
async fn removing_the_finalizer_of_a_deleted_canary_succeeds() {
    let mut c = canary();
    c.metadata.finalizers = Some(vec!["finalizer.flagger.app".into()]);
    let ctx = context("istio");
    let (result, requests) = run(
        |_: &Captured| not_found(),
        |exec| async move { exec.execute(&c, &ctx, &Command::RemoveFinalizer).await },
    )
    .await;
    assert_eq!(requests.len(), 1);
    result.unwrap();
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
    assert!(is_kube_command(&Command::ApplyApexService));
    assert!(is_kube_command(&Command::WriteStatus(
        CanaryStatus::default()
    )));
}
