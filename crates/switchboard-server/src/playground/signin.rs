//! Signing in to the playground as a development identity: the list of the demo's identities and
//! a token for one. Both exist only while the development identity provider is on (no `[auth]`
//! section), which `serve` allows on loopback addresses only unless told otherwise; with a real
//! identity provider the page asks for a token instead.
//!
//! Both answer only peers on this machine: `--dev-idp-on-public-address` exposes the provider's
//! keys and OAuth endpoints, not a button that makes anyone anybody.
//!
//! The token endpoint takes JSON only: a cross-site page cannot send that without a CORS
//! preflight, which is never granted, so it cannot mint tokens through a visitor's browser.

use crate::{ApiError, AppState};
use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use std::net::SocketAddr;
use switchboard_core::Error;
use switchboard_runtime::identity::DEV_TOKEN_TTL;

/// The body of a token request.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TokenBody {
    email: String,
}

/// `GET /playground/identities`: whether development sign-in is on, and the identities with
/// their roles (an empty list when it is off).
pub(crate) async fn identities(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
) -> Json<Value> {
    let dev = state.runtime.identity.dev().filter(|_| peer.ip().is_loopback());
    let identities: Vec<Value> = dev
        .map(|dev| dev.users().iter().map(|u| json!({"email": u.email, "roles": u.roles})).collect())
        .unwrap_or_default();
    Json(json!({"development": dev.is_some(), "identities": identities}))
}

/// `POST /playground/token` with `{"email": "…"}`: a development token for that identity, as
/// `switchboard token --as` mints it. 404 when the development provider is off, 403 for a peer on
/// another machine, 400 for an identity it does not know.
pub(crate) async fn token(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: Result<Json<TokenBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let dev = state.runtime.identity.dev().ok_or_else(|| {
        ApiError::new(Error::not_found(
            "development sign-in is off because [auth] is configured; paste a token from your identity provider",
        ))
    })?;
    if !peer.ip().is_loopback() {
        return Err(ApiError::new(Error::denied(
            "development sign-in is served to this machine only; paste a token instead",
        )));
    }
    let Json(body) = body.map_err(|e| {
        ApiError::new(Error::invalid(format!("the body must be {{\"email\": \"…\"}}: {}", e.body_text())))
    })?;
    let Some(user) = dev.users().iter().find(|u| u.email.eq_ignore_ascii_case(body.email.trim())) else {
        let known: Vec<&str> = dev.users().iter().map(|u| u.email.as_str()).collect();
        return Err(ApiError::new(Error::invalid(format!(
            "unknown development identity `{}`; known: {}",
            crate::chat::truncated(&body.email),
            known.join(", ")
        )))
        .with_param("email"));
    };
    let token = dev.token_for(&user.email, None, DEV_TOKEN_TTL).map_err(ApiError::new)?;
    let body = json!({
        "access_token": token.expose(),
        "token_type": "Bearer",
        "expires_in": DEV_TOKEN_TTL.as_secs(),
        "email": user.email,
        "roles": user.roles,
    });
    Ok(([(header::CACHE_CONTROL, "no-store")], Json(body)).into_response())
}
