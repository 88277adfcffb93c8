//! Switchboard's vocabulary: who is calling ([`Caller`]), how a sub-agent authenticates
//! ([`CredentialMode`]), what a sub-agent is ([`AgentSpec`], [`Agent`]), how a request is routed
//! ([`Router`]), and the explicit per-request state every call carries ([`RunContext`]).
//!
//! This crate does no I/O. Everything that leaves the process does so through the hop pipeline in
//! `switchboard-govern`, which is built from these types.

mod agent;
mod caller;
mod connection;
mod context;
mod credential;
mod error;
mod guardrail;
mod json;
mod message;
mod router;
mod secret;
mod telemetry;

pub use agent::{Agent, AgentInput, AgentKind, AgentOutput, AgentSpec, Citation, MAX_AGENTS, OnDelta};
pub use caller::{AuthMethod, Caller};
pub use connection::{ConnectionAuth, ConnectionSpec};
pub use context::{HexId, RequestId, RunContext, TraceContext, time_ordered_id};
pub use credential::{Credential, CredentialMode, CredentialSpec, Principal, PrincipalKind, SecretRef};
pub use error::{CONSENT_REQUIRED, Error, ErrorKind};
pub use guardrail::{GuardrailConfig, PiiAction, PiiConfig, PiiKind, TopicConfig};
pub use json::{to_json, write_json};
pub use message::{Message, Role};
pub use router::{RouteDecision, RoutedCall, Router};
pub use secret::Secret;
pub use telemetry::{
    AuditDecision, AuditRecord, HopKind, MAX_ATTRIBUTE_BYTES, SpanKind, SpanRecord, SpanStatus,
    TelemetrySink, cap_attributes, cap_text, question_attributes, span_inputs, span_outputs, unix_nanos_now,
};

/// Convenience alias used across the workspace.
pub type Result<T, E = Error> = std::result::Result<T, E>;
