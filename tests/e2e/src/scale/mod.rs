//! The scale benchmark: N Canaries initialized and then idle on the real control plane, measured
//! for this operator and for Flagger v1.44.0 one after the other in one run, in fresh namespaces
//! (the previous implementation's namespace is deleted, and its deletion waited for, first).
//!
//! Per implementation: start the operator; create K probe Canaries and let them initialize;
//! create the other N−K at once and, as soon as they are created, give the K probes a new
//! revision (first step under initialization load); wait until all N are Initialized and the
//! probes have Succeeded; wait one interval; measure an idle window; give K other Canaries a
//! new revision (first step while idle); stop the operator.

pub mod apiserver_metrics;
pub mod canary_watch;
pub mod operators;
pub mod process_stats;
pub mod report;
mod run;
pub mod workload;

use std::path::PathBuf;
use std::time::Duration;

pub use operators::Implementation;
pub use run::{run, run_side_by_side};

#[derive(Debug, Clone)]
pub struct Options {
    pub canaries: usize,
    /// Unrelated Deployments, ConfigMaps and Secrets (each) beside the Canaries.
    pub unrelated: usize,
    pub window: Duration,
    /// Canaries given a new revision under load, and as many others while idle.
    pub revisions: usize,
    pub implementations: Vec<Implementation>,
    pub kubeconfig: PathBuf,
    pub ours_bin: PathBuf,
    pub flagger_bin: Option<PathBuf>,
    /// Operator logs go here.
    pub logs: PathBuf,
    /// How long initialization, namespace deletion and each revision may take before the run fails.
    pub timeout: Duration,
    /// Before the idle window, wait for the probes to finish their analysis and then one more
    /// interval, so that the window is idle. Only the smoke test skips it.
    pub quiesce: bool,
}

/// What one implementation measured.
#[derive(Debug, Clone, Default)]
pub struct Figures {
    pub canaries: usize,
    pub window_s: f64,
    /// Resource requests the API server answered during the idle window, Leases left out (see
    /// [`apiserver_metrics::RequestCounts::without_leases`]).
    pub idle_requests: f64,
    /// The largest kinds of them (verb resource code: count).
    pub idle_breakdown: String,
    /// CPU seconds during the idle window, and from start to the end of the idle window.
    pub idle_cpu_s: f64,
    pub total_cpu_s: f64,
    /// RSS right after start, at the end of the idle window, and the peak (VmHWM) by then, MiB.
    pub start_rss_mib: f64,
    pub end_rss_mib: f64,
    pub peak_rss_mib: f64,
    /// From the creation of the N−K bulk Canaries to the last of them Initialized.
    pub init_s: f64,
    /// Resource requests the API server answered in that time (the probes' new revisions
    /// included), and the largest kinds of them.
    pub init_requests: f64,
    pub init_breakdown: String,
    pub bulk: usize,
    /// 5xx and 429 answers of the API server from operator start to its stop.
    pub server_errors: f64,
    pub throttled: f64,
    /// The largest kinds of answers with a code of 400 or above, from start to stop.
    pub failures: String,
    /// Seconds from a new revision to `Progressing` and to the first weight above 0, per
    /// probed Canary: under initialization load, then while idle.
    pub load_noticed_s: Vec<f64>,
    pub load_first_step_s: Vec<f64>,
    pub idle_noticed_s: Vec<f64>,
    pub idle_first_step_s: Vec<f64>,
}

/// The analysis interval of every benchmark Canary, in seconds.
pub const INTERVAL_S: f64 = 10.0;

impl Figures {
    /// API requests per Canary per analysis interval while idle.
    pub fn requests_per_canary_interval(&self) -> f64 {
        if self.canaries == 0 || self.window_s == 0.0 {
            return 0.0;
        }
        self.idle_requests / self.canaries as f64 / (self.window_s / INTERVAL_S)
    }
}
