//! `flagger test CANARY.yaml --against DIR`: a policy change as a regression. Every recording
//! (`.jsonl`) and trace (`.json`, `.yaml`) in DIR of the same Canary is run twice: as it ran (a
//! recording replayed exactly, a trace under its own Canary) and under the changed Canary; every
//! outcome that changes is reported (promoted before and rolled back now, or the reverse), so a
//! pull request that loosens a threshold shows its consequences. Exit codes: 0 no outcome
//! changed, 1 one did, 2 bad input.
//!
//! A file whose re-run needs an input it never recorded cannot say what the new policy would
//! have done: it is listed as not comparable, with the inputs it lacks, and changes no exit code.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use flagger_core::Phase;
use flagger_sim::trace::{CanaryObject, InputError};
use flagger_sim::{Options, Run, Trace, recorded, replay, timeline};

use crate::replay::{Input, into_trace, parse_input};

/// What one file says about the changed Canary.
enum Verdict {
    Same(Option<Phase>),
    Changed {
        before: Option<Phase>,
        now: Option<Phase>,
    },
    /// The re-run needed inputs the file does not have.
    NotComparable(String),
}

/// The file as it ran (a recording exactly, a trace under its own Canary), and the trace to
/// re-run under another Canary: read as `flagger replay` reads it.
fn load(path: &Path) -> Result<(Run, Trace), InputError> {
    let src = flagger_sim::strict::read_source(path)?;
    let input = parse_input(path, &src)?;
    let as_ran = match &input {
        Input::Recording(rec) => recorded::replay(&src.name, rec),
        Input::Trace(t) => replay(t, &Options::default()),
    };
    Ok((as_ran, into_trace(&src, input)?))
}

fn judge(path: &Path, canary: &CanaryObject, file: &str) -> Result<Verdict, InputError> {
    let (before, trace) = load(path)?;
    let changed = trace.with_canary(canary.clone(), file)?;
    let now = replay(&changed, &Options::default());
    if !now.missing.is_empty() {
        return Ok(Verdict::NotComparable(timeline::missing(&now).join("; ")));
    }
    let (b, n) = (before.final_phase(), now.final_phase());
    Ok(if b == n {
        Verdict::Same(b)
    } else {
        Verdict::Changed { before: b, now: n }
    })
}

/// The recordings and traces in `dir` of the Canary `name` (in `namespace`, when given).
fn files_of(dir: &Path, canary: &CanaryObject) -> Result<Vec<PathBuf>, InputError> {
    let shown = dir.display().to_string();
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| InputError::new(&shown, format!("--against: cannot read directory: {e}")))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .is_some_and(|e| e == "jsonl" || e == "json" || e == "yaml" || e == "yml")
        })
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let (run, _) = load(&f)?;
        let (name, namespace) = run.canary.split_once('.').unwrap_or((&run.canary, ""));
        let ns = &canary.metadata.namespace;
        if name == canary.metadata.name && (ns.is_empty() || ns == namespace) {
            out.push(f);
        }
    }
    Ok(out)
}

fn phase(p: Option<Phase>) -> &'static str {
    p.map_or("-", Phase::as_str)
}

/// The report and exit code for one changed Canary against `dir`.
pub fn against(
    dir: &Path,
    canary: &CanaryObject,
    canary_file: &str,
) -> Result<(String, u8), InputError> {
    let files = files_of(dir, canary)?;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{canary_file} against {}: {} recordings and traces of {}",
        dir.display(),
        files.len(),
        canary.metadata.name
    );
    let mut changed = 0;
    for f in &files {
        let name = f
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        match judge(f, canary, canary_file)? {
            Verdict::Same(p) => {
                let _ = writeln!(out, "  {name:<40} {} (unchanged)", phase(p));
            }
            Verdict::Changed { before, now } => {
                changed += 1;
                let _ = writeln!(
                    out,
                    "! {name:<40} {} before, {} now",
                    phase(before),
                    phase(now)
                );
            }
            Verdict::NotComparable(why) => {
                let _ = writeln!(out, "? {name:<40} not comparable: {why}");
            }
        }
    }
    let _ = writeln!(out, "{changed} outcome(s) changed");
    Ok((out, u8::from(changed > 0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recordings() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/recordings")
    }

    /// The Canary a committed recording ran with, changed by `edit`.
    fn recorded_canary(file: &str, edit: impl Fn(&mut serde_json::Value)) -> CanaryObject {
        let text = std::fs::read_to_string(recordings().join(file)).unwrap();
        let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        let s = &first["snapshot"];
        let mut doc = serde_json::json!({
            "apiVersion": "flagger.app/v1beta1",
            "kind": "Canary",
            "metadata": {"name": s["canary"]["name"], "namespace": s["canary"]["namespace"]},
            "spec": s["spec"],
        });
        edit(&mut doc);
        serde_json::from_value(doc).unwrap()
    }

    #[test]
    fn the_recorded_policy_changes_no_outcome() {
        let canary = recorded_canary("istio-promotion.jsonl", |_| {});
        let (report, code) = against(&recordings(), &canary, "same.yaml").unwrap();
        assert_eq!(code, 0, "{report}");
        assert!(
            report.contains("istio-promotion.jsonl                    Succeeded (unchanged)"),
            "{report}"
        );
        // Only this Canary's recordings (its namespace) are compared.
        assert!(
            report.contains(": 1 recordings and traces of podinfo"),
            "{report}"
        );
    }

    #[test]
    fn a_tightened_bound_shows_the_promotion_it_would_have_stopped() {
        let canary = recorded_canary("istio-promotion.jsonl", |c| {
            // The live run measured 24 ms at every step.
            c["spec"]["analysis"]["metrics"][1]["thresholdRange"]["max"] = 20.into();
        });
        let (report, code) = against(&recordings(), &canary, "tight.yaml").unwrap();
        assert_eq!(code, 1, "{report}");
        assert!(
            report.contains(
                "! istio-promotion.jsonl                    Succeeded before, Failed now"
            ),
            "{report}"
        );
        assert!(report.ends_with("1 outcome(s) changed\n"), "{report}");
    }

    #[test]
    fn a_loosened_bound_past_the_recording_is_not_comparable() {
        let canary = recorded_canary("rollback-on-errors.jsonl", |c| {
            c["spec"]["analysis"]["metrics"][0]["thresholdRange"]["min"] = 40.into();
        });
        let (report, code) = against(&recordings(), &canary, "loose.yaml").unwrap();
        // The live run stopped measuring when it rolled back; what would have followed is unknown.
        assert_eq!(code, 0, "{report}");
        assert!(
            report.contains("? rollback-on-errors.jsonl                 not comparable: metric request-success-rate: not in the trace"),
            "{report}"
        );
    }
}
