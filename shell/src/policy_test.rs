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
    /// Instead of generated scenarios: replay every recording and trace of the same Canary in
    /// this directory as it ran and under the given Canary, and report each outcome that changes.
    #[arg(long, value_name = "DIR")]
    pub against: Option<PathBuf>,
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

/// What the command prints and its exit code: 0 all held, 1 one broke, 2 bad input (the
/// output is then the one-line cause, for stderr).
pub fn test(args: &TestArgs) -> (String, u8) {
    if let Some(dir) = &args.against {
        return match regressions(args, dir) {
            Ok(r) => r,
            Err(e) => (format!("flagger test: {e}\n"), 2),
        };
    }
    let loaded = match load(args) {
        Ok(l) => l,
        Err(e) => return (format!("flagger test: {e}\n"), 2),
    };
    let outcomes = execute(args, &loaded);
    let dir = args.counterexamples.clone();
    let mut out = String::new();
    if let Err(e) = write_counterexamples(&dir, &outcomes) {
        // The report still carries each counterexample's scenario, timeline and seed.
        out.push_str(&format!(
            "flagger test: cannot write a counterexample: {e}\n"
        ));
    }
    let path = |o: &Outcome, c: &Counterexample| Some(trace_path(&dir, o, c).display().to_string());
    out.push_str(&match args.output {
        TestOutput::Text => report::text_with(&outcomes, &path),
        TestOutput::Junit => report::junit(&outcomes, &path),
    });
    (
        out,
        if outcomes.iter().all(Outcome::passed) {
            0
        } else {
            1
        },
    )
}

/// `--against DIR` for every Canary named: the reports one after another, exit 1 if any outcome
/// changed.
fn regressions(args: &TestArgs, dir: &Path) -> Result<(String, u8), InputError> {
    let mut out = String::new();
    let mut code = 0;
    for (path, text) in canary_files(&args.canaries)? {
        let file = path.display().to_string();
        let canary = canary_from_text(&file, &text)?;
        let (report, c) = crate::policy_regression::against(dir, &canary, &file)?;
        out.push_str(&report);
        code = code.max(c);
    }
    Ok((out, code))
}

pub fn run(args: TestArgs) -> ExitCode {
    match test(&args) {
        (text, 2) => {
            eprint!("{text}");
            ExitCode::from(2)
        }
        (text, code) => {
            print!("{text}");
            ExitCode::from(code)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../fixtures/policies")
            .join(name)
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("flagger-test-cli-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn args(canaries: Vec<PathBuf>, out: &Path) -> TestArgs {
        TestArgs {
            canaries,
            suite: None,
            cases: Some(100),
            seed: 1,
            case: None,
            output: TestOutput::Text,
            counterexamples: out.to_path_buf(),
            against: None,
        }
    }

    #[test]
    fn policy_directory_passes_with_exit_0_and_skips_other_kinds() {
        let out = temp_dir("pass");
        let dir = temp_dir("policies");
        for f in ["podinfo.yaml", "podinfo.suite.yaml"] {
            std::fs::copy(fixture(f), dir.join(f)).unwrap();
        }
        std::fs::copy(
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../fixtures/examples/metric-template.yaml"),
            dir.join("metric-template.yaml"),
        )
        .unwrap();
        let (text, code) = test(&args(vec![dir], &out));
        assert_eq!(code, 0, "{text}");
        assert!(text.contains("canary podinfo.test"), "{text}");
        assert!(text.contains("podinfo.suite.yaml"), "{text}");
        assert!(
            text.contains("1 of 1 Canaries kept every expectation"),
            "{text}"
        );
        // Nothing failed, so nothing was written.
        assert!(std::fs::read_dir(&out).unwrap().next().is_none());
    }

    #[test]
    fn unsafe_policy_exits_1_and_its_counterexample_replays_through_flagger_replay() {
        let out = temp_dir("unsafe");
        let (text, code) = test(&args(vec![fixture("unsafe")], &out));
        assert_eq!(code, 1, "{text}");
        assert!(
            text.contains("FAIL neverPromotesWhen request-success-rate below 95"),
            "{text}"
        );
        let written: Vec<PathBuf> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(written.len(), 1, "{written:?}");
        assert!(
            text.contains(&format!("flagger replay {}", written[0].display())),
            "{text}"
        );
        let replayed = crate::replay::execute(&crate::replay::ReplayArgs {
            trace: written[0].clone(),
            canary: None,
            output: crate::replay::Output::Text,
            explain: false,
            seed: None,
            missing_inputs: None,
            compare: false,
            expect: None,
        })
        .unwrap();
        assert_eq!(
            replayed.run.final_phase(),
            Some(flagger_core::Phase::Succeeded)
        );
        // The timeline printed under the counterexample is the one `flagger replay` prints.
        for line in replayed.text.lines().skip(1) {
            assert!(text.contains(&format!("| {line}")), "{line}\n{text}");
        }
        // The seed line reproduces the case alone.
        let seed_line = text.lines().find(|l| l.contains("seed:")).unwrap();
        let case: usize = seed_line.rsplit(' ').next().unwrap().parse().unwrap();
        let mut one = args(
            vec![fixture("unsafe/lax-success-rate.yaml")],
            &temp_dir("one"),
        );
        one.case = Some(case);
        let (again, code) = test(&one);
        assert_eq!(code, 1, "{again}");
        assert!(
            again.contains(&format!("counterexample: case {case} ")),
            "{again}"
        );
    }

    #[test]
    fn bad_input_exits_2_with_one_line_naming_file_and_field() {
        let out = temp_dir("bad");
        let dir = temp_dir("bad-suite");
        let suite = dir.join("s.yaml");
        std::fs::write(
            &suite,
            "expect:\n  - neverPromotesWhen: {metric: request-success-rate, belw: 95}\n",
        )
        .unwrap();
        let mut a = args(vec![fixture("podinfo.yaml")], &out);
        a.suite = Some(suite.clone());
        let (text, code) = test(&a);
        assert_eq!(code, 2);
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(
            text.contains("s.yaml: expect[0].neverPromotesWhen"),
            "{text}"
        );
        assert!(text.contains("belw"), "{text}");

        let canary = dir.join("bad-canary.yaml");
        std::fs::write(
            &canary,
            std::fs::read_to_string(fixture("podinfo.yaml"))
                .unwrap()
                .replace("stepWeight: 10", "stepWeight: 150"),
        )
        .unwrap();
        let (text, code) = test(&args(vec![canary], &out));
        assert_eq!(code, 2);
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(
            text.contains("bad-canary.yaml: spec.analysis.stepWeight"),
            "{text}"
        );

        let (text, code) = test(&args(vec![dir.join("missing.yaml")], &out));
        assert_eq!(code, 2);
        assert!(text.contains("missing.yaml: cannot read"), "{text}");
    }

    /// The JUnit output against the requirements of Jenkins' junit-10.xsd (the schema CI
    /// systems read it by): `testsuites` holds only `testsuite`s; a `testsuite` has `name`,
    /// `tests`, `failures`, `errors`, a decimal `time`, and holds `properties`/`testcase`;
    /// a `testcase` has `name` and holds only `failure`/`error`/`skipped`/`system-out`/`system-err`;
    /// the counts agree with the content.
    #[test]
    fn junit_output_has_the_structure_of_the_schema() {
        let out = temp_dir("junit");
        let mut a = args(vec![fixture("podinfo.yaml"), fixture("unsafe")], &out);
        a.output = TestOutput::Junit;
        let (xml, code) = test(&a);
        assert_eq!(code, 1);
        let doc = roxmltree::Document::parse(&xml).unwrap();
        let root = doc.root_element();
        assert_eq!(root.tag_name().name(), "testsuites");
        let decimal = |v: &str| {
            let (int, frac) = v.split_once('.').unwrap_or((v, ""));
            !v.is_empty()
                && int.chars().all(|c| c.is_ascii_digit())
                && frac.chars().all(|c| c.is_ascii_digit())
        };
        let mut suites = 0;
        let mut total_failures = 0;
        for suite in root.children().filter(|n| n.is_element()) {
            assert_eq!(suite.tag_name().name(), "testsuite");
            suites += 1;
            for attr in ["name", "tests", "failures", "errors"] {
                assert!(suite.attribute(attr).is_some(), "testsuite without {attr}");
            }
            assert!(decimal(suite.attribute("time").unwrap()));
            let cases: Vec<_> = suite
                .children()
                .filter(|n| n.is_element() && n.tag_name().name() == "testcase")
                .collect();
            for n in suite.children().filter(|n| n.is_element()) {
                assert!(
                    ["testcase", "properties", "system-out", "system-err"]
                        .contains(&n.tag_name().name()),
                    "{:?}",
                    n.tag_name()
                );
            }
            let mut failures = 0;
            for case in &cases {
                assert!(case.attribute("name").is_some_and(|n| !n.is_empty()));
                assert!(decimal(case.attribute("time").unwrap()));
                for n in case.children().filter(|n| n.is_element()) {
                    assert!(
                        ["failure", "error", "skipped", "system-out", "system-err"]
                            .contains(&n.tag_name().name())
                    );
                    if n.tag_name().name() == "failure" {
                        failures += 1;
                        assert!(
                            n.attribute("message")
                                .is_some_and(|m| m.contains("promoted at"))
                        );
                        assert!(n.text().unwrap().contains("Promotion completed!"));
                    }
                }
            }
            assert_eq!(suite.attribute("tests").unwrap(), cases.len().to_string());
            assert_eq!(suite.attribute("failures").unwrap(), failures.to_string());
            total_failures += failures;
        }
        assert_eq!(suites, 2);
        assert_eq!(total_failures, 1);
        assert_eq!(root.attribute("failures").unwrap(), "1");
    }
}
