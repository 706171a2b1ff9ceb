//! Istio: a VirtualService `<svc>` splitting traffic between `<svc>-primary` and `<svc>-canary`,
//! and one DestinationRule per destination carrying `spec.service().trafficPolicy`.
//!
//! `networking.istio.io/v1beta1` is used, as Flagger does: istio.io/api v1.32 still serves it
//! next to `v1` (the storage version), and older Istio releases serve only `v1beta1`.

use flagger_core::Routes;
use flagger_core::api::Canary;
use kube::core::{ApiResource, DynamicObject};

use super::session_affinity::{RouteVocabulary, StickyCookie, with_session_affinity};
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
    let service = &canary.spec.service();
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
    let service = &canary.spec.service();
    let analysis = canary.spec.analysis();
    // As in Flagger, the port is named only where a gateway (or a delegating VirtualService)
    // forwards to a multi-port Service; inside the mesh a request keeps the port it was sent
    // to, which a fixed port would override for every other port of the apex Service.
    let gateway_bound = service
        .gateways
        .as_ref()
        .is_some_and(|g| g.first().is_some_and(|g| g != "mesh"))
        || service.delegation.unwrap_or(false);
    let port = (service.port_discovery.unwrap_or(false) && gateway_bound)
        .then(|| json!({ "number": service.port }));
    let destination = |host: &str, weight: i32| {
        let mut destination = json!({ "host": host });
        if let Some(port) = &port {
            destination["port"] = port.clone();
        }
        json!({ "destination": destination, "weight": weight })
    };
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
                Some(&merge_conditions(conditions, service.match_.as_deref())),
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
                route.insert("mirror".into(), json!({ "host": names.canary_service }));
                if let Some(percent) = analysis.and_then(|a| a.mirror_weight).filter(|w| *w > 0) {
                    route.insert("mirrorPercentage".into(), json!({ "value": percent }));
                }
            }
            let split = |primary: i32, canary: i32| {
                vec![
                    destination(&names.primary_service, primary),
                    destination(&names.canary_service, canary),
                ]
            };
            with_session_affinity(&HttpRoutes { canary, split }, canary, routes, route)
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

/// `spec.service().hosts` plus the apex Service, unless it (or the wildcard) is already listed.
fn hosts(canary: &Canary, names: &Names) -> Vec<String> {
    let mut hosts = canary.spec.service().hosts.clone().unwrap_or_default();
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
    let service = &canary.spec.service();
    let mut route = Map::new();
    if let Some(name) = name {
        route.insert("name".into(), json!(name));
    }
    put(
        &mut route,
        "match",
        matches.filter(|m| !m.is_empty()).map(|m| json!(m)).as_ref(),
    );
    // `rewrite.type` only chooses the Gateway API path modifier; Istio has no such field.
    let rewrite = service.rewrite.clone().map(|mut r| {
        if let Some(obj) = r.as_object_mut() {
            obj.remove("type");
        }
        r
    });
    put(&mut route, "rewrite", rewrite.as_ref());
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

/// Session affinity's routes as Istio HTTP routes; `split(p, c)` gives the destinations for a
/// primary and canary weight: primary first, then canary.
struct HttpRoutes<'a, F> {
    canary: &'a Canary,
    split: F,
}

impl<F: Fn(i32, i32) -> Vec<Value>> RouteVocabulary for HttpRoutes<'_, F> {
    type Route = Map<String, Value>;

    fn sticky(&self, cookie: &StickyCookie, primary: i32, canary: i32) -> Self::Route {
        let service_match = self.canary.spec.service().match_.as_deref();
        let matches = with_cookie_match(service_match, &cookie.regex);
        http_route(
            self.canary,
            None,
            Some(&matches),
            (self.split)(primary, canary),
        )
    }

    fn destination_cookie(&self, route: &mut Self::Route, index: usize, set_cookie: &str) {
        set_destination_cookie(route, index, set_cookie);
    }

    fn route_cookie(&self, route: &mut Self::Route, set_cookie: &str) {
        add_set_cookie(route, set_cookie);
    }
}

/// Every service condition narrowed to requests carrying the cookie (just the cookie without
/// any), keeping the condition's own header matches.
fn with_cookie_match(service_match: Option<&[Value]>, regex: &str) -> Vec<Value> {
    let conditions = match service_match {
        Some(m) if !m.is_empty() => m.to_vec(),
        _ => vec![json!({})],
    };
    conditions
        .into_iter()
        .map(|mut condition| {
            if let Some(condition) = condition.as_object_mut() {
                child(condition, "headers").insert("cookie".into(), json!({ "regex": regex }));
            }
            condition
        })
        .collect()
}

fn set_destination_cookie(route: &mut Map<String, Value>, index: usize, set_cookie: &str) {
    if let Some(destination) = route
        .get_mut("route")
        .and_then(|r| r.get_mut(index))
        .and_then(Value::as_object_mut)
    {
        add_set_cookie(destination, set_cookie);
    }
}

/// Adds `Set-Cookie` to `headers.response.add` of a route or destination, keeping whatever
/// header operations the user already set there.
fn add_set_cookie(target: &mut Map<String, Value>, set_cookie: &str) {
    let add = child(child(child(target, "headers"), "response"), "add");
    add.insert("Set-Cookie".into(), json!(set_cookie));
}

/// `map[key]` as an object, created (or replacing a non-object) when needed.
fn child<'a>(map: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    let entry = map.entry(key).or_insert_with(|| json!({}));
    if !entry.is_object() {
        *entry = json!({});
    }
    entry.as_object_mut().expect("an object was just put here")
}

/// Flagger's A/B conditions: every analysis condition combined with every service condition,
/// the analysis one's fields (headers, query, source labels) over the service one's (its URI),
/// so the canary route never widens the requests the service routes.
fn merge_conditions(conditions: &[Value], service_match: Option<&[Value]>) -> Vec<Value> {
    let defaults = service_match.unwrap_or_default();
    if defaults.is_empty() {
        return conditions.to_vec();
    }
    let mut merged = Vec::with_capacity(conditions.len() * defaults.len());
    for condition in conditions {
        for default in defaults {
            let mut m = default.clone();
            if let (Some(m), Some(c)) = (m.as_object_mut(), condition.as_object()) {
                m.extend(c.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
            merged.push(m);
        }
    }
    merged
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
    // The weighted route: the last one with the canary, after session affinity's cookie routes;
    // in A/B testing the matched one, as the default route only has the primary.
    let route = http.iter().rev().find(|r| {
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

#[cfg(test)]
mod tests {
    use super::*;
    use flagger_core::api::{
        CanaryAnalysis, CanaryService, CanarySpec, CanaryStatus, ObjectReference,
    };
    use proptest::prelude::*;

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

    fn spec_of(objects: &[DynamicObject], name: &str) -> Value {
        objects
            .iter()
            .find(|o| o.metadata.name.as_deref() == Some(name))
            .map(|o| o.data["spec"].clone())
            .unwrap()
    }

    #[test]
    fn default_virtual_service_routes_the_mesh_by_weight() {
        let c = canary(CanaryService::default(), CanaryAnalysis::default());
        let objects = desired_objects(&c, routes(80, 20, false));
        let kinds: Vec<_> = objects
            .iter()
            .map(|o| {
                (
                    o.types.as_ref().unwrap().kind.clone(),
                    o.metadata.name.clone().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            kinds,
            [
                ("DestinationRule".into(), "podinfo-primary".into()),
                ("DestinationRule".into(), "podinfo-canary".into()),
                ("VirtualService".into(), "podinfo".to_string())
            ]
        );
        assert!(
            objects
                .iter()
                .all(|o| o.metadata.owner_references.as_ref().unwrap()[0].uid == "uid-1")
        );
        let vs = spec_of(&objects, "podinfo");
        assert_eq!(
            vs,
            json!({
                "hosts": ["podinfo"],
                "gateways": ["mesh"],
                "http": [{ "route": [
                    { "destination": { "host": "podinfo-primary" }, "weight": 80 },
                    { "destination": { "host": "podinfo-canary" }, "weight": 20 }
                ]}]
            })
        );
    }

    #[test]
    fn hosts_gateways_and_route_settings_come_from_the_service() {
        let service = CanaryService {
            name: Some("web".into()),
            hosts: Some(vec!["app.example.com".into(), "web".into()]),
            gateways: Some(vec!["public/gateway".into()]),
            timeout: Some("30s".into()),
            retries: Some(json!({ "attempts": 3, "perTryTimeout": "1s" })),
            headers: Some(json!({ "request": { "add": { "x-flagger": "yes" } } })),
            cors_policy: Some(json!({ "allowOrigins": [{ "exact": "example.com" }] })),
            rewrite: Some(json!({ "uri": "/", "type": "ReplacePrefixMatch" })),
            match_: Some(vec![json!({ "uri": { "prefix": "/api" } })]),
            traffic_policy: Some(json!({ "tls": { "mode": "ISTIO_MUTUAL" } })),
            ..CanaryService::default()
        };
        let objects = desired_objects(
            &canary(service, CanaryAnalysis::default()),
            routes(100, 0, false),
        );
        assert_eq!(
            spec_of(&objects, "web-primary"),
            json!({ "host": "web-primary", "trafficPolicy": { "tls": { "mode": "ISTIO_MUTUAL" } } })
        );
        let vs = spec_of(&objects, "web");
        assert_eq!(
            vs["hosts"],
            json!(["app.example.com", "web"]),
            "apex already listed"
        );
        assert_eq!(vs["gateways"], json!(["public/gateway"]));
        let route = &vs["http"][0];
        assert_eq!(route["timeout"], "30s");
        assert_eq!(route["retries"]["attempts"], 3);
        assert_eq!(route["headers"]["request"]["add"]["x-flagger"], "yes");
        assert_eq!(
            route["corsPolicy"]["allowOrigins"][0]["exact"],
            "example.com"
        );
        assert_eq!(route["rewrite"], json!({ "uri": "/" }));
        assert_eq!(route["match"], json!([{ "uri": { "prefix": "/api" } }]));
        assert_eq!(route["route"][0]["destination"]["host"], "web-primary");
    }

    #[test]
    fn destination_port_is_named_only_for_gateways_to_multi_port_services() {
        let port_of = |service: CanaryService| {
            let objects = desired_objects(
                &canary(service, CanaryAnalysis::default()),
                routes(100, 0, false),
            );
            spec_of(&objects, "podinfo")["http"][0]["route"][0]["destination"]["port"].clone()
        };
        let gateway = CanaryService {
            port_discovery: Some(true),
            gateways: Some(vec!["public-gateway".into()]),
            ..CanaryService::default()
        };
        assert_eq!(port_of(gateway), json!({ "number": 9898 }));
        let mesh = CanaryService {
            port_discovery: Some(true),
            gateways: Some(vec!["mesh".into()]),
            ..CanaryService::default()
        };
        assert_eq!(port_of(mesh), Value::Null);
        let single_port = CanaryService {
            gateways: Some(vec!["public-gateway".into()]),
            ..CanaryService::default()
        };
        assert_eq!(port_of(single_port), Value::Null);
    }

    #[test]
    fn wildcard_host_is_not_extended_and_delegates_have_no_hosts() {
        let wildcard = CanaryService {
            hosts: Some(vec!["*".into()]),
            ..CanaryService::default()
        };
        let objects = desired_objects(
            &canary(wildcard, CanaryAnalysis::default()),
            routes(100, 0, false),
        );
        assert_eq!(spec_of(&objects, "podinfo")["hosts"], json!(["*"]));

        let delegate = CanaryService {
            delegation: Some(true),
            ..CanaryService::default()
        };
        let objects = desired_objects(
            &canary(delegate, CanaryAnalysis::default()),
            routes(100, 0, false),
        );
        let vs = spec_of(&objects, "podinfo");
        assert!(
            vs.get("hosts").is_none() && vs.get("gateways").is_none(),
            "{vs}"
        );
    }

    #[test]
    fn mirroring_copies_requests_to_the_canary() {
        let analysis = CanaryAnalysis {
            mirror: Some(true),
            mirror_weight: Some(50),
            ..CanaryAnalysis::default()
        };
        let objects = desired_objects(
            &canary(CanaryService::default(), analysis),
            routes(100, 0, true),
        );
        let route = &spec_of(&objects, "podinfo")["http"][0];
        assert_eq!(route["mirror"], json!({ "host": "podinfo-canary" }));
        assert_eq!(route["mirrorPercentage"], json!({ "value": 50 }));
        assert_eq!(route["route"][0]["weight"], 100);

        let objects = desired_objects(
            &canary(CanaryService::default(), CanaryAnalysis::default()),
            routes(100, 0, false),
        );
        assert!(
            spec_of(&objects, "podinfo")["http"][0]
                .get("mirror")
                .is_none()
        );
    }

    #[test]
    fn ab_testing_routes_matching_requests_and_keeps_the_rest_on_the_primary() {
        let service = CanaryService {
            match_: Some(vec![json!({ "uri": { "prefix": "/api" } })]),
            ..CanaryService::default()
        };
        let analysis = CanaryAnalysis {
            iterations: Some(10),
            match_: Some(vec![
                json!({ "headers": { "x-canary": { "exact": "insider" } } }),
                json!({ "headers": { "cookie": { "regex": "^(.*?;)?(canary=always)(;.*)?$" } } }),
            ]),
            ..CanaryAnalysis::default()
        };
        let objects = desired_objects(&canary(service, analysis), routes(0, 100, false));
        let http = spec_of(&objects, "podinfo")["http"].clone();
        assert_eq!(http[0]["name"], "canary");
        assert_eq!(
            http[0]["match"],
            json!([
                { "headers": { "x-canary": { "exact": "insider" } }, "uri": { "prefix": "/api" } },
                { "headers": { "cookie": { "regex": "^(.*?;)?(canary=always)(;.*)?$" } }, "uri": { "prefix": "/api" } }
            ])
        );
        assert_eq!(http[0]["route"][0]["weight"], 0);
        assert_eq!(http[0]["route"][1]["weight"], 100);
        assert_eq!(http[1]["name"], "primary");
        assert_eq!(http[1]["match"], json!([{ "uri": { "prefix": "/api" } }]));
        assert_eq!(
            http[1]["route"],
            json!([{ "destination": { "host": "podinfo-primary" }, "weight": 100 }])
        );
        let vs = objects.last().unwrap();
        assert_eq!(read_routes(vs), Some(routes(0, 100, false)));
    }

    #[test]
    fn a_virtual_service_without_the_canary_reads_as_nothing() {
        let mut vs = DynamicObject::new("podinfo", &virtual_service_resource());
        vs.data = json!({ "spec": { "http": [{ "route": [
            { "destination": { "host": "somewhere-else" }, "weight": 100 }
        ]}]}});
        assert_eq!(read_routes(&vs), None);
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

    fn http_of(c: &Canary, r: Routes) -> Value {
        let objects = desired_objects(c, r);
        assert_eq!(read_routes(objects.last().unwrap()), Some(r));
        spec_of(&objects, "podinfo")["http"].clone()
    }

    fn split(primary: i32, canary: i32) -> Value {
        json!([
            { "destination": { "host": "podinfo-primary" }, "weight": primary },
            { "destination": { "host": "podinfo-canary" }, "weight": canary }
        ])
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
        assert_eq!(
            http_of(&c, routes(70, 30, false)),
            json!([
                { "match": [{ "headers": { "cookie": { "regex": ".*flagger-cookie.*abcdefghij.*" } } }],
                  "route": split(0, 100) },
                { "route": [
                    { "destination": { "host": "podinfo-primary" }, "weight": 70 },
                    { "destination": { "host": "podinfo-canary" }, "weight": 30,
                      "headers": { "response": { "add": {
                          "Set-Cookie": "flagger-cookie=abcdefghij; Max-Age=86400" } } } }
                ]}
            ])
        );
    }

    #[test]
    fn session_affinity_pins_primary_clients_for_an_interval() {
        let service = CanaryService {
            match_: Some(vec![
                json!({ "uri": { "prefix": "/api" }, "headers": { "x-env": { "exact": "prod" } } }),
            ]),
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
        let sticky_match = |regex: &str| {
            json!([{ "uri": { "prefix": "/api" },
                     "headers": { "x-env": { "exact": "prod" }, "cookie": { "regex": regex } } }])
        };
        assert_eq!(
            http_of(&c, routes(70, 30, false)),
            json!([
                { "match": sticky_match(".*flagger-cookie.*abcdefghij.*"), "route": split(0, 100) },
                { "match": sticky_match(".*flagger-primary.*klmnopqrst.*"), "route": split(100, 0) },
                { "match": [{ "uri": { "prefix": "/api" }, "headers": { "x-env": { "exact": "prod" } } }],
                  "route": [
                    { "destination": { "host": "podinfo-primary" }, "weight": 70,
                      "headers": { "response": { "add": {
                          "Set-Cookie": "flagger-primary=klmnopqrst; Max-Age=30; Path=/" } } } },
                    { "destination": { "host": "podinfo-canary" }, "weight": 30,
                      "headers": { "response": { "add": {
                          "Set-Cookie": "flagger-cookie=abcdefghij; Max-Age=600; Path=/" } } } }
                ]}
            ])
        );
    }

    #[test]
    fn after_a_run_the_previous_cookie_is_expired_keeping_the_users_headers() {
        let service = CanaryService {
            headers: Some(json!({ "response": { "add": { "x-served-by": "flagger" } } })),
            ..CanaryService::default()
        };
        let c = sticky(
            service,
            CanaryAnalysis::default(),
            json!({ "cookieName": "flagger-cookie" }),
            [None, Some(COOKIE), None],
        );
        assert_eq!(
            http_of(&c, routes(100, 0, true)),
            json!([
                { "match": [{ "headers": { "cookie": { "regex": ".*flagger-cookie.*abcdefghij.*" } } }],
                  "headers": { "response": { "add": {
                      "x-served-by": "flagger", "Set-Cookie": "flagger-cookie=abcdefghij; Max-Age=-1" } } },
                  "route": split(100, 0) },
                { "headers": { "response": { "add": { "x-served-by": "flagger" } } },
                  "route": split(100, 0),
                  "mirror": { "host": "podinfo-canary" } }
            ])
        );
    }

    #[test]
    fn without_canary_traffic_or_a_previous_cookie_only_the_weighted_route_is_left() {
        let c = sticky(
            CanaryService::default(),
            CanaryAnalysis::default(),
            json!({ "cookieName": "flagger-cookie" }),
            [Some(COOKIE), None, Some(PRIMARY_COOKIE)],
        );
        assert_eq!(
            http_of(&c, routes(100, 0, false)),
            json!([{ "route": split(100, 0) }])
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
            assert_eq!(http_of(&c, r), http_of(&plain, r));
        }
        assert_eq!(
            http_of(&c, routes(70, 30, false)),
            json!([
                { "name": "canary", "match": [{ "headers": { "x-canary": { "exact": "insider" } } }],
                  "route": split(70, 30) },
                { "name": "primary",
                  "route": [{ "destination": { "host": "podinfo-primary" }, "weight": 100 }] }
            ])
        );
    }

    #[test]
    fn unparsable_session_affinity_is_ignored() {
        let c = sticky(
            CanaryService::default(),
            CanaryAnalysis::default(),
            json!({ "primaryCookieName": "flagger-primary" }),
            [Some(COOKIE), None, None],
        );
        assert_eq!(
            http_of(&c, routes(70, 30, false)),
            json!([{ "route": split(70, 30) }])
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
            let objects = desired_objects(&c, wanted);
            // Through JSON, as the API server would return it.
            let vs: DynamicObject =
                serde_json::from_value(serde_json::to_value(objects.last().unwrap()).unwrap()).unwrap();
            prop_assert_eq!(read_routes(&vs), Some(wanted));
        }
    }
}
