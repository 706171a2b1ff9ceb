//! The operator's HTTP endpoints, served on a real socket.

use std::net::SocketAddr;
use std::sync::Arc;

use flagger::operator_metrics::OperatorMetrics;
use flagger::server::{self, Readiness};
use tokio::sync::oneshot;

async fn start(readiness: Arc<Readiness>) -> (SocketAddr, oneshot::Sender<()>) {
    let metrics = OperatorMetrics::new();
    metrics.set_info("1.2.3", "istio");
    let app = server::router(Arc::new(move || metrics.encode()), readiness);
    let (stop, stopped) = oneshot::channel::<()>();
    let (addr, _task) = server::serve(SocketAddr::from(([127, 0, 0, 1], 0)), app, async {
        let _ = stopped.await;
    })
    .await
    .unwrap();
    (addr, stop)
}

fn http() -> reqwest::Client {
    flagger::webhook::http_client_builder().build().unwrap()
}

#[tokio::test]
async fn metrics_are_served_in_the_prometheus_text_format() {
    let (addr, _stop) = start(Arc::default()).await;
    let resp = http()
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let body = resp.text().await.unwrap();
    assert!(
        body.contains(r#"flagger_info{mesh_provider="istio",version="1.2.3"} 1"#),
        "{body}"
    );
}

#[tokio::test]
async fn healthz_is_up_while_readyz_waits_for_the_caches() {
    let readiness = Arc::new(Readiness::default());
    let (addr, _stop) = start(readiness.clone()).await;
    let get = |path: &'static str| {
        let url = format!("http://{addr}{path}");
        async move { http().get(url).send().await.unwrap().status().as_u16() }
    };
    assert_eq!(get("/healthz").await, 200);
    assert_eq!(get("/readyz").await, 503);
    readiness.set_standby(true);
    assert_eq!(get("/readyz").await, 200, "a standby replica is ready");
    readiness.set_standby(false);
    readiness.set_caches_synced(true);
    assert_eq!(get("/readyz").await, 200);
}

#[tokio::test]
async fn the_server_stops_on_shutdown() {
    let (addr, stop) = start(Arc::default()).await;
    stop.send(()).unwrap();
    // Graceful shutdown closes the listener; new connections are refused.
    let mut refused = false;
    for _ in 0..50 {
        if tokio::net::TcpStream::connect(addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(refused);
}
