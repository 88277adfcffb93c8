//! Traces over HTTP: `GET /v1/traces/{id}` and the inline `databricks_output.trace` of
//! `return_trace`. The shape follows MLflow's trace JSON: `info` (request and trace ids, timing,
//! status) and `data.spans` (OpenTelemetry-style spans whose `mlflow.spanType` attribute carries
//! the MLflow span type).

use crate::{ApiError, AppState};
use axum::Json;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::HeaderMap;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::net::SocketAddr;
use switchboard_core::{Caller, Error, SpanRecord, SpanStatus};

/// The MLflow-like trace of one request; `spans` in start order.
pub(crate) fn trace_json(request_id: &str, spans: &[SpanRecord]) -> Value {
    let ids: HashSet<&str> = spans.iter().map(|s| s.span_id.as_str()).collect();
    // The root is the span whose parent is not part of this request (an incoming traceparent's
    // span lives in the caller's process).
    let root = spans.iter().find(|s| s.parent_id.as_deref().is_none_or(|p| !ids.contains(p)));
    let start = spans.iter().map(|s| s.start_unix_nano).min().unwrap_or(0);
    let end = spans.iter().map(|s| s.end_unix_nano).max().unwrap_or(0);
    let failed = root.is_some_and(|r| r.status == SpanStatus::Error);
    let spans: Vec<Value> = spans
        .iter()
        .map(|s| {
            json!({
                "name": s.name,
                "trace_id": s.trace_id,
                "span_id": s.span_id,
                "parent_span_id": s.parent_id,
                "span_type": s.kind.as_str(),
                "agent": s.agent,
                "start_time_unix_nano": s.start_unix_nano,
                "end_time_unix_nano": s.end_unix_nano,
                "status": {
                    "code": match s.status {
                        SpanStatus::Ok => "STATUS_CODE_OK",
                        SpanStatus::Error => "STATUS_CODE_ERROR",
                    },
                    "message": s.status_message.clone().unwrap_or_default(),
                },
                "attributes": s.attributes,
            })
        })
        .collect();
    json!({
        "info": {
            "request_id": request_id,
            "trace_id": root.map(|r| r.trace_id.as_str()),
            "timestamp_ms": start / 1_000_000,
            "execution_time_ms": end.saturating_sub(start) / 1_000_000,
            "status": if failed { "ERROR" } else { "OK" },
            "request_metadata": {},
            "tags": {},
        },
        "data": {"spans": spans},
    })
}

/// Whether `caller` made the request these spans belong to. A trace holds the caller's question
/// and route, so it is shown to its own caller only.
fn owned_by(spans: &[SpanRecord], caller: &Caller) -> bool {
    spans.iter().any(|s| {
        s.attributes
            .get("enduser.id")
            .and_then(Value::as_str)
            .is_some_and(|e| e.eq_ignore_ascii_case(caller.email()))
    })
}

/// `GET /v1/traces/{id}`: the caller's own request's span tree; 404 for an unknown id or
/// someone else's request (so ids cannot be probed).
pub(crate) async fn get(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let caller = state.auth.authenticate(&headers, peer).await?;
    let store = &state.runtime.store;
    // Spans are written off the request path; flushing makes a just-finished request visible.
    store.flush().await;
    let spans = store.spans(&id).await?;
    if spans.is_empty() || !owned_by(&spans, &caller) {
        return Err(ApiError::new(Error::not_found(format!(
            "no trace recorded for request `{}`",
            crate::chat::truncated(&id)
        )))
        .with_param("id")
        .with_code("trace_not_found"));
    }
    Ok(Json(trace_json(&id, &spans)))
}
