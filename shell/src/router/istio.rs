//! Istio: a VirtualService `<svc>` splitting traffic between `<svc>-primary` and `<svc>-canary`,
//! and one DestinationRule per destination carrying `spec.service.trafficPolicy`.
//!
//! `networking.istio.io/v1beta1` is used, as Flagger does: istio.io/api v1.32 still serves it
//! next to `v1` (the storage version), and older Istio releases serve only `v1beta1`.

use flagger_core::Routes;
use flagger_core::api::Canary;
use kube::core::{ApiResource, DynamicObject};
use serde_json::{Map, Value, json};

use super::{Names, api_resource, owned_object, put, weight_of};

const GROUP: &str = "networking.istio.io";
const VERSION: &str = "v1beta1";

pub fn virtual_service_resource() -> ApiResource {
    api_resource(GROUP, VERSION, "VirtualService", "virtualservices")
}

pub fn destination_rule_resource() -> ApiResource {
    api_resource(GROUP, VERSION, "DestinationRule", "destinationrules")
}

pub fn desired_objects(canary: &Canary, routes: Routes) -> Vec<DynamicObject> {
    let names = Names::of(canary);
    let service = &canary.spec.service;
    let rule = |host: &str| {
        let mut spec = Map::new();
        spec.insert("host".into(), json!(host));
        put(&mut spec, "trafficPolicy", service.traffic_policy.as_ref());
        owned_object(
            canary,
            &destination_rule_resource(),
            host,
            Value::Object(spec),
            false,
        )
    };
    vec![
        rule(&names.primary_service),
        rule(&names.canary_service),
        virtual_service(canary, &names, routes),
    ]
}

fn virtual_service(canary: &Canary, names: &Names, routes: Routes) -> DynamicObject {
    let service = &canary.spec.service;
    let analysis = canary.spec.analysis();
    let port = service.port;
    let destination = |host: &str, weight: i32| json!({ "destination": { "host": host, "port": { "number": port } }, "weight": weight });
    let split = vec![
        destination(&names.primary_service, routes.primary_weight),
        destination(&names.canary_service, routes.canary_weight),
    ];
    let ab_match = analysis
        .and_then(|a| a.match_.as_ref())
        .filter(|m| !m.is_empty());
    let http = match ab_match {
        // A/B testing: matching requests get the split, everyone else stays on the primary.
        Some(conditions) => vec![
            http_route(
                canary,
                Some("canary"),
                Some(&merge_uri(conditions, service.match_.as_deref())),
                split,
            ),
            http_route(
                canary,
                Some("primary"),
                service.match_.as_ref(),
                vec![destination(&names.primary_service, 100)],
            ),
        ],
        None => {
            let mut route = http_route(canary, None, service.match_.as_ref(), split);
            if routes.mirrored {
                route.insert(
                    "mirror".into(),
                    json!({ "host": names.canary_service, "port": { "number": port } }),
                );
                if let Some(percent) = analysis.and_then(|a| a.mirror_weight).filter(|w| *w > 0) {
                    route.insert("mirrorPercentage".into(), json!({ "value": percent }));
                }
            }
            vec![route]
        }
    };
    let mut spec = Map::new();
    // A delegate VirtualService is referenced by another one and may not name hosts or gateways.
    if !service.delegation.unwrap_or(false) {
        spec.insert("hosts".into(), json!(hosts(canary, names)));
        let gateways = service
            .gateways
            .clone()
            .filter(|g| !g.is_empty())
            .unwrap_or_else(|| vec!["mesh".into()]);
        spec.insert("gateways".into(), json!(gateways));
    }
    spec.insert(
        "http".into(),
        Value::Array(http.into_iter().map(Value::Object).collect()),
    );
    owned_object(
        canary,
        &virtual_service_resource(),
        &names.apex_service,
        Value::Object(spec),
        true,
    )
}

/// `spec.service.hosts` plus the apex Service, unless it (or the wildcard) is already listed.
fn hosts(canary: &Canary, names: &Names) -> Vec<String> {
    let mut hosts = canary.spec.service.hosts.clone().unwrap_or_default();
    if !hosts.iter().any(|h| *h == names.apex_service || h == "*") {
        hosts.push(names.apex_service.clone());
    }
    hosts
}

fn http_route(
    canary: &Canary,
    name: Option<&str>,
    matches: Option<&Vec<Value>>,
    destinations: Vec<Value>,
) -> Map<String, Value> {
    let service = &canary.spec.service;
    let mut route = Map::new();
    if let Some(name) = name {
        route.insert("name".into(), json!(name));
    }
    put(
        &mut route,
        "match",
        matches.filter(|m| !m.is_empty()).map(|m| json!(m)).as_ref(),
    );
    put(&mut route, "rewrite", service.rewrite.as_ref());
    put(
        &mut route,
        "timeout",
        service.timeout.as_ref().map(|t| json!(t)).as_ref(),
    );
    put(&mut route, "retries", service.retries.as_ref());
    put(&mut route, "headers", service.headers.as_ref());
    put(&mut route, "corsPolicy", service.cors_policy.as_ref());
    route.insert("route".into(), Value::Array(destinations));
    route
}

/// Flagger's A/B rule: each analysis condition also carries the service's URI match, so the
/// canary route never widens the paths the service routes.
fn merge_uri(conditions: &[Value], service_match: Option<&[Value]>) -> Vec<Value> {
    let uri = service_match
        .into_iter()
        .flatten()
        .filter_map(|m| m.get("uri"))
        .next_back();
    conditions
        .iter()
        .map(|c| {
            let mut c = c.clone();
            if let (Some(uri), Some(obj)) = (uri, c.as_object_mut()) {
                obj.insert("uri".into(), uri.clone());
            }
            c
        })
        .collect()
}

pub fn read_routes(object: &DynamicObject) -> Option<Routes> {
    let apex = object.metadata.name.as_deref()?;
    let (primary, canary) = (format!("{apex}-primary"), format!("{apex}-canary"));
    let http = object.data.get("spec")?.get("http")?.as_array()?;
    let host_of = |d: &Value| {
        d.get("destination")
            .and_then(|d| d.get("host"))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    // The canary's route: in A/B testing the matched one, the default route only has the primary.
    let route = http.iter().find(|r| {
        r.get("route")
            .and_then(Value::as_array)
            .is_some_and(|ds| ds.iter().any(|d| host_of(d).as_deref() == Some(&canary)))
    })?;
    let mut routes = Routes::default();
    for d in route.get("route")?.as_array()? {
        let weight = d.get("weight").map_or(0, weight_of);
        match host_of(d) {
            Some(h) if h == primary => routes.primary_weight += weight,
            Some(h) if h == canary => routes.canary_weight += weight,
            _ => {}
        }
    }
    routes.mirrored = route
        .get("mirror")
        .and_then(|m| m.get("host"))
        .and_then(Value::as_str)
        == Some(canary.as_str());
    Some(routes)
}
