//! Replacing a running Flagger with this operator (issue 9): the real Flagger v1.44.0, built from
//! its Go module by `tests/tools/flagger/build.sh`, runs against the test cluster first and is
//! then stopped (SIGTERM to its recorded PID) and replaced by ours.
//!
//! - `podinfo` has an apex Service and a VirtualService the user created before the Canary.
//!   Flagger initializes it and promotes a new revision to Succeeded. Under ours nothing happens:
//!   no new analysis, no event, no webhook call, the status stays Succeeded, routes, Services and
//!   the primary are not written. A new image then rolls out under ours to Succeeded.
//! - `backend` is switched mid-analysis: Flagger is stopped while it sends a share of the traffic
//!   to the canary; ours finishes the run and promotes the new revision.
//!
//! Throughout, the namespace's Pods, Services, EndpointSlices and VirtualServices are watched
//! (`flagger_e2e::traffic`): the apex Services always select a ready pod, switch only to ready
//! pods, their EndpointSlices always list a ready endpoint, and no route under ours sends
//! traffic to a Service without a ready pod.
//!
//! Flagger's analysis interval cannot go below 10 s, so the Canaries use 10 s under both
//! operators; the scenario takes about four minutes.

use std::collections::BTreeMap;
use std::time::Duration;

use flagger_core::api::Phase;
use flagger_e2e::Result;
use flagger_e2e::fixtures::{self, IMAGE_V1, IMAGE_V2, IMAGE_V3};
use flagger_e2e::flagger_go::RealFlagger;
use flagger_e2e::gate::Gate;
use flagger_e2e::operator::OperatorOpts;
use flagger_e2e::scenario::Scenario;
use flagger_e2e::traffic::{self, TrafficWatch};
use flagger_e2e::watch;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};
use serde_json::{Value, json};

use crate::common::*;

/// Flagger's minimum analysis interval.
const INTERVAL: &str = "10s";
const FLAGGER_TIMEOUT: Duration = Duration::from_secs(150);

fn apex_service(name: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "labels": {"app": name, "team": "web"}},
        "spec": {
            "selector": {"app": name},
            "ports": [{"name": "http", "port": 9898, "targetPort": 9898, "protocol": "TCP"}]
        }
    })
}

/// The user's VirtualService for `name`, before any Canary: all traffic to the apex Service.
fn user_virtual_service(name: &str) -> Value {
    json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": name, "labels": {"team": "web"}},
        "spec": {
            "hosts": [name],
            "http": [{"route": [{"destination": {"host": name, "port": {"number": 9898}}}]}]
        }
    })
}

/// Two steps (25 %, 50 %), the built-in Istio checks, and two hooks to the test's webhook
/// server: `rollout` (asked at every analysis step) and `event` (told every event).
fn canary(ns: &str, name: &str, hooks: &str) -> Value {
    let mut c = fixtures::weighted_canary(ns, name, "istio");
    let analysis = &mut c["spec"]["analysis"];
    analysis["interval"] = INTERVAL.into();
    analysis["threshold"] = 2.into();
    analysis["stepWeight"] = 25.into();
    analysis["maxWeight"] = 50.into();
    analysis["webhooks"] = json!([
        {"name": "load-test", "type": "rollout", "url": hooks, "timeout": "5s"},
        {"name": "events", "type": "event", "url": hooks, "timeout": "5s"}
    ]);
    c
}

/// The webhook calls about Canary `name`.
fn calls_for(gate: &Gate, name: &str) -> Vec<Value> {
    gate.calls()
        .into_iter()
        .filter(|c| c["name"] == name)
        .collect()
}

/// What Flagger and ours must leave alone on an adopted Canary, with the version of each.
async fn written_objects(s: &Scenario, name: &str) -> Result<BTreeMap<String, Value>> {
    let mut out = BTreeMap::new();
    let objects = [
        ("networking.istio.io/v1", "VirtualService", name.to_string()),
        ("v1", "Service", name.to_string()),
        ("v1", "Service", format!("{name}-primary")),
        ("v1", "Service", format!("{name}-canary")),
        ("apps/v1", "Deployment", format!("{name}-primary")),
        ("apps/v1", "Deployment", name.to_string()),
    ];
    for (api_version, kind, n) in objects {
        let obj = s
            .get(api_version, kind, &n)
            .await?
            .ok_or(format!("{kind} {n} missing"))?;
        // A Deployment's resourceVersion moves with its status; its generation only with writes.
        let version = if kind == "Deployment" {
            json!({"generation": obj["metadata"]["generation"]})
        } else {
            json!({"resourceVersion": obj["metadata"]["resourceVersion"]})
        };
        out.insert(format!("{kind}/{n}"), version);
    }
    Ok(out)
}

/// The namespace's core/v1 events about Canary `name` (the form Flagger writes), oldest first,
/// as JSON for the scenario's log directory.
async fn raw_events(s: &Scenario, name: &str) -> Result<Vec<Value>> {
    let events = s.core_events(name).await?;
    Ok(events
        .into_iter()
        .map(|e| {
            json!({
                "type": e.type_, "reason": e.reason, "message": e.message,
                "source": e.source, "reportingComponent": e.reporting_component,
                "reportingInstance": e.reporting_instance, "action": e.action,
                "count": e.count, "involvedObject.apiVersion": e.involved_object.api_version,
            })
        })
        .collect())
}

/// Creates (or bumps) a ConfigMap and returns its resourceVersion: a point in the cluster's
/// history the traffic checks can split at.
async fn marker(s: &Scenario, what: &str) -> Result<u64> {
    let api: Api<ConfigMap> = Api::namespaced(s.client.clone(), &s.ns);
    let cm: ConfigMap = serde_json::from_value(json!({
        "metadata": {"generateName": "marker-", "labels": {"flagger-e2e/marker": what}}
    }))?;
    let created = api.create(&PostParams::default(), &cm).await?;
    Ok(created
        .metadata
        .resource_version
        .ok_or("marker without resourceVersion")?
        .parse()?)
}

fn write_json(s: &Scenario, file: &str, value: &impl serde::Serialize) -> Result<()> {
    std::fs::write(s.dir.join(file), serde_json::to_vec_pretty(value)?)?;
    Ok(())
}

async fn ready_replicas(s: &Scenario, name: &str) -> Result<Option<i32>> {
    Ok(s.deployment(name)
        .await?
        .and_then(|d| d.status)
        .and_then(|st| st.ready_replicas))
}

#[tokio::test]
#[ignore = "needs the processes of tests/e2e/run.sh"]
async fn flagger_to_ours() -> Result<()> {
    let gate = Gate::start().await?;
    gate.open();
    let s = Scenario::new("migration").await?;
    let ns = s.ns.clone();
    let traffic = TrafficWatch::start(s.client.clone(), &ns)?;

    // The user's cluster before any Canary: two apps serving through their own Services, and for
    // podinfo a VirtualService of the user's.
    for app in ["podinfo", "backend"] {
        s.apply(&fixtures::deployment(&ns, app, IMAGE_V1)).await?;
    }
    s.wait_for("both apps ready", INIT_TIMEOUT, || async {
        let a = ready_replicas(&s, "podinfo").await?;
        let b = ready_replicas(&s, "backend").await?;
        Ok((a == Some(2) && b == Some(2)).then_some(()))
    })
    .await?;
    s.apply(&apex_service("podinfo")).await?;
    s.apply(&user_virtual_service("podinfo")).await?;
    let user_vs = s
        .get("networking.istio.io/v1", "VirtualService", "podinfo")
        .await?
        .ok_or("VirtualService podinfo missing")?;

    // --- the real Flagger --------------------------------------------------------------------
    let mut flagger = RealFlagger::start(&s.env, &ns, &s.dir, &s.env.prometheus).await?;
    let podinfo_status = watch::canary_status(s.client.clone(), &ns, "podinfo")?;
    let backend_status = watch::canary_status(s.client.clone(), &ns, "backend")?;
    let backend_weights = watch::virtual_service_weights(s.client.clone(), &ns, "backend")?;
    for app in ["podinfo", "backend"] {
        s.apply(&canary(&ns, app, &gate.url)).await?;
    }
    for app in ["podinfo", "backend"] {
        s.wait_phase(app, Phase::Initialized, FLAGGER_TIMEOUT)
            .await
            .map_err(|e| format!("{e}\nFlagger's log:\n{}", flagger.log_tail(40)))?;
    }
    s.set_image("podinfo", IMAGE_V2).await?;
    s.wait_phase("podinfo", Phase::Succeeded, FLAGGER_TIMEOUT)
        .await
        .map_err(|e| format!("{e}\nFlagger's log:\n{}", flagger.log_tail(40)))?;
    assert_eq!(s.image("podinfo-primary").await?.as_deref(), Some(IMAGE_V2));
    // backend: a new revision, and Flagger is stopped while the canary takes a share.
    s.set_image("backend", IMAGE_V2).await?;
    s.wait_for(
        "backend mid-analysis under Flagger",
        FLAGGER_TIMEOUT,
        || async {
            let st = s.canary("backend").await?.status.unwrap_or_default();
            Ok((st.phase == Some(Phase::Progressing) && st.canary_weight > 0).then_some(()))
        },
    )
    .await?;
    flagger.stop(Duration::from_secs(10)).await?;
    let switch_rv = marker(&s, "switch").await?;

    let left_podinfo = s.get("flagger.app/v1beta1", "Canary", "podinfo").await?;
    let left_backend = s.get("flagger.app/v1beta1", "Canary", "backend").await?;
    let left_backend_weights = backend_weights.values();
    let (flagger_backend_weight, flagger_backend_primary) =
        *left_backend_weights.last().ok_or("no backend route seen")?;
    assert!(
        flagger_backend_weight > 0 && flagger_backend_primary < 100,
        "Flagger stopped mid-analysis: {left_backend_weights:?}"
    );
    let podinfo_objects = written_objects(&s, "podinfo").await?;
    let podinfo_vs = s
        .get("networking.istio.io/v1", "VirtualService", "podinfo")
        .await?
        .ok_or("VirtualService podinfo gone")?;
    let flagger_calls = gate.calls().len();
    let podinfo_statuses_at_switch = podinfo_status.values().len();
    write_json(
        &s,
        "left-by-flagger.json",
        &json!({
            "podinfo": left_podinfo, "backend": left_backend,
            "userVirtualService": user_vs, "podinfoVirtualService": podinfo_vs,
            "podinfoObjects": podinfo_objects,
            "podinfoEvents": raw_events(&s, "podinfo").await?,
            "backendEvents": raw_events(&s, "backend").await?,
            "webhookCalls": gate.calls(),
        }),
    )?;

    // --- ours --------------------------------------------------------------------------------
    let mut op = s.operator(&OperatorOpts::new("flagger-0", "istio")).await?;
    // Idle: podinfo's primary runs the target's template; three analysis intervals pass.
    tokio::time::sleep(Duration::from_secs(32)).await;
    let adopted = s.canary("podinfo").await?.status.expect("status");
    assert_eq!(adopted.phase, Some(Phase::Succeeded));
    // Adoption records our hashes and nothing else: Flagger's condition and transition time stay.
    let adopted_json = s
        .get("flagger.app/v1beta1", "Canary", "podinfo")
        .await?
        .map(|c| c["status"].clone())
        .unwrap_or_default();
    let left_status = left_podinfo
        .as_ref()
        .map(|c| c["status"].clone())
        .unwrap_or_default();
    assert_eq!(
        adopted_json["conditions"], left_status["conditions"],
        "conditions after adoption"
    );
    assert_eq!(
        adopted_json["lastTransitionTime"], left_status["lastTransitionTime"],
        "adoption is no transition"
    );
    assert_ne!(
        adopted_json["lastAppliedSpec"], left_status["lastAppliedSpec"],
        "ours records its own hash of the adopted revision"
    );
    assert_eq!(adopted.last_applied_spec, adopted.last_promoted_spec);
    assert_eq!(
        watch::phases(&podinfo_status.values())
            .last()
            .map(String::as_str),
        Some("Succeeded")
    );
    let statuses = podinfo_status.values();
    assert!(
        statuses[podinfo_statuses_at_switch.saturating_sub(1)..]
            .iter()
            .all(|d| d.phase == "Succeeded" && d.canary_weight == 0),
        "podinfo's status under ours: {statuses:?}"
    );
    let ours_podinfo: Vec<_> = s
        .events("podinfo")
        .await?
        .into_iter()
        .filter(|e| e.reporting_instance == "flagger-0")
        .collect();
    assert!(
        ours_podinfo.is_empty(),
        "ours announced something about the adopted podinfo: {ours_podinfo:#?}"
    );
    let podinfo_hooks_after: Vec<Value> = gate.calls()[flagger_calls..]
        .iter()
        .filter(|c| c["name"] == "podinfo")
        .cloned()
        .collect();
    assert!(
        podinfo_hooks_after.is_empty(),
        "webhooks called for the adopted podinfo: {podinfo_hooks_after:#?}"
    );
    assert_eq!(
        written_objects(&s, "podinfo").await?,
        podinfo_objects,
        "ours wrote routes, Services or Deployments of the adopted podinfo"
    );
    let states = traffic.states();
    let idle_history: Vec<_> = traffic::selector_history(&states, "podinfo");
    assert_eq!(
        idle_history,
        [
            None,
            Some(BTreeMap::from([("app".into(), "podinfo".into())])),
            Some(BTreeMap::from([("app".into(), "podinfo-primary".into())])),
        ],
        "apex selector history"
    );

    // A new revision rolls out under ours.
    s.set_image("podinfo", IMAGE_V3).await?;
    let backend_done = s
        .wait_phase("backend", Phase::Succeeded, FLAGGER_TIMEOUT)
        .await?;
    let podinfo_done = s
        .wait_for(
            "podinfo's V3 promoted under ours",
            FLAGGER_TIMEOUT,
            || async {
                let c = s.canary("podinfo").await?;
                let done = c.status.as_ref().and_then(|st| st.phase) == Some(Phase::Succeeded)
                    && s.image("podinfo-primary").await?.as_deref() == Some(IMAGE_V3);
                Ok(done.then_some(c))
            },
        )
        .await?;
    assert_eq!(s.image("podinfo-primary").await?.as_deref(), Some(IMAGE_V3));
    assert_eq!(s.image("backend-primary").await?.as_deref(), Some(IMAGE_V2));
    for done in [&podinfo_done, &backend_done] {
        let st = done.status.as_ref().expect("status");
        assert_eq!(st.canary_weight, 0);
        assert_eq!(st.last_promoted_spec, st.last_applied_spec);
    }
    s.wait_for(
        "backend routed back to its primary",
        ROLLOUT_TIMEOUT,
        || async { Ok((backend_weights.values().last() == Some(&(100, 0))).then_some(())) },
    )
    .await?;
    assert!(
        !watch::phases(&backend_status.values()).contains(&"Failed".to_string()),
        "{:?}",
        backend_status.values()
    );

    // podinfo under ours: one run, announced as Flagger does.
    let notes = s.event_notes("podinfo").await?;
    let id = format!("podinfo.{ns}");
    let ours_notes: Vec<String> = s
        .events("podinfo")
        .await?
        .into_iter()
        .filter(|e| e.reporting_instance == "flagger-0")
        .map(|e| e.note)
        .collect();
    assert_events_in_order(
        &ours_notes,
        &[
            &format!("New revision detected! Scaling up {id}"),
            &format!("Starting canary analysis for {id}"),
            &format!("Advance {id} canary weight 25"),
            &format!("Advance {id} canary weight 50"),
            &format!("Copying {id} template spec to podinfo-primary.{ns}"),
            &format!("Promotion completed! Scaling down {id}"),
        ],
    );
    assert_eq!(
        ours_notes
            .iter()
            .filter(|n| n.starts_with("New revision detected"))
            .count(),
        1,
        "ours ran podinfo once, for V3: {notes:#?}"
    );
    // backend under ours: the run Flagger left is run again from the start, and promoted.
    let backend_ours: Vec<String> = s
        .events("backend")
        .await?
        .into_iter()
        .filter(|e| e.reporting_instance == "flagger-0")
        .map(|e| e.note)
        .collect();
    let bid = format!("backend.{ns}");
    assert_events_in_order(
        &backend_ours,
        &[
            &format!("Advance {bid} canary weight 25"),
            &format!("Advance {bid} canary weight 50"),
            &format!("Copying {bid} template spec to backend-primary.{ns}"),
            &format!("Promotion completed! Scaling down {bid}"),
        ],
    );
    let backend_hooks: Vec<Value> = calls_for(&gate, "backend");

    // Traffic: the apex Services, their EndpointSlices and every routed share, checked after
    // every change. podinfo's from the start (Flagger's onboarding of the user's Service
    // included), backend's from the switch (before it, Flagger created its apex itself).
    let states = traffic.states();
    let podinfo_violations = traffic::violations(&states, "podinfo", 0);
    let backend_violations = traffic::violations(&states, "backend", switch_rv);
    let backend_flagger_violations: Vec<String> = traffic::violations(&states, "backend", 0)
        .into_iter()
        .filter(|v| !backend_violations.contains(v))
        .collect();
    write_json(
        &s,
        "after-ours.json",
        &json!({
            "podinfo": s.get("flagger.app/v1beta1", "Canary", "podinfo").await?,
            "backend": s.get("flagger.app/v1beta1", "Canary", "backend").await?,
            "podinfoEvents": raw_events(&s, "podinfo").await?,
            "backendEvents": raw_events(&s, "backend").await?,
            "webhookCalls": gate.calls(),
            "backendWeights": backend_weights.values(),
            "podinfoStatuses": format!("{:?}", podinfo_status.values()),
            "backendStatuses": format!("{:?}", backend_status.values()),
            "podinfoSelectors": traffic::selector_history(&states, "podinfo"),
            "backendSelectors": traffic::selector_history(&states, "backend"),
            "backendViolationsUnderFlagger": backend_flagger_violations,
            "backendHooks": backend_hooks.len(),
            "podinfoAdoptedStatus": adopted_json,
            "podinfoVirtualServiceAfter":
                s.get("networking.istio.io/v1", "VirtualService", "podinfo").await?,
            "podinfoServiceAfter": s.get("v1", "Service", "podinfo").await?,
        }),
    )?;
    assert!(
        podinfo_violations.is_empty(),
        "podinfo's traffic: {podinfo_violations:#?}"
    );
    assert!(
        backend_violations.is_empty(),
        "backend's traffic under ours: {backend_violations:#?}"
    );
    assert_eq!(
        traffic::selector_history(&states, "podinfo").last(),
        Some(&Some(BTreeMap::from([(
            "app".into(),
            "podinfo-primary".into()
        )]))),
    );

    stop_and_check_fidelity(&s, vec![&mut op]).await?;
    s.finish().await;
    Ok(())
}
