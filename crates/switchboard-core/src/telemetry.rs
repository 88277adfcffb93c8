use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use std::time::{SystemTime, UNIX_EPOCH};

/// Nanoseconds since the Unix epoch, the time base of spans.
pub fn unix_nanos_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

/// MLflow span types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SpanKind {
    /// A supervisor run or a sub-agent invocation.
    Agent,
    /// A tool call, SQL query or HTTP call.
    Tool,
    /// A chat completion.
    Llm,
    /// A retrieval.
    Retriever,
    /// Internal steps (routing, synthesis).
    Chain,
}

impl SpanKind {
    /// The MLflow name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Agent => "AGENT",
            Self::Tool => "TOOL",
            Self::Llm => "LLM",
            Self::Retriever => "RETRIEVER",
            Self::Chain => "CHAIN",
        }
    }
}

/// Whether a span's work succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SpanStatus {
    /// Succeeded.
    Ok,
    /// Failed or was denied.
    Error,
}

/// One finished span.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpanRecord {
    /// The request this span belongs to.
    pub request_id: String,
    /// W3C trace id, hex.
    pub trace_id: String,
    /// Span id, hex.
    pub span_id: String,
    /// Parent span id, hex; `None` for the root.
    pub parent_id: Option<String>,
    /// OpenTelemetry GenAI style name, e.g. `invoke_agent sales`, `execute_tool deal_desk`, `chat`.
    pub name: String,
    /// MLflow span type.
    pub kind: SpanKind,
    /// The sub-agent this span is for, if any.
    pub agent: Option<String>,
    /// Start time.
    pub start_unix_nano: u64,
    /// End time.
    pub end_unix_nano: u64,
    /// Outcome.
    pub status: SpanStatus,
    /// Error message when `status` is `Error`.
    pub status_message: Option<String>,
    /// Attributes (`gen_ai.*`, `switchboard.*`, the caller's email and role). Never a token.
    pub attributes: serde_json::Map<String, serde_json::Value>,
}

/// What kind of outbound call a hop is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HopKind {
    /// Invoking a sub-agent.
    Agent,
    /// Calling a tool.
    Tool,
    /// A chat completion.
    Llm,
    /// A SQL query.
    Sql,
    /// An HTTP call.
    Http,
    /// An MCP request.
    Mcp,
    /// A retrieval over an index.
    Retrieval,
    /// Not a hop: a `USE CONNECTION` grant, recorded as an audit row.
    Grant,
    /// Not a hop: a `USE CONNECTION` revoke, recorded as an audit row.
    Revoke,
}

impl HopKind {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Agent => "agent",
            Self::Tool => "tool",
            Self::Llm => "llm",
            Self::Sql => "sql",
            Self::Http => "http",
            Self::Mcp => "mcp",
            Self::Retrieval => "retrieval",
            Self::Grant => "grant",
            Self::Revoke => "revoke",
        }
    }
}

/// Whether the hop went ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditDecision {
    /// Allowed and succeeded.
    Allowed,
    /// Denied by policy or missing scopes (`access_denied`).
    AccessDenied,
    /// Allowed, but the call failed.
    Error,
    /// Refused by a rate limit; the reason names the limit.
    RateLimited,
    /// Stopped by a guardrail; the reason names the category.
    Blocked,
}

impl AuditDecision {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allowed => "allowed",
            Self::AccessDenied => "access_denied",
            Self::Error => "error",
            Self::RateLimited => "rate_limited",
            Self::Blocked => "blocked",
        }
    }

    /// The audit `status` column's name: `success` for an allowed hop, the decision otherwise.
    pub fn status(self) -> &'static str {
        match self {
            Self::Allowed => "success",
            other => other.as_str(),
        }
    }
}

/// One row of the audit log: one per hop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Join key with spans.
    pub request_id: String,
    /// The hop's span.
    pub span_id: String,
    /// When the hop finished, milliseconds since the epoch.
    pub ts_unix_ms: u64,
    /// The caller's email.
    pub caller_email: String,
    /// The caller's roles, comma-separated.
    pub caller_roles: String,
    /// For federated callers, the human behind the role principal.
    pub acting_for: Option<String>,
    /// Who the downstream saw (email, service principal or secret name); empty when denied earlier.
    pub principal: String,
    /// The credential mode used.
    pub credential_mode: String,
    /// The sub-agent the hop belongs to.
    pub agent: String,
    /// What kind of call.
    pub hop: HopKind,
    /// The target (agent name, tool, SQL object, URL host, model).
    pub target: String,
    /// Outcome.
    pub decision: AuditDecision,
    /// Why it was denied or failed.
    pub reason: Option<String>,
    /// How long the hop took.
    pub duration_ms: u64,
    /// The failure's machine-readable code (the error kind: `rate_limited`, `timeout`,
    /// `upstream`…); `None` on success.
    #[serde(default)]
    pub error_code: Option<String>,
}

/// Where spans and audit rows go. Implementations must not block the request path: they enqueue
/// and return.
pub trait TelemetrySink: Send + Sync {
    /// Records a finished span.
    fn span(&self, span: SpanRecord);
    /// Records an audit row.
    fn audit(&self, record: AuditRecord);
}

/// The most bytes one span attribute value may take: every value is cut to this, so one huge
/// request (a 1 MB question) cannot bloat the span store or an OTLP batch.
pub const MAX_ATTRIBUTE_BYTES: usize = 4096;

/// Room kept for the JSON around a text inside an input or output value, so the common case
/// (one question, one answer) stays structured instead of falling back to plain text.
const ENVELOPE_BYTES: usize = 256;

/// How many bytes `c` takes inside a JSON string, as `serde_json` writes it.
fn json_len(c: char) -> usize {
    match c {
        '"' | '\\' | '\n' | '\r' | '\t' | '\u{08}' | '\u{0c}' => 2,
        c if (c as u32) < 0x20 => 6,
        c => c.len_utf8(),
    }
}

/// `text` cut so that it takes at most `budget` bytes once JSON-escaped, ending with a marker
/// that names the full length when anything was cut. Cuts fall on character boundaries.
fn cap_escaped(text: &str, budget: usize) -> String {
    if text.chars().map(json_len).sum::<usize>() <= budget {
        return text.to_string();
    }
    let marker = format!("…[truncated, {} bytes]", text.len());
    let room = budget.saturating_sub(marker.len());
    let mut used = 0;
    let mut end = 0;
    for (i, c) in text.char_indices() {
        used += json_len(c);
        if used > room {
            break;
        }
        end = i + c.len_utf8();
    }
    format!("{}{marker}", &text[..end])
}

/// `text` cut to at most [`MAX_ATTRIBUTE_BYTES`] (JSON-escaped), with a `…[truncated, N bytes]`
/// marker naming its full length when it was cut.
pub fn cap_text(text: &str) -> String {
    cap_escaped(text, MAX_ATTRIBUTE_BYTES)
}

/// `value` as JSON text of at most [`MAX_ATTRIBUTE_BYTES`]. Most values fit as they are and are
/// written once, straight from the caller's data. A longer one has its long strings cut first,
/// which keeps the structure; if it is still too long (many long strings), the JSON text itself
/// is cut and encoded as a JSON string, so the attribute always parses as JSON. A value that
/// cannot be written as JSON at all (a map with non-string keys) is `null`.
fn bounded_json(value: impl Serialize) -> String {
    fn cap_leaves(value: &mut Value, budget: usize) {
        match value {
            Value::String(s) => *s = cap_escaped(s, budget),
            Value::Array(items) => items.iter_mut().for_each(|v| cap_leaves(v, budget)),
            Value::Object(map) => map.values_mut().for_each(|v| cap_leaves(v, budget)),
            _ => {}
        }
    }
    let text = crate::to_json(&value).unwrap_or_else(|_| Value::Null.to_string());
    if text.len() <= MAX_ATTRIBUTE_BYTES {
        return text;
    }
    let mut value = serde_json::to_value(&value).unwrap_or_default();
    cap_leaves(&mut value, MAX_ATTRIBUTE_BYTES - ENVELOPE_BYTES);
    let text = value.to_string();
    if text.len() <= MAX_ATTRIBUTE_BYTES {
        return text;
    }
    Value::String(cap_escaped(&text, MAX_ATTRIBUTE_BYTES - 2)).to_string()
}

/// One GenAI semantic-convention message with a single text part, written straight from the
/// borrowed text (fields in the order a JSON object of them would list them).
#[derive(Serialize)]
struct GenAiMessage<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    finish_reason: Option<&'static str>,
    parts: [TextPart<'a>; 1],
    role: &'static str,
}

#[derive(Serialize)]
struct TextPart<'a> {
    content: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
}

impl<'a> GenAiMessage<'a> {
    /// The one-message list the `gen_ai.*.messages` attributes hold.
    fn list(role: &'static str, text: &'a str, finish_reason: Option<&'static str>) -> [Self; 1] {
        [Self { finish_reason, parts: [TextPart { content: text, kind: "text" }], role }]
    }
}

/// The attributes of what a span took in: `mlflow.spanInputs` (the JSON text of `inputs`, as
/// MLflow expects) and, when the input is a message to an agent or model, `gen_ai.input.messages`
/// with `message` as the user's text. Each value is capped at [`MAX_ATTRIBUTE_BYTES`]. Pass only
/// what the caller asked or a call carried, never headers or credentials. `inputs` is anything
/// serializable: a `json!` value, or borrowed data, written without copying it first.
pub fn span_inputs(inputs: impl Serialize, message_text: Option<&str>) -> Vec<(&'static str, Value)> {
    let mut attrs = vec![("mlflow.spanInputs", Value::String(bounded_json(inputs)))];
    if let Some(text) = message_text {
        let messages = GenAiMessage::list("user", text, None);
        attrs.push(("gen_ai.input.messages", Value::String(bounded_json(messages))));
    }
    attrs
}

/// The attributes of what a span gave back: `mlflow.spanOutputs` and, for an answer,
/// `gen_ai.output.messages` with `message` as the assistant's text. Capped like
/// [`span_inputs`].
pub fn span_outputs(outputs: impl Serialize, message_text: Option<&str>) -> Vec<(&'static str, Value)> {
    let mut attrs = vec![("mlflow.spanOutputs", Value::String(bounded_json(outputs)))];
    if let Some(text) = message_text {
        let messages = GenAiMessage::list("assistant", text, Some("stop"));
        attrs.push(("gen_ai.output.messages", Value::String(bounded_json(messages))));
    }
    attrs
}

/// What identifies a question once its text is cut: `switchboard.question.length` (bytes) and
/// `switchboard.question.sha256` (hex), so a stored span can still be matched to the question.
pub fn question_attributes(question: &str) -> Vec<(&'static str, Value)> {
    let digest = const_hex::encode(Sha256::digest(question.as_bytes()));
    vec![
        ("switchboard.question.length", json!(question.len())),
        ("switchboard.question.sha256", json!(digest)),
    ]
}

/// Caps every attribute value at [`MAX_ATTRIBUTE_BYTES`]: long strings are cut with a marker,
/// and arrays or objects whose JSON is too long become that JSON, cut. The backstop every span
/// producer applies, so no attribute a layer or a call records can grow without bound.
pub fn cap_attributes(attributes: &mut Map<String, Value>) {
    for value in attributes.values_mut() {
        match value {
            Value::String(s) if s.len() > MAX_ATTRIBUTE_BYTES => *s = cap_text(s),
            Value::Array(_) | Value::Object(_) => {
                let text = value.to_string();
                if text.len() > MAX_ATTRIBUTE_BYTES {
                    *value = Value::String(cap_text(&text));
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(attrs: &[(&'static str, Value)], key: &str) -> Value {
        let (_, v) = attrs.iter().find(|(k, _)| *k == key).unwrap_or_else(|| panic!("{key}"));
        serde_json::from_str(v.as_str().expect("a JSON string")).expect("valid JSON")
    }

    #[test]
    fn short_text_is_kept_and_long_text_is_cut_with_its_length() {
        assert_eq!(cap_text("héllo"), "héllo");
        let long = "é".repeat(100_000);
        let cut = cap_text(&long);
        assert!(cut.len() <= MAX_ATTRIBUTE_BYTES, "{}", cut.len());
        assert!(cut.ends_with("…[truncated, 200000 bytes]"), "{}", &cut[cut.len() - 40..]);
        // Escapes count: a string of quotes would double once encoded.
        let quotes = "\"".repeat(10_000);
        assert!(Value::String(cap_text(&quotes)).to_string().len() <= MAX_ATTRIBUTE_BYTES + 2);
    }

    #[test]
    fn inputs_and_outputs_are_bounded_json_in_mlflow_and_gen_ai_shapes() {
        let inputs = span_inputs(json!({"question": "revenue?"}), Some("revenue?"));
        assert_eq!(parsed(&inputs, "mlflow.spanInputs"), json!({"question": "revenue?"}));
        assert_eq!(
            parsed(&inputs, "gen_ai.input.messages"),
            json!([{"role": "user", "parts": [{"type": "text", "content": "revenue?"}]}])
        );
        let outputs = span_outputs(json!({"answer": "10"}), Some("10"));
        assert_eq!(parsed(&outputs, "gen_ai.output.messages")[0]["role"], "assistant");
        assert_eq!(span_outputs(json!({"rows": 3}), None).len(), 1, "no message, no gen_ai attribute");

        let huge = "x".repeat(100_000);
        let inputs = span_inputs(json!({"question": huge}), Some(&huge));
        for (key, value) in &inputs {
            assert!(value.as_str().unwrap().len() <= MAX_ATTRIBUTE_BYTES, "{key}");
        }
        let q = parsed(&inputs, "mlflow.spanInputs")["question"].as_str().unwrap().to_string();
        assert!(q.ends_with("[truncated, 100000 bytes]"), "the structure is kept");
        // Many long strings: still one bounded, parseable value.
        let many = json!((0..20).map(|_| huge.clone()).collect::<Vec<_>>());
        let (_, v) = &span_outputs(many, None)[0];
        assert!(v.as_str().unwrap().len() <= MAX_ATTRIBUTE_BYTES);
        serde_json::from_str::<Value>(v.as_str().unwrap()).expect("still JSON");
    }

    #[test]
    fn the_question_is_identified_by_length_and_sha256() {
        let attrs: Map<String, Value> =
            question_attributes("abc").into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        assert_eq!(attrs["switchboard.question.length"], 3);
        assert_eq!(
            attrs["switchboard.question.sha256"],
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn every_attribute_is_capped() {
        let mut attrs = Map::new();
        attrs.insert("big".into(), json!("y".repeat(50_000)));
        attrs.insert("route".into(), json!({"calls": ["z".repeat(50_000)]}));
        attrs.insert("small".into(), json!("ok"));
        attrs.insert("n".into(), json!(7));
        cap_attributes(&mut attrs);
        assert!(attrs["big"].as_str().unwrap().len() <= MAX_ATTRIBUTE_BYTES);
        assert!(attrs["route"].as_str().unwrap().len() <= MAX_ATTRIBUTE_BYTES);
        assert_eq!((&attrs["small"], &attrs["n"]), (&json!("ok"), &json!(7)));
    }
}
