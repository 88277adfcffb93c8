use crate::{HopCall, HopLayer, Next};
use async_trait::async_trait;
use std::sync::Arc;
use switchboard_core::{Error, Result};

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
        let Some(allowed) = &hop.agent.allowed_roles else {
            return Ok(());
        };
        let caller = &hop.ctx.caller;
        if allowed.iter().any(|role| caller.is_member(role)) {
            return Ok(());
        }
        Err(Error::denied(format!(
            "access denied: {} (roles: {}) may not use agent `{}`",
            caller.email(),
            caller.groups().join(", "),
            hop.agent.name
        )))
    }
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
