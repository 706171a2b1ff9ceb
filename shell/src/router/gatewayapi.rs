//! Gateway API: an HTTPRoute `<svc>` attached to `spec.service.gatewayRefs`, with weighted
//! backendRefs to `<svc>-primary` and `<svc>-canary`.
//!
//! The Canary spec speaks Istio (`match`, `headers`, `rewrite`), so its conditions and header
//! operations are translated into Gateway API matches and filters here, as Flagger does.

use flagger_core::Routes;
use flagger_core::api::Canary;
use kube::core::{ApiResource, DynamicObject};
use serde_json::{Map, Value, json};

use super::{Names, api_resource, owned_object, weight_of};

const GROUP: &str = "gateway.networking.k8s.io";

pub fn http_route_resource(version: &str) -> ApiResource {
    api_resource(GROUP, version, "HTTPRoute", "httproutes")
}

pub fn desired_objects(canary: &Canary, version: &str, routes: Routes) -> Vec<DynamicObject> {
    let names = Names::of(canary);
    let service = &canary.spec.service;
    let analysis = canary.spec.analysis();
    let port = service.port;
    // Group and kind spelled out as Flagger writes them (they are also the API defaults).
    let backend = |name: &str, weight: i32| json!({ "group": "", "kind": "Service", "name": name, "port": port, "weight": weight });
    let split = vec![
        backend(&names.primary_service, routes.primary_weight),
        backend(&names.canary_service, routes.canary_weight),
    ];
    let service_matches = convert_matches(service.match_.as_deref().unwrap_or(&[]));
    let service_matches = if service_matches.is_empty() {
        vec![json!({ "path": { "type": "PathPrefix", "value": "/" } })]
    } else {
        service_matches
    };
    let ab_match = analysis
        .and_then(|a| a.match_.as_deref())
        .filter(|m| !m.is_empty());
    let rules = match ab_match {
        Some(conditions) => vec![
            rule(
                canary,
                merge_matches(&service_matches, &convert_matches(conditions)),
                split,
                None,
            ),
            rule(
                canary,
                service_matches,
                vec![backend(&names.primary_service, 100)],
                None,
            ),
        ],
        None => {
            let mirror = routes.mirrored.then(|| {
                let mut mirror = json!({ "backendRef": {
                        "group": "", "kind": "Service", "name": names.canary_service, "port": port
                    } });
                if let Some(percent) = analysis.and_then(|a| a.mirror_weight).filter(|w| *w > 0) {
                    mirror["percent"] = json!(percent);
                }
                json!({ "type": "RequestMirror", "requestMirror": mirror })
            });
            vec![rule(canary, service_matches, split, mirror)]
        }
    };
    let mut spec = Map::new();
    spec.insert(
        "parentRefs".into(),
        json!(service.gateway_refs.clone().unwrap_or_default()),
    );
    if let Some(hosts) = service.hosts.as_ref().filter(|h| !h.is_empty()) {
        spec.insert("hostnames".into(), json!(hosts));
    }
    spec.insert("rules".into(), Value::Array(rules));
    vec![owned_object(
        canary,
        &http_route_resource(version),
        &names.apex_service,
        Value::Object(spec),
        true,
    )]
}

fn rule(
    canary: &Canary,
    matches: Vec<Value>,
    backends: Vec<Value>,
    mirror: Option<Value>,
) -> Value {
    let service = &canary.spec.service;
    let mut rule = Map::new();
    rule.insert("matches".into(), Value::Array(matches));
    let mut filters = header_filters(service.headers.as_ref());
    filters.extend(rewrite_filter(service.rewrite.as_ref()));
    for m in service.mirror.iter().flatten() {
        filters.push(json!({ "type": "RequestMirror", "requestMirror": m }));
    }
    filters.extend(mirror);
    if !filters.is_empty() {
        rule.insert("filters".into(), Value::Array(filters));
    }
    rule.insert("backendRefs".into(), Value::Array(backends));
    let mut timeouts = Map::new();
    if let Some(t) = &service.timeout {
        timeouts.insert("request".into(), json!(t));
    }
    if let Some(t) = &service.backend_timeout {
        timeouts.insert("backendRequest".into(), json!(t));
    }
    if !timeouts.is_empty() {
        rule.insert("timeouts".into(), Value::Object(timeouts));
    }
    Value::Object(rule)
}

/// Istio `HTTPMatchRequest`s as Gateway API `HTTPRouteMatch`es.
fn convert_matches(conditions: &[Value]) -> Vec<Value> {
    conditions
        .iter()
        .map(|c| {
            let mut m = Map::new();
            if let Some((kind, value)) = c.get("uri").and_then(string_match) {
                let path_type = match kind {
                    StringMatch::Exact => "Exact",
                    StringMatch::Prefix => "PathPrefix",
                    _ => "RegularExpression",
                };
                let value = match kind {
                    StringMatch::Suffix => format!(".*{}$", regex_escape(&value)),
                    _ => value,
                };
                m.insert("path".into(), json!({ "type": path_type, "value": value }));
            }
            for (from, to) in [("headers", "headers"), ("queryParams", "queryParams")] {
                let converted = named_matches(c.get(from));
                if !converted.is_empty() {
                    m.insert(to.into(), Value::Array(converted));
                }
            }
            if let Some((_, method)) = c.get("method").and_then(string_match) {
                m.insert("method".into(), json!(method));
            }
            Value::Object(m)
        })
        .collect()
}

#[derive(Clone, Copy, PartialEq)]
enum StringMatch {
    Exact,
    Prefix,
    Suffix,
    Regex,
}

fn string_match(value: &Value) -> Option<(StringMatch, String)> {
    let text = |k: &str| value.get(k).and_then(Value::as_str).map(str::to_string);
    [
        ("exact", StringMatch::Exact),
        ("prefix", StringMatch::Prefix),
        ("suffix", StringMatch::Suffix),
        ("regex", StringMatch::Regex),
    ]
    .into_iter()
    .find_map(|(k, kind)| text(k).map(|t| (kind, t)))
}

/// Header or query conditions keyed by name. Gateway API matches headers only exactly or by
/// regular expression, so prefixes and suffixes become anchored expressions.
fn named_matches(map: Option<&Value>) -> Vec<Value> {
    let Some(map) = map.and_then(Value::as_object) else {
        return Vec::new();
    };
    map.iter()
        .filter_map(|(name, cond)| {
            let (kind, value) = string_match(cond)?;
            let (match_type, value) = match kind {
                StringMatch::Exact => ("Exact", value),
                StringMatch::Regex => ("RegularExpression", value),
                StringMatch::Prefix => {
                    ("RegularExpression", format!("^{}.*", regex_escape(&value)))
                }
                StringMatch::Suffix => {
                    ("RegularExpression", format!(".*{}$", regex_escape(&value)))
                }
            };
            Some(json!({ "type": match_type, "name": name, "value": value }))
        })
        .collect()
}

fn regex_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Each A/B condition (its headers, query, method) combined with each service match (its path),
/// in Flagger's order, so the canary rule is never wider than the service's own routing.
fn merge_matches(service: &[Value], analysis: &[Value]) -> Vec<Value> {
    let mut merged = Vec::with_capacity(service.len() * analysis.len());
    for a in analysis {
        for s in service {
            let mut m = s.clone();
            for key in ["headers", "queryParams", "method"] {
                if let Some(v) = a.get(key) {
                    m[key] = v.clone();
                }
            }
            if let (None, Some(path)) = (s.get("path"), a.get("path")) {
                m["path"] = path.clone();
            }
            merged.push(m);
        }
    }
    merged
}

/// Istio `headers: {request|response: {set, add, remove}}` as header modifier filters.
fn header_filters(headers: Option<&Value>) -> Vec<Value> {
    let Some(headers) = headers else {
        return Vec::new();
    };
    let mut filters = Vec::new();
    for (side, filter_type, key) in [
        ("request", "RequestHeaderModifier", "requestHeaderModifier"),
        (
            "response",
            "ResponseHeaderModifier",
            "responseHeaderModifier",
        ),
    ] {
        let Some(ops) = headers.get(side) else {
            continue;
        };
        let mut modifier = Map::new();
        for op in ["set", "add"] {
            if let Some(values) = ops
                .get(op)
                .and_then(Value::as_object)
                .filter(|v| !v.is_empty())
            {
                let list: Vec<Value> = values
                    .iter()
                    .map(|(name, value)| json!({ "name": name, "value": value }))
                    .collect();
                modifier.insert(op.into(), Value::Array(list));
            }
        }
        if let Some(remove) = ops
            .get("remove")
            .filter(|r| r.as_array().is_some_and(|a| !a.is_empty()))
        {
            modifier.insert("remove".into(), remove.clone());
        }
        if !modifier.is_empty() {
            filters.push(json!({ "type": filter_type, key: modifier }));
        }
    }
    filters
}

/// `rewrite: {uri, authority, type}` as a URLRewrite filter. As in Flagger, the path is replaced
/// whole unless `type: ReplacePrefixMatch` asks for a prefix rewrite (which Gateway API allows
/// only on a rule with exactly one PathPrefix match).
fn rewrite_filter(rewrite: Option<&Value>) -> Option<Value> {
    let rewrite = rewrite?;
    let mut filter = Map::new();
    if let Some(uri) = rewrite.get("uri").and_then(Value::as_str) {
        let path = match rewrite.get("type").and_then(Value::as_str) {
            Some("ReplacePrefixMatch") => {
                json!({ "type": "ReplacePrefixMatch", "replacePrefixMatch": uri })
            }
            _ => json!({ "type": "ReplaceFullPath", "replaceFullPath": uri }),
        };
        filter.insert("path".into(), path);
    }
    if let Some(host) = rewrite.get("authority").and_then(Value::as_str) {
        filter.insert("hostname".into(), json!(host));
    }
    (!filter.is_empty()).then(|| json!({ "type": "URLRewrite", "urlRewrite": filter }))
}

pub fn read_routes(object: &DynamicObject) -> Option<Routes> {
    let apex = object.metadata.name.as_deref()?;
    let (primary, canary) = (format!("{apex}-primary"), format!("{apex}-canary"));
    let rules = object.data.get("spec")?.get("rules")?.as_array()?;
    let name_of = |b: &Value| b.get("name").and_then(Value::as_str).map(str::to_string);
    let rule = rules.iter().find(|r| {
        r.get("backendRefs")
            .and_then(Value::as_array)
            .is_some_and(|bs| bs.iter().any(|b| name_of(b).as_deref() == Some(&canary)))
    })?;
    let mut routes = Routes::default();
    for b in rule.get("backendRefs")?.as_array()? {
        // An omitted weight is 1 in Gateway API.
        let weight = b.get("weight").map_or(1, weight_of);
        match name_of(b) {
            Some(n) if n == primary => routes.primary_weight += weight,
            Some(n) if n == canary => routes.canary_weight += weight,
            _ => {}
        }
    }
    routes.mirrored = rule
        .get("filters")
        .and_then(Value::as_array)
        .is_some_and(|fs| {
            fs.iter().any(|f| {
                f.get("type").and_then(Value::as_str) == Some("RequestMirror")
                    && f.pointer("/requestMirror/backendRef/name")
                        .and_then(Value::as_str)
                        == Some(canary.as_str())
            })
        });
    Some(routes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flagger_core::api::{CanaryAnalysis, CanaryService, CanarySpec, ObjectReference};
    use proptest::prelude::*;

    fn canary(service: CanaryService, analysis: CanaryAnalysis) -> Canary {
        let mut c = Canary::new(
            "podinfo",
            CanarySpec {
                target_ref: ObjectReference {
                    name: "podinfo".into(),
                    ..ObjectReference::default()
                },
                service: CanaryService {
                    port: 9898,
                    gateway_refs: Some(vec![
                        json!({ "name": "gateway", "namespace": "istio-ingress" }),
                    ]),
                    ..service
                },
                analysis: Some(analysis),
                ..CanarySpec::default()
            },
        );
        c.metadata.namespace = Some("test".into());
        c.metadata.uid = Some("uid-1".into());
        c
    }

    fn routes(primary_weight: i32, canary_weight: i32, mirrored: bool) -> Routes {
        Routes {
            primary_weight,
            canary_weight,
            mirrored,
        }
    }

    fn route_spec(c: &Canary, r: Routes) -> Value {
        let objects = desired_objects(c, "v1", r);
        assert_eq!(objects.len(), 1);
        let types = objects[0].types.as_ref().unwrap();
        assert_eq!(
            (types.api_version.as_str(), types.kind.as_str()),
            ("gateway.networking.k8s.io/v1", "HTTPRoute")
        );
        objects[0].data["spec"].clone()
    }

    #[test]
    fn default_route_attaches_to_the_gateways_and_splits_by_weight() {
        let service = CanaryService {
            hosts: Some(vec!["app.example.com".into()]),
            ..CanaryService::default()
        };
        let spec = route_spec(
            &canary(service, CanaryAnalysis::default()),
            routes(60, 40, false),
        );
        assert_eq!(
            spec,
            json!({
                "parentRefs": [{ "name": "gateway", "namespace": "istio-ingress" }],
                "hostnames": ["app.example.com"],
                "rules": [{
                    "matches": [{ "path": { "type": "PathPrefix", "value": "/" } }],
                    "backendRefs": [
                        { "group": "", "kind": "Service", "name": "podinfo-primary", "port": 9898, "weight": 60 },
                        { "group": "", "kind": "Service", "name": "podinfo-canary", "port": 9898, "weight": 40 }
                    ]
                }]
            })
        );
    }

    #[test]
    fn istio_style_settings_become_matches_filters_and_timeouts() {
        let service = CanaryService {
            match_: Some(vec![
                json!({ "uri": { "exact": "/api" }, "method": { "exact": "GET" } }),
            ]),
            headers: Some(json!({
                "request": { "set": { "x-env": "prod" }, "remove": ["x-debug"] },
                "response": { "add": { "x-served-by": "flagger" } }
            })),
            rewrite: Some(json!({ "uri": "/v2", "authority": "backend.local" })),
            timeout: Some("30s".into()),
            backend_timeout: Some("10s".into()),
            ..CanaryService::default()
        };
        let rule = route_spec(
            &canary(service, CanaryAnalysis::default()),
            routes(100, 0, false),
        )["rules"][0]
            .clone();
        assert_eq!(
            rule["matches"],
            json!([{ "path": { "type": "Exact", "value": "/api" }, "method": "GET" }])
        );
        assert_eq!(
            rule["filters"],
            json!([
                { "type": "RequestHeaderModifier", "requestHeaderModifier": {
                    "set": [{ "name": "x-env", "value": "prod" }], "remove": ["x-debug"] } },
                { "type": "ResponseHeaderModifier", "responseHeaderModifier": {
                    "add": [{ "name": "x-served-by", "value": "flagger" }] } },
                { "type": "URLRewrite", "urlRewrite": {
                    "path": { "type": "ReplaceFullPath", "replaceFullPath": "/v2" },
                    "hostname": "backend.local" } }
            ])
        );
        let prefix = rewrite_filter(Some(&json!({ "uri": "/", "type": "ReplacePrefixMatch" })));
        assert_eq!(
            prefix,
            Some(json!({ "type": "URLRewrite", "urlRewrite": {
                "path": { "type": "ReplacePrefixMatch", "replacePrefixMatch": "/" } } }))
        );
        assert_eq!(
            rule["timeouts"],
            json!({ "request": "30s", "backendRequest": "10s" })
        );
    }

    #[test]
    fn ab_conditions_are_converted_and_merged_with_the_service_path() {
        let service = CanaryService {
            match_: Some(vec![json!({ "uri": { "prefix": "/api" } })]),
            ..CanaryService::default()
        };
        let analysis = CanaryAnalysis {
            iterations: Some(10),
            match_: Some(vec![
                json!({ "headers": { "x-canary": { "exact": "insider" } } }),
                json!({ "headers": { "user-agent": { "prefix": "Mozilla/5.0 (X11" } } }),
                json!({ "headers": { "cookie": { "regex": "canary=always" } }, "queryParams": { "beta": { "exact": "1" } } }),
            ]),
            ..CanaryAnalysis::default()
        };
        let c = canary(service, analysis);
        let spec = route_spec(&c, routes(0, 100, false));
        let path = json!({ "type": "PathPrefix", "value": "/api" });
        assert_eq!(
            spec["rules"][0]["matches"],
            json!([
                { "path": path, "headers": [{ "type": "Exact", "name": "x-canary", "value": "insider" }] },
                { "path": path, "headers": [{ "type": "RegularExpression", "name": "user-agent", "value": "^Mozilla/5\\.0 \\(X11.*" }] },
                { "path": path,
                  "headers": [{ "type": "RegularExpression", "name": "cookie", "value": "canary=always" }],
                  "queryParams": [{ "type": "Exact", "name": "beta", "value": "1" }] }
            ])
        );
        assert_eq!(spec["rules"][1]["matches"], json!([{ "path": path }]));
        assert_eq!(
            spec["rules"][1]["backendRefs"],
            json!([{ "group": "", "kind": "Service", "name": "podinfo-primary", "port": 9898, "weight": 100 }])
        );
        let object = desired_objects(&c, "v1", routes(0, 100, false)).remove(0);
        assert_eq!(read_routes(&object), Some(routes(0, 100, false)));
    }

    #[test]
    fn mirroring_adds_a_request_mirror_to_the_canary() {
        let analysis = CanaryAnalysis {
            mirror: Some(true),
            mirror_weight: Some(25),
            ..CanaryAnalysis::default()
        };
        let spec = route_spec(
            &canary(CanaryService::default(), analysis),
            routes(100, 0, true),
        );
        assert_eq!(
            spec["rules"][0]["filters"],
            json!([{ "type": "RequestMirror", "requestMirror": {
                "backendRef": { "group": "", "kind": "Service", "name": "podinfo-canary", "port": 9898 },
                "percent": 25 } }])
        );
    }

    #[test]
    fn user_mirrors_are_not_mistaken_for_canary_mirroring() {
        let service = CanaryService {
            mirror: Some(vec![
                json!({ "backendRef": { "name": "shadow", "port": 80 } }),
            ]),
            ..CanaryService::default()
        };
        let c = canary(service, CanaryAnalysis::default());
        let object = desired_objects(&c, "v1", routes(90, 10, false)).remove(0);
        assert_eq!(
            object.data["spec"]["rules"][0]["filters"][0]["requestMirror"]["backendRef"]["name"],
            "shadow"
        );
        assert_eq!(read_routes(&object), Some(routes(90, 10, false)));
    }

    proptest! {
        #[test]
        fn written_weights_read_back(canary_weight in 0i32..=100, mirrored: bool, ab: bool) {
            let analysis = CanaryAnalysis {
                match_: ab.then(|| vec![json!({ "headers": { "x-canary": { "exact": "1" } } })]),
                ..CanaryAnalysis::default()
            };
            let mirrored = mirrored && !ab;
            let wanted = routes(100 - canary_weight, canary_weight, mirrored);
            let object = desired_objects(&canary(CanaryService::default(), analysis), "v1", wanted).remove(0);
            let object: DynamicObject =
                serde_json::from_value(serde_json::to_value(&object).unwrap()).unwrap();
            prop_assert_eq!(read_routes(&object), Some(wanted));
        }
    }
}
