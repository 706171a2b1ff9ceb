//! Every request the kube client sends is counted by verb and resource, which is how the
//! operator's load on the API server is observed.

use crate::controller_support::*;
use flagger::kube_metrics::ApiRequestLayer;
use flagger::operator_metrics::OperatorMetrics;
use flagger_core::api::Canary;
use http::{Request, Response};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::client::{Body, ClientBuilder};
use serde_json::json;

#[tokio::test]
async fn requests_are_counted_by_verb_and_resource() {
    let metrics = OperatorMetrics::new();
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let canary = canary();
    let server = tokio::spawn(async move {
        while let Some((req, send)) = handle.next_request().await {
            let body = if req.uri().path().contains("/canaries") {
                if req.method() == http::Method::GET && !req.uri().path().ends_with("/podinfo") {
                    json!({"apiVersion": "flagger.app/v1beta1", "kind": "CanaryList", "metadata": {}, "items": []})
                } else {
                    serde_json::to_value(&canary).unwrap()
                }
            } else {
                serde_json::to_value(deployment("podinfo", 1, "podinfo:1")).unwrap()
            };
            send.send_response(
                Response::builder()
                    .header("content-type", "application/json")
                    .body(Body::from(serde_json::to_vec(&body).unwrap()))
                    .unwrap(),
            );
        }
    });
    let client = ClientBuilder::new(service, "test")
        .with_layer(&ApiRequestLayer::new(metrics.kube_requests(), 0, 0))
        .build();
    let canaries: Api<Canary> = Api::namespaced(client.clone(), "test");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "test");
    canaries.list(&ListParams::default()).await.unwrap();
    canaries.get("podinfo").await.unwrap();
    canaries
        .patch_status(
            "podinfo",
            &PatchParams::apply("flagger").force(),
            &Patch::Apply(
                json!({"apiVersion": "flagger.app/v1beta1", "kind": "Canary", "status": {}}),
            ),
        )
        .await
        .unwrap();
    deployments.get("podinfo").await.unwrap();
    deployments.get("podinfo").await.unwrap();
    drop((client, canaries, deployments));
    server.await.unwrap();

    let text = metrics.encode();
    for line in [
        r#"flagger_kube_requests_total{resource="canaries",verb="list"} 1"#,
        r#"flagger_kube_requests_total{resource="canaries",verb="get"} 1"#,
        r#"flagger_kube_requests_total{resource="canaries/status",verb="patch"} 1"#,
        r#"flagger_kube_requests_total{resource="deployments",verb="get"} 2"#,
    ] {
        assert!(text.contains(line), "missing {line} in\n{text}");
    }
}

#[tokio::test(start_paused = true)]
async fn requests_beyond_the_burst_wait_for_the_rate_limit() {
    let metrics = OperatorMetrics::new();
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let arrivals = tokio::spawn(async move {
        let mut at = Vec::new();
        while let Some((_req, send)) = handle.next_request().await {
            at.push(tokio::time::Instant::now());
            let body = serde_json::to_vec(&deployment("podinfo", 1, "podinfo:1")).unwrap();
            send.send_response(
                Response::builder()
                    .header("content-type", "application/json")
                    .body(Body::from(body))
                    .unwrap(),
            );
        }
        at
    });
    // 2 requests per second, bursts of 2.
    let client = ClientBuilder::new(service, "test")
        .with_layer(&ApiRequestLayer::new(metrics.kube_requests(), 2, 2))
        .build();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "test");
    let start = tokio::time::Instant::now();
    for _ in 0..4 {
        deployments.get("podinfo").await.unwrap();
    }
    drop((client, deployments));
    let at = arrivals.await.unwrap();
    let offsets: Vec<u128> = at.iter().map(|t| (*t - start).as_millis()).collect();
    assert_eq!(offsets.len(), 4);
    assert!(offsets[1] < 100, "the burst goes at once: {offsets:?}");
    assert!(
        (450..700).contains(&offsets[2]),
        "then one every 500ms: {offsets:?}"
    );
    assert!((950..1200).contains(&offsets[3]), "{offsets:?}");
}

/// The lane of a write is the sending task's, although kube's client hands every request to a
/// buffer worker: through the operator's own client stack, a write sent outside an
/// initialization passes the initialization writes queued before it.
#[tokio::test(start_paused = true)]
async fn a_prompt_write_passes_queued_bulk_writes_through_the_client() {
    use flagger::write_pacing::{Lane, Pacer, WritePacingLayer, in_lane};
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::PostParams;

    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    // One write in flight, and one slot of the prompt lane's own.
    let pacer = Pacer::with_prompt_slots(1, 1);
    let client = ClientBuilder::new(service, "test")
        .with_layer(&ApiRequestLayer::new(
            OperatorMetrics::new().kube_requests(),
            0,
            0,
        ))
        .with_layer(&WritePacingLayer::new(pacer.clone()))
        .build();
    let api: Api<ConfigMap> = Api::namespaced(client, "test");
    let create = |name: &str, lane: Option<Lane>| {
        let api = api.clone();
        let mut cm = ConfigMap::default();
        cm.metadata.name = Some(name.into());
        let write = async move { api.create(&PostParams::default(), &cm).await.map(|_| ()) };
        match lane {
            Some(lane) => tokio::spawn(in_lane(lane, write)),
            None => tokio::spawn(write),
        }
    };
    let mut arrived = Vec::new();
    let mut replies = Vec::new();
    let mut tasks = vec![create("init-1", Some(Lane::Bulk))];
    let (req, reply) = next_write(&mut handle).await;
    arrived.push(created_name(req).await);
    replies.push(reply);
    for name in ["init-2", "init-3"] {
        tasks.push(create(name, Some(Lane::Bulk)));
    }
    while pacer.waiting() != (0, 2) {
        tokio::task::yield_now().await;
    }
    // Sent last, while the bound is full: it goes at once, into the prompt lane's slot.
    tasks.push(create("new-revision", None));
    let (req, reply) = next_write(&mut handle).await;
    arrived.push(created_name(req).await);
    replies.push(reply);
    for _ in 0..2 {
        // Everything in flight answered: the next write is the pacer's choice.
        for r in replies.drain(..) {
            r.send_response(created());
        }
        let (req, reply) = next_write(&mut handle).await;
        arrived.push(created_name(req).await);
        replies.push(reply);
    }
    for r in replies.drain(..) {
        r.send_response(created());
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(arrived, ["init-1", "new-revision", "init-2", "init-3"]);
}

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

/// The next request to arrive; with the clock paused, a test where none can arrive fails here
/// as soon as every task waits, instead of hanging.
async fn next_write(
    handle: &mut Handle,
) -> (
    Request<Body>,
    tower_test::mock::SendResponse<Response<Body>>,
) {
    tokio::time::timeout(std::time::Duration::from_secs(3600), handle.next_request())
        .await
        .expect("no write was admitted")
        .unwrap()
}

/// The name of the object a create request sends.
async fn created_name(req: Request<Body>) -> String {
    let bytes = req.into_body().collect_bytes().await.unwrap();
    let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    body["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn created() -> Response<Body> {
    let body = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}});
    Response::builder()
        .status(201)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(&body).unwrap()))
        .unwrap()
}
