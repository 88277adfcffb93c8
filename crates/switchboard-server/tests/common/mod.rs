//! A real server on 127.0.0.1:0, in process, for the HTTP tests.

#![allow(dead_code)]

use serde_json::Value;
use std::sync::Arc;
use switchboard_runtime::{Runtime, demo};
use switchboard_server::AppState;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A running server; dropping it stops it.
pub struct Server {
    pub base: String,
    pub runtime: Arc<Runtime>,
    shutdown: Option<oneshot::Sender<()>>,
    pub handle: Option<JoinHandle<std::io::Result<()>>>,
    _dir: Option<tempfile::TempDir>,
}

impl Server {
    /// Serves `runtime` with the development identities.
    pub async fn start(runtime: Runtime, dir: Option<tempfile::TempDir>) -> Self {
        let runtime = Arc::new(runtime);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let state = AppState::for_runtime(runtime.clone());
        let (tx, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(switchboard_server::serve(listener, state, async {
            let _ = rx.await;
        }));
        Self { base, runtime, shutdown: Some(tx), handle: Some(handle), _dir: dir }
    }

    /// The built-in demo in a fresh data dir, with `edit` applied to its configuration.
    pub async fn demo_with(edit: impl FnOnce(&mut switchboard_runtime::config::LoadedConfig)) -> Self {
        let (runtime, dir) = demo_runtime(edit).await;
        Self::start(runtime, Some(dir)).await
    }

    /// The built-in demo.
    pub async fn demo() -> Self {
        Self::demo_with(|_| {}).await
    }

    /// A bearer token for `user` from the development identity provider; an unknown user gets a
    /// token-shaped string no issuer signed.
    pub fn token(&self, user: &str) -> String {
        token(&self.runtime, user)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Asks for a graceful shutdown and waits for `serve` to return.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(handle) = self.handle.take() {
            handle.await.unwrap().unwrap();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// The built-in demo's runtime in a fresh data dir (kept alive by the returned guard), with `edit`
/// applied to its configuration before it is built.
pub async fn demo_runtime(
    edit: impl FnOnce(&mut switchboard_runtime::config::LoadedConfig),
) -> (Runtime, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    demo::prepare(dir.path()).unwrap();
    let mut loaded = Runtime::validate(&demo::source(dir.path())).unwrap();
    edit(&mut loaded);
    (Runtime::build(loaded).await.unwrap(), dir)
}

/// A development token for `user` from `runtime`'s identity provider.
pub fn token(runtime: &Runtime, user: &str) -> String {
    let dev = runtime.identity.dev().expect("the demo runs the development identity provider");
    match dev.token_for(user, None, std::time::Duration::from_secs(600)) {
        Ok(token) => token.expose().to_string(),
        Err(_) => "not.a-valid.token".to_string(),
    }
}

/// POSTs `body` as `user` (no credentials when `None`).
pub async fn post(server: &Server, path: &str, user: Option<&str>, body: Value) -> reqwest::Response {
    let mut rb = reqwest::Client::new().post(server.url(path)).json(&body);
    if let Some(user) = user {
        rb = rb.bearer_auth(server.token(user));
    }
    rb.send().await.unwrap()
}

/// Status, `x-request-id` and JSON body.
pub async fn parts(response: reqwest::Response) -> (u16, String, Value) {
    let status = response.status().as_u16();
    let id =
        response.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    (status, id, body)
}

/// Parses an SSE body into (event name, data) pairs.
pub fn sse(text: &str) -> Vec<(Option<String>, String)> {
    text.split("\n\n")
        .filter(|block| !block.trim().is_empty())
        .filter_map(|block| {
            let mut event = None;
            let mut data = Vec::new();
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event: ") {
                    event = Some(v.to_string());
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data.push(v);
                }
            }
            (!data.is_empty()).then(|| (event, data.join("\n")))
        })
        .collect()
}
