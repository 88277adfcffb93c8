//! The connections admin API: who holds `USE CONNECTION`, and granting and revoking it.
//!
//! | route | what |
//! |---|---|
//! | `GET /api/2.0/connections` | the declared connections (name, description, owner, auth) |
//! | `GET /api/2.0/connections/{name}/grants` | its active grants |
//! | `POST /api/2.0/connections/{name}/grants` | `{"principal": "east_sales"}` grants it |
//! | `DELETE /api/2.0/connections/{name}/grants/{principal}` | revokes it |
//!
//! Admins (the `admin` role) may administer every connection, and an owner their own; anyone
//! else gets 403. Every grant and revoke is an audit row, and the hop pipeline of every server
//! sharing the store sees it on its next hop.

use crate::{ApiError, AppState};
use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};
use std::net::SocketAddr;
use switchboard_core::{Caller, ConnectionSpec, Error};
use switchboard_runtime::Actor;

/// The body of a grant.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GrantBody {
    principal: String,
}

/// The caller, who must administer `connection`.
async fn administrator<'a>(
    state: &'a AppState,
    headers: &HeaderMap,
    peer: SocketAddr,
    connection: &str,
) -> Result<(Caller, &'a ConnectionSpec), ApiError> {
    let caller = state.auth.authenticate(headers, peer).await?;
    let grants = &state.runtime.grants;
    let spec = grants.connection(connection).map_err(|e| ApiError::new(e).with_param("name"))?;
    if !grants.may_administer(&caller, spec) {
        return Err(ApiError::new(Error::denied(format!(
            "{} (roles: {}) may not administer connection `{connection}`: the admin role or ownership is required",
            caller.email(),
            caller.groups().join(", ")
        ))));
    }
    Ok((caller, spec))
}

/// `GET /api/2.0/connections`: the declared connections, to any authenticated caller (no secrets).
pub(crate) async fn list(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    state.auth.authenticate(&headers, peer).await?;
    let connections: Vec<Value> = state
        .runtime
        .grants
        .connections()
        .iter()
        .map(|c| {
            json!({
                "name": c.name,
                "description": c.description,
                "owner": c.owner,
                "auth": c.auth.as_str(),
                "base_url": c.base_url,
            })
        })
        .collect();
    Ok(Json(json!({"connections": connections})))
}

/// `GET /api/2.0/connections/{name}/grants`.
pub(crate) async fn grants(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let (_, spec) = administrator(&state, &headers, peer, &name).await?;
    let grants = state.runtime.grants.list(Some(&name)).await?;
    Ok(Json(json!({"connection": name, "owner": spec.owner, "grants": grants})))
}

/// `POST /api/2.0/connections/{name}/grants` with `{"principal": "…"}`: 201 when granted, 200 when
/// it was already held.
pub(crate) async fn grant(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Result<Json<GrantBody>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let (caller, _) = administrator(&state, &headers, peer, &name).await?;
    let Json(body) = body.map_err(|e| {
        ApiError::new(Error::invalid(format!("the body must be {{\"principal\": \"…\"}}: {}", e.body_text())))
    })?;
    let changed = state
        .runtime
        .grants
        .grant(&Actor::caller(&caller), &name, &body.principal)
        .await
        .map_err(|e| ApiError::new(e).with_param("principal"))?;
    let status = if changed { StatusCode::CREATED } else { StatusCode::OK };
    Ok((
        status,
        Json(
            json!({"connection": name, "principal": body.principal.trim(), "privilege": "USE CONNECTION", "changed": changed}),
        ),
    ))
}

/// `DELETE /api/2.0/connections/{name}/grants/{principal}`: 200 with `changed` saying whether a
/// grant was removed.
pub(crate) async fn revoke(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path((name, principal)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let (caller, _) = administrator(&state, &headers, peer, &name).await?;
    let changed = state
        .runtime
        .grants
        .revoke(&Actor::caller(&caller), &name, &principal)
        .await
        .map_err(|e| ApiError::new(e).with_param("principal"))?;
    Ok(Json(
        json!({"connection": name, "principal": principal, "privilege": "USE CONNECTION", "changed": changed}),
    ))
}
