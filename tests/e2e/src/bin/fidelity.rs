//! `flagger-e2e-fidelity TRACES_DIR TEMPLATES_JSON [FLAGGER_BIN]`
//!
//! Re-runs the sim-to-real comparison on a scenario's recordings after the fact (for instance
//! after a change to the simulator): `TRACES_DIR` is `target/e2e-logs/<scenario>/traces/<replica>`,
//! `TEMPLATES_JSON` the scenario's `templates.json`. Exit code 1 on any difference.

use std::path::PathBuf;
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(dir), Some(templates)) = (args.first(), args.get(1)) else {
        eprintln!("usage: flagger-e2e-fidelity TRACES_DIR TEMPLATES_JSON [FLAGGER_BIN]");
        return ExitCode::from(2);
    };
    let bin = args.get(2).map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/debug/flagger")
    });
    let templates: Vec<serde_json::Value> = match std::fs::read_to_string(templates)
        .map_err(|e| e.to_string())
        .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))
    {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{templates}: {e}");
            return ExitCode::from(2);
        }
    };
    match flagger_e2e::fidelity::check_dir(dir.as_ref(), &bin, &templates).await {
        Ok(()) => {
            println!("identical; reports written next to the recordings in {dir}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
