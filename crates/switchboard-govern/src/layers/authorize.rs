use crate::{HopCall, HopLayer, Next};
use async_trait::async_trait;
use std::sync::Arc;
use switchboard_core::{AgentSpec, Caller, Error, HopKind, Result};

/// Whether `caller` holds one of `agent`'s `allowed_roles` (an agent without the list is open to
/// everyone). [`RolePolicy`] enforces this; routers use it only to avoid offering a caller an
/// agent they could not use, never to grant anything.
pub fn role_allows(agent: &AgentSpec, caller: &Caller) -> bool {
    agent.allowed_roles.as_ref().is_none_or(|allowed| allowed.iter().any(|role| caller.is_member(role)))
}

/// Decides whether the caller of a hop may make it. Policy, never the model, decides access:
/// nothing a router or prompt says reaches this decision except the agent and target names.
#[async_trait]
pub trait Policy: Send + Sync {
    /// `Ok` to allow; a `Denied` error (403) to refuse, with a message safe to show the caller.
    async fn authorize(&self, hop: &HopCall) -> Result<()>;
}

/// The per-agent role allow-list from each agent's `allowed_roles`.
pub struct RolePolicy;

#[async_trait]
impl Policy for RolePolicy {
    async fn authorize(&self, hop: &HopCall) -> Result<()> {
        let caller = &hop.ctx.caller;
        if !role_allows(&hop.agent, caller) {
            return Err(Error::denied(format!(
                "access denied: {} (roles: {}) may not use agent `{}`",
                caller.email(),
                caller.groups().join(", "),
                hop.agent.name
            )));
        }
        if let Some(tool) = tool_of(hop)
            && !tool_allows(&hop.agent, tool, caller)
        {
            return Err(Error::denied(format!(
                "access denied: {} (roles: {}) may not use tool `{tool}` of agent `{}`",
                caller.email(),
                caller.groups().join(", "),
                hop.agent.name
            )));
        }
        Ok(())
    }
}

/// The tool a hop calls, for the per-tool matrix: an MCP tool call, or an HTTP or SQL tool.
/// Listing an MCP server's tools is not a tool call.
fn tool_of(hop: &HopCall) -> Option<&str> {
    let name = hop.target.name.as_str();
    match hop.target.kind {
        HopKind::Mcp if name != "tools/list" => Some(name),
        HopKind::Tool | HopKind::Http => Some(name),
        _ => None,
    }
}

/// Whether `agent`'s `tool_roles` let `caller` use `tool`. Without a matrix every tool of an
/// agent the caller may use is allowed; with one, only the tools it names, to the roles it names.
pub fn tool_allows(agent: &AgentSpec, tool: &str, caller: &Caller) -> bool {
    agent.tool_roles.as_ref().is_none_or(|matrix| {
        matrix.get(tool).is_some_and(|roles| roles.iter().any(|role| caller.is_member(role)))
    })
}

/// Layer that asks the [`Policy`] before anything else happens.
pub struct Authorize {
    policy: Arc<dyn Policy>,
}

impl Authorize {
    /// Wraps `policy`.
    pub fn new(policy: Arc<dyn Policy>) -> Self {
        Self { policy }
    }
}

#[async_trait]
impl HopLayer for Authorize {
    async fn handle(&self, hop: &mut HopCall, next: Next<'_>) -> Result<()> {
        self.policy.authorize(hop).await?;
        next.run(hop).await
    }
}
