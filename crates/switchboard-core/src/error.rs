use serde::Serialize;
use std::time::Duration;

/// What went wrong, coarse enough to map to an HTTP status and an audit outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// Bad input from the caller (400).
    InvalidInput,
    /// No valid identity (401).
    Unauthenticated,
    /// Policy denied the call, or the caller lacks required scopes (403).
    Denied,
    /// An unknown agent, model or object (404).
    NotFound,
    /// A request body over the limit (413).
    TooLarge,
    /// A rate limit was hit (429).
    RateLimited,
    /// A guardrail refused the text (400: the caller's input must change).
    Blocked,
    /// A configuration problem (500; at start-up, a validation error).
    Config,
    /// An upstream service failed or answered nonsense (502).
    Upstream,
    /// A deadline or per-agent timeout passed (504).
    Timeout,
    /// An upstream's circuit is open: calls fail fast until it is retried (503).
    Unavailable,
    /// The request was cancelled, e.g. the client went away (499).
    Cancelled,
    /// A fault of ours (500).
    Internal,
}

impl ErrorKind {
    /// The HTTP status that reports this kind.
    pub fn http_status(self) -> u16 {
        match self {
            Self::InvalidInput => 400,
            Self::Unauthenticated => 401,
            Self::Denied => 403,
            Self::NotFound => 404,
            Self::TooLarge => 413,
            Self::RateLimited => 429,
            Self::Blocked => 400,
            Self::Config | Self::Internal => 500,
            Self::Upstream => 502,
            Self::Timeout => 504,
            Self::Unavailable => 503,
            Self::Cancelled => 499,
        }
    }

    /// The snake_case name, as used in audit rows and JSON error codes.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidInput => "invalid_input",
            Self::Unauthenticated => "unauthenticated",
            Self::Denied => "access_denied",
            Self::NotFound => "not_found",
            Self::TooLarge => "too_large",
            Self::RateLimited => "rate_limited",
            Self::Blocked => "blocked",
            Self::Config => "config",
            Self::Upstream => "upstream",
            Self::Timeout => "timeout",
            Self::Unavailable => "unavailable",
            Self::Cancelled => "cancelled",
            Self::Internal => "internal",
        }
    }
}

/// The code (and message prefix) of a hop refused until its user consents to a per-user OAuth
/// connection.
pub const CONSENT_REQUIRED: &str = "consent_required";

/// The error type of every Switchboard operation. Messages are written for the caller and must
/// never contain a secret: secrets are [`crate::Secret`]s and redact themselves.
#[derive(Debug, Clone, thiserror::Error, Serialize)]
#[error("{message}")]
pub struct Error {
    /// The category.
    pub kind: ErrorKind,
    /// A precise, human-readable message.
    pub message: String,
    /// For `RateLimited`: when to try again.
    #[serde(skip)]
    pub retry_after: Option<Duration>,
    /// For [`Error::consent_required`] only: where the user connects their account. Carried as
    /// data, never read back out of a message, so a far side's error text quoted into a denial
    /// cannot pass off a link of its own.
    #[serde(skip)]
    pub consent_url: Option<String>,
}

impl Error {
    /// An error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self { kind, message: message.into(), retry_after: None, consent_url: None }
    }
    /// 400.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidInput, message)
    }
    /// 403.
    pub fn denied(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Denied, message)
    }
    /// 403 for an obo hop whose caller token lacks declared scopes.
    pub fn missing_scopes(scopes: &[String]) -> Self {
        Self::new(ErrorKind::Denied, format!("required scopes: {}", scopes.join(" ")))
    }
    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }
    /// 500 configuration.
    pub fn config(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Config, message)
    }
    /// 502.
    pub fn upstream(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Upstream, message)
    }
    /// 504.
    pub fn timeout(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Timeout, message)
    }
    /// 499.
    pub fn cancelled() -> Self {
        Self::new(ErrorKind::Cancelled, "request cancelled")
    }
    /// 500.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }
    /// 503 with a `Retry-After`: an upstream's circuit is open until `retry_after` has passed.
    pub fn unavailable(message: impl Into<String>, retry_after: Duration) -> Self {
        Self { retry_after: Some(retry_after), ..Self::new(ErrorKind::Unavailable, message) }
    }
    /// 403 for a hop through a per-user OAuth connection the caller has not consented to yet.
    /// The link is in the message, for people (also once joined into a run's answer), and in
    /// `consent_url`, for clients.
    pub fn consent_required(connection: &str, link: &str) -> Self {
        Self {
            consent_url: Some(link.to_string()),
            ..Self::denied(format!(
                "{CONSENT_REQUIRED}: connect your account to `{connection}` at {link} and ask again"
            ))
        }
    }
    /// 429 with a `Retry-After`.
    pub fn rate_limited(message: impl Into<String>, retry_after: Duration) -> Self {
        Self { retry_after: Some(retry_after), ..Self::new(ErrorKind::RateLimited, message) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_consent_error_carries_a_consent_link() {
        let link = "https://sb.example.com/oauth/connect/drive";
        let e = Error::consent_required("drive", link);
        assert_eq!(e.kind, ErrorKind::Denied);
        assert_eq!(e.consent_url.as_deref(), Some(link));
        assert!(e.message.contains(link), "{e}");
        // A far side's 403 quoting a consent message of its own is still just a denial.
        let quoted =
            Error::denied(format!("the tool answered 403: {CONSENT_REQUIRED}: connect at https://evil/x"));
        assert_eq!(quoted.consent_url, None);
    }
}
