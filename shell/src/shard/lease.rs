//! The Leases of sharding: one per shard (`flagger-shard-<i>`) and one per replica
//! (`flagger-member-<identity>`, how replicas learn about each other), and when each one
//! expires as this replica sees it.
//!
//! Expiry is never judged from the `renewTime` another replica wrote: clocks of different
//! machines disagree. As client-go's leader election does, a replica notes when it first saw a
//! Lease's current version (its resourceVersion) on its own monotonic clock, and deems the Lease
//! expired once that version has stood for `leaseDurationSeconds`. The holder wrote that version
//! before anyone could see it, so it had already started its own count; it stops acting well
//! before the others' counts end (see [`super::manager`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::ResourceExt;
use tokio::time::{Duration, Instant};

use super::assign::Holder;

pub const SHARD_PREFIX: &str = "flagger-shard-";
pub const MEMBER_PREFIX: &str = "flagger-member-";
/// On every Lease of sharding: `shard` or `member`; the replicas list Leases by it.
pub const KIND_LABEL: &str = "flagger.app/lease";

pub fn shard_lease_name(shard: u32) -> String {
    format!("{SHARD_PREFIX}{shard}")
}

/// The shard a Lease name stands for, if below `count`.
pub fn shard_index(name: &str, count: u32) -> Option<u32> {
    let i: u32 = name.strip_prefix(SHARD_PREFIX)?.parse().ok()?;
    (i < count).then_some(i)
}

/// A valid object name for `identity`'s membership Lease: lower case, other characters than
/// letters, digits, `-` and `.` replaced by `-`, at most 253 characters.
pub fn member_lease_name(identity: &str) -> String {
    let cleaned: String = identity
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let mut name = format!("{MEMBER_PREFIX}{}", cleaned.trim_matches(['-', '.']));
    name.truncate(253);
    name.trim_end_matches(['-', '.']).to_string()
}

pub fn holder(lease: &Lease) -> Option<&str> {
    lease
        .spec
        .as_ref()
        .and_then(|s| s.holder_identity.as_deref())
        .filter(|h| !h.is_empty())
}

/// `lease` (or a new one) claimed by `identity` at `now`: the holder, renew time and duration
/// set; the acquire time and transition count move only when the holder changes. The
/// resourceVersion is kept, so the write fails if anyone wrote in between.
pub fn claimed(
    existing: Option<&Lease>,
    name: &str,
    kind: &str,
    identity: &str,
    duration: Duration,
    now: jiff::Timestamp,
) -> Lease {
    let mut lease = existing.cloned().unwrap_or_else(|| Lease {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            labels: Some(BTreeMap::from([
                (KIND_LABEL.to_string(), kind.to_string()),
                (
                    "app.kubernetes.io/managed-by".to_string(),
                    "flagger".to_string(),
                ),
            ])),
            ..Default::default()
        },
        spec: None,
    });
    let previous = holder(&lease).map(str::to_string);
    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    if previous.as_deref() != Some(identity) {
        spec.acquire_time = Some(MicroTime(now));
        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
    }
    spec.holder_identity = Some(identity.to_string());
    spec.lease_duration_seconds = Some(duration.as_secs() as i32);
    spec.renew_time = Some(MicroTime(now));
    lease
}

/// `lease` given up: no holder, so others take it without waiting for it to expire.
pub fn released(lease: &Lease) -> Lease {
    let mut lease = lease.clone();
    if let Some(spec) = lease.spec.as_mut() {
        spec.holder_identity = None;
    }
    lease
}

/// When this replica first saw each Lease's current version.
#[derive(Default)]
pub struct Observations {
    seen: HashMap<String, (String, Instant)>,
}

impl Observations {
    /// Records the listed Leases; forgets the ones no longer listed.
    pub fn observe(&mut self, leases: &[Lease], now: Instant) {
        let mut seen = HashMap::with_capacity(leases.len());
        for lease in leases {
            let name = lease.name_any();
            let version = lease.resource_version().unwrap_or_default();
            let since = match self.seen.remove(&name) {
                Some((v, since)) if v == version => since,
                _ => now,
            };
            seen.insert(name, (version, since));
        }
        self.seen = seen;
    }

    /// How long `lease`'s current version has stood unchanged, as seen here.
    pub fn unchanged_for(&self, lease: &Lease, now: Instant) -> Duration {
        match self.seen.get(&lease.name_any()) {
            Some((v, since)) if Some(v) == lease.resource_version().as_ref() => {
                now.saturating_duration_since(*since)
            }
            _ => Duration::ZERO,
        }
    }

    /// No holder, or its current version stood unchanged for its whole duration.
    pub fn expired(&self, lease: &Lease, now: Instant) -> bool {
        let seconds = lease
            .spec
            .as_ref()
            .and_then(|s| s.lease_duration_seconds)
            .unwrap_or(0)
            .max(0) as u64;
        holder(lease).is_none() || self.unchanged_for(lease, now) >= Duration::from_secs(seconds)
    }
}

/// Every shard's holder and the live members, from the listed Leases.
pub fn view(
    leases: &[Lease],
    seen: &Observations,
    count: u32,
    me: &str,
    now: Instant,
) -> (Vec<Holder>, BTreeSet<String>) {
    let mut holders = vec![Holder::Free; count as usize];
    let mut members = BTreeSet::new();
    for lease in leases {
        let Some(h) = holder(lease) else { continue };
        let live = !seen.expired(lease, now);
        if let Some(i) = shard_index(&lease.name_any(), count) {
            holders[i as usize] = if h == me {
                Holder::Me
            } else if live {
                Holder::Other(h.to_string())
            } else {
                Holder::Free
            };
        } else if lease.name_any().starts_with(MEMBER_PREFIX) && live {
            members.insert(h.to_string());
        }
    }
    (holders, members)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(name: &str, holder: Option<&str>, version: &str, seconds: i32) -> Lease {
        Lease {
            metadata: ObjectMeta {
                name: Some(name.into()),
                resource_version: Some(version.into()),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: holder.map(str::to_string),
                lease_duration_seconds: Some(seconds),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn names_are_valid_object_names() {
        assert_eq!(shard_lease_name(3), "flagger-shard-3");
        assert_eq!(shard_index("flagger-shard-3", 4), Some(3));
        assert_eq!(
            shard_index("flagger-shard-4", 4),
            None,
            "from a larger -shards"
        );
        assert_eq!(shard_index("flagger-member-a", 4), None);
        assert_eq!(
            member_lease_name("Flagger-7d9f_1"),
            "flagger-member-flagger-7d9f-1"
        );
        assert_eq!(member_lease_name(&"x".repeat(300)).len(), 253);
    }

    #[tokio::test(start_paused = true)]
    async fn a_lease_expires_a_duration_after_its_version_was_first_seen_here() {
        let mut seen = Observations::default();
        let start = Instant::now();
        let v1 = lease("flagger-shard-0", Some("b"), "1", 6);
        seen.observe(std::slice::from_ref(&v1), start);
        // Whatever renewTime says: only the local count matters.
        assert!(!seen.expired(&v1, start + Duration::from_secs(5)));
        seen.observe(std::slice::from_ref(&v1), start + Duration::from_secs(5));
        assert!(seen.expired(&v1, start + Duration::from_secs(6)));
        // A renewal (new version) starts the count again.
        let v2 = lease("flagger-shard-0", Some("b"), "2", 6);
        seen.observe(std::slice::from_ref(&v2), start + Duration::from_secs(6));
        assert!(!seen.expired(&v2, start + Duration::from_secs(11)));
        assert!(seen.expired(&v2, start + Duration::from_secs(12)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_lease_never_seen_before_is_not_expired() {
        let seen = Observations::default();
        let l = lease("flagger-shard-0", Some("b"), "1", 6);
        assert!(!seen.expired(&l, Instant::now() + Duration::from_secs(100)));
        let released = lease("flagger-shard-0", None, "2", 6);
        assert!(seen.expired(&released, Instant::now()), "no holder: free");
    }

    #[tokio::test(start_paused = true)]
    async fn the_view_names_holders_and_live_members() {
        let start = Instant::now();
        let leases = vec![
            lease("flagger-shard-0", Some("a"), "1", 6),
            lease("flagger-shard-1", Some("b"), "2", 6),
            lease("flagger-shard-2", None, "3", 6),
            lease("flagger-shard-3", Some("c"), "4", 6),
            lease("flagger-member-a", Some("a"), "5", 6),
            lease("flagger-member-b", Some("b"), "6", 6),
            lease("flagger-member-c", Some("c"), "7", 6),
        ];
        let mut seen = Observations::default();
        seen.observe(&leases[..3], start);
        seen.observe(&leases, start + Duration::from_secs(3));
        // At 7 s: versions seen at 0 s expired, those first seen at 3 s not.
        let (holders, members) = view(&leases, &seen, 5, "a", start + Duration::from_secs(7));
        assert_eq!(
            holders,
            [
                Holder::Me,
                Holder::Free,
                Holder::Free,
                Holder::Other("c".into()),
                Holder::Free
            ]
        );
        assert_eq!(members.into_iter().collect::<Vec<_>>(), ["a", "b", "c"]);
    }

    #[test]
    fn claiming_moves_the_acquire_time_only_on_a_new_holder() {
        let t0: jiff::Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let t1: jiff::Timestamp = "2026-01-01T00:00:02Z".parse().unwrap();
        let d = Duration::from_secs(6);
        let first = claimed(None, "flagger-shard-0", "shard", "a", d, t0);
        assert_eq!(first.metadata.labels.as_ref().unwrap()[KIND_LABEL], "shard");
        let renewed = claimed(Some(&first), "flagger-shard-0", "shard", "a", d, t1);
        let spec = renewed.spec.as_ref().unwrap();
        assert_eq!(spec.acquire_time, Some(MicroTime(t0)));
        assert_eq!(spec.renew_time, Some(MicroTime(t1)));
        assert_eq!(spec.lease_transitions, Some(1));
        assert_eq!(spec.lease_duration_seconds, Some(6));
        let taken = claimed(Some(&released(&renewed)), "x", "shard", "b", d, t1);
        let spec = taken.spec.as_ref().unwrap();
        assert_eq!(spec.holder_identity.as_deref(), Some("b"));
        assert_eq!(spec.acquire_time, Some(MicroTime(t1)));
        assert_eq!(spec.lease_transitions, Some(2));
    }
}
