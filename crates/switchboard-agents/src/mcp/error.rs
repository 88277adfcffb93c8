//! rmcp's errors in Switchboard's terms: what the caller is told, and which failures mean the
//! session is gone (so one reconnect and retry can still succeed).

use rmcp::ServiceError;
use rmcp::model::ErrorCode;
use rmcp::service::ClientInitializeError;
use rmcp::transport::streamable_http_client::{HttpStatusError, StreamableHttpError};
use std::error::Error as StdError;
use std::time::{Duration, SystemTime};
use switchboard_core::{Error, Secret};
use switchboard_govern::reqwest;
use switchboard_govern::retry::parse_retry_after;

type HttpError = StreamableHttpError<reqwest::Error>;

/// The errors in `e`'s source chain, `e` first.
fn chain<'a>(e: &'a (dyn StdError + 'static)) -> impl Iterator<Item = &'a (dyn StdError + 'static)> {
    std::iter::successors(Some(e), |e: &&'a (dyn StdError + 'static)| (*e).source())
}

fn http_error<'a>(e: &'a (dyn StdError + 'static)) -> Option<&'a HttpError> {
    chain(e).find_map(|e| e.downcast_ref::<HttpError>())
}

/// Whether the server no longer knows our session (it restarted, or expired the session), so
/// the request was not processed and may be sent again on a new session.
pub(crate) fn session_lost(e: &ServiceError) -> bool {
    match e {
        ServiceError::TransportSend(t) => {
            matches!(http_error(t.error.as_ref()), Some(StreamableHttpError::SessionExpired))
        }
        _ => false,
    }
}

/// How long the server asked us to wait before trying again (its `Retry-After`), if it did.
pub(super) fn retry_after_of(s: &HttpStatusError) -> Option<Duration> {
    s.retry_after.as_deref().and_then(|v| parse_retry_after(v, SystemTime::now()))
}

/// Removes the hop's token from text that came from the far side, which could echo it back.
pub(crate) fn scrub(text: String, token: Option<&Secret>) -> String {
    match token.map(Secret::expose) {
        Some(t) if !t.is_empty() && text.contains(t) => text.replace(t, "[REDACTED]"),
        _ => text,
    }
}

/// Explains a transport failure (from the source chain of an rmcp error).
fn transport(server: &str, e: &(dyn StdError + 'static)) -> Error {
    if let Some(h) = http_error(e) {
        return match h {
            StreamableHttpError::Client(r) if r.is_connect() => {
                Error::upstream(format!("the MCP server {server} is unreachable: {}", root_cause(r)))
            }
            StreamableHttpError::Client(r) if r.is_timeout() => {
                Error::timeout(format!("the MCP server {server} did not answer in time"))
            }
            StreamableHttpError::Client(r) => {
                Error::upstream(format!("the MCP server {server} failed: {}", root_cause(r)))
            }
            StreamableHttpError::AuthRequired(_) => {
                Error::upstream(format!("the MCP server {server} rejected our credential (401)"))
            }
            StreamableHttpError::InsufficientScope(s) => Error::denied(format!(
                "the MCP server {server} denied the request: the credential lacks scope {}",
                s.required_scope.as_deref().unwrap_or("(not named)")
            )),
            StreamableHttpError::HttpStatus(s) if s.status == 429 => Error::rate_limited(
                format!("the MCP server {server} is rate limiting"),
                retry_after_of(s).unwrap_or(Duration::from_secs(1)),
            ),
            StreamableHttpError::HttpStatus(s) => {
                Error::upstream(format!("the MCP server {server} answered HTTP {}", s.status))
            }
            StreamableHttpError::ResponseBodyTooLarge { max_size } => {
                Error::upstream(format!("the MCP server {server} sent a reply larger than {max_size} bytes"))
            }
            StreamableHttpError::SessionExpired => {
                Error::upstream(format!("the MCP server {server} no longer knows our session"))
            }
            other => Error::upstream(format!("the MCP server {server} failed: {other}")),
        };
    }
    Error::upstream(format!("the MCP server {server} failed: {}", root_cause(e)))
}

/// The innermost message of an error chain, which is the one that says what happened
/// ("Connection refused") rather than where.
fn root_cause(e: &(dyn StdError + 'static)) -> String {
    let detail: Vec<String> = chain(e).map(|e| e.to_string()).collect();
    detail.last().cloned().unwrap_or_default()
}

/// What the caller is told when `what` (e.g. "the `echo` tool") failed on `server`.
pub(crate) fn service(server: &str, what: &str, e: ServiceError, token: Option<&Secret>) -> Error {
    let mut error = match e {
        ServiceError::McpError(data) => {
            let kind = if data.code == ErrorCode::INVALID_PARAMS { Error::invalid } else { Error::upstream };
            kind(format!(
                "the MCP server {server} answered {what} with error {}: {}",
                data.code.0, data.message
            ))
        }
        ServiceError::TransportSend(t) => transport(server, t.error.as_ref()),
        ServiceError::TransportClosed => {
            Error::upstream(format!("the connection to the MCP server {server} closed during {what}"))
        }
        ServiceError::Timeout { timeout } => Error::timeout(format!(
            "{what} on the MCP server {server} did not answer within {} ms",
            timeout.as_millis()
        )),
        ServiceError::Cancelled { .. } => Error::cancelled(),
        ServiceError::UnexpectedResponse => {
            Error::upstream(format!("the MCP server {server} answered {what} with an unexpected result"))
        }
        other => Error::upstream(format!("the MCP server {server} failed {what}: {other}")),
    };
    error.message = scrub(error.message, token);
    error
}

/// What the caller is told when the session could not be opened.
pub(crate) fn initialize(server: &str, e: ClientInitializeError, token: Option<&Secret>) -> Error {
    let mut error = match e {
        ClientInitializeError::TransportError { error, .. } => transport(server, error.error.as_ref()),
        ClientInitializeError::JsonRpcError(data) => Error::upstream(format!(
            "the MCP server {server} refused to initialize: error {}: {}",
            data.code.0, data.message
        )),
        ClientInitializeError::ConnectionClosed(_) => {
            Error::upstream(format!("the MCP server {server} closed the connection before it initialized"))
        }
        ClientInitializeError::Cancelled => Error::cancelled(),
        other => Error::upstream(format!("the MCP server {server} could not be initialized: {other}")),
    };
    error.message = scrub(error.message, token);
    error
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoed_tokens_are_scrubbed() {
        let token = Secret::new("tok-alice-123");
        let s = scrub("bad token tok-alice-123 here".into(), Some(&token));
        assert_eq!(s, "bad token [REDACTED] here");
        assert_eq!(scrub("nothing".into(), Some(&token)), "nothing");
        assert_eq!(scrub("x".into(), Some(&Secret::new(""))), "x");
    }

    #[test]
    fn json_rpc_errors_keep_code_and_message() {
        let e = service(
            "`s`",
            "the `echo` tool",
            ServiceError::McpError(rmcp::ErrorData::new(ErrorCode(-32001), "boom tok-1", None)),
            Some(&Secret::new("tok-1")),
        );
        assert_eq!(e.kind, switchboard_core::ErrorKind::Upstream);
        assert!(e.message.contains("-32001") && e.message.contains("boom [REDACTED]"), "{}", e.message);
        let e = service(
            "`s`",
            "the `echo` tool",
            ServiceError::McpError(rmcp::ErrorData::invalid_params("bad args", None)),
            None,
        );
        assert_eq!(e.kind, switchboard_core::ErrorKind::InvalidInput);
    }
}
