//! `GET /api/2.0/audit?request_id=ID`: the audit rows of one request, for the playground and any
//! client that shows what a request did.
//!
//! Who reads what follows the policy that already governs the audit log: a caller whose roles may
//! use an agent that reads the store's `audit` table (the demo's `audit` agent: executive and
//! admin) sees every row of the request; anyone else sees only the rows of their own calls. A
//! request with no rows the caller may see answers an empty list, as an unknown one does, so ids
//! cannot be probed.

use crate::{ApiError, AppState};
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::HeaderMap;
use serde::Deserialize;
use serde_json::{Value, json};
use std::net::SocketAddr;
use switchboard_core::{AgentKind, AgentSpec, Caller, Error};
use switchboard_govern::layers::role_allows;

/// The longest request id accepted; ids are keys, not documents.
const MAX_REQUEST_ID: usize = 128;

/// The query string.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuditQuery {
    request_id: String,
}

/// Whether `spec` reads the audit log: a tool agent with the store's `audit` table allow-listed.
fn reads_audit(spec: &AgentSpec) -> bool {
    spec.kind == AgentKind::Tool
        && spec
            .settings
            .get("tables")
            .and_then(Value::as_array)
            .is_some_and(|tables| tables.iter().any(|t| t.as_str() == Some("audit")))
}

/// Whether `caller` may read every audit row: their roles allow an agent that reads the log.
fn reads_everyone(state: &AppState, caller: &Caller) -> bool {
    state.runtime.supervisor.agent_specs().any(|spec| reads_audit(spec) && role_allows(spec, caller))
}

/// `GET /api/2.0/audit?request_id=ID`.
pub(crate) async fn for_request(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    query: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let caller = state.auth.authenticate(&headers, peer).await?;
    let Query(query) = query.map_err(|e| {
        ApiError::new(Error::invalid(format!("expected ?request_id=ID: {}", e.body_text())))
            .with_param("request_id")
    })?;
    let id = query.request_id.trim();
    if id.is_empty() || id.len() > MAX_REQUEST_ID {
        return Err(ApiError::invalid_field(
            "request_id",
            format!("request_id must be 1 to {MAX_REQUEST_ID} characters"),
        ));
    }
    let everyone = reads_everyone(&state, &caller);
    let store = &state.runtime.store;
    // Audit rows are written off the request path; flushing makes a just-finished request visible.
    store.flush().await;
    let rows: Vec<_> = store
        .audit_for_request(id)
        .await?
        .into_iter()
        .filter(|row| everyone || row.caller_email.eq_ignore_ascii_case(caller.email()))
        .collect();
    Ok(Json(json!({
        "request_id": id,
        "scope": if everyone { "all" } else { "own" },
        "rows": rows,
    })))
}
