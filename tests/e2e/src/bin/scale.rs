//! `flagger-e2e-scale`: the scale benchmark (see `flagger_e2e::scale`), normally started by
//! `tests/e2e/scale.sh`, which starts and stops the test cluster.
//!
//! ```text
//! flagger-e2e-scale [--canaries N] [--only ours|flagger] [--unrelated M] [--window SECONDS]
//!                   [--revisions K] [--timeout SECONDS] [--ours-bin PATH] [--flagger-bin PATH]
//!                   [--logs DIR]
//! ```
//! `KUBECONFIG` names the cluster; `FLAGGER_BIN` and `FLAGGER_E2E_FLAGGER_GO` the binaries when
//! the flags do not.

use std::path::PathBuf;
use std::time::Duration;

use flagger_e2e::Result;
use flagger_e2e::scale::{self, Implementation, Options};

fn usage() -> String {
    "usage: flagger-e2e-scale [--canaries N] [--only ours|flagger] [--unrelated M] \
     [--window SECONDS] [--revisions K] [--timeout SECONDS] [--ours-bin PATH] \
     [--flagger-bin PATH] [--logs DIR]"
        .into()
}

fn parse(args: &[String]) -> Result<Options> {
    let env_path = |v: &str| std::env::var_os(v).map(PathBuf::from);
    let mut o = Options {
        canaries: 100,
        unrelated: 0,
        window: Duration::from_secs(120),
        revisions: 10,
        implementations: vec![Implementation::Ours, Implementation::Flagger],
        kubeconfig: env_path("KUBECONFIG").ok_or("KUBECONFIG is not set")?,
        ours_bin: env_path("FLAGGER_BIN").unwrap_or_else(|| "target/release/flagger".into()),
        flagger_bin: env_path("FLAGGER_E2E_FLAGGER_GO"),
        logs: "target/scale-logs".into(),
        timeout: Duration::from_secs(1800),
        quiesce: true,
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .ok_or_else(|| format!("{flag} needs a value\n{}", usage()))
        };
        let secs = |v: &String| {
            v.parse()
                .map(Duration::from_secs)
                .map_err(|e| format!("{flag} {v}: {e}"))
        };
        match flag.as_str() {
            "--canaries" => o.canaries = value()?.parse()?,
            "--unrelated" => o.unrelated = value()?.parse()?,
            "--revisions" => o.revisions = value()?.parse()?,
            "--window" => o.window = secs(value()?)?,
            "--timeout" => o.timeout = secs(value()?)?,
            "--ours-bin" => o.ours_bin = value()?.into(),
            "--flagger-bin" => o.flagger_bin = Some(value()?.into()),
            "--logs" => o.logs = value()?.into(),
            "--only" => {
                o.implementations = match value()?.as_str() {
                    "ours" => vec![Implementation::Ours],
                    "flagger" => vec![Implementation::Flagger],
                    other => return Err(format!("--only {other}: ours or flagger").into()),
                }
            }
            "-h" | "--help" => {
                println!("{}", usage());
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other}\n{}", usage()).into()),
        }
    }
    if o.canaries == 0 {
        return Err("--canaries must be at least 1".into());
    }
    Ok(o)
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opts = parse(&args)?;
    let results = scale::run(&opts).await?;
    println!(
        "\n{} canaries (bulk of {} created at once after {} probes), {} unrelated objects of each kind, idle window {} s, ours = {}",
        opts.canaries,
        results.first().map(|(_, f)| f.bulk).unwrap_or(0),
        opts.revisions.min(opts.canaries / 2),
        opts.unrelated,
        opts.window.as_secs(),
        opts.ours_bin.display()
    );
    print!("{}", scale::report::table(&results));
    print!("{}", scale::report::breakdown(&results));
    Ok(())
}
