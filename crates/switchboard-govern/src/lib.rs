//! The hop pipeline: the only way out of the process.
//!
//! Every outbound call — to a sub-agent, a tool, the SQL engine, an LLM, an HTTP or MCP server —
//! is a [`hop`](Gateway::hop) through one composable stack of [`HopLayer`]s:
//!
//! ```text
//! span → audit → budget → authorize → connection grant → credential → connection auth
//!      → limit → timeout → call
//! ```
//!
//! The call itself receives a [`HopGrant`]: the resolved credential and the only authenticated
//! HTTP client a sub-agent ever gets. A new sub-agent kind therefore cannot skip governance: it has
//! no other way to obtain a credential. Hops authorized here: [`layers::Authorize`] (agent roles) and
//! [`layers::ConnectionGrant`] (`USE CONNECTION` on the agent's [`Connection`]).
//!
//! Requests a call sends with [`HopGrant::send`] get the retries and per-upstream circuit
//! breakers of [`retry`].

mod connection;
mod gateway;
pub mod guardrails;
pub mod layers;
pub mod limits;
pub mod retry;
mod transport;

pub use connection::{Connection, Connections};
pub use gateway::{
    Egress, Gateway, GatewayBuilder, HopAttributes, HopCall, HopGrant, HopLayer, HopTarget, Next,
};
/// The HTTP types a [`HopGrant`] hands out, so sub-agents need no HTTP client crate of their own.
pub use reqwest;
pub use transport::Transport;
