//! The two operators under measurement, each started as a user runs it out of cluster (default
//! intervals and limits, info logging, no trace recording), watching the benchmark's namespace,
//! and stopped by its recorded PID (SIGTERM, then SIGKILL). Both die with the benchmark
//! (`PR_SET_PDEATHSIG`).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use crate::Result;
use crate::env::free_port;
use crate::operator::{die_with_parent, tail};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Implementation {
    /// This repository's `flagger` binary.
    Ours,
    /// Flagger v1.44.0, built from its Go module by `tests/tools/flagger/build.sh`.
    Flagger,
}

impl Implementation {
    pub fn name(self) -> &'static str {
        match self {
            Implementation::Ours => "ours",
            Implementation::Flagger => "flagger",
        }
    }
}

pub struct Running {
    pub pid: u32,
    pub log: PathBuf,
    child: Option<Child>,
}

/// Starts `bin` as `which`, watching only `namespace`, with `metrics_server` (nothing needs to
/// answer there: the benchmark's Canaries have no metric checks). Returns once `/healthz` answers.
pub async fn start(
    which: Implementation,
    bin: &Path,
    kubeconfig: &Path,
    namespace: &str,
    metrics_server: &str,
    dir: &Path,
) -> Result<Running> {
    let port = free_port()?;
    let log_path = dir.join(format!("{}.log", which.name()));
    let log = std::fs::File::create(&log_path)?;
    let mut args = vec![
        format!("-kubeconfig={}", kubeconfig.display()),
        "-mesh-provider=istio".to_string(),
        format!("-metrics-server={metrics_server}"),
        format!("-namespace={namespace}"),
        format!("-port={port}"),
        "-log-level=info".to_string(),
    ];
    if which == Implementation::Ours {
        // Flagger's listener binds every interface and no flag narrows it; ours can stay on
        // loopback. Neither is reached but on 127.0.0.1.
        args.push("-listen-address=127.0.0.1".to_string());
    }
    let mut command = Command::new(bin);
    command
        .args(&args)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", std::env::var_os("HOME").unwrap_or_default())
        .env("POD_NAME", format!("scale-{}", which.name()))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true);
    die_with_parent(&mut command);
    let child = command
        .spawn()
        .map_err(|e| format!("starting {}: {e}", bin.display()))?;
    let pid = child.id().ok_or("the operator exited at once")?;
    let mut running = Running {
        pid,
        log: log_path,
        child: Some(child),
    };
    running.wait_healthy(port, Duration::from_secs(60)).await?;
    Ok(running)
}

impl Running {
    async fn wait_healthy(&mut self, port: u16, timeout: Duration) -> Result<()> {
        let log = self.log.clone();
        let child = self.child.as_mut().ok_or("operator already stopped")?;
        crate::health::wait_healthy(
            "the operator",
            port,
            &log,
            timeout,
            || Ok(child.try_wait()?),
        )
        .await
    }

    /// An error with the log's tail if the process has exited.
    pub fn check_alive(&mut self) -> Result<()> {
        let child = self.child.as_mut().ok_or("operator already stopped")?;
        match child.try_wait()? {
            None => Ok(()),
            Some(status) => Err(format!(
                "operator (pid {}) exited with {status}:\n{}",
                self.pid,
                self.log_tail()
            )
            .into()),
        }
    }

    pub async fn stop(&mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        if child.try_wait()?.is_none() {
            // SAFETY: kill(2) on our own child's PID, which has not been reaped (we own it).
            unsafe {
                libc::kill(self.pid as libc::pid_t, libc::SIGTERM);
            }
        }
        if tokio::time::timeout(Duration::from_secs(10), child.wait())
            .await
            .is_err()
        {
            child.start_kill()?;
            child.wait().await?;
        }
        Ok(())
    }

    pub fn log_tail(&self) -> String {
        tail(&self.log, 30)
    }
}
