//! Greedy shrinking of a failing scenario: try simpler variants one at a time (fewer events,
//! values closer to healthy, earlier times) and keep the first that still breaks the same
//! expectation, until none does or the budget of replays is spent. Each try is one replay, so a
//! shrink costs at most `BUDGET` replays.

use super::Plan;
use super::scenario::{Behaviour, CanaryReady, Gate, HookBehaviour, Scenario, round};

/// Replays spent on shrinking one counterexample at most.
pub const BUDGET: usize = 400;

/// The smallest variant of `s` found that still breaks expectation `index`, and how many
/// simplifications were accepted.
pub fn shrink(plan: &Plan, s: &Scenario, index: usize, budget: usize) -> (Scenario, usize) {
    let mut current = s.clone();
    let mut spent = 0;
    let mut accepted = 0;
    'outer: loop {
        for c in candidates(&current) {
            if c == current {
                continue;
            }
            if spent >= budget {
                break 'outer;
            }
            spent += 1;
            if plan.breaks(&c, index).is_some() {
                current = c;
                accepted += 1;
                continue 'outer;
            }
        }
        break;
    }
    (current, accepted)
}

/// Halfway from `from` to `to`, rounded to a tenth (readable values), or `to` itself when close.
fn toward(from: f64, to: f64) -> f64 {
    let mid = (from * 10.0 + (to - from) * 5.0).round() / 10.0;
    if (mid - to).abs() < 0.1 { to } else { mid }
}

/// Simpler variants of `s`, simplest first: whole events removed before parameters are reduced.
fn candidates(s: &Scenario) -> Vec<Scenario> {
    let mut out = Vec::new();
    let with = |f: &dyn Fn(&mut Scenario)| {
        let mut c = s.clone();
        f(&mut c);
        c
    };
    // Fewer events.
    if s.rates.any() {
        out.push(with(&|c| c.rates = Default::default()));
    }
    for i in 0..s.restarts.len() {
        out.push(with(&|c| {
            c.restarts.remove(i);
        }));
    }
    if s.crash.is_some() {
        out.push(with(&|c| c.crash = None));
    }
    if s.another_revision.is_some() {
        out.push(with(&|c| c.another_revision = None));
    }
    if s.delete_at.is_some() {
        out.push(with(&|c| c.delete_at = None));
    }
    for name in s.hooks.keys() {
        out.push(with(&|c| {
            c.hooks.remove(name);
        }));
    }
    for name in s.metrics.keys() {
        out.push(with(&|c| {
            c.metrics.remove(name);
        }));
    }
    for name in s.gates.keys() {
        out.push(with(&|c| {
            c.gates.remove(name);
        }));
    }
    if s.canary_ready != CanaryReady::Normal {
        out.push(with(&|c| c.canary_ready = CanaryReady::Normal));
    }
    // Simpler behaviours: a flapping or creeping metric that fails as plainly.
    for (name, b) in &s.metrics {
        match *b {
            Behaviour::Flaps { value, after, .. } => out.push(with(&|c| {
                c.metrics
                    .insert(name.clone(), Behaviour::Fails { value, after });
            })),
            Behaviour::Creeps { to, .. } => out.push(with(&|c| {
                c.metrics.insert(
                    name.clone(),
                    Behaviour::Fails {
                        value: to,
                        after: 0,
                    },
                );
            })),
            _ => {}
        }
    }
    for (name, g) in &s.gates {
        if let Gate::Flaps { .. } = g {
            out.push(with(&|c| {
                c.gates.insert(name.clone(), Gate::Closed);
            }));
        }
    }
    // Smaller deviations and earlier times.
    for (name, b) in &s.metrics {
        let healthy = s.healthy.get(name).copied().unwrap_or(0.0);
        let set = |b: Behaviour| {
            with(&|c| {
                c.metrics.insert(name.clone(), b.clone());
            })
        };
        match *b {
            Behaviour::Fails { value, after } => {
                out.push(set(Behaviour::Fails {
                    value: toward(value, healthy),
                    after,
                }));
                out.push(set(Behaviour::Fails {
                    value: round_toward(value, healthy),
                    after,
                }));
                out.push(set(Behaviour::Fails {
                    value: round(value + (healthy - value) / 10.0),
                    after,
                }));
                out.push(set(Behaviour::Fails { value, after: 0 }));
                out.push(set(Behaviour::Fails {
                    value,
                    after: after / 2,
                }));
            }
            Behaviour::Flaps {
                value,
                period,
                after,
            } => {
                out.push(set(Behaviour::Flaps {
                    value: toward(value, healthy),
                    period,
                    after,
                }));
                out.push(set(Behaviour::Flaps {
                    value,
                    period,
                    after: 0,
                }));
                out.push(set(Behaviour::Flaps {
                    value,
                    period: period / 2,
                    after,
                }));
            }
            Behaviour::Creeps { from, to, over } => {
                out.push(set(Behaviour::Creeps {
                    from,
                    to: toward(to, from),
                    over,
                }));
                out.push(set(Behaviour::Creeps {
                    from,
                    to,
                    over: over / 2,
                }));
            }
            Behaviour::Missing { after } => {
                out.push(set(Behaviour::Missing { after: 0 }));
                out.push(set(Behaviour::Missing { after: after / 2 }));
            }
            Behaviour::Errors { after } => {
                out.push(set(Behaviour::Errors { after: 0 }));
                out.push(set(Behaviour::Errors { after: after / 2 }));
            }
            Behaviour::NaN { after } => {
                out.push(set(Behaviour::NaN { after: 0 }));
                out.push(set(Behaviour::NaN { after: after / 2 }));
            }
        }
    }
    for (name, h) in &s.hooks {
        let set = |b: HookBehaviour| {
            with(&|c| {
                c.hooks.insert(name.clone(), b.clone());
            })
        };
        match *h {
            HookBehaviour::Fails { after } => {
                out.push(set(HookBehaviour::Fails { after: 0 }));
                out.push(set(HookBehaviour::Fails { after: after / 2 }));
            }
            HookBehaviour::TimesOut { after } => {
                out.push(set(HookBehaviour::TimesOut { after: 0 }));
                out.push(set(HookBehaviour::TimesOut { after: after / 2 }));
            }
            HookBehaviour::AsksRollback { after } => {
                out.push(set(HookBehaviour::AsksRollback { after: 0 }));
                out.push(set(HookBehaviour::AsksRollback { after: after / 2 }));
            }
            HookBehaviour::Flaps { period } => {
                out.push(set(HookBehaviour::Flaps { period: period / 2 }));
            }
        }
    }
    if let Some(t) = s.delete_at {
        out.push(with(&|c| c.delete_at = Some((t / 2).max(1))));
    }
    for (name, g) in &s.gates {
        match *g {
            Gate::OpensAfter(t) => out.push(with(&|c| {
                c.gates.insert(name.clone(), Gate::OpensAfter(t / 2));
            })),
            Gate::Flaps { period } => out.push(with(&|c| {
                c.gates
                    .insert(name.clone(), Gate::Flaps { period: period / 2 });
            })),
            Gate::Closed => {}
        }
    }
    if let CanaryReady::Slow(d) = s.canary_ready {
        out.push(with(&|c| c.canary_ready = CanaryReady::Slow(d / 2)));
    }
    if let Some(t) = s.another_revision {
        out.push(with(&|c| c.another_revision = Some((t / 2).max(1))));
    }
    for i in 0..s.restarts.len() {
        out.push(with(&|c| c.restarts[i] /= 2));
    }
    out.push(with(&|c| c.readiness_delay = 0));
    out.push(with(&|c| c.readiness_delay /= 2));
    out.push(with(&|c| c.revision_at = 1));
    out.push(with(&|c| c.revision_at = (c.revision_at / 2).max(1)));
    // A zero period or duration would not be a scenario any more.
    out.retain(valid);
    out
}

/// The value rounded to a whole number on the healthy side (94.37 → 95 when healthy is above),
/// kept only if that does not reach the healthy value.
fn round_toward(value: f64, healthy: f64) -> f64 {
    let r = if healthy > value {
        value.ceil()
    } else {
        value.floor()
    };
    if (healthy > value && r >= healthy) || (healthy < value && r <= healthy) {
        value
    } else {
        round(r)
    }
}

fn valid(s: &Scenario) -> bool {
    s.metrics.values().all(|b| match b {
        Behaviour::Flaps { period, .. } => *period > 0,
        Behaviour::Creeps { over, .. } => *over > 0,
        _ => true,
    }) && s.gates.values().all(|g| match g {
        Gate::Flaps { period } => *period > 0,
        _ => true,
    }) && s.hooks.values().all(|h| match h {
        HookBehaviour::Flaps { period } => *period > 0,
        _ => true,
    }) && s.revision_at >= 1
}
