//! The operator's control loop: watch Canaries and everything they touch, and reconcile each
//! Canary whenever something it depends on changes or the core asked to be called again.
//!
//! - Each kind is watched once ([`watch`], [`scoped`]): the stream fills the cache snapshots are
//!   built from and triggers reconciles. Deployments, Services, autoscalers, ConfigMaps and
//!   Secrets are cached only as far as a Canary references them ([`refs`], [`cache`]), pruned
//!   ([`prune`]); Secrets are watched by metadata only. Generated objects map to their Canary by ownerReference (what
//!   `Controller::owns` does, without a second watch); targets, autoscalers and tracked configs
//!   map through the Canary cache. Mesh kinds whose CRD is not installed are not watched and
//!   their routes count as unknown.
//! - No reconcile starts before every cache has listed ([`sync`]: the Canary watch starts last);
//!   a reconcile builds the snapshot from the caches alone ([`snapshot`]), runs the core until it decides ([`mod@run`]), and carries out the
//!   decision in order ([`dispatch`]: kube-facing commands through the executor fed from the
//!   caches ([`apply`]), events through one long-lived recorder, alerts and event webhooks
//!   through an ordered queue ([`outbox`])).
//! - The requeue is the core's `wake_at`; every Canary is also reconciled each
//!   `-control-loop-interval`, which costs no API request when nothing is due.
//! - A Canary deleted without `revertOnDeletion` gets its target scaled back up ([`deletion`]).

pub mod apply;
pub mod cache;
pub mod canary_index;
pub mod context;
pub mod deletion;
pub mod dispatch;
pub mod initializations;
pub mod outbox;
pub mod prune;
pub mod reconcile;
pub mod refs;
pub mod route_store;
pub mod run;
pub mod scoped;
pub mod snapshot;
pub mod sync;
pub mod watch;

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flagger_core::api::{AlertProvider, Canary, MetricTemplate};
use futures::{StreamExt, future};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use kube::api::{Api, ListParams};
use kube::runtime::reflector;
use kube::runtime::{Controller, WatchStreamExt, controller, watcher};
use kube::{Client, ResourceExt};
use tokio::sync::mpsc;

use self::cache::Cache;
use self::canary_index::CanaryIndex;
use self::context::{Context, KubeExecutor, Settings, State};
use self::initializations::Initializations;
use self::outbox::Outbox;
use self::watch::{RouteKind, Stores, reflected, scoped_api};
use crate::events::EventPublisher;
use crate::metrics::MetricsClient;
use crate::notifier::Notifier;
use crate::trace_recorder::TraceRecorder;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(
        "cannot list Canaries ({0}); is the canaries.flagger.app CRD installed and may this service account list it?"
    )]
    CrdMissing(kube::Error),
    #[error("{0}")]
    Setup(String),
}

/// Everything `run` needs besides the client.
pub struct Options {
    pub settings: Settings,
    /// Reconciles running at once; 0 for no limit (one Canary is never reconciled twice at once).
    pub concurrency: u16,
    /// Every Canary is reconciled at least this often (`-control-loop-interval`).
    pub resync: Duration,
    pub record_traces: Option<std::path::PathBuf>,
    pub global_notifier: Notifier,
    /// This replica's name in events.
    pub instance: Option<String>,
    /// With `-shards`: act only on the Canaries of the shards this replica holds.
    pub shards: Option<Arc<crate::shard::Shards>>,
    /// Canaries initialized at once (`-max-concurrent-initializations`).
    pub max_initializations: usize,
}

/// The writers for every cache; kept apart from [`Stores`] (the readers) until the streams are
/// built.
struct Writers {
    canaries: reflector::store::Writer<Canary>,
    /// Fed by the Canary watch beside its cache.
    canary_index: CanaryIndex,
    templates: reflector::store::Writer<MetricTemplate>,
    providers: reflector::store::Writer<AlertProvider>,
}

/// Runs the controller until `shutdown` resolves.
pub async fn run(
    client: Client,
    state: State,
    make_executor: impl FnOnce(&Stores) -> Arc<dyn KubeExecutor>,
    opts: Options,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> Result<(), StartError> {
    let ns = opts.settings.namespace.clone();
    // Flagger refuses to start without its CRDs rather than watching nothing.
    scoped_api::<Canary>(&client, &ns)
        .list(&ListParams::default().limit(1))
        .await
        .map_err(StartError::CrdMissing)?;

    let tracking = opts.settings.config_tracking;
    let (canaries, canaries_w) = reflector::store();
    let gauge = |kind: refs::Kind| Some(state.metrics.cache_objects(kind.name()));
    let (templates, templates_w) = reflector::store();
    let (providers, providers_w) = reflector::store();
    let mut routes = Vec::new();
    for kind in RouteKind::ALL {
        match watch::discover_route_kind(&client, kind).await {
            Ok(Some(resource)) => {
                routes.push((kind, resource, route_store::RouteStore::default()));
            }
            Ok(None) => tracing::info!(
                kind = kind.group_and_kind().1,
                "CRD not installed; its routes are treated as unknown"
            ),
            Err(e) => tracing::warn!(
                kind = kind.group_and_kind().1,
                error = %e,
                "cannot discover the CRD; its routes are treated as unknown"
            ),
        }
    }
    let stores = Stores {
        canaries: canaries.clone(),
        deployments: Cache::new(refs::Kind::Deployment, gauge(refs::Kind::Deployment)),
        services: Cache::new(refs::Kind::Service, gauge(refs::Kind::Service)),
        autoscalers: Cache::new(refs::Kind::Autoscaler, gauge(refs::Kind::Autoscaler)),
        config_maps: tracking
            .then(|| Cache::new(refs::Kind::ConfigMap, gauge(refs::Kind::ConfigMap))),
        secrets: tracking.then(|| Cache::new(refs::Kind::Secret, gauge(refs::Kind::Secret))),
        templates,
        providers,
        routes,
        refs: Default::default(),
        labels: opts.settings.labels.clone(),
    };
    let canary_index = CanaryIndex::default();
    let writers = Writers {
        canaries: canaries_w,
        canary_index: canary_index.clone(),
        templates: templates_w,
        providers: providers_w,
    };

    let http = crate::webhook::http_client_builder()
        .build()
        .map_err(|e| StartError::Setup(format!("building the HTTP client failed: {e}")))?;
    let executor = make_executor(&stores);
    let metrics_client = MetricsClient::new().map_err(StartError::Setup)?;
    let traces = match &opts.record_traces {
        Some(dir) => Some(TraceRecorder::new(dir).map_err(|e| {
            StartError::Setup(format!("cannot record traces in {}: {e}", dir.display()))
        })?),
        None => None,
    };
    let (outbox, outbox_task) = Outbox::start(http.clone());
    let ctx = Arc::new(Context {
        client: client.clone(),
        stores: stores.clone(),
        settings: opts.settings,
        state: state.clone(),
        events: EventPublisher::new(client.clone(), opts.instance),
        http,
        metrics_client,
        global_notifier: opts.global_notifier,
        executor,
        outbox,
        traces,
        failures: Mutex::new(Default::default()),
        canary_counts: Mutex::new(Default::default()),
        failure_reports: Default::default(),
        shards: opts.shards.clone(),
        initializations: Initializations::new(opts.max_initializations),
        canary_index,
    });

    let (deleted_tx, deleted_rx) = mpsc::unbounded_channel();
    tokio::spawn(handle_deletions(ctx.clone(), deleted_rx));

    let mut controller = build_controller(
        &client,
        &ns,
        &stores,
        writers,
        deleted_tx,
        &state,
        opts.resync,
    );
    if let Some(shards) = &opts.shards {
        // A shard gained is acted on at once, not at the next resync.
        controller = controller.reconcile_on(crate::shard::gained_canaries(
            shards,
            stores.canaries.clone(),
        ));
    }
    let controller = controller
        .with_config(controller::Config::default().concurrency(opts.concurrency))
        .graceful_shutdown_on(shutdown);
    controller
        .run(reconcile::reconcile, reconcile::error_policy, ctx.clone())
        .for_each(move |result| {
            if let Err(e) = &result {
                log_controller_error(e);
            }
            ctx.count_canaries();
            future::ready(())
        })
        .await;
    // The queue closes once the last context is gone; give pending alerts and event webhooks a
    // moment to leave before the process exits.
    if tokio::time::timeout(Duration::from_secs(5), outbox_task)
        .await
        .is_err()
    {
        tracing::warn!("undelivered alerts or event webhooks dropped at shutdown");
    }
    Ok(())
}

fn build_controller(
    client: &Client,
    ns: &str,
    stores: &Stores,
    w: Writers,
    deleted: mpsc::UnboundedSender<Canary>,
    state: &State,
    resync: Duration,
) -> Controller<Canary> {
    let canary_events = canary_events(
        client,
        ns,
        stores,
        w.canaries,
        w.canary_index.clone(),
        deleted,
    );
    // Reconciles start once every cache has listed (the Canaries first, then what they
    // reference): until then they would see the target, primary or routes as missing.
    let readiness = state.readiness.clone();
    let others = stores.clone();
    let canary_events = sync::after(
        async move {
            let listed = sync::dependencies_listed(&others).await;
            if listed {
                tracing::info!(referenced = ?others.refs.counts(), "caches synced");
                readiness.set_caches_synced(true);
            }
            listed
        },
        canary_events,
    );
    let mut controller = Controller::for_stream(canary_events, stores.canaries.clone());

    // What the Canaries reference is known once they have listed; the targets' configs once
    // the Deployments have.
    let canaries_listed = {
        let s = stores.canaries.clone();
        move || {
            let s = s.clone();
            async move { sync::listed("Canary", &s).await }
        }
    };
    let (refs, labels) = (stores.refs.clone(), stores.labels.clone());
    let on_deployment = {
        let stores = stores.clone();
        move |event: &watcher::Event<Deployment>| match event {
            watcher::Event::Apply(d) | watcher::Event::Delete(d) => {
                stores.target_changed(&d.namespace().unwrap_or_default(), &d.name_any())
            }
            watcher::Event::InitDone => {
                for c in stores.canaries.state() {
                    stores.refresh_refs(&c);
                }
            }
            _ => {}
        }
    };
    let deployments = scoped::full(
        scoped_api::<Deployment>(client, ns),
        watcher::Config::default(),
        stores.deployments.clone(),
        refs.clone(),
        labels.clone(),
        on_deployment,
    );
    let s = stores.clone();
    controller = controller.watches_stream(sync::after(canaries_listed(), deployments), move |d| {
        watch::map_referenced(&s, refs::Kind::Deployment, &d)
    });
    let services = scoped::full(
        scoped_api::<Service>(client, ns),
        watcher::Config::default(),
        stores.services.clone(),
        refs.clone(),
        labels.clone(),
        |_| {},
    );
    let s = stores.clone();
    controller = controller.watches_stream(sync::after(canaries_listed(), services), move |o| {
        watch::map_referenced(&s, refs::Kind::Service, &o)
    });
    let autoscalers = scoped::full(
        scoped_api::<HorizontalPodAutoscaler>(client, ns),
        watcher::Config::default(),
        stores.autoscalers.clone(),
        refs.clone(),
        labels.clone(),
        |_| {},
    );
    let s = stores.clone();
    controller = controller.watches_stream(sync::after(canaries_listed(), autoscalers), move |o| {
        watch::map_referenced(&s, refs::Kind::Autoscaler, &o)
    });
    let deployments_listed = {
        let d = stores.deployments.clone();
        move || {
            let d = d.clone();
            async move { d.wait_listed().await }
        }
    };
    if let Some(cache) = &stores.config_maps {
        let config_maps = scoped::full(
            scoped_api::<ConfigMap>(client, ns),
            watcher::Config::default(),
            cache.clone(),
            refs.clone(),
            labels.clone(),
            |_| {},
        );
        let s = stores.clone();
        controller = controller
            .watches_stream(sync::after(deployments_listed(), config_maps), move |o| {
                watch::map_config(&s, refs::Kind::ConfigMap, &o)
            });
    }
    if let Some(cache) = &stores.secrets {
        let secrets = scoped::secrets(
            scoped_api::<kube::core::PartialObjectMeta<Secret>>(client, ns),
            watcher::Config::default().fields(watch::UNTRACKED_SECRET_TYPES_SELECTOR),
            cache.clone(),
            refs.clone(),
            labels.clone(),
        );
        let s = stores.clone();
        controller = controller
            .watches_stream(sync::after(deployments_listed(), secrets), move |o| {
                watch::map_config(&s, refs::Kind::Secret, &o)
            });
    }
    for (kind, resource, store) in &stores.routes {
        let api = if ns.is_empty() {
            Api::all_with(client.clone(), resource)
        } else {
            Api::namespaced_with(client.clone(), ns, resource)
        };
        let (canaries, kind) = (w.canary_index.clone(), *kind);
        controller = controller.watches_stream_with(
            watch::routes(api, store.clone()),
            move |o| watch::map_route(&canaries, kind, &o),
            resource.clone(),
        );
    }
    // Templates and alert providers are read when needed; they only have to be cached.
    drain(reflected(
        scoped_api::<MetricTemplate>(client, ns),
        w.templates,
    ));
    drain(reflected(
        scoped_api::<AlertProvider>(client, ns),
        w.providers,
    ));

    controller.reconcile_all_on(ticks(resync))
}

/// The Canary watch, run on its own so the Canaries list first (what they reference decides
/// what the other caches keep): it fills the Canary store, records each Canary's references
/// and reports deletions (which the controller never sees: a deleted object has nothing left
/// to reconcile). Yields the Canaries that changed.
fn canary_events(
    client: &Client,
    ns: &str,
    stores: &Stores,
    writer: reflector::store::Writer<Canary>,
    index: CanaryIndex,
    deleted: mpsc::UnboundedSender<Canary>,
) -> impl futures::Stream<Item = Result<Canary, watcher::Error>> + Send + 'static {
    let (tx, rx) = mpsc::unbounded_channel();
    let stores = stores.clone();
    let mut listed = std::collections::BTreeSet::new();
    let watch = watcher(
        scoped_api::<Canary>(client, ns),
        watcher::Config::default().any_semantic(),
    )
    .default_backoff()
    .modify(|c| c.managed_fields_mut().clear())
    .reflect(writer)
    .inspect(move |event| {
        if let Ok(event) = event {
            index.apply(event);
        }
    })
    .inspect(move |event| match event {
        Ok(watcher::Event::Apply(c)) => stores.refresh_refs(c),
        Ok(watcher::Event::InitApply(c)) => {
            stores.refresh_refs(c);
            listed.insert((c.namespace().unwrap_or_default(), c.name_any()));
        }
        Ok(watcher::Event::Delete(c)) => {
            // Its references go once the deletion is handled (the target is read then).
            let _ = deleted.send(c.clone());
        }
        Ok(watcher::Event::Init) => listed.clear(),
        Ok(watcher::Event::InitDone) => {
            // Deleted while the watch was down: no Delete event comes for those.
            for key in stores.refs.canaries_not_in(&listed) {
                stores.forget_canary(&key.0, &key.1);
            }
        }
        Err(_) => {}
    })
    .touched_objects();
    tokio::spawn(watch.for_each(move |item| {
        let _ = tx.send(item);
        future::ready(())
    }));
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|i| (i, rx)) })
}

fn drain<K: Send + 'static>(
    stream: impl futures::Stream<Item = Result<K, watcher::Error>> + Send + 'static,
) {
    tokio::spawn(stream.for_each(|r| {
        if let Err(e) = r {
            tracing::warn!(error = %e, "watch error; retrying");
        }
        future::ready(())
    }));
}

/// A tick every `period`, starting one period from now.
fn ticks(period: Duration) -> impl futures::Stream<Item = ()> + Send + 'static {
    futures::stream::unfold(
        tokio::time::interval_at(tokio::time::Instant::now() + period, period),
        |mut interval| async move {
            interval.tick().await;
            Some(((), interval))
        },
    )
}

async fn handle_deletions(ctx: Arc<Context>, mut deleted: mpsc::UnboundedReceiver<Canary>) {
    while let Some(canary) = deleted.recv().await {
        // With shards, only the replica holding the Canary's shard restores its target.
        let permit = ctx
            .shards
            .as_ref()
            .map(|s| s.permit(&canary.namespace().unwrap_or_default(), &canary.name_any()));
        let id = format!(
            "{}.{}",
            canary.name_any(),
            canary.namespace().unwrap_or_default()
        );
        ctx.count_canaries();
        ctx.clear_failures(&reflector::ObjectRef::from_obj(&canary));
        ctx.state.metrics.forget_canary(
            &canary.spec.target_ref.name,
            &canary.namespace().unwrap_or_default(),
        );
        let (ns, name) = (canary.namespace().unwrap_or_default(), canary.name_any());
        if matches!(permit, Some(None)) {
            // Another replica's shard restores the target; every replica keeps the caches.
            ctx.stores.forget_canary(&ns, &name);
            continue;
        }
        let restored = deletion::restore_target(&ctx.client, &ctx.stores, &canary).await;
        ctx.stores.forget_canary(&ns, &name);
        match restored {
            Ok(Some(replicas)) => tracing::info!(
                canary = %id,
                replicas,
                "Canary deleted; scaled its target back up"
            ),
            Ok(None) => {}
            Err(e) => tracing::warn!(
                canary = %id,
                error = %e,
                "Canary deleted; scaling its target back up failed"
            ),
        }
    }
}

fn log_controller_error(e: &controller::Error<reconcile::Error, watcher::Error>) {
    match e {
        // Already logged by the error policy.
        controller::Error::ReconcilerFailed(_, _) => {}
        controller::Error::ObjectNotFound(r) => {
            tracing::debug!(canary = %r, "Canary gone before its reconcile")
        }
        other => tracing::warn!(error = %other, "controller error"),
    }
}
