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

use rmcp::model::ClientJsonRpcMessage;
use rmcp::transport::common::client_side_sse::BoxedSseResponse;
use rmcp::transport::streamable_http_client::{
    StreamableHttpClient, StreamableHttpError, StreamableHttpPostResponse, StreamableHttpResponseLimits,
};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use switchboard_core::{RequestId, Secret, TraceContext};
use switchboard_govern::HopGrant;
use switchboard_govern::reqwest;
use switchboard_govern::reqwest::header::{HeaderName, HeaderValue};

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
}

impl HopAuth {
    /// The hop's credential and trace context.
    pub fn of(grant: &HopGrant) -> Self {
        let ctx = grant.ctx();
        Self {
            token: grant.credential().token.clone(),
            request_id: ctx.request_id.clone(),
            traceparent: ctx.trace.traceparent(ctx.trace.parent_span_id),
        }
    }

    /// No credential and a fresh trace: for work no caller asked for (a health check of a stdio
    /// server, which needs no credential).
    pub fn detached() -> Self {
        let trace = TraceContext::new_root();
        Self {
            token: None,
            request_id: RequestId::new(),
            traceparent: trace.traceparent(TraceContext::new_span_id()),
        }
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
fn traceparent_of(message: &ClientJsonRpcMessage) -> Option<String> {
    let value = serde_json::to_value(message).ok()?;
    value.pointer("/params/_meta/traceparent")?.as_str().map(str::to_string)
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
    pub fn new(http: reqwest::Client, hops: Arc<HopTable>, opener: HopAuth) -> Self {
        Self { http, hops, opener: Arc::new(opener) }
    }

    fn auth_for(&self, message: &ClientJsonRpcMessage) -> HopAuth {
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
        let auth = self.auth_for(&message);
        let had_session = session_id.is_some();
        let response = self
            .http
            .post_message_with_response_limits(
                uri,
                message,
                session_id,
                auth.bearer(),
                auth.headers(custom_headers),
                limits,
            )
            .await?;
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
        let found = |tp: Option<&str>| client.auth_for(&call_with(tp)).bearer().unwrap_or_default();
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
    fn headers_carry_request_id_and_traceparent() {
        let a = auth("t");
        let h = a.headers(Headers::new());
        assert_eq!(h[&HeaderName::from_static("x-request-id")], a.request_id.as_str());
        assert_eq!(h[&HeaderName::from_static("traceparent")], a.traceparent.as_str());
    }
}
