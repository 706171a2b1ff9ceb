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

/// Recordings fetched over a real socket while lines are appended always end at a complete line
/// and are a prefix of the final file. The recorder writes a line with one `write(2)`, but the
/// kernel grows the file page by page as it copies, so a reader can see half a line; here each
/// line is written in two halves with a pause between, so fetches do see half lines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recordings_fetched_while_being_written_end_at_a_complete_line() {
    use std::io::Write;
    let dir = std::env::temp_dir().join(format!("flagger-rec-live-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("test.podinfo.jsonl");
    std::fs::write(&path, "").unwrap();
    let (addr, _task) = server::serve(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        flagger::recordings::router(dir.clone()),
        std::future::pending(),
    )
    .await
    .unwrap();

    let writer_path = path.clone();
    let writer = std::thread::spawn(move || {
        for i in 0..100 {
            let pad = "x".repeat(50_000 + (i % 3) * 50_000);
            let mut line = format!("{{\"i\":{i},\"pad\":\"{pad}\"}}").into_bytes();
            line.push(b'\n');
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(&writer_path)
                .unwrap();
            let (a, b) = line.split_at(line.len() / 2);
            f.write_all(a).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(3));
            f.write_all(b).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    });
    let url = format!("http://{addr}/recordings/test.podinfo.jsonl");
    let mut fetches = 0;
    let mut lines_seen = 0;
    while !writer.is_finished() || fetches == 0 {
        let resp = http().get(&url).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        let body = resp.bytes().await.unwrap();
        assert!(body.is_empty() || body.ends_with(b"\n"), "fetch {fetches}");
        let text = std::str::from_utf8(&body).unwrap();
        for (n, l) in text.lines().enumerate() {
            let v: serde_json::Value = serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("fetch {fetches}, line {n}: {e}"));
            assert_eq!(v["i"], n);
        }
        lines_seen = lines_seen.max(text.lines().count());
        fetches += 1;
    }
    writer.join().unwrap();
    let full = std::fs::read(&path).unwrap();
    let last = http()
        .get(&url)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(last.as_ref(), full.as_slice());
    assert!(fetches > 1 && lines_seen > 0, "{fetches} fetches");
    let _ = std::fs::remove_dir_all(&dir);
}
