use crate::Caller;
use opentelemetry::trace::{SpanId, TraceId};
use serde::Serialize;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// The join key of spans, audit rows, the `x-request-id` header and stored thread turns.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct RequestId(Arc<str>);

impl RequestId {
    /// A fresh id, ordered by creation time ([`time_ordered_id`]).
    pub fn new() -> Self {
        Self(time_ordered_id().into())
    }
    /// Adopts an id supplied by the client, if it is a sane token (1–128 of `[A-Za-z0-9._-]`).
    pub fn parse(s: &str) -> Option<Self> {
        let ok = !s.is_empty()
            && s.len() <= 128
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        ok.then(|| Self(s.into()))
    }
    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A fresh UUIDv7 as 32 hex digits: ids made later sort later, so the stores' indexes on them
/// (`request_id`, row ids) grow at one end instead of having pages all over them rewritten for
/// every batch of rows. Its random bits come from the thread's generator, not a system call.
pub fn time_ordered_id() -> String {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    uuid::Builder::from_unix_timestamp_millis(millis, &rand::random()).into_uuid().simple().to_string()
}

impl Default for RequestId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A trace or span id as lower-case hex, as W3C trace context and the stores write it. The same
/// text as the ids' `Display`, which goes through the formatting machinery a digit at a time:
/// every span and audit row writes two or three ids, and a served run about thirty.
pub trait HexId {
    /// The id as lower-case hex (32 digits for a trace id, 16 for a span id).
    fn hex(&self) -> String;
}

impl HexId for TraceId {
    fn hex(&self) -> String {
        const_hex::encode(self.to_bytes())
    }
}

impl HexId for SpanId {
    fn hex(&self) -> String {
        const_hex::encode(self.to_bytes())
    }
}

/// W3C trace context: the trace id and the span that is the parent of the next span started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    /// The trace all spans of this request belong to.
    pub trace_id: TraceId,
    /// The current parent span; `SpanId::INVALID` at the root.
    pub parent_span_id: SpanId,
}

impl TraceContext {
    /// A new root trace with a random id.
    pub fn new_root() -> Self {
        Self { trace_id: TraceId::from_bytes(rand::random()), parent_span_id: SpanId::INVALID }
    }

    /// Parses a W3C `traceparent` header (`00-<trace>-<span>-<flags>`).
    pub fn from_traceparent(header: &str) -> Option<Self> {
        let mut parts = header.trim().split('-');
        let (version, trace, span, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if version.len() != 2 || version == "ff" || trace.len() != 32 || span.len() != 16 || flags.len() != 2
        {
            return None;
        }
        let trace_id = TraceId::from_hex(trace).ok()?;
        let parent_span_id = SpanId::from_hex(span).ok()?;
        (trace_id != TraceId::INVALID && parent_span_id != SpanId::INVALID)
            .then_some(Self { trace_id, parent_span_id })
    }

    /// The `traceparent` header value naming `span` as the parent.
    pub fn traceparent(&self, span: SpanId) -> String {
        // Every outbound call sends one: the ids go straight into the header's one allocation.
        let mut header = String::with_capacity(55);
        header.push_str("00-");
        header.push_str(const_hex::Buffer::<16>::new().format(&self.trace_id.to_bytes()));
        header.push('-');
        header.push_str(const_hex::Buffer::<8>::new().format(&span.to_bytes()));
        header.push_str("-01");
        header
    }

    /// A fresh random span id.
    pub fn new_span_id() -> SpanId {
        loop {
            let id = SpanId::from_bytes(rand::random());
            if id != SpanId::INVALID {
                return id;
            }
        }
    }
}

/// Everything a call needs to know about the request it serves. Passed explicitly through every
/// call; nothing reads identity from globals. Cloning is cheap.
#[derive(Debug, Clone)]
pub struct RunContext {
    /// The request id.
    pub request_id: RequestId,
    /// Who the request runs for.
    pub caller: Arc<Caller>,
    /// When the whole request must be done.
    pub deadline: Instant,
    /// Cancelled on client disconnect or deadline; every branch watches it.
    pub cancel: CancellationToken,
    /// Trace context; `parent_span_id` is the span new work nests under.
    pub trace: TraceContext,
    /// Hops made so far in this request, shared by every branch.
    hops: Arc<AtomicU32>,
    /// The most hops this request may make.
    pub max_hops: u32,
    /// When the supervisor dispatched the hop made with this context (a fan-out branch), so its
    /// span starts there and waiting for a worker counts as part of the call. Cleared for nested
    /// work by [`RunContext::child`].
    pub dispatched_unix_nano: Option<u64>,
    /// The caller's chargeback labels (`usage_context` in the request), copied onto every LLM hop
    /// span so the usage table can group by them; `None` when the caller sent none.
    pub usage_context: Option<Arc<serde_json::Map<String, serde_json::Value>>>,
}

impl RunContext {
    /// A root context for `caller` with a deadline `budget` from now.
    pub fn new(caller: Caller, budget: Duration) -> Self {
        Self {
            request_id: RequestId::new(),
            caller: Arc::new(caller),
            deadline: Instant::now() + budget,
            cancel: CancellationToken::new(),
            trace: TraceContext::new_root(),
            hops: Arc::default(),
            max_hops: Self::DEFAULT_MAX_HOPS,
            dispatched_unix_nano: None,
            usage_context: None,
        }
    }

    /// The default hop budget of a request.
    pub const DEFAULT_MAX_HOPS: u32 = 32;

    /// Counts one more hop; `false` once the request's budget is spent.
    pub fn take_hop(&self) -> bool {
        self.hops.fetch_add(1, Ordering::Relaxed) < self.max_hops
    }

    /// Hops made so far.
    pub fn hops_made(&self) -> u32 {
        self.hops.load(Ordering::Relaxed)
    }

    /// The same request, with `span` as the parent of whatever runs under the returned context.
    /// Cancellation is a child token, so cancelling the request cancels this branch too.
    pub fn child(&self, span: SpanId) -> Self {
        let mut ctx = self.clone();
        ctx.trace.parent_span_id = span;
        ctx.cancel = self.cancel.child_token();
        ctx.dispatched_unix_nano = None;
        ctx
    }

    /// Time left before the deadline (zero once passed).
    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_made_later_sort_later_and_are_uuid_v7() {
        let first = time_ordered_id();
        std::thread::sleep(Duration::from_millis(2));
        let second = time_ordered_id();
        assert!(first < second, "{first} then {second}");
        let parsed = uuid::Uuid::parse_str(&second).expect("a UUID in 32 hex digits");
        assert_eq!(parsed.get_version_num(), 7);
        assert_eq!(second.len(), 32);
        assert_ne!(time_ordered_id(), time_ordered_id(), "random bits tell ids of one millisecond apart");
    }

    #[test]
    fn traceparent_round_trip_and_rejects_garbage() {
        let root = TraceContext::new_root();
        let span = TraceContext::new_span_id();
        let header = root.traceparent(span);
        let parsed = TraceContext::from_traceparent(&header).expect("valid header");
        assert_eq!(parsed.trace_id, root.trace_id);
        assert_eq!(parsed.parent_span_id, span);
        assert!(TraceContext::from_traceparent("00-0000-11-01").is_none());
        assert!(TraceContext::from_traceparent(&format!("00-{}-{}-01", "0".repeat(32), span)).is_none());
    }

    #[test]
    fn hex_ids_read_as_their_display_does() {
        let trace = TraceId::from_hex("00f067aa0ba902b7b7ad6b7169203331").expect("a trace id");
        let span = SpanId::from_hex("000000000000abcd").expect("a span id");
        assert_eq!(trace.hex(), "00f067aa0ba902b7b7ad6b7169203331");
        assert_eq!(span.hex(), "000000000000abcd");
        for _ in 0..100 {
            let (trace, span) = (TraceContext::new_root().trace_id, TraceContext::new_span_id());
            assert_eq!((trace.hex(), span.hex()), (trace.to_string(), span.to_string()));
        }
        let root = TraceContext { trace_id: trace, parent_span_id: SpanId::INVALID };
        assert_eq!(root.traceparent(span), "00-00f067aa0ba902b7b7ad6b7169203331-000000000000abcd-01");
    }

    #[test]
    fn client_request_ids_are_validated() {
        assert!(RequestId::parse("abc-123_x.y").is_some());
        assert!(RequestId::parse("bad id").is_none());
        assert!(RequestId::parse("").is_none());
    }
}
