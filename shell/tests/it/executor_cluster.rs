//! Every kube-facing command against a real API server (tests/cluster/cluster.sh up): the bodies
//! the mocked tests pin down must also be accepted, and applying them twice must change nothing.
//! Run with `KUBECONFIG=<state>/kubeconfig cargo test -p flagger --test it -- --ignored executor_cluster::`.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use flagger::controller::watch::keep_own_apply_entry;
use flagger::executor::routes::{object_drift, prepared_objects};
use flagger::executor::{ExecContext, Executor};
use flagger::router::Router;
use flagger_core::api::{CanaryStatus, Phase};
use flagger_core::{Canary, Command, Routes};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Service};
use kube::api::{Api, DeleteParams, PostParams};
use kube::core::DynamicObject;
use kube::{Client, ResourceExt};

async fn setup() -> (Client, String) {
    let client = Client::try_default()
        .await
        .expect("KUBECONFIG points at a running test cluster");
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let ns = format!("executor-{nanos}");
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let mut object = Namespace::default();
    object.metadata.name = Some(ns.clone());
    namespaces
        .create(&PostParams::default(), &object)
        .await
        .unwrap();
    (client, ns)
}

async fn context(client: &Client, ns: &str, provider: &str) -> ExecContext {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let mut ctx = crate::executor_support::context(provider);
    ctx.target = deployments.get_opt("podinfo").await.unwrap().map(Arc::new);
    ctx.primary = deployments
        .get_opt("podinfo-primary")
        .await
        .unwrap()
        .map(Arc::new);
    ctx
}

/// Runs `command` twice: the second run must leave every object's resourceVersion alone.
async fn twice(exec: &Executor, canary: &Canary, ctx: &ExecContext, command: Command) {
    exec.execute(canary, ctx, &command)
        .await
        .unwrap_or_else(|e| panic!("{command}: {e}"));
    exec.execute(canary, ctx, &command)
        .await
        .unwrap_or_else(|e| panic!("{command} (again): {e}"));
}

/// The support target Deployment, created in `ns`.
async fn create_target(client: &Client, ns: &str) {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let mut target = crate::executor_support::target();
    target.metadata.namespace = Some(ns.to_string());
    deployments
        .create(&PostParams::default(), &target)
        .await
        .unwrap();
}

/// The support Canary, changed by `edit`, created in `ns` as the API server stores it.
async fn create_canary(client: &Client, ns: &str, edit: impl FnOnce(&mut Canary)) -> Canary {
    let mut canary = crate::executor_support::canary();
    canary.metadata.namespace = Some(ns.to_string());
    canary.metadata.uid = None;
    canary.metadata.resource_version = None;
    edit(&mut canary);
    let canaries: Api<Canary> = Api::namespaced(client.clone(), ns);
    canaries
        .create(&PostParams::default(), &canary)
        .await
        .unwrap()
}

/// SetRoutes for `routes` through `provider`, twice; returns the routing object as stored.
async fn set_routes_twice(
    exec: &Executor,
    client: &Client,
    ns: &str,
    canary: &Canary,
    provider: &str,
    routes: Routes,
) -> (Router, DynamicObject) {
    let ctx = context(client, ns, provider).await;
    let command = Command::SetRoutes {
        primary_weight: routes.primary_weight,
        canary_weight: routes.canary_weight,
        mirrored: routes.mirrored,
    };
    twice(exec, canary, &ctx, command).await;
    let router = Router::for_provider(provider).unwrap();
    let (resource, object_name) = router.routes_object(canary).unwrap();
    let object: DynamicObject = Api::namespaced_with(client.clone(), ns, &resource)
        .get(&object_name)
        .await
        .unwrap();
    (router, object)
}

async fn delete_namespace(client: &Client, ns: &str) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .delete(ns, &DeleteParams::default())
        .await
        .unwrap();
}

#[tokio::test]
#[ignore = "needs a cluster: tests/cluster/cluster.sh up, then KUBECONFIG"]
async fn commands_are_accepted_and_idempotent_on_a_real_api_server() {
    let (client, ns) = setup().await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    create_target(&client, &ns).await;

    let canaries: Api<Canary> = Api::namespaced(client.clone(), &ns);
    let canary = create_canary(&client, &ns, |_| {}).await;
    let exec = Executor::new(client.clone());

    let ctx = context(&client, &ns, "istio").await;
    exec.execute(&canary, &ctx, &Command::AddFinalizer)
        .await
        .unwrap();
    // A second add from the stale copy is refused rather than applied twice.
    let stale = exec.execute(&canary, &ctx, &Command::AddFinalizer).await;
    let err = stale.unwrap_err();
    eprintln!(
        "stale finalizer patch: {err} (conflict: {})",
        err.is_conflict()
    );
    let canary = canaries.get("podinfo").await.unwrap();
    twice(&exec, &canary, &ctx, Command::AddFinalizer).await;
    assert_eq!(canary.finalizers(), ["finalizer.flagger.app"]);

    twice(&exec, &canary, &ctx, Command::CreatePrimary).await;
    twice(&exec, &canary, &ctx, Command::ApplyServices).await;
    twice(&exec, &canary, &ctx, Command::ApplyApexService).await;
    let routes = Routes {
        primary_weight: 90,
        canary_weight: 10,
        mirrored: false,
    };
    twice(
        &exec,
        &canary,
        &ctx,
        Command::SetRoutes {
            primary_weight: 90,
            canary_weight: 10,
            mirrored: false,
        },
    )
    .await;
    twice(&exec, &canary, &ctx, Command::ScaleTarget { replicas: 0 }).await;

    let primary = deployments.get("podinfo-primary").await.unwrap();
    // The deployment controller keeps writing the status while the primary's pods come up, so
    // the resourceVersion moves on its own: what we write is the spec and the metadata.
    let written = |d: &Deployment| {
        (
            d.metadata.generation,
            d.metadata.labels.clone(),
            d.metadata.annotations.clone(),
        )
    };
    let ctx = context(&client, &ns, "istio").await;
    twice(&exec, &canary, &ctx, Command::PromoteTemplate).await;
    assert_eq!(
        written(&deployments.get("podinfo-primary").await.unwrap()),
        written(&primary),
        "promoting an unchanged template must not touch the primary"
    );
    assert_eq!(
        primary.owner_references()[0].uid,
        canary.uid().unwrap(),
        "the primary goes with its Canary"
    );

    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    let apex = services.get("podinfo").await.unwrap();
    let selector = apex.spec.unwrap().selector.unwrap();
    assert_eq!(selector["app"], "podinfo-primary");

    let (resource, name) = Router::Istio.routes_object(&canary).unwrap();
    let vs: DynamicObject = Api::namespaced_with(client.clone(), &ns, &resource)
        .get(&name)
        .await
        .unwrap();
    assert_eq!(
        flagger::observe::routes("istio", &canary, &vs).unwrap(),
        Some(routes)
    );

    let gw = context(&client, &ns, "gatewayapi:v1").await;
    twice(
        &exec,
        &canary,
        &gw,
        Command::SetRoutes {
            primary_weight: 0,
            canary_weight: 100,
            mirrored: false,
        },
    )
    .await;
    let (resource, name) = Router::for_provider("gatewayapi:v1")
        .unwrap()
        .routes_object(&canary)
        .unwrap();
    let route: DynamicObject = Api::namespaced_with(client.clone(), &ns, &resource)
        .get(&name)
        .await
        .unwrap();
    assert_eq!(
        flagger::observe::routes("gatewayapi:v1", &canary, &route).unwrap(),
        Some(Routes {
            primary_weight: 0,
            canary_weight: 100,
            mirrored: false
        })
    );

    let status = CanaryStatus {
        phase: Some(Phase::Progressing),
        canary_weight: 10,
        last_transition_time: Some("2026-11-26T14:00:00Z".parse().unwrap()),
        ..CanaryStatus::default()
    };
    twice(&exec, &canary, &ctx, Command::WriteStatus(status.clone())).await;
    let stored = canaries.get_status("podinfo").await.unwrap();
    assert_eq!(stored.status, Some(status.clone()));

    // A decision taken on a stale copy must not overwrite a newer status.
    let stale = canary.clone();
    let fresh = canaries.get("podinfo").await.unwrap();
    let newer = CanaryStatus {
        phase: Some(Phase::Failed),
        ..status.clone()
    };
    let written = exec.write_status(&fresh, &newer, true).await.unwrap();
    assert_ne!(written.resource_version(), fresh.resource_version());
    let refused = exec.write_status(&stale, &status, true).await.unwrap_err();
    assert!(refused.is_conflict(), "{refused}");
    assert_eq!(
        canaries.get_status("podinfo").await.unwrap().status,
        Some(newer)
    );

    twice(&exec, &canary, &ctx, Command::RevertApexService).await;
    let apex = services.get("podinfo").await.unwrap();
    assert_eq!(apex.spec.unwrap().selector.unwrap()["app"], "podinfo");
    assert!(
        apex.metadata
            .owner_references
            .unwrap_or_default()
            .is_empty()
    );

    let canary = canaries.get("podinfo").await.unwrap();
    exec.execute(&canary, &ctx, &Command::RemoveFinalizer)
        .await
        .unwrap();
    assert!(
        canaries
            .get("podinfo")
            .await
            .unwrap()
            .finalizers()
            .is_empty()
    );

    delete_namespace(&client, &ns).await;
}

/// Canaries using every routing setting the routers translate: the real CRDs' schemas and CEL
/// rules (Gateway API has many) must accept what the routers write, and it must read back.
#[tokio::test]
#[ignore = "needs a cluster: tests/cluster/cluster.sh up, then KUBECONFIG"]
async fn routing_objects_pass_the_real_crds_validation() {
    use flagger_core::api::{CanaryAnalysis, CanaryService};
    use serde_json::json;

    let (client, ns) = setup().await;
    let exec = Executor::new(client.clone());
    let service = CanaryService {
        port: 9898,
        hosts: Some(vec!["app.example.com".into()]),
        gateways: Some(vec!["istio-system/public".into()]),
        gateway_refs: Some(vec![
            json!({ "name": "public", "namespace": "istio-system" }),
        ]),
        match_: Some(vec![json!({ "uri": { "prefix": "/api" } })]),
        rewrite: Some(json!({ "uri": "/", "authority": "backend.local" })),
        headers: Some(json!({
            "request": { "set": { "x-env": "prod" }, "remove": ["x-debug"] },
            "response": { "add": { "x-served-by": "flagger" } }
        })),
        timeout: Some("30s".into()),
        backend_timeout: Some("10s".into()),
        retries: Some(json!({ "attempts": 3, "perTryTimeout": "1s", "retryOn": "5xx" })),
        cors_policy: Some(json!({ "allowOrigins": [{ "exact": "https://example.com" }] })),
        traffic_policy: Some(json!({ "tls": { "mode": "ISTIO_MUTUAL" } })),
        ..CanaryService::default()
    };
    let ab = CanaryAnalysis {
        interval: Some("1m".into()),
        threshold: Some(5),
        iterations: Some(10),
        match_: Some(vec![
            json!({ "headers": { "x-canary": { "exact": "insider" } } }),
            json!({ "headers": { "user-agent": { "prefix": "Mozilla/5.0 (X11" } } }),
            json!({ "headers": { "cookie": { "regex": "^(.*?;)?(canary=always)(;.*)?$" } } }),
        ]),
        ..CanaryAnalysis::default()
    };
    let mirrored = CanaryAnalysis {
        interval: Some("1m".into()),
        threshold: Some(5),
        step_weight: Some(10),
        mirror: Some(true),
        mirror_weight: Some(50),
        ..CanaryAnalysis::default()
    };
    for (name, analysis, routes) in [
        (
            "ab",
            ab,
            Routes {
                primary_weight: 0,
                canary_weight: 100,
                mirrored: false,
            },
        ),
        (
            "mirror",
            mirrored,
            Routes {
                primary_weight: 100,
                canary_weight: 0,
                mirrored: true,
            },
        ),
    ] {
        let canary = create_canary(&client, &ns, |canary| {
            canary.metadata.name = Some(name.into());
            canary.spec.service = Some(CanaryService {
                name: Some(name.into()),
                ..service.clone()
            });
            canary.spec.analysis = Some(analysis);
        })
        .await;
        for provider in ["istio", "gatewayapi:v1"] {
            let (router, object) =
                set_routes_twice(&exec, &client, &ns, &canary, provider, routes).await;
            assert_eq!(
                router.read_routes(&canary, &object),
                Some(routes),
                "{name} via {provider}"
            );
            // Read back as the watch caches hold them (server defaults filled in, only our own
            // managed-fields entry kept), the objects match what would be written: no drift.
            let ctx = context(&client, &ns, provider).await;
            for desired in prepared_objects(&canary, &ctx, routes).unwrap() {
                let mut stored = read_back(&client, &ns, &desired).await;
                keep_own_apply_entry(&mut stored);
                assert_eq!(
                    object_drift(&desired, &stored),
                    None,
                    "{name} via {provider}: {}",
                    serde_json::to_string_pretty(&stored).unwrap()
                );
                // A field we wrote, removed by hand, is drift.
                let mut edited = stored.clone();
                edited.data["spec"]
                    .as_object_mut()
                    .unwrap()
                    .retain(|k, _| k == "host" || k == "parentRefs");
                assert!(object_drift(&desired, &edited).is_some(), "{name}");
            }
        }
    }

    delete_namespace(&client, &ns).await;
}

/// `object` as stored, fetched by its own apiVersion and kind.
async fn read_back(client: &Client, ns: &str, object: &DynamicObject) -> DynamicObject {
    let gvk = kube::core::GroupVersionKind::try_from(object.types.as_ref().unwrap()).unwrap();
    let resource = kube::core::ApiResource::from_gvk(&gvk);
    Api::<DynamicObject>::namespaced_with(client.clone(), ns, &resource)
        .get(&object.name_any())
        .await
        .unwrap()
}

/// The generated Services, applied to the real API server and read back with everything it
/// fills in (cluster IPs, IP families, session affinity), have not drifted; a changed port has.
#[tokio::test]
#[ignore = "needs a cluster: tests/cluster/cluster.sh up, then KUBECONFIG"]
async fn services_read_back_from_the_api_server_have_not_drifted() {
    let (client, ns) = setup().await;
    let exec = Executor::new(client.clone());
    create_target(&client, &ns).await;
    let mut canary = create_canary(&client, &ns, |c| {
        c.spec.service.as_mut().unwrap().app_protocol = Some("http".into());
        c.spec.service.as_mut().unwrap().apex = Some(flagger_core::api::CustomMetadata {
            labels: Some([("tier".to_string(), "web".to_string())].into()),
            annotations: None,
        });
    })
    .await;
    let ctx = context(&client, &ns, "istio").await;
    twice(&exec, &canary, &ctx, Command::ApplyServices).await;
    twice(&exec, &canary, &ctx, Command::ApplyApexService).await;
    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    let mut stored = Vec::new();
    for name in ["podinfo-canary", "podinfo-primary", "podinfo"] {
        let mut s = services.get(name).await.unwrap();
        assert!(
            s.spec.as_ref().unwrap().cluster_ip.is_some(),
            "server-filled"
        );
        keep_own_apply_entry(&mut s);
        stored.push(s);
    }
    let cached = [Some(&stored[0]), Some(&stored[1]), Some(&stored[2])];
    assert_eq!(
        flagger::executor::services::drift(&canary, &ctx, cached).unwrap(),
        [None, None, None]
    );
    canary.spec.service.as_mut().unwrap().app_protocol = None;
    let [c, p, a] = flagger::executor::services::drift(&canary, &ctx, cached).unwrap();
    assert!(
        c.is_some() && p.is_some() && a.is_some(),
        "appProtocol dropped"
    );
    canary.spec.service.as_mut().unwrap().app_protocol = Some("http".into());
    canary.spec.service.as_mut().unwrap().apex = None;
    let [c, p, a] = flagger::executor::services::drift(&canary, &ctx, cached).unwrap();
    assert_eq!((c, p), (None, None));
    assert!(a.is_some(), "apex label dropped");

    delete_namespace(&client, &ns).await;
}

/// The user's own apex Service is borrowed, not adopted: after the Canary is gone (and the
/// garbage collector has removed what it owned) the Service is still there, serving the target.
#[tokio::test]
#[ignore = "needs a cluster: tests/cluster/cluster.sh up, then KUBECONFIG"]
async fn a_users_apex_service_survives_its_canary_and_hpa_is_mirrored() {
    use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
    use serde_json::json;

    let (client, ns) = setup().await;
    let exec = Executor::new(client.clone());
    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    let user_service: Service = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": { "name": "podinfo", "labels": { "owner": "user" } },
        "spec": {
            "type": "NodePort",
            "selector": { "app": "podinfo", "tier": "web" },
            "ports": [{ "name": "http", "port": 80, "targetPort": "http" }]
        }
    }))
    .unwrap();
    services
        .create(&PostParams::default(), &user_service)
        .await
        .unwrap();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    create_target(&client, &ns).await;
    let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(client.clone(), &ns);
    let hpa: HorizontalPodAutoscaler = serde_json::from_value(json!({
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": { "name": "podinfo" },
        "spec": {
            "scaleTargetRef": { "apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo" },
            "minReplicas": 2, "maxReplicas": 4,
            "metrics": [{ "type": "Resource", "resource": {
                "name": "cpu", "target": { "type": "Utilization", "averageUtilization": 99 } } }]
        }
    }))
    .unwrap();
    let hpa = hpas.create(&PostParams::default(), &hpa).await.unwrap();

    let canaries: Api<Canary> = Api::namespaced(client.clone(), &ns);
    let canary = create_canary(&client, &ns, |canary| {
        canary.spec.autoscaler_ref = Some(flagger_core::api::AutoscalerReference {
            api_version: Some("autoscaling/v2".into()),
            kind: Some("HorizontalPodAutoscaler".into()),
            name: "podinfo".into(),
            ..Default::default()
        });
    })
    .await;
    let mut ctx = context(&client, &ns, "kubernetes").await;
    ctx.target_hpa = Some(Arc::new(hpa));

    twice(&exec, &canary, &ctx, Command::CreatePrimary).await;
    let primary = deployments.get("podinfo-primary").await.unwrap();
    assert_eq!(
        primary.spec.unwrap().replicas,
        Some(3),
        "the first copy starts with the target's replicas"
    );
    // A promotion copies the template without replicas: the first count stays, for the
    // autoscaler to change, and is not reset to the server default.
    let mut promoting = ctx.clone();
    promoting.primary = Some(Arc::new(deployments.get("podinfo-primary").await.unwrap()));
    twice(&exec, &canary, &promoting, Command::PromoteTemplate).await;
    assert_eq!(
        deployments
            .get("podinfo-primary")
            .await
            .unwrap()
            .spec
            .unwrap()
            .replicas,
        Some(3)
    );
    twice(
        &exec,
        &canary,
        &ctx,
        Command::ApplyPrimaryAutoscaler { promote: false },
    )
    .await;
    twice(
        &exec,
        &canary,
        &ctx,
        Command::ApplyPrimaryAutoscaler { promote: true },
    )
    .await;
    let primary_hpa = hpas.get("podinfo-primary").await.unwrap().spec.unwrap();
    assert_eq!(primary_hpa.scale_target_ref.name, "podinfo-primary");
    assert_eq!(
        (primary_hpa.min_replicas, primary_hpa.max_replicas),
        (Some(2), 4)
    );

    twice(&exec, &canary, &ctx, Command::ApplyServices).await;
    twice(&exec, &canary, &ctx, Command::ApplyApexService).await;
    let apex = services.get("podinfo").await.unwrap();
    assert_eq!(
        apex.spec.as_ref().unwrap().selector.as_ref().unwrap()["app"],
        "podinfo-primary"
    );
    assert!(apex.metadata.owner_references.is_none());
    assert_eq!(apex.metadata.labels.unwrap()["owner"], "user");
    let spec = apex.spec.unwrap();
    assert_eq!(
        spec.selector.unwrap(),
        [("app".to_string(), "podinfo-primary".to_string())].into(),
        "the user's other selector keys would keep matching nothing"
    );
    let ports = spec.ports.unwrap();
    assert_eq!(
        ports
            .iter()
            .map(|p| (p.name.clone().unwrap(), p.port))
            .collect::<Vec<_>>(),
        [("http".to_string(), 9898)],
        "the user's port of the same name is replaced, not merged into a duplicate"
    );
    assert_eq!(spec.type_.as_deref(), Some("NodePort"));

    twice(&exec, &canary, &ctx, Command::RevertApexService).await;
    canaries
        .delete("podinfo", &DeleteParams::foreground())
        .await
        .unwrap();
    // The garbage collector removes what the Canary owned; the apex stays, pointing at the target.
    let mut primary_gone = false;
    // The garbage collector learns of a newly installed CRD at its next discovery resync (every
    // 30 s), so on a cluster that has just started this can take that long.
    for _ in 0..600 {
        if services.get_opt("podinfo-primary").await.unwrap().is_none()
            && deployments
                .get_opt("podinfo-primary")
                .await
                .unwrap()
                .is_none()
        {
            primary_gone = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        primary_gone,
        "owned objects are garbage-collected with the Canary"
    );
    let apex = services.get("podinfo").await.unwrap();
    assert_eq!(
        apex.spec.unwrap().selector.unwrap(),
        [("app".to_string(), "podinfo".to_string())].into()
    );

    delete_namespace(&client, &ns).await;
}

/// `service.unmanagedMetadata`: keys another tool writes on the generated Services and mesh
/// objects keep that tool's values when the operator applies them again, while keys the operator
/// does manage are set back to the Canary's.
#[tokio::test]
#[ignore = "needs a cluster: tests/cluster/cluster.sh up, then KUBECONFIG"]
async fn unmanaged_metadata_written_by_another_tool_survives_reapplying() {
    use flagger_core::api::{CustomMetadata, UnmanagedMetadata};
    use kube::api::{Patch, PatchParams};
    use serde_json::json;

    let (client, ns) = setup().await;
    let exec = Executor::new(client.clone());
    create_target(&client, &ns).await;
    let canary = create_canary(&client, &ns, |canary| {
        let ours = |k: &str| [(k.to_string(), "ours".to_string())].into();
        canary.spec.service.as_mut().unwrap().apex = Some(CustomMetadata {
            labels: Some(ours("team")),
            annotations: Some(
                [
                    ("owner".to_string(), "ours".to_string()),
                    ("note".to_string(), "ours".to_string()),
                ]
                .into(),
            ),
        });
        canary.spec.service.as_mut().unwrap().unmanaged_metadata = Some(UnmanagedMetadata {
            labels: Some(vec!["team".into()]),
            annotations: Some(vec!["owner".into()]),
        });
    })
    .await;
    let ctx = context(&client, &ns, "istio").await;
    let routes = Command::SetRoutes {
        primary_weight: 100,
        canary_weight: 0,
        mirrored: false,
    };
    twice(&exec, &canary, &ctx, Command::CreatePrimary).await;
    twice(&exec, &canary, &ctx, Command::ApplyServices).await;
    twice(&exec, &canary, &ctx, Command::ApplyApexService).await;
    twice(&exec, &canary, &ctx, routes.clone()).await;

    // Another tool claims the unmanaged keys and, forcibly, one the operator manages.
    let theirs = json!({
        "labels": { "team": "theirs" },
        "annotations": { "owner": "theirs", "note": "theirs" }
    });
    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    let vs_resource = flagger::router::istio::virtual_service_resource();
    let virtual_services: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), &ns, &vs_resource);
    let other = PatchParams::apply("other-tool").force();
    let mut service_patch = json!({ "apiVersion": "v1", "kind": "Service" });
    service_patch["metadata"] = theirs.clone();
    services
        .patch("podinfo", &other, &Patch::Apply(&service_patch))
        .await
        .unwrap();
    let mut vs_patch = json!({
        "apiVersion": vs_resource.api_version.clone(),
        "kind": "VirtualService",
    });
    vs_patch["metadata"] = theirs;
    virtual_services
        .patch("podinfo", &other, &Patch::Apply(&vs_patch))
        .await
        .unwrap();

    exec.execute(&canary, &ctx, &Command::ApplyServices)
        .await
        .unwrap();
    exec.execute(&canary, &ctx, &Command::ApplyApexService)
        .await
        .unwrap();
    exec.execute(&canary, &ctx, &routes).await.unwrap();

    let service = services.get("podinfo").await.unwrap();
    let vs = virtual_services.get("podinfo").await.unwrap();
    for (what, labels, annotations) in [
        ("apex Service", service.labels(), service.annotations()),
        ("VirtualService", vs.labels(), vs.annotations()),
    ] {
        assert_eq!(labels["team"], "theirs", "{what}: {labels:?}");
        assert_eq!(annotations["owner"], "theirs", "{what}: {annotations:?}");
        assert_eq!(annotations["note"], "ours", "{what}: {annotations:?}");
    }

    delete_namespace(&client, &ns).await;
}

/// Session affinity's cookie routes (sticky canary and primary routes, then the expiry of the
/// last run's cookie) pass the real CRDs' validation and the weighted route still reads back.
#[tokio::test]
#[ignore = "needs a cluster: tests/cluster/cluster.sh up, then KUBECONFIG"]
async fn sticky_routes_pass_the_real_crds_validation() {
    use flagger_core::api::CanaryService;
    use serde_json::json;

    let (client, ns) = setup().await;
    let exec = Executor::new(client.clone());
    let mut canary = create_canary(&client, &ns, |canary| {
        canary.spec.service = Some(CanaryService {
            port: 9898,
            hosts: Some(vec!["app.example.com".into()]),
            gateways: Some(vec!["istio-system/public".into()]),
            gateway_refs: Some(vec![
                json!({ "name": "public", "namespace": "istio-system" }),
            ]),
            match_: Some(vec![json!({ "uri": { "prefix": "/api" } })]),
            headers: Some(json!({
                "request": { "set": { "x-env": "prod" } },
                "response": { "add": { "x-served-by": "flagger" }, "remove": ["x-debug"] }
            })),
            timeout: Some("30s".into()),
            ..CanaryService::default()
        });
        if let Some(analysis) = canary.spec.analysis.as_mut() {
            analysis.session_affinity = Some(json!({
                "cookieName": "flagger-cookie",
                "primaryCookieName": "flagger-primary",
                "maxAge": 3600,
                "path": "/",
                "sameSite": "Lax",
            }));
        }
    })
    .await;
    assert!(
        canary
            .spec
            .analysis()
            .is_some_and(|a| a.session_affinity.is_some()),
        "the Canary CRD keeps sessionAffinity"
    );
    let cookie = Some("flagger-cookie=abcdefghij".to_string());
    let primary_cookie = Some("flagger-primary=klmnopqrst".to_string());
    let runs = [
        (
            Routes {
                primary_weight: 70,
                canary_weight: 30,
                mirrored: false,
            },
            CanaryStatus {
                session_affinity_cookie: cookie.clone(),
                primary_session_affinity_cookie: primary_cookie.clone(),
                ..CanaryStatus::default()
            },
            3,
        ),
        (
            Routes {
                primary_weight: 100,
                canary_weight: 0,
                mirrored: false,
            },
            CanaryStatus {
                previous_session_affinity_cookie: cookie,
                primary_session_affinity_cookie: primary_cookie,
                ..CanaryStatus::default()
            },
            2,
        ),
    ];
    for (routes, status, route_count) in runs {
        canary.status = Some(status);
        for provider in ["istio", "gatewayapi:v1"] {
            let (router, object) =
                set_routes_twice(&exec, &client, &ns, &canary, provider, routes).await;
            let list = if provider == "istio" { "http" } else { "rules" };
            let written = object.data["spec"][list].as_array().map_or(0, Vec::len);
            assert_eq!(written, route_count, "{provider} at {routes:?}");
            assert_eq!(
                router.read_routes(&canary, &object),
                Some(routes),
                "{provider} at {routes:?}"
            );
        }
    }

    delete_namespace(&client, &ns).await;
}

/// nginx: the canary Ingress cloned from the user's is accepted, re-applying it changes nothing,
/// and the A/B annotations server-side apply stops sending are gone from the stored object.
#[tokio::test]
#[ignore = "needs a cluster: tests/cluster/cluster.sh up, then KUBECONFIG"]
async fn the_nginx_canary_ingress_is_accepted_and_idempotent() {
    use k8s_openapi::api::networking::v1::Ingress;

    let (client, ns) = setup().await;
    let ingresses: Api<Ingress> = Api::namespaced(client.clone(), &ns);
    let user: Ingress = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "podinfo",
                     "annotations": {"nginx.ingress.kubernetes.io/proxy-body-size": "1m"}},
        "spec": {
            "ingressClassName": "nginx",
            "rules": [{"host": "app.example.com", "http": {"paths": [{
                "path": "/", "pathType": "Prefix",
                "backend": {"service": {"name": "podinfo", "port": {"number": 9898}}}
            }]}}]
        }
    }))
    .unwrap();
    let user_version = ingresses
        .create(&PostParams::default(), &user)
        .await
        .unwrap()
        .resource_version();

    let canary = create_canary(&client, &ns, |canary| {
        canary.spec.provider = Some("nginx".into());
        canary.spec.ingress_ref = Some(flagger_core::api::ObjectReference {
            api_version: Some("networking.k8s.io/v1".into()),
            kind: Some("Ingress".into()),
            name: "podinfo".into(),
            namespace: None,
        });
    })
    .await;

    let exec = Executor::new(client.clone());
    let mut ctx = context(&client, &ns, "nginx").await;
    let (resource, _) = Router::Nginx.routes_object(&canary).unwrap();
    let dynamic: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &resource);
    ctx.ingress = Some(dynamic.get("podinfo").await.unwrap());
    let set = |primary_weight, canary_weight| Command::SetRoutes {
        primary_weight,
        canary_weight,
        mirrored: false,
    };

    exec.execute(&canary, &ctx, &set(70, 30)).await.unwrap();
    let first = ingresses.get("podinfo-canary").await.unwrap();
    exec.execute(&canary, &ctx, &set(70, 30)).await.unwrap();
    let second = ingresses.get("podinfo-canary").await.unwrap();
    assert_eq!(
        first.resource_version(),
        second.resource_version(),
        "re-applying the same weights must not touch the canary Ingress"
    );
    let annotations = second.metadata.annotations.clone().unwrap();
    let nginx = |suffix: &str| {
        annotations
            .get(&format!("nginx.ingress.kubernetes.io/{suffix}"))
            .cloned()
    };
    assert_eq!(nginx("canary").as_deref(), Some("true"));
    assert_eq!(nginx("canary-weight").as_deref(), Some("30"));
    assert_eq!(nginx("proxy-body-size").as_deref(), Some("1m"));
    let backend = second.spec.as_ref().unwrap().rules.as_ref().unwrap()[0]
        .http
        .as_ref()
        .unwrap()
        .paths[0]
        .backend
        .service
        .clone()
        .unwrap();
    assert_eq!(backend.name, "podinfo-canary");
    assert_eq!(second.owner_references()[0].uid, canary.uid().unwrap());
    let object = dynamic.get("podinfo-canary").await.unwrap();
    assert_eq!(
        Router::Nginx.read_routes(&canary, &object),
        Some(Routes {
            primary_weight: 70,
            canary_weight: 30,
            mirrored: false
        })
    );
    // A/B testing, then back to no traffic: the by-header annotations leave with the match.
    let mut ab = canary.clone();
    let analysis = ab.spec.analysis.as_mut().unwrap();
    analysis.iterations = Some(10);
    analysis.match_ = Some(vec![serde_json::json!({
        "headers": {"x-canary": {"exact": "insider"}}
    })]);
    twice(&exec, &ab, &ctx, set(0, 100)).await;
    let object = dynamic.get("podinfo-canary").await.unwrap();
    let annotations = object.metadata.annotations.clone().unwrap();
    assert_eq!(
        annotations
            .get("nginx.ingress.kubernetes.io/canary-by-header-value")
            .map(String::as_str),
        Some("insider")
    );
    assert_eq!(
        Router::Nginx
            .read_routes(&ab, &object)
            .map(|r| r.canary_weight),
        Some(100)
    );
    twice(&exec, &ab, &ctx, set(100, 0)).await;
    let annotations = ingresses
        .get("podinfo-canary")
        .await
        .unwrap()
        .metadata
        .annotations
        .unwrap();
    assert!(
        !annotations.keys().any(|k| k.contains("canary-by-header")),
        "{annotations:?}"
    );
    assert_eq!(
        annotations
            .get("nginx.ingress.kubernetes.io/canary-weight")
            .map(String::as_str),
        Some("0")
    );
    assert_eq!(
        ingresses.get("podinfo").await.unwrap().resource_version(),
        user_version,
        "the user's Ingress is only read"
    );

    delete_namespace(&client, &ns).await;
}
