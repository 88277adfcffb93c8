use serde::{Deserialize, Serialize};
use std::time::{SystemTime, UNIX_EPOCH};

/// Nanoseconds since the Unix epoch, the time base of spans.
pub fn unix_nanos_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

/// MLflow span types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SpanKind {
    /// A supervisor run or a sub-agent invocation.
    Agent,
    /// A tool call, SQL query or HTTP call.
    Tool,
    /// A chat completion.
    Llm,
    /// A retrieval.
    Retriever,
    /// Internal steps (routing, synthesis).
    Chain,
}

impl SpanKind {
    /// The MLflow name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Agent => "AGENT",
            Self::Tool => "TOOL",
            Self::Llm => "LLM",
            Self::Retriever => "RETRIEVER",
            Self::Chain => "CHAIN",
        }
    }
}

/// Whether a span's work succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SpanStatus {
    /// Succeeded.
    Ok,
    /// Failed or was denied.
    Error,
}

/// One finished span.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpanRecord {
    /// The request this span belongs to.
    pub request_id: String,
    /// W3C trace id, hex.
    pub trace_id: String,
    /// Span id, hex.
    pub span_id: String,
    /// Parent span id, hex; `None` for the root.
    pub parent_id: Option<String>,
    /// OpenTelemetry GenAI style name, e.g. `invoke_agent sales`, `execute_tool deal_desk`, `chat`.
    pub name: String,
    /// MLflow span type.
    pub kind: SpanKind,
    /// The sub-agent this span is for, if any.
    pub agent: Option<String>,
    /// Start time.
    pub start_unix_nano: u64,
    /// End time.
    pub end_unix_nano: u64,
    /// Outcome.
    pub status: SpanStatus,
    /// Error message when `status` is `Error`.
    pub status_message: Option<String>,
    /// Attributes (`gen_ai.*`, `switchboard.*`, the caller's email and role). Never a token.
    pub attributes: serde_json::Map<String, serde_json::Value>,
}

/// What kind of outbound call a hop is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HopKind {
    /// Invoking a sub-agent.
    Agent,
    /// Calling a tool.
    Tool,
    /// A chat completion.
    Llm,
    /// A SQL query.
    Sql,
    /// An HTTP call.
    Http,
    /// An MCP request.
    Mcp,
    /// A retrieval over an index.
    Retrieval,
    /// Not a hop: a `USE CONNECTION` grant, recorded as an audit row.
    Grant,
    /// Not a hop: a `USE CONNECTION` revoke, recorded as an audit row.
    Revoke,
}

impl HopKind {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Agent => "agent",
            Self::Tool => "tool",
            Self::Llm => "llm",
            Self::Sql => "sql",
            Self::Http => "http",
            Self::Mcp => "mcp",
            Self::Retrieval => "retrieval",
            Self::Grant => "grant",
            Self::Revoke => "revoke",
        }
    }
}

/// Whether the hop went ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditDecision {
    /// Allowed and succeeded.
    Allowed,
    /// Denied by policy or missing scopes (`access_denied`).
    AccessDenied,
    /// Allowed, but the call failed.
    Error,
}

impl AuditDecision {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allowed => "allowed",
            Self::AccessDenied => "access_denied",
            Self::Error => "error",
        }
    }
}

/// One row of the audit log: one per hop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Join key with spans.
    pub request_id: String,
    /// The hop's span.
    pub span_id: String,
    /// When the hop finished, milliseconds since the epoch.
    pub ts_unix_ms: u64,
    /// The caller's email.
    pub caller_email: String,
    /// The caller's roles, comma-separated.
    pub caller_roles: String,
    /// For federated callers, the human behind the role principal.
    pub acting_for: Option<String>,
    /// Who the downstream saw (email, service principal or secret name); empty when denied earlier.
    pub principal: String,
    /// The credential mode used.
    pub credential_mode: String,
    /// The sub-agent the hop belongs to.
    pub agent: String,
    /// What kind of call.
    pub hop: HopKind,
    /// The target (agent name, tool, SQL object, URL host, model).
    pub target: String,
    /// Outcome.
    pub decision: AuditDecision,
    /// Why it was denied or failed.
    pub reason: Option<String>,
    /// How long the hop took.
    pub duration_ms: u64,
}

/// Where spans and audit rows go. Implementations must not block the request path: they enqueue
/// and return.
pub trait TelemetrySink: Send + Sync {
    /// Records a finished span.
    fn span(&self, span: SpanRecord);
    /// Records an audit row.
    fn audit(&self, record: AuditRecord);
}
