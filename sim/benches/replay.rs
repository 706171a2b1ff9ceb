//! Replaying a 24-hour trace at a 10 s interval (8,640 analysis steps): prints the total time.
//! Target: under 20 ms. Run with `cargo bench -p flagger-sim --bench replay`.

use std::time::Instant;

// The allocator the `flagger` binary ships with (shell/src/main.rs), so the figures are those
// of `flagger replay`.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use flagger_sim::generate::day_at_ten_seconds;
use flagger_sim::{Options, replay};

fn main() {
    let trace = day_at_ten_seconds();
    let run = replay(&trace, &Options::default());
    assert!(run.error.is_none() && run.violations.is_empty());
    let steps = run.reconciles();
    assert!(steps >= 8_640, "only {steps} reconciles");
    let mut samples: Vec<f64> = (0..11)
        .map(|_| {
            let t = Instant::now();
            let run = replay(&trace, &Options::default());
            std::hint::black_box(&run);
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    println!(
        "replay 24h at 10s ({steps} reconciles): median {:.1} ms total (min {:.1}, max {:.1}; target < 20 ms)",
        samples[samples.len() / 2],
        samples[0],
        samples[samples.len() - 1]
    );
}
