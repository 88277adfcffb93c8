//! An `mcp` agent on a running server, against the real reference server
//! (`@modelcontextprotocol/server-everything`): routed questions reach its tools through a
//! governed connection, `/health` shows the session, and revoking USE CONNECTION mid-run denies
//! the calls after it until a grant restores them, with no restart.

mod common;

use common::{Server, parts, post};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchboard_core::{AgentKind, AgentSpec, ConnectionSpec, CredentialMode, CredentialSpec};
use switchboard_runtime::config::LoadedConfig;

const SUM: &str = "what is the sum of 2 and 40?";

fn with_everything(url: &str) -> impl FnOnce(&mut LoadedConfig) + use<> {
    let url = url.to_string();
    move |loaded: &mut LoadedConfig| {
        let mut connection = ConnectionSpec::new("everything", url);
        connection.allow_insecure_loopback = true;
        connection.grants = vec!["west_sales".into(), "east_sales".into()];
        loaded.config.connections.push(connection);
        loaded.agents.push(Arc::new(AgentSpec {
            examples: vec!["echo hello world".into(), "what is the sum of 2 and 40?".into()],
            credential: CredentialSpec { mode: CredentialMode::Obo, ..Default::default() },
            timeout_ms: Some(10_000),
            connection: Some("everything".into()),
            settings: json!({"tools": ["echo", "get-sum"]}),
            ..AgentSpec::new(
                "everything",
                AgentKind::Mcp,
                "The reference MCP server: echo a message back, or add two numbers (sum).",
            )
        }));
    }
}

async fn ask(server: &Server, user: &str, question: &str) -> (u16, String, Value) {
    let body = json!({"model": "switchboard", "messages": [{"role": "user", "content": question}]});
    parts(post(server, "/v1/chat/completions", Some(user), body).await).await
}

fn answer(body: &Value) -> &str {
    body["choices"][0]["message"]["content"].as_str().unwrap_or_default()
}

async fn set_grant(server: &Server, method: reqwest::Method, principal: &str) {
    let grants = server.url("/api/2.0/connections/everything/grants");
    let client = reqwest::Client::new();
    let rb = if method == reqwest::Method::DELETE {
        client.delete(format!("{grants}/{principal}"))
    } else {
        client.post(grants).json(&json!({"principal": principal}))
    };
    let response = rb.bearer_auth(server.token("frank@example.com")).send().await.unwrap();
    assert!(response.status().is_success(), "{}", response.text().await.unwrap());
}

#[tokio::test]
async fn mcp_tools_answer_through_a_connection_whose_revoke_denies_the_next_calls() {
    let (_everything, url) = switchboard_testkit::everything_http().await;
    let server = Server::demo_with(with_everything(&url)).await;

    let (status, _, body) = ask(&server, "alice@example.com", SUM).await;
    assert_eq!(status, 200, "{body}");
    assert!(answer(&body).contains("42"), "{body}");
    let (status, _, body) = ask(&server, "bob@example.com", "echo hello from bob").await;
    assert_eq!(status, 200, "{body}");
    assert!(answer(&body).contains("hello from bob"), "{body}");

    let health: Value = reqwest::get(server.url("/health")).await.unwrap().json().await.unwrap();
    let check = &health["checks"]["agents"]["everything"];
    assert_eq!(check["status"], "ok", "{health}");
    assert!(check["state"].as_str().unwrap_or_default().starts_with("connected to"), "{health}");

    // Alice asks again and again; halfway through, her role's grant is revoked.
    let mut outcomes: Vec<(Instant, u16)> = Vec::new();
    let mut revoked_at = None;
    for i in 0..12 {
        if i == 6 {
            set_grant(&server, reqwest::Method::DELETE, "west_sales").await;
            revoked_at = Some(Instant::now());
        }
        let started = Instant::now();
        let (status, request_id, body) = ask(&server, "alice@example.com", SUM).await;
        if status == 403 {
            assert!(body["error"]["message"].as_str().unwrap().contains("USE CONNECTION"), "{body}");
            server.runtime.store.flush().await;
            let audit = server.runtime.store.audit_for_request(&request_id).await.unwrap();
            assert!(audit.iter().any(|r| r.decision.as_str() == "access_denied"), "{audit:?}");
        }
        outcomes.push((started, status));
    }
    let revoked_at = revoked_at.unwrap();
    for (started, status) in &outcomes {
        let expected = if *started < revoked_at { 200 } else { 403 };
        assert_eq!(
            *status, expected,
            "every call before the revoke works, every call after is denied: {outcomes:?}"
        );
    }
    let (status, _, _) = ask(&server, "bob@example.com", SUM).await;
    assert_eq!(status, 200, "other principals keep their grant");

    set_grant(&server, reqwest::Method::POST, "west_sales").await;
    let (status, _, body) = ask(&server, "alice@example.com", SUM).await;
    assert_eq!(status, 200, "a grant restores it: {body}");

    // A server that went away is a clear error, and the runtime keeps serving.
    drop(_everything);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (status, _, body) = ask(&server, "alice@example.com", SUM).await;
    assert_eq!(status, 502, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("unreachable"), "{body}");
    let (status, _, body) = ask(&server, "carol@example.com", "total revenue by region").await;
    assert_eq!(status, 200, "{body}");
}
