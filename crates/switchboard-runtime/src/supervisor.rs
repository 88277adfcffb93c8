//! The supervisor: route, fan out through the hop pipeline, join, answer.

use crate::guard::{self, RunGuards};
use crate::live::{self, LiveAnswer};
use crate::synthesis::{OutputFormat, Synthesizer};
use futures::channel::mpsc::UnboundedSender;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use serde::Serialize;
use serde_json::{Map, json};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, OnceLock};
use switchboard_core::{
    Agent, AgentInput, AgentOutput, AgentSpec, AuditDecision, AuditRecord, Caller, ErrorKind, HexId, HopKind,
    Message, OnDelta, Role, RouteDecision, RoutedCall, Router, RunContext, SpanKind, SpanRecord, SpanStatus,
    TelemetrySink, TraceContext, cap_attributes, cap_text, question_attributes, span_inputs, span_outputs,
    unix_nanos_now,
};
use switchboard_govern::guardrails::{Direction, Verdict};
use switchboard_govern::{Gateway, HopGrant, HopTarget};
use switchboard_llm::Usage;
use switchboard_router::LexicalRouter;
use switchboard_store::Store;
use tokio_util::task::AbortOnDropHandle;

/// At most this many of the latest client-sent exchanges are attributed to agents. Older turns
/// rarely matter to a follow-up, and the bound keeps a megabyte of history from costing a
/// routing pass per turn.
const MAX_ATTRIBUTED_TURNS: usize = 64;

/// What the caller asked, with the conversation so far.
#[derive(Debug, Clone, Default)]
pub struct RunRequest {
    /// The new question.
    pub question: String,
    /// Earlier turns supplied by the client, oldest first. When empty and `thread_id` is set, the
    /// stored thread is the history. Assistant turns without an `agent` are attributed to the
    /// agents their question routes to, as a stored thread would have recorded them, so
    /// follow-ups keep each sub-agent's context without a thread id.
    pub history: Vec<Message>,
    /// A conversation to continue and extend: its stored turns are loaded, and this turn is saved.
    pub thread_id: Option<String>,
    /// The caller's own instructions (system messages, Responses `instructions`), passed to the
    /// supervisor's LLM calls (synthesis, formatting) after their own prompts; never to policy.
    pub instructions: Option<String>,
    /// Structured output: the answer is formatted as JSON for this schema by the LLM and
    /// validated. Needs an `[llm]`; without one the run ends with an error saying so.
    pub format: Option<OutputFormat>,
    /// Ask this sub-agent directly instead of the router (the MCP server's per-agent tools): the
    /// route is this one call with the whole question, marked `switchboard.route.direct` on the
    /// route span. The call still goes through the hop pipeline, so policy decides it as usual.
    pub agent: Option<String>,
}

/// Progress of a run, for streaming clients. The final [`RunResponse`] is returned by the run.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RunEvent {
    /// The router's proposal.
    Routed {
        /// What it proposed.
        decision: RouteDecision,
    },
    /// A sub-agent call started.
    AgentStarted {
        /// The agent.
        agent: String,
    },
    /// A sub-agent call ended.
    AgentFinished {
        /// Its step. Boxed to keep every event small: a run's event channel allocates room for
        /// a block of events up front, and a held stream keeps that block.
        step: Box<Step>,
    },
    /// The run's answer is about to stream as it is produced: every [`Delta`](Self::Delta) that
    /// follows is live. Sent at most once, with the first piece, and only when nothing after it
    /// can change what was sent (no structured output, no output guardrail on the answer); a
    /// run without it sends its deltas once the answer is whole. The outcome is settled as a
    /// success (`ok`) by then, except when a single routed agent streams its own answer and
    /// then fails (its model's stream breaks, the deadline passes): the run then ends `error`
    /// after its pieces, and the answer says where it broke off.
    Streaming,
    /// A piece of the answer, in order; the pieces concatenate to the answer.
    Delta {
        /// Text.
        text: String,
    },
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// At least one agent answered.
    Ok,
    /// The router was not confident; the answer is a clarifying question.
    Clarify,
    /// Policy denied every agent the request needed.
    Denied,
    /// Every agent call failed.
    Error,
    /// A guardrail refused the question; the answer says which category, never the text.
    Blocked,
}

impl RunStatus {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Clarify => "clarify",
            Self::Denied => "denied",
            Self::Error => "error",
            Self::Blocked => "blocked",
        }
    }
}

/// One sub-agent call of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// The agent.
    pub agent: String,
    /// What it was asked.
    pub input: String,
    /// `ok`, `denied` or `error`.
    pub status: &'static str,
    /// Why it was denied or failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The HTTP status the failure maps to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_status: Option<u16>,
    /// For a rate-limited call: when the limit that tripped has room again, in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
    /// For a call refused until its user consents to a per-user OAuth connection: where they
    /// connect (the error's own link, never one read out of a message).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consent_url: Option<String>,
    /// Its answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<AgentOutput>,
    /// Wall time of the call.
    pub duration_ms: u64,
}

/// The outcome of a run.
#[derive(Debug, Clone, Serialize)]
pub struct RunResponse {
    /// Join key of spans and audit rows.
    pub request_id: String,
    /// W3C trace id.
    pub trace_id: String,
    /// How it ended.
    pub status: RunStatus,
    /// The answer (or the clarifying question, or the denial).
    pub answer: String,
    /// The agents that answered.
    pub agents: Vec<String>,
    /// What the router proposed.
    pub route: Option<RouteDecision>,
    /// The sub-agent calls.
    pub steps: Vec<Step>,
    /// Tokens used by the run's LLM calls (routing, synthesis, sub-agents' model calls,
    /// formatting), as the LLM reported them; zero when no LLM ran.
    pub usage: Usage,
    /// Why routing failed, when it did: the caller is answered with its status (429 and the wait
    /// when the router's model call hit a tokens-per-minute limit, 504 for a timeout) rather
    /// than a generic 502. Not a step: the router is not an agent.
    #[serde(skip)]
    pub routing_error: Option<switchboard_core::Error>,
}

impl Step {
    /// A call that failed with `e`: denied, blocked, or an error, with the status, wait and
    /// consent link `e` carries.
    fn failed(agent: String, input: String, e: switchboard_core::Error) -> Self {
        Self {
            agent,
            input,
            status: match e.kind {
                ErrorKind::Denied => "denied",
                ErrorKind::Blocked => "blocked",
                _ => "error",
            },
            error_status: Some(e.kind.http_status()),
            retry_after_ms: e.retry_after.map(|d| d.as_millis() as u64),
            consent_url: e.consent_url,
            error: Some(e.message),
            output: None,
            duration_ms: 0,
        }
    }
}

/// Routes a caller's request across sub-agents. Built once; `run` is called concurrently.
pub struct Supervisor {
    spec: Arc<AgentSpec>,
    agents: HashMap<String, Arc<dyn Agent>>,
    specs: HashMap<String, Arc<AgentSpec>>,
    router: Arc<dyn Router>,
    gateway: Arc<Gateway>,
    sink: Arc<dyn TelemetrySink>,
    store: Arc<dyn Store>,
    synthesizer: Option<Synthesizer>,
    /// Attributes client-sent history to agents. Lexical whatever the configured router: it is
    /// deterministic and free, so the same history always gets the same owners. Trained on first
    /// use unless [`with_attributor`](Self::with_attributor) hands one over, so a supervisor
    /// assembled with the configured router never trains a second one.
    attributor: OnceLock<Arc<LexicalRouter>>,
    /// The agents' specs in configuration order, which training the attributor depends on.
    ordered: Vec<Arc<AgentSpec>>,
    /// Endpoint-wide and per-agent guardrails.
    guards: Arc<RunGuards>,
}

impl Supervisor {
    /// Assembles a supervisor. `spec` describes the supervisor itself (its name and the
    /// credential of its own LLM calls); spans go to `sink`, threads live in `store`.
    pub fn new(
        spec: Arc<AgentSpec>,
        agents: Vec<Arc<dyn Agent>>,
        router: Arc<dyn Router>,
        gateway: Arc<Gateway>,
        sink: Arc<dyn TelemetrySink>,
        store: Arc<dyn Store>,
        synthesizer: Option<Synthesizer>,
    ) -> Self {
        let ordered: Vec<Arc<AgentSpec>> = agents.iter().map(|a| Arc::new(a.spec().clone())).collect();
        let specs = ordered.iter().map(|s| (s.name.clone(), s.clone())).collect();
        let agents = agents.into_iter().map(|a| (a.spec().name.clone(), a)).collect();
        let guards = Arc::new(RunGuards::default());
        let attributor = OnceLock::new();
        Self { spec, agents, specs, router, gateway, sink, store, synthesizer, attributor, ordered, guards }
    }

    /// Applies `guards` to every run: the endpoint's to questions and answers, each agent's to
    /// what it is sent and answers.
    pub fn with_guardrails(mut self, guards: RunGuards) -> Self {
        self.guards = Arc::new(guards);
        self
    }

    /// Attributes client-sent history with `router` instead of a default lexical router; pass
    /// the configured lexical router so history is attributed exactly as it routes.
    pub fn with_attributor(mut self, router: Arc<LexicalRouter>) -> Self {
        self.attributor = OnceLock::from(router);
        self
    }

    fn attributor(&self) -> &LexicalRouter {
        self.attributor
            .get_or_init(|| Arc::new(LexicalRouter::new(&self.ordered, LexicalRouter::DEFAULT_THRESHOLD)))
    }

    /// The supervisor's name (the served model name).
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// The sub-agents.
    pub fn agents(&self) -> impl Iterator<Item = &Arc<dyn Agent>> {
        self.agents.values()
    }

    /// The sub-agents' declarations.
    pub fn agent_specs(&self) -> impl Iterator<Item = &Arc<AgentSpec>> {
        self.specs.values()
    }

    /// Answers `request` for the caller in `ctx`. Never fails: problems become the response's
    /// status and answer, and each step records its own error.
    pub async fn run(&self, ctx: &RunContext, request: RunRequest) -> RunResponse {
        self.run_with_events(ctx, request, None).await
    }

    /// Like [`run`](Self::run), sending progress to `events` as it happens
    /// (`futures::channel::mpsc::unbounded()`, which allocates per event rather than a block of
    /// them up front, as a held conversation would carry). A closed receiver does not stop the
    /// run; cancel `ctx.cancel` for that.
    pub async fn run_with_events(
        &self,
        ctx: &RunContext,
        mut request: RunRequest,
        events: Option<&UnboundedSender<RunEvent>>,
    ) -> RunResponse {
        // Open before any LLM call, so every call of this request is counted.
        let usage = self.synthesizer.as_ref().map(|s| s.usage_ledger().open(ctx.request_id.as_str()));
        let thread_key = request.thread_id.as_deref().map(|t| thread_key(&ctx.caller, t));
        if !request.history.is_empty() {
            attribute(self.attributor(), &mut request.history);
        }
        if let Some(thread) = &thread_key
            && request.history.is_empty()
        {
            match self.store.thread(thread).await {
                Ok(turns) => request.history = turns,
                Err(e) => {
                    tracing::warn!(request_id = %ctx.request_id, error = %e, "thread history unavailable")
                }
            }
        }
        let root = LocalSpan::start(format!("invoke_agent {}", self.spec.name), SpanKind::Agent);
        let run_ctx = ctx.child(root.id);
        let mut guard_attrs = Map::new();
        let verdict = self.guards.question(&request.question);
        if let Err(blocked) = guard::apply(verdict, Direction::Input, &mut request.question, &mut guard_attrs)
        {
            return self.refuse(ctx, root, blocked, guard_attrs);
        }

        let route_span = LocalSpan::start("route".into(), SpanKind::Chain);
        // The caller's instructions reach the router as a system turn ahead of the history (an LLM
        // router shows them to its model; the lexical router reads only the turns).
        let with_instructions: Vec<Message>;
        let history = match &request.instructions {
            Some(instructions) => {
                with_instructions = std::iter::once(Message::system(instructions.clone()))
                    .chain(request.history.iter().cloned())
                    .collect();
                &with_instructions
            }
            None => &request.history,
        };
        let route = match &request.agent {
            Some(agent) => Ok(RouteDecision::Agents {
                calls: vec![RoutedCall::new(agent.clone(), request.question.clone(), 1.0)],
            }),
            None => self.router.route(&run_ctx.child(route_span.id), &request.question, history).await,
        };
        let mut route_attrs = Map::new();
        if request.agent.is_some() {
            route_attrs.insert("switchboard.route.direct".into(), json!(true));
        }
        extend(&mut route_attrs, span_inputs(json!({"question": request.question}), Some(&request.question)));
        if let Ok(decision) = &route {
            route_attrs.insert("switchboard.route".into(), json!(decision));
            extend(&mut route_attrs, span_outputs(json!(decision), None));
        }
        self.emit(&run_ctx, route_span, route.as_ref().err().map(|e| e.message.clone()), route_attrs);

        if let Ok(decision) = &route {
            emit(events, || RunEvent::Routed { decision: decision.clone() });
        }
        // The part of the answer already sent as live deltas (see `RunEvent::Streaming`).
        let mut streamed = String::new();
        let mut response = RunResponse {
            request_id: ctx.request_id.to_string(),
            trace_id: ctx.trace.trace_id.hex(),
            status: RunStatus::Ok,
            answer: String::new(),
            agents: Vec::new(),
            route: route.as_ref().ok().cloned(),
            steps: Vec::new(),
            usage: Usage::default(),
            routing_error: None,
        };
        match route {
            Err(e) => {
                response.status = RunStatus::Error;
                response.answer = format!("routing failed: {}", e.message);
                response.routing_error = Some(e);
            }
            Ok(RouteDecision::Clarify { question, .. }) => {
                response.status = RunStatus::Clarify;
                response.answer = question;
            }
            Ok(RouteDecision::Agents { calls }) => {
                let calls = dedupe(calls);
                // Live deltas only when nothing after them rewrites the answer (structured
                // output, the endpoint's output guardrail), so the pieces still concatenate to the
                // answer the caller finally gets.
                let live = events.filter(|_| request.format.is_none() && !self.guards.checks_answers());
                let (steps, fanned) = self.fan_out(&run_ctx, calls, &request.history, events, live).await;
                response.agents =
                    steps.iter().filter(|s| s.status == "ok").map(|s| s.agent.clone()).collect();
                response.status = overall_status(&steps);
                // Boxed, like `format` below: the run's task is held for as long as its agents
                // take (a streamed answer, minutes), and a step that comes after them would
                // otherwise reserve its space in it all along.
                let (answer, sent) = Box::pin(self.answer(&run_ctx, &request, &steps, fanned, live)).await;
                response.answer = answer;
                streamed = sent;
                response.steps = steps;
            }
        }
        if let Some(format) = &request.format
            && response.status == RunStatus::Ok
        {
            Box::pin(self.format(&run_ctx, &request, format, &mut response)).await;
        }
        response.usage = usage.map(|u| u.total()).unwrap_or_default();
        let verdict = self.guards.answer(&response.answer);
        if let Err(withheld) =
            guard::apply(verdict, Direction::Output, &mut response.answer, &mut guard_attrs)
        {
            self.audit_blocked(ctx, root.id, &withheld.message);
            response.answer = withheld.message;
        }

        let mut attrs = guard_attrs;
        attrs.insert("switchboard.status".into(), json!(response.status.as_str()));
        attrs.insert("switchboard.agents".into(), json!(response.agents));
        extend(&mut attrs, question_attributes(&request.question));
        extend(&mut attrs, span_inputs(json!({"question": request.question}), Some(&request.question)));
        extend(
            &mut attrs,
            span_outputs(
                json!({"answer": response.answer, "status": response.status.as_str()}),
                Some(&response.answer),
            ),
        );
        // MLflow's and OpenInference's names for who asked and which conversation it was, so
        // both UIs can filter and group traces by them.
        attrs.insert("mlflow.trace.user".into(), json!(ctx.caller.email()));
        attrs.insert("user.id".into(), json!(ctx.caller.email()));
        if let Some(thread) = &request.thread_id {
            attrs.insert("mlflow.trace.session".into(), json!(thread));
            attrs.insert("session.id".into(), json!(thread));
        }
        let failure =
            matches!(response.status, RunStatus::Error | RunStatus::Denied).then(|| response.answer.clone());
        self.emit(ctx, root, failure, attrs);
        // Each piece is sent once: what streamed live is not repeated (the answer then starts
        // with it, see `answer`).
        let rest = response.answer.strip_prefix(streamed.as_str()).unwrap_or(&response.answer);
        for piece in answer_pieces(rest) {
            emit(events, || RunEvent::Delta { text: piece.to_string() });
        }
        if let Some(thread) = &thread_key {
            self.save_turn(ctx, thread, &request.question, &response).await;
        }
        response
    }

    async fn save_turn(&self, ctx: &RunContext, thread: &str, question: &str, response: &RunResponse) {
        let agent = match response.agents.as_slice() {
            [only] => Some(only.clone()),
            _ => None,
        };
        let turns = [Message::user(question), Message::assistant(response.answer.clone(), agent)];
        for turn in &turns {
            if let Err(e) = self.store.append_turn(thread, &response.request_id, turn).await {
                tracing::warn!(request_id = %ctx.request_id, error = %e, "could not save the thread turn");
            }
        }
    }

    /// Runs each of several calls as its own task, so branches use every core and start together;
    /// one slow or failed branch degrades the answer without holding the others (a single call
    /// runs in the run's own task, a panic in it failing only its step). Dropping the run aborts
    /// every branch still going. Returns the steps in the router's order, and what streamed live
    /// to `live` while they ran: a single agent's answer as it writes it, or, when the answer
    /// will be the agents' parts joined (no synthesizer), each part as its branch finishes.
    async fn fan_out(
        &self,
        ctx: &RunContext,
        mut calls: Vec<RoutedCall>,
        history: &[Message],
        events: Option<&UnboundedSender<RunEvent>>,
        live: Option<&UnboundedSender<RunEvent>>,
    ) -> (Vec<Step>, String) {
        // Every branch's span starts now, when the supervisor hands it out, whichever worker
        // picks it up first.
        let mut ctx = ctx.clone();
        ctx.dispatched_unix_nano = Some(unix_nanos_now());
        let ctx = &ctx;
        // An agent's own output guardrail sees its whole answer before anyone does.
        let single = match calls.as_slice() {
            [only] if !self.guards.checks_agent_answers(&only.agent) => live,
            _ => None,
        }
        .map(|tx| Arc::new(LiveAnswer::new(tx.clone())));
        let parts = live
            .filter(|_| calls.len() > 1 && self.synthesizer.is_none())
            .map(|tx| LiveAnswer::new(tx.clone()));
        let branch = |call: RoutedCall| {
            let resolved = self.agents.get(&call.agent).cloned().zip(self.specs.get(&call.agent).cloned());
            let history = agent_history(history, &call.agent);
            let (gateway, ctx, events) = (self.gateway.clone(), ctx.clone(), events.cloned());
            let (guards, single) = (self.guards.clone(), single.clone());
            async move {
                emit(events.as_ref(), || RunEvent::AgentStarted { agent: call.agent.clone() });
                let on_delta = single.as_ref().map(|l| move |piece: &str| l.send(piece));
                let on_delta = on_delta.as_ref().map(|f| f as &OnDelta<'_>);
                let step = call_agent(&gateway, &guards, resolved, &ctx, call, history, on_delta).await;
                emit(events.as_ref(), || RunEvent::AgentFinished { step: Box::new(step.clone()) });
                step
            }
        };
        let failed = |agent: String, why: &dyn std::fmt::Display| {
            let e = switchboard_core::Error::internal(format!("the agent failed unexpectedly: {why}"));
            Step::failed(agent, String::new(), e)
        };
        if calls.len() == 1
            && let Some(call) = calls.pop()
        {
            // One agent runs in this task: a task of its own would run nothing alongside it, and
            // would cost a spawn, and at low load the wake-up of another worker, per run. Boxed,
            // so a run that fans out does not carry its room.
            let agent = call.agent.clone();
            let step = match std::panic::AssertUnwindSafe(Box::pin(branch(call))).catch_unwind().await {
                Ok(step) => step,
                Err(_) => failed(agent, &"it panicked"),
            };
            let sent = single.map(|l| l.sent()).unwrap_or_default();
            return (vec![step], sent);
        }
        let mut branches: FuturesUnordered<_> = calls
            .into_iter()
            .enumerate()
            .map(|(i, call)| {
                let agent = call.agent.clone();
                let task = AbortOnDropHandle::new(tokio::spawn(branch(call)));
                async move { (i, agent, task.await) }
            })
            .collect();
        let mut steps: Vec<Option<Step>> = vec![None; branches.len()];
        let mut finished = Vec::with_capacity(steps.len());
        while let Some((i, agent, joined)) = branches.next().await {
            let step = joined.unwrap_or_else(|e| failed(agent, &e));
            if let Some(parts) = &parts {
                if parts.started() {
                    parts.send_part(&step);
                } else if step.status == "ok" {
                    // The first answer settles the run as `ok`: the parts that failed before it
                    // go out with it, in the order they finished.
                    for earlier in finished.iter().filter_map(|&j: &usize| steps[j].as_ref()) {
                        parts.send_part(earlier);
                    }
                    parts.send_part(&step);
                }
            }
            finished.push(i);
            steps[i] = Some(step);
        }
        let sent = single.map(|l| l.sent()).or_else(|| parts.map(|l| l.sent())).unwrap_or_default();
        (steps.into_iter().flatten().collect(), sent)
    }

    /// Replaces the answer with its JSON for `format`; a failure to format fails the run,
    /// since a caller who asked for a schema cannot use prose.
    async fn format(
        &self,
        ctx: &RunContext,
        request: &RunRequest,
        format: &OutputFormat,
        response: &mut RunResponse,
    ) {
        let formatted = match &self.synthesizer {
            Some(synth) => {
                let instructions = request.instructions.as_deref();
                synth.format(ctx, &request.question, instructions, &response.answer, format).await
            }
            None => Err(switchboard_core::Error::invalid(
                "structured output needs an LLM to format the answer; configure [llm]",
            )),
        };
        match formatted {
            Ok(json) => response.answer = json,
            Err(e) => {
                response.status = RunStatus::Error;
                response.answer = e.message;
            }
        }
    }

    /// The run's answer, and the part of it already sent as live deltas (`fanned`, what streamed
    /// while the agents ran, or what synthesis streams to `live`; empty when nothing streamed).
    /// The answer always starts with what was streamed.
    async fn answer(
        &self,
        ctx: &RunContext,
        request: &RunRequest,
        steps: &[Step],
        fanned: String,
        live: Option<&UnboundedSender<RunEvent>>,
    ) -> (String, String) {
        if !fanned.is_empty() {
            return (streamed_answer(steps, &fanned), fanned);
        }
        let question = request.question.as_str();
        let ok: Vec<&Step> = steps.iter().filter(|s| s.output.is_some()).collect();
        // A single answer is forwarded verbatim: a synthesis call would only add latency and risk.
        if let ([only], 1) = (ok.as_slice(), steps.len()) {
            return (only.output.as_ref().map(|o| o.text.clone()).unwrap_or_default(), String::new());
        }
        if ok.len() >= 2
            && let Some(synth) = &self.synthesizer
        {
            // Only `ok` runs reach here (two answers at least), so announcing the stream on the
            // first piece cannot contradict the run's final status.
            let live = live.map(|tx| LiveAnswer::new(tx.clone()));
            let on_delta = live.as_ref().map(|l| move |piece: &str| l.send(piece));
            let on_delta = on_delta.as_ref().map(|f| f as &OnDelta<'_>);
            let combined =
                synth.combine(ctx, question, request.instructions.as_deref(), steps, on_delta).await;
            let sent = live.map(|l| l.sent()).unwrap_or_default();
            match combined {
                Ok(text) => return (text, sent),
                Err(e) if sent.is_empty() => {
                    tracing::warn!(request_id = %ctx.request_id, error = %e, "synthesis failed; joining answers")
                }
                Err(e) => {
                    // Part of the combined answer already reached the caller and cannot be taken
                    // back: say it broke off, then give the agents' own answers.
                    tracing::warn!(request_id = %ctx.request_id, error = %e, "synthesis broke off mid-stream; joining answers");
                    let answer = format!(
                        "{sent}\n\n(The combined answer broke off: {}. The agents' answers follow.)\n\n{}",
                        e.message,
                        join_answers(steps)
                    );
                    return (answer, sent);
                }
            }
        }
        (join_answers(steps), String::new())
    }

    /// The run of a question the endpoint's input guardrail blocked: no routing, no agent, no
    /// thread turn; an audit row and the root span, neither holding the question's text.
    fn refuse(
        &self,
        ctx: &RunContext,
        root: LocalSpan,
        blocked: switchboard_core::Error,
        mut attrs: Map<String, serde_json::Value>,
    ) -> RunResponse {
        self.audit_blocked(ctx, root.id, &blocked.message);
        attrs.insert("switchboard.status".into(), json!(RunStatus::Blocked.as_str()));
        attrs.insert("mlflow.trace.user".into(), json!(ctx.caller.email()));
        attrs.insert("user.id".into(), json!(ctx.caller.email()));
        self.emit(ctx, root, Some(blocked.message.clone()), attrs);
        RunResponse {
            request_id: ctx.request_id.to_string(),
            trace_id: ctx.trace.trace_id.hex(),
            status: RunStatus::Blocked,
            answer: blocked.message,
            agents: Vec::new(),
            route: None,
            steps: Vec::new(),
            usage: Usage::default(),
            routing_error: None,
        }
    }

    /// The audit row of a guardrail block at the endpoint (agents' own blocks are audited by their
    /// hop). `reason` names the category, never the text.
    fn audit_blocked(&self, ctx: &RunContext, span: opentelemetry::trace::SpanId, reason: &str) {
        let caller = &ctx.caller;
        self.sink.audit(AuditRecord {
            request_id: ctx.request_id.to_string(),
            span_id: span.hex(),
            ts_unix_ms: unix_nanos_now() / 1_000_000,
            caller_email: caller.email().to_string(),
            caller_roles: caller.groups().join(","),
            acting_for: caller.acting_for().map(str::to_string),
            principal: String::new(),
            credential_mode: String::new(),
            agent: self.spec.name.clone(),
            hop: HopKind::Agent,
            target: "guardrails".into(),
            decision: AuditDecision::Blocked,
            reason: Some(reason.to_string()),
            duration_ms: 0,
            error_code: Some(ErrorKind::Blocked.as_str().to_string()),
        });
    }

    fn emit(
        &self,
        ctx: &RunContext,
        span: LocalSpan,
        error: Option<String>,
        mut attributes: Map<String, serde_json::Value>,
    ) {
        let caller = &ctx.caller;
        attributes.insert("mlflow.spanType".into(), json!(span.kind.as_str()));
        attributes.insert("switchboard.request_id".into(), json!(ctx.request_id.as_str()));
        attributes.insert("enduser.id".into(), json!(caller.email()));
        attributes.insert("switchboard.caller.email".into(), json!(caller.email()));
        attributes.insert("switchboard.caller.role".into(), json!(caller.primary_role()));
        if span.kind == SpanKind::Agent {
            attributes.insert("gen_ai.operation.name".into(), json!("invoke_agent"));
            attributes.insert("gen_ai.agent.name".into(), json!(self.spec.name));
        }
        cap_attributes(&mut attributes);
        let parent = ctx.trace.parent_span_id;
        self.sink.span(SpanRecord {
            request_id: ctx.request_id.to_string(),
            trace_id: ctx.trace.trace_id.hex(),
            span_id: span.id.hex(),
            parent_id: (parent != opentelemetry::trace::SpanId::INVALID).then(|| parent.hex()),
            name: span.name,
            kind: span.kind,
            agent: Some(self.spec.name.clone()),
            start_unix_nano: span.start,
            end_unix_nano: unix_nanos_now(),
            status: if error.is_some() { SpanStatus::Error } else { SpanStatus::Ok },
            // A failed run's message is its answer, which can quote the question.
            status_message: error.map(|e| cap_text(&e)),
            attributes,
        });
    }
}

fn extend(attributes: &mut Map<String, serde_json::Value>, pairs: Vec<(&'static str, serde_json::Value)>) {
    attributes.extend(pairs.into_iter().map(|(k, v)| (k.to_string(), v)));
}

/// The answer in word-sized pieces that concatenate back to it exactly, for streaming.
fn answer_pieces(answer: &str) -> impl Iterator<Item = &str> {
    answer.split_inclusive(char::is_whitespace)
}

/// A span the supervisor records itself (the run and its routing step are not hops).
struct LocalSpan {
    id: opentelemetry::trace::SpanId,
    name: String,
    kind: SpanKind,
    start: u64,
}

impl LocalSpan {
    fn start(name: String, kind: SpanKind) -> Self {
        Self { id: TraceContext::new_span_id(), name, kind, start: unix_nanos_now() }
    }
}

/// Sends the event `event` makes, when anyone listens: most runs have no listener, and making
/// an event copies what it carries (a step, each word of the answer).
fn emit(events: Option<&UnboundedSender<RunEvent>>, event: impl FnOnce() -> RunEvent) {
    if let Some(tx) = events {
        // A client that stopped listening does not stop the run; cancellation does that.
        let _ = tx.unbounded_send(event());
    }
}

/// One governed call to a sub-agent, as a step of the run; with `on_delta`, the agent streams its
/// answer there as it produces it.
async fn call_agent(
    gateway: &Gateway,
    guards: &RunGuards,
    resolved: Option<(Arc<dyn Agent>, Arc<AgentSpec>)>,
    ctx: &RunContext,
    call: RoutedCall,
    history: Vec<Message>,
    on_delta: Option<&OnDelta<'_>>,
) -> Step {
    let started = std::time::Instant::now();
    let mut step = Step {
        agent: call.agent.clone(),
        input: call.input.clone(),
        status: "ok",
        error: None,
        error_status: None,
        retry_after_ms: None,
        consent_url: None,
        output: None,
        duration_ms: 0,
    };
    let Some((agent, spec)) = resolved else {
        step.status = "error";
        step.error = Some(format!("the router proposed `{}`, which is not a configured agent", call.agent));
        return step;
    };
    let input = AgentInput { question: call.input, history, arguments: call.arguments };
    let result = gateway
        .hop(ctx, &spec, HopTarget::new(HopKind::Agent, &call.agent), |grant| {
            let agent = agent.clone();
            let (input, name) = (&input, call.agent.as_str());
            async move {
                let guarded = guarded_input(guards, name, input, &grant)?;
                let input = guarded.as_ref().unwrap_or(input);
                let inputs = match &input.arguments {
                    Some(arguments) => json!({"question": input.question, "arguments": arguments}),
                    None => json!({"question": input.question}),
                };
                for (key, value) in span_inputs(inputs, Some(&input.question)) {
                    grant.record(key, value);
                }
                let mut output = match on_delta {
                    Some(on_delta) => agent.invoke_streaming(grant.ctx(), input, on_delta).await?,
                    None => agent.invoke(grant.ctx(), input).await?,
                };
                guard_output(guards, name, &mut output, &grant);
                for (key, value) in span_outputs(json!({"answer": output.text}), Some(&output.text)) {
                    grant.record(key, value);
                }
                Ok(output)
            }
        })
        .await;
    let duration_ms = started.elapsed().as_millis() as u64;
    match result {
        Ok(output) => Step { output: Some(output), duration_ms, ..step },
        Err(e) => Step { duration_ms, ..Step::failed(step.agent, step.input, e) },
    }
}

/// `agent`'s own input guardrail on what it is about to be sent: the masked input when it masked
/// anything, an error when it blocks. The verdict goes on the agent's span.
fn guarded_input(
    guards: &RunGuards,
    agent: &str,
    input: &AgentInput,
    grant: &HopGrant,
) -> switchboard_core::Result<Option<AgentInput>> {
    let mut question = input.question.clone();
    let mut verdicts = Map::new();
    let checked = guards.agent(agent, Direction::Input, &question);
    let admitted = guard::apply(checked, Direction::Input, &mut question, &mut verdicts);
    for (key, value) in verdicts {
        grant.record(&key, value);
    }
    admitted?;
    // Arguments the router read from the unmasked request must not get past the mask: without
    // them the agent asks its model, which sees only the masked question.
    Ok((question != input.question).then(|| AgentInput {
        question,
        history: input.history.clone(),
        arguments: None,
    }))
}

/// `agent`'s own output guardrail on its answer: masked in place, or replaced by the refusal.
fn guard_output(guards: &RunGuards, agent: &str, output: &mut AgentOutput, grant: &HopGrant) {
    let mut verdicts = Map::new();
    let checked = guards.agent(agent, Direction::Output, &output.text);
    let changed = checked != Verdict::Pass;
    if let Err(refusal) = guard::apply(checked, Direction::Output, &mut output.text, &mut verdicts) {
        // A safe refusal in place of the answer, not a failed call: the caller asked nothing wrong.
        output.text = refusal.message;
        output.citations.clear();
    }
    for (key, value) in verdicts {
        grant.record(&key, value);
    }
    if changed {
        // The structured copy (rows, citations' text) would carry what the text no longer shows.
        output.data = None;
    }
}

/// The stored key of a caller's thread. Threads belong to their caller: the same id from someone
/// else names a different conversation, so nobody reads another's history by guessing an id.
fn thread_key(caller: &Caller, thread: &str) -> String {
    format!("{}/{thread}", caller.subject())
}

/// Drops repeated (agent, input) pairs: no agent is called twice with the same input in a request.
fn dedupe(calls: Vec<RoutedCall>) -> Vec<RoutedCall> {
    let mut seen = HashSet::new();
    calls.into_iter().filter(|c| seen.insert((c.agent.clone(), c.input.trim().to_lowercase()))).collect()
}

/// Tags each untagged assistant turn with the agent its question routes to, as `save_turn` would
/// have when the turn was live: one agent, or none for a clarification or a joined answer. Each
/// question is routed against the history attributed so far, so the router's own follow-up rule
/// ("now only the top 3" stays with the previous turn's agent) applies, not a copy of it.
/// Already-tagged turns (a stored thread) are kept as they are.
fn attribute(router: &LexicalRouter, history: &mut [Message]) {
    let users: Vec<usize> =
        history.iter().enumerate().filter(|(_, m)| m.role == Role::User).map(|(i, _)| i).collect();
    let skip = users.len().saturating_sub(MAX_ATTRIBUTED_TURNS);
    for (n, &at) in users.iter().enumerate().skip(skip) {
        let end = users.get(n + 1).copied().unwrap_or(history.len());
        if !history[at + 1..end].iter().any(|m| m.role == Role::Assistant && m.agent.is_none()) {
            continue;
        }
        let agent = match router.decide(&history[at].content, &history[..at]) {
            Ok(RouteDecision::Agents { calls }) if calls.len() == 1 => Some(calls[0].agent.clone()),
            _ => None,
        };
        for m in &mut history[at + 1..end] {
            if m.role == Role::Assistant && m.agent.is_none() {
                m.agent.clone_from(&agent);
            }
        }
    }
}

/// The turns of the thread that belong to `agent`: each of its answers with the question before it.
fn agent_history(history: &[Message], agent: &str) -> Vec<Message> {
    let mut out = Vec::new();
    for (i, m) in history.iter().enumerate() {
        if m.role == Role::Assistant && m.agent.as_deref() == Some(agent) {
            if let Some(q) = history[..i].iter().rev().find(|m| m.role == Role::User) {
                out.push(q.clone());
            }
            out.push(m.clone());
        }
    }
    out
}

fn overall_status(steps: &[Step]) -> RunStatus {
    if steps.iter().any(|s| s.status == "ok") {
        RunStatus::Ok
    } else if steps.iter().any(|s| s.status == "denied") {
        RunStatus::Denied
    } else if steps.iter().any(|s| s.status == "blocked") {
        RunStatus::Blocked
    } else {
        RunStatus::Error
    }
}

/// Joins several agents' answers into one, each under its agent's name, failures included so the
/// caller sees what is missing and why.
fn join_answers(steps: &[Step]) -> String {
    if let [only] = steps {
        return only.error.clone().unwrap_or_default();
    }
    steps.iter().map(live::part).collect::<Vec<_>>().join("\n\n")
}

/// The answer of a run part of which streamed while its agents ran (`sent`): the joined parts as
/// they were sent, or the single agent's answer, which starts with what it streamed. A single
/// agent that failed after streaming (or changed what it streamed) has what it sent kept, and
/// then says why the rest is missing.
fn streamed_answer(steps: &[Step], sent: &str) -> String {
    let [only] = steps else { return sent.to_string() };
    match (&only.output, &only.error) {
        (Some(output), _) if output.text.starts_with(sent) => output.text.clone(),
        (Some(output), _) => format!("{sent}\n\n{}", output.text),
        (None, error) => {
            let why = error.as_deref().unwrap_or(only.status);
            format!("{sent}\n\n(The answer broke off: {why}.)")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(agent: &str, input: &str) -> RoutedCall {
        RoutedCall::new(agent, input, 1.0)
    }

    /// Each streamed run holds its event channel's first block (32 events) for as long as it
    /// streams; a large event would cost every held conversation kilobytes.
    #[test]
    fn a_run_event_stays_small() {
        assert!(std::mem::size_of::<RunEvent>() <= 64, "{} bytes", std::mem::size_of::<RunEvent>());
    }

    #[test]
    fn same_agent_same_input_is_called_once() {
        let calls = dedupe(vec![
            call("sales", "Revenue "),
            call("sales", "revenue"),
            call("sales", "top 3"),
            call("policies", "revenue"),
        ]);
        assert_eq!(calls.len(), 3);
    }

    fn spec(name: &str, description: &str, examples: &[&str]) -> Arc<AgentSpec> {
        let mut s = AgentSpec::new(name, switchboard_core::AgentKind::Tool, description);
        s.examples = examples.iter().map(|e| e.to_string()).collect();
        Arc::new(s)
    }

    #[test]
    fn client_history_is_attributed_and_follow_ups_stay_with_their_agent() {
        let router = LexicalRouter::new(
            &[
                spec("sales", "Sales analytics over deals: revenue by region and rep", &["revenue by rep"]),
                spec("policies", "Company policies: travel, hotel limits, expenses", &["hotel limit"]),
            ],
            LexicalRouter::DEFAULT_THRESHOLD,
        );
        let mut history = vec![
            Message::user("revenue by rep"),
            Message::assistant("| Ann | 10 |", None),
            Message::user("now only the top 3"),
            Message::assistant("| Ann | 10 |", None),
            Message::user("hotel limit?"),
            Message::assistant("$250", None),
            Message::user("zzz qqq"),
            Message::assistant("which one?", None),
            Message::user("zzz qqq"),
            Message::assistant("already mine", Some("sales".into())),
        ];
        attribute(&router, &mut history);
        let agents: Vec<Option<&str>> =
            history.iter().filter(|m| m.role == Role::Assistant).map(|m| m.agent.as_deref()).collect();
        assert_eq!(agents, [Some("sales"), Some("sales"), Some("policies"), Some("policies"), Some("sales")]);
        assert!(history.iter().filter(|m| m.role == Role::User).all(|m| m.agent.is_none()));
    }

    #[test]
    fn agent_history_keeps_only_that_agents_turns() {
        let history = vec![
            Message::user("revenue by region"),
            Message::assistant("| West | 10 |", Some("sales".into())),
            Message::user("hotel limit?"),
            Message::assistant("$250", Some("policies".into())),
        ];
        let h = agent_history(&history, "sales");
        assert_eq!(h, vec![history[0].clone(), history[1].clone()]);
    }
}
