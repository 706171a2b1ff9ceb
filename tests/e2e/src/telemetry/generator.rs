//! The running generator: follows every Canary's routing object in the cluster, turns the
//! current split into simulated requests, and serves `/metrics` plus the scenario controls. With
//! the `nginx` provider the split comes from the canary Ingress's `canary-weight` annotation and
//! the requests are also counted as the ingress controller's.
//!
//! Endpoints (127.0.0.1 only):
//! - `GET /metrics`: the counters, for Prometheus;
//! - `PUT /scenario/{namespace}/{workload}` with `{"errorRate": 0.5, "latencyMs": 800}`: how that
//!   workload answers from now on (fields left out take their defaults: no errors, 20 ms);
//! - `GET /splits`: the split currently applied per Canary (for logs and debugging).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, put};
use axum::{Json, Router};
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams};
use kube::{Client, ResourceExt};
use serde_json::Value;

use super::model::{Behaviour, IngressKey, Telemetry, WorkloadKey};
use super::split::{self, Split};

/// How often routing objects are read back.
const POLL: Duration = Duration::from_millis(250);
/// How often simulated requests are added to the counters.
const TICK: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CanaryTraffic {
    pub primary: String,
    pub canary: String,
    /// Which object the split was read from.
    pub source: &'static str,
    pub split: Split,
    /// With the `nginx` provider: the controller's labels of the primary's and the canary's
    /// flows, which the generator also exports as `nginx_ingress_controller_*` series.
    #[serde(skip)]
    pub nginx: Option<(IngressKey, IngressKey)>,
}

#[derive(Default)]
struct Shared {
    telemetry: Telemetry,
    behaviours: BTreeMap<WorkloadKey, Behaviour>,
    /// Keyed by `namespace/canary`.
    traffic: BTreeMap<String, (String, CanaryTraffic)>,
}

#[derive(Clone)]
pub struct Generator {
    shared: Arc<Mutex<Shared>>,
    /// Production requests per second to each Canary's apex service.
    rps: f64,
}

fn resource(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
}

impl Generator {
    pub fn new(rps: f64) -> Generator {
        Generator {
            shared: Arc::default(),
            rps,
        }
    }

    pub fn router(&self) -> Router {
        Router::new()
            .route("/metrics", get(metrics))
            .route("/splits", get(splits))
            .route(
                "/scenario/{namespace}/{workload}",
                put(set_scenario).get(get_scenario),
            )
            .with_state(self.clone())
    }

    /// Serves on `addr` (which must be a loopback address) until the process ends.
    pub async fn serve(&self, listener: tokio::net::TcpListener) -> std::io::Result<()> {
        axum::serve(listener, self.router()).await
    }

    /// Adds simulated requests every [`TICK`] according to the latest splits.
    pub async fn run_traffic(&self) {
        let mut last = Instant::now();
        let mut ticker = tokio::time::interval(TICK);
        loop {
            ticker.tick().await;
            let now = Instant::now();
            let elapsed = now.duration_since(last).as_secs_f64();
            last = now;
            let mut s = self.shared.lock().unwrap_or_else(|e| e.into_inner());
            let flows: Vec<(WorkloadKey, f64)> = s
                .traffic
                .values()
                .flat_map(|(ns, t)| {
                    [(&t.primary, t.split.primary), (&t.canary, t.split.canary)].map(
                        |(w, share)| {
                            (
                                WorkloadKey {
                                    namespace: ns.clone(),
                                    workload: w.clone(),
                                },
                                share * self.rps * elapsed,
                            )
                        },
                    )
                })
                .collect();
            let ingress_flows: Vec<(IngressKey, WorkloadKey, f64)> = s
                .traffic
                .values()
                .filter_map(|(ns, t)| t.nginx.clone().map(|n| (ns, t, n)))
                .flat_map(|(ns, t, (primary, canary))| {
                    [
                        (primary, &t.primary, t.split.primary),
                        (canary, &t.canary, t.split.canary),
                    ]
                    .map(|(ingress, w, share)| {
                        (
                            ingress,
                            WorkloadKey {
                                namespace: ns.clone(),
                                workload: w.clone(),
                            },
                            share * self.rps * elapsed,
                        )
                    })
                })
                .collect();
            for (key, requests) in flows {
                let behaviour = s.behaviours.get(&key).copied().unwrap_or_default();
                s.telemetry.observe(&key, requests, behaviour);
            }
            for (ingress, workload, requests) in ingress_flows {
                let behaviour = s.behaviours.get(&workload).copied().unwrap_or_default();
                s.telemetry.observe_ingress(&ingress, requests, behaviour);
            }
        }
    }

    /// Reads every Canary's routing every [`POLL`]; errors are logged and retried.
    pub async fn follow_routes(&self, client: Client) {
        let canaries: Api<DynamicObject> = Api::all_with(
            client.clone(),
            &resource("flagger.app", "v1beta1", "Canary", "canaries"),
        );
        let mut ticker = tokio::time::interval(POLL);
        loop {
            ticker.tick().await;
            let list = match canaries.list(&ListParams::default()).await {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("telemetry: listing canaries: {e}");
                    continue;
                }
            };
            let mut traffic = BTreeMap::new();
            for c in list {
                let ns = c.namespace().unwrap_or_default();
                match traffic_of(&client, &c).await {
                    Ok(t) => {
                        traffic.insert(format!("{ns}/{}", c.name_any()), (ns, t));
                    }
                    Err(e) => eprintln!("telemetry: {ns}/{}: {e}", c.name_any()),
                }
            }
            let mut s = self.shared.lock().unwrap_or_else(|e| e.into_inner());
            for (key, (_, t)) in &traffic {
                let before = s.traffic.get(key).map(|(_, t)| t.split);
                if before != Some(t.split) {
                    println!(
                        "telemetry: {key} primary {:.2} canary {:.2} (from {})",
                        t.split.primary, t.split.canary, t.source
                    );
                }
            }
            let live: Vec<WorkloadKey> = traffic
                .values()
                .flat_map(|(ns, t)| {
                    [&t.primary, &t.canary].map(|w| WorkloadKey {
                        namespace: ns.clone(),
                        workload: w.clone(),
                    })
                })
                .collect();
            s.telemetry.retain(|k| live.contains(k));
            let live_ingress: Vec<IngressKey> = traffic
                .values()
                .filter_map(|(_, t)| t.nginx.clone())
                .flat_map(|(p, c)| [p, c])
                .collect();
            s.telemetry.retain_ingress(|k| live_ingress.contains(k));
            s.traffic = traffic;
        }
    }
}

async fn traffic_of(client: &Client, canary: &DynamicObject) -> Result<CanaryTraffic, kube::Error> {
    let ns = canary.namespace().unwrap_or_default();
    let spec = &canary.data["spec"];
    let target = spec["targetRef"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let service = spec["service"]["name"]
        .as_str()
        .filter(|s| !s.is_empty())
        .unwrap_or(&target)
        .to_string();
    let provider = spec["provider"].as_str().unwrap_or_default();
    let vs: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        &ns,
        &resource(
            "networking.istio.io",
            "v1",
            "VirtualService",
            "virtualservices",
        ),
    );
    let routes: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        &ns,
        &resource("gateway.networking.k8s.io", "v1", "HTTPRoute", "httproutes"),
    );
    let ingress_ref = spec["ingressRef"]["name"].as_str().unwrap_or_default();
    let mut nginx = None;
    let (source, split) = if provider == "kubernetes" {
        (
            "canary status",
            split::for_kubernetes_provider(&canary.data["status"]),
        )
    } else if provider == "nginx" {
        let ingresses: Api<DynamicObject> = Api::namespaced_with(
            client.clone(),
            &ns,
            &resource("networking.k8s.io", "v1", "Ingress", "ingresses"),
        );
        let clone = ingresses.get_opt(&format!("{ingress_ref}-canary")).await?;
        let canary_service = format!("{service}-canary");
        let port = spec["service"]["port"].as_i64().unwrap_or(80);
        let key = |service: &str, canary: String| IngressKey {
            namespace: ns.clone(),
            ingress: ingress_ref.to_string(),
            service: service.to_string(),
            canary,
        };
        nginx = Some((
            key(&service, String::new()),
            key(&canary_service, format!("{ns}-{canary_service}-{port}")),
        ));
        (
            "canary Ingress",
            split::from_canary_ingress(
                clone
                    .map(|o| serde_json::to_value(&o).unwrap_or(Value::Null))
                    .as_ref(),
            ),
        )
    } else if let Some(o) = vs.get_opt(&service).await? {
        (
            "VirtualService",
            split::from_virtual_service(&serde_json::to_value(&o).unwrap_or(Value::Null), &service),
        )
    } else if let Some(o) = routes.get_opt(&service).await? {
        (
            "HTTPRoute",
            split::from_http_route(&serde_json::to_value(&o).unwrap_or(Value::Null), &service),
        )
    } else {
        // Before the operator takes over routing, every request reaches the primary (or nothing).
        ("no routing object", Split::ALL_PRIMARY)
    };
    Ok(CanaryTraffic {
        primary: format!("{target}-primary"),
        canary: target,
        source,
        split,
        nginx,
    })
}

async fn metrics(State(g): State<Generator>) -> ([(&'static str, &'static str); 1], String) {
    let s = g.shared.lock().unwrap_or_else(|e| e.into_inner());
    (
        [("content-type", "text/plain; version=0.0.4")],
        s.telemetry.render(),
    )
}

async fn splits(State(g): State<Generator>) -> Json<BTreeMap<String, CanaryTraffic>> {
    let s = g.shared.lock().unwrap_or_else(|e| e.into_inner());
    Json(
        s.traffic
            .iter()
            .map(|(k, (_, t))| (k.clone(), t.clone()))
            .collect(),
    )
}

async fn set_scenario(
    State(g): State<Generator>,
    Path((namespace, workload)): Path<(String, String)>,
    Json(b): Json<Behaviour>,
) -> Result<Json<Behaviour>, (StatusCode, String)> {
    b.validate().map_err(|e| (StatusCode::BAD_REQUEST, e))?;
    println!("telemetry: {namespace}/{workload} now answers {b:?}");
    let mut s = g.shared.lock().unwrap_or_else(|e| e.into_inner());
    s.behaviours.insert(
        WorkloadKey {
            namespace,
            workload,
        },
        b,
    );
    Ok(Json(b))
}

async fn get_scenario(
    State(g): State<Generator>,
    Path((namespace, workload)): Path<(String, String)>,
) -> Json<Behaviour> {
    let s = g.shared.lock().unwrap_or_else(|e| e.into_inner());
    Json(
        s.behaviours
            .get(&WorkloadKey {
                namespace,
                workload,
            })
            .copied()
            .unwrap_or_default(),
    )
}

/// Refuses anything but a loopback listening address: nothing in the suite may be reachable from
/// elsewhere.
pub fn loopback(addr: &str) -> Result<SocketAddr, String> {
    let a: SocketAddr = addr
        .parse()
        .map_err(|e| format!("{addr:?} is not an address: {e}"))?;
    if a.ip().is_loopback() {
        Ok(a)
    } else {
        Err(format!("{addr} is not a loopback address"))
    }
}
