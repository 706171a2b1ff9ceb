//! `flagger replay TRACE`: replays a recorded or hand-written trace offline against the decision
//! core and prints the timeline. Exit codes: 0 the replay ran and kept every invariant, 1 it ran
//! but broke an invariant or stopped early, 2 the trace or the Canary is malformed.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use flagger_core::Phase;
use flagger_sim::inputs::Assume;
use flagger_sim::strict::{Source, is_stdin, read_source};
use flagger_sim::trace::{Format, InputError, canary_from_text, is_recording};
use flagger_sim::{Options, Run, Trace, replay, timeline};
use flagger_sim::{recorded, recording};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Text,
    Json,
    /// One self-contained HTML page with charts (redirect it to a file).
    Html,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ReplayArgs {
    /// The trace to replay: JSON or YAML (see docs/trace-format.md), or a `-record-traces`
    /// recording (`.jsonl`); `-` reads standard input.
    pub trace: PathBuf,
    /// Re-run the trace's inputs under this Canary instead of the recorded one (YAML or JSON;
    /// `-` reads standard input).
    #[arg(long, value_name = "FILE")]
    pub canary: Option<PathBuf>,
    /// `text` for people, `json` for machines, `html` for a page of charts.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
    /// Show, for each decision, the inputs that led to it.
    #[arg(long)]
    pub explain: bool,
    /// Seed for fault injection (overrides the trace's `faults.seed`).
    #[arg(long)]
    pub seed: Option<u64>,
    /// With `--canary`: how inputs the recording or trace lacks answer (a metric or webhook it
    /// never recorded, a step at a time nothing was measured). Without it, such a replay refuses.
    #[arg(long, value_enum, value_name = "ANSWER")]
    pub missing_inputs: Option<MissingInputs>,
    /// With `--canary`: print the file's own run and the re-run side by side, with a summary
    /// (outcome, time to decide, failed checks, traffic sent to the canary).
    #[arg(long)]
    pub compare: bool,
    /// Exit 0 only if the run ends in this phase (Succeeded, Failed, ...), 1 otherwise: a CI
    /// check needs no output parsing.
    #[arg(long, value_name = "PHASE", value_parser = parse_phase)]
    pub expect: Option<Phase>,
}

fn parse_phase(text: &str) -> Result<Phase, String> {
    serde_json::from_value(serde_json::Value::String(text.to_string())).map_err(|_| {
        "expected one of Initializing, Initialized, Waiting, Progressing, WaitingPromotion, Promoting, Finalising, Succeeded, Failed, Terminating, Terminated".to_string()
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MissingInputs {
    Pass,
    Fail,
    NoData,
}

impl From<MissingInputs> for Assume {
    fn from(m: MissingInputs) -> Assume {
        match m {
            MissingInputs::Pass => Assume::Pass,
            MissingInputs::Fail => Assume::Fail,
            MissingInputs::NoData => Assume::NoData,
        }
    }
}

/// A replay's result: the run and its rendering (with `--compare`, also the run it is compared
/// with).
#[derive(Debug)]
pub struct Replayed {
    pub run: Run,
    pub text: String,
    pub baseline: Option<Run>,
}

/// Loads the inputs and replays them; `Err` is a malformed input.
///
/// A recording on its own replays exactly (every recorded decision on its recorded inputs); with
/// `--canary` it becomes a trace that the simulator re-runs in virtual time under the new spec.
pub fn execute(args: &ReplayArgs) -> Result<Replayed, InputError> {
    if is_stdin(&args.trace) && args.canary.as_deref().is_some_and(is_stdin) {
        return Err(InputError::new(
            "stdin",
            "--canary: the trace already reads standard input; give the Canary as a file",
        ));
    }
    let src = read_source(&args.trace)?;
    let input = parse_input(&args.trace, &src)?;
    if args.compare {
        return compare(args, &src, input);
    }
    let run = match input {
        Input::Recording(rec) if args.canary.is_none() => {
            replay_recording(args, &src.file, &src.name, &rec)?
        }
        input => simulate(args, &src.file, into_trace(&src, input)?)?,
    };
    let text = match args.output {
        Output::Text => timeline::text(&run, args.explain),
        Output::Json => timeline::json(&run),
        Output::Html => flagger_sim::chart::html(&title(&run), &[(&run.trace, &run)]),
    };
    Ok(Replayed {
        run,
        text,
        baseline: None,
    })
}

/// What the file holds: a recording of a live run, or a trace.
pub(crate) enum Input {
    Recording(Vec<recording::Reconcile>),
    Trace(Box<Trace>),
}

/// Reads `src` (the text of `path`) as a recording or a trace.
pub(crate) fn parse_input(path: &Path, src: &Source) -> Result<Input, InputError> {
    if is_recording(path, &src.text) {
        return Ok(Input::Recording(recording::parse(&src.file, &src.text)?));
    }
    let trace = Trace::parse_as(&src.name, &src.file, &src.text, Format::of(path))?;
    Ok(Input::Trace(Box::new(trace)))
}

/// The input as a trace the simulator re-runs (a recording's inputs placed on its timeline).
pub(crate) fn into_trace(src: &Source, input: Input) -> Result<Trace, InputError> {
    match input {
        Input::Trace(t) => Ok(*t),
        Input::Recording(rec) => recording::to_trace(&src.name, &rec).map_err(|e| InputError {
            file: src.file.clone(),
            what: e.what,
        }),
    }
}

/// `--compare`: the file as it ran (a recording exactly, a trace under its own Canary) beside the
/// re-run under `--canary`.
fn compare(args: &ReplayArgs, src: &Source, input: Input) -> Result<Replayed, InputError> {
    let Some(canary) = &args.canary else {
        return Err(InputError::new(
            &src.file,
            "--compare: give the Canary to compare with --canary FILE",
        ));
    };
    let (baseline, name) = match &input {
        Input::Recording(rec) => (recorded::replay(&src.name, rec), "recorded"),
        Input::Trace(t) => {
            let original = ReplayArgs {
                canary: None,
                ..args.clone()
            };
            (simulate(&original, &src.file, (**t).clone())?, "original")
        }
    };
    let run = simulate(args, &src.file, into_trace(src, input)?)?;
    let right = format!("with {}", canary.display());
    let text = match args.output {
        Output::Text => flagger_sim::compare::text(&baseline, name, &run, &right),
        Output::Html => {
            flagger_sim::chart::html(&title(&run), &[(name, &baseline), (&right, &run)])
        }
        Output::Json => {
            let parse = |t: String| serde_json::from_str(&t).unwrap_or(serde_json::Value::Null);
            let doc = serde_json::json!({
                "compare": flagger_sim::compare::json(&baseline, name, &run, &right),
                "runs": [parse(timeline::json(&baseline)), parse(timeline::json(&run))],
            });
            format!(
                "{}\n",
                serde_json::to_string_pretty(&doc).unwrap_or_default()
            )
        }
    };
    Ok(Replayed {
        run,
        text,
        baseline: Some(baseline),
    })
}

fn title(run: &Run) -> String {
    format!("Replay of {}: canary {}", run.trace, run.canary)
}

fn replay_recording(
    args: &ReplayArgs,
    file: &str,
    name: &str,
    recording: &[recording::Reconcile],
) -> Result<Run, InputError> {
    if args.seed.is_some() {
        return Err(InputError::new(
            file,
            "--seed: a recording replays exactly as it ran, without faults (faults apply to traces and to --canary re-runs)",
        ));
    }
    Ok(recorded::replay(name, recording))
}

/// Replays in virtual time. A re-run under `--canary` must not quietly invent inputs: unless the
/// user said how missing inputs answer, any the new spec needs is an error naming each of them.
fn simulate(args: &ReplayArgs, file: &str, trace: Trace) -> Result<Run, InputError> {
    let mut trace = trace;
    let mut canary_file = None;
    if let Some(path) = &args.canary {
        let src = read_source(path)?;
        let canary = canary_from_text(&src.file, &src.text)?;
        trace = trace.with_canary(canary, &src.file)?;
        canary_file = Some(src.file);
    }
    let assume = args
        .missing_inputs
        .map_or(Assume::TraceDefaults, Assume::from);
    let run = replay(
        &trace,
        &Options {
            seed: args.seed,
            assume,
            ..Options::default()
        },
    );
    if let Some(canary_file) = canary_file
        && args.missing_inputs.is_none()
        && !run.missing.is_empty()
    {
        return Err(InputError::new(
            file,
            format!(
                "the Canary in {canary_file} needs inputs this file does not have: {}; choose how they answer with --missing-inputs pass|fail|no-data",
                timeline::missing(&run).join("; ")
            ),
        ));
    }
    Ok(run)
}

pub fn run(args: ReplayArgs) -> ExitCode {
    match execute(&args) {
        Err(e) => {
            eprintln!("flagger replay: {e}");
            ExitCode::from(2)
        }
        Ok(Replayed {
            run,
            text,
            baseline,
        }) => {
            print!("{text}");
            let clean = |r: &Run| r.violations.is_empty() && r.error.is_none();
            let expected = args.expect.is_none_or(|p| run.final_phase() == Some(p));
            if !expected {
                eprintln!(
                    "flagger replay: ended in {}, not {}",
                    run.final_phase().map_or("no phase", Phase::as_str),
                    args.expect.map_or("", Phase::as_str)
                );
            }
            if expected && clean(&run) && baseline.as_ref().is_none_or(clean) {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../fixtures/traces")
            .join(name)
    }

    fn args(trace: PathBuf) -> ReplayArgs {
        ReplayArgs {
            trace,
            canary: None,
            output: Output::Text,
            explain: false,
            seed: None,
            missing_inputs: None,
            compare: false,
            expect: None,
        }
    }

    fn temp(name: &str, content: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("flagger-replay-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, content).unwrap();
        path
    }

    #[test]
    fn promote_fixture_ends_succeeded_with_flaggers_event() {
        let Replayed { run, text, .. } = execute(&args(fixture("promote.json"))).unwrap();
        assert_eq!(run.final_phase(), Some(Phase::Succeeded));
        assert!(text.contains("Promotion completed! Scaling down podinfo.test"));
        assert!(text.contains("result: Succeeded"));
    }

    #[test]
    fn rollback_fixture_ends_failed() {
        let Replayed { run, text, .. } = execute(&args(fixture("rollback-errors.json"))).unwrap();
        assert_eq!(run.final_phase(), Some(Phase::Failed));
        assert!(text.contains("Canary failed! Scaling down podinfo.test"));
    }

    #[test]
    fn malformed_trace_is_one_line_naming_file_and_field() {
        let path = temp(
            "bad-duration.json",
            &std::fs::read_to_string(fixture("promote.json"))
                .unwrap()
                .replace("\"duration\": \"30m\"", "\"duration\": \"30 minutes\""),
        );
        let err = execute(&args(path)).unwrap_err().to_string();
        assert!(
            err.contains("bad-duration.json:5: duration: invalid duration \"30 minutes\""),
            "{err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
        let path = temp("not-json.json", "{ \"version\": 1, ");
        let err = execute(&args(path)).unwrap_err().to_string();
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains("not-json.json"), "{err}");
    }

    #[test]
    fn invalid_spec_in_trace_names_the_spec_field() {
        let text = std::fs::read_to_string(fixture("promote.json"))
            .unwrap()
            .replace("\"stepWeight\": 10", "\"stepWeight\": 150");
        let err = execute(&args(temp("bad-step.json", &text)))
            .unwrap_err()
            .to_string();
        assert!(err.contains("canary.spec.analysis.stepWeight"), "{err}");
        assert!(err.contains("150"), "{err}");
    }

    #[test]
    fn canary_override_changes_the_outcome() {
        // The same failing success rate: threshold 5 rolls back, so does 1 — but sooner.
        let base = execute(&args(fixture("rollback-errors.json"))).unwrap().run;
        let yaml = r#"
apiVersion: flagger.app/v1beta1
kind: Canary
metadata:
  name: podinfo
  namespace: test
spec:
  provider: istio
  targetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: podinfo
  progressDeadlineSeconds: 60
  service:
    port: 9898
  analysis:
    interval: 1m
    threshold: 1
    maxWeight: 50
    stepWeight: 10
    metrics:
      - name: request-success-rate
        thresholdRange:
          min: 99
        interval: 1m
"#;
        let mut a = args(fixture("rollback-errors.json"));
        a.canary = Some(temp("threshold-1.yaml", yaml));
        let over = execute(&a).unwrap().run;
        let failed_at = |r: &Run| {
            r.steps
                .iter()
                .find(|s| s.after.phase == Some(Phase::Failed))
                .map(|s| s.at)
                .unwrap()
        };
        assert!(failed_at(&over) < failed_at(&base));
        // A threshold of 1 with a 91.5% success rate still rolls back, and a lower bound the
        // metric satisfies lets the same inputs promote.
        let lenient = yaml.replace("min: 99", "min: 90");
        a.canary = Some(temp("lenient.yaml", &lenient));
        let promoted = execute(&a).unwrap().run;
        assert_eq!(promoted.final_phase(), Some(Phase::Succeeded));
    }

    const WITH_NEW_METRIC: &str = r#"
apiVersion: flagger.app/v1beta1
kind: Canary
metadata:
  name: podinfo
  namespace: test
spec:
  targetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: podinfo
  service:
    port: 9898
  analysis:
    interval: 1m
    threshold: 5
    maxWeight: 50
    stepWeight: 10
    metrics:
      - name: request-success-rate
        thresholdRange:
          min: 1
        interval: 1m
      - name: error-budget
        thresholdRange:
          max: 5
        templateRef:
          name: error-budget
        interval: 1m
    webhooks:
      - name: smoke
        type: pre-rollout
        url: http://127.0.0.1:1/
"#;

    #[test]
    fn what_if_with_inputs_the_trace_lacks_refuses_and_names_them() {
        let mut a = args(fixture("rollback-errors.json"));
        a.canary = Some(temp("new-metric.yaml", WITH_NEW_METRIC));
        let err = execute(&a).unwrap_err().to_string();
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains("rollback-errors.json"), "{err}");
        assert!(
            err.contains("metric error-budget: not in the trace"),
            "{err}"
        );
        assert!(
            err.contains("webhook pre-rollout/smoke: not in the trace"),
            "{err}"
        );
        assert!(!err.contains("request-success-rate"), "{err}");
        assert!(err.contains("--missing-inputs pass|fail|no-data"), "{err}");
        let code = run(a);
        assert_eq!(format!("{code:?}"), format!("{:?}", ExitCode::from(2)));
    }

    #[test]
    fn missing_inputs_answer_as_the_user_chose_and_are_listed_first() {
        let mut a = args(fixture("rollback-errors.json"));
        a.canary = Some(temp("new-metric-choice.yaml", WITH_NEW_METRIC));
        a.missing_inputs = Some(MissingInputs::Pass);
        let passed = execute(&a).unwrap();
        assert_eq!(passed.run.final_phase(), Some(Phase::Succeeded));
        // Before the timeline's header line, in the order first asked.
        let head: Vec<&str> = passed.text.lines().skip(1).take(2).collect();
        assert_eq!(
            head,
            [
                "assumed: webhook pre-rollout/smoke: not in the trace, answered passed (at +3m0s)",
                "assumed: metric error-budget: not in the trace, answered value 5 (5 times, +4m0s to +8m0s)"
            ],
            "{}",
            passed.text
        );
        a.missing_inputs = Some(MissingInputs::Fail);
        let failed = execute(&a).unwrap();
        assert_eq!(failed.run.final_phase(), Some(Phase::Failed));
        a.missing_inputs = Some(MissingInputs::NoData);
        let no_data = execute(&a).unwrap();
        assert_eq!(no_data.run.final_phase(), Some(Phase::Failed));
        // An unreachable pre-rollout webhook halts every run before a metric is asked.
        assert!(
            no_data
                .text
                .contains("Halt podinfo.test advancement pre-rollout check smoke failed no answer"),
            "{}",
            no_data.text
        );
    }

    #[test]
    fn compare_prints_both_runs_and_a_summary() {
        let mut a = args(fixture("rollback-errors.json"));
        a.canary = Some(temp(
            "strict.yaml",
            &WITH_NEW_METRIC.replace("min: 1", "min: 99"),
        ));
        a.missing_inputs = Some(MissingInputs::Pass);
        a.compare = true;
        let out = execute(&a).unwrap();
        assert!(out.baseline.is_some());
        assert!(
            out.text.starts_with("compare rollback-errors.json"),
            "{}",
            out.text
        );
        assert!(out.text.contains("original"), "{}", out.text);
        for row in [
            "outcome",
            "decided after",
            "failed checks",
            "traffic to canary",
            "to a failing canary",
        ] {
            assert!(
                out.text
                    .lines()
                    .any(|l| l.get(2..).is_some_and(|r| r.starts_with(row))),
                "{row}: {}",
                out.text
            );
        }
        a.compare = true;
        a.canary = None;
        let err = execute(&a).unwrap_err().to_string();
        assert!(err.contains("--compare: give the Canary"), "{err}");
    }

    #[test]
    fn expect_makes_the_exit_code_say_whether_the_run_ended_there() {
        let code = |phase| {
            let mut a = args(fixture("rollback-errors.json"));
            a.expect = Some(phase);
            format!("{:?}", run(a))
        };
        assert_eq!(code(Phase::Failed), format!("{:?}", ExitCode::SUCCESS));
        assert_eq!(code(Phase::Succeeded), format!("{:?}", ExitCode::from(1)));
        assert_eq!(parse_phase("WaitingPromotion"), Ok(Phase::WaitingPromotion));
        assert!(parse_phase("Done").unwrap_err().contains("Succeeded"));
    }

    /// The recordings the real-cluster suite wrote, replayed raw through the command.
    #[test]
    fn committed_recordings_replay_exactly_to_their_outcome() {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/recordings");
        for (file, phase) in [
            ("istio-promotion.jsonl", Phase::Succeeded),
            ("rollback-on-errors.jsonl", Phase::Failed),
            ("confirm-promotion-gate.jsonl", Phase::Succeeded),
        ] {
            let mut a = args(dir.join(file));
            a.expect = Some(phase);
            assert_eq!(
                format!("{:?}", run(a)),
                format!("{:?}", ExitCode::SUCCESS),
                "{file}"
            );
        }
    }

    #[test]
    fn malformed_canary_override_names_the_file_and_field() {
        let mut a = args(fixture("promote.json"));
        a.canary = Some(temp(
            "bad.yaml",
            "apiVersion: flagger.app/v1beta1\nkind: Canary\nmetadata:\n  name: podinfo\nspec:\n  targetRef:\n    name: podinfo\n  service:\n    port: 9898\n  analysis:\n    interval: soon\n    stepWeight: 10\n",
        ));
        let err = execute(&a).unwrap_err().to_string();
        assert!(err.contains("bad.yaml"), "{err}");
        assert!(err.contains("spec.analysis.interval"), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        a.canary = Some(temp("broken.yaml", "kind: [unclosed\n"));
        let err = execute(&a).unwrap_err().to_string();
        assert!(err.contains("broken.yaml:1: not valid YAML"), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }

    fn assert_one_line_exit_2(a: ReplayArgs, file: &str, expected: &str) {
        let err = execute(&a).unwrap_err().to_string();
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with(file), "{err}");
        assert!(err.contains(expected), "expected {expected:?} in {err}");
        assert!(!err.contains('`'), "library wording: {err}");
        let code = run(a);
        assert_eq!(format!("{code:?}"), format!("{:?}", ExitCode::from(2)));
    }

    const OVERRIDE: &str = "apiVersion: flagger.app/v1beta1\nkind: Canary\nmetadata:\n  name: podinfo\nspec:\n  targetRef:\n    name: podinfo\n  service:\n    port: 9898\n  analysis:\n    interval: 1m\n    stepWeight: 10\n";

    #[test]
    fn an_unknown_canary_field_is_named_with_its_line_and_the_nearest_known_one() {
        let mut a = args(fixture("promote.json"));
        let path = temp("typo.yaml", &OVERRIDE.replace("stepWeight:", "stepWeigth:"));
        a.canary = Some(path.clone());
        assert_one_line_exit_2(
            a,
            &format!("{}:12: ", path.display()),
            "spec.analysis.stepWeigth: unknown field, did you mean stepWeight?",
        );
        // The trace's own Canary is read as strictly.
        let text = std::fs::read_to_string(fixture("promote.json"))
            .unwrap()
            .replace("\"stepWeight\": 10", "\"stepWieght\": 10");
        let path = temp("typo-in-trace.json", &text);
        assert_one_line_exit_2(
            args(path.clone()),
            &path.display().to_string(),
            "canary.spec.analysis.stepWieght: unknown field, did you mean stepWeight?",
        );
    }

    #[test]
    fn a_canary_file_of_another_kind_or_with_several_canaries_is_refused() {
        let examples = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/examples");
        let mut a = args(fixture("promote.json"));
        a.canary = Some(examples.join("metric-template.yaml"));
        assert_one_line_exit_2(
            a.clone(),
            &examples.join("metric-template.yaml").display().to_string(),
            "holds a MetricTemplate, not a Canary",
        );
        let two = format!(
            "{OVERRIDE}---\n{}---\napiVersion: v1\nkind: Service\nmetadata:\n  name: x\n",
            OVERRIDE.replace("name: podinfo\nspec", "name: podinfo-b\nspec")
        );
        let path = temp("two.yaml", &two);
        a.canary = Some(path.clone());
        assert_one_line_exit_2(
            a.clone(),
            &path.display().to_string(),
            "holds 2 Canaries (podinfo, podinfo-b); give a file with one of them",
        );
        let none = "apiVersion: v1\nkind: Service\nmetadata:\n  name: x\n---\napiVersion: flagger.app/v1beta1\nkind: AlertProvider\nmetadata:\n  name: y\n";
        let path = temp("none.yaml", none);
        a.canary = Some(path.clone());
        assert_one_line_exit_2(
            a.clone(),
            &path.display().to_string(),
            "holds a Service and an AlertProvider, not a Canary",
        );
        // A Canary next to its Ingress, as Flagger's NGINX example is written, is picked out.
        let with_ingress = format!(
            "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: podinfo\n---\n{}",
            OVERRIDE.replace("stepWeight: 10", "stepWeight: 25")
        );
        a.canary = Some(temp("with-ingress.yaml", &with_ingress));
        let out = execute(&a).unwrap();
        assert!(
            out.text.contains("Advance podinfo.test canary weight 25"),
            "{}",
            out.text
        );
    }

    #[test]
    fn answers_for_inputs_the_canary_lacks_are_refused() {
        let text = std::fs::read_to_string(fixture("promote.json")).unwrap();
        let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
        v["answers"] = serde_json::json!([
            {"at": "0s", "key": "confirm-promotion/approve", "hook": {"result": "passed"}}
        ]);
        let path = temp(
            "stray-answer.json",
            &serde_json::to_string_pretty(&v).unwrap(),
        );
        assert_one_line_exit_2(
            args(path.clone()),
            &path.display().to_string(),
            "answers[0].key: \"confirm-promotion/approve\" is not a webhook of the Canary",
        );
    }

    #[test]
    fn a_year_long_trace_is_refused_naming_its_length() {
        let text = std::fs::read_to_string(fixture("confirm-promotion-gate.json"))
            .unwrap()
            .replace("\"duration\": \"30m\"", "\"duration\": \"8760h\"");
        let path = temp("year.json", &text);
        assert_one_line_exit_2(
            args(path.clone()),
            &format!("{}:5: ", path.display()),
            "duration: the replay would cover 8760h0m0s, more than the 31 days a replay may cover",
        );
    }

    #[test]
    fn a_fifo_is_refused_instead_of_blocking() {
        let dir = std::env::temp_dir().join(format!("flagger-replay-fifo-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("trace.json");
        let _ = std::fs::remove_file(&fifo);
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        assert!(made.is_ok_and(|s| s.success()), "mkfifo is needed");
        assert_one_line_exit_2(
            args(fifo.clone()),
            &fifo.display().to_string(),
            "is not a regular file",
        );
        let mut a = args(fixture("promote.json"));
        a.canary = Some(fifo.clone());
        assert_one_line_exit_2(a, &fifo.display().to_string(), "is not a regular file");
    }

    #[test]
    fn a_yaml_trace_replays_like_its_json() {
        let json = std::fs::read_to_string(fixture("promote.json")).unwrap();
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        let yaml = serde_saphyr::to_string(&v).unwrap();
        assert!(!yaml.trim_start().starts_with('{'), "{yaml}");
        let from_json = execute(&args(fixture("promote.json"))).unwrap().text;
        let from_yaml = execute(&args(temp("promote.yaml", &yaml))).unwrap().text;
        assert_eq!(from_yaml.replace("promote.yaml", "promote.json"), from_json);
        // Without an extension (as from standard input) the content decides.
        let from_plain = execute(&args(temp("promote-trace", &yaml))).unwrap().text;
        assert_eq!(
            from_plain.replace("promote-trace", "promote.json"),
            from_json
        );
        let bad = yaml.replace("stepWeight: 10", "stepWeight: ten");
        let path = temp("bad.yaml", &bad);
        assert_one_line_exit_2(
            args(path.clone()),
            &path.display().to_string(),
            "canary.spec.analysis.stepWeight: expected a whole number, found the string \"ten\"",
        );
    }

    #[test]
    fn both_inputs_on_standard_input_is_refused() {
        let mut a = args(PathBuf::from("-"));
        a.canary = Some(PathBuf::from("-"));
        assert_one_line_exit_2(
            a,
            "stdin",
            "--canary: the trace already reads standard input",
        );
    }

    #[test]
    fn exit_code_two_for_malformed_input() {
        let code = run(args(temp("empty.json", "")));
        assert_eq!(format!("{code:?}"), format!("{:?}", ExitCode::from(2)));
    }

    #[test]
    fn a_recording_replays_and_is_verified() {
        let trace = flagger_sim::Trace::load(&fixture("promote.json")).unwrap();
        let run = flagger_sim::replay(
            &trace,
            &flagger_sim::Options {
                record: true,
                ..flagger_sim::Options::default()
            },
        );
        let lines: Vec<String> = run
            .recording
            .iter()
            .map(|r| serde_json::to_string(r).unwrap())
            .collect();
        let path = temp("promote.jsonl", &lines.join("\n"));
        let out = execute(&args(path)).unwrap();
        assert_eq!(out.run.error, None, "{}", out.text);
        assert_eq!(out.run.final_phase(), Some(Phase::Succeeded));
        assert!(
            out.text
                .contains("Promotion completed! Scaling down podinfo.test")
        );
    }
}
