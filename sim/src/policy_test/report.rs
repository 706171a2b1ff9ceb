//! What `flagger test` prints: a summary for people (each expectation, how many cases it applied
//! to, and for a broken one its shrunk counterexample with the timeline), and JUnit XML for CI
//! systems (one `testsuite` per Canary, one `testcase` per expectation, a `failure` carrying the
//! counterexample). The XML keeps to what Jenkins' junit-10.xsd requires: `testsuite` has
//! `name`, `tests`, `failures` and `errors`; `testcase` has `name`; times are plain decimals.

use std::fmt::Write as _;

use super::{Counterexample, Outcome, Tally};

/// The line that reproduces a case from its seed.
pub fn reproduce(outcome: &Outcome, c: &Counterexample) -> String {
    format!(
        "flagger test {} --seed {} --case {}",
        if outcome.file.is_empty() {
            "CANARY.yaml"
        } else {
            &outcome.file
        },
        c.seed,
        c.case
    ) + &c
        .restart
        .map(|r| format!(" --restart {}:{}", r.reconcile, r.keep))
        .unwrap_or_default()
}

/// "200 cases and 312 restart points" (with "of N boundaries" when the sweep was capped).
pub fn counts(o: &Outcome) -> String {
    let mut out = format!("{} cases", o.cases);
    if o.restart_points > 0 {
        out.push_str(&format!(" and {} restart points", o.restart_points));
        if o.restart_boundaries > o.restart_points {
            out.push_str(&format!(
                " (of {} command boundaries)",
                o.restart_boundaries
            ));
        }
    }
    out
}

fn tally_line(out: &mut String, t: &Tally) {
    let status = if t.broken > 0 { "FAIL" } else { "ok  " };
    let count = if t.applicable == 0 {
        "no case applied".to_string()
    } else if t.broken > 0 {
        format!("{} of {} cases broke it", t.broken, t.applicable)
    } else {
        format!("{} cases", t.applicable)
    };
    let _ = writeln!(out, "  {status} {:<50} {count}", t.expectation.name());
}

/// Where a counterexample's trace was written, if it was (the CLI sets it).
pub type TracePath<'a> = &'a dyn Fn(&Outcome, &Counterexample) -> Option<String>;

/// The human summary of every outcome.
pub fn text(outcomes: &[Outcome]) -> String {
    text_with(outcomes, &|_, _| None)
}

pub fn text_with(outcomes: &[Outcome], trace_path: TracePath<'_>) -> String {
    let mut out = String::new();
    for o in outcomes {
        let _ = writeln!(
            out,
            "{}: canary {}, suite {}, {} from seed {} in {:.2}s",
            if o.file.is_empty() { "-" } else { &o.file },
            o.canary,
            o.suite,
            counts(o),
            o.seed,
            o.seconds
        );
        for t in &o.tallies {
            tally_line(&mut out, t);
            let Some(c) = &t.counterexample else {
                continue;
            };
            let restart = c.restart.map_or(String::new(), |r| {
                format!(
                    ", restart after {} command(s) of reconcile {}",
                    r.keep, r.reconcile
                )
            });
            let _ = writeln!(
                out,
                "       counterexample: case {} ({}{restart}), shrunk in {} steps",
                c.case, c.scenario.family, c.shrinks
            );
            let _ = writeln!(out, "         scenario: {}", c.scenario.describe());
            let _ = writeln!(out, "         broken:   {}", c.broken.detail);
            if let Some(p) = trace_path(o, c) {
                let _ = writeln!(out, "         replay:   flagger replay {p}");
            }
            let _ = writeln!(out, "         seed:     {}", reproduce(o, c));
            for line in c.timeline.lines() {
                let _ = writeln!(out, "         | {line}");
            }
        }
    }
    let failed = outcomes.iter().filter(|o| !o.passed()).count();
    let _ = writeln!(
        out,
        "{} of {} Canaries kept every expectation",
        outcomes.len() - failed,
        outcomes.len()
    );
    out
}

/// Escapes text for XML attributes and content; control characters other than tab and newline
/// are not allowed in XML 1.0 and are dropped.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\n' | '\t' => out.push(ch),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// JUnit XML: `testsuites` / `testsuite` per Canary / `testcase` per expectation / `failure`.
pub fn junit(outcomes: &[Outcome], trace_path: TracePath<'_>) -> String {
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let tests: usize = outcomes.iter().map(|o| o.tallies.len()).sum();
    let failures: usize = outcomes
        .iter()
        .map(|o| o.tallies.iter().filter(|t| t.broken > 0).count())
        .sum();
    let time: f64 = outcomes.iter().map(|o| o.seconds).sum();
    let _ = writeln!(
        out,
        "<testsuites name=\"flagger test\" tests=\"{tests}\" failures=\"{failures}\" errors=\"0\" time=\"{time:.3}\">"
    );
    for o in outcomes {
        let failed = o.tallies.iter().filter(|t| t.broken > 0).count();
        let _ = writeln!(
            out,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failed}\" errors=\"0\" skipped=\"0\" time=\"{:.3}\" file=\"{}\">",
            escape(&o.canary),
            o.tallies.len(),
            o.seconds,
            escape(&o.file)
        );
        let _ = writeln!(out, "    <properties>");
        for (k, v) in [
            ("seed", o.seed.to_string()),
            ("cases", o.cases.to_string()),
            ("restartPoints", o.restart_points.to_string()),
            ("suite", o.suite.clone()),
        ] {
            let _ = writeln!(
                out,
                "      <property name=\"{k}\" value=\"{}\"/>",
                escape(&v)
            );
        }
        let _ = writeln!(out, "    </properties>");
        // The run's time is shared by its expectations; each case is judged for all at once.
        let each = o.seconds / o.tallies.len().max(1) as f64;
        for t in &o.tallies {
            let name = escape(&t.expectation.name());
            let class = escape(&o.canary);
            match &t.counterexample {
                None => {
                    let _ = writeln!(
                        out,
                        "    <testcase name=\"{name}\" classname=\"{class}\" time=\"{each:.3}\"/>"
                    );
                }
                Some(c) => {
                    let _ = writeln!(
                        out,
                        "    <testcase name=\"{name}\" classname=\"{class}\" time=\"{each:.3}\">"
                    );
                    let mut body = String::new();
                    let _ = writeln!(body, "{} of {} cases broke it", t.broken, t.applicable);
                    let _ = writeln!(body, "scenario: {}", c.scenario.describe());
                    if let Some(p) = trace_path(o, c) {
                        let _ = writeln!(body, "replay: flagger replay {p}");
                    }
                    let _ = writeln!(body, "seed: {}", reproduce(o, c));
                    body.push_str(&c.timeline);
                    let _ = writeln!(
                        out,
                        "      <failure type=\"expectation\" message=\"{}\">{}</failure>",
                        escape(&c.broken.detail),
                        escape(&body)
                    );
                    let _ = writeln!(out, "    </testcase>");
                }
            }
        }
        let _ = writeln!(out, "  </testsuite>");
    }
    out.push_str("</testsuites>\n");
    out
}
