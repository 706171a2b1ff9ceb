//! The Helm chart installed into the real API server, and a canary taken to Succeeded by an
//! operator that holds nothing but the chart's ServiceAccount token: the chart's RBAC is enough.
//! (No kubelet runs the chart's Deployment, so the operator runs out of cluster with that token,
//! exactly as its pod would.)

use std::path::PathBuf;
use std::process::Stdio;

use flagger_core::api::Phase;
use flagger_e2e::Result;
use flagger_e2e::fixtures::{self, IMAGE_V1, IMAGE_V2};
use flagger_e2e::operator::OperatorOpts;
use flagger_e2e::scenario::Scenario;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use crate::common::*;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn var(name: &str) -> Result<String> {
    Ok(std::env::var(name)
        .map_err(|_| format!("{name} is not set: run the suite through tests/e2e/run.sh"))?)
}

/// Runs a command, feeding `stdin`, and returns its standard output; fails with its stderr.
async fn run(program: &str, args: &[&str], stdin: Option<&[u8]>) -> Result<String> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{program}: {e}"))?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input).await?;
    }
    let out = child.wait_with_output().await?;
    if !out.status.success() {
        return Err(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )
        .into());
    }
    Ok(String::from_utf8(out.stdout)?)
}

async fn kubectl(args: &[&str], stdin: Option<&[u8]>) -> Result<String> {
    let cluster = var("FLAGGER_E2E_CLUSTER")?;
    let mut all = vec![cluster.as_str(), "kubectl"];
    all.extend_from_slice(args);
    run("bash", &all, stdin).await
}

#[tokio::test]
#[ignore = "needs the processes of tests/e2e/run.sh"]
async fn chart_installs_and_its_service_account_suffices() -> Result<()> {
    let s = Scenario::new("chart_installs_and_its_service_account_suffices").await?;
    let ns = s.ns.clone();
    let helm = var("FLAGGER_E2E_HELM")?;
    let chart = repo().join("charts/flagger");

    // Render and apply the chart as `helm install` would (CRDs are already installed).
    let rendered = run(
        &helm,
        &[
            "template",
            "flagger",
            chart.to_str().ok_or("chart path")?,
            "--namespace",
            &ns,
            "--set",
            &format!("namespace={ns}"),
            "--set",
            "meshProvider=kubernetes",
            "--set",
            &format!("metricsServer={}", s.env.prometheus),
        ],
        None,
    )
    .await?;
    assert!(rendered.contains("kind: ClusterRole"), "{rendered}");
    kubectl(&["apply", "-n", &ns, "-f", "-"], Some(rendered.as_bytes())).await?;
    let deployment = s
        .get("apps/v1", "Deployment", "flagger")
        .await?
        .ok_or("the chart's Deployment was not created")?;
    assert_eq!(
        deployment["spec"]["template"]["spec"]["serviceAccountName"],
        json!("flagger")
    );

    // The operator's credentials: a token of the chart's ServiceAccount, nothing else.
    let token = kubectl(
        &["create", "token", "flagger", "-n", &ns, "--duration=1h"],
        None,
    )
    .await?;
    let admin: Value = serde_json::from_str(
        &kubectl(&["config", "view", "--raw", "--minify", "-o", "json"], None).await?,
    )?;
    let cluster = admin["clusters"][0]["cluster"].clone();
    let kubeconfig = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "test", "cluster": cluster}],
        "users": [{"name": "flagger", "user": {"token": token.trim()}}],
        "contexts": [{"name": "flagger", "context": {"cluster": "test", "user": "flagger", "namespace": ns}}],
        "current-context": "flagger",
    });
    let kubeconfig_path = s.dir.join("flagger-sa.kubeconfig");
    std::fs::write(&kubeconfig_path, serde_json::to_vec_pretty(&kubeconfig)?)?;
    let whoami = kubectl(
        &[
            "--kubeconfig",
            kubeconfig_path.to_str().ok_or("path")?,
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username}",
        ],
        None,
    )
    .await?;
    assert_eq!(whoami, format!("system:serviceaccount:{ns}:flagger"));

    s.apply(&fixtures::deployment(&ns, "podinfo", IMAGE_V1))
        .await?;
    let mut opts = OperatorOpts::new("flagger-chart", "kubernetes");
    opts.kubeconfig = Some(kubeconfig_path);
    let mut op = s.operator(&opts).await?;
    s.apply(&fixtures::blue_green_canary(
        &ns,
        "podinfo",
        "kubernetes",
        2,
    ))
    .await?;
    initialized(&s, "podinfo").await?;
    s.set_image("podinfo", IMAGE_V2).await?;
    s.wait_phase("podinfo", Phase::Succeeded, ROLLOUT_TIMEOUT)
        .await?;
    assert_eq!(s.image("podinfo-primary").await?.as_deref(), Some(IMAGE_V2));
    assert_eq!(s.replicas("podinfo").await?, Some(0));

    // Every request the operator made was allowed: the API server's refusal reads
    // "… is forbidden: User \"system:serviceaccount:…\" cannot …" (reason Forbidden).
    let log = std::fs::read_to_string(&op.log)?;
    for denied in ["is forbidden", "\"Forbidden\""] {
        assert!(
            !log.contains(denied),
            "the chart's RBAC refused a request ({denied}):\n{}",
            op.log_tail(40)
        );
    }
    let notes = s.event_notes("podinfo").await?;
    assert_event(
        &notes,
        &format!("Promotion completed! Scaling down podinfo.{ns}"),
    );
    stop_and_check_fidelity(&s, vec![&mut op]).await?;
    s.finish().await;
    Ok(())
}
