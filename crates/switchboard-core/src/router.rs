use crate::{Message, Result, RunContext};
use async_trait::async_trait;
use serde::Serialize;

/// One sub-agent call the router proposes: which agent, with what input.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RoutedCall {
    /// Agent name.
    pub agent: String,
    /// The part of the question meant for this agent.
    pub input: String,
    /// The router's confidence, in [0, 1].
    pub score: f32,
    /// The agent's function arguments, when the routing model proposed every one its schema
    /// requires in the same call (see [`crate::Agent::arguments_schema`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arguments: Option<serde_json::Map<String, serde_json::Value>>,
}

impl RoutedCall {
    /// A call to `agent` with `input`, without proposed arguments.
    pub fn new(agent: impl Into<String>, input: impl Into<String>, score: f32) -> Self {
        Self { agent: agent.into(), input: input.into(), score, arguments: None }
    }
}

/// A router's proposal. Policy, not the router, decides whether the caller may reach the agents.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RouteDecision {
    /// Call these agents (concurrently when more than one).
    Agents {
        /// The calls.
        calls: Vec<RoutedCall>,
    },
    /// Confidence too low: ask the caller, naming the closest agents.
    Clarify {
        /// The question to put to the caller.
        question: String,
        /// The closest agents, best first.
        candidates: Vec<String>,
    },
}

/// Picks the sub-agent(s) for a request.
#[async_trait]
pub trait Router: Send + Sync {
    /// Proposes a route for `question`, given the conversation so far.
    async fn route(&self, ctx: &RunContext, question: &str, history: &[Message]) -> Result<RouteDecision>;
}
