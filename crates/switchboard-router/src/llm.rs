use crate::LexicalRouter;
use async_trait::async_trait;
use serde_json::{Value, json};
use std::sync::Arc;
use switchboard_core::{AgentSpec, Message, Result, Role, RouteDecision, RoutedCall, Router, RunContext};
use switchboard_llm::{ChatRequest, LlmClient, ToolDef};

/// How many of an agent's examples go into its tool description: enough to show the model the
/// agent's range, few enough to keep twenty tools within a modest prompt.
const TOOL_EXAMPLES: usize = 3;

/// Routes with an OpenAI-compatible model: each sub-agent is offered as a tool, and the tools the
/// model calls are the route. The model only proposes; names it invents are dropped, and policy
/// still decides access to the ones it picks.
pub struct LlmRouter {
    client: LlmClient,
    tools: Vec<ToolDef>,
    system_prompt: String,
    /// Supplies candidates when the model asks a question instead of calling a tool.
    lexical: LexicalRouter,
}

impl LlmRouter {
    /// A router offering one tool per agent in `agents` to the model behind `client`.
    pub fn new(client: LlmClient, agents: &[Arc<AgentSpec>], system_prompt: String) -> Self {
        let tools = agents
            .iter()
            .map(|spec| {
                let mut description = spec.description.trim().to_string();
                let examples: Vec<String> =
                    spec.examples.iter().take(TOOL_EXAMPLES).map(|e| format!("\"{}\"", e.trim())).collect();
                if !examples.is_empty() {
                    description.push_str("\nExamples: ");
                    description.push_str(&examples.join("; "));
                }
                ToolDef {
                    name: spec.name.clone(),
                    description,
                    parameters: json!({
                        "type": "object",
                        "properties": {
                            "question": {
                                "type": "string",
                                "description": "the part of the user's request for this agent"
                            }
                        },
                        "required": ["question"]
                    }),
                }
            })
            .collect();
        Self {
            client,
            tools,
            system_prompt,
            lexical: LexicalRouter::new(agents, LexicalRouter::DEFAULT_THRESHOLD),
        }
    }

    /// The tools offered to the model, one per agent.
    pub fn tools(&self) -> &[ToolDef] {
        &self.tools
    }

    fn knows(&self, name: &str) -> bool {
        self.tools.iter().any(|t| t.name == name)
    }
}

#[async_trait]
impl Router for LlmRouter {
    /// LLM errors are returned as they are: whether to fall back is the supervisor's decision.
    async fn route(&self, ctx: &RunContext, question: &str, history: &[Message]) -> Result<RouteDecision> {
        let mut messages = Vec::with_capacity(history.len() + 2);
        messages.push(Message::system(self.system_prompt.clone()));
        // Only what was said: which agent produced a turn is routing metadata, not conversation.
        // A system turn is the caller's instructions, marked as theirs after the router's own
        // prompt; it can shape the proposal, never access (policy decides that).
        messages.extend(history.iter().filter_map(|m| match m.role {
            Role::User => Some(Message::user(m.content.clone())),
            Role::Assistant => Some(Message::assistant(m.content.clone(), None)),
            Role::System => Some(Message::system(format!("The caller's instructions:\n{}", m.content))),
            Role::Tool => None,
        }));
        messages.push(Message::user(question));
        // Fields this router does not set (response formats and the like) keep their defaults.
        #[allow(clippy::needless_update)]
        let request = ChatRequest {
            messages,
            tools: self.tools.clone(),
            temperature: Some(0.0),
            ..ChatRequest::default()
        };
        let response = self.client.chat(ctx, &request).await?;

        let mut calls: Vec<RoutedCall> = Vec::new();
        for call in response.tool_calls {
            if !self.knows(&call.name) {
                let shown: String = call.name.chars().take(64).collect();
                tracing::warn!(
                    agent = %shown,
                    "LLM router proposed an agent that does not exist; dropped"
                );
                continue;
            }
            let input = call
                .arguments
                .get("question")
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|q| !q.is_empty())
                .unwrap_or(question);
            match calls.iter_mut().find(|c| c.agent == call.name) {
                Some(existing) => {
                    if existing.input != input {
                        existing.input.push_str("; ");
                        existing.input.push_str(input);
                    }
                }
                None => calls.push(RoutedCall { agent: call.name, input: input.to_string(), score: 1.0 }),
            }
        }
        if !calls.is_empty() {
            return Ok(RouteDecision::Agents { calls });
        }

        let (fallback, candidates) = self.lexical.clarification(question, Some(&ctx.caller));
        let text = response.content.trim();
        Ok(RouteDecision::Clarify {
            question: if text.is_empty() { fallback } else { text.to_string() },
            candidates,
        })
    }
}
