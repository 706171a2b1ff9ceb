//! `flagger test CANARY.yaml... [--suite FILE] [--cases N] [--seed S] [--output text|junit]`:
//! property-based tests of a team's own rollout policies (docs/policy-testing.md). Exit codes:
//! 0 every expectation held, 1 one broke (its shrunk counterexample is printed and written as a
//! trace `flagger replay` reproduces), 2 bad input, with one line naming the file and field.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use flagger_sim::policy_test::expect::parse_suite;
use flagger_sim::policy_test::{Counterexample, Outcome, Plan, Subject, Suite, report};
use flagger_sim::trace::{InputError, canary_from_text};

/// Cases per Canary when neither `--cases` nor the suite says.
pub const DEFAULT_CASES: usize = 200;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum TestOutput {
    #[default]
    Text,
    /// JUnit XML for CI systems.
    Junit,
}

#[derive(Debug, Clone, clap::Args)]
pub struct TestArgs {
    /// Canary files (YAML or JSON), or directories: every Canary in them (other kinds, such as
    /// MetricTemplates, and suite files are skipped).
    #[arg(required = true, value_name = "CANARY")]
    pub canaries: Vec<PathBuf>,
    /// The expectations (docs/policy-testing.md). Without it, `NAME.suite.yaml` beside each
    /// Canary `NAME.yaml` is used, else the default suite.
    #[arg(long, value_name = "FILE")]
    pub suite: Option<PathBuf>,
    /// Scenarios per Canary (default: the suite's `cases`, else 200).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub cases: Option<u64>,
    /// Seed of the scenarios: the same seed generates the same cases.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Run this case alone (as a report names it), to reproduce it.
    #[arg(long, value_name = "I")]
    pub case: Option<usize>,
    #[arg(long, value_enum, default_value_t = TestOutput::Text)]
    pub output: TestOutput,
    /// Where counterexample traces are written (created when one is found).
    #[arg(
        long,
        value_name = "DIR",
        default_value = "flagger-test-counterexamples"
    )]
    pub counterexamples: PathBuf,
}

/// One Canary and its suite, loaded and validated.
pub struct Loaded {
    pub file: String,
    pub plan: Plan,
    pub cases: usize,
}

fn read(path: &Path) -> Result<String, InputError> {
    std::fs::read_to_string(path)
        .map_err(|e| InputError::new(&path.display().to_string(), format!("cannot read: {e}")))
}

/// The Canary files named on the command line, directories expanded (sorted, not recursive).
fn canary_files(paths: &[PathBuf]) -> Result<Vec<(PathBuf, String)>, InputError> {
    let mut out = Vec::new();
    for path in paths {
        let name = path.display().to_string();
        if !path.is_dir() {
            out.push((path.clone(), read(path)?));
            continue;
        }
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|e| InputError::new(&name, format!("cannot read directory: {e}")))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension()
                    .is_some_and(|e| e == "yaml" || e == "yml" || e == "json")
            })
            .collect();
        entries.sort();
        let before = out.len();
        for p in entries {
            let text = read(&p)?;
            let file = p.display().to_string();
            let value: serde_json::Value = serde_saphyr::from_str(&text).map_err(|e| {
                let first = e.to_string();
                InputError::new(&file, first.lines().next().unwrap_or("invalid YAML"))
            })?;
            // A policy directory holds MetricTemplates, AlertProviders and suites too.
            if value.get("kind").and_then(|k| k.as_str()) == Some("Canary") {
                out.push((p, text));
            }
        }
        if out.len() == before {
            return Err(InputError::new(&name, "no Canary in this directory"));
        }
    }
    Ok(out)
}

fn suite_beside(canary: &Path) -> Option<PathBuf> {
    let stem = canary.file_stem()?.to_string_lossy().into_owned();
    let p = canary.with_file_name(format!("{stem}.suite.yaml"));
    p.is_file().then_some(p)
}

/// Loads every Canary and its suite; the first malformed input is the error.
pub fn load(args: &TestArgs) -> Result<Vec<Loaded>, InputError> {
    let explicit = match &args.suite {
        Some(p) => Some((
            p.display().to_string(),
            parse_suite(&p.display().to_string(), &read(p)?)?,
        )),
        None => None,
    };
    let mut out = Vec::new();
    for (path, text) in canary_files(&args.canaries)? {
        let file = path.display().to_string();
        let canary = canary_from_text(&file, &text)?;
        let subject = Subject::new(&file, canary)?;
        let suite = match (&explicit, suite_beside(&path)) {
            (Some((name, s)), _) => s.validate(name, &subject)?,
            (None, Some(p)) => {
                let name = p.display().to_string();
                parse_suite(&name, &read(&p)?)?.validate(&name, &subject)?
            }
            (None, None) => Suite::default_for(&subject),
        };
        let cases = args
            .cases
            .map(|n| n as usize)
            .or(suite.cases)
            .unwrap_or(DEFAULT_CASES);
        out.push(Loaded {
            file,
            plan: Plan::new(subject, suite),
            cases,
        });
    }
    Ok(out)
}

/// Runs every loaded plan.
pub fn execute(args: &TestArgs, loaded: &[Loaded]) -> Vec<Outcome> {
    loaded
        .iter()
        .map(|l| {
            let mut o = match args.case {
                Some(i) => l.plan.run_cases(args.seed, [i]),
                None => l.plan.run(args.seed, l.cases),
            };
            o.file = l.file.clone();
            o
        })
        .collect()
}

/// The file a counterexample is written to: Canary, expectation, case.
pub fn trace_path(dir: &Path, o: &Outcome, c: &Counterexample) -> PathBuf {
    let slug = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' {
                    c
                } else {
                    '-'
                }
            })
            .collect()
    };
    let expectation = o
        .tallies
        .iter()
        .find(|t| {
            t.counterexample
                .as_ref()
                .is_some_and(|x| std::ptr::eq(x, c))
        })
        .map_or_else(String::new, |t| slug(&t.expectation.name()));
    dir.join(format!(
        "{}-{expectation}-case{}.json",
        slug(&o.canary),
        c.case
    ))
}

/// Writes every counterexample's trace; `Err` names the file that could not be written.
pub fn write_counterexamples(dir: &Path, outcomes: &[Outcome]) -> Result<(), String> {
    for o in outcomes {
        for c in o.tallies.iter().filter_map(|t| t.counterexample.as_ref()) {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            let path = trace_path(dir, o, c);
            std::fs::write(&path, c.trace_json())
                .map_err(|e| format!("{}: {e}", path.display()))?;
        }
    }
    Ok(())
}

pub fn run(args: TestArgs) -> ExitCode {
    let loaded = match load(&args) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("flagger test: {e}");
            return ExitCode::from(2);
        }
    };
    let outcomes = execute(&args, &loaded);
    let dir = args.counterexamples.clone();
    if let Err(e) = write_counterexamples(&dir, &outcomes) {
        eprintln!("flagger test: cannot write a counterexample: {e}");
    }
    let path = |o: &Outcome, c: &Counterexample| Some(trace_path(&dir, o, c).display().to_string());
    match args.output {
        TestOutput::Text => print!("{}", report::text_with(&outcomes, &path)),
        TestOutput::Junit => print!("{}", report::junit(&outcomes, &path)),
    }
    if outcomes.iter().all(Outcome::passed) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
