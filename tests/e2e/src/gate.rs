//! A webhook server inside the test (127.0.0.1 only) that answers Flagger's gate hooks:
//! 200 while open, 403 while closed, recording every call's payload.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::Value;
use tokio::task::JoinHandle;

use crate::Result;

#[derive(Clone, Default)]
struct Shared {
    open: Arc<AtomicBool>,
    calls: Arc<Mutex<Vec<Value>>>,
}

pub struct Gate {
    /// `http://127.0.0.1:<port>/gate`.
    pub url: String,
    shared: Shared,
    task: JoinHandle<()>,
}

async fn answer(State(s): State<Shared>, Json(payload): Json<Value>) -> (StatusCode, &'static str) {
    s.calls
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(payload);
    if s.open.load(Ordering::SeqCst) {
        (StatusCode::OK, "approved")
    } else {
        (StatusCode::FORBIDDEN, "gate closed")
    }
}

impl Gate {
    /// Starts closed.
    pub async fn start() -> Result<Gate> {
        let shared = Shared::default();
        let app = Router::new()
            .route("/gate", post(answer))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/gate", listener.local_addr()?);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Gate { url, shared, task })
    }

    pub fn open(&self) {
        self.shared.open.store(true, Ordering::SeqCst);
    }

    /// The payloads received so far.
    pub fn calls(&self) -> Vec<Value> {
        self.shared
            .calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.task.abort();
    }
}
