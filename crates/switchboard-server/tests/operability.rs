//! Cancellation, deadlines and graceful shutdown, with deliberately slow sub-agents built through
//! the library (a supervisor over two agents that sleep, behind the real hop pipeline and store).

mod common;

use async_trait::async_trait;
use common::{Server, parts, post};
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchboard_core::{
    Agent, AgentInput, AgentKind, AgentOutput, AgentSpec, AuditDecision, AuditRecord, Message, Result,
    RouteDecision, RoutedCall, Router, RunContext, TelemetrySink,
};
use switchboard_govern::{Gateway, layers};
use switchboard_runtime::Supervisor;

/// Answers after `delay`.
struct Sleeper {
    spec: AgentSpec,
    delay: Duration,
}

#[async_trait]
impl Agent for Sleeper {
    fn spec(&self) -> &AgentSpec {
        &self.spec
    }
    async fn invoke(&self, _ctx: &RunContext, _input: &AgentInput) -> Result<AgentOutput> {
        tokio::time::sleep(self.delay).await;
        Ok(AgentOutput { text: format!("{} is done", self.spec.name), ..Default::default() })
    }
}

/// Sends every question to every agent.
struct FanOut(Vec<String>);

#[async_trait]
impl Router for FanOut {
    async fn route(&self, _ctx: &RunContext, question: &str, _history: &[Message]) -> Result<RouteDecision> {
        let calls = self.0.iter().map(|a| RoutedCall::new(a.clone(), question, 1.0));
        Ok(RouteDecision::Agents { calls: calls.collect() })
    }
}

/// Panics when called.
struct Panicker {
    spec: AgentSpec,
}

#[async_trait]
impl Agent for Panicker {
    fn spec(&self) -> &AgentSpec {
        &self.spec
    }
    async fn invoke(&self, _ctx: &RunContext, _input: &AgentInput) -> Result<AgentOutput> {
        panic!("{} broke", self.spec.name)
    }
}

/// Sends each question to the agents it names.
struct Named(Vec<String>);

#[async_trait]
impl Router for Named {
    async fn route(&self, _ctx: &RunContext, question: &str, _history: &[Message]) -> Result<RouteDecision> {
        let named = self.0.iter().filter(|a| question.contains(a.as_str()));
        let calls = named.map(|a| RoutedCall::new(a.clone(), question, 1.0));
        Ok(RouteDecision::Agents { calls: calls.collect() })
    }
}

fn spec(name: &str) -> AgentSpec {
    AgentSpec {
        name: name.into(),
        kind: AgentKind::Tool,
        description: format!("{name}, slowly"),
        examples: vec![],
        credential: Default::default(),
        allowed_roles: None,
        timeout_ms: None,
        connection: None,
        settings: serde_json::Value::Null,
        tool_roles: None,
        guardrails: None,
    }
}

/// A server whose supervisor fans out to two agents that each take `delay`, with a request
/// deadline of `deadline`.
async fn slow_server(delay: Duration, deadline: Duration) -> Server {
    let names = vec!["slow_a".to_string(), "slow_b".to_string()];
    let agents = names.iter().map(|n| Arc::new(Sleeper { spec: spec(n), delay }) as Arc<dyn Agent>).collect();
    library_server(agents, Arc::new(FanOut(names)), deadline).await
}

/// A server whose supervisor routes with `router` over `agents`, with a request deadline of
/// `deadline`. Everything but the supervisor (identity, store, configuration) is the demo's; the
/// supervisor is assembled through the library over the real hop pipeline and store.
async fn library_server(agents: Vec<Arc<dyn Agent>>, router: Arc<dyn Router>, deadline: Duration) -> Server {
    let (mut runtime, dir) =
        common::demo_runtime(|c| c.config.supervisor.deadline_ms = deadline.as_millis() as u64).await;
    let store = runtime.store.clone();
    let sink: Arc<dyn TelemetrySink> = store.clone();
    let gateway =
        Arc::new(Gateway::builder(sink.clone(), Arc::new(layers::StandardCredentials::new("sp"))).build());
    let name = runtime.supervisor.name().to_string();
    runtime.supervisor =
        Arc::new(Supervisor::new(Arc::new(spec(&name)), agents, router, gateway, sink, store, None));
    Server::start(runtime, Some(dir)).await
}

/// Waits (bounded) until the server's only request has an audit row for every slow agent, and
/// returns them. A client that left never saw the server's request id, so the rows are found as
/// the store's most recent ones (each test has a server and a store of its own).
async fn audit_rows(server: &Server) -> Vec<AuditRecord> {
    let started = Instant::now();
    loop {
        server.runtime.store.flush().await;
        let rows = server.runtime.store.recent_audit(10).await.unwrap();
        if rows.len() >= 2 || started.elapsed() > Duration::from_secs(10) {
            return rows;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn assert_cancelled(rows: &[AuditRecord]) {
    let mut agents: Vec<&str> = rows.iter().map(|r| r.agent.as_str()).collect();
    agents.sort();
    assert_eq!(agents, ["slow_a", "slow_b"], "{rows:?}");
    for row in rows {
        assert_eq!(row.decision, AuditDecision::Error, "{row:?}");
        assert_eq!(row.reason.as_deref(), Some("request cancelled"), "{row:?}");
        assert!(row.duration_ms < 20_000, "cancelled long before the agent would have answered");
    }
}

#[tokio::test]
async fn a_client_that_leaves_a_streamed_request_cancels_every_sub_agent_call() {
    let server = slow_server(Duration::from_secs(30), Duration::from_secs(60)).await;
    // The stream starts only once the run is decided, so the client leaves while waiting for it.
    let client = reqwest::Client::builder().timeout(Duration::from_millis(300)).build().unwrap();
    let result = client
        .post(server.url("/v1/responses"))
        .bearer_auth(server.token("carol@example.com"))
        .json(&json!({"input": "anything", "stream": true}))
        .send()
        .await;
    assert!(result.is_err_and(|e| e.is_timeout()));
    drop(client);
    assert_cancelled(&audit_rows(&server).await);
}

#[tokio::test]
async fn a_client_that_gives_up_on_a_plain_request_cancels_the_run() {
    let server = slow_server(Duration::from_secs(30), Duration::from_secs(60)).await;
    let client = reqwest::Client::builder().timeout(Duration::from_millis(300)).build().unwrap();
    let result = client
        .post(server.url("/v1/chat/completions"))
        .bearer_auth(server.token("carol@example.com"))
        .json(&json!({"messages": [{"role": "user", "content": "anything"}]}))
        .send()
        .await;
    assert!(result.is_err_and(|e| e.is_timeout()));
    drop(client);
    assert_cancelled(&audit_rows(&server).await);
}

#[tokio::test]
async fn a_run_past_its_deadline_is_504() {
    let server = slow_server(Duration::from_secs(30), Duration::from_millis(300)).await;
    let started = Instant::now();
    let ask = json!({"messages": [{"role": "user", "content": "anything"}]});
    let (status, _, body) =
        parts(post(&server, "/v1/chat/completions", Some("carol@example.com"), ask).await).await;
    assert_eq!(status, 504, "{body}");
    assert_eq!(body["error"]["type"], "timeout_error");
    assert!(body["error"]["message"].as_str().unwrap().contains("deadline"), "{body}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn graceful_shutdown_lets_in_flight_requests_finish_and_flushes_the_store() {
    let server = slow_server(Duration::from_millis(500), Duration::from_secs(60)).await;
    let url = server.url("/v1/chat/completions");
    let token = server.token("carol@example.com");
    let in_flight = tokio::spawn(async move {
        reqwest::Client::new()
            .post(url)
            .bearer_auth(token)
            .json(&json!({"messages": [{"role": "user", "content": "anything"}]}))
            .send()
            .await
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    let store = server.runtime.store.clone();
    server.stop().await;
    let response = in_flight.await.unwrap().unwrap();
    let (status, request_id, body) = parts(response).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["choices"][0]["message"]["content"].as_str().unwrap().contains("slow_a is done"));
    // `serve` flushed before returning: the rows are there without another flush.
    let rows = store.audit_for_request(&request_id).await.unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(rows.iter().all(|r| r.decision == AuditDecision::Allowed));
}

#[tokio::test]
async fn an_agent_that_panics_fails_its_own_step_and_the_server_goes_on() {
    let agents: Vec<Arc<dyn Agent>> = vec![
        Arc::new(Panicker { spec: spec("broken") }),
        Arc::new(Sleeper { spec: spec("steady"), delay: Duration::ZERO }),
    ];
    let router = Arc::new(Named(vec!["broken".into(), "steady".into()]));
    let server = library_server(agents, router, Duration::from_secs(30)).await;
    let ask = |q: &str| json!({"messages": [{"role": "user", "content": q}]});
    let chat = |q: &'static str| {
        let server = &server;
        async move { parts(post(server, "/v1/chat/completions", Some("carol@example.com"), ask(q)).await).await }
    };

    // Alone, it runs in the run's own task: the panic fails the run, not the process.
    let (status, _, body) = chat("ask broken").await;
    assert_eq!(status, 500, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("the agent failed unexpectedly"), "{body}");

    // Beside another agent, in a task of its own: the other's answer still comes back.
    let (status, _, body) = chat("ask broken and steady").await;
    assert_eq!(status, 200, "{body}");
    assert!(body["choices"][0]["message"]["content"].as_str().unwrap().contains("steady is done"), "{body}");

    let (status, _, body) = chat("ask steady").await;
    assert_eq!(status, 200, "{body}");
    assert!(body["choices"][0]["message"]["content"].as_str().unwrap().contains("steady is done"), "{body}");
}
