//! What happens around every request: its request id (the client's, if sane, else a new one),
//! a tracing span carrying that id, one access-log line, metrics, the `x-request-id` response
//! header, and turning any framework-made error (405, a body-limit 413, an unknown route) into
//! OpenAI's error object.

use crate::{ApiError, AppState};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::time::Instant;
use switchboard_core::{Error, ErrorKind, RequestId};
use tracing::Instrument;

/// The tracing target of the one-line-per-request access log.
pub const ACCESS_LOG_TARGET: &str = "switchboard::access";

/// The middleware.
pub(crate) async fn observe(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let _in_flight = state.metrics.in_flight();
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .and_then(RequestId::parse)
        .unwrap_or_default();
    request.extensions_mut().insert(request_id.clone());
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    // Under the access-log target, so the filter that shows the access log also keeps the span
    // (and with it the request id on every log line the request causes).
    let span = tracing::info_span!(
        target: ACCESS_LOG_TARGET,
        "request",
        request_id = %request_id,
        method = %method,
        path = %path
    );

    let response = next.run(request).instrument(span.clone()).await;
    let mut response = shape_error(response, &state, &method);
    if let Ok(v) = HeaderValue::from_str(request_id.as_str()) {
        response.headers_mut().insert("x-request-id", v);
    }
    let status = response.status().as_u16();
    let latency = started.elapsed();
    state.metrics.request(&route, method.as_str(), status, latency);
    span.in_scope(|| {
        tracing::info!(
            target: ACCESS_LOG_TARGET,
            method = %method,
            path = %path,
            status,
            latency_ms = latency.as_micros() as f64 / 1e3,
            request_id = %request_id,
            "request"
        )
    });
    response
}

/// Replaces a non-JSON error response made by the framework with the error object, keeping its
/// status and headers (e.g. `allow` on a 405).
fn shape_error(response: Response, state: &AppState, method: &Method) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (kind, message) = match status {
        StatusCode::PAYLOAD_TOO_LARGE => (
            ErrorKind::TooLarge,
            format!("the request body is larger than the limit of {} bytes", state.body_limit()),
        ),
        StatusCode::METHOD_NOT_ALLOWED => {
            (ErrorKind::InvalidInput, format!("method {method} is not allowed on this route"))
        }
        StatusCode::NOT_FOUND => (ErrorKind::NotFound, "no such route".to_string()),
        s if s.is_client_error() => {
            (ErrorKind::InvalidInput, s.canonical_reason().unwrap_or("bad request").to_lowercase())
        }
        s => (ErrorKind::Internal, s.canonical_reason().unwrap_or("server error").to_lowercase()),
    };
    let (mut parts, _) = response.into_parts();
    let shaped = ApiError::new(Error::new(kind, message)).into_response();
    let (shaped_parts, body) = shaped.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.extend(shaped_parts.headers);
    Response::from_parts(parts, body)
}

/// The fallback: an unknown route is a 404 in the error shape.
pub(crate) async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::new(Error::not_found(format!("no route for {method} {}", uri.path())))
}
