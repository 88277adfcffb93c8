use crate::LexicalRouter;
use async_trait::async_trait;
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use switchboard_core::{AgentSpec, Message, Result, Role, RouteDecision, RoutedCall, Router, RunContext};
use switchboard_llm::{ChatRequest, LlmClient, ToolDef};

/// How many of an agent's examples go into its tool description: enough to show the model the
/// agent's range, few enough to keep twenty tools within a modest prompt.
const TOOL_EXAMPLES: usize = 3;

/// Routes with an OpenAI-compatible model: each sub-agent is offered as a tool, and the tools the
/// model calls are the route. The model only proposes; names it invents are dropped, and policy
/// still decides access to the ones it picks.
///
/// With many agents, the offline router first narrows the tools offered to a shortlist (see
/// [`LexicalRouter::shortlist`]), so the routing prompt stays about the size of
/// [`DEFAULT_SHORTLIST`](Self::DEFAULT_SHORTLIST) agents' descriptions however many there are.
pub struct LlmRouter {
    client: LlmClient,
    tools: Vec<ToolDef>,
    system_prompt: String,
    /// Narrows the tools offered, and supplies candidates when the model asks a question
    /// instead of calling a tool. Shared: the supervisor attributes history with the same one.
    lexical: Arc<LexicalRouter>,
    /// The most agents offered when the offline router is confident; 0 offers every agent.
    shortlist: usize,
    /// The agents that can be offered with their function's arguments.
    arguments: HashMap<String, ArgumentsOffer>,
}

/// An agent's function arguments, as the routing call can ask for them.
struct ArgumentsOffer {
    /// The schema the agent declares: what a proposal must satisfy.
    schema: Arc<Value>,
    /// The routing tool's parameters with them: the schema's, and `question`.
    parameters: Arc<Value>,
}

impl LlmRouter {
    /// How many agents are offered by default when the offline router is confident about a
    /// question: enough for its likely agents and runners-up, few enough that twenty agents cost
    /// the prompt of five.
    pub const DEFAULT_SHORTLIST: usize = 5;

    /// A router offering the model behind `client` one tool per agent in `agents`, shortlisted
    /// by `lexical` (trained on the same agents) to at most
    /// [`DEFAULT_SHORTLIST`](Self::DEFAULT_SHORTLIST) when it is confident.
    pub fn new(
        client: LlmClient,
        agents: &[Arc<AgentSpec>],
        system_prompt: String,
        lexical: Arc<LexicalRouter>,
    ) -> Self {
        // What `question` holds is said once, in the router's prompt, rather than in every tool;
        // so every tool takes the same arguments.
        let parameters = Arc::new(json!({
            "type": "object",
            "properties": { "question": { "type": "string" } },
            "required": ["question"]
        }));
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
                ToolDef { name: spec.name.clone(), description, parameters: Arc::clone(&parameters) }
            })
            .collect();
        Self {
            client,
            tools,
            system_prompt,
            lexical,
            shortlist: Self::DEFAULT_SHORTLIST,
            arguments: HashMap::new(),
        }
    }

    /// Lets the routing call ask for the arguments of each agent in `schemas` (its name, and the
    /// schema of the arguments it would ask a model for), beside `question`, so that the call
    /// routing to it proposes them too and the agent's own model call is saved. They are asked
    /// for only from the agents the question is most likely for ([`crate::Narrowed::likely`]:
    /// the offline router's confident picks, or its most probable agent when it is unsure), so
    /// the routing prompt grows by one or two schemas however many agents there are; the others
    /// take only `question`. Arguments reach the agent only when the model gave every one the
    /// schema requires; otherwise the agent asks as before. A schema without `properties`, or
    /// with a `question` of its own, is left out.
    pub fn with_arguments(mut self, schemas: impl IntoIterator<Item = (String, Arc<Value>)>) -> Self {
        for (agent, schema) in schemas {
            if !self.knows(&agent) {
                continue;
            }
            let Some(parameters) = with_question(&schema) else { continue };
            self.arguments.insert(agent, ArgumentsOffer { schema, parameters: Arc::new(parameters) });
        }
        self
    }

    /// Offers at most `size` agents when the offline router is confident; 0 offers every agent.
    pub fn with_shortlist(mut self, size: usize) -> Self {
        self.shortlist = size;
        self
    }

    /// Every agent's tool.
    pub fn tools(&self) -> &[ToolDef] {
        &self.tools
    }

    /// The tools offered to the model for `question` (the shortlist's, or all of them), and the
    /// agents among them offered with their arguments.
    fn offered(&self, question: &str, history: &[Message]) -> (Vec<ToolDef>, Vec<String>) {
        let narrowed = self.lexical.narrow(question, history, self.shortlist);
        let mut tools: Vec<ToolDef> = match &narrowed.shortlist {
            Some(names) => {
                tracing::debug!(offered = ?names, of = self.tools.len(), "routing over a shortlist");
                self.tools.iter().filter(|t| names.contains(&t.name)).cloned().collect()
            }
            None => self.tools.clone(),
        };
        let mut with_arguments = Vec::new();
        for tool in &mut tools {
            if let Some(offer) =
                self.arguments.get(&tool.name).filter(|_| narrowed.likely.contains(&tool.name))
            {
                tool.parameters = offer.parameters.clone();
                with_arguments.push(tool.name.clone());
            }
        }
        (tools, with_arguments)
    }

    fn knows(&self, name: &str) -> bool {
        self.tools.iter().any(|t| t.name == name)
    }

    /// The arguments in a routing call to `agent` that are its function's, when they hold every
    /// one its schema requires.
    fn agent_arguments(&self, agent: &str, arguments: &Value) -> Option<Map<String, Value>> {
        let schema = &self.arguments.get(agent)?.schema;
        let given: Map<String, Value> = arguments
            .as_object()?
            .iter()
            .filter(|(k, v)| *k != "question" && !v.is_null())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let required =
            schema.get("required").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
        required.iter().filter_map(Value::as_str).all(|r| given.contains_key(r)).then_some(given)
    }
}

/// `schema` with a required `question` string added to its properties; `None` when it has no
/// `properties` object or already has a `question`.
fn with_question(schema: &Value) -> Option<Value> {
    let mut merged = schema.as_object()?.clone();
    let properties = merged.get("properties")?.as_object()?;
    if properties.contains_key("question") {
        return None;
    }
    let mut with = Map::with_capacity(properties.len() + 1);
    with.insert("question".into(), json!({ "type": "string" }));
    with.extend(properties.iter().map(|(k, v)| (k.clone(), v.clone())));
    let mut required = vec![json!("question")];
    required.extend(merged.get("required").and_then(Value::as_array).into_iter().flatten().cloned());
    merged.insert("properties".into(), Value::Object(with));
    merged.insert("required".into(), Value::Array(required));
    Some(Value::Object(merged))
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
        let (tools, with_arguments) = self.offered(question, history);
        #[allow(clippy::needless_update)]
        let request = ChatRequest { messages, tools, temperature: Some(0.0), ..ChatRequest::default() };
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
                    // Two calls' arguments cannot both be kept: the agent asks for the joined input.
                    existing.arguments = None;
                }
                None => {
                    let arguments = with_arguments
                        .contains(&call.name)
                        .then(|| self.agent_arguments(&call.name, &call.arguments))
                        .flatten();
                    calls.push(RoutedCall { arguments, ..RoutedCall::new(call.name, input, 1.0) });
                }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn question_joins_a_schemas_properties_unless_it_has_its_own() {
        let schema =
            json!({"type": "object", "required": ["q"], "properties": {"q": {"type": "string"}}, "x": 1});
        assert_eq!(
            with_question(&schema),
            Some(json!({"type": "object", "required": ["question", "q"], "x": 1,
                "properties": {"question": {"type": "string"}, "q": {"type": "string"}}}))
        );
        assert_eq!(
            with_question(&json!({"type": "object", "properties": {}})),
            Some(
                json!({"type": "object", "required": ["question"], "properties": {"question": {"type": "string"}}})
            )
        );
        assert_eq!(
            with_question(&json!({"type": "object", "properties": {"question": {"type": "integer"}}})),
            None
        );
        assert_eq!(with_question(&json!({"type": "object"})), None);
        assert_eq!(with_question(&json!("not a schema")), None);
    }
}
