//! Where the shared processes are, as `tests/e2e/run.sh` exports them.

use std::path::PathBuf;

use crate::Result;

#[derive(Debug, Clone)]
pub struct Env {
    /// `KUBECONFIG`: the loopback cluster's admin kubeconfig.
    pub kubeconfig: PathBuf,
    /// `FLAGGER_E2E_PROMETHEUS`: the shared Prometheus (`http://127.0.0.1:<port>`).
    pub prometheus: String,
    /// `FLAGGER_E2E_TELEMETRY`: the telemetry generator (`http://127.0.0.1:<port>`).
    pub telemetry: String,
    /// `FLAGGER_BIN`, else `<target>/debug/flagger`.
    pub flagger_bin: PathBuf,
    /// `FLAGGER_E2E_PROMETHEUS_BIN`, else `prometheus` on the PATH.
    pub prometheus_bin: PathBuf,
    /// `FLAGGER_E2E_LOGS`, else `<target>/e2e-logs`: operator logs and traces per scenario.
    pub logs: PathBuf,
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"))
}

fn loopback_url(var: &str) -> Result<String> {
    let v = std::env::var(var).map_err(|_| {
        format!("{var} is not set: run the real-cluster suite through tests/e2e/run.sh")
    })?;
    let rest = v
        .strip_prefix("http://127.0.0.1:")
        .ok_or_else(|| format!("{var}={v}: only http://127.0.0.1:<port> is allowed"))?;
    rest.trim_end_matches('/')
        .parse::<u16>()
        .map_err(|e| format!("{var}={v}: bad port: {e}"))?;
    Ok(v.trim_end_matches('/').to_string())
}

impl Env {
    pub fn from_env() -> Result<Env> {
        let kubeconfig = std::env::var_os("KUBECONFIG")
            .map(PathBuf::from)
            .ok_or("KUBECONFIG is not set: run the real-cluster suite through tests/e2e/run.sh")?;
        let flagger_bin = std::env::var_os("FLAGGER_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| target_dir().join("debug/flagger"));
        if !flagger_bin.is_file() {
            return Err(format!(
                "the operator binary {} does not exist (cargo build -p flagger)",
                flagger_bin.display()
            )
            .into());
        }
        Ok(Env {
            kubeconfig,
            prometheus: loopback_url("FLAGGER_E2E_PROMETHEUS")?,
            telemetry: loopback_url("FLAGGER_E2E_TELEMETRY")?,
            flagger_bin,
            prometheus_bin: std::env::var_os("FLAGGER_E2E_PROMETHEUS_BIN")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("prometheus")),
            logs: std::env::var_os("FLAGGER_E2E_LOGS")
                .map(PathBuf::from)
                .unwrap_or_else(|| target_dir().join("e2e-logs")),
        })
    }

    /// The telemetry generator's `host:port`, as a Prometheus scrape target.
    pub fn telemetry_target(&self) -> &str {
        self.telemetry.trim_start_matches("http://")
    }
}

/// A port nobody listens on right now (the kernel's pick for 127.0.0.1:0).
pub fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}
