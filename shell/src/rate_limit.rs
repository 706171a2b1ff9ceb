//! `-kubeconfig-qps`/`-kubeconfig-burst` as Flagger applies them: client-go gives each clientset
//! a token bucket of its own, and Flagger builds three from the same settings, one for the
//! Kubernetes kinds (Deployments, Services, events, ...), one for its own kinds (Canaries) and
//! one for the mesh's (VirtualServices, HTTPRoutes, ...). A request waits for a token of its
//! family's bucket only.

use std::sync::Mutex;
use std::time::Duration;

use http::Uri;
use tokio::time::Instant;

/// Which of Flagger's clientsets would send a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// Kubernetes' own API groups (`kubeClient`).
    Kubernetes,
    /// `flagger.app` (`flaggerClient`).
    Flagger,
    /// Everything else: the routers' CRDs (`meshClient`).
    Mesh,
}

impl Family {
    pub fn of(uri: &Uri) -> Family {
        let mut segments = uri.path().trim_start_matches('/').split('/');
        if segments.next() != Some("apis") {
            // `/api/v1/...` and paths that name no group (`/version`).
            return Family::Kubernetes;
        }
        match segments.next().unwrap_or_default() {
            "flagger.app" => Family::Flagger,
            // Gateway API and the SIG projects are CRDs, which Flagger reads with its mesh client.
            g if g.ends_with(".x-k8s.io") || g == "gateway.networking.k8s.io" => Family::Mesh,
            g if !g.contains('.') || g.ends_with(".k8s.io") => Family::Kubernetes,
            _ => Family::Mesh,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Client-go's token bucket (`rate.Limiter`): `burst` requests at once, refilled at `qps` per
/// second; a request reserves the next token and waits until it is due.
#[derive(Debug)]
struct TokenBucket {
    qps: f64,
    burst: f64,
    /// Negative while requests wait for tokens not yet refilled.
    tokens: f64,
    refilled: Instant,
}

impl TokenBucket {
    fn new(qps: u32, burst: u32, now: Instant) -> Self {
        let burst = f64::from(burst.max(1));
        TokenBucket {
            qps: f64::from(qps),
            burst,
            tokens: burst,
            refilled: now,
        }
    }

    /// Reserves a token: how long until it is due.
    fn reserve(&mut self, now: Instant) -> Duration {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.qps).min(self.burst);
        self.refilled = now;
        self.tokens -= 1.0;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.qps)
        }
    }
}

/// One bucket per [`Family`].
#[derive(Debug)]
pub struct Buckets {
    buckets: [Mutex<TokenBucket>; 3],
}

impl Buckets {
    /// `None` when `qps` is 0 (no limit).
    pub fn new(qps: u32, burst: u32) -> Option<Buckets> {
        let now = Instant::now();
        (qps > 0).then(|| Buckets {
            buckets: std::array::from_fn(|_| Mutex::new(TokenBucket::new(qps, burst, now))),
        })
    }

    /// How long a request to `uri` waits for its token, reserved now.
    pub fn reserve(&self, uri: &Uri) -> Duration {
        let bucket = &self.buckets[Family::of(uri).index()];
        bucket
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .reserve(Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_sorted_by_the_clientset_flagger_would_send_them_with() {
        let cases = [
            (
                "/api/v1/namespaces/test/services/podinfo",
                Family::Kubernetes,
            ),
            (
                "/apis/apps/v1/namespaces/test/deployments",
                Family::Kubernetes,
            ),
            (
                "/apis/autoscaling/v2/horizontalpodautoscalers",
                Family::Kubernetes,
            ),
            (
                "/apis/events.k8s.io/v1/namespaces/test/events",
                Family::Kubernetes,
            ),
            ("/apis/networking.k8s.io/v1/ingresses", Family::Kubernetes),
            ("/apis/coordination.k8s.io/v1/leases", Family::Kubernetes),
            ("/version", Family::Kubernetes),
            (
                "/apis/flagger.app/v1beta1/namespaces/t/canaries/p/status",
                Family::Flagger,
            ),
            ("/apis/networking.istio.io/v1/virtualservices", Family::Mesh),
            (
                "/apis/gateway.networking.k8s.io/v1/httproutes",
                Family::Mesh,
            ),
            (
                "/apis/split.smi-spec.io/v1alpha2/trafficsplits",
                Family::Mesh,
            ),
        ];
        for (path, family) in cases {
            assert_eq!(Family::of(&path.parse().unwrap()), family, "{path}");
        }
    }

    #[test]
    fn a_bucket_allows_a_burst_then_paces_at_qps() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(2, 3, t0);
        for _ in 0..3 {
            assert_eq!(b.reserve(t0), Duration::ZERO);
        }
        assert_eq!(b.reserve(t0), Duration::from_millis(500));
        // Reserved in turn: the next waits for the token after that one.
        assert_eq!(b.reserve(t0), Duration::from_millis(1000));
        assert_eq!(
            b.reserve(t0 + Duration::from_millis(1500)),
            Duration::from_millis(0)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn each_family_has_a_bucket_of_its_own() {
        let buckets = Buckets::new(1, 1).unwrap();
        let uri = |p: &str| -> Uri { p.parse().unwrap() };
        let deployments = uri("/apis/apps/v1/namespaces/t/deployments");
        assert_eq!(buckets.reserve(&deployments), Duration::ZERO);
        assert_eq!(buckets.reserve(&deployments), Duration::from_secs(1));
        // A Canary status write and a VirtualService do not wait behind the Deployments.
        let status = uri("/apis/flagger.app/v1beta1/namespaces/t/canaries/p/status");
        assert_eq!(buckets.reserve(&status), Duration::ZERO);
        let vs = uri("/apis/networking.istio.io/v1/namespaces/t/virtualservices/p");
        assert_eq!(buckets.reserve(&vs), Duration::ZERO);
        assert!(Buckets::new(0, 10).is_none());
    }
}
