//! The `endpoint` kind: a remote agent reached over HTTP — a Databricks/MLflow ResponsesAgent
//! `/invocations` endpoint, an OpenAI-compatible chat endpoint, or another Switchboard (a nested
//! supervisor). The caller's identity travels with the hop's credential: for `obo` the caller's
//! (possibly downscoped) token, so the remote side sees the same human.

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Value, json};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use switchboard_core::{
    Agent, AgentInput, AgentOutput, AgentSpec, Error, ErrorKind, HopKind, Message, OnDelta, Result, Role,
    RunContext,
};
use switchboard_govern::reqwest;
use switchboard_govern::{Egress, HopTarget};

/// The wire protocol of the remote agent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// OpenAI chat completions (`messages` in, `choices[0].message.content` out).
    #[default]
    ChatCompletions,
    /// MLflow ResponsesAgent (`input` in, `output` message items out), as served at `/invocations`.
    Responses,
}

/// The `[endpoint]` table (also used by `kind = "supervisor"` for a nested Switchboard).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// The full URL to POST to.
    pub url: String,
    /// The wire protocol.
    #[serde(default)]
    pub protocol: Protocol,
    /// The `model` sent with chat completions (a nested Switchboard's supervisor name).
    #[serde(default)]
    pub model: Option<String>,
    /// Largest response body accepted, in bytes.
    #[serde(default = "default_max_response_bytes")]
    pub max_response_bytes: usize,
    /// Whether a streaming caller's request is sent on with `stream: true`, so the remote
    /// agent's answer is passed on as it writes it (default). Turn it off for a remote that
    /// refuses `stream`; one that ignores it and answers whole works either way.
    #[serde(default = "default_stream")]
    pub stream: bool,
}

fn default_max_response_bytes() -> usize {
    4 * 1024 * 1024
}

fn default_stream() -> bool {
    true
}

impl Settings {
    /// Reads and checks the kind table of `spec`.
    pub fn from_spec(spec: &AgentSpec, _base_dir: &Path) -> Result<Settings> {
        let table = spec.kind.as_str();
        let settings: Settings = crate::kind_settings(spec)?;
        if spec.connection.is_some() && !settings.url.contains("://") {
            // A path, joined onto the connection's base URL when the agent is built.
            return Ok(settings);
        }
        let url = reqwest::Url::parse(&settings.url)
            .map_err(|e| Error::config(format!("{table}.url: `{}` is not a URL: {e}", settings.url)))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(Error::config(format!(
                "{table}.url: must be an http:// or https:// URL with a host"
            )));
        }
        if settings.max_response_bytes == 0 {
            return Err(Error::config(format!("{table}.max_response_bytes: must be greater than 0")));
        }
        Ok(settings)
    }
}

/// A remote agent.
pub struct EndpointAgent {
    spec: Arc<AgentSpec>,
    egress: Egress,
    settings: Settings,
    url: reqwest::Url,
    host: String,
}

impl EndpointAgent {
    /// Builds the agent; no network I/O happens here.
    pub fn new(spec: Arc<AgentSpec>, egress: Egress, base_dir: &Path) -> Result<Self> {
        let settings = Settings::from_spec(&spec, base_dir)?;
        // Through a connection the URL may be a path on its base URL, and must pass its egress
        // rules now rather than on the first request.
        let url = match egress.connection() {
            Some(connection) => connection.url(&settings.url)?,
            None => reqwest::Url::parse(&settings.url)
                .map_err(|e| Error::config(format!("endpoint.url: `{}` is not a URL: {e}", settings.url)))?,
        };
        let host = url
            .host_str()
            .map(|h| format!("{h}:{}", url.port_or_known_default().unwrap_or(80)))
            .unwrap_or_default();
        Ok(Self { spec, egress, settings, url, host })
    }

    fn body(&self, input: &AgentInput, stream: bool) -> Value {
        let mut messages: Vec<Value> = input
            .history
            .iter()
            .filter(|m| matches!(m.role, Role::User | Role::Assistant))
            .map(|m| json!({"role": role_name(m), "content": m.content}))
            .collect();
        messages.push(json!({"role": "user", "content": input.question}));
        let mut body = match self.settings.protocol {
            Protocol::ChatCompletions => {
                let mut body = json!({"messages": messages});
                if let Some(model) = &self.settings.model {
                    body["model"] = json!(model);
                }
                body
            }
            Protocol::Responses => json!({"input": messages}),
        };
        if stream {
            body["stream"] = json!(true);
        }
        body
    }

    /// The call, as a governed `http` hop. With `on_delta`, the remote agent is asked to stream
    /// and its text goes there as it arrives; a remote that answers whole instead is read whole.
    async fn call(
        &self,
        ctx: &RunContext,
        input: &AgentInput,
        on_delta: Option<&OnDelta<'_>>,
    ) -> Result<String> {
        let on_delta = on_delta.filter(|_| self.settings.stream);
        let body = self.body(input, on_delta.is_some());
        self.egress
            .hop(ctx, HopTarget::new(HopKind::Http, &self.host), |grant| {
                let body = &body;
                async move {
                    // An invocation may act, so it is not retried; the circuit breaker applies.
                    let request = grant.request_url(reqwest::Method::POST, self.url.clone())?.json(body);
                    let response = grant.send(request, false).await.map_err(|e| match e.kind {
                        ErrorKind::Upstream => {
                            Error::upstream(format!("the remote agent is unreachable: {}", e.message))
                        }
                        _ => e,
                    })?;
                    let status = response.status();
                    if response
                        .content_length()
                        .is_some_and(|n| n as usize > self.settings.max_response_bytes)
                    {
                        return Err(too_large());
                    }
                    let streamed = response
                        .headers()
                        .get(reqwest::header::CONTENT_TYPE)
                        .and_then(|v| v.to_str().ok())
                        .is_some_and(|t| t.starts_with("text/event-stream"));
                    if let Some(on_delta) = on_delta.filter(|_| streamed && status.is_success()) {
                        grant.record("http.response.status_code", status.as_u16());
                        let limit = self.settings.max_response_bytes;
                        return crate::remote_stream::read(response, self.settings.protocol, limit, on_delta)
                            .await;
                    }
                    let bytes = response.bytes().await.map_err(|e| {
                        Error::upstream(format!(
                            "the remote agent's reply could not be read: {}",
                            e.without_url()
                        ))
                    })?;
                    if bytes.len() > self.settings.max_response_bytes {
                        return Err(too_large());
                    }
                    let text = String::from_utf8_lossy(&bytes);
                    if !status.is_success() {
                        return Err(remote_error(status, &text));
                    }
                    let json: Value = serde_json::from_str(&text)
                        .map_err(|e| Error::upstream(format!("the remote agent's reply is not JSON: {e}")))?;
                    grant.record("http.response.status_code", status.as_u16());
                    let text = parse_reply(self.settings.protocol, &json)?;
                    // Answered whole although asked to stream: it still reaches the caller.
                    if let Some(on_delta) = on_delta {
                        on_delta(&text);
                    }
                    Ok(text)
                }
            })
            .await
    }
}

fn role_name(m: &Message) -> &'static str {
    match m.role {
        Role::Assistant => "assistant",
        _ => "user",
    }
}

/// Extracts the answer text from a remote agent's reply.
pub fn parse_reply(protocol: Protocol, body: &Value) -> Result<String> {
    let text = match protocol {
        Protocol::ChatCompletions => body["choices"][0]["message"]["content"].as_str().map(str::to_string),
        Protocol::Responses => {
            let parts: Vec<&str> = body["output"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|item| item["type"] == "message")
                .flat_map(|item| item["content"].as_array().into_iter().flatten())
                .filter_map(|c| c["text"].as_str())
                .collect();
            (!parts.is_empty()).then(|| parts.join("\n"))
        }
    };
    text.ok_or_else(|| {
        Error::upstream(match protocol {
            Protocol::ChatCompletions => "the remote agent's reply has no choices[0].message.content",
            Protocol::Responses => "the remote agent's reply has no output message with text",
        })
    })
}

/// A remote agent's reply over `max_response_bytes`, whether it said so up front or streamed it.
pub(crate) fn too_large() -> Error {
    Error::upstream("the remote agent's reply is larger than max_response_bytes")
}

/// Maps a remote error status to ours, so a remote denial stays a denial.
fn remote_error(status: reqwest::StatusCode, body: &str) -> Error {
    let detail = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().or(v["message"].as_str()).map(str::to_string))
        .unwrap_or_else(|| body.chars().take(200).collect());
    match status.as_u16() {
        401 => Error::upstream(format!("the remote agent rejected our credential (401): {detail}")),
        403 => Error::denied(format!("the remote agent denied the request: {detail}")),
        429 => Error::rate_limited(
            format!("the remote agent is rate limiting: {detail}"),
            Duration::from_secs(1),
        ),
        _ => Error::upstream(format!("the remote agent answered {status}: {detail}")),
    }
}

#[async_trait]
impl Agent for EndpointAgent {
    fn spec(&self) -> &AgentSpec {
        &self.spec
    }

    async fn invoke(&self, ctx: &RunContext, input: &AgentInput) -> Result<AgentOutput> {
        let text = self.call(ctx, input, None).await?;
        Ok(AgentOutput { text, ..Default::default() })
    }

    /// The remote agent is asked to stream (unless `stream = false`), and its text is passed on
    /// as it arrives.
    async fn invoke_streaming(
        &self,
        ctx: &RunContext,
        input: &AgentInput,
        on_delta: &OnDelta<'_>,
    ) -> Result<AgentOutput> {
        let text = self.call(ctx, input, Some(on_delta)).await?;
        Ok(AgentOutput { text, ..Default::default() })
    }

    /// Reachability: a TCP connect to the endpoint's host, sending nothing, so no credential is
    /// involved outside the hop pipeline.
    async fn health(&self) -> Result<()> {
        let connect = tokio::net::TcpStream::connect(self.host.as_str());
        match tokio::time::timeout(Duration::from_secs(2), connect).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(Error::upstream(format!("{} is unreachable: {e}", self.host))),
            Err(_) => Err(Error::timeout(format!("{} did not accept a connection within 2 s", self.host))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_of_both_protocols_parse() {
        let chat = json!({"choices": [{"message": {"role": "assistant", "content": "hi"}}]});
        assert_eq!(parse_reply(Protocol::ChatCompletions, &chat).expect("chat"), "hi");
        let responses = json!({"output": [
            {"type": "function_call", "name": "x"},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "a"}, {"type": "output_text", "text": "b"}]}
        ]});
        assert_eq!(parse_reply(Protocol::Responses, &responses).expect("responses"), "a\nb");
        assert!(parse_reply(Protocol::Responses, &json!({"output": []})).is_err());
        assert!(
            parse_reply(Protocol::ChatCompletions, &json!({"error": "x"}))
                .unwrap_err()
                .message
                .contains("no choices")
        );
    }

    #[test]
    fn remote_denials_stay_denials() {
        let e =
            remote_error(reqwest::StatusCode::FORBIDDEN, r#"{"error":{"message":"required scopes: sql"}}"#);
        assert_eq!(e.kind, switchboard_core::ErrorKind::Denied);
        assert!(e.message.contains("required scopes: sql"));
    }
}
