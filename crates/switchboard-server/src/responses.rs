//! OpenAI Responses (`POST /v1/responses`) and the MLflow ResponsesAgent / Databricks model
//! serving shape (`POST /invocations`): the same request (`input`, `custom_inputs`, `context`,
//! `databricks_options`) and the same Response object, plus `custom_outputs` and, on request,
//! `databricks_output.trace`.
//!
//! Streaming follows OpenAI's event sequence, which both the `openai` client's raw stream and its
//! `responses.stream()` accumulator accept, and which contains what MLflow's ResponsesAgent
//! streams (`response.output_text.delta`, `response.output_item.done`): `response.created`,
//! `response.in_progress`, `response.output_item.added`, `response.content_part.added`,
//! `response.output_text.delta`…, `response.output_text.done`, `response.content_part.done`,
//! `response.output_item.done`, `response.completed`. A run that is denied, rate limited or fails
//! is answered with its HTTP error instead, before the stream starts (see `Run::decide`).

use crate::chat::{Accepted, accept, custom_outputs};
use crate::input::{self, Options};
use crate::params::Api;
use crate::run::{self, Decided, Outcome};
use crate::stored;
use crate::{ApiError, AppState, unix_secs};
use axum::body::Body;
use axum::extract::{ConnectInfo, Extension, Path, State};
use axum::http::HeaderMap;
use axum::response::sse::Event;
use axum::response::{IntoResponse, Response};
use futures::future::BoxFuture;
use serde_json::{Value, json};
use std::net::SocketAddr;
use switchboard_core::{Error, RequestId};
use switchboard_runtime::RunStatus;

/// `POST /v1/responses`.
pub(crate) async fn create(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Extension(request_id): Extension<RequestId>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let parse = |body: &input::Object| input::responses_input(body, "input");
    let accepted = accept(&state, peer, &request_id, &headers, body, Api::Responses, parse).await?;
    respond(state, request_id, accepted, true, Framing::Named).await
}

/// `POST /invocations`: a ResponsesAgent request. Requests in the older chat shape (`messages`
/// instead of `input`) are accepted too, since model-serving clients still send them.
pub(crate) async fn invocations(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Extension(request_id): Extension<RequestId>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    invoke(state, peer, request_id, headers, body, None).await
}

/// `POST /serving-endpoints/{name}/invocations`: `/invocations` at the path a Databricks serving
/// endpoint has, which is where `mlflow.deployments.get_deploy_client("databricks")` and the
/// Databricks SDK send a query. `name` is the served model; any other is 404 like an unknown model.
/// Errors also carry Databricks' `error_code` (see [`with_databricks_code`]).
pub(crate) async fn serving_endpoint(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Extension(request_id): Extension<RequestId>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    invoke(state, peer, request_id, headers, body, Some(name)).await.unwrap_or_else(with_databricks_code)
}

/// `error` with Databricks' REST `error_code` beside OpenAI's error object. The Databricks SDK
/// (under `mlflow.deployments`) takes the status it reports from that code alone, so without it a
/// 404 or 429 reaches the caller as a 500.
fn with_databricks_code(error: ApiError) -> Response {
    let status = error.status();
    let code = match status.as_u16() {
        400 => "INVALID_PARAMETER_VALUE",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "RESOURCE_DOES_NOT_EXIST",
        429 => "REQUEST_LIMIT_EXCEEDED",
        503 => "TEMPORARILY_UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        _ if status.is_client_error() => "BAD_REQUEST",
        _ => "INTERNAL_ERROR",
    };
    let mut body = error.body();
    body["message"] = body["error"]["message"].clone();
    body["error_code"] = json!(code);
    let mut response = error.into_response();
    *response.body_mut() = Body::from(body.to_string());
    response
}

/// An `/invocations` request, at `/serving-endpoints/{endpoint}/invocations` when `endpoint` is
/// given.
async fn invoke(
    state: AppState,
    peer: SocketAddr,
    request_id: RequestId,
    headers: HeaderMap,
    body: Body,
    endpoint: Option<String>,
) -> Result<Response, ApiError> {
    let served = state.runtime.supervisor.name().to_string();
    let parse = |body: &input::Object| {
        // Checked here, after authentication, so the endpoint name cannot be probed anonymously.
        if let Some(name) = endpoint.as_deref().filter(|n| *n != served) {
            return Err(ApiError::new(Error::not_found(format!(
                "the serving endpoint `{}` does not exist; this server serves `{served}`",
                crate::chat::truncated(name)
            )))
            .with_code("model_not_found"));
        }
        if body.get("input").is_none() && body.get("messages").is_some() {
            input::chat_messages(body)
        } else {
            input::responses_input(body, "input")
        }
    };
    let accepted = accept(&state, peer, &request_id, &headers, body, Api::Responses, parse).await?;
    // The Databricks deployment client's `predict_stream` rejects any SSE line but `data:`, as a
    // serving endpoint sends them; the event type is in each payload anyway.
    let framing = if endpoint.is_some() { Framing::DataOnly } else { Framing::Named };
    respond(state, request_id, accepted, false, framing).await
}

/// How stream events are framed.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// An `event:` line with the type, then `data:`, as OpenAI's API sends them.
    Named,
    /// `data:` lines only, as a Databricks serving endpoint sends them.
    DataOnly,
}

/// Answers a Responses request; `store_by_default` is `store`'s default (see `stored::prepare`).
async fn respond(
    state: AppState,
    request_id: RequestId,
    accepted: Accepted,
    store_by_default: bool,
    framing: Framing,
) -> Result<Response, ApiError> {
    let Accepted { ctx, mut request, options, mut params, body } = accepted;
    let mut storage = stored::prepare(&state, &ctx, &body, &mut request, store_by_default).await?;
    request.instructions = instructions(body.get("instructions"), request.instructions.take());
    params.echo.append(&mut storage.echo);
    let run_ctx = ctx.clone();
    let state_retry_after = state.retry_after();
    let structured = request.format.is_some();
    let mut shape = Shape {
        id: format!("resp_{request_id}"),
        item_id: format!("msg_{request_id}"),
        created_at: unix_secs(),
        model: state.runtime.supervisor.name().to_string(),
        echo: params.echo,
        refusal: false,
    };
    // Settled before any byte is sent, streamed or not: see `Run::decide`. A streamed answer
    // that an LLM writes is sent as it is written, once the run has succeeded; it is never a
    // refusal (that needs structured output, which is formatted whole).
    let run = run::start(&state, ctx, request, &options);
    let outcome = if options.stream {
        match run.decide_stream(state.retry_after()).await? {
            Decided::Whole(outcome) => outcome,
            Decided::Live(live) => {
                let mut seq = Sequence { next: 0, framing };
                let head = shape.opening(&mut seq);
                let tail = move |(mut seq, shape): (Sequence, Shape),
                                 outcome: Result<Outcome, ApiError>|
                      -> BoxFuture<'static, Vec<Event>> {
                    Box::pin(async move {
                        match outcome {
                            Ok(outcome) => {
                                let stored_body = shape.completed(&outcome, &options);
                                storage
                                    .save(&state, &run_ctx, &shape.id, &outcome.response, stored_body)
                                    .await;
                                shape.closing(&mut seq, &outcome, &options)
                            }
                            // The status line is sent: the failure is an `error` event, as
                            // OpenAI reports one mid-stream.
                            Err(e) => {
                                let body = e.body();
                                let error = &body["error"];
                                let fields = json!({"code": error["code"], "message": error["message"], "param": error["param"]});
                                vec![seq.event("error", fields)]
                            }
                        }
                    })
                };
                let delta = |(seq, shape): &mut (Sequence, Shape), text: &str| shape.delta(seq, text);
                return Ok(run::live_sse(head, live, (seq, shape), state_retry_after, delta, tail));
            }
        }
    } else {
        run.decide(state_retry_after).await?
    };
    // Asked for JSON but answered with a clarifying question: a refusal part, as OpenAI sends
    // when a model declines a schema, so `.parse()` reports it instead of failing on prose.
    shape.refusal = structured && outcome.response.status == RunStatus::Clarify;
    let stored_body = shape.completed(&outcome, &options);
    storage.save(&state, &run_ctx, &shape.id, &outcome.response, stored_body).await;
    if !options.stream {
        let mut body = shape.completed(&outcome, &options);
        if let Some(trace) = &outcome.trace {
            body["databricks_output"] = json!({"trace": trace});
        }
        return Ok(crate::chat::json_answer(&body));
    }

    let mut seq = Sequence { next: 0, framing };
    let mut events = shape.opening(&mut seq);
    for delta in &outcome.deltas {
        events.push(shape.delta(&mut seq, delta));
    }
    events.extend(shape.closing(&mut seq, &outcome, &options));
    Ok(run::sse(events))
}

/// The caller's instructions for the LLM: Responses `instructions` (a string, or messages whose
/// text is taken), then any system or developer messages in `input`.
fn instructions(field: Option<&Value>, from_input: Option<String>) -> Option<String> {
    let field = match field {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Array(items)) => {
            let texts: Vec<String> = items
                .iter()
                .filter_map(|m| match m.get("content") {
                    Some(Value::String(s)) => Some(s.clone()),
                    Some(Value::Array(parts)) => Some(
                        parts
                            .iter()
                            .filter_map(|p| p.get("text").and_then(Value::as_str))
                            .collect::<Vec<_>>()
                            .join("\n"),
                    ),
                    _ => None,
                })
                .collect();
            Some(texts.join("\n"))
        }
        _ => None,
    };
    let joined: Vec<String> = field.into_iter().chain(from_input).filter(|t| !t.trim().is_empty()).collect();
    (!joined.is_empty()).then(|| joined.join("\n"))
}

fn output_text(text: &str) -> Value {
    json!({"type": "output_text", "text": text, "annotations": []})
}

/// Numbers the events of one stream.
struct Sequence {
    next: u64,
    framing: Framing,
}

impl Sequence {
    /// An SSE event whose data is `fields` plus `type` and `sequence_number`.
    fn event(&mut self, kind: &str, mut fields: Value) -> Event {
        fields["type"] = json!(kind);
        fields["sequence_number"] = json!(self.next);
        self.next += 1;
        let event = Event::default().data(fields.to_string());
        match self.framing {
            Framing::Named => event.event(kind),
            Framing::DataOnly => event,
        }
    }
}

/// The ids and metadata shared by every event of one response.
struct Shape {
    id: String,
    item_id: String,
    created_at: u64,
    model: String,
    /// The request's parameters that a Response echoes (`temperature`, `tools`…).
    echo: serde_json::Map<String, Value>,
    /// The answer is a refusal part rather than output text (see `respond`).
    refusal: bool,
}

impl Shape {
    /// The events before the answer's pieces: the response created and in progress, its message
    /// and content part added.
    fn opening(&self, seq: &mut Sequence) -> Vec<Event> {
        vec![
            seq.event("response.created", json!({"response": self.response("in_progress", vec![])})),
            seq.event("response.in_progress", json!({"response": self.response("in_progress", vec![])})),
            seq.event(
                "response.output_item.added",
                json!({"output_index": 0, "item": self.message("in_progress", None)}),
            ),
            seq.event("response.content_part.added", self.at(json!({"part": self.part("")}))),
        ]
    }

    /// One piece of the answer: an output text delta, or a refusal delta.
    fn delta(&self, seq: &mut Sequence, text: &str) -> Event {
        let mut fields = json!({"delta": text});
        if self.refusal {
            return seq.event("response.refusal.delta", self.at(fields));
        }
        fields["logprobs"] = json!([]);
        seq.event("response.output_text.delta", self.at(fields))
    }

    /// The events after the answer's pieces: text, part and message done, then the completed
    /// response (with any trace).
    fn closing(&self, seq: &mut Sequence, outcome: &Outcome, options: &Options) -> Vec<Event> {
        let answer = &outcome.response.answer;
        let (done_event, done_field) = if self.refusal {
            ("response.refusal.done", "refusal")
        } else {
            ("response.output_text.done", "text")
        };
        let mut done = json!({done_field: answer});
        if !self.refusal {
            done["logprobs"] = json!([]);
        }
        let mut events = vec![
            seq.event(done_event, self.at(done)),
            seq.event("response.content_part.done", self.at(json!({"part": self.part(answer)}))),
            seq.event(
                "response.output_item.done",
                json!({"output_index": 0, "item": self.message("completed", Some(answer))}),
            ),
        ];
        let mut completed = json!({"response": self.completed(outcome, options)});
        if let Some(trace) = &outcome.trace {
            // MLflow's streaming clients look for the trace on the final event itself.
            completed["databricks_output"] = json!({"trace": trace});
        }
        events.push(seq.event("response.completed", completed));
        events
    }

    /// `extra` with the answer's item, output and content indices.
    fn at(&self, extra: Value) -> Value {
        let mut v = json!({"item_id": self.item_id, "output_index": 0, "content_index": 0});
        if let (Value::Object(v), Value::Object(extra)) = (&mut v, extra) {
            v.extend(extra);
        }
        v
    }

    /// The answer as an output message.
    fn message(&self, status: &str, text: Option<&str>) -> Value {
        json!({
            "type": "message",
            "id": self.item_id,
            "role": "assistant",
            "status": status,
            "content": text.map_or_else(Vec::new, |t| vec![self.part(t)]),
        })
    }

    /// The answer's content part: output text, or a refusal.
    fn part(&self, text: &str) -> Value {
        if self.refusal { json!({"type": "refusal", "refusal": text}) } else { output_text(text) }
    }

    /// A Response object with every field the `openai` client requires.
    fn response(&self, status: &str, output: Vec<Value>) -> Value {
        let mut response = json!({
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "model": self.model,
            "status": status,
            "error": null,
            "incomplete_details": null,
            "instructions": null,
            "metadata": {},
            "output": output,
            "parallel_tool_calls": false,
            "tool_choice": "auto",
            "tools": [],
            "temperature": null,
            "top_p": null,
            "max_output_tokens": null,
            "usage": null,
        });
        if let Value::Object(fields) = &mut response {
            fields.extend(self.echo.clone());
        }
        response
    }

    /// The completed Response for `outcome`.
    fn completed(&self, outcome: &Outcome, options: &Options) -> Value {
        let mut response =
            self.response("completed", vec![self.message("completed", Some(&outcome.response.answer))]);
        response["completed_at"] = json!(unix_secs());
        // The run's LLM calls summed, as in chat completions; zeros when no LLM ran.
        let u = &outcome.response.usage;
        response["usage"] = json!({
            "input_tokens": u.prompt_tokens,
            "input_tokens_details": {"cached_tokens": u.cached_tokens, "cache_write_tokens": 0},
            "output_tokens": u.completion_tokens,
            "output_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
            "total_tokens": u.total(),
        });
        response["custom_outputs"] = json!(custom_outputs(outcome, options));
        response
    }
}
