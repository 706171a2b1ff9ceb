//! Which shards this replica may act on right now, shared between the lease loop (which grants,
//! extends and revokes) and the controller (which asks for a permit before acting on a Canary).
//!
//! A grant lasts until a deadline on this process's monotonic clock; the lease loop moves it
//! forward after each renewal. A reconcile holds a [`Permit`] while it runs: a release waits for
//! the permits to drop (or revokes them, which cancels the reconciles), and a deadline that
//! passes without renewal cancels them too, so nothing of a shard runs once its lease may be
//! taken by another replica.

use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::assign::{ShardBy, shard_of};

#[derive(Default)]
struct Slot {
    /// Acting is allowed until then; `None`: not held.
    until: Option<Instant>,
    /// Being released: no new permits.
    draining: bool,
    /// Reconciles holding a permit.
    in_flight: usize,
}

pub struct Shards {
    by: ShardBy,
    slots: Vec<Mutex<Slot>>,
    /// Bumped on every change of a slot; permits and the lease loop wait on it.
    changed: watch::Sender<u64>,
    gained: mpsc::UnboundedSender<u32>,
    gained_rx: Mutex<Option<mpsc::UnboundedReceiver<u32>>>,
}

impl Shards {
    pub fn new(count: u32, by: ShardBy) -> Arc<Shards> {
        let (gained, gained_rx) = mpsc::unbounded_channel();
        Arc::new(Shards {
            by,
            slots: (0..count.max(1)).map(|_| Mutex::default()).collect(),
            changed: watch::channel(0).0,
            gained,
            gained_rx: Mutex::new(Some(gained_rx)),
        })
    }

    pub fn count(&self) -> u32 {
        self.slots.len() as u32
    }

    pub fn shard_of(&self, namespace: &str, name: &str) -> u32 {
        shard_of(self.by, namespace, name, self.count())
    }

    fn slot(&self, shard: u32) -> std::sync::MutexGuard<'_, Slot> {
        // A poisoned slot only means a panic elsewhere; its data is still consistent.
        self.slots[shard as usize]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn notify(&self) {
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// A permit to act on the Canary `namespace/name`, if its shard is held and not draining.
    pub fn permit(self: &Arc<Self>, namespace: &str, name: &str) -> Option<Permit> {
        let shard = self.shard_of(namespace, name);
        let mut slot = self.slot(shard);
        let acting = slot.until.is_some_and(|u| Instant::now() < u);
        if !acting || slot.draining {
            return None;
        }
        slot.in_flight += 1;
        Some(Permit {
            shards: self.clone(),
            shard,
        })
    }

    /// Whether this replica may act on `shard` now.
    pub fn acting(&self, shard: u32) -> bool {
        let slot = self.slot(shard);
        !slot.draining && slot.until.is_some_and(|u| Instant::now() < u)
    }

    /// Whether `shard` is held (acting or draining, deadline not passed).
    pub fn held(&self, shard: u32) -> bool {
        self.slot(shard).until.is_some_and(|u| Instant::now() < u)
    }

    /// Allows acting on `shard` until `until`. A shard that was not being acted on is announced
    /// on the gained channel, so its Canaries are reconciled at once.
    pub fn grant(&self, shard: u32, until: Instant) {
        let was_acting = {
            let mut slot = self.slot(shard);
            let was = !slot.draining && slot.until.is_some_and(|u| Instant::now() < u);
            slot.until = Some(until);
            slot.draining = false;
            was
        };
        self.notify();
        if !was_acting {
            let _ = self.gained.send(shard);
        }
    }

    /// Stops acting on `shard` at once: running reconciles are cancelled.
    pub fn revoke(&self, shard: u32) {
        {
            let mut slot = self.slot(shard);
            slot.until = None;
            slot.draining = false;
        }
        self.notify();
    }

    /// Stops acting on `shard`: no new reconcile starts; the running ones get until `grace` to
    /// finish and are then cancelled. Returns once none runs.
    pub async fn drain(&self, shard: u32, grace: Instant) {
        self.slot(shard).draining = true;
        self.notify();
        let mut changed = self.changed.subscribe();
        let idle = |s: &Shards| s.slot(shard).in_flight == 0;
        let finished = async {
            while !idle(self) {
                if changed.changed().await.is_err() {
                    return;
                }
            }
        };
        if tokio::time::timeout_at(grace, finished).await.is_err() {
            tracing::warn!(
                shard,
                "reconciles still running at release; cancelling them"
            );
        }
        self.revoke(shard);
        // Cancellation drops the futures and their permits promptly.
        let mut changed = self.changed.subscribe();
        while !idle(self) {
            if changed.changed().await.is_err() {
                return;
            }
        }
    }

    /// The receiver of gained shards; the controller takes it once.
    pub fn take_gained(&self) -> Option<mpsc::UnboundedReceiver<u32>> {
        self.gained_rx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }
}

/// Held by a reconcile while it acts on a Canary of a held shard.
pub struct Permit {
    shards: Arc<Shards>,
    shard: u32,
}

impl Permit {
    pub fn shard(&self) -> u32 {
        self.shard
    }

    /// Resolves when the shard may no longer be acted on: revoked, or its deadline passed
    /// without renewal. (A drain lets the permit run on until it revokes.)
    pub async fn lost(&self) {
        let mut changed = self.shards.changed.subscribe();
        loop {
            let Some(until) = self.shards.slot(self.shard).until else {
                return;
            };
            if Instant::now() >= until {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep_until(until) => {}
                r = changed.changed() => if r.is_err() { return },
            }
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.shards.slot(self.shard).in_flight -= 1;
        self.shards.notify();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn a_canary_of(shards: &Shards, shard: u32) -> String {
        (0..)
            .map(|i| format!("app-{i}"))
            .find(|n| shards.shard_of("ns", n) == shard)
            .unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn permits_only_for_held_shards_until_the_deadline() {
        let shards = Shards::new(2, ShardBy::Name);
        let (c0, c1) = (a_canary_of(&shards, 0), a_canary_of(&shards, 1));
        assert!(shards.permit("ns", &c0).is_none());
        shards.grant(0, Instant::now() + Duration::from_secs(4));
        assert!(shards.permit("ns", &c0).is_some());
        assert!(shards.permit("ns", &c1).is_none());
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(shards.permit("ns", &c0).is_none(), "deadline passed");
    }

    #[tokio::test(start_paused = true)]
    async fn a_permit_is_lost_at_the_deadline_unless_extended() {
        let shards = Shards::new(1, ShardBy::Name);
        let start = Instant::now();
        shards.grant(0, start + Duration::from_secs(4));
        let permit = shards.permit("ns", "x").unwrap();
        let s = shards.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(3)).await;
            s.grant(0, start + Duration::from_secs(7));
        });
        permit.lost().await;
        assert_eq!(start.elapsed(), Duration::from_secs(7));
    }

    #[tokio::test(start_paused = true)]
    async fn gaining_a_shard_is_announced_once() {
        let shards = Shards::new(2, ShardBy::Name);
        let mut gained = shards.take_gained().unwrap();
        let until = Instant::now() + Duration::from_secs(4);
        shards.grant(1, until);
        shards.grant(1, until + Duration::from_secs(1));
        shards.revoke(1);
        shards.grant(1, until);
        assert_eq!(gained.recv().await, Some(1));
        assert_eq!(gained.recv().await, Some(1));
        assert!(gained.try_recv().is_err(), "a renewal is not a gain");
    }

    #[tokio::test(start_paused = true)]
    async fn a_drain_waits_for_running_reconciles_and_refuses_new_ones() {
        let shards = Shards::new(1, ShardBy::Name);
        let start = Instant::now();
        shards.grant(0, start + Duration::from_secs(60));
        let permit = shards.permit("ns", "x").unwrap();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(2)).await;
            drop(permit);
        });
        let s = shards.clone();
        let drain = tokio::spawn(async move { s.drain(0, start + Duration::from_secs(10)).await });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(shards.permit("ns", "x").is_none(), "draining");
        drain.await.unwrap();
        assert_eq!(start.elapsed(), Duration::from_secs(2));
        assert!(!shards.held(0));
    }

    #[tokio::test(start_paused = true)]
    async fn a_drain_cancels_what_outlives_the_grace() {
        let shards = Shards::new(1, ShardBy::Name);
        let start = Instant::now();
        shards.grant(0, start + Duration::from_secs(60));
        let permit = shards.permit("ns", "x").unwrap();
        // A reconcile that would run forever, cancelled when its permit is lost.
        let reconcile = tokio::spawn(async move {
            tokio::select! {
                _ = std::future::pending::<()>() => {}
                _ = permit.lost() => {}
            }
        });
        shards.drain(0, start + Duration::from_secs(3)).await;
        assert_eq!(start.elapsed(), Duration::from_secs(3));
        reconcile.await.unwrap();
    }
}
