//! `cargo run -p flagger-sim --example replay -- TRACE [--explain] [--json] [--crash R:K]`: the
//! replay without the operator binary, for working on traces and the core. `--crash R:K` stops
//! reconcile R after K of its commands and restarts (as the crash-safety test does).
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(path) = args.first() else {
        eprintln!("usage: replay TRACE [--explain] [--json] [--crash R:K]");
        return ExitCode::from(2);
    };
    let trace = match flagger_sim::Trace::load(std::path::Path::new(path)) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let crash = args
        .iter()
        .position(|a| a == "--crash")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.split_once(':'))
        .and_then(|(r, k)| {
            Some(flagger_sim::Crash {
                reconcile: r.parse().ok()?,
                keep: k.parse().ok()?,
            })
        });
    let run = flagger_sim::replay(
        &trace,
        &flagger_sim::Options {
            crash,
            ..flagger_sim::Options::default()
        },
    );
    if args.iter().any(|a| a == "--json") {
        print!("{}", flagger_sim::timeline::json(&run));
    } else {
        let explain = args.iter().any(|a| a == "--explain");
        print!("{}", flagger_sim::timeline::text(&run, explain));
    }
    if run.violations.is_empty() && run.error.is_none() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
