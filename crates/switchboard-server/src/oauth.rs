//! Per-user OAuth connections: a signed-in user connects their own account at the provider, and
//! later hops through the connection carry that user's token (see `switchboard_auth::PerUserOAuth`).
//!
//! | route | what |
//! |---|---|
//! | `GET /oauth/connect/{connection}` | the caller starts consenting: 303 to the provider (`Accept: application/json` gives `{"authorize_url"}` instead) |
//! | `GET /oauth/callback` | the provider sends the user back here; the code is exchanged and the refresh token sealed in the store |
//! | `GET /oauth/connections` | the caller's per-user connections: connected or not, and where to connect |
//! | `DELETE /oauth/connections/{connection}` | the caller disconnects: their tokens are forgotten |
//!
//! Connecting needs `USE CONNECTION` on the connection, as every hop through it does. The
//! callback carries no bearer token (it is a browser navigation from the provider): the `state`
//! it returns was bound to the caller who started, and is accepted once, within ten minutes, and
//! only with the `sb_oauth_flow` cookie that `connect` set in the caller's browser. Without that
//! cookie, a connect link started by one user and opened by another would connect the second
//! user's account under the first one's name (RFC 6749 §10.12).

use crate::{ApiError, AppState};
use axum::Json;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;
use switchboard_auth::{BINDING_COOKIE, CallbackParams, PerUserOAuth};
use switchboard_core::{Caller, Error};

/// The per-user connection `name`, or a 404 naming it.
fn client(state: &AppState, name: &str) -> Result<Arc<PerUserOAuth>, ApiError> {
    state.runtime.user_oauth.get(name).cloned().ok_or_else(|| {
        ApiError::new(Error::not_found(format!(
            "`{name}` is not a per-user OAuth connection (auth = \"oauth_per_user\")"
        )))
        .with_param("connection")
    })
}

/// Whether `caller` may use connection `name`: its owner, or a holder of USE CONNECTION.
fn may_use(state: &AppState, caller: &Caller, name: &str) -> bool {
    let mut principals = vec![caller.email(), caller.subject()];
    principals.extend(caller.groups().iter().map(String::as_str));
    let owner = state.runtime.grants.connection(name).ok().and_then(|c| c.owner.as_deref());
    owner.is_some_and(|o| principals.contains(&o))
        || state.runtime.grants.checker().is_granted(name, &principals)
}

/// `GET /oauth/connect/{connection}`.
pub(crate) async fn connect(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let caller = state.auth.authenticate(&headers, peer).await?;
    let client = client(&state, &name)?;
    if !may_use(&state, &caller, &name) {
        return Err(ApiError::new(Error::denied(format!(
            "access denied: {} (roles: {}) holds no USE CONNECTION grant on `{name}`",
            caller.email(),
            caller.groups().join(", ")
        ))));
    }
    let started = client.authorize(caller.subject())?;
    let url = started.url.as_str();
    let wants_json = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"));
    let mut response = if wants_json {
        Json(json!({"connection": name, "authorize_url": url})).into_response()
    } else {
        Redirect::to(url).into_response()
    };
    let cookie = HeaderValue::from_str(&client.binding_cookie(&started.binding))
        .map_err(|_| Error::internal("the sign-in cookie is not a valid header value"))?;
    response.headers_mut().append(header::SET_COOKIE, cookie);
    Ok(response)
}

/// The flow binding the browser brought back in its `Cookie` headers.
fn binding(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(BINDING_COOKIE)?.strip_prefix('='))
        .filter(|v| !v.is_empty())
}

/// `GET /oauth/callback`: answers a small page for the browser, connected or why not.
pub(crate) async fn callback(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(params): Query<CallbackParams>,
) -> Response {
    let state_value = params.state.as_deref().unwrap_or_default();
    let found =
        PerUserOAuth::connection_of_state(state_value).and_then(|n| state.runtime.user_oauth.get(n).cloned());
    let Some(client) = found else {
        let e = Error::invalid(
            "this sign-in is unknown: the `state` names no per-user connection; start again from the connect link",
        );
        return page(StatusCode::BAD_REQUEST, "Not connected", &e.message);
    };
    match client.complete(&params, binding(&headers)).await {
        Ok(_) => {
            let mut response = page(
                StatusCode::OK,
                "Connected",
                &format!(
                    "Your account is connected to `{}`. You can close this tab and ask again.",
                    client.name()
                ),
            );
            // Only on success: the cookie then belonged to this flow. A failed callback (which
            // anyone can make a browser open) must not cancel a flow still under way.
            if let Ok(spent) = HeaderValue::from_str(&client.spent_binding_cookie()) {
                response.headers_mut().append(header::SET_COOKIE, spent);
            }
            response
        }
        Err(e) => {
            tracing::warn!(connection = %client.name(), error = %e.message, "a per-user OAuth sign-in failed");
            let status = StatusCode::from_u16(e.kind.http_status()).unwrap_or(StatusCode::BAD_GATEWAY);
            page(status, "Not connected", &e.message)
        }
    }
}

/// `GET /oauth/connections`.
pub(crate) async fn list(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let caller = state.auth.authenticate(&headers, peer).await?;
    let mut names: Vec<&String> = state.runtime.user_oauth.keys().collect();
    names.sort();
    let mut out = Vec::new();
    for name in names {
        let client = &state.runtime.user_oauth[name];
        out.push(json!({
            "connection": name,
            "connected": client.connected(caller.subject()).await?,
            "may_use": may_use(&state, &caller, name),
            "connect_url": client.consent_link(),
        }));
    }
    Ok(Json(json!({"connections": out})))
}

/// `DELETE /oauth/connections/{connection}`: 200 with `disconnected` saying whether there was
/// anything to forget.
pub(crate) async fn disconnect(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let caller = state.auth.authenticate(&headers, peer).await?;
    let client = client(&state, &name)?;
    let disconnected = client.disconnect(caller.subject()).await?;
    Ok(Json(json!({"connection": name, "connected": false, "disconnected": disconnected})))
}

/// A minimal HTML page; `message` is escaped.
fn page(status: StatusCode, title: &str, message: &str) -> Response {
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title></head>\
         <body><main><h1>{title}</h1><p id=\"message\">{}</p></main></body></html>",
        escape(message)
    );
    (status, [(header::CACHE_CONTROL, "no-store")], Html(body)).into_response()
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}
