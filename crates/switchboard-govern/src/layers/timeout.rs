use crate::{HopCall, HopLayer, Next};
use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;
use switchboard_core::{Error, Result};

/// Bounds a hop by the agent's `timeout_ms` (when set) and the request deadline, and abandons it
/// as soon as the request is cancelled.
pub struct Timeout;

#[async_trait]
impl HopLayer for Timeout {
    async fn handle(&self, hop: &mut HopCall, next: Next<'_>) -> Result<()> {
        let remaining = hop.ctx.remaining();
        // `Some` when the agent's own limit is the tighter one, so the error names it.
        let agent_limit = hop.agent.timeout_ms.map(Duration::from_millis).filter(|t| *t < remaining);
        let budget = agent_limit.unwrap_or(remaining);
        let cancel = hop.ctx.cancel.clone();
        // Held past the call, which needs the hop mutably, so the message is made only on timeout.
        let agent = Arc::clone(&hop.agent);
        tokio::select! {
            biased;
            _ = cancel.cancelled() => Err(Error::cancelled()),
            r = tokio::time::timeout(budget, next.run(hop)) => r.unwrap_or_else(|_| {
                let what = match agent_limit {
                    Some(t) => format!("agent `{}` timed out after {} ms", agent.name, t.as_millis()),
                    None => "the request deadline passed".to_string(),
                };
                Err(Error::timeout(what))
            }),
        }
    }
}
