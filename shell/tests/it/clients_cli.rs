//! Flags as Flagger's chart and users write them: one or two dashes, env fallbacks, bad values
//! rejected with the cause on one line.

use std::ffi::OsString;
use std::sync::{Mutex, MutexGuard};

use clap::error::ErrorKind;
use flagger::cli::{LogLevel, RunArgs, normalize_args, parse_run_args};
use jiff::SignedDuration;

const ENV_VARS: &[&str] = &[
    "KUBECONFIG",
    "METRICS_SERVER",
    "SLACK_URL",
    "SLACK_TOKEN",
    "SLACK_PROXY_URL",
    "SLACK_USER",
    "SLACK_CHANNEL",
    "MSTEAMS_URL",
    "MSTEAMS_PROXY_URL",
    "EVENT_WEBHOOK_URL",
];

/// The environment is process-wide: tests that read it must not overlap, and must not see the
/// variables of the machine running them.
static ENV: Mutex<()> = Mutex::new(());

fn clean_env() -> MutexGuard<'static, ()> {
    let guard = ENV.lock().unwrap_or_else(|e| e.into_inner());
    for var in ENV_VARS {
        // SAFETY: every test touching the environment holds `ENV`.
        unsafe { std::env::remove_var(var) };
    }
    guard
}

fn parse(args: &[&str]) -> Result<RunArgs, clap::Error> {
    parse_run_args(std::iter::once("flagger").chain(args.iter().copied()))
}

fn first_line(err: &clap::Error) -> String {
    err.to_string()
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn defaults_match_flagger() {
    let _env = clean_env();
    let a = parse(&[]).unwrap();
    assert_eq!(a.metrics_server, "http://prometheus:9090");
    assert_eq!(a.mesh_provider, "istio");
    assert_eq!(a.namespace, "");
    assert_eq!(a.log_level, LogLevel::Info);
    assert_eq!(a.port, 8080);
    assert_eq!(a.listen_address.to_string(), "0.0.0.0");
    assert!(!a.enable_leader_election);
    assert_eq!(a.leader_election_namespace, "kube-system");
    assert_eq!(
        a.selector_labels,
        vec!["app", "name", "app.kubernetes.io/name"]
    );
    assert!(a.enable_config_tracking);
    assert_eq!(a.slack_user, "flagger");
    assert_eq!(a.kubeconfig_qps, 100);
    assert_eq!(a.kubeconfig_burst, 250);
    assert_eq!(a.threadiness, 2);
    assert_eq!(a.max_writes_in_flight, 16);
    assert_eq!(a.max_concurrent_initializations, 32);
    assert_eq!(a.control_loop_interval, SignedDuration::from_secs(10));
    assert_eq!(a.min_analysis_interval, SignedDuration::from_secs(10));
    assert_eq!(a.kubeconfig, None);
    assert_eq!(a.record_traces, None);
    assert_eq!(a.recordings_address.to_string(), "127.0.0.1:8081");
    assert_eq!(a.global_notifier(), Ok(None));
    assert_eq!(a.event_webhook(), None);
    let config = a.operator_config();
    assert_eq!(config.mesh_provider, "istio");
    assert_eq!(config.min_interval, SignedDuration::from_secs(10));
    assert!(!config.global_notifier);
}

#[test]
fn go_style_and_gnu_style_parse_the_same() {
    let _env = clean_env();
    let go = parse(&[
        "-metrics-server=http://prom.monitoring:9090",
        "-mesh-provider",
        "kubernetes",
        "-log-level=debug",
        "-port=9999",
        "-listen-address=127.0.0.1",
        "-namespace",
        "apps",
        "-enable-leader-election",
        "-enable-config-tracking=false",
        "-selector-labels=app,component",
        "-control-loop-interval=1m30s",
        "-min-analysis-interval=500ms",
        "-threadiness",
        "4",
        "-record-traces",
        "/tmp/traces",
        "-recordings-address=127.0.0.1:9090",
        "-cluster-name=prod",
    ])
    .unwrap();
    let gnu = parse(&[
        "--metrics-server=http://prom.monitoring:9090",
        "--mesh-provider",
        "kubernetes",
        "--log-level=debug",
        "--port=9999",
        "--listen-address=127.0.0.1",
        "--namespace",
        "apps",
        "--enable-leader-election",
        "--enable-config-tracking=false",
        "--selector-labels=app,component",
        "--control-loop-interval=1m30s",
        "--min-analysis-interval=500ms",
        "--threadiness",
        "4",
        "--record-traces",
        "/tmp/traces",
        "--recordings-address=127.0.0.1:9090",
        "--cluster-name=prod",
    ])
    .unwrap();
    assert_eq!(go, gnu);
    assert_eq!(go.metrics_server, "http://prom.monitoring:9090");
    assert_eq!(go.mesh_provider, "kubernetes");
    assert_eq!(go.log_level, LogLevel::Debug);
    assert_eq!(go.port, 9999);
    assert_eq!(go.listen_address.to_string(), "127.0.0.1");
    assert_eq!(go.namespace, "apps");
    assert!(go.enable_leader_election);
    assert!(!go.enable_config_tracking);
    assert_eq!(go.selector_labels, vec!["app", "component"]);
    assert_eq!(go.control_loop_interval, SignedDuration::from_secs(90));
    assert_eq!(go.min_analysis_interval, SignedDuration::from_millis(500));
    assert_eq!(go.threadiness, 4);
    assert_eq!(go.recordings_address.to_string(), "127.0.0.1:9090");
    let config = go.operator_config();
    assert_eq!(config.min_interval, SignedDuration::from_millis(500));
    assert_eq!(config.cluster_name, "prod");
    assert_eq!(config.mesh_provider, "kubernetes");
}

#[test]
fn every_provider_flagger_routes_with_is_accepted_at_start() {
    // The supported ones, Flagger's CRD names, and the prefixed forms Flagger's factory matches.
    let names = flagger_core::policy::FLAGGER_PROVIDERS
        .iter()
        .copied()
        .chain(["gatewayapi", "smi:v1alpha3:linkerd", "appmesh:v1beta2"]);
    for name in names {
        let args = parse(&[&format!("-mesh-provider={name}")]).unwrap();
        assert_eq!(args.mesh_provider, name);
    }
}

#[test]
fn booleans_accept_bare_true_and_false() {
    let _env = clean_env();
    assert!(
        parse(&["-enable-leader-election"])
            .unwrap()
            .enable_leader_election
    );
    assert!(
        parse(&["-enable-leader-election=true"])
            .unwrap()
            .enable_leader_election
    );
    assert!(
        !parse(&["-enable-leader-election=false"])
            .unwrap()
            .enable_leader_election
    );
    assert!(
        parse(&["-enable-config-tracking"])
            .unwrap()
            .enable_config_tracking
    );
    assert!(
        !parse(&["--enable-config-tracking=false"])
            .unwrap()
            .enable_config_tracking
    );
    let err = parse(&["-enable-leader-election=maybe"]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidValue);
    assert!(first_line(&err).contains("maybe"), "{err}");
}

#[test]
fn environment_fills_absent_flags_and_flags_win() {
    let _env = clean_env();
    // SAFETY: guarded by `ENV`.
    unsafe {
        std::env::set_var("METRICS_SERVER", "http://from-env:9090");
        std::env::set_var("KUBECONFIG", "/etc/kube/a:/etc/kube/b");
        std::env::set_var("SLACK_URL", "https://hooks.slack.example/T/B/X");
        std::env::set_var("SLACK_CHANNEL", "deploys");
        std::env::set_var("SLACK_USER", "bot");
        std::env::set_var("SLACK_TOKEN", "xoxb-1");
        std::env::set_var("EVENT_WEBHOOK_URL", "http://events.example/hook");
    }
    let a = parse(&[]).unwrap();
    assert_eq!(a.metrics_server, "http://from-env:9090");
    // A KUBECONFIG list is left to kube's inference rather than read as one path.
    assert_eq!(a.kubeconfig, None);
    assert_eq!(a.event_webhook(), Some("http://events.example/hook"));
    let n = a.global_notifier().unwrap().unwrap();
    assert_eq!(n.kind, "slack");
    assert_eq!(n.url, "https://hooks.slack.example/T/B/X");
    assert_eq!(n.channel, "deploys");
    assert_eq!(n.username, "bot");
    assert_eq!(n.token.as_deref(), Some("xoxb-1"));
    assert!(a.operator_config().global_notifier);

    let flagged = parse(&[
        "-metrics-server=http://from-flag:9090",
        "-kubeconfig",
        "/etc/kube/config",
    ])
    .unwrap();
    assert_eq!(flagged.metrics_server, "http://from-flag:9090");
    assert_eq!(
        flagged.kubeconfig.as_deref(),
        Some(std::path::Path::new("/etc/kube/config"))
    );

    // SAFETY: guarded by `ENV`.
    unsafe { std::env::set_var("MSTEAMS_URL", "https://teams.example/webhook") };
    let teams = parse(&[]).unwrap().global_notifier().unwrap().unwrap();
    assert_eq!(teams.kind, "msteams");
    assert_eq!(teams.url, "https://teams.example/webhook");
}

#[test]
fn slack_without_channel_is_reported_and_disables_the_global_notifier() {
    let _env = clean_env();
    let a = parse(&["-slack-url=https://hooks.slack.example/x"]).unwrap();
    assert!(a.global_notifier().unwrap_err().contains("channel"));
    assert!(!a.operator_config().global_notifier);
}

#[test]
fn empty_urls_mean_not_configured() {
    let _env = clean_env();
    let a = parse(&["-slack-url=", "-event-webhook="]).unwrap();
    assert_eq!(a.global_notifier(), Ok(None));
    assert_eq!(a.event_webhook(), None);
}

#[test]
fn bad_values_are_rejected_with_a_one_line_cause() {
    let _env = clean_env();
    let cases: &[(&[&str], &str)] = &[
        (&["-log-level=trace"], "trace"),
        (&["-port=http"], "invalid digit"),
        (&["-port=70000"], "70000"),
        (&["-listen-address=localhost"], "invalid IP address"),
        (&["-recordings-address=127.0.0.1"], "invalid socket address"),
        (&["-metrics-server=not a url"], "not a valid URL"),
        (&["-metrics-server=ftp://prom"], "unsupported URL scheme"),
        (&["-slack-url=::"], "not a valid URL"),
        (&["-control-loop-interval=10"], "invalid duration"),
        (&["-min-analysis-interval=0s"], "must be positive"),
        (&["-min-analysis-interval=1d"], "invalid duration"),
        (&["-mesh-provider=linkerdd"], "unknown mesh provider"),
        (&["-mesh-provider=smi"], "unknown mesh provider"),
        (&["-threadiness=0"], "not in 1.."),
        (&["-shards=-1"], "not in 0..=1024"),
        (&["-shards=2000"], "not in 0..=1024"),
        (&["-shard-by=pod"], "name|namespace"),
        (&["-shard-lease-duration=2500ms"], "whole number of seconds"),
        (&["-shard-lease-duration=2s"], "at least 3s"),
        (&["-max-writes-in-flight=0"], "not in 1.."),
        (&["-max-concurrent-initializations=0"], "not in 1.."),
        (&["-max-concurrent-initializations=many"], "invalid digit"),
    ];
    for (args, cause) in cases {
        let err = parse(args).unwrap_err();
        assert!(
            matches!(
                err.kind(),
                ErrorKind::ValueValidation | ErrorKind::InvalidValue
            ),
            "{args:?}: {:?}",
            err.kind()
        );
        let line = first_line(&err);
        assert!(line.starts_with("error: "), "{args:?}: {line}");
        assert!(line.contains(cause), "{args:?}: {line}");
    }
}

#[test]
fn shards_need_leader_election_off_and_keep_the_lease_namespace_rule() {
    let _env = clean_env();
    let args = parse(&[
        "-shards=6",
        "-shard-lease-duration=6s",
        "-shard-by=namespace",
    ])
    .unwrap();
    let cfg = args.sharding("flagger-0_1").unwrap().expect("sharded");
    assert_eq!(cfg.shards, 6);
    assert_eq!(cfg.by, flagger::shard::ShardBy::Namespace);
    assert_eq!(cfg.lease_duration, std::time::Duration::from_secs(6));
    assert_eq!(cfg.namespace, "kube-system");
    assert_eq!(cfg.identity, "flagger-0_1");
    let scoped = parse(&["-shards=2", "-namespace=test"]).unwrap();
    assert_eq!(scoped.sharding("x").unwrap().unwrap().namespace, "test");
    assert_eq!(
        parse(&[]).unwrap().sharding("x"),
        Ok(None),
        "off by default"
    );
    let both = parse(&["-shards=2", "-enable-leader-election"]).unwrap();
    let err = both.sharding("x").unwrap_err();
    assert!(
        err.contains("exclude each other") && !err.contains('\n'),
        "{err}"
    );
}

#[test]
fn unknown_flags_are_rejected() {
    let _env = clean_env();
    let err = parse(&["-no-such-flag=1"]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UnknownArgument);
}

#[test]
fn warning_is_an_alias_of_warn() {
    let _env = clean_env();
    assert_eq!(
        parse(&["-log-level=warning"]).unwrap().log_level,
        LogLevel::Warn
    );
    assert_eq!(LogLevel::Warn.as_filter(), "warn");
}

#[test]
fn normalize_leaves_numbers_short_flags_and_passthrough_alone() {
    let args: Vec<OsString> = [
        "flagger",
        "-port=1",
        "--port",
        "-1",
        "-h",
        "--",
        "-log-level",
    ]
    .into_iter()
    .map(OsString::from)
    .collect();
    let got = normalize_args(args);
    let got: Vec<&str> = got.iter().map(|s| s.to_str().unwrap()).collect();
    assert_eq!(
        got,
        [
            "flagger",
            "--port=1",
            "--port",
            "-1",
            "-h",
            "--",
            "-log-level"
        ]
    );
}
