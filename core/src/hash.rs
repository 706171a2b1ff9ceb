//! Revision identity: a stable hash of the pod template, independent of key order, so the same
//! template always yields the same revision and any change to it yields a new one.

use std::collections::BTreeMap;

/// FNV-1a (32 bit), as Flagger uses, over canonical JSON (serde_json's maps are sorted).
const FNV_OFFSET: u32 = 0x811c_9dc5;

fn fnv32a_extend(mut hash: u32, bytes: &[u8]) -> u32 {
    for b in bytes {
        hash ^= u32::from(*b);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash
}

fn fnv32a(bytes: &[u8]) -> u32 {
    fnv32a_extend(FNV_OFFSET, bytes)
}

/// Flagger's `rand.SafeEncodeString`: the decimal digits mapped onto consonants and digits that
/// cannot spell words.
fn safe_encode(value: u32) -> String {
    const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    value
        .to_string()
        .bytes()
        .map(|b| ALPHANUMS[usize::from(b) % ALPHANUMS.len()] as char)
        .collect()
}

pub fn template_hash(template: &serde_json::Value) -> String {
    safe_encode(fnv32a(canonical(template).as_bytes()))
}

/// The webhook payload's `checksum`: the tracked configs together with the applied spec.
pub fn checksum(
    tracked_configs: Option<&BTreeMap<String, String>>,
    last_applied_spec: Option<&str>,
) -> String {
    // Hashed field by field (the map is already sorted): it is computed for every webhook call,
    // and building a JSON value for it cost more than the rest of the decision.
    let mut hash = FNV_OFFSET;
    for (key, value) in tracked_configs.into_iter().flatten() {
        for part in [key.as_bytes(), b"=", value.as_bytes(), b";"] {
            hash = fnv32a_extend(hash, part);
        }
    }
    hash = fnv32a_extend(hash, b"|");
    hash = fnv32a_extend(hash, last_applied_spec.unwrap_or("").as_bytes());
    safe_encode(hash)
}

/// A session-affinity cookie value: ten letters, as Flagger's random ones, but derived from
/// `parts` so that a replayed or restarted run pins clients with the same cookie.
pub fn cookie_value(parts: &[&str]) -> String {
    const LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut hash = FNV_OFFSET;
    for part in parts {
        hash = fnv32a_extend(hash, part.as_bytes());
        hash = fnv32a_extend(hash, b"\0");
    }
    // Spread the 32-bit hash over 10 letters (52^10 > 2^32) with a splitmix-style walk.
    let mut state = u64::from(hash);
    (0..10)
        .map(|_| {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            LETTERS[(z % LETTERS.len() as u64) as usize] as char
        })
        .collect()
}

fn canonical(value: &serde_json::Value) -> String {
    // serde_json::Value's object map is a BTreeMap unless `preserve_order` is enabled; sorting
    // explicitly keeps the hash stable even if some dependency turns that feature on.
    fn sorted(v: &serde_json::Value) -> serde_json::Value {
        match v {
            serde_json::Value::Object(map) => {
                let ordered: BTreeMap<&String, serde_json::Value> =
                    map.iter().map(|(k, v)| (k, sorted(v))).collect();
                serde_json::Value::Object(
                    ordered.into_iter().map(|(k, v)| (k.clone(), v)).collect(),
                )
            }
            serde_json::Value::Array(items) => {
                serde_json::Value::Array(items.iter().map(sorted).collect())
            }
            other => other.clone(),
        }
    }
    sorted(value).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn key_order_does_not_change_the_hash() {
        let a = json!({"spec": {"containers": [{"name": "app", "image": "podinfo:6.0.0"}]}, "metadata": {"labels": {"app": "podinfo"}}});
        let b: serde_json::Value = serde_json::from_str(
            r#"{"metadata":{"labels":{"app":"podinfo"}},"spec":{"containers":[{"image":"podinfo:6.0.0","name":"app"}]}}"#,
        )
        .unwrap();
        assert_eq!(template_hash(&a), template_hash(&b));
    }

    #[test]
    fn any_change_changes_the_hash() {
        let a = json!({"spec": {"containers": [{"image": "podinfo:6.0.0"}]}});
        let b = json!({"spec": {"containers": [{"image": "podinfo:6.0.1"}]}});
        assert_ne!(template_hash(&a), template_hash(&b));
    }

    #[test]
    fn the_checksum_follows_configs_and_spec() {
        let mut configs = BTreeMap::new();
        configs.insert("configmap/app".to_string(), "abc".to_string());
        let base = checksum(Some(&configs), Some("v1"));
        assert_eq!(base, checksum(Some(&configs.clone()), Some("v1")));
        assert_ne!(base, checksum(Some(&configs), Some("v2")));
        assert_ne!(base, checksum(None, Some("v1")));
        configs.insert("configmap/app".to_string(), "abd".to_string());
        assert_ne!(base, checksum(Some(&configs), Some("v1")));
    }

    #[test]
    fn hash_uses_only_safe_characters() {
        let h = template_hash(&json!({"x": 1}));
        assert!(
            !h.is_empty()
                && h.bytes()
                    .all(|c| b"bcdfghjklmnpqrstvwxz2456789".contains(&c))
        );
    }
}
