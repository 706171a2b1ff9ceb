//! The `flagger` binary as a child process, started the way a Deployment would start it but with
//! short intervals, a trace directory and a per-scenario log file.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::process::{Child, Command};

use crate::Result;
use crate::env::{Env, free_port};

#[derive(Debug, Clone)]
pub struct OperatorOpts {
    /// `POD_NAME` of this replica: its leader-election identity and events' reporting instance.
    pub instance: String,
    pub mesh_provider: String,
    /// `-metrics-server`; the shared Prometheus when `None`.
    pub metrics_server: Option<String>,
    pub leader_election: bool,
    /// Watch only the scenario's namespace (`-namespace`).
    pub scoped: bool,
    /// `-kubeconfig`; the cluster's admin kubeconfig when `None`.
    pub kubeconfig: Option<PathBuf>,
    pub extra_args: Vec<String>,
}

impl OperatorOpts {
    pub fn new(instance: &str, mesh_provider: &str) -> OperatorOpts {
        OperatorOpts {
            instance: instance.into(),
            mesh_provider: mesh_provider.into(),
            metrics_server: None,
            leader_election: false,
            scoped: true,
            kubeconfig: None,
            extra_args: Vec::new(),
        }
    }
}

pub struct Operator {
    pub instance: String,
    pub port: u16,
    /// `-recordings-address` is `127.0.0.1:<recordings_port>` (in a pod: 127.0.0.1:8081, reached
    /// through `kubectl port-forward`).
    pub recordings_port: u16,
    pub log: PathBuf,
    pub traces: PathBuf,
    args: Vec<String>,
    bin: PathBuf,
    child: Option<Child>,
}

impl Operator {
    /// Starts the operator; its traces go to `dir/traces/<instance>`, its log to `dir/<instance>.log`.
    pub async fn start(
        env: &Env,
        namespace: &str,
        dir: &Path,
        opts: &OperatorOpts,
    ) -> Result<Operator> {
        let traces = dir.join("traces").join(&opts.instance);
        std::fs::create_dir_all(&traces)?;
        let port = free_port()?;
        let recordings_port = free_port()?;
        let mut args = vec![
            format!(
                "-kubeconfig={}",
                opts.kubeconfig
                    .as_ref()
                    .unwrap_or(&env.kubeconfig)
                    .display()
            ),
            format!(
                "-metrics-server={}",
                opts.metrics_server.as_deref().unwrap_or(&env.prometheus)
            ),
            format!("-mesh-provider={}", opts.mesh_provider),
            format!("-port={port}"),
            // The suite talks to nothing but loopback, and listens on nothing else either.
            "-listen-address=127.0.0.1".into(),
            "-min-analysis-interval=1s".into(),
            "-control-loop-interval=2s".into(),
            format!("-record-traces={}", traces.display()),
            format!("-recordings-address=127.0.0.1:{recordings_port}"),
            "-log-level=debug".into(),
        ];
        if opts.scoped {
            args.push(format!("-namespace={namespace}"));
        }
        if opts.leader_election {
            args.push("-enable-leader-election".into());
            args.push(format!("-leader-election-namespace={namespace}"));
        }
        args.extend(opts.extra_args.iter().cloned());
        let mut op = Operator {
            instance: opts.instance.clone(),
            port,
            recordings_port,
            log: dir.join(format!("{}.log", opts.instance)),
            traces,
            args,
            bin: env.flagger_bin.clone(),
            child: None,
        };
        op.spawn()?;
        op.wait_healthy(Duration::from_secs(30)).await?;
        Ok(op)
    }

    fn spawn(&mut self) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let mut command = Command::new(&self.bin);
        command
            .args(&self.args)
            .env("POD_NAME", &self.instance)
            .env_remove("METRICS_SERVER")
            .env_remove("SLACK_URL")
            .env_remove("MSTEAMS_URL")
            .env_remove("EVENT_WEBHOOK_URL")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true);
        die_with_parent(&mut command);
        let child = command
            .spawn()
            .map_err(|e| format!("starting {}: {e}", self.bin.display()))?;
        self.child = Some(child);
        Ok(())
    }

    /// Polls `/healthz` on the operator's port; fails early if the process exits.
    pub async fn wait_healthy(&mut self, timeout: Duration) -> Result<()> {
        let who = format!("operator {}", self.instance);
        let (port, log) = (self.port, self.log.clone());
        crate::health::wait_healthy(&who, port, &log, timeout, || self.exited()).await
    }

    /// The exit status if the process has ended.
    pub fn exited(&mut self) -> Result<Option<ExitStatus>> {
        match &mut self.child {
            Some(c) => Ok(c.try_wait()?),
            None => Err("operator not started".into()),
        }
    }

    /// SIGKILL: no shutdown path runs, as when a node dies or the OOM killer strikes.
    pub async fn sigkill(&mut self) -> Result<()> {
        if let Some(mut c) = self.child.take() {
            c.start_kill()?;
            c.wait().await?;
        }
        Ok(())
    }

    /// SIGTERM, as the kubelet stops a pod; SIGKILL after `grace`.
    pub async fn terminate(&mut self, grace: Duration) -> Result<Option<ExitStatus>> {
        let Some(mut c) = self.child.take() else {
            return Ok(None);
        };
        if let Some(pid) = c.id() {
            // SAFETY: kill(2) on our own child's PID, which has not been reaped (we still own it).
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGTERM);
            }
        }
        match tokio::time::timeout(grace, c.wait()).await {
            Ok(status) => Ok(Some(status?)),
            Err(_) => {
                c.start_kill()?;
                c.wait().await?;
                Err(format!("operator {} ignored SIGTERM for {grace:?}", self.instance).into())
            }
        }
    }

    /// Starts the same command line again (after [`Operator::sigkill`]).
    pub async fn restart(&mut self) -> Result<()> {
        if self.child.is_some() {
            return Err("operator still running".into());
        }
        self.spawn()?;
        self.wait_healthy(Duration::from_secs(30)).await
    }

    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log, lines)
    }

    /// The operator's own `/metrics` text.
    pub async fn metrics(&self) -> Result<String> {
        let http = reqwest::Client::builder().no_proxy().build()?;
        Ok(http
            .get(format!("http://127.0.0.1:{}/metrics", self.port))
            .timeout(Duration::from_secs(2))
            .send()
            .await?
            .text()
            .await?)
    }
}

/// An HTTP GET on loopback: the status and the body.
pub async fn http_get(url: &str) -> Result<(u16, Vec<u8>)> {
    let http = reqwest::Client::builder().no_proxy().build()?;
    let resp = http
        .get(url)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    let status = resp.status().as_u16();
    Ok((status, resp.bytes().await?.to_vec()))
}

impl Operator {
    /// `GET <path>` on the recordings listener (`path` starts with `/recordings`).
    pub async fn recordings_get(&self, path: &str) -> Result<(u16, Vec<u8>)> {
        http_get(&format!("http://127.0.0.1:{}{path}", self.recordings_port)).await
    }

    /// One recording, fetched over HTTP as a user fetches it; fails unless the answer is 200.
    pub async fn fetch_recording(&self, file: &str) -> Result<Vec<u8>> {
        let (status, body) = self.recordings_get(&format!("/recordings/{file}")).await?;
        if status != 200 {
            return Err(format!(
                "GET /recordings/{file}: {status} {}",
                String::from_utf8_lossy(&body)
            )
            .into());
        }
        Ok(body)
    }
}

/// Makes the child get SIGKILL when the test process dies, even by a signal (Ctrl-C on
/// `run.sh`), when no destructor runs: no operator or Prometheus outlives its scenario.
pub fn die_with_parent(command: &mut Command) {
    // SAFETY: prctl(2) is async-signal-safe and touches only the calling (child) process.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// The value of the sample `name{labels…}` in a Prometheus text exposition; other labels of the
/// sample may exist.
pub fn sample(exposition: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    exposition.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?;
        let (label_text, value) = match rest.strip_prefix('{') {
            Some(r) => r.split_once("} ")?,
            None => ("", rest.strip_prefix(' ')?),
        };
        let has_all = labels.iter().all(|(k, v)| {
            label_text
                .split(',')
                .any(|pair| pair == format!("{k}=\"{v}\""))
        });
        has_all.then(|| value.trim().parse().ok()).flatten()
    })
}

pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_found_by_name_and_labels() {
        let text = "# TYPE flagger_canary_status gauge\n\
            flagger_canary_status{name=\"other\",namespace=\"ns\"} 2\n\
            flagger_canary_status{name=\"podinfo\",namespace=\"ns\"} 1\n\
            flagger_canary_status_extra 7\n\
            flagger_info 1\n";
        let status = |n| {
            sample(
                text,
                "flagger_canary_status",
                &[("name", n), ("namespace", "ns")],
            )
        };
        assert_eq!(status("podinfo"), Some(1.0));
        assert_eq!(status("other"), Some(2.0));
        assert_eq!(status("missing"), None);
        assert_eq!(sample(text, "flagger_info", &[]), Some(1.0));
    }
}
