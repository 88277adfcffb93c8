//! An OpenAI-compatible `/v1/chat/completions` client with tool calling and token counting.
//!
//! The client owns no HTTP connection of its own: every request is a governed hop made through
//! the [`Egress`] it was built with, so LLM calls are authorized, credentialed, traced and audited
//! like any other call.

mod ledger;
mod sse;
mod tokens;

pub use ledger::{UsageLedger, UsageScope};
pub use sse::SseLines;
pub use tokens::{count_prompt_tokens, count_tokens, count_tokens_for, encoding_for};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::borrow::Cow;
use std::sync::Arc;
use switchboard_core::{
    Error, ErrorKind, HopKind, Message, OnDelta, Result, Role, RunContext, span_inputs, span_outputs,
};
use switchboard_govern::{Egress, HopTarget};

/// A function the model may call.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolDef {
    /// Function name.
    pub name: String,
    /// What it does; the model reads this to choose.
    pub description: String,
    /// JSON Schema of its arguments. Shared, so that a tool offered on every call (a router's
    /// agents, a tool agent's function) is offered without copying its schema each time.
    pub parameters: Arc<Value>,
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

/// A client for one model on one OpenAI-compatible server, with optional fallbacks and an
/// A/B split between models.
#[derive(Clone)]
pub struct LlmClient {
    egress: Egress,
    url: CompletionsUrl,
    model: String,
    ledger: UsageLedger,
    /// Tried in order when the primary answers 429 or 5xx, fails to connect, or its circuit is open.
    fallbacks: Vec<Target>,
    /// `(model, weight)`; when non-empty, each request's primary model is picked from it.
    split: Vec<(String, u32)>,
    /// The HTTP client for this model's server when it needs settings of its own; otherwise the
    /// gateway's.
    http: Option<reqwest::Client>,
}

/// The most alternates a client tries after its primary: each one adds a full attempt's latency
/// to a request whose primary failed.
pub const MAX_FALLBACKS: usize = 2;

/// An alternate model or endpoint the client falls back to.
#[derive(Clone)]
pub struct Target {
    egress: Egress,
    url: CompletionsUrl,
    model: String,
}

impl Target {
    /// `model` on the server at `base_url` (including `/v1`), called through `egress` (whose
    /// agent declares the credential it is called with).
    pub fn new(egress: Egress, base_url: &str, model: impl Into<String>) -> Self {
        Self { egress, url: CompletionsUrl::new(base_url), model: model.into() }
    }
}

/// A server's chat completions URL, parsed once rather than for every call; a base URL that
/// does not make one is reported when the client is called.
#[derive(Clone)]
struct CompletionsUrl(std::result::Result<reqwest::Url, String>);

impl CompletionsUrl {
    fn new(base_url: &str) -> Self {
        let url = format!("{}/chat/completions", base_url.trim_end_matches('/'));
        Self(reqwest::Url::parse(&url).map_err(|e| format!("the LLM URL `{url}` is not a URL: {e}")))
    }

    fn get(&self) -> Result<reqwest::Url> {
        self.0.clone().map_err(Error::config)
    }
}

impl std::fmt::Display for CompletionsUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Ok(url) => f.write_str(url.as_str()),
            Err(_) => f.write_str("(not a URL)"),
        }
    }
}

/// Picks from `split` by `request_id`: the same request id always lands on the same model, and
/// over many ids each model gets its weight's share (FNV-1a, stable across processes).
pub fn pick_split<'a>(split: &'a [(String, u32)], request_id: &str) -> Option<&'a str> {
    let total: u64 = split.iter().map(|(_, w)| u64::from(*w)).sum();
    if total == 0 {
        return None;
    }
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in request_id.as_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    let mut point = hash % total;
    for (model, weight) in split {
        if point < u64::from(*weight) {
            return Some(model);
        }
        point -= u64::from(*weight);
    }
    None
}

impl LlmClient {
    /// `base_url` is the server root up to and including `/v1` (e.g. `http://127.0.0.1:8000/v1`).
    pub fn new(egress: Egress, base_url: &str, model: impl Into<String>) -> Self {
        Self {
            egress,
            url: CompletionsUrl::new(base_url),
            model: model.into(),
            ledger: UsageLedger::default(),
            fallbacks: Vec::new(),
            split: Vec::new(),
            http: None,
        }
    }

    /// Calls the primary and every fallback with `http` instead of the gateway's shared client:
    /// e.g. one built with `http2_prior_knowledge`, so that concurrent calls to a plain-HTTP
    /// server that speaks HTTP/2 share a connection instead of holding one each.
    pub fn with_http(mut self, http: reqwest::Client) -> Self {
        self.http = Some(http);
        self
    }

    /// Alternates tried in order (at most two are used) when the primary answers 429 or 5xx,
    /// cannot be reached, or its circuit is open.
    pub fn with_fallbacks(mut self, fallbacks: Vec<Target>) -> Self {
        self.fallbacks = fallbacks.into_iter().take(MAX_FALLBACKS).collect();
        self
    }

    /// Splits traffic between models on the primary server by weight (e.g. 80/20): each request
    /// id maps to one model, deterministically.
    pub fn with_split(mut self, split: Vec<(String, u32)>) -> Self {
        self.split = split;
        self
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
        self.complete(ctx, request_body(request, None, false), Some(request), None).await
    }

    /// One completion streamed (`stream: true`, with `stream_options.include_usage`): `on_delta`
    /// gets each piece of the reply's text as the model produces it, in order, and the returned
    /// response holds the whole text (the pieces concatenated) and the usage the model reported
    /// (counted locally when it reports none). Tool calls are not streamed; use [`chat`](Self::chat)
    /// for requests that offer tools. A fallback model is only tried when nothing has been
    /// passed to `on_delta` yet, so the caller never sees two answers' pieces.
    ///
    /// The request is taken, not borrowed: once it is written as the request body it is
    /// dropped, so a conversation held open while the model writes holds its prompt once.
    pub async fn chat_stream(
        &self,
        ctx: &RunContext,
        request: ChatRequest,
        on_delta: &OnDelta<'_>,
    ) -> Result<ChatResponse> {
        let body = request_body(&request, None, true);
        drop(request);
        self.complete(ctx, body, None, Some(on_delta)).await
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
        let body = request_body(request, Some(response_format), false);
        self.complete(ctx, body, Some(request), None).await
    }

    /// Sends `body` (see [`request_body`]) to the primary, then to the fallbacks while they
    /// may help. The span's inputs are made from `request`, or else read back from the body,
    /// which is all a streamed call keeps of its request; so is any token count the server
    /// leaves out.
    async fn complete(
        &self,
        ctx: &RunContext,
        body: String,
        request: Option<&ChatRequest>,
        on_delta: Option<&OnDelta<'_>>,
    ) -> Result<ChatResponse> {
        // Whether any piece reached the caller: after that, another model's answer would be
        // spliced onto this one's, so a failure is final.
        let streamed = std::sync::atomic::AtomicBool::new(false);
        let forward = |piece: &str| {
            streamed.store(true, std::sync::atomic::Ordering::Relaxed);
            if let Some(f) = on_delta {
                f(piece);
            }
        };
        let sink: Option<&OnDelta<'_>> = on_delta.map(|_| &forward as _);
        let model = pick_split(&self.split, ctx.request_id.as_str()).unwrap_or(&self.model);
        let primary = Target { egress: self.egress.clone(), url: self.url.clone(), model: model.to_string() };
        let mut last = None;
        for (i, target) in std::iter::once(&primary).chain(&self.fallbacks).enumerate() {
            let status = std::sync::atomic::AtomicU16::new(0);
            let call = |grant| {
                let (body, status) = (&body, &status);
                async move {
                    let result = self.call_once(&grant, target, body, i, status, sink).await;
                    // Those made from the request, or a streamed call's read back from the body
                    // it keeps anyway, once the call is over, so that a conversation held open
                    // does not hold a second copy.
                    let inputs = request.map_or_else(|| body_inputs(body), request_inputs);
                    for (key, value) in inputs {
                        grant.record(key, value);
                    }
                    result
                }
            };
            match target.egress.hop(ctx, HopTarget::new(HopKind::Llm, &target.model), call).await {
                Ok(response) => return Ok(response),
                Err(e) => {
                    let status = status.load(std::sync::atomic::Ordering::Relaxed);
                    // Another model helps when this one is overloaded or down, not when the
                    // request itself is refused (4xx) or the caller's budget is spent.
                    let worth_falling_back = status == 429
                        || status >= 500
                        || matches!(e.kind, ErrorKind::Unavailable)
                        || (status == 0 && e.kind == ErrorKind::Upstream);
                    if !worth_falling_back || streamed.load(std::sync::atomic::Ordering::Relaxed) {
                        return Err(e);
                    }
                    tracing::warn!(model = %target.model, status, "LLM call failed; trying the next fallback");
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| Error::internal("no LLM target to call")))
    }

    /// One attempt on `target`, inside its hop.
    #[allow(clippy::too_many_arguments)]
    async fn call_once(
        &self,
        grant: &switchboard_govern::HopGrant,
        target: &Target,
        body: &str,
        fallback: usize,
        last_status: &std::sync::atomic::AtomicU16,
        on_delta: Option<&OnDelta<'_>>,
    ) -> Result<ChatResponse> {
        if fallback > 0 {
            grant.record("switchboard.llm.fallback", fallback as u64);
        }
        // A completion has no side effect, so a POST may be retried.
        let rb = match &self.http {
            Some(http) => grant.request_via(http, reqwest::Method::POST, target.url.get()?)?,
            None => grant.request_url(reqwest::Method::POST, target.url.get()?)?,
        }
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(with_model(body, &target.model));
        let response = grant.send(rb, true).await.map_err(|e| match e.kind {
            ErrorKind::Upstream => {
                Error::upstream(format!("LLM request to {} failed: {}", target.url, e.message))
            }
            _ => e,
        })?;
        let status = response.status();
        last_status.store(status.as_u16(), std::sync::atomic::Ordering::Relaxed);
        let parsed = match on_delta {
            Some(on_delta) if status.is_success() => read_stream(response, on_delta).await?,
            _ => {
                // Parsed from the bytes: serde_json checks the UTF-8 of what it reads, so a text
                // copy (reqwest's `text()`, a pass over every byte) is made only to report an error.
                let body = response.bytes().await.map_err(|e| {
                    Error::upstream(format!("LLM response could not be read: {}", e.without_url()))
                })?;
                if !status.is_success() {
                    let text = String::from_utf8_lossy(&body);
                    return Err(Error::upstream(format!("LLM answered {status}: {}", truncate(&text, 300))));
                }
                parse_response(&body)?
            }
        };
        // What the server left out is counted here, in the model's encoding, so the
        // span, the usage table and the tokens-per-minute limits always see figures.
        let (usage, counted) = tokens::complete_usage(&target.model, body, &parsed);
        if let Some(encoding) = counted {
            grant.record("switchboard.llm.tokens_counted", format!("tiktoken {encoding}"));
        }
        grant.record("gen_ai.usage.input_tokens", usage.prompt_tokens);
        grant.record("gen_ai.usage.output_tokens", usage.completion_tokens);
        if usage.cached_tokens > 0 {
            grant.record("gen_ai.usage.cache_read.input_tokens", usage.cached_tokens);
        }
        let outputs = SpanOutputs { content: &parsed.content, tool_calls: &parsed.tool_calls };
        for (key, value) in span_outputs(outputs, Some(&parsed.content)) {
            grant.record(key, value);
        }
        // What the usage table reads as the model actually used.
        grant.record("gen_ai.response.model", target.model.clone());
        self.ledger.add(grant.ctx().request_id.as_str(), usage);
        Ok(ChatResponse { usage, ..parsed })
    }
}

/// A request body as text, without `model` (each target names its own): written once, straight
/// from the request, and only the text kept for the rest of the call, as a JSON tree of the
/// prompt costs several times its size, held for as long as the model writes.
fn request_body(request: &ChatRequest, response_format: Option<&Value>, stream: bool) -> String {
    let tools = request_tools(&request.tools);
    let body = RequestBody {
        messages: request_messages(request),
        response_format,
        stream,
        stream_options: stream.then_some(StreamOptions { include_usage: true }),
        temperature: request.temperature,
        tool_choice: (!tools.is_empty()).then_some("auto"),
        tools,
    };
    // Serializing borrowed strings and `Value`s cannot fail.
    let mut text = switchboard_core::to_json(&body).unwrap_or_default();
    text.shrink_to_fit();
    text
}

/// A chat completion request as the wire has it, borrowed from a [`ChatRequest`]. Fields are in
/// alphabetical order, as a JSON object of them would list them.
#[derive(Serialize)]
struct RequestBody<'a> {
    messages: Vec<RequestMessage<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_format: Option<&'a Value>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_options: Option<StreamOptions>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<&'static str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<RequestTool<'a>>,
}

#[derive(Serialize)]
struct StreamOptions {
    include_usage: bool,
}

/// A chat message as the wire has it; also how the LLM span's inputs read it back.
#[derive(Serialize, Deserialize)]
struct RequestMessage<'a> {
    #[serde(borrow)]
    content: Cow<'a, str>,
    #[serde(borrow)]
    role: Cow<'a, str>,
}

/// A function tool as the wire has it.
#[derive(Serialize)]
struct RequestTool<'a> {
    function: RequestFunction<'a>,
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(Serialize)]
struct RequestFunction<'a> {
    description: &'a str,
    name: &'a str,
    parameters: &'a Value,
}

/// Tools as the wire has them: function tools.
fn request_tools(tools: &[ToolDef]) -> Vec<RequestTool<'_>> {
    tools
        .iter()
        .map(|t| RequestTool {
            function: RequestFunction {
                description: &t.description,
                name: &t.name,
                parameters: &t.parameters,
            },
            kind: "function",
        })
        .collect()
}

/// `body` (a JSON object without `model`) with `"model": model` first.
fn with_model(body: &str, model: &str) -> String {
    let rest = body.strip_prefix('{').unwrap_or(body);
    let separator = if rest.starts_with('}') { "" } else { "," };
    format!("{{\"model\":{}{separator}{rest}", Value::from(model))
}

/// What the LLM span's inputs read back from a request body: the messages as sent, and the
/// tools offered by name. Strings without escapes are borrowed from the body.
#[derive(Deserialize)]
struct SentBody<'a> {
    #[serde(borrow)]
    messages: Vec<RequestMessage<'a>>,
    #[serde(default, borrow)]
    tools: Vec<SentTool<'a>>,
}

#[derive(Deserialize)]
struct SentTool<'a> {
    #[serde(borrow)]
    function: SentFunction<'a>,
}

#[derive(Deserialize)]
struct SentFunction<'a> {
    #[serde(borrow)]
    name: Cow<'a, str>,
}

/// The LLM span's `mlflow.spanInputs`.
#[derive(Serialize)]
struct SpanInputs<'a> {
    messages: &'a [RequestMessage<'a>],
    tools: Vec<&'a str>,
}

/// The LLM span's `mlflow.spanOutputs`.
#[derive(Serialize)]
struct SpanOutputs<'a> {
    content: &'a str,
    tool_calls: &'a [ToolCall],
}

/// The request's messages as the wire has them, borrowed.
fn request_messages(request: &ChatRequest) -> Vec<RequestMessage<'_>> {
    request
        .messages
        .iter()
        .map(|m| RequestMessage { content: (&*m.content).into(), role: m.role.as_str().into() })
        .collect()
}

/// The LLM span's input attributes: the messages, and the tools offered by name (a router may
/// offer a shortlist, and "why not that agent?" starts with whether it was offered).
fn input_attributes(messages: &[RequestMessage<'_>], tools: Vec<&str>) -> Vec<(&'static str, Value)> {
    let last_user = messages.iter().rev().find(|m| m.role == Role::User.as_str());
    span_inputs(SpanInputs { messages, tools }, last_user.map(|m| &*m.content))
}

/// The span's inputs of a call that is not streamed, made from its request, which the caller
/// holds for the call anyway: reading them back from the body would parse all of it again, the
/// tools' schemas most of it (2% of a served run's instructions).
fn request_inputs(request: &ChatRequest) -> Vec<(&'static str, Value)> {
    input_attributes(&request_messages(request), request.tools.iter().map(|t| &*t.name).collect())
}

/// The span's inputs read back from a request body: a streamed call's, whose request is dropped
/// once written, so that a conversation held open holds its prompt once.
fn body_inputs(body: &str) -> Vec<(&'static str, Value)> {
    match serde_json::from_str::<SentBody<'_>>(body) {
        Ok(sent) => input_attributes(&sent.messages, sent.tools.iter().map(|t| &*t.function.name).collect()),
        Err(_) => Vec::new(),
    }
}

/// The `(role, content)` of each message of a request body's `messages`.
fn wire_messages(messages: &Value) -> impl DoubleEndedIterator<Item = (&str, &str)> {
    messages
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| (m["role"].as_str().unwrap_or_default(), m["content"].as_str().unwrap_or_default()))
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Reads a streamed chat completion (server-sent events of `chat.completion.chunk`s), passing
/// each text delta to `on_delta` as it arrives. The whole text and the final usage chunk's
/// counts are returned; a stream that ends without `[DONE]` still returns what arrived, since
/// some servers close the connection instead.
async fn read_stream(mut response: reqwest::Response, on_delta: &OnDelta<'_>) -> Result<ChatResponse> {
    // Nothing here reads the headers again, and a stream is held for as long as the model writes.
    *response.headers_mut() = reqwest::header::HeaderMap::new();
    let mut parser = StreamParser::default();
    loop {
        let chunk = response
            .chunk()
            .await
            .map_err(|e| Error::upstream(format!("the LLM's stream broke off: {}", e.without_url())))?;
        let Some(chunk) = chunk else { break };
        if parser.feed(&chunk, on_delta)? {
            break;
        }
    }
    Ok(ChatResponse { content: parser.content, tool_calls: Vec::new(), usage: parser.usage })
}

/// Incremental parser of a chat completion event stream.
#[derive(Default)]
struct StreamParser {
    lines: SseLines,
    content: String,
    usage: Usage,
}

impl StreamParser {
    /// Takes the next bytes; passes every complete event's text on. True once `[DONE]` arrived.
    fn feed(&mut self, bytes: &[u8], on_delta: &OnDelta<'_>) -> Result<bool> {
        let (content, usage) = (&mut self.content, &mut self.usage);
        self.lines.feed(bytes, |data| {
            if data == "[DONE]" {
                return Ok(true);
            }
            let chunk = parse_chunk(data)?;
            if let Some(u) = chunk.usage {
                *usage = u;
            }
            if !chunk.text.is_empty() {
                on_delta(&chunk.text);
                content.push_str(&chunk.text);
            }
            Ok(false)
        })
    }
}

/// One `chat.completion.chunk` of a streamed completion: its text and the usage it reports.
#[derive(Debug, Default, PartialEq)]
pub struct Chunk {
    /// The text of its choices' deltas (empty for a role or usage chunk).
    pub text: String,
    /// The usage, on the final chunk when `stream_options.include_usage` was asked for.
    pub usage: Option<Usage>,
}

/// Parses one event's data of a streamed chat completion; an error object in the stream (as
/// OpenAI reports a failure mid-stream) is an upstream error.
pub fn parse_chunk(data: &str) -> Result<Chunk> {
    let chunk: WireChunk = serde_json::from_str(data)
        .map_err(|e| Error::upstream(format!("the stream sent an event that is not a chunk: {e}")))?;
    if let Some(error) = chunk.error {
        return Err(Error::upstream(format!("the stream failed: {error}")));
    }
    let text = chunk.choices.into_iter().filter_map(|c| c.delta.content).collect();
    Ok(Chunk { text, usage: chunk.usage.map(Usage::from) })
}

#[derive(Deserialize)]
struct WireChunk {
    #[serde(default)]
    choices: Vec<WireChunkChoice>,
    #[serde(default)]
    usage: Option<WireUsage>,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Deserialize)]
struct WireChunkChoice {
    #[serde(default)]
    delta: WireDelta,
}

#[derive(Deserialize, Default)]
struct WireDelta {
    #[serde(default)]
    content: Option<String>,
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

/// Parses an OpenAI chat completion body: JSON, which is UTF-8, so a body that is not is refused
/// rather than repaired.
pub fn parse_response(body: impl AsRef<[u8]>) -> Result<ChatResponse> {
    let wire: WireResponse = serde_json::from_slice(body.as_ref())
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
    fn each_target_names_its_model_first_in_the_same_body() {
        let body = json!({"messages": [{"role": "user", "content": "hi \"there\""}]}).to_string();
        let sent: Value = serde_json::from_str(&with_model(&body, "gpt-4o \"mini\"")).expect("JSON");
        assert_eq!(
            sent,
            json!({"model": "gpt-4o \"mini\"", "messages": [{"role": "user", "content": "hi \"there\""}]})
        );
        assert_eq!(with_model("{}", "m"), r#"{"model":"m"}"#);
    }

    #[test]
    fn span_inputs_made_from_the_request_read_as_those_read_back_from_its_body() {
        let tool = |name: &str| ToolDef {
            name: name.into(),
            description: format!("{name} \"quoted\"\nand more"),
            parameters: Arc::new(json!({"type": "object", "properties": {"question": {"type": "string"}}})),
        };
        let request = ChatRequest {
            messages: vec![
                Message::system("Route \"each\" request.\n\tTabs, \\ and é."),
                Message::user("first"),
                Message::assistant("an answer", None),
                Message::user("What about \"hotels\"? 💡"),
            ],
            tools: vec![tool("sales"), tool("docs")],
            temperature: Some(0.0),
        };
        let made = request_inputs(&request);
        assert_eq!(made, body_inputs(&request_body(&request, None, false)));
        assert_eq!(made, body_inputs(&request_body(&request, None, true)));
        let keys: Vec<_> = made.iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, ["mlflow.spanInputs", "gen_ai.input.messages"]);
        let inputs: Value = serde_json::from_str(made[0].1.as_str().expect("JSON text")).expect("JSON");
        assert_eq!(inputs["tools"], json!(["sales", "docs"]));
        assert_eq!(inputs["messages"][3]["content"], "What about \"hotels\"? 💡");
        assert!(made[1].1.as_str().expect("JSON text").contains("hotels"), "the last user message");
        assert!(body_inputs("not JSON").is_empty());
    }

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
    fn streamed_chunks_are_parsed_across_arbitrary_splits() {
        let stream = concat!(
            "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n",
            "data: {\"choices\":[{\"delta\":{\"content\":\"Hotels are \"}}]}\n\n",
            "data: {\"choices\":[{\"delta\":{\"content\":\"capped – \"}}]}\r\n\r\n",
            ": keep-alive\n\n",
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":4}}\n\n",
            "data: [DONE]\n\n",
        );
        // Every split point, including inside the multi-byte dash.
        for split in 0..stream.len() {
            let pieces = std::sync::Mutex::new(Vec::new());
            let on_delta = |t: &str| pieces.lock().unwrap().push(t.to_string());
            let mut parser = StreamParser::default();
            let (a, b) = stream.as_bytes().split_at(split);
            let done = parser.feed(a, &on_delta).unwrap() || parser.feed(b, &on_delta).unwrap();
            assert!(done, "split at {split}");
            assert_eq!(*pieces.lock().unwrap(), ["Hotels are ", "capped – "], "split at {split}");
            assert_eq!(parser.content, "Hotels are capped – ");
            assert_eq!((parser.usage.prompt_tokens, parser.usage.completion_tokens), (9, 4));
        }
        let mut parser = StreamParser::default();
        let err = parser.feed(b"data: {\"error\":{\"message\":\"overloaded\"}}\n", &|_| {}).unwrap_err();
        assert!(err.message.contains("overloaded"), "{}", err.message);
    }

    #[test]
    fn rejects_malformed_bodies_with_a_clear_message() {
        assert!(parse_response("not json").unwrap_err().message.contains("not a chat completion"));
        // JSON is UTF-8: a body that is not is refused, not repaired.
        let not_utf8: &[u8] = b"{\"choices\":[{\"message\":{\"content\":\"caf\xe9\"}}]}";
        assert!(parse_response(not_utf8).unwrap_err().message.contains("not a chat completion"));
        let utf8 = "{\"choices\":[{\"message\":{\"content\":\"caf\u{e9}\"}}]}";
        assert_eq!(parse_response(utf8).expect("valid").content, "caf\u{e9}");
        assert!(parse_response(r#"{"choices":[]}"#).unwrap_err().message.contains("no choices"));
        let bad_args =
            r#"{"choices":[{"message":{"tool_calls":[{"function":{"name":"f","arguments":"{oops"}}]}}]}"#;
        assert!(parse_response(bad_args).unwrap_err().message.contains("not JSON"));
    }
}
