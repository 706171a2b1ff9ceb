//! Initializations are spread out, and never stand in the way of Canaries already running.
//!
//! At start-up thousands of Canaries may need initializing at once, each with several writes
//! (the primary Deployment, three Services, routes, status). Run all at once, their writes
//! would queue for the write pacer's slots for minutes, and a new revision of an established
//! Canary would queue behind them. So a reconcile of a Canary not yet initialized (no phase, or
//! `Initializing`) waits for one of a bounded number of slots (`-max-concurrent-initializations`)
//! and sends its writes in the pacer's bulk lane; every other reconcile starts at once and its
//! writes take the prompt lane ([`crate::write_pacing`]).

use std::future::Future;
use std::sync::Arc;

use flagger_core::api::{Canary, Phase};
use tokio::sync::Semaphore;

use crate::write_pacing::{Lane, in_lane};

/// The lane of a reconcile of `canary`, by the phase its status shows.
pub fn lane_of(canary: &Canary) -> Lane {
    match canary.status.as_ref().and_then(|s| s.phase) {
        None | Some(Phase::Initializing) => Lane::Bulk,
        Some(_) => Lane::Prompt,
    }
}

/// The slots initializing reconciles take turns on.
#[derive(Debug, Clone)]
pub struct Initializations {
    slots: Arc<Semaphore>,
}

impl Initializations {
    pub fn new(at_once: usize) -> Initializations {
        Initializations {
            slots: Arc::new(Semaphore::new(at_once.max(1))),
        }
    }

    /// Initializations that could start now.
    pub fn free(&self) -> usize {
        self.slots.available_permits()
    }

    /// Runs `reconcile` of a Canary in `lane`: a bulk one once a slot is free (slots are
    /// handed out in the order asked for), a prompt one at once.
    pub async fn run<F: Future>(&self, lane: Lane, reconcile: F) -> F::Output {
        match lane {
            Lane::Prompt => in_lane(Lane::Prompt, reconcile).await,
            Lane::Bulk => {
                // The semaphore is never closed, so acquiring only fails if it were.
                let _slot = self.slots.acquire().await.ok();
                in_lane(Lane::Bulk, reconcile).await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::write_pacing::current_lane;
    use flagger_core::api::{CanarySpec, CanaryStatus};
    use std::sync::Mutex;
    use std::time::Duration;
    use tokio::time::Instant;

    #[test]
    fn only_canaries_not_yet_initialized_are_bulk() {
        let mut c = Canary::new("podinfo", CanarySpec::default());
        assert_eq!(lane_of(&c), Lane::Bulk, "no status yet");
        let mut with_phase = |phase| {
            c.status = Some(CanaryStatus {
                phase,
                ..CanaryStatus::default()
            });
            lane_of(&c)
        };
        assert_eq!(with_phase(None), Lane::Bulk);
        assert_eq!(with_phase(Some(Phase::Initializing)), Lane::Bulk);
        for phase in [
            Phase::Initialized,
            Phase::Waiting,
            Phase::Progressing,
            Phase::WaitingPromotion,
            Phase::Promoting,
            Phase::Finalising,
            Phase::Succeeded,
            Phase::Failed,
            Phase::Terminating,
            Phase::Terminated,
        ] {
            assert_eq!(with_phase(Some(phase)), Lane::Prompt, "{phase:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_of_initializations_holds_only_its_slots_and_prompt_reconciles_start_at_once() {
        let gate = Initializations::new(2);
        let began = Instant::now();
        // (name, lane seen inside, milliseconds at start)
        let started = Arc::new(Mutex::new(Vec::<(String, Lane, u64)>::new()));
        let reconcile = |name: &str, gate: &Initializations, lane: Lane| {
            let (gate, started, name) = (gate.clone(), started.clone(), name.to_string());
            tokio::spawn(async move {
                gate.run(lane, async {
                    let ms = began.elapsed().as_millis() as u64;
                    started.lock().unwrap().push((name, current_lane(), ms));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                })
                .await
            })
        };
        let mut tasks = Vec::new();
        for i in 1..=5 {
            tasks.push(reconcile(&format!("init{i}"), &gate, Lane::Bulk));
            tokio::task::yield_now().await;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(gate.free(), 0);
        tasks.push(reconcile("new-revision", &gate, Lane::Prompt));
        for t in tasks {
            t.await.unwrap();
        }
        let expected = [
            ("init1", Lane::Bulk, 0),
            ("init2", Lane::Bulk, 0),
            ("new-revision", Lane::Prompt, 10),
            ("init3", Lane::Bulk, 100),
            ("init4", Lane::Bulk, 100),
            ("init5", Lane::Bulk, 200),
        ];
        let expected: Vec<_> = expected
            .iter()
            .map(|(n, l, ms)| (n.to_string(), *l, *ms))
            .collect();
        assert_eq!(*started.lock().unwrap(), expected);
        assert_eq!(gate.free(), 2, "every slot given back");
    }
}
