//! An OpenAI-compatible `/v1/chat/completions` client with tool calling and token counting.
//!
//! The client owns no HTTP connection of its own: every request is a governed hop made through
//! the [`Egress`] it was built with, so LLM calls are authorized, credentialed, traced and audited
//! like any other call.

mod ledger;
mod tokens;

pub use ledger::{UsageLedger, UsageScope};
pub use tokens::count_tokens;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use switchboard_core::{Error, HopKind, Message, Result, Role, RunContext, span_inputs, span_outputs};
use switchboard_govern::{Egress, HopTarget};

/// A function the model may call.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolDef {
    /// Function name.
    pub name: String,
    /// What it does; the model reads this to choose.
    pub description: String,
    /// JSON Schema of its arguments.
    pub parameters: Value,
}

/// A call the model asked for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    /// The function name.
    pub name: String,
    /// Parsed JSON arguments.
    pub arguments: Value,
}

/// Token usage of one completion, or summed over several.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Completion tokens.
    pub completion_tokens: u64,
    /// Prompt tokens the server answered from its prompt cache (part of `prompt_tokens`).
    #[serde(default)]
    pub cached_tokens: u64,
    /// Completion tokens spent on reasoning (part of `completion_tokens`).
    #[serde(default)]
    pub reasoning_tokens: u64,
}

impl Usage {
    /// Prompt plus completion tokens.
    pub fn total(&self) -> u64 {
        self.prompt_tokens + self.completion_tokens
    }
}

impl std::ops::AddAssign for Usage {
    fn add_assign(&mut self, other: Self) {
        self.prompt_tokens += other.prompt_tokens;
        self.completion_tokens += other.completion_tokens;
        self.cached_tokens += other.cached_tokens;
        self.reasoning_tokens += other.reasoning_tokens;
    }
}

/// A completion.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChatResponse {
    /// Text content (may be empty when the model only calls tools).
    pub content: String,
    /// Requested tool calls.
    pub tool_calls: Vec<ToolCall>,
    /// Usage, from the server or counted locally when the server omits it.
    pub usage: Usage,
}

/// A chat request.
#[derive(Debug, Clone, Default)]
pub struct ChatRequest {
    /// The conversation.
    pub messages: Vec<Message>,
    /// Tools offered; empty for plain completion.
    pub tools: Vec<ToolDef>,
    /// Sampling temperature; `None` leaves the server default.
    pub temperature: Option<f32>,
}

/// A client for one model on one OpenAI-compatible server.
#[derive(Clone)]
pub struct LlmClient {
    egress: Egress,
    url: String,
    model: String,
    ledger: UsageLedger,
}

impl LlmClient {
    /// `base_url` is the server root up to and including `/v1` (e.g. `http://127.0.0.1:8000/v1`).
    pub fn new(egress: Egress, base_url: &str, model: impl Into<String>) -> Self {
        Self {
            egress,
            url: format!("{}/chat/completions", base_url.trim_end_matches('/')),
            model: model.into(),
            ledger: UsageLedger::default(),
        }
    }

    /// Where this client (and every clone of it) sums usage per request: open a scope for a
    /// request to count its calls.
    pub fn usage_ledger(&self) -> &UsageLedger {
        &self.ledger
    }

    /// The model name.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// One completion, as a governed `llm` hop.
    pub async fn chat(&self, ctx: &RunContext, request: &ChatRequest) -> Result<ChatResponse> {
        self.complete(ctx, request, None).await
    }

    /// One completion whose reply is constrained by OpenAI's `response_format` (e.g.
    /// `{"type": "json_schema", "json_schema": {…}}`), sent as is. The reply is not checked
    /// here: the caller knows the schema and what a violation means.
    pub async fn chat_formatted(
        &self,
        ctx: &RunContext,
        request: &ChatRequest,
        response_format: &Value,
    ) -> Result<ChatResponse> {
        self.complete(ctx, request, Some(response_format)).await
    }

    async fn complete(
        &self,
        ctx: &RunContext,
        request: &ChatRequest,
        response_format: Option<&Value>,
    ) -> Result<ChatResponse> {
        let mut body = self.body(request);
        if let Some(format) = response_format {
            body["response_format"] = format.clone();
        }
        let prompt_text: String =
            request.messages.iter().map(|m| m.content.as_str()).collect::<Vec<_>>().join("\n");
        self.egress
            .hop(ctx, HopTarget::new(HopKind::Llm, &self.model), |grant| {
                let body = &body;
                let prompt_text = &prompt_text;
                async move {
                    let last_user = request.messages.iter().rev().find(|m| m.role == Role::User);
                    let inputs = json!({"messages": body["messages"], "tools": request.tools.len()});
                    for (key, value) in span_inputs(inputs, last_user.map(|m| m.content.as_str())) {
                        grant.record(key, value);
                    }
                    let response = grant
                        .request(reqwest::Method::POST, &self.url)?
                        .json(body)
                        .send()
                        .await
                        .map_err(|e| {
                        Error::upstream(format!("LLM request to {} failed: {}", self.url, e.without_url()))
                    })?;
                    let status = response.status();
                    let text = response.text().await.map_err(|e| {
                        Error::upstream(format!("LLM response could not be read: {}", e.without_url()))
                    })?;
                    if !status.is_success() {
                        return Err(Error::upstream(format!(
                            "LLM answered {status}: {}",
                            truncate(&text, 300)
                        )));
                    }
                    let parsed = parse_response(&text)?;
                    let usage = if parsed.usage == Usage::default() {
                        Usage {
                            prompt_tokens: count_tokens(prompt_text),
                            completion_tokens: count_tokens(&parsed.content),
                            ..Usage::default()
                        }
                    } else {
                        parsed.usage
                    };
                    grant.record("gen_ai.usage.input_tokens", usage.prompt_tokens);
                    grant.record("gen_ai.usage.output_tokens", usage.completion_tokens);
                    if usage.cached_tokens > 0 {
                        grant.record("gen_ai.usage.cache_read.input_tokens", usage.cached_tokens);
                    }
                    for (key, value) in span_outputs(
                        json!({"content": parsed.content, "tool_calls": parsed.tool_calls}),
                        Some(&parsed.content),
                    ) {
                        grant.record(key, value);
                    }
                    self.ledger.add(grant.ctx().request_id.as_str(), usage);
                    Ok(ChatResponse { usage, ..parsed })
                }
            })
            .await
    }

    fn body(&self, request: &ChatRequest) -> Value {
        let messages: Vec<Value> = request
            .messages
            .iter()
            .map(|m| {
                let role = match m.role {
                    Role::System => "system",
                    Role::User => "user",
                    Role::Assistant => "assistant",
                    Role::Tool => "tool",
                };
                json!({"role": role, "content": m.content})
            })
            .collect();
        let mut body = json!({"model": self.model, "messages": messages});
        if !request.tools.is_empty() {
            body["tools"] = request
                .tools
                .iter()
                .map(|t| json!({"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.parameters}}))
                .collect();
            body["tool_choice"] = json!("auto");
        }
        if let Some(t) = request.temperature {
            body["temperature"] = json!(t);
        }
        body
    }
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[derive(Deserialize)]
struct WireResponse {
    choices: Vec<WireChoice>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Deserialize, Default)]
struct WireUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
    #[serde(default)]
    prompt_tokens_details: Option<WireDetails>,
    #[serde(default)]
    completion_tokens_details: Option<WireDetails>,
}

/// Either detail object; each has only one of the two counts.
#[derive(Deserialize, Default)]
struct WireDetails {
    #[serde(default)]
    cached_tokens: Option<u64>,
    #[serde(default)]
    reasoning_tokens: Option<u64>,
}

impl From<WireUsage> for Usage {
    fn from(w: WireUsage) -> Self {
        Usage {
            prompt_tokens: w.prompt_tokens,
            completion_tokens: w.completion_tokens,
            cached_tokens: w.prompt_tokens_details.and_then(|d| d.cached_tokens).unwrap_or(0),
            reasoning_tokens: w.completion_tokens_details.and_then(|d| d.reasoning_tokens).unwrap_or(0),
        }
    }
}

#[derive(Deserialize)]
struct WireChoice {
    message: WireMessage,
}

#[derive(Deserialize)]
struct WireMessage {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    tool_calls: Vec<WireToolCall>,
}

#[derive(Deserialize)]
struct WireToolCall {
    function: WireFunction,
}

#[derive(Deserialize)]
struct WireFunction {
    name: String,
    #[serde(default)]
    arguments: String,
}

/// Parses an OpenAI chat completion body.
pub fn parse_response(text: &str) -> Result<ChatResponse> {
    let wire: WireResponse = serde_json::from_str(text)
        .map_err(|e| Error::upstream(format!("LLM response is not a chat completion: {e}")))?;
    let choice =
        wire.choices.into_iter().next().ok_or_else(|| Error::upstream("LLM response has no choices"))?;
    let tool_calls = choice
        .message
        .tool_calls
        .into_iter()
        .map(|c| {
            let arguments = if c.function.arguments.trim().is_empty() {
                json!({})
            } else {
                serde_json::from_str(&c.function.arguments).map_err(|e| {
                    Error::upstream(format!(
                        "LLM tool call `{}` has arguments that are not JSON: {e}",
                        c.function.name
                    ))
                })?
            };
            Ok(ToolCall { name: c.function.name, arguments })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(ChatResponse {
        content: choice.message.content.unwrap_or_default(),
        tool_calls,
        usage: wire.usage.map(Usage::from).unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_text_and_tool_calls() {
        let body = r#"{"id":"x","choices":[{"index":0,"message":{"role":"assistant","content":null,
            "tool_calls":[{"id":"c1","type":"function","function":{"name":"sales","arguments":"{\"question\":\"revenue\"}"}}]},
            "finish_reason":"tool_calls"}],"usage":{"prompt_tokens":12,"completion_tokens":3,"total_tokens":15}}"#;
        let r = parse_response(body).expect("valid");
        assert_eq!(r.content, "");
        assert_eq!(
            r.tool_calls,
            vec![ToolCall { name: "sales".into(), arguments: json!({"question": "revenue"}) }]
        );
        assert_eq!(r.usage, Usage { prompt_tokens: 12, completion_tokens: 3, ..Default::default() });
        let cached = r#"{"choices":[{"message":{"content":"hi"}}],"usage":{"prompt_tokens":20,
            "completion_tokens":5,"prompt_tokens_details":{"cached_tokens":8},
            "completion_tokens_details":{"reasoning_tokens":2}}}"#;
        let u = parse_response(cached).expect("valid").usage;
        assert_eq!(
            (u.prompt_tokens, u.completion_tokens, u.cached_tokens, u.reasoning_tokens),
            (20, 5, 8, 2)
        );
    }

    #[test]
    fn rejects_malformed_bodies_with_a_clear_message() {
        assert!(parse_response("not json").unwrap_err().message.contains("not a chat completion"));
        assert!(parse_response(r#"{"choices":[]}"#).unwrap_err().message.contains("no choices"));
        let bad_args =
            r#"{"choices":[{"message":{"tool_calls":[{"function":{"name":"f","arguments":"{oops"}}]}}]}"#;
        assert!(parse_response(bad_args).unwrap_err().message.contains("not JSON"));
    }
}
