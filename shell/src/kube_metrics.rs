//! Accounting and pacing of the requests this operator sends to the Kubernetes API server.
//!
//! Every request passes through [`ApiRequestLayer`], which counts it in
//! `flagger_kube_requests_total{verb,resource}` (so the load the operator puts on the API server
//! is visible, which is the point of serving Canaries from watch caches) and holds it back when
//! `-kubeconfig-qps`/`-kubeconfig-burst` would be exceeded, as client-go's token bucket does.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Method, Request, Uri};
use prometheus::IntCounterVec;
use tokio::time::{Instant, Sleep};
use tower::{Layer, Service};

/// The Kubernetes verb of a request, as the API server's audit log names it.
pub fn verb(method: &Method, uri: &Uri) -> &'static str {
    let query = uri.query().unwrap_or("");
    let watching = query
        .split('&')
        .any(|kv| kv == "watch=true" || kv == "watch=1");
    let named = path_parts(uri.path()).is_some_and(|p| p.name.is_some());
    match *method {
        Method::GET if watching => "watch",
        Method::GET if named => "get",
        Method::GET => "list",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if named => "delete",
        Method::DELETE => "deletecollection",
        _ => "other",
    }
}

/// The resource a request addresses (`deployments`, `canaries/status`), or `other` for paths
/// that name none (`/version`, discovery).
pub fn resource(uri: &Uri) -> String {
    match path_parts(uri.path()) {
        Some(PathParts {
            resource,
            subresource: Some(sub),
            ..
        }) => format!("{resource}/{sub}"),
        Some(p) => p.resource.to_string(),
        None => "other".to_string(),
    }
}

struct PathParts<'a> {
    resource: &'a str,
    name: Option<&'a str>,
    subresource: Option<&'a str>,
}

/// Splits `/api/v1/...` and `/apis/<group>/<version>/...` paths; `namespaces/<ns>/` in front of
/// a resource is a scope, not the resource itself.
fn path_parts(path: &str) -> Option<PathParts<'_>> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let rest = match segments.as_slice() {
        ["api", _version, rest @ ..] => rest,
        ["apis", _group, _version, rest @ ..] => rest,
        _ => return None,
    };
    let rest = match rest {
        ["namespaces", _ns, resource, tail @ ..] => {
            let mut v = vec![*resource];
            v.extend_from_slice(tail);
            v
        }
        other => other.to_vec(),
    };
    let resource = *rest.first()?;
    if resource.is_empty() {
        return None;
    }
    Some(PathParts {
        resource,
        name: rest.get(1).copied(),
        subresource: rest.get(2).copied(),
    })
}

/// Client-go's token bucket: `burst` requests at once, refilled at `qps` per second.
#[derive(Debug)]
struct TokenBucket {
    qps: f64,
    burst: f64,
    tokens: f64,
    refilled: Instant,
}

impl TokenBucket {
    fn new(qps: u32, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        TokenBucket {
            qps: f64::from(qps),
            burst,
            tokens: burst,
            refilled: Instant::now(),
        }
    }

    /// Takes a token, or says how long until one is available.
    fn take(&mut self, now: Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.qps).min(self.burst);
        self.refilled = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / self.qps))
        }
    }
}

/// Counts every request and, when `qps` is non-zero, paces them.
#[derive(Clone)]
pub struct ApiRequestLayer {
    counter: IntCounterVec,
    limit: Option<(u32, u32)>,
}

impl ApiRequestLayer {
    /// `counter` must have the labels `verb` and `resource`; `qps == 0` disables pacing.
    pub fn new(counter: IntCounterVec, qps: u32, burst: u32) -> Self {
        ApiRequestLayer {
            counter,
            limit: (qps > 0).then_some((qps, burst)),
        }
    }
}

impl<S> Layer<S> for ApiRequestLayer {
    type Service = ApiRequests<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ApiRequests {
            inner,
            counter: self.counter.clone(),
            bucket: self.limit.map(|(q, b)| TokenBucket::new(q, b)),
            sleep: None,
            reserved: false,
        }
    }
}

pub struct ApiRequests<S> {
    inner: S,
    counter: IntCounterVec,
    bucket: Option<TokenBucket>,
    sleep: Option<Pin<Box<Sleep>>>,
    /// A token was taken for the next `call`.
    reserved: bool,
}

impl<S, B> Service<Request<B>> for ApiRequests<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // kube's client drives this service from one buffer worker, so waiting in `poll_ready`
        // queues requests behind the limit instead of failing them.
        while !self.reserved {
            let Some(bucket) = self.bucket.as_mut() else {
                self.reserved = true;
                break;
            };
            if let Some(sleep) = self.sleep.as_mut() {
                if sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                self.sleep = None;
            }
            let now = Instant::now();
            match bucket.take(now) {
                Ok(()) => self.reserved = true,
                Err(wait) => self.sleep = Some(Box::pin(tokio::time::sleep_until(now + wait))),
            }
        }
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        self.reserved = false;
        let verb = verb(req.method(), req.uri());
        let resource = resource(req.uri());
        self.counter.with_label_values(&[verb, &resource]).inc();
        self.inner.call(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classify(method: Method, uri: &str) -> (&'static str, String) {
        let uri: Uri = uri.parse().unwrap();
        (verb(&method, &uri), resource(&uri))
    }

    #[test]
    fn requests_are_named_by_verb_and_resource() {
        let cases = [
            (
                Method::GET,
                "/apis/apps/v1/namespaces/test/deployments?&watch=true&resourceVersion=1",
                ("watch", "deployments"),
            ),
            (
                Method::GET,
                "/apis/apps/v1/deployments?limit=500",
                ("list", "deployments"),
            ),
            (
                Method::GET,
                "/api/v1/namespaces/test/services/podinfo",
                ("get", "services"),
            ),
            (
                Method::PATCH,
                "/apis/flagger.app/v1beta1/namespaces/test/canaries/podinfo/status?&force=true",
                ("patch", "canaries/status"),
            ),
            (
                Method::POST,
                "/api/v1/namespaces/test/events",
                ("create", "events"),
            ),
            (
                Method::GET,
                "/api/v1/namespaces/test",
                ("get", "namespaces"),
            ),
            (Method::GET, "/version", ("list", "other")),
            (
                Method::DELETE,
                "/apis/apps/v1/namespaces/t/deployments",
                ("deletecollection", "deployments"),
            ),
        ];
        for (method, uri, (v, r)) in cases {
            assert_eq!(classify(method, uri), (v, r.to_string()), "{uri}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_bucket_allows_a_burst_then_paces_at_qps() {
        let mut b = TokenBucket::new(2, 3);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(b.take(t0).is_ok());
        }
        let wait = b.take(t0).unwrap_err();
        assert_eq!(wait, Duration::from_millis(500));
        assert!(b.take(t0 + Duration::from_millis(500)).is_ok());
        assert!(b.take(t0 + Duration::from_millis(500)).is_err());
    }
}
