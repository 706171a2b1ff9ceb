//! Leader election on the Lease `flagger-leader-election`, as Flagger's `-enable-leader-election`
//! does it: only the holder acts; a replica that loses the lease stops at once (the process exits
//! non-zero and is restarted as a standby), so two replicas never drive the same Canary.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::{Api, Client};
use kube_lease_manager::{LeaseManagerBuilder, LeaseManagerError};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub const LEASE_NAME: &str = "flagger-leader-election";
/// Flagger's lease duration (60s) and renew deadline (15s before expiry).
const LEASE_SECONDS: u64 = 60;
const RENEW_BEFORE_EXPIRY_SECONDS: u64 = 15;
const WATCHDOG_PERIOD: Duration = Duration::from_secs(10);

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
    leases: Api<Lease>,
    identity: String,
}

/// Waits until this replica holds the lease.
pub async fn acquire(
    client: Client,
    namespace: &str,
    identity: String,
) -> Result<Leadership, LeaseManagerError> {
    let leases = Api::namespaced(client.clone(), namespace);
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
    Ok(Leadership {
        leader,
        task,
        leases,
        identity,
    })
}

impl Leadership {
    /// Resolves when the lease is lost: the manager reports it, the Lease names another holder,
    /// or the Lease could not be read for longer than it stays valid without renewal (the
    /// manager alone keeps retrying silently while the API server is unreachable).
    pub async fn lost(&mut self) {
        let reported = async {
            loop {
                if !*self.leader.borrow_and_update() {
                    return;
                }
                if self.leader.changed().await.is_err() {
                    return;
                }
            }
        };
        tokio::select! {
            _ = reported => {}
            _ = watchdog(&self.leases, &self.identity) => {}
        }
    }

    /// Gives the lease up so a standby takes over without waiting for it to expire.
    pub async fn release(self) {
        drop(self.leader);
        let _ = tokio::time::timeout(Duration::from_secs(5), self.task).await;
    }
}

/// Checks the Lease every [`WATCHDOG_PERIOD`]; returns when another replica holds it or when it
/// has been unreadable for longer than a holder may go without renewing.
async fn watchdog(leases: &Api<Lease>, identity: &str) {
    let allowed = Duration::from_secs(LEASE_SECONDS - RENEW_BEFORE_EXPIRY_SECONDS);
    let mut last_seen = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(WATCHDOG_PERIOD).await;
        match leases.get(LEASE_NAME).await {
            Ok(lease) => {
                let holder = lease.spec.and_then(|s| s.holder_identity);
                if holder.as_deref() != Some(identity) {
                    tracing::error!(?holder, "the leader lease names another holder");
                    return;
                }
                last_seen = tokio::time::Instant::now();
            }
            Err(e) if last_seen.elapsed() > allowed => {
                tracing::error!(error = %e, "the leader lease could not be read for too long");
                return;
            }
            Err(e) => tracing::warn!(error = %e, "reading the leader lease failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use http::{Request, Response};
    use kube::client::Body;
    use serde_json::json;

    /// A Lease API whose every GET gets `answer`'s status and body.
    fn leases(answer: (u16, serde_json::Value)) -> Api<Lease> {
        let (svc, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        tokio::spawn(async move {
            while let Some((_req, send)) = handle.next_request().await {
                send.send_response(
                    Response::builder()
                        .status(answer.0)
                        .header("content-type", "application/json")
                        .body(Body::from(serde_json::to_vec(&answer.1).unwrap()))
                        .unwrap(),
                );
            }
        });
        Api::namespaced(Client::new(svc, "default"), "kube-system")
    }

    fn lease(holder: &str) -> (u16, serde_json::Value) {
        (
            200,
            json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                   "metadata": {"name": LEASE_NAME, "namespace": "kube-system"},
                   "spec": {"holderIdentity": holder, "leaseDurationSeconds": 60}}),
        )
    }

    #[tokio::test(start_paused = true)]
    async fn another_holder_means_the_lease_is_lost() {
        let done = tokio::time::timeout(
            Duration::from_secs(15),
            watchdog(&leases(lease("flagger-1")), "flagger-0"),
        )
        .await;
        assert!(done.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn holding_the_lease_keeps_leading() {
        let done = tokio::time::timeout(
            Duration::from_secs(300),
            watchdog(&leases(lease("flagger-0")), "flagger-0"),
        )
        .await;
        assert!(done.is_err(), "still the leader");
    }

    #[tokio::test(start_paused = true)]
    async fn an_unreadable_lease_is_given_up_before_it_could_have_expired() {
        let failing = leases((
            500,
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 500}),
        ));
        let started = tokio::time::Instant::now();
        tokio::time::timeout(Duration::from_secs(120), watchdog(&failing, "flagger-0"))
            .await
            .expect("gives up");
        let waited = started.elapsed();
        assert!(
            waited > Duration::from_secs(45) && waited <= Duration::from_secs(60),
            "{waited:?}"
        );
    }

    #[test]
    fn a_namespaced_operator_keeps_its_lease_in_its_namespace() {
        assert_eq!(lease_namespace("", "kube-system"), "kube-system");
        assert_eq!(lease_namespace("test", "kube-system"), "test");
    }
}
