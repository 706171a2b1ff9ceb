//! A minimal cluster for driving the decision function tick by tick in tests: it keeps just what
//! the commands change (status, routes, replicas, primary template) and answers requests from
//! fixed tables.

#![allow(dead_code)]

use std::collections::BTreeMap;

use flagger_core::api::{CanarySpec, CanaryStatus, Phase};
use flagger_core::command::{Command, Decision, Outcome};
use flagger_core::{HookAnswer, MetricAnswer, OperatorConfig, Routes, Snapshot, Workload, decide};
use jiff::{SignedDuration, Timestamp};
use serde_json::json;

pub const T0: &str = "2026-01-01T00:00:00Z";

pub fn t0() -> Timestamp {
    T0.parse().unwrap()
}

pub fn spec(analysis: serde_json::Value) -> CanarySpec {
    serde_json::from_value(json!({
        "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
        "service": {"port": 9898},
        "analysis": analysis,
    }))
    .unwrap()
}

pub fn ready(hash: &str, replicas: i32) -> Workload {
    Workload {
        template_hash: hash.into(),
        replicas,
        generation: 1,
        observed_generation: 1,
        updated_replicas: replicas,
        available_replicas: replicas,
        total_replicas: replicas,
        ..Workload::default()
    }
}

pub fn unready(hash: &str, replicas: i32) -> Workload {
    Workload {
        available_replicas: 0,
        ..ready(hash, replicas)
    }
}

/// The world as the commands leave it.
pub struct Cluster {
    pub now: Timestamp,
    pub spec: CanarySpec,
    pub status: CanaryStatus,
    pub target: Option<Workload>,
    pub primary: Option<Workload>,
    pub routes: Option<Routes>,
    /// What the routing object's provider says is not ready yet (default: nothing).
    pub routes_not_ready: Option<String>,
    pub services: bool,
    /// The apex Service selects the primary's pods.
    pub apex_on_primary: bool,
    /// What the shell observes as drifted; the matching command repairs it.
    pub drift: flagger_core::snapshot::Drift,
    pub has_finalizer: bool,
    pub deleting: bool,
    pub config: OperatorConfig,
    /// Answers given to hook requests, by hook name (default: pass).
    pub hooks: BTreeMap<String, HookAnswer>,
    /// Answers given to metric requests, by metric name (default: 100).
    pub metrics: BTreeMap<String, MetricAnswer>,
    /// When set, a template change or scale-up leaves the workload unready until `make_*_ready`.
    pub manual_readiness: bool,
    pub log: Vec<Command>,
}

impl Cluster {
    pub fn new(spec: CanarySpec) -> Cluster {
        Cluster {
            now: t0(),
            spec,
            status: CanaryStatus::default(),
            target: Some(ready("v1", 2)),
            primary: None,
            routes: None,
            routes_not_ready: None,
            services: false,
            apex_on_primary: false,
            drift: Default::default(),
            has_finalizer: false,
            deleting: false,
            config: OperatorConfig::default(),
            hooks: BTreeMap::new(),
            metrics: BTreeMap::new(),
            manual_readiness: false,
            log: Vec::new(),
        }
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            now: self.now,
            canary: flagger_core::snapshot::CanaryMeta {
                name: "podinfo".into(),
                namespace: "test".into(),
                deleting: self.deleting,
                has_finalizer: self.has_finalizer,
            },
            spec: self.spec.clone(),
            status: self.status.clone(),
            config: self.config.clone(),
            target: self.target.clone(),
            primary: self.primary.clone(),
            routes: self.routes,
            routes_not_ready: self.routes_not_ready.clone(),
            services_present: self.services,
            apex_selects_primary: self.apex_on_primary,
            drift: self.drift,
            answers: Default::default(),
        }
    }

    /// Run the Need loop to a decision, as the operator does.
    pub fn decide(&self) -> Decision {
        self.decide_counting().0
    }

    /// [`Cluster::decide`], also returning the number of passes and the hooks called, in order.
    pub fn decide_counting(&self) -> (Decision, usize, Vec<String>) {
        let mut snap = self.snapshot();
        let mut called = Vec::new();
        for pass in 1..=64 {
            match decide(&snap) {
                Outcome::Decided(d) => return (d, pass, called),
                Outcome::Need(requests) => {
                    // Hooks are called in order up to the one that settles the step.
                    let mut settled = false;
                    for r in requests {
                        match &r {
                            flagger_core::Request::Hook(_) if settled => {}
                            flagger_core::Request::Hook(h) => {
                                let a = self
                                    .hooks
                                    .get(&h.name)
                                    .cloned()
                                    .unwrap_or(HookAnswer::Passed);
                                settled = h.ends_sequence(&a);
                                called.push(r.key());
                                snap.answers.hooks.insert(r.key(), a);
                            }
                            flagger_core::Request::Metric(m) => {
                                let a = self
                                    .metrics
                                    .get(&m.name)
                                    .cloned()
                                    .unwrap_or(MetricAnswer::Value(100.0));
                                snap.answers.metrics.insert(r.key(), a);
                            }
                        }
                    }
                }
            }
        }
        panic!("decision did not converge in 64 passes");
    }

    /// Decide and apply, returning the commands without the gauges.
    pub fn tick(&mut self) -> Vec<Command> {
        let d = self.decide();
        for c in &d.commands {
            self.apply(c);
        }
        self.log.extend(d.commands.iter().cloned());
        without_gauges(d.commands)
    }

    /// Advance the clock by one analysis interval of `secs` and tick.
    pub fn tick_after(&mut self, secs: i64) -> Vec<Command> {
        self.now += SignedDuration::from_secs(secs);
        self.tick()
    }

    pub fn apply(&mut self, c: &Command) {
        match c {
            Command::CreatePrimary => {
                let mut p = self.target.clone().unwrap();
                if self.manual_readiness {
                    p.available_replicas = 0;
                }
                self.primary = Some(p);
            }
            Command::ApplyServices => {
                self.services = true;
                self.drift.services = false;
            }
            Command::ApplyApexService => {
                self.apex_on_primary = true;
                self.drift.apex = false;
            }
            Command::PromoteTemplate => {
                let hash = self.target.as_ref().unwrap().template_hash.clone();
                let p = self.primary.as_mut().unwrap();
                p.template_hash = hash;
                if self.manual_readiness {
                    p.available_replicas = 0;
                }
            }
            Command::ScaleTarget { replicas } => {
                let t = self.target.as_mut().unwrap();
                let up = *replicas > t.replicas;
                t.replicas = *replicas;
                t.updated_replicas = *replicas;
                t.total_replicas = *replicas;
                t.available_replicas = if up && self.manual_readiness {
                    0
                } else {
                    *replicas
                };
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
                self.drift.routes = false;
            }
            Command::AddFinalizer => self.has_finalizer = true,
            Command::RemoveFinalizer => self.has_finalizer = false,
            Command::WriteStatus(s) => self.status = s.clone(),
            _ => {}
        }
    }

    pub fn make_primary_ready(&mut self) {
        let p = self.primary.as_mut().unwrap();
        p.available_replicas = p.updated_replicas;
    }

    pub fn make_canary_ready(&mut self) {
        let t = self.target.as_mut().unwrap();
        t.available_replicas = t.updated_replicas;
    }

    /// Initialize (the primary's creation is itself a watch event, so two reconciles) and start
    /// a run of revision `v2`.
    pub fn start_run(&mut self) {
        self.tick();
        self.tick();
        self.new_revision("v2");
        self.tick_after(1);
    }

    /// A new pod template on the target, as `kubectl set image` would make.
    pub fn new_revision(&mut self, hash: &str) {
        let t = self.target.as_mut().unwrap();
        t.template_hash = hash.into();
        t.generation += 1;
        t.observed_generation += 1;
    }

    pub fn phase(&self) -> Option<Phase> {
        self.status.phase
    }

    pub fn events(commands: &[Command]) -> Vec<String> {
        commands
            .iter()
            .filter_map(|c| match c {
                Command::EmitEvent { message, .. } => Some(message.clone()),
                _ => None,
            })
            .collect()
    }
}

pub fn without_gauges(commands: Vec<Command>) -> Vec<Command> {
    commands
        .into_iter()
        .filter(|c| {
            !matches!(
                c,
                Command::RecordMetric(
                    flagger_core::command::MetricRecord::Status { .. }
                        | flagger_core::command::MetricRecord::Weight { .. }
                )
            )
        })
        .collect()
}
