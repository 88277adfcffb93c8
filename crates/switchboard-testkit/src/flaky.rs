//! A flaky HTTP upstream for fault tests: it answers every request (any method, any path) with the
//! next reply of a script (a status, or a JSON body), then `200 {"ok": true}` once the script runs
//! out, and records when each request arrived.

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// One scripted reply.
#[derive(Debug, Clone, Copy)]
pub struct Reply {
    /// The status answered.
    pub status: u16,
    /// `Retry-After` in seconds, if sent.
    pub retry_after: Option<u64>,
    /// A JSON body to answer with instead of `scripted STATUS` text.
    pub json: Option<&'static str>,
}

impl Reply {
    /// `status` with no `Retry-After`.
    pub fn status(status: u16) -> Self {
        Self { status, retry_after: None, json: None }
    }
    /// `status` with `Retry-After: seconds`.
    pub fn retry_after(status: u16, seconds: u64) -> Self {
        Self { status, retry_after: Some(seconds), json: None }
    }
    /// `200` with `body` as JSON, e.g. a chat completion without `usage`, as some servers send.
    pub fn json(body: &'static str) -> Self {
        Self { status: 200, retry_after: None, json: Some(body) }
    }
}

#[derive(Default)]
struct State {
    script: Mutex<VecDeque<Reply>>,
    arrivals: Mutex<Vec<Instant>>,
}

/// The flaky upstream, serving on a loopback port until dropped.
pub struct FlakyUpstream {
    url: String,
    state: Arc<State>,
    shutdown: Option<oneshot::Sender<()>>,
}

impl FlakyUpstream {
    /// Serves `script` (then 200s) on a free loopback port.
    pub async fn start(script: Vec<Reply>) -> Self {
        let listener =
            TcpListener::bind("127.0.0.1:0").await.expect("a loopback port for the flaky upstream");
        let addr = listener.local_addr().expect("the flaky upstream's address");
        let state = Arc::new(State { script: Mutex::new(script.into()), arrivals: Mutex::default() });
        let shared = state.clone();
        let app = Router::new().fallback(move || {
            let state = shared.clone();
            async move { answer(&state) }
        });
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let stopped = async {
                let _ = rx.await;
            };
            if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(stopped).await {
                eprintln!("the flaky upstream stopped serving: {e}");
            }
        });
        Self { url: format!("http://{addr}"), state, shutdown: Some(tx) }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Appends replies to the script (e.g. to make a recovered upstream fail again).
    pub fn push(&self, replies: impl IntoIterator<Item = Reply>) {
        if let Ok(mut script) = self.state.script.lock() {
            script.extend(replies);
        }
    }

    /// When each request arrived, in order.
    pub fn arrivals(&self) -> Vec<Instant> {
        self.state.arrivals.lock().map(|a| a.clone()).unwrap_or_default()
    }

    /// How many requests arrived.
    pub fn calls(&self) -> usize {
        self.arrivals().len()
    }
}

impl Drop for FlakyUpstream {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

fn answer(state: &State) -> Response {
    if let Ok(mut arrivals) = state.arrivals.lock() {
        arrivals.push(Instant::now());
    }
    let next = state.script.lock().ok().and_then(|mut s| s.pop_front());
    let Some(reply) = next else {
        return (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], r#"{"ok":true}"#)
            .into_response();
    };
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = match reply.json {
        Some(body) => (status, [(header::CONTENT_TYPE, "application/json")], body).into_response(),
        None => (status, format!("scripted {}", reply.status)).into_response(),
    };
    if let Some(seconds) = reply.retry_after {
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}
