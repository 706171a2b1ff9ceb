//! Property tests: whatever a namespace, target, service or template variable contains, it ends
//! up as exactly one string literal (or one literal regex) in the query, never as PromQL code.
//!
//! The checks use their own PromQL string scanner and unquoter, independent of the renderer's.

use std::collections::BTreeMap;

use flagger::metrics::builtin::{Builtin, query_template};
use flagger::metrics::template::{TemplateModel, render};
use proptest::prelude::*;
use regex_syntax::hir::HirKind;

/// Splits PromQL into code (with every string replaced by `"…"`) and the raw string bodies.
fn split(query: &str) -> (String, Vec<String>) {
    let mut code = String::new();
    let mut strings = Vec::new();
    let mut chars = query.chars();
    while let Some(c) = chars.next() {
        if c == '"' || c == '\'' {
            let mut body = String::new();
            let mut closed = false;
            while let Some(d) = chars.next() {
                if d == '\\' {
                    body.push(d);
                    body.push(chars.next().expect("escape at end of query"));
                } else if d == c {
                    closed = true;
                    break;
                } else {
                    assert!(d != '\n', "raw newline inside a string: {query:?}");
                    body.push(d);
                }
            }
            assert!(closed, "unterminated string in {query:?}");
            code.push_str("\"…\"");
            strings.push(body);
        } else {
            code.push(c);
        }
    }
    (code, strings)
}

/// PromQL's (Go's) unquoting, for the escapes a string body may contain.
fn unquote(body: &str) -> String {
    let mut out = String::new();
    let mut chars = body.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next().expect("dangling backslash") {
            'n' => out.push('\n'),
            'r' => out.push('\r'),
            't' => out.push('\t'),
            'u' => {
                let hex: String = chars.by_ref().take(4).collect();
                out.push(char::from_u32(u32::from_str_radix(&hex, 16).unwrap()).unwrap());
            }
            c @ ('\\' | '"' | '\'') => out.push(c),
            other => panic!("escape \\{other} is not valid PromQL"),
        }
    }
    out
}

fn model(value: &str) -> TemplateModel {
    TemplateModel {
        name: value.into(),
        namespace: value.into(),
        target: value.into(),
        service: value.into(),
        ingress: value.into(),
        route: value.into(),
        interval: "5m".into(),
        variables: BTreeMap::from([("v".to_string(), value.to_string())]),
    }
}

fn hostile() -> impl Strategy<Value = String> {
    prop_oneof![
        "[\\\\\"'`{}()\\[\\]|.*+?^$#=~!, \n\r\t\u{0}\u{7f}a-z-]{0,24}",
        any::<String>(),
    ]
}

const TEMPLATES: &[&str] = &[
    r#"sum(rate(m{ns="{{ namespace }}", svc="{{ service }}", c="{{ name }}"}[{{ interval }}]))"#,
    r#"m{a='{{ variables.v }}', b=~'{{ target }}', c!~"x-{{ target }}-y"} # {{ interval }}"#,
    r#"label_replace(m, "dst", "{{ variables.v }}", "src", "(.*)")"#,
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn values_never_change_the_code(value in hostile()) {
        let mut templates: Vec<&str> = TEMPLATES.to_vec();
        for provider in ["istio", "kubernetes"] {
            templates.push(query_template(provider, Builtin::SuccessRate));
            templates.push(query_template(provider, Builtin::Duration));
        }
        for template in templates {
            let benign = render(template, &model("x")).unwrap();
            let rendered = render(template, &model(&value)).unwrap();
            let (benign_code, benign_strings) = split(&benign);
            let (code, strings) = split(&rendered);
            prop_assert_eq!(&code, &benign_code);
            prop_assert_eq!(strings.len(), benign_strings.len());
        }
    }

    #[test]
    fn plain_strings_hold_exactly_the_value(value in hostile()) {
        for quote in ['"', '\''] {
            let template = format!("m{{l={quote}{{{{ variables.v }}}}{quote}}}");
            let rendered = render(&template, &model(&value)).unwrap();
            let (code, strings) = split(&rendered);
            prop_assert_eq!(code, "m{l=\"…\"}");
            prop_assert_eq!(unquote(&strings[0]), value.clone());
        }
    }

    #[test]
    fn regex_matchers_match_the_value_literally(value in hostile()) {
        let rendered = render(r#"m{l=~"{{ target }}"}"#, &model(&value)).unwrap();
        let (_, strings) = split(&rendered);
        let pattern = unquote(&strings[0]);
        let hir = regex_syntax::Parser::new().parse(&pattern).unwrap();
        match hir.kind() {
            HirKind::Empty => prop_assert!(value.is_empty()),
            HirKind::Literal(lit) => prop_assert_eq!(&*lit.0, value.as_bytes()),
            other => prop_assert!(false, "{pattern:?} is not a literal: {other:?}"),
        }
    }

    #[test]
    fn bare_positions_accept_only_plain_tokens(value in hostile()) {
        let mut m = model("x");
        m.interval = value.clone();
        let plain = value.chars().all(|c| c.is_ascii_alphanumeric() || "_:.".contains(c));
        match render("rate(m[{{ interval }}])", &m) {
            Ok(q) => {
                prop_assert!(plain);
                prop_assert_eq!(q, format!("rate(m[{value}])"));
            }
            Err(e) => {
                prop_assert!(!plain);
                prop_assert!(e.0.contains("outside a quoted string"));
            }
        }
    }
}
