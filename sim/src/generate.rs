//! Random but valid traces from a seed, for property tests and benchmarks.
