//! Property-test settings shared by the test files.

use proptest::test_runner::{Config, RngSeed};

/// 256 cases by default (PROPTEST_CASES overrides). Locally each run explores new cases; under CI
/// the seed is fixed so a result never depends on the draw (PROPTEST_RNG_SEED still overrides).
pub fn config() -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let mut config = Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    };
    if std::env::var_os("CI").is_some() && std::env::var_os("PROPTEST_RNG_SEED").is_none() {
        config.rng_seed = RngSeed::Fixed(0x5eed_f1a9);
    }
    config
}
