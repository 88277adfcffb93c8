//! OpenAI chat completions (`POST /v1/chat/completions`) and the model list.

use crate::input::{self, Object, Options};
use crate::params::{self, Api, Params};
use crate::run::{self, Decided, Outcome};
use crate::{ApiError, AppState, unix_secs};
use axum::Json;
use axum::body::Body;
use axum::extract::{ConnectInfo, Extension, Path, State};
use axum::http::{HeaderMap, header};
use axum::response::sse::Event;
use axum::response::{IntoResponse, Response};
use futures::future::BoxFuture;
use serde::Serialize;
use serde_json::{Value, json};
use std::net::SocketAddr;
use switchboard_core::{Error, RequestId, RunContext};
use switchboard_runtime::{RunRequest, RunStatus, Usage};

/// What every run endpoint does before running: identify the caller, then read and validate the
/// body (so nothing is buffered for an anonymous client), check the model, build the context.
pub(crate) struct Accepted {
    pub ctx: RunContext,
    pub request: RunRequest,
    pub options: Options,
    pub body: Object,
    /// The accepted OpenAI parameters (sampling, tools…), for echoing.
    pub params: Params,
}

/// Authenticates, reads the body, and parses it with `parse`; the OpenAI parameters are read as
/// `api` names them, and refused (400) when they cannot be honoured.
pub(crate) async fn accept(
    state: &AppState,
    peer: SocketAddr,
    request_id: &RequestId,
    headers: &HeaderMap,
    body: Body,
    api: Api,
    parse: impl FnOnce(&Object) -> Result<RunRequest, ApiError>,
) -> Result<Accepted, ApiError> {
    let caller = state.auth.authenticate(headers, peer).await?;
    crate::payload_log::note_caller(&caller);
    let body = input::read_json(headers, body, state.body_limit()).await?;
    let options = Options::parse(&body)?;
    check_model(state, options.model.as_deref())?;
    let params = params::parse(&body, api, state.runtime.config.config.llm.is_some())?;
    let mut request = parse(&body)?;
    request.format.clone_from(&params.format);
    let ctx = run::context(state, caller, request_id, headers);
    Ok(Accepted { ctx, request, options, body, params })
}

/// The longest client-supplied name echoed in an error message; the rest is cut, so a huge name
/// cannot make a huge error.
const MAX_ECHOED_NAME: usize = 64;

/// `name` cut to [`MAX_ECHOED_NAME`] characters, with `…` when cut.
pub(crate) fn truncated(name: &str) -> String {
    match name.char_indices().nth(MAX_ECHOED_NAME) {
        Some((at, _)) => format!("{}…", &name[..at]),
        None => name.to_string(),
    }
}

/// A named model must be the served supervisor.
fn check_model(state: &AppState, model: Option<&str>) -> Result<(), ApiError> {
    let served = state.runtime.supervisor.name();
    match model {
        Some(m) if m != served => Err(ApiError::new(Error::not_found(format!(
            "the model `{}` does not exist; this server serves `{served}`",
            truncated(m)
        )))
        .with_param("model")
        .with_code("model_not_found")),
        _ => Ok(()),
    }
}

/// Switchboard's own fields on an answer: what to quote when asking about it.
#[derive(Serialize)]
pub(crate) struct CustomOutputs<'a> {
    request_id: &'a str,
    trace_id: &'a str,
    status: RunStatus,
    agents: &'a [String],
    thread_id: Option<&'a str>,
    citations: Vec<Citation<'a>>,
}

/// The custom outputs of `outcome`.
pub(crate) fn custom_outputs<'a>(outcome: &'a Outcome, options: &'a Options) -> CustomOutputs<'a> {
    let r = &outcome.response;
    CustomOutputs {
        request_id: &r.request_id,
        trace_id: &r.trace_id,
        status: r.status,
        agents: &r.agents,
        thread_id: options.thread.as_deref(),
        citations: citations(r),
    }
}

/// A passage an answer cites, as [`citations`] lists it.
#[derive(Serialize)]
pub(crate) struct Citation<'a> {
    /// The agent whose answer cites it.
    pub agent: &'a str,
    /// Its `[n]` marker in that answer.
    pub n: usize,
    /// The document's id.
    pub id: &'a str,
    /// The document's title.
    pub title: &'a str,
}

/// The passages the answer cites, numbered per agent as its `[n]` markers are, so a client can
/// link each marker to its source. Document and section only: a snippet's text is not passed
/// through the guardrails that checked the answer, so it stays out.
pub(crate) fn citations(r: &switchboard_runtime::RunResponse) -> Vec<Citation<'_>> {
    let cited = r.steps.iter().filter_map(|s| s.output.as_ref().map(|o| (s, o)));
    cited
        .flat_map(|(step, output)| {
            output.citations.iter().enumerate().map(move |(i, c)| Citation {
                agent: &step.agent,
                n: i + 1,
                id: &c.id,
                title: &c.title,
            })
        })
        .collect()
}

/// `POST /v1/chat/completions`.
pub(crate) async fn completions(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Extension(request_id): Extension<RequestId>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let accepted = accept(&state, peer, &request_id, &headers, body, Api::Chat, input::chat_messages).await?;
    let include_usage = input::opt_bool(&accepted.body, "stream_options.include_usage")?;
    let Accepted { ctx, request, options, .. } = accepted;
    let structured = request.format.is_some();
    let ids = Ids {
        id: format!("chatcmpl-{request_id}"),
        created: unix_secs(),
        model: state.runtime.supervisor.name().to_string(),
    };
    // Settled before any byte is sent, streamed or not: see `Run::decide`. A streamed answer
    // that an LLM writes is sent as it is written, once the run has succeeded.
    let run = run::start(&state, ctx, request, &options);
    let outcome = if options.stream {
        match run.decide_stream(state.retry_after()).await? {
            Decided::Whole(outcome) => outcome,
            Decided::Live(live) => {
                let head = vec![ids.chunk(json!({"role": "assistant", "content": ""}), None)];
                let tail =
                    move |ids: Ids, outcome: Result<Outcome, ApiError>| -> BoxFuture<'static, Vec<Event>> {
                        Box::pin(async move {
                            match outcome {
                                Ok(outcome) => ids.closing(&outcome, &options, include_usage),
                                // The status line is sent: the failure is an error object in the
                                // stream, as OpenAI reports one mid-stream.
                                Err(e) => vec![
                                    Event::default().data(e.body().to_string()),
                                    Event::default().data("[DONE]"),
                                ],
                            }
                        })
                    };
                let delta = |ids: &mut Ids, text: &str| ids.chunk(json!({"content": text}), None);
                return Ok(run::live_sse(head, live, ids, state.retry_after(), delta, tail));
            }
        }
    } else {
        run.decide(state.retry_after()).await?
    };
    // Asked for JSON but answered with a clarifying question: that is OpenAI's refusal, which the
    // client's `.parse()` reports as such instead of failing to parse prose.
    let refused = structured && outcome.response.status == RunStatus::Clarify;
    let field = if refused { "refusal" } else { "content" };
    if !options.stream {
        let answer = Some(outcome.response.answer.as_str());
        let body = Completion {
            id: &ids.id,
            object: "chat.completion",
            created: ids.created,
            model: &ids.model,
            choices: [Choice {
                index: 0,
                message: AssistantMessage {
                    role: "assistant",
                    content: if refused { None } else { answer },
                    refusal: if refused { answer } else { None },
                },
                logprobs: None,
                finish_reason: "stop",
            }],
            usage: usage(&outcome.response.usage),
            custom_outputs: custom_outputs(&outcome, &options),
            databricks_output: outcome.trace.as_ref().map(|trace| DatabricksOutput { trace }),
        };
        return Ok(json_answer(&body));
    }

    let mut events = vec![ids.chunk(json!({"role": "assistant", "content": ""}), None)];
    events.extend(outcome.deltas.iter().map(|text| ids.chunk(json!({field: text}), None)));
    events.extend(ids.closing(&outcome, &options, include_usage));
    Ok(run::sse(events))
}

/// Token usage, with the detail objects OpenAI sends: the sum over the run's LLM calls (routing,
/// synthesis, sub-agents' model calls, structured-output formatting) as the LLM reported them.
/// A run that used no LLM (a lexical route to local agents) reports zeros.
fn usage(u: &Usage) -> UsageBody {
    UsageBody {
        prompt_tokens: u.prompt_tokens,
        completion_tokens: u.completion_tokens,
        total_tokens: u.total(),
        prompt_tokens_details: PromptDetails { cached_tokens: u.cached_tokens, audio_tokens: 0 },
        completion_tokens_details: CompletionDetails {
            reasoning_tokens: u.reasoning_tokens,
            audio_tokens: 0,
            accepted_prediction_tokens: 0,
            rejected_prediction_tokens: 0,
        },
    }
}

/// `chat.completion`, OpenAI's shape plus `custom_outputs` (and `databricks_output` when the
/// trace is asked for). Serialized straight from the outcome: built as a `Value`, every key and
/// string was first copied into a map, about 40 allocations a run.
#[derive(Serialize)]
struct Completion<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: [Choice<'a>; 1],
    usage: UsageBody,
    custom_outputs: CustomOutputs<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    databricks_output: Option<DatabricksOutput<'a>>,
}

#[derive(Serialize)]
struct Choice<'a> {
    index: u32,
    message: AssistantMessage<'a>,
    logprobs: Option<()>,
    finish_reason: &'static str,
}

/// The answer, as `content` or, for a clarifying question asked when JSON was asked for, as
/// `refusal`; the other is `null`.
#[derive(Serialize)]
struct AssistantMessage<'a> {
    role: &'static str,
    content: Option<&'a str>,
    refusal: Option<&'a str>,
}

#[derive(Serialize)]
struct DatabricksOutput<'a> {
    trace: &'a Value,
}

#[derive(Serialize)]
struct UsageBody {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
    prompt_tokens_details: PromptDetails,
    completion_tokens_details: CompletionDetails,
}

#[derive(Serialize)]
struct PromptDetails {
    cached_tokens: u64,
    audio_tokens: u64,
}

#[derive(Serialize)]
struct CompletionDetails {
    reasoning_tokens: u64,
    audio_tokens: u64,
    accepted_prediction_tokens: u64,
    rejected_prediction_tokens: u64,
}

/// The identity shared by every chunk of one completion.
struct Ids {
    id: String,
    created: u64,
    model: String,
}

impl Ids {
    fn chunk_value(&self, delta: Value, finish_reason: Option<&str>) -> Value {
        json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": null,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish_reason}],
        })
    }

    fn chunk(&self, delta: Value, finish_reason: Option<&str>) -> Event {
        Event::default().data(self.chunk_value(delta, finish_reason).to_string())
    }

    /// The events after the answer's pieces: the finish chunk (with the custom outputs and any
    /// trace), the usage chunk when asked for, and `[DONE]`.
    fn closing(&self, outcome: &Outcome, options: &Options, include_usage: bool) -> Vec<Event> {
        let mut last = self.chunk_value(json!({}), Some("stop"));
        last["custom_outputs"] = json!(custom_outputs(outcome, options));
        if let Some(trace) = &outcome.trace {
            last["databricks_output"] = json!({"trace": trace});
        }
        let mut events = vec![Event::default().data(last.to_string())];
        if include_usage {
            let mut usage_chunk = self.chunk_value(json!({}), None);
            usage_chunk["choices"] = json!([]);
            usage_chunk["usage"] = json!(usage(&outcome.response.usage));
            events.push(Event::default().data(usage_chunk.to_string()));
        }
        events.push(Event::default().data("[DONE]"));
        events
    }
}

/// The served supervisor as an OpenAI model object.
fn model_object(state: &AppState) -> Value {
    json!({
        "id": state.runtime.supervisor.name(),
        "object": "model",
        "created": state.started,
        "owned_by": "switchboard",
    })
}

/// `GET /v1/models`.
pub(crate) async fn models(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    state.auth.authenticate(&headers, peer).await?;
    Ok(Json(json!({"object": "list", "data": [model_object(&state)]})))
}

/// `GET /v1/models/{model}`.
pub(crate) async fn model(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(model): Path<String>,
) -> Result<Json<Value>, ApiError> {
    state.auth.authenticate(&headers, peer).await?;
    check_model(&state, Some(&model))?;
    Ok(Json(model_object(&state)))
}

/// A run's answer as a JSON response. Written into room for a typical answer's body (1–2 kB)
/// rather than `Json`'s 128 bytes doubled four or five times, a copy each time.
pub(crate) fn json_answer(body: &impl Serialize) -> Response {
    let mut bytes = Vec::with_capacity(2048);
    match switchboard_core::write_json(&mut bytes, body) {
        Ok(()) => ([(header::CONTENT_TYPE, "application/json")], bytes).into_response(),
        // An answer always serializes (string keys only); `Json` answers the impossible failure
        // as usual.
        Err(_) => Json(body).into_response(),
    }
}
