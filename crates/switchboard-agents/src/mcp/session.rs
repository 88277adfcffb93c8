//! The one MCP session an agent keeps with its server, shared by every caller: opened on first
//! use inside the hop that needs it, reopened once when the server has forgotten it (a restart,
//! an expired session) or a stdio server has exited, and closed — the child killed — when the
//! agent is dropped.

use super::error;
use super::stdio::{self, StdioCommand};
use super::tools::{self, ToolCache, ToolSet};
use super::transport::{GovernedHttp, HopEntry, HopTable};
use rmcp::model::{
    CallToolRequestParams, CallToolResult, ClientCapabilities, Implementation, InitializeRequestParams,
    PaginatedRequestParams, ProtocolVersion, RequestMetaObject, Tool,
};
use rmcp::service::{NotificationContext, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{ClientHandler, RoleClient, ServiceError, ServiceExt};
use serde_json::{Map, Value};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use switchboard_core::{Error, Result};
use switchboard_govern::reqwest;

/// Most pages of `tools/list` followed, against a server whose cursor never ends.
const MAX_LIST_PAGES: usize = 100;

/// Where the server is.
pub(crate) enum Target {
    /// Streamable HTTP at `url`, sent with the connection's client under the gateway's retries
    /// and the connection's circuit breaker (each hop's, through its grant).
    Http { url: reqwest::Url, http: reqwest::Client },
    /// A child process.
    Stdio(StdioCommand),
}

/// What the agent knows about its server, for `GET /health` and [`super::McpAgent::status`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum McpStatus {
    /// Nothing has needed the server yet; the session opens on first use.
    Idle,
    /// A session is open.
    Connected {
        /// The server's name and version, from `initialize`.
        server: String,
        /// The child's process id, for a stdio server.
        pid: Option<u32>,
    },
    /// The server could not be reached, or the session closed.
    Disconnected {
        /// Why.
        why: String,
    },
}

/// Drops the tool cache when the server says its tool list changed.
struct Handler {
    tools: Arc<ToolCache>,
    info: InitializeRequestParams,
}

impl ClientHandler for Handler {
    async fn on_tool_list_changed(&self, _context: NotificationContext<RoleClient>) {
        self.tools.invalidate();
    }

    fn get_info(&self) -> InitializeRequestParams {
        self.info.clone()
    }
}

/// An open session.
struct Live {
    service: RunningService<RoleClient, Handler>,
}

impl Live {
    fn closed(&self) -> bool {
        self.service.is_closed() || self.service.peer().is_transport_closed()
    }
}

/// `_meta` carrying the hop's trace context.
fn meta(traceparent: &str) -> RequestMetaObject {
    let mut meta = RequestMetaObject::new();
    meta.set_traceparent(traceparent);
    meta
}

/// The MCP session of one agent.
pub(crate) struct Session {
    /// The agent's name, for logs.
    agent: String,
    /// How messages name the server: "`everything` (127.0.0.1:3101)".
    server: String,
    target: Target,
    hops: Arc<HopTable>,
    tools: Arc<ToolCache>,
    allowed: Option<Vec<String>>,
    timeout: Option<Duration>,
    /// The largest reply the transport reads; a tool result beyond it is an error, below it a
    /// result is truncated to `max_result_bytes` when answered.
    wire_limit: usize,
    /// Held while the session is opened, so concurrent first callers share one session.
    slot: tokio::sync::Mutex<Option<Arc<Live>>>,
    /// Held while the tool list is fetched, so concurrent callers fetch it once.
    listing: tokio::sync::Mutex<()>,
    status: Mutex<McpStatus>,
    /// The allow-listed tools the last `tools/list` did not offer. Kept apart from the tool cache
    /// so that a `list_changed`, which empties the cache, does not hide the mistake from
    /// `GET /health` until the next listing.
    unoffered: Mutex<Vec<String>>,
}

impl Session {
    /// `agent`'s session to `target`, opened on first use.
    pub fn new(
        agent: String,
        server: String,
        target: Target,
        allowed: Option<Vec<String>>,
        timeout: Option<Duration>,
        max_result_bytes: usize,
    ) -> Self {
        Self {
            agent,
            server,
            target,
            hops: Arc::default(),
            tools: Arc::default(),
            allowed,
            timeout,
            wire_limit: (16 * 1024 * 1024).max(max_result_bytes.saturating_mul(4)),
            slot: tokio::sync::Mutex::default(),
            listing: tokio::sync::Mutex::default(),
            status: Mutex::new(McpStatus::Idle),
            unoffered: Mutex::default(),
        }
    }

    /// Where hops register their credential for the transport to find.
    pub fn hops(&self) -> &Arc<HopTable> {
        &self.hops
    }

    /// How messages name the server.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// Whether this is a stdio server (which needs no credential to open).
    pub fn is_stdio(&self) -> bool {
        matches!(self.target, Target::Stdio { .. })
    }

    /// The host and port of an HTTP server, for a reachability probe.
    pub fn http_addr(&self) -> Option<String> {
        match &self.target {
            Target::Http { url, .. } => Some(format!("{}:{}", url.host_str()?, url.port_or_known_default()?)),
            Target::Stdio { .. } => None,
        }
    }

    /// The tool list, if one is cached.
    pub fn cached_tools(&self) -> Option<Arc<ToolSet>> {
        self.tools.get()
    }

    /// What is known about the server now, without contacting it.
    pub fn status(&self) -> McpStatus {
        let status = self.status.lock().map(|s| s.clone()).unwrap_or(McpStatus::Idle);
        if let McpStatus::Connected { .. } = status
            && let Ok(slot) = self.slot.try_lock()
            && slot.as_ref().is_none_or(|live| live.closed())
        {
            return McpStatus::Disconnected { why: format!("the session with {} closed", self.server) };
        }
        status
    }

    /// The allow-listed tools the server's last `tools/list` did not offer; empty before the
    /// first listing.
    pub fn unoffered(&self) -> Vec<String> {
        self.unoffered.lock().map(|u| u.clone()).unwrap_or_default()
    }

    /// Keeps what the latest `tools/list` left off the allow-list, warning once per list: offline
    /// checks (`switchboard validate`) cannot know a remote server's tools, so this is the first
    /// point where the mistake can be seen.
    fn note_unoffered(&self, unoffered: &[String]) {
        if !unoffered.is_empty() {
            tracing::warn!(
                agent = %self.agent,
                server = %self.server,
                tools = %tools::quoted(unoffered),
                "the allow-list (mcp.tools) names tools the MCP server does not offer"
            );
        }
        if let Ok(mut kept) = self.unoffered.lock() {
            *kept = unoffered.to_vec();
        }
    }

    fn set_status(&self, status: McpStatus) {
        if let Ok(mut s) = self.status.lock() {
            *s = status;
        }
    }

    /// Runs `fut`, bounded by the per-request timeout.
    async fn bounded<T>(&self, what: &str, fut: impl Future<Output = T>) -> Result<T> {
        match self.timeout {
            Some(t) => tokio::time::timeout(t, fut).await.map_err(|_| {
                Error::timeout(format!(
                    "{what} on the MCP server {} did not answer within {} ms",
                    self.server,
                    t.as_millis()
                ))
            }),
            None => Ok(fut.await),
        }
    }

    /// The open session, opening one for `hop` if there is none or it closed.
    async fn live(&self, hop: &HopEntry) -> Result<Arc<Live>> {
        let mut slot = self.slot.lock().await;
        if let Some(live) = slot.as_ref().filter(|l| !l.closed()) {
            return Ok(live.clone());
        }
        let live = self.open(hop).await?;
        *slot = Some(live.clone());
        Ok(live)
    }

    /// A session to replace `failed`, unless another caller has replaced it already.
    async fn reopen(&self, failed: &Arc<Live>, hop: &HopEntry) -> Result<Arc<Live>> {
        let mut slot = self.slot.lock().await;
        if let Some(live) = slot.as_ref().filter(|l| !Arc::ptr_eq(l, failed) && !l.closed()) {
            return Ok(live.clone());
        }
        // Dropping the old session first ends its worker (and a stdio child) before the new one
        // starts.
        *slot = None;
        let live = self.open(hop).await?;
        *slot = Some(live.clone());
        Ok(live)
    }

    /// Opens a session: `initialize` (sent with `hop`'s credential and trace context) and
    /// `notifications/initialized`.
    async fn open(&self, hop: &HopEntry) -> Result<Arc<Live>> {
        let auth = hop.auth();
        // A new session may be a new server, with other tools.
        self.tools.invalidate();
        let mut info = InitializeRequestParams::new(
            ClientCapabilities::default(),
            Implementation::new("switchboard", env!("CARGO_PKG_VERSION")),
        )
        .with_protocol_version(ProtocolVersion::LATEST_WITH_INITIALIZE);
        info.meta = Some(meta(&auth.traceparent));
        let handler = Handler { tools: self.tools.clone(), info };
        let opened = self.bounded("initialize", self.serve(handler, hop)).await;
        match opened {
            Ok(Ok((service, pid))) => {
                let server = service
                    .peer()
                    .peer_info()
                    .and_then(|i| i.server_info.as_ref().map(|s| format!("{} {}", s.name, s.version)))
                    .unwrap_or_else(|| "unnamed server".into());
                self.set_status(McpStatus::Connected { server, pid });
                Ok(Arc::new(Live { service }))
            }
            Ok(Err(e)) | Err(e) => {
                self.set_status(McpStatus::Disconnected { why: e.message.clone() });
                Err(e)
            }
        }
    }

    async fn serve(
        &self,
        handler: Handler,
        hop: &HopEntry,
    ) -> Result<(RunningService<RoleClient, Handler>, Option<u32>)> {
        let token = hop.auth().token.as_ref();
        match &self.target {
            Target::Http { url, http } => {
                let client = GovernedHttp::new(http.clone(), self.hops.clone(), hop.auth().clone());
                let config = StreamableHttpClientTransportConfig::with_uri(url.as_str())
                    // Reconnecting is ours: a new session is opened inside the hop that found the
                    // old one gone, so `initialize` carries that caller's credential.
                    .reinit_on_expired_session(false)
                    .max_concurrent_requests(64)
                    .max_json_response_size(self.wire_limit)
                    .max_sse_event_size(self.wire_limit);
                let transport = StreamableHttpClientTransport::with_client(client, config);
                let service = handler
                    .serve(transport)
                    .await
                    .map_err(|e| hop.auth().explain(error::initialize(&self.server, e, token)))?;
                Ok((service, None))
            }
            Target::Stdio(cmd) => {
                let stdio::Spawned { child, pid, stderr } = stdio::spawn(&self.server, cmd)?;
                match handler.serve(child).await {
                    Ok(service) => Ok((service, pid)),
                    Err(e) => {
                        let mut error = error::initialize(&self.server, e, None);
                        if let Some(last) = stderr.last_words().await {
                            error.message.push_str(&format!("; its last words on stderr: {last}"));
                        }
                        Err(error)
                    }
                }
            }
        }
    }

    /// Runs `request` on the session for `hop`; if the server has forgotten the session, opens a
    /// new one and runs it once more. Returns whether that happened.
    async fn run<T, F, Fut>(&self, hop: &HopEntry, what: &str, request: F) -> Result<(T, bool)>
    where
        F: Fn(Arc<Live>) -> Fut,
        Fut: Future<Output = std::result::Result<T, ServiceError>>,
    {
        let token = hop.auth().token.as_ref();
        let live = self.live(hop).await?;
        match self.bounded(what, request(live.clone())).await? {
            Ok(value) => Ok((value, false)),
            Err(e) if error::session_lost(&e) => {
                tracing::info!(server = %self.server, "the MCP server lost our session; opening a new one");
                let live = self.reopen(&live, hop).await?;
                match self.bounded(what, request(live)).await? {
                    Ok(value) => Ok((value, true)),
                    Err(e) => Err(hop.auth().explain(error::service(&self.server, what, e, token))),
                }
            }
            Err(e) => Err(hop.auth().explain(error::service(&self.server, what, e, token))),
        }
    }

    /// The allowed tools, from the cache or a `tools/list` made for `hop`.
    pub async fn tools(&self, hop: &HopEntry) -> Result<Arc<ToolSet>> {
        if let Some(set) = self.tools.get() {
            return Ok(set);
        }
        let _one = self.listing.lock().await;
        if let Some(set) = self.tools.get() {
            return Ok(set);
        }
        let traceparent = hop.auth().traceparent.clone();
        let ((epoch, listed), _) = self
            .run(hop, "tools/list", |live| {
                let traceparent = traceparent.clone();
                // The epoch is read once the session is open: opening one invalidates the cache.
                let epoch = self.tools.epoch();
                async move { Ok((epoch, list_all(&live, &traceparent).await?)) }
            })
            .await?;
        let set = Arc::new(ToolSet::new(listed, self.allowed.as_deref()));
        self.note_unoffered(&set.unoffered);
        self.tools.store(epoch, set.clone());
        Ok(set)
    }

    /// `tools/call` of `name` with `arguments`, for `hop`. Returns the result and whether the
    /// session had to be reopened.
    pub async fn call(
        &self,
        hop: &HopEntry,
        name: &str,
        arguments: &Map<String, Value>,
    ) -> Result<(CallToolResult, bool)> {
        let traceparent = hop.auth().traceparent.clone();
        self.run(hop, &format!("the `{name}` tool"), |live| {
            let mut params = CallToolRequestParams::new(name.to_string()).with_arguments(arguments.clone());
            params.meta = Some(meta(&traceparent));
            // Dropping this future (a timeout, a cancelled request) sends `notifications/cancelled`.
            async move { live.service.peer().call_tool(params).await }
        })
        .await
    }

    /// Opens the session without a caller, for a health check of a server that needs no
    /// credential (stdio).
    pub async fn open_detached(&self) -> Result<()> {
        let entry = self.hops.enter(super::transport::HopAuth::detached());
        self.live(&entry).await.map(drop)
    }
}

/// Every page of `tools/list`, each request carrying the hop's trace context.
async fn list_all(live: &Live, traceparent: &str) -> std::result::Result<Vec<Tool>, ServiceError> {
    let mut tools = Vec::new();
    let mut cursor = None;
    for _ in 0..MAX_LIST_PAGES {
        let mut params = PaginatedRequestParams::default();
        params.meta = Some(meta(traceparent));
        params.cursor = cursor;
        let page = live.service.peer().list_tools(Some(params)).await?;
        tools.extend(page.tools);
        cursor = page.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    Ok(tools)
}
