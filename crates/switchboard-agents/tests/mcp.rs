//! The `mcp` kind against the real reference server, `@modelcontextprotocol/server-everything`
//! (installed by `scripts/mcp-peers` into `tests/mcp-peers`), over streamable HTTP and stdio:
//! real child processes and sockets. A small recording proxy in front of the HTTP server shows
//! what goes over the wire and fakes the failures a real server rarely produces on demand.

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use switchboard_agents::mcp::{McpAgent, McpStatus};
use switchboard_core::{
    Agent, AgentInput, AgentKind, AgentOutput, AgentSpec, AuthMethod, Caller, ConnectionSpec, CredentialMode,
    CredentialSpec, Error, ErrorKind, RunContext, Secret,
};
use switchboard_govern::layers::{StandardCredentials, StaticGrants};
use switchboard_govern::{Connection, Gateway, reqwest};
use switchboard_llm::LlmClient;
use switchboard_store::MemorySink;
use switchboard_testkit::llm::{Script, ScriptedLlm};
use switchboard_testkit::logs::Logs;
use switchboard_testkit::{everything_http, everything_http_on, everything_js, free_port, node_package};

const CONNECTION: &str = "everything_mcp";

// ---------------------------------------------------------------------------------------------
// The reference server
// ---------------------------------------------------------------------------------------------

/// The base URL of server-everything's MCP endpoint `mcp_url` (`http://127.0.0.1:PORT/mcp`, as
/// [`switchboard_testkit::everything_http`] gives it): the connection's base URL, under which the
/// agents ask for `/mcp`.
fn base_url(mcp_url: &str) -> &str {
    mcp_url.strip_suffix("/mcp").unwrap_or_else(|| panic!("not an /mcp endpoint: {mcp_url}"))
}

/// The folder whose `node_modules` holds the MCP SDK server-everything is built on: an inline ES
/// module resolves its bare imports from its working directory, so a server written inline runs
/// there.
fn sdk_home() -> PathBuf {
    let sdk = node_package("@modelcontextprotocol/sdk/package.json");
    sdk.ancestors()
        .find(|dir| dir.ends_with("node_modules"))
        .and_then(Path::parent)
        .unwrap_or_else(|| panic!("{} is not under a node_modules folder", sdk.display()))
        .to_path_buf()
}

// ---------------------------------------------------------------------------------------------
// A recording, fault-injecting proxy
// ---------------------------------------------------------------------------------------------

/// One POST the proxy saw.
#[derive(Debug, Clone)]
struct Seen {
    rpc: String,
    tool: Option<String>,
    message: Option<String>,
    authorization: Option<String>,
    session: Option<String>,
    request_id: Option<String>,
    meta_traceparent: Option<String>,
}

struct ProxyState {
    /// The MCP endpoint relayed to.
    upstream: String,
    http: reqwest::Client,
    seen: Mutex<Vec<Seen>>,
    lose_session_once: AtomicBool,
}

/// Faults are chosen by the `echo` message: "explode" gets a JSON-RPC error (quoting the
/// request's Authorization header, as a careless server might), "hang" never gets an answer,
/// "huge" gets a 10 MB result and "enormous" a 20 MB one.
async fn relay(
    State(st): State<Arc<ProxyState>>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).map(str::to_string);
    if method == Method::POST {
        let msg: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let seen = Seen {
            rpc: msg["method"].as_str().unwrap_or("").to_string(),
            tool: msg["params"]["name"].as_str().map(str::to_string),
            message: msg["params"]["arguments"]["message"].as_str().map(str::to_string),
            authorization: header("authorization"),
            session: header("mcp-session-id"),
            request_id: header("x-request-id"),
            meta_traceparent: msg["params"]["_meta"]["traceparent"].as_str().map(str::to_string),
        };
        st.seen.lock().unwrap().push(seen.clone());
        if seen.rpc == "tools/call" {
            let id = msg["id"].clone();
            let text = seen.message.unwrap_or_default();
            if seen.session.is_some() && st.lose_session_once.swap(false, Ordering::SeqCst) {
                return (StatusCode::NOT_FOUND, "session not found").into_response();
            }
            if text.contains("explode") {
                let said = format!("the tool exploded (you sent {})", seen.authorization.unwrap_or_default());
                return axum::Json(
                    json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32001, "message": said}}),
                )
                .into_response();
            }
            if text.contains("hang") {
                tokio::time::sleep(Duration::from_secs(600)).await;
            }
            if text.contains("huge") || text.contains("enormous") {
                let mb = if text.contains("huge") { 10 } else { 20 };
                let big = "x".repeat(mb * 1024 * 1024);
                return axum::Json(
                    json!({"jsonrpc": "2.0", "id": id, "result": {"content": [{"type": "text", "text": big}]}}),
                )
                .into_response();
            }
        }
    }
    let mut request = st.http.request(method, st.upstream.as_str());
    for (k, v) in &headers {
        if k != header::HOST && k != header::CONTENT_LENGTH {
            request = request.header(k, v);
        }
    }
    let upstream = match request.body(body).send().await {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_GATEWAY, format!("upstream unreachable: {e}")).into_response(),
    };
    let mut out = Response::builder().status(upstream.status());
    for (k, v) in upstream.headers() {
        if k != header::TRANSFER_ENCODING && k != header::CONTENT_LENGTH {
            out = out.header(k, v);
        }
    }
    out.body(Body::from_stream(upstream.bytes_stream())).expect("a response")
}

struct Proxy {
    addr: SocketAddr,
    state: Arc<ProxyState>,
}

impl Proxy {
    async fn start(upstream: String) -> Self {
        let state = Arc::new(ProxyState {
            upstream,
            http: reqwest::Client::new(),
            seen: Mutex::default(),
            lose_session_once: AtomicBool::new(false),
        });
        let app = axum::Router::new().route("/mcp", axum::routing::any(relay)).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { addr, state }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }

    fn calls(&self) -> Vec<Seen> {
        self.seen().into_iter().filter(|s| s.rpc == "tools/call").collect()
    }
}

// ---------------------------------------------------------------------------------------------
// Agents, callers and the gateway
// ---------------------------------------------------------------------------------------------

fn gateway(base_url: &str) -> (Arc<Gateway>, Arc<MemorySink>) {
    let mut spec = ConnectionSpec::new(CONNECTION, base_url);
    spec.allow_insecure_loopback = true;
    let connection = Arc::new(Connection::new(spec, None).expect("connection"));
    let grants = Arc::new(StaticGrants::default());
    grants.grant(CONNECTION, "mcp_users");
    let sink = Arc::new(MemorySink::default());
    let gw = Gateway::builder(sink.clone(), Arc::new(StandardCredentials::new("sp")))
        .connections([connection], grants, "sp")
        .build();
    (Arc::new(gw), sink)
}

fn agent_spec(settings: Value, connection: bool) -> Arc<AgentSpec> {
    Arc::new(AgentSpec {
        name: "everything".into(),
        kind: AgentKind::Mcp,
        description: "the MCP reference server's tools".into(),
        examples: vec![],
        credential: CredentialSpec { mode: CredentialMode::Obo, ..Default::default() },
        allowed_roles: None,
        timeout_ms: None,
        connection: connection.then(|| CONNECTION.to_string()),
        settings,
        tool_roles: None,
        guardrails: None,
    })
}

fn http_agent(gw: &Arc<Gateway>, settings: Value) -> McpAgent {
    let spec = agent_spec(settings, true);
    McpAgent::new(spec.clone(), gw.egress(spec), Path::new("."), None).expect("agent")
}

fn stdio_agent(gw: &Arc<Gateway>, mut settings: Value) -> McpAgent {
    settings["command"] = json!("node");
    settings["args"] = json!([everything_js(), "stdio"]);
    let spec = agent_spec(settings, false);
    McpAgent::new(spec.clone(), gw.egress(spec), Path::new("."), None).expect("agent")
}

fn ctx(n: usize) -> RunContext {
    let email = format!("user{n}@example.com");
    let caller = Caller::new(email.clone(), email, vec!["mcp_users".into()], AuthMethod::Development)
        .with_token(Secret::new(format!("tok-user-{n}")));
    RunContext::new(caller, Duration::from_secs(30))
}

async fn ask(agent: &McpAgent, n: usize, question: &str) -> Result<AgentOutput, Error> {
    agent.invoke(&ctx(n), &AgentInput::new(question)).await
}

const ALLOWED: [&str; 3] = ["echo", "get-sum", "get-tiny-image"];

/// The checks both transports pass.
async fn answers_echo_and_sum_and_refuses_the_rest(agent: &McpAgent) {
    let tools = agent.tools(&ctx(1)).await.expect("tools/list");
    let mut names: Vec<&str> = tools.iter().map(|t| t.name.as_str()).collect();
    names.sort();
    assert_eq!(names, ALLOWED, "only the allowed tools are visible");
    assert!(tools.iter().all(|t| t.input_schema["type"] == "object"));

    let out = ask(agent, 1, "echo hello world").await.expect("echo");
    assert_eq!(out.text, "Echo: hello world");
    assert_eq!(out.data.as_ref().expect("data")["tool"], "echo");

    let out = ask(agent, 1, "what is the sum of 2 and 40").await.expect("get-sum");
    assert!(out.text.contains("42"), "{}", out.text);
    let data = out.data.expect("data");
    assert_eq!(
        (data["tool"].as_str(), data["arguments"]["a"].as_f64(), data["arguments"]["b"].as_f64()),
        (Some("get-sum"), Some(2.0), Some(40.0))
    );

    let out = ask(agent, 1, "show me the tiny image").await.expect("image");
    assert!(out.text.contains("[image: image/png, "), "summarised, not dropped: {}", out.text);

    let e = ask(agent, 1, "please run get-env").await.expect_err("outside the allow-list");
    assert_eq!(e.kind, ErrorKind::Denied);
    assert!(e.message.contains("`get-env`"), "{}", e.message);
    let e = agent.call_tool(&ctx(1), "get-env", Map::new()).await.expect_err("refused by name");
    assert_eq!(e.kind, ErrorKind::Denied);
    assert!(e.message.contains("`get-env`"), "{}", e.message);
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn over_http_tools_are_listed_and_questions_reach_the_right_tool() {
    let (mut server, url) = everything_http().await;
    let (gw, sink) = gateway(base_url(&url));
    let agent = http_agent(&gw, json!({"url": "/mcp", "tools": ALLOWED}));
    assert_eq!(agent.status(), McpStatus::Idle, "nothing happens before first use");
    answers_echo_and_sum_and_refuses_the_rest(&agent).await;
    assert!(matches!(agent.status(), McpStatus::Connected { pid: None, .. }), "{:?}", agent.status());
    agent.health().await.expect("healthy");

    let audit = sink.audit();
    assert!(audit.iter().any(|a| a.target == "tools/list" && a.caller_email == "user1@example.com"));
    assert!(audit.iter().any(|a| a.target == "get-sum"), "each tools/call is a governed hop");
    assert!(!audit.iter().any(|a| a.target == "get-env"), "a refused tool is never called");
    let spans = sink.spans();
    let call = spans
        .iter()
        .find(|s| s.attributes.get("gen_ai.tool.name") == Some(&json!("get-sum")))
        .expect("the call's span");
    assert_eq!(call.attributes.get("mcp.method.name"), Some(&json!("tools/call")));
    for text in spans
        .iter()
        .map(|s| serde_json::to_string(s).unwrap())
        .chain(audit.iter().map(|a| serde_json::to_string(a).unwrap()))
    {
        assert!(!text.contains("tok-user"), "no token in spans or audit rows: {text}");
    }
    server.kill();
}

#[tokio::test]
async fn over_stdio_tools_are_listed_and_questions_reach_the_right_tool() {
    let (gw, _) = gateway("http://127.0.0.1:9");
    let agent = stdio_agent(&gw, json!({"tools": ALLOWED}));
    answers_echo_and_sum_and_refuses_the_rest(&agent).await;
}

#[tokio::test]
async fn a_stdio_server_gets_only_its_own_environment_and_dies_with_the_agent() {
    let (gw, _) = gateway("http://127.0.0.1:9");
    let agent = stdio_agent(&gw, json!({"tools": ["get-env"], "env": {"SWITCHBOARD_MCP_GREETING": "hello"}}));
    agent.health().await.expect("health starts a stdio server");
    let McpStatus::Connected { pid: Some(pid), .. } = agent.status() else {
        panic!("connected with a child: {:?}", agent.status())
    };
    assert!(alive(pid));

    let out = agent.call_tool(&ctx(1), "get-env", Map::new()).await.expect("get-env");
    assert!(out.text.contains("SWITCHBOARD_MCP_GREETING"), "{}", out.text);
    // Cargo gives the test process these; the child must not inherit them.
    for leaked in ["CARGO_MANIFEST_DIR", "CARGO_PKG_NAME", "RUST_TEST_THREADS"] {
        if std::env::var_os(leaked).is_some() {
            assert!(!out.text.contains(leaked), "{leaked} leaked into the child: {}", out.text);
        }
    }

    drop(agent);
    for _ in 0..100 {
        if !alive(pid) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the stdio server {pid} outlived its agent");
}

/// Whether `pid` runs (a zombie waiting to be reaped does not).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.rsplit(')').next().is_some_and(|rest| !rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => false,
    }
}

#[tokio::test]
async fn concurrent_callers_share_one_session_and_each_sends_its_own_token() {
    let (mut server, url) = everything_http().await;
    let proxy = Proxy::start(url).await;
    let (gw, _) = gateway(&proxy.url());
    let agent = Arc::new(http_agent(&gw, json!({"url": "/mcp", "tools": ["echo"]})));

    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..10 {
        let agent = agent.clone();
        tasks.spawn(async move {
            let ctx = ctx(n);
            let out = agent.invoke(&ctx, &AgentInput::new(format!("echo caller {n} says hi"))).await;
            (n, ctx, out)
        });
    }
    let mut contexts = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let (n, ctx, out) = joined.expect("task");
        assert_eq!(out.expect("echo").text, format!("Echo: caller {n} says hi"));
        contexts.push((n, ctx));
    }

    let seen = proxy.seen();
    let inits: Vec<&Seen> = seen.iter().filter(|s| s.rpc == "initialize").collect();
    assert_eq!(inits.len(), 1, "one session for all callers: {seen:#?}");
    let sessions: std::collections::HashSet<&str> =
        seen.iter().filter_map(|s| s.session.as_deref()).collect();
    assert_eq!(sessions.len(), 1, "every request after initialize carries the one session id");

    let calls = proxy.calls();
    assert_eq!(calls.len(), 10);
    for call in &calls {
        let message = call.message.as_deref().expect("a message");
        let n: usize = message.split(' ').nth(1).and_then(|n| n.parse().ok()).expect("caller number");
        let (_, ctx) = contexts.iter().find(|(m, _)| *m == n).expect("that caller");
        assert_eq!(call.authorization.as_deref(), Some(format!("Bearer tok-user-{n}").as_str()), "{call:?}");
        assert_eq!(call.request_id.as_deref(), Some(ctx.request_id.as_str()), "x-request-id is the caller's");
        let traceparent = call.meta_traceparent.as_deref().expect("_meta.traceparent on every tools/call");
        assert!(
            traceparent.starts_with(&format!("00-{}-", ctx.trace.trace_id)),
            "the caller's trace: {traceparent}"
        );
    }
    // The session-level requests were made inside a caller's hop and carry that caller's token.
    for s in seen.iter().filter(|s| s.rpc == "initialize" || s.rpc == "tools/list") {
        assert!(s.meta_traceparent.is_some() && s.request_id.is_some(), "{s:?}");
        let auth = s.authorization.as_deref().unwrap_or_default();
        assert!(auth.starts_with("Bearer tok-user-"), "{s:?}");
    }
    server.kill();
}

#[tokio::test]
async fn a_lost_session_is_reopened_and_the_call_still_succeeds() {
    let port = free_port();
    let (mut server, url) = everything_http_on(port).await;
    let proxy = Proxy::start(url).await;
    let (gw, _) = gateway(&proxy.url());
    let agent = http_agent(&gw, json!({"url": "/mcp", "tools": ["echo"]}));
    assert_eq!(ask(&agent, 1, "echo one").await.expect("first").text, "Echo: one");

    // The spec's way: HTTP 404 for the session.
    proxy.state.lose_session_once.store(true, Ordering::SeqCst);
    assert_eq!(ask(&agent, 2, "echo two").await.expect("after a 404").text, "Echo: two");
    let inits: Vec<Seen> = proxy.seen().into_iter().filter(|s| s.rpc == "initialize").collect();
    assert_eq!(inits.len(), 2, "re-initialized once");
    assert_eq!(inits[1].authorization.as_deref(), Some("Bearer tok-user-2"), "by the caller who needed it");

    // A restarted server, which forgets every session (server-everything answers 400).
    server.kill();
    let (mut server, _) = everything_http_on(port).await;
    assert_eq!(ask(&agent, 3, "echo three").await.expect("after a restart").text, "Echo: three");
    let sessions: std::collections::HashSet<String> =
        proxy.calls().into_iter().filter_map(|s| s.session).collect();
    assert_eq!(sessions.len(), 3, "three sessions: the first, after the 404, after the restart");
    server.kill();
}

#[tokio::test]
async fn failures_are_clear_errors_and_the_agent_answers_the_next_request() {
    let (mut server, url) = everything_http().await;
    let proxy = Proxy::start(url).await;
    let (gw, _) = gateway(&proxy.url());
    let agent = http_agent(&gw, json!({"url": "/mcp", "tools": ["echo", "get-sum"], "timeout_ms": 3000}));
    let still_fine = || async {
        assert_eq!(ask(&agent, 1, "echo fine").await.expect("next good request").text, "Echo: fine")
    };

    let e = ask(&agent, 1, "what is the sum of 2").await.expect_err("b is missing");
    assert_eq!(e.kind, ErrorKind::InvalidInput);
    assert_eq!(e.message, "the `get-sum` tool needs `b` (a number): none found in the question");
    let e = agent
        .call_tool(&ctx(1), "get-sum", json!({"a": 2, "b": "forty"}).as_object().cloned().unwrap())
        .await;
    let e = e.expect_err("checked against the schema before the call");
    assert_eq!(e.kind, ErrorKind::InvalidInput);
    assert!(e.message.contains("`b`"), "{}", e.message);
    assert!(!proxy.calls().iter().any(|c| c.tool.as_deref() == Some("get-sum")), "nothing invalid was sent");
    still_fine().await;

    let e = ask(&agent, 7, "echo explode").await.expect_err("a JSON-RPC error");
    assert_eq!(e.kind, ErrorKind::Upstream);
    assert!(e.message.contains("-32001") && e.message.contains("the tool exploded"), "{}", e.message);
    assert!(!e.message.contains("tok-user-7"), "the token echoed by the server is scrubbed: {}", e.message);
    still_fine().await;

    let started = std::time::Instant::now();
    let e = ask(&agent, 1, "echo hang").await.expect_err("hangs past the timeout");
    assert_eq!(e.kind, ErrorKind::Timeout, "{}", e.message);
    assert!(started.elapsed() < Duration::from_secs(10));
    still_fine().await;

    let out = ask(&agent, 1, "echo huge").await.expect("a huge result is truncated, not an error");
    assert!(out.text.len() < 1_100_000, "{}", out.text.len());
    assert!(out.text.ends_with("[truncated: the `echo` result is 10.5 MB; the first 1.0 MB are shown]"));
    assert_eq!(out.data.expect("data")["truncated"], true);
    still_fine().await;

    let e = ask(&agent, 1, "echo enormous").await.expect_err("beyond what the transport reads");
    assert_eq!(e.kind, ErrorKind::Upstream);
    assert!(e.message.contains("larger than 16777216 bytes"), "{}", e.message);
    still_fine().await;

    let cancelled = ctx(1);
    let cancel = cancelled.cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        cancel.cancel();
    });
    let e = agent.invoke(&cancelled, &AgentInput::new("echo hang")).await.expect_err("cancelled");
    assert_eq!(e.kind, ErrorKind::Cancelled);
    still_fine().await;
    server.kill();
}

#[tokio::test]
async fn a_server_that_is_down_is_an_upstream_error_until_it_comes_up() {
    let port = free_port();
    let (gw, _) = gateway(&format!("http://127.0.0.1:{port}"));
    let agent = http_agent(&gw, json!({"url": "/mcp", "timeout_ms": 5000}));
    let e = ask(&agent, 1, "echo anyone there").await.expect_err("down");
    assert_eq!(e.kind, ErrorKind::Upstream);
    assert!(e.message.contains("unreachable"), "{}", e.message);
    let e = agent.health().await.expect_err("unhealthy");
    assert!(e.message.starts_with("not connected:") && e.message.contains("unreachable"), "{}", e.message);
    assert!(matches!(agent.status(), McpStatus::Disconnected { .. }));

    let (mut server, _) = everything_http_on(port).await;
    agent.health().await.expect("reachable again");
    assert_eq!(ask(&agent, 1, "echo anyone there").await.expect("up").text, "Echo: anyone there");

    server.kill();
    let e = ask(&agent, 1, "echo gone again").await.expect_err("down again");
    assert_eq!(e.kind, ErrorKind::Upstream, "{}", e.message);
    let (mut server, _) = everything_http_on(port).await;
    assert_eq!(ask(&agent, 1, "echo back").await.expect("back").text, "Echo: back");
    server.kill();
}

#[tokio::test]
async fn with_a_model_the_model_picks_among_the_allowed_tools_only() {
    let (mut server, url) = everything_http().await;
    let (gw, _) = gateway(base_url(&url));
    // The model picks `get-sum` with its arguments.
    let fake = ScriptedLlm::start(Script::answering(&json!({"role": "assistant", "content": null,
        "tool_calls": [{"id": "c1", "type": "function",
            "function": {"name": "get-sum", "arguments": "{\"a\": 2, \"b\": 40}"}}]})))
    .await;

    let llm_spec = Arc::new(AgentSpec {
        name: "llm".into(),
        connection: None,
        ..(*agent_spec(Value::Null, false)).clone()
    });
    let llm = LlmClient::new(gw.egress(llm_spec), fake.base_url(), "fake-model");
    let spec = agent_spec(json!({"url": "/mcp", "tools": ["echo", "get-sum"]}), true);
    let agent = McpAgent::new(spec.clone(), gw.egress(spec), Path::new("."), Some(llm)).expect("agent");

    let out = ask(&agent, 1, "add two and forty").await.expect("the model's pick");
    assert!(out.text.contains("42"), "{}", out.text);
    let body = fake.requests()[0].clone();
    let mut offered: Vec<&str> =
        body["tools"].as_array().unwrap().iter().filter_map(|t| t["function"]["name"].as_str()).collect();
    offered.sort();
    assert_eq!(offered, ["echo", "get-sum"], "only allowed tools are offered");
    let sum = body["tools"].as_array().unwrap().iter().find(|t| t["function"]["name"] == "get-sum").unwrap();
    assert_eq!(sum["function"]["parameters"]["required"], json!(["a", "b"]), "with the tool's own schema");
    server.kill();
}

#[tokio::test]
async fn an_allow_listed_tool_the_server_does_not_offer_is_reported_and_the_others_still_work() {
    // A thread-local subscriber sees the agent's logs: `tokio::test` runs everything on this thread.
    let captured = Logs::default();
    let _logs = tracing::subscriber::set_default(captured.subscriber(tracing::Level::WARN));

    let (mut server, url) = everything_http().await;
    let (gw, sink) = gateway(base_url(&url));
    let agent = http_agent(&gw, json!({"url": "/mcp", "tools": ["echo", "no-such-tool"]}));
    assert_eq!(ask(&agent, 1, "echo still here").await.expect("echo").text, "Echo: still here");
    let names: Vec<String> = agent.tools(&ctx(1)).await.expect("tools").into_iter().map(|t| t.name).collect();
    assert_eq!(names, ["echo"]);

    let state = agent.state().expect("a state");
    assert!(state.starts_with("connected to "), "{state}");
    assert!(
        state.ends_with("; the allow-list names tools the server does not offer: `no-such-tool`"),
        "{state}"
    );

    let e = agent.call_tool(&ctx(1), "no-such-tool", Map::new()).await.expect_err("not offered");
    assert_eq!(e.kind, ErrorKind::NotFound, "{}", e.message);
    assert!(
        e.message.contains("does not offer the tool `no-such-tool`")
            && e.message.contains("agent `everything` (mcp.tools)"),
        "{}",
        e.message
    );
    let e = ask(&agent, 1, "please run no-such-tool").await.expect_err("asked for by name");
    assert_eq!(e.kind, ErrorKind::NotFound, "{}", e.message);
    assert!(e.message.contains("does not offer the tool `no-such-tool`"), "{}", e.message);
    assert!(!sink.audit().iter().any(|a| a.target == "no-such-tool"), "never called");
    assert_eq!(ask(&agent, 1, "echo after all that").await.expect("echo").text, "Echo: after all that");

    let logs = captured.text();
    let warnings: Vec<&str> = logs.lines().filter(|l| l.contains("does not offer")).collect();
    let lists = sink.audit().iter().filter(|a| a.target == "tools/list").count();
    assert!(lists >= 1);
    assert_eq!(warnings.len(), lists, "one warning per tool list: {logs}");
    for warning in warnings {
        assert!(
            warning.contains("WARN")
                && warning.contains("agent=everything")
                && warning.contains("`no-such-tool`")
                && !warning.contains("`echo`"),
            "{warning}"
        );
    }
    server.kill();
}

#[tokio::test]
async fn configuration_mistakes_are_reported_by_field_and_new_does_no_io() {
    let (gw, _) = gateway("http://127.0.0.1:9");
    let build = |settings: Value, connection: bool| {
        let spec = agent_spec(settings, connection);
        McpAgent::new(spec.clone(), gw.egress(spec), Path::new("."), None).map(|_| ())
    };
    let e = build(json!({}), false).expect_err("no transport");
    assert_eq!(e.kind, ErrorKind::Config);
    assert!(e.message.starts_with("mcp.url:") && e.message.contains("no transport"), "{}", e.message);
    let e = build(json!({"url": "http://127.0.0.1:9/mcp"}), false).expect_err("http without a connection");
    assert!(e.message.starts_with("mcp.url:") && e.message.contains("connection"), "{}", e.message);
    let e = build(json!({"url": "http://evil.example.com/mcp"}), true).expect_err("outside the connection");
    assert!(e.message.starts_with("mcp.url:") && e.message.contains("evil.example.com"), "{}", e.message);
    // Port 9 (discard) has nothing listening: building still succeeds, since nothing is contacted.
    build(json!({"url": "/mcp"}), true).expect("lazy");
    build(json!({}), true).expect("the connection's base_url");
    build(json!({"command": "/nonexistent/mcp-server"}), false).expect("not started yet");
}

#[tokio::test]
async fn a_stdio_server_that_cannot_start_is_a_clear_error() {
    let (gw, _) = gateway("http://127.0.0.1:9");
    let spec = agent_spec(json!({"command": "/nonexistent/mcp-server"}), false);
    let agent = McpAgent::new(spec.clone(), gw.egress(spec), Path::new("."), None).expect("agent");
    let e = ask(&agent, 1, "echo hi").await.expect_err("cannot start");
    assert_eq!(e.kind, ErrorKind::Upstream);
    assert!(e.message.contains("could not be started"), "{}", e.message);
    let e = agent.health().await.expect_err("unhealthy");
    assert!(e.message.starts_with("not connected:"), "{}", e.message);

    let script = "console.error('missing MCP_CONFIG'); process.exit(3)";
    let spec = agent_spec(json!({"command": "node", "args": ["-e", script]}), false);
    let agent = McpAgent::new(spec.clone(), gw.egress(spec), Path::new("."), None).expect("agent");
    let e = ask(&agent, 1, "echo hi").await.expect_err("exits at once");
    assert_eq!(e.kind, ErrorKind::Upstream);
    assert!(e.message.contains("before it initialized"), "{}", e.message);
    assert!(e.message.ends_with("its last words on stderr: missing MCP_CONFIG"), "{}", e.message);
}

/// A stdio server on the SDK that server-everything is built on, whose `bump` tool adds a tool
/// (the SDK then sends `notifications/tools/list_changed`).
const CHANGING_SERVER: &str = r#"
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StdioServerTransport } from "@modelcontextprotocol/sdk/server/stdio.js";
const server = new McpServer({ name: "changing", version: "1.0.0" }, { capabilities: { tools: { listChanged: true } } });
server.registerTool("bump", { description: "Adds the added tool" }, async () => {
  server.registerTool("added", { description: "Appears after bump" }, async () => ({ content: [{ type: "text", text: "added here" }] }));
  return { content: [{ type: "text", text: "bumped" }] };
});
await server.connect(new StdioServerTransport());
"#;

#[tokio::test]
async fn the_tool_list_is_cached_until_the_server_says_it_changed() {
    let (gw, sink) = gateway("http://127.0.0.1:9");
    let settings =
        json!({"command": "node", "args": ["--input-type=module", "-e", CHANGING_SERVER], "cwd": sdk_home()});
    let spec = agent_spec(settings, false);
    let agent = McpAgent::new(spec.clone(), gw.egress(spec), Path::new("."), None).expect("agent");
    let names =
        |tools: Vec<switchboard_agents::mcp::McpTool>| tools.into_iter().map(|t| t.name).collect::<Vec<_>>();

    // A list_changed may arrive right after initialize; wait until one listing sticks.
    let mut listed = names(agent.tools(&ctx(1)).await.expect("tools/list"));
    for _ in 0..50 {
        if agent.cached_tools().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        listed = names(agent.tools(&ctx(1)).await.expect("tools/list"));
    }
    assert_eq!(listed, ["bump"]);
    let lists = || sink.audit().iter().filter(|a| a.target == "tools/list").count();
    let before = lists();
    agent.tools(&ctx(1)).await.expect("cached");
    assert_eq!(lists(), before, "a cached list is not fetched again");

    assert_eq!(agent.call_tool(&ctx(1), "bump", Map::new()).await.expect("bump").text, "bumped");
    for _ in 0..100 {
        if agent.cached_tools().is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(agent.cached_tools().is_none(), "notifications/tools/list_changed drops the cache");
    let mut listed = names(agent.tools(&ctx(1)).await.expect("tools/list again"));
    listed.sort();
    assert_eq!(listed, ["added", "bump"]);
    assert_eq!(agent.call_tool(&ctx(1), "added", Map::new()).await.expect("the new tool").text, "added here");
}
