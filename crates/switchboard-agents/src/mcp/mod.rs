//! The `mcp` kind: the tools of a Model Context Protocol server, over streamable HTTP (through the
//! agent's connection) or stdio (a child process), on the official Rust SDK `rmcp`.
//!
//! One MCP session per server serves every caller. Identity does not ride on the session: every
//! request to the server is made inside a governed hop — `tools/list` and `tools/call`, and the
//! `initialize` of a session opened on first use — and the HTTP request carries that hop's bearer
//! token (the caller's for `obo`, or the connection's own), its `x-request-id`, and its W3C
//! `traceparent`, which is also put in the request's `params._meta`. What the server receives
//! for messages no hop is making (`notifications/initialized`, cancellations, the standing
//! notification stream, the closing `DELETE`) is the credential of the hop that opened the
//! session (see `transport.rs`).
//!
//! An `[mcp]` table:
//!
//! ```toml
//! [mcp]
//! url = "/mcp"                 # or command = "node", args = [...], env = {...}, cwd = "..."
//! tools = ["echo", "get-sum"]  # optional allow-list; other tools are invisible and refused
//! timeout_ms = 10000           # optional, per MCP request
//! max_result_bytes = 1048576   # longer results are truncated, with a note
//! ```
//!
//! Which tools a server offers is known only from its `tools/list` answer, so an allow-list that
//! names a tool the server does not offer is caught there rather than by `switchboard validate`:
//! each such answer logs a warning naming the agent and the tools, the agent's state (shown by
//! `GET /health`) names them until a later list offers them, and asking for one gets an error
//! that points at `mcp.tools`.
//!
//! A stdio server is started with `PATH`, `HOME`, the locale and the temp directory of the
//! runtime and the table's `env`, and nothing else of the runtime's environment; it is killed
//! when the agent is dropped.

mod choose;
mod error;
mod result;
mod session;
mod settings;
mod stdio;
mod tools;
mod transport;

pub use session::McpStatus;
pub use settings::{DEFAULT_MAX_RESULT_BYTES, Settings, Transport};
pub use tools::McpTool;

use async_trait::async_trait;
use serde_json::{Map, Value, json};
use session::{Session, Target};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use switchboard_core::{Agent, AgentInput, AgentOutput, AgentSpec, Error, HopKind, Result, RunContext};
use switchboard_govern::{Egress, HopTarget};
use switchboard_llm::LlmClient;
use tools::ToolSet;
use transport::HopAuth;

/// An MCP server's tools as a sub-agent.
pub struct McpAgent {
    spec: Arc<AgentSpec>,
    egress: Egress,
    settings: Settings,
    session: Session,
    llm: Option<LlmClient>,
}

impl McpAgent {
    /// Builds the agent from its spec. Nothing is contacted or started here: the session opens on
    /// first use (or on a health check of a stdio server).
    ///
    /// Over HTTP the agent must name a declared connection; `url` is checked against the
    /// connection's egress rules now.
    pub fn new(
        spec: Arc<AgentSpec>,
        egress: Egress,
        base_dir: &Path,
        llm: Option<LlmClient>,
    ) -> Result<Self> {
        let settings = Settings::from_spec(&spec, base_dir)?;
        if let Some(name) = &spec.connection
            && egress.connection().is_none()
        {
            return Err(Error::config(format!(
                "agent `{}` names connection `{name}`, which is not declared",
                spec.name
            )));
        }
        let (target, label) = match &settings.transport {
            Transport::Http { url } => {
                let connection = egress.connection().ok_or_else(|| {
                    Error::config("mcp.url: an MCP server over HTTP is reached only through a connection")
                })?;
                let url = match url {
                    Some(u) => connection.url(u),
                    None => match &connection.spec().base_url {
                        Some(base) => connection.url(base),
                        None => Err(Error::config(format!(
                            "mcp.url: not set, and connection `{}` has no base_url",
                            connection.name()
                        ))),
                    },
                }
                .map_err(|e| Error::config(format!("mcp.url: {}", e.message)))?;
                let label = format!(
                    "`{}` ({})",
                    spec.name,
                    url.host_str()
                        .map(|h| match url.port() {
                            Some(p) => format!("{h}:{p}"),
                            None => h.to_string(),
                        })
                        .unwrap_or_default()
                );
                (Target::Http { url, http: connection.http().clone() }, label)
            }
            Transport::Stdio { command, args, env, cwd } => (
                Target::Stdio(stdio::StdioCommand {
                    command: command.clone(),
                    args: args.clone(),
                    env: env.clone(),
                    cwd: cwd.clone(),
                }),
                format!("`{}` ({command})", spec.name),
            ),
        };
        let session = Session::new(
            spec.name.clone(),
            label,
            target,
            settings.tools.clone(),
            settings.timeout,
            settings.max_result_bytes,
        );
        Ok(Self { spec, egress, settings, session, llm })
    }

    /// The checked `[mcp]` table.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// What is known about the server, without contacting it.
    pub fn status(&self) -> McpStatus {
        self.session.status()
    }

    /// The allowed tools, as last listed; `None` before the first listing or after the server
    /// announced a change.
    pub fn cached_tools(&self) -> Option<Vec<McpTool>> {
        self.session.cached_tools().map(|set| set.tools().cloned().collect())
    }

    /// The allowed tools, listing them for the caller in `ctx` (a governed `mcp` hop) unless they
    /// are cached. Tools outside the allow-list are not included.
    pub async fn tools(&self, ctx: &RunContext) -> Result<Vec<McpTool>> {
        Ok(self.tool_set(ctx).await?.tools().cloned().collect())
    }

    async fn tool_set(&self, ctx: &RunContext) -> Result<Arc<ToolSet>> {
        if let Some(set) = self.session.cached_tools() {
            return Ok(set);
        }
        self.egress
            .hop(ctx, HopTarget::new(HopKind::Mcp, "tools/list"), |grant| async move {
                let hop = self.session.hops().enter(HopAuth::of(&grant));
                grant.record("mcp.method.name", "tools/list");
                let set = self.session.tools(&hop).await?;
                grant.record("mcp.tools.count", set.allowed.len());
                Ok(set)
            })
            .await
    }

    /// Calls the tool `name` with `arguments`, for the caller in `ctx`: refused when the
    /// allow-list does not include it, rejected when the arguments do not satisfy its schema,
    /// and otherwise made as a governed `mcp` hop.
    pub async fn call_tool(
        &self,
        ctx: &RunContext,
        name: &str,
        arguments: Map<String, Value>,
    ) -> Result<AgentOutput> {
        if !self.settings.allows(name) {
            return Err(self.refused(name));
        }
        let tools = self.tool_set(ctx).await?;
        self.call(ctx, &tools, name, arguments).await
    }

    fn refused(&self, name: &str) -> Error {
        Error::denied(format!("agent `{}` may not use the MCP tool `{name}`", self.spec.name))
    }

    async fn call(
        &self,
        ctx: &RunContext,
        tools: &ToolSet,
        name: &str,
        arguments: Map<String, Value>,
    ) -> Result<AgentOutput> {
        let entry = match tools.get(name) {
            Some(entry) => entry,
            None if tools.hidden.iter().any(|h| h == name) => return Err(self.refused(name)),
            None if tools.unoffered.iter().any(|u| u == name) => {
                return Err(tools::unoffered(&self.spec.name, self.session.server(), name));
            }
            None => {
                return Err(Error::not_found(format!(
                    "the MCP server {} has no tool `{name}`",
                    self.session.server()
                )));
            }
        };
        match &entry.validator {
            Ok(v) => v.validate(&arguments)?,
            Err(e) => return Err(e.clone()),
        }
        let arguments = &arguments;
        let max = self.settings.max_result_bytes;
        let idempotent = entry.idempotent;
        self.egress
            .hop(ctx, HopTarget::new(HopKind::Mcp, name), |grant| async move {
                let hop = self.session.hops().enter(HopAuth::of(&grant).idempotent_call(idempotent));
                grant.record("mcp.method.name", "tools/call");
                let (result, reconnected) = self.session.call(&hop, name, arguments).await?;
                if reconnected {
                    grant.record("mcp.session.reopened", true);
                }
                let result = serde_json::to_value(&result)
                    .map_err(|e| Error::internal(format!("an MCP result could not be read: {e}")))?;
                let out = result::answer(name, arguments, &result, max);
                if let Ok(AgentOutput { data: Some(d), .. }) = &out
                    && d["truncated"] == json!(true)
                {
                    grant.record("mcp.result.truncated", true);
                }
                out
            })
            .await
    }
}

#[async_trait]
impl Agent for McpAgent {
    fn spec(&self) -> &AgentSpec {
        &self.spec
    }

    fn state(&self) -> Option<String> {
        let mut state = match self.session.status() {
            McpStatus::Idle => format!("idle: a session with {} opens on first use", self.session.server()),
            McpStatus::Connected { server, pid: Some(pid) } => {
                format!("connected to {server} (stdio, pid {pid})")
            }
            McpStatus::Connected { server, pid: None } => format!("connected to {server}"),
            McpStatus::Disconnected { why } => format!("disconnected: {why}"),
        };
        let unoffered = self.session.unoffered();
        if !unoffered.is_empty() {
            state.push_str(&format!(
                "; the allow-list names tools the server does not offer: {}",
                tools::quoted(&unoffered)
            ));
        }
        Some(state)
    }

    async fn invoke(&self, ctx: &RunContext, input: &AgentInput) -> Result<AgentOutput> {
        let question = input.question.trim();
        let tools = self.tool_set(ctx).await?;
        let choice =
            choose::choose(&self.spec.name, self.session.server(), self.llm.as_ref(), ctx, &tools, question)
                .await?;
        tracing::debug!(agent = %self.spec.name, tool = %choice.tool, by = choice.by, "mcp tool chosen");
        self.call(ctx, &tools, &choice.tool, choice.arguments).await
    }

    /// A stdio server is healthy when its session is open, and is started if it is not (it
    /// needs no credential). An HTTP server is probed with a TCP connect that sends nothing,
    /// since opening a session needs a caller's hop; the error says why it is not reachable and
    /// what went wrong last.
    async fn health(&self) -> Result<()> {
        let status = self.session.status();
        if self.session.is_stdio() {
            if let McpStatus::Connected { .. } = status {
                return Ok(());
            }
            return self
                .session
                .open_detached()
                .await
                .map_err(|e| Error::new(e.kind, format!("not connected: {}", e.message)));
        }
        let last = match status {
            McpStatus::Disconnected { why } => format!(" (last error: {why})"),
            _ => String::new(),
        };
        let Some(addr) = self.session.http_addr() else {
            return Err(Error::upstream(format!("not connected: {} has no address", self.session.server())));
        };
        match tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr.as_str()))
            .await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => {
                let why = e.to_string();
                let last = if last.contains(&why) { "" } else { last.as_str() };
                Err(Error::upstream(format!("not connected: {addr} is unreachable: {why}{last}")))
            }
            Err(_) => Err(Error::timeout(format!(
                "not connected: {addr} did not accept a connection within 2 s{last}"
            ))),
        }
    }
}
