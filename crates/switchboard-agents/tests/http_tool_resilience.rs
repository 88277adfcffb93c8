//! An HTTP tool through a connection, with `[resilience]` on, against a flaky partner API on a
//! real socket: a GET is retried until it succeeds, a POST is sent once unless the table declares
//! it idempotent.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use switchboard_agents::tool;
use switchboard_core::{
    Agent, AgentInput, AgentKind, AgentSpec, AuthMethod, Caller, ConnectionSpec, CredentialMode,
    CredentialSpec, ErrorKind, RunContext,
};
use switchboard_govern::layers::{StandardCredentials, StaticGrants};
use switchboard_govern::retry::{Resilience, RetryPolicy};
use switchboard_govern::{Connection, Gateway};
use switchboard_store::MemorySink;
use switchboard_testkit::flaky::{FlakyUpstream, Reply};

fn gateway(upstream: &FlakyUpstream) -> (Arc<Gateway>, Arc<MemorySink>) {
    let mut spec = ConnectionSpec::new("partner", upstream.url());
    spec.allow_insecure_loopback = true;
    let connection = Arc::new(Connection::new(spec, None).expect("valid connection"));
    let grants = Arc::new(StaticGrants::default());
    grants.grant("partner", "switchboard-sp");
    let sink = Arc::new(MemorySink::default());
    let retry = RetryPolicy {
        max_attempts: 3,
        base_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_secs(2),
    };
    let gw = Gateway::builder(sink.clone(), Arc::new(StandardCredentials::new("switchboard-sp")))
        .connections([connection], grants, "switchboard-sp")
        .resilience(Resilience::new(retry, None))
        .build();
    (Arc::new(gw), sink)
}

fn tool_agent(gw: &Arc<Gateway>, method: &str) -> Arc<dyn Agent> {
    tool_agent_with(gw, method, "")
}

/// A `ping` tool whose `[http]` table has `extra` lines.
fn tool_agent_with(gw: &Arc<Gateway>, method: &str, extra: &str) -> Arc<dyn Agent> {
    let table: toml::Table =
        toml::from_str(&format!("[http]\nmethod = \"{method}\"\npath = \"/ping\"\n{extra}")).expect("toml");
    let spec = Arc::new(AgentSpec {
        name: "ping".into(),
        kind: AgentKind::Tool,
        description: "ping the partner".into(),
        examples: Vec::new(),
        credential: CredentialSpec { mode: CredentialMode::Automatic, ..Default::default() },
        allowed_roles: None,
        timeout_ms: None,
        connection: Some("partner".into()),
        settings: serde_json::to_value(table).expect("settings"),
        tool_roles: None,
        guardrails: None,
    });
    tool::build(spec.clone(), gw.egress(spec), Path::new("."), None).expect("tool")
}

fn ctx() -> RunContext {
    let caller =
        Caller::new("alice", "alice@example.com", vec!["west_sales".into()], AuthMethod::Development);
    RunContext::new(caller, Duration::from_secs(20))
}

fn ping() -> AgentInput {
    AgentInput::new("ping")
}

#[tokio::test]
async fn a_get_tool_rides_out_two_503s_with_the_attempts_on_its_span() {
    let upstream = FlakyUpstream::start(vec![Reply::status(503), Reply::status(503)]).await;
    let (gw, sink) = gateway(&upstream);
    let out = tool_agent(&gw, "GET").invoke(&ctx(), &ping()).await.expect("the third attempt succeeds");
    assert!(out.text.contains("true"), "{}", out.text);
    assert_eq!(upstream.calls(), 3);
    let span = sink.spans().into_iter().find(|s| s.attributes.get("switchboard.http.attempts").is_some());
    assert_eq!(span.expect("the http hop's span").attributes["switchboard.http.attempts"], 3);
}

#[tokio::test]
async fn a_post_tool_is_sent_once() {
    let upstream = FlakyUpstream::start(vec![Reply::status(503)]).await;
    let (gw, _) = gateway(&upstream);
    let e = tool_agent(&gw, "POST").invoke(&ctx(), &ping()).await.expect_err("the 503 is reported");
    assert_eq!(e.kind, ErrorKind::Upstream, "{e}");
    assert_eq!(upstream.calls(), 1, "a POST may have acted: not retried");
}

#[tokio::test]
async fn a_post_tool_declared_idempotent_is_retried() {
    let upstream = FlakyUpstream::start(vec![Reply::status(503)]).await;
    let (gw, _) = gateway(&upstream);
    let agent = tool_agent_with(&gw, "POST", "idempotent = true\n");
    let out = agent.invoke(&ctx(), &ping()).await.expect("the second attempt succeeds");
    assert!(out.text.contains("true"), "{}", out.text);
    assert_eq!(upstream.calls(), 2, "the API de-duplicates POSTs, so one may be sent again");
}
