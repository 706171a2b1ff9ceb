//! How simulated traffic divides between a canary's primary and canary workloads, read from the
//! routing object the operator wrote (Istio VirtualService, Gateway API HTTPRoute, the `nginx`
//! provider's canary Ingress) or, for the `kubernetes` provider, which has no routing object,
//! from the Canary's status.

use serde_json::Value;

/// Share of the traffic that matches an A/B route's header or cookie conditions: the test users.
pub const MATCHED_SHARE: f64 = 0.3;
/// With the `kubernetes` provider a load tester calls the canary Service directly during the
/// analysis, at this fraction of the production rate.
pub const LOAD_TESTER_SHARE: f64 = 0.5;

/// Requests per second, as fractions of the production rate, for each workload.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Split {
    pub primary: f64,
    pub canary: f64,
}

impl Split {
    pub const ALL_PRIMARY: Split = Split {
        primary: 1.0,
        canary: 0.0,
    };
}

/// A destination (host or backend name) and its weight, if written.
type Destination = (String, Option<i64>);
/// A route: whether it has match conditions (an A/B test route), and its destinations.
type Route = (bool, Vec<Destination>);

/// Which workload a destination (host or backend name) is: `<svc>-primary` or `<svc>-canary`.
fn side(destination: &str, service: &str) -> Option<bool> {
    let short = destination.split('.').next().unwrap_or(destination);
    if short == format!("{service}-canary") {
        Some(true)
    } else if short == format!("{service}-primary") {
        Some(false)
    } else {
        None
    }
}

/// Adds one route's destinations, `share` of all traffic going through that route.
fn add_route(split: &mut Split, share: f64, destinations: &[Destination], service: &str) {
    let known: Vec<(bool, f64)> = destinations
        .iter()
        .filter_map(|(d, w)| side(d, service).map(|c| (c, w.map(|w| w as f64))))
        .map(|(c, w)| {
            (
                c,
                w.unwrap_or(if destinations.len() == 1 { 100.0 } else { 0.0 }),
            )
        })
        .collect();
    let total: f64 = known.iter().map(|(_, w)| w).sum();
    if total <= 0.0 {
        return;
    }
    for (canary, w) in known {
        let part = share * w / total;
        if canary {
            split.canary += part;
        } else {
            split.primary += part;
        }
    }
}

/// Routes with match conditions (A/B) take [`MATCHED_SHARE`] of the traffic between them, the
/// catch-all routes the rest; a single kind of route takes everything.
fn combine(routes: Vec<Route>, service: &str) -> Split {
    let matched = routes.iter().filter(|(m, _)| *m).count();
    let unmatched = routes.len() - matched;
    let mut split = Split::default();
    for (is_matched, dests) in &routes {
        let share = match (matched, unmatched) {
            (_, 0) => 1.0 / matched as f64,
            (0, _) => 1.0 / unmatched as f64,
            _ if *is_matched => MATCHED_SHARE / matched as f64,
            _ => (1.0 - MATCHED_SHARE) / unmatched as f64,
        };
        add_route(&mut split, share, dests, service);
    }
    split
}

/// The split of an Istio VirtualService (`spec.http[].route[].destination.host`/`weight`).
pub fn from_virtual_service(vs: &Value, service: &str) -> Split {
    let routes = vs["spec"]["http"]
        .as_array()
        .map(|http| {
            http.iter()
                .map(|r| {
                    let matched = r["match"].as_array().is_some_and(|m| !m.is_empty());
                    let dests = r["route"]
                        .as_array()
                        .map(|ds| {
                            ds.iter()
                                .map(|d| {
                                    (
                                        d["destination"]["host"]
                                            .as_str()
                                            .unwrap_or_default()
                                            .to_string(),
                                        d["weight"].as_i64(),
                                    )
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    (matched, dests)
                })
                .collect()
        })
        .unwrap_or_default();
    combine(routes, service)
}

/// The split of a Gateway API HTTPRoute (`spec.rules[].backendRefs[].name`/`weight`). Every rule
/// has a path match; only header or query matches make a rule an A/B test route.
pub fn from_http_route(route: &Value, service: &str) -> Split {
    let routes = route["spec"]["rules"]
        .as_array()
        .map(|rules| {
            rules
                .iter()
                .map(|r| {
                    let matched = r["matches"].as_array().is_some_and(|ms| {
                        ms.iter().any(|m| {
                            m["headers"].as_array().is_some_and(|h| !h.is_empty())
                                || m["queryParams"].as_array().is_some_and(|q| !q.is_empty())
                        })
                    });
                    let dests = r["backendRefs"]
                        .as_array()
                        .map(|bs| {
                            bs.iter()
                                .map(|b| {
                                    (
                                        b["name"].as_str().unwrap_or_default().to_string(),
                                        // Gateway API's default weight is 1.
                                        Some(b["weight"].as_i64().unwrap_or(1)),
                                    )
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    (matched, dests)
                })
                .collect()
        })
        .unwrap_or_default();
    combine(routes, service)
}

/// The NGINX controller's canary annotations on the `<ingress>-canary` clone.
const NGINX_PREFIX: &str = "nginx.ingress.kubernetes.io/";

/// The split of the `nginx` provider's canary Ingress: its `canary-weight` annotation is the
/// canary's percentage; with a `canary-by-header`/`canary-by-cookie` annotation (A/B testing) the
/// matched users ([`MATCHED_SHARE`]) go to the canary and the weight applies to the rest. No
/// clone (`None`), or one without the `canary: "true"` annotation, sends everything to the
/// primary.
pub fn from_canary_ingress(ingress: Option<&Value>) -> Split {
    let Some(annotations) = ingress.and_then(|i| i["metadata"]["annotations"].as_object()) else {
        return Split::ALL_PRIMARY;
    };
    let get = |k: &str| {
        annotations
            .get(&format!("{NGINX_PREFIX}{k}"))
            .and_then(Value::as_str)
    };
    if get("canary") != Some("true") {
        return Split::ALL_PRIMARY;
    }
    let weight = get("canary-weight")
        .and_then(|w| w.trim().parse::<f64>().ok())
        .unwrap_or(0.0)
        .clamp(0.0, 100.0)
        / 100.0;
    let matched = if get("canary-by-header").is_some() || get("canary-by-cookie").is_some() {
        MATCHED_SHARE
    } else {
        0.0
    };
    let canary = matched + (1.0 - matched) * weight;
    Split {
        primary: 1.0 - canary,
        canary,
    }
}

/// The `kubernetes` provider routes nothing: production traffic stays on the primary Service and
/// a load tester calls the canary Service once the analysis iterations began.
pub fn for_kubernetes_provider(canary_status: &Value) -> Split {
    let iterations = canary_status["iterations"].as_i64().unwrap_or(0);
    let phase = canary_status["phase"].as_str().unwrap_or_default();
    let analysing = matches!(
        phase,
        "Progressing" | "WaitingPromotion" | "Promoting" | "Finalising"
    );
    Split {
        primary: 1.0,
        canary: if analysing && iterations > 0 {
            LOAD_TESTER_SHARE
        } else {
            0.0
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn virtual_service_weights_divide_the_traffic() {
        let vs = json!({"spec": {"http": [{"route": [
            {"destination": {"host": "podinfo-primary"}, "weight": 80},
            {"destination": {"host": "podinfo-canary"}, "weight": 20}
        ]}]}});
        let s = from_virtual_service(&vs, "podinfo");
        assert!((s.primary - 0.8).abs() < 1e-9 && (s.canary - 0.2).abs() < 1e-9);
    }

    #[test]
    fn ab_routes_send_only_matched_users_to_the_canary() {
        let vs = json!({"spec": {"http": [
            {"match": [{"headers": {"x-canary": {"exact": "insider"}}}],
             "route": [{"destination": {"host": "podinfo-canary.test.svc.cluster.local"}}]},
            {"route": [{"destination": {"host": "podinfo-primary"}, "weight": 100},
                       {"destination": {"host": "podinfo-canary"}, "weight": 0}]}
        ]}});
        let s = from_virtual_service(&vs, "podinfo");
        assert!((s.canary - MATCHED_SHARE).abs() < 1e-9, "{s:?}");
        assert!((s.primary - (1.0 - MATCHED_SHARE)).abs() < 1e-9, "{s:?}");
    }

    #[test]
    fn http_route_weights_and_header_matches() {
        let r = json!({"spec": {"rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
            "backendRefs": [{"name": "podinfo-primary", "port": 9898, "weight": 40},
                            {"name": "podinfo-canary", "port": 9898, "weight": 60}]}]}});
        let s = from_http_route(&r, "podinfo");
        assert!((s.canary - 0.6).abs() < 1e-9, "{s:?}");
        let ab = json!({"spec": {"rules": [
            {"matches": [{"headers": [{"name": "x-canary", "value": "insider"}]}],
             "backendRefs": [{"name": "podinfo-canary", "port": 9898}]},
            {"matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
             "backendRefs": [{"name": "podinfo-primary", "port": 9898}]}]}});
        let s = from_http_route(&ab, "podinfo");
        assert!((s.canary - MATCHED_SHARE).abs() < 1e-9, "{s:?}");
    }

    #[test]
    fn unknown_hosts_and_zero_weights_carry_nothing() {
        let vs = json!({"spec": {"http": [{"route": [
            {"destination": {"host": "other"}, "weight": 100}]}]}});
        assert_eq!(from_virtual_service(&vs, "podinfo"), Split::default());
        assert_eq!(
            from_virtual_service(&json!({}), "podinfo"),
            Split::default()
        );
    }

    #[test]
    fn canary_ingress_weight_divides_the_traffic() {
        let i = json!({"metadata": {"annotations": {
            "nginx.ingress.kubernetes.io/canary": "true",
            "nginx.ingress.kubernetes.io/canary-weight": "40"
        }}});
        let s = from_canary_ingress(Some(&i));
        assert!(
            (s.primary - 0.6).abs() < 1e-9 && (s.canary - 0.4).abs() < 1e-9,
            "{s:?}"
        );
        assert_eq!(from_canary_ingress(None), Split::ALL_PRIMARY);
        let zero = json!({"metadata": {"annotations": {
            "nginx.ingress.kubernetes.io/canary": "true",
            "nginx.ingress.kubernetes.io/canary-weight": "0"
        }}});
        assert_eq!(from_canary_ingress(Some(&zero)), Split::ALL_PRIMARY);
        let ab = json!({"metadata": {"annotations": {
            "nginx.ingress.kubernetes.io/canary": "true",
            "nginx.ingress.kubernetes.io/canary-weight": "0",
            "nginx.ingress.kubernetes.io/canary-by-header": "x-canary"
        }}});
        let s = from_canary_ingress(Some(&ab));
        assert!((s.canary - MATCHED_SHARE).abs() < 1e-9, "{s:?}");
    }

    #[test]
    fn kubernetes_provider_feeds_the_canary_once_iterations_started() {
        let idle = for_kubernetes_provider(&json!({"phase": "Progressing", "iterations": 0}));
        assert_eq!(idle.canary, 0.0);
        let testing = for_kubernetes_provider(&json!({"phase": "Progressing", "iterations": 2}));
        assert_eq!(testing.canary, LOAD_TESTER_SHARE);
        let done = for_kubernetes_provider(&json!({"phase": "Succeeded", "iterations": 0}));
        assert_eq!(done.canary, 0.0);
    }
}
