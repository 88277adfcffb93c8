//! Stored responses, as OpenAI's Responses API keeps them: `store` (default true on
//! `/v1/responses`) saves each response with the conversation through it, `previous_response_id`
//! continues that conversation, and `GET` / `DELETE /v1/responses/{id}` read and remove it.
//!
//! A stored response belongs to the caller who created it. Every lookup is scoped by the caller's
//! subject, so another caller's id, an unknown id and an expired one are the same 404: ids cannot
//! be probed. Responses older than `[store] responses_retention_days` read as gone at once and are
//! purged in the background, at most once per [`PURGE_EVERY`].

use crate::chat::truncated;
use crate::input::Object;
use crate::{ApiError, AppState};
use axum::Json;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::HeaderMap;
use serde_json::{Map, Value, json};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use switchboard_core::{Error, Message, RunContext, unix_nanos_now};
use switchboard_runtime::{RunRequest, RunResponse};
use switchboard_store::StoredResponse;

/// How often at most expired responses are purged, in milliseconds: purging is housekeeping (reads
/// already treat expired responses as gone), so one sweep an hour is plenty.
const PURGE_EVERY: u64 = 60 * 60 * 1000;

const DAY_MS: u64 = 24 * 60 * 60 * 1000;

/// When this process last purged expired responses (ms since the epoch); shared by the server's
/// handlers through [`AppState`].
#[derive(Debug, Default)]
pub(crate) struct Housekeeping {
    last_purge_unix_ms: AtomicU64,
}

/// What one Responses request asked of storage, read before the run.
#[derive(Debug, Default)]
pub(crate) struct Storage {
    /// Whether to store this response.
    store: bool,
    /// The stored response this one continues.
    previous_id: Option<String>,
    /// The conversation up to and including the new question, when the response is stored.
    turns: Vec<Message>,
    /// Request fields the Response object echoes: `instructions`, `previous_response_id`.
    pub echo: Map<String, Value>,
}

fn now_ms() -> u64 {
    unix_nanos_now() / 1_000_000
}

/// The oldest creation time still within retention.
fn not_before(state: &AppState) -> u64 {
    match u64::from(state.runtime.config.config.store.responses_retention_days) {
        0 => 0,
        days => now_ms().saturating_sub(days * DAY_MS),
    }
}

fn not_found(param: Option<&str>, id: &str) -> ApiError {
    let error = ApiError::new(Error::not_found(format!("no response with id `{}` was found", truncated(id))));
    match param {
        Some(param) => error.with_param(param),
        None => error,
    }
}

/// Reads `store`, `previous_response_id` and `instructions` from `body`. A continued response's
/// conversation goes before the request's own history, so the follow-up is resolved against it
/// exactly as if the client had sent those turns itself. `store_by_default` is `store`'s default:
/// true for `/v1/responses`, as OpenAI's; false for `/invocations`, whose ResponsesAgent protocol
/// has no stored responses.
pub(crate) async fn prepare(
    state: &AppState,
    ctx: &RunContext,
    body: &Object,
    request: &mut RunRequest,
    store_by_default: bool,
) -> Result<Storage, ApiError> {
    let store = match body.get("store") {
        None | Some(Value::Null) => store_by_default,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(ApiError::invalid_field("store", "must be a boolean")),
    };
    let mut echo = Map::new();
    match body.get("instructions") {
        None | Some(Value::Null) => {}
        Some(v @ (Value::String(_) | Value::Array(_))) => {
            echo.insert("instructions".into(), v.clone());
        }
        Some(_) => {
            return Err(ApiError::invalid_field("instructions", "must be a string or an array of messages"));
        }
    }
    let previous_id = match body.get("previous_response_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(id)) if !id.trim().is_empty() => Some(id.clone()),
        Some(_) => return Err(ApiError::invalid_field("previous_response_id", "must be a non-empty string")),
    };
    if let Some(id) = &previous_id {
        let owner = ctx.caller.subject();
        let previous = state
            .runtime
            .store
            .response(owner, id, not_before(state))
            .await?
            .ok_or_else(|| not_found(Some("previous_response_id"), id))?;
        let mut history = previous.turns;
        history.append(&mut request.history);
        request.history = history;
        echo.insert("previous_response_id".into(), json!(id));
    }
    let turns = if store {
        let mut turns = request.history.clone();
        turns.push(Message::user(request.question.clone()));
        turns
    } else {
        Vec::new()
    };
    Ok(Storage { store, previous_id, turns, echo })
}

impl Storage {
    /// Stores the completed Response object `body` (without any inline trace: spans have their
    /// own endpoint) under `id`, when `store` asked for it. A store failure is logged, not
    /// answered: the caller already has the answer, only a later continuation would miss it.
    pub(crate) async fn save(
        self,
        state: &AppState,
        ctx: &RunContext,
        id: &str,
        run: &RunResponse,
        body: Value,
    ) {
        if !self.store {
            return;
        }
        let mut turns = self.turns;
        // Attributed as a stored thread turn is, so a continuation keeps the agent's context.
        let agent = match run.agents.as_slice() {
            [only] => Some(only.clone()),
            _ => None,
        };
        turns.push(Message::assistant(run.answer.clone(), agent));
        let stored = StoredResponse {
            id: id.to_string(),
            owner: ctx.caller.subject().to_string(),
            previous_id: self.previous_id,
            turns,
            body,
            created_unix_ms: now_ms(),
        };
        if let Err(e) = state.runtime.store.put_response(&stored).await {
            tracing::warn!(error = %e, "the response could not be stored");
        }
        purge_if_due(state);
    }
}

/// Starts a purge of expired responses in the background if none ran for [`PURGE_EVERY`].
fn purge_if_due(state: &AppState) {
    let retention = u64::from(state.runtime.config.config.store.responses_retention_days);
    if retention == 0 {
        return;
    }
    let now = now_ms();
    let last = &state.responses.last_purge_unix_ms;
    let previous = last.load(Ordering::Relaxed);
    // One handler wins the exchange; the others see the new time and skip.
    if now.saturating_sub(previous) < PURGE_EVERY
        || last.compare_exchange(previous, now, Ordering::Relaxed, Ordering::Relaxed).is_err()
    {
        return;
    }
    let (store, before) = (state.runtime.store.clone(), now.saturating_sub(retention * DAY_MS));
    state.tasks.spawn(async move {
        match store.purge_responses(before).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(purged = n, "expired stored responses purged"),
            Err(e) => tracing::warn!(error = %e, "purging expired stored responses failed"),
        }
    });
}

/// `GET /v1/responses/{id}`: the caller's stored response object.
pub(crate) async fn get(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let caller = state.auth.authenticate(&headers, peer).await?;
    let stored = state.runtime.store.response(caller.subject(), &id, not_before(&state)).await?;
    stored.map(|s| Json(s.body)).ok_or_else(|| not_found(None, &id))
}

/// `DELETE /v1/responses/{id}`: deletes the caller's stored response.
pub(crate) async fn delete(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let caller = state.auth.authenticate(&headers, peer).await?;
    let store = &state.runtime.store;
    // An expired response is gone already: deleting it is a 404 like reading it.
    if store.response(caller.subject(), &id, not_before(&state)).await?.is_none()
        || !store.delete_response(caller.subject(), &id).await?
    {
        return Err(not_found(None, &id));
    }
    Ok(Json(json!({"id": id, "object": "response.deleted", "deleted": true})))
}
