//! Alerts to chat services: the AlertProvider types `slack`, `msteams`, `discord`, `rocket` and
//! `gchat`, and the operator-wide notifier of `-slack-url` / `-msteams-url`.
//!
//! A [`Notifier`] is built per destination — from an AlertProvider and its Secret (resolved by
//! the caller), or from the flags — and posts [`Alert`]s in Flagger's message formats (see
//! [`payload`]). A notifier without URL does nothing, as in Flagger.

pub mod payload;

use std::collections::BTreeMap;
use std::error::Error as _;
use std::time::Duration;

use flagger_core::api::AlertProviderSpec;
use flagger_core::command::Alert;

use crate::cli::GlobalNotifierConfig;
use crate::webhook::http_client_builder;

use self::payload::{Message, Palette};

/// Flagger's timeout for one notification.
pub const POST_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Slack,
    MsTeams,
    Discord,
    Rocket,
    GChat,
}

impl Kind {
    pub fn parse(s: &str) -> Result<Kind, String> {
        match s {
            "slack" => Ok(Kind::Slack),
            "msteams" => Ok(Kind::MsTeams),
            "discord" => Ok(Kind::Discord),
            "rocket" => Ok(Kind::Rocket),
            "gchat" => Ok(Kind::GChat),
            other => Err(format!("provider {other} not supported")),
        }
    }

    fn label(self) -> &'static str {
        match self {
            Kind::Slack => "Slack hook",
            Kind::MsTeams => "MS Teams webhook",
            Kind::Discord => "Discord hook",
            Kind::Rocket => "Rocket hook",
            Kind::GChat => "Google Chat webhook",
        }
    }
}

/// Where and how one destination receives alerts.
#[derive(Debug, Clone)]
pub struct Notifier {
    target: Option<Target>,
}

#[derive(Debug, Clone)]
struct Target {
    kind: Kind,
    url: reqwest::Url,
    /// Sent as a bearer token (Slack only, as in Flagger).
    token: Option<String>,
    username: String,
    channel: String,
    client: reqwest::Client,
}

/// Settings of a notifier, before validation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NotifierSettings {
    pub kind: String,
    /// Empty: the notifier does nothing.
    pub url: String,
    pub token: Option<String>,
    pub proxy: Option<String>,
    pub username: String,
    pub channel: String,
}

impl Notifier {
    /// A notifier that drops every alert.
    pub fn disabled() -> Notifier {
        Notifier { target: None }
    }

    /// Validates the settings; an empty URL gives a disabled notifier.
    pub fn new(s: NotifierSettings) -> Result<Notifier, String> {
        if s.url.is_empty() {
            return Ok(Notifier::disabled());
        }
        let kind = Kind::parse(&s.kind)?;
        let invalid = || format!("invalid {} URL {}", kind.label(), s.url);
        let mut url = reqwest::Url::parse(&s.url).map_err(|_| invalid())?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(invalid());
        }
        if matches!(kind, Kind::Slack | Kind::Discord | Kind::Rocket) {
            let name = match kind {
                Kind::Slack => "Slack",
                Kind::Discord => "Discord",
                _ => "Rocket",
            };
            if s.username.is_empty() {
                return Err(format!("empty {name} username"));
            }
            if s.channel.is_empty() {
                return Err(format!("empty {name} channel"));
            }
        }
        if kind == Kind::Discord && !url.path().ends_with("/slack") {
            // Discord understands Slack's message format on the webhook's `/slack` endpoint.
            let path = format!("{}/slack", url.path().trim_end_matches('/'));
            url.set_path(&path);
        }
        let mut builder = http_client_builder().timeout(POST_TIMEOUT);
        if let Some(proxy) = s.proxy.as_deref().filter(|p| !p.is_empty()) {
            let proxy = reqwest::Proxy::all(proxy)
                .map_err(|e| format!("unable to parse proxy URL '{proxy}', error: {e}"))?;
            builder = builder.proxy(proxy);
        }
        let client = builder
            .build()
            .map_err(|e| format!("building the HTTP client failed: {e}"))?;
        Ok(Notifier {
            target: Some(Target {
                kind,
                url,
                token: s.token.filter(|t| !t.is_empty() && kind == Kind::Slack),
                username: s.username,
                channel: s.channel,
                client,
            }),
        })
    }

    /// The notifier an AlertProvider describes. With a `secretRef`, `secret` must hold its data:
    /// the key `address` (required) replaces `spec.address`, and `token` is optional. Channel and
    /// username default to `general` and `flagger`.
    pub fn from_provider(
        spec: &AlertProviderSpec,
        secret: Option<&BTreeMap<String, Vec<u8>>>,
    ) -> Result<Notifier, String> {
        let mut url = spec.address.clone().unwrap_or_default();
        let mut token = None;
        if let Some(r) = &spec.secret_ref {
            let data = secret.ok_or_else(|| format!("secret {} was not read", r.name))?;
            let text = |v: &Vec<u8>| String::from_utf8_lossy(v).into_owned();
            url = data
                .get("address")
                .map(text)
                .ok_or_else(|| "secret does not contain an address".to_string())?;
            token = data.get("token").map(text);
        }
        let or = |v: &Option<String>, default: &str| {
            v.clone()
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| default.to_string())
        };
        Notifier::new(NotifierSettings {
            kind: spec.type_.clone(),
            url,
            token,
            proxy: spec.proxy.clone(),
            username: or(&spec.username, "flagger"),
            channel: or(&spec.channel, "general"),
        })
    }

    /// The operator-wide notifier of the flags.
    pub fn from_global(c: &GlobalNotifierConfig) -> Result<Notifier, String> {
        Notifier::new(NotifierSettings {
            kind: c.kind.clone(),
            url: c.url.clone(),
            token: c.token.clone(),
            proxy: c.proxy.clone(),
            username: c.username.clone(),
            channel: c.channel.clone(),
        })
    }

    pub fn is_enabled(&self) -> bool {
        self.target.is_some()
    }

    /// The JSON body this notifier would send for `alert` (`None` when disabled).
    pub fn body(
        &self,
        alert: &Alert,
        canary_name: &str,
        namespace: &str,
    ) -> Option<serde_json::Value> {
        let t = self.target.as_ref()?;
        let subject = format!("{canary_name}.{namespace}");
        let m = Message {
            subject: &subject,
            text: &alert.message,
            fields: &alert.fields,
            severity: alert.severity,
        };
        let value = match t.kind {
            Kind::Slack | Kind::Discord => {
                serde_json::to_value(payload::slack(&m, &t.channel, &t.username, Palette::Slack))
            }
            Kind::Rocket => {
                serde_json::to_value(payload::slack(&m, &t.channel, &t.username, Palette::Rocket))
            }
            Kind::MsTeams => serde_json::to_value(payload::teams(&m)),
            Kind::GChat => serde_json::to_value(payload::gchat(&m)),
        };
        // Serializing plain structs of strings cannot fail.
        value.ok()
    }

    /// Posts `alert` about Canary `canary_name` in `namespace`. `Ok` when disabled.
    pub async fn post(
        &self,
        alert: &Alert,
        canary_name: &str,
        namespace: &str,
    ) -> Result<(), String> {
        let (Some(t), Some(body)) = (&self.target, self.body(alert, canary_name, namespace)) else {
            return Ok(());
        };
        let mut request = t.client.post(t.url.clone()).json(&body);
        if let Some(token) = &t.token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.map_err(|e| {
            let mut text = format!("sending notification failed to send: {e}");
            let mut source = e.source();
            while let Some(s) = source {
                text.push_str(": ");
                text.push_str(&s.to_string());
                source = s.source();
            }
            text
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let body = response.text().await.unwrap_or_default();
        Err(format!(
            "sending notification bad response {}: {}",
            status.as_u16(),
            body.trim()
        ))
    }
}
