//! The OpenAI request parameters beyond the conversation itself — sampling, tools, `n`,
//! structured output — each either honoured or refused with a 400 naming it, never silently
//! dropped.
//!
//! Sub-agents are SQL, retrieval, HTTP and MCP calls, not a sampled model, so sampling parameters
//! (`temperature`, `top_p`, `max_tokens`, `seed`, penalties, `stop`…) have nothing to act on: they
//! are type-checked, accepted, ignored, and echoed where OpenAI's response object echoes them.
//! Client `tools` are accepted with `tool_choice` `auto` or `none` (the supervisor may answer
//! without calling them, which `auto` allows), but a request that *requires* a tool call cannot be
//! honoured and is refused, as are `n > 1` and, without an LLM, structured output.

use crate::ApiError;
use crate::input::Object;
use serde_json::{Map, Value};
use switchboard_core::Error;

/// Which request shape the parameters came in: the names differ (`response_format` vs
/// `text.format`, `max_tokens` vs `max_output_tokens`, how a function is named in `tool_choice`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Api {
    /// `POST /v1/chat/completions`.
    Chat,
    /// `POST /v1/responses` and `POST /invocations`.
    Responses,
}

/// The accepted parameters that OpenAI's Response object echoes back.
#[derive(Debug, Clone, Default)]
pub(crate) struct Params {
    /// `temperature`, `top_p`, `max_output_tokens`, `tool_choice` and `tools` as sent (Responses
    /// only; a chat completion echoes none of them).
    pub echo: Map<String, Value>,
}

/// Numeric sampling parameters: name, and the inclusive range OpenAI accepts.
const NUMBERS: &[(&str, f64, f64)] = &[
    ("temperature", 0.0, 2.0),
    ("top_p", 0.0, 1.0),
    ("presence_penalty", -2.0, 2.0),
    ("frequency_penalty", -2.0, 2.0),
];

/// Integer parameters, each at least 1 where it is a token budget.
const COUNTS: &[&str] =
    &["max_tokens", "max_completion_tokens", "max_output_tokens", "top_logprobs", "max_tool_calls"];

/// What Responses echoes on its Response object.
const ECHOED: &[&str] =
    &["temperature", "top_p", "max_output_tokens", "tool_choice", "tools", "metadata", "parallel_tool_calls"];

/// An `unsupported_parameter` 400 naming `param`.
fn unsupported(param: &str, why: &str) -> ApiError {
    ApiError::new(Error::invalid(format!("`{param}` is not supported here: {why}")))
        .with_param(param)
        .with_code("unsupported_parameter")
}

/// Reads and checks the parameters of a request body.
/// (the only thing that could produce output in a client's JSON schema).
pub(crate) fn parse(body: &Object, api: Api) -> Result<Params, ApiError> {
    for &(name, low, high) in NUMBERS {
        match body.get(name) {
            None | Some(Value::Null) => {}
            Some(Value::Number(n)) if n.as_f64().is_some_and(|x| (low..=high).contains(&x)) => {}
            Some(_) => {
                return Err(ApiError::invalid_field(name, format!("must be a number from {low} to {high}")));
            }
        }
    }
    for &name in COUNTS {
        match body.get(name) {
            None | Some(Value::Null) => {}
            Some(Value::Number(n)) if n.as_u64().is_some_and(|n| n >= 1) => {}
            Some(_) => return Err(ApiError::invalid_field(name, "must be a positive integer")),
        }
    }
    match body.get("seed") {
        None | Some(Value::Null) => {}
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => {}
        Some(_) => return Err(ApiError::invalid_field("seed", "must be an integer")),
    }
    match body.get("stop") {
        None | Some(Value::Null | Value::String(_)) => {}
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => {}
        Some(_) => return Err(ApiError::invalid_field("stop", "must be a string or an array of strings")),
    }
    for name in ["logprobs", "parallel_tool_calls"] {
        if body.get(name).is_some_and(|v| !v.is_null() && !v.is_boolean()) {
            return Err(ApiError::invalid_field(name, "must be a boolean"));
        }
    }
    if body
        .get("metadata")
        .is_some_and(|v| !v.is_null() && !v.as_object().is_some_and(|m| m.values().all(Value::is_string)))
    {
        return Err(ApiError::invalid_field("metadata", "must be an object of string values"));
    }
    match body.get("n") {
        None | Some(Value::Null) => {}
        Some(Value::Number(n)) => match n.as_u64() {
            Some(1) => {}
            Some(n) if n > 1 => {
                return Err(unsupported(
                    "n",
                    "the supervisor gives one answer per request; send `n` separate requests for more",
                ));
            }
            _ => return Err(ApiError::invalid_field("n", "must be a positive integer")),
        },
        Some(_) => return Err(ApiError::invalid_field("n", "must be a positive integer")),
    }
    structured_output(body, api)?;
    let has_tools = tools(body)?;
    tool_choice(body, api, has_tools)?;

    let mut params = Params::default();
    if api == Api::Responses {
        for &name in ECHOED {
            if let Some(v) = body.get(name).filter(|v| !v.is_null()) {
                params.echo.insert(name.to_string(), v.clone());
            }
        }
    }
    Ok(params)
}

/// `response_format` (chat) or `text.format` (Responses): plain text is always fine. A JSON
/// object or schema is refused, with or without an `[llm]`, until a final formatting step whose
/// output is validated against the schema exists: accepting it would drop it silently.
fn structured_output(body: &Object, api: Api) -> Result<(), ApiError> {
    let (param, format) = match api {
        Api::Chat => ("response_format", body.get("response_format")),
        Api::Responses => {
            let format = match body.get("text") {
                None | Some(Value::Null) => None,
                Some(Value::Object(text)) => text.get("format"),
                Some(_) => return Err(ApiError::invalid_field("text", "must be an object")),
            };
            ("text.format", format)
        }
    };
    let kind = match format {
        None | Some(Value::Null) => return Ok(()),
        Some(Value::Object(f)) => f.get("type").and_then(Value::as_str),
        Some(_) => return Err(ApiError::invalid_field(param, "must be an object")),
    };
    match kind {
        Some("text") => Ok(()),
        Some("json_object" | "json_schema") => Err(unsupported(
            param,
            "structured output is not supported yet: answers are plain text; ask for text",
        )),
        Some(other) => Err(ApiError::invalid_field(
            format!("{param}.type"),
            format!("unsupported format `{other}`; expected text, json_object or json_schema"),
        )),
        None => Err(ApiError::invalid_field(format!("{param}.type"), "is required")),
    }
}

/// `tools`: an array of objects with a `type`. Whether any were sent.
fn tools(body: &Object) -> Result<bool, ApiError> {
    match body.get("tools") {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                if !item.get("type").is_some_and(Value::is_string) {
                    return Err(ApiError::invalid_field(format!("tools[{i}].type"), "is required"));
                }
            }
            Ok(!items.is_empty())
        }
        Some(_) => Err(ApiError::invalid_field("tools", "must be an array")),
    }
}

/// `tool_choice`: `auto` and `none` are honoured (the supervisor answers itself); `required`, a
/// named function or tool, or an allowed-tools list in `required` mode would oblige a tool call
/// the runtime never makes.
fn tool_choice(body: &Object, api: Api, has_tools: bool) -> Result<(), ApiError> {
    let why = "the supervisor answers from its own sub-agents and never calls client tools; \
               use `auto` or `none`";
    match body.get("tool_choice") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(s)) => match s.as_str() {
            "auto" | "none" => Ok(()),
            "required" => Err(unsupported("tool_choice", why)),
            other => Err(ApiError::invalid_field(
                "tool_choice",
                format!("unknown value `{other}`; expected auto, none or required"),
            )),
        },
        Some(Value::Object(choice)) => {
            let forces = match choice.get("type").and_then(Value::as_str) {
                Some("allowed_tools") => {
                    let mode = match api {
                        Api::Chat => choice.get("allowed_tools").and_then(|a| a.get("mode")),
                        Api::Responses => choice.get("mode"),
                    };
                    mode.and_then(Value::as_str) == Some("required")
                }
                Some(_) => true,
                None => return Err(ApiError::invalid_field("tool_choice.type", "is required")),
            };
            if forces {
                return Err(unsupported("tool_choice", why));
            }
            if !has_tools {
                return Err(ApiError::invalid_field("tool_choice", "names tools but no `tools` were sent"));
            }
            Ok(())
        }
        Some(_) => Err(ApiError::invalid_field("tool_choice", "must be a string or an object")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(v: Value, api: Api) -> Result<Params, ApiError> {
        match v {
            Value::Object(body) => parse(&body, api),
            _ => panic!("not an object"),
        }
    }

    fn refused(v: Value, api: Api) -> (Option<String>, Option<&'static str>) {
        let e = check(v, api).unwrap_err();
        assert_eq!(e.status().as_u16(), 400);
        (e.param, e.code)
    }

    #[test]
    fn unsupported_parameters_are_named() {
        let unsupported = Some("unsupported_parameter");
        assert_eq!(
            refused(json!({"response_format": {"type": "json_schema", "json_schema": {}}}), Api::Chat),
            (Some("response_format".into()), unsupported)
        );
        assert_eq!(
            refused(json!({"response_format": {"type": "json_object"}}), Api::Chat),
            (Some("response_format".into()), unsupported)
        );
        assert_eq!(
            refused(
                json!({"text": {"format": {"type": "json_schema", "name": "x", "schema": {}}}}),
                Api::Responses
            ),
            (Some("text.format".into()), unsupported)
        );
        assert_eq!(refused(json!({"n": 2}), Api::Chat), (Some("n".into()), unsupported));
        let tools = json!([{"type": "function", "function": {"name": "f"}}]);
        assert_eq!(
            refused(json!({"tools": tools, "tool_choice": "required"}), Api::Chat),
            (Some("tool_choice".into()), unsupported)
        );
        assert_eq!(
            refused(
                json!({"tools": tools, "tool_choice": {"type": "function", "function": {"name": "f"}}}),
                Api::Chat
            ),
            (Some("tool_choice".into()), unsupported)
        );
        assert_eq!(
            refused(
                json!({"tools": tools, "tool_choice": {"type": "function", "name": "f"}}),
                Api::Responses
            ),
            (Some("tool_choice".into()), unsupported)
        );
    }

    #[test]
    fn honoured_parameters_are_accepted_and_echoed_for_responses() {
        let tools = json!([{"type": "function", "name": "f", "parameters": {}}]);
        let body = json!({
            "temperature": 0.2, "top_p": 0.9, "max_output_tokens": 100, "seed": 7, "n": 1,
            "tools": tools, "tool_choice": "auto", "text": {"format": {"type": "text"}},
            "metadata": {"team": "sales"}, "parallel_tool_calls": true,
        });
        let p = check(body.clone(), Api::Responses).unwrap();
        assert_eq!(p.echo["temperature"], json!(0.2));
        assert_eq!(p.echo["max_output_tokens"], json!(100));
        assert_eq!(p.echo["tools"], tools);
        assert_eq!(p.echo["tool_choice"], json!("auto"));
        assert_eq!(p.echo["metadata"], json!({"team": "sales"}));
        assert_eq!(p.echo["parallel_tool_calls"], json!(true));
        assert!(check(body, Api::Chat).unwrap().echo.is_empty(), "chat echoes none");
    }

    #[test]
    fn bad_types_name_the_field_without_the_unsupported_code() {
        for (body, param) in [
            (json!({"temperature": "hot"}), "temperature"),
            (json!({"temperature": 3}), "temperature"),
            (json!({"max_tokens": -1}), "max_tokens"),
            (json!({"n": 0}), "n"),
            (json!({"n": "2"}), "n"),
            (json!({"tools": {}}), "tools"),
            (json!({"tool_choice": 5}), "tool_choice"),
            (json!({"metadata": {"n": 1}}), "metadata"),
            (json!({"response_format": "json"}), "response_format"),
            (json!({"response_format": {"type": "yaml"}}), "response_format.type"),
        ] {
            let (got, code) = refused(body, Api::Chat);
            assert_eq!((got.as_deref(), code), (Some(param), None));
        }
    }
}
