//! The Helm chart installed into the real API server, and a canary taken to Succeeded by an
//! operator that holds nothing but the chart's ServiceAccount token: the chart's RBAC is enough.
//! (No kubelet runs the chart's Deployment, so the operator runs out of cluster with that token,
//! exactly as its pod would.)

use std::path::PathBuf;
use std::process::Stdio;

use flagger_core::api::Phase;
use flagger_e2e::Result;
use flagger_e2e::fidelity;
use flagger_e2e::fixtures::{self, IMAGE_V1, IMAGE_V2};
use flagger_e2e::operator::{Operator, OperatorOpts, http_get};
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
            "--set",
            "recordTraces.enabled=true",
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
    let service = s
        .get("v1", "Service", "flagger")
        .await?
        .ok_or("the chart's Service was not created")?;
    let pod = recording_pod(&deployment, &service)?;

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
    let fetched = fetch_recording(&s, &op, &pod).await?;
    stop_and_check_fidelity(&s, vec![&mut op]).await?;
    // The fetched copy replays as the live run went, through the user's `flagger replay FILE`.
    fidelity::check_file(&fetched, &s.env.flagger_bin).await?;
    s.finish().await;
    Ok(())
}

/// The chart's Deployment and Service, as the API server stored them, with
/// `recordTraces.enabled=true`: the recording volume is the only
/// writable path (the root filesystem stays read-only), and the recordings listener stays on
/// loopback, off the pod network and off the Service.
struct RecordingPod {
    dir: String,
}

fn recording_pod(deployment: &Value, service: &Value) -> Result<RecordingPod> {
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        container["securityContext"]["readOnlyRootFilesystem"],
        json!(true)
    );
    let args: Vec<&str> = container["args"]
        .as_array()
        .ok_or("no args")?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let dir = args
        .iter()
        .find_map(|a| a.strip_prefix("-record-traces="))
        .ok_or_else(|| format!("no -record-traces in {args:?}"))?;
    assert!(
        !args.iter().any(|a| a.contains("recordings-address")),
        "the chart must leave the recordings on loopback: {args:?}"
    );
    let mounts = container["volumeMounts"]
        .as_array()
        .ok_or("no volumeMounts")?;
    assert_eq!(mounts.len(), 1, "{mounts:?}");
    assert_eq!(mounts[0]["mountPath"], json!(dir));
    let volumes = deployment["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .ok_or("no volumes")?;
    assert_eq!(volumes[0]["name"], mounts[0]["name"]);
    assert!(volumes[0]["emptyDir"].is_object(), "{volumes:?}");
    let ports = |v: &Value| -> Vec<Value> { v.as_array().cloned().unwrap_or_default() };
    assert_eq!(
        ports(&container["ports"]),
        [json!({"name": "http", "containerPort": 8080, "protocol": "TCP"})]
    );
    assert_eq!(ports(&service["spec"]["ports"]).len(), 1);
    assert_eq!(service["spec"]["ports"][0]["targetPort"], json!("http"));
    Ok(RecordingPod {
        dir: dir.to_string(),
    })
}

/// Fetches the Canary's recording the way the README shows (`kubectl port-forward` to the
/// recordings port, then `curl`): byte for byte the file on disk, and the same bytes that
/// `flagger recordings cat` (what `kubectl exec` runs in the distroless image) prints.
async fn fetch_recording(s: &Scenario, op: &Operator, pod: &RecordingPod) -> Result<PathBuf> {
    let ns = &s.ns;
    let file = format!("{ns}.podinfo.jsonl");
    let on_disk = op.traces.join(&file);

    let (status, listing) = op.recordings_get("/recordings").await?;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&listing));
    let listing: Value = serde_json::from_slice(&listing)?;
    let entries = listing["recordings"]
        .as_array()
        .ok_or("no recordings list")?;
    assert_eq!(entries.len(), 1, "{listing}");
    assert_eq!(entries[0]["file"], json!(file));
    assert_eq!(entries[0]["namespace"], json!(ns));
    assert_eq!(entries[0]["name"], json!("podinfo"));
    assert!(
        entries[0]["bytes"].as_u64().is_some_and(|b| b > 0),
        "{listing}"
    );

    // The Canary is at rest: the file stops growing, and the fetched copy equals it exactly.
    let fetched = s
        .wait_for(
            "the fetched recording equals the file",
            INIT_TIMEOUT,
            || async {
                let fetched = op.fetch_recording(&file).await?;
                let disk = std::fs::read(&on_disk)?;
                Ok((fetched == disk).then_some(fetched))
            },
        )
        .await?;
    assert!(fetched.ends_with(b"\n"));
    let text = std::str::from_utf8(&fetched)?;
    assert!(text.lines().count() > 5, "{text}");

    // `kubectl exec deploy/flagger -- /flagger recordings cat FILE`: the same bytes.
    let out = Command::new(&s.env.flagger_bin)
        .args(["recordings", "--dir"])
        .arg(&op.traces)
        .args(["cat", &file])
        .output()
        .await?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        out.stdout, fetched,
        "flagger recordings cat differs from GET"
    );
    let out = Command::new(&s.env.flagger_bin)
        .args(["recordings", "--dir"])
        .arg(&op.traces)
        .output()
        .await?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ls = String::from_utf8(out.stdout)?;
    assert!(
        ls.starts_with(&format!("{file}\t{}\t", fetched.len())),
        "{ls}"
    );

    // Nothing but recordings: the ServiceAccount's kubeconfig two levels up stays out of reach.
    let (status, body) = op
        .recordings_get("/recordings/..%2f..%2fflagger-sa.kubeconfig")
        .await?;
    let body = String::from_utf8_lossy(&body);
    assert_eq!(status, 400, "{body}");
    assert!(!body.contains("token"), "{body}");
    let (status, _) = op
        .recordings_get(&format!("/recordings/{ns}.missing.jsonl"))
        .await?;
    assert_eq!(status, 404);
    // The metrics port (the one the Service exposes) serves none of it and says where to look.
    let (status, body) =
        http_get(&format!("http://127.0.0.1:{}/recordings/{file}", op.port)).await?;
    let body = String::from_utf8_lossy(&body);
    assert_eq!(status, 404, "{body}");
    assert!(
        body.starts_with(&format!(
            "recordings are served on 127.0.0.1:{} only",
            op.recordings_port
        )),
        "{body}"
    );
    // Where `flagger recordings` looks by default in the pod.
    assert_eq!(pod.dir, "/var/lib/flagger/traces");

    let dir = s.dir.join("fetched");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(&file);
    std::fs::write(&path, &fetched)?;
    Ok(path)
}
