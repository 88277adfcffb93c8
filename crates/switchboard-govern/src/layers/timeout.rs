use crate::{HopCall, HopLayer, Next};
use async_trait::async_trait;
use std::time::Duration;
use switchboard_core::{Error, Result};

/// Bounds a hop by the agent's `timeout_ms` (when set) and the request deadline, and abandons it
/// as soon as the request is cancelled.
pub struct Timeout;

#[async_trait]
impl HopLayer for Timeout {
    async fn handle(&self, hop: &mut HopCall, next: Next<'_>) -> Result<()> {
        let remaining = hop.ctx.remaining();
        let (budget, what) = match hop.agent.timeout_ms.map(Duration::from_millis) {
            Some(t) if t < remaining => {
                (t, format!("agent `{}` timed out after {} ms", hop.agent.name, t.as_millis()))
            }
            _ => (remaining, "the request deadline passed".to_string()),
        };
        let cancel = hop.ctx.cancel.clone();
        tokio::select! {
            biased;
            _ = cancel.cancelled() => Err(Error::cancelled()),
            r = tokio::time::timeout(budget, next.run(hop)) => r.unwrap_or_else(|_| Err(Error::timeout(what))),
        }
    }
}
