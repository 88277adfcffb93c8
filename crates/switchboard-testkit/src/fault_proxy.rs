//! A fault-injecting HTTP proxy for MCP fault tests: it forwards every request to a real server
//! (streamed both ways, so server-sent events pass as they come) and, for JSON-RPC `POST`s whose
//! `method` has faults queued, answers the queued status instead of forwarding. It counts the
//! `POST`s it saw per JSON-RPC method, forwarded or not, so a test can tell a retry from a
//! single attempt.

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::TryStreamExt;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// Requests bodies larger than this are refused: MCP requests in tests are small.
const MAX_BODY: usize = 16 * 1024 * 1024;

#[derive(Default)]
struct State {
    /// Statuses to answer, per JSON-RPC method, in order.
    faults: Mutex<HashMap<String, VecDeque<u16>>>,
    /// `POST`s seen per JSON-RPC method.
    seen: Mutex<HashMap<String, usize>>,
}

/// The proxy, serving on a loopback port until dropped.
pub struct FaultProxy {
    url: String,
    state: Arc<State>,
    shutdown: Option<oneshot::Sender<()>>,
}

impl FaultProxy {
    /// Proxies to `upstream` (`http://host:port`, no path) from a free loopback port.
    pub async fn start(upstream: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a loopback port for the fault proxy");
        let addr = listener.local_addr().expect("the fault proxy's address");
        let state = Arc::new(State::default());
        let client = reqwest::Client::builder().no_proxy().build().expect("the fault proxy's client");
        let upstream = upstream.trim_end_matches('/').to_string();
        let shared = state.clone();
        let app = Router::new().fallback(move |request: Request| {
            let (state, client, upstream) = (shared.clone(), client.clone(), upstream.clone());
            async move { forward(&state, &client, &upstream, request).await }
        });
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let stopped = async {
                let _ = rx.await;
            };
            if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(stopped).await {
                eprintln!("the fault proxy stopped serving: {e}");
            }
        });
        Self { url: format!("http://{addr}"), state, shutdown: Some(tx) }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Answers the next `times` `POST`s of JSON-RPC `method` with `status`, unforwarded.
    pub fn fail(&self, method: &str, times: usize, status: u16) {
        if let Ok(mut faults) = self.state.faults.lock() {
            faults.entry(method.to_string()).or_default().extend(std::iter::repeat_n(status, times));
        }
    }

    /// How many `POST`s of JSON-RPC `method` arrived, failed or forwarded.
    pub fn seen(&self, method: &str) -> usize {
        self.state.seen.lock().map(|s| s.get(method).copied().unwrap_or(0)).unwrap_or(0)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// The JSON-RPC method of a request body, if it is one.
fn method_of(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    value.get("method")?.as_str().map(str::to_string)
}

async fn forward(state: &State, client: &reqwest::Client, upstream: &str, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body: Bytes = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(body) => body,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("fault proxy: {e}")).into_response(),
    };
    if parts.method == axum::http::Method::POST
        && let Some(method) = method_of(&body)
    {
        if let Ok(mut seen) = state.seen.lock() {
            *seen.entry(method.clone()).or_default() += 1;
        }
        let fault =
            state.faults.lock().ok().and_then(|mut f| f.get_mut(&method).and_then(VecDeque::pop_front));
        if let Some(status) = fault {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return (status, format!("fault proxy: injected {status} for {method}")).into_response();
        }
    }
    let path = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let mut headers = HeaderMap::new();
    for (name, value) in &parts.headers {
        if name != axum::http::header::HOST && name != axum::http::header::CONTENT_LENGTH {
            headers.append(name.clone(), value.clone());
        }
    }
    let sent =
        client.request(parts.method, format!("{upstream}{path}")).headers(headers).body(body).send().await;
    let answer = match sent {
        Ok(answer) => answer,
        Err(e) => return (StatusCode::BAD_GATEWAY, format!("fault proxy: {e}")).into_response(),
    };
    let mut response = Response::builder().status(answer.status());
    for (name, value) in answer.headers() {
        if name != axum::http::header::CONTENT_LENGTH && name != axum::http::header::TRANSFER_ENCODING {
            response = response.header(name, value);
        }
    }
    let stream = answer.bytes_stream().map_err(std::io::Error::other);
    response
        .body(Body::from_stream(stream))
        .unwrap_or_else(|e| (StatusCode::BAD_GATEWAY, format!("fault proxy: {e}")).into_response())
}
