//! CreatePrimary, PromoteTemplate and ScaleTarget as API requests.

use crate::executor_support::*;
use flagger::executor::LabelSettings;
use flagger_core::Command;
use flagger_core::api::AutoscalerReference;
use k8s_openapi::api::apps::v1::Deployment;
use serde_json::{Value, json};
use std::sync::Arc;

async fn primary_body(canary: flagger_core::Canary, ctx: flagger::executor::ExecContext) -> Value {
    let (result, requests) = run(echo(canary.clone()), |exec| async move {
        exec.execute(&canary, &ctx, &Command::CreatePrimary).await
    })
    .await;
    result.unwrap();
    assert_eq!(requests.len(), 1);
    requests[0].assert_apply(&format!("{DEPLOYMENTS}/podinfo-primary"));
    requests[0].body.clone()
}

#[tokio::test]
async fn create_primary_copies_the_target_under_the_primary_selector() {
    let body = primary_body(canary(), context("istio")).await;
    assert_eq!(body["apiVersion"], "apps/v1");
    assert_eq!(body["kind"], "Deployment");
    assert_eq!(body["metadata"]["name"], "podinfo-primary");
    assert_eq!(body["metadata"]["namespace"], "test");
    assert_owned_by_canary(&body);
    let spec = &body["spec"];
    assert_eq!(spec["replicas"], 3);
    assert_eq!(spec["minReadySeconds"], 5);
    assert_eq!(spec["revisionHistoryLimit"], 4);
    assert_eq!(spec["progressDeadlineSeconds"], 60);
    assert_eq!(spec["strategy"]["rollingUpdate"]["maxUnavailable"], 0);
    assert_eq!(
        spec["selector"],
        json!({ "matchLabels": { "app": "podinfo-primary" } })
    );
    let template = &spec["template"];
    assert_eq!(
        template["metadata"]["labels"],
        json!({ "app": "podinfo-primary", "version": "6.0.0" })
    );
    assert_eq!(
        template["spec"]["containers"][0]["image"],
        "ghcr.io/stefanprodan/podinfo:6.0.0"
    );
    let target_template = target().spec.unwrap().template;
    assert_eq!(
        template["metadata"]["annotations"],
        json!({
            "prometheus.io/scrape": "true",
            "flagger.app/promoted-revision": flagger::observe::template_hash(&target_template)
        })
    );
    // Without -include-label-prefix only the selector label is set, and no annotation (no Flux
    // marker either: Flagger sets those on the Services and routes only).
    assert_eq!(
        body["metadata"]["labels"],
        json!({ "app": "podinfo-primary" })
    );
    assert_eq!(body["metadata"]["annotations"], json!({}));
}

/// The first copy and every promotion carry the annotations `-include-label-prefix` lets
/// through, and only those.
#[tokio::test]
async fn every_copy_carries_the_included_annotations() {
    let mut ctx = context("istio");
    ctx.labels = LabelSettings::from_flags("app", "team/");
    let body = primary_body(canary(), ctx.clone()).await;
    assert_eq!(
        body["metadata"]["annotations"],
        json!({ "team/owner": "web" })
    );
    ctx.primary = Some(Arc::new(target()));
    let body = primary_body(canary(), ctx).await;
    assert_eq!(
        body["metadata"]["annotations"],
        json!({ "team/owner": "web" })
    );
}

#[tokio::test]
async fn include_label_prefix_copies_matching_labels_but_never_flux_ones() {
    let mut ctx = context("istio");
    ctx.labels = LabelSettings::from_flags("app,name,app.kubernetes.io/name", "*");
    let body = primary_body(canary(), ctx).await;
    assert_eq!(
        body["metadata"]["labels"],
        json!({ "app": "podinfo-primary", "team": "web" })
    );
    assert_eq!(body["metadata"]["annotations"]["team/owner"], "web");

    let mut ctx = context("istio");
    ctx.labels = LabelSettings::from_flags("app", "tea");
    let body = primary_body(canary(), ctx).await;
    assert_eq!(
        body["metadata"]["labels"],
        json!({ "app": "podinfo-primary", "team": "web" })
    );
}

/// With an autoscaler the primary starts with the target's replicas (Flagger's first copy), held
/// by a second field manager so that later copies, which leave replicas to the autoscaler, do not
/// reset them to the server default.
#[tokio::test]
async fn an_autoscaled_primary_starts_with_the_targets_replicas_then_leaves_them() {
    let mut autoscaled = canary();
    autoscaled.spec.autoscaler_ref = Some(AutoscalerReference {
        name: "podinfo".into(),
        ..AutoscalerReference::default()
    });
    let c = autoscaled.clone();
    let (result, requests) = run(echo(c.clone()), |exec| async move {
        exec.execute(&c, &context("istio"), &Command::CreatePrimary)
            .await
    })
    .await;
    result.unwrap();
    assert_eq!(requests.len(), 2);
    requests[0].assert_apply(&format!("{DEPLOYMENTS}/podinfo-primary"));
    assert_eq!(requests[0].body["spec"]["replicas"], 3);
    let second = &requests[1];
    assert_eq!(
        (second.method.as_str(), second.path.as_str()),
        ("PATCH", format!("{DEPLOYMENTS}/podinfo-primary").as_str())
    );
    assert_eq!(
        second.query.get("fieldManager").map(String::as_str),
        Some("flagger-initial-replicas")
    );
    assert_eq!(
        second.body,
        json!({ "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": { "name": "podinfo-primary" }, "spec": { "replicas": 3 } })
    );

    // Once the primary exists, the copy leaves replicas alone.
    let mut ctx = context("istio");
    ctx.primary = Some(Arc::new(target()));
    let body = primary_body(autoscaled, ctx).await;
    assert!(body["spec"].get("replicas").is_none(), "{body}");
}

#[tokio::test]
async fn selector_label_is_the_first_configured_one_present() {
    let mut ctx = context("istio");
    let mut target = target();
    let spec = target.spec.as_mut().unwrap();
    spec.selector.match_labels =
        Some([("app.kubernetes.io/name".to_string(), "web".to_string())].into());
    spec.template
        .metadata
        .as_mut()
        .unwrap()
        .labels
        .as_mut()
        .unwrap()
        .insert("app.kubernetes.io/name".into(), "web".into());
    ctx.target = Some(Arc::new(target));
    let body = primary_body(canary(), ctx).await;
    assert_eq!(
        body["spec"]["selector"]["matchLabels"],
        json!({ "app.kubernetes.io/name": "web-primary" })
    );
    assert_eq!(
        body["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"],
        "web-primary"
    );
    // `app: podinfo` is an ordinary label here and is copied unchanged.
    assert_eq!(
        body["spec"]["template"]["metadata"]["labels"]["app"],
        "podinfo"
    );
}

#[tokio::test]
async fn a_target_without_a_selector_label_is_an_error_not_a_write() {
    let mut ctx = context("istio");
    ctx.labels = LabelSettings::from_flags("name", "");
    let c = canary();
    let (result, requests) = run(echo(c.clone()), |exec| async move {
        exec.execute(&c, &ctx, &Command::CreatePrimary).await
    })
    .await;
    let err = result.unwrap_err().to_string();
    assert!(err.contains("must contain one of [\"name\"]"), "{err}");
    assert!(requests.is_empty());
}

#[tokio::test]
async fn an_existing_primary_keeps_its_immutable_selector() {
    let mut ctx = context("istio");
    let mut primary: Deployment = target();
    primary.spec.as_mut().unwrap().selector.match_labels = Some(
        [
            ("app".to_string(), "podinfo-primary".to_string()),
            ("tier".to_string(), "web".to_string()),
        ]
        .into(),
    );
    ctx.primary = Some(Arc::new(primary));
    let body = primary_body(canary(), ctx).await;
    assert_eq!(
        body["spec"]["selector"]["matchLabels"],
        json!({ "app": "podinfo-primary", "tier": "web" })
    );
    assert_eq!(
        body["spec"]["template"]["metadata"]["labels"]["tier"],
        "web"
    );
}

#[tokio::test]
async fn affinity_and_spread_against_the_target_mean_the_primary_in_the_copy() {
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
    *pod = serde_json::from_value(json!({
        "containers": [{ "name": "podinfod", "image": "podinfo:6.0.0" }],
        "affinity": { "podAntiAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [{
                "topologyKey": "kubernetes.io/hostname",
                "labelSelector": { "matchLabels": { "app": "podinfo" } }
            }],
            "preferredDuringSchedulingIgnoredDuringExecution": [{
                "weight": 1,
                "podAffinityTerm": {
                    "topologyKey": "zone",
                    "labelSelector": { "matchLabels": { "app": "other" } }
                }
            }]
        }},
        "topologySpreadConstraints": [{
            "maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule",
            "labelSelector": { "matchLabels": { "app": "podinfo" } }
        }, {
            "maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": { "matchExpressions": [
                { "key": "app", "operator": "In", "values": ["other", "podinfo"] },
                { "key": "tier", "operator": "In", "values": ["podinfo"] }
            ] }
        }]
    }))
    .unwrap();
    ctx.target = Some(Arc::new(target));
    let body = primary_body(canary(), ctx).await;
    let pod = &body["spec"]["template"]["spec"];
    assert_eq!(
        pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0]["labelSelector"]
            ["matchLabels"]["app"],
        "podinfo-primary"
    );
    assert_eq!(
        pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"]
            ["labelSelector"]["matchLabels"]["app"],
        "other",
        "selectors for other apps are left alone"
    );
    assert_eq!(
        pod["topologySpreadConstraints"][0]["labelSelector"]["matchLabels"]["app"],
        "podinfo-primary"
    );
    assert_eq!(
        pod["topologySpreadConstraints"][1]["labelSelector"]["matchExpressions"],
        json!([
            { "key": "app", "operator": "In", "values": ["other", "podinfo-primary"] },
            { "key": "tier", "operator": "In", "values": ["podinfo"] }
        ]),
        "expressions on the selector label follow it; other keys are left alone"
    );
}

#[tokio::test]
async fn promotion_is_deterministic_and_rolls_only_on_change() {
    let promote = |ctx: flagger::executor::ExecContext| async move {
        let c = canary();
        let (result, requests) = run(echo(c.clone()), |exec| async move {
            exec.execute(&c, &ctx, &Command::PromoteTemplate).await
        })
        .await;
        result.unwrap();
        assert_eq!(requests.len(), 1);
        requests[0].assert_apply(&format!("{DEPLOYMENTS}/podinfo-primary"));
        requests[0].body.clone()
    };
    let first = promote(context("istio")).await;
    let again = promote(context("istio")).await;
    assert_eq!(
        first, again,
        "the same target must produce the same primary"
    );
    // CreatePrimary and PromoteTemplate own the same fields.
    assert_eq!(first, primary_body(canary(), context("istio")).await);

    let mut ctx = context("istio");
    let mut changed = target();
    changed
        .spec
        .as_mut()
        .unwrap()
        .template
        .spec
        .as_mut()
        .unwrap()
        .containers[0]
        .image = Some("ghcr.io/stefanprodan/podinfo:6.0.1".into());
    ctx.target = Some(Arc::new(changed));
    let next = promote(ctx).await;
    let revision = |b: &Value| {
        b["spec"]["template"]["metadata"]["annotations"]["flagger.app/promoted-revision"].clone()
    };
    assert_ne!(revision(&first), revision(&next));
    assert_eq!(
        next["spec"]["template"]["spec"]["containers"][0]["image"],
        "ghcr.io/stefanprodan/podinfo:6.0.1"
    );
}

#[tokio::test]
async fn a_missing_target_cannot_be_copied() {
    let mut ctx = context("istio");
    ctx.target = None;
    let c = canary();
    let (result, requests) = run(echo(c.clone()), |exec| async move {
        exec.execute(&c, &ctx, &Command::PromoteTemplate).await
    })
    .await;
    assert_eq!(
        result.unwrap_err().to_string(),
        "deployment podinfo not found"
    );
    assert!(requests.is_empty());
}

#[tokio::test]
async fn scale_target_merge_patches_replicas() {
    let c = canary();
    let ctx = context("istio");
    let (result, requests) = run(echo(c.clone()), |exec| async move {
        exec.execute(&c, &ctx, &Command::ScaleTarget { replicas: 0 })
            .await
    })
    .await;
    result.unwrap();
    assert_eq!(requests.len(), 1);
    requests[0].assert_merge(&format!("{DEPLOYMENTS}/podinfo"));
    assert_eq!(requests[0].body, json!({ "spec": { "replicas": 0 } }));
}

fn config_target() -> Deployment {
    let mut target = target();
    let pod = target
        .spec
        .as_mut()
        .unwrap()
        .template
        .spec
        .as_mut()
        .unwrap();
    *pod = serde_json::from_value(json!({
        "volumes": [{ "name": "cfg", "configMap": { "name": "podinfo-config" } }],
        "containers": [{
            "name": "podinfod",
            "image": "podinfo:6.0.0",
            "envFrom": [{ "secretRef": { "name": "podinfo-secret" } }, { "configMapRef": { "name": "shared" } }]
        }]
    }))
    .unwrap();
    target
}

async fn promote_with_configs(
    tracked: &[(&str, &str)],
    respond: impl Fn(&Captured) -> (u16, Value) + Send + 'static,
) -> Vec<Captured> {
    let mut ctx = context("istio");
    ctx.target = Some(Arc::new(config_target()));
    ctx.tracked_configs = tracked
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let c = canary();
    let (result, requests) = run(respond, |exec| async move {
        exec.execute(&c, &ctx, &Command::PromoteTemplate).await
    })
    .await;
    result.unwrap();
    requests
}

#[tokio::test]
async fn promotion_copies_tracked_configs_and_points_the_primary_at_the_copies() {
    let echo = echo(canary());
    let requests = promote_with_configs(
        &[
            ("configmap/podinfo-config", "0a1b2c3d4e5f6a7b"),
            ("secret/podinfo-secret", "1a1b2c3d4e5f6a7b"),
        ],
        move |req| match (req.method.as_str(), req.path.as_str()) {
            ("GET", "/api/v1/namespaces/test/configmaps/podinfo-config") => (
                200,
                json!({ "apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": { "name": "podinfo-config", "namespace": "test", "labels": { "app": "podinfo" } },
                        "data": { "color": "blue" } }),
            ),
            ("GET", "/api/v1/namespaces/test/secrets/podinfo-secret") => (
                200,
                json!({ "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                        "metadata": { "name": "podinfo-secret", "namespace": "test" },
                        "data": { "token": "c2VjcmV0" } }),
            ),
            _ => echo(req),
        },
    )
    .await;
    assert_eq!(requests.len(), 5);
    requests[0].assert_get("/api/v1/namespaces/test/configmaps/podinfo-config");
    requests[1].assert_apply("/api/v1/namespaces/test/configmaps/podinfo-config-primary");
    requests[2].assert_get("/api/v1/namespaces/test/secrets/podinfo-secret");
    requests[3].assert_apply("/api/v1/namespaces/test/secrets/podinfo-secret-primary");
    requests[4].assert_apply(&format!("{DEPLOYMENTS}/podinfo-primary"));

    let cm = &requests[1].body;
    assert_eq!(cm["metadata"]["name"], "podinfo-config-primary");
    assert_eq!(cm["data"], json!({ "color": "blue" }));
    assert_owned_by_canary(cm);
    let secret = &requests[3].body;
    assert_eq!(
        (secret["type"].clone(), secret["data"].clone()),
        (json!("Opaque"), json!({ "token": "c2VjcmV0" }))
    );
    assert_owned_by_canary(secret);

    let pod = &requests[4].body["spec"]["template"]["spec"];
    assert_eq!(
        pod["volumes"][0]["configMap"]["name"],
        "podinfo-config-primary"
    );
    assert_eq!(
        pod["containers"][0]["envFrom"][0]["secretRef"]["name"],
        "podinfo-secret-primary"
    );
    assert_eq!(
        pod["containers"][0]["envFrom"][1]["configMapRef"]["name"], "shared",
        "untracked objects are shared, as before"
    );
    let annotations = &requests[4].body["spec"]["template"]["metadata"]["annotations"];
    assert!(annotations["flagger.app/promoted-configs"].is_string());
}

#[tokio::test]
async fn a_config_change_alone_changes_the_promoted_pod_template() {
    let body = |checksum: &'static str| async move {
        let requests =
            promote_with_configs(&[("configmap/podinfo-config", checksum)], echo(canary())).await;
        requests.last().unwrap().body["spec"]["template"].clone()
    };
    let before = body("0a1b2c3d4e5f6a7b").await;
    let after = body("ffffffffffffffff").await;
    assert_ne!(
        before, after,
        "the primary's pods must restart to read the new configuration"
    );
    assert_eq!(before["spec"], after["spec"]);
}

#[tokio::test]
async fn a_vanished_config_is_not_copied_and_keeps_its_reference() {
    let requests = promote_with_configs(
        &[("configmap/podinfo-config", "0a1b2c3d4e5f6a7b")],
        echo(canary()),
    )
    .await;
    assert_eq!(requests.len(), 2);
    requests[0].assert_get("/api/v1/namespaces/test/configmaps/podinfo-config");
    let pod = &requests[1].body["spec"]["template"]["spec"];
    assert_eq!(pod["volumes"][0]["configMap"]["name"], "podinfo-config");
}
