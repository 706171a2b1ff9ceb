//! Random but valid traces from a seed, for property tests and benchmarks. A seed reproduces its
//! trace exactly (same PRNG as fault injection), so a failing case is replayed from its seed alone.

use serde_json::{Value, json};

use crate::prng::Rng;
use crate::trace::{FaultRates, Trace, TraceFile};

/// What kind of world to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inputs {
    /// Anything: failing and flapping metrics, closed gates, slow or stuck rollouts, new revisions.
    Chaotic,
    /// Metrics pass, gates open, rollouts finish within the deadline, one new revision.
    Healthy,
    /// Like healthy, but every metric fails from the start.
    Failing,
}

/// The shape of a generated spec, so tests can compute what it implies.
#[derive(Debug, Clone, PartialEq)]
pub struct Shape {
    pub interval_secs: i64,
    pub threshold: i32,
    pub readiness_delay_secs: i64,
    /// Offset of the revision that starts the run under test.
    pub revision_secs: i64,
    pub strategy: StrategyShape,
}

#[derive(Debug, Clone, PartialEq)]
pub enum StrategyShape {
    Linear {
        step: i32,
        max: i32,
        promotion_step: i32,
        mirror: bool,
    },
    Ladder {
        weights: Vec<i32>,
        promotion_step: i32,
    },
    AbTesting {
        iterations: i32,
    },
    BlueGreen {
        iterations: i32,
        kubernetes: bool,
    },
}

impl StrategyShape {
    /// Analysis steps from the first one (which only starts traffic) to `Finalising -> Succeeded`,
    /// per flagger.md section 3.7 and the core: traffic steps, the promotion step, the traffic shift
    /// back to the primary, and the final step.
    pub fn steps_to_succeed(&self) -> i64 {
        let ceil = |a: i32, b: i32| i64::from((a + b - 1) / b);
        let shift = |max: i32, step: i32| if step == 0 { 1 } else { ceil(max, step) };
        match self {
            StrategyShape::Linear {
                step,
                max,
                promotion_step,
                mirror,
            } => ceil(*max, *step) + i64::from(*mirror) + 1 + shift(*max, *promotion_step) + 1,
            StrategyShape::Ladder {
                weights,
                promotion_step,
            } => {
                let max = *weights.last().unwrap_or(&100);
                weights.len() as i64 + 1 + shift(max, *promotion_step) + 1
            }
            StrategyShape::AbTesting { iterations } => i64::from(*iterations) + 1 + 1 + 1,
            StrategyShape::BlueGreen { iterations, .. } => i64::from(*iterations) + 1 + 1 + 1 + 1,
        }
    }
}

fn template(version: i64) -> Value {
    json!({
        "metadata": {"labels": {"app": "podinfo"}},
        "spec": {"containers": [{
            "name": "podinfod",
            "image": format!("ghcr.io/stefanprodan/podinfo:6.0.{version}"),
            "ports": [{"containerPort": 9898, "name": "http"}]
        }]}
    })
}

fn pick<'a, T>(rng: &mut Rng, items: &'a [T]) -> &'a T {
    &items[rng.below(items.len() as u64) as usize]
}

/// A trace and the shape of its spec.
pub fn trace(seed: u64, inputs: Inputs, rates: FaultRates) -> (Trace, Shape) {
    let mut rng = Rng::new(seed);
    let interval = *pick(&mut rng, &[10i64, 15, 30, 60, 120]);
    let threshold = rng.range(1, 5) as i32;
    let kubernetes = inputs == Inputs::Chaotic && rng.chance(0.1);
    let strategy = match rng.below(if kubernetes { 1 } else { 4 }) {
        _ if kubernetes => StrategyShape::BlueGreen {
            iterations: rng.range(1, 5) as i32,
            kubernetes: true,
        },
        0 => {
            let step = rng.range(1, 50) as i32;
            StrategyShape::Linear {
                step,
                max: rng.range(i64::from(step), 100) as i32,
                promotion_step: if rng.chance(0.5) {
                    0
                } else {
                    rng.range(5, 60) as i32
                },
                mirror: rng.chance(0.3),
            }
        }
        1 => {
            let mut weights = Vec::new();
            let mut w = 0;
            while weights.len() < 5 {
                w += rng.range(1, 30) as i32;
                if w > 100 {
                    break;
                }
                weights.push(w);
            }
            StrategyShape::Ladder {
                weights,
                promotion_step: if rng.chance(0.5) {
                    0
                } else {
                    rng.range(5, 60) as i32
                },
            }
        }
        2 => StrategyShape::AbTesting {
            iterations: rng.range(1, 6) as i32,
        },
        _ => StrategyShape::BlueGreen {
            iterations: rng.range(1, 5) as i32,
            kubernetes: false,
        },
    };
    let mut analysis = json!({
        "interval": format!("{interval}s"),
        "threshold": threshold,
        "metrics": [
            {"name": "request-success-rate", "thresholdRange": {"min": 99}, "interval": "1m"},
            {"name": "request-duration", "thresholdRange": {"max": 500}, "interval": "30s"}
        ]
    });
    match &strategy {
        StrategyShape::Linear {
            step,
            max,
            promotion_step,
            mirror,
        } => {
            analysis["stepWeight"] = json!(step);
            analysis["maxWeight"] = json!(max);
            analysis["stepWeightPromotion"] = json!(promotion_step);
            analysis["mirror"] = json!(mirror);
        }
        StrategyShape::Ladder {
            weights,
            promotion_step,
        } => {
            analysis["stepWeights"] = json!(weights);
            analysis["stepWeightPromotion"] = json!(promotion_step);
        }
        StrategyShape::AbTesting { iterations } => {
            analysis["iterations"] = json!(iterations);
            analysis["match"] = json!([{"headers": {"x-canary": {"exact": "insider"}}}]);
        }
        StrategyShape::BlueGreen { iterations, .. } => {
            analysis["iterations"] = json!(iterations);
        }
    }

    let deadline = 600i64;
    let delay_cap = if inputs == Inputs::Chaotic {
        120
    } else {
        interval.min(60)
    };
    let readiness_delay = rng.range(0, delay_cap);
    // Chaotic runs may change the target while the primary still initializes (the operator's
    // periodic resync must then roll it out); the others start from a settled primary.
    let revision_secs = if inputs == Inputs::Chaotic {
        rng.range(1, readiness_delay + 300)
    } else {
        readiness_delay + rng.range(1, 300)
    };
    let mut revisions = vec![
        json!({"at": "0s", "template": template(0), "replicas": rng.range(1, 4)}),
        json!({"at": format!("{revision_secs}s"), "template": template(1),
               "configs": {"configmap/podinfo-config": "c1"}}),
    ];
    let mut hooks = Vec::new();
    let mut webhooks = serde_json::Map::new();
    let mut metrics = json!({
        "request-success-rate": [{"at": "0s", "value": 99.9}],
        "request-duration": [{"at": "0s", "value": 120}]
    });
    let mut rules = Vec::new();
    let horizon = 4 * 3600i64;
    match inputs {
        Inputs::Healthy => {}
        Inputs::Failing => {
            metrics["request-success-rate"] = json!([{"at": "0s", "value": 50.0}]);
        }
        Inputs::Chaotic => {
            let mut at = revision_secs;
            for v in 2..rng.range(2, 5) {
                at += rng.range(30, 1800);
                let mut r = json!({"at": format!("{at}s"), "template": template(v)});
                if rng.chance(0.3) {
                    // A config-only change: same template, new checksum.
                    r = json!({"at": format!("{at}s"), "template": template(v - 1),
                               "configs": {"configmap/podinfo-config": format!("c{v}")}});
                }
                revisions.push(r);
            }
            for name in ["request-success-rate", "request-duration"] {
                let mut series = Vec::new();
                let mut t = 0;
                while t < horizon {
                    let sample = match rng.below(10) {
                        0 => json!({"at": format!("{t}s"), "noValues": "no series"}),
                        1 => json!({"at": format!("{t}s"), "error": "connection refused"}),
                        2 => json!({"at": format!("{t}s"), "nan": true}),
                        3..=5 => {
                            json!({"at": format!("{t}s"), "value": if name == "request-duration" { 900.0 } else { 80.0 }})
                        }
                        _ => {
                            json!({"at": format!("{t}s"), "value": if name == "request-duration" { 100.0 } else { 99.95 }})
                        }
                    };
                    series.push(sample);
                    t += rng.range(interval, 20 * interval);
                }
                metrics[name] = Value::Array(series);
            }
            let kinds = [
                "confirm-rollout",
                "pre-rollout",
                "rollout",
                "confirm-traffic-increase",
                "confirm-promotion",
                "post-rollout",
                "rollback",
            ];
            for (i, kind) in kinds.iter().enumerate() {
                if !rng.chance(0.3) {
                    continue;
                }
                let name = format!("hook-{i}");
                hooks.push(
                    json!({"name": name, "type": kind, "url": format!("http://hooks.test/{kind}")}),
                );
                let mut series = Vec::new();
                let mut t = 0;
                // Rollback hooks signal rarely: a passing rollback hook ends the run at once.
                let pass = if *kind == "rollback" { 0.05 } else { 0.6 };
                while t < horizon {
                    let ok = rng.chance(pass);
                    series.push(json!({"at": format!("{t}s"), "pass": ok, "message": if ok { "" } else { "closed" }}));
                    t += rng.range(interval, 30 * interval);
                }
                webhooks.insert(name, Value::Array(series));
            }
            if rng.chance(0.3) {
                let from = rng.range(0, 3600);
                rules.push(json!({"workload": pick(&mut rng, &["canary", "primary"]), "from": format!("{from}s"),
                                  "until": format!("{}s", from + rng.range(60, 1800)), "never": true}));
            }
            if rng.chance(0.3) {
                let from = rng.range(0, 3600);
                rules.push(json!({"workload": "canary", "from": format!("{from}s"),
                                  "delay": format!("{}s", rng.range(0, 900))}));
            }
        }
    }
    if !hooks.is_empty() {
        analysis["webhooks"] = Value::Array(hooks);
    }
    let deletion = (inputs == Inputs::Chaotic && rng.chance(0.15))
        .then(|| (format!("{}s", rng.range(60, horizon)), rng.chance(0.7)));
    let file = json!({
        "version": 1,
        "start": "2026-01-01T00:00:00Z",
        "duration": format!("{horizon}s"),
        "operator": {"meshProvider": "istio", "minInterval": "10s"},
        "canary": {
            "apiVersion": "flagger.app/v1beta1",
            "kind": "Canary",
            "metadata": {"name": "podinfo", "namespace": "test"},
            "spec": {
                "provider": if kubernetes { "kubernetes" } else { "istio" },
                "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
                "progressDeadlineSeconds": deadline,
                "revertOnDeletion": deletion.as_ref().is_some_and(|(_, revert)| *revert),
                "service": {"port": 9898},
                "analysis": analysis
            }
        },
        "revisions": revisions,
        "readiness": {"delay": format!("{readiness_delay}s"), "rules": rules},
        "metrics": metrics,
        "webhooks": webhooks,
        "faults": {"seed": seed, "rates": serde_json::to_value(rates).unwrap_or_default()}
    });
    let mut file = file;
    if let Some((at, _)) = deletion {
        file["deleteAt"] = json!(at);
    }
    let raw: TraceFile = match serde_json::from_value(file) {
        Ok(raw) => raw,
        Err(e) => panic!("generated trace does not parse (seed {seed}): {e}"),
    };
    let trace = match Trace::from_file(&format!("generated-{seed}"), raw) {
        Ok(t) => t,
        Err(e) => panic!("generated trace is invalid (seed {seed}): {e}"),
    };
    let shape = Shape {
        interval_secs: interval,
        threshold,
        readiness_delay_secs: readiness_delay,
        revision_secs,
        strategy,
    };
    (trace, shape)
}

/// A day of traffic at a 10 s interval: the run reaches its last weight and waits there for a
/// promotion approval that never comes, so the analysis runs every interval (8,640 steps).
pub fn day_at_ten_seconds() -> Trace {
    let file = json!({
        "version": 1,
        "start": "2026-01-01T00:00:00Z",
        "duration": "24h",
        "canary": {
            "apiVersion": "flagger.app/v1beta1",
            "kind": "Canary",
            "metadata": {"name": "podinfo", "namespace": "test"},
            "spec": {
                "targetRef": {"name": "podinfo"},
                "service": {"port": 9898},
                "analysis": {
                    "interval": "10s", "threshold": 5, "maxWeight": 50, "stepWeight": 10,
                    "metrics": [
                        {"name": "request-success-rate", "thresholdRange": {"min": 99}, "interval": "1m"},
                        {"name": "request-duration", "thresholdRange": {"max": 500}, "interval": "30s"}
                    ],
                    "webhooks": [{"name": "gate", "type": "confirm-promotion", "url": "http://gate.test/"}]
                }
            }
        },
        "revisions": [
            {"at": "0s", "template": template(0), "replicas": 2},
            {"at": "10s", "template": template(1)}
        ],
        "metrics": {
            "request-success-rate": [{"at": "0s", "value": 99.9}],
            "request-duration": [{"at": "0s", "value": 120}]
        },
        "webhooks": {"gate": [{"at": "0s", "pass": false, "message": "closed"}]}
    });
    let raw: TraceFile = serde_json::from_value(file).expect("the day trace is well-formed");
    Trace::from_file("day-at-10s", raw).expect("the day trace is valid")
}
