//! The answer in OpenAI's wire shapes: a chat completion and its chunks, a Response and its
//! stream events, both with `usage`. Errors are answered before anything is rendered.

use super::answer::{Answer, Tokens, token_pieces};
use serde_json::{Value, json};

/// Identity shared by one answer's payloads.
pub(crate) struct Ids<'a> {
    /// The call's sequence number, which makes ids unique and deterministic.
    pub call: u64,
    pub model: &'a str,
    pub created: u64,
}

fn chat_usage(t: Tokens) -> Value {
    json!({
        "prompt_tokens": t.prompt,
        "completion_tokens": t.completion,
        "total_tokens": t.prompt + t.completion,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0, "audio_tokens": 0,
            "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0,
        },
    })
}

fn responses_usage(t: Tokens) -> Value {
    json!({
        "input_tokens": t.prompt,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": t.completion,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": t.prompt + t.completion,
    })
}

/// A tool call's id: unique per call and position.
fn call_id(ids: &Ids<'_>, index: usize) -> String {
    format!("call_{}_{index}", ids.call)
}

/// A non-streamed chat completion.
pub(crate) fn chat_completion(ids: &Ids<'_>, answer: &Answer, tokens: Tokens) -> Value {
    let (message, finish) = match answer {
        Answer::ToolCalls(calls) => {
            let calls: Vec<Value> = calls
                .iter()
                .enumerate()
                .map(|(i, (name, arguments))| {
                    json!({"id": call_id(ids, i), "type": "function",
                           "function": {"name": name, "arguments": arguments}})
                })
                .collect();
            (
                json!({"role": "assistant", "content": null, "refusal": null, "tool_calls": calls}),
                "tool_calls",
            )
        }
        Answer::Text(text) => (json!({"role": "assistant", "content": text, "refusal": null}), "stop"),
        Answer::Error { .. } => (json!({"role": "assistant", "content": ""}), "stop"),
    };
    json!({
        "id": format!("chatcmpl-{}", ids.call),
        "object": "chat.completion",
        "created": ids.created,
        "model": ids.model,
        "system_fingerprint": "fp_scripted",
        "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish}],
        "usage": chat_usage(tokens),
    })
}

/// The `data:` payloads of a streamed chat completion, `[DONE]` last.
pub(crate) fn chat_chunks(
    ids: &Ids<'_>,
    answer: &Answer,
    tokens: Tokens,
    include_usage: bool,
) -> Vec<String> {
    let chunk = |delta: Value, finish: Option<&str>| {
        json!({
            "id": format!("chatcmpl-{}", ids.call),
            "object": "chat.completion.chunk",
            "created": ids.created,
            "model": ids.model,
            "system_fingerprint": "fp_scripted",
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
        })
    };
    let mut out = vec![];
    let finish = match answer {
        Answer::ToolCalls(calls) => {
            out.push(chunk(json!({"role": "assistant", "content": null}), None));
            for (i, (name, arguments)) in calls.iter().enumerate() {
                let call = json!({"index": i, "id": call_id(ids, i), "type": "function",
                                  "function": {"name": name, "arguments": ""}});
                out.push(chunk(json!({"tool_calls": [call]}), None));
                for piece in token_pieces(arguments) {
                    out.push(chunk(
                        json!({"tool_calls": [{"index": i, "function": {"arguments": piece}}]}),
                        None,
                    ));
                }
            }
            "tool_calls"
        }
        Answer::Text(text) => {
            out.push(chunk(json!({"role": "assistant", "content": ""}), None));
            out.extend(token_pieces(text).into_iter().map(|p| chunk(json!({"content": p}), None)));
            "stop"
        }
        Answer::Error { .. } => "stop",
    };
    out.push(chunk(json!({}), Some(finish)));
    if include_usage {
        let mut last = chunk(json!({}), None);
        last["choices"] = json!([]);
        last["usage"] = chat_usage(tokens);
        out.push(last);
    }
    let mut data: Vec<String> = out.iter().map(Value::to_string).collect();
    data.push("[DONE]".into());
    data
}

/// The output items of a Response: one message, or one item per function call, complete or
/// still empty.
fn output_items(ids: &Ids<'_>, answer: &Answer, done: bool) -> Vec<Value> {
    let status = if done { "completed" } else { "in_progress" };
    match answer {
        Answer::Text(text) => vec![json!({
            "type": "message", "id": format!("msg_{}", ids.call), "role": "assistant", "status": status,
            "content": if done { vec![output_text(text)] } else { vec![] },
        })],
        Answer::ToolCalls(calls) => calls
            .iter()
            .enumerate()
            .map(|(i, (name, arguments))| {
                json!({
                    "type": "function_call", "id": format!("fc_{}_{i}", ids.call), "call_id": call_id(ids, i),
                    "name": name, "arguments": if done { arguments.as_str() } else { "" }, "status": status,
                })
            })
            .collect(),
        Answer::Error { .. } => vec![],
    }
}

fn output_text(text: &str) -> Value {
    json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []})
}

/// A Response object; `answer` is `None` while in progress.
pub(crate) fn response(ids: &Ids<'_>, request: &Value, answer: Option<&Answer>, tokens: Tokens) -> Value {
    let echo =
        |key: &str, default: Value| request.get(key).filter(|v| !v.is_null()).cloned().unwrap_or(default);
    json!({
        "id": format!("resp_{}", ids.call),
        "object": "response",
        "created_at": ids.created,
        "model": ids.model,
        "status": if answer.is_some() { "completed" } else { "in_progress" },
        "error": null,
        "incomplete_details": null,
        "instructions": echo("instructions", Value::Null),
        "metadata": echo("metadata", json!({})),
        "output": answer.map_or_else(Vec::new, |a| output_items(ids, a, true)),
        "parallel_tool_calls": echo("parallel_tool_calls", json!(true)),
        "tool_choice": echo("tool_choice", json!("auto")),
        "tools": echo("tools", json!([])),
        "temperature": echo("temperature", Value::Null),
        "top_p": echo("top_p", Value::Null),
        "max_output_tokens": echo("max_output_tokens", Value::Null),
        "text": echo("text", json!({"format": {"type": "text"}})),
        "usage": answer.map(|_| responses_usage(tokens)),
    })
}

/// The named events of a streamed Response, as `(event type, data)`.
pub(crate) fn response_events(
    ids: &Ids<'_>,
    request: &Value,
    answer: &Answer,
    tokens: Tokens,
) -> Vec<(&'static str, String)> {
    let mut events: Vec<(&'static str, Value)> = vec![
        ("response.created", json!({"response": response(ids, request, None, tokens)})),
        ("response.in_progress", json!({"response": response(ids, request, None, tokens)})),
    ];
    let (started, done) = (output_items(ids, answer, false), output_items(ids, answer, true));
    for (index, (item, finished)) in started.into_iter().zip(done).enumerate() {
        events.push(("response.output_item.added", json!({"output_index": index, "item": item})));
        item_events(&mut events, answer, index, &finished);
        events.push(("response.output_item.done", json!({"output_index": index, "item": finished})));
    }
    events.push(("response.completed", json!({"response": response(ids, request, Some(answer), tokens)})));
    events
        .into_iter()
        .enumerate()
        .map(|(n, (kind, mut data))| {
            data["type"] = json!(kind);
            data["sequence_number"] = json!(n);
            (kind, data.to_string())
        })
        .collect()
}

/// The delta events of output item `index`, whose finished form is `item`.
fn item_events(events: &mut Vec<(&'static str, Value)>, answer: &Answer, index: usize, item: &Value) {
    let item_id = item["id"].clone();
    match answer {
        Answer::Text(text) => {
            let at = |mut v: Value| {
                v["item_id"] = item_id.clone();
                v["output_index"] = json!(index);
                v["content_index"] = json!(0);
                v
            };
            events.push(("response.content_part.added", at(json!({"part": output_text("")}))));
            for piece in token_pieces(text) {
                events.push(("response.output_text.delta", at(json!({"delta": piece, "logprobs": []}))));
            }
            events.push(("response.output_text.done", at(json!({"text": text, "logprobs": []}))));
            events.push(("response.content_part.done", at(json!({"part": output_text(text)}))));
        }
        Answer::ToolCalls(_) => {
            let arguments = item["arguments"].as_str().unwrap_or_default();
            for piece in token_pieces(arguments) {
                events.push((
                    "response.function_call_arguments.delta",
                    json!({"item_id": item_id, "output_index": index, "delta": piece}),
                ));
            }
            events.push((
                "response.function_call_arguments.done",
                json!({"item_id": item_id, "output_index": index, "arguments": arguments}),
            ));
        }
        Answer::Error { .. } => {}
    }
}

/// An OpenAI error object.
pub(crate) fn error(status: u16, message: &str) -> Value {
    let kind = match status {
        401 => "authentication_error",
        429 => "rate_limit_exceeded",
        400..=499 => "invalid_request_error",
        _ => "server_error",
    };
    json!({"error": {"message": message, "type": kind, "param": null, "code": kind}})
}
