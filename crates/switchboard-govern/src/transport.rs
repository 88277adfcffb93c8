//! Where the requests hops send go: the network by default, or a [`Transport`] that answers them
//! in process, with no socket: an embedder's own backend, or a benchmark's scripted model.

use async_trait::async_trait;
use switchboard_core::Result;

/// Answers the requests sent with [`HopGrant::send`](crate::HopGrant::send) in place of the
/// network. Set with [`GatewayBuilder::transport`](crate::GatewayBuilder::transport).
///
/// Such requests are made exactly as for the network (bearer token, `traceparent`,
/// `x-request-id`, a connection's egress rules); only the sending differs. There is nothing
/// between the two sides to fail, so they get one attempt and no circuit breaker.
#[async_trait]
pub trait Transport: Send + Sync {
    /// Answers `request`. The response's body may still be streaming when it is returned.
    async fn send(&self, request: reqwest::Request) -> Result<reqwest::Response>;
}
