//! Leader election on the Lease `flagger-leader-election`, as Flagger's `-enable-leader-election`
//! does it: only the holder acts; a replica that loses the lease stops at once (the process exits
//! non-zero and is restarted as a standby), so two replicas never drive the same Canary.

use std::time::Duration;

use kube::Client;
use kube_lease_manager::{LeaseManagerBuilder, LeaseManagerError};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub const LEASE_NAME: &str = "flagger-leader-election";
/// Flagger's lease duration (60s) and renew deadline (15s before expiry).
const LEASE_SECONDS: u64 = 60;
const RENEW_BEFORE_EXPIRY_SECONDS: u64 = 15;

/// The Lease's namespace: `-namespace` when the operator is scoped to one, else
/// `-leader-election-namespace`.
pub fn lease_namespace<'a>(namespace: &'a str, leader_election_namespace: &'a str) -> &'a str {
    if namespace.is_empty() {
        leader_election_namespace
    } else {
        namespace
    }
}

/// This replica's name in the Lease: the pod name when running in a pod.
pub fn identity() -> String {
    let host = std::env::var("POD_NAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "flagger".to_string());
    format!("{host}_{}", std::process::id())
}

pub struct Leadership {
    leader: watch::Receiver<bool>,
    task: JoinHandle<Result<kube_lease_manager::LeaseManager, LeaseManagerError>>,
}

/// Waits until this replica holds the lease.
pub async fn acquire(
    client: Client,
    namespace: &str,
    identity: String,
) -> Result<Leadership, LeaseManagerError> {
    let manager = LeaseManagerBuilder::new(client, LEASE_NAME)
        .with_namespace(namespace)
        .with_identity(identity.clone())
        .with_field_manager(format!("flagger-{identity}"))
        .with_duration(LEASE_SECONDS)
        .with_grace(RENEW_BEFORE_EXPIRY_SECONDS)
        .build()
        .await?;
    let (mut leader, task) = manager.watch().await;
    while !*leader.borrow_and_update() {
        if leader.changed().await.is_err() {
            // The manager's task ended before we ever led: report why.
            return match task.await {
                Ok(Err(e)) => Err(e),
                Ok(Ok(_)) | Err(_) => Err(LeaseManagerError::InconsistentState(
                    "lease manager stopped before acquiring the lease".into(),
                )),
            };
        }
    }
    Ok(Leadership { leader, task })
}

impl Leadership {
    /// Resolves when the lease is lost (or can no longer be renewed).
    pub async fn lost(&mut self) {
        loop {
            if !*self.leader.borrow_and_update() {
                return;
            }
            if self.leader.changed().await.is_err() {
                return;
            }
        }
    }

    /// Gives the lease up so a standby takes over without waiting for it to expire.
    pub async fn release(self) {
        drop(self.leader);
        let _ = tokio::time::timeout(Duration::from_secs(5), self.task).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_namespaced_operator_keeps_its_lease_in_its_namespace() {
        assert_eq!(lease_namespace("", "kube-system"), "kube-system");
        assert_eq!(lease_namespace("test", "kube-system"), "test");
    }
}
