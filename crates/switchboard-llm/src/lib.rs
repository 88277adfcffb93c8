//! An OpenAI-compatible `/v1/chat/completions` client with tool calling and token counting.
//!
//! The client owns no HTTP connection of its own: every request is a governed hop made through
//! the [`Egress`] it was built with, so LLM calls are authorized, credentialed, traced and audited
//! like any other call.

mod tokens;

pub use tokens::count_tokens;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use switchboard_core::{Error, HopKind, Message, Result, Role, RunContext};
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

/// Token usage of one completion.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Completion tokens.
    pub completion_tokens: u64,
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
}

impl LlmClient {
    /// `base_url` is the server root up to and including `/v1` (e.g. `http://127.0.0.1:8000/v1`).
    pub fn new(egress: Egress, base_url: &str, model: impl Into<String>) -> Self {
        Self {
            egress,
            url: format!("{}/chat/completions", base_url.trim_end_matches('/')),
            model: model.into(),
        }
    }

    /// The model name.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// One completion, as a governed `llm` hop.
    pub async fn chat(&self, ctx: &RunContext, request: &ChatRequest) -> Result<ChatResponse> {
        let body = self.body(request);
        let prompt_text: String =
            request.messages.iter().map(|m| m.content.as_str()).collect::<Vec<_>>().join("\n");
        self.egress
            .hop(ctx, HopTarget::new(HopKind::Llm, &self.model), |grant| {
                let body = &body;
                let prompt_text = &prompt_text;
                async move {
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
                        }
                    } else {
                        parsed.usage
                    };
                    grant.record("gen_ai.usage.input_tokens", usage.prompt_tokens);
                    grant.record("gen_ai.usage.output_tokens", usage.completion_tokens);
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
    usage: Option<Usage>,
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
        usage: wire.usage.unwrap_or_default(),
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
        assert_eq!(r.usage, Usage { prompt_tokens: 12, completion_tokens: 3 });
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
