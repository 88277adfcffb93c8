//! OpenAI-compatible chat completions.

use crate::{ApiError, AppState};
use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::net::SocketAddr;
use switchboard_core::{Error, Message, Role};
use switchboard_runtime::RunRequest;

/// `GET /health`: the store answers.
pub async fn health(State(state): State<AppState>) -> Response {
    match state.runtime.store.health().await {
        Ok(()) => Json(json!({"status": "ok", "checks": {"store": "ok"}})).into_response(),
        Err(e) => (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "unavailable", "checks": {"store": e.message}})),
        )
            .into_response(),
    }
}

/// Reads OpenAI `messages` into the new question and the history before it.
pub fn parse_messages(body: &Value) -> Result<RunRequest, Error> {
    let messages = body
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| Error::invalid("`messages` must be a non-empty array"))?;
    let mut parsed = Vec::with_capacity(messages.len());
    for (i, m) in messages.iter().enumerate() {
        let role = match m.get("role").and_then(Value::as_str) {
            Some("user") => Role::User,
            Some("assistant") => Role::Assistant,
            Some("system" | "developer") => Role::System,
            Some("tool") => Role::Tool,
            other => return Err(Error::invalid(format!("messages[{i}].role: unsupported role {other:?}"))),
        };
        let content = match m.get("content") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Array(parts)) => parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join("\n"),
            Some(Value::Null) | None if role == Role::Assistant => String::new(),
            _ => {
                return Err(Error::invalid(format!(
                    "messages[{i}].content must be a string or an array of text parts"
                )));
            }
        };
        parsed.push(Message { role, content, agent: None });
    }
    match parsed.pop() {
        Some(last) if last.role == Role::User && !last.content.trim().is_empty() => {
            Ok(RunRequest { question: last.content, history: parsed, ..Default::default() })
        }
        Some(_) => Err(Error::invalid("the last message must be a non-empty user message")),
        None => Err(Error::invalid("`messages` must be a non-empty array")),
    }
}

/// `POST /v1/chat/completions`.
pub async fn chat_completions(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<Response, ApiError> {
    let caller = state.auth.authenticate(&headers, peer).await?;
    let Json(body) = body.map_err(|e| Error::invalid(format!("malformed JSON body: {}", e.body_text())))?;
    let supervisor = &state.runtime.supervisor;
    let model = body.get("model").and_then(Value::as_str).unwrap_or(supervisor.name());
    if model != supervisor.name() {
        return Err(Error::not_found(format!(
            "unknown model `{model}`; this server serves `{}`",
            supervisor.name()
        ))
        .into());
    }
    let request = parse_messages(&body)?;
    let ctx = state.runtime.context(caller);
    let result = supervisor.run(&ctx, request).await;
    let created =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let body = json!({
        "id": format!("chatcmpl-{}", result.request_id),
        "object": "chat.completion",
        "created": created,
        "model": supervisor.name(),
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": result.answer},
            "finish_reason": "stop"
        }],
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
        "switchboard": {"status": result.status, "agents": result.agents, "request_id": result.request_id},
    });
    let mut response = Json(body).into_response();
    if let Ok(v) = HeaderValue::from_str(&result.request_id) {
        response.headers_mut().insert("x-request-id", v);
    }
    Ok(response)
}
