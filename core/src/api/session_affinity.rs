//! `analysis.sessionAffinity`: once a request has been routed to the canary, a cookie keeps that
//! client on the canary for the rest of the run (and, with `primaryCookieName`, one on the
//! primary keeps primary clients there for an interval).

use serde::{Deserialize, Serialize};

/// Flagger's default `maxAge`: a day.
pub const DEFAULT_MAX_AGE: i64 = 86_400;

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SessionAffinity {
    #[serde(default)]
    pub cookie_name: String,
    #[serde(default)]
    pub primary_cookie_name: String,
    #[serde(default)]
    pub max_age: i64,
    #[serde(default)]
    pub domain: String,
    #[serde(default)]
    pub http_only: bool,
    #[serde(default)]
    pub partitioned: bool,
    #[serde(default)]
    pub path: String,
    #[serde(default)]
    pub same_site: String,
    #[serde(default)]
    pub secure: bool,
}

impl SessionAffinity {
    /// Reads and checks the spec's (untyped, so old CRDs keep accepting it) object.
    pub fn from_spec(value: &serde_json::Value) -> Result<Self, String> {
        let affinity: SessionAffinity =
            serde_json::from_value(value.clone()).map_err(|e| e.to_string())?;
        if affinity.cookie_name.is_empty() {
            return Err("cookieName is required".into());
        }
        if affinity.cookie_name == affinity.primary_cookie_name {
            return Err(format!(
                "cookieName and primaryCookieName must differ (both {:?})",
                affinity.cookie_name
            ));
        }
        for (field, name) in [
            ("cookieName", &affinity.cookie_name),
            ("primaryCookieName", &affinity.primary_cookie_name),
        ] {
            // The name ends up in a Set-Cookie header and a regular expression over Cookie.
            if !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            {
                return Err(format!(
                    "{field} {name:?} may hold only letters, digits, '-', '_' and '.'"
                ));
            }
        }
        if !matches!(affinity.same_site.as_str(), "" | "Strict" | "Lax" | "None") {
            return Err(format!(
                "sameSite {:?} is not one of Strict, Lax, None",
                affinity.same_site
            ));
        }
        if affinity.max_age < 0 {
            return Err(format!("maxAge {} is negative", affinity.max_age));
        }
        Ok(affinity)
    }

    pub fn max_age(&self) -> i64 {
        if self.max_age == 0 {
            DEFAULT_MAX_AGE
        } else {
            self.max_age
        }
    }

    /// The `Set-Cookie` value for `cookie` (`name=value`), with Flagger's attribute order.
    pub fn set_cookie(&self, cookie: &str, max_age: i64) -> String {
        let mut header = format!("{cookie}; Max-Age={max_age}");
        if !self.domain.is_empty() {
            header.push_str(&format!("; Domain={}", self.domain));
        }
        if self.http_only {
            header.push_str("; HttpOnly");
        }
        if self.partitioned {
            header.push_str("; Partitioned");
        }
        if !self.path.is_empty() {
            header.push_str(&format!("; Path={}", self.path));
        }
        if !self.same_site.is_empty() {
            header.push_str(&format!("; SameSite={}", self.same_site));
        }
        if self.secure {
            header.push_str("; Secure");
        }
        header
    }
}

/// Flagger's `Cookie` header match for `cookie` (`name=value`): the name, then the value.
pub fn cookie_regex(cookie: &str) -> String {
    let (name, value) = cookie.split_once('=').unwrap_or((cookie, ""));
    format!(".*{name}.*{value}.*")
}

/// The `Set-Cookie` value that makes browsers drop `cookie`.
pub fn expire_cookie(cookie: &str) -> String {
    format!("{cookie}; Max-Age=-1")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cookies_carry_flaggers_attributes_in_order() {
        let a = SessionAffinity::from_spec(&json!({
            "cookieName": "canary", "domain": "example.com", "httpOnly": true,
            "partitioned": true, "path": "/", "sameSite": "Lax", "secure": true
        }))
        .unwrap();
        assert_eq!(a.max_age(), 86_400);
        assert_eq!(
            a.set_cookie("canary=abc", 60),
            "canary=abc; Max-Age=60; Domain=example.com; HttpOnly; Partitioned; Path=/; SameSite=Lax; Secure"
        );
        assert_eq!(cookie_regex("canary=abc"), ".*canary.*abc.*");
        assert_eq!(expire_cookie("canary=abc"), "canary=abc; Max-Age=-1");
    }

    #[test]
    fn bad_settings_are_named() {
        let err = |v| SessionAffinity::from_spec(&v).unwrap_err();
        assert_eq!(err(json!({})), "cookieName is required");
        assert!(err(json!({"cookieName": "a", "primaryCookieName": "a"})).contains("must differ"));
        assert!(err(json!({"cookieName": "a b"})).contains("may hold only"));
        assert!(err(json!({"cookieName": "a", "sameSite": "lax"})).contains("sameSite"));
        assert!(err(json!({"cookieName": "a", "maxAge": -5})).contains("negative"));
        assert!(err(json!({"cookieName": "a", "colour": 1})).contains("unknown field"));
    }
}
