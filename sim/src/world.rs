//! The in-memory cluster: the target and primary Deployments, the mesh routes, the Services and the
//! Canary's status. It carries out [`Command`]s the way the operator's shell does and shows the
//! core what a watch would: [`Workload`] observations computed from rollout timing.

use std::collections::BTreeMap;

use flagger_core::api::CanaryStatus;
use flagger_core::command::{Alert, EventSeverity, MetricRecord};
use flagger_core::events;
use flagger_core::snapshot::{HookAnswer, Routes, Workload};
use flagger_core::{Command, Phase};
use jiff::{SignedDuration, Timestamp};
use serde::Serialize;

use crate::trace::{Readiness, Revision, WorkloadKind};

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Deployment {
    #[serde(skip)]
    pub template: serde_json::Value,
    pub template_hash: String,
    pub configs: BTreeMap<String, String>,
    pub replicas: i32,
    pub generation: i64,
    pub autoscaler_min_replicas: Option<i32>,
    /// When the current rollout (template change or scale-up) began.
    pub rollout_started: Timestamp,
    /// When it finishes; `None` if it never does.
    pub ready_at: Option<Timestamp>,
}

impl Deployment {
    pub fn is_ready(&self, now: Timestamp) -> bool {
        self.replicas == 0 || self.ready_at.is_some_and(|r| r <= now)
    }

    /// What the Deployment's status says at `now`: during a rollout the new pods exist but none is
    /// available yet, and `Available=False` dates from the rollout's start.
    pub fn observe(&self, now: Timestamp, kube_deadline: Option<SignedDuration>) -> Workload {
        let ready = self.is_ready(now);
        let deadline_exceeded = !ready
            && kube_deadline
                .is_some_and(|d| self.rollout_started.checked_add(d).is_ok_and(|at| at < now));
        Workload {
            template_hash: self.template_hash.clone(),
            // The simulated primary is an exact copy: its identity is the template's own hash.
            copy_identity: self.template_hash.clone(),
            configs: self.configs.clone(),
            missing_configs: Vec::new(),
            replicas: self.replicas,
            generation: self.generation,
            observed_generation: self.generation,
            updated_replicas: self.replicas,
            available_replicas: if ready { self.replicas } else { 0 },
            total_replicas: self.replicas,
            progress_deadline_exceeded: deadline_exceeded,
            unavailable_since: (!ready).then_some(self.rollout_started),
            autoscaler_min_replicas: self.autoscaler_min_replicas,
        }
    }

    fn start_rollout(&mut self, now: Timestamp, readiness: &Readiness, kind: WorkloadKind) {
        self.rollout_started = now;
        self.ready_at = readiness
            .delay_for(kind, now)
            .map(|d| now.checked_add(d).unwrap_or(Timestamp::MAX));
    }
}

/// An event as the cluster would show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventRecord {
    pub at: Timestamp,
    pub warning: bool,
    pub message: String,
}

/// A command the world refused (an injected API conflict).
#[derive(Debug, Clone, PartialEq)]
pub struct Conflict;

#[derive(Debug, Clone)]
pub struct World {
    pub target: Option<Deployment>,
    pub primary: Option<Deployment>,
    pub routes: Option<Routes>,
    /// The primary and canary Services exist.
    pub services: bool,
    /// The apex Service selects the primary's pods (before that, the target's).
    pub apex_on_primary: bool,
    /// When the primary's first rollout finished: from then on its pods serve, through any
    /// later rolling update. `None` while there is no primary or it never became ready.
    pub primary_serving_from: Option<Timestamp>,
    pub primary_autoscaler: bool,
    pub apex_reverted: bool,
    pub finalizer: bool,
    /// The Canary carries a deletion timestamp.
    pub deleting: bool,
    /// The Canary object is gone (deleted, and its finalizer removed).
    pub removed: bool,
    pub status: CanaryStatus,
    /// Bumped on every status write; a write from a decision made on an older version conflicts.
    pub status_version: u64,
    /// The status before the last write: what a lagging cache would still show.
    pub previous_status: Option<(CanaryStatus, u64)>,
    pub events: Vec<EventRecord>,
    pub alerts: Vec<(Timestamp, Alert)>,
    pub gauges: BTreeMap<String, f64>,
    pub successes: u32,
    pub failures: u32,
    readiness: Readiness,
}

impl World {
    pub fn new(readiness: Readiness) -> World {
        World {
            target: None,
            primary: None,
            routes: None,
            services: false,
            apex_on_primary: false,
            primary_serving_from: None,
            primary_autoscaler: false,
            apex_reverted: false,
            finalizer: false,
            deleting: false,
            removed: false,
            status: CanaryStatus::default(),
            status_version: 0,
            previous_status: None,
            events: Vec::new(),
            alerts: Vec::new(),
            gauges: BTreeMap::new(),
            successes: 0,
            failures: 0,
            readiness,
        }
    }

    pub fn readiness(&self) -> &Readiness {
        &self.readiness
    }

    /// The cluster a trace starts from (nothing, unless the trace began mid-life).
    pub fn init(&mut self, initial: &crate::trace::Initial, now: Timestamp) {
        self.status = initial.status.clone();
        self.routes = initial.routes;
        self.services = initial.services_present;
        self.apex_on_primary = initial.apex_selects_primary;
        self.finalizer = initial.finalizer;
        self.primary = initial.primary.as_ref().map(|p| Deployment {
            template: serde_json::Value::Null,
            template_hash: p.template_hash.clone(),
            configs: p.configs.clone(),
            replicas: p.replicas,
            generation: 1,
            autoscaler_min_replicas: None,
            rollout_started: now,
            ready_at: Some(now),
        });
        self.primary_serving_from = self.primary.as_ref().map(|_| now);
    }

    /// `kubectl delete canary`: without a finalizer the object is gone at once.
    pub fn delete(&mut self) {
        self.deleting = true;
        self.removed = !self.finalizer;
    }

    /// The user (or GitOps) changes the target Deployment.
    pub fn apply_revision(&mut self, r: &Revision, now: Timestamp) {
        match &mut self.target {
            None => {
                let mut d = Deployment {
                    template: r.template.clone(),
                    template_hash: r.template_hash.clone(),
                    configs: r.configs.clone(),
                    replicas: r.replicas.unwrap_or(1),
                    generation: 1,
                    autoscaler_min_replicas: r.autoscaler_min_replicas,
                    rollout_started: now,
                    ready_at: None,
                };
                d.start_rollout(now, &self.readiness, WorkloadKind::Canary);
                self.target = Some(d);
            }
            Some(d) => {
                d.autoscaler_min_replicas = r.autoscaler_min_replicas;
                d.configs = r.configs.clone();
                if d.template_hash != r.template_hash {
                    d.template = r.template.clone();
                    d.template_hash = r.template_hash.clone();
                    d.generation += 1;
                    if d.replicas > 0 {
                        d.start_rollout(now, &self.readiness, WorkloadKind::Canary);
                    }
                }
            }
        }
    }

    /// Carries out one command. A refused command changes nothing.
    pub fn apply(
        &mut self,
        command: &Command,
        now: Timestamp,
        status_base: u64,
        post_rollout: &mut dyn FnMut(&str) -> HookAnswer,
    ) -> Result<(), Conflict> {
        match command {
            Command::AddFinalizer => self.finalizer = true,
            Command::RemoveFinalizer => {
                self.finalizer = false;
                self.removed = self.deleting;
            }
            Command::CreatePrimary => {
                if self.primary.is_none()
                    && let Some(t) = &self.target
                {
                    let mut p = t.clone();
                    p.replicas = t.replicas.max(1);
                    p.generation = 1;
                    p.start_rollout(now, &self.readiness, WorkloadKind::Primary);
                    self.primary_serving_from = p.ready_at;
                    self.primary = Some(p);
                }
            }
            Command::ApplyPrimaryAutoscaler { .. } => self.primary_autoscaler = true,
            Command::ApplyServices => self.services = true,
            Command::ApplyApexService => self.apex_on_primary = true,
            Command::PromoteTemplate => {
                if let (Some(t), Some(p)) = (&self.target, &mut self.primary) {
                    let changed = p.template_hash != t.template_hash || p.configs != t.configs;
                    let replicas = if t.replicas > 0 {
                        t.replicas
                    } else {
                        p.replicas
                    };
                    if changed || replicas != p.replicas {
                        p.template = t.template.clone();
                        p.template_hash = t.template_hash.clone();
                        p.configs = t.configs.clone();
                        p.replicas = replicas;
                        p.generation += 1;
                        p.start_rollout(now, &self.readiness, WorkloadKind::Primary);
                    }
                }
            }
            Command::ScaleTarget { replicas } => {
                if let Some(t) = &mut self.target
                    && t.replicas != *replicas
                {
                    let up = *replicas > t.replicas;
                    t.replicas = *replicas;
                    t.generation += 1;
                    if up {
                        t.start_rollout(now, &self.readiness, WorkloadKind::Canary);
                    }
                }
            }
            Command::SetRoutes {
                primary_weight,
                canary_weight,
                mirrored,
            } => {
                self.routes = Some(Routes {
                    primary_weight: *primary_weight,
                    canary_weight: *canary_weight,
                    mirrored: *mirrored,
                });
            }
            Command::RevertApexService => {
                self.apex_reverted = true;
                self.apex_on_primary = false;
            }
            Command::EmitEvent { severity, message } => self.events.push(EventRecord {
                at: now,
                warning: *severity == EventSeverity::Warning,
                message: message.clone(),
            }),
            Command::SendAlert(a) => self.alerts.push((now, a.clone())),
            Command::RecordMetric(m) => self.record(m),
            Command::RunPostRolloutHooks { hooks, .. } => {
                for h in hooks {
                    let answer = post_rollout(&format!("{}/{}", h.hook_type, h.name));
                    let (severity, message) = events::post_rollout(h, &answer);
                    self.events.push(EventRecord {
                        at: now,
                        warning: severity == EventSeverity::Warning,
                        message,
                    });
                }
            }
            Command::WriteStatus(s) => {
                if status_base != self.status_version {
                    return Err(Conflict);
                }
                let previous = std::mem::replace(&mut self.status, s.clone());
                self.previous_status = Some((previous, self.status_version));
                self.status_version += 1;
            }
        }
        Ok(())
    }

    fn record(&mut self, m: &MetricRecord) {
        match m {
            MetricRecord::Status { value } => self.set_gauge("status", f64::from(*value)),
            MetricRecord::Weight { primary, canary } => {
                self.set_gauge("weight.primary", f64::from(*primary));
                self.set_gauge("weight.canary", f64::from(*canary));
            }
            MetricRecord::Analysis { metric, value } => {
                self.set_gauge(&format!("analysis.{metric}"), *value)
            }
            MetricRecord::Success { .. } => self.successes += 1,
            MetricRecord::Failure { .. } => self.failures += 1,
        }
    }

    // Gauges are set every step; only a gauge seen for the first time allocates its name.
    fn set_gauge(&mut self, name: &str, value: f64) {
        match self.gauges.get_mut(name) {
            Some(v) => *v = value,
            None => {
                self.gauges.insert(name.to_owned(), value);
            }
        }
    }

    pub fn phase(&self) -> Option<Phase> {
        self.status.phase
    }

    /// The next moment a workload finishes rolling out after `now`: a watch event for the operator.
    pub fn next_ready_change(&self, now: Timestamp) -> Option<Timestamp> {
        [&self.target, &self.primary]
            .into_iter()
            .flatten()
            .filter(|d| d.replicas > 0)
            .filter_map(|d| d.ready_at)
            .filter(|at| *at > now)
            .min()
    }
}
