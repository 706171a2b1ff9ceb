//! The JSON each chat service receives, in the shapes Flagger sends (so existing webhook
//! integrations and Slack/Discord/Rocket.Chat/Teams/Google Chat render alerts the same way).

use flagger_core::command::AlertSeverity;
use serde::Serialize;

/// The message to format: who it is about, what happened, details, severity.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    /// `<canary>.<namespace>`
    pub subject: &'a str,
    pub text: &'a str,
    pub fields: &'a [(String, String)],
    pub severity: AlertSeverity,
}

impl Message<'_> {
    fn is_error(&self) -> bool {
        self.severity == AlertSeverity::Error
    }
}

/// Slack's legacy attachment message; Discord (through its `/slack` endpoint) and Rocket.Chat
/// accept the same shape.
#[derive(Serialize, Debug, PartialEq)]
pub struct SlackPayload<'a> {
    pub channel: &'a str,
    pub username: &'a str,
    pub icon_url: &'a str,
    pub icon_emoji: &'a str,
    pub attachments: Vec<SlackAttachment<'a>>,
}

#[derive(Serialize, Debug, PartialEq)]
pub struct SlackAttachment<'a> {
    pub color: &'a str,
    pub author_name: &'a str,
    pub text: &'a str,
    pub mrkdwn_in: [&'a str; 1],
    pub fields: Vec<SlackField<'a>>,
}

#[derive(Serialize, Debug, PartialEq)]
pub struct SlackField<'a> {
    pub title: &'a str,
    pub value: &'a str,
    pub short: bool,
}

/// Slack and Discord color an attachment `good` or `danger`; Rocket.Chat takes hex colors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Palette {
    Slack,
    Rocket,
}

pub fn slack<'a>(
    m: &Message<'a>,
    channel: &'a str,
    username: &'a str,
    palette: Palette,
) -> SlackPayload<'a> {
    let color = match (palette, m.is_error()) {
        (Palette::Slack, false) => "good",
        (Palette::Slack, true) => "danger",
        (Palette::Rocket, false) => "#0076D7",
        (Palette::Rocket, true) => "#FF0000",
    };
    SlackPayload {
        channel,
        username,
        icon_url: "",
        icon_emoji: ":rocket:",
        attachments: vec![SlackAttachment {
            color,
            author_name: m.subject,
            text: m.text,
            mrkdwn_in: ["text"],
            fields: m
                .fields
                .iter()
                .map(|(title, value)| SlackField {
                    title,
                    value,
                    short: false,
                })
                .collect(),
        }],
    }
}

/// A Microsoft Teams "MessageCard".
#[derive(Serialize, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TeamsPayload<'a> {
    #[serde(rename = "@type")]
    pub type_: &'a str,
    #[serde(rename = "@context")]
    pub context: &'a str,
    pub theme_color: &'a str,
    pub summary: &'a str,
    pub sections: Vec<TeamsSection<'a>>,
}

#[derive(Serialize, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TeamsSection<'a> {
    pub activity_title: &'a str,
    pub activity_subtitle: &'a str,
    pub facts: Vec<TeamsFact<'a>>,
}

#[derive(Serialize, Debug, PartialEq)]
pub struct TeamsFact<'a> {
    pub name: &'a str,
    pub value: &'a str,
}

pub fn teams<'a>(m: &Message<'a>) -> TeamsPayload<'a> {
    TeamsPayload {
        type_: "MessageCard",
        context: "http://schema.org/extensions",
        theme_color: if m.is_error() { "FF0000" } else { "0076D7" },
        summary: m.subject,
        sections: vec![TeamsSection {
            activity_title: m.text,
            activity_subtitle: m.subject,
            facts: m
                .fields
                .iter()
                .map(|(name, value)| TeamsFact { name, value })
                .collect(),
        }],
    }
}

/// A Google Chat card: a header, the message, then one section per field.
#[derive(Serialize, Debug, PartialEq)]
pub struct GChatPayload<'a> {
    pub cards: Vec<GChatCard<'a>>,
}

#[derive(Serialize, Debug, PartialEq)]
pub struct GChatCard<'a> {
    pub header: GChatHeader<'a>,
    pub sections: Vec<GChatSection>,
}

#[derive(Serialize, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GChatHeader<'a> {
    pub title: &'a str,
    pub subtitle: &'a str,
    pub image_url: &'a str,
}

#[derive(Serialize, Debug, PartialEq)]
pub struct GChatSection {
    pub widgets: Vec<GChatWidget>,
}

#[derive(Serialize, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GChatWidget {
    pub text_paragraph: GChatText,
}

#[derive(Serialize, Debug, PartialEq)]
pub struct GChatText {
    pub text: String,
}

pub fn gchat<'a>(m: &Message<'a>) -> GChatPayload<'a> {
    let section = |text: String| GChatSection {
        widgets: vec![GChatWidget {
            text_paragraph: GChatText { text },
        }],
    };
    let mut sections = vec![section(format!(
        "<font color=#848484><strong>{}</strong></font>",
        html_escape(m.text)
    ))];
    sections.extend(m.fields.iter().map(|(name, value)| {
        section(format!(
            "{}<br><font color=#848484><strong>{}</strong></font>",
            html_escape(name),
            html_escape(value)
        ))
    }));
    GChatPayload {
        cards: vec![GChatCard {
            header: GChatHeader {
                title: "Flagger",
                subtitle: m.subject,
                image_url: "https://flagger.app/favicon.png",
            },
            sections,
        }],
    }
}

/// Google Chat interprets a subset of HTML in text paragraphs; messages (which may quote error
/// text) must not be able to inject markup. Flagger sends them unescaped.
fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            c => out.push(c),
        }
    }
    out
}
