//! What happens around every request: its request id (always the server's own), a tracing span
//! carrying that id, one access-log line, metrics, the `x-request-id` response header, and
//! turning any framework-made error (405, a body-limit 413, an extractor's 400, an unknown route)
//! into OpenAI's error object.
//!
//! A client's own `x-request-id` is only a correlation attribute (`client_request_id` on the
//! request span and access log, echoed as `x-client-request-id`): the request id keys spans,
//! audit rows and `/v1/traces/{id}`, so adopting a client's would let one caller file their
//! request under another's id.

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

/// The header a request id travels in, both ways.
const REQUEST_ID_HEADER: &str = "x-request-id";

/// The longest request target served. hyper refuses targets over 64 KiB itself, with a 414 that
/// has no body and never reaches this middleware; a lower limit here answers the rest with an
/// error object.
const MAX_URI: usize = 8 * 1024;

/// The most header bytes (names and values) served, for the same reason: hyper's own limit (its
/// read buffer, ~400 KiB) answers with an empty 431.
const MAX_HEADER_BYTES: usize = 64 * 1024;

/// How much of the path the span and the access log keep.
const MAX_LOGGED_PATH: usize = 512;

/// The middleware.
pub(crate) async fn observe(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let _in_flight = state.metrics.in_flight();
    let request_id = RequestId::new();
    // Only a sane token is kept (and echoed), so the header cannot smuggle anything into logs.
    let client_request_id =
        request.headers().get(REQUEST_ID_HEADER).and_then(|v| v.to_str().ok()).and_then(RequestId::parse);
    request.extensions_mut().insert(request_id.clone());
    let method = request.method().clone();
    // Logged and put on the span cut short: the path is the client's to make long.
    let path: String = request.uri().path().chars().take(MAX_LOGGED_PATH).collect();
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
        switchboard.client_request_id = client_request_id.as_ref().map(RequestId::as_str),
        method = %method,
        path = %path
    );

    let oversized = if request.uri().to_string().len() > MAX_URI {
        Some(StatusCode::URI_TOO_LONG)
    } else if request.headers().iter().map(|(k, v)| k.as_str().len() + v.len()).sum::<usize>()
        > MAX_HEADER_BYTES
    {
        Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
    } else {
        None
    };
    let response = match oversized {
        // Shaped into an error object below, like every framework-made error.
        Some(status) => status.into_response(),
        None => next.run(request).instrument(span.clone()).await,
    };
    let mut response = shape_error(response, &state, &method);
    if let Ok(v) = HeaderValue::from_str(request_id.as_str()) {
        response.headers_mut().insert(REQUEST_ID_HEADER, v);
    }
    if let Some(v) = client_request_id.and_then(|id| HeaderValue::from_str(id.as_str()).ok()) {
        response.headers_mut().insert("x-client-request-id", v);
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
    // JSON errors are ours already; HTML error pages are made on purpose, for a browser (the
    // OAuth callback's).
    let deliberate = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json") || v.starts_with("text/html"));
    if !(status.is_client_error() || status.is_server_error()) || deliberate {
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
