//! Command-line flags, spelled as Flagger spells them so its Helm chart and manifests keep working.
//!
//! Flagger uses Go's `flag` package: one dash (`-metrics-server=http://…`, `-log-level info`) and
//! booleans written `-flag`, `-flag=true` or `-flag=false`. clap wants two dashes, so arguments go
//! through [`normalize_args`] first; both spellings then parse the same way.
//!
//! [`RunArgs`] is a `clap::Args` group meant to be flattened into the binary's top-level parser.
//! That parser (in `main.rs`) owns `-version`, because printing the version must not require the
//! other flags to be valid. [`parse_run_args`] parses a bare `RunArgs` for callers without one.
//!
//! Environment fallbacks (`METRICS_SERVER`, `SLACK_*`, `MSTEAMS_*`, `EVENT_WEBHOOK_URL`) apply
//! when the flag is absent; a flag on the command line wins over the environment (Flagger lets
//! the `SLACK_*`/`MSTEAMS_*` variables win instead). `KUBECONFIG` is honoured through kube's
//! configuration inference when `-kubeconfig` is absent.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{ArgAction, Args, ValueEnum};
use flagger_core::OperatorConfig;
use flagger_core::api::parse_go_duration;
use flagger_core::policy::Provider;
use jiff::SignedDuration;

/// Flags of the operator's `run` mode.
#[derive(Args, Debug, Clone, PartialEq)]
pub struct RunArgs {
    /// Path to a kubeconfig; only needed out of cluster. When absent, the configuration is
    /// inferred: `KUBECONFIG` (which may list several files), then `~/.kube/config`, then the
    /// in-cluster service account. Not bound to `KUBECONFIG` itself, since that may be a list.
    #[arg(long, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,

    /// Address of the Kubernetes API server; overrides the kubeconfig's.
    #[arg(long, value_parser = url_value, value_name = "URL")]
    pub master: Option<String>,

    /// Client-side rate limit towards the API server (requests per second), for each of three
    /// families of API groups: Kubernetes', `flagger.app`, the routers' (as Flagger's clientsets).
    #[arg(long, default_value_t = 100)]
    pub kubeconfig_qps: u32,

    /// Requests allowed above `-kubeconfig-qps` in a burst.
    #[arg(long, default_value_t = 250)]
    pub kubeconfig_burst: u32,

    /// Writes to the API server in flight at most (ours; Flagger has no such bound). The bound
    /// halves when the server answers 429 or 5xx or a write takes over 5 s, and grows back by
    /// one per write that goes well.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_writes_in_flight: u32,

    /// Canaries initialized at once (ours; Flagger has no such bound). Reconciles of Canaries
    /// not yet initialized wait for one of these slots and their writes yield to those of
    /// Canaries already initialized, so a new revision is acted on at once even while
    /// thousands of Canaries initialize.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_concurrent_initializations: u32,

    /// Prometheus used by the built-in metrics and inline queries (a Canary's `metricsServer`
    /// overrides it).
    #[arg(long, env = "METRICS_SERVER", default_value = "http://prometheus:9090", value_parser = url_value, value_name = "URL")]
    pub metrics_server: String,

    /// Routing provider used when a Canary names none: istio, gatewayapi[:v1|:v1beta1], kubernetes.
    #[arg(long, default_value = "istio", value_parser = mesh_provider_value)]
    pub mesh_provider: String,

    /// Watch Canaries in this namespace only (empty: all namespaces).
    #[arg(long, default_value = "")]
    pub namespace: String,

    #[arg(long, value_enum, default_value_t = LogLevel::Info)]
    pub log_level: LogLevel,

    /// Port serving `/metrics` and `/healthz`.
    #[arg(long, default_value_t = 8080)]
    pub port: u16,

    /// Address `-port` listens on: every interface, as Flagger, so Prometheus can scrape the
    /// pod; `127.0.0.1` keeps a local run off the network.
    #[arg(long, default_value = "0.0.0.0", value_name = "IP")]
    pub listen_address: std::net::IpAddr,

    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true", value_name = "BOOL")]
    pub enable_leader_election: bool,

    /// Namespace of the leader-election Lease, and of the shard Leases with `-shards`.
    #[arg(long, default_value = "kube-system")]
    pub leader_election_namespace: String,

    /// Spread Canaries over several active replicas (ours; Flagger runs one): N shards, each
    /// with a Lease `flagger-shard-<i>`; every replica takes its fair share. 0: off. Give every
    /// replica the same value; use at least as many shards as replicas (a few times more
    /// spreads the load more evenly). Excludes `-enable-leader-election`.
    #[arg(long, default_value_t = 0, value_name = "N", value_parser = clap::value_parser!(u32).range(0..=1024))]
    pub shards: u32,

    /// What a Canary's shard is computed from: `name` (namespace/name) or `namespace` (all
    /// Canaries of a namespace on one replica).
    #[arg(long, value_enum, default_value_t = crate::shard::ShardBy::Name, value_name = "name|namespace")]
    pub shard_by: crate::shard::ShardBy,

    /// With `-shards`: how long a replica's shards stay its own without renewal; a killed
    /// replica's Canaries resume elsewhere within about this long. Whole seconds, at least 3s.
    #[arg(long, default_value = "15s", value_parser = lease_duration_value, value_name = "DURATION")]
    pub shard_lease_duration: std::time::Duration,

    /// Pod labels that may serve as the target's selector, tried in order.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "app,name,app.kubernetes.io/name"
    )]
    pub selector_labels: Vec<String>,

    /// Copy the ConfigMaps and Secrets a target uses into `-primary` copies on promotion.
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_value = "true", default_missing_value = "true", value_name = "BOOL")]
    pub enable_config_tracking: bool,

    /// Prefixes of labels copied from the target to the primary (`*`: all).
    #[arg(long, value_delimiter = ',', default_value = "")]
    pub include_label_prefix: Vec<String>,

    /// Slack incoming-webhook URL for the global notifier.
    #[arg(long, env = "SLACK_URL", value_parser = optional_url_value, value_name = "URL")]
    pub slack_url: Option<String>,

    /// Bearer token sent with Slack messages.
    #[arg(long, env = "SLACK_TOKEN", hide_env_values = true)]
    pub slack_token: Option<String>,

    #[arg(long, env = "SLACK_PROXY_URL", value_parser = optional_url_value, value_name = "URL")]
    pub slack_proxy_url: Option<String>,

    #[arg(long, env = "SLACK_USER", default_value = "flagger")]
    pub slack_user: String,

    /// Slack channel; required with `-slack-url`, as in Flagger.
    #[arg(long, env = "SLACK_CHANNEL", default_value = "")]
    pub slack_channel: String,

    /// Microsoft Teams incoming-webhook URL; takes precedence over `-slack-url`.
    #[arg(long, env = "MSTEAMS_URL", value_parser = optional_url_value, value_name = "URL")]
    pub msteams_url: Option<String>,

    #[arg(long, env = "MSTEAMS_PROXY_URL", value_parser = optional_url_value, value_name = "URL")]
    pub msteams_proxy_url: Option<String>,

    /// Receives every Kubernetes event about a Canary that has no `event` webhook of its own.
    #[arg(long, env = "EVENT_WEBHOOK_URL", value_parser = optional_url_value, value_name = "URL")]
    pub event_webhook: Option<String>,

    /// Added to every alert as a `Cluster` field.
    #[arg(long, default_value = "")]
    pub cluster_name: String,

    /// Accepted for compatibility with Flagger, where it sizes the work queue. Here every Canary
    /// is reconciled independently (a slow webhook of one never delays another), so it has no effect.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..))]
    pub threadiness: u32,

    /// How often every Canary is reconciled even when nothing changed (Go duration).
    #[arg(long, default_value = "10s", value_parser = positive_duration_value, value_name = "DURATION")]
    pub control_loop_interval: SignedDuration,

    /// Analysis intervals below this are raised to it. Flagger hard-codes 10s; lowering it lets
    /// tests and demos run analyses in seconds.
    #[arg(long, default_value = "10s", value_parser = positive_duration_value, value_name = "DURATION")]
    pub min_analysis_interval: SignedDuration,

    /// Write every reconcile (snapshot, answers, decision) as a replayable trace into DIR.
    #[arg(long, value_name = "DIR")]
    pub record_traces: Option<PathBuf>,

    /// With `-record-traces`: where `GET /recordings` lists the recordings and
    /// `GET /recordings/<namespace>.<name>.jsonl` sends one. Loopback keeps them off the pod
    /// network (they hold Canary specs and every metric and webhook answer): fetch them through
    /// `kubectl port-forward`, which the API server authorizes.
    #[arg(long, default_value = "127.0.0.1:8081", value_name = "IP:PORT")]
    pub recordings_address: std::net::SocketAddr,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogLevel {
    Debug,
    Info,
    /// `warning` is accepted too: Flagger's help text spells it that way.
    #[value(alias = "warning")]
    Warn,
    Error,
}

impl LogLevel {
    /// The level as a `tracing` filter directive.
    pub fn as_filter(self) -> &'static str {
        match self {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

/// Where the operator-wide notifier posts, resolved from the Slack and Teams flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlobalNotifierConfig {
    /// `slack` or `msteams`.
    pub kind: String,
    pub url: String,
    pub token: Option<String>,
    pub proxy: Option<String>,
    pub username: String,
    pub channel: String,
}

impl RunArgs {
    /// The settings `flagger-core` needs from the flags.
    pub fn operator_config(&self) -> OperatorConfig {
        OperatorConfig {
            mesh_provider: self.mesh_provider.clone(),
            min_interval: self.min_analysis_interval,
            cluster_name: self.cluster_name.clone(),
            global_notifier: self.global_notifier().ok().flatten().is_some(),
        }
    }

    /// The global notifier: Teams when `-msteams-url` is set, else Slack when `-slack-url` is,
    /// else none. `Err` for a configuration Flagger would refuse (Slack without a channel or
    /// user); the caller should log it and run without a global notifier, as Flagger does.
    pub fn global_notifier(&self) -> Result<Option<GlobalNotifierConfig>, String> {
        let non_empty = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
        if let Some(url) = non_empty(&self.msteams_url) {
            return Ok(Some(GlobalNotifierConfig {
                kind: "msteams".into(),
                url,
                token: non_empty(&self.slack_token),
                proxy: non_empty(&self.msteams_proxy_url),
                username: self.slack_user.clone(),
                channel: self.slack_channel.clone(),
            }));
        }
        let Some(url) = non_empty(&self.slack_url) else {
            return Ok(None);
        };
        if self.slack_user.is_empty() {
            return Err("empty Slack username (-slack-user)".into());
        }
        if self.slack_channel.is_empty() {
            return Err("empty Slack channel (-slack-channel)".into());
        }
        Ok(Some(GlobalNotifierConfig {
            kind: "slack".into(),
            url,
            token: non_empty(&self.slack_token),
            proxy: non_empty(&self.slack_proxy_url),
            username: self.slack_user.clone(),
            channel: self.slack_channel.clone(),
        }))
    }

    /// The sharding settings when `-shards` is set; `Err` (one line) when the flags contradict.
    pub fn sharding(&self, identity: &str) -> Result<Option<crate::shard::Config>, String> {
        if self.shards == 0 {
            return Ok(None);
        }
        if self.enable_leader_election {
            return Err(
                "-shards and -enable-leader-election exclude each other: with shards every replica is active".into(),
            );
        }
        Ok(Some(crate::shard::Config {
            shards: self.shards,
            by: self.shard_by,
            lease_duration: self.shard_lease_duration,
            namespace: crate::leader::lease_namespace(
                &self.namespace,
                &self.leader_election_namespace,
            )
            .to_string(),
            identity: identity.to_string(),
        }))
    }

    /// `-event-webhook`, if set to something non-empty.
    pub fn event_webhook(&self) -> Option<&str> {
        self.event_webhook.as_deref().filter(|s| !s.is_empty())
    }
}

/// Parses `RunArgs` alone (after [`normalize_args`]); the first item is the program name.
pub fn parse_run_args<I, T>(args: I) -> Result<RunArgs, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString>,
{
    use clap::FromArgMatches;
    let command = RunArgs::augment_args(clap::Command::new("flagger"));
    let matches = command.try_get_matches_from(normalize_args(args.into_iter().map(Into::into)))?;
    RunArgs::from_arg_matches(&matches)
}

/// Rewrites Go-style `-flag`, `-flag=value` into `--flag…` so clap accepts both spellings.
///
/// Only single-dash arguments of two or more characters are rewritten; negative numbers (`-1`)
/// and everything after a bare `--` are left alone, as are short flags like `-h`.
pub fn normalize_args(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    let mut out = Vec::new();
    let mut passthrough = false;
    for (i, arg) in args.into_iter().enumerate() {
        if i == 0 || passthrough {
            out.push(arg);
            continue;
        }
        if arg == "--" {
            passthrough = true;
            out.push(arg);
            continue;
        }
        let rewritten = arg.to_str().and_then(|s| {
            let rest = s.strip_prefix('-')?;
            let first = rest.chars().next()?;
            let is_go_long = !rest.starts_with('-') && !first.is_ascii_digit() && rest.len() >= 2;
            is_go_long.then(|| OsString::from(format!("-{s}")))
        });
        out.push(rewritten.unwrap_or(arg));
    }
    out
}

fn url_value(s: &str) -> Result<String, String> {
    let url = reqwest::Url::parse(s).map_err(|e| format!("not a valid URL: {e}"))?;
    match url.scheme() {
        "http" | "https" => Ok(s.to_string()),
        other => Err(format!(
            "unsupported URL scheme {other:?} (want http or https)"
        )),
    }
}

/// Empty means "not configured" (Helm charts often render `-slack-url=` or an empty variable).
fn optional_url_value(s: &str) -> Result<String, String> {
    if s.is_empty() {
        Ok(String::new())
    } else {
        url_value(s)
    }
}

fn lease_duration_value(s: &str) -> Result<std::time::Duration, String> {
    let d = parse_go_duration(s).map_err(|e| e.to_string())?;
    if d.subsec_nanos() != 0 || d.as_secs() < 3 {
        return Err(format!(
            "lease duration {s:?} must be a whole number of seconds, at least 3s"
        ));
    }
    Ok(std::time::Duration::from_secs(d.as_secs() as u64))
}

fn positive_duration_value(s: &str) -> Result<SignedDuration, String> {
    let d = parse_go_duration(s).map_err(|e| e.to_string())?;
    if d.is_positive() {
        Ok(d)
    } else {
        Err(format!("duration {s:?} must be positive"))
    }
}

/// Every provider Flagger routes with is accepted at start, so an operator configured for
/// Flagger starts; the Canaries that use one not supported yet are blocked with a condition that
/// names it. A name Flagger does not know either is a mistake and refused here.
fn mesh_provider_value(s: &str) -> Result<String, String> {
    if Provider::parse(s).is_some() || Provider::known_to_flagger(s) {
        Ok(s.to_string())
    } else {
        Err(format!(
            "unknown mesh provider {s:?} (supported: istio, gatewayapi, gatewayapi:v1, gatewayapi:v1beta1, kubernetes, nginx; Flagger's other providers are accepted and their Canaries blocked as not supported yet)"
        ))
    }
}
