//! Which shard a Canary belongs to, and how many shards each replica should hold: pure functions
//! of what every replica can read from the Leases, so all replicas reach the same answer.

use std::collections::BTreeSet;

/// What a Canary's shard is computed from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ShardBy {
    /// `namespace/name`: Canaries spread evenly whatever the namespaces.
    Name,
    /// The namespace alone: one replica drives a namespace's Canaries (handy when reading logs
    /// per team), at the price of an uneven spread when namespaces differ in size.
    Namespace,
}

/// The shard of a Canary: FNV-1a (64 bits) of the key, modulo `shards`. Written out here rather
/// than taken from std's hasher, whose output may change between Rust releases: replicas built
/// by different compilers must agree.
pub fn shard_of(by: ShardBy, namespace: &str, name: &str, shards: u32) -> u32 {
    let key = match by {
        ShardBy::Name => format!("{namespace}/{name}"),
        ShardBy::Namespace => namespace.to_string(),
    };
    let hash = fnv1a(key.as_bytes());
    (hash % u64::from(shards.max(1))) as u32
}

fn fnv1a(bytes: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes
        .iter()
        .fold(OFFSET, |h, b| (h ^ u64::from(*b)).wrapping_mul(PRIME))
}

/// Who holds a shard, as one replica sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Holder {
    /// This replica.
    Me,
    /// Another replica, whose lease has not expired.
    Other(String),
    /// Nobody: no Lease, an empty holder, or a lease expired (as measured by this replica).
    Free,
}

/// How many shards `me` should hold: `shards / members` each, and one more for the first
/// `shards % members` members in identity order. The shares add up to `shards` exactly when all
/// replicas see the same members.
pub fn fair_share(shards: usize, members: &BTreeSet<String>, me: &str) -> usize {
    let count = members.len().max(1);
    let rank = members.iter().position(|m| m == me).unwrap_or(count);
    shards / count + usize::from(rank < shards % count)
}

/// What to do with the shards this tick.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Held and kept: renew.
    pub keep: Vec<u32>,
    /// Held beyond the fair share: stop acting, then release.
    pub release: Vec<u32>,
    /// Free and within the fair share: try to take.
    pub acquire: Vec<u32>,
}

/// The plan for `me` given every shard's holder and the live members (`me` counts as one even
/// when absent). Extras are released from the highest shard down and free shards taken from the
/// lowest up, so two replicas rebalancing at once do not chase the same shards.
pub fn plan(holders: &[Holder], members: &BTreeSet<String>, me: &str) -> Plan {
    let mut members = members.clone();
    members.insert(me.to_string());
    let target = fair_share(holders.len(), &members, me);
    let indices = |want: &Holder| -> Vec<u32> {
        (0..holders.len() as u32)
            .filter(|i| &holders[*i as usize] == want)
            .collect()
    };
    let mut keep = indices(&Holder::Me);
    let release = keep.split_off(keep.len().min(target));
    let missing = target - keep.len();
    let acquire = indices(&Holder::Free).into_iter().take(missing).collect();
    Plan {
        keep,
        release,
        acquire,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    fn other(name: &str) -> Holder {
        Holder::Other(name.into())
    }

    #[test]
    fn fnv1a_matches_the_published_test_vectors() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn a_canary_keeps_its_shard() {
        // FNV-1a of "test/podinfo" is 0x944cd678a2e0fdf9 (computed apart from this code), 3 modulo 6.
        assert_eq!(shard_of(ShardBy::Name, "test", "podinfo", 6), 3);
        assert_eq!(shard_of(ShardBy::Name, "test", "podinfo", 1), 0);
        assert_eq!(
            shard_of(ShardBy::Namespace, "test", "podinfo", 6),
            shard_of(ShardBy::Namespace, "test", "other", 6)
        );
        assert_eq!(
            shard_of(ShardBy::Name, "a", "b", 0),
            0,
            "no division by zero"
        );
    }

    #[test]
    fn names_spread_evenly_over_the_shards() {
        let mut counts = [0usize; 6];
        for i in 0..6000 {
            counts[shard_of(ShardBy::Name, "ns", &format!("app-{i}"), 6) as usize] += 1;
        }
        assert!(counts.iter().all(|c| (900..1100).contains(c)), "{counts:?}");
    }

    #[test]
    fn shares_add_up_and_the_first_members_take_the_remainder() {
        let m = members(&["a", "b", "c"]);
        let shares: Vec<_> = ["a", "b", "c"]
            .iter()
            .map(|x| fair_share(8, &m, x))
            .collect();
        assert_eq!(shares, [3, 3, 2]);
        assert_eq!(
            fair_share(2, &m, "c"),
            0,
            "more replicas than shards: standby"
        );
        assert_eq!(fair_share(6, &members(&["a"]), "a"), 6);
        assert_eq!(fair_share(6, &members(&[]), "a"), 6, "alone");
    }

    #[test]
    fn a_lone_replica_takes_every_shard() {
        let p = plan(&vec![Holder::Free; 4], &members(&[]), "a");
        assert_eq!(p.acquire, [0, 1, 2, 3]);
        assert!(p.keep.is_empty() && p.release.is_empty());
    }

    #[test]
    fn a_joining_replica_gets_the_extras_released_from_the_top() {
        // `a` held all six; `b` joined.
        let holders = vec![Holder::Me; 6];
        let p = plan(&holders, &members(&["a", "b"]), "a");
        assert_eq!(p.keep, [0, 1, 2]);
        assert_eq!(p.release, [3, 4, 5]);
        assert!(p.acquire.is_empty());
        // What `b` sees meanwhile, and once they are released.
        let mut seen_by_b = vec![other("a"); 6];
        assert_eq!(
            plan(&seen_by_b, &members(&["a", "b"]), "b"),
            Plan::default()
        );
        for h in &mut seen_by_b[3..] {
            *h = Holder::Free;
        }
        let p = plan(&seen_by_b, &members(&["a", "b"]), "b");
        assert_eq!(p.acquire, [3, 4, 5]);
    }

    #[test]
    fn a_dead_replicas_shards_are_shared_by_the_survivors() {
        // Six shards over a, b, c; c died, its leases (4, 5) expired and so did its membership.
        let holders = vec![
            Holder::Me,
            Holder::Me,
            other("b"),
            other("b"),
            Holder::Free,
            Holder::Free,
        ];
        let p = plan(&holders, &members(&["a", "b"]), "a");
        assert_eq!(p.keep, [0, 1]);
        assert_eq!(p.acquire, [4]);
        let seen_by_b = vec![
            other("a"),
            other("a"),
            Holder::Me,
            Holder::Me,
            Holder::Free,
            Holder::Free,
        ];
        assert_eq!(plan(&seen_by_b, &members(&["a", "b"]), "b").acquire, [4]);
        // Whoever loses the race for 4 takes 5 on the next tick.
        let after = vec![
            other("a"),
            other("a"),
            Holder::Me,
            Holder::Me,
            other("a"),
            Holder::Free,
        ];
        assert_eq!(plan(&after, &members(&["a", "b"]), "b").acquire, [5]);
    }

    #[test]
    fn shards_held_by_live_others_are_never_taken() {
        let holders = vec![other("b"), other("b"), other("b"), Holder::Free];
        let p = plan(&holders, &members(&["a", "b"]), "a");
        assert_eq!(p.acquire, [3], "only the free one, even below the share");
    }

    #[test]
    fn a_replica_missing_from_the_members_still_counts_itself() {
        let p = plan(&vec![Holder::Free; 4], &members(&["b"]), "a");
        assert_eq!(p.acquire, [0, 1]);
    }
}
