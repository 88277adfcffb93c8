//! The OpenAI request parameters beyond the conversation itself — sampling, tools, `n`,
//! structured output — each either honoured or refused with a 400 naming it, never silently
//! dropped. A parameter this server does not know at all is refused too (400
//! `unknown_parameter`), as OpenAI's API does, so a typo or a newer feature is never mistaken for
//! one that worked.
//!
//! Sub-agents are SQL, retrieval, HTTP and MCP calls, not a sampled model, so sampling-like
//! parameters (`temperature`, `top_p`, `max_tokens`, `seed`, penalties, `stop`, `reasoning`,
//! `verbosity`, `truncation`, `include`, `service_tier`, `prompt_cache_key`…) have nothing to act
//! on: they are type-checked, accepted, ignored, and echoed where OpenAI's response object echoes
//! them. Client `tools` are accepted with `tool_choice` `auto` or `none` (the supervisor may answer
//! without calling them, which `auto` allows), but a request that *requires* a tool call cannot be
//! honoured and is refused, as are `n > 1`, `background: true`, server-side `conversation`s and
//! `prompt` templates, audio, and, without an `[llm]`, structured output. With an `[llm]`,
//! structured output is honoured: the answer is formatted for the schema by the LLM and validated.

use crate::ApiError;
use crate::input::Object;
use serde_json::{Map, Value};
use switchboard_core::Error;
use switchboard_runtime::OutputFormat;

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
    /// `temperature`, `top_p`, `max_output_tokens`, `tool_choice`, `tools`, `text`, `reasoning`…
    /// as sent (Responses only; a chat completion echoes none of them).
    pub echo: Map<String, Value>,
    /// The structured output asked for, if any (only ever set when an LLM is configured).
    pub format: Option<OutputFormat>,
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
    &["max_tokens", "max_completion_tokens", "max_output_tokens", "top_logprobs", "max_tool_calls", "top_k"];

/// What Responses echoes on its Response object.
const ECHOED: &[&str] = &[
    "temperature",
    "top_p",
    "max_output_tokens",
    "tool_choice",
    "tools",
    "metadata",
    "parallel_tool_calls",
    "text",
    "reasoning",
    "truncation",
    "user",
    "service_tier",
    "background",
    "top_logprobs",
    "max_tool_calls",
    "prompt_cache_key",
    "safety_identifier",
];

/// Every parameter a request may carry, by API: OpenAI's own, and Databricks' (`custom_inputs`,
/// `context`, `databricks_options`). Anything else is refused as unknown.
const KNOWN_CHAT: &[&str] = &[
    "messages",
    "model",
    "top_k",
    "stream",
    "stream_options",
    "temperature",
    "top_p",
    "n",
    "stop",
    "max_tokens",
    "max_completion_tokens",
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
    "logprobs",
    "top_logprobs",
    "user",
    "seed",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "response_format",
    "functions",
    "function_call",
    "service_tier",
    "store",
    "metadata",
    "modalities",
    "audio",
    "prediction",
    "reasoning_effort",
    "verbosity",
    "web_search_options",
    "prompt_cache_key",
    "safety_identifier",
    "custom_inputs",
    "context",
    "databricks_options",
];

/// See [`KNOWN_CHAT`]. `/invocations` shares these and also takes MLflow's chat-shaped request
/// (`messages`, and sampling parameters under their chat names, `top_k` among them). Chat's
/// `response_format` is not here: Responses asks for structured output with `text.format`.
const KNOWN_RESPONSES: &[&str] = &[
    "input",
    "messages",
    "n",
    "stop",
    "max_tokens",
    "max_completion_tokens",
    "presence_penalty",
    "frequency_penalty",
    "seed",
    "logprobs",
    "top_k",
    "model",
    "instructions",
    "stream",
    "stream_options",
    "temperature",
    "top_p",
    "max_output_tokens",
    "max_tool_calls",
    "top_logprobs",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "text",
    "reasoning",
    "truncation",
    "include",
    "user",
    "service_tier",
    "background",
    "store",
    "previous_response_id",
    "metadata",
    "conversation",
    "prompt",
    "prompt_cache_key",
    "safety_identifier",
    "custom_inputs",
    "context",
    "databricks_options",
];

/// OpenAI's service tiers.
const SERVICE_TIERS: &[&str] = &["auto", "default", "flex", "scale", "priority"];

/// An `unsupported_parameter` 400 naming `param`.
fn unsupported(param: &str, why: &str) -> ApiError {
    ApiError::new(Error::invalid(format!("`{param}` is not supported here: {why}")))
        .with_param(param)
        .with_code("unsupported_parameter")
}

/// Reads and checks the parameters of a request body. `llm` says whether an LLM is configured
/// (the only thing that could produce output in a client's JSON schema).
pub(crate) fn parse(body: &Object, api: Api, llm: bool) -> Result<Params, ApiError> {
    known(body, api)?;
    ignored_but_checked(body, api)?;
    refused_features(body)?;
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
    let format = structured_output(body, api, llm)?;
    let has_tools = tools(body)?;
    tool_choice(body, api, has_tools)?;

    let mut params = Params { format, ..Params::default() };
    if api == Api::Responses {
        for &name in ECHOED {
            if let Some(v) = body.get(name).filter(|v| !v.is_null()) {
                params.echo.insert(name.to_string(), v.clone());
            }
        }
    }
    Ok(params)
}

/// Refuses parameters outside OpenAI's API (and Databricks' additions) for `api`.
fn known(body: &Object, api: Api) -> Result<(), ApiError> {
    let known = match api {
        Api::Chat => KNOWN_CHAT,
        Api::Responses => KNOWN_RESPONSES,
    };
    match body.keys().find(|k| !known.contains(&k.as_str())) {
        None => Ok(()),
        Some(name) => {
            let name = crate::chat::truncated(name);
            Err(ApiError::new(Error::invalid(format!("unknown parameter `{name}`")))
                .with_param(name)
                .with_code("unknown_parameter"))
        }
    }
}

/// A present, non-null value of `name`.
fn present<'a>(body: &'a Object, name: &str) -> Option<&'a Value> {
    body.get(name).filter(|v| !v.is_null())
}

/// The parameters that are accepted and ignored beyond the numeric ones: each type-checked so a
/// malformed one is still a 400 naming it.
fn ignored_but_checked(body: &Object, api: Api) -> Result<(), ApiError> {
    for name in ["user", "prompt_cache_key", "safety_identifier", "reasoning_effort"] {
        if present(body, name).is_some_and(|v| !v.is_string()) {
            return Err(ApiError::invalid_field(name, "must be a string"));
        }
    }
    if let Some(tier) = present(body, "service_tier")
        && !tier.as_str().is_some_and(|t| SERVICE_TIERS.contains(&t))
    {
        return Err(ApiError::invalid_field(
            "service_tier",
            format!("must be one of {}", SERVICE_TIERS.join(", ")),
        ));
    }
    if let Some(t) = present(body, "truncation")
        && !matches!(t.as_str(), Some("auto" | "disabled"))
    {
        return Err(ApiError::invalid_field("truncation", "must be `auto` or `disabled`"));
    }
    if present(body, "reasoning").is_some_and(|v| !v.is_object()) {
        return Err(ApiError::invalid_field("reasoning", "must be an object"));
    }
    if present(body, "include").is_some_and(|v| !v.as_array().is_some_and(|a| a.iter().all(Value::is_string)))
    {
        return Err(ApiError::invalid_field("include", "must be an array of strings"));
    }
    if present(body, "logit_bias").is_some_and(|v| !v.is_object()) {
        return Err(ApiError::invalid_field("logit_bias", "must be an object"));
    }
    if present(body, "store").is_some_and(|v| !v.is_boolean()) {
        return Err(ApiError::invalid_field("store", "must be a boolean"));
    }
    let verbosity = match api {
        Api::Chat => ("verbosity", present(body, "verbosity")),
        Api::Responses => ("text.verbosity", present(body, "text").and_then(|t| t.get("verbosity"))),
    };
    if let (name, Some(v)) = verbosity
        && !v.is_null()
        && !matches!(v.as_str(), Some("low" | "medium" | "high"))
    {
        return Err(ApiError::invalid_field(name, "must be `low`, `medium` or `high`"));
    }
    if present(body, "functions").is_some_and(|v| !v.is_array()) {
        return Err(ApiError::invalid_field("functions", "must be an array"));
    }
    Ok(())
}

/// Features the runtime cannot honour, refused by name.
fn refused_features(body: &Object) -> Result<(), ApiError> {
    if present(body, "background").is_some_and(|v| !v.is_boolean()) {
        return Err(ApiError::invalid_field("background", "must be a boolean"));
    }
    if present(body, "background") == Some(&Value::Bool(true)) {
        return Err(unsupported("background", "runs are answered in the request; send `background: false`"));
    }
    if present(body, "conversation").is_some() {
        return Err(unsupported(
            "conversation",
            "conversations are not stored server-side; send the history, `previous_response_id` or `custom_inputs.thread_id`",
        ));
    }
    if present(body, "prompt").is_some() {
        return Err(unsupported("prompt", "there are no stored prompt templates; send `instructions`"));
    }
    if present(body, "audio").is_some()
        || present(body, "modalities")
            .and_then(Value::as_array)
            .is_some_and(|m| m.iter().any(|m| m != "text"))
    {
        let param = if present(body, "audio").is_some() { "audio" } else { "modalities" };
        return Err(unsupported(param, "answers are text only"));
    }
    if present(body, "web_search_options").is_some() {
        return Err(unsupported("web_search_options", "the supervisor answers from its own sub-agents"));
    }
    match present(body, "function_call") {
        None => Ok(()),
        Some(Value::String(s)) if s == "auto" || s == "none" => Ok(()),
        Some(_) => Err(unsupported(
            "function_call",
            "the supervisor never calls client functions; use `auto` or `none`",
        )),
    }
}

/// `response_format` (chat) or `text.format` (Responses): plain text is always fine. A JSON
/// object or schema is honoured when an `[llm]` is configured (the answer is formatted for it and
/// validated) and refused without one: accepting it would drop it silently.
fn structured_output(body: &Object, api: Api, llm: bool) -> Result<Option<OutputFormat>, ApiError> {
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
    let (kind, object) = match format {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(f)) => (f.get("type").and_then(Value::as_str), f),
        Some(_) => return Err(ApiError::invalid_field(param, "must be an object")),
    };
    match kind {
        Some("text") => Ok(None),
        Some("json_object" | "json_schema") if !llm => Err(unsupported(
            param,
            "structured output needs an LLM to format the answer, and this server has no [llm] configured; ask for text",
        )),
        Some("json_object") => Ok(Some(OutputFormat::json_object())),
        Some("json_schema") => {
            // Chat nests the schema under `json_schema`; Responses has it on the format itself.
            let (spec, at) = match api {
                Api::Chat => match object.get("json_schema") {
                    Some(Value::Object(spec)) => (spec, format!("{param}.json_schema")),
                    _ => {
                        return Err(ApiError::invalid_field(
                            format!("{param}.json_schema"),
                            "must be an object",
                        ));
                    }
                },
                Api::Responses => (object, param.to_string()),
            };
            let name = match spec.get("name") {
                Some(Value::String(n)) if !n.is_empty() => n.clone(),
                _ => return Err(ApiError::invalid_field(format!("{at}.name"), "must be a non-empty string")),
            };
            let schema = match spec.get("schema") {
                Some(s @ Value::Object(_)) => s.clone(),
                _ => {
                    return Err(ApiError::invalid_field(
                        format!("{at}.schema"),
                        "must be a JSON schema object",
                    ));
                }
            };
            let strict = spec.get("strict").and_then(Value::as_bool).unwrap_or(false);
            OutputFormat::json_schema(name, schema, strict)
                .map(Some)
                .map_err(|e| ApiError::invalid_field(format!("{at}.schema"), e.message))
        }
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
        check_with(v, api, false)
    }

    fn check_with(v: Value, api: Api, llm: bool) -> Result<Params, ApiError> {
        match v {
            Value::Object(body) => parse(&body, api, llm),
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
        let mut chat = body;
        for responses_only in ["max_output_tokens", "text"] {
            chat.as_object_mut().map(|b| b.remove(responses_only));
        }
        assert!(check(chat, Api::Chat).unwrap().echo.is_empty(), "chat echoes none");
    }

    #[test]
    fn structured_output_is_read_when_an_llm_is_configured() {
        let schema = json!({"type": "object", "properties": {"total": {"type": "number"}}});
        let chat = json!({"response_format": {"type": "json_schema",
            "json_schema": {"name": "Revenue", "schema": schema, "strict": true}}});
        let f = check_with(chat, Api::Chat, true).unwrap().format.unwrap();
        assert_eq!((f.name.as_str(), f.schema.as_ref(), f.strict), ("Revenue", Some(&schema), true));
        let responses =
            json!({"text": {"format": {"type": "json_schema", "name": "Revenue", "schema": schema}}});
        let p = check_with(responses.clone(), Api::Responses, true).unwrap();
        assert_eq!(p.format.unwrap().name, "Revenue");
        assert_eq!(p.echo["text"], responses["text"], "the Response echoes `text`");
        let object = json!({"response_format": {"type": "json_object"}});
        assert_eq!(check_with(object, Api::Chat, true).unwrap().format.unwrap().schema, None);
        for (body, param) in [
            (
                json!({"response_format": {"type": "json_schema", "json_schema": {"schema": {}}}}),
                "response_format.json_schema.name",
            ),
            (
                json!({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": 5}}}}),
                "response_format.json_schema.schema",
            ),
        ] {
            let e = check_with(body, Api::Chat, true).unwrap_err();
            assert_eq!(e.param.as_deref(), Some(param), "{}", e.error.message);
        }
        let e = check_with(
            json!({"text": {"format": {"type": "json_schema", "name": "x"}}}),
            Api::Responses,
            true,
        )
        .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("text.format.schema"));
    }

    #[test]
    fn responses_parameters_are_echoed_refused_or_unknown() {
        let body = json!({
            "reasoning": {"effort": "low"}, "truncation": "auto", "include": ["message.output_text.logprobs"],
            "user": "u-1", "service_tier": "default", "background": false, "text": {"verbosity": "low"},
            "prompt_cache_key": "k", "safety_identifier": "s",
        });
        let p = check(body.clone(), Api::Responses).unwrap();
        for key in
            ["reasoning", "truncation", "user", "service_tier", "background", "text", "prompt_cache_key"]
        {
            assert_eq!(p.echo[key], body[key], "{key}");
        }
        assert!(!p.echo.contains_key("include"), "include is accepted but not a Response field");
        let unsupported = Some("unsupported_parameter");
        for (body, param) in [
            (json!({"background": true}), "background"),
            (json!({"conversation": "conv_1"}), "conversation"),
            (json!({"prompt": {"id": "pmpt_1"}}), "prompt"),
        ] {
            assert_eq!(refused(body, Api::Responses), (Some(param.into()), unsupported));
        }
        assert_eq!(
            refused(json!({"modalities": ["text", "audio"]}), Api::Chat),
            (Some("modalities".into()), unsupported)
        );
        assert_eq!(
            refused(json!({"temprature": 0.2}), Api::Chat),
            (Some("temprature".into()), Some("unknown_parameter"))
        );
        assert_eq!(
            refused(json!({"input": "x", "response_format": {"type": "json_object"}}), Api::Responses),
            (Some("response_format".into()), Some("unknown_parameter")),
            "Responses asks for structured output with text.format"
        );
        for (body, param) in [
            (json!({"truncation": "sometimes"}), "truncation"),
            (json!({"service_tier": "gold"}), "service_tier"),
            (json!({"include": "all"}), "include"),
            (json!({"reasoning": "hard"}), "reasoning"),
            (json!({"background": "yes"}), "background"),
            (json!({"user": 7}), "user"),
            (json!({"text": {"verbosity": "loud"}}), "text.verbosity"),
        ] {
            let (got, code) = refused(body, Api::Responses);
            assert_eq!((got.as_deref(), code), (Some(param), None));
        }
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
