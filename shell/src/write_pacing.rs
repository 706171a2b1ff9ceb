//! Bounds the writes (every request but GET) the operator has in flight against the API server,
//! adapts the bound to how the server copes, and lets the writes that act on established
//! Canaries pass those that initialize new ones.
//!
//! A rate limit alone lets a slow server pile up requests until they time out (at 1,000
//! canaries initializing on a loaded machine, hundreds of Service creations failed with 504
//! after 34 s). The bound starts at its maximum and follows additive increase, multiplicative
//! decrease: a write answered 429 or 5xx, failing to connect, or taking longer than [`SLOW`]
//! halves it (never below one); every other write raises it by one, up to the maximum. Reads,
//! watches included, are never held back: they keep the caches that every decision depends on
//! fresh.
//!
//! Writes come in two [`Lane`]s, chosen by the task that sends them ([`in_lane`]). Waiting
//! writes of the prompt lane are admitted before any waiting bulk write, and the prompt lane
//! may always have [`PROMPT_SLOTS`] writes in flight however full the bound is, so a new revision is acted on at once even while
//! thousands of Canaries initialize and their writes fill the bound. Within a lane, writes are
//! admitted in the order they arrived.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;

use http::{Method, Request, Response};
use tokio::sync::oneshot;
use tower::{Layer, Service, ServiceExt};

/// A write slower than this is a sign of an overloaded API server.
pub const SLOW: Duration = Duration::from_secs(5);

/// Writes of the prompt lane that may be in flight whatever the bound and the bulk writes do.
pub const PROMPT_SLOTS: usize = 4;

/// Which writes go first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lane {
    /// Acting on Canaries already initialized (a new revision, an analysis step, a rollback),
    /// and every write outside a reconcile (the leader lease, a deleted Canary's target): few
    /// at a time, and each one late is a step late.
    Prompt,
    /// Initializing Canaries: several writes each, thousands of Canaries at start-up, and
    /// nothing lost by a few seconds' wait.
    Bulk,
}

impl Lane {
    fn index(self) -> usize {
        match self {
            Lane::Prompt => 0,
            Lane::Bulk => 1,
        }
    }

    /// The `lane` label of the pacer's metrics.
    pub fn label(self) -> &'static str {
        match self {
            Lane::Prompt => "prompt",
            Lane::Bulk => "bulk",
        }
    }
}

tokio::task_local! {
    static LANE: Lane;
}

/// Runs `f` with the writes it sends in `lane`. The lane is read when a write is polled, which
/// happens in the sending task even though the client hands requests to a worker.
pub async fn in_lane<F: Future>(lane: Lane, f: F) -> F::Output {
    LANE.scope(lane, f).await
}

/// The lane of the current task's writes: [`Lane::Prompt`] outside [`in_lane`].
pub fn current_lane() -> Lane {
    LANE.try_with(|l| *l).unwrap_or(Lane::Prompt)
}

/// Writes in flight and waiting, per lane.
#[derive(Debug)]
struct Slots {
    in_flight: [usize; 2],
    limit: usize,
    /// Granting a slot sends on the waiter's channel, with the slot already counted.
    waiting: [VecDeque<oneshot::Sender<()>>; 2],
}

impl Slots {
    fn total(&self) -> usize {
        self.in_flight[0] + self.in_flight[1]
    }

    fn admits(&self, lane: Lane, prompt_slots: usize) -> bool {
        match lane {
            Lane::Prompt => {
                self.total() < self.limit || self.in_flight[Lane::Prompt.index()] < prompt_slots
            }
            Lane::Bulk => {
                self.total() < self.limit && self.waiting[Lane::Prompt.index()].is_empty()
            }
        }
    }

    /// Hands free slots to the waiting writes, prompt ones first. A waiter that gave up has
    /// closed its channel and is skipped.
    fn grant(&mut self, prompt_slots: usize) {
        for lane in [Lane::Prompt, Lane::Bulk] {
            while self.admits(lane, prompt_slots) {
                let Some(waiter) = self.waiting[lane.index()].pop_front() else {
                    break;
                };
                if waiter.send(()).is_ok() {
                    self.in_flight[lane.index()] += 1;
                }
            }
        }
    }
}

/// The adaptive bound, shared by every clone of the service.
#[derive(Debug)]
pub struct Pacer {
    state: Mutex<Slots>,
    max: usize,
    prompt_slots: usize,
}

impl Pacer {
    pub fn new(max: usize) -> Arc<Pacer> {
        Pacer::with_prompt_slots(max, PROMPT_SLOTS)
    }

    pub fn with_prompt_slots(max: usize, prompt_slots: usize) -> Arc<Pacer> {
        let max = max.max(1);
        Arc::new(Pacer {
            state: Mutex::new(Slots {
                in_flight: [0, 0],
                limit: max,
                waiting: Default::default(),
            }),
            max,
            prompt_slots,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Slots> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The current bound on writes in flight.
    pub fn limit(&self) -> usize {
        self.lock().limit
    }

    /// Writes waiting for a slot, per lane (prompt, bulk).
    pub fn waiting(&self) -> (usize, usize) {
        let s = self.lock();
        (s.waiting[0].len(), s.waiting[1].len())
    }

    /// Waits until one more write of `lane` may be in flight, and counts it.
    async fn start(self: &Arc<Self>, lane: Lane) {
        let rx = {
            let mut s = self.lock();
            let i = lane.index();
            if s.waiting[i].is_empty() && s.admits(lane, self.prompt_slots) {
                s.in_flight[i] += 1;
                return;
            }
            let (tx, rx) = oneshot::channel();
            s.waiting[i].push_back(tx);
            rx
        };
        let mut waiter = Waiter {
            pacer: self.clone(),
            lane,
            rx,
            done: false,
        };
        // The sender lives in the queue until it is granted, so this only fails if the pacer
        // is gone, and then there is nothing left to wait for.
        let _ = (&mut waiter.rx).await;
        waiter.done = true;
    }

    /// Counts a write of `lane` as finished and adjusts the bound: `Some(true)` it met a sign
    /// of overload, `Some(false)` it went well, `None` it was abandoned (says nothing about the
    /// server).
    fn finish(&self, lane: Lane, overloaded: Option<bool>) {
        let mut s = self.lock();
        let i = lane.index();
        s.in_flight[i] = s.in_flight[i].saturating_sub(1);
        s.limit = match overloaded {
            Some(true) => (s.limit / 2).max(1),
            Some(false) => (s.limit + 1).min(self.max),
            None => s.limit,
        };
        s.grant(self.prompt_slots);
    }
}

/// `flagger_kube_writes_waiting{lane}`, `flagger_kube_writes_in_flight{lane}` and
/// `flagger_kube_writes_in_flight_limit`, read from the pacer when scraped: how far behind the
/// API server the operator's writes are, and which lane waits.
pub struct PacerMetrics {
    pacer: Arc<Pacer>,
    waiting: prometheus::IntGaugeVec,
    in_flight: prometheus::IntGaugeVec,
    limit: prometheus::IntGauge,
}

impl PacerMetrics {
    pub fn new(pacer: Arc<Pacer>) -> PacerMetrics {
        let vec = |name: &str, help: &str| {
            prometheus::IntGaugeVec::new(
                prometheus::Opts::new(name, help).subsystem("flagger"),
                &["lane"],
            )
            .expect("static metric definition is valid")
        };
        PacerMetrics {
            pacer,
            waiting: vec(
                "kube_writes_waiting",
                "Writes waiting for a slot, per lane.",
            ),
            in_flight: vec("kube_writes_in_flight", "Writes in flight, per lane."),
            limit: prometheus::IntGauge::with_opts(
                prometheus::Opts::new(
                    "kube_writes_in_flight_limit",
                    "The current bound on writes in flight (halved under overload).",
                )
                .subsystem("flagger"),
            )
            .expect("static metric definition is valid"),
        }
    }
}

impl prometheus::core::Collector for PacerMetrics {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        let mut d = self.waiting.desc();
        d.extend(self.in_flight.desc());
        d.extend(self.limit.desc());
        d
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        {
            let s = self.pacer.lock();
            for lane in [Lane::Prompt, Lane::Bulk] {
                let label = [lane.label()];
                let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
                let waiting = s.waiting[lane.index()].len();
                self.waiting.with_label_values(&label).set(count(waiting));
                let in_flight = s.in_flight[lane.index()];
                self.in_flight
                    .with_label_values(&label)
                    .set(count(in_flight));
            }
            self.limit.set(i64::try_from(s.limit).unwrap_or(i64::MAX));
        }
        let mut out = self.waiting.collect();
        out.extend(self.in_flight.collect());
        out.extend(self.limit.collect());
        out
    }
}

/// A write waiting for its slot. Dropped before it got one (its request abandoned), it leaves
/// the queue; dropped just after the slot was granted, it hands the slot back.
struct Waiter {
    pacer: Arc<Pacer>,
    lane: Lane,
    rx: oneshot::Receiver<()>,
    done: bool,
}

impl Drop for Waiter {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        self.rx.close();
        if self.rx.try_recv().is_ok() {
            self.pacer.finish(self.lane, None);
        }
    }
}

#[cfg(test)]
impl Pacer {
    /// A write that was counted in and is now finished.
    fn finish_for_test(&self, overloaded: Option<bool>) {
        self.lock().in_flight[Lane::Bulk.index()] += 1;
        self.finish(Lane::Bulk, overloaded);
    }
}

/// One write in flight; it is counted out when dropped, also when its request is abandoned.
struct InFlight {
    pacer: Arc<Pacer>,
    lane: Lane,
    overloaded: Option<bool>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.pacer.finish(self.lane, self.overloaded);
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

impl<S: Clone> Layer<S> for WritePacingLayer {
    type Service = WritePacing<S>;

    /// Over a service each request can take a handle of (a clone) of: the client's
    /// [`crate::kube_metrics::ApiRequestLayer`], whose buffer fronts the client's stack, so
    /// each admitted write goes on its own.
    fn layer(&self, inner: S) -> Self::Service {
        WritePacing {
            inner,
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

    /// Always ready: readiness of the inner service is waited for by each request once it
    /// may go, so that writes held back here hold no place in the buffer that reads use.
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let inner = self.inner.clone();
        if req.method() == Method::GET {
            return Box::pin(inner.oneshot(req));
        }
        let pacer = self.pacer.clone();
        Box::pin(async move {
            // Polled in the task that sends the write, so its lane is the sender's.
            let lane = current_lane();
            pacer.start(lane).await;
            let mut in_flight = InFlight {
                pacer,
                lane,
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
        /// Path of each request as it arrived, with the milliseconds since the test began.
        arrivals: Arc<Mutex<Vec<(String, u64)>>>,
        began: Instant,
    }

    impl Service<Request<()>> for Server {
        type Response = Response<()>;
        type Error = String;
        type Future = BoxFuture<Result<Response<()>, String>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), String>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, req: Request<()>) -> Self::Future {
            let s = self.clone();
            let ms = s.began.elapsed().as_millis() as u64;
            s.arrivals
                .lock()
                .unwrap()
                .push((req.uri().path().trim_start_matches('/').to_string(), ms));
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
        paced_server(status, delay, Pacer::new(3))
    }

    fn paced_server(status: u16, delay: Duration, pacer: Arc<Pacer>) -> WritePacing<Server> {
        WritePacing {
            inner: Server {
                status,
                delay,
                now: Arc::default(),
                peak: Arc::default(),
                arrivals: Arc::default(),
                began: Instant::now(),
            },
            pacer,
        }
    }

    /// Sends a PATCH to `/<name>` from a task of its own, in `lane`.
    fn spawn_write(
        svc: &WritePacing<Server>,
        lane: Lane,
        name: &str,
    ) -> tokio::task::JoinHandle<()> {
        let mut s = svc.clone();
        let req = Request::builder()
            .method(Method::PATCH)
            .uri(format!("/{name}"))
            .body(())
            .unwrap();
        tokio::spawn(in_lane(lane, async move {
            s.ready().await.unwrap().call(req).await.unwrap();
        }))
    }

    /// Lets every spawned task run until it waits on a timer or a slot.
    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    fn arrivals(svc: &WritePacing<Server>) -> Vec<(String, u64)> {
        svc.inner.arrivals.lock().unwrap().clone()
    }

    fn request(method: &Method) -> Request<()> {
        Request::builder()
            .method(method.clone())
            .uri("/x")
            .body(())
            .unwrap()
    }

    /// Sends `n` requests of the bulk lane at once and waits for all of them.
    async fn send_all(svc: &WritePacing<Server>, method: Method, n: usize) {
        in_lane(Lane::Bulk, send_all_in_lane(svc, method, n)).await
    }

    async fn send_all_in_lane(svc: &WritePacing<Server>, method: Method, n: usize) {
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
        // The prompt lane shares the bound, and always has slots of its own.
        svc.inner.peak.store(0, Ordering::SeqCst);
        send_all_in_lane(&svc, Method::PATCH, 10).await;
        assert_eq!(svc.inner.peak.load(Ordering::SeqCst), PROMPT_SLOTS.max(3));
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

    #[tokio::test(start_paused = true)]
    async fn prompt_writes_pass_queued_bulk_writes_and_have_slots_of_their_own() {
        // A bound of two, one slot of the prompt lane's own; every write takes 100 ms.
        let svc = paced_server(
            200,
            Duration::from_millis(100),
            Pacer::with_prompt_slots(2, 1),
        );
        let mut tasks = Vec::new();
        for name in ["b1", "b2", "b3", "b4"] {
            tasks.push(spawn_write(&svc, Lane::Bulk, name));
            settle().await;
        }
        assert_eq!(
            svc.pacer.waiting(),
            (0, 2),
            "the bulk writes fill the bound"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
        // Admitted at once into its own slot, although the bound is full and bulk writes wait.
        tasks.push(spawn_write(&svc, Lane::Prompt, "p1"));
        settle().await;
        // Its own slot is taken: it waits, but ahead of the bulk writes that came first.
        tasks.push(spawn_write(&svc, Lane::Prompt, "p2"));
        settle().await;
        assert_eq!(svc.pacer.waiting(), (1, 2));
        for t in tasks {
            t.await.unwrap();
        }
        let expected = [
            ("b1", 0),
            ("b2", 0),
            ("p1", 1),
            // b1 and b2 end at 100 ms: the first freed slot goes to p2, not to b3.
            ("p2", 100),
            ("b3", 101),
            ("b4", 200),
        ];
        let expected: Vec<(String, u64)> = expected
            .iter()
            .map(|(n, ms)| (n.to_string(), *ms))
            .collect();
        assert_eq!(arrivals(&svc), expected);
    }

    #[tokio::test(start_paused = true)]
    async fn writes_outside_any_lane_are_prompt() {
        assert_eq!(current_lane(), Lane::Prompt);
        assert_eq!(
            in_lane(Lane::Bulk, async { current_lane() }).await,
            Lane::Bulk
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_abandoned_write_gives_up_its_place_and_its_slot() {
        let svc = paced_server(
            200,
            Duration::from_millis(100),
            Pacer::with_prompt_slots(1, 0),
        );
        let first = spawn_write(&svc, Lane::Bulk, "first");
        settle().await;
        let abandoned = spawn_write(&svc, Lane::Bulk, "abandoned");
        settle().await;
        let last = spawn_write(&svc, Lane::Bulk, "last");
        settle().await;
        abandoned.abort();
        assert!(abandoned.await.unwrap_err().is_cancelled());
        first.await.unwrap();
        last.await.unwrap();
        let names: Vec<String> = arrivals(&svc).into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["first", "last"]);
        assert_eq!(svc.pacer.lock().total(), 0, "no slot left counted");

        // Granted a slot but dropped before it could use it: the slot comes back.
        let pacer = Pacer::with_prompt_slots(1, 0);
        pacer.start(Lane::Bulk).await;
        let waiting = {
            let p = pacer.clone();
            tokio::spawn(async move { p.start(Lane::Bulk).await })
        };
        settle().await;
        pacer.finish(Lane::Bulk, Some(false));
        // The grant is sent; the waiter is dropped before it runs again.
        waiting.abort();
        let _ = waiting.await;
        assert_eq!(pacer.lock().total(), 0);
    }

    #[tokio::test]
    async fn the_pacers_gauges_show_writes_waiting_and_in_flight_per_lane() {
        let pacer = Pacer::with_prompt_slots(1, 0);
        let registry = prometheus::Registry::new();
        registry
            .register(Box::new(PacerMetrics::new(pacer.clone())))
            .unwrap();
        pacer.start(Lane::Bulk).await;
        let p = pacer.clone();
        let waiting = tokio::spawn(async move { p.start(Lane::Bulk).await });
        while pacer.waiting() != (0, 1) {
            tokio::task::yield_now().await;
        }
        let mut text = Vec::new();
        let families = registry.gather();
        prometheus::Encoder::encode(&prometheus::TextEncoder::new(), &families, &mut text).unwrap();
        let text = String::from_utf8(text).unwrap();
        for line in [
            "flagger_kube_writes_waiting{lane=\"bulk\"} 1",
            "flagger_kube_writes_waiting{lane=\"prompt\"} 0",
            "flagger_kube_writes_in_flight{lane=\"bulk\"} 1",
            "flagger_kube_writes_in_flight_limit 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in\n{text}");
        }
        pacer.finish(Lane::Bulk, Some(false));
        waiting.await.unwrap();
    }
}
