//! `flagger`: the operator (`run`, the default, so Flagger's `flagger -metrics-server=…` command
//! lines work unchanged), `crd` (print the CRDs), `replay` (offline trace replay) and `test`
//! (policy tests over generated scenarios).

use std::future::Future;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{ArgAction, Parser, Subcommand};
use flagger::cli::{RunArgs, normalize_args};
use flagger::controller::apply::CachedExecutor;
use flagger::controller::context::{KubeExecutor, Settings, State};
use flagger::controller::{self, Options};
use flagger::executor::{Executor, LabelSettings};
use flagger::kube_metrics::ApiRequestLayer;
use flagger::notifier::Notifier;
use flagger::policy_test::TestArgs;
use flagger::replay::ReplayArgs;
use flagger::write_pacing::{Pacer, PacerMetrics, WritePacingLayer};
use flagger::{leader, recordings, server, shard, telemetry};
use kube::client::ClientBuilder;

// Decisions and replays allocate many small, short-lived values; mimalloc serves them about a
// third faster than glibc's allocator (see `cargo bench -p flagger-sim`). The `system-allocator`
// feature leaves glibc's malloc in place so heap profilers that hook it (heaptrack) see everything.
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;
use kube::config::{KubeConfigOptions, Kubeconfig};
use tokio::sync::watch;

const VERSION: &str = env!("CARGO_PKG_VERSION");

#[derive(Parser, Debug)]
#[command(
    name = "flagger",
    about = "Progressive delivery for Kubernetes: Flagger's Canary resources, driven by a deterministic core.",
    disable_version_flag = true,
    args_conflicts_with_subcommands = true
)]
struct Cli {
    /// Print the version and exit.
    #[arg(long, action = ArgAction::SetTrue)]
    version: bool,
    #[command(subcommand)]
    command: Option<Cmd>,
    /// Without a subcommand, the flags of `run`.
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run the operator (the default).
    Run(Box<RunArgs>),
    /// Print the CustomResourceDefinitions (Canary, MetricTemplate, AlertProvider) as YAML.
    Crd,
    /// Replay a trace offline against the decision core.
    Replay(ReplayArgs),
    /// List the recordings of `-record-traces`, or print one (for `kubectl exec`: the image has
    /// no shell and no tar, so `kubectl cp` cannot fetch them).
    Recordings(RecordingsArgs),
    /// Test Canaries against expectations over generated scenarios (docs/policy-testing.md).
    Test(TestArgs),
}

#[derive(clap::Args, Debug)]
struct RecordingsArgs {
    /// The `-record-traces` directory (the chart's by default).
    #[arg(long, global = true, value_name = "DIR", default_value = recordings::CHART_DIR)]
    dir: std::path::PathBuf,
    #[command(subcommand)]
    action: Option<RecordingsCmd>,
}

#[derive(Subcommand, Debug)]
enum RecordingsCmd {
    /// List the recordings: file, bytes, last modified (the default).
    Ls,
    /// Write one recording to standard output, up to its last complete line.
    Cat {
        /// `<namespace>.<name>.jsonl`, as `ls` lists it.
        file: String,
    },
}

fn recordings_cmd(args: RecordingsArgs) -> ExitCode {
    match args.action.unwrap_or(RecordingsCmd::Ls) {
        RecordingsCmd::Ls => match recordings::list(&args.dir) {
            Ok(entries) => {
                for e in entries {
                    println!("{}\t{}\t{}", e.file, e.bytes, e.modified);
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("flagger: listing {}: {e}", args.dir.display());
                ExitCode::FAILURE
            }
        },
        RecordingsCmd::Cat { file } => {
            let mut out = std::io::stdout().lock();
            match recordings::copy_to(&args.dir, &file, &mut out) {
                Ok(_) => ExitCode::SUCCESS,
                Err(e @ recordings::OpenError::BadName(_)) => {
                    eprintln!("flagger: {e}");
                    ExitCode::from(2)
                }
                Err(e) => {
                    eprintln!("flagger: {e} in {}", args.dir.display());
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse_from(normalize_args(std::env::args_os())) {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            // One line naming the cause; `-h` has the rest.
            let text = e.render().to_string();
            let first = text.lines().next().unwrap_or("invalid arguments");
            eprintln!("flagger: {}", first.trim_start_matches("error: "));
            return ExitCode::from(2);
        }
    };
    if cli.version {
        println!("{VERSION}");
        return ExitCode::SUCCESS;
    }
    match cli.command {
        Some(Cmd::Crd) => {
            print!("{}", flagger::crd::render_yaml());
            ExitCode::SUCCESS
        }
        Some(Cmd::Replay(args)) => flagger::replay::run(args),
        Some(Cmd::Recordings(args)) => recordings_cmd(args),
        Some(Cmd::Test(args)) => flagger::policy_test::run(args),
        Some(Cmd::Run(args)) => operate(*args),
        None => operate(cli.run),
    }
}

fn operate(args: RunArgs) -> ExitCode {
    let sharding = match args.sharding(&leader::identity()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("flagger: {e}");
            return ExitCode::from(2);
        }
    };
    // kube and reqwest share rustls; only `ring` is linked, installed before any client exists.
    let _ = rustls::crypto::ring::default_provider().install_default();
    telemetry::init(args.log_level.as_filter());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("flagger: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(args, sharding)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

async fn kube_config(args: &RunArgs) -> Result<kube::Config, String> {
    let mut config = match &args.kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path)
                .map_err(|e| format!("reading kubeconfig {}: {e}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
                .await
                .map_err(|e| format!("kubeconfig {}: {e}", path.display()))?
        }
        None => kube::Config::infer()
            .await
            .map_err(|e| format!("no Kubernetes configuration found: {e}"))?,
    };
    if let Some(master) = args.master.as_deref().filter(|m| !m.is_empty()) {
        config.cluster_url = master
            .parse()
            .map_err(|e| format!("-master {master}: {e}"))?;
    }
    // So that an API server's audit log and priority-and-fairness rules can tell us apart.
    config.headers.push((
        http::header::USER_AGENT,
        http::HeaderValue::from_static(concat!("flagger/", env!("CARGO_PKG_VERSION"))),
    ));
    Ok(config)
}

/// Resolves once SIGTERM or SIGINT arrives.
fn shutdown_signal() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("installing the SIGTERM handler");
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        tracing::info!("shutting down");
        let _ = tx.send(true);
    });
    rx
}

fn on_shutdown(rx: &watch::Receiver<bool>) -> impl Future<Output = ()> + Send + Sync + 'static {
    let mut rx = rx.clone();
    async move {
        let _ = rx.wait_for(|stop| *stop).await;
    }
}

async fn serve(args: RunArgs, sharding: Option<shard::Config>) -> Result<(), String> {
    let config = kube_config(&args).await?;
    let state = State::new(VERSION, &args.mesh_provider);
    let pacer = Pacer::new(args.max_writes_in_flight as usize);
    state
        .metrics
        .register(Box::new(PacerMetrics::new(pacer.clone())))
        .map_err(|e| format!("registering the write pacer's metrics: {e}"))?;
    let client = ClientBuilder::try_from(config)
        .map_err(|e| format!("building the Kubernetes client: {e}"))?
        // The rate limit is inside the write pacer (the last layer is the outermost): a write
        // takes a token only once admitted, so the token bucket's queue holds no more than the
        // writes in flight and the reads, and a prompt write never waits behind thousands of
        // bulk writes for a token.
        .with_layer(&ApiRequestLayer::new(
            state.metrics.kube_requests(),
            args.kubeconfig_qps,
            args.kubeconfig_burst,
        ))
        .with_layer(&WritePacingLayer::new(pacer))
        .build();
    let stop = shutdown_signal();

    // Recordings get a listener of their own (loopback by default), never the metrics port's.
    let mut recordings_task = None;
    let mut recordings_bound = None;
    if let Some(dir) = &args.record_traces {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot record traces in {}: {e}", dir.display()))?;
        let addr = args.recordings_address;
        let (bound, task) =
            server::serve(addr, recordings::router(dir.clone()), on_shutdown(&stop))
                .await
                .map_err(|e| format!("cannot listen on {addr} (-recordings-address): {e}"))?;
        tracing::info!(%bound, dir = %dir.display(), "serving the recordings at /recordings");
        recordings_task = Some(task);
        recordings_bound = Some(bound.to_string());
    }

    let metrics = state.metrics.clone();
    let app = server::router(Arc::new(move || metrics.encode()), state.readiness.clone()).merge(
        recordings::hint_router(recordings::hint(recordings_bound.as_deref())),
    );
    let addr = SocketAddr::new(args.listen_address, args.port);
    let (bound, server_task) = server::serve(addr, app, on_shutdown(&stop))
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    tracing::info!(%bound, "serving /metrics, /healthz and /readyz");

    let mut leadership = None;
    if args.enable_leader_election {
        let ns = leader::lease_namespace(&args.namespace, &args.leader_election_namespace);
        state.readiness.set_standby(true);
        tracing::info!(
            namespace = ns,
            lease = leader::LEASE_NAME,
            "waiting for the leader lease"
        );
        let mut stopped = stop.clone();
        tokio::select! {
            acquired = leader::acquire(client.clone(), ns, leader::identity()) => {
                leadership = Some(acquired.map_err(|e| format!("leader election: {e}"))?);
            }
            _ = stopped.wait_for(|s| *s) => return Ok(()),
        }
        state.readiness.set_standby(false);
        tracing::info!("acquired the leader lease");
    }

    let mut shard_task = None;
    let shards = sharding.map(|cfg| {
        let shards = shard::Shards::new(cfg.shards, cfg.by);
        let readiness = state.readiness.clone();
        let synced = async move {
            while !readiness.caches_synced() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        let manager = shard::Manager::new(client.clone(), cfg, shards.clone());
        shard_task = Some(tokio::spawn(manager.run(synced, on_shutdown(&stop))));
        shards
    });

    check_metrics_server(&args.metrics_server).await;
    let global_notifier = match args.global_notifier() {
        Ok(Some(c)) => Notifier::from_global(&c).unwrap_or_else(|e| {
            tracing::error!(error = %e, "global notifier disabled");
            Notifier::disabled()
        }),
        Ok(None) => Notifier::disabled(),
        Err(e) => {
            tracing::error!(error = %e, "global notifier disabled");
            Notifier::disabled()
        }
    };
    let labels = LabelSettings::from_flags(
        &args.selector_labels.join(","),
        &args.include_label_prefix.join(","),
    );
    let exec_client = client.clone();
    let exec_labels = labels.clone();
    let mesh_provider = args.mesh_provider.clone();
    let make_executor = move |stores: &controller::watch::Stores| -> Arc<dyn KubeExecutor> {
        Arc::new(CachedExecutor {
            executor: Executor::new(exec_client),
            stores: stores.clone(),
            labels: exec_labels,
            mesh_provider,
        })
    };
    let opts = Options {
        settings: Settings {
            namespace: args.namespace.clone(),
            config: args.operator_config(),
            metrics_server: args.metrics_server.clone(),
            event_webhook: args.event_webhook().map(str::to_string),
            config_tracking: args.enable_config_tracking,
            labels,
            status_sync_timeout: Duration::from_secs(5),
        },
        // Flagger runs every Canary's analysis in its own goroutine; `-threadiness` only sizes its
        // informer work queue. A bounded pool here would let two slow webhooks hold up every
        // other Canary, so reconciles of distinct Canaries are not limited (0 = unbounded).
        concurrency: 0,
        resync: std::time::Duration::try_from(args.control_loop_interval)
            .unwrap_or(Duration::from_secs(10)),
        record_traces: args.record_traces.clone(),
        global_notifier,
        instance: std::env::var("POD_NAME").ok(),
        shards,
        max_initializations: args.max_concurrent_initializations as usize,
    };
    let run = controller::run(client, state, make_executor, opts, on_shutdown(&stop));
    let result = match leadership.as_mut() {
        Some(l) => {
            tokio::select! {
                r = run => r,
                _ = l.lost() => {
                    // Another replica may already act: stop at once, as Flagger does.
                    tracing::error!("lost the leader lease; exiting");
                    std::process::exit(1);
                }
            }
        }
        None => run.await,
    };
    if let Some(l) = leadership {
        l.release().await;
    }
    if let Some(task) = shard_task {
        // Releases the shards once their reconciles stopped, so others take them at once.
        let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), server_task).await;
    if let Some(task) = recordings_task {
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
    result.map_err(|e| e.to_string())
}

/// Flagger probes the metrics server at startup and only warns: Canaries may use other providers.
async fn check_metrics_server(address: &str) {
    let client = match flagger::metrics::MetricsClient::new() {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "cannot check the metrics server");
            return;
        }
    };
    match client.is_online(address).await {
        Ok(()) => tracing::info!(address, "metrics server is online"),
        Err(e) => tracing::warn!(address, error = %e, "metrics server is not reachable"),
    }
}
