//! Every kube-facing command against a real API server (tests/cluster/cluster.sh up): the bodies
//! the mocked tests pin down must also be accepted, and applying them twice must change nothing.
//! Run with `KUBECONFIG=<state>/kubeconfig cargo test -p flagger --test executor_cluster -- --ignored`.

mod executor_support;

use std::time::{SystemTime, UNIX_EPOCH};

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
    let mut ctx = executor_support::context(provider);
    ctx.target = deployments.get_opt("podinfo").await.unwrap();
    ctx.primary = deployments.get_opt("podinfo-primary").await.unwrap();
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

#[tokio::test]
#[ignore = "needs a cluster: tests/cluster/cluster.sh up, then KUBECONFIG"]
async fn commands_are_accepted_and_idempotent_on_a_real_api_server() {
    let (client, ns) = setup().await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let mut target = executor_support::target();
    target.metadata.namespace = Some(ns.clone());
    deployments
        .create(&PostParams::default(), &target)
        .await
        .unwrap();

    let canaries: Api<Canary> = Api::namespaced(client.clone(), &ns);
    let mut canary = executor_support::canary();
    canary.metadata.namespace = Some(ns.clone());
    canary.metadata.uid = None;
    canary.metadata.resource_version = None;
    let canary = canaries
        .create(&PostParams::default(), &canary)
        .await
        .unwrap();
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
    let version = primary.resource_version();
    let ctx = context(&client, &ns, "istio").await;
    twice(&exec, &canary, &ctx, Command::PromoteTemplate).await;
    assert_eq!(
        deployments
            .get("podinfo-primary")
            .await
            .unwrap()
            .resource_version(),
        version,
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
        flagger::observe::routes("istio", &vs).unwrap(),
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
        flagger::observe::routes("gatewayapi:v1", &route).unwrap(),
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
    assert_eq!(stored.status, Some(status));

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

    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .delete(&ns, &DeleteParams::default())
        .await
        .unwrap();
}
