//! Whether an object in the cluster still carries what this operator would write into it, judged
//! from the watch cache alone: no request per reconcile, and no write when nothing differs.
//!
//! Two questions, both asked of the fields this operator writes and of nothing else:
//! - does every field of the desired object hold its value in the cluster ([`value_drift`])?
//!   Keys the API server or other writers added are not drift, except inside atomic lists,
//!   which an apply replaces whole (there only the API server's defaults are accepted);
//! - does the cluster still hold a field we applied earlier and no longer write
//!   ([`owned_field_drift`])? That is read from our own server-side apply entry in
//!   `managedFields` (the watch keeps that one entry), so a field removed from the Canary
//!   (a `timeout`, a `trafficPolicy`, a label) is removed from the object too.
//!
//! Each answer is the path of the first difference found, for the log; `None` means no drift.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;
use serde_json::{Map, Value};

/// How a kind's fields merge under server-side apply, and what the API server fills in.
pub struct Shape {
    /// The key fields of lists merged by key (`listType=map`), by their path of field names
    /// (`["spec", "ports"]`); every other list is atomic.
    pub keyed: fn(&[&str]) -> Option<&'static [&'static str]>,
    /// Whether the API server adds `key: value` on its own when a writer leaves `key` out.
    pub server_default: fn(key: &str, value: &Value) -> bool,
}

/// Lists keyed in every object's metadata.
pub fn metadata_keyed(path: &[&str]) -> Option<&'static [&'static str]> {
    match path {
        ["metadata", "ownerReferences"] => Some(&["uid"]),
        _ => None,
    }
}

/// The parts of an object this operator writes: labels, annotations, owner references and spec.
pub fn written_parts(object: &Value) -> Value {
    let mut metadata = Map::new();
    for key in ["labels", "annotations", "ownerReferences"] {
        if let Some(v) = object.get("metadata").and_then(|m| m.get(key)) {
            metadata.insert(key.to_string(), v.clone());
        }
    }
    let mut out = Map::new();
    out.insert("metadata".into(), Value::Object(metadata));
    if let Some(spec) = object.get("spec") {
        out.insert("spec".into(), spec.clone());
    }
    Value::Object(out)
}

/// The first field of `desired` whose value `actual` does not hold.
pub fn value_drift(desired: &Value, actual: &Value, shape: &Shape) -> Option<String> {
    let mut path = Vec::new();
    diff(&mut path, desired, Some(actual), false, shape)
}

fn diff<'a>(
    path: &mut Vec<&'a str>,
    desired: &'a Value,
    actual: Option<&Value>,
    atomic: bool,
    shape: &Shape,
) -> Option<String> {
    match desired {
        Value::Null => None,
        Value::Object(fields) => {
            let Some(actual) = actual.and_then(Value::as_object) else {
                return (!fields.is_empty()).then(|| show(path));
            };
            for (key, value) in fields {
                path.push(key);
                let found = diff(path, value, actual.get(key), atomic, shape);
                path.pop();
                if found.is_some() {
                    return found;
                }
            }
            if atomic {
                for (key, value) in actual {
                    if !fields.contains_key(key) && !(shape.server_default)(key, value) {
                        return Some(format!("{}.{key} (not ours)", show(path)));
                    }
                }
            }
            None
        }
        Value::Array(items) => {
            let Some(actual) = actual.and_then(Value::as_array) else {
                return (!items.is_empty()).then(|| show(path));
            };
            if let Some(keys) = (!atomic).then(|| (shape.keyed)(path)).flatten() {
                for item in items {
                    let Some(found) = actual.iter().find(|a| same_key(item, a, keys)) else {
                        return Some(format!("{}[{}]", show(path), key_of(item, keys)));
                    };
                    if let Some(d) = diff(path, item, Some(found), false, shape) {
                        return Some(d);
                    }
                }
                return None;
            }
            if items.len() != actual.len() {
                return Some(format!("{} (length)", show(path)));
            }
            for (item, a) in items.iter().zip(actual) {
                if let Some(d) = diff(path, item, Some(a), true, shape) {
                    return Some(d);
                }
            }
            None
        }
        scalar => (!actual.is_some_and(|a| same_scalar(scalar, a))).then(|| show(path)),
    }
}

fn show(path: &[&str]) -> String {
    if path.is_empty() {
        ".".into()
    } else {
        path.join(".")
    }
}

fn same_scalar(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

fn same_key(a: &Value, b: &Value, keys: &[&str]) -> bool {
    keys.iter().all(|k| match (a.get(k), b.get(k)) {
        (Some(x), Some(y)) => same_scalar(x, y),
        (None, None) => true,
        _ => false,
    })
}

fn key_of(item: &Value, keys: &[&str]) -> String {
    keys.iter()
        .map(|k| item.get(k).map_or("-".into(), Value::to_string))
        .collect::<Vec<_>>()
        .join(",")
}

/// Drops every managed-fields entry but our own server-side apply entry, which is what the
/// caches keep ([`our_apply_entry`] reads it), its field set as text ([`compact_fields`]).
pub fn keep_our_apply_entry(entries: &mut Vec<ManagedFieldsEntry>, manager: &str) {
    entries.retain(|e| is_our_apply_entry(e, manager));
    entries.iter_mut().for_each(compact_fields);
}

fn is_our_apply_entry(e: &ManagedFieldsEntry, manager: &str) -> bool {
    e.manager.as_deref() == Some(manager)
        && e.operation.as_deref() == Some("Apply")
        && e.subresource.as_deref().unwrap_or("").is_empty()
}

/// Stores an entry's field set as its JSON text. A field set is a tree of mostly one-key maps,
/// and a map node costs hundreds of bytes whatever it holds: as text, a Deployment's entry takes
/// a few KB instead of tens, and the caches keep one per object. [`owned_field_drift`] reads both.
pub fn compact_fields(entry: &mut ManagedFieldsEntry) {
    if let Some(fields) = entry.fields_v1.as_mut()
        && fields.0.is_object()
    {
        fields.0 = Value::String(fields.0.to_string());
    }
}

/// Our server-side apply entry, as the watch keeps it.
pub fn our_apply_entry<'a>(
    entries: Option<&'a [ManagedFieldsEntry]>,
    manager: &str,
) -> Option<&'a ManagedFieldsEntry> {
    entries?.iter().find(|e| is_our_apply_entry(e, manager))
}

/// The first field our last apply set (per `entry`) that `desired` no longer holds: applying
/// `desired` removes it.
pub fn owned_field_drift(entry: Option<&ManagedFieldsEntry>, desired: &Value) -> Option<String> {
    let fields = &entry?.fields_v1.as_ref()?.0;
    let parsed;
    let fields = match fields {
        Value::String(text) => {
            parsed = serde_json::from_str::<Value>(text).ok()?;
            parsed.as_object()?
        }
        other => other.as_object()?,
    };
    let mut path = Vec::new();
    owned(&mut path, fields, desired)
}

fn owned(path: &mut Vec<String>, fields: &Map<String, Value>, desired: &Value) -> Option<String> {
    for (key, sub) in fields {
        if let Some(name) = key.strip_prefix("f:") {
            path.push(name.to_string());
            let found = match desired.get(name).filter(|v| !v.is_null()) {
                None => Some(path.join(".")),
                Some(d) => sub.as_object().and_then(|sub| owned(path, sub, d)),
            };
            path.pop();
            if found.is_some() {
                return found;
            }
        } else if let Some(key_json) = key.strip_prefix("k:") {
            let Ok(Value::Object(item_key)) = serde_json::from_str::<Value>(key_json) else {
                continue;
            };
            let keys: Vec<&str> = item_key.keys().map(String::as_str).collect();
            let item_key = Value::Object(item_key.clone());
            let item = desired
                .as_array()
                .and_then(|items| items.iter().find(|i| same_key(&item_key, i, &keys)));
            path.push(format!("[{key_json}]"));
            let found = match item {
                None => Some(path.join(".")),
                Some(item) => sub.as_object().and_then(|sub| owned(path, sub, item)),
            };
            path.pop();
            if found.is_some() {
                return found;
            }
        }
        // `.` (the field itself), `v:` (set members) and `i:` (list positions) need no walk:
        // a set or positional list we own is compared by value.
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn plain() -> Shape {
        Shape {
            keyed: metadata_keyed,
            server_default: |_, _| false,
        }
    }

    #[test]
    fn extra_keys_count_only_inside_atomic_lists() {
        let desired = json!({ "spec": { "host": "a", "http": [{ "timeout": "5s" }] } });
        let mut actual = json!({ "spec": { "host": "a", "exportTo": ["."],
            "http": [{ "timeout": "5s" }] } });
        assert_eq!(value_drift(&desired, &actual, &plain()), None);
        actual["spec"]["http"][0]["retries"] = json!({ "attempts": 3 });
        assert_eq!(
            value_drift(&desired, &actual, &plain()).as_deref(),
            Some("spec.http.retries (not ours)")
        );
        let defaults = Shape {
            keyed: metadata_keyed,
            server_default: |k, v| k == "retries" && v["attempts"] == 3,
        };
        assert_eq!(value_drift(&desired, &actual, &defaults), None);
    }

    #[test]
    fn numbers_compare_by_value_and_lists_by_length() {
        let desired = json!({ "w": 10, "l": [1, 2] });
        assert_eq!(
            value_drift(&desired, &json!({ "w": 10.0, "l": [1, 2] }), &plain()),
            None
        );
        assert!(value_drift(&desired, &json!({ "w": 10, "l": [1] }), &plain()).is_some());
        assert!(value_drift(&desired, &json!({ "w": 11, "l": [1, 2] }), &plain()).is_some());
        assert!(value_drift(&desired, &json!({ "l": [1, 2] }), &plain()).is_some());
        // Empty desired values match absent ones, as the API server drops them.
        assert_eq!(
            value_drift(&json!({ "m": {}, "l": [] }), &json!({}), &plain()),
            None
        );
    }

    #[test]
    fn keyed_lists_match_items_by_key_and_leave_others_items_alone() {
        let desired = json!({ "metadata": { "ownerReferences": [{ "uid": "u1", "name": "c" }] } });
        let actual = json!({ "metadata": { "ownerReferences": [
            { "uid": "u0", "name": "other" },
            { "uid": "u1", "name": "c", "controller": true }
        ] } });
        assert_eq!(value_drift(&desired, &actual, &plain()), None);
        let renamed = json!({ "metadata": { "ownerReferences": [{ "uid": "u1", "name": "x" }] } });
        assert!(value_drift(&desired, &renamed, &plain()).is_some());
    }

    fn entry(fields: Value) -> ManagedFieldsEntry {
        serde_json::from_value(json!({
            "manager": "flagger", "operation": "Apply", "apiVersion": "v1",
            "fieldsType": "FieldsV1", "fieldsV1": fields
        }))
        .unwrap()
    }

    #[test]
    fn a_field_we_applied_and_no_longer_write_is_drift() {
        let e = entry(json!({
            "f:metadata": { "f:labels": { "f:app": {}, "f:team": {} } },
            "f:spec": {
                "f:ports": { "k:{\"port\":9898,\"protocol\":\"TCP\"}": {
                    ".": {}, "f:name": {}, "f:port": {}, "f:appProtocol": {} } },
                "f:trafficPolicy": {}
            }
        }));
        // As the watch delivers it, and as the caches keep it (its field set as text).
        let mut compact = e.clone();
        compact_fields(&mut compact);
        assert!(compact.fields_v1.as_ref().unwrap().0.is_string());
        for e in [&e, &compact] {
            let desired = json!({
                "metadata": { "labels": { "app": "x", "team": "y" } },
                "spec": {
                    "ports": [{ "name": "http", "port": 9898, "protocol": "TCP", "appProtocol": "http" }],
                    "trafficPolicy": { "tls": { "mode": "ISTIO_MUTUAL" } }
                }
            });
            assert_eq!(owned_field_drift(Some(e), &desired), None);
            let mut d = desired.clone();
            d["metadata"]["labels"]
                .as_object_mut()
                .unwrap()
                .remove("team");
            assert_eq!(
                owned_field_drift(Some(e), &d).as_deref(),
                Some("metadata.labels.team")
            );
            let mut d = desired.clone();
            d["spec"].as_object_mut().unwrap().remove("trafficPolicy");
            assert_eq!(
                owned_field_drift(Some(e), &d).as_deref(),
                Some("spec.trafficPolicy")
            );
            let mut d = desired.clone();
            d["spec"]["ports"][0]
                .as_object_mut()
                .unwrap()
                .remove("appProtocol");
            assert!(owned_field_drift(Some(e), &d).is_some());
            let mut d = desired;
            d["spec"]["ports"][0]["port"] = json!(80);
            assert!(
                owned_field_drift(Some(e), &d).is_some(),
                "the old port is ours"
            );
            assert_eq!(owned_field_drift(None, &json!({})), None);
        }
    }
}
