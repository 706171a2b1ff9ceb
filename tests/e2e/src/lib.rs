//! The real-cluster suite's support code: the telemetry generator (also a binary) and the
//! harness the scenarios in `tests/scenarios/` use to run the `flagger` binary against the
//! loopback cluster of `tests/cluster/`, a real Prometheus and that generator.
//!
//! Everything listens on and connects to 127.0.0.1 only. `tests/e2e/run.sh` starts the shared
//! processes and passes their addresses in `FLAGGER_E2E_*` variables (see [`env::Env`]).

pub mod env;
pub mod fidelity;
pub mod fixtures;
pub mod flagger_go;
pub mod gate;
pub mod health;
pub mod operator;
pub mod prometheus;
pub mod scale;
pub mod scenario;
pub mod telemetry;
pub mod traffic;
pub mod unrelated;
pub mod watch;

use std::path::Path;

pub type Error = Box<dyn std::error::Error + Send + Sync>;
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// kube and reqwest share one rustls; ring is the provider the workspace builds.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A client for the cluster of `kubeconfig` (or the usual `KUBECONFIG` lookup).
pub async fn kube_client(kubeconfig: Option<&Path>) -> Result<kube::Client> {
    install_crypto_provider();
    let config = match kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)?;
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await?
        }
        None => kube::Config::infer().await?,
    };
    Ok(kube::Client::try_from(config)?)
}
