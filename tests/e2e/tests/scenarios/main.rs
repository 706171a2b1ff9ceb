//! The real-cluster scenarios. Each runs in its own namespace with its own operator process and
//! needs the processes `tests/e2e/run.sh` starts, so they are `#[ignore]`d for a plain
//! `cargo test` and run by `run.sh` with `--include-ignored --test-threads=1`.

mod common;

mod ab_testing;
mod blue_green;
mod chart;
mod confirm_promotion;
mod drift;
mod leader_election;
mod migration;
mod missing_target;
mod progress_deadline;
mod prometheus_down;
mod promotion;
mod rejected;
mod restart;
mod rollback;
mod scale_smoke;
mod scoped_caches;
mod session_affinity;
mod shards;
mod sigkill;
