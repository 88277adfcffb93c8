//! The script: which reply each request gets, and how the server misbehaves on purpose.
//!
//! A script is TOML (or JSON with the same shape):
//!
//! ```toml
//! model = "scripted"          # the model name answered when a request names none
//! latency_ms = 0              # added before every answer
//! token_delay_ms = 0          # between streamed chunks
//!
//! [[faults]]                  # checked before the rules, in order
//! status = 503
//! first = 2                   # the first 2 calls fail …
//! every = 5                   # … and every 5th call (5, 10, …)
//! retry_after = 1             # optional: sent as `Retry-After: 1`
//!
//! [[rules]]                   # the first rule whose `when` holds answers
//! when = { last_user = "(?i)revenue", tools = true }
//! reply = { tool_call = { tool = "^sales$", arguments = { question = "{{last_user}}" } } }
//!
//! [[rules]]
//! when = { response_format = true }
//! reply = "from_schema"       # a JSON value generated from the requested schema
//!
//! [default]                   # when no rule matches (else the last user message is echoed)
//! text = "I am a scripted model."
//! ```
//!
//! `when` keys, all optional and all required to hold: `last_user` and `system` (regular
//! expressions over the last user message and the system/developer messages or `instructions`),
//! `tools` (whether tools were offered), `tool` (a regular expression some offered tool's name
//! matches), `response_format` (whether a JSON schema or JSON object was requested), `api`
//! (`chat` or `responses`), `last_role` (the role of the last message, e.g. `tool`) and
//! `answers_tool` (a regular expression the name of the tool call that the last message, a tool
//! result, answers must match: what a sub-agent handed control by `transfer_to_x` sees).
//!
//! Replies: `{ text = "…" }`, `{ json = {…} }` (the value as the message text),
//! `"from_schema"`, `{ tool_call = { tool = "regex", arguments = {…} } }`: a call to the first
//! offered tool whose name matches, with the given arguments or, without them, arguments
//! generated from its parameter schema; `{ tool_calls = [{ name = "…", arguments = {…} }, …] }`:
//! these calls exactly as written, offered or not (for testing what a client does with a call to
//! a tool it never offered); or `{ error = { status = 500, message = "…" } }` for this request
//! only. `{{last_user}}` in any text or string argument is replaced by the last user message.

use regex::Regex;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::path::Path;

/// A loaded, checked script. Build it with [`Script::from_toml`], [`Script::from_json`] or
/// [`Script::load`]; [`Script::default`] echoes the last user message to every request.
#[derive(Debug, Clone)]
pub struct Script {
    pub(crate) model: String,
    pub(crate) latency_ms: u64,
    pub(crate) token_delay_ms: u64,
    pub(crate) faults: Vec<Fault>,
    pub(crate) rules: Vec<Rule>,
    pub(crate) default: Reply,
}

impl Default for Script {
    fn default() -> Self {
        Self {
            model: DEFAULT_MODEL.into(),
            latency_ms: 0,
            token_delay_ms: 0,
            faults: Vec::new(),
            rules: Vec::new(),
            default: Reply::Text("{{last_user}}".into()),
        }
    }
}

const DEFAULT_MODEL: &str = "scripted";

/// A failure injected on purpose.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Fault {
    /// The HTTP status answered.
    pub status: u16,
    /// The first this many calls fail.
    #[serde(default)]
    pub first: u64,
    /// Every k-th call fails (the k-th, 2k-th, …); 0 for none.
    #[serde(default)]
    pub every: u64,
    /// The error message; a default names the status.
    #[serde(default)]
    pub message: Option<String>,
    /// Seconds sent as `Retry-After` with the failure, to test clients that honour it.
    #[serde(default)]
    pub retry_after: Option<u64>,
}

impl Fault {
    /// Whether the `call`-th call (from 1) fails with this fault.
    pub(crate) fn hits(&self, call: u64) -> bool {
        call <= self.first || (self.every > 0 && call.is_multiple_of(self.every))
    }
}

/// A rule: a condition over the request and the reply it gets.
#[derive(Debug, Clone)]
pub(crate) struct Rule {
    pub when: When,
    pub reply: Reply,
}

/// What a rule requires of a request.
#[derive(Debug, Clone, Default)]
pub(crate) struct When {
    pub last_user: Option<Regex>,
    pub system: Option<Regex>,
    pub tools: Option<bool>,
    pub tool: Option<Regex>,
    pub response_format: Option<bool>,
    pub api: Option<String>,
    pub last_role: Option<String>,
    pub answers_tool: Option<Regex>,
}

/// What the model answers.
#[derive(Debug, Clone)]
pub(crate) enum Reply {
    /// Message text (with `{{last_user}}` substituted).
    Text(String),
    /// A JSON value, serialized as the message text.
    Json(Value),
    /// A JSON value generated from the requested schema.
    FromSchema,
    /// A tool call to the first offered tool whose name matches.
    ToolCall { tool: Regex, arguments: Option<Value> },
    /// These calls as written.
    ToolCalls(Vec<(String, Value)>),
    /// An error answer.
    Error { status: u16, message: String },
}

/// The script as written, before its regular expressions are compiled.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScript {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    latency_ms: u64,
    #[serde(default)]
    token_delay_ms: u64,
    #[serde(default)]
    faults: Vec<Fault>,
    #[serde(default)]
    rules: Vec<RawRule>,
    #[serde(default)]
    default: Option<RawReply>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    #[serde(default)]
    when: RawWhen,
    reply: RawReply,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawWhen {
    last_user: Option<String>,
    system: Option<String>,
    tools: Option<bool>,
    tool: Option<String>,
    response_format: Option<bool>,
    api: Option<String>,
    last_role: Option<String>,
    answers_tool: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum RawReply {
    Text(String),
    Json(Value),
    FromSchema,
    ToolCall(RawToolCall),
    ToolCalls(Vec<RawLiteralCall>),
    Error(RawError),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLiteralCall {
    name: String,
    #[serde(default)]
    arguments: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawError {
    status: u16,
    #[serde(default)]
    message: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawToolCall {
    tool: String,
    #[serde(default)]
    arguments: Option<Value>,
}

fn regex(field: &str, pattern: &str) -> Result<Regex, String> {
    Regex::new(pattern).map_err(|e| format!("{field}: not a regular expression: {e}"))
}

fn compile_reply(field: &str, raw: RawReply) -> Result<Reply, String> {
    Ok(match raw {
        RawReply::Text(t) => Reply::Text(t),
        RawReply::Json(v) => Reply::Json(v),
        RawReply::FromSchema => Reply::FromSchema,
        RawReply::ToolCalls(calls) => Reply::ToolCalls(
            calls.into_iter().map(|c| (c.name, c.arguments.unwrap_or_else(|| json!({})))).collect(),
        ),
        RawReply::Error(e) => {
            if !(400..=599).contains(&e.status) {
                return Err(format!("{field}.error.status: {} is not an error status (400-599)", e.status));
            }
            let message = e.message.unwrap_or_else(|| format!("scripted error {}", e.status));
            Reply::Error { status: e.status, message }
        }
        RawReply::ToolCall(c) => {
            if c.arguments.as_ref().is_some_and(|a| !a.is_object()) {
                return Err(format!("{field}.tool_call.arguments: must be a table/object"));
            }
            Reply::ToolCall {
                tool: regex(&format!("{field}.tool_call.tool"), &c.tool)?,
                arguments: c.arguments,
            }
        }
    })
}

impl Script {
    /// Parses a TOML script (see the module documentation).
    pub fn from_toml(text: &str) -> Result<Self, String> {
        let raw: RawScript = toml::from_str(text).map_err(|e| format!("the script is not valid: {e}"))?;
        Self::compile(raw)
    }

    /// Parses a JSON script of the same shape as the TOML one.
    pub fn from_json(text: &str) -> Result<Self, String> {
        let raw: RawScript =
            serde_json::from_str(text).map_err(|e| format!("the script is not valid: {e}"))?;
        Self::compile(raw)
    }

    /// Reads a script file: JSON when it ends in `.json`, TOML otherwise.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let parsed = if path.extension().is_some_and(|e| e == "json") {
            Self::from_json(&text)
        } else {
            Self::from_toml(&text)
        };
        parsed.map_err(|e| format!("{}: {e}", path.display()))
    }

    /// A script that answers every request with the OpenAI assistant `message` (its
    /// `tool_calls`, else its `content`): what a test that needs one canned reply writes.
    /// Tool call arguments that are not JSON text are sent as a JSON string.
    pub fn answering(message: &Value) -> Self {
        let calls: Vec<(String, Value)> = message
            .get("tool_calls")
            .and_then(Value::as_array)
            .map(|calls| {
                calls
                    .iter()
                    .map(|c| {
                        let name = c.pointer("/function/name").and_then(Value::as_str).unwrap_or_default();
                        let text = c.pointer("/function/arguments").and_then(Value::as_str).unwrap_or("{}");
                        (name.to_string(), serde_json::from_str(text).unwrap_or_else(|_| json!(text)))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let default = if calls.is_empty() {
            Reply::Text(message.get("content").and_then(Value::as_str).unwrap_or_default().to_string())
        } else {
            Reply::ToolCalls(calls)
        };
        Self { default, ..Self::default() }
    }

    /// A script that fails every request with `status` and `message`.
    pub fn failing(status: u16, message: &str) -> Self {
        Self { default: Reply::Error { status, message: message.to_string() }, ..Self::default() }
    }

    /// The same script with `latency_ms` before every answer.
    pub fn with_latency_ms(mut self, ms: u64) -> Self {
        self.latency_ms = ms;
        self
    }

    /// The same script with `ms` between streamed chunks.
    pub fn with_token_delay_ms(mut self, ms: u64) -> Self {
        self.token_delay_ms = ms;
        self
    }

    fn compile(raw: RawScript) -> Result<Self, String> {
        let mut rules = Vec::with_capacity(raw.rules.len());
        for (i, rule) in raw.rules.into_iter().enumerate() {
            let at = format!("rules[{i}]");
            let w = rule.when;
            if let Some(api) = &w.api
                && api != "chat"
                && api != "responses"
            {
                return Err(format!("{at}.when.api: `{api}` is neither `chat` nor `responses`"));
            }
            let compile = |name: &str, p: Option<String>| {
                p.map(|p| regex(&format!("{at}.when.{name}"), &p)).transpose()
            };
            let when = When {
                last_user: compile("last_user", w.last_user)?,
                system: compile("system", w.system)?,
                tool: compile("tool", w.tool)?,
                tools: w.tools,
                response_format: w.response_format,
                api: w.api,
                last_role: w.last_role,
                answers_tool: compile("answers_tool", w.answers_tool)?,
            };
            rules.push(Rule { when, reply: compile_reply(&format!("{at}.reply"), rule.reply)? });
        }
        for (i, f) in raw.faults.iter().enumerate() {
            if !(400..=599).contains(&f.status) {
                return Err(format!("faults[{i}].status: {} is not an error status (400-599)", f.status));
            }
        }
        let default = match raw.default {
            Some(r) => compile_reply("default", r)?,
            None => Script::default().default,
        };
        Ok(Self {
            model: raw.model.unwrap_or_else(|| DEFAULT_MODEL.into()),
            latency_ms: raw.latency_ms,
            token_delay_ms: raw.token_delay_ms,
            faults: raw.faults,
            rules,
            default,
        })
    }
}

/// A JSON value that conforms to `schema` (the subset structured-output schemas use: objects,
/// arrays, scalars, `enum`, `const`, `anyOf`/`oneOf`, local `$ref`s), deterministic for a given
/// schema. Strings are `text`; numbers are 1.
pub(crate) fn example_for(schema: &Value, text: &str) -> Value {
    generate(schema, schema, text, 0)
}

fn generate(schema: &Value, root: &Value, text: &str, depth: usize) -> Value {
    if depth > 16 {
        return Value::Null;
    }
    let Some(s) = schema.as_object() else { return json!(text) };
    if let Some(reference) = s.get("$ref").and_then(Value::as_str) {
        let target = reference.strip_prefix('#').map(|p| root.pointer(p).unwrap_or(&Value::Null));
        return generate(target.unwrap_or(&Value::Null), root, text, depth + 1);
    }
    if let Some(c) = s.get("const") {
        return c.clone();
    }
    if let Some(first) = s.get("enum").and_then(Value::as_array).and_then(|e| e.first()) {
        return first.clone();
    }
    for key in ["anyOf", "oneOf", "allOf"] {
        if let Some(options) = s.get(key).and_then(Value::as_array) {
            // Prefer a non-null branch, so optional fields still carry a value.
            let pick = options.iter().find(|o| o.get("type") != Some(&json!("null"))).or(options.first());
            return pick.map_or(Value::Null, |o| generate(o, root, text, depth + 1));
        }
    }
    let kind = match s.get("type") {
        Some(Value::String(t)) => t.as_str(),
        Some(Value::Array(ts)) => {
            ts.iter().filter_map(Value::as_str).find(|t| *t != "null").unwrap_or("null")
        }
        _ if s.contains_key("properties") => "object",
        _ => "string",
    };
    match kind {
        "object" => {
            let mut out = Map::new();
            if let Some(props) = s.get("properties").and_then(Value::as_object) {
                for (name, prop) in props {
                    out.insert(name.clone(), generate(prop, root, text, depth + 1));
                }
            }
            Value::Object(out)
        }
        "array" => {
            let min = s.get("minItems").and_then(Value::as_u64).unwrap_or(1).max(1);
            let item = s.get("items").cloned().unwrap_or(json!({}));
            Value::Array((0..min).map(|_| generate(&item, root, text, depth + 1)).collect())
        }
        "integer" => json!(s.get("minimum").and_then(Value::as_i64).unwrap_or(1)),
        "number" => json!(s.get("minimum").and_then(Value::as_f64).unwrap_or(1.0)),
        "boolean" => json!(true),
        "null" => Value::Null,
        _ => json!(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_parse_and_bad_ones_name_the_field() {
        let s = Script::from_toml(
            r#"
            latency_ms = 3
            [[faults]]
            status = 503
            first = 1
            [[rules]]
            when = { last_user = "(?i)revenue", tools = true }
            reply = { tool_call = { tool = "^sales$" } }
            [[rules]]
            reply = "from_schema"
            "#,
        )
        .unwrap();
        assert_eq!((s.latency_ms, s.rules.len(), s.faults.len()), (3, 2, 1));
        let e = Script::from_toml("[[rules]]\nwhen = { last_user = \"(\" }\nreply = { text = \"x\" }")
            .unwrap_err();
        assert!(e.contains("rules[0].when.last_user"), "{e}");
        let e = Script::from_toml("[[faults]]\nstatus = 200").unwrap_err();
        assert!(e.contains("faults[0].status"), "{e}");
        let e = Script::from_toml("[[rules]]\nreply = { txt = \"x\" }").unwrap_err();
        assert!(e.contains("txt"), "{e}");
    }

    #[test]
    fn faults_hit_the_first_calls_and_every_kth() {
        let f = Fault { status: 500, first: 2, every: 5, message: None, retry_after: None };
        let hit: Vec<u64> = (1..=11).filter(|c| f.hits(*c)).collect();
        assert_eq!(hit, [1, 2, 5, 10]);
    }

    #[test]
    fn examples_conform_to_pydantic_style_schemas() {
        let schema = json!({
            "type": "object",
            "properties": {
                "region": {"type": "string"},
                "total": {"type": "number"},
                "deals": {"type": "integer"},
                "kind": {"enum": ["won", "lost"]},
                "rep": {"anyOf": [{"type": "null"}, {"$ref": "#/$defs/Rep"}]},
                "tags": {"type": "array", "items": {"type": "string"}},
            },
            "required": ["region", "total", "deals", "kind", "rep", "tags"],
            "additionalProperties": false,
            "$defs": {"Rep": {"type": "object", "properties": {"name": {"type": "string"}}}},
        });
        let v = example_for(&schema, "x");
        assert_eq!(
            v,
            json!({"region": "x", "total": 1.0, "deals": 1, "kind": "won", "rep": {"name": "x"}, "tags": ["x"]})
        );
    }
}
