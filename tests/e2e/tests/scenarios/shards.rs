//! Three active replicas with `-shards`: the Canaries are spread over them by their shard
//! Leases. One replica is killed (SIGKILL) mid-analysis; its Canaries resume on the others once
//! its leases expire, with every traffic step taken once, and no Canary is ever driven by two
//! replicas: the recordings of all three, merged by time, change hands at most once per Canary.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use flagger_core::api::Phase;
use flagger_core::command::Command;
use flagger_e2e::Result;
use flagger_e2e::fidelity;
use flagger_e2e::fixtures::{self, IMAGE_V1, IMAGE_V2};
use flagger_e2e::operator::OperatorOpts;
use flagger_e2e::scenario::Scenario;
use flagger_e2e::watch;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, ListParams};

use crate::common::*;

const SHARDS: usize = 6;
const LEASE_SECONDS: u64 = 6;
const CANARIES: usize = 6;

/// Shard Lease holders and how many shards each holds.
async fn shard_holders(s: &Scenario) -> Result<BTreeMap<String, usize>> {
    let leases: Api<Lease> = Api::namespaced(s.client.clone(), &s.ns);
    let mut held = BTreeMap::new();
    for l in leases.list(&ListParams::default()).await?.items {
        let name = l.metadata.name.unwrap_or_default();
        let holder = l.spec.and_then(|s| s.holder_identity).unwrap_or_default();
        if name.starts_with("flagger-shard-") && !holder.is_empty() {
            *held.entry(holder).or_insert(0) += 1;
        }
    }
    Ok(held)
}

/// The replica (trace directory index) of every recorded reconcile of `file`, by time.
fn reconciles_by_time(
    dirs: &[(String, std::path::PathBuf)],
    file: &str,
) -> Result<Vec<(jiff::Timestamp, String, Vec<Command>)>> {
    let mut all = Vec::new();
    for (instance, dir) in dirs {
        let path = dir.join(file);
        if !path.exists() {
            continue;
        }
        for r in fidelity::read_recording(&path)? {
            let n = r.executed.min(r.decision.commands.len());
            all.push((
                r.snapshot.now,
                instance.clone(),
                r.decision.commands[..n].to_vec(),
            ));
        }
    }
    all.sort_by_key(|(t, _, _)| *t);
    Ok(all)
}

#[tokio::test]
#[ignore = "needs the processes of tests/e2e/run.sh"]
async fn shards_replica_killed_mid_analysis() -> Result<()> {
    let s = Scenario::new("shards_replica_killed_mid_analysis").await?;
    let ns = s.ns.clone();
    let names: Vec<String> = (0..CANARIES).map(|i| format!("podinfo-{i}")).collect();
    for n in &names {
        s.apply(&fixtures::deployment(&ns, n, IMAGE_V1)).await?;
    }
    let replica = |instance: &str| {
        let mut o = OperatorOpts::new(instance, "istio");
        o.extra_args = vec![
            format!("-shards={SHARDS}"),
            format!("-shard-lease-duration={LEASE_SECONDS}s"),
            format!("-leader-election-namespace={ns}"),
        ];
        o
    };
    let instances = ["flagger-a", "flagger-b", "flagger-c"];
    let mut ops = Vec::new();
    for i in instances {
        ops.push(s.operator(&replica(i)).await?);
    }
    // Joining replicas get their share from the ones already running.
    s.wait_for(
        "the shards spread two by two over three replicas",
        Duration::from_secs(60),
        || async {
            let held = shard_holders(&s).await?;
            Ok((held.len() == 3 && held.values().all(|n| *n == 2)).then_some(()))
        },
    )
    .await?;

    let mut weights = BTreeMap::new();
    for n in &names {
        let mut canary = fixtures::weighted_canary(&ns, n, "istio");
        canary["spec"]["analysis"]["stepWeight"] = 10.into();
        canary["spec"]["analysis"]["maxWeight"] = 50.into();
        s.apply(&canary).await?;
    }
    for n in &names {
        initialized(&s, n).await?;
        weights.insert(
            n.clone(),
            watch::virtual_service_weights(s.client.clone(), &ns, n)?,
        );
    }
    for n in &names {
        s.set_image(n, IMAGE_V2).await?;
    }
    for n in &names {
        canary_weight_reached(&s, n, 10).await?;
    }

    // Who drives what, from the events each replica posted so far: exactly one per Canary.
    let mut owner = BTreeMap::new();
    for n in &names {
        let by: BTreeSet<String> = s
            .events(n)
            .await?
            .into_iter()
            .map(|e| e.reporting_instance)
            .collect();
        assert_eq!(by.len(), 1, "{n} driven by {by:?}");
        owner.insert(n.clone(), by.into_iter().next().unwrap());
    }
    let victim = instances
        .iter()
        .max_by_key(|i| owner.values().filter(|o| o == i).count())
        .copied()
        .unwrap();
    let orphaned: Vec<&String> = names.iter().filter(|n| owner[*n] == victim).collect();
    assert!(!orphaned.is_empty());
    let v = instances.iter().position(|i| *i == victim).unwrap();
    ops[v].sigkill().await?;
    let killed_at = jiff::Timestamp::now();
    tracing_line(
        &s.dir,
        &format!("killed {victim} driving {orphaned:?}; owners {owner:?}"),
    );

    for n in &names {
        s.wait_phase(n, Phase::Succeeded, ROLLOUT_TIMEOUT).await?;
    }
    for n in &names {
        let w = &weights[n];
        s.wait_for("routes back on the primary", ROLLOUT_TIMEOUT, || async {
            Ok((w.values().last() == Some(&(100, 0))).then_some(()))
        })
        .await?;
        assert_eq!(
            w.values(),
            [
                (100, 0),
                (90, 10),
                (80, 20),
                (70, 30),
                (60, 40),
                (50, 50),
                (100, 0)
            ],
            "{n}: every step exactly once, across the kill"
        );
    }

    // Each step announced once. A kill can land between a step's route write and its event, and
    // the next holder records the step without announcing it again (as after a restart): for the
    // orphaned Canaries one announcement may be missing, never doubled.
    for n in &names {
        let events = s.events(n).await?;
        let mut missing = 0;
        for w in [10, 20, 30, 40, 50] {
            let note = format!("Advance {n}.{ns} canary weight {w}");
            let matching: Vec<_> = events.iter().filter(|e| e.note == note).collect();
            assert!(matching.len() <= 1, "{note} twice: {matching:?}");
            assert!(
                matching.iter().all(|e| e.count == 1),
                "{note}: {matching:?}"
            );
            missing += usize::from(matching.is_empty());
        }
        let allowed = usize::from(orphaned.contains(&n));
        assert!(missing <= allowed, "{n}: {missing} steps not announced");
    }

    // The survivors share the dead replica's shards.
    let held = shard_holders(&s).await?;
    assert!(!held.contains_key(victim), "{held:?}");
    assert_eq!(held.values().sum::<usize>(), SHARDS, "{held:?}");

    // Ownership from the recordings of all three: one holder at a time, the orphaned Canaries
    // change hands once (from the killed replica), the others never.
    let dirs: Vec<(String, std::path::PathBuf)> = ops
        .iter()
        .map(|o| (o.instance.clone(), o.traces.clone()))
        .collect();
    let mut resumed = Vec::new();
    for n in &names {
        let recs = reconciles_by_time(&dirs, &format!("{ns}.{n}.jsonl"))?;
        let mut hands: Vec<&str> = recs.iter().map(|(_, i, _)| i.as_str()).collect();
        hands.dedup();
        if orphaned.contains(&n) {
            assert_eq!(hands.len(), 2, "{n} changed hands: {hands:?}");
            assert_eq!(hands[0], victim);
            let first_elsewhere = recs.iter().find(|(_, i, _)| i != victim).unwrap().0;
            let last_of_victim = recs.iter().rev().find(|(_, i, _)| i == victim).unwrap().0;
            assert!(last_of_victim <= killed_at, "{n}: acted after the kill");
            resumed.push((n.clone(), first_elsewhere.duration_since(killed_at)));
        } else {
            assert_eq!(hands, [owner[n].as_str()], "{n} changed hands");
        }
        let routed: Vec<i32> = recs
            .iter()
            .flat_map(|(_, _, c)| c.clone())
            .filter_map(|c| match c {
                Command::SetRoutes { canary_weight, .. } => Some(canary_weight),
                _ => None,
            })
            .collect();
        assert_eq!(routed, [0, 10, 20, 30, 40, 50, 0], "{n}: routes written");
    }
    // Expiry is counted from when the survivors first saw the dead replica's last renewal (up to
    // one retry period, D/6, after it) and the shard is taken at the next retry.
    let bound = jiff::SignedDuration::from_secs((LEASE_SECONDS + 2 * LEASE_SECONDS / 6 + 1) as i64);
    for (n, after) in &resumed {
        tracing_line(&s.dir, &format!("{n} resumed {after:?} after the kill"));
        assert!(*after <= bound, "{n} resumed {after:?} after the kill");
    }

    let mut refs: Vec<_> = ops.iter_mut().collect();
    stop_and_check_fidelity(&s, std::mem::take(&mut refs)).await?;
    s.finish().await;
    Ok(())
}

/// To the test output and to `<logs>/<scenario>/summary.txt`, which a passing run keeps.
fn tracing_line(dir: &std::path::Path, line: &str) {
    use std::io::Write;
    eprintln!("[shards] {line}");
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("summary.txt"))
    {
        let _ = writeln!(f, "{line}");
    }
}
