//! Properties every reconcile must keep, whatever the inputs. They are checked after each complete
//! decision (a crash or a conflict leaves the world between two decisions; the reconcile that
//! follows must restore them). The decision's own shape is checked always.

use flagger_core::api::CanaryStatus;
use flagger_core::policy::Strategy;
use flagger_core::snapshot::Routes;
use flagger_core::{Command, Phase, Policy};
use jiff::Timestamp;
use serde::Serialize;

use crate::engine::Step;
use crate::world::World;

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Violation {
    pub at: Timestamp,
    pub step: usize,
    pub rule: &'static str,
    pub detail: String,
}

/// Phase changes one decision may make, from flagger.md section 3.4 and the core's lifecycle:
/// resting phases leave only for a new run (or a failed primary), a run ends in Succeeded or Failed,
/// and deletion may interrupt anything.
pub fn allowed(from: Option<Phase>, to: Option<Phase>) -> bool {
    use Phase::*;
    let Some(to) = to else {
        return from.is_none();
    };
    if Some(to) == from || to == Terminating {
        return true;
    }
    match from {
        None => matches!(to, Initializing | Initialized | Failed),
        Some(from) => match from {
            Initializing => matches!(to, Initialized | Failed),
            Initialized | Succeeded | Failed | Waiting => {
                matches!(to, Progressing | Waiting | Failed)
            }
            Progressing => matches!(to, WaitingPromotion | Promoting | Succeeded | Failed),
            WaitingPromotion => matches!(to, Progressing | Promoting | Succeeded | Failed),
            Promoting => matches!(to, Finalising | Succeeded | Failed),
            Finalising => matches!(to, Succeeded | Failed),
            Terminating | Terminated => false,
        },
    }
}

pub struct Checker {
    policy: Option<Policy>,
    /// When the router's canary weight last went up.
    last_increase: Option<Timestamp>,
}

impl Checker {
    pub fn new(policy: Option<Policy>) -> Checker {
        Checker {
            policy,
            last_increase: None,
        }
    }

    /// `seen` and `seen_routes` are what the core decided on (an older status under a stale
    /// snapshot; routes a crashed decision already changed after a restart).
    pub fn check(
        &mut self,
        step: &Step,
        seen: &CanaryStatus,
        seen_routes: Option<Routes>,
        complete: bool,
        world: &World,
    ) -> Vec<Violation> {
        let mut out = Vec::new();
        let mut fail = |rule: &'static str, detail: String| {
            out.push(Violation {
                at: step.at,
                step: step.index,
                rule,
                detail,
            })
        };

        let writes = step
            .commands
            .iter()
            .filter(|c| matches!(c, Command::WriteStatus(_)))
            .count();
        if writes > 1 {
            fail(
                "status-write-once",
                format!("{writes} WriteStatus commands"),
            );
        }
        if writes == 1 && !matches!(step.commands.last(), Some(Command::WriteStatus(_))) {
            fail(
                "status-write-last",
                "WriteStatus is not the last command".into(),
            );
        }
        for c in &step.commands {
            if let Command::SetRoutes {
                primary_weight: p,
                canary_weight: w,
                ..
            } = c
                && (!(0..=100).contains(p) || !(0..=100).contains(w) || p + w != 100)
            {
                fail("weights-sum", format!("SetRoutes primary={p} canary={w}"));
            }
        }
        if let Some(p) = &self.policy
            && seen.failed_checks >= p.threshold
            && step.commands.contains(&Command::PromoteTemplate)
        {
            fail(
                "no-promotion-after-threshold",
                format!(
                    "PromoteTemplate with failedChecks {} >= threshold {}",
                    seen.failed_checks, p.threshold
                ),
            );
        }
        // One analysis step per interval: the weight goes up at most once per interval, also when
        // a write failed or the operator restarted in between (so partial decisions count too).
        // Deletion hands all traffic back to the target at once, which is no analysis step.
        if let (Some(prev), Some(now)) = (
            seen_routes.map(|r| r.canary_weight),
            world.routes.map(|r| r.canary_weight),
        ) && now > prev
            && !world.deleting
        {
            if let (Some(last), Some(p)) = (self.last_increase, &self.policy)
                && step.at.duration_since(last) < p.interval
            {
                fail(
                    "one-step-per-interval",
                    format!(
                        "canary weight {prev} -> {now} only {}s after the previous increase (interval {}s)",
                        step.at.duration_since(last).as_secs(),
                        p.interval.as_secs()
                    ),
                );
            }
            self.last_increase = Some(step.at);
        }
        // Checked after partial decisions too: a crash must never leave the apex on pods that
        // do not serve yet. Flagger skips every readiness check, this one included, when
        // analysis is skipped, and so does the core.
        let skips_readiness = self.policy.as_ref().is_some_and(|p| p.skip_analysis);
        if world.apex_on_primary
            && !skips_readiness
            && world.primary_serving_from.is_none_or(|at| at > step.at)
        {
            fail(
                "apex-before-primary-ready",
                "the apex Service selects the primary's pods before they are ready".into(),
            );
        }
        // A deleted Canary leaves the target serving all traffic; nothing below applies to it.
        if !complete || world.removed {
            return out;
        }

        let before = step.before.phase;
        let after = world.status.phase;
        if !allowed(before, after) {
            fail(
                "phase-transition",
                format!("{} -> {}", show(before), show(after)),
            );
        }
        let routes = world.routes;
        let weight = routes.map(|r| r.canary_weight);
        if let Some(r) = routes
            && (r.primary_weight + r.canary_weight != 100 || !(0..=100).contains(&r.canary_weight))
        {
            fail("weights-sum", format!("routes {r:?}"));
        }
        let running =
            |p: Option<Phase>| matches!(p, Some(Phase::Progressing | Phase::WaitingPromotion));
        if let Some(Policy {
            strategy: Strategy::Canary(c),
            ..
        }) = &self.policy
            && running(after)
        {
            if let Some(w) = weight
                && w > c.max_weight
            {
                fail(
                    "max-weight",
                    format!("router canary weight {w} > maxWeight {}", c.max_weight),
                );
            }
            if world.status.canary_weight > c.max_weight {
                fail(
                    "max-weight",
                    format!(
                        "status canaryWeight {} > maxWeight {}",
                        world.status.canary_weight, c.max_weight
                    ),
                );
            }
        }
        let restarted = world.status.last_applied_spec != seen.last_applied_spec
            || world.status.tracked_configs != seen.tracked_configs;
        if running(before)
            && running(after)
            && !restarted
            && let (Some(prev), Some(now)) = (seen_routes.map(|r| r.canary_weight), weight)
            && now < prev
        {
            fail(
                "weight-monotonic",
                format!(
                    "canary weight fell from {prev} to {now} while {}",
                    show(after)
                ),
            );
        }
        if let (Some(r), Some(t)) = (routes, &world.target)
            && (r.canary_weight > 0 || r.mirrored)
            && t.replicas == 0
        {
            fail(
                "traffic-to-empty-canary",
                format!(
                    "routes {r:?} while the canary has 0 replicas ({})",
                    show(after)
                ),
            );
        }
        if after == Some(Phase::Failed) {
            if let Some(r) = routes
                && (r.primary_weight != 100 || r.mirrored)
            {
                fail("failed-routes", format!("Failed with routes {r:?}"));
            }
            if let Some(t) = &world.target
                && t.replicas != 0
            {
                fail(
                    "failed-scaled-down",
                    format!("Failed with canary at {} replicas", t.replicas),
                );
            }
        }
        if after == Some(Phase::Succeeded) && before != Some(Phase::Succeeded) {
            let promoted = world.status.last_promoted_spec.as_deref();
            let runs = world.primary.as_ref().map(|p| p.template_hash.as_str());
            if promoted.is_none() || runs != promoted {
                fail(
                    "succeeded-primary-template",
                    format!(
                        "primary runs {:?}, lastPromotedSpec is {:?}",
                        runs.unwrap_or("-"),
                        promoted.unwrap_or("-")
                    ),
                );
            }
        }
        out
    }
}

fn show(p: Option<Phase>) -> &'static str {
    p.map_or("(none)", Phase::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_end_only_in_succeeded_or_failed() {
        use Phase::*;
        assert!(allowed(Some(Progressing), Some(Promoting)));
        assert!(allowed(Some(Finalising), Some(Succeeded)));
        assert!(allowed(Some(Failed), Some(Progressing)));
        assert!(!allowed(Some(Progressing), Some(Initialized)));
        assert!(!allowed(Some(Succeeded), Some(Promoting)));
        assert!(!allowed(Some(Promoting), Some(Progressing)));
        assert!(!allowed(Some(Initialized), Some(Succeeded)));
        assert!(!allowed(Some(Progressing), None));
    }

    fn policy() -> Policy {
        let spec: flagger_core::CanarySpec = serde_json::from_value(serde_json::json!({
            "targetRef": {"name": "podinfo"},
            "service": {"port": 9898},
            "analysis": {"interval": "1m", "threshold": 2, "maxWeight": 50, "stepWeight": 10}
        }))
        .unwrap();
        Policy::from_spec("podinfo", "test", &spec, &Default::default()).unwrap()
    }

    fn routes(canary: i32) -> Option<Routes> {
        Some(Routes {
            primary_weight: 100 - canary,
            canary_weight: canary,
            mirrored: false,
        })
    }

    fn step(before: Phase, commands: Vec<Command>) -> Step {
        let digest = |phase| crate::engine::Digest {
            phase: Some(phase),
            canary_weight: 0,
            failed_checks: 0,
            iterations: 0,
        };
        let applied = commands.len();
        Step::new(
            7,
            Timestamp::UNIX_EPOCH,
            Default::default(),
            commands,
            applied,
            digest(before),
        )
    }

    fn world(phase: Phase, canary_weight: i32, target_replicas: i32) -> World {
        let mut w = World::new(Default::default());
        w.status.phase = Some(phase);
        w.routes = routes(canary_weight);
        w.target = Some(crate::world::Deployment {
            template: serde_json::Value::Null,
            template_hash: "h".into(),
            configs: Default::default(),
            replicas: target_replicas,
            generation: 1,
            autoscaler_min_replicas: None,
            rollout_started: Timestamp::UNIX_EPOCH,
            ready_at: Some(Timestamp::UNIX_EPOCH),
        });
        w
    }

    fn rules(found: Vec<Violation>) -> Vec<&'static str> {
        found.into_iter().map(|v| v.rule).collect()
    }

    #[test]
    fn each_rule_catches_its_breach() {
        let seen = CanaryStatus {
            phase: Some(Phase::Progressing),
            ..Default::default()
        };
        let ok = world(Phase::Progressing, 30, 2);
        // A plain Progressing step from routes at `before`% into `after`: which rules break.
        let breaches = |after: &World, before: i32| {
            rules(Checker::new(Some(policy())).check(
                &step(Phase::Progressing, vec![]),
                &seen,
                routes(before),
                true,
                after,
            ))
        };
        assert!(
            Checker::new(Some(policy()))
                .check(
                    &step(Phase::Progressing, vec![]),
                    &seen,
                    routes(20),
                    true,
                    &ok
                )
                .is_empty()
        );

        let fell = world(Phase::Progressing, 10, 2);
        assert_eq!(breaches(&fell, 20), ["weight-monotonic"]);

        let over = world(Phase::Progressing, 60, 2);
        assert_eq!(breaches(&over, 50), ["max-weight"]);

        let empty = world(Phase::Progressing, 20, 0);
        assert_eq!(breaches(&empty, 20), ["traffic-to-empty-canary"]);

        let failed = world(Phase::Failed, 0, 2);
        assert_eq!(breaches(&failed, 20), ["failed-scaled-down"]);

        let jumped = world(Phase::Initialized, 0, 0);
        assert_eq!(breaches(&jumped, 0), ["phase-transition"]);

        let mut early_apex = world(Phase::Progressing, 20, 2);
        early_apex.apex_on_primary = true;
        assert_eq!(breaches(&early_apex, 20), ["apex-before-primary-ready"]);
        early_apex.primary_serving_from = Some(Timestamp::UNIX_EPOCH);
        assert!(breaches(&early_apex, 20).is_empty());

        let at_threshold = CanaryStatus {
            failed_checks: 2,
            ..seen.clone()
        };
        let promoting = world(Phase::Progressing, 50, 2);
        assert_eq!(
            rules(Checker::new(Some(policy())).check(
                &step(Phase::Progressing, vec![Command::PromoteTemplate]),
                &at_threshold,
                routes(50),
                true,
                &promoting
            )),
            ["no-promotion-after-threshold"]
        );

        let write = Command::WriteStatus(CanaryStatus::default());
        let twice = step(Phase::Progressing, vec![write.clone(), write.clone()]);
        assert_eq!(
            rules(Checker::new(Some(policy())).check(&twice, &seen, routes(30), true, &ok)),
            ["status-write-once"]
        );
        let early = step(Phase::Progressing, vec![write, Command::ApplyServices]);
        assert_eq!(
            rules(Checker::new(Some(policy())).check(&early, &seen, routes(30), true, &ok)),
            ["status-write-last"]
        );

        let bad_routes = step(
            Phase::Progressing,
            vec![Command::SetRoutes {
                primary_weight: 90,
                canary_weight: 20,
                mirrored: false,
            }],
        );
        assert_eq!(
            rules(Checker::new(Some(policy())).check(&bad_routes, &seen, routes(30), true, &ok)),
            ["weights-sum"]
        );
    }

    #[test]
    fn a_second_increase_within_an_interval_is_caught() {
        let mut c = Checker::new(Some(policy()));
        let seen = CanaryStatus {
            phase: Some(Phase::Progressing),
            ..Default::default()
        };
        let mut first = step(Phase::Progressing, vec![]);
        let w20 = world(Phase::Progressing, 20, 2);
        assert!(c.check(&first, &seen, routes(10), true, &w20).is_empty());
        first.at = Timestamp::UNIX_EPOCH + jiff::SignedDuration::from_secs(1);
        let w30 = world(Phase::Progressing, 30, 2);
        assert_eq!(
            rules(c.check(&first, &seen, routes(20), true, &w30)),
            ["one-step-per-interval"]
        );
        first.at = Timestamp::UNIX_EPOCH + jiff::SignedDuration::from_secs(61);
        let w40 = world(Phase::Progressing, 40, 2);
        assert!(c.check(&first, &seen, routes(30), true, &w40).is_empty());
    }
}
