//! The HTTP client under rmcp's streamable HTTP transport: the connection's egress-restricted
//! client, with each message's credential chosen per message.
//!
//! One MCP session serves every caller, so the credential cannot be a property of the session:
//! it travels per HTTP request. Each governed hop that talks to the server registers its
//! credential in a [`HopTable`] under its W3C `traceparent`, which the agent also puts in the
//! `params._meta` of every request it sends. When rmcp hands a message to [`GovernedHttp`], the
//! `traceparent` in the message finds the hop, and the request leaves with that hop's bearer
//! token, `x-request-id` and `traceparent` headers.
//!
//! Messages no hop is waiting on — `notifications/initialized`, `notifications/cancelled`, the
//! standing `GET` stream for server notifications and the closing `DELETE` — go out with the
//! credential of the hop that opened the session (its *opener*): the far side sees them as that
//! caller's, exactly like the `initialize` request the opener made.
//!
//! Each `POST` goes through the gateway's retries and the connection's circuit breaker
//! ([`switchboard_govern::retry`]), like every other HTTP hop: a 429, 5xx or connection error is
//! retried with backoff (honouring `Retry-After`, never past the hop's deadline) only when the
//! message is idempotent — `initialize`, `ping`, the lists and reads — and a `tools/call` only
//! when the hop calls a tool the server annotates `readOnlyHint` or `idempotentHint`. Anything
//! else gets one attempt, so a tool with side effects never runs twice because of us.

use super::error::retry_after_of;
use rmcp::model::ClientJsonRpcMessage;
use rmcp::transport::common::client_side_sse::BoxedSseResponse;
use rmcp::transport::streamable_http_client::{
    StreamableHttpClient, StreamableHttpError, StreamableHttpPostResponse, StreamableHttpResponseLimits,
};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use switchboard_core::{Error, RequestId, Secret, TraceContext};
use switchboard_govern::HopGrant;
use switchboard_govern::reqwest;
use switchboard_govern::reqwest::header::{HeaderName, HeaderValue};
use switchboard_govern::retry::Judged;

type Headers = HashMap<HeaderName, HeaderValue>;

/// What one hop presents to the MCP server.
#[derive(Clone)]
pub(crate) struct HopAuth {
    /// The bearer token the hop pipeline resolved for this hop (connection auth included).
    pub token: Option<Secret>,
    /// The request the hop belongs to.
    pub request_id: RequestId,
    /// `traceparent` naming the hop's span as the parent of the server's work.
    pub traceparent: String,
    /// The hop, for its cancellation, its deadline and its span; none for detached work.
    grant: Option<HopGrant>,
    /// Whether the tool this hop calls may be called twice (annotated read-only or idempotent).
    idempotent_call: bool,
    /// What the hop's requests went through: retries and refusals.
    outcome: Arc<HopOutcome>,
}

/// What the transport learnt while sending a hop's messages, for its span and its error.
#[derive(Default)]
struct HopOutcome {
    /// Attempts beyond the first, over all the hop's messages.
    retries: AtomicU32,
    /// Why a message was never sent (an open circuit): reported instead of rmcp's wrapping.
    refusal: Mutex<Option<Error>>,
    /// A failed `tools/call` was not retried because its tool is not idempotent.
    not_retried: AtomicBool,
}

impl HopAuth {
    /// The hop's credential and trace context.
    pub fn of(grant: &HopGrant) -> Self {
        let ctx = grant.ctx();
        Self {
            token: grant.credential().token.clone(),
            request_id: ctx.request_id.clone(),
            traceparent: ctx.trace.traceparent(ctx.trace.parent_span_id),
            grant: Some(grant.clone()),
            idempotent_call: false,
            outcome: Arc::default(),
        }
    }

    /// Lets this hop's `tools/call` be retried: only for a tool the server annotates as
    /// read-only or idempotent.
    pub fn idempotent_call(mut self, idempotent: bool) -> Self {
        self.idempotent_call = idempotent;
        self
    }

    /// No credential and a fresh trace: for work no caller asked for (a health check of a stdio
    /// server, which needs no credential).
    pub fn detached() -> Self {
        let trace = TraceContext::new_root();
        Self {
            token: None,
            request_id: RequestId::new(),
            traceparent: trace.traceparent(TraceContext::new_span_id()),
            grant: None,
            idempotent_call: false,
            outcome: Arc::default(),
        }
    }

    /// The error to report instead of `mapped` (rmcp's account of a failure): the circuit
    /// breaker's refusal when there was one, or `mapped` with a note when a message that failed
    /// was not retried because sending it twice could repeat a side effect.
    pub fn explain(&self, mut mapped: Error) -> Error {
        if let Some(refusal) = self.outcome.refusal.lock().ok().and_then(|mut r| r.take()) {
            return refusal;
        }
        if self.outcome.not_retried.swap(false, Ordering::Relaxed) {
            mapped.message.push_str(
                "; `tools/call` was not retried: the tool is not annotated readOnlyHint or idempotentHint",
            );
        }
        mapped
    }

    fn headers(&self, mut headers: Headers) -> Headers {
        if let Ok(v) = HeaderValue::from_str(self.request_id.as_str()) {
            headers.insert(HeaderName::from_static("x-request-id"), v);
        }
        if let Ok(v) = HeaderValue::from_str(&self.traceparent) {
            headers.insert(HeaderName::from_static("traceparent"), v);
        }
        headers
    }

    fn bearer(&self) -> Option<String> {
        self.token.as_ref().map(|t| t.expose().to_string())
    }
}

/// The hops currently talking to one MCP server, by `traceparent`.
#[derive(Default)]
pub(crate) struct HopTable {
    hops: Mutex<HashMap<String, (HopAuth, usize)>>,
}

impl HopTable {
    /// Registers `auth` until the returned entry is dropped. Entering twice with the same
    /// `traceparent` (a hop that reconnects and then calls) keeps it registered until both leave.
    pub fn enter(self: &Arc<Self>, auth: HopAuth) -> HopEntry {
        let key = auth.traceparent.clone();
        if let Ok(mut hops) = self.hops.lock() {
            hops.entry(key.clone()).and_modify(|(_, n)| *n += 1).or_insert((auth.clone(), 1));
        }
        HopEntry { table: self.clone(), auth }
    }

    fn lookup(&self, traceparent: &str) -> Option<HopAuth> {
        self.hops.lock().ok()?.get(traceparent).map(|(auth, _)| auth.clone())
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.hops.lock().map(|h| h.len()).unwrap_or(0)
    }
}

/// A hop's registration in a [`HopTable`]; leaving scope unregisters it.
pub(crate) struct HopEntry {
    table: Arc<HopTable>,
    auth: HopAuth,
}

impl HopEntry {
    /// What the hop presents.
    pub fn auth(&self) -> &HopAuth {
        &self.auth
    }
}

impl Drop for HopEntry {
    fn drop(&mut self) {
        if let Ok(mut hops) = self.table.hops.lock()
            && let Some((_, n)) = hops.get_mut(&self.auth.traceparent)
        {
            *n -= 1;
            if *n == 0 {
                hops.remove(&self.auth.traceparent);
            }
        }
    }
}

/// The `traceparent` in a message's `params._meta`, if it has one.
fn traceparent_of(message: &serde_json::Value) -> Option<String> {
    message.pointer("/params/_meta/traceparent")?.as_str().map(str::to_string)
}

/// Whether sending `message` twice has the effect of sending it once: the handshake, `ping`,
/// lists and reads, and a `tools/call` when `idempotent_call` (the tool's annotations say so).
/// Everything else — a tool with side effects, `sampling`, `logging/setLevel` — is sent once.
fn idempotent(message: &serde_json::Value, idempotent_call: bool) -> bool {
    match message.get("method").and_then(serde_json::Value::as_str) {
        Some(
            "initialize"
            | "notifications/initialized"
            | "ping"
            | "tools/list"
            | "resources/list"
            | "resources/templates/list"
            | "resources/read"
            | "prompts/list"
            | "prompts/get"
            | "completion/complete",
        ) => true,
        Some("tools/call") => idempotent_call,
        _ => false,
    }
}

/// How one `POST` of a message went, as the retry loop judges it.
fn judge(outcome: &Result<StreamableHttpPostResponse, StreamableHttpError<reqwest::Error>>) -> Judged {
    match outcome {
        Ok(_) => Judged::answered(),
        Err(StreamableHttpError::HttpStatus(s)) => {
            let status =
                reqwest::StatusCode::from_u16(s.status).unwrap_or(reqwest::StatusCode::INTERNAL_SERVER_ERROR);
            Judged::status(status, retry_after_of(s))
        }
        Err(StreamableHttpError::Client(e)) => Judged::no_answer(e.is_connect() || e.is_timeout()),
        // The server answered, if not as expected: nothing a second attempt would change.
        Err(_) => Judged::answered(),
    }
}

/// Whether a JSON-RPC error answering a request sent with a session id means the server no
/// longer knows the session. The spec says such a request gets HTTP 404, which rmcp reports as
/// [`StreamableHttpError::SessionExpired`]; servers built on the TypeScript SDK's examples
/// (server-everything among them) answer 400 with `-32000 "Bad Request: No valid session ID
/// provided"` instead, so a restarted server would otherwise never be reconnected to.
fn is_unknown_session(message: &rmcp::model::ServerJsonRpcMessage) -> bool {
    match message {
        rmcp::model::ServerJsonRpcMessage::Error(e) => {
            e.error.code.0 == -32000 && e.error.message.to_ascii_lowercase().contains("session")
        }
        _ => false,
    }
}

/// rmcp's streamable HTTP client over the connection's client, presenting each message's hop.
#[derive(Clone)]
pub(crate) struct GovernedHttp {
    http: reqwest::Client,
    hops: Arc<HopTable>,
    opener: Arc<HopAuth>,
}

impl GovernedHttp {
    /// Sends through `http`, finding hops in `hops`; `opener` is the hop opening the session.
    /// Each hop's messages go through its own grant's retries, on its connection's circuit.
    pub fn new(http: reqwest::Client, hops: Arc<HopTable>, opener: HopAuth) -> Self {
        Self { http, hops, opener: Arc::new(opener) }
    }

    fn auth_for(&self, message: &serde_json::Value) -> HopAuth {
        traceparent_of(message).and_then(|tp| self.hops.lookup(&tp)).unwrap_or_else(|| (*self.opener).clone())
    }
}

impl StreamableHttpClient for GovernedHttp {
    type Error = reqwest::Error;

    async fn post_message(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        _auth_header: Option<String>,
        custom_headers: Headers,
    ) -> Result<StreamableHttpPostResponse, StreamableHttpError<Self::Error>> {
        self.post_message_with_response_limits(
            uri,
            message,
            session_id,
            None,
            custom_headers,
            StreamableHttpResponseLimits::default(),
        )
        .await
    }

    async fn post_message_with_response_limits(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        _auth_header: Option<String>,
        custom_headers: Headers,
        limits: StreamableHttpResponseLimits,
    ) -> Result<StreamableHttpPostResponse, StreamableHttpError<Self::Error>> {
        let value = serde_json::to_value(&message).unwrap_or_default();
        let auth = self.auth_for(&value);
        let had_session = session_id.is_some();
        let post = || {
            self.http.post_message_with_response_limits(
                uri.clone(),
                message.clone(),
                session_id.clone(),
                auth.bearer(),
                auth.headers(custom_headers.clone()),
                limits,
            )
        };
        let response = match &auth.grant {
            // Detached work (no caller, no deadline) is not retried.
            None => post().await?,
            Some(grant) => {
                let retryable = idempotent(&value, auth.idempotent_call);
                let tried = grant.resilient(retryable, |_| async { Ok(post().await) }, judge).await;
                let retries = tried.attempts.saturating_sub(1);
                if retries > 0 {
                    let total = auth.outcome.retries.fetch_add(retries, Ordering::Relaxed) + retries;
                    grant.record("switchboard.http.retries", total);
                }
                match tried.result {
                    Ok(outcome) => {
                        let method = value.get("method").and_then(serde_json::Value::as_str);
                        if !retryable && method == Some("tools/call") && judge(&outcome).retry.is_some() {
                            auth.outcome.not_retried.store(true, Ordering::Relaxed);
                        }
                        outcome?
                    }
                    Err(refused) => {
                        let message = refused.message.clone();
                        if let Ok(mut slot) = auth.outcome.refusal.lock() {
                            *slot = Some(refused);
                        }
                        return Err(StreamableHttpError::UnexpectedServerResponse(message.into()));
                    }
                }
            }
        };
        match response {
            StreamableHttpPostResponse::Json(ref m, _) if had_session && is_unknown_session(m) => {
                Err(StreamableHttpError::SessionExpired)
            }
            other => Ok(other),
        }
    }

    async fn delete_session(
        &self,
        uri: Arc<str>,
        session_id: Arc<str>,
        _auth_header: Option<String>,
        custom_headers: Headers,
    ) -> Result<(), StreamableHttpError<Self::Error>> {
        let opener = &self.opener;
        self.http.delete_session(uri, session_id, opener.bearer(), opener.headers(custom_headers)).await
    }

    async fn get_stream(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        _auth_header: Option<String>,
        custom_headers: Headers,
    ) -> Result<BoxedSseResponse, StreamableHttpError<Self::Error>> {
        let opener = &self.opener;
        self.http
            .get_stream(uri, session_id, last_event_id, opener.bearer(), opener.headers(custom_headers))
            .await
    }

    async fn get_stream_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        _auth_header: Option<String>,
        custom_headers: Headers,
        max_sse_event_size: usize,
    ) -> Result<BoxedSseResponse, StreamableHttpError<Self::Error>> {
        let opener = &self.opener;
        self.http
            .get_stream_with_max_sse_event_size(
                uri,
                session_id,
                last_event_id,
                opener.bearer(),
                opener.headers(custom_headers),
                max_sse_event_size,
            )
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rmcp::model::{
        CallToolRequest, CallToolRequestParams, ClientRequest, RequestId as RpcId, RequestMetaObject,
    };

    fn auth(token: &str) -> HopAuth {
        HopAuth { token: Some(Secret::new(token)), ..HopAuth::detached() }
    }

    fn call_with(traceparent: Option<&str>) -> ClientJsonRpcMessage {
        let mut params = CallToolRequestParams::new("echo");
        if let Some(tp) = traceparent {
            let mut meta = RequestMetaObject::new();
            meta.set_traceparent(tp);
            params.meta = Some(meta);
        }
        ClientJsonRpcMessage::request(
            ClientRequest::CallToolRequest(CallToolRequest::new(params)),
            RpcId::Number(7),
        )
    }

    #[test]
    fn each_message_finds_its_hop_and_others_use_the_opener() {
        let table = Arc::new(HopTable::default());
        let client = GovernedHttp::new(reqwest::Client::new(), table.clone(), auth("opener-token"));
        let a = table.enter(auth("token-a"));
        let b = table.enter(auth("token-b"));
        let found = |tp: Option<&str>| {
            let message = serde_json::to_value(call_with(tp)).expect("a message");
            client.auth_for(&message).bearer().unwrap_or_default()
        };
        assert_eq!(found(Some(&a.auth().traceparent)), "token-a");
        assert_eq!(found(Some(&b.auth().traceparent)), "token-b");
        assert_eq!(found(None), "opener-token", "no traceparent: the session's opener");
        let tp_a = a.auth().traceparent.clone();
        drop(a);
        assert_eq!(found(Some(&tp_a)), "opener-token", "a finished hop is forgotten");
        assert_eq!(table.len(), 1);

        let again = table.enter(b.auth().clone());
        drop(b);
        assert_eq!(table.len(), 1, "the same hop entered twice stays until both leave");
        drop(again);
        assert_eq!(table.len(), 0);
    }

    #[test]
    fn only_idempotent_messages_are_retried() {
        let of = |method: &str| serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": method});
        for method in ["initialize", "ping", "tools/list", "resources/read", "prompts/get"] {
            assert!(idempotent(&of(method), false), "{method}");
        }
        for method in ["sampling/createMessage", "logging/setLevel", "notifications/cancelled"] {
            assert!(!idempotent(&of(method), true), "{method}");
        }
        assert!(!idempotent(&of("tools/call"), false), "a tool with side effects is sent once");
        assert!(idempotent(&of("tools/call"), true), "an annotated idempotent tool may be retried");
    }

    #[test]
    fn headers_carry_request_id_and_traceparent() {
        let a = auth("t");
        let h = a.headers(Headers::new());
        assert_eq!(h[&HeaderName::from_static("x-request-id")], a.request_id.as_str());
        assert_eq!(h[&HeaderName::from_static("traceparent")], a.traceparent.as_str());
    }
}
