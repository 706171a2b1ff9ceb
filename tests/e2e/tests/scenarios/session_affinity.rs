//! Session affinity through the live operator: while the canary takes traffic, the
//! VirtualService pins clients that carry the run's cookie (the one in the Canary's status) to
//! it and hands that cookie out from the canary; once promoted, the cookie is expired.

use flagger_core::api::Phase;
use flagger_e2e::Result;
use flagger_e2e::fixtures::{self, IMAGE_V1, IMAGE_V2};
use flagger_e2e::operator::OperatorOpts;
use flagger_e2e::scenario::Scenario;
use serde_json::{Value, json};

use crate::common::*;

const VS: (&str, &str) = ("networking.istio.io/v1", "VirtualService");

fn regex_of(route: &Value) -> Option<&str> {
    route["match"][0]["headers"]["cookie"]["regex"].as_str()
}

#[tokio::test]
#[ignore = "needs the processes of tests/e2e/run.sh"]
async fn istio_session_affinity() -> Result<()> {
    let s = Scenario::new("istio_session_affinity").await?;
    let ns = s.ns.clone();
    s.apply(&fixtures::deployment(&ns, "podinfo", IMAGE_V1))
        .await?;
    let mut op = s.operator(&OperatorOpts::new("flagger-0", "istio")).await?;
    let mut canary = fixtures::weighted_canary(&ns, "podinfo", "istio");
    canary["spec"]["analysis"]["sessionAffinity"] =
        json!({"cookieName": "flagger-cookie", "maxAge": 3600});
    s.apply(&canary).await?;
    initialized(&s, "podinfo").await?;

    s.set_image("podinfo", IMAGE_V2).await?;
    canary_weight_reached(&s, "podinfo", 20).await?;
    let status = s.canary("podinfo").await?.status.expect("status");
    let cookie = status
        .session_affinity_cookie
        .expect("a cookie while the canary takes traffic");
    let (name, value) = cookie.split_once('=').expect("name=value");
    assert_eq!(name, "flagger-cookie");
    let pinned = format!(".*flagger-cookie.*{value}.*");
    let vs = s.get(VS.0, VS.1, "podinfo").await?.expect("VirtualService");
    let http = vs["spec"]["http"].as_array().expect("http routes").clone();
    assert_eq!(http.len(), 2, "{http:#?}");
    assert_eq!(regex_of(&http[0]), Some(pinned.as_str()), "{http:#?}");
    assert_eq!(http[0]["route"][1]["destination"]["host"], "podinfo-canary");
    assert_eq!(http[0]["route"][1]["weight"], 100);
    assert_eq!(
        http[1]["route"][1]["headers"]["response"]["add"]["Set-Cookie"],
        format!("{cookie}; Max-Age=3600")
    );

    let done = s
        .wait_phase("podinfo", Phase::Succeeded, ROLLOUT_TIMEOUT)
        .await?;
    let status = done.status.expect("status");
    assert_eq!(status.session_affinity_cookie, None);
    assert_eq!(
        status.previous_session_affinity_cookie.as_ref(),
        Some(&cookie)
    );
    s.wait_for("the run's cookie expired", ROLLOUT_TIMEOUT, || async {
        let vs = s.get(VS.0, VS.1, "podinfo").await?.unwrap_or_default();
        let first = &vs["spec"]["http"][0];
        let expiring = regex_of(first) == Some(pinned.as_str())
            && first["headers"]["response"]["add"]["Set-Cookie"]
                == format!("{cookie}; Max-Age=-1").as_str()
            && first["route"][1]["weight"] == 0;
        Ok(expiring.then_some(()))
    })
    .await?;
    stop_and_check_fidelity(&s, vec![&mut op]).await?;
    s.finish().await;
    Ok(())
}
