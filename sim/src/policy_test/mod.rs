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

use crate::engine::{Options, Run, replay};
use crate::trace::{Trace, TraceFile};

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

    /// Runs `cases` cases from `seed`.
    pub fn run(&self, seed: u64, cases: usize) -> Outcome {
        self.run_cases(seed, 0..cases)
    }

    /// Runs the given case indices (one, to reproduce a reported case).
    pub fn run_cases(&self, seed: u64, cases: impl IntoIterator<Item = usize>) -> Outcome {
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
        for case in cases {
            count += 1;
            let s = self.scenario(seed, case);
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
            trace: scenario.trace(&self.subject),
            timeline: crate::timeline::text(&run, false),
            original,
            scenario,
            shrinks,
            broken,
        }
    }
}
