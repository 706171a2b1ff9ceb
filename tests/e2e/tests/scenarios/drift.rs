//! Drift: an idle Succeeded Canary keeps its generated objects as its spec says. An edit of
//! `spec.service` (a port, a header match, a timeout) reaches the Services and the
//! VirtualService, and hand edits of the VirtualService (weights, a removed field, a removed
//! destination) and of a Service are put back, each within one analysis interval; an idle
//! Canary whose objects match makes no write at all (the operator's own
//! `flagger_kube_requests_total`, over several intervals).

use std::time::{Duration, Instant};

use flagger_core::api::Phase;
use flagger_e2e::Result;
use flagger_e2e::fixtures::{self, IMAGE_V1, IMAGE_V2, INTERVAL};
use flagger_e2e::operator::{Operator, OperatorOpts};
use flagger_e2e::scenario::{Scenario, resource};
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use serde_json::{Value, json};

use crate::common::*;

/// One analysis interval (`fixtures::INTERVAL`).
const ONE_INTERVAL: Duration = Duration::from_secs(3);

/// Asserts the operator sends no write (and no GET) over `intervals` analysis intervals.
async fn assert_idle(op: &Operator, intervals: u32, what: &str) -> Result<()> {
    let before = writes_and_gets(op).await?;
    tokio::time::sleep(ONE_INTERVAL * intervals).await;
    let after = writes_and_gets(op).await?;
    assert_eq!(
        after - before,
        0.0,
        "{what}: requests other than watches over {intervals} intervals; metrics:\n{}",
        op.metrics().await?
    );
    Ok(())
}

/// Waits until `check` holds, at most one analysis interval plus the watch round trip (the
/// write is event-driven: the edit's watch event starts the reconcile that repairs it).
async fn converges<F, Fut>(s: &Scenario, what: &str, check: F) -> Result<Duration>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    let started = Instant::now();
    s.wait_for(what, ONE_INTERVAL + Duration::from_secs(2), || async {
        Ok(check().await?.then_some(()))
    })
    .await?;
    Ok(started.elapsed())
}

async fn get(s: &Scenario, api_version: &str, kind: &str, name: &str) -> Result<Value> {
    s.get(api_version, kind, name)
        .await?
        .ok_or_else(|| format!("{kind} {name} not found").into())
}

/// A hand edit as `kubectl edit` sends it: a JSON merge patch under kubectl's field manager.
async fn kubectl_edit(
    s: &Scenario,
    api_version: &str,
    kind: &str,
    name: &str,
    patch: Value,
) -> Result<()> {
    let api: Api<DynamicObject> =
        Api::namespaced_with(s.client.clone(), &s.ns, &resource(api_version, kind)?);
    let params = PatchParams {
        field_manager: Some("kubectl-edit".into()),
        ..PatchParams::default()
    };
    api.patch(name, &params, &Patch::Merge(&patch)).await?;
    Ok(())
}

fn weights(vs: &Value) -> Vec<(String, i64)> {
    vs["spec"]["http"][0]["route"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| {
            (
                d["destination"]["host"].as_str().unwrap_or("").to_string(),
                d["weight"].as_i64().unwrap_or(0),
            )
        })
        .collect()
}

fn all_on_primary() -> Vec<(String, i64)> {
    vec![
        ("podinfo-primary".to_string(), 100),
        ("podinfo-canary".to_string(), 0),
    ]
}

const VS: (&str, &str) = ("networking.istio.io/v1", "VirtualService");

#[tokio::test]
#[ignore = "needs the processes of tests/e2e/run.sh"]
async fn istio_drift() -> Result<()> {
    let s = Scenario::new("istio_drift").await?;
    let ns = s.ns.clone();
    s.apply(&fixtures::deployment(&ns, "podinfo", IMAGE_V1))
        .await?;
    let mut op = s.operator(&OperatorOpts::new("flagger-0", "istio")).await?;
    let mut canary = fixtures::weighted_canary(&ns, "podinfo", "istio");
    canary["spec"]["service"]["timeout"] = json!("5s");
    s.apply(&canary).await?;
    initialized(&s, "podinfo").await?;
    s.set_image("podinfo", IMAGE_V2).await?;
    s.wait_phase("podinfo", Phase::Succeeded, ROLLOUT_TIMEOUT)
        .await?;
    assert_eq!(INTERVAL, "3s", "the bounds below are in 3 s intervals");
    // The last reconciles of the run settle, then nothing is written while nothing differs.
    tokio::time::sleep(ONE_INTERVAL).await;
    assert_idle(&op, 4, "idle Succeeded canary").await?;

    // (a) spec.service edited: a port, a header match and a timeout.
    canary["spec"]["service"]["port"] = json!(9797);
    canary["spec"]["service"]["timeout"] = json!("10s");
    canary["spec"]["service"]["match"] = json!([{"headers": {"x-tenant": {"exact": "a"}}}]);
    s.apply(&canary).await?;
    let took = converges(&s, "spec.service edit reaches every object", || async {
        let mut ports = Vec::new();
        for name in ["podinfo", "podinfo-primary", "podinfo-canary"] {
            let svc = get(&s, "v1", "Service", name).await?;
            ports.push(svc["spec"]["ports"][0]["port"].as_i64());
        }
        let vs = get(&s, VS.0, VS.1, "podinfo").await?;
        let http = &vs["spec"]["http"][0];
        Ok(ports.iter().all(|p| *p == Some(9797))
            && http["timeout"] == "10s"
            && http["match"] == json!([{"headers": {"x-tenant": {"exact": "a"}}}])
            && weights(&vs) == all_on_primary())
    })
    .await?;
    eprintln!("spec.service edit converged in {took:?}");

    // (b) hand edits: weights moved, a destination dropped, a Service's target port changed.
    let vs = get(&s, VS.0, VS.1, "podinfo").await?;
    let mut http = vs["spec"]["http"].clone();
    http[0]["route"][0]["weight"] = json!(50);
    http[0]["route"][1]["weight"] = json!(50);
    kubectl_edit(&s, VS.0, VS.1, "podinfo", json!({"spec": {"http": http}})).await?;
    converges(&s, "hand-edited weights put back", || async {
        Ok(weights(&get(&s, VS.0, VS.1, "podinfo").await?) == all_on_primary())
    })
    .await?;

    let mut http = vs["spec"]["http"].clone();
    http[0].as_object_mut().unwrap().remove("timeout");
    http[0]["route"].as_array_mut().unwrap().truncate(1);
    kubectl_edit(&s, VS.0, VS.1, "podinfo", json!({"spec": {"http": http}})).await?;
    converges(&s, "removed timeout and destination put back", || async {
        let vs = get(&s, VS.0, VS.1, "podinfo").await?;
        Ok(vs["spec"]["http"][0]["timeout"] == "10s" && weights(&vs) == all_on_primary())
    })
    .await?;

    let svc = get(&s, "v1", "Service", "podinfo-canary").await?;
    let target_port = svc["spec"]["ports"][0]["targetPort"].clone();
    assert_eq!(
        target_port,
        json!(9898),
        "the Canary's spec.service.targetPort"
    );
    let mut ports = svc["spec"]["ports"].clone();
    ports[0]["targetPort"] = json!(8080);
    kubectl_edit(
        &s,
        "v1",
        "Service",
        "podinfo-canary",
        json!({"spec": {"ports": ports}}),
    )
    .await?;
    converges(&s, "hand-edited Service put back", || async {
        let svc = get(&s, "v1", "Service", "podinfo-canary").await?;
        Ok(svc["spec"]["ports"][0]["targetPort"] == target_port)
    })
    .await?;

    // (c) repaired, the objects match again: nothing more is written.
    tokio::time::sleep(ONE_INTERVAL).await;
    assert_idle(&op, 4, "idle canary after the repairs").await?;
    let c = s.canary("podinfo").await?;
    assert_eq!(c.status.and_then(|st| st.phase), Some(Phase::Succeeded));
    let notes = s.event_notes("podinfo").await?;
    let runs = notes
        .iter()
        .filter(|n| n.starts_with("New revision"))
        .count();
    assert_eq!(runs, 1, "the edits started no run: {notes:#?}");
    stop_and_check_fidelity(&s, vec![&mut op]).await?;
    s.finish().await;
    Ok(())
}

const ROUTE: (&str, &str) = ("gateway.networking.k8s.io/v1", "HTTPRoute");

fn backend_weights(route: &Value) -> Vec<(String, i64)> {
    route["spec"]["rules"][0]["backendRefs"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|b| {
            (
                b["name"].as_str().unwrap_or("").to_string(),
                b["weight"].as_i64().unwrap_or(0),
            )
        })
        .collect()
}

/// Gateway API: the HTTPRoute as the API server returns it carries defaults we never wrote
/// (parent group and kind, match types), which must not count as drift.
#[tokio::test]
#[ignore = "needs the processes of tests/e2e/run.sh"]
async fn gatewayapi_drift() -> Result<()> {
    let s = Scenario::new("gatewayapi_drift").await?;
    let ns = s.ns.clone();
    s.apply(&fixtures::deployment(&ns, "podinfo", IMAGE_V1))
        .await?;
    let mut op = s
        .operator(&OperatorOpts::new("flagger-0", "gatewayapi:v1"))
        .await?;
    let mut canary = fixtures::weighted_canary(&ns, "podinfo", "gatewayapi:v1");
    canary["spec"]["service"]["gatewayRefs"] =
        json!([{"name": "public-gateway", "namespace": "gateway-system"}]);
    canary["spec"]["service"]["hosts"] = json!(["podinfo.example.com"]);
    canary["spec"]["service"]["timeout"] = json!("5s");
    s.apply(&canary).await?;
    initialized(&s, "podinfo").await?;
    s.set_image("podinfo", IMAGE_V2).await?;
    s.wait_phase("podinfo", Phase::Succeeded, ROLLOUT_TIMEOUT)
        .await?;
    tokio::time::sleep(ONE_INTERVAL).await;
    assert_idle(&op, 4, "idle Succeeded canary").await?;

    canary["spec"]["service"]["timeout"] = json!("10s");
    canary["spec"]["service"]["match"] = json!([{"headers": {"x-tenant": {"exact": "a"}}}]);
    s.apply(&canary).await?;
    converges(&s, "spec.service edit reaches the HTTPRoute", || async {
        let route = get(&s, ROUTE.0, ROUTE.1, "podinfo").await?;
        let rule = &route["spec"]["rules"][0];
        Ok(rule["timeouts"]["request"] == "10s"
            && rule["matches"][0]["headers"][0]["name"] == "x-tenant"
            && backend_weights(&route)
                == [
                    ("podinfo-primary".to_string(), 100),
                    ("podinfo-canary".to_string(), 0),
                ])
    })
    .await?;

    let route = get(&s, ROUTE.0, ROUTE.1, "podinfo").await?;
    let mut rules = route["spec"]["rules"].clone();
    rules[0].as_object_mut().unwrap().remove("timeouts");
    kubectl_edit(
        &s,
        ROUTE.0,
        ROUTE.1,
        "podinfo",
        json!({"spec": {"rules": rules}}),
    )
    .await?;
    converges(&s, "hand-edited HTTPRoute put back", || async {
        let route = get(&s, ROUTE.0, ROUTE.1, "podinfo").await?;
        Ok(route["spec"]["rules"][0]["timeouts"]["request"] == "10s")
    })
    .await?;

    tokio::time::sleep(ONE_INTERVAL).await;
    assert_idle(&op, 4, "idle canary after the repairs").await?;
    stop_and_check_fidelity(&s, vec![&mut op]).await?;
    s.finish().await;
    Ok(())
}

const INGRESS: (&str, &str) = ("networking.k8s.io/v1", "Ingress");
const CANARY_WEIGHT: &str = "nginx.ingress.kubernetes.io/canary-weight";

/// nginx: the `<ingress>-canary` clone follows edits of the user's Ingress (a new host), and
/// hand edits of the clone (its weight, its rules) are put back, each within one interval; the
/// idle Canary writes nothing before, between and after.
#[tokio::test]
#[ignore = "needs the processes of tests/e2e/run.sh"]
async fn nginx_drift() -> Result<()> {
    let s = Scenario::new("nginx_drift").await?;
    let ns = s.ns.clone();
    s.apply(&fixtures::deployment(&ns, "podinfo", IMAGE_V1))
        .await?;
    let mut op = s.operator(&OperatorOpts::new("flagger-0", "nginx")).await?;
    let mut ingress = fixtures::ingress(&ns, "podinfo");
    s.apply(&ingress).await?;
    s.apply(&fixtures::weighted_canary(&ns, "podinfo", "nginx"))
        .await?;
    initialized(&s, "podinfo").await?;
    s.set_image("podinfo", IMAGE_V2).await?;
    s.wait_phase("podinfo", Phase::Succeeded, ROLLOUT_TIMEOUT)
        .await?;
    tokio::time::sleep(ONE_INTERVAL).await;
    assert_idle(&op, 4, "idle Succeeded canary").await?;

    let hosts = |ing: &Value| -> Vec<String> {
        ing["spec"]["rules"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["host"].as_str().map(str::to_string))
            .collect()
    };
    ingress["spec"]["rules"][0]["host"] = json!("podinfo.example.org");
    s.apply(&ingress).await?;
    converges(&s, "the user's Ingress edit reaches the clone", || async {
        let clone = get(&s, INGRESS.0, INGRESS.1, "podinfo-canary").await?;
        Ok(hosts(&clone) == ["podinfo.example.org"])
    })
    .await?;

    kubectl_edit(
        &s,
        INGRESS.0,
        INGRESS.1,
        "podinfo-canary",
        json!({"metadata": {"annotations": {CANARY_WEIGHT: "50"}},
               "spec": {"rules": [{"host": "elsewhere.example.org"}]}}),
    )
    .await?;
    converges(&s, "hand-edited clone put back", || async {
        let clone = get(&s, INGRESS.0, INGRESS.1, "podinfo-canary").await?;
        Ok(clone["metadata"]["annotations"][CANARY_WEIGHT] == "0"
            && hosts(&clone) == ["podinfo.example.org"]
            && clone["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"]
                == "podinfo-canary")
    })
    .await?;

    tokio::time::sleep(ONE_INTERVAL).await;
    assert_idle(&op, 4, "idle canary after the repairs").await?;
    stop_and_check_fidelity(&s, vec![&mut op]).await?;
    s.finish().await;
    Ok(())
}
