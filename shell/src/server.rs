//! The operator's HTTP endpoints on `-port`: `/metrics` for Prometheus, `/healthz` for the
//! liveness probe and `/readyz` for the readiness probe (Flagger's chart probes `/healthz`).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;

/// What `/readyz` reports. A replica waiting for the leader lease is ready as a standby: it is
/// healthy and will take over, so it must not be restarted or removed from the Service.
#[derive(Debug, Default)]
pub struct Readiness {
    caches_synced: AtomicBool,
    standby: AtomicBool,
}

impl Readiness {
    pub fn set_caches_synced(&self, synced: bool) {
        self.caches_synced.store(synced, Ordering::SeqCst);
    }

    /// True while this replica waits for the leader lease.
    pub fn set_standby(&self, standby: bool) {
        self.standby.store(standby, Ordering::SeqCst);
    }

    /// Every watch cache holds its initial list.
    pub fn caches_synced(&self) -> bool {
        self.caches_synced.load(Ordering::SeqCst)
    }

    pub fn is_ready(&self) -> bool {
        self.standby.load(Ordering::SeqCst) || self.caches_synced.load(Ordering::SeqCst)
    }
}

/// Renders the operator's metrics in the Prometheus text format.
pub type MetricsText = Arc<dyn Fn() -> String + Send + Sync>;

#[derive(Clone)]
struct AppState {
    metrics: MetricsText,
    readiness: Arc<Readiness>,
}

pub fn router(metrics: MetricsText, readiness: Arc<Readiness>) -> Router {
    Router::new()
        .route("/metrics", get(serve_metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(serve_readyz))
        .with_state(AppState { metrics, readiness })
}

async fn serve_metrics(State(s): State<AppState>) -> impl IntoResponse {
    let metrics = s.metrics.clone();
    // Encoding walks every metric family; keep it off the async workers.
    match tokio::task::spawn_blocking(move || metrics()).await {
        Ok(body) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            body,
        ),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("encoding metrics failed: {e}"),
        ),
    }
}

async fn serve_readyz(State(s): State<AppState>) -> impl IntoResponse {
    if s.readiness.is_ready() {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "caches not synced")
    }
}

/// Binds `addr` and serves until `shutdown` resolves. Returns the bound address (useful with
/// port 0) and the server task.
pub async fn serve(
    addr: SocketAddr,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<std::io::Result<()>>)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
    });
    Ok((local, task))
}
