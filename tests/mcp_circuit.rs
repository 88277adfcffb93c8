//! An MCP server's circuit through a real `switchboard serve`: server-everything behind the
//! testkit's fault proxy, reached through a connection with resilience settings of its own
//! (`[resilience.connections.everything_mcp]`). Two failed tool calls open the connection's
//! circuit, `/health` shows it open, and the next call fails fast without reaching the server.

#[path = "common/durable.rs"]
#[allow(dead_code)]
mod durable;

use serde_json::{Value, json};
use switchboard_testkit::fault_proxy::FaultProxy;
use switchboard_testkit::{Serve, everything_http};

const AGENT: &str = "name = \"echoer\"
kind = \"mcp\"
description = \"Echo service: repeats a message back to you verbatim.\"
examples = [\"echo hello world\", \"echo this message back to me\", \"please echo my words\"]
connection = \"everything_mcp\"

[credential]
mode = \"automatic\"

[mcp]
tools = [\"echo\"]
";

/// Asks `question` as the bearer of `token`; returns status and body.
async fn ask(base: &str, token: &str, question: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("{base}/v1/chat/completions"))
        .bearer_auth(token)
        .json(&json!({"model": "switchboard", "messages": [{"role": "user", "content": question}]}))
        .send()
        .await
        .expect("the server answers");
    (response.status().as_u16(), response.json().await.expect("a JSON body"))
}

async fn health(base: &str) -> Value {
    let response = reqwest::get(format!("{base}/health")).await.expect("/health answers");
    response.json().await.expect("a JSON body")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_failed_tool_calls_open_the_mcp_servers_circuit_and_health_shows_it() {
    let (mut everything, url) = everything_http().await;
    let proxy = FaultProxy::start(url.trim_end_matches("/mcp")).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let extra = format!(
        "[[connections]]\nname = \"everything_mcp\"\nbase_url = \"{}/mcp\"\nauth = \"none\"\n\
         allow_insecure_loopback = true\ngrants = [\"switchboard-sp\"]\n\
         [resilience.connections.everything_mcp]\nmax_attempts = 1\nbreaker_failures = 2\n",
        proxy.url()
    );
    let config = durable::init_demo(dir.path(), &extra);
    std::fs::write(dir.path().join("agents/echoer.toml"), AGENT).expect("the agent file");
    let alice = durable::token(&config, "alice@example.com");
    let server = Serve::start(durable::bin(), Some(&config), &[]).await;

    let (status, body) = ask(server.url(), &alice, "echo hello world").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.to_string().contains("Echo: hello world"), "{body}");

    proxy.fail("tools/call", 2, 503);
    for _ in 0..2 {
        let (status, body) = ask(server.url(), &alice, "echo hello world").await;
        assert_eq!(status, 502, "{body}");
        assert!(body["error"]["message"].as_str().unwrap_or_default().contains("HTTP 503"), "{body}");
    }
    let checks = health(server.url()).await;
    let circuit = &checks["checks"]["circuits"]["everything_mcp"];
    assert_eq!(circuit["state"], "open", "{checks}");
    assert_eq!(circuit["consecutive_failures"], 2, "{checks}");
    assert!(circuit["retry_in_ms"].as_u64().is_some_and(|ms| ms > 0), "{checks}");

    let (status, body) = ask(server.url(), &alice, "echo hello world").await;
    assert_eq!(status, 503, "an open circuit fails fast: {body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("circuit open for upstream `everything_mcp` after 2 consecutive failures"),
        "{message}"
    );
    assert_eq!(proxy.seen("tools/call"), 3, "nothing reached the server while the circuit was open");
    everything.kill();
}
