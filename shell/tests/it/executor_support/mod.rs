//! A mocked API server for executor tests: every request is recorded (method, path, query,
//! content type, JSON body) and answered by the test's responder; tests then assert on the
//! exact sequence of requests a command produced.

#![allow(dead_code)] // not every helper is used by every test module

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use flagger::executor::{ExecContext, Executor, Known, LabelSettings};
use flagger_core::api::{Canary, CanaryAnalysis, CanaryService, CanarySpec, ObjectReference};
use http::{Request, Response};
use k8s_openapi::api::apps::v1::Deployment;
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};

#[derive(Clone, Debug)]
pub struct Captured {
    pub method: String,
    pub path: String,
    pub query: BTreeMap<String, String>,
    pub content_type: Option<String>,
    pub body: Value,
}

impl Captured {
    /// `PATCH .../<path>` as server-side apply by `flagger`, taking over conflicting fields.
    pub fn assert_apply(&self, path: &str) {
        assert_eq!((self.method.as_str(), self.path.as_str()), ("PATCH", path));
        assert_eq!(
            self.content_type.as_deref(),
            Some("application/apply-patch+yaml"),
            "{path}"
        );
        assert_eq!(
            self.query.get("fieldManager").map(String::as_str),
            Some("flagger")
        );
        assert_eq!(self.query.get("force").map(String::as_str), Some("true"));
    }

    /// `PATCH .../<path>` as a JSON merge patch by `flagger` (never forced).
    pub fn assert_merge(&self, path: &str) {
        assert_eq!((self.method.as_str(), self.path.as_str()), ("PATCH", path));
        assert_eq!(
            self.content_type.as_deref(),
            Some("application/merge-patch+json")
        );
        assert_eq!(
            self.query.get("fieldManager").map(String::as_str),
            Some("flagger")
        );
        assert!(!self.query.contains_key("force"));
    }

    pub fn assert_get(&self, path: &str) {
        assert_eq!((self.method.as_str(), self.path.as_str()), ("GET", path));
    }
}

pub fn not_found() -> (u16, Value) {
    (
        404,
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found"}),
    )
}

pub fn conflict() -> (u16, Value) {
    (
        409,
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Conflict", "code": 409, "message": "the object has been modified"}),
    )
}

/// Answers GETs with 404 and writes with the body they sent (what an API server returns for a
/// successful apply of a new object), except writes to Canaries, answered with `canary`.
pub fn echo(canary: Canary) -> impl Fn(&Captured) -> (u16, Value) + Send + 'static {
    move |req| match req.method.as_str() {
        "GET" => not_found(),
        _ if req.path.contains("/canaries/") => (200, serde_json::to_value(&canary).unwrap()),
        _ => (200, req.body.clone()),
    }
}

/// Runs `f` against an executor whose client talks to the mock, and returns its output with
/// every request it made, in order.
pub async fn run<T, F, Fut>(
    respond: impl Fn(&Captured) -> (u16, Value) + Send + 'static,
    f: F,
) -> (T, Vec<Captured>)
where
    F: FnOnce(Executor) -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let server = tokio::spawn(async move {
        let mut seen = Vec::new();
        while let Some((request, send)) = handle.next_request().await {
            let captured = capture(request).await;
            let (status, body) = respond(&captured);
            send.send_response(
                Response::builder()
                    .status(status)
                    .header("content-type", "application/json")
                    .body(Body::from(serde_json::to_vec(&body).unwrap()))
                    .unwrap(),
            );
            seen.push(captured);
        }
        seen
    });
    let output = f(Executor::new(Client::new(service, "default"))).await;
    // The executor (and with it the client) is gone: the mock sees its channel close.
    let seen = tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("the mock API server stops once the client is dropped")
        .unwrap();
    (output, seen)
}

async fn capture(request: Request<Body>) -> Captured {
    let method = request.method().to_string();
    let path = request.uri().path().to_string();
    let query = request
        .uri()
        .query()
        .map(|q| {
            q.split('&')
                .filter(|p| !p.is_empty())
                .filter_map(|p| p.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        })
        .unwrap_or_default();
    let content_type = request
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string());
    let bytes = request.into_body().collect_bytes().await.unwrap();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).expect("request bodies are JSON")
    };
    Captured {
        method,
        path,
        query,
        content_type,
        body,
    }
}

pub fn canary() -> Canary {
    let mut canary = Canary::new(
        "podinfo",
        CanarySpec {
            target_ref: ObjectReference {
                api_version: Some("apps/v1".into()),
                kind: Some("Deployment".into()),
                name: "podinfo".into(),
                namespace: None,
            },
            service: Some(CanaryService {
                port: 9898,
                ..CanaryService::default()
            }),
            analysis: Some(CanaryAnalysis {
                interval: Some("1m".into()),
                threshold: Some(5),
                max_weight: Some(50),
                step_weight: Some(10),
                ..CanaryAnalysis::default()
            }),
            ..CanarySpec::default()
        },
    );
    canary.metadata.namespace = Some("test".into());
    canary.metadata.uid = Some("6d3c1a0e-uid".into());
    canary.metadata.resource_version = Some("7".into());
    canary
}

pub fn target() -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "podinfo",
            "namespace": "test",
            "labels": { "app": "podinfo", "team": "web", "kustomize.toolkit.fluxcd.io/name": "apps" },
            "annotations": { "team/owner": "web" }
        },
        "spec": {
            "replicas": 3,
            "minReadySeconds": 5,
            "revisionHistoryLimit": 4,
            "progressDeadlineSeconds": 60,
            "strategy": { "type": "RollingUpdate", "rollingUpdate": { "maxUnavailable": 0 } },
            "selector": { "matchLabels": { "app": "podinfo" } },
            "template": {
                "metadata": {
                    "labels": { "app": "podinfo", "version": "6.0.0" },
                    "annotations": { "prometheus.io/scrape": "true" }
                },
                "spec": {
                    "containers": [{
                        "name": "podinfod",
                        "image": "ghcr.io/stefanprodan/podinfo:6.0.0",
                        "ports": [{ "name": "http", "containerPort": 9898 }]
                    }]
                }
            }
        }
    }))
    .unwrap()
}

pub fn context(provider: &str) -> ExecContext {
    ExecContext {
        target: Some(Arc::new(target())),
        primary: None,
        apex: Known::Unknown,
        target_hpa: None,
        ingress: None,
        existing_routes: Vec::new(),
        provider: provider.into(),
        labels: LabelSettings::default(),
        tracked_configs: BTreeMap::new(),
    }
}

pub const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/test/deployments";
pub const SERVICES: &str = "/api/v1/namespaces/test/services";
pub const CANARIES: &str = "/apis/flagger.app/v1beta1/namespaces/test/canaries";
pub const HPAS: &str = "/apis/autoscaling/v2/namespaces/test/horizontalpodautoscalers";

/// The controller owner reference every generated object must carry. No `blockOwnerDeletion`:
/// it would need RBAC on `canaries/finalizers` wherever the admission plugin enforcing it runs.
pub fn assert_owned_by_canary(object: &Value) {
    assert_eq!(
        object["metadata"]["ownerReferences"],
        json!([{
            "apiVersion": "flagger.app/v1beta1",
            "kind": "Canary",
            "name": "podinfo",
            "uid": "6d3c1a0e-uid",
            "controller": true
        }])
    );
}
