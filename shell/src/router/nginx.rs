//! NGINX ingress controller: the user's Ingress (`spec.ingressRef`) keeps sending everyone to the
//! apex Service; a clone of it, `<ingress>-canary`, sends to `<apex>-canary` instead, and the
//! controller's canary annotations on the clone say how much traffic it takes: a weight, or (A/B
//! testing) the header or cookie that selects it.
//!
//! The clone is rebuilt from the cached user Ingress on every write, so a change to the user's
//! hosts or paths reaches it with the next weight. Server-side apply drops the A/B annotations
//! we stop sending, which is what Flagger's update does by deleting them.

use flagger_core::Routes;
use flagger_core::api::Canary;
use kube::core::{ApiResource, DynamicObject};
use serde_json::{Value, json};
use std::collections::BTreeMap;

use super::{FLUX_ANNOTATIONS, Names, RouterError, api_resource, owned_object};

/// The controller's annotation prefix (Flagger's `-ingress-annotations-prefix` default).
pub const PREFIX: &str = "nginx.ingress.kubernetes.io";

pub fn ingress_resource() -> ApiResource {
    api_resource("networking.k8s.io", "v1", "Ingress", "ingresses")
}

/// `spec.ingressRef.name`; core refuses an nginx Canary without it.
pub fn user_ingress_name(canary: &Canary) -> Option<&str> {
    canary
        .spec
        .ingress_ref
        .as_ref()
        .map(|r| r.name.as_str())
        .filter(|n| !n.is_empty())
}

/// The generated clone, `<ingress>-canary`.
pub fn canary_ingress_name(canary: &Canary) -> Option<String> {
    user_ingress_name(canary).map(|n| format!("{n}-canary"))
}

fn annotation(suffix: &str) -> String {
    format!("{PREFIX}/{suffix}")
}

/// The A/B match as the controller can express it: Flagger walks every header of every match
/// and keeps the last of each; `cookie` names the cookie, any other header its name and value.
#[derive(Default)]
struct HeaderMatch {
    cookie: Option<String>,
    header: Option<String>,
    exact: Option<String>,
    regex: Option<String>,
}

fn header_match(conditions: &[Value]) -> HeaderMatch {
    let mut m = HeaderMatch::default();
    let text = |v: &Value, key: &str| {
        v.get(key)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    for condition in conditions {
        let Some(headers) = condition.get("headers").and_then(Value::as_object) else {
            continue;
        };
        for (name, value) in headers {
            if name == "cookie" {
                m.cookie = text(value, "exact");
            } else {
                m.header = Some(name.clone());
                m.exact = text(value, "exact");
                m.regex = text(value, "regex");
            }
        }
    }
    m
}

fn ab_conditions(canary: &Canary) -> Option<&Vec<Value>> {
    canary
        .spec
        .analysis()
        .and_then(|a| a.match_.as_ref())
        .filter(|m| !m.is_empty())
}

/// The canary Ingress for `routes`, cloned from `ingress` (the user's, from the watch cache).
pub fn desired_objects(
    canary: &Canary,
    ingress: Option<&DynamicObject>,
    routes: Routes,
) -> Result<Vec<DynamicObject>, RouterError> {
    let user_name = user_ingress_name(canary).ok_or(RouterError::NoIngressRef)?;
    let ingress = ingress.ok_or_else(|| RouterError::IngressMissing(user_name.to_string()))?;
    let names = Names::of(canary);
    let mut spec = ingress.data.get("spec").cloned().unwrap_or(json!({}));
    let mut found = false;
    for rule in spec
        .get_mut("rules")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
    {
        for path in rule
            .pointer_mut("/http/paths")
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            if let Some(service) = path.pointer_mut("/backend/service/name")
                && service.as_str() == Some(names.apex_service.as_str())
            {
                *service = json!(names.canary_service);
                found = true;
            }
        }
    }
    if !found {
        return Err(RouterError::BackendNotFound {
            backend: names.apex_service,
            ingress: user_name.to_string(),
        });
    }

    let canary_prefix = annotation("canary");
    let mut annotations: BTreeMap<String, String> = ingress
        .metadata
        .annotations
        .iter()
        .flatten()
        .filter(|(k, _)| {
            !k.contains(&canary_prefix)
                && k.as_str() != "kubectl.kubernetes.io/last-applied-configuration"
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (k, v) in FLUX_ANNOTATIONS {
        annotations.insert(k.to_string(), v.to_string());
    }
    annotations.insert(canary_prefix, "true".into());
    let ab = ab_conditions(canary);
    // In A/B testing the match alone selects the canary; Flagger leaves the weight at 0 there.
    let weight = if ab.is_some() {
        0
    } else {
        routes.canary_weight
    };
    annotations.insert(annotation("canary-weight"), weight.to_string());
    if let Some(conditions) = ab
        && routes.canary_weight > 0
    {
        let m = header_match(conditions);
        for (suffix, value) in [
            ("canary-by-cookie", m.cookie),
            ("canary-by-header", m.header),
            ("canary-by-header-value", m.exact),
            ("canary-by-header-pattern", m.regex),
        ] {
            if let Some(v) = value {
                annotations.insert(annotation(suffix), v);
            }
        }
    }

    let name = canary_ingress_name(canary).ok_or(RouterError::NoIngressRef)?;
    let mut object = owned_object(canary, &ingress_resource(), &name, spec, false);
    object.metadata.labels = ingress.metadata.labels.clone().filter(|m| !m.is_empty());
    object.metadata.annotations = Some(annotations);
    Ok(vec![object])
}

/// The split the canary Ingress sends: in A/B testing all matched traffic while a by-header or
/// by-cookie annotation is set, otherwise its weight; `None` when the weight is not a number.
pub fn read_routes(canary: &Canary, object: &DynamicObject) -> Option<Routes> {
    let empty = BTreeMap::new();
    let annotations = object.metadata.annotations.as_ref().unwrap_or(&empty);
    let selected = [
        annotation("canary-by-cookie"),
        annotation("canary-by-header"),
    ]
    .iter()
    .any(|k| annotations.contains_key(k));
    if ab_conditions(canary).is_some() && selected {
        return Some(Routes {
            primary_weight: 0,
            canary_weight: 100,
            mirrored: false,
        });
    }
    let canary_weight = match annotations.get(&annotation("canary-weight")) {
        Some(w) => w.parse::<i32>().ok()?,
        None => 0,
    };
    Some(Routes {
        primary_weight: 100 - canary_weight,
        canary_weight,
        mirrored: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use flagger_core::api::{CanaryAnalysis, CanaryService, CanarySpec, ObjectReference};
    use proptest::prelude::*;

    fn canary(analysis: CanaryAnalysis) -> Canary {
        let mut c = Canary::new(
            "podinfo",
            CanarySpec {
                target_ref: ObjectReference {
                    name: "podinfo".into(),
                    ..ObjectReference::default()
                },
                ingress_ref: Some(ObjectReference {
                    name: "web".into(),
                    ..ObjectReference::default()
                }),
                service: Some(CanaryService {
                    port: 9898,
                    ..CanaryService::default()
                }),
                analysis: Some(analysis),
                ..CanarySpec::default()
            },
        );
        c.metadata.namespace = Some("test".into());
        c.metadata.uid = Some("uid-1".into());
        c
    }

    fn ab(conditions: Value) -> Canary {
        canary(CanaryAnalysis {
            match_: Some(serde_json::from_value(conditions).unwrap()),
            ..CanaryAnalysis::default()
        })
    }

    /// The user's Ingress: two paths to the apex, one to another Service, its own annotations
    /// and a leftover canary annotation that must not leak into the clone's.
    fn user_ingress() -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {
                "name": "web", "namespace": "test", "labels": {"app": "podinfo"},
                "annotations": {
                    "nginx.ingress.kubernetes.io/rewrite-target": "/",
                    "nginx.ingress.kubernetes.io/canary-weight": "55",
                    "kubectl.kubernetes.io/last-applied-configuration": "{}",
                },
                "resourceVersion": "7",
            },
            "spec": {
                "ingressClassName": "nginx",
                "rules": [{"host": "app.example.com", "http": {"paths": [
                    {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "podinfo", "port": {"number": 9898}}}},
                    {"path": "/api", "pathType": "Prefix", "backend": {"service": {"name": "api", "port": {"number": 80}}}},
                ]}}],
            },
            "status": {"loadBalancer": {}},
        }))
        .unwrap()
    }

    fn routes(canary_weight: i32) -> Routes {
        Routes {
            primary_weight: 100 - canary_weight,
            canary_weight,
            mirrored: false,
        }
    }

    fn written(c: &Canary, canary_weight: i32) -> Value {
        let objects = desired_objects(c, Some(&user_ingress()), routes(canary_weight)).unwrap();
        assert_eq!(objects.len(), 1);
        serde_json::to_value(&objects[0]).unwrap()
    }

    fn annotations(extra: Value) -> Value {
        let mut a = json!({
            "helm.toolkit.fluxcd.io/driftDetection": "disabled",
            "kustomize.toolkit.fluxcd.io/reconcile": "disabled",
            "nginx.ingress.kubernetes.io/rewrite-target": "/",
            "nginx.ingress.kubernetes.io/canary": "true",
        });
        for (k, v) in extra.as_object().unwrap() {
            a[k] = v.clone();
        }
        a
    }

    #[test]
    fn the_clone_sends_the_apex_paths_to_the_canary_service() {
        assert_eq!(
            written(&canary(CanaryAnalysis::default()), 30),
            json!({
                "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                "metadata": {
                    "name": "web-canary", "namespace": "test", "labels": {"app": "podinfo"},
                    "annotations": annotations(json!({"nginx.ingress.kubernetes.io/canary-weight": "30"})),
                    "ownerReferences": [{
                        "apiVersion": "flagger.app/v1beta1", "kind": "Canary", "name": "podinfo",
                        "uid": "uid-1", "controller": true,
                    }],
                },
                "spec": {
                    "ingressClassName": "nginx",
                    "rules": [{"host": "app.example.com", "http": {"paths": [
                        {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "podinfo-canary", "port": {"number": 9898}}}},
                        {"path": "/api", "pathType": "Prefix", "backend": {"service": {"name": "api", "port": {"number": 80}}}},
                    ]}}],
                },
            })
        );
    }

    #[test]
    fn weighted_annotations_carry_the_canary_weight() {
        for weight in [0, 30, 100] {
            assert_eq!(
                written(&canary(CanaryAnalysis::default()), weight)["metadata"]["annotations"],
                annotations(
                    json!({"nginx.ingress.kubernetes.io/canary-weight": weight.to_string()})
                ),
                "{weight}"
            );
        }
    }

    #[test]
    fn ab_header_exact_and_regex_and_cookie() {
        let exact = ab(json!([{"headers": {"x-canary": {"exact": "insider"}}}]));
        assert_eq!(
            written(&exact, 100)["metadata"]["annotations"],
            annotations(json!({
                "nginx.ingress.kubernetes.io/canary-weight": "0",
                "nginx.ingress.kubernetes.io/canary-by-header": "x-canary",
                "nginx.ingress.kubernetes.io/canary-by-header-value": "insider",
            }))
        );
        let regex = ab(json!([{"headers": {"user-agent": {"regex": ".*Firefox.*"}}}]));
        assert_eq!(
            written(&regex, 100)["metadata"]["annotations"],
            annotations(json!({
                "nginx.ingress.kubernetes.io/canary-weight": "0",
                "nginx.ingress.kubernetes.io/canary-by-header": "user-agent",
                "nginx.ingress.kubernetes.io/canary-by-header-pattern": ".*Firefox.*",
            }))
        );
        let cookie = ab(json!([{"headers": {"cookie": {"exact": "canary"}}}]));
        assert_eq!(
            written(&cookie, 100)["metadata"]["annotations"],
            annotations(json!({
                "nginx.ingress.kubernetes.io/canary-weight": "0",
                "nginx.ingress.kubernetes.io/canary-by-cookie": "canary",
            }))
        );
        // Once the canary takes no traffic the match goes, as Flagger's reset does.
        assert_eq!(
            written(&exact, 0)["metadata"]["annotations"],
            annotations(json!({"nginx.ingress.kubernetes.io/canary-weight": "0"}))
        );
    }

    #[test]
    fn a_missing_ingress_or_backend_is_an_error() {
        let c = canary(CanaryAnalysis::default());
        assert_eq!(
            desired_objects(&c, None, routes(10))
                .unwrap_err()
                .to_string(),
            "ingress web not found"
        );
        let mut other = user_ingress();
        other.data["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"] =
            json!("elsewhere");
        assert_eq!(
            desired_objects(&c, Some(&other), routes(10))
                .unwrap_err()
                .to_string(),
            "backend podinfo not found in ingress web"
        );
    }

    #[test]
    fn a_weight_that_is_not_a_number_is_unknown() {
        let c = canary(CanaryAnalysis::default());
        let mut object: DynamicObject = serde_json::from_value(written(&c, 10)).unwrap();
        object.metadata.annotations.as_mut().unwrap().insert(
            "nginx.ingress.kubernetes.io/canary-weight".into(),
            "ten".into(),
        );
        assert_eq!(read_routes(&c, &object), None);
    }

    proptest! {
        #[test]
        fn written_weights_read_back(canary_weight in 0i32..=100, ab_run: bool, cookie: bool) {
            let c = if ab_run {
                let header = if cookie { "cookie" } else { "x-canary" };
                ab(json!([{"headers": {header: {"exact": "1"}}}]))
            } else {
                canary(CanaryAnalysis::default())
            };
            // A/B testing only ever sends all matched traffic or none.
            let canary_weight = if ab_run { if canary_weight > 0 { 100 } else { 0 } } else { canary_weight };
            // Through JSON, as the API server would return it.
            let object: DynamicObject = serde_json::from_value(written(&c, canary_weight)).unwrap();
            prop_assert_eq!(read_routes(&c, &object), Some(routes(canary_weight)));
        }
    }
}
