//! `flagger-e2e-telemetry --kubeconfig PATH [--listen 127.0.0.1:0] [--port-file PATH] [--rps 20]`
//!
//! Emits Istio and application metrics for every Canary in the cluster, following the weights
//! the operator writes; see `flagger_e2e::telemetry::generator` for the endpoints.

use std::path::PathBuf;
use std::process::ExitCode;

use flagger_e2e::telemetry::generator::{Generator, loopback};

struct Args {
    kubeconfig: Option<PathBuf>,
    listen: String,
    port_file: Option<PathBuf>,
    rps: f64,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        kubeconfig: std::env::var_os("KUBECONFIG").map(PathBuf::from),
        listen: "127.0.0.1:0".into(),
        port_file: None,
        rps: 20.0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--kubeconfig" => a.kubeconfig = Some(PathBuf::from(value()?)),
            "--listen" => a.listen = value()?,
            "--port-file" => a.port_file = Some(PathBuf::from(value()?)),
            "--rps" => {
                a.rps = value()?
                    .parse()
                    .map_err(|e| format!("--rps: {e}"))
                    .and_then(|r: f64| {
                        if r > 0.0 {
                            Ok(r)
                        } else {
                            Err("--rps must be positive".into())
                        }
                    })?
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(a)
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("flagger-e2e-telemetry: {e}");
            return ExitCode::from(2);
        }
    };
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("flagger-e2e-telemetry: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    flagger_e2e::install_crypto_provider();
    let addr = loopback(&args.listen)?;
    let client = flagger_e2e::kube_client(args.kubeconfig.as_deref())
        .await
        .map_err(|e| format!("kubernetes client: {e}"))?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("listening on {addr}: {e}"))?;
    let bound = listener.local_addr().map_err(|e| e.to_string())?;
    if let Some(f) = &args.port_file {
        std::fs::write(f, format!("{}\n", bound.port()))
            .map_err(|e| format!("writing {}: {e}", f.display()))?;
    }
    println!(
        "telemetry: listening on http://{bound}, {} req/s per canary",
        args.rps
    );
    let g = Generator::new(args.rps);
    let traffic = g.clone();
    tokio::spawn(async move { traffic.run_traffic().await });
    let routes = g.clone();
    tokio::spawn(async move { routes.follow_routes(client).await });
    g.serve(listener).await.map_err(|e| format!("serving: {e}"))
}
