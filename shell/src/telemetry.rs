//! Structured logs: one JSON object per line on stderr, as Flagger's zap logger writes them, so
//! log pipelines that parse Flagger's output keep working.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::FmtSpan;

/// Installs the global subscriber. `RUST_LOG`, when set, refines `level` (e.g. `info,kube=debug`)
/// without changing the flag's meaning for everything else.
pub fn init(level: &str) {
    let mut filter = EnvFilter::new(level);
    if let Ok(extra) = std::env::var("RUST_LOG") {
        for directive in extra.split(',').filter(|d| !d.is_empty()) {
            match directive.parse() {
                Ok(d) => filter = filter.add_directive(d),
                Err(e) => eprintln!("ignoring RUST_LOG directive {directive:?}: {e}"),
            }
        }
    }
    // A second init (tests, an embedding binary) keeps the first subscriber; that is harmless.
    let _ = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_span_events(FmtSpan::NONE)
        .with_target(true)
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .try_init();
}
