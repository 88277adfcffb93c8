//! MCP over HTTP under the gateway's retries and circuit breakers, against the real reference
//! server (`@modelcontextprotocol/server-everything`, installed by `scripts/mcp-peers`) behind
//! the testkit's fault proxy, which answers chosen JSON-RPC methods with 503 and counts what
//! reached it: idempotent messages ride out failures, a tool with side effects is sent once, and
//! the connection's circuit opens and then fails fast without sending anything.

use serde_json::{Map, Value, json};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use switchboard_agents::mcp::McpAgent;
use switchboard_core::{
    AgentKind, AgentSpec, AuthMethod, Caller, ConnectionSpec, CredentialMode, CredentialSpec, ErrorKind,
    RunContext, Secret,
};
use switchboard_govern::layers::{StandardCredentials, StaticGrants};
use switchboard_govern::retry::{BreakerPolicy, CircuitState, Resilience, RetryPolicy, UpstreamPolicy};
use switchboard_govern::{Connection, Gateway};
use switchboard_store::MemorySink;
use switchboard_testkit::everything_http;
use switchboard_testkit::fault_proxy::FaultProxy;

const CONNECTION: &str = "everything_mcp";
/// A tool server-everything annotates `readOnlyHint` and `idempotentHint`.
const IDEMPOTENT: &str = "echo";
/// A tool it annotates as neither: calling it flips a switch on the server.
const SIDE_EFFECT: &str = "toggle-simulated-logging";

/// A gateway whose default is one attempt and no breaker, and whose MCP connection has its own
/// policy (as `[resilience.connections.everything_mcp]` gives it): 3 attempts, and a circuit that
/// opens after `breaker_failures` consecutive failures.
fn gateway(proxy: &FaultProxy, breaker_failures: u32) -> (Arc<Gateway>, Arc<MemorySink>) {
    let mut spec = ConnectionSpec::new(CONNECTION, proxy.url());
    spec.allow_insecure_loopback = true;
    let connection = Arc::new(Connection::new(spec, None).expect("connection"));
    let grants = Arc::new(StaticGrants::default());
    grants.grant(CONNECTION, "mcp_users");
    let policy = UpstreamPolicy {
        retry: RetryPolicy {
            max_attempts: 3,
            base_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(200),
        },
        breaker: Some(BreakerPolicy { failures: breaker_failures, cool_down: Duration::from_secs(60) }),
    };
    let resilience = Resilience::new(RetryPolicy::off(), None).with_override(CONNECTION, policy);
    let sink = Arc::new(MemorySink::default());
    let gw = Gateway::builder(sink.clone(), Arc::new(StandardCredentials::new("sp")))
        .connections([connection], grants, "sp")
        .resilience(resilience)
        .build();
    (Arc::new(gw), sink)
}

fn agent(gw: &Arc<Gateway>) -> McpAgent {
    let mut spec = AgentSpec::new("everything", AgentKind::Mcp, "the MCP reference server's tools");
    spec.credential = CredentialSpec { mode: CredentialMode::Obo, ..Default::default() };
    spec.connection = Some(CONNECTION.into());
    spec.settings = json!({"url": "/mcp", "tools": [IDEMPOTENT, SIDE_EFFECT]});
    let spec = Arc::new(spec);
    McpAgent::new(spec.clone(), gw.egress(spec), Path::new("."), None).expect("agent")
}

fn ctx() -> RunContext {
    let caller =
        Caller::new("ann@example.com", "ann@example.com", vec!["mcp_users".into()], AuthMethod::Development)
            .with_token(Secret::new("tok-ann"));
    RunContext::new(caller, Duration::from_secs(30))
}

fn args(value: Value) -> Map<String, Value> {
    value.as_object().cloned().unwrap_or_default()
}

/// The `switchboard.http.retries` of the hop span of `tool`, if any retries were recorded.
fn retries(sink: &MemorySink, tool: &str) -> Option<u64> {
    sink.spans()
        .iter()
        .filter(|s| s.attributes.get("gen_ai.tool.name") == Some(&json!(tool)))
        .find_map(|s| s.attributes.get("switchboard.http.retries").and_then(Value::as_u64))
}

#[tokio::test]
async fn a_tools_list_rides_out_two_503s() {
    let (mut server, url) = everything_http().await;
    let proxy = FaultProxy::start(url.trim_end_matches("/mcp")).await;
    let (gw, sink) = gateway(&proxy, 5);
    let agent = agent(&gw);
    proxy.fail("tools/list", 2, 503);
    let tools = agent.tools(&ctx()).await.expect("the third attempt answers");
    assert_eq!(tools.len(), 2, "{tools:?}");
    assert_eq!(proxy.seen("tools/list"), 3, "two 503s and the answer");
    assert_eq!(retries(&sink, "tools/list"), Some(2), "the retries are on the hop's span");
    let circuit = gw.resilience().circuits().into_iter().find(|c| c.upstream == CONNECTION).expect("circuit");
    assert_eq!((circuit.state, circuit.failures), (CircuitState::Closed, 0), "a success closes the count");
    server.kill();
}

#[tokio::test]
async fn a_tools_call_with_side_effects_is_sent_once_and_an_idempotent_one_is_retried() {
    let (mut server, url) = everything_http().await;
    let proxy = FaultProxy::start(url.trim_end_matches("/mcp")).await;
    let (gw, sink) = gateway(&proxy, 5);
    let agent = agent(&gw);
    agent.tools(&ctx()).await.expect("tools/list");

    proxy.fail("tools/call", 1, 503);
    let e = agent.call_tool(&ctx(), SIDE_EFFECT, Map::new()).await.expect_err("the 503 is reported");
    assert_eq!(proxy.seen("tools/call"), 1, "a call that may have acted is not sent again");
    assert_eq!(e.kind, ErrorKind::Upstream);
    assert!(e.message.contains("HTTP 503"), "{}", e.message);
    assert!(
        e.message.contains("was not retried: the tool is not annotated readOnlyHint or idempotentHint"),
        "{}",
        e.message
    );
    assert!(!e.message.contains("tok-ann"), "{}", e.message);
    assert_eq!(retries(&sink, SIDE_EFFECT), None);

    proxy.fail("tools/call", 2, 503);
    let out = agent.call_tool(&ctx(), IDEMPOTENT, args(json!({"message": "hi"}))).await.expect("retried");
    assert_eq!(out.text, "Echo: hi");
    assert_eq!(proxy.seen("tools/call"), 4, "two 503s, then the answer");
    assert_eq!(retries(&sink, IDEMPOTENT), Some(2));
    server.kill();
}

#[tokio::test]
async fn the_mcp_servers_circuit_opens_and_fails_fast() {
    let (mut server, url) = everything_http().await;
    let proxy = FaultProxy::start(url.trim_end_matches("/mcp")).await;
    let (gw, sink) = gateway(&proxy, 2);
    let agent = agent(&gw);
    agent.tools(&ctx()).await.expect("tools/list");

    proxy.fail("tools/call", 2, 503);
    for _ in 0..2 {
        let e = agent.call_tool(&ctx(), SIDE_EFFECT, Map::new()).await.expect_err("503");
        assert!(e.message.contains("HTTP 503"), "{}", e.message);
    }
    let circuit = gw.resilience().circuits().into_iter().find(|c| c.upstream == CONNECTION).expect("circuit");
    assert_eq!((circuit.state, circuit.failures), (CircuitState::Open, 2), "{circuit:?}");

    let e =
        agent.call_tool(&ctx(), IDEMPOTENT, args(json!({"message": "hi"}))).await.expect_err("fails fast");
    assert_eq!(e.kind, ErrorKind::Unavailable, "{}", e.message);
    assert!(
        e.message.contains(&format!("circuit open for upstream `{CONNECTION}` after 2 consecutive failures")),
        "{}",
        e.message
    );
    assert_eq!(proxy.seen("tools/call"), 2, "nothing is sent while the circuit is open");
    let refused = sink.audit().into_iter().rev().find(|a| a.target == IDEMPOTENT).expect("an audit row");
    assert_eq!(refused.error_code.as_deref(), Some("unavailable"), "{refused:?}");
    server.kill();
}
