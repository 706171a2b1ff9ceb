//! The expectations a team writes about its own rollout policy (`docs/policy-testing.md`): a small
//! YAML vocabulary, parsed strictly (an unknown key is an error naming it, since a typo must not
//! silently drop a check), validated against the Canary it is applied to, and judged on each run.

use flagger_core::api::{format_go_duration, parse_go_duration};
use flagger_core::{Command, Phase};
use jiff::{SignedDuration, Timestamp};
use serde::Deserialize;

use crate::compare;
use crate::engine::{Run, Step};
use crate::trace::InputError;

use super::scenario::{Scenario, Subject};

/// A suite file: what must hold in every generated scenario.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SuiteFile {
    #[serde(default)]
    pub description: String,
    /// How many scenarios to generate per Canary (`--cases` overrides it).
    #[serde(default)]
    pub cases: Option<usize>,
    pub expect: Vec<ExpectationFile>,
}

/// One expectation as written: a map with exactly one key.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum ExpectationFile {
    PromotesHealthyWithin(String),
    NeverPromotesWhen(LevelFile),
    RollsBackWithin(String),
    MaxFailingExposure(f64),
    MaxGateCalls(GateCallsFile),
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LevelFile {
    pub metric: String,
    #[serde(default)]
    pub below: Option<f64>,
    #[serde(default)]
    pub above: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GateCallsFile {
    pub gate: String,
    pub times: usize,
}

/// Which side of a level is worse.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Level {
    Below(f64),
    Above(f64),
}

impl Level {
    pub fn is_worse(self, value: f64) -> bool {
        match self {
            Level::Below(l) => value < l,
            Level::Above(l) => value > l,
        }
    }
}

/// A validated expectation.
#[derive(Debug, Clone, PartialEq)]
pub enum Expectation {
    /// Every reconcile keeps the simulator's safety invariants and the replay ends normally.
    Invariants,
    /// In a healthy scenario the last revision is promoted before the scenario ends (the
    /// default suite's "healthy promotes").
    PromotesHealthy,
    /// In a healthy scenario (metrics within bounds, gates open, workloads ready before the
    /// deadline, operator restarts allowed) the last revision is promoted within this time of
    /// landing.
    PromotesHealthyWithin(SignedDuration),
    /// No promotion after the analysis read the metric worse than the level, in scenarios where
    /// the metric stays that bad once it gets there.
    NeverPromotesWhen { metric: String, level: Level },
    /// When a metric fails steadily (outside the spec's bounds, no values or query errors) before
    /// the promotion, the canary is rolled back within this time of the failure starting.
    RollsBackWithin(SignedDuration),
    /// Percent of traffic times minutes sent to a canary while it failed its checks.
    MaxFailingExposure(f64),
    /// A webhook is called at most this many times in one scenario.
    MaxGateCalls { gate: String, times: usize },
}

impl Expectation {
    /// A short name, used as the test case name in reports.
    pub fn name(&self) -> String {
        match self {
            Expectation::Invariants => "invariants".into(),
            Expectation::PromotesHealthy => "promotesHealthy".into(),
            Expectation::PromotesHealthyWithin(d) => {
                format!("promotesHealthyWithin {}", format_go_duration(*d))
            }
            Expectation::NeverPromotesWhen { metric, level } => match level {
                Level::Below(l) => format!("neverPromotesWhen {metric} below {l}"),
                Level::Above(l) => format!("neverPromotesWhen {metric} above {l}"),
            },
            Expectation::RollsBackWithin(d) => {
                format!("rollsBackWithin {}", format_go_duration(*d))
            }
            Expectation::MaxFailingExposure(v) => format!("maxFailingExposure {v}"),
            Expectation::MaxGateCalls { gate, times } => format!("maxGateCalls {gate} {times}"),
        }
    }
}

/// The expectations applied to one Canary; the built-in invariants come first, always.
#[derive(Debug, Clone, PartialEq)]
pub struct Suite {
    pub name: String,
    pub cases: Option<usize>,
    pub expectations: Vec<Expectation>,
}

impl Suite {
    /// The suite used without `--suite`: the invariants, "a healthy version is promoted" (within
    /// the scenario's horizon) and "a metric worse than its own bound never promotes".
    pub fn default_for(subject: &Subject) -> Suite {
        let mut expectations = vec![Expectation::Invariants, Expectation::PromotesHealthy];
        for m in &subject.metrics {
            let level = match (m.min, m.max) {
                (Some(min), _) => Level::Below(min),
                (None, Some(max)) => Level::Above(max),
                (None, None) => continue,
            };
            expectations.push(Expectation::NeverPromotesWhen {
                metric: m.name.clone(),
                level,
            });
        }
        Suite {
            name: "default".into(),
            cases: None,
            expectations,
        }
    }

    /// The levels of `neverPromotesWhen` for one metric (scenarios are generated around them).
    pub fn levels(&self, metric: &str) -> Vec<Level> {
        self.expectations
            .iter()
            .filter_map(|e| match e {
                Expectation::NeverPromotesWhen { metric: m, level } if m == metric => Some(*level),
                _ => None,
            })
            .collect()
    }

    /// The longest time bound, so that scenarios last long enough to judge it.
    pub fn longest_bound(&self) -> SignedDuration {
        self.expectations
            .iter()
            .filter_map(|e| match e {
                Expectation::PromotesHealthyWithin(d) | Expectation::RollsBackWithin(d) => Some(*d),
                _ => None,
            })
            .max()
            .unwrap_or(SignedDuration::ZERO)
    }
}

/// Parses a suite file (YAML or JSON). Names metrics and gates are checked later, against each
/// Canary, by [`Suite::validate`].
pub fn parse_suite(file: &str, text: &str) -> Result<SuiteFile, InputError> {
    let value: serde_json::Value = serde_saphyr::from_str(text).map_err(|e| {
        let first = e
            .to_string()
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or("invalid YAML")
            .to_string();
        InputError::new(file, first)
    })?;
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let what = e.into_inner().to_string();
        if path == "." || path.is_empty() {
            InputError::new(file, what)
        } else {
            InputError::new(file, format!("{path}: {what}"))
        }
    })
}

impl SuiteFile {
    /// The suite for `subject`: every name must be one of its metrics or webhooks, every duration
    /// a Go duration, every bound sensible. Errors name the suite file and field.
    pub fn validate(&self, file: &str, subject: &Subject) -> Result<Suite, InputError> {
        let fail =
            |field: String, what: String| Err(InputError::new(file, format!("{field}: {what}")));
        let duration = |field: String, text: &str| -> Result<SignedDuration, InputError> {
            match parse_go_duration(text) {
                Ok(d) if d.is_positive() => Ok(d),
                Ok(_) => Err(InputError::new(
                    file,
                    format!("{field}: {text:?} must be positive"),
                )),
                Err(e) => Err(InputError::new(file, format!("{field}: {e}"))),
            }
        };
        let mut expectations = vec![Expectation::Invariants];
        if self.expect.is_empty() {
            return fail("expect".into(), "list at least one expectation".into());
        }
        for (i, e) in self.expect.iter().enumerate() {
            let at = format!("expect[{i}]");
            expectations.push(match e {
                ExpectationFile::PromotesHealthyWithin(d) => Expectation::PromotesHealthyWithin(
                    duration(format!("{at}.promotesHealthyWithin"), d)?,
                ),
                ExpectationFile::RollsBackWithin(d) => {
                    Expectation::RollsBackWithin(duration(format!("{at}.rollsBackWithin"), d)?)
                }
                ExpectationFile::NeverPromotesWhen(l) => {
                    let field = format!("{at}.neverPromotesWhen");
                    if !subject.metrics.iter().any(|m| m.name == l.metric) {
                        let names: Vec<&str> =
                            subject.metrics.iter().map(|m| m.name.as_str()).collect();
                        return fail(
                            format!("{field}.metric"),
                            format!(
                                "{:?} is not a metric of Canary {} (its metrics: {})",
                                l.metric,
                                subject.name(),
                                if names.is_empty() {
                                    "none".into()
                                } else {
                                    names.join(", ")
                                }
                            ),
                        );
                    }
                    let level = match (l.below, l.above) {
                        (Some(b), None) if b.is_finite() => Level::Below(b),
                        (None, Some(a)) if a.is_finite() => Level::Above(a),
                        _ => {
                            return fail(
                                field,
                                "give exactly one of below, above (a number)".into(),
                            );
                        }
                    };
                    Expectation::NeverPromotesWhen {
                        metric: l.metric.clone(),
                        level,
                    }
                }
                ExpectationFile::MaxFailingExposure(v) => {
                    if !v.is_finite() || *v < 0.0 {
                        return fail(
                            format!("{at}.maxFailingExposure"),
                            format!("{v} must be a non-negative number of percent-minutes"),
                        );
                    }
                    Expectation::MaxFailingExposure(*v)
                }
                ExpectationFile::MaxGateCalls(g) => {
                    if !subject.hook_keys.iter().any(|k| hook_matches(k, &g.gate)) {
                        return fail(
                            format!("{at}.maxGateCalls.gate"),
                            format!(
                                "{:?} is not a webhook of Canary {} (its webhooks: {})",
                                g.gate,
                                subject.name(),
                                if subject.hook_keys.is_empty() {
                                    "none".into()
                                } else {
                                    subject.hook_keys.join(", ")
                                }
                            ),
                        );
                    }
                    Expectation::MaxGateCalls {
                        gate: g.gate.clone(),
                        times: g.times,
                    }
                }
            });
        }
        if self.cases == Some(0) {
            return fail("cases".into(), "must be at least 1".into());
        }
        Ok(Suite {
            name: file.to_string(),
            cases: self.cases,
            expectations,
        })
    }
}

/// A webhook named either `name` or `type/name`.
pub fn hook_matches(key: &str, gate: &str) -> bool {
    key == gate || key.split_once('/').is_some_and(|(_, name)| name == gate)
}

/// Why an expectation does not hold in one run.
#[derive(Debug, Clone, PartialEq)]
pub struct Broken {
    pub at: Option<Timestamp>,
    pub detail: String,
}

fn promoted(s: &Step) -> bool {
    s.commands[..s.applied]
        .iter()
        .any(|c| matches!(c, Command::PromoteTemplate))
}

fn analysing(p: Option<Phase>) -> bool {
    matches!(
        p,
        Some(Phase::Progressing | Phase::WaitingPromotion | Phase::Promoting | Phase::Finalising)
    )
}

fn offset(run: &Run, at: Timestamp) -> String {
    format!("+{}", format_go_duration(at.duration_since(run.start)))
}

/// What one run says about one expectation.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// The scenario is not one the expectation speaks of (a healthy-promotion bound in a scenario
    /// with a failing metric).
    NotApplicable,
    Holds,
    Broken(Broken),
}

/// A deleted Canary must be gone by the end of the run, and with `revertOnDeletion` it must have
/// handed the target back first: scaled up, the apex Service on the target's pods and all traffic
/// routed to them (part of the invariants).
fn deletion(subject: &Subject, scenario: &Scenario, run: &Run) -> Option<Broken> {
    let t = scenario.delete_at?;
    let at = run
        .start
        .checked_add(SignedDuration::from_secs(scenario.revision_at + t))
        .ok()?;
    if at > run.end {
        return None;
    }
    let w = &run.world;
    let broken = |detail: String| {
        Some(Broken {
            at: Some(at),
            detail: format!("the Canary deleted at {} {detail}", offset(run, at)),
        })
    };
    if !w.removed {
        return broken(format!(
            "was still there at the end ({})",
            run.final_phase().map_or("without a phase", Phase::as_str)
        ));
    }
    if !subject.reverts_on_deletion() {
        return None;
    }
    if w.target.as_ref().is_none_or(|d| d.replicas == 0) {
        return broken("left the target at zero replicas (revertOnDeletion: true)".into());
    }
    if w.apex_on_primary {
        return broken(
            "left the apex Service on the primary's pods (revertOnDeletion: true)".into(),
        );
    }
    if let Some(r) = w.routes
        && r.canary_weight != 100
    {
        return broken(format!(
            "left {}% of the traffic on the primary (revertOnDeletion: true)",
            r.primary_weight
        ));
    }
    None
}

/// Judges `e` on the run of `scenario`.
pub fn judge(e: &Expectation, subject: &Subject, scenario: &Scenario, run: &Run) -> Verdict {
    if !applies(e, subject, scenario) {
        return Verdict::NotApplicable;
    }
    match broken(e, subject, scenario, run) {
        Some(b) => Verdict::Broken(b),
        None => Verdict::Holds,
    }
}

/// Whether `e` speaks of `scenario` (decided from the scenario alone).
pub fn applies(e: &Expectation, subject: &Subject, scenario: &Scenario) -> bool {
    match e {
        Expectation::PromotesHealthy | Expectation::PromotesHealthyWithin(_) => {
            scenario.is_healthy(subject)
        }
        Expectation::NeverPromotesWhen { metric, level } => {
            scenario.stays_worse(subject, metric, *level)
        }
        Expectation::RollsBackWithin(_) => scenario
            .fails_since(subject, Timestamp::UNIX_EPOCH)
            .is_some(),
        Expectation::Invariants
        | Expectation::MaxFailingExposure(_)
        | Expectation::MaxGateCalls { .. } => true,
    }
}

fn broken(e: &Expectation, subject: &Subject, scenario: &Scenario, run: &Run) -> Option<Broken> {
    let landed = scenario.last_revision_at(run.start);
    match e {
        Expectation::Invariants => {
            if let Some(v) = run.violations.first() {
                return Some(Broken {
                    at: Some(v.at),
                    detail: format!(
                        "invariant {} broken at {}: {}",
                        v.rule,
                        offset(run, v.at),
                        v.detail
                    ),
                });
            }
            if let Some(err) = &run.error {
                return Some(Broken {
                    at: None,
                    detail: format!("the replay stopped: {err}"),
                });
            }
            deletion(subject, scenario, run)
        }
        Expectation::PromotesHealthy | Expectation::PromotesHealthyWithin(_) => {
            let within = match e {
                Expectation::PromotesHealthyWithin(d) => *d,
                _ => SignedDuration::MAX,
            };
            let done = run.steps.iter().find(|s| {
                s.at >= landed
                    && s.after.phase == Some(Phase::Succeeded)
                    && s.before.phase != Some(Phase::Succeeded)
            });
            let limit = landed.checked_add(within).unwrap_or(Timestamp::MAX);
            match done {
                Some(s) if s.at <= limit => None,
                Some(s) => Some(Broken {
                    at: Some(s.at),
                    detail: format!(
                        "a healthy version landed at {} was promoted only at {} ({} later)",
                        offset(run, landed),
                        offset(run, s.at),
                        format_go_duration(s.at.duration_since(landed))
                    ),
                }),
                None => Some(Broken {
                    at: None,
                    detail: format!(
                        "a healthy version landed at {} was never promoted (ended {})",
                        offset(run, landed),
                        run.final_phase().map_or("without a phase", Phase::as_str)
                    ),
                }),
            }
        }
        Expectation::NeverPromotesWhen { metric, level } => {
            let mut seen: Option<(Timestamp, f64)> = None;
            for s in &run.steps {
                if analysing(s.after.phase) && !analysing(s.before.phase) {
                    seen = None;
                }
                for m in s.inputs.metrics.iter().filter(|m| &m.name == metric) {
                    if let flagger_core::MetricAnswer::Value(v) = m.answer
                        && level.is_worse(v)
                        && seen.is_none()
                    {
                        seen = Some((s.at, v));
                    }
                }
                if promoted(s)
                    && let Some((at, v)) = seen
                {
                    return Some(Broken {
                        at: Some(s.at),
                        detail: format!(
                            "promoted at {} although {metric} read {} at {}",
                            offset(run, s.at),
                            flagger_core::events::go_float(v),
                            offset(run, at)
                        ),
                    });
                }
            }
            None
        }
        Expectation::RollsBackWithin(within) => {
            let since = scenario.fails_since(subject, run.start)?;
            let promotion = run.steps.iter().find(|s| s.at >= landed && promoted(s));
            if promotion.is_some_and(|p| p.at <= since) {
                return None;
            }
            let rolled = run.steps.iter().find(|s| {
                s.at >= since
                    && s.after.phase == Some(Phase::Failed)
                    && s.before.phase != Some(Phase::Failed)
            });
            let limit = since.checked_add(*within).unwrap_or(Timestamp::MAX);
            match (rolled, promotion) {
                (Some(s), _) if s.at <= limit => None,
                (_, Some(p)) => Some(Broken {
                    at: Some(p.at),
                    detail: format!(
                        "the checks failed from {} but the canary was promoted at {}",
                        offset(run, since),
                        offset(run, p.at)
                    ),
                }),
                (Some(s), None) => Some(Broken {
                    at: Some(s.at),
                    detail: format!(
                        "the checks failed from {} and the rollback came only at {} ({} later)",
                        offset(run, since),
                        offset(run, s.at),
                        format_go_duration(s.at.duration_since(since))
                    ),
                }),
                (None, None) => Some(Broken {
                    at: None,
                    detail: format!(
                        "the checks failed from {} and the canary was never rolled back (ended {})",
                        offset(run, since),
                        run.final_phase().map_or("without a phase", Phase::as_str)
                    ),
                }),
            }
        }
        Expectation::MaxFailingExposure(max) => {
            let got = compare::summary(run).failing_exposure_percent_minutes;
            (got > *max).then(|| Broken {
                at: None,
                detail: format!(
                    "a failing canary received {got:.1} %·min of traffic (at most {max} expected)"
                ),
            })
        }
        Expectation::MaxGateCalls { gate, times } => {
            let mut calls = 0;
            for s in &run.steps {
                let per = s
                    .inputs
                    .hooks
                    .iter()
                    .filter(|h| hook_matches(&h.key, gate))
                    .count();
                // A folded wait asked the same hooks at each of its repeats; the count crosses the
                // bound at its k-th reconcile (times of repeats past the first are not kept).
                let total = calls + per * (1 + s.repeats);
                if per > 0 && total > *times {
                    let k = (*times - calls) / per + 1;
                    let at = if k == 1 {
                        s.at
                    } else {
                        s.repeats_from.unwrap_or(s.at)
                    };
                    let calls = calls + per * k;
                    return Some(Broken {
                        at: Some(at),
                        detail: format!(
                            "webhook {gate} called {calls} times by {} (at most {times} expected)",
                            offset(run, at)
                        ),
                    });
                }
                calls = total;
            }
            None
        }
    }
}
