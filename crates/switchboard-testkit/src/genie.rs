//! A local Databricks Genie Conversation API for tests: the documented endpoints and shapes
//! (`start-conversation`, follow-up `messages`, message polling through the status progression,
//! text and query attachments, `query-result` as a Statement Execution response, `execute-query`
//! for an expired result, `FAILED` messages with an error type), plus the failures a client must
//! survive: `429` with `Retry-After`, a space that never finishes, malformed JSON.
//!
//! What Genie answers is decided per question by a responder closure the test supplies, which
//! sees the question and the `Authorization` header (so a test can answer per token, the way
//! Genie applies the asker's row filters). Every request is recorded with its time, so tests can
//! check which token Genie received and how many `POST`s arrived in any window.

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A question as the local Genie received it.
#[derive(Debug, Clone)]
pub struct Ask {
    /// The space asked.
    pub space_id: String,
    /// The conversation it belongs to (fresh for `start-conversation`).
    pub conversation_id: String,
    /// Whether it was a follow-up (`POST …/conversations/{id}/messages`).
    pub follow_up: bool,
    /// The question text.
    pub content: String,
    /// The `Authorization` header as received.
    pub authorization: String,
}

/// One attachment of a completed message.
#[derive(Debug, Clone)]
pub enum Attachment {
    /// A text attachment: an explanation, or a clarifying question when no query follows.
    Text(String),
    /// A query attachment and the rows its statement returns.
    Query {
        /// The query's title.
        title: String,
        /// The SQL Genie ran.
        sql: String,
        /// Column names.
        columns: Vec<String>,
        /// Rows, aligned with `columns`; sent as strings (or `null`), as the Statement
        /// Execution API's `JSON_ARRAY` format does.
        rows: Vec<Vec<Value>>,
    },
}

/// How one message evolves and ends.
#[derive(Debug, Clone)]
pub struct Reply {
    statuses: Vec<String>,
    end: End,
    attachments: Vec<Attachment>,
    expired: bool,
    malformed: bool,
}

#[derive(Debug, Clone)]
enum End {
    Completed,
    Failed { error_type: String, message: String },
    Never,
}

impl Reply {
    /// A message that completes with `attachments`, after `SUBMITTED`, `ASKING_AI` and
    /// `EXECUTING_QUERY` (one status per poll).
    pub fn new(attachments: Vec<Attachment>) -> Self {
        Self {
            statuses: ["SUBMITTED", "ASKING_AI", "EXECUTING_QUERY"].map(String::from).to_vec(),
            end: End::Completed,
            attachments,
            expired: false,
            malformed: false,
        }
    }

    /// A message that completes with one query attachment.
    pub fn table(sql: &str, columns: &[&str], rows: Vec<Vec<Value>>) -> Self {
        Self::new(vec![query("Result", sql, columns, rows)])
    }

    /// A message that completes with only a text attachment: Genie asking for clarification.
    pub fn clarify(question: &str) -> Self {
        Self::new(vec![Attachment::Text(question.to_string())])
    }

    /// A message that ends `FAILED` with Genie's error `error_type` and `message`.
    pub fn failed(error_type: &str, message: &str) -> Self {
        Self {
            end: End::Failed { error_type: error_type.into(), message: message.into() },
            ..Self::new(Vec::new())
        }
    }

    /// A message that stays `EXECUTING_QUERY` forever: a slow space.
    pub fn never_finishes() -> Self {
        Self { end: End::Never, ..Self::new(Vec::new()) }
    }

    /// The statuses shown before the final one, one per poll.
    pub fn statuses(mut self, statuses: &[&str]) -> Self {
        self.statuses = statuses.iter().map(|s| s.to_string()).collect();
        self
    }

    /// Ends `QUERY_RESULT_EXPIRED`: `query-result` fails until `execute-query` re-runs it.
    pub fn expired(mut self) -> Self {
        self.expired = true;
        self
    }

    /// Polls of this message answer with a body that is not JSON.
    pub fn malformed(mut self) -> Self {
        self.malformed = true;
        self
    }
}

/// A query attachment.
pub fn query(title: &str, sql: &str, columns: &[&str], rows: Vec<Vec<Value>>) -> Attachment {
    Attachment::Query {
        title: title.into(),
        sql: sql.into(),
        columns: columns.iter().map(|c| c.to_string()).collect(),
        rows,
    }
}

/// One request the local Genie received.
#[derive(Debug, Clone)]
pub struct Seen {
    /// `GET` or `POST`.
    pub method: String,
    /// The path.
    pub path: String,
    /// The `Authorization` header.
    pub authorization: String,
    /// When it arrived.
    pub at: Instant,
    /// The status answered.
    pub status: u16,
}

type Responder = Arc<dyn Fn(&Ask) -> Reply + Send + Sync>;

struct Message {
    reply: Reply,
    content: String,
    conversation_id: String,
    polls: usize,
    rerun: bool,
}

#[derive(Default)]
struct State {
    seen: Vec<Seen>,
    conversations: HashMap<String, (String, Vec<String>)>,
    messages: HashMap<String, Message>,
    next_id: u64,
    throttle: Option<(usize, u64)>,
    post_limit: Option<(usize, Duration)>,
}

impl State {
    fn id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}{:028x}", self.next_id)
    }
}

/// A local Genie on 127.0.0.1, serving until dropped.
pub struct GenieServer {
    /// `http://127.0.0.1:PORT`, the workspace URL to point a connection at.
    pub url: String,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for GenieServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl GenieServer {
    /// Starts a server whose answers `responder` decides.
    pub async fn start(responder: impl Fn(&Ask) -> Reply + Send + Sync + 'static) -> Self {
        let state: Arc<Mutex<State>> = Arc::default();
        let responder: Responder = Arc::new(responder);
        let shared = state.clone();
        let app =
            axum::Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let state = shared.clone();
                let responder = responder.clone();
                async move { handle(&state, &responder, &method, uri.path(), &headers, &body) }
            });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the local Genie");
        let port = listener.local_addr().expect("local address").port();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { url: format!("http://127.0.0.1:{port}"), state, task }
    }

    /// The next `n` `POST`s answer `429 Too Many Requests` with `Retry-After: secs`.
    pub fn throttle_next_posts(&self, n: usize, secs: u64) {
        self.lock().throttle = Some((n, secs));
    }

    /// Enforces Genie's own limit: beyond `max` `POST`s in any `window`, answer `429`.
    pub fn limit_posts(&self, max: usize, window: Duration) {
        self.lock().post_limit = Some((max, window));
    }

    /// Every request so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.lock().seen.clone()
    }

    /// Waits until at least `n` `GET`s have arrived; panics after `timeout`.
    pub async fn wait_for_gets(&self, n: usize, timeout: Duration) {
        let start = Instant::now();
        while self.seen().iter().filter(|s| s.method == "GET").count() < n {
            assert!(start.elapsed() < timeout, "the local Genie saw fewer than {n} GETs in {timeout:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The `POST`s so far.
    pub fn posts(&self) -> Vec<Seen> {
        self.seen().into_iter().filter(|s| s.method == "POST").collect()
    }

    /// The most `POST`s that arrived within any span of `window`.
    pub fn max_posts_within(&self, window: Duration) -> usize {
        let times: Vec<Instant> = self.posts().iter().map(|s| s.at).collect();
        (0..times.len())
            .map(|i| times[i..].iter().take_while(|t| t.duration_since(times[i]) < window).count())
            .max()
            .unwrap_or(0)
    }

    /// The questions asked in `conversation_id`, in order.
    pub fn conversation(&self, conversation_id: &str) -> Vec<String> {
        let state = self.lock();
        let Some((_, ids)) = state.conversations.get(conversation_id) else { return Vec::new() };
        ids.iter().filter_map(|id| state.messages.get(id)).map(|m| m.content.clone()).collect()
    }

    /// How many conversations were started.
    pub fn conversation_count(&self) -> usize {
        self.lock().conversations.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (status, axum::Json(json!({"error_code": code, "message": message}))).into_response()
}

fn handle(
    state: &Mutex<State>,
    responder: &Responder,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    let authorization =
        headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
    let now = Instant::now();
    let response = route(&mut state, responder, method, path, &authorization, body, now);
    state.seen.push(Seen {
        method: method.to_string(),
        path: path.to_string(),
        authorization,
        at: now,
        status: response.status().as_u16(),
    });
    response
}

fn route(
    state: &mut State,
    responder: &Responder,
    method: &Method,
    path: &str,
    authorization: &str,
    body: &[u8],
    now: Instant,
) -> Response {
    if !authorization.starts_with("Bearer ") {
        return error(StatusCode::UNAUTHORIZED, "UNAUTHENTICATED", "no bearer token");
    }
    let Some(rest) = path.strip_prefix("/api/2.0/genie/spaces/") else {
        return error(StatusCode::NOT_FOUND, "ENDPOINT_NOT_FOUND", path);
    };
    let parts: Vec<&str> = rest.split('/').collect();
    if *method == Method::POST {
        if let Some((n, secs)) = state.throttle {
            state.throttle = (n > 1).then(|| (n - 1, secs));
            return too_many(secs);
        }
        if let Some((max, window)) = state.post_limit {
            let recent = state
                .seen
                .iter()
                .filter(|s| s.method == "POST" && s.status != 429 && now.duration_since(s.at) < window)
                .count();
            if recent >= max {
                return too_many(window.as_secs().max(1));
            }
        }
    }
    match (method.as_str(), parts.as_slice()) {
        ("POST", [space, "start-conversation"]) => {
            let conversation_id = state.id("01f0c0");
            state.conversations.insert(conversation_id.clone(), (space.to_string(), Vec::new()));
            ask(state, responder, space, &conversation_id, false, authorization, body)
        }
        ("POST", [space, "conversations", conversation, "messages"]) => {
            match state.conversations.get(*conversation) {
                Some((owner, _)) if owner == space => {}
                _ => return error(StatusCode::NOT_FOUND, "RESOURCE_DOES_NOT_EXIST", "no such conversation"),
            }
            ask(state, responder, space, conversation, true, authorization, body)
        }
        ("GET", [space, "conversations", conversation, "messages", message]) => {
            let Some(m) = state.messages.get_mut(*message) else {
                return error(StatusCode::NOT_FOUND, "RESOURCE_DOES_NOT_EXIST", "no such message");
            };
            if m.conversation_id != *conversation {
                return error(StatusCode::NOT_FOUND, "RESOURCE_DOES_NOT_EXIST", "no such message");
            }
            if m.reply.malformed {
                return ([("content-type", "application/json")], "{\"status\": \"COMPL").into_response();
            }
            m.polls += 1;
            axum::Json(message_json(space, message, m)).into_response()
        }
        ("GET", [_, "conversations", _, "messages", message, "attachments", attachment, "query-result"]) => {
            let Some(m) = state.messages.get(*message) else {
                return error(StatusCode::NOT_FOUND, "RESOURCE_DOES_NOT_EXIST", "no such message");
            };
            if m.reply.expired && !m.rerun {
                return error(StatusCode::BAD_REQUEST, "INVALID_STATE", "the query result has expired");
            }
            statement(m, attachment)
        }
        (
            "POST",
            [_, "conversations", _, "messages", message, "attachments", attachment, "execute-query"],
        ) => {
            let Some(m) = state.messages.get_mut(*message) else {
                return error(StatusCode::NOT_FOUND, "RESOURCE_DOES_NOT_EXIST", "no such message");
            };
            m.rerun = true;
            statement(m, attachment)
        }
        _ => error(StatusCode::NOT_FOUND, "ENDPOINT_NOT_FOUND", path),
    }
}

fn too_many(secs: u64) -> Response {
    (
        StatusCode::TOO_MANY_REQUESTS,
        [("retry-after", secs.to_string())],
        axum::Json(json!({"error_code": "RESOURCE_EXHAUSTED", "message": "Too many requests"})),
    )
        .into_response()
}

fn ask(
    state: &mut State,
    responder: &Responder,
    space: &str,
    conversation_id: &str,
    follow_up: bool,
    authorization: &str,
    body: &[u8],
) -> Response {
    let Ok(sent) = serde_json::from_slice::<Value>(body) else {
        return error(StatusCode::BAD_REQUEST, "INVALID_PARAMETER_VALUE", "the body is not JSON");
    };
    let Some(content) = sent["content"].as_str() else {
        return error(StatusCode::BAD_REQUEST, "INVALID_PARAMETER_VALUE", "content is required");
    };
    let question = Ask {
        space_id: space.to_string(),
        conversation_id: conversation_id.to_string(),
        follow_up,
        content: content.to_string(),
        authorization: authorization.to_string(),
    };
    let reply = responder(&question);
    let message_id = state.id("01f0d1");
    if let Some((_, ids)) = state.conversations.get_mut(conversation_id) {
        ids.push(message_id.clone());
    }
    let message = Message {
        reply,
        content: content.to_string(),
        conversation_id: conversation_id.to_string(),
        polls: 0,
        rerun: false,
    };
    let body = message_json(space, &message_id, &message);
    state.messages.insert(message_id.clone(), message);
    if follow_up {
        return axum::Json(body).into_response();
    }
    axum::Json(json!({
        "conversation_id": conversation_id,
        "message_id": message_id,
        "conversation": {"id": conversation_id, "space_id": space, "title": content},
        "message": body,
    }))
    .into_response()
}

/// The message as a poll sees it: one status of the progression per poll, then the end.
fn message_json(space: &str, message_id: &str, m: &Message) -> Value {
    let mut body = json!({
        "space_id": space,
        "conversation_id": m.conversation_id,
        "message_id": message_id,
        "id": message_id,
        "content": m.content,
        "created_timestamp": 1_760_000_000_000u64,
        "last_updated_timestamp": 1_760_000_000_000u64 + m.polls as u64,
        "user_id": 4242,
    });
    let status = match (m.reply.statuses.get(m.polls), &m.reply.end) {
        (Some(s), _) => s.clone(),
        (None, End::Never) => "EXECUTING_QUERY".into(),
        (None, End::Failed { error_type, message }) => {
            body["error"] = json!({"error": message, "type": error_type});
            "FAILED".into()
        }
        (None, End::Completed) => {
            body["attachments"] = attachments_json(&m.reply.attachments);
            if m.reply.expired && !m.rerun { "QUERY_RESULT_EXPIRED".into() } else { "COMPLETED".into() }
        }
    };
    body["status"] = json!(status);
    body
}

fn attachment_id(index: usize) -> String {
    format!("01f0a{index:027x}")
}

fn attachments_json(attachments: &[Attachment]) -> Value {
    let items: Vec<Value> = attachments
        .iter()
        .enumerate()
        .map(|(i, a)| match a {
            Attachment::Text(content) => json!({
                "attachment_id": attachment_id(i),
                "text": {"id": attachment_id(i), "content": content},
            }),
            Attachment::Query { title, sql, rows, .. } => json!({
                "attachment_id": attachment_id(i),
                "query": {
                    "id": attachment_id(i),
                    "title": title,
                    "description": format!("{title}, as Genie understood the question"),
                    "query": sql,
                    "statement_id": format!("stmt-{i}"),
                    "query_result_metadata": {"row_count": rows.len(), "is_truncated": false},
                },
            }),
        })
        .collect();
    Value::Array(items)
}

/// A Statement Execution response for the query attachment `attachment`.
fn statement(m: &Message, attachment: &str) -> Response {
    let found = m.reply.attachments.iter().enumerate().find_map(|(i, a)| match a {
        Attachment::Query { columns, rows, .. } if attachment_id(i) == attachment => Some((columns, rows)),
        _ => None,
    });
    let Some((columns, rows)) = found else {
        return error(StatusCode::NOT_FOUND, "RESOURCE_DOES_NOT_EXIST", "no such query attachment");
    };
    let type_of = |index: usize| match rows
        .iter()
        .map(|r| r.get(index).cloned().unwrap_or(Value::Null))
        .find(|v| !v.is_null())
    {
        Some(Value::Number(n)) if n.is_i64() => "LONG",
        Some(Value::Number(_)) => "DOUBLE",
        _ => "STRING",
    };
    let schema: Vec<Value> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| json!({"name": c, "position": i, "type_name": type_of(i), "type_text": type_of(i)}))
        .collect();
    let data: Vec<Vec<Value>> = rows
        .iter()
        .map(|r| {
            r.iter()
                .map(|v| match v {
                    Value::Null => Value::Null,
                    Value::String(s) => Value::String(s.clone()),
                    other => Value::String(other.to_string()),
                })
                .collect()
        })
        .collect();
    axum::Json(json!({"statement_response": {
        "statement_id": "stmt",
        "status": {"state": "SUCCEEDED"},
        "manifest": {
            "format": "JSON_ARRAY",
            "schema": {"column_count": columns.len(), "columns": schema},
            "total_row_count": rows.len(),
            "truncated": false,
        },
        "result": {"data_array": data, "row_count": rows.len(), "row_offset": 0, "chunk_index": 0},
    }}))
    .into_response()
}
