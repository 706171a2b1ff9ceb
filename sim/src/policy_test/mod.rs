//! Property-based tests of a team's own rollout policy (`flagger test`, `docs/policy-testing.md`).
//!
//! A [`Plan`] is one Canary ([`Subject`]) and what must hold of it ([`Suite`]). Each case is a
//! [`Scenario`] generated around that spec from a seed (never a random spec): a healthy version,
//! each metric failing, flapping, creeping or missing, the metrics backend down, slow or stuck
//! rollouts, gates closed, late or flapping, a revision mid-analysis, operator restarts. Every
//! case is turned into a trace, replayed through the real core and simulator ([`crate::replay`])
//! and judged: the built-in invariants, then each expectation. The first case that breaks an
//! expectation is shrunk ([`shrink`]) and kept as a [`Counterexample`], with its trace (which
//! `flagger replay` reproduces exactly) and its timeline.
//!
//! This module is the stable API behind `flagger test`; Rust users call it directly:
//!
//! ```no_run
//! use flagger_sim::policy_test::{Plan, Subject, Suite};
//! let canary = flagger_sim::trace::load_canary("canary.yaml".as_ref()).unwrap();
//! let subject = Subject::new("canary.yaml", canary).unwrap();
//! let suite = Suite::default_for(&subject);
//! let outcome = Plan::new(subject, suite).run(7, 200);
//! assert!(outcome.passed(), "{}", flagger_sim::policy_test::report::text(&[outcome]));
//! ```
//!
//! For proptest, [`Plan::scenario_from_seed`] maps any `u64` to a scenario of this spec, so
//! `any::<u64>().prop_map(|s| plan.scenario_from_seed(s))` is a strategy whose failures shrink
//! by proptest's own means as well as by [`shrink`].

pub mod expect;
pub mod report;
pub mod scenario;
pub mod shrink;

use std::time::Instant;

pub use expect::{Broken, Expectation, Level, Suite, SuiteFile, Verdict};
pub use scenario::{Family, Scenario, Subject};

use crate::Crash;
use crate::engine::{Options, Run, replay};
use crate::trace::{Trace, TraceFile};

/// Restart points the sweep replays per Canary at most: a healthy podinfo run has about 200
/// command boundaries, so this covers every boundary of typical Canaries and keeps a long one
/// (many steps, many hooks) to a few tenths of a second. Above it, boundaries are taken evenly.
pub const MAX_RESTART_POINTS: usize = 3_000;

/// One point of the restart sweep: case `case` (a base scenario) with the operator dying after
/// `crash.keep` commands of reconcile `crash.reconcile`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartPoint {
    pub case: usize,
    pub crash: Crash,
}

/// The restart sweep of one run: which points were replayed, out of how many boundaries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sweep {
    pub points: Vec<RestartPoint>,
    /// Command boundaries of the base cases (points before the [`MAX_RESTART_POINTS`] cap).
    pub boundaries: usize,
}

/// One Canary and its suite.
#[derive(Debug, Clone)]
pub struct Plan {
    pub subject: Subject,
    pub suite: Suite,
    families: Vec<Family>,
}

/// How one expectation fared over all cases.
#[derive(Debug, Clone)]
pub struct Tally {
    pub expectation: Expectation,
    /// Cases the expectation applied to.
    pub applicable: usize,
    /// Cases that broke it.
    pub broken: usize,
    /// The first breaking case, shrunk.
    pub counterexample: Option<Counterexample>,
}

/// A failing case made small enough to read.
#[derive(Debug, Clone)]
pub struct Counterexample {
    /// The run seed and case index that generated it (`flagger test --seed S --case I`).
    pub seed: u64,
    pub case: usize,
    /// As generated, and after shrinking.
    pub original: Scenario,
    pub scenario: Scenario,
    /// Shrinking steps accepted.
    pub shrinks: usize,
    /// The restart sweep's point, when the case is one (`--restart R:K`).
    pub restart: Option<Crash>,
    pub broken: Broken,
    /// The shrunk scenario's trace and its timeline (`timeline::text`).
    pub trace: TraceFile,
    pub timeline: String,
}

impl Counterexample {
    /// The trace as a file `flagger replay` reads.
    pub fn trace_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(&self.trace).unwrap_or_default();
        text.push('\n');
        text
    }
}

/// Everything a run of the plan found.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The Canary as `name.namespace`, and the file it came from.
    pub canary: String,
    pub file: String,
    pub suite: String,
    pub seed: u64,
    pub cases: usize,
    /// Restart points replayed by the sweep, and the command boundaries they were taken from.
    pub restart_points: usize,
    pub restart_boundaries: usize,
    pub seconds: f64,
    pub tallies: Vec<Tally>,
}

impl Outcome {
    pub fn passed(&self) -> bool {
        self.tallies.iter().all(|t| t.broken == 0)
    }
}

impl Plan {
    pub fn new(subject: Subject, suite: Suite) -> Plan {
        let families = scenario::families(&subject, &suite);
        Plan {
            subject,
            suite,
            families,
        }
    }

    pub fn families(&self) -> &[Family] {
        &self.families
    }

    /// Case `case` of the run seeded `seed`: family `case % families().len()`.
    pub fn scenario(&self, seed: u64, case: usize) -> Scenario {
        let family = self.families[case % self.families.len()].clone();
        scenario::build(
            &self.subject,
            &self.suite,
            family,
            scenario::case_seed(seed, case),
        )
    }

    /// A scenario of this spec from any seed (family and parameters both drawn from it).
    pub fn scenario_from_seed(&self, seed: u64) -> Scenario {
        let family = self.families[(seed % self.families.len() as u64) as usize].clone();
        scenario::build(&self.subject, &self.suite, family, seed)
    }

    /// A proptest strategy over this plan's scenarios (feature `proptest`): each drawn seed maps
    /// to a scenario of the spec, so proptest's shrinking and persistence of failures apply,
    /// and a failure's seed reproduces it with [`Plan::scenario_from_seed`].
    #[cfg(feature = "proptest")]
    pub fn strategy(&self) -> impl proptest::strategy::Strategy<Value = Scenario> + '_ {
        use proptest::strategy::Strategy as _;
        proptest::arbitrary::any::<u64>().prop_map(move |seed| self.scenario_from_seed(seed))
    }

    /// The scenario's trace, validated as `flagger replay` validates a file.
    pub fn trace(&self, s: &Scenario) -> Trace {
        let name = format!("{}-{}", self.subject.canary.metadata.name, s.seed);
        match Trace::from_file(&name, s.trace(&self.subject)) {
            Ok(t) => t,
            // The subject was validated and scenarios only write well-formed fields.
            Err(e) => panic!("generated trace is invalid: {e}"),
        }
    }

    pub fn replay(&self, s: &Scenario) -> Run {
        replay(&self.trace(s), &Options::default())
    }

    /// Every expectation's verdict on one scenario, in suite order.
    pub fn judge(&self, s: &Scenario, run: &Run) -> Vec<Verdict> {
        self.suite
            .expectations
            .iter()
            .map(|e| expect::judge(e, &self.subject, s, run))
            .collect()
    }

    /// Whether `s` breaks expectation `index` (one replay).
    pub fn breaks(&self, s: &Scenario, index: usize) -> Option<Broken> {
        let e = &self.suite.expectations[index];
        if !expect::applies(e, &self.subject, s) {
            return None;
        }
        match expect::judge(e, &self.subject, s, &self.replay(s)) {
            Verdict::Broken(b) => Some(b),
            _ => None,
        }
    }

    /// Runs `cases` cases from `seed`, then the restart sweep ([`Plan::sweep`]).
    pub fn run(&self, seed: u64, cases: usize) -> Outcome {
        let started = Instant::now();
        let sweep = self.sweep(seed);
        let generated = (0..cases).map(|c| (c, self.scenario(seed, c)));
        let restarts = sweep
            .points
            .iter()
            .map(|p| (p.case, self.restart_scenario(seed, *p)));
        let mut o = self.run_scenarios(seed, generated.chain(restarts));
        o.cases = cases;
        o.restart_points = sweep.points.len();
        o.restart_boundaries = sweep.boundaries;
        o.seconds = started.elapsed().as_secs_f64();
        o
    }

    /// Runs the given case indices (one, to reproduce a reported case), without the sweep.
    pub fn run_cases(&self, seed: u64, cases: impl IntoIterator<Item = usize>) -> Outcome {
        self.run_scenarios(seed, cases.into_iter().map(|c| (c, self.scenario(seed, c))))
    }

    /// Runs one point of the restart sweep alone (`flagger test --case I --restart R:K`).
    pub fn run_restart(&self, seed: u64, point: RestartPoint) -> Outcome {
        let mut o = self.run_scenarios(
            seed,
            std::iter::once((point.case, self.restart_scenario(seed, point))),
        );
        o.cases = 0;
        o.restart_points = 1;
        o.restart_boundaries = 1;
        o
    }

    /// The cases the restart sweep starts from: the first healthy case (a promotion), the first
    /// case where a metric fails (a rollback; a canary that never becomes ready when the spec
    /// has no bounded metric) and, when the Canary reverts on deletion, the first deletion. Each
    /// is the first case of its family, so its index is the family's.
    pub fn sweep_bases(&self) -> Vec<usize> {
        let first = |f: &dyn Fn(&Family) -> bool| self.families.iter().position(f);
        let mut out = Vec::new();
        out.extend(first(&|f| *f == Family::Healthy));
        out.extend(
            first(&|f| matches!(f, Family::MetricFails(_)))
                .or_else(|| first(&|f| *f == Family::NeverReady)),
        );
        if self.subject.reverts_on_deletion() {
            out.extend(first(&|f| *f == Family::CanaryDeleted));
        }
        out
    }

    /// Every command boundary of every reconcile of the base cases ([`Plan::sweep_bases`]): the
    /// operator dies after carrying out commands `0..k` of a reconcile, for each `k` from 0 (before
    /// the first) to all of them, then restarts and reconciles from what the cluster persisted.
    /// At most [`MAX_RESTART_POINTS`], taken evenly when there are more.
    pub fn sweep(&self, seed: u64) -> Sweep {
        let mut all = Vec::new();
        for case in self.sweep_bases() {
            let base = self.scenario(seed, case);
            let run = replay(
                &self.trace(&base),
                &Options {
                    record: true,
                    ..Options::default()
                },
            );
            for (reconcile, r) in run.recording.iter().enumerate() {
                let n = r.decision.commands.len();
                if n == 0 {
                    continue;
                }
                for keep in 0..=n {
                    all.push(RestartPoint {
                        case,
                        crash: Crash { reconcile, keep },
                    });
                }
            }
        }
        let boundaries = all.len();
        let points = if boundaries <= MAX_RESTART_POINTS {
            all
        } else {
            (0..MAX_RESTART_POINTS)
                .map(|j| all[j * boundaries / MAX_RESTART_POINTS])
                .collect()
        };
        Sweep { points, boundaries }
    }

    /// The scenario of a restart point: its base case with the crash.
    pub fn restart_scenario(&self, seed: u64, point: RestartPoint) -> Scenario {
        let mut s = self.scenario(seed, point.case);
        s.crash = Some(point.crash);
        s
    }

    fn run_scenarios(
        &self,
        seed: u64,
        scenarios: impl IntoIterator<Item = (usize, Scenario)>,
    ) -> Outcome {
        let started = Instant::now();
        let mut tallies: Vec<Tally> = self
            .suite
            .expectations
            .iter()
            .map(|e| Tally {
                expectation: e.clone(),
                applicable: 0,
                broken: 0,
                counterexample: None,
            })
            .collect();
        let mut first: Vec<Option<(usize, Scenario)>> = vec![None; tallies.len()];
        let mut count = 0;
        for (case, s) in scenarios {
            count += 1;
            let run = self.replay(&s);
            for (i, v) in self.judge(&s, &run).into_iter().enumerate() {
                match v {
                    Verdict::NotApplicable => {}
                    Verdict::Holds => tallies[i].applicable += 1,
                    Verdict::Broken(_) => {
                        tallies[i].applicable += 1;
                        tallies[i].broken += 1;
                        if first[i].is_none() {
                            first[i] = Some((case, s.clone()));
                        }
                    }
                }
            }
        }
        for (i, f) in first.into_iter().enumerate() {
            if let Some((case, original)) = f {
                tallies[i].counterexample = Some(self.counterexample(seed, case, original, i));
            }
        }
        Outcome {
            canary: self.subject.name(),
            file: String::new(),
            suite: self.suite.name.clone(),
            seed,
            cases: count,
            restart_points: 0,
            restart_boundaries: 0,
            seconds: started.elapsed().as_secs_f64(),
            tallies,
        }
    }

    fn counterexample(
        &self,
        seed: u64,
        case: usize,
        original: Scenario,
        index: usize,
    ) -> Counterexample {
        let (scenario, shrinks) = shrink::shrink(self, &original, index, shrink::BUDGET);
        let run = self.replay(&scenario);
        let broken = match expect::judge(
            &self.suite.expectations[index],
            &self.subject,
            &scenario,
            &run,
        ) {
            Verdict::Broken(b) => b,
            // Shrinking only accepts scenarios that still break it; the replay is deterministic.
            _ => Broken {
                at: None,
                detail: "the shrunk case no longer fails (non-deterministic replay)".into(),
            },
        };
        Counterexample {
            seed,
            case,
            restart: original.crash,
            trace: scenario.trace(&self.subject),
            timeline: crate::timeline::text(&run, false),
            original,
            scenario,
            shrinks,
            broken,
        }
    }
}
