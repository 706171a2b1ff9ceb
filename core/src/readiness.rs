//! Whether a Deployment has finished rolling out, with Flagger's wording and its distinction
//! between waiting (retry later) and a blown progress deadline (give up).

use jiff::Timestamp;

use crate::snapshot::Workload;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    Ready,
    /// Still rolling out; the message says what is missing.
    Waiting(String),
    /// The progress deadline has passed: the rollout will not finish by itself.
    DeadlineExceeded(String),
}

/// `threshold` is the percentage of updated replicas that must be available.
pub fn readiness(
    name: &str,
    w: &Workload,
    threshold: i32,
    progress_deadline: jiff::SignedDuration,
    now: Timestamp,
) -> Readiness {
    if w.observed_generation < w.generation {
        return Readiness::Waiting(
            "waiting for rollout to finish: observed deployment generation less than desired generation".into(),
        );
    }
    if w.progress_deadline_exceeded {
        return Readiness::DeadlineExceeded(format!(
            "deployment {name:?} exceeded its progress deadline"
        ));
    }
    let deadline_passed = w.unavailable_since.is_some_and(|since| {
        since
            .checked_add(progress_deadline)
            .is_ok_and(|deadline| deadline < now)
    });
    let (replicas, updated, available, total) = (
        i64::from(w.replicas),
        i64::from(w.updated_replicas),
        i64::from(w.available_replicas),
        i64::from(w.total_replicas),
    );
    let waiting = if updated < replicas {
        Some(format!(
            "waiting for rollout to finish: {} out of {} new replicas have been updated",
            w.updated_replicas, w.replicas
        ))
    } else if total > updated {
        Some(format!(
            "waiting for rollout to finish: {} old replicas are pending termination",
            total - updated
        ))
    } else {
        let needed = (updated * i64::from(threshold)) / 100;
        (available < needed).then(|| {
            format!(
                "waiting for rollout to finish: {} of {} (readyThreshold {}%) updated replicas are available",
                w.available_replicas, needed, threshold
            )
        })
    };
    // Flagger's wording: a blown deadline gives up with the same message it was waiting on.
    match waiting {
        None => Readiness::Ready,
        Some(message) if deadline_passed => Readiness::DeadlineExceeded(message),
        Some(message) => Readiness::Waiting(message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::SignedDuration;

    fn rolled_out(replicas: i32) -> Workload {
        Workload {
            template_hash: "h".into(),
            replicas,
            generation: 2,
            observed_generation: 2,
            updated_replicas: replicas,
            available_replicas: replicas,
            total_replicas: replicas,
            ..Workload::default()
        }
    }

    const DEADLINE: SignedDuration = SignedDuration::from_secs(600);

    #[test]
    fn fully_rolled_out_is_ready() {
        assert_eq!(
            readiness("app", &rolled_out(2), 100, DEADLINE, Timestamp::UNIX_EPOCH),
            Readiness::Ready
        );
    }

    #[test]
    fn waits_with_flaggers_messages() {
        let now = Timestamp::UNIX_EPOCH;
        let mut w = rolled_out(2);
        w.observed_generation = 1;
        assert!(
            matches!(readiness("app", &w, 100, DEADLINE, now), Readiness::Waiting(m) if m.contains("observed deployment generation"))
        );
        let mut w = rolled_out(2);
        w.updated_replicas = 1;
        assert_eq!(
            readiness("app", &w, 100, DEADLINE, now),
            Readiness::Waiting(
                "waiting for rollout to finish: 1 out of 2 new replicas have been updated".into()
            )
        );
        let mut w = rolled_out(2);
        w.total_replicas = 3;
        assert_eq!(
            readiness("app", &w, 100, DEADLINE, now),
            Readiness::Waiting(
                "waiting for rollout to finish: 1 old replicas are pending termination".into()
            )
        );
        let mut w = rolled_out(2);
        w.available_replicas = 0;
        assert_eq!(
            readiness("app", &w, 100, DEADLINE, now),
            Readiness::Waiting(
                "waiting for rollout to finish: 0 of 2 (readyThreshold 100%) updated replicas are available".into()
            )
        );
        // A lower threshold accepts partial availability.
        let mut w = rolled_out(4);
        w.available_replicas = 2;
        assert_eq!(readiness("app", &w, 50, DEADLINE, now), Readiness::Ready);
        // Flagger counts against the replicas the threshold needs, not all updated ones.
        w.available_replicas = 1;
        assert_eq!(
            readiness("app", &w, 50, DEADLINE, now),
            Readiness::Waiting(
                "waiting for rollout to finish: 1 of 2 (readyThreshold 50%) updated replicas are available".into()
            )
        );
    }

    #[test]
    fn a_passed_deadline_is_final() {
        let mut w = rolled_out(2);
        w.available_replicas = 0;
        w.unavailable_since = Some(Timestamp::UNIX_EPOCH);
        let before = Timestamp::UNIX_EPOCH + SignedDuration::from_secs(599);
        let after = Timestamp::UNIX_EPOCH + SignedDuration::from_secs(601);
        assert!(matches!(
            readiness("app", &w, 100, DEADLINE, before),
            Readiness::Waiting(_)
        ));
        // Flagger gives up with the message it was waiting on.
        assert_eq!(
            readiness("app", &w, 100, DEADLINE, after),
            Readiness::DeadlineExceeded(
                "waiting for rollout to finish: 0 of 2 (readyThreshold 100%) updated replicas are available".into()
            )
        );
        let mut w = rolled_out(2);
        w.progress_deadline_exceeded = true;
        assert!(matches!(
            readiness("app", &w, 100, DEADLINE, before),
            Readiness::DeadlineExceeded(_)
        ));
    }
}
