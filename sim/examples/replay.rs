//! `cargo run -p flagger-sim --example replay -- TRACE [--explain|--json]`: the replay without the
//! operator binary, for working on traces.
fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(path) = args.first() else {
        eprintln!("usage: replay TRACE [--explain|--json]");
        return std::process::ExitCode::from(2);
    };
    let trace = match flagger_sim::Trace::load(std::path::Path::new(path)) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{e}");
            return std::process::ExitCode::from(2);
        }
    };
    let run = flagger_sim::replay(&trace, &flagger_sim::Options::default());
    if args.iter().any(|a| a == "--json") {
        print!("{}", flagger_sim::timeline::json(&run));
    } else {
        print!(
            "{}",
            flagger_sim::timeline::text(&run, args.iter().any(|a| a == "--explain"))
        );
    }
    std::process::ExitCode::SUCCESS
}
