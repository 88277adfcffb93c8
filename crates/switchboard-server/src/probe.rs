//! Optional bearer tokens in front of `/health` and `/metrics` (`[server] health_token`,
//! `metrics_token`): what they reveal (sub-agents, their state, traffic) is for operators.

use crate::{ApiError, AppState};
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use switchboard_core::{Error, ErrorKind, SecretRef};
use switchboard_govern::layers::read_secret;

/// Requires `[server] health_token`, when configured.
pub(crate) async fn health(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let required = state.runtime.config.config.server.health_token.clone();
    guard(required.as_ref(), "health", request, next).await
}

/// Requires `[server] metrics_token`, when configured.
pub(crate) async fn metrics(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let required = state.runtime.config.config.server.metrics_token.clone();
    guard(required.as_ref(), "metrics", request, next).await
}

async fn guard(required: Option<&SecretRef>, what: &str, request: Request, next: Next) -> Response {
    let Some(reference) = required else {
        return next.run(request).await;
    };
    // Read at every request, so the token can be rotated without a restart; an unreadable token
    // closes the endpoint rather than opening it.
    let expected = match read_secret(reference) {
        Ok(secret) => secret,
        Err(_) => {
            tracing::warn!(endpoint = what, "the {what} token cannot be read; refusing the request");
            return ApiError::new(Error::internal(format!("the {what} token is not available")))
                .into_response();
        }
    };
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    match presented {
        Some(token)
            if !expected.expose().is_empty() && equal(token.as_bytes(), expected.expose().as_bytes()) =>
        {
            next.run(request).await
        }
        _ => ApiError::new(Error::new(
            ErrorKind::Unauthenticated,
            format!("/{what} requires the bearer token configured as [server] {what}_token"),
        ))
        .into_response(),
    }
}

/// Compares in time that depends only on the lengths, so the token cannot be guessed byte by byte.
fn equal(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for (i, x) in a.iter().enumerate() {
        diff |= usize::from(x ^ b.get(i % b.len().max(1)).copied().unwrap_or(0));
    }
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::equal;

    #[test]
    fn equal_only_for_identical_bytes() {
        assert!(equal(b"s3cret", b"s3cret"));
        assert!(!equal(b"s3cret", b"s3creT"));
        assert!(!equal(b"s3cret", b"s3cret!"));
        assert!(!equal(b"", b"x"));
        assert!(!equal(b"x", b""));
    }
}
