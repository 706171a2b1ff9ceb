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
        // Only our hash recorded, in the same phase: no event, no scale-up, no analysis.
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
