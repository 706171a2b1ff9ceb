//! The state of one decision being built: commands so far, the status to write, and the
//! bookkeeping shared by every phase (due-ness, conditions, gauges, wake-up).

use jiff::Timestamp;

use crate::alerts;
use crate::api::{CanaryCondition, CanaryStatus, ConditionStatus, Phase};
use crate::command::{
    AlertSeverity, Command, Decision, EventSeverity, HookCall, HookPayload, MetricQuery,
    MetricRecord, Request,
};
use crate::hash;
use crate::policy::{Hook, MetricCheck, Policy, Provider, SpecError};
use crate::snapshot::{HookAnswer, MetricAnswer, Routes, Snapshot, Workload};

/// Inputs the decision is waiting for.
#[derive(Debug, Clone, PartialEq)]
pub struct Need(pub Vec<crate::command::Request>);

pub type Step<T = ()> = Result<T, Need>;

pub const BLOCKED: &str = "Blocked";
const PROMOTED: &str = "Promoted";

pub struct Tick<'a> {
    pub snap: &'a Snapshot,
    pub p: &'a Policy,
    pub now: Timestamp,
    pub status: CanaryStatus,
    pub commands: Vec<Command>,
    /// Routes as they will be once the commands ran.
    pub routes: Option<Routes>,
    touched: bool,
    /// The Blocked condition set by this decision stays.
    pub keep_blocked: bool,
    /// The object is about to disappear: write no status.
    pub skip_status: bool,
    /// The routing objects drifted and no `SetRoutes` of this decision has rewritten them yet.
    pub routes_to_repair: bool,
    /// The status write only records facts about the revisions (an adopted Canary's hashes):
    /// nothing transitioned, so `lastTransitionTime` keeps its value.
    pub keep_transition_time: bool,
}

pub fn run(policy: Result<&Policy, &SpecError>, snap: &Snapshot) -> Step<Decision> {
    let policy = match policy {
        Ok(p) => p,
        Err(e) => {
            let verdict = if e.unsupported {
                "cannot be run here"
            } else {
                "is invalid"
            };
            let message = format!(
                "Canary {}.{} {verdict}: {e}",
                snap.canary.name, snap.canary.namespace
            );
            return Ok(blocked(snap, e.reason(), message));
        }
    };
    let mut t = Tick {
        snap,
        now: snap.now,
        status: sanitized(&snap.status),
        commands: Vec::new(),
        routes: snap.routes.filter(plausible),
        touched: false,
        keep_blocked: false,
        skip_status: false,
        routes_to_repair: false,
        keep_transition_time: false,
        p: policy,
    };
    if t.p.provider == Provider::Kubernetes {
        // There is no router to read back: Flagger's NopRouter reports the switch once iterations began.
        t.routes = Some(if t.status.iterations > 0 {
            Routes {
                primary_weight: 0,
                canary_weight: 100,
                mirrored: false,
            }
        } else {
            Routes {
                primary_weight: 100,
                canary_weight: 0,
                mirrored: false,
            }
        });
    }
    super::lifecycle::reconcile(&mut t)?;
    Ok(t.finish())
}

/// A status written by someone else may hold anything; decisions start from values in range, and
/// the repaired status is written back.
fn sanitized(status: &CanaryStatus) -> CanaryStatus {
    let mut s = status.clone();
    s.canary_weight = s.canary_weight.clamp(0, 100);
    s.failed_checks = s.failed_checks.max(0);
    s.iterations = s.iterations.max(0);
    s
}

/// Weights read back from a mesh object someone else edited are trusted only if they make sense;
/// otherwise the object is treated as missing and rewritten from the status.
fn plausible(r: &Routes) -> bool {
    (0..=100).contains(&r.primary_weight)
        && (0..=100).contains(&r.canary_weight)
        && r.primary_weight + r.canary_weight == 100
}

/// A Canary that cannot be acted on: say why once (event + condition), then wait for a change.
pub fn blocked(snap: &Snapshot, reason: &str, message: String) -> Decision {
    let mut status = sanitized(&snap.status);
    let already = status
        .conditions
        .iter()
        .any(|c| c.type_ == BLOCKED && c.message == message);
    let mut commands = Vec::new();
    if !already {
        commands.push(Command::EmitEvent {
            severity: EventSeverity::Warning,
            message: message.clone(),
        });
        status.conditions.retain(|c| c.type_ != BLOCKED);
        status.conditions.push(CanaryCondition {
            type_: BLOCKED.into(),
            status: ConditionStatus::True,
            last_update_time: Some(snap.now),
            last_transition_time: Some(snap.now),
            reason: reason.into(),
            message,
        });
        status.last_transition_time = Some(snap.now);
        commands.push(Command::WriteStatus(status));
    }
    Decision {
        commands,
        wake_at: None,
    }
}

impl<'a> Tick<'a> {
    /// One analysis step is due per interval, counted from the last status write.
    pub fn due(&self) -> bool {
        self.snap.status.last_transition_time.is_none_or(|last| {
            last.checked_add(self.p.interval)
                .is_ok_and(|at| at <= self.now)
        })
    }

    pub fn phase(&self) -> Option<Phase> {
        self.status.phase
    }

    pub fn set_phase(&mut self, phase: Phase) {
        self.status.phase = Some(phase);
    }

    /// Record that a step happened even if no other field changed, restarting the interval clock.
    pub fn touch(&mut self) {
        self.touched = true;
    }

    pub fn push(&mut self, c: Command) {
        self.commands.push(c);
    }

    pub fn event(&mut self, message: String) {
        self.push(Command::EmitEvent {
            severity: EventSeverity::Normal,
            message,
        });
    }

    pub fn warn(&mut self, message: String) {
        self.push(Command::EmitEvent {
            severity: EventSeverity::Warning,
            message,
        });
    }

    pub fn alert(&mut self, severity: AlertSeverity, message: &str, with_metadata: bool) {
        let cfg = &self.snap.config;
        for a in alerts::route(
            self.p,
            cfg.global_notifier,
            &cfg.cluster_name,
            severity,
            message,
            with_metadata,
        ) {
            self.push(Command::SendAlert(a));
        }
    }

    pub fn set_routes(&mut self, primary_weight: i32, canary_weight: i32, mirrored: bool) {
        let routes = Routes {
            primary_weight,
            canary_weight,
            mirrored,
        };
        self.keep_session_cookies(canary_weight);
        // Only changes are written: the mesh object is left alone when it already routes so
        // (and carries the rest of its spec, see `routes_to_repair`).
        if self.p.provider != Provider::Kubernetes
            && (self.routes != Some(routes) || self.routes_to_repair)
        {
            self.push(Command::SetRoutes {
                primary_weight,
                canary_weight,
                mirrored,
            });
            self.routes = Some(routes);
            self.routes_to_repair = false;
        }
    }

    /// Drifted routing objects are rewritten with the weights they send now (the weights
    /// themselves are the decision's, see [`Tick::set_routes`]), once per decision.
    fn repair_routes(&mut self) {
        if !self.routes_to_repair {
            return;
        }
        let w = self.status.canary_weight;
        let routes = self.routes.unwrap_or(Routes {
            primary_weight: 100 - w,
            canary_weight: w,
            mirrored: false,
        });
        self.set_routes(routes.primary_weight, routes.canary_weight, routes.mirrored);
    }

    /// Flagger's session-affinity bookkeeping, done where it routes: while the canary takes
    /// traffic its clients get a cookie for this run; when it takes none, that run's cookie
    /// becomes the one to expire. The router reads the cookies from the status written with
    /// the routes.
    fn keep_session_cookies(&mut self, canary_weight: i32) {
        let Some(affinity) = &self.p.session_affinity else {
            return;
        };
        let (namespace, name) = (self.p.namespace.as_str(), self.p.name.as_str());
        let status = &mut self.status;
        if canary_weight == 0 {
            if let Some(cookie) = status.session_affinity_cookie.take() {
                status.previous_session_affinity_cookie = Some(cookie);
            }
            return;
        }
        if status.session_affinity_cookie.is_none() {
            let revision = status.last_applied_spec.as_deref().unwrap_or("");
            let value = hash::cookie_value(&[namespace, name, revision, "canary"]);
            status.session_affinity_cookie = Some(format!("{}={value}", affinity.cookie_name));
        }
        if !affinity.primary_cookie_name.is_empty()
            && status.primary_session_affinity_cookie.is_none()
        {
            let value = hash::cookie_value(&[namespace, name, "primary"]);
            status.primary_session_affinity_cookie =
                Some(format!("{}={value}", affinity.primary_cookie_name));
        }
    }

    pub fn target(&self) -> Option<&Workload> {
        self.snap.target.as_ref()
    }

    /// Flagger's `ScaleFromZero`: the target's own replicas, else the primary's (without an
    /// autoscaler), else the autoscaler's minimum when above one, else one.
    /// What the target is scaled to when a Canary is deleted with `revertOnDeletion`: the
    /// primary's current replicas (its autoscaler's choice, if any), else as for a scale-up.
    pub fn revert_replicas(&self) -> i32 {
        let primary = self.snap.primary.as_ref().map(|p| p.replicas);
        primary
            .filter(|r| *r > 0)
            .unwrap_or_else(|| self.scale_up_replicas())
    }

    pub fn scale_up_replicas(&self) -> i32 {
        let target = self.snap.target.as_ref();
        if let Some(r) = target.map(|t| t.replicas).filter(|r| *r > 0) {
            return r;
        }
        if !self.p.has_autoscaler
            && let Some(r) = self
                .snap
                .primary
                .as_ref()
                .map(|p| p.replicas)
                .filter(|r| *r > 0)
        {
            return r;
        }
        target
            .and_then(|t| t.autoscaler_min_replicas)
            .filter(|m| *m > 1)
            .unwrap_or(1)
    }

    pub fn hook_call(&self, hook: &Hook, phase: Phase) -> HookCall {
        HookCall {
            name: hook.name.clone(),
            hook_type: hook.hook_type.as_str().to_string(),
            url: hook.url.clone(),
            timeout: hook.timeout,
            retries: hook.retries,
            disable_tls: hook.disable_tls,
            payload: HookPayload {
                name: self.p.name.clone(),
                namespace: self.p.namespace.clone(),
                phase: phase.as_str().to_string(),
                checksum: hash::checksum(
                    self.status.tracked_configs.as_ref(),
                    self.status.last_applied_spec.as_deref(),
                ),
                metadata: hook.metadata.clone(),
            },
        }
    }

    /// The answers of `hooks` (one step's hooks of one type, in spec order) up to and including
    /// the first that settles the step, as Flagger calls them. Where an answer is missing, that
    /// hook and every later one are asked for at once, so a step needs one pass however many
    /// hooks it has; the caller stops calling where Flagger would (see [`Outcome::Need`]).
    ///
    /// [`Outcome::Need`]: crate::command::Outcome::Need
    pub fn ask_hooks<'h>(
        &self,
        hooks: &[&'h Hook],
        phase: Phase,
    ) -> Step<Vec<(&'h Hook, &'a HookAnswer)>> {
        let mut known = Vec::new();
        let snap: &'a Snapshot = self.snap;
        for (i, hook) in hooks.iter().enumerate() {
            // Looked up before any call is built: building one hashes the status for the checksum.
            let Some(answer) = snap.answers.hooks.get(&hook.key) else {
                return Err(Need(self.hook_requests(&hooks[i..], phase)));
            };
            let settled = hook.hook_type.ends_sequence(answer);
            known.push((*hook, answer));
            if settled {
                break;
            }
        }
        Ok(known)
    }

    fn hook_requests(&self, hooks: &[&Hook], phase: Phase) -> Vec<Request> {
        hooks
            .iter()
            .map(|h| Request::Hook(self.hook_call(h, phase)))
            .collect()
    }

    /// The answers of all `checks`, or one request for every missing one (queries have no side
    /// effects, so they are asked for together).
    pub fn ask_metrics(&self, checks: &[&MetricCheck]) -> Step<Vec<&'a MetricAnswer>> {
        let mut missing = Vec::new();
        let mut found = Vec::new();
        for c in checks {
            match self.snap.answers.metrics.get(&c.name) {
                Some(a) => found.push(a),
                None => missing.push(Request::Metric(MetricQuery {
                    name: c.name.clone(),
                    source: c.source.clone(),
                    interval: c.interval.clone(),
                    namespace: self.p.namespace.clone(),
                    target: self.p.target.clone(),
                    service: self
                        .snap
                        .spec
                        .service()
                        .name
                        .clone()
                        .unwrap_or_else(|| self.p.target.clone()),
                    provider: self.p.provider_name.clone(),
                    ingress: self
                        .snap
                        .spec
                        .ingress_ref
                        .as_ref()
                        .map(|r| r.name.clone())
                        .filter(|n| !n.is_empty()),
                })),
            }
        }
        if missing.is_empty() {
            Ok(found)
        } else {
            Err(Need(missing))
        }
    }

    /// Gauges for the resulting state, then the status write (always last), and the wake-up.
    fn finish(mut self) -> Decision {
        self.repair_routes();
        let phase = self.status.phase;
        let status_value = match phase {
            Some(Phase::Progressing) => 0,
            Some(Phase::Failed) => 2,
            _ => 1,
        };
        let routes = self.routes.unwrap_or(Routes {
            primary_weight: 100 - self.status.canary_weight,
            canary_weight: self.status.canary_weight,
            mirrored: false,
        });
        self.push(Command::RecordMetric(MetricRecord::Status {
            value: status_value,
        }));
        self.push(Command::RecordMetric(MetricRecord::Weight {
            primary: routes.primary_weight,
            canary: routes.canary_weight,
        }));
        if !self.keep_blocked {
            self.status.conditions.retain(|c| c.type_ != BLOCKED);
        }
        if let Some(phase) = phase {
            update_promoted_condition(&mut self.status.conditions, phase, self.now);
        }
        let changed = !self.skip_status && (self.touched || self.status != self.snap.status);
        let stamp = changed && !self.keep_transition_time;
        let last = if stamp {
            self.now
        } else {
            self.status.last_transition_time.unwrap_or(self.now)
        };
        let waits = matches!(
            phase,
            Some(
                Phase::Initializing
                    | Phase::Waiting
                    | Phase::Progressing
                    | Phase::WaitingPromotion
                    | Phase::Promoting
                    | Phase::Finalising
                    | Phase::Terminating
            )
        );
        let wake_at = waits
            .then(|| last.checked_add(self.p.interval).ok())
            .flatten()
            // Due but nothing could be done (e.g. waiting for the target during termination):
            // look again one interval from now rather than at once.
            .map(|at| {
                if at <= self.now {
                    self.now.checked_add(self.p.interval).unwrap_or(at)
                } else {
                    at
                }
            });
        let mut commands = self.commands;
        if changed {
            let mut status = self.status;
            if stamp {
                status.last_transition_time = Some(self.now);
            }
            commands.push(Command::WriteStatus(status));
        }
        Decision { commands, wake_at }
    }
}

impl Request {
    /// Where the answer to this request goes in [`crate::snapshot::Answers`].
    pub fn key(&self) -> String {
        match self {
            Request::Hook(h) => hook_key(&h.hook_type, &h.name),
            Request::Metric(m) => m.name.clone(),
        }
    }
}

fn hook_key(hook_type: &str, name: &str) -> String {
    format!("{hook_type}/{name}")
}

/// Flagger's single `Promoted` condition; its transition time moves only when its status does.
fn update_promoted_condition(conditions: &mut Vec<CanaryCondition>, phase: Phase, now: Timestamp) {
    let (status, message) = match phase {
        Phase::Initializing => (
            ConditionStatus::Unknown,
            "New Deployment detected, starting initialization.",
        ),
        Phase::Initialized => (
            ConditionStatus::True,
            "Deployment initialization completed.",
        ),
        Phase::Waiting | Phase::WaitingPromotion => {
            (ConditionStatus::Unknown, "Waiting for approval.")
        }
        Phase::Progressing => (
            ConditionStatus::Unknown,
            "New revision detected, progressing canary analysis.",
        ),
        Phase::Promoting => (
            ConditionStatus::Unknown,
            "Canary analysis completed, starting primary rolling update.",
        ),
        Phase::Finalising => (
            ConditionStatus::Unknown,
            "Canary analysis completed, routing all traffic to primary.",
        ),
        Phase::Succeeded => (
            ConditionStatus::True,
            "Canary analysis completed successfully, promotion finished.",
        ),
        Phase::Failed => (
            ConditionStatus::False,
            "Canary analysis failed, Deployment scaled to zero.",
        ),
        Phase::Terminating | Phase::Terminated => {
            (ConditionStatus::Unknown, "Canary is being terminated.")
        }
    };
    let reason = phase.as_str();
    let existing = conditions.iter().position(|c| c.type_ == PROMOTED);
    if let Some(i) = existing {
        let c = &conditions[i];
        if c.status == status && c.reason == reason {
            return;
        }
        let transition = if c.status == status {
            c.last_transition_time
        } else {
            Some(now)
        };
        conditions[i] = CanaryCondition {
            type_: PROMOTED.into(),
            status,
            last_update_time: Some(now),
            last_transition_time: transition,
            reason: reason.into(),
            message: message.into(),
        };
    } else {
        conditions.push(CanaryCondition {
            type_: PROMOTED.into(),
            status,
            last_update_time: Some(now),
            last_transition_time: Some(now),
            reason: reason.into(),
            message: message.into(),
        });
    }
}
