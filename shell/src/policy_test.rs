//! `flagger test CANARY.yaml... [--suite FILE] [--cases N] [--seed S] [--output text|junit]`:
//! property-based tests of a team's own rollout policies (docs/policy-testing.md). Exit codes:
//! 0 every expectation held, 1 one broke (its shrunk counterexample is printed and written as a
//! trace `flagger replay` reproduces), 2 bad input, with one line naming the file and field.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use flagger_sim::Crash;
use flagger_sim::policy_test::expect::parse_suite;
use flagger_sim::policy_test::{
    Counterexample, Outcome, Plan, RestartPoint, Subject, Suite, report,
};
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
    /// With --case: the restart sweep's point of that case, the operator dying after K commands
    /// of reconcile R (as a report names it).
    #[arg(long, value_name = "R:K", requires = "case", value_parser = parse_restart)]
    pub restart: Option<Crash>,
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

/// `R:K`: reconcile R, after K of its commands.
fn parse_restart(text: &str) -> Result<Crash, String> {
    let bad = || format!("{text:?} is not RECONCILE:COMMANDS (two whole numbers, e.g. 12:3)");
    let (r, k) = text.split_once(':').ok_or_else(bad)?;
    Ok(Crash {
        reconcile: r.parse().map_err(|_| bad())?,
        keep: k.parse().map_err(|_| bad())?,
    })
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

/// What the command line names: every file holding a Canary (with its text) and every
/// MetricTemplate found, from files and from directory trees.
#[derive(Debug, Default)]
pub struct PolicyTree {
    pub canaries: Vec<(PathBuf, String)>,
    /// `(namespace, name)` of each MetricTemplate; an empty namespace is the applying one's.
    pub templates: BTreeSet<(String, String)>,
    /// A directory was searched: the tree is a whole policy set, so every `templateRef` of its
    /// Canaries must be found in it.
    pub complete: bool,
}

/// Every `.yaml`, `.yml` and `.json` file under `dir`, depth first, sorted by path at every
/// level (so a run's order does not depend on the file system). Hidden entries (`.git`) are
/// skipped, and symbolic links to directories are not followed (no loops).
fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), InputError> {
    let name = dir.display().to_string();
    let mut entries: Vec<(PathBuf, bool)> = std::fs::read_dir(dir)
        .map_err(|e| InputError::new(&name, format!("cannot read directory: {e}")))?
        .filter_map(Result::ok)
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| {
            let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
            (e.path(), is_dir)
        })
        .collect();
    entries.sort();
    for (path, is_dir) in entries {
        if is_dir {
            walk(&path, out)?;
        } else if path
            .extension()
            .is_some_and(|e| e == "yaml" || e == "yml" || e == "json")
            && path.is_file()
        {
            out.push(path);
        }
    }
    Ok(())
}

/// The documents of one file (JSON: one; YAML: each of `---`), errors naming file and line.
fn documents(file: &str, text: &str) -> Result<Vec<serde_json::Value>, InputError> {
    if text.trim_start().starts_with('{') {
        Ok(vec![flagger_sim::trace::from_json(file, text)?])
    } else {
        flagger_sim::strict::yaml_documents(file, text)
    }
}

/// A MetricTemplate as the operator needs it: named, with a provider type and a query. Errors
/// name the file, the document (when the file holds several) and the field.
fn template_key(
    file: &str,
    text: &str,
    doc: usize,
    docs: usize,
    value: serde_json::Value,
) -> Result<(String, String), InputError> {
    let prefix = if docs > 1 {
        format!("document {}: ", doc + 1)
    } else {
        String::new()
    };
    let fail = |field: &str, what: &str| {
        let e = flagger_sim::strict::located(file, text, field, what);
        InputError::new(&e.file, format!("{prefix}{}", e.what))
    };
    let t: flagger_core::api::MetricTemplate =
        flagger_sim::strict::from_value(file, text, "", value).map_err(|e| InputError {
            what: format!("{prefix}{}", e.what),
            ..e
        })?;
    if t.metadata.name.as_deref().unwrap_or("").is_empty() {
        return Err(fail("metadata.name", "a MetricTemplate needs a name"));
    }
    if t.spec.provider.type_.trim().is_empty() {
        return Err(fail("spec.provider.type", "must not be empty"));
    }
    if t.spec.query.trim().is_empty() {
        return Err(fail("spec.query", "must not be empty"));
    }
    Ok((
        t.metadata.namespace.unwrap_or_default(),
        t.metadata.name.unwrap_or_default(),
    ))
}

/// The Canaries and MetricTemplates named on the command line; directories are searched
/// recursively. Files are read in sorted path order; other kinds (AlertProviders, Ingresses)
/// and documents without a kind (suites) are skipped.
pub fn policy_tree(paths: &[PathBuf]) -> Result<PolicyTree, InputError> {
    let mut tree = PolicyTree::default();
    for path in paths {
        let name = path.display().to_string();
        if !path.is_dir() {
            let text = read(path)?;
            // A named file is a Canary (errors say what it holds instead), or a MetricTemplate.
            let docs = documents(&name, &text)?;
            let kinds: Vec<&str> = docs
                .iter()
                .filter_map(|d| d.get("kind").and_then(|k| k.as_str()))
                .collect();
            if !kinds.is_empty() && kinds.iter().all(|k| *k == "MetricTemplate") {
                let n = docs.len();
                for (i, d) in docs.into_iter().enumerate() {
                    tree.templates.insert(template_key(&name, &text, i, n, d)?);
                }
            } else {
                tree.canaries.push((path.clone(), text));
            }
            continue;
        }
        tree.complete = true;
        let mut files = Vec::new();
        walk(path, &mut files)?;
        let before = (tree.canaries.len(), tree.templates.len());
        for p in files {
            let text = read(&p)?;
            let file = p.display().to_string();
            let docs = documents(&file, &text)?;
            let n = docs.len();
            let mut canary = false;
            for (i, d) in docs.into_iter().enumerate() {
                match d.get("kind").and_then(|k| k.as_str()) {
                    Some("Canary") => canary = true,
                    Some("MetricTemplate") => {
                        tree.templates.insert(template_key(&file, &text, i, n, d)?);
                    }
                    _ => {}
                }
            }
            if canary {
                tree.canaries.push((p, text));
            }
        }
        // A directory of shared MetricTemplates alone is part of a run; an empty one is a slip.
        if (tree.canaries.len(), tree.templates.len()) == before {
            return Err(InputError::new(
                &name,
                "no Canary or MetricTemplate in this directory or below it",
            ));
        }
    }
    if tree.canaries.is_empty() {
        let name = paths
            .first()
            .map_or_else(String::new, |p| p.display().to_string());
        return Err(InputError::new(&name, "no Canary among the files given"));
    }
    Ok(tree)
}

/// Every `templateRef` of the Canary found among the tree's MetricTemplates (when the tree is a
/// whole policy set, or holds any template at all).
fn check_templates(tree: &PolicyTree, file: &str, subject: &Subject) -> Result<(), InputError> {
    if !tree.complete && tree.templates.is_empty() {
        return Ok(());
    }
    for (i, m) in subject.policy.metrics.iter().enumerate() {
        let flagger_core::command::MetricSource::Template {
            name, namespace, ..
        } = &m.source
        else {
            continue;
        };
        let found = tree.templates.contains(&(namespace.clone(), name.clone()))
            || tree.templates.contains(&(String::new(), name.clone()));
        if !found {
            let known: Vec<String> = tree
                .templates
                .iter()
                .map(|(ns, n)| {
                    if ns.is_empty() {
                        n.clone()
                    } else {
                        format!("{n}.{ns}")
                    }
                })
                .collect();
            return Err(InputError::new(
                file,
                format!(
                    "spec.analysis.metrics[{i}].templateRef: MetricTemplate {name}.{namespace} is not among the files given (MetricTemplates found: {})",
                    if known.is_empty() {
                        "none".into()
                    } else {
                        known.join(", ")
                    }
                ),
            ));
        }
    }
    Ok(())
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
    let tree = policy_tree(&args.canaries)?;
    for (path, text) in &tree.canaries {
        let file = path.display().to_string();
        let canary = canary_from_text(&file, text)?;
        let subject = Subject::new(&file, canary)?;
        check_templates(&tree, &file, &subject)?;
        let suite = match (&explicit, suite_beside(path)) {
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
            let mut o = match (args.case, args.restart) {
                (Some(case), Some(crash)) => {
                    l.plan.run_restart(args.seed, RestartPoint { case, crash })
                }
                (Some(i), None) => l.plan.run_cases(args.seed, [i]),
                (None, _) => l.plan.run(args.seed, l.cases),
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
    for (path, text) in policy_tree(&args.canaries)?.canaries {
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
            restart: None,
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
    fn a_policy_tree_is_one_run_recursively_in_path_order_with_its_metric_templates() {
        let out = temp_dir("tree-out");
        let (text, code) = test(&args(vec![fixture("")], &out));
        assert_eq!(code, 1, "{text}");
        // Subdirectories too, in sorted path order: payments/, podinfo.yaml, unsafe/.
        let heads: Vec<&str> = text
            .lines()
            .filter(|l| !l.starts_with(' ') && l.contains(": canary "))
            .map(|l| l.split(':').next().unwrap())
            .collect();
        let root = fixture("").display().to_string();
        let rel: Vec<String> = heads
            .iter()
            .map(|h| {
                h.trim_start_matches(&root)
                    .trim_start_matches('/')
                    .to_string()
            })
            .collect();
        assert_eq!(
            rel,
            [
                "payments/payments.yaml",
                "podinfo.yaml",
                "unsafe/lax-success-rate.yaml"
            ],
            "{text}"
        );
        assert!(text.contains("restart points"), "{text}");
        assert!(
            text.contains("2 of 3 Canaries kept every expectation"),
            "{text}"
        );

        // The payments Canary's templateRef must be found somewhere in the tree.
        let dir = temp_dir("tree-missing-template");
        std::fs::create_dir_all(dir.join("team")).unwrap();
        std::fs::copy(
            fixture("payments/payments.yaml"),
            dir.join("team/payments.yaml"),
        )
        .unwrap();
        let (text, code) = test(&args(vec![dir.clone()], &out));
        assert_eq!(code, 2, "{text}");
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(
            text.contains("team/payments.yaml: spec.analysis.metrics[1].templateRef: MetricTemplate error-rate.pay is not among the files given"),
            "{text}"
        );
        // Found in another branch of the tree, it runs.
        std::fs::create_dir_all(dir.join("shared/metrics")).unwrap();
        std::fs::copy(
            fixture("templates/error-rate.yaml"),
            dir.join("shared/metrics/error-rate.yaml"),
        )
        .unwrap();
        let mut a = args(vec![dir.clone()], &out);
        a.cases = Some(20);
        let (text, code) = test(&a);
        assert_eq!(code, 0, "{text}");

        // A bad MetricTemplate anywhere in the tree is exit 2 naming its file and field.
        std::fs::write(
            dir.join("shared/metrics/broken.yaml"),
            "apiVersion: flagger.app/v1beta1\nkind: MetricTemplate\nmetadata:\n  name: broken\nspec:\n  provider:\n    type: prometheus\n  query: \"\"\n",
        )
        .unwrap();
        let (text, code) = test(&args(vec![dir.clone()], &out));
        assert_eq!(code, 2, "{text}");
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(
            text.contains("shared/metrics/broken.yaml")
                && text.contains("spec.query: must not be empty"),
            "{text}"
        );
        std::fs::write(
            dir.join("shared/metrics/broken.yaml"),
            "kind: MetricTemplate\nmetadata:\n  name: broken\nspec:\n  query: up\n",
        )
        .unwrap();
        let (text, code) = test(&args(vec![dir.clone()], &out));
        assert_eq!(code, 2, "{text}");
        assert!(
            text.contains("shared/metrics/broken.yaml") && text.contains("spec.provider"),
            "{text}"
        );
        // And a YAML error names the file and line.
        std::fs::write(dir.join("shared/metrics/broken.yaml"), "kind: [unclosed\n").unwrap();
        let (text, code) = test(&args(vec![dir.clone()], &out));
        assert_eq!(code, 2, "{text}");
        assert!(text.contains("shared/metrics/broken.yaml:"), "{text}");

        let empty = temp_dir("tree-empty");
        std::fs::create_dir_all(empty.join("a/b")).unwrap();
        let (text, code) = test(&args(vec![empty], &out));
        assert_eq!(code, 2);
        assert!(
            text.contains("no Canary or MetricTemplate in this directory or below it"),
            "{text}"
        );
        let (text, code) = test(&args(vec![fixture("templates")], &out));
        assert_eq!(code, 2);
        assert!(text.contains("no Canary among the files given"), "{text}");
        // Beside a Canary, a directory of MetricTemplates alone completes the tree.
        let mut a = args(vec![fixture("payments"), fixture("templates")], &out);
        a.cases = Some(20);
        let (text, code) = test(&a);
        assert_eq!(code, 0, "{text}");
    }

    #[test]
    fn restart_flag_runs_one_point_of_the_sweep_and_needs_a_case() {
        let out = temp_dir("restart");
        let mut a = args(vec![fixture("podinfo.yaml")], &out);
        a.case = Some(0);
        a.restart = Some(parse_restart("12:3").unwrap());
        let (text, code) = test(&a);
        assert_eq!(code, 0, "{text}");
        assert!(text.contains("0 cases and 1 restart points"), "{text}");
        assert!(parse_restart("12").is_err());
        assert!(
            parse_restart("a:1")
                .unwrap_err()
                .contains("RECONCILE:COMMANDS")
        );
        #[derive(clap::Parser)]
        struct Wrapper {
            #[command(flatten)]
            test: TestArgs,
        }
        use clap::Parser as _;
        let err = Wrapper::try_parse_from(["flagger", "x.yaml", "--restart", "1:2"])
            .err()
            .expect("--restart without --case is refused")
            .to_string();
        assert!(err.contains("--case"), "{err}");
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
