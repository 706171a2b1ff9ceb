//! What an idle Canary costs per `-control-loop-interval`: every Canary is reconciled once per
//! interval, and with nothing to do that reconcile must cost the same whether 10 or 10,000
//! Canaries share the operator. Also what mapping one changed Deployment to its Canaries
//! costs (thousands of such events arrive while Canaries initialize).
//!
//! The reconciles run the operator's own path (`reconcile` and the bookkeeping after it) over
//! watch caches filled with N initialized, idle Canaries of the kubernetes provider (target,
//! primary, three Services each); any API request they make is counted and printed, and must be
//! zero. CPU time is the thread's own (`/proc/thread-self/schedstat`), on a current-thread
//! runtime, so other processes on the machine do not count.
//!
//! `cargo bench -p flagger --bench idle_resync [-- N...]` (default: 10 2000).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use flagger::controller::apply::CachedExecutor;
use flagger::controller::cache::Cache;
use flagger::controller::canary_index::CanaryIndex;
use flagger::controller::context::{Context, Settings, State};
use flagger::controller::initializations::Initializations;
use flagger::controller::outbox::Outbox;
use flagger::controller::refs::Kind;
use flagger::controller::watch::Stores;
use flagger::controller::{reconcile, snapshot, watch};
use flagger::events::EventPublisher;
use flagger::executor::{Executor, LabelSettings};
use flagger::metrics::MetricsClient;
use flagger::notifier::Notifier;
use flagger_core::api::{Canary, CanaryAnalysis, CanaryService, CanarySpec, ObjectReference};
use flagger_core::command::Command;
use flagger_core::snapshot::OperatorConfig;
use flagger_core::{CanaryStatus, Outcome, Phase};
use http::{Request, Response};
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use kube::Client;
use kube::client::Body;
use kube::runtime::reflector::store::Writer;
use kube::runtime::watcher::Event;
use serde_json::json;

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const NAMESPACE: &str = "bench";
/// Resyncs measured per size at least, after one that warms the caches up.
const MIN_RESYNCS: usize = 3;
/// CPU time each figure is measured over at least: the thread's CPU time is only brought up to
/// date at scheduler ticks, milliseconds apart.
const BUDGET: Duration = Duration::from_secs(1);

fn main() {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![10, 2000]
    } else {
        sizes
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    println!(
        "{:>8} {:>22} {:>20} {:>22} {:>14}",
        "canaries",
        "CPU µs/canary/resync",
        "wall µs/canary",
        "CPU µs/Deployment event",
        "API requests"
    );
    for n in sizes {
        runtime.block_on(measure(n));
    }
}

async fn measure(n: usize) {
    let requests = Arc::new(AtomicUsize::new(0));
    let caches = Caches::filled(n);
    let ctx = context(counting_client(requests.clone()), caches.stores.clone());
    let canaries = caches.stores.canaries.state();
    resync(&ctx, &canaries).await;
    let cpu = thread_cpu();
    let wall = Instant::now();
    let mut resyncs = 0;
    while resyncs < MIN_RESYNCS || thread_cpu() - cpu < BUDGET {
        resync(&ctx, &canaries).await;
        resyncs += 1;
    }
    let per = (n * resyncs) as f64;
    let cpu_us = (thread_cpu() - cpu).as_secs_f64() * 1e6 / per;
    let wall_us = wall.elapsed().as_secs_f64() * 1e6 / per;

    let targets: Vec<Deployment> = (0..n)
        .map(|i| deployment(&format!("podinfo-{i}"), 1))
        .collect();
    let cpu = thread_cpu();
    let mut mapped = 0;
    while thread_cpu() - cpu < BUDGET {
        for d in &targets {
            let found = watch::map_referenced(&ctx.stores, Kind::Deployment, d);
            assert_eq!(found.len(), 1, "each target maps to its Canary");
            mapped += 1;
        }
    }
    let map_us = (thread_cpu() - cpu).as_secs_f64() * 1e6 / mapped as f64;
    println!(
        "{n:>8} {cpu_us:>22.1} {wall_us:>20.1} {map_us:>22.2} {:>14}",
        requests.load(Ordering::SeqCst)
    );
}

/// One `-control-loop-interval`: every Canary reconciled, as the controller does.
async fn resync(ctx: &Arc<Context>, canaries: &[Arc<Canary>]) {
    for c in canaries {
        let action = reconcile::reconcile(c.clone(), ctx.clone()).await;
        assert!(action.is_ok(), "an idle reconcile failed: {action:?}");
        ctx.count_canaries();
    }
}

/// CPU time this thread has used.
fn thread_cpu() -> Duration {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    let ns = text
        .split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Duration::from_nanos(ns)
}

/// A client whose every request is counted and refused: an idle reconcile sends none.
fn counting_client(requests: Arc<AtomicUsize>) -> Client {
    let service = tower::service_fn(move |_: Request<Body>| {
        requests.fetch_add(1, Ordering::SeqCst);
        async {
            Ok::<_, std::convert::Infallible>(
                Response::builder()
                    .status(500)
                    .body(Body::from(b"{}".to_vec()))
                    .unwrap(),
            )
        }
    });
    Client::new(service, "default")
}

fn context(client: Client, stores: Stores) -> Arc<Context> {
    let http = flagger::webhook::http_client_builder().build().unwrap();
    let (outbox, _task) = Outbox::start(http.clone());
    let canary_index = CanaryIndex::of(stores.canaries.state().iter().map(|c| c.as_ref()));
    let state = State::new("bench", "kubernetes");
    state.readiness.set_caches_synced(true);
    Arc::new(Context {
        client: client.clone(),
        stores: stores.clone(),
        settings: Settings {
            namespace: String::new(),
            config: OperatorConfig::default(),
            metrics_server: "http://127.0.0.1:9".into(),
            event_webhook: None,
            config_tracking: false,
            labels: LabelSettings::default(),
            status_sync_timeout: Duration::from_secs(5),
        },
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
        failures: Default::default(),
        canary_counts: Default::default(),
        failure_reports: Default::default(),
        initializations: Initializations::new(32),
        canary_index,
        shards: None,
    })
}

struct Caches {
    stores: Stores,
}

impl Caches {
    /// `n` Canaries as the operator leaves them once initialized and promoted.
    fn filled(n: usize) -> Caches {
        let mut canaries = Writer::<Canary>::default();
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
            labels: LabelSettings::default(),
        };
        let mut unsettled = Vec::new();
        for i in 0..n {
            let name = format!("podinfo-{i}");
            let c = canary(&name);
            stores.deployments.put(deployment(&name, 0));
            stores
                .deployments
                .put(deployment(&format!("{name}-primary"), 2));
            for (service, app) in [
                (name.clone(), format!("{name}-primary")),
                (format!("{name}-primary"), format!("{name}-primary")),
                (format!("{name}-canary"), name.clone()),
            ] {
                stores.services.put(generated_service(&service, &app, &c));
            }
            unsettled.push(c);
        }
        for c in unsettled {
            let c = settled(&stores, c);
            stores.refresh_refs(&c);
            canaries.apply_watcher_event(&Event::Apply(c));
        }
        Caches { stores }
    }
}

/// The Canary with the status the core writes for it in this state (it adds its conditions
/// once), so that reconciling it again decides nothing new.
fn settled(stores: &Stores, mut c: Canary) -> Canary {
    let target = stores
        .deployments
        .get(NAMESPACE, &c.spec.target_ref.name)
        .unwrap();
    let hash = flagger::observe::template_hash(&target.spec.clone().unwrap().template);
    c.status = Some(CanaryStatus {
        phase: Some(Phase::Succeeded),
        last_applied_spec: Some(hash.clone()),
        last_promoted_spec: Some(hash),
        last_transition_time: Some(Timestamp::now()),
        ..Default::default()
    });
    for _ in 0..3 {
        let snap = snapshot::build(
            stores,
            &c,
            &OperatorConfig::default(),
            Timestamp::now(),
            Default::default(),
        );
        match flagger_core::decide(&snap) {
            Outcome::Decided(d) => match d.commands.iter().rev().find_map(|c| match c {
                Command::WriteStatus(s) => Some(s.clone()),
                _ => None,
            }) {
                Some(status) => c.status = Some(status),
                None => break,
            },
            other => panic!("the core did not decide: {other:?}"),
        }
    }
    c
}

fn canary(name: &str) -> Canary {
    let mut c = Canary::new(
        name,
        CanarySpec {
            provider: Some("kubernetes".into()),
            target_ref: ObjectReference {
                api_version: Some("apps/v1".into()),
                kind: Some("Deployment".into()),
                name: name.into(),
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
    c.metadata.namespace = Some(NAMESPACE.into());
    c.metadata.uid = Some(format!("{name}-uid"));
    c.metadata.resource_version = Some("1".into());
    c
}

/// A Deployment whose rollout finished.
fn deployment(name: &str, replicas: i32) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": NAMESPACE, "generation": 1},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "podinfod", "image": "podinfo:1",
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

/// A Service as the operator leaves it: owned by its Canary, with its labels and annotations,
/// and what the API server adds.
fn generated_service(name: &str, app: &str, owner: &Canary) -> Service {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {
            "name": name, "namespace": NAMESPACE,
            "labels": {"app": name},
            "annotations": {
                "helm.toolkit.fluxcd.io/driftDetection": "disabled",
                "kustomize.toolkit.fluxcd.io/reconcile": "disabled"
            },
            "ownerReferences": [{
                "apiVersion": "flagger.app/v1beta1", "kind": "Canary",
                "name": owner.metadata.name, "uid": owner.metadata.uid, "controller": true
            }]
        },
        "spec": {
            "type": "ClusterIP", "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
            "sessionAffinity": "None", "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack",
            "selector": {"app": app},
            "ports": [{"name": "http", "port": 9898, "protocol": "TCP", "targetPort": 9898}]
        }
    }))
    .unwrap()
}
