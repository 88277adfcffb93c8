//! Reading and validating request bodies: the JSON object itself, the options every endpoint
//! shares (model, stream, thread, trace), OpenAI chat `messages`, and the Responses /
//! ResponsesAgent `input`. Every rejection is a 400 that names the field at fault.

use crate::ApiError;
use axum::body::Body;
use axum::http::{HeaderMap, header};
use futures::StreamExt;
use serde_json::{Map, Value};
use switchboard_core::{Error, ErrorKind, Message, Role};
use switchboard_runtime::RunRequest;

/// A JSON request body.
pub(crate) type Object = Map<String, Value>;

/// The longest thread id accepted; ids are keys, not documents.
const MAX_THREAD_ID: usize = 256;

/// Reads at most `limit` bytes of `body` and parses it as a JSON object. Called after the caller
/// is authenticated, so an anonymous client cannot make the server buffer anything. The limit is
/// checked against `content-length` up front and again while reading (chunked bodies).
pub(crate) async fn read_json(headers: &HeaderMap, body: Body, limit: usize) -> Result<Object, ApiError> {
    let too_large = || {
        ApiError::new(Error::new(
            ErrorKind::TooLarge,
            format!("the request body is larger than the limit of {limit} bytes"),
        ))
    };
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let mut bytes = Vec::with_capacity(declared.map_or(1024, |n| n as usize));
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk
            .map_err(|e| ApiError::new(Error::invalid(format!("the request body could not be read: {e}"))))?;
        if bytes.len() + chunk.len() > limit {
            return Err(too_large());
        }
        bytes.extend_from_slice(&chunk);
    }
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::new(Error::invalid("the request body must be a JSON object"))),
        Err(e) => Err(ApiError::new(Error::invalid(format!("malformed JSON body: {e}")))),
    }
}

/// The value at a dotted `path`, treating JSON `null` as absent.
fn lookup<'a>(body: &'a Object, path: &str) -> Result<Option<&'a Value>, ApiError> {
    let mut parts = path.split('.');
    let Some(first) = parts.next() else { return Ok(None) };
    let mut current = body.get(first);
    // The length of `path` walked so far: it names the part that is not an object.
    let mut walked = first.len();
    for part in parts {
        current = match current {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::Object(map)) => map.get(part),
            Some(_) => return Err(ApiError::invalid_field(&path[..walked], "must be an object")),
        };
        walked += 1 + part.len();
    }
    Ok(current.filter(|v| !v.is_null()))
}

/// An optional string field.
pub(crate) fn opt_str<'a>(body: &'a Object, path: &str) -> Result<Option<&'a str>, ApiError> {
    match lookup(body, path)? {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ApiError::invalid_field(path, "must be a string")),
    }
}

/// An optional boolean field (absent is false).
pub(crate) fn opt_bool(body: &Object, path: &str) -> Result<bool, ApiError> {
    match lookup(body, path)? {
        None => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(ApiError::invalid_field(path, "must be a boolean")),
    }
}

/// The options the chat, Responses and invocations endpoints share.
#[derive(Debug, Clone, Default)]
pub(crate) struct Options {
    /// The model asked for, if named.
    pub model: Option<String>,
    /// Server-sent events instead of one JSON body.
    pub stream: bool,
    /// The conversation to continue, as the client named it.
    pub thread: Option<String>,
    /// `databricks_options.return_trace`: include the span tree in the answer.
    pub return_trace: bool,
    /// Chargeback labels for the usage table: `custom_inputs.usage_context`, else
    /// `databricks_options.usage_context`, an object of at most [`MAX_USAGE_KEYS`] string values.
    /// (Not `metadata`: OpenAI's `metadata` must hold strings only, and it is echoed back.)
    pub usage_context: Option<Map<String, Value>>,
}

/// The most labels one `usage_context` may carry, and the longest key and value: enough for
/// chargeback (project, cost centre, team…), small enough that every LLM span can carry them.
pub(crate) const MAX_USAGE_KEYS: usize = 16;
const MAX_USAGE_KEY: usize = 64;
const MAX_USAGE_VALUE: usize = 256;

/// Reads and checks the optional `usage_context`, naming the offending field on error.
fn usage_context(body: &Object) -> Result<Option<Map<String, Value>>, ApiError> {
    for path in ["custom_inputs.usage_context", "databricks_options.usage_context"] {
        let Some(value) = lookup(body, path)? else { continue };
        let Value::Object(map) = value else {
            return Err(ApiError::invalid_field(path, "must be an object of string values"));
        };
        if map.len() > MAX_USAGE_KEYS {
            return Err(ApiError::invalid_field(path, format!("must have at most {MAX_USAGE_KEYS} keys")));
        }
        for (key, v) in map {
            if key.is_empty() || key.len() > MAX_USAGE_KEY || key.chars().any(char::is_control) {
                return Err(ApiError::invalid_field(
                    path,
                    format!("keys must be 1 to {MAX_USAGE_KEY} printable characters"),
                ));
            }
            match v {
                Value::String(text) if text.len() <= MAX_USAGE_VALUE => {}
                Value::String(_) => {
                    return Err(ApiError::invalid_field(
                        format!("{path}.{key}"),
                        format!("must be at most {MAX_USAGE_VALUE} bytes"),
                    ));
                }
                _ => return Err(ApiError::invalid_field(format!("{path}.{key}"), "must be a string")),
            }
        }
        return Ok(Some(map.clone()));
    }
    Ok(None)
}

impl Options {
    /// Reads the shared options. The thread is `custom_inputs.thread_id`, else
    /// `context.conversation_id` (ResponsesAgent), else `metadata.thread_id` (what OpenAI clients
    /// can send as `extra_body` or `metadata`).
    pub(crate) fn parse(body: &Object) -> Result<Self, ApiError> {
        for object in ["custom_inputs", "context", "metadata", "databricks_options", "stream_options"] {
            if lookup(body, object)?.is_some_and(|v| !v.is_object()) {
                return Err(ApiError::invalid_field(object, "must be an object"));
            }
        }
        let mut thread = None;
        for path in ["custom_inputs.thread_id", "context.conversation_id", "metadata.thread_id"] {
            if let Some(id) = opt_str(body, path)? {
                if id.trim().is_empty() || id.len() > MAX_THREAD_ID || id.chars().any(char::is_control) {
                    return Err(ApiError::invalid_field(
                        path,
                        format!("must be 1 to {MAX_THREAD_ID} printable characters"),
                    ));
                }
                thread.get_or_insert_with(|| id.to_string());
            }
        }
        Ok(Self {
            model: opt_str(body, "model")?.map(str::to_string),
            stream: opt_bool(body, "stream")?,
            thread,
            return_trace: opt_bool(body, "databricks_options.return_trace")?,
            usage_context: usage_context(body)?,
        })
    }
}

/// Reads OpenAI chat `messages` into the new question and the turns before it.
pub(crate) fn chat_messages(body: &Object) -> Result<RunRequest, ApiError> {
    let messages = match lookup(body, "messages")? {
        Some(Value::Array(items)) if !items.is_empty() => items,
        Some(Value::Array(_)) => return Err(ApiError::invalid_field("messages", "must not be empty")),
        Some(_) => return Err(ApiError::invalid_field("messages", "must be an array of messages")),
        None => return Err(ApiError::invalid_field("messages", "is required")),
    };
    let mut turns = Vec::with_capacity(messages.len());
    for (i, m) in messages.iter().enumerate() {
        let at = format!("messages[{i}]");
        let Value::Object(m) = m else { return Err(ApiError::invalid_field(at, "must be an object")) };
        let role = role(m, &at)?;
        let content = content(m.get("content"), &format!("{at}.content"), role == Role::Assistant)?;
        turns.push((role, content));
    }
    into_request(turns, "messages")
}

/// Reads a Responses / ResponsesAgent `input`: a string, or a list of messages (`role` and
/// `content`, content a string or `input_text` / `output_text` parts) and output items. Tool-call
/// items are intermediate steps of another agent's turn and carry no conversation text, so they
/// are skipped.
pub(crate) fn responses_input(body: &Object, field: &str) -> Result<RunRequest, ApiError> {
    let items = match lookup(body, field)? {
        Some(Value::String(s)) => vec![(Role::User, s.clone())],
        Some(Value::Array(items)) if !items.is_empty() => {
            let mut turns = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let at = format!("{field}[{i}]");
                let Value::Object(item) = item else {
                    return Err(ApiError::invalid_field(at, "must be an object"));
                };
                match item.get("type").and_then(Value::as_str) {
                    None | Some("message") => {}
                    Some(
                        "function_call"
                        | "function_call_output"
                        | "reasoning"
                        | "mcp_call"
                        | "mcp_list_tools"
                        | "mcp_approval_request"
                        | "mcp_approval_response",
                    ) => continue,
                    Some(other) => {
                        return Err(ApiError::invalid_field(
                            format!("{at}.type"),
                            format!("unsupported input item type `{other}`"),
                        ));
                    }
                }
                let role = role(item, &at)?;
                let content =
                    content(item.get("content"), &format!("{at}.content"), role == Role::Assistant)?;
                turns.push((role, content));
            }
            turns
        }
        Some(Value::Array(_)) => return Err(ApiError::invalid_field(field, "must not be empty")),
        Some(_) => return Err(ApiError::invalid_field(field, "must be a string or an array of messages")),
        None => return Err(ApiError::invalid_field(field, "is required")),
    };
    into_request(items, field)
}

fn role(m: &Object, at: &str) -> Result<Role, ApiError> {
    match m.get("role").and_then(Value::as_str) {
        Some("user") => Ok(Role::User),
        Some("assistant") => Ok(Role::Assistant),
        Some("system" | "developer") => Ok(Role::System),
        Some("tool" | "function") => Ok(Role::Tool),
        Some(other) => {
            Err(ApiError::invalid_field(format!("{at}.role"), format!("unsupported role `{other}`")))
        }
        None => Err(ApiError::invalid_field(format!("{at}.role"), "is required")),
    }
}

/// Text of a message's content: a string, or the concatenated text parts.
fn content(content: Option<&Value>, at: &str, may_be_empty: bool) -> Result<String, ApiError> {
    match content {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Array(parts)) => {
            let mut texts = Vec::with_capacity(parts.len());
            for (j, part) in parts.iter().enumerate() {
                let kind = part.get("type").and_then(Value::as_str);
                match (kind, part.get("text")) {
                    (Some("text" | "input_text" | "output_text"), Some(Value::String(t))) => {
                        texts.push(t.as_str())
                    }
                    (Some("text" | "input_text" | "output_text"), _) => {
                        return Err(ApiError::invalid_field(format!("{at}[{j}].text"), "must be a string"));
                    }
                    (Some("refusal"), _) => {}
                    (Some(other), _) => {
                        return Err(ApiError::invalid_field(
                            format!("{at}[{j}].type"),
                            format!("unsupported content part `{other}`; only text is accepted"),
                        ));
                    }
                    (None, _) => {
                        return Err(ApiError::invalid_field(format!("{at}[{j}].type"), "is required"));
                    }
                }
            }
            Ok(texts.join("\n"))
        }
        None | Some(Value::Null) if may_be_empty => Ok(String::new()),
        _ => Err(ApiError::invalid_field(at, "must be a string or an array of text parts")),
    }
}

/// The last turn is the question; the user and assistant turns before it are the history.
/// System and developer messages are not history: they become the request's `instructions`,
/// which the supervisor's LLM calls (synthesis, formatting) follow after their own prompts, while
/// policy and routing ignore them. Keeping them out of the history lets a client that always
/// sends a system prompt continue a stored thread (loaded only when the history is empty).
fn into_request(mut turns: Vec<(Role, String)>, field: &str) -> Result<RunRequest, ApiError> {
    let system: Vec<&str> =
        turns.iter().filter(|(role, _)| *role == Role::System).map(|(_, text)| text.as_str()).collect();
    let instructions = (!system.is_empty()).then(|| system.join("\n"));
    match turns.pop() {
        Some((Role::User, question)) if !question.trim().is_empty() => Ok(RunRequest {
            question,
            instructions,
            history: turns
                .into_iter()
                .filter(|(role, _)| *role != Role::System)
                .map(|(role, content)| Message { role, content, agent: None })
                .collect(),
            ..Default::default()
        }),
        Some((Role::User, _)) => Err(ApiError::invalid_field(field, "the last message is empty")),
        _ => Err(ApiError::invalid_field(field, "the last message must be a user message")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(v: Value) -> Object {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    #[test]
    fn chat_messages_split_question_and_history_and_drop_system() {
        let body = object(json!({"messages": [
            {"role": "system", "content": "be nice"},
            {"role": "user", "content": "revenue by region"},
            {"role": "assistant", "content": [{"type": "text", "text": "| West | 1 |"}]},
            {"role": "user", "content": [{"type": "text", "text": "now only"}, {"type": "text", "text": "the top 3"}]},
        ]}));
        let r = chat_messages(&body).unwrap();
        assert_eq!(r.question, "now only\nthe top 3");
        assert_eq!(
            r.history,
            vec![Message::user("revenue by region"), Message::assistant("| West | 1 |", None)]
        );
    }

    #[test]
    fn chat_messages_name_the_bad_field() {
        let err = chat_messages(&object(json!({"messages": [{"role": "user", "content": 5}]}))).unwrap_err();
        assert_eq!(err.param.as_deref(), Some("messages[0].content"));
        let err =
            chat_messages(&object(json!({"messages": [{"role": "wizard", "content": "x"}]}))).unwrap_err();
        assert_eq!(err.param.as_deref(), Some("messages[0].role"));
        let err = chat_messages(&object(json!({"model": "x"}))).unwrap_err();
        assert_eq!(err.param.as_deref(), Some("messages"));
        assert!(err.error.message.contains("required"));
        let err = chat_messages(&object(json!({"messages": [{"role": "assistant", "content": "hi"}]})))
            .unwrap_err();
        assert!(err.error.message.contains("user message"));
    }

    #[test]
    fn responses_input_accepts_strings_messages_and_output_items() {
        let r = responses_input(&object(json!({"input": "hotel limit?"})), "input").unwrap();
        assert_eq!(r.question, "hotel limit?");
        let r = responses_input(
            &object(json!({"input": [
                {"role": "user", "content": [{"type": "input_text", "text": "revenue by region"}]},
                {"type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
                 "content": [{"type": "output_text", "text": "table", "annotations": []}]},
                {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
                {"role": "user", "content": "now only the top 3"},
            ]})),
            "input",
        )
        .unwrap();
        assert_eq!(r.question, "now only the top 3");
        assert_eq!(r.history.len(), 2);
        let err = responses_input(
            &object(
                json!({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]}),
            ),
            "input",
        )
        .unwrap_err();
        assert_eq!(err.param.as_deref(), Some("input[0].content[0].type"));
    }

    #[test]
    fn options_find_the_thread_and_reject_wrong_types() {
        let o =
            Options::parse(&object(json!({"custom_inputs": {"thread_id": "t1"}, "stream": true}))).unwrap();
        assert_eq!((o.thread.as_deref(), o.stream), (Some("t1"), true));
        let o =
            Options::parse(&object(json!({"context": {"conversation_id": "c9", "user_id": "u"}}))).unwrap();
        assert_eq!(o.thread.as_deref(), Some("c9"));
        let o = Options::parse(&object(json!({"metadata": {"thread_id": "m1"}}))).unwrap();
        assert_eq!(o.thread.as_deref(), Some("m1"));
        let o = Options::parse(&object(json!({"databricks_options": {"return_trace": true}}))).unwrap();
        assert!(o.return_trace);
        let err = Options::parse(&object(json!({"stream": "yes"}))).unwrap_err();
        assert_eq!(err.param.as_deref(), Some("stream"));
        let o =
            Options::parse(&object(json!({"custom_inputs": {"usage_context": {"project": "p1"}}}))).unwrap();
        assert_eq!(o.usage_context, Some(json!({"project": "p1"}).as_object().unwrap().clone()));
        let o =
            Options::parse(&object(json!({"databricks_options": {"usage_context": {"team": "t"}}}))).unwrap();
        assert_eq!(o.usage_context.unwrap()["team"], "t");
        let err = Options::parse(&object(json!({"custom_inputs": {"usage_context": {"n": 1}}}))).unwrap_err();
        assert_eq!(err.param.as_deref(), Some("custom_inputs.usage_context.n"));
        let err = Options::parse(&object(json!({"custom_inputs": {"usage_context": "p"}}))).unwrap_err();
        assert_eq!(err.param.as_deref(), Some("custom_inputs.usage_context"));
        let err = Options::parse(&object(json!({"custom_inputs": {"thread_id": 7}}))).unwrap_err();
        assert_eq!(err.param.as_deref(), Some("custom_inputs.thread_id"));
        let err = Options::parse(&object(json!({"custom_inputs": "t1"}))).unwrap_err();
        assert_eq!(err.param.as_deref(), Some("custom_inputs"));
    }

    #[test]
    fn a_dotted_path_names_the_part_that_is_not_an_object() {
        let body = object(json!({"a": {"b": 5, "n": null}, "s": "x"}));
        assert_eq!(lookup(&body, "a.b").unwrap(), Some(&json!(5)));
        assert_eq!(lookup(&body, "a.n.c").unwrap(), None, "null is absent");
        assert_eq!(lookup(&body, "a.b.c.d").unwrap_err().param.as_deref(), Some("a.b"));
        assert_eq!(lookup(&body, "s.t").unwrap_err().param.as_deref(), Some("s"));
    }
}
