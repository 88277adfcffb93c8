//! The payload log (an "inference table"): per request, what the caller sent and what it got back.
//!
//! Rows are recorded like audit rows, through the write queue and its spill file, so logging a
//! payload never waits for the store. The bodies arrive here already masked (the server runs the
//! PII detector over them); [`cap`] bounds each one so a large request cannot bloat the table.

use serde::{Deserialize, Serialize};
use switchboard_core::{Error, Result};

/// What a body cut by [`cap`] ends with: the marker, then `N bytes in all]`.
pub const TRUNCATION_MARKER: &str = "…[truncated, ";

/// The most rows one [`PayloadFilter`] may ask for.
pub const MAX_PAYLOAD_ROWS: usize = 10_000;

/// One logged request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayloadRow {
    /// The request id (`x-request-id`), shared with its spans and audit rows.
    pub request_id: String,
    /// When the request finished, in milliseconds since the epoch.
    pub ts_unix_ms: u64,
    /// The caller's email.
    pub caller_email: String,
    /// The caller's federated subject, when it differs from the email.
    pub caller_subject: Option<String>,
    /// Which API answered: `chat.completions`, `responses` or `invocations`.
    pub endpoint: String,
    /// The HTTP status answered.
    pub status: u16,
    /// How long the request took, in milliseconds.
    pub duration_ms: u64,
    /// The request body, masked and capped.
    pub request_body: String,
    /// The response body (for a stream, the events as sent), masked and capped.
    pub response_body: String,
}

/// Which payload rows to read: the newest `limit` at or after `since_unix_ms`, of one request if
/// `request_id` is set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadFilter {
    /// Only rows at or after this time (ms since the epoch).
    pub since_unix_ms: Option<u64>,
    /// Only the rows of this request.
    pub request_id: Option<String>,
    /// At most this many rows, newest first.
    pub limit: usize,
}

impl Default for PayloadFilter {
    fn default() -> Self {
        Self { since_unix_ms: None, request_id: None, limit: 100 }
    }
}

impl PayloadFilter {
    /// Checks the limit, so a typo cannot ask the store for every row it has.
    pub fn validate(&self) -> Result<()> {
        if self.limit == 0 || self.limit > MAX_PAYLOAD_ROWS {
            return Err(Error::invalid(format!(
                "payload log: the limit must be between 1 and {MAX_PAYLOAD_ROWS}"
            )));
        }
        Ok(())
    }
}

/// `body` cut to at most `max_bytes` bytes (on a character boundary) and marked with
/// [`TRUNCATION_MARKER`] and `total_bytes`, the size of the whole original; unchanged if it fits
/// and nothing was cut before (`total_bytes <= body.len()`). The marker is not counted in the
/// cap, so a cut body always says it was cut.
pub fn cap(body: String, max_bytes: usize, total_bytes: usize) -> String {
    if body.len() <= max_bytes && total_bytes <= body.len() {
        return body;
    }
    let mut end = max_bytes.min(body.len());
    while !body.is_char_boundary(end) {
        end -= 1;
    }
    let mut capped = body;
    capped.truncate(end);
    capped.push_str(TRUNCATION_MARKER);
    capped.push_str(&format!("{total_bytes} bytes in all]"));
    capped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_keeps_short_bodies_and_marks_cut_ones_on_a_char_boundary() {
        assert_eq!(cap("hello".into(), 5, 5), "hello");
        assert_eq!(cap("hello world".into(), 5, 11), "hello…[truncated, 11 bytes in all]");
        // Cut before (only the head was kept): still marked.
        assert_eq!(cap("hel".into(), 5, 11), "hel…[truncated, 11 bytes in all]");
        // "é" is two bytes: a cut inside it backs off to the boundary before it.
        assert_eq!(cap("aé".into(), 2, 3), "a…[truncated, 3 bytes in all]");
    }

    #[test]
    fn filter_limits_are_checked() {
        assert!(PayloadFilter::default().validate().is_ok());
        for limit in [0, MAX_PAYLOAD_ROWS + 1] {
            let e = PayloadFilter { limit, ..PayloadFilter::default() }.validate().unwrap_err();
            assert!(e.message.contains("limit"), "{}", e.message);
        }
    }
}
