//! Accounting and pacing of the requests this operator sends to the Kubernetes API server.
//!
//! Every request passes through [`ApiRequestLayer`], which counts it in
//! `flagger_kube_requests_total{verb,resource}` (so the load the operator puts on the API server
//! is visible, which is the point of serving Canaries from watch caches) and holds it back when
//! `-kubeconfig-qps`/`-kubeconfig-burst` would be exceeded, as client-go's token buckets do
//! (one per family of API groups, see [`crate::rate_limit`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Method, Request, Uri};
use prometheus::IntCounterVec;
use tower::buffer::Buffer;
use tower::{Layer, Service, ServiceExt};

use crate::rate_limit::Buckets;

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

/// Counts every request and, when `qps` is non-zero, paces them per [`Family`] bucket.
#[derive(Clone)]
pub struct ApiRequestLayer {
    counter: IntCounterVec,
    buckets: Option<Arc<Buckets>>,
}

impl ApiRequestLayer {
    /// `counter` must have the labels `verb` and `resource`; `qps == 0` disables pacing.
    pub fn new(counter: IntCounterVec, qps: u32, burst: u32) -> Self {
        ApiRequestLayer {
            counter,
            buckets: Buckets::new(qps, burst).map(Arc::new),
        }
    }
}

/// Requests the buffer in front of the client's stack holds before their senders wait.
const QUEUE: usize = 1024;

impl<S> Layer<S> for ApiRequestLayer
where
    S: Service<Request<kube::client::Body>> + Send + 'static,
    S::Future: Send,
    S::Error: Into<tower::BoxError> + Send + Sync,
{
    type Service = ApiRequests<Buffer<Request<kube::client::Body>, S::Future>>;

    /// A buffer in front of the client's stack lets each request wait for its own family's
    /// token with a handle of its own. Must be called within the Tokio runtime.
    fn layer(&self, inner: S) -> Self::Service {
        ApiRequests {
            inner: Buffer::new(inner, QUEUE),
            counter: self.counter.clone(),
            buckets: self.buckets.clone(),
        }
    }
}

#[derive(Clone)]
pub struct ApiRequests<S> {
    inner: S,
    counter: IntCounterVec,
    buckets: Option<Arc<Buckets>>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B> Service<Request<B>> for ApiRequests<S>
where
    S: Service<Request<B>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send,
    S::Response: Send,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    /// Always ready: each request waits for its token, then for the inner service, on its own.
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let verb = verb(req.method(), req.uri());
        let resource = resource(req.uri());
        self.counter.with_label_values(&[verb, &resource]).inc();
        let wait = self
            .buckets
            .as_ref()
            .map_or(Duration::ZERO, |b| b.reserve(req.uri()));
        let inner = self.inner.clone();
        Box::pin(async move {
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
            inner.oneshot(req).await
        })
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
}
