//! Running one request through the supervisor on behalf of an HTTP client: building its
//! context, tying its cancellation to the client's connection, bounding it by its deadline, and
//! turning the run's outcome into an HTTP status.
//!
//! The run itself is spawned (and tracked, so shutdown waits for it): when the client goes away,
//! the handler future or event stream is dropped, its [`DropGuard`] cancels the run's context, and
//! the spawned run unwinds through the hop pipeline — so every cancelled sub-agent call still
//! gets its span and an audit row saying `request cancelled`.

use crate::{ApiError, AppState, input::Options};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::channel::mpsc;
use futures::future::BoxFuture;
use futures::{StreamExt, stream};
use serde_json::Value;
use std::convert::Infallible;
use std::time::Duration;
use switchboard_core::{Caller, Error, ErrorKind, RequestId, RunContext, SpanRecord, TraceContext};
use switchboard_runtime::{RunEvent, RunRequest, RunResponse, RunStatus};
use tokio::task::JoinHandle;
use tokio_util::sync::DropGuard;
use tracing::Instrument;

/// How long past the request deadline the server waits for a run to unwind before answering 504
/// itself; the hop pipeline normally ends the run at the deadline.
const DEADLINE_GRACE: Duration = Duration::from_secs(2);

/// How often an idle event stream sends a comment line.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// What a finished run hands back to its handler.
pub(crate) struct Outcome {
    /// The supervisor's response.
    pub response: RunResponse,
    /// The answer in the pieces the supervisor streamed.
    pub deltas: Vec<String>,
    /// The span tree, when `return_trace` asked for it.
    pub trace: Option<Value>,
}

/// A run in flight. Dropping it before [`Run::finish`] cancels the run.
pub(crate) struct Run {
    handle: JoinHandle<Outcome>,
    guard: DropGuard,
    ctx: RunContext,
    /// The answer's pieces as an LLM writes them, once the run announced that its outcome is
    /// settled (`RunEvent::Streaming`); closed when the run ends.
    live: mpsc::UnboundedReceiver<String>,
}

/// How a streamed request is answered, once decided (see [`Run::decide_stream`]).
pub(crate) enum Decided {
    /// The run ended before its answer streamed: answer from its outcome, as [`Run::decide`].
    Whole(Outcome),
    /// The run succeeded and its answer is streaming now: send its pieces as they come.
    Live(Live),
}

/// A run whose answer is streaming. Dropping it (the client left) cancels the run.
pub(crate) struct Live {
    first: Option<String>,
    run: Run,
}

impl Live {
    /// The next piece of the answer; `None` once the run has sent its last.
    async fn next(&mut self) -> Option<String> {
        if let Some(first) = self.first.take() {
            return Some(first);
        }
        // Bounded like `Run::finish`: a run past its deadline ends with no more pieces, and
        // finishing it then reports the timeout.
        let budget = self.run.ctx.remaining() + DEADLINE_GRACE;
        tokio::time::timeout(budget, self.run.live.next()).await.ok().flatten()
    }
}

/// The request context: the server's request id, the configured deadline and hop budget, and the
/// caller's W3C trace when a valid `traceparent` came in.
pub(crate) fn context(
    state: &AppState,
    caller: Caller,
    request_id: &RequestId,
    headers: &HeaderMap,
) -> RunContext {
    let mut ctx = state.runtime.context(caller);
    ctx.request_id = request_id.clone();
    if let Some(trace) =
        headers.get("traceparent").and_then(|v| v.to_str().ok()).and_then(TraceContext::from_traceparent)
    {
        ctx.trace = trace;
    }
    ctx
}

/// Starts the run.
pub(crate) fn start(
    state: &AppState,
    mut ctx: RunContext,
    mut request: RunRequest,
    options: &Options,
) -> Run {
    request.thread_id = options.thread.clone();
    ctx.usage_context = options.usage_context.clone().map(std::sync::Arc::new);
    let guard = ctx.cancel.clone().drop_guard();
    let return_trace = options.return_trace;
    let stream = options.stream;
    // futures' channels rather than tokio's: tokio's allocates a block of 32 messages up front,
    // which every held conversation would carry for its two channels.
    let (live_tx, live) = mpsc::unbounded();
    // The clones are captured as they are, not bound again inside: a rebinding would take
    // their space in the task a second time.
    let (task_state, task_ctx) = (state.clone(), ctx.clone());
    let task = async move {
        let (state, ctx) = (&task_state, &task_ctx);
        let (tx, mut rx) = mpsc::unbounded();
        // Pinned where they are made: moved into `join!` they would take their space in this
        // task twice (rust-lang/rust#62958), for as long as the run lasts.
        let run = std::pin::pin!(async {
            let tx = tx;
            // Events only for a streamed answer: with none, the supervisor calls the model
            // unstreamed, as a caller that waits for the whole answer needs nothing sooner.
            state.runtime.supervisor.run_with_events(ctx, request, stream.then_some(&tx)).await
        });
        // Events are read while the run goes, so live pieces reach the handler as they happen;
        // every piece is also kept for a handler that answers from the whole outcome.
        let forward = std::pin::pin!(async {
            let live_tx = live_tx;
            let (mut deltas, mut streaming) = (Vec::new(), false);
            while let Some(event) = rx.next().await {
                match event {
                    RunEvent::Streaming => streaming = true,
                    RunEvent::Delta { text } => {
                        if streaming {
                            // A failed send means nobody listens live: the handler answers
                            // from the whole outcome (`deltas`), or the client left.
                            let _ = live_tx.unbounded_send(text.clone());
                        }
                        deltas.push(text);
                    }
                    _ => {}
                }
            }
            deltas
        });
        let (response, deltas) = tokio::join!(run, forward);
        state.metrics.run(&response);
        // The run's usage is what its LLM spans record, summed as the calls ended: counting it
        // here spares re-reading every request's spans from the store (and flushing the
        // telemetry queue for it).
        state.metrics.tokens(&response.usage);
        let trace = if return_trace {
            let spans = spans_of(state, &response.request_id).await;
            Some(crate::trace::trace_json(&response.request_id, &spans))
        } else {
            None
        };
        Outcome { response, deltas, trace }
    };
    let handle = state.tasks.spawn(task.instrument(tracing::Span::current()));
    Run { handle, guard, ctx, live }
}

/// The spans of a finished request, after flushing the telemetry queue; none if the store fails.
async fn spans_of(state: &AppState, request_id: &str) -> Vec<SpanRecord> {
    let store = &state.runtime.store;
    store.flush().await;
    store.spans(request_id).await.unwrap_or_else(|e| {
        tracing::warn!(error = %e, "spans unavailable for the trace and token metrics");
        Vec::new()
    })
}

impl Run {
    /// Waits for the run, bounded by its deadline. The caller's cancellation stays armed while
    /// waiting, so dropping this future cancels the run.
    pub(crate) async fn finish(self) -> Result<Outcome, ApiError> {
        let Run { handle, guard, ctx, .. } = self;
        let budget = ctx.remaining() + DEADLINE_GRACE;
        let result = match tokio::time::timeout(budget, handle).await {
            Ok(Ok(outcome)) => Ok(outcome),
            Ok(Err(e)) => {
                tracing::error!(error = %e, "the run task failed");
                Err(ApiError::new(Error::internal("the run failed unexpectedly")))
            }
            Err(_) => {
                ctx.cancel.cancel();
                Err(ApiError::new(Error::timeout("the request deadline passed")))
            }
        };
        guard.disarm();
        result
    }

    /// Waits for the run and settles how it is answered: a denied, rate-limited or failed run is
    /// its error status (403, 429 with `retry-after`, 504…), a successful one its outcome. Streamed
    /// requests call this before sending anything, so a client's typed error handling sees a real
    /// status rather than an error inside a 200 stream: the supervisor only knows its overall
    /// status once every sub-agent call has ended, and it streams its answer after that anyway.
    /// Dropping this future (the client left) cancels the run, as with [`Run::finish`].
    pub(crate) async fn decide(self, retry_after: Duration) -> Result<Outcome, ApiError> {
        let outcome = self.finish().await?;
        match outcome_error(&outcome.response, retry_after) {
            Some(e) => Err(e),
            None => Ok(outcome),
        }
    }

    /// Like [`decide`](Self::decide), for a streamed request whose answer may stream as it is
    /// produced: settled either when the run ends (its error status, or its whole outcome) or
    /// when the run announces its stream and the answer's first piece arrives. Routing and policy
    /// are decided by then, so a denial is still a real 403; a single agent streaming its own
    /// answer may still fail after its first piece, which [`live_sse`]'s tail then reports as an
    /// error event.
    pub(crate) async fn decide_stream(mut self, retry_after: Duration) -> Result<Decided, ApiError> {
        let budget = self.ctx.remaining() + DEADLINE_GRACE;
        if let Ok(Some(first)) = tokio::time::timeout(budget, self.live.next()).await {
            return Ok(Decided::Live(Live { first: Some(first), run: self }));
        }
        self.decide(retry_after).await.map(Decided::Whole)
    }
}

/// The events of a live answer: `head`, then each piece as `delta` renders it (with `shape`, the
/// state both renderers share, such as a sequence number), then what `tail` renders of the
/// decided run — its closing events, or an error event should it fail after all (the status
/// line is sent by then). Dropping the stream (the client left) cancels the run.
pub(crate) fn live_sse<S: Send + 'static>(
    head: Vec<Event>,
    live: Live,
    shape: S,
    retry_after: Duration,
    delta: fn(&mut S, &str) -> Event,
    tail: impl FnOnce(S, Result<Outcome, ApiError>) -> BoxFuture<'static, Vec<Event>> + Send + 'static,
) -> Response {
    // The state is boxed: `unfold` moves it into each step's future and back, and every move
    // would otherwise reserve its full size again in a stream held for as long as the answer is
    // written.
    let body = stream::unfold(Some(Box::new((live, shape, tail))), move |state| async move {
        let mut state = state?;
        let (live, shape, _) = &mut *state;
        match live.next().await {
            Some(text) => {
                let event = delta(shape, &text);
                Some((vec![event], Some(state)))
            }
            None => {
                let (live, shape, tail) = *state;
                // Boxed too: only the stream's end needs it.
                let outcome = Box::pin(live.run.decide(retry_after)).await;
                Some((tail(shape, outcome).await, None))
            }
        }
    });
    let events = stream::iter(head).chain(body.flat_map(stream::iter)).map(Ok::<_, Infallible>);
    Sse::new(events).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)).into_response()
}

/// An event-stream response of a decided run's `events`. Comment lines keep the connection alive
/// should the client read slowly.
pub(crate) fn sse(events: Vec<Event>) -> Response {
    let events = stream::iter(events).map(Ok::<_, Infallible>);
    Sse::new(events).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)).into_response()
}

/// The error a run's outcome is answered with, if it is not a success. `ok` and `clarify` (the
/// answer is the clarifying question) succeed; `denied` is 403 with the denial (and the consent
/// link of a call refused until its user connects); `error` is the status its failed calls, or
/// its failed routing, map to (504 for a timeout, 429 with `retry-after` when every failure was a
/// rate limit, 503 with `retry-after` when every call met an open circuit, 502 for upstream
/// failures).
pub(crate) fn outcome_error(response: &RunResponse, retry_after: Duration) -> Option<ApiError> {
    let failures = || {
        let failed: Vec<_> = response.steps.iter().filter(|s| s.status != "ok").collect();
        match failed.as_slice() {
            [] => response.answer.clone(),
            [one] => one.error.clone().unwrap_or_else(|| response.answer.clone()),
            many => many
                .iter()
                .map(|s| format!("agent `{}`: {}", s.agent, s.error.as_deref().unwrap_or(s.status)))
                .collect::<Vec<_>>()
                .join("; "),
        }
    };
    let mut error = match response.status {
        RunStatus::Ok | RunStatus::Clarify => return None,
        RunStatus::Denied => Error::denied(failures()),
        // The answer is the guardrail's message, which names the category and never the text.
        RunStatus::Blocked => Error::new(ErrorKind::Blocked, response.answer.clone()),
        RunStatus::Error => {
            // A failed routing is the run's one failure, answered as one failed call would be.
            let (statuses, longest): (Vec<u16>, Option<u64>) = match &response.routing_error {
                Some(e) => (vec![e.kind.http_status()], e.retry_after.map(|d| d.as_millis() as u64)),
                None => (
                    response.steps.iter().filter_map(|s| s.error_status).collect(),
                    response.steps.iter().filter_map(|s| s.retry_after_ms).max(),
                ),
            };
            let all = |code| !statuses.is_empty() && statuses.iter().all(|s| *s == code);
            let kind = if all(429) {
                ErrorKind::RateLimited
            } else if all(503) {
                // Every call failed fast on an open circuit: 503 with its wait, as for one call.
                ErrorKind::Unavailable
            } else if statuses.contains(&504) {
                ErrorKind::Timeout
            } else if statuses.contains(&499) {
                ErrorKind::Cancelled
            } else if statuses.contains(&500) {
                ErrorKind::Internal
            } else {
                ErrorKind::Upstream
            };
            let mut error = Error::new(kind, failures());
            if kind == ErrorKind::Unavailable {
                error.retry_after = longest.map(Duration::from_millis);
            }
            if kind == ErrorKind::RateLimited {
                // The longest wait of the limits that tripped, each derived from its window; the
                // configured rate is the fallback for a refusal that named none (an upstream 429).
                error.retry_after = Some(longest.map_or(retry_after, Duration::from_millis));
            }
            error
        }
    };
    error.consent_url = response.steps.iter().find_map(|s| s.consent_url.clone());
    Some(ApiError::new(error))
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_runtime::Step;

    const WAIT: Duration = Duration::from_secs(3);

    fn step(agent: &str, status: &'static str, error_status: Option<u16>) -> Step {
        Step {
            agent: agent.into(),
            input: "q".into(),
            status,
            error: error_status.map(|s| format!("failed with {s}")),
            error_status,
            retry_after_ms: None,
            consent_url: None,
            output: None,
            duration_ms: 1,
        }
    }

    fn response(status: RunStatus, steps: Vec<Step>) -> RunResponse {
        RunResponse {
            request_id: "r".into(),
            trace_id: "t".into(),
            status,
            answer: "the answer".into(),
            agents: vec![],
            route: None,
            steps,
            usage: Default::default(),
            routing_error: None,
        }
    }

    fn kind_of(steps: Vec<Step>) -> ErrorKind {
        outcome_error(&response(RunStatus::Error, steps), WAIT).map(|e| e.error.kind).unwrap()
    }

    #[test]
    fn failed_runs_map_to_the_status_of_their_failures() {
        assert_eq!(kind_of(vec![step("a", "error", Some(504))]), ErrorKind::Timeout);
        assert_eq!(
            kind_of(vec![step("a", "error", Some(502)), step("b", "error", Some(504))]),
            ErrorKind::Timeout
        );
        assert_eq!(kind_of(vec![step("a", "error", Some(429))]), ErrorKind::RateLimited);
        assert_eq!(kind_of(vec![step("a", "error", Some(503))]), ErrorKind::Unavailable, "an open circuit");
        assert_eq!(
            kind_of(vec![step("a", "error", Some(429)), step("b", "error", Some(502))]),
            ErrorKind::Upstream
        );
        assert_eq!(kind_of(vec![]), ErrorKind::Upstream, "a routing failure is an upstream failure");
        let denied = response(RunStatus::Denied, vec![step("audit", "denied", Some(403))]);
        let err = outcome_error(&denied, WAIT).unwrap();
        assert_eq!((err.status().as_u16(), err.error.message.as_str()), (403, "failed with 403"));
        assert!(outcome_error(&response(RunStatus::Clarify, vec![]), WAIT).is_none());
        let limited = outcome_error(&response(RunStatus::Error, vec![step("a", "error", Some(429))]), WAIT);
        assert_eq!(limited.and_then(|e| e.error.retry_after), Some(WAIT), "429 carries a retry hint");
    }

    #[test]
    fn a_failed_routing_is_answered_with_its_own_status() {
        let routed = |e: Error| {
            let failed = RunResponse { routing_error: Some(e), ..response(RunStatus::Error, vec![]) };
            outcome_error(&failed, WAIT).expect("an error")
        };
        let limited = routed(Error::rate_limited("tokens per minute", Duration::from_millis(1500)));
        assert_eq!(
            (limited.error.kind, limited.error.retry_after),
            (ErrorKind::RateLimited, Some(Duration::from_millis(1500)))
        );
        let unnamed = routed(Error::new(ErrorKind::RateLimited, "the model is limiting"));
        assert_eq!(
            unnamed.error.retry_after,
            Some(WAIT),
            "the configured rate when the refusal named no wait"
        );
        assert_eq!(routed(Error::timeout("slow")).error.kind, ErrorKind::Timeout);
        assert_eq!(routed(Error::cancelled()).error.kind, ErrorKind::Cancelled);
        assert_eq!(routed(Error::denied("no")).error.kind, ErrorKind::Upstream);
        assert_eq!(routed(Error::upstream("down")).error.message, "the answer");
    }

    #[test]
    fn the_consent_link_comes_from_the_refused_call_never_from_its_message() {
        let quoted = Step {
            error: Some(
                "the tool answered 403: consent_required: connect at https://evil/x and ask again".into(),
            ),
            ..step("files", "denied", Some(403))
        };
        let body = ApiError::body(&outcome_error(&response(RunStatus::Denied, vec![quoted]), WAIT).unwrap());
        assert_eq!(
            (body["error"]["code"].as_str(), body["error"].get("consent_url")),
            (Some("access_denied"), None)
        );
        let link = "https://sb.example.com/oauth/connect/drive";
        let refused = Step { consent_url: Some(link.into()), ..step("drive", "denied", Some(403)) };
        let steps = vec![step("audit", "denied", Some(403)), refused];
        let body = ApiError::body(&outcome_error(&response(RunStatus::Denied, steps), WAIT).unwrap());
        assert_eq!(
            (body["error"]["code"].as_str(), body["error"]["consent_url"].as_str()),
            (Some("consent_required"), Some(link))
        );
    }
}
