//! Bounds the writes (every request but GET) the operator has in flight against the API server,
//! and adapts the bound to how the server copes: a rate limit alone lets a slow server pile up
//! requests until they time out (at 1,000 canaries initializing on a loaded machine, hundreds of
//! Service creations failed with 504 after 34 s).
//!
//! The bound starts at its maximum and follows additive increase, multiplicative decrease: a
//! write answered 429 or 5xx, failing to connect, or taking longer than [`SLOW`] halves it (never
//! below one); every other write raises it by one, up to the maximum. Reads, watches included,
//! are never held back: they keep the caches that every decision depends on fresh.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;

use http::{Method, Request, Response};
use tokio::sync::Notify;
use tower::buffer::Buffer;
use tower::{Layer, Service, ServiceExt};

/// A write slower than this is a sign of an overloaded API server.
pub const SLOW: Duration = Duration::from_secs(5);

/// The adaptive bound, shared by every clone of the service.
#[derive(Debug)]
pub struct Pacer {
    /// Writes in flight, and the bound on them.
    state: Mutex<(usize, usize)>,
    freed: Notify,
    max: usize,
}

impl Pacer {
    pub fn new(max: usize) -> Arc<Pacer> {
        let max = max.max(1);
        Arc::new(Pacer {
            state: Mutex::new((0, max)),
            freed: Notify::new(),
            max,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (usize, usize)> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The current bound on writes in flight.
    pub fn limit(&self) -> usize {
        self.lock().1
    }

    /// Waits until one more write may be in flight, and counts it.
    async fn start(&self) {
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            // Registered before the check, so a release in between is not missed.
            freed.as_mut().enable();
            {
                let mut s = self.lock();
                if s.0 < s.1 {
                    s.0 += 1;
                    return;
                }
            }
            freed.await;
        }
    }

    /// Counts a write as finished and adjusts the bound: `Some(true)` it met a sign of overload,
    /// `Some(false)` it went well, `None` it was abandoned (says nothing about the server).
    fn finish(&self, overloaded: Option<bool>) {
        {
            let mut s = self.lock();
            s.0 = s.0.saturating_sub(1);
            s.1 = match overloaded {
                Some(true) => (s.1 / 2).max(1),
                Some(false) => (s.1 + 1).min(self.max),
                None => s.1,
            };
        }
        self.freed.notify_waiters();
    }
}

#[cfg(test)]
impl Pacer {
    /// A write that was counted in and is now finished.
    fn finish_for_test(&self, overloaded: Option<bool>) {
        self.lock().0 += 1;
        self.finish(overloaded);
    }
}

/// One write in flight; it is counted out when dropped, also when its request is abandoned.
struct InFlight {
    pacer: Arc<Pacer>,
    overloaded: Option<bool>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.pacer.finish(self.overloaded);
    }
}

/// Applies a shared [`Pacer`] to the client's requests.
#[derive(Clone)]
pub struct WritePacingLayer {
    pacer: Arc<Pacer>,
}

impl WritePacingLayer {
    pub fn new(pacer: Arc<Pacer>) -> Self {
        WritePacingLayer { pacer }
    }
}

/// Requests the pacer may hold back before the client's callers wait to hand over more.
const QUEUE: usize = 1024;

impl<S> Layer<S> for WritePacingLayer
where
    S: Service<Request<kube::client::Body>> + Send + 'static,
    S::Future: Send,
    S::Error: Into<tower::BoxError> + Send + Sync,
{
    type Service = WritePacing<Buffer<Request<kube::client::Body>, S::Future>>;

    /// The client's stack is one service; a buffer in front of it lets each held-back write
    /// take its turn with a handle of its own. Must be called within the Tokio runtime.
    fn layer(&self, inner: S) -> Self::Service {
        WritePacing {
            inner: Buffer::new(inner, QUEUE),
            pacer: self.pacer.clone(),
        }
    }
}

#[derive(Clone)]
pub struct WritePacing<S> {
    inner: S,
    pacer: Arc<Pacer>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B, R> Service<Request<B>> for WritePacing<S>
where
    S: Service<Request<B>, Response = Response<R>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        if req.method() == Method::GET {
            return Box::pin(self.inner.call(req));
        }
        // The inner service was made ready for this call; a clone waits for its own readiness
        // once the write may go.
        let inner = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, inner);
        let pacer = self.pacer.clone();
        Box::pin(async move {
            pacer.start().await;
            let mut in_flight = InFlight {
                pacer,
                overloaded: None,
            };
            let started = Instant::now();
            let result = inner.oneshot(req).await;
            in_flight.overloaded = Some(
                match &result {
                    Ok(r) => r.status().as_u16() == 429 || r.status().is_server_error(),
                    Err(_) => true,
                } || started.elapsed() > SLOW,
            );
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A server that answers `status` after `delay`, counting the requests it holds at once.
    #[derive(Clone)]
    struct Server {
        status: u16,
        delay: Duration,
        now: Arc<AtomicUsize>,
        peak: Arc<AtomicUsize>,
    }

    impl Service<Request<()>> for Server {
        type Response = Response<()>;
        type Error = String;
        type Future = BoxFuture<Result<Response<()>, String>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), String>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: Request<()>) -> Self::Future {
            let s = self.clone();
            Box::pin(async move {
                let n = s.now.fetch_add(1, Ordering::SeqCst) + 1;
                s.peak.fetch_max(n, Ordering::SeqCst);
                tokio::time::sleep(s.delay).await;
                s.now.fetch_sub(1, Ordering::SeqCst);
                Ok(Response::builder().status(s.status).body(()).unwrap())
            })
        }
    }

    fn server(status: u16, delay: Duration) -> WritePacing<Server> {
        WritePacing {
            inner: Server {
                status,
                delay,
                now: Arc::default(),
                peak: Arc::default(),
            },
            pacer: Pacer::new(3),
        }
    }

    fn request(method: &Method) -> Request<()> {
        Request::builder()
            .method(method.clone())
            .uri("/x")
            .body(())
            .unwrap()
    }

    /// Sends `n` requests at once and waits for all of them.
    async fn send_all(svc: &WritePacing<Server>, method: Method, n: usize) {
        let calls: Vec<_> = (0..n)
            .map(|_| {
                let mut s = svc.clone();
                let req = request(&method);
                async move { s.ready().await.unwrap().call(req).await }
            })
            .collect();
        for r in futures::future::join_all(calls).await {
            r.unwrap();
        }
    }

    #[tokio::test(start_paused = true)]
    async fn writes_in_flight_never_exceed_the_bound_and_reads_are_not_held() {
        let svc = server(200, Duration::from_millis(100));
        send_all(&svc, Method::PATCH, 10).await;
        assert_eq!(svc.inner.peak.load(Ordering::SeqCst), 3);
        svc.inner.peak.store(0, Ordering::SeqCst);
        send_all(&svc, Method::GET, 10).await;
        assert_eq!(svc.inner.peak.load(Ordering::SeqCst), 10);
    }

    #[tokio::test(start_paused = true)]
    async fn an_overloaded_server_halves_the_bound_and_good_writes_restore_it() {
        let pacer = Pacer::new(8);
        pacer.finish_for_test(Some(true));
        assert_eq!(pacer.limit(), 4);
        pacer.finish_for_test(Some(true));
        pacer.finish_for_test(Some(true));
        pacer.finish_for_test(Some(true));
        assert_eq!(pacer.limit(), 1, "never below one");
        pacer.finish_for_test(None);
        assert_eq!(pacer.limit(), 1, "an abandoned write says nothing");
        for _ in 0..20 {
            pacer.finish_for_test(Some(false));
        }
        assert_eq!(pacer.limit(), 8, "never above the maximum");

        // Through the service: 503s and slow answers both count as overload.
        let svc = server(503, Duration::from_millis(1));
        send_all(&svc, Method::POST, 1).await;
        assert_eq!(svc.pacer.limit(), 1);
        let slow = server(200, SLOW + Duration::from_secs(1));
        send_all(&slow, Method::POST, 1).await;
        assert_eq!(slow.pacer.limit(), 1);
    }
}
