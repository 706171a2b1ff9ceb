//! Shared pieces of the controller tests: a recording mock API server, watch caches filled by
//! hand, and a podinfo Canary with its Deployment.

#![allow(dead_code)] // not every helper is used by every test module

use std::sync::{Arc, Mutex};
use std::time::Duration;

use flagger::controller::apply::CachedExecutor;
use flagger::controller::cache::Cache;
use flagger::controller::context::{Context, Settings, State};
use flagger::controller::outbox::Outbox;
use flagger::controller::refs::Kind;
use flagger::controller::watch::Stores;
use flagger::events::EventPublisher;
use flagger::executor::{Executor, LabelSettings};
use flagger::metrics::MetricsClient;
use flagger::notifier::Notifier;
use flagger_core::api::{Canary, CanaryAnalysis, CanaryService, CanarySpec, ObjectReference};
use flagger_core::snapshot::OperatorConfig;
use http::{Request, Response};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use kube::Client;
use kube::client::Body;
use kube::runtime::reflector::store::Writer;
use kube::runtime::watcher;
use serde_json::{Value, json};

/// One request as the API server received it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    /// Path and query.
    pub uri: String,
    pub path: String,
    pub body: Value,
}

impl Seen {
    pub fn line(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

pub type Responder = Box<dyn Fn(&Seen) -> (u16, Value) + Send>;

/// A client whose requests are recorded and answered by `respond`; the returned task yields
/// every request once all clones of the client are gone.
pub fn mock_client(respond: Responder) -> (Client, tokio::task::JoinHandle<Vec<Seen>>) {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let task = tokio::spawn(async move {
        let mut seen = Vec::new();
        while let Some((request, send)) = handle.next_request().await {
            let s = capture(request).await;
            let (status, body) = respond(&s);
            send.send_response(
                Response::builder()
                    .status(status)
                    .header("content-type", "application/json")
                    .body(Body::from(serde_json::to_vec(&body).unwrap()))
                    .unwrap(),
            );
            seen.push(s);
        }
        seen
    });
    (Client::new(service, "default"), task)
}

async fn capture(request: Request<Body>) -> Seen {
    let method = request.method().to_string();
    let uri = request.uri().to_string();
    let path = request.uri().path().to_string();
    let bytes = request.into_body().collect_bytes().await.unwrap();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or(Value::Null)
    };
    Seen {
        method,
        uri,
        path,
        body,
    }
}

/// What an API server answers to writes of new objects: the object itself. Writes to the
/// Canary get `canary` back (its status subresource answers with the whole object); reads 404.
pub fn echo(canary: Canary) -> Responder {
    Box::new(move |s| match s.method.as_str() {
        "GET" => (
            404,
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404}),
        ),
        _ if s.path.contains("/canaries/") => {
            let mut c = serde_json::to_value(&canary).unwrap();
            if let Some(status) = s.body.get("status") {
                c["status"] = status.clone();
            }
            (200, c)
        }
        _ => {
            let mut body = s.body.clone();
            if body.is_object() && body.get("metadata").is_none() {
                body["metadata"] = json!({});
            }
            (200, body)
        }
    })
}

/// Watch caches filled by hand.
pub struct Caches {
    pub stores: Stores,
    canaries: Writer<Canary>,
}

impl Caches {
    pub fn new() -> Caches {
        let canaries = Writer::<Canary>::default();
        let stores = Stores {
            canaries: canaries.as_reader(),
            deployments: Cache::new(Kind::Deployment, None),
            services: Cache::new(Kind::Service, None),
            autoscalers: Cache::new(Kind::Autoscaler, None),
            config_maps: None,
            secrets: None,
            templates: Writer::default().as_reader(),
            providers: Writer::default().as_reader(),
            routes: Vec::new(),
            refs: Default::default(),
            labels: Default::default(),
        };
        Caches { stores, canaries }
    }

    pub fn canary(&mut self, c: &Canary) {
        self.canaries
            .apply_watcher_event(&watcher::Event::Apply(c.clone()));
    }

    pub fn remove_canary(&mut self, c: &Canary) {
        self.canaries
            .apply_watcher_event(&watcher::Event::Delete(c.clone()));
    }

    pub fn deployment(&mut self, d: &Deployment) {
        self.stores.deployments.put(d.clone());
    }

    /// A Service as the operator leaves it (owned by [`canary`], with our labels, annotations
    /// and port, and what the API server adds): `<x>-canary` selects the target's pods
    /// (`app: <x>`), `<x>-primary` and the apex `<x>` the primary's.
    pub fn service(&mut self, name: &str) {
        let app = match name.strip_suffix("-canary") {
            Some(target) => target.to_string(),
            None if name.ends_with("-primary") => name.to_string(),
            None => format!("{name}-primary"),
        };
        let c = canary();
        let mut s = served_service(name, &app);
        s["metadata"]["labels"] = json!({"app": name});
        s["metadata"]["annotations"] = json!({
            "helm.toolkit.fluxcd.io/driftDetection": "disabled",
            "kustomize.toolkit.fluxcd.io/reconcile": "disabled"
        });
        s["metadata"]["ownerReferences"] = json!([{
            "apiVersion": "flagger.app/v1beta1", "kind": "Canary", "name": c.metadata.name,
            "uid": c.metadata.uid, "controller": true
        }]);
        let s: Service = serde_json::from_value(s).unwrap();
        self.stores.services.put(s);
    }

    /// A user's Service selecting `app: <app>`, with the port a Canary of port 9898 writes.
    pub fn service_selecting(&mut self, name: &str, app: &str) {
        let s: Service = serde_json::from_value(served_service(name, app)).unwrap();
        self.stores.services.put(s);
    }
}

fn served_service(name: &str, app: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": "test"},
        "spec": {
            "type": "ClusterIP", "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
            "sessionAffinity": "None", "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack",
            "selector": {"app": app},
            "ports": [{"name": "http", "port": 9898, "protocol": "TCP", "targetPort": 9898}]
        }
    })
}

pub fn canary() -> Canary {
    let mut c = Canary::new(
        "podinfo",
        CanarySpec {
            provider: Some("kubernetes".into()),
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
                threshold: Some(2),
                iterations: Some(2),
                ..CanaryAnalysis::default()
            }),
            ..CanarySpec::default()
        },
    );
    c.metadata.namespace = Some("test".into());
    c.metadata.uid = Some("0b5e-canary-uid".into());
    c.metadata.resource_version = Some("1".into());
    c
}

/// A Deployment whose rollout finished: every replica updated and available.
pub fn deployment(name: &str, replicas: i32, image: &str) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "test", "generation": 1},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "podinfod", "image": image,
                    "ports": [{"name": "http", "containerPort": 9898}]}]}
            }
        },
        "status": {
            "observedGeneration": 1,
            "replicas": replicas,
            "updatedReplicas": replicas,
            "availableReplicas": replicas,
            "readyReplicas": replicas
        }
    }))
    .unwrap()
}

pub fn settings() -> Settings {
    Settings {
        namespace: String::new(),
        config: OperatorConfig::default(),
        metrics_server: "http://127.0.0.1:9".into(),
        event_webhook: None,
        config_tracking: false,
        labels: LabelSettings::default(),
        // Nothing updates the hand-filled caches after a write: do not wait for them.
        status_sync_timeout: Duration::from_millis(10),
    }
}

/// A controller context whose every API request goes to `client`.
pub fn context(client: Client, stores: Stores, settings: Settings) -> Arc<Context> {
    let http = flagger::webhook::http_client_builder().build().unwrap();
    let (outbox, _task) = Outbox::start(http.clone());
    // As the Canary watch leaves it; tests that change Canaries later feed it too.
    let canary_index = flagger::controller::canary_index::CanaryIndex::of(
        stores.canaries.state().iter().map(|c| c.as_ref()),
    );
    let state = State::new("test", "kubernetes");
    state.readiness.set_caches_synced(true);
    Arc::new(Context {
        client: client.clone(),
        stores: stores.clone(),
        settings,
        state,
        events: EventPublisher::new(client.clone(), None),
        http,
        metrics_client: MetricsClient::new().unwrap(),
        global_notifier: Notifier::disabled(),
        executor: Arc::new(CachedExecutor {
            executor: Executor::new(client),
            stores,
            labels: LabelSettings::default(),
            mesh_provider: "kubernetes".into(),
        }),
        outbox,
        traces: None,
        failures: Mutex::new(Default::default()),
        canary_counts: Mutex::new(Default::default()),
        failure_reports: Default::default(),
        shards: None,
        initializations: flagger::controller::initializations::Initializations::new(4),
        canary_index,
    })
}
