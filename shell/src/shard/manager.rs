//! The lease loop of one replica: every retry period it lists the sharding Leases, renews its
//! membership and the shards it keeps, releases the shards beyond its fair share and takes free
//! ones up to it ([`super::assign::plan`]).
//!
//! Timing, with D the lease duration: a write of ours sent at `t` lets this replica act on the
//! shard until `t + 2D/3` (the renew deadline), extended by each later renewal. Another replica
//! takes the shard only once the Lease's latest version has stood unchanged for D on its own
//! clock, counted from when it first saw that version, which is after we sent it; its write is
//! conditional on that version, so any later renewal of ours makes it fail. Hence it acts no
//! sooner than `t + D`, leaving D/3 for clocks that run at different rates and for writes
//! already on their way when we stop. Clock offsets between machines play no part.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, ListParams, PostParams};
use kube::{Client, ResourceExt};
use tokio::time::{Duration, Instant};

use super::assign::{ShardBy, plan};
use super::gate::Shards;
use super::lease::{self, KIND_LABEL, Observations};

#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub shards: u32,
    pub by: ShardBy,
    /// Whole seconds (Leases count in seconds).
    pub lease_duration: Duration,
    pub namespace: String,
    pub identity: String,
}

impl Config {
    /// How long a successful write lets this replica act.
    pub fn renew_deadline(&self) -> Duration {
        self.lease_duration * 2 / 3
    }

    /// How often the loop runs: four tries to renew before the deadline.
    pub fn retry_period(&self) -> Duration {
        self.lease_duration / 6
    }
}

pub struct Manager {
    api: Api<Lease>,
    cfg: Config,
    shards: Arc<Shards>,
    seen: Observations,
    /// The last version written or listed of each shard Lease this replica holds.
    held: HashMap<u32, Lease>,
    member: Option<Lease>,
}

impl Manager {
    pub fn new(client: Client, cfg: Config, shards: Arc<Shards>) -> Manager {
        Manager {
            api: Api::namespaced(client, &cfg.namespace),
            cfg,
            shards,
            seen: Observations::default(),
            held: HashMap::new(),
            member: None,
        }
    }

    /// Runs until `stop` resolves, then releases every shard (after their reconciles stop) and
    /// leaves. `ready` resolves when the caches are filled: joining earlier would take shards
    /// from replicas that can act on them.
    pub async fn run(mut self, ready: impl Future<Output = ()>, stop: impl Future<Output = ()>) {
        tokio::pin!(stop);
        tokio::select! {
            _ = ready => {}
            _ = &mut stop => return,
        }
        tracing::info!(
            shards = self.cfg.shards,
            namespace = %self.cfg.namespace,
            identity = %self.cfg.identity,
            "joining the shard leases"
        );
        loop {
            self.tick().await;
            tokio::select! {
                _ = tokio::time::sleep(self.cfg.retry_period()) => {}
                _ = &mut stop => break,
            }
        }
        self.leave().await;
    }

    async fn tick(&mut self) {
        let listed = match self
            .api
            .list(&ListParams::default().labels(KIND_LABEL))
            .await
        {
            Ok(list) => list.items,
            Err(e) => {
                tracing::warn!(error = %e, "listing the shard leases failed");
                // Keep what is held alive; planning waits for a listing.
                for shard in self.held.keys().copied().collect::<Vec<_>>() {
                    self.renew(shard).await;
                }
                return;
            }
        };
        let now = Instant::now();
        self.seen.observe(&listed, now);
        self.follow(&listed);
        self.join(&listed).await;
        let (holders, members) = lease::view(
            &listed,
            &self.seen,
            self.cfg.shards,
            &self.cfg.identity,
            now,
        );
        let plan = plan(&holders, &members, &self.cfg.identity);
        for shard in &plan.keep {
            self.renew(*shard).await;
        }
        self.release_all(&plan.release).await;
        let by_name: HashMap<String, &Lease> = listed.iter().map(|l| (l.name_any(), l)).collect();
        for shard in &plan.acquire {
            let name = lease::shard_lease_name(*shard);
            self.acquire(*shard, by_name.get(&name).copied()).await;
        }
    }

    /// Takes the listed versions of the shards held; a shard another replica now holds is given
    /// up at once.
    fn follow(&mut self, listed: &[Lease]) {
        for l in listed {
            let Some(shard) = lease::shard_index(&l.name_any(), self.cfg.shards) else {
                continue;
            };
            if lease::holder(l) == Some(self.cfg.identity.as_str()) {
                self.held.insert(shard, l.clone());
            } else if self.held.remove(&shard).is_some() {
                tracing::error!(shard, holder = ?lease::holder(l), "shard lease taken over; stopping");
                self.shards.revoke(shard);
            }
        }
    }

    /// Writes this replica's membership Lease.
    async fn join(&mut self, listed: &[Lease]) {
        let name = lease::member_lease_name(&self.cfg.identity);
        let current = listed
            .iter()
            .find(|l| l.name_any() == name)
            .or(self.member.as_ref());
        let lease = lease::claimed(
            current,
            &name,
            "member",
            &self.cfg.identity,
            self.cfg.lease_duration,
            jiff::Timestamp::now(),
        );
        match self.write(&name, lease).await {
            Ok(l) => self.member = Some(l),
            Err(e) => tracing::warn!(error = %e, "renewing the membership lease failed"),
        }
    }

    async fn renew(&mut self, shard: u32) {
        let Some(current) = self.held.get(&shard) else {
            return;
        };
        let name = lease::shard_lease_name(shard);
        let lease = lease::claimed(
            Some(current),
            &name,
            "shard",
            &self.cfg.identity,
            self.cfg.lease_duration,
            jiff::Timestamp::now(),
        );
        let sent = Instant::now();
        match self.write(&name, lease).await {
            Ok(l) => {
                self.held.insert(shard, l);
                self.shards.grant(shard, sent + self.cfg.renew_deadline());
            }
            Err(kube::Error::Api(s)) if s.code == 409 => {
                tracing::error!(shard, "shard lease changed by another writer; stopping");
                self.held.remove(&shard);
                self.shards.revoke(shard);
            }
            // The grant runs out on its own if no renewal succeeds in time.
            Err(e) => tracing::warn!(shard, error = %e, "renewing the shard lease failed"),
        }
    }

    async fn acquire(&mut self, shard: u32, current: Option<&Lease>) {
        let name = lease::shard_lease_name(shard);
        let lease = lease::claimed(
            current,
            &name,
            "shard",
            &self.cfg.identity,
            self.cfg.lease_duration,
            jiff::Timestamp::now(),
        );
        let sent = Instant::now();
        match self.write(&name, lease).await {
            Ok(l) => {
                tracing::info!(shard, "acquired the shard lease");
                self.held.insert(shard, l);
                self.shards.grant(shard, sent + self.cfg.renew_deadline());
            }
            // Another replica was faster, or the Lease changed since it was listed.
            Err(kube::Error::Api(s)) if s.code == 409 => {
                tracing::debug!(shard, "shard lease taken by another replica first")
            }
            Err(e) => tracing::warn!(shard, error = %e, "acquiring the shard lease failed"),
        }
    }

    /// Stops acting on `shards` (their reconciles get one retry period to finish, all at once,
    /// so the shards kept are renewed in time), then writes each Lease without holder so
    /// another replica takes it at once.
    async fn release_all(&mut self, shards: &[u32]) {
        let grace = Instant::now() + self.cfg.retry_period();
        futures::future::join_all(shards.iter().map(|s| self.shards.drain(*s, grace))).await;
        for shard in shards {
            let Some(current) = self.held.remove(shard) else {
                continue;
            };
            let name = lease::shard_lease_name(*shard);
            match self.write(&name, lease::released(&current)).await {
                Ok(_) => tracing::info!(shard, "released the shard lease"),
                // It expires on its own; we no longer act on it either way.
                Err(e) => tracing::warn!(shard, error = %e, "releasing the shard lease failed"),
            }
        }
    }

    /// Creates the Lease, or replaces it conditionally on the version it was read at.
    async fn write(&self, name: &str, lease: Lease) -> Result<Lease, kube::Error> {
        if lease.resource_version().is_some() {
            self.api.replace(name, &PostParams::default(), &lease).await
        } else {
            self.api.create(&PostParams::default(), &lease).await
        }
    }

    /// Releases every shard once its reconciles stopped, and the membership Lease, so the
    /// others count without this replica at once. (Leases are never deleted: the chart grants no
    /// delete. A crashed replica's membership Lease stays, expired, until a replica of the same
    /// pod name takes it again.)
    async fn leave(mut self) {
        let held: Vec<u32> = self.held.keys().copied().collect();
        self.release_all(&held).await;
        if let Some(member) = self.member.take() {
            let name = member.name_any();
            let _ = self.write(&name, lease::released(&member)).await;
        }
        tracing::info!("left the shard leases");
    }
}
