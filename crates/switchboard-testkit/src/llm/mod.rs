//! A scripted, deterministic, OpenAI-compatible LLM server for tests and benchmarks.
//!
//! It answers `POST /v1/chat/completions` and `POST /v1/responses` (plain or streamed as SSE,
//! token by token), and `GET /v1/models`, with replies chosen by the rules of a [`Script`]: text,
//! a tool call, or JSON that conforms to the requested schema. Latency, a per-token delay and
//! failures (a status for the first N calls, or every k-th) are part of the script, so fault
//! tests need no other server. `usage` is counted with the same `cl100k_base` tokenizer the
//! project's client uses.
//!
//! In process: [`ScriptedLlm::start`] serves on a free loopback port and hands back its base URL
//! (`http://127.0.0.1:PORT/v1`), the number of calls and the request bodies it received. As a
//! process, for benchmarks and the Python tests: the `scripted-llm` binary
//! (`scripted-llm --port P --script FILE`), started by [`spawn_binary`].

mod answer;
mod request;
mod script;
mod server;
mod wire;

pub use script::Script;

use crate::Child;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The scripted server running in this process; it stops when dropped.
pub struct ScriptedLlm {
    base_url: String,
    shared: Arc<server::Shared>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl ScriptedLlm {
    /// Serves `script` on a free loopback port, recording every request body.
    pub async fn start(script: Script) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a loopback port for the scripted LLM");
        Self::start_on(listener, script).await
    }

    /// Serves `script` on `listener` (e.g. a port chosen in advance), recording request bodies.
    pub async fn start_on(listener: TcpListener, script: Script) -> Self {
        let addr = listener.local_addr().expect("the scripted LLM's address");
        let shared = shared(script, true);
        let (tx, rx) = oneshot::channel::<()>();
        let app = server::router(shared.clone());
        let task = tokio::spawn(serve_until(listener, app, shared.connections.clone(), async {
            let _ = rx.await;
        }));
        Self { base_url: format!("http://{addr}/v1"), shared, shutdown: Some(tx), task: Some(task) }
    }

    /// The API root including `/v1`, e.g. `http://127.0.0.1:PORT/v1`, as an `[llm] base_url`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// How many completion and response calls arrived (failed ones included).
    pub fn calls(&self) -> u64 {
        self.shared.calls.load(Ordering::Relaxed)
    }

    /// How many completion and response calls arrived over HTTP/2.
    pub fn http2_calls(&self) -> u64 {
        self.shared.http2_calls.load(Ordering::Relaxed)
    }

    /// How many connections this server has accepted.
    pub fn connections(&self) -> u64 {
        self.shared.connections.load(Ordering::Relaxed)
    }

    /// The prompt and completion tokens this server reported in `usage` so far, summed over its
    /// answers: what a client that adds up usage should arrive at.
    pub fn reported_tokens(&self) -> (u64, u64) {
        (self.shared.tokens[0].load(Ordering::Relaxed), self.shared.tokens[1].load(Ordering::Relaxed))
    }

    /// How many streamed answers this server has finished sending (their last frame handed to
    /// the connection).
    pub fn streams_finished(&self) -> u64 {
        self.shared.streams_finished.load(Ordering::Relaxed)
    }

    /// When the most recent request for a streamed answer arrived (for time to first token
    /// measured from the model's side).
    pub fn last_stream_requested(&self) -> Option<std::time::Instant> {
        self.shared.stream_requested.lock().ok().and_then(|at| *at)
    }

    /// The request bodies received so far, oldest first.
    pub fn requests(&self) -> Vec<Value> {
        self.shared.recorded.as_ref().and_then(|r| r.lock().ok().map(|r| r.clone())).unwrap_or_default()
    }

    /// Stops serving and waits until the port is closed (in-flight requests finish first).
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for ScriptedLlm {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Serves `script` on `listener` until the process ends, without recording requests: what the
/// `scripted-llm` binary runs.
pub async fn serve(listener: TcpListener, script: Script) {
    let shared = shared(script, false);
    let connections = shared.connections.clone();
    serve_until(listener, server::router(shared), connections, std::future::pending()).await
}

/// The scripted server's routes, to be called in process with no socket at all (e.g. by a
/// `switchboard_govern::Transport` in a benchmark). Requests are not recorded.
pub fn router(script: Script) -> axum::Router {
    server::router(shared(script, false))
}

/// What every request of one server shares; request bodies are kept only when `record`.
fn shared(script: Script, record: bool) -> Arc<server::Shared> {
    Arc::new(server::Shared {
        script,
        calls: AtomicU64::new(0),
        http2_calls: AtomicU64::new(0),
        connections: Default::default(),
        tokens: Default::default(),
        recorded: record.then(|| Mutex::new(Vec::new())),
        streams_finished: Default::default(),
        stream_requested: Default::default(),
        measured: Default::default(),
    })
}

/// Serves `app` on `listener`, counting accepted connections in `connections`, until `stop`
/// resolves; then stops accepting and lets open requests finish. HTTP/1.1, and HTTP/2 without TLS
/// for clients that speak it with prior knowledge, with no cap on a connection's concurrent
/// streams: a client holding thousands of streamed calls open multiplexes them all on one
/// connection instead of queueing behind the usual cap of 200. Nagle's algorithm is off on every
/// connection: stream chunks are small writes, and without this each waits for the client's
/// delayed ACK (about 40 ms on Linux).
async fn serve_until(
    listener: TcpListener,
    app: axum::Router,
    connections: Arc<AtomicU64>,
    stop: impl Future<Output = ()>,
) {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::server::conn::auto;
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http2().max_concurrent_streams(None::<u32>);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut stop = std::pin::pin!(stop);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of descriptors, most likely: back off rather than spin.
                    eprintln!("the scripted LLM could not accept a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        connections.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = stream.set_nodelay(true) {
            eprintln!("the scripted LLM could not set TCP_NODELAY: {e}");
        }
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let connection = graceful
            .watch(builder.serve_connection_with_upgrades(TokioIo::new(stream), service).into_owned());
        tokio::spawn(async move {
            let _ = connection.await;
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// The `scripted-llm` binary in the same target directory as `exe` (another binary of the
/// workspace, e.g. `env!("CARGO_BIN_EXE_switchboard")`). Panics with the command that builds it
/// when it is not there: `cargo test --workspace` builds it, a single crate's tests may not.
pub fn binary_next_to(exe: &Path) -> PathBuf {
    let bin = exe.with_file_name(format!("scripted-llm{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.is_file(),
        "{} is not built: run `cargo build -p switchboard-testkit --bin scripted-llm` (scripts/test builds it)",
        bin.display()
    );
    bin
}

/// Starts the `scripted-llm` binary `bin` with the script file `script` on a free port, its output
/// in a log file, and waits until it answers. Returns the process and its base URL (with `/v1`).
pub async fn spawn_binary(bin: &Path, script: &Path) -> (Child, String) {
    let port = crate::free_port();
    let log = std::env::temp_dir().join(format!("scripted-llm-{port}-{}.log", std::process::id()));
    let mut command = Command::new(bin);
    command.arg("--port").arg(port.to_string()).arg("--script").arg(script);
    let mut child = Child::spawn(&mut command, log);
    let base = format!("http://127.0.0.1:{port}/v1");
    child.wait_for_http(&format!("{base}/models"), Duration::from_secs(30)).await;
    (child, base)
}
