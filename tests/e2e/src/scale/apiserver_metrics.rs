//! The API server's own count of the requests it answered (`apiserver_request_total` on its
//! `/metrics`), read through the admin client. Differences between two readings give what was
//! asked of it in between, by whoever asked: the benchmark runs one operator at a time, and the
//! rest of the cluster (controller manager, podready) is idle while the canaries are.

use std::collections::BTreeMap;

use kube::Client;

use crate::Result;

/// Requests to API resources (not `/metrics`, `/healthz` and the like, which the benchmark
/// itself sends), keyed by (verb, resource, code).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RequestCounts(pub BTreeMap<(String, String, String), f64>);

impl RequestCounts {
    pub fn total(&self) -> f64 {
        // An empty float sum is -0.0.
        self.0.values().sum::<f64>() + 0.0
    }

    /// Without the API server's own requests: every 10 s it renews its identity Lease in
    /// kube-system (`PUT leases`). Neither operator takes a Lease in the benchmark (no leader
    /// election), so all Lease requests are left out.
    pub fn without_leases(&self) -> RequestCounts {
        let mut out = self.clone();
        out.0.retain(|(_, resource, _), _| resource != "leases");
        out
    }

    /// Without the requests `drop(verb, resource)` picks.
    pub fn without(&self, drop: impl Fn(&str, &str) -> bool) -> RequestCounts {
        let mut out = self.clone();
        out.0.retain(|(verb, resource, _), _| !drop(verb, resource));
        out
    }

    /// Only the answers with a code of 400 or above.
    pub fn failures(&self) -> RequestCounts {
        let mut out = self.clone();
        out.0.retain(|(_, _, code), _| code.as_str() >= "400");
        out
    }

    /// Answers with a 5xx code (504 is a request that timed out in the server).
    pub fn server_errors(&self) -> f64 {
        self.sum_where(|_, _, code| code.starts_with('5'))
    }

    /// 429: refused by the server's own limits (max in flight, priority and fairness).
    pub fn throttled(&self) -> f64 {
        self.sum_where(|_, _, code| code == "429")
    }

    fn sum_where(&self, keep: impl Fn(&str, &str, &str) -> bool) -> f64 {
        self.0
            .iter()
            .filter(|((v, r, c), _)| keep(v, r, c))
            .map(|(_, n)| n)
            .sum::<f64>()
            + 0.0
    }

    /// `self - earlier`, keeping only keys that grew.
    pub fn since(&self, earlier: &RequestCounts) -> RequestCounts {
        let mut out = BTreeMap::new();
        for (k, v) in &self.0 {
            let d = v - earlier.0.get(k).copied().unwrap_or(0.0);
            if d > 0.0 {
                out.insert(k.clone(), d);
            }
        }
        RequestCounts(out)
    }

    /// The `n` largest (verb resource code: count) entries, for the report.
    pub fn top(&self, n: usize) -> String {
        let mut by_verb: BTreeMap<String, f64> = BTreeMap::new();
        for ((verb, resource, code), v) in &self.0 {
            *by_verb
                .entry(format!("{verb} {resource} {code}"))
                .or_default() += v;
        }
        let mut all: Vec<(String, f64)> = by_verb.into_iter().collect();
        all.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        all.iter()
            .take(n)
            .map(|(k, v)| format!("{k}: {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

pub async fn scrape(client: &Client) -> Result<RequestCounts> {
    let request = http::Request::get("/metrics").body(Vec::new())?;
    let text = client
        .request_text(request)
        .await
        .map_err(|e| format!("GET the API server's /metrics: {e}"))?;
    Ok(parse(&text))
}

pub fn parse(exposition: &str) -> RequestCounts {
    let mut out = BTreeMap::new();
    for line in exposition.lines() {
        let Some(rest) = line.strip_prefix("apiserver_request_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        let Ok(value) = value.trim().parse::<f64>() else {
            continue;
        };
        let label = |name: &str| {
            labels
                .split(',')
                .find_map(|p| p.strip_prefix(&format!("{name}=\"")))
                .map(|v| v.trim_end_matches('"').to_string())
                .unwrap_or_default()
        };
        let resource = label("resource");
        if resource.is_empty() {
            continue;
        }
        let subresource = label("subresource");
        let resource = if subresource.is_empty() {
            resource
        } else {
            format!("{resource}/{subresource}")
        };
        *out.entry((label("verb"), resource, label("code")))
            .or_default() += value;
    }
    RequestCounts(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# TYPE apiserver_request_total counter
apiserver_request_total{code="200",component="apiserver",dry_run="",group="",resource="",scope="",subresource="/metrics",verb="GET",version=""} 7
apiserver_request_total{code="200",component="apiserver",dry_run="",group="apps",resource="deployments",scope="resource",subresource="",verb="GET",version="v1"} 10
apiserver_request_total{code="201",component="apiserver",dry_run="",group="",resource="services",scope="resource",subresource="",verb="POST",version="v1"} 3
apiserver_request_total{code="504",component="apiserver",dry_run="",group="",resource="services",scope="resource",subresource="",verb="POST",version="v1"} 2
apiserver_request_total{code="429",component="apiserver",dry_run="",group="flagger.app",resource="canaries",scope="resource",subresource="status",verb="PATCH",version="v1beta1"} 1
apiserver_request_duration_seconds_count{verb="GET"} 99
"#;

    #[test]
    fn resource_requests_are_counted_and_non_resource_ones_left_out() {
        let c = parse(TEXT);
        assert_eq!(c.total(), 16.0);
        assert_eq!(c.server_errors(), 2.0);
        assert_eq!(c.throttled(), 1.0);
        assert_eq!(c.failures().total(), 3.0);
        assert_eq!(RequestCounts::default().total().to_string(), "0");
        assert!(c.0.contains_key(&("PATCH".into(), "canaries/status".into(), "429".into())));
    }

    #[test]
    fn differences_keep_what_grew() {
        let before = parse(TEXT);
        let after = parse(&TEXT.replace("} 10\n", "} 25\n"));
        let d = after.since(&before);
        assert_eq!(d.total(), 15.0);
        assert_eq!(d.top(3), "GET deployments 200: 15");
    }
}
