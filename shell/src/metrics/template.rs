//! Rendering Flagger's query templates (`{{ namespace }}`, `{{ variables.reporter }}`, …) into
//! PromQL, such that no substituted value can change what the query means.
//!
//! Flagger runs Go's `text/template` and pastes values in verbatim, so a label value containing
//! `"` ends the string it was put in. Here every action is rendered according to where it stands
//! in the PromQL text, tracked by a small lexer over the template:
//!
//! - inside a `"…"` or `'…'` string: the value is escaped for that string (backslash, the quote,
//!   control characters), so it stays one literal whatever it contains;
//! - inside the string of a regex matcher (`=~`, `!~`): regex metacharacters are escaped first, so
//!   the value matches only itself (`my.app` does not match `myxapp`);
//! - inside a `` `…` `` raw string: a value containing a backtick is refused (raw strings have no
//!   escapes);
//! - anywhere else (e.g. `[{{ interval }}]`): only letters, digits, `_`, `:` and `.` are
//!   accepted, which covers durations, numbers and metric or label names.
//!
//! Supported actions are those of Flagger's model: `name`, `namespace`, `target`, `service`,
//! `ingress`, `route`, `interval` and `variables.<key>`, with Go's `{{-`/`-}}` whitespace
//! trimming and `{{/* comments */}}`. Anything else, and a missing variable, is an error (Flagger
//! renders with `missingkey=error`).

use std::collections::BTreeMap;
use std::fmt;

/// The values a query template may use (Flagger's `MetricTemplateModel`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TemplateModel {
    /// The Canary's name.
    pub name: String,
    pub namespace: String,
    /// The target Deployment's name.
    pub target: String,
    /// `spec.service.name`, or the target's name.
    pub service: String,
    /// `spec.ingressRef.name`, or the target's name.
    pub ingress: String,
    /// `spec.routeRef.name`, or the target's name.
    pub route: String,
    /// The metric's `interval` (`1m`).
    pub interval: String,
    /// The metric's `templateVariables`.
    pub variables: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderError(pub String);

impl fmt::Display for RenderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RenderError {}

/// Where the lexer stands in PromQL text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Context {
    Code,
    /// Inside a string opened by `quote`; `regex` when it is a regex matcher's operand.
    Str {
        quote: char,
        regex: bool,
    },
    Comment,
}

/// Follows PromQL's lexical structure character by character: just enough to know whether a
/// position is inside a string (and which kind) or a comment.
#[derive(Debug, Clone)]
pub(crate) struct Lexer {
    context: Context,
    /// The previous character inside a `"`/`'` string was an unconsumed backslash.
    escape_pending: bool,
    /// The last two non-whitespace characters of code, to spot `=~` and `!~`.
    last_code: [char; 2],
}

impl Lexer {
    pub(crate) fn new() -> Self {
        Lexer {
            context: Context::Code,
            escape_pending: false,
            last_code: [' ', ' '],
        }
    }

    pub(crate) fn context(&self) -> Context {
        self.context
    }

    pub(crate) fn escape_pending(&self) -> bool {
        self.escape_pending
    }

    pub(crate) fn feed(&mut self, c: char) {
        match self.context {
            Context::Code => match c {
                '"' | '\'' | '`' => {
                    let regex = matches!(self.last_code, ['=', '~'] | ['!', '~']);
                    self.context = Context::Str { quote: c, regex };
                }
                '#' => self.context = Context::Comment,
                c if c.is_whitespace() => {}
                c => self.last_code = [self.last_code[1], c],
            },
            Context::Str { quote, .. } => {
                if self.escape_pending {
                    self.escape_pending = false;
                } else if c == '\\' && quote != '`' {
                    self.escape_pending = true;
                } else if c == quote {
                    self.context = Context::Code;
                    self.last_code = [self.last_code[1], c];
                }
            }
            Context::Comment => {
                if c == '\n' {
                    self.context = Context::Code;
                }
            }
        }
    }

    pub(crate) fn feed_str(&mut self, s: &str) {
        s.chars().for_each(|c| self.feed(c));
    }
}

/// Renders `template` with `model`, escaping every value for its place in the query.
pub fn render(template: &str, model: &TemplateModel) -> Result<String, RenderError> {
    let mut out = String::with_capacity(template.len());
    let mut lexer = Lexer::new();
    let mut rest = template;
    let mut trim_next_leading = false;
    while let Some(open) = rest.find("{{") {
        let mut literal = &rest[..open];
        if trim_next_leading {
            literal = literal.trim_start();
        }
        let after_open = &rest[open + 2..];
        let close = after_open
            .find("}}")
            .ok_or_else(|| RenderError("template parsing failed: unclosed action".into()))?;
        let mut action = &after_open[..close];
        // Go requires whitespace between a trim marker and the action (`{{-3}}` is a number).
        if let Some(a) = action
            .strip_prefix('-')
            .filter(|a| a.starts_with(char::is_whitespace))
        {
            literal = literal.trim_end();
            action = a;
        }
        trim_next_leading = false;
        if let Some(a) = action
            .strip_suffix('-')
            .filter(|a| a.ends_with(char::is_whitespace))
        {
            trim_next_leading = true;
            action = a;
        }
        out.push_str(literal);
        lexer.feed_str(literal);
        let action = action.trim();
        if !(action.starts_with("/*") && action.ends_with("*/")) {
            let value = evaluate(action, model)?;
            let rendered = place(&value, action, &lexer)?;
            out.push_str(&rendered);
            lexer.feed_str(&rendered);
        }
        rest = &after_open[close + 2..];
    }
    if trim_next_leading {
        rest = rest.trim_start();
    }
    out.push_str(rest);
    Ok(out)
}

fn evaluate(action: &str, model: &TemplateModel) -> Result<String, RenderError> {
    let value = match action {
        "name" => &model.name,
        "namespace" => &model.namespace,
        "target" => &model.target,
        "service" => &model.service,
        "ingress" => &model.ingress,
        "route" => &model.route,
        "interval" => &model.interval,
        _ => {
            if let Some(key) = action.strip_prefix("variables.") {
                return model.variables.get(key).cloned().ok_or_else(|| {
                    RenderError(format!(
                        "template execution failed: map has no entry for key {key:?}"
                    ))
                });
            }
            return Err(RenderError(format!(
                "template parsing failed: unsupported action {{{{ {action} }}}} \
                 (supported: name, namespace, target, service, ingress, route, interval, variables.<key>)"
            )));
        }
    };
    Ok(value.clone())
}

/// The text that stands for `value` at the lexer's current position.
fn place(value: &str, action: &str, lexer: &Lexer) -> Result<String, RenderError> {
    match lexer.context() {
        Context::Str { quote, regex } => {
            if lexer.escape_pending() {
                return Err(RenderError(format!(
                    "{{{{ {action} }}}} follows an unfinished backslash escape"
                )));
            }
            let value = if regex {
                escape_regex(value)
            } else {
                value.to_string()
            };
            if quote == '`' {
                if value.contains('`') {
                    return Err(RenderError(format!(
                        "value of {{{{ {action} }}}} contains a backtick and cannot be placed in a raw string"
                    )));
                }
                Ok(value)
            } else {
                Ok(escape_string(&value, quote))
            }
        }
        Context::Code | Context::Comment => {
            let bare_ok = value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | ':' | '.'));
            if bare_ok {
                Ok(value.to_string())
            } else {
                Err(RenderError(format!(
                    "value {value:?} of {{{{ {action} }}}} may only contain letters, digits, '_', ':' and '.' outside a quoted string"
                )))
            }
        }
    }
}

/// Escapes `value` for the inside of a PromQL string delimited by `quote` (`"` or `'`), using
/// only the escapes PromQL's lexer accepts.
pub fn escape_string(value: &str, quote: char) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => {
                // \u handles every control character, including the C1 range.
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out
}

/// Escapes RE2 metacharacters so the pattern matches `value` literally (Go's `QuoteMeta` set).
pub fn escape_regex(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Collapses runs of whitespace outside strings into one space, as Flagger does before sending a
/// query, without touching the contents of string literals.
pub fn collapse_whitespace(query: &str) -> String {
    let mut out = String::with_capacity(query.len());
    let mut lexer = Lexer::new();
    let mut pending_space = false;
    for c in query.chars() {
        let in_code = matches!(lexer.context(), Context::Code);
        if in_code && c.is_whitespace() {
            pending_space = true;
        } else {
            if pending_space && !out.is_empty() {
                out.push(' ');
            }
            pending_space = false;
            out.push(c);
        }
        lexer.feed(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> TemplateModel {
        TemplateModel {
            name: "podinfo".into(),
            namespace: "test".into(),
            target: "podinfo".into(),
            service: "podinfo-svc".into(),
            ingress: "podinfo".into(),
            route: "podinfo".into(),
            interval: "1m".into(),
            variables: BTreeMap::from([("reporter".into(), "destination".into())]),
        }
    }

    #[test]
    fn renders_flagger_style_actions() {
        let q = render(
            r#"sum(rate(m{ns="{{ namespace }}",svc="{{service}}",r="{{ variables.reporter }}",c="{{ name }}"}[{{ interval }}]))"#,
            &model(),
        )
        .unwrap();
        assert_eq!(
            q,
            r#"sum(rate(m{ns="test",svc="podinfo-svc",r="destination",c="podinfo"}[1m]))"#
        );
    }

    #[test]
    fn missing_variables_and_unknown_actions_are_errors() {
        let err = render(r#"m{a="{{ variables.nope }}"}"#, &model()).unwrap_err();
        assert!(err.0.contains("map has no entry for key \"nope\""), "{err}");
        let err = render(r#"m{a="{{ .Namespace }}"}"#, &model()).unwrap_err();
        assert!(err.0.contains("unsupported action"), "{err}");
        let err = render(r#"m{a="{{ namespace "#, &model()).unwrap_err();
        assert!(err.0.contains("unclosed action"), "{err}");
    }

    #[test]
    fn trim_markers_and_comments_follow_go() {
        let q = render("a  {{- /* x */ -}}  b {{- interval }} c", &model()).unwrap();
        assert_eq!(q, "ab1m c");
    }

    #[test]
    fn regex_matcher_values_match_literally() {
        let mut m = model();
        m.target = "my.app".into();
        let q = render(r#"m{w=~"{{ target }}", x="{{ target }}"}"#, &m).unwrap();
        assert_eq!(q, r#"m{w=~"my\\.app", x="my.app"}"#);
        let q = render(r#"m{w!~ '{{ target }}'}"#, &m).unwrap();
        assert_eq!(q, r#"m{w!~ 'my\\.app'}"#);
    }

    #[test]
    fn quotes_and_newlines_stay_inside_the_string() {
        let mut m = model();
        m.namespace = "a\"} or vector(1) #\n".into();
        let q = render(r#"m{ns="{{ namespace }}"}"#, &m).unwrap();
        assert_eq!(q, r#"m{ns="a\"} or vector(1) #\n"}"#);
        let q = render(r#"m{ns='{{ namespace }}'}"#, &m).unwrap();
        assert_eq!(q, r#"m{ns='a"} or vector(1) #\n'}"#);
    }

    #[test]
    fn bare_values_are_restricted() {
        let mut m = model();
        m.interval = "1m] or vector(1) or m[1m".into();
        let err = render("rate(m[{{ interval }}])", &m).unwrap_err();
        assert!(err.0.contains("outside a quoted string"), "{err}");
        m.variables.insert("tick".into(), "a`b".into());
        let err = render("m{a=`{{ variables.tick }}`}", &m).unwrap_err();
        assert!(err.0.contains("backtick"), "{err}");
    }

    #[test]
    fn an_escape_left_open_before_an_action_is_refused() {
        let err = render(r#"m{a="x\{{ target }}"}"#, &model()).unwrap_err();
        assert!(err.0.contains("unfinished backslash"), "{err}");
    }

    #[test]
    fn collapse_keeps_string_contents() {
        assert_eq!(
            collapse_whitespace("\n  sum(\n\tm{a=\"x  \\\"  y\"}  )\n"),
            "sum( m{a=\"x  \\\"  y\"} )"
        );
    }
}
