//! `flagger-e2e-fidelity TRACES_DIR [FLAGGER_BIN]`
//!
//! Re-runs the replay-fidelity check on a scenario's recordings after the fact (for instance
//! after a change to the replay): `TRACES_DIR` is `target/e2e-logs/<scenario>/traces/<replica>`.
//! Exit code 1 on any difference.

use std::path::PathBuf;
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(dir) = args.first() else {
        eprintln!("usage: flagger-e2e-fidelity TRACES_DIR [FLAGGER_BIN]");
        return ExitCode::from(2);
    };
    let bin = args.get(1).map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/debug/flagger")
    });
    match flagger_e2e::fidelity::check_dir(dir.as_ref(), &bin).await {
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
