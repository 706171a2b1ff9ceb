//! Waiting for a process's `/healthz` on loopback, as a kubelet's readiness probe would: the
//! operator under test and the real Flagger beside it are started and awaited the same way.

use std::path::Path;
use std::process::ExitStatus;
use std::time::Duration;

use crate::Result;
use crate::operator::tail;

/// Polls `http://127.0.0.1:<port>/healthz` until it answers 2xx; fails early, with the tail of
/// `log`, if `exited` reports the process gone, or once `timeout` has passed. `who` names the
/// process in those errors.
pub async fn wait_healthy(
    who: &str,
    port: u16,
    log: &Path,
    timeout: Duration,
    mut exited: impl FnMut() -> Result<Option<ExitStatus>>,
) -> Result<()> {
    let http = reqwest::Client::builder().no_proxy().build()?;
    let url = format!("http://127.0.0.1:{port}/healthz");
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(status) = exited()? {
            return Err(format!(
                "{who} exited with {status} before becoming healthy; log tail:\n{}",
                tail(log, 30)
            )
            .into());
        }
        if let Ok(r) = http.get(&url).timeout(Duration::from_secs(1)).send().await
            && r.status().is_success()
        {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!(
                "{who} not healthy on {url} after {timeout:?}; log tail:\n{}",
                tail(log, 30)
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
