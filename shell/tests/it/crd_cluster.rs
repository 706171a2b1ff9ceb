//! The generated CRDs on a real API server (tests/cluster/cluster.sh up): installed as
//! `flagger crd` prints them, they must accept Flagger's YAML (the whole compatibility corpus,
//! stored exactly as sent), keep the mesh fields verbatim and refuse the malformed specs the
//! schema rules target.
//! Run with `KUBECONFIG=<state>/kubeconfig cargo test -p flagger --test it -- --ignored crd_cluster::`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use flagger::crd::crds;
use flagger_core::Canary;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};

use crate::compat_corpus;
use kube::core::{DynamicObject, GroupVersionKind};
use kube::{Client, discovery::ApiResource};
use serde_json::{Value, json};

/// Our CRDs, as `flagger crd` prints them, installed and Established.
async fn install(client: &Client) {
    let ours: Vec<Value> = crds()
        .iter()
        .map(|crd| serde_json::to_value(crd).unwrap())
        .collect();
    install_values(client, &ours).await;
}

/// One way to break a valid spec.
type Edit = fn(&mut Value);

fn edit(f: Edit) -> Edit {
    f
}

fn canary(name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "flagger.app/v1beta1",
        "kind": "Canary",
        "metadata": { "name": name },
        "spec": spec
    })
}

fn valid_spec() -> Value {
    json!({
        "provider": "istio",
        "targetRef": { "apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo" },
        "service": {
            "port": 9898,
            "targetPort": "http",
            "match": [{ "uri": { "prefix": "/api" } }],
            "retries": { "attempts": 3, "perTryTimeout": "1s" },
            "trafficPolicy": { "tls": { "mode": "ISTIO_MUTUAL" } }
        },
        "analysis": {
            "interval": "1m",
            "threshold": 5,
            "iterations": 10,
            "match": [{ "headers": { "x-canary": { "exact": "insider" } } }],
            "metrics": [{ "name": "request-success-rate", "thresholdRange": { "min": 99 }, "interval": "1m" }],
            "webhooks": [{ "name": "load-test", "url": "http://flagger-loadtester/", "metadata": { "cmd": "hey -z 1m" } }]
        }
    })
}

#[tokio::test]
#[ignore = "needs a cluster: tests/cluster/cluster.sh up, then KUBECONFIG"]
async fn the_api_server_keeps_good_canaries_and_refuses_malformed_ones() {
    let client = Client::try_default()
        .await
        .expect("KUBECONFIG points at a running test cluster");
    install(&client).await;
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let ns = format!("crd-{nanos}");
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let mut namespace = Namespace::default();
    namespace.metadata.name = Some(ns.clone());
    namespaces
        .create(&PostParams::default(), &namespace)
        .await
        .unwrap();

    let resource =
        ApiResource::from_gvk(&GroupVersionKind::gvk("flagger.app", "v1beta1", "Canary"));
    let raw: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &resource);
    let create = |name: &str, spec: Value| {
        let raw = raw.clone();
        let object: DynamicObject = serde_json::from_value(canary(name, spec)).unwrap();
        async move { raw.create(&PostParams::default(), &object).await }
    };

    create("good", valid_spec()).await.unwrap();
    let typed: Api<Canary> = Api::namespaced(client.clone(), &ns);
    let stored = typed.get("good").await.unwrap();
    let service = stored.spec.service();
    assert_eq!(service.target_port, Some(json!("http")));
    assert_eq!(
        service.match_,
        Some(vec![json!({ "uri": { "prefix": "/api" } })]),
        "mesh fields are kept verbatim, not pruned"
    );
    assert_eq!(
        service.traffic_policy,
        Some(json!({ "tls": { "mode": "ISTIO_MUTUAL" } }))
    );
    assert_eq!(
        stored.spec.analysis.as_ref().unwrap().match_,
        Some(vec![
            json!({ "headers": { "x-canary": { "exact": "insider" } } })
        ])
    );

    let malformed: Vec<(&str, Edit)> = vec![
        (
            "two-strategies",
            edit(|s| s["analysis"]["stepWeight"] = json!(10)),
        ),
        (
            "no-threshold",
            edit(|s| {
                s["analysis"].as_object_mut().unwrap().remove("threshold");
            }),
        ),
        (
            "no-strategy",
            edit(|s| {
                s["analysis"].as_object_mut().unwrap().remove("iterations");
            }),
        ),
        (
            "weight-not-a-number",
            edit(|s| {
                s["analysis"].as_object_mut().unwrap().remove("iterations");
                s["analysis"]["stepWeight"] = json!("ten");
            }),
        ),
        (
            "unknown-provider",
            edit(|s| s["provider"] = json!("linkerdd")),
        ),
        ("port-zero", edit(|s| s["service"]["port"] = json!(0))),
        (
            "port-too-big",
            edit(|s| s["service"]["port"] = json!(70000)),
        ),
        (
            "no-port",
            edit(|s| {
                s["service"].as_object_mut().unwrap().remove("port");
            }),
        ),
        (
            "statefulset",
            edit(|s| s["targetRef"]["kind"] = json!("StatefulSet")),
        ),
        (
            "unknown-autoscaler",
            edit(|s| {
                s["autoscalerRef"] =
                    json!({ "apiVersion": "v1", "kind": "Autoscaler", "name": "podinfo" })
            }),
        ),
        (
            "no-target",
            edit(|s| {
                s.as_object_mut().unwrap().remove("targetRef");
            }),
        ),
        (
            "bad-hook-type",
            edit(|s| s["analysis"]["webhooks"][0]["type"] = json!("pre-rollback")),
        ),
    ];
    for (name, break_it) in malformed {
        let mut spec = valid_spec();
        break_it(&mut spec);
        match create(name, spec).await {
            Err(kube::Error::Api(status)) => assert_eq!(status.code, 422, "{name}: {status:?}"),
            other => panic!("{name} was not refused: {other:?}"),
        }
    }

    namespaces
        .delete(&ns, &DeleteParams::default())
        .await
        .unwrap();
}

async fn namespace(client: &Client, prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let ns = format!("{prefix}-{nanos}");
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let mut namespace = Namespace::default();
    namespace.metadata.name = Some(ns.clone());
    namespaces
        .create(&PostParams::default(), &namespace)
        .await
        .unwrap();
    ns
}

/// Every document of `fixtures/compat` (Flagger-valid YAML using every field of Flagger's
/// schemas, and the values only the core refuses) is accepted by a server-side dry-run apply,
/// as `kubectl apply --server-side --dry-run=server` sends it, and comes back exactly as sent:
/// a field our schema pruned or defaulted would show as a difference. The Canaries the server
/// returns then mean to the operator what their annotation says.
#[tokio::test]
#[ignore = "needs a cluster: tests/cluster/cluster.sh up, then KUBECONFIG"]
async fn the_compatibility_corpus_is_stored_as_sent() {
    let client = Client::try_default()
        .await
        .expect("KUBECONFIG points at a running test cluster");
    install(&client).await;
    let ns = namespace(&client, "compat").await;
    let docs = compat_corpus::documents();
    let mut canaries = 0;
    for (file, mut doc) in docs {
        doc["metadata"]["namespace"] = json!(ns);
        let kind = doc["kind"].as_str().unwrap().to_string();
        let name = doc["metadata"]["name"].as_str().unwrap().to_string();
        let resource =
            ApiResource::from_gvk(&GroupVersionKind::gvk("flagger.app", "v1beta1", &kind));
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &resource);
        let params = PatchParams::apply("compat-corpus").dry_run();
        let stored = match api.patch(&name, &params, &Patch::Apply(&doc)).await {
            Ok(stored) => stored,
            Err(e) => panic!("{file}: {kind} {name} was refused: {e}"),
        };
        let stored = serde_json::to_value(&stored).unwrap();
        assert_eq!(
            stored["spec"], doc["spec"],
            "{file}: {kind} {name} is not stored as sent"
        );
        assert_eq!(
            stored["metadata"]["annotations"], doc["metadata"]["annotations"],
            "{file}: {kind} {name}"
        );
        if kind == "Canary" {
            canaries += 1;
            assert_eq!(
                compat_corpus::outcome(&stored),
                compat_corpus::expectation(&doc),
                "{file}: {name} as the API server returns it"
            );
        }
        // A dry run stores nothing.
        assert!(
            api.get_opt(&name).await.unwrap().is_none(),
            "{file}: {name}"
        );
    }
    assert!(canaries >= 30, "{canaries}");
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .delete(&ns, &DeleteParams::default())
        .await
        .unwrap();
}

/// The group Flagger's own CRDs are installed under beside ours: same schemas, another name.
const FLAGGER_GO_GROUP: &str = "flagger-go.flagger.test";

/// Flagger v1.44.0's CRDs, as published in its Go module (`artifacts/flagger/crd.yaml`), moved
/// to [`FLAGGER_GO_GROUP`] so they can be served beside ours; the schemas are untouched.
fn flaggers_crds() -> Vec<Value> {
    let path = std::env::var("FLAGGER_GO_CRDS").expect(
        "FLAGGER_GO_CRDS names Flagger's crd.yaml (tests/e2e/run.sh sets it from the Go module cache)",
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut crds: Vec<Value> = serde_saphyr::from_multiple(&text).unwrap();
    for crd in &mut crds {
        let plural = crd["spec"]["names"]["plural"].as_str().unwrap().to_string();
        crd["spec"]["group"] = json!(FLAGGER_GO_GROUP);
        crd["metadata"]["name"] = json!(format!("{plural}.{FLAGGER_GO_GROUP}"));
    }
    crds
}

/// Server-side applies each CRD and waits (up to 10 s) until the API server serves it.
async fn install_values(client: &Client, crds: &[Value]) {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in crds {
        let crd: CustomResourceDefinition = serde_json::from_value(crd.clone()).unwrap();
        let name = crd.metadata.name.clone().unwrap();
        api.patch(
            &name,
            &PatchParams::apply("crd-test").force(),
            &Patch::Apply(&crd),
        )
        .await
        .unwrap();
        for _ in 0..100 {
            let established = api
                .get(&name)
                .await
                .unwrap()
                .status
                .and_then(|s| s.conditions);
            if established
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The corpus is Flagger-valid: Flagger's own CRDs accept every document (a server-side dry
/// run, as `kubectl apply --server-side --dry-run=server` sends it). With
/// `the_compatibility_corpus_is_stored_as_sent` this shows that nothing Flagger accepts among
/// these shapes is refused by ours.
#[tokio::test]
#[ignore = "needs a cluster: tests/cluster/cluster.sh up, then KUBECONFIG and FLAGGER_GO_CRDS"]
async fn flaggers_own_crds_accept_the_compatibility_corpus() {
    let client = Client::try_default()
        .await
        .expect("KUBECONFIG points at a running test cluster");
    install_values(&client, &flaggers_crds()).await;
    let ns = namespace(&client, "compat-go").await;
    let mut refused = Vec::new();
    let docs = compat_corpus::documents();
    for (file, mut doc) in docs.iter().cloned() {
        doc["metadata"]["namespace"] = json!(ns);
        doc["apiVersion"] = json!(format!("{FLAGGER_GO_GROUP}/v1beta1"));
        let kind = doc["kind"].as_str().unwrap().to_string();
        let name = doc["metadata"]["name"].as_str().unwrap().to_string();
        let gvk = GroupVersionKind::gvk(FLAGGER_GO_GROUP, "v1beta1", &kind);
        let api: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), &ns, &ApiResource::from_gvk(&gvk));
        let params = PatchParams::apply("compat-corpus").dry_run();
        if let Err(e) = api.patch(&name, &params, &Patch::Apply(&doc)).await {
            refused.push(format!("{file}: {kind} {name}: {e}"));
        }
    }
    assert!(docs.len() >= 30, "{}", docs.len());
    assert!(
        refused.is_empty(),
        "Flagger's CRDs refuse:\n{}",
        refused.join("\n")
    );
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .delete(&ns, &DeleteParams::default())
        .await
        .unwrap();
}
