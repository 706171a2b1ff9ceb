//! A private Prometheus server (the Debian `prometheus` binary) for scenarios that need to stop
//! it; the shared one belongs to `run.sh`. Listens on 127.0.0.1, scrapes the telemetry
//! generator every second, keeps its data in the scenario's directory.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use crate::Result;
use crate::env::{Env, free_port};
use crate::operator::die_with_parent;

pub struct Prometheus {
    pub url: String,
    child: Option<Child>,
}

/// The scrape configuration `run.sh` writes too: one job, 1 s interval.
pub fn config(target: &str) -> String {
    format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: telemetry\n    scrape_interval: 1s\n    scrape_timeout: 1s\n    static_configs:\n      - targets: ['{target}']\n"
    )
}

impl Prometheus {
    pub async fn start(env: &Env, dir: &Path) -> Result<Prometheus> {
        let dir = dir.join("prometheus");
        std::fs::create_dir_all(dir.join("data"))?;
        let cfg = dir.join("prometheus.yml");
        std::fs::write(&cfg, config(env.telemetry_target()))?;
        let port = free_port()?;
        let log = std::fs::File::create(dir.join("prometheus.log"))?;
        let mut command = Command::new(&env.prometheus_bin);
        command
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--storage.tsdb.retention.time=1h")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true);
        die_with_parent(&mut command);
        let child = command
            .spawn()
            .map_err(|e| format!("starting {}: {e}", env.prometheus_bin.display()))?;
        let p = Prometheus {
            url: format!("http://127.0.0.1:{port}"),
            child: Some(child),
        };
        let http = reqwest::Client::builder().no_proxy().build()?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = http.get(format!("{}/-/ready", p.url)).send().await
                && r.status().is_success()
            {
                return Ok(p);
            }
            if tokio::time::Instant::now() > deadline {
                return Err(format!("prometheus on {} not ready after 30s", p.url).into());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Kills the server: every query fails from now on (connection refused).
    pub async fn stop(&mut self) -> Result<()> {
        if let Some(mut c) = self.child.take() {
            c.start_kill()?;
            c.wait().await?;
        }
        Ok(())
    }
}
