//! HTTP tools: one call to a partner API, made through the agent's named connection.
//!
//! ```toml
//! connection = "github"          # required: the only way out
//!
//! [tool.http]
//! method = "GET"
//! path = "/repos/{owner}/{repo}/issues"   # joined onto the connection's base URL
//! query = ["state"]                        # the rest go to the query (GET/DELETE) or a JSON body
//! answer_pointer = "/0/title"              # or answer = "Created {/id}: {title}"
//! idempotent = false                       # true lets a POST/PATCH be retried (the API de-duplicates)
//! schema = '''{"type": "object", "required": ["owner", "repo"], "properties": {
//!   "owner": {"type": "string"}, "repo": {"type": "string"},
//!   "state": {"type": "string", "enum": ["open", "closed"], "default": "open"}}}'''
//! ```
//!
//! Arguments are read from the question ([`crate::args`]) or proposed by a model, and always
//! validated against the schema before anything is sent. The call is an `http` hop named after
//! the agent: the connection's egress rules decide which URLs may be reached (the tool never
//! builds a client of its own), and the far side sees the connection's credential. The response
//! is read as a stream and cut at `max_response_bytes`.

use super::Settings;
use crate::args::ArgsValidator;
use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use switchboard_core::{
    Agent, AgentInput, AgentOutput, AgentSpec, Error, ErrorKind, HopKind, Result, RunContext, Secret,
};
use switchboard_govern::reqwest::{self, StatusCode};
use switchboard_govern::{Egress, HopGrant, HopTarget};
use switchboard_llm::LlmClient;

/// The HTTP method of an HTTP tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum HttpMethod {
    /// `GET`.
    #[serde(rename = "GET", alias = "get")]
    Get,
    /// `POST`.
    #[serde(rename = "POST", alias = "post")]
    Post,
    /// `PUT`.
    #[serde(rename = "PUT", alias = "put")]
    Put,
    /// `PATCH`.
    #[serde(rename = "PATCH", alias = "patch")]
    Patch,
    /// `DELETE`.
    #[serde(rename = "DELETE", alias = "delete")]
    Delete,
}

impl HttpMethod {
    /// The method's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Post => "POST",
            Self::Put => "PUT",
            Self::Patch => "PATCH",
            Self::Delete => "DELETE",
        }
    }

    /// Whether arguments not placed elsewhere go in a JSON body (else in the query).
    fn has_body(self) -> bool {
        matches!(self, Self::Post | Self::Put | Self::Patch)
    }

    fn to_reqwest(self) -> reqwest::Method {
        match self {
            Self::Get => reqwest::Method::GET,
            Self::Post => reqwest::Method::POST,
            Self::Put => reqwest::Method::PUT,
            Self::Patch => reqwest::Method::PATCH,
            Self::Delete => reqwest::Method::DELETE,
        }
    }
}

/// How the answer is read from the response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The response itself: pretty JSON (or text), cut for display.
    Json,
    /// The value at a JSON pointer (`/items/0/title`).
    Pointer(String),
    /// A template: `{/json/pointer}` reads the response, `{name}` an argument.
    Template(String),
}

/// The `[tool.http]` table, checked and resolved.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// The method.
    pub method: HttpMethod,
    /// The path template (`/repos/{owner}/{repo}/issues`), joined onto the connection's base URL;
    /// an absolute URL is taken as is, and must still be one the connection allows.
    pub path: String,
    /// The JSON Schema (an object schema) of the arguments, shared with the model's tool
    /// definition on every call.
    pub schema: Arc<Value>,
    /// Arguments sent in the query string: those listed in `query`, and for `GET` and `DELETE`
    /// every argument not in the path or the body.
    pub query: Vec<String>,
    /// Arguments sent as members of a JSON body: those listed in `body`, or for `POST`, `PUT` and
    /// `PATCH` every argument not in the path or the query.
    pub body: Vec<String>,
    /// Whether a JSON body is sent (always for `POST`, `PUT`, `PATCH`; for `DELETE` with `body`).
    pub sends_body: bool,
    /// Extra request headers (never `Authorization`: the connection authenticates).
    pub headers: Vec<(String, String)>,
    /// How the answer is read.
    pub answer: Answer,
    /// Time allowed for the whole call, response body included.
    pub timeout: Duration,
    /// The most response bytes read; the rest is cut and the answer says "(truncated)".
    pub max_response_bytes: usize,
    /// `idempotent = true`: the partner API makes a repeated `POST`/`PATCH` harmless (it
    /// de-duplicates them), so they may be retried like a `GET`. Off by default: a `POST` that
    /// failed may still have acted, so it is sent once.
    pub idempotent: bool,
}

/// The table as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    method: HttpMethod,
    path: String,
    #[serde(default)]
    schema: Option<Value>,
    #[serde(default)]
    query: Vec<String>,
    #[serde(default)]
    body: Option<Vec<String>>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    answer_pointer: Option<String>,
    #[serde(default)]
    answer: Option<String>,
    #[serde(default = "default_timeout_ms")]
    timeout_ms: u64,
    #[serde(default = "default_max_response_bytes")]
    max_response_bytes: usize,
    #[serde(default)]
    idempotent: bool,
}

fn default_timeout_ms() -> u64 {
    10_000
}

fn default_max_response_bytes() -> usize {
    1024 * 1024
}

/// The most characters of a response shown when no pointer or template picks a part of it.
const DISPLAY_CHARS: usize = 8_000;

/// Headers the connection and the hop own.
const RESERVED_HEADERS: &[&str] =
    &["authorization", "proxy-authorization", "cookie", "host", "traceparent", "x-request-id"];

impl HttpSettings {
    /// Reads and validates the `[tool.http]` table of `spec`. Errors name the field
    /// (`tool.http.path: …`).
    pub fn from_spec(spec: &AgentSpec) -> Result<HttpSettings> {
        let table = spec.settings.get("http").cloned().unwrap_or(Value::Null);
        if !table.is_object() {
            return Err(Error::config("tool.http: must be a table ([tool.http])"));
        }
        let raw: Raw = serde_json::from_value(table).map_err(|e| Error::config(format!("tool.http: {e}")))?;
        let schema = match raw.schema {
            None => serde_json::json!({"type": "object", "properties": {}}),
            Some(Value::String(text)) => serde_json::from_str(&text)
                .map_err(|e| Error::config(format!("tool.http.schema: not JSON: {e}")))?,
            Some(table @ Value::Object(_)) => table,
            Some(_) => {
                return Err(Error::config("tool.http.schema: a JSON string ('''{…}''') or a TOML table"));
            }
        };
        ArgsValidator::new(&spec.name, &schema)
            .map_err(|e| Error::config(format!("tool.http.schema: {}", e.message)))?;
        let properties: Vec<&str> = schema
            .get("properties")
            .and_then(Value::as_object)
            .map_or_else(Vec::new, |p| p.keys().map(String::as_str).collect());
        let required: Vec<&str> = schema
            .get("required")
            .and_then(Value::as_array)
            .map_or_else(Vec::new, |r| r.iter().filter_map(Value::as_str).collect());

        let path = raw.path.trim().to_string();
        let is_url = path.starts_with("https://") || path.starts_with("http://");
        if !path.starts_with('/') && !is_url {
            return Err(Error::config(format!(
                "tool.http.path: `{path}` must start with / (joined onto the connection's base URL) or be an http(s) URL"
            )));
        }
        let in_path = placeholders(&path).map_err(|e| Error::config(format!("tool.http.path: {e}")))?;
        for name in &in_path {
            if !properties.contains(&name.as_str()) {
                return Err(Error::config(format!(
                    "tool.http.path: `{{{name}}}` is not a property of tool.http.schema"
                )));
            }
            let has_default = schema["properties"][name.as_str()].get("default").is_some();
            if !required.contains(&name.as_str()) && !has_default {
                return Err(Error::config(format!(
                    "tool.http.path: `{{{name}}}` must be required in tool.http.schema (or have a default)"
                )));
            }
        }
        for (field, names) in [("query", &raw.query), ("body", raw.body.as_ref().unwrap_or(&Vec::new()))] {
            for name in names {
                if !properties.contains(&name.as_str()) {
                    return Err(Error::config(format!(
                        "tool.http.{field}: `{name}` is not a property of tool.http.schema"
                    )));
                }
                if in_path.contains(name) {
                    return Err(Error::config(format!("tool.http.{field}: `{name}` is already in the path")));
                }
            }
        }
        if let Some(both) = raw.query.iter().find(|q| raw.body.as_ref().is_some_and(|b| b.contains(q))) {
            return Err(Error::config(format!("tool.http.body: `{both}` is also in tool.http.query")));
        }
        if raw.method == HttpMethod::Get && raw.body.as_ref().is_some_and(|b| !b.is_empty()) {
            return Err(Error::config("tool.http.body: a GET request has no body; use query"));
        }
        let placed = |name: &str| in_path.iter().any(|p| p == name) || raw.query.iter().any(|q| q == name);
        let (query, body, sends_body) = match (&raw.body, raw.method.has_body()) {
            (Some(body), _) => {
                if let Some(lost) = properties.iter().find(|p| !placed(p) && !body.iter().any(|b| b == *p)) {
                    return Err(Error::config(format!(
                        "tool.http.body: `{lost}` is in neither the path, query nor body; add it to one"
                    )));
                }
                (raw.query.clone(), body.clone(), true)
            }
            (None, true) => {
                let rest = properties.iter().filter(|p| !placed(p)).map(|p| p.to_string()).collect();
                (raw.query.clone(), rest, true)
            }
            (None, false) => {
                let mut query = raw.query.clone();
                query.extend(properties.iter().filter(|p| !placed(p)).map(|p| p.to_string()));
                (query, Vec::new(), false)
            }
        };

        let answer = match (raw.answer_pointer, raw.answer) {
            (Some(_), Some(_)) => {
                return Err(Error::config("tool.http.answer: give answer or answer_pointer, not both"));
            }
            (Some(pointer), None) => {
                if !pointer.is_empty() && !pointer.starts_with('/') {
                    return Err(Error::config(format!(
                        "tool.http.answer_pointer: `{pointer}` is not a JSON pointer (it starts with /)"
                    )));
                }
                Answer::Pointer(pointer)
            }
            (None, Some(template)) => {
                let keys =
                    placeholders(&template).map_err(|e| Error::config(format!("tool.http.answer: {e}")))?;
                if let Some(unknown) =
                    keys.iter().find(|k| !k.starts_with('/') && !properties.contains(&k.as_str()))
                {
                    return Err(Error::config(format!(
                        "tool.http.answer: `{{{unknown}}}` is neither a JSON pointer ({{/…}}) nor an argument"
                    )));
                }
                Answer::Template(template)
            }
            (None, None) => Answer::Json,
        };

        let mut headers = Vec::new();
        for (name, value) in raw.headers {
            if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
                return Err(Error::config(format!(
                    "tool.http.headers: `{name}` is set by the connection and the hop, not the tool"
                )));
            }
            let valid = reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_ok()
                && reqwest::header::HeaderValue::from_str(&value).is_ok();
            if !valid {
                return Err(Error::config(format!("tool.http.headers: `{name}` is not a valid header")));
            }
            headers.push((name, value));
        }
        if !(1..=600_000).contains(&raw.timeout_ms) {
            return Err(Error::config(format!(
                "tool.http.timeout_ms: {} is out of range (1 to 600000)",
                raw.timeout_ms
            )));
        }
        if !(1..=64 * 1024 * 1024).contains(&raw.max_response_bytes) {
            return Err(Error::config(format!(
                "tool.http.max_response_bytes: {} is out of range (1 to 67108864)",
                raw.max_response_bytes
            )));
        }
        Ok(HttpSettings {
            method: raw.method,
            path,
            schema: Arc::new(schema),
            query,
            body,
            sends_body: sends_body && (raw.method != HttpMethod::Get),
            headers,
            answer,
            timeout: Duration::from_millis(raw.timeout_ms),
            max_response_bytes: raw.max_response_bytes,
            idempotent: raw.idempotent,
        })
    }
}

/// The `{…}` placeholders of a template, in order.
fn placeholders(template: &str) -> std::result::Result<Vec<String>, String> {
    let mut keys = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let close = after.find('}').ok_or_else(|| format!("`{{` without `}}` in `{template}`"))?;
        let key = after[..close].trim();
        if key.is_empty() || key.contains('{') {
            return Err(format!("empty or nested placeholder in `{template}`"));
        }
        keys.push(key.to_string());
        rest = &after[close + 1..];
    }
    Ok(keys)
}

/// An argument as a path segment or query value: strings as they are, other JSON compact.
fn arg_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters, so an argument stays one path
/// segment (`a/b` cannot climb to another endpoint).
fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A response value in prose: strings as they are, `none` for null, structures as pretty JSON.
fn display(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "none".into(),
        Value::Array(_) | Value::Object(_) => {
            cut_chars(&serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string()), DISPLAY_CHARS)
        }
        other => other.to_string(),
    }
}

/// `s` cut at `max` characters, marked "(truncated)" when cut.
fn cut_chars(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}\n… (truncated)", &s[..i]),
        None => s.to_string(),
    }
}

/// The request one call sends, built from validated arguments before the hop.
struct Prepared {
    path: String,
    query: Vec<(String, String)>,
    body: Option<Value>,
}

/// What came back.
struct Reply {
    status: StatusCode,
    bytes: Vec<u8>,
    truncated: bool,
    retry_after: Option<Duration>,
}

/// A partner API call, as a sub-agent.
pub struct HttpToolAgent {
    spec: Arc<AgentSpec>,
    egress: Egress,
    settings: HttpSettings,
    validator: ArgsValidator,
    llm: Option<LlmClient>,
}

impl HttpToolAgent {
    /// Builds the tool from its spec (which must declare `[tool.http]` and name a declared
    /// connection); `llm`, when given, proposes arguments by tool call.
    pub fn new(
        spec: Arc<AgentSpec>,
        egress: Egress,
        base_dir: &Path,
        llm: Option<LlmClient>,
    ) -> Result<Self> {
        match Settings::from_spec(&spec, base_dir)? {
            Settings::Http(settings) => Self::with_settings(spec, egress, settings, llm),
            Settings::Sql(_) | Settings::Function(_) => Err(Error::config(format!(
                "tool `{}` is not an HTTP tool ([tool.http]); build it with tool::build_with",
                spec.name
            ))),
        }
    }

    /// Builds the tool from settings already read.
    pub fn with_settings(
        spec: Arc<AgentSpec>,
        egress: Egress,
        settings: HttpSettings,
        llm: Option<LlmClient>,
    ) -> Result<Self> {
        if egress.connection().is_none() {
            return Err(match &spec.connection {
                None => Error::config(format!(
                    "tool `{}`: an HTTP tool must name a connection (connection = \"…\" in its agent file)",
                    spec.name
                )),
                Some(name) => {
                    Error::config(format!("tool `{}`: connection `{name}` is not declared", spec.name))
                }
            });
        }
        let validator = ArgsValidator::new(&spec.name, &settings.schema)?;
        Ok(Self { spec, egress, settings, validator, llm })
    }

    /// The settings it was built with.
    pub fn settings(&self) -> &HttpSettings {
        &self.settings
    }

    /// The path, query and body for `args`. Only declared properties are sent.
    fn prepare(&self, args: &Map<String, Value>) -> Result<Prepared> {
        let s = &self.settings;
        let mut path = String::new();
        let mut rest = s.path.as_str();
        while let Some(open) = rest.find('{') {
            path.push_str(&rest[..open]);
            let after = &rest[open + 1..];
            let close = after.find('}').unwrap_or(after.len());
            let name = after[..close].trim();
            let value = args.get(name).filter(|v| !v.is_null()).ok_or_else(|| {
                Error::invalid(format!("the `{}` tool needs `{name}` for its path", self.spec.name))
            })?;
            path.push_str(&encode_segment(&arg_text(value)));
            rest = after.get(close + 1..).unwrap_or("");
        }
        path.push_str(rest);
        let mut query = Vec::new();
        for name in &s.query {
            match args.get(name) {
                None | Some(Value::Null) => {}
                Some(Value::Array(items)) => query.extend(items.iter().map(|i| (name.clone(), arg_text(i)))),
                Some(v) => query.push((name.clone(), arg_text(v))),
            }
        }
        let body = s.sends_body.then(|| {
            Value::Object(
                s.body.iter().filter_map(|name| args.get(name).map(|v| (name.clone(), v.clone()))).collect(),
            )
        });
        Ok(Prepared { path, query, body })
    }

    /// The call inside the hop: the connection's URL, its egress rules (in `grant.request`), the
    /// capped streaming read.
    async fn call(
        &self,
        grant: &HopGrant,
        prepared: &Prepared,
        args: &Map<String, Value>,
    ) -> Result<AgentOutput> {
        let s = &self.settings;
        let connection = grant.connection().ok_or_else(|| {
            Error::config(format!("tool `{}`: an HTTP tool must name a declared connection", self.spec.name))
        })?;
        let mut url = connection.url(&prepared.path)?;
        if !prepared.query.is_empty() {
            let mut pairs = url.query_pairs_mut();
            for (k, v) in &prepared.query {
                pairs.append_pair(k, v);
            }
        }
        let host = url.host_str().unwrap_or_default().to_string();
        grant.record("http.request.method", s.method.as_str());
        grant.record("server.address", host.as_str());
        grant.record("url.template", s.path.as_str());
        let mut request = grant.request_url(s.method.to_reqwest(), url)?.timeout(s.timeout);
        for (name, value) in &s.headers {
            request = request.header(name, value);
        }
        if let Some(body) = &prepared.body {
            request = request.json(body);
        }
        let token = grant.credential().token.clone();
        let timed_out = || {
            Error::timeout(format!(
                "the `{}` tool's call to {host} did not finish within {} ms",
                self.spec.name,
                s.timeout.as_millis()
            ))
        };
        let reply = tokio::time::timeout(s.timeout, self.send(grant, request, &host))
            .await
            .map_err(|_| timed_out())?
            .map_err(|e| if e.kind == ErrorKind::Timeout { timed_out() } else { e })?;
        grant.record("http.response.status_code", reply.status.as_u16());
        if !reply.status.is_success() {
            return Err(self.status_error(&reply, &prepared.path, token.as_ref()));
        }
        self.render(args, &reply)
    }

    async fn send(&self, grant: &HopGrant, request: reqwest::RequestBuilder, host: &str) -> Result<Reply> {
        let unreachable = |e: reqwest::Error| {
            if e.is_timeout() {
                Error::timeout("timed out")
            } else {
                Error::upstream(format!(
                    "the `{}` tool could not reach {host}: {}",
                    self.spec.name,
                    error_chain(&e.without_url())
                ))
            }
        };
        // Retries (idempotent methods, or a POST the table declares idempotent) and the
        // connection's circuit breaker live in the grant.
        let mut response = grant.send(request, self.settings.idempotent).await.map_err(|e| match e.kind {
            ErrorKind::Upstream => Error::upstream(format!(
                "the `{}` tool could not reach {host}: {}",
                self.spec.name, e.message
            )),
            _ => e,
        })?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        // An error body is read only far enough for a short detail.
        let cap = if status.is_success() { self.settings.max_response_bytes } else { 4096 };
        let mut bytes = Vec::with_capacity(response.content_length().map_or(0, |n| n as usize).min(cap));
        let mut truncated = false;
        while let Some(chunk) = response.chunk().await.map_err(unreachable)? {
            let room = cap - bytes.len();
            if chunk.len() > room {
                bytes.extend_from_slice(&chunk[..room]);
                truncated = true;
                break;
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(Reply { status, bytes, truncated, retry_after })
    }

    /// A non-2xx answer as our error, keeping a denial a denial. The detail is short and never
    /// contains the credential, even if the far side echoes it.
    fn status_error(&self, reply: &Reply, path: &str, token: Option<&Secret>) -> Error {
        let text = String::from_utf8_lossy(&reply.bytes);
        let detail = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| {
                [&v["error"]["message"], &v["message"], &v["error"], &v["detail"], &v["error_description"]]
                    .into_iter()
                    .find_map(|d| d.as_str().map(str::to_string))
            })
            .unwrap_or_else(|| text.to_string());
        let detail = redact(&detail, token);
        let detail: String =
            detail.chars().map(|c| if c.is_control() { ' ' } else { c }).take(200).collect::<String>();
        let detail = detail.trim();
        let with = if detail.is_empty() { String::new() } else { format!(": {detail}") };
        let name = &self.spec.name;
        let status = reply.status;
        match status.as_u16() {
            401 => Error::upstream(format!(
                "the `{name}` tool's API rejected the connection's credential (401){with}"
            )),
            403 => Error::denied(format!("the `{name}` tool's API denied the request (403){with}")),
            404 => Error::not_found(format!("the `{name}` tool's API found nothing at {path} (404)")),
            429 => Error::rate_limited(
                format!("the `{name}` tool's API is rate limiting (429){with}"),
                reply.retry_after.unwrap_or(Duration::from_secs(1)),
            ),
            400..=499 => {
                Error::invalid(format!("the `{name}` tool's API refused the arguments ({status}){with}"))
            }
            _ => Error::upstream(format!("the `{name}` tool's API failed ({status}){with}")),
        }
    }

    /// The answer, read as the settings say.
    fn render(&self, args: &Map<String, Value>, reply: &Reply) -> Result<AgentOutput> {
        let name = &self.spec.name;
        let text = String::from_utf8_lossy(&reply.bytes);
        let parsed: Option<std::result::Result<Value, String>> = if reply
            .bytes
            .iter()
            .all(u8::is_ascii_whitespace)
        {
            None
        } else if reply.truncated {
            Some(Err(format!("it is larger than max_response_bytes ({})", self.settings.max_response_bytes)))
        } else {
            Some(serde_json::from_str(&text).map_err(|e| format!("it is not JSON ({e})")))
        };
        let json = |pointer: &str| -> Result<&Value> {
            let doc = match &parsed {
                Some(Ok(doc)) => doc,
                Some(Err(why)) => {
                    return Err(Error::upstream(format!(
                        "the `{name}` tool's response cannot be read at `{pointer}`: {why}"
                    )));
                }
                None => {
                    return Err(Error::upstream(format!(
                        "the `{name}` tool's response is empty, so `{pointer}` cannot be read"
                    )));
                }
            };
            doc.pointer(pointer).ok_or_else(|| {
                Error::not_found(format!("the `{name}` tool's response has nothing at `{pointer}`"))
            })
        };
        let answer = match &self.settings.answer {
            Answer::Pointer(pointer) => display(json(pointer)?),
            Answer::Template(template) => {
                let mut out = String::new();
                let mut rest = template.as_str();
                while let Some(open) = rest.find('{') {
                    out.push_str(&rest[..open]);
                    let after = &rest[open + 1..];
                    let close = after.find('}').unwrap_or(after.len());
                    let key = after[..close].trim();
                    if key.starts_with('/') {
                        out.push_str(&display(json(key)?));
                    } else {
                        out.push_str(&args.get(key).map_or_else(|| "none".to_string(), display));
                    }
                    rest = after.get(close + 1..).unwrap_or("");
                }
                out.push_str(rest);
                out
            }
            Answer::Json => match &parsed {
                None => format!("Done: {} answered {}.", self.settings.method.as_str(), reply.status),
                Some(Ok(doc)) => display(doc),
                Some(Err(_)) => {
                    let mut shown = cut_chars(&text, DISPLAY_CHARS);
                    if reply.truncated && !shown.ends_with("(truncated)") {
                        shown.push_str("\n… (truncated)");
                    }
                    shown
                }
            },
        };
        let response = match &parsed {
            Some(Ok(doc)) => doc.clone(),
            _ => Value::Null,
        };
        Ok(AgentOutput {
            text: answer,
            citations: Vec::new(),
            data: Some(serde_json::json!({
                "arguments": args,
                "status": reply.status.as_u16(),
                "truncated": reply.truncated,
                "response": response,
            })),
        })
    }
}

/// `text` with the credential blanked out, and any `Bearer …` value with it.
fn redact(text: &str, token: Option<&Secret>) -> String {
    let mut out = text.to_string();
    if let Some(token) = token {
        let raw = token.expose();
        if !raw.is_empty() {
            out = out.replace(raw, "[redacted]");
        }
    }
    let lower = out.to_ascii_lowercase();
    if let Some(at) = lower.find("bearer ") {
        let start = at + "bearer ".len();
        let end = out[start..].find(|c: char| c.is_whitespace() || c == '"').map_or(out.len(), |e| start + e);
        out.replace_range(start..end, "[redacted]");
    }
    out
}

/// An error and its sources, for a message (reqwest's own Display stops at the outermost).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}

#[async_trait]
impl Agent for HttpToolAgent {
    fn spec(&self) -> &AgentSpec {
        &self.spec
    }

    fn arguments_schema(&self) -> Option<Arc<Value>> {
        self.llm.as_ref().map(|_| self.settings.schema.clone())
    }

    async fn invoke(&self, ctx: &RunContext, input: &AgentInput) -> Result<AgentOutput> {
        let question = input.question.trim();
        let proposed =
            super::proposed_arguments(&self.spec, &self.settings.schema, self.llm.as_ref(), ctx, input)
                .await?;
        let args = super::settled_arguments(&self.validator, proposed, question)?;
        let prepared = self.prepare(&args)?;
        self.egress
            .hop(ctx, HopTarget::new(HopKind::Http, &self.spec.name), |grant| {
                let (prepared, args) = (&prepared, &args);
                async move { self.call(&grant, prepared, args).await }
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_and_segments() {
        assert_eq!(placeholders("/repos/{owner}/{repo}").unwrap(), vec!["owner", "repo"]);
        assert_eq!(placeholders("Created {/id}: {title}").unwrap(), vec!["/id", "title"]);
        assert!(placeholders("/x/{oops").is_err());
        assert_eq!(encode_segment("a b/../c"), "a%20b%2F..%2Fc");
        assert_eq!(encode_segment("TCK-1003"), "TCK-1003");
    }

    #[test]
    fn credentials_never_survive_into_details() {
        let token = Secret::new("s3cr3t-token");
        let out = redact("bad token s3cr3t-token, header was Bearer abc.def", Some(&token));
        assert!(!out.contains("s3cr3t") && !out.contains("abc.def"), "{out}");
        assert!(out.contains("[redacted]"));
    }
}
