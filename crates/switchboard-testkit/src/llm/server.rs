//! The HTTP side: routes, faults, latency, streaming.

use super::answer::{Answer, Tokens, count};
use super::request::{Api, View};
use super::script::Script;
use super::wire::{self, Ids};
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::StreamExt;
use serde_json::{Value, json};
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What every request shares: the script, the call counter, and the recorded request bodies.
pub(crate) struct Shared {
    pub script: Script,
    pub calls: AtomicU64,
    /// Completion and response calls that arrived over HTTP/2.
    pub http2_calls: AtomicU64,
    /// Connections accepted.
    pub connections: Arc<AtomicU64>,
    /// Prompt and completion tokens reported in `usage` so far.
    pub tokens: [AtomicU64; 2],
    /// Request bodies in arrival order, when recording (tests read them; benchmarks don't pay).
    pub recorded: Option<Mutex<Vec<Value>>>,
    /// Streamed answers whose last frame has been handed to the connection.
    pub streams_finished: Arc<AtomicU64>,
    /// When the most recent request for a streamed answer arrived.
    pub stream_requested: Mutex<Option<std::time::Instant>>,
    /// Time spent inside completion handlers, in nanoseconds, and the prompt tokens of each call
    /// (the first [`PROMPTS_KEPT`]) since start or the last `POST /reset`.
    pub measured: Measured,
}

/// How many calls' prompt token counts `GET /stats` lists.
const PROMPTS_KEPT: usize = 1024;

/// What `GET /stats` reports beyond the call counter: enough for a benchmark to subtract the time
/// the model took from its wall time, and to read what a routing prompt cost.
#[derive(Default)]
pub(crate) struct Measured {
    handler_ns: AtomicU64,
    prompts: Mutex<Vec<u64>>,
}

/// The routes: `POST /v1/chat/completions`, `POST /v1/responses`, `GET /v1/models`;
/// `GET /stats` (`{"calls", "server_time_s", "prompt_tokens", "completion_tokens", "prompts"}`:
/// calls, seconds spent inside completion handlers, tokens reported in `usage`, and each call's
/// prompt tokens in arrival order), `POST /reset` (zeroes them), and `GET`/`POST /echo`, a tool
/// endpoint for benchmarks that answers `{"query": {…}, "body": …}` with what it was sent.
pub(crate) fn router(shared: Arc<Shared>) -> axum::Router {
    axum::Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/responses", post(responses))
        .route("/v1/models", get(models))
        .route("/stats", get(stats))
        .route("/reset", post(reset))
        .route("/echo", get(echo).post(echo))
        .with_state(shared)
}

async fn chat(State(s): State<Arc<Shared>>, version: axum::http::Version, body: Bytes) -> Response {
    s.count_version(version);
    s.timed(Api::Chat, &body).await
}

async fn responses(State(s): State<Arc<Shared>>, version: axum::http::Version, body: Bytes) -> Response {
    s.count_version(version);
    s.timed(Api::Responses, &body).await
}

async fn echo(
    axum::extract::Query(query): axum::extract::Query<std::collections::BTreeMap<String, String>>,
    body: Bytes,
) -> Response {
    let body: Value = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body).unwrap_or_else(|_| json!(String::from_utf8_lossy(&body)))
    };
    json_response(StatusCode::OK, &json!({"query": query, "body": body}))
}

async fn models(State(s): State<Arc<Shared>>) -> Response {
    let model = json!({"id": s.script.model, "object": "model", "created": 0, "owned_by": "scripted"});
    json_response(StatusCode::OK, &json!({"object": "list", "data": [model]}))
}

async fn stats(State(s): State<Arc<Shared>>) -> Response {
    let prompts = s.measured.prompts.lock().map(|p| p.clone()).unwrap_or_default();
    let stats = json!({
        "calls": s.calls.load(Ordering::Relaxed),
        "server_time_s": s.measured.handler_ns.load(Ordering::Relaxed) as f64 / 1e9,
        "prompt_tokens": s.tokens[0].load(Ordering::Relaxed),
        "completion_tokens": s.tokens[1].load(Ordering::Relaxed),
        "prompts": prompts,
    });
    json_response(StatusCode::OK, &stats)
}

/// Zeroes the counters `GET /stats` reports (the call counter too, so `first`/`every` faults
/// count again from the next call).
async fn reset(State(s): State<Arc<Shared>>) -> Response {
    s.calls.store(0, Ordering::Relaxed);
    s.tokens.iter().for_each(|t| t.store(0, Ordering::Relaxed));
    s.measured.handler_ns.store(0, Ordering::Relaxed);
    if let Ok(mut prompts) = s.measured.prompts.lock() {
        prompts.clear();
    }
    json_response(StatusCode::OK, &json!({"ok": true}))
}

fn json_response(status: StatusCode, value: &Value) -> Response {
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    (status, [(header::CONTENT_TYPE, "application/json")], bytes).into_response()
}

fn error_response(status: u16, message: &str) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_response(code, &wire::error(status, message))
}

/// An event stream of pre-rendered frames, `delay` apart; without a delay, one write.
/// Counts the stream in `shared` once it has ended (`ScriptedLlm::streams_finished`).
fn event_stream(frames: Vec<String>, delay: Duration, shared: &Shared) -> Response {
    let headers = [(header::CONTENT_TYPE, "text/event-stream"), (header::CACHE_CONTROL, "no-cache")];
    let finished = shared.streams_finished.clone();
    if delay.is_zero() {
        finished.fetch_add(1, Ordering::Relaxed);
        return (headers, frames.concat()).into_response();
    }
    let first = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let stream = futures::stream::iter(frames).then(move |frame| {
        let wait = !first.swap(false, Ordering::Relaxed);
        async move {
            if wait {
                tokio::time::sleep(delay).await;
            }
            Ok::<_, Infallible>(Bytes::from(frame))
        }
    });
    // Counted once the last frame has gone to the connection, so a test can tell whether a
    // client saw text while the model was still writing.
    let end = futures::stream::once(async move {
        finished.fetch_add(1, Ordering::Relaxed);
        Ok::<_, Infallible>(Bytes::new())
    });
    (headers, Body::from_stream(stream.chain(end))).into_response()
}

fn unix_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

impl Shared {
    /// [`Self::handle`], adding its time to the handler total (configured latency included: it
    /// stands for the model's own time).
    async fn timed(&self, api: Api, raw: &[u8]) -> Response {
        let started = std::time::Instant::now();
        let response = self.handle(api, raw).await;
        let ns = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.measured.handler_ns.fetch_add(ns, Ordering::Relaxed);
        response
    }

    fn count_version(&self, version: axum::http::Version) {
        if version == axum::http::Version::HTTP_2 {
            self.http2_calls.fetch_add(1, Ordering::Relaxed);
        }
    }

    async fn handle(&self, api: Api, raw: &[u8]) -> Response {
        let arrived = std::time::Instant::now();
        let call = self.calls.fetch_add(1, Ordering::Relaxed) + 1;
        let body: Value = match serde_json::from_slice(raw) {
            Ok(v @ Value::Object(_)) => v,
            Ok(_) => return error_response(400, "the body must be a JSON object"),
            Err(e) => return error_response(400, &format!("the body is not JSON: {e}")),
        };
        let required = match api {
            Api::Chat => "messages",
            Api::Responses => "input",
        };
        if body.get(required).is_none_or(Value::is_null) {
            return error_response(400, &format!("`{required}` is required"));
        }
        if let Some(recorded) = &self.recorded
            && let Ok(mut recorded) = recorded.lock()
        {
            recorded.push(body.clone());
        }
        if self.script.latency_ms > 0 {
            tokio::time::sleep(Duration::from_millis(self.script.latency_ms)).await;
        }
        if let Some(fault) = self.script.faults.iter().find(|f| f.hits(call)) {
            let message = fault.message.clone().unwrap_or_else(|| format!("scripted failure of call {call}"));
            let mut response = error_response(fault.status, &message);
            if let Some(seconds) = fault.retry_after {
                response.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from(seconds));
            }
            return response;
        }
        let view = View::read(api, &body);
        if view.stream
            && let Ok(mut at) = self.stream_requested.lock()
        {
            *at = Some(arrived);
        }
        let answer = self.script.answer(&view);
        if let Answer::Error { status, message } = &answer {
            return error_response(*status, message);
        }
        let tokens =
            Tokens { prompt: count(&view.prompt_text), completion: count(&answer.completion_text()) };
        self.tokens[0].fetch_add(tokens.prompt, Ordering::Relaxed);
        self.tokens[1].fetch_add(tokens.completion, Ordering::Relaxed);
        if let Ok(mut prompts) = self.measured.prompts.lock()
            && prompts.len() < PROMPTS_KEPT
        {
            prompts.push(tokens.prompt);
        }
        let ids = Ids { call, model: view.model.unwrap_or(&self.script.model), created: unix_secs() };
        let delay = Duration::from_millis(self.script.token_delay_ms);
        match (api, view.stream) {
            (Api::Chat, false) => {
                json_response(StatusCode::OK, &wire::chat_completion(&ids, &answer, tokens))
            }
            (Api::Chat, true) => {
                let chunks = wire::chat_chunks(&ids, &answer, tokens, view.include_usage);
                event_stream(chunks.into_iter().map(|d| format!("data: {d}\n\n")).collect(), delay, self)
            }
            (Api::Responses, false) => {
                json_response(StatusCode::OK, &wire::response(&ids, &body, Some(&answer), tokens))
            }
            (Api::Responses, true) => {
                let events = wire::response_events(&ids, &body, &answer, tokens);
                event_stream(
                    events.into_iter().map(|(e, d)| format!("event: {e}\ndata: {d}\n\n")).collect(),
                    delay,
                    self,
                )
            }
        }
    }
}
