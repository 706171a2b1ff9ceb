//! Gateway API: an HTTPRoute `<svc>` attached to `spec.service().gatewayRefs`, with weighted
//! backendRefs to `<svc>-primary` and `<svc>-canary`.
//!
//! The Canary spec speaks Istio (`match`, `headers`, `rewrite`), so its conditions and header
//! operations are translated into Gateway API matches and filters here, as Flagger does.

use flagger_core::Routes;
use flagger_core::api::Canary;
use kube::core::{ApiResource, DynamicObject};
use serde_json::{Map, Value, json};

use super::session_affinity::{RouteVocabulary, StickyCookie, with_session_affinity};
use super::{Names, api_resource, owned_object, weight_of};

const GROUP: &str = "gateway.networking.k8s.io";

pub fn http_route_resource(version: &str) -> ApiResource {
    api_resource(GROUP, version, "HTTPRoute", "httproutes")
}

pub fn desired_objects(canary: &Canary, version: &str, routes: Routes) -> Vec<DynamicObject> {
    let names = Names::of(canary);
    let service = &canary.spec.service();
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
            let weighted = rule(canary, service_matches.clone(), split, mirror);
            let split = |primary: i32, canary: i32| {
                vec![
                    backend(&names.primary_service, primary),
                    backend(&names.canary_service, canary),
                ]
            };
            let rules = Rules {
                canary,
                service_matches: &service_matches,
                split,
            };
            with_session_affinity(&rules, canary, routes, weighted)
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

/// Whether the Gateway API CRDs fill in `key: value` when a writer leaves `key` out: the group
/// and kind of parent and backend references, backend weights, match types and the default
/// path match.
pub fn server_default(key: &str, value: &Value) -> bool {
    let default_path = json!({ "type": "PathPrefix", "value": "/" });
    match key {
        "group" => value == "gateway.networking.k8s.io" || value == "",
        "kind" => value == "Gateway" || value == "Service",
        "weight" => value == 1,
        "type" => value == "Exact" || value == "PathPrefix",
        "value" => value == "/",
        "path" => *value == default_path,
        "matches" => *value == json!([{ "path": default_path }]),
        _ => false,
    }
}

fn rule(
    canary: &Canary,
    matches: Vec<Value>,
    backends: Vec<Value>,
    mirror: Option<Value>,
) -> Value {
    let service = &canary.spec.service();
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

/// Session affinity's routes as Gateway API rules; `split(p, c)` gives the backends for a
/// primary and canary weight.
struct Rules<'a, F> {
    canary: &'a Canary,
    service_matches: &'a [Value],
    split: F,
}

impl<F: Fn(i32, i32) -> Vec<Value>> RouteVocabulary for Rules<'_, F> {
    type Route = Value;

    fn sticky(&self, cookie: &StickyCookie, primary: i32, canary: i32) -> Value {
        let matches = with_cookie_match(self.service_matches, &cookie.regex);
        rule(self.canary, matches, (self.split)(primary, canary), None)
    }

    fn destination_cookie(&self, route: &mut Value, index: usize, set_cookie: &str) {
        set_backend_cookie(route, index, set_cookie);
    }

    fn route_cookie(&self, route: &mut Value, set_cookie: &str) {
        add_set_cookie(route, set_cookie);
    }
}

/// Every service match narrowed to requests carrying the cookie. A match may name a header
/// once, so a user's own Cookie condition gives way, as A/B conditions make it do.
fn with_cookie_match(service_matches: &[Value], regex: &str) -> Vec<Value> {
    let cookie = json!({ "type": "RegularExpression", "name": "Cookie", "value": regex });
    service_matches
        .iter()
        .map(|m| {
            let mut m = m.clone();
            match m.get_mut("headers").and_then(Value::as_array_mut) {
                Some(headers) => {
                    headers.retain(|h| !is_named(h, "Cookie"));
                    headers.push(cookie.clone());
                }
                None => m["headers"] = json!([cookie]),
            }
            m
        })
        .collect()
}

fn is_named(entry: &Value, name: &str) -> bool {
    entry
        .get("name")
        .and_then(Value::as_str)
        .is_some_and(|n| n.eq_ignore_ascii_case(name))
}

fn set_cookie_filter(set_cookie: &str) -> Value {
    json!({ "type": "ResponseHeaderModifier", "responseHeaderModifier": {
        "add": [{ "name": "Set-Cookie", "value": set_cookie }] } })
}

fn set_backend_cookie(rule: &mut Value, index: usize, set_cookie: &str) {
    if let Some(backend) = rule
        .get_mut("backendRefs")
        .and_then(|b| b.get_mut(index))
        .filter(|b| b.is_object())
    {
        backend["filters"] = json!([set_cookie_filter(set_cookie)]);
    }
}

/// Adds `Set-Cookie` to the rule's response header filter: Gateway API allows one per rule, and
/// the user's own header operations stay in it (but for a Set-Cookie of theirs: a header may be
/// named once there).
fn add_set_cookie(rule: &mut Value, set_cookie: &str) {
    let Some(rule) = rule.as_object_mut() else {
        return;
    };
    let Some(filters) = rule
        .entry("filters")
        .or_insert_with(|| json!([]))
        .as_array_mut()
    else {
        return;
    };
    let modifier = filters
        .iter_mut()
        .find(|f| f.get("type").and_then(Value::as_str) == Some("ResponseHeaderModifier"))
        .and_then(|f| f.get_mut("responseHeaderModifier"))
        .and_then(Value::as_object_mut);
    let Some(modifier) = modifier else {
        filters.push(set_cookie_filter(set_cookie));
        return;
    };
    if let Some(add) = modifier
        .entry("add")
        .or_insert_with(|| json!([]))
        .as_array_mut()
    {
        add.retain(|h| !is_named(h, "Set-Cookie"));
        add.push(json!({ "name": "Set-Cookie", "value": set_cookie }));
    }
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

/// Why the HTTPRoute's current spec does not route yet, as Flagger checks it before reading its
/// weights: a parent in `status.parents` (matched to one of `spec.parentRefs` field for field)
/// whose `Accepted` condition is not `True`, or was observed at an older generation. A parent
/// with no status entry, or an entry without `Accepted`, does not hold anything up.
pub fn not_ready(object: &DynamicObject) -> Option<String> {
    let generation = object.metadata.generation.unwrap_or(0);
    let spec_refs = object
        .data
        .pointer("/spec/parentRefs")
        .and_then(Value::as_array)?;
    let parents = object
        .data
        .pointer("/status/parents")
        .and_then(Value::as_array)?;
    for parent_ref in spec_refs {
        for parent in parents {
            let same = parent
                .get("parentRef")
                .is_some_and(|r| without_nulls(r) == without_nulls(parent_ref));
            if !same {
                continue;
            }
            let conditions = parent.get("conditions").and_then(Value::as_array);
            for condition in conditions.into_iter().flatten() {
                if condition.get("type").and_then(Value::as_str) != Some("Accepted") {
                    continue;
                }
                let status = condition
                    .get("status")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                let observed = condition
                    .get("observedGeneration")
                    .and_then(Value::as_i64)
                    .unwrap_or(0);
                if status != "True" || observed < generation {
                    return Some(format!(
                        "HTTPRoute {}.{} parent {} is not ready (status: {status}, observed generation: {observed}, current generation: {generation})",
                        object.metadata.name.as_deref().unwrap_or(""),
                        object.metadata.namespace.as_deref().unwrap_or(""),
                        parent_ref.get("name").and_then(Value::as_str).unwrap_or(""),
                    ));
                }
            }
        }
    }
    None
}

/// A parent reference as Go sees it after decoding: an explicit `null` is an absent field.
fn without_nulls(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), without_nulls(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

pub fn read_routes(object: &DynamicObject) -> Option<Routes> {
    let apex = object.metadata.name.as_deref()?;
    let (primary, canary) = (format!("{apex}-primary"), format!("{apex}-canary"));
    let rules = object.data.get("spec")?.get("rules")?.as_array()?;
    let name_of = |b: &Value| b.get("name").and_then(Value::as_str).map(str::to_string);
    // The weighted rule: the last one with the canary, after session affinity's cookie rules;
    // in A/B testing the matched one, as the default rule only has the primary.
    let rule = rules.iter().rev().find(|r| {
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
    use crate::router::Router;
    use flagger_core::api::{
        CanaryAnalysis, CanaryService, CanarySpec, CanaryStatus, ObjectReference,
    };
    use proptest::prelude::*;

    /// An HTTPRoute as the API server stores it (parentRefs defaulted) with the status a Gateway
    /// controller writes: one parent per Gateway, each with Accepted and ResolvedRefs.
    fn stored_route(generation: i64, parents: Value) -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": {"name": "podinfo", "namespace": "test", "generation": generation},
            "spec": {
                "parentRefs": [
                    {"group": "gateway.networking.k8s.io", "kind": "Gateway",
                     "name": "gateway", "namespace": "istio-ingress"},
                    {"group": "gateway.networking.k8s.io", "kind": "Gateway",
                     "name": "internal", "namespace": "istio-ingress", "sectionName": "http"}
                ],
                "rules": []
            },
            "status": {"parents": parents}
        }))
        .unwrap()
    }

    fn parent(name: &str, section: Option<&str>, accepted: &str, observed: i64) -> Value {
        let mut parent_ref = json!({"group": "gateway.networking.k8s.io", "kind": "Gateway",
            "name": name, "namespace": "istio-ingress"});
        if let Some(section) = section {
            parent_ref["sectionName"] = json!(section);
        }
        json!({
            "parentRef": parent_ref,
            "controllerName": "istio.io/gateway-controller",
            "conditions": [
                {"type": "Accepted", "status": accepted, "observedGeneration": observed,
                 "reason": "Accepted", "message": "Route was valid",
                 "lastTransitionTime": "2026-01-01T00:00:00Z"},
                {"type": "ResolvedRefs", "status": "True", "observedGeneration": observed,
                 "reason": "ResolvedRefs", "message": "All references resolved",
                 "lastTransitionTime": "2026-01-01T00:00:00Z"}
            ]
        })
    }

    #[test]
    fn a_route_waits_for_every_parent_to_accept_its_current_generation() {
        let all_accepted = stored_route(
            3,
            json!([
                parent("gateway", None, "True", 3),
                parent("internal", Some("http"), "True", 3)
            ]),
        );
        assert_eq!(not_ready(&all_accepted), None);

        // The second Gateway has not seen the latest spec yet.
        let lagging = stored_route(
            3,
            json!([
                parent("gateway", None, "True", 3),
                parent("internal", Some("http"), "True", 2)
            ]),
        );
        assert_eq!(
            not_ready(&lagging).as_deref(),
            Some(
                "HTTPRoute podinfo.test parent internal is not ready (status: True, observed generation: 2, current generation: 3)"
            )
        );

        let refused = stored_route(
            3,
            json!([
                parent("gateway", None, "False", 3),
                parent("internal", Some("http"), "True", 3)
            ]),
        );
        assert_eq!(
            not_ready(&refused).as_deref(),
            Some(
                "HTTPRoute podinfo.test parent gateway is not ready (status: False, observed generation: 3, current generation: 3)"
            )
        );
    }

    #[test]
    fn parents_without_a_matching_status_or_acceptance_hold_nothing_up() {
        // A status entry for another listener of the same Gateway is not this parent's.
        let other_section = stored_route(
            3,
            json!([
                parent("gateway", None, "True", 3),
                parent("internal", Some("https"), "False", 1)
            ]),
        );
        assert_eq!(not_ready(&other_section), None);
        // No status yet (no controller has looked at it), as Flagger: nothing to wait for.
        assert_eq!(not_ready(&stored_route(1, json!([]))), None);
        let mut no_status = stored_route(1, json!([]));
        no_status.data.as_object_mut().unwrap().remove("status");
        assert_eq!(not_ready(&no_status), None);
        assert_eq!(
            Router::GatewayApi { version: "v1" }.routes_not_ready(&stored_route(
                3,
                json!([parent("gateway", None, "True", 2)])
            )),
            Some(
                "HTTPRoute podinfo.test parent gateway is not ready (status: True, observed generation: 2, current generation: 3)"
                    .to_string()
            )
        );
        assert_eq!(
            Router::Istio.routes_not_ready(&stored_route(
                3,
                json!([parent("gateway", None, "False", 1)])
            )),
            None,
            "only Gateway API reports acceptance"
        );
    }

    fn canary(service: CanaryService, analysis: CanaryAnalysis) -> Canary {
        let mut c = Canary::new(
            "podinfo",
            CanarySpec {
                target_ref: ObjectReference {
                    name: "podinfo".into(),
                    ..ObjectReference::default()
                },
                service: Some(CanaryService {
                    port: 9898,
                    gateway_refs: Some(vec![
                        json!({ "name": "gateway", "namespace": "istio-ingress" }),
                    ]),
                    ..service
                }),
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

    const COOKIE: &str = "flagger-cookie=abcdefghij";
    const PRIMARY_COOKIE: &str = "flagger-primary=klmnopqrst";

    /// A Canary with session affinity whose status holds the given cookies.
    fn sticky(
        service: CanaryService,
        analysis: CanaryAnalysis,
        affinity: Value,
        cookies: [Option<&str>; 3],
    ) -> Canary {
        let analysis = CanaryAnalysis {
            session_affinity: Some(affinity),
            ..analysis
        };
        let mut c = canary(service, analysis);
        let [current, previous, primary] = cookies.map(|c| c.map(str::to_string));
        c.status = Some(CanaryStatus {
            session_affinity_cookie: current,
            previous_session_affinity_cookie: previous,
            primary_session_affinity_cookie: primary,
            ..CanaryStatus::default()
        });
        c
    }

    fn rules_of(c: &Canary, r: Routes) -> Value {
        let object = desired_objects(c, "v1", r).remove(0);
        assert_eq!(read_routes(&object), Some(r));
        object.data["spec"]["rules"].clone()
    }

    fn backend(name: &str, weight: i32) -> Value {
        json!({ "group": "", "kind": "Service", "name": name, "port": 9898, "weight": weight })
    }

    fn split(primary: i32, canary: i32) -> Value {
        json!([
            backend("podinfo-primary", primary),
            backend("podinfo-canary", canary)
        ])
    }

    fn cookie_matches(regex: &str) -> Value {
        json!([{ "path": { "type": "PathPrefix", "value": "/" },
                 "headers": [{ "type": "RegularExpression", "name": "Cookie", "value": regex }] }])
    }

    fn set_cookie(value: &str) -> Value {
        json!([{ "type": "ResponseHeaderModifier", "responseHeaderModifier": {
            "add": [{ "name": "Set-Cookie", "value": value }] } }])
    }

    #[test]
    fn session_affinity_pins_clients_holding_the_canary_cookie() {
        let c = sticky(
            CanaryService::default(),
            CanaryAnalysis::default(),
            json!({ "cookieName": "flagger-cookie" }),
            // Without primaryCookieName a primary cookie is not routed on.
            [Some(COOKIE), None, Some(PRIMARY_COOKIE)],
        );
        let mut canary_backend = backend("podinfo-canary", 30);
        canary_backend["filters"] = set_cookie("flagger-cookie=abcdefghij; Max-Age=86400");
        assert_eq!(
            rules_of(&c, routes(70, 30, false)),
            json!([
                { "matches": cookie_matches(".*flagger-cookie.*abcdefghij.*"), "backendRefs": split(0, 100) },
                { "matches": [{ "path": { "type": "PathPrefix", "value": "/" } }],
                  "backendRefs": [backend("podinfo-primary", 70), canary_backend] }
            ])
        );
    }

    #[test]
    fn session_affinity_pins_primary_clients_for_an_interval() {
        let service = CanaryService {
            match_: Some(vec![json!({
                "uri": { "prefix": "/api" },
                "headers": { "x-env": { "exact": "prod" }, "cookie": { "regex": "beta=1" } }
            })]),
            ..CanaryService::default()
        };
        let analysis = CanaryAnalysis {
            interval: Some("30s".into()),
            ..CanaryAnalysis::default()
        };
        let affinity = json!({ "cookieName": "flagger-cookie", "primaryCookieName": "flagger-primary", "maxAge": 600, "path": "/" });
        let c = sticky(
            service,
            analysis,
            affinity,
            [Some(COOKIE), None, Some(PRIMARY_COOKIE)],
        );
        let path = json!({ "type": "PathPrefix", "value": "/api" });
        let env = json!({ "type": "Exact", "name": "x-env", "value": "prod" });
        let sticky_matches = |regex: &str| {
            json!([{ "path": path, "headers": [
                env, { "type": "RegularExpression", "name": "Cookie", "value": regex }] }])
        };
        let mut primary_backend = backend("podinfo-primary", 70);
        primary_backend["filters"] = set_cookie("flagger-primary=klmnopqrst; Max-Age=30; Path=/");
        let mut canary_backend = backend("podinfo-canary", 30);
        canary_backend["filters"] = set_cookie("flagger-cookie=abcdefghij; Max-Age=600; Path=/");
        assert_eq!(
            rules_of(&c, routes(70, 30, false)),
            json!([
                { "matches": sticky_matches(".*flagger-cookie.*abcdefghij.*"), "backendRefs": split(0, 100) },
                { "matches": sticky_matches(".*flagger-primary.*klmnopqrst.*"), "backendRefs": split(100, 0) },
                { "matches": [{ "path": path, "headers": [
                    { "type": "RegularExpression", "name": "cookie", "value": "beta=1" }, env] }],
                  "backendRefs": [primary_backend, canary_backend] }
            ])
        );
    }

    #[test]
    fn after_a_run_the_previous_cookie_is_expired_keeping_the_users_headers() {
        let service = CanaryService {
            headers: Some(json!({ "response": {
                "add": { "x-served-by": "flagger", "set-cookie": "theirs=1" },
                "remove": ["x-debug"] } })),
            ..CanaryService::default()
        };
        let c = sticky(
            service,
            CanaryAnalysis::default(),
            json!({ "cookieName": "flagger-cookie" }),
            [None, Some(COOKIE), None],
        );
        let mirror = json!({ "type": "RequestMirror", "requestMirror": { "backendRef": {
            "group": "", "kind": "Service", "name": "podinfo-canary", "port": 9898 } } });
        let users = json!({ "type": "ResponseHeaderModifier", "responseHeaderModifier": {
            "add": [{ "name": "set-cookie", "value": "theirs=1" }, { "name": "x-served-by", "value": "flagger" }],
            "remove": ["x-debug"] } });
        assert_eq!(
            rules_of(&c, routes(100, 0, true)),
            json!([
                { "matches": cookie_matches(".*flagger-cookie.*abcdefghij.*"),
                  "filters": [{ "type": "ResponseHeaderModifier", "responseHeaderModifier": {
                      "add": [{ "name": "x-served-by", "value": "flagger" },
                              { "name": "Set-Cookie", "value": "flagger-cookie=abcdefghij; Max-Age=-1" }],
                      "remove": ["x-debug"] } }],
                  "backendRefs": split(100, 0) },
                { "matches": [{ "path": { "type": "PathPrefix", "value": "/" } }],
                  "filters": [users, mirror],
                  "backendRefs": split(100, 0) }
            ])
        );
    }

    #[test]
    fn without_canary_traffic_or_a_previous_cookie_only_the_weighted_rule_is_left() {
        let c = sticky(
            CanaryService::default(),
            CanaryAnalysis::default(),
            json!({ "cookieName": "flagger-cookie" }),
            [Some(COOKIE), None, Some(PRIMARY_COOKIE)],
        );
        assert_eq!(
            rules_of(&c, routes(100, 0, false)),
            json!([{ "matches": [{ "path": { "type": "PathPrefix", "value": "/" } }],
                     "backendRefs": split(100, 0) }])
        );
    }

    #[test]
    fn ab_testing_overrides_session_affinity() {
        let analysis = CanaryAnalysis {
            match_: Some(vec![
                json!({ "headers": { "x-canary": { "exact": "insider" } } }),
            ]),
            ..CanaryAnalysis::default()
        };
        let affinity =
            json!({ "cookieName": "flagger-cookie", "primaryCookieName": "flagger-primary" });
        let c = sticky(
            CanaryService::default(),
            analysis.clone(),
            affinity,
            [Some(COOKIE), Some(COOKIE), Some(PRIMARY_COOKIE)],
        );
        let plain = canary(CanaryService::default(), analysis);
        for r in [routes(70, 30, false), routes(100, 0, false)] {
            assert_eq!(rules_of(&c, r), rules_of(&plain, r));
        }
        assert_eq!(
            rules_of(&c, routes(70, 30, false)),
            json!([
                { "matches": [{ "path": { "type": "PathPrefix", "value": "/" },
                                "headers": [{ "type": "Exact", "name": "x-canary", "value": "insider" }] }],
                  "backendRefs": split(70, 30) },
                { "matches": [{ "path": { "type": "PathPrefix", "value": "/" } }],
                  "backendRefs": [backend("podinfo-primary", 100)] }
            ])
        );
    }

    proptest! {
        #[test]
        fn written_weights_read_back(canary_weight in 0i32..=100, mirrored: bool, ab: bool, sticky_run: bool) {
            let analysis = CanaryAnalysis {
                match_: ab.then(|| vec![json!({ "headers": { "x-canary": { "exact": "1" } } })]),
                ..CanaryAnalysis::default()
            };
            let mirrored = mirrored && !ab;
            let wanted = routes(100 - canary_weight, canary_weight, mirrored);
            let c = if sticky_run {
                let affinity = json!({ "cookieName": "flagger-cookie", "primaryCookieName": "flagger-primary" });
                sticky(CanaryService::default(), analysis, affinity, [Some(COOKIE), Some(COOKIE), Some(PRIMARY_COOKIE)])
            } else {
                canary(CanaryService::default(), analysis)
            };
            let object = desired_objects(&c, "v1", wanted).remove(0);
            let object: DynamicObject =
                serde_json::from_value(serde_json::to_value(&object).unwrap()).unwrap();
            prop_assert_eq!(read_routes(&object), Some(wanted));
        }
    }
}
