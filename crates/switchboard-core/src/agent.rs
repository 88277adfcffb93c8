use crate::{CredentialSpec, GuardrailConfig, Message, Result, RunContext};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A supervisor routes across at most this many sub-agents.
pub const MAX_AGENTS: usize = 20;

/// The sub-agent kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentKind {
    /// Retrieval over documents, answering with citations.
    Knowledge,
    /// Natural-language questions over a governed SQL space.
    Genie,
    /// A parameterized function.
    Tool,
    /// Tools on an MCP server.
    Mcp,
    /// A remote agent endpoint.
    Endpoint,
    /// A nested supervisor.
    Supervisor,
}

impl AgentKind {
    /// The name used in config and spans.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Knowledge => "knowledge",
            Self::Genie => "genie",
            Self::Tool => "tool",
            Self::Mcp => "mcp",
            Self::Endpoint => "endpoint",
            Self::Supervisor => "supervisor",
        }
    }
}

/// A sub-agent's declaration, as loaded from `agents/NAME.toml`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgentSpec {
    /// Unique name; what routers propose and policy matches.
    pub name: String,
    /// Kind.
    pub kind: AgentKind,
    /// What it does, in a sentence or two; the lexical router and the LLM router both read it.
    pub description: String,
    /// Example questions it answers; they sharpen routing.
    pub examples: Vec<String>,
    /// How its hops authenticate.
    pub credential: CredentialSpec,
    /// Roles allowed to reach it; `None` means every authenticated caller.
    pub allowed_roles: Option<Vec<String>>,
    /// Per-call timeout in milliseconds, overriding the supervisor default.
    pub timeout_ms: Option<u64>,
    /// The named connection its outbound calls use, if any.
    pub connection: Option<String>,
    /// Kind-specific settings (the `[knowledge]`, `[genie]`, `[tool]`… table), as JSON.
    pub settings: serde_json::Value,
    /// Roles allowed per tool inside the agent (MCP tools, HTTP tools), on top of
    /// `allowed_roles`. Once set, a tool it does not name is denied to everyone.
    pub tool_roles: Option<BTreeMap<String, Vec<String>>>,
    /// The agent's own guardrails on what it is sent and what it answers.
    pub guardrails: Option<GuardrailConfig>,
}

impl AgentSpec {
    /// An agent with a name, kind and description, and every other field at its default: no
    /// examples, `automatic` credentials, every caller allowed, the supervisor's timeout, no
    /// connection, no kind settings, no tool roles or guardrails of its own. Set the rest with struct update syntax:
    /// `AgentSpec { examples, ..AgentSpec::new("shipping", AgentKind::Tool, "…") }`.
    pub fn new(name: impl Into<String>, kind: AgentKind, description: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            kind,
            description: description.into(),
            examples: Vec::new(),
            credential: CredentialSpec::default(),
            allowed_roles: None,
            timeout_ms: None,
            connection: None,
            settings: serde_json::Value::Null,
            tool_roles: None,
            guardrails: None,
        }
    }
}

/// What a sub-agent is asked.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct AgentInput {
    /// The question, or the part of it routed to this agent.
    pub question: String,
    /// This agent's earlier turns in the thread, oldest first, for follow-ups.
    pub history: Vec<Message>,
    /// Arguments for this agent's function that the routing model proposed in the same tool call
    /// that routed here (see [`Agent::arguments_schema`]). An agent that would ask a model for
    /// its arguments takes these instead and validates them as it would the model's; `None`
    /// asks the model as usual.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arguments: Option<serde_json::Map<String, serde_json::Value>>,
}

impl AgentInput {
    /// `question`, with no history and no proposed arguments.
    pub fn new(question: impl Into<String>) -> Self {
        Self { question: question.into(), ..Self::default() }
    }
}

/// A source an answer rests on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Citation {
    /// Document id.
    pub id: String,
    /// Document title.
    pub title: String,
    /// The passage quoted.
    pub snippet: String,
}

/// What a sub-agent answers.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct AgentOutput {
    /// The answer, ready to show.
    pub text: String,
    /// Sources, for knowledge answers.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub citations: Vec<Citation>,
    /// Structured result (e.g. a table with `columns`, `rows`, `truncated`, `total_rows`, `sql`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
}

/// Where the pieces of a streamed answer go, in order, as they are produced.
pub type OnDelta<'a> = dyn Fn(&str) + Send + Sync + 'a;

/// A sub-agent. Implementations make every outbound call through the hop pipeline they were
/// built with; they never construct their own authenticated clients.
#[async_trait]
pub trait Agent: Send + Sync {
    /// The declaration it was built from.
    fn spec(&self) -> &AgentSpec;
    /// Answers `input` for the caller in `ctx`. `ctx.trace.parent_span_id` is the agent's span.
    async fn invoke(&self, ctx: &RunContext, input: &AgentInput) -> Result<AgentOutput>;

    /// Like [`invoke`](Self::invoke) for a caller who streams: pieces of the answer's text go to
    /// `on_delta` as they are produced (as an LLM or a remote agent writes them), in order. The
    /// returned text starts with the pieces concatenated; anything after them (a sources footer)
    /// is for the caller to send once the call returns. An agent whose answer is not produced
    /// piece by piece keeps this default, which sends nothing and returns the whole answer.
    async fn invoke_streaming(
        &self,
        ctx: &RunContext,
        input: &AgentInput,
        on_delta: &OnDelta<'_>,
    ) -> Result<AgentOutput> {
        let _ = on_delta;
        self.invoke(ctx, input).await
    }

    /// The JSON schema of the arguments this agent asks a model for, when it asks one. The LLM
    /// router then offers the agent with these parameters, so that the call that routes to it
    /// proposes them too ([`AgentInput::arguments`]) and the agent's own model call is saved.
    /// `None` (the default) for an agent that takes only its question.
    fn arguments_schema(&self) -> Option<std::sync::Arc<serde_json::Value>> {
        None
    }

    /// Whether the agent can serve requests (its index, database or endpoint is reachable), for
    /// `GET /health`. Called without a caller, so it must not touch caller data.
    async fn health(&self) -> Result<()> {
        Ok(())
    }

    /// A short account of the agent's link to what it calls (an MCP session: idle, connected to
    /// which server, or why it is disconnected), shown beside its health. `None` when there is
    /// nothing to say.
    fn state(&self) -> Option<String> {
        None
    }
}
