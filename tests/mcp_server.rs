//! The supervisor as an MCP server, driven by an outside client: the official MCP inspector CLI
//! (`@modelcontextprotocol/inspector`, installed by `scripts/mcp-peers`) against the real
//! `switchboard` binary — `switchboard serve` at `/mcp` with a bearer token, and `switchboard mcp`
//! over stdio. The tool list is per caller (frank, an admin, may use `audit`; alice may not), a
//! call is a governed run with its audit rows, a per-agent tool asks its agent directly (not the
//! router), a denial is a tool error, arguments that do not fit a tool's input schema are a tool
//! error too, and an unknown tool is JSON-RPC invalid params. The tool list follows grants and the
//! roles the caller's token carries, with `notifications/tools/list_changed`.
//!
//! Without Node.js the test is skipped (loudly); with Node.js but without the inspector it fails.

use serde_json::{Value, json};
use std::ffi::OsString;
use std::path::Path;
use std::time::Duration;
use switchboard_testkit::inspector::{self, InspectorRun};
use switchboard_testkit::{Serve, inspector_js, run_cli, skip_without_node};

const BIN: &str = env!("CARGO_BIN_EXE_switchboard");
const ALICE: &str = "alice@example.com";
const FRANK: &str = "frank@example.com";
const HOTEL: &str = "What is the hotel limit in the travel policy?";

/// How the inspector reaches the server.
enum Target<'a> {
    /// Streamable HTTP at `url` with a bearer token (or none).
    Http { url: &'a str, token: Option<&'a str> },
    /// `switchboard mcp --as EMAIL` over stdio.
    Stdio { user: &'a str },
    /// `switchboard mcp` over stdio with the caller's token in `SWITCHBOARD_TOKEN`.
    StdioToken { token: &'a str },
}

/// Runs the inspector CLI once, keeping its state files (and switchboard's data) in `home`.
async fn inspect(home: &Path, target: Target<'_>, args: &[&str]) -> InspectorRun {
    let mut all: Vec<OsString> = args.iter().map(OsString::from).collect();
    let mut push = |items: &[&str]| all.extend(items.iter().map(OsString::from));
    match target {
        Target::Http { url, token } => {
            push(&["--transport", "http", url]);
            if let Some(token) = token {
                push(&["--header", &format!("Authorization: Bearer {token}")]);
            }
        }
        Target::Stdio { user } => {
            // The server process gets the same data directory (demo key, store) as `serve`.
            push(&["-e", &format!("SWITCHBOARD_HOME={}", home.display())]);
            push(&["--transport", "stdio", "--", BIN, "mcp", "--as", user]);
        }
        Target::StdioToken { token } => {
            push(&["-e", &format!("SWITCHBOARD_HOME={}", home.display())]);
            push(&["-e", &format!("SWITCHBOARD_TOKEN={token}")]);
            push(&["--transport", "stdio", "--", BIN, "mcp"]);
        }
    }
    inspector::inspect(home, &all, Duration::from_secs(120)).await
}

/// A development token for `user`, from the same data directory as the server.
fn token(home: &Path, user: &str) -> String {
    run_cli(Path::new(BIN), &["token", "--as", user], &[("SWITCHBOARD_HOME", home)])
}

fn text_of(result: &Value) -> String {
    result["content"].as_array().into_iter().flatten().filter_map(|c| c["text"].as_str()).collect()
}

/// Whether `test` is skipped for want of Node.js; with Node.js, the inspector must be installed.
fn skip_without_inspector(test: &str) -> bool {
    if skip_without_node(test, "scripts/mcp-peers to test with the MCP inspector") {
        return true;
    }
    // Fails here, naming scripts/mcp-peers, when the inspector is not installed.
    inspector_js();
    false
}

/// The audit rows of one request, read back with `switchboard audit`.
fn audit_rows(home: &Path, request_id: &str) -> Vec<Value> {
    let args = ["audit", "--json", "--request", request_id];
    serde_json::from_str::<Value>(&run_cli(Path::new(BIN), &args, &[("SWITCHBOARD_HOME", home)]))
        .expect("audit --json")
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// A bare MCP session over streamable HTTP, for what the inspector checks on the client side
/// before the server could answer (unknown tools, arguments against the input schema).
struct RawSession {
    client: reqwest::Client,
    url: String,
    token: String,
    session: String,
}

impl RawSession {
    async fn open(url: &str, token: &str) -> Self {
        let client = reqwest::Client::new();
        let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "test", "version": "0"}}});
        let response = Self::post(&client, url, token, None, &init).await;
        let session = response
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .expect("a session id")
            .to_string();
        let raw = Self { client, url: url.to_string(), token: token.to_string(), session };
        Self::message(response).await;
        let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        let response = Self::post(&raw.client, &raw.url, &raw.token, Some(&raw.session), &initialized).await;
        assert!(response.status().is_success(), "initialized: {}", response.status());
        raw
    }

    async fn post(
        client: &reqwest::Client,
        url: &str,
        token: &str,
        session: Option<&str>,
        body: &Value,
    ) -> reqwest::Response {
        let mut request = client
            .post(url)
            .bearer_auth(token)
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-06-18")
            .json(body);
        if let Some(session) = session {
            request = request.header("mcp-session-id", session);
        }
        request.send().await.expect("the server answers")
    }

    /// The JSON-RPC message of a response, plain JSON or the `data:` of an event stream.
    async fn message(response: reqwest::Response) -> Value {
        let text = response.text().await.expect("a body");
        let json = text
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(str::trim)
            .rfind(|l| !l.is_empty())
            .unwrap_or(text.trim());
        serde_json::from_str(json).unwrap_or_else(|e| panic!("not a JSON-RPC message ({e}): {text}"))
    }

    async fn list(&self) -> Vec<String> {
        let body = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/list"});
        let said =
            Self::message(Self::post(&self.client, &self.url, &self.token, Some(&self.session), &body).await)
                .await;
        let mut names: Vec<String> = said["result"]["tools"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t["name"].as_str().map(str::to_string))
            .collect();
        names.sort_unstable();
        names
    }

    /// The same session, its requests carrying `token` instead (a refreshed token, or someone
    /// else's).
    fn with_token(&self, token: &str) -> Self {
        Self {
            client: self.client.clone(),
            url: self.url.clone(),
            token: token.to_string(),
            session: self.session.clone(),
        }
    }

    /// The session's standalone event stream, where the server's notifications arrive.
    async fn events(&self) -> reqwest::Response {
        let response = self
            .client
            .get(&self.url)
            .bearer_auth(&self.token)
            .header("accept", "text/event-stream")
            .header("mcp-protocol-version", "2025-06-18")
            .header("mcp-session-id", &self.session)
            .send()
            .await
            .expect("the server answers");
        assert!(response.status().is_success(), "GET /mcp: {}", response.status());
        response
    }

    async fn call(&self, params: Value) -> Value {
        let body = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": params});
        Self::message(Self::post(&self.client, &self.url, &self.token, Some(&self.session), &body).await)
            .await
    }
}

#[tokio::test]
async fn the_inspector_lists_and_calls_the_supervisor_over_http_with_a_bearer_token() {
    if skip_without_inspector("the_inspector_lists_and_calls_the_supervisor_over_http_with_a_bearer_token") {
        return;
    }
    let scratch = tempfile::tempdir().expect("temp home");
    let home = scratch.path();
    let mut server =
        Serve::start(Path::new(BIN), None, &[("SWITCHBOARD_HOME", &home.display().to_string())]).await;
    let url = format!("{}/mcp", server.url());

    // No token: 401 at the edge, like every other route.
    let status = reqwest::Client::new()
        .post(&url)
        .header("accept", "application/json, text/event-stream")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}}))
        .send()
        .await
        .expect("the server answers")
        .status();
    assert_eq!(status.as_u16(), 401);
    let anonymous = inspect(home, Target::Http { url: &url, token: None }, &["--method", "tools/list"]).await;
    assert!(!anonymous.success, "tools/list without a token must fail");

    let (alice, frank) = (token(home, ALICE), token(home, FRANK));
    let listed = |token: String| {
        let url = url.clone();
        async move {
            inspect(home, Target::Http { url: &url, token: Some(&token) }, &["--method", "tools/list"]).await
        }
    };
    let alice_tools = listed(alice.clone()).await;
    assert!(alice_tools.success, "tools/list as alice failed: {}", alice_tools.stderr);
    let alice_names = alice_tools.tool_names();
    let frank_tools = listed(frank.clone()).await;
    assert!(frank_tools.success, "tools/list as frank failed: {}", frank_tools.stderr);
    let frank_names = frank_tools.tool_names();
    assert!(
        alice_names.contains(&"ask".to_string()) && alice_names.contains(&"policies".to_string()),
        "{alice_names:?}"
    );
    assert!(!alice_names.contains(&"audit".to_string()), "alice may not use audit: {alice_names:?}");
    assert!(frank_names.contains(&"audit".to_string()), "frank (admin) may use audit: {frank_names:?}");
    let schema = &alice_tools.json()["tools"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|t| t["name"] == "ask")
        .cloned()
        .unwrap_or_default()["inputSchema"];
    assert_eq!(schema["required"], json!(["question"]), "{schema}");

    // `ask`: the answer, its citation and request id, as text and as structured content.
    let question = format!("question={HOTEL}");
    let ask = ["--method", "tools/call", "--tool-name", "ask", "--tool-arg", question.as_str()];
    let run = inspect(home, Target::Http { url: &url, token: Some(&alice) }, &ask).await;
    assert!(run.success, "ask failed: {}", run.stderr);
    let result = run.json();
    assert_eq!(result["isError"], Value::Bool(false), "{result}");
    let structured = &result["structuredContent"];
    assert_eq!(structured["status"], "ok", "{result}");
    assert_eq!(structured["agents"], json!(["policies"]), "{result}");
    assert!(!structured["citations"].as_array().map(Vec::is_empty).unwrap_or(true), "{result}");
    let citations = structured["citations"].as_array().into_iter().flatten();
    let unguarded = citations.filter(|c| c.get("snippet").is_some()).count();
    assert_eq!(unguarded, 0, "a snippet never passed the output guardrails: {result}");
    let request_id = structured["request_id"].as_str().expect("a request id").to_string();
    assert!(text_of(&result).contains(&request_id), "the text names the request id: {result}");
    // A normal governed run: its hops are in the audit log, as alice.
    let rows = audit_rows(home, &request_id);
    assert!(!rows.is_empty(), "no audit rows for {request_id}");
    assert!(rows.iter().all(|r| r["caller_email"] == ALICE), "the hops ran as alice: {rows:?}");
    assert!(rows.iter().any(|r| r["agent"] == "policies"), "{rows:?}");

    // A denied run is a tool result with isError and the denial.
    let denied_q = "question=show recent denied requests in the audit log";
    let args = ["--method", "tools/call", "--tool-name", "ask", "--tool-arg", denied_q];
    let run = inspect(home, Target::Http { url: &url, token: Some(&alice) }, &args).await;
    // The inspector exits non-zero for an `isError` result, and still prints the result: a
    // tool error, not a protocol error.
    assert!(run.stderr.contains("tool_is_error"), "a denial is a tool result: {}", run.stderr);
    let result = run.json();
    assert_eq!(result["isError"], Value::Bool(true), "{result}");
    assert_eq!(result["structuredContent"]["status"], "denied", "{result}");
    assert!(!text_of(&result).contains(&alice), "the token never appears in a result");

    // The per-agent tool: frank asks `audit` directly.
    let args = [
        "--method",
        "tools/call",
        "--tool-name",
        "audit",
        "--tool-arg",
        "question=show recent denied requests",
    ];
    let run = inspect(home, Target::Http { url: &url, token: Some(&frank) }, &args).await;
    assert!(run.success, "audit as frank failed: {}", run.stderr);
    let result = run.json();
    assert_eq!(result["isError"], Value::Bool(false), "{result}");
    assert_eq!(result["structuredContent"]["agents"], json!(["audit"]), "{result}");
    // It asks `audit` directly: a question the router would send to `policies` still goes to
    // `audit`, as a governed run whose hops are audited as frank. `audit` needs no question (its
    // parameters all have defaults), so its schema requires none.
    let frank_listed = listed(frank.clone()).await.json();
    let audit_schema = frank_listed["tools"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|t| t["name"] == "audit")
        .map(|t| t["inputSchema"].clone())
        .unwrap_or_default();
    assert_eq!(audit_schema["required"], json!([]), "{audit_schema}");
    let hotel = ["--method", "tools/call", "--tool-name", "audit", "--tool-arg", question.as_str()];
    let run = inspect(home, Target::Http { url: &url, token: Some(&frank) }, &hotel).await;
    assert!(run.success, "audit as frank failed: {}", run.stderr);
    let result = run.json();
    assert_eq!(result["structuredContent"]["agents"], json!(["audit"]), "not routed: {result}");
    let request_id = result["structuredContent"]["request_id"].as_str().expect("a request id");
    let rows = audit_rows(home, request_id);
    assert!(rows.iter().any(|r| r["agent"] == "audit" && r["caller_email"] == FRANK), "{rows:?}");
    assert!(rows.iter().all(|r| r["agent"] != "policies"), "the router was asked: {rows:?}");
    // Its trace still has the route span, saying the route was the tool's own.
    let trace = run_cli(Path::new(BIN), &["trace", request_id, "--json"], &[("SWITCHBOARD_HOME", home)]);
    let spans: Value = serde_json::from_str(&trace).expect("trace --json");
    let compact = spans.to_string();
    assert!(compact.contains(r#""switchboard.route.direct":true"#), "no direct route span: {compact}");

    // Alice cannot call a tool she was not given: the inspector refuses from her list, and the
    // server itself refuses it as an unknown tool. Bad arguments are JSON-RPC invalid params.
    let run = inspect(home, Target::Http { url: &url, token: Some(&alice) }, &args).await;
    assert!(!run.success && run.stderr.contains("not found"), "alice called audit: {}", run.stdout);
    let session = RawSession::open(&url, &alice).await;
    let said = session
        .call(json!({"name": "audit", "arguments": {"question": "show recent denied requests"}}))
        .await;
    assert_eq!(said["error"]["code"], -32602, "{said}");
    assert!(said["error"]["message"].as_str().is_some_and(|m| m.contains("unknown tool `audit`")), "{said}");
    // Arguments that do not fit the input schema are a tool execution error (MCP 2025-11-25),
    // so a model can read what to fix; no run starts.
    for (tool, arguments, why) in [
        ("ask", json!({"question": "hotels?", "thread": "7"}), "unknown argument `thread`"),
        ("ask", json!({}), "`question` is required"),
        ("ask", json!({"question": 7}), "`question` must be a string"),
        ("ask", json!({"question": "  "}), "`question` is empty"),
        ("policies", json!({"question": "hotels?", "thread_id": "7"}), "takes no `thread_id`"),
    ] {
        let said = session.call(json!({"name": tool, "arguments": arguments})).await;
        assert_eq!(said["result"]["isError"], true, "{said}");
        let text = said["result"]["content"][0]["text"].as_str().unwrap_or_default();
        assert!(text.contains(why) && text.contains(&format!("`{tool}`")), "{said}");
    }
    assert!(!server.log().contains(&alice), "a token reached the server log");
    server.stop();
}

#[tokio::test]
async fn the_inspector_lists_and_calls_the_supervisor_over_stdio() {
    if skip_without_inspector("the_inspector_lists_and_calls_the_supervisor_over_stdio") {
        return;
    }
    let scratch = tempfile::tempdir().expect("temp home");
    let home = scratch.path();
    let alice = inspect(home, Target::Stdio { user: ALICE }, &["--method", "tools/list"]).await;
    assert!(alice.success, "tools/list over stdio failed: {}", alice.stderr);
    let frank = inspect(home, Target::Stdio { user: FRANK }, &["--method", "tools/list"]).await;
    assert!(frank.success, "tools/list over stdio failed: {}", frank.stderr);
    let (alice_names, frank_names) = (alice.tool_names(), frank.tool_names());
    assert!(!alice_names.contains(&"audit".to_string()), "{alice_names:?}");
    assert!(frank_names.contains(&"audit".to_string()), "{frank_names:?}");
    assert_ne!(alice_names, frank_names);

    // The same with frank's bearer token from the environment instead of `--as`.
    let by_token =
        inspect(home, Target::StdioToken { token: &token(home, FRANK) }, &["--method", "tools/list"]).await;
    assert!(by_token.success, "tools/list with SWITCHBOARD_TOKEN failed: {}", by_token.stderr);
    assert_eq!(by_token.tool_names(), frank_names);
    let forged = inspect(home, Target::StdioToken { token: "not-a-jwt" }, &["--method", "tools/list"]).await;
    assert!(!forged.success, "a bad token served MCP: {}", forged.stdout);

    let question = format!("question={HOTEL}");
    let args = ["--method", "tools/call", "--tool-name", "policies", "--tool-arg", question.as_str()];
    let run = inspect(home, Target::Stdio { user: ALICE }, &args).await;
    assert!(run.success, "policies over stdio failed: {}", run.stderr);
    let result = run.json();
    assert_eq!(result["isError"], Value::Bool(false), "{result}");
    assert_eq!(result["structuredContent"]["agents"], json!(["policies"]), "{result}");
    let request_id = result["structuredContent"]["request_id"].as_str().expect("a request id");
    assert!(!audit_rows(home, request_id).is_empty(), "no audit rows for {request_id}");
}

/// Reads `events` until a `notifications/tools/list_changed` arrives; panics after 15 s.
async fn list_changed(events: &mut reqwest::Response) {
    let mut seen = String::new();
    let wait = async {
        while let Some(chunk) = events.chunk().await.expect("the event stream stays open") {
            seen.push_str(&String::from_utf8_lossy(&chunk));
            if seen.contains("notifications/tools/list_changed") {
                return;
            }
        }
        panic!("the event stream ended without list_changed: {seen}");
    };
    tokio::time::timeout(Duration::from_secs(15), wait).await.expect("list_changed within 15 s");
}

async fn set_grant(server: &Serve, home: &Path, revoke: bool) {
    let grants = format!("{}/api/2.0/connections/tickets_mcp/grants", server.url());
    let client = reqwest::Client::new();
    let request = if revoke {
        client.delete(format!("{grants}/west_sales"))
    } else {
        client.post(grants).json(&json!({"principal": "west_sales"}))
    };
    let response = request.bearer_auth(token(home, FRANK)).send().await.expect("the server answers");
    assert!(response.status().is_success(), "{}", response.text().await.unwrap_or_default());
}

#[tokio::test]
async fn revoking_a_grant_changes_the_tool_list_and_notifies_open_sessions() {
    let scratch = tempfile::tempdir().expect("temp home");
    let home = scratch.path();
    let mut server =
        Serve::start(Path::new(BIN), None, &[("SWITCHBOARD_HOME", &home.display().to_string())]).await;
    let url = format!("{}/mcp", server.url());
    let session = RawSession::open(&url, &token(home, ALICE)).await;
    assert!(session.list().await.contains(&"tickets".to_string()), "alice starts with tickets");
    let mut events = session.events().await;

    set_grant(&server, home, true).await;
    list_changed(&mut events).await;
    let names = session.list().await;
    assert!(!names.contains(&"tickets".to_string()), "tickets after the revoke: {names:?}");
    assert!(names.contains(&"policies".to_string()), "{names:?}");

    set_grant(&server, home, false).await;
    list_changed(&mut events).await;
    assert!(session.list().await.contains(&"tickets".to_string()), "the re-grant restores tickets");
    server.stop();
}

/// Rewrites alice's development roles in the demo configuration at `config`.
fn set_alice_roles(config: &Path, roles: &str) {
    let text = std::fs::read_to_string(config).expect("the demo config");
    let alice = "email = \"alice@example.com\"\nroles = ";
    let at = text.find(alice).expect("alice in the demo config") + alice.len();
    let end = at + text[at..].find('\n').expect("the end of alice's roles");
    std::fs::write(config, format!("{}{roles}{}", &text[..at], &text[end..])).expect("write the config");
}

#[tokio::test]
async fn a_token_with_other_roles_changes_the_tool_list_and_notifies_the_session() {
    let scratch = tempfile::tempdir().expect("temp home");
    let dir = scratch.path().join("demo");
    run_cli(Path::new(BIN), &["init", dir.to_str().expect("a UTF-8 path")], &[]);
    let config = dir.join("switchboard.toml");
    let config_arg = config.to_str().expect("a UTF-8 config path");
    let token_as =
        |user: &str| run_cli(Path::new(BIN), &["token", "--as", user, "--config", config_arg], &[]);
    let mut server = Serve::start(Path::new(BIN), Some(&config), &[]).await;
    let url = format!("{}/mcp", server.url());

    // Alice's identity provider moves her into `admin` between two tokens: the server only ever
    // sees the roles each token carries.
    let sales = token_as(ALICE);
    set_alice_roles(&config, r#"["west_sales", "admin"]"#);
    let promoted = token_as(ALICE);
    let session = RawSession::open(&url, &sales).await;
    assert!(!session.list().await.contains(&"audit".to_string()), "west_sales may not use audit");
    let mut events = session.events().await;

    let names = session.with_token(&promoted).list().await;
    assert!(names.contains(&"audit".to_string()), "admin may use audit: {names:?}");
    list_changed(&mut events).await;
    let said = session
        .with_token(&promoted)
        .call(json!({"name": "audit", "arguments": {"question": "recent access denied events"}}))
        .await;
    assert_eq!(said["result"]["structuredContent"]["agents"], json!(["audit"]), "{said}");

    // Back to the old token: the list shrinks again, and the session hears of it.
    assert!(!session.list().await.contains(&"audit".to_string()), "the old token's roles apply again");
    list_changed(&mut events).await;

    // A session belongs to the subject that opened it: bob's token cannot use alice's session.
    let said = session
        .with_token(&token_as("bob@example.com"))
        .call(json!({"name": "ask", "arguments": {"question": "hotel limit?"}}))
        .await;
    assert!(
        said["error"]["message"].as_str().is_some_and(|m| m.contains("belongs to another caller")),
        "{said}"
    );
    server.stop();
}
