//! One benchmark run: each implementation in turn, in its own fresh namespace.

use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::Client;
use kube::api::{Api, DeleteParams};
use tokio::time::Instant;

use super::canary_watch::CanaryWatch;
use super::operators::{self, Implementation, Running};
use super::{Figures, INTERVAL_S, Options, apiserver_metrics, process_stats, workload};
use crate::Result;
use crate::fixtures::IMAGE_V2;

fn log(msg: impl AsRef<str>) {
    eprintln!("[scale] {}", msg.as_ref());
}

/// Measures every implementation of `opts`, in order; the namespaces are removed afterwards.
pub async fn run(opts: &Options) -> Result<Vec<(Implementation, Figures)>> {
    let client = crate::kube_client(Some(&opts.kubeconfig)).await?;
    std::fs::create_dir_all(&opts.logs)?;
    let mut out = Vec::new();
    for &which in &opts.implementations {
        let ns = format!("scale-{}", which.name());
        let figures = one(&client, opts, which, &ns).await;
        log(format!("{}: deleting namespace {ns}", which.name()));
        let t = Instant::now();
        workload::delete_namespace(&client, &ns, opts.timeout).await?;
        log(format!(
            "{}: namespace {ns} gone after {:.0} s",
            which.name(),
            t.elapsed().as_secs_f64()
        ));
        out.push((which, figures?));
    }
    Ok(out)
}

/// For the smoke test only: every implementation at once, each in its own namespace, so the
/// plumbing of a whole run is exercised in the time of the slowest. The API server's counts
/// then mix both implementations, and they share the CPU: the figures mean nothing.
pub async fn run_side_by_side(opts: &Options) -> Result<Vec<(Implementation, Figures)>> {
    let client = crate::kube_client(Some(&opts.kubeconfig)).await?;
    std::fs::create_dir_all(&opts.logs)?;
    let runs = opts.implementations.iter().map(|&which| {
        let client = client.clone();
        async move {
            let ns = format!("scale-{}", which.name());
            let figures = one(&client, opts, which, &ns).await;
            // Not waited for: a later run replaces a leftover namespace anyway.
            let namespaces: Api<Namespace> = Api::all(client.clone());
            let _ = namespaces.delete(&ns, &DeleteParams::background()).await;
            Ok::<_, crate::Error>((which, figures?))
        }
    });
    futures::future::try_join_all(runs).await
}

fn binary(opts: &Options, which: Implementation) -> Result<&Path> {
    match which {
        Implementation::Ours => Ok(&opts.ours_bin),
        Implementation::Flagger => opts.flagger_bin.as_deref().ok_or_else(|| {
            "no Flagger binary: pass --flagger-bin or set FLAGGER_E2E_FLAGGER_GO".into()
        }),
    }
}

async fn one(client: &Client, opts: &Options, which: Implementation, ns: &str) -> Result<Figures> {
    let n = opts.canaries;
    let k = opts.revisions.min(n / 2);
    let name = which.name();
    log(format!(
        "{name}: namespace {ns}: {n} targets, {} unrelated objects of each kind",
        opts.unrelated
    ));
    workload::fresh_namespace(client, ns, opts.timeout).await?;
    crate::unrelated::create_unrelated_objects(client, ns, opts.unrelated).await?;
    workload::create_targets(client, ns, 0..n).await?;
    workload::wait_targets_ready(client, ns, n, opts.timeout).await?;
    let watch = CanaryWatch::start(client, ns)?;

    let metrics_server = format!("http://127.0.0.1:{}", crate::env::free_port()?);
    let before = apiserver_metrics::scrape(client).await?;
    let mut op = operators::start(
        which,
        binary(opts, which)?,
        &opts.kubeconfig,
        ns,
        &metrics_server,
        &opts.logs,
    )
    .await?;
    log(format!("{name}: started (pid {})", op.pid));
    let result = measure(client, opts, &watch, &mut op, ns, (name, n, k)).await;
    let after = apiserver_metrics::scrape(client).await;
    op.stop().await?;
    let mut figures = result?;
    let all = after?.since(&before);
    figures.server_errors = all.server_errors();
    figures.throttled = all.throttled();
    figures.failures = all.failures().top(8);
    Ok(figures)
}

async fn measure(
    client: &Client,
    opts: &Options,
    watch: &CanaryWatch,
    op: &mut Running,
    ns: &str,
    (name, n, k): (&str, usize, usize),
) -> Result<Figures> {
    let log = |msg: String| log(format!("{name}: {msg}"));
    let names: Vec<String> = (0..n).map(workload::canary_name).collect();
    let mut f = Figures {
        canaries: n,
        window_s: opts.window.as_secs_f64(),
        bulk: n - k,
        start_rss_mib: process_stats::read(op.pid)?.rss_mib,
        ..Figures::default()
    };
    let pid = op.pid;

    // The probes, initialized before the load.
    workload::create_canaries(client, ns, 0..k).await?;
    let probes = &names[..k];
    watch
        .wait_until(
            "probes Initialized",
            opts.timeout,
            || op.check_alive(),
            |w| w.initialized_at(probes).iter().all(Option::is_some),
        )
        .await?;

    // The bulk, and at once a new revision of the probes.
    log(format!("creating {} canaries", n - k));
    let init_before = apiserver_metrics::scrape(client).await?;
    let bulk_start = Instant::now();
    workload::create_canaries(client, ns, k..n).await?;
    log(format!(
        "created in {:.1} s; new revision of {k} probes",
        bulk_start.elapsed().as_secs_f64()
    ));
    let revised = revise(client, ns, probes).await?;
    let bulk = &names[k..];
    watch
        .wait_until(
            "all Initialized, probes stepped",
            opts.timeout,
            || op.check_alive(),
            |w| w.initialized_at(bulk).iter().all(Option::is_some) && all_stepped(w, &revised),
        )
        .await?;
    f.init_s = watch
        .initialized_at(bulk)
        .iter()
        .flatten()
        .map(|t| t.duration_since(bulk_start).as_secs_f64())
        .fold(0.0, f64::max);
    // The benchmark's own creations of the bulk (POST canaries) are not the operator's.
    let init = apiserver_metrics::scrape(client)
        .await?
        .since(&init_before)
        .without_leases()
        .without(|verb, resource| verb == "POST" && resource == "canaries");
    f.init_requests = init.total();
    f.init_breakdown = init.top(30);
    (f.load_noticed_s, f.load_first_step_s) = revision_times(watch, &revised);
    log(format!(
        "{n} Initialized; bulk of {} in {:.1} s",
        n - k,
        f.init_s
    ));
    watch
        .wait_until(
            "probes Succeeded",
            opts.timeout,
            || op.check_alive(),
            |w| {
                revised.iter().all(|(name, at)| {
                    w.first_after(name, *at, |c| c.phase == "Succeeded")
                        .is_some()
                })
            },
        )
        .await?;

    // Idle: one interval for the last writes of initialization to land, then the window.
    tokio::time::sleep(Duration::from_secs_f64(INTERVAL_S)).await;
    let (m0, s0) = (
        apiserver_metrics::scrape(client).await?,
        process_stats::read(pid)?,
    );
    log(format!("idle window of {:.0} s", f.window_s));
    tokio::time::sleep(opts.window).await;
    op.check_alive()?;
    let (m1, s1) = (
        apiserver_metrics::scrape(client).await?,
        process_stats::read(pid)?,
    );
    let idle = m1.since(&m0).without_leases();
    f.idle_requests = idle.total();
    f.idle_breakdown = idle.top(5);
    f.idle_cpu_s = s1.cpu_seconds - s0.cpu_seconds;
    f.total_cpu_s = s1.cpu_seconds;
    f.end_rss_mib = s1.rss_mib;
    f.peak_rss_mib = s1.peak_rss_mib;

    // A new revision of K idle Canaries.
    let idle_names = &names[k..(2 * k).min(n)];
    let revised = revise(client, ns, idle_names).await?;
    watch
        .wait_until(
            "idle revisions stepped",
            opts.timeout,
            || op.check_alive(),
            |w| all_stepped(w, &revised),
        )
        .await?;
    (f.idle_noticed_s, f.idle_first_step_s) = revision_times(watch, &revised);
    Ok(f)
}

/// A new image for each of `names`; when each patch was sent.
async fn revise(client: &Client, ns: &str, names: &[String]) -> Result<Vec<(String, Instant)>> {
    let mut out = Vec::new();
    for name in names {
        let at = Instant::now();
        workload::set_image(client, ns, name, IMAGE_V2).await?;
        out.push((name.clone(), at));
    }
    Ok(out)
}

fn first_step(w: &CanaryWatch, name: &str, at: Instant) -> Option<Instant> {
    w.first_after(name, at, |c| c.weight > 0)
}

fn all_stepped(w: &CanaryWatch, revised: &[(String, Instant)]) -> bool {
    revised
        .iter()
        .all(|(name, at)| first_step(w, name, *at).is_some())
}

/// Seconds to `Progressing` and to the first weight above 0, per revised Canary.
fn revision_times(w: &CanaryWatch, revised: &[(String, Instant)]) -> (Vec<f64>, Vec<f64>) {
    let secs = |t: Option<Instant>, at: Instant| {
        t.map(|t| t.duration_since(at).as_secs_f64())
            .unwrap_or(f64::NAN)
    };
    revised
        .iter()
        .map(|(name, at)| {
            let noticed = w.first_after(name, *at, |c| c.phase == "Progressing");
            (secs(noticed, *at), secs(first_step(w, name, *at), *at))
        })
        .unzip()
}
