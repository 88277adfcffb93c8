//! Every error leaves the server as OpenAI's error object, so OpenAI clients raise their usual
//! exception classes (`BadRequestError`, `AuthenticationError`, `PermissionDeniedError`, …).

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use switchboard_core::{CONSENT_REQUIRED, Error, ErrorKind};

/// An error answered as `{"error": {"message", "type", "param", "code"}}` with the status of its
/// kind (`ErrorKind::http_status`), `retry-after` for rate limits and `WWW-Authenticate` for 401.
#[derive(Debug)]
pub struct ApiError {
    /// What went wrong; its message is shown to the client and must hold no secret.
    pub error: Error,
    /// The request field at fault, e.g. `messages[0].content`.
    pub param: Option<String>,
    /// A more specific machine-readable code than the kind's name, e.g. `model_not_found`.
    pub code: Option<&'static str>,
}

impl ApiError {
    /// An error with no field or code of its own.
    pub fn new(error: Error) -> Self {
        // A hop refused until its user consents keeps its code, so clients can offer the link.
        let consent = error.kind == ErrorKind::Denied && error.consent_url.is_some();
        Self { error, param: None, code: consent.then_some(CONSENT_REQUIRED) }
    }

    /// A 400 naming the field at fault (its path is also the `param`).
    pub fn invalid_field(param: impl Into<String>, message: impl Into<String>) -> Self {
        let param = param.into();
        let message = message.into();
        Self::new(Error::invalid(format!("{param}: {message}"))).with_param(param)
    }

    /// Names the request field at fault.
    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    /// Sets a specific error code.
    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.error.kind.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// The error object, also used for errors reported inside an event stream.
    pub fn body(&self) -> Value {
        let mut body = json!({"error": {
            "message": self.error.message,
            "type": error_type(self.error.kind),
            "param": self.param,
            "code": self.code.unwrap_or(self.error.kind.as_str()),
        }});
        if self.code == Some(CONSENT_REQUIRED)
            && let Some(link) = &self.error.consent_url
        {
            body["error"]["consent_url"] = json!(link);
        }
        // The same wait as the `retry-after` header, unrounded.
        if let Some(wait) = self.error.retry_after {
            body["error"]["retry_after_ms"] = json!(wait.as_millis() as u64);
        }
        body
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        Self::new(e)
    }
}

/// OpenAI's `type` for each kind.
pub(crate) fn error_type(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::InvalidInput | ErrorKind::TooLarge | ErrorKind::Blocked => "invalid_request_error",
        ErrorKind::Unauthenticated => "authentication_error",
        ErrorKind::Denied => "permission_error",
        ErrorKind::NotFound => "not_found_error",
        ErrorKind::RateLimited => "rate_limit_error",
        ErrorKind::Timeout => "timeout_error",
        ErrorKind::Upstream => "upstream_error",
        ErrorKind::Unavailable => "service_unavailable",
        ErrorKind::Cancelled => "cancelled",
        ErrorKind::Config | ErrorKind::Internal => "server_error",
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status(), Json(self.body())).into_response();
        if let Some(wait) = self.error.retry_after {
            // Round up: a client retrying a fraction early would only be limited again.
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            if let Ok(v) = HeaderValue::from_str(&secs.max(1).to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        if self.error.kind == ErrorKind::Unauthenticated {
            // RFC 6750: the challenge says why (expired, bad signature…) without echoing the token.
            if let Ok(v) = HeaderValue::from_str(&switchboard_auth::www_authenticate(&self.error)) {
                response.headers_mut().insert(header::WWW_AUTHENTICATE, v);
            }
        }
        response
    }
}
