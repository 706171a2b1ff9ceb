//! One watch on every Canary of the benchmark's namespace, keeping when each Canary's
//! (phase, canary weight) changed as seen by the benchmark. A single long-lived watch costs the
//! API server nothing per interval, unlike polling N statuses.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use kube::Client;
use kube::api::{Api, DynamicObject};
use kube::runtime::{WatchStreamExt, watcher};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::Result;
use crate::scenario::resource;

#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub at: Instant,
    pub phase: String,
    pub weight: i64,
}

type Histories = Arc<Mutex<HashMap<String, Vec<Change>>>>;

pub struct CanaryWatch {
    histories: Histories,
    task: JoinHandle<()>,
}

impl CanaryWatch {
    pub fn start(client: &Client, ns: &str) -> Result<CanaryWatch> {
        let api: Api<DynamicObject> = Api::namespaced_with(
            client.clone(),
            ns,
            &resource("flagger.app/v1beta1", "Canary")?,
        );
        let histories: Histories = Arc::default();
        let sink = histories.clone();
        let task = tokio::spawn(async move {
            let mut stream = watcher(api, watcher::Config::default())
                .default_backoff()
                .applied_objects()
                .boxed();
            while let Some(item) = stream.next().await {
                let Ok(obj) = item else { continue };
                let at = Instant::now();
                let Some(name) = obj.metadata.name.clone() else {
                    continue;
                };
                let status = &obj.data["status"];
                let phase = status["phase"].as_str().unwrap_or("").to_string();
                let weight = status["canaryWeight"].as_i64().unwrap_or(0);
                let mut all = sink.lock().unwrap_or_else(|e| e.into_inner());
                let history = all.entry(name).or_default();
                let same = history
                    .last()
                    .is_some_and(|c| c.phase == phase && c.weight == weight);
                if !same {
                    history.push(Change { at, phase, weight });
                }
            }
        });
        Ok(CanaryWatch { histories, task })
    }

    fn with<T>(&self, f: impl FnOnce(&HashMap<String, Vec<Change>>) -> T) -> T {
        f(&self.histories.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// The first change of `name` at or after `since` that satisfies `pred`.
    pub fn first_after(
        &self,
        name: &str,
        since: Instant,
        pred: impl Fn(&Change) -> bool,
    ) -> Option<Instant> {
        self.with(|all| {
            all.get(name)?
                .iter()
                .find(|c| c.at >= since && pred(c))
                .map(|c| c.at)
        })
    }

    /// When each Canary first reached `Initialized` (`None` for those that have not).
    pub fn initialized_at(&self, names: &[String]) -> Vec<Option<Instant>> {
        self.with(|all| {
            names
                .iter()
                .map(|n| {
                    all.get(n)?
                        .iter()
                        .find(|c| c.phase == "Initialized")
                        .map(|c| c.at)
                })
                .collect()
        })
    }

    /// How many Canaries are in each phase now ("" for no status yet), for progress lines.
    pub fn phase_counts(&self) -> Vec<(String, usize)> {
        self.with(|all| {
            let mut counts: HashMap<String, usize> = HashMap::new();
            for h in all.values() {
                let phase = h.last().map(|c| c.phase.clone()).unwrap_or_default();
                *counts.entry(phase).or_default() += 1;
            }
            let mut v: Vec<_> = counts.into_iter().collect();
            v.sort();
            v
        })
    }

    /// Waits until `done` holds for the Canaries `names`, checking every 200 ms; `progress` is
    /// called every 10 s. Errors after `timeout`, or as soon as `alive` fails.
    pub async fn wait_until(
        &self,
        what: &str,
        timeout: Duration,
        mut alive: impl FnMut() -> Result<()>,
        mut done: impl FnMut(&CanaryWatch) -> bool,
    ) -> Result<()> {
        let start = Instant::now();
        let mut next_report = start + Duration::from_secs(10);
        loop {
            if done(self) {
                return Ok(());
            }
            alive()?;
            let now = Instant::now();
            if now - start > timeout {
                return Err(format!(
                    "timed out after {timeout:?} waiting for {what}; phases: {:?}",
                    self.phase_counts()
                )
                .into());
            }
            if now >= next_report {
                eprintln!(
                    "[scale]   {what}: {:.0} s, phases {:?}",
                    (now - start).as_secs_f64(),
                    self.phase_counts()
                );
                next_report += Duration::from_secs(10);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for CanaryWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}
