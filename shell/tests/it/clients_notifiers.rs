//! Each alert format as the chat service receives it, and how AlertProviders, Secrets and the
//! global flags become notifiers.

use std::collections::BTreeMap;

use crate::clients_support::{TestServer, refused_url};
use flagger::cli::GlobalNotifierConfig;
use flagger::notifier::{Notifier, NotifierSettings};
use flagger_core::api::AlertProviderSpec;
use flagger_core::api::metric_template::LocalRef;
use flagger_core::command::{Alert, AlertDestination, AlertSeverity};
use serde_json::json;

fn alert(severity: AlertSeverity) -> Alert {
    Alert {
        destination: AlertDestination::Global,
        severity,
        message: "New revision detected, progressing canary analysis.".into(),
        fields: vec![
            ("Target".into(), "Deployment/podinfo.test".into()),
            ("Failed checks threshold".into(), "5".into()),
        ],
    }
}

fn provider(kind: &str, address: &str) -> AlertProviderSpec {
    AlertProviderSpec {
        type_: kind.into(),
        address: Some(address.to_string()),
        ..AlertProviderSpec::default()
    }
}

async fn received(
    kind: &str,
    severity: AlertSeverity,
) -> (crate::clients_support::Recorded, String) {
    let server = TestServer::fixed(200, "ok").await;
    let n =
        Notifier::from_provider(&provider(kind, &format!("{}/hook", server.url)), None).unwrap();
    n.post(&alert(severity), "podinfo", "test").await.unwrap();
    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let r = requests[0].clone();
    assert_eq!(r.method, "POST");
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/json")
    );
    let path = r.path.clone();
    (r, path)
}

fn slack_like(color: &str) -> serde_json::Value {
    json!({
        "channel": "general",
        "username": "flagger",
        "icon_url": "",
        "icon_emoji": ":rocket:",
        "attachments": [{
            "color": color,
            "author_name": "podinfo.test",
            "text": "New revision detected, progressing canary analysis.",
            "mrkdwn_in": ["text"],
            "fields": [
                {"title": "Target", "value": "Deployment/podinfo.test", "short": false},
                {"title": "Failed checks threshold", "value": "5", "short": false}
            ]
        }]
    })
}

#[tokio::test]
async fn slack_attachment_with_default_channel_and_user() {
    let (r, path) = received("slack", AlertSeverity::Info).await;
    assert_eq!(path, "/hook");
    assert_eq!(r.json(), slack_like("good"));
    let (r, _) = received("slack", AlertSeverity::Warn).await;
    assert_eq!(r.json()["attachments"][0]["color"], "good");
    let (r, _) = received("slack", AlertSeverity::Error).await;
    assert_eq!(r.json(), slack_like("danger"));
}

#[tokio::test]
async fn discord_uses_the_slack_endpoint() {
    let (r, path) = received("discord", AlertSeverity::Error).await;
    assert_eq!(path, "/hook/slack");
    assert_eq!(r.json(), slack_like("danger"));
}

#[tokio::test]
async fn rocket_uses_hex_colors() {
    let (r, _) = received("rocket", AlertSeverity::Info).await;
    assert_eq!(r.json(), slack_like("#0076D7"));
    let (r, _) = received("rocket", AlertSeverity::Error).await;
    assert_eq!(r.json()["attachments"][0]["color"], "#FF0000");
}

#[tokio::test]
async fn msteams_message_card() {
    let (r, _) = received("msteams", AlertSeverity::Info).await;
    assert_eq!(
        r.json(),
        json!({
            "@type": "MessageCard",
            "@context": "http://schema.org/extensions",
            "themeColor": "0076D7",
            "summary": "podinfo.test",
            "sections": [{
                "activityTitle": "New revision detected, progressing canary analysis.",
                "activitySubtitle": "podinfo.test",
                "facts": [
                    {"name": "Target", "value": "Deployment/podinfo.test"},
                    {"name": "Failed checks threshold", "value": "5"}
                ]
            }]
        })
    );
    let (r, _) = received("msteams", AlertSeverity::Error).await;
    assert_eq!(r.json()["themeColor"], "FF0000");
}

#[tokio::test]
async fn gchat_card_with_one_section_per_field() {
    let (r, _) = received("gchat", AlertSeverity::Info).await;
    assert_eq!(
        r.json(),
        json!({
            "cards": [{
                "header": {
                    "title": "Flagger",
                    "subtitle": "podinfo.test",
                    "imageUrl": "https://flagger.app/favicon.png"
                },
                "sections": [
                    {"widgets": [{"textParagraph": {"text":
                        "<font color=#848484><strong>New revision detected, progressing canary analysis.</strong></font>"}}]},
                    {"widgets": [{"textParagraph": {"text":
                        "Target<br><font color=#848484><strong>Deployment/podinfo.test</strong></font>"}}]},
                    {"widgets": [{"textParagraph": {"text":
                        "Failed checks threshold<br><font color=#848484><strong>5</strong></font>"}}]}
                ]
            }]
        })
    );
}

#[tokio::test]
async fn secret_address_and_token_override_the_spec() {
    let server = TestServer::fixed(200, "").await;
    let spec = AlertProviderSpec {
        type_: "slack".into(),
        address: Some("https://ignored.example/hook".into()),
        channel: Some("deploys".into()),
        username: Some("canary-bot".into()),
        secret_ref: Some(LocalRef {
            name: "slack".into(),
        }),
        ..AlertProviderSpec::default()
    };
    let secret = BTreeMap::from([
        (
            "address".to_string(),
            format!("{}/from-secret", server.url).into_bytes(),
        ),
        ("token".to_string(), b"xoxb-123".to_vec()),
    ]);
    let n = Notifier::from_provider(&spec, Some(&secret)).unwrap();
    n.post(&alert(AlertSeverity::Info), "podinfo", "test")
        .await
        .unwrap();
    let r = &server.requests()[0];
    assert_eq!(r.path, "/from-secret");
    assert_eq!(
        r.header("authorization").as_deref(),
        Some("Bearer xoxb-123")
    );
    assert_eq!(r.json()["channel"], "deploys");
    assert_eq!(r.json()["username"], "canary-bot");

    let no_address = BTreeMap::from([("token".to_string(), b"x".to_vec())]);
    let err = Notifier::from_provider(&spec, Some(&no_address)).unwrap_err();
    assert_eq!(err, "secret does not contain an address");
}

#[tokio::test]
async fn only_slack_sends_the_token() {
    let server = TestServer::fixed(200, "").await;
    let n = Notifier::new(NotifierSettings {
        kind: "msteams".into(),
        url: server.url.clone(),
        token: Some("secret".into()),
        ..NotifierSettings::default()
    })
    .unwrap();
    n.post(&alert(AlertSeverity::Info), "podinfo", "test")
        .await
        .unwrap();
    assert_eq!(server.requests()[0].header("authorization"), None);
}

#[tokio::test]
async fn posts_through_the_proxy() {
    let proxy = TestServer::fixed(200, "").await;
    let spec = AlertProviderSpec {
        proxy: Some(proxy.url.clone()),
        ..provider("slack", "http://hooks.chat.invalid/services/T0/B0")
    };
    let n = Notifier::from_provider(&spec, None).unwrap();
    n.post(&alert(AlertSeverity::Info), "podinfo", "test")
        .await
        .unwrap();
    let r = &proxy.requests()[0];
    assert_eq!(r.uri, "http://hooks.chat.invalid/services/T0/B0");
    assert_eq!(r.json()["channel"], "general");
}

#[tokio::test]
async fn empty_url_is_a_no_op() {
    let n = Notifier::from_provider(&provider("slack", ""), None).unwrap();
    assert!(!n.is_enabled());
    n.post(&alert(AlertSeverity::Error), "podinfo", "test")
        .await
        .unwrap();
}

#[tokio::test]
async fn configuration_errors() {
    let err = Notifier::from_provider(&provider("pagerduty", "http://x/"), None).unwrap_err();
    assert_eq!(err, "provider pagerduty not supported");
    let err = Notifier::from_provider(&provider("slack", "not a url"), None).unwrap_err();
    assert_eq!(err, "invalid Slack hook URL not a url");
    let spec = AlertProviderSpec {
        secret_ref: Some(LocalRef { name: "s".into() }),
        ..provider("slack", "")
    };
    assert!(Notifier::from_provider(&spec, None).is_err());
}

#[tokio::test]
async fn delivery_failures_are_reported() {
    let server = TestServer::fixed(410, "channel archived").await;
    let n = Notifier::from_provider(&provider("slack", &server.url), None).unwrap();
    let err = n
        .post(&alert(AlertSeverity::Info), "podinfo", "test")
        .await
        .unwrap_err();
    assert_eq!(
        err,
        "sending notification bad response 410: channel archived"
    );
    let down = refused_url().await;
    let n = Notifier::from_provider(&provider("slack", &down), None).unwrap();
    let err = n
        .post(&alert(AlertSeverity::Info), "podinfo", "test")
        .await
        .unwrap_err();
    assert!(
        err.starts_with("sending notification failed to send"),
        "{err}"
    );
}

#[tokio::test]
async fn global_notifier_from_flags() {
    let server = TestServer::fixed(200, "").await;
    let n = Notifier::from_global(&GlobalNotifierConfig {
        kind: "slack".into(),
        url: server.url.clone(),
        token: None,
        proxy: None,
        username: "flagger".into(),
        channel: "alerts".into(),
    })
    .unwrap();
    n.post(&alert(AlertSeverity::Warn), "podinfo", "test")
        .await
        .unwrap();
    let body = server.requests()[0].json();
    assert_eq!(body["channel"], "alerts");
    assert_eq!(body["attachments"][0]["author_name"], "podinfo.test");
}

#[tokio::test]
async fn gchat_escapes_markup_in_messages() {
    let server = TestServer::fixed(200, "").await;
    let n = Notifier::from_provider(&provider("gchat", &server.url), None).unwrap();
    let mut a = alert(AlertSeverity::Error);
    a.message = "Progress deadline exceeded <b>x</b> & more".into();
    a.fields.clear();
    n.post(&a, "podinfo", "test").await.unwrap();
    let body = server.requests()[0].json();
    assert_eq!(
        body["cards"][0]["sections"][0]["widgets"][0]["textParagraph"]["text"],
        "<font color=#848484><strong>Progress deadline exceeded &lt;b&gt;x&lt;/b&gt; &amp; more</strong></font>"
    );
}
