//! Taking over a Canary that Flagger left: its status records revisions as Flagger's hashes,
//! which never equal ours. Exact commands for adoption and for a genuine new revision.

mod support;

use std::collections::BTreeMap;

use flagger_core::api::{CanaryCondition, CanaryStatus, ConditionStatus, Phase};
use flagger_core::command::{Command, EventSeverity};
use flagger_core::{Routes, Workload};
use serde_json::json;
use support::{Cluster, ready, spec, without_gauges};

/// Flagger's `SafeEncodeString` of an FNV hash of its own struct dump: not ours for any template.
const FLAGGER_HASH: &str = "5d7c4f9b8d";

fn with_identity(w: Workload, identity: &str) -> Workload {
    Workload {
        copy_identity: identity.into(),
        ..w
    }
}

/// The cluster as Flagger leaves a Canary at rest in `phase`: the target scaled down, the primary
/// running the template whose identity is `primary_identity`, all traffic on the primary.
fn left_by_flagger(phase: Phase, primary_identity: &str) -> Cluster {
    let mut c = Cluster::new(spec(json!({
        "interval": "1m", "threshold": 2, "maxWeight": 50, "stepWeight": 10
    })));
    c.target = Some(with_identity(ready("ours-v1", 0), "id-v1"));
    c.primary = Some(with_identity(ready("copy-of-v1", 2), primary_identity));
    c.services = true;
    c.apex_on_primary = true;
    c.routes = Some(Routes {
        primary_weight: 100,
        canary_weight: 0,
        mirrored: false,
    });
    c.status = CanaryStatus {
        phase: Some(phase),
        last_applied_spec: Some(FLAGGER_HASH.into()),
        last_promoted_spec: Some(FLAGGER_HASH.into()),
        last_transition_time: Some(c.now),
        conditions: vec![promoted_condition(phase, c.now)],
        ..CanaryStatus::default()
    };
    c
}

/// The `Promoted` condition Flagger writes with each resting phase.
fn promoted_condition(phase: Phase, at: jiff::Timestamp) -> CanaryCondition {
    let (status, message) = match phase {
        Phase::Initialized => (
            ConditionStatus::True,
            "Deployment initialization completed.",
        ),
        Phase::Succeeded => (
            ConditionStatus::True,
            "Canary analysis completed successfully, promotion finished.",
        ),
        _ => (
            ConditionStatus::False,
            "Canary analysis failed, Deployment scaled to zero.",
        ),
    };
    CanaryCondition {
        type_: "Promoted".into(),
        status,
        last_update_time: Some(at),
        last_transition_time: Some(at),
        reason: phase.as_str().into(),
        message: message.into(),
    }
}

fn adopted(mut status: CanaryStatus) -> CanaryStatus {
    status.last_applied_spec = Some("ours-v1".into());
    status.last_promoted_spec = Some("ours-v1".into());
    status
}

#[test]
fn a_succeeded_canary_whose_primary_runs_the_target_is_adopted_without_a_run() {
    for phase in [Phase::Succeeded, Phase::Initialized, Phase::Failed] {
        let mut c = left_by_flagger(phase, "id-v1");
        let before = c.status.clone();
        // Ours starts a while after Flagger's last write.
        c.now += jiff::SignedDuration::from_mins(5);
        // Only our hash recorded, in the same phase: no event, no scale-up, no analysis, and
        // Flagger's lastTransitionTime kept (nothing transitioned).
        assert_eq!(
            c.tick(),
            vec![Command::WriteStatus(adopted(before))],
            "{phase:?}"
        );
        // From then on it rests as any Canary of ours.
        assert_eq!(c.tick(), vec![], "{phase:?}");
        assert_eq!(c.phase(), Some(phase));
    }
}

#[test]
fn a_primary_running_another_template_is_a_genuine_new_revision() {
    let mut c = left_by_flagger(Phase::Succeeded, "id-v0");
    let cmds = c.tick();
    assert_eq!(
        cmds[..2],
        [
            Command::EmitEvent {
                severity: EventSeverity::Normal,
                message: "New revision detected! Scaling up podinfo.test".into()
            },
            Command::ScaleTarget { replicas: 2 }
        ]
    );
    assert_eq!(c.phase(), Some(Phase::Progressing));
    assert_eq!(c.status.last_applied_spec.as_deref(), Some("ours-v1"));
    assert_eq!(c.status.last_promoted_spec.as_deref(), Some(FLAGGER_HASH));
}

#[test]
fn changed_configs_are_a_genuine_new_revision_even_on_the_same_template() {
    let mut c = left_by_flagger(Phase::Succeeded, "id-v1");
    c.status.tracked_configs = Some(BTreeMap::from([(
        "configmap/podinfo-config".to_string(),
        "0011223344556677".to_string(),
    )]));
    let mut target = c.target.take().unwrap();
    target.configs = BTreeMap::from([(
        "configmap/podinfo-config".to_string(),
        "8899aabbccddeeff".to_string(),
    )]);
    c.target = Some(target);
    let cmds = without_gauges(c.tick());
    assert!(
        matches!(&cmds[0], Command::EmitEvent { message, .. } if message.starts_with("New revision detected!")),
        "{cmds:?}"
    );
    assert_eq!(c.phase(), Some(Phase::Progressing));
}

#[test]
fn an_unknown_identity_is_never_taken_for_a_match() {
    let mut c = left_by_flagger(Phase::Succeeded, "");
    c.target = Some(with_identity(ready("ours-v1", 0), ""));
    c.tick();
    assert_eq!(c.phase(), Some(Phase::Progressing));
}

/// The cluster as Flagger leaves a Canary it stopped mid-analysis: the target runs the new
/// template (identity `id-v2`) at full scale and takes `canary_weight` percent, the primary still
/// runs the promoted one (`id-v1`), the status records both as Flagger's hashes.
fn left_mid_analysis(canary_weight: i32) -> Cluster {
    let mut c = left_by_flagger(Phase::Progressing, "id-v1");
    c.target = Some(with_identity(ready("ours-v2", 2), "id-v2"));
    c.routes = Some(Routes {
        primary_weight: 100 - canary_weight,
        canary_weight,
        mirrored: false,
    });
    c.status.last_applied_spec = Some("7f9c6d5b8a".into());
    c.status.canary_weight = canary_weight;
    c.status.conditions = vec![CanaryCondition {
        type_: "Promoted".into(),
        status: ConditionStatus::Unknown,
        last_update_time: Some(c.now),
        last_transition_time: Some(c.now),
        reason: "Progressing".into(),
        message: "New revision detected, progressing canary analysis.".into(),
    }];
    c
}

#[test]
fn a_canary_left_mid_analysis_restarts_from_the_primary_as_flagger_does_for_a_changed_target() {
    let mut c = left_mid_analysis(20);
    let before = c.status.clone();
    let restarted = CanaryStatus {
        canary_weight: 0,
        failed_checks: 0,
        iterations: 0,
        last_applied_spec: Some("ours-v2".into()),
        tracked_configs: None,
        ..before.clone()
    };
    // At once, not one interval later: every share of the traffic back on the primary, which
    // runs the promoted revision and is ready; the run starts over for the target's revision.
    assert_eq!(
        c.tick(),
        vec![
            Command::EmitEvent {
                severity: EventSeverity::Normal,
                message: "New revision detected! Restarting analysis for podinfo.test".into()
            },
            Command::SetRoutes {
                primary_weight: 100,
                canary_weight: 0,
                mirrored: false
            },
            Command::WriteStatus(restarted.clone()),
        ]
    );
    assert_eq!(
        c.tick(),
        vec![],
        "nothing more until the interval has passed"
    );
    // Then the steps again, from the first, and the target's revision is promoted.
    let mut weights = Vec::new();
    for _ in 0..12 {
        let cmds = c.tick_after(60);
        weights.extend(cmds.iter().filter_map(|cmd| match cmd {
            Command::SetRoutes { canary_weight, .. } => Some(*canary_weight),
            _ => None,
        }));
        if c.phase() == Some(Phase::Succeeded) {
            break;
        }
    }
    assert_eq!(weights, [10, 20, 30, 40, 50, 0]);
    assert_eq!(c.phase(), Some(Phase::Succeeded));
    assert_eq!(
        c.primary.as_ref().map(|p| p.template_hash.as_str()),
        Some("ours-v2")
    );
    assert_eq!(c.status.last_promoted_spec.as_deref(), Some("ours-v2"));
}

#[test]
fn a_canary_left_waiting_for_promotion_restarts_too() {
    let mut c = left_mid_analysis(50);
    c.status.phase = Some(Phase::WaitingPromotion);
    let cmds = c.tick();
    assert_eq!(
        Cluster::events(&cmds),
        ["New revision detected! Restarting analysis for podinfo.test"]
    );
    assert!(cmds.contains(&Command::SetRoutes {
        primary_weight: 100,
        canary_weight: 0,
        mirrored: false
    }));
    assert_eq!(c.phase(), Some(Phase::Progressing));
}
