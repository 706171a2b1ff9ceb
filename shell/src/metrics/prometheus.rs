//! Instant queries against Prometheus' HTTP API (`GET <address>/api/v1/query?query=…`), with
//! Flagger's reading of the result: the last series wins, no series or NaN means "no values", and
//! any failure becomes an answer rather than a panic or a hang.

use std::collections::BTreeMap;
use std::error::Error as _;
use std::time::Duration;

use flagger_core::MetricAnswer;
use flagger_core::api::metric_template::MetricProvider;
use serde::Deserialize;

use super::template::collapse_whitespace;

/// Flagger's per-query timeout.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(5);

/// Where and how to send a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub address: reqwest::Url,
    pub auth: Auth,
    /// Sent with every query (a MetricTemplate's `provider.headers`).
    pub headers: Vec<(String, String)>,
    pub insecure_skip_verify: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    None,
    Basic { username: String, password: String },
    Bearer(String),
}

impl Endpoint {
    /// An unauthenticated endpoint (the `-metrics-server` or a Canary's `metricsServer`).
    pub fn plain(address: &str) -> Result<Endpoint, String> {
        Ok(Endpoint {
            address: parse_address("prometheus", address)?,
            auth: Auth::None,
            headers: Vec::new(),
            insecure_skip_verify: false,
        })
    }

    /// The endpoint a MetricTemplate describes. With a `secretRef`, the Secret's `token` means
    /// bearer auth, otherwise `username` and `password` are both required (as in Flagger).
    pub fn from_provider(
        provider: &MetricProvider,
        secret: Option<&BTreeMap<String, Vec<u8>>>,
    ) -> Result<Endpoint, String> {
        let kind = &provider.type_;
        let address = parse_address(kind, provider.address.as_deref().unwrap_or(""))?;
        let auth = match (&provider.secret_ref, secret) {
            (None, _) => Auth::None,
            (Some(r), None) => {
                return Err(format!("{kind} credentials secret {} was not read", r.name));
            }
            (Some(_), Some(data)) => {
                let get = |k: &str| data.get(k).map(|v| String::from_utf8_lossy(v).into_owned());
                match get("token") {
                    Some(token) => Auth::Bearer(token),
                    None => Auth::Basic {
                        username: get("username").ok_or_else(|| {
                            format!("{kind} credentials does not contain a username")
                        })?,
                        password: get("password").ok_or_else(|| {
                            format!("{kind} credentials does not contain a password")
                        })?,
                    },
                }
            }
        };
        let headers = provider
            .headers
            .iter()
            .flatten()
            .flat_map(|(k, vs)| vs.iter().map(move |v| (k.clone(), v.clone())))
            .collect();
        Ok(Endpoint {
            address,
            auth,
            headers,
            insecure_skip_verify: provider.insecure_skip_verify.unwrap_or(false),
        })
    }

    /// `<address>/api/v1/query`, keeping any path prefix of the address (Prometheus behind a
    /// reverse proxy at `/prometheus`); the address' own query string is dropped, as in Flagger.
    pub fn query_url(&self) -> reqwest::Url {
        let mut url = self.address.clone();
        let prefix = url.path().trim_end_matches('/').to_string();
        url.set_path(&format!("{prefix}/api/v1/query"));
        url.set_query(None);
        url.set_fragment(None);
        url
    }
}

fn parse_address(kind: &str, address: &str) -> Result<reqwest::Url, String> {
    let invalid = || format!("{kind} address {address} is not a valid URL");
    if address.is_empty() {
        return Err(invalid());
    }
    let url = reqwest::Url::parse(address).map_err(|_| invalid())?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid());
    }
    Ok(url)
}

#[derive(Deserialize)]
struct Response {
    data: Data,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Data {
    #[serde(default)]
    result_type: String,
    result: serde_json::Value,
}

#[derive(Deserialize)]
struct Series {
    #[serde(default)]
    value: Option<(serde_json::Value, serde_json::Value)>,
    #[serde(default)]
    values: Option<serde_json::Value>,
}

/// Runs `query` and reads one number from the answer.
pub async fn run_query(
    client: &reqwest::Client,
    endpoint: &Endpoint,
    query: &str,
    timeout: Duration,
) -> MetricAnswer {
    let mut request = client
        .get(endpoint.query_url())
        .query(&[("query", collapse_whitespace(query))])
        .timeout(timeout);
    for (name, value) in &endpoint.headers {
        request = request.header(name, value);
    }
    request = match &endpoint.auth {
        Auth::None => request,
        Auth::Basic { username, password } if !username.is_empty() && !password.is_empty() => {
            request.basic_auth(username, Some(password))
        }
        Auth::Basic { .. } => request,
        Auth::Bearer(token) => request.bearer_auth(token),
    };
    let response = match request.send().await {
        Ok(r) => r,
        Err(e) => return MetricAnswer::Error(format!("request failed: {}", describe(&e, timeout))),
    };
    let status = response.status();
    let body = match response.text().await {
        Ok(b) => b,
        Err(e) => {
            return MetricAnswer::Error(format!("error reading body: {}", describe(&e, timeout)));
        }
    };
    if status.as_u16() >= 400 {
        return MetricAnswer::Error(format!(
            "error response: Status {} {}: {}",
            status.as_u16(),
            status.canonical_reason().unwrap_or(""),
            body.trim()
        ));
    }
    parse_body(&body)
}

/// Reads Prometheus' JSON answer: the value of the last series of an instant vector (or a
/// scalar's value).
pub fn parse_body(body: &str) -> MetricAnswer {
    let response: Response = match serde_json::from_str(body) {
        Ok(r) => r,
        Err(e) => {
            return MetricAnswer::Error(format!("error unmarshaling result: {e}, '{body}'"));
        }
    };
    let raw = if response.data.result_type == "scalar" {
        match serde_json::from_value::<(serde_json::Value, serde_json::Value)>(response.data.result)
        {
            Ok((_, v)) => Some(v),
            Err(e) => return MetricAnswer::Error(format!("error unmarshaling result: {e}")),
        }
    } else {
        let series: Vec<Series> = match serde_json::from_value(response.data.result) {
            Ok(s) => s,
            Err(e) => return MetricAnswer::Error(format!("error unmarshaling result: {e}")),
        };
        if series.iter().any(|s| s.values.is_some()) {
            return MetricAnswer::Error("query returned multiple values".into());
        }
        series
            .into_iter()
            .filter_map(|s| s.value)
            .map(|(_, v)| v)
            .next_back()
    };
    let Some(raw) = raw else {
        return MetricAnswer::NoValues("no values found".into());
    };
    let Some(text) = raw.as_str() else {
        return MetricAnswer::Error(format!("value {raw} is not a string"));
    };
    // Rust's float parser reads Prometheus' `+Inf`, `-Inf` and `NaN`.
    match text.parse::<f64>() {
        Ok(v) if v.is_nan() => MetricAnswer::NoValues("no values found".into()),
        Ok(v) => MetricAnswer::Value(v),
        Err(e) => MetricAnswer::Error(format!("invalid value {text:?}: {e}")),
    }
}

/// reqwest's own message names the URL but not the cause; the cause is what users need
/// ("connection refused", "timed out").
fn describe(e: &reqwest::Error, timeout: Duration) -> String {
    if e.is_timeout() {
        return format!("timed out after {}s", timeout.as_secs_f64());
    }
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(body: &str) -> MetricAnswer {
        parse_body(body)
    }

    #[test]
    fn last_series_wins() {
        let body = r#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"a":"1"},"value":[1.0,"10"]},
            {"metric":{"a":"2"},"value":[1.0,"99.5"]}]}}"#;
        assert_eq!(value(body), MetricAnswer::Value(99.5));
    }

    #[test]
    fn special_floats() {
        let body = |v: &str| {
            format!(r#"{{"data":{{"resultType":"vector","result":[{{"value":[1,"{v}"]}}]}}}}"#)
        };
        assert_eq!(value(&body("+Inf")), MetricAnswer::Value(f64::INFINITY));
        assert_eq!(value(&body("-Inf")), MetricAnswer::Value(f64::NEG_INFINITY));
        assert!(matches!(value(&body("NaN")), MetricAnswer::NoValues(_)));
        assert!(matches!(value(&body("abc")), MetricAnswer::Error(_)));
    }

    #[test]
    fn scalars_and_matrices() {
        assert_eq!(
            value(r#"{"data":{"resultType":"scalar","result":[1,"1"]}}"#),
            MetricAnswer::Value(1.0)
        );
        assert_eq!(
            value(r#"{"data":{"resultType":"matrix","result":[{"values":[[1,"1"]]}]}}"#),
            MetricAnswer::Error("query returned multiple values".into())
        );
        assert!(matches!(
            value(r#"{"data":{"resultType":"vector","result":[]}}"#),
            MetricAnswer::NoValues(_)
        ));
        assert!(matches!(value("<html>"), MetricAnswer::Error(_)));
    }

    #[test]
    fn query_url_keeps_the_path_prefix_and_drops_the_query() {
        let e = Endpoint::plain("http://proxy:8080/prometheus/?x=1").unwrap();
        assert_eq!(
            e.query_url().as_str(),
            "http://proxy:8080/prometheus/api/v1/query"
        );
        let e = Endpoint::plain("http://prometheus:9090").unwrap();
        assert_eq!(
            e.query_url().as_str(),
            "http://prometheus:9090/api/v1/query"
        );
    }

    #[test]
    fn credentials_follow_flagger() {
        let provider = MetricProvider {
            type_: "prometheus".into(),
            address: Some("http://p:9090".into()),
            secret_ref: Some(flagger_core::api::metric_template::LocalRef { name: "s".into() }),
            ..MetricProvider::default()
        };
        let secret = |pairs: &[(&str, &str)]| -> BTreeMap<String, Vec<u8>> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
                .collect()
        };
        let e = Endpoint::from_provider(&provider, Some(&secret(&[("token", "t")]))).unwrap();
        assert_eq!(e.auth, Auth::Bearer("t".into()));
        let e = Endpoint::from_provider(
            &provider,
            Some(&secret(&[("username", "u"), ("password", "p")])),
        )
        .unwrap();
        assert_eq!(
            e.auth,
            Auth::Basic {
                username: "u".into(),
                password: "p".into()
            }
        );
        let err = Endpoint::from_provider(&provider, Some(&secret(&[("username", "u")])));
        assert_eq!(
            err.unwrap_err(),
            "prometheus credentials does not contain a password"
        );
        let err = Endpoint::from_provider(&provider, None).unwrap_err();
        assert!(err.contains("was not read"), "{err}");
        let no_address = MetricProvider {
            address: None,
            ..provider
        };
        assert_eq!(
            Endpoint::from_provider(&no_address, None).unwrap_err(),
            "prometheus address  is not a valid URL"
        );
    }
}
