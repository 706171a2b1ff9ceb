//! The shell's integration tests, in one binary so the workspace links the kube stack once
//! instead of once per file.

mod clients_support;
mod controller_support;
mod executor_support;

mod clients_cli;
mod clients_notifiers;
mod clients_operator_metrics;
mod clients_prometheus;
mod clients_promql_escaping;
mod clients_webhooks;
mod compat_corpus;
mod controller_binary;
mod controller_dispatch;
mod controller_drift;
mod controller_events;
mod controller_kube_requests;
mod controller_loop;
mod controller_outbox;
mod controller_reconcile;
mod controller_server;
mod controller_snapshot;
mod controller_traces;
mod crd_cluster;
mod crd_generation;
mod executor_autoscaler;
mod executor_canary;
mod executor_cluster;
mod executor_deployment;
mod executor_routes;
mod executor_services;
mod replay_chart_browser;
