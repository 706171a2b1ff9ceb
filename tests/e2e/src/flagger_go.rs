//! The real Flagger (the Go operator, `cmd/flagger` of the module pinned in
//! `tests/tools/flagger/go.mod`) as a child process, run out-of-cluster against the test API
//! server: what a user runs before switching to this operator.
//!
//! Flagger's HTTP listener (`/metrics`, `/healthz`) binds `":" + -port`, every interface: its
//! flags cannot narrow it to loopback. It gets a port nobody uses on 127.0.0.1 (the kernel's
//! pick), and the harness talks to it on 127.0.0.1 only. It is started and stopped by its
//! recorded PID, and dies with the test process (`PR_SET_PDEATHSIG`).

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::process::{Child, Command};

use crate::Result;
use crate::env::{Env, free_port};
use crate::operator::{die_with_parent, tail};

/// `FLAGGER_E2E_FLAGGER_GO`: the binary `tests/tools/flagger/build.sh` printed.
pub fn binary() -> Result<PathBuf> {
    let path = std::env::var_os("FLAGGER_E2E_FLAGGER_GO").map(PathBuf::from).ok_or(
        "FLAGGER_E2E_FLAGGER_GO is not set: run the real-cluster suite through tests/e2e/run.sh \
         (it builds Flagger with tests/tools/flagger/build.sh)",
    )?;
    if !path.is_file() {
        return Err(format!("FLAGGER_E2E_FLAGGER_GO={}: no such file", path.display()).into());
    }
    Ok(path)
}

pub struct RealFlagger {
    pub pid: u32,
    pub port: u16,
    pub log: PathBuf,
    child: Option<Child>,
}

impl RealFlagger {
    /// Starts Flagger watching only `namespace`, with the Istio provider and `metrics_server` as
    /// its Prometheus; its JSON log goes to `dir/flagger-go.log`.
    pub async fn start(
        env: &Env,
        namespace: &str,
        dir: &Path,
        metrics_server: &str,
    ) -> Result<RealFlagger> {
        let bin = binary()?;
        let port = free_port()?;
        let log_path = dir.join("flagger-go.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)?;
        let mut command = Command::new(&bin);
        command
            .args([
                format!("-kubeconfig={}", env.kubeconfig.display()),
                "-mesh-provider=istio".into(),
                format!("-metrics-server={metrics_server}"),
                format!("-namespace={namespace}"),
                format!("-port={port}"),
                // How often Flagger looks for new Canaries (default 10s); the analysis interval
                // itself cannot go below Flagger's 10 s minimum.
                "-control-loop-interval=2s".into(),
                "-log-level=debug".into(),
            ])
            // Only what is on the command line: no notifier, no in-cluster configuration.
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", std::env::var_os("HOME").unwrap_or_default())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true);
        die_with_parent(&mut command);
        let child = command
            .spawn()
            .map_err(|e| format!("starting {}: {e}", bin.display()))?;
        let pid = child.id().ok_or("Flagger exited at once")?;
        let mut flagger = RealFlagger {
            pid,
            port,
            log: log_path,
            child: Some(child),
        };
        flagger.wait_healthy(Duration::from_secs(30)).await?;
        Ok(flagger)
    }

    async fn wait_healthy(&mut self, timeout: Duration) -> Result<()> {
        let (port, log) = (self.port, self.log.clone());
        crate::health::wait_healthy("Flagger", port, &log, timeout, || self.exited()).await
    }

    pub fn exited(&mut self) -> Result<Option<ExitStatus>> {
        match &mut self.child {
            Some(c) => Ok(c.try_wait()?),
            None => Err("Flagger not running".into()),
        }
    }

    /// SIGTERM to the recorded PID, as the kubelet stops Flagger's pod when its Deployment is
    /// deleted; SIGKILL after `grace`. Returns once the process is reaped.
    pub async fn stop(&mut self, grace: Duration) -> Result<()> {
        let Some(mut c) = self.child.take() else {
            return Ok(());
        };
        if c.try_wait()?.is_none() {
            // SAFETY: kill(2) on our own child's PID, which has not been reaped (we own it).
            unsafe {
                libc::kill(self.pid as libc::pid_t, libc::SIGTERM);
            }
        }
        if tokio::time::timeout(grace, c.wait()).await.is_err() {
            c.start_kill()?;
            c.wait().await?;
        }
        Ok(())
    }

    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log, lines)
    }
}
