//! ApplyServices, ApplyApexService and RevertApexService as API requests.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::executor_support::*;
use flagger::executor::Known;
use flagger_core::Command;
use flagger_core::api::{CustomMetadata, UnmanagedMetadata};
use serde_json::{Value, json};

/// The requests of `commands`, run in order as the controller runs a decision's commands.
async fn execute_all(
    canary: flagger_core::Canary,
    ctx: flagger::executor::ExecContext,
    existing_apex: Option<Value>,
    commands: &[Command],
) -> Vec<Captured> {
    let respond = {
        let canary = canary.clone();
        let echo = echo(canary);
        // The existing apex answers for itself (a merge patch returns the patched object).
        move |req: &Captured| match &existing_apex {
            Some(apex)
                if req
                    .path
                    .ends_with(&format!("/{}", apex["metadata"]["name"].as_str().unwrap())) =>
            {
                (200, apex.clone())
            }
            _ => echo(req),
        }
    };
    let commands = commands.to_vec();
    let (result, requests) = run(respond, |exec| async move {
        for command in &commands {
            exec.execute(&canary, &ctx, command).await?;
        }
        Ok::<(), flagger::executor::ExecError>(())
    })
    .await;
    result.unwrap();
    requests
}

/// Services then apex, as initialization sends them once the primary is ready: requests are
/// canary, primary, the apex's GET, the apex.
async fn apply_services(
    canary: flagger_core::Canary,
    ctx: flagger::executor::ExecContext,
    existing_apex: Option<Value>,
) -> Vec<Captured> {
    let commands = [Command::ApplyServices, Command::ApplyApexService];
    execute_all(canary, ctx, existing_apex, &commands).await
}

#[tokio::test]
async fn apply_services_leaves_the_apex_alone() {
    let requests = execute_all(
        canary(),
        context("istio"),
        Some(user_service()),
        &[Command::ApplyServices],
    )
    .await;
    assert_eq!(requests.len(), 2);
    requests[0].assert_apply(&format!("{SERVICES}/podinfo-canary"));
    requests[1].assert_apply(&format!("{SERVICES}/podinfo-primary"));
}

#[tokio::test]
async fn apply_apex_service_moves_only_the_apex() {
    let requests = execute_all(
        canary(),
        context("istio"),
        None,
        &[Command::ApplyApexService],
    )
    .await;
    assert_eq!(requests.len(), 2);
    requests[0].assert_get(&format!("{SERVICES}/podinfo"));
    requests[1].assert_apply(&format!("{SERVICES}/podinfo"));
    assert_eq!(
        requests[1].body["spec"]["selector"],
        json!({ "app": "podinfo-primary" })
    );
}

#[tokio::test]
async fn an_apex_the_cache_knows_is_written_without_a_read() {
    // Known absent (a new Canary): one write, no GET.
    let mut ctx = context("istio");
    ctx.apex = Known::Absent;
    let requests = execute_all(canary(), ctx, None, &[Command::ApplyApexService]).await;
    assert_eq!(requests.len(), 1);
    requests[0].assert_apply(&format!("{SERVICES}/podinfo"));
    // Known to be the user's: taken over with a merge patch, no GET.
    let mut ctx = context("istio");
    let cached: k8s_openapi::api::core::v1::Service =
        serde_json::from_value(user_service()).unwrap();
    ctx.apex = Known::Found(Arc::new(cached));
    let requests = execute_all(
        canary(),
        ctx,
        Some(user_service()),
        &[Command::ApplyApexService],
    )
    .await;
    assert_eq!(requests.len(), 1);
    requests[0].assert_merge(&format!("{SERVICES}/podinfo"));
    assert_eq!(
        requests[0].body["spec"]["selector"],
        json!({ "app": "podinfo-primary", "version": null })
    );
}

#[tokio::test]
async fn creates_canary_primary_and_apex_services_owned_by_the_canary() {
    let requests = apply_services(canary(), context("istio"), None).await;
    assert_eq!(requests.len(), 4);
    requests[0].assert_apply(&format!("{SERVICES}/podinfo-canary"));
    requests[1].assert_apply(&format!("{SERVICES}/podinfo-primary"));
    requests[2].assert_get(&format!("{SERVICES}/podinfo"));
    requests[3].assert_apply(&format!("{SERVICES}/podinfo"));
    let selector = |r: &Captured| r.body["spec"]["selector"].clone();
    assert_eq!(selector(&requests[0]), json!({ "app": "podinfo" }));
    assert_eq!(selector(&requests[1]), json!({ "app": "podinfo-primary" }));
    assert_eq!(selector(&requests[3]), json!({ "app": "podinfo-primary" }));
    for r in [&requests[0], &requests[1], &requests[3]] {
        assert_eq!(r.body["apiVersion"], "v1");
        assert_eq!(r.body["kind"], "Service");
        assert_eq!(r.body["spec"]["type"], "ClusterIP");
        assert_eq!(
            r.body["spec"]["ports"],
            json!([{ "name": "http", "port": 9898, "targetPort": 9898, "protocol": "TCP" }])
        );
        assert_owned_by_canary(&r.body);
    }
}

#[tokio::test]
async fn port_settings_and_per_service_metadata_are_applied() {
    let mut canary = canary();
    let service = canary.spec.service.as_mut().unwrap();
    service.name = Some("web".into());
    service.port_name = Some("grpc".into());
    service.target_port = Some(json!("grpc-port"));
    service.app_protocol = Some("kubernetes.io/h2c".into());
    service.apex = Some(CustomMetadata {
        labels: Some(BTreeMap::from([("expose".to_string(), "true".to_string())])),
        annotations: None,
    });
    service.canary = Some(CustomMetadata {
        labels: None,
        annotations: Some(BTreeMap::from([("note".to_string(), "canary".to_string())])),
    });
    let requests = apply_services(canary, context("istio"), None).await;
    requests[0].assert_apply(&format!("{SERVICES}/web-canary"));
    requests[1].assert_apply(&format!("{SERVICES}/web-primary"));
    requests[2].assert_get(&format!("{SERVICES}/web"));
    requests[3].assert_apply(&format!("{SERVICES}/web"));
    assert_eq!(
        requests[3].body["spec"]["ports"],
        json!([{ "name": "grpc", "port": 9898, "targetPort": "grpc-port", "protocol": "TCP", "appProtocol": "kubernetes.io/h2c" }])
    );
    assert_eq!(requests[3].body["metadata"]["labels"]["expose"], "true");
    assert_eq!(
        requests[0].body["metadata"]["annotations"]["note"],
        "canary"
    );
    assert!(
        requests[1].body["metadata"]["labels"]
            .get("expose")
            .is_none()
    );
}

#[tokio::test]
async fn port_discovery_adds_the_other_container_ports_but_not_sidecars() {
    let mut canary = canary();
    canary.spec.service.as_mut().unwrap().port_discovery = Some(true);
    let mut ctx = context("istio");
    let mut target = target();
    let pod = target
        .spec
        .as_mut()
        .unwrap()
        .template
        .spec
        .as_mut()
        .unwrap();
    pod.containers = serde_json::from_value(json!([
        { "name": "podinfod", "ports": [
            { "name": "http", "containerPort": 9898 },
            { "name": "http-metrics", "containerPort": 9797 },
            { "containerPort": 9999 }
        ]},
        { "name": "istio-proxy", "ports": [{ "name": "http-envoy-prom", "containerPort": 15090 }] }
    ]))
    .unwrap();
    ctx.target = Some(Arc::new(target));
    let requests = apply_services(canary, ctx, None).await;
    let ports: Vec<(String, i64)> = requests[0].body["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_string(),
                p["port"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        ports,
        [
            ("http".to_string(), 9898),
            ("http-metrics".to_string(), 9797),
            ("tcp-podinfod-2".to_string(), 9999)
        ]
    );
}

fn user_service() -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": { "name": "podinfo", "namespace": "test", "labels": { "owner": "user" } },
        "spec": {
            "type": "NodePort",
            "selector": { "app": "podinfo", "version": "v1" },
            "ports": [{ "name": "http", "port": 80, "targetPort": "http", "nodePort": 30080 }]
        }
    })
}

#[tokio::test]
async fn an_existing_apex_service_is_taken_over_without_ownership() {
    let requests = apply_services(canary(), context("istio"), Some(user_service())).await;
    assert_eq!(requests.len(), 4);
    requests[0].assert_apply(&format!("{SERVICES}/podinfo-canary"));
    requests[1].assert_apply(&format!("{SERVICES}/podinfo-primary"));
    let apex = &requests[3];
    apex.assert_merge(&format!("{SERVICES}/podinfo"));
    // Exactly our selector and ports (the node port kept), nothing of the metadata or type.
    assert_eq!(
        apex.body,
        json!({ "spec": {
            "selector": { "app": "podinfo-primary", "version": null },
            "ports": [{ "name": "http", "port": 9898, "targetPort": 9898, "protocol": "TCP", "nodePort": 30080 }]
        }})
    );
}

#[tokio::test]
async fn a_taken_over_apex_is_handed_back_pointing_at_the_target() {
    let c = canary();
    let ctx = context("istio");
    let (result, requests) = run(
        |_: &Captured| (200, user_service()),
        |exec| async move { exec.execute(&c, &ctx, &Command::RevertApexService).await },
    )
    .await;
    result.unwrap();
    assert_eq!(requests.len(), 2);
    requests[0].assert_get(&format!("{SERVICES}/podinfo"));
    requests[1].assert_merge(&format!("{SERVICES}/podinfo"));
    assert_eq!(
        requests[1].body["spec"]["selector"],
        json!({ "app": "podinfo", "version": null })
    );
}

/// As Flagger's `Finalize`: a user's apex applied with kubectl gets back the selector kubectl
/// recorded, other keys included, and nothing else is touched.
#[tokio::test]
async fn a_kubectl_applied_apex_gets_its_recorded_selector_back() {
    let c = canary();
    let ctx = context("istio");
    let mut taken = user_service();
    taken["spec"]["selector"] = json!({ "app": "podinfo-primary" });
    taken["metadata"]["annotations"] = json!({
        "kubectl.kubernetes.io/last-applied-configuration":
            json!({ "apiVersion": "v1", "kind": "Service",
                    "spec": { "selector": { "app": "podinfo", "tier": "web" } } }).to_string()
    });
    let (result, requests) = run(
        move |_: &Captured| (200, taken.clone()),
        |exec| async move { exec.execute(&c, &ctx, &Command::RevertApexService).await },
    )
    .await;
    result.unwrap();
    assert_eq!(requests.len(), 2);
    requests[1].assert_merge(&format!("{SERVICES}/podinfo"));
    assert_eq!(
        requests[1].body,
        json!({ "spec": { "selector": { "app": "podinfo", "tier": "web" } } })
    );
}

#[tokio::test]
async fn an_apex_service_we_created_stays_ours() {
    let existing = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": { "name": "podinfo", "namespace": "test", "ownerReferences": [{
            "apiVersion": "flagger.app/v1beta1", "kind": "Canary", "name": "podinfo",
            "uid": "6d3c1a0e-uid", "controller": true
        }]},
        "spec": { "selector": { "app": "podinfo-primary" } }
    });
    let requests = apply_services(canary(), context("istio"), Some(existing)).await;
    assert_owned_by_canary(&requests[3].body);
}

#[tokio::test]
async fn revert_points_the_apex_at_the_target_and_releases_it() {
    let c = canary();
    let ctx = context("istio");
    let (result, requests) = run(echo(c.clone()), |exec| async move {
        exec.execute(&c, &ctx, &Command::RevertApexService).await
    })
    .await;
    result.unwrap();
    assert_eq!(requests.len(), 2);
    requests[0].assert_get(&format!("{SERVICES}/podinfo"));
    requests[1].assert_apply(&format!("{SERVICES}/podinfo"));
    let body = &requests[1].body;
    assert_eq!(body["spec"]["selector"], json!({ "app": "podinfo" }));
    assert!(body["metadata"].get("ownerReferences").is_none(), "{body}");
}

#[tokio::test]
async fn revert_works_from_the_primary_when_the_target_is_gone() {
    let c = canary();
    let mut ctx = context("istio");
    let mut primary = target();
    primary.spec.as_mut().unwrap().selector.match_labels =
        Some([("app".to_string(), "podinfo-primary".to_string())].into());
    ctx.primary = Some(Arc::new(primary));
    ctx.target = None;
    let (result, requests) = run(echo(c.clone()), |exec| async move {
        exec.execute(&c, &ctx, &Command::RevertApexService).await
    })
    .await;
    result.unwrap();
    assert_eq!(
        requests[1].body["spec"]["selector"],
        json!({ "app": "podinfo" })
    );
}

#[tokio::test]
async fn unmanaged_label_and_annotation_keys_are_never_sent() {
    let mut canary = canary();
    let service = canary.spec.service.as_mut().unwrap();
    let pairs = |kv: &[(&str, &str)]| {
        Some(
            kv.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
        )
    };
    let metadata = CustomMetadata {
        labels: pairs(&[("team", "ours"), ("tier", "web")]),
        annotations: pairs(&[("owner", "ours"), ("note", "kept")]),
    };
    service.apex = Some(metadata.clone());
    service.primary = Some(metadata.clone());
    service.canary = Some(metadata);
    service.unmanaged_metadata = Some(UnmanagedMetadata {
        labels: Some(vec!["team".into()]),
        annotations: Some(vec!["owner".into()]),
    });
    let requests = apply_services(canary, context("istio"), None).await;
    assert_eq!(requests.len(), 4);
    for r in [&requests[0], &requests[1], &requests[3]] {
        let meta = &r.body["metadata"];
        assert!(meta["labels"].get("team").is_none(), "{meta}");
        assert!(meta["annotations"].get("owner").is_none(), "{meta}");
        assert_eq!(meta["labels"]["tier"], "web");
        assert_eq!(meta["annotations"]["note"], "kept");
    }
}
