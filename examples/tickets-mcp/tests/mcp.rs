//! The tickets server end to end: a real MCP client (rmcp's streamable-HTTP client) and raw HTTP
//! requests against a server on a free port, with tokens signed by a key made for the test.

mod common;

use common::*;
use rmcp::ServiceExt;
use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::service::{RoleClient, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::{Value, json};
use tickets_mcp::TicketsAuth;

type Client = RunningService<RoleClient, ()>;

async fn connect(url: &str, token: &str) -> Client {
    let config =
        StreamableHttpClientTransportConfig::with_uri(url.to_string()).auth_header(token.to_string());
    ().serve(StreamableHttpClientTransport::from_config(config)).await.expect("the MCP client connects")
}

async fn call_tool(client: &Client, tool: &'static str, args: Value) -> CallToolResult {
    let args = args.as_object().cloned().unwrap_or_default();
    client.call_tool(CallToolRequestParams::new(tool).with_arguments(args)).await.expect("tools/call")
}

fn text(result: &CallToolResult) -> String {
    let value = serde_json::to_value(result).expect("result JSON");
    value["content"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["text"].as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

fn listed(result: &CallToolResult) -> Vec<(String, String)> {
    let tickets = result.structured_content.as_ref().and_then(|s| s["tickets"].as_array().cloned());
    tickets
        .unwrap_or_else(|| panic!("no structured tickets: {result:?}"))
        .iter()
        .map(|t| {
            (t["owner"].as_str().unwrap_or("").to_string(), t["title"].as_str().unwrap_or("").to_string())
        })
        .collect()
}

#[tokio::test]
async fn the_tools_are_described_for_routers_and_argument_fillers() {
    let issuer = Issuer::es256("k1");
    let server = server_for(&issuer).await;
    let client = connect(&server.url, &issuer.token(ALICE)).await;
    let tools = client.list_all_tools().await.expect("tools/list");
    let mut names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    names.sort_unstable();
    assert_eq!(names, ["list_tickets", "open_ticket", "show_ticket"]);
    for tool in &tools {
        let description = tool.description.as_deref().unwrap_or("");
        assert!(description.len() > 40, "{} is described: {description}", tool.name);
        assert!(tool.output_schema.is_some(), "{} declares its structured output", tool.name);
    }
    let schema = |name: &str| {
        let tool = tools.iter().find(|t| t.name == name).expect("tool");
        Value::Object((*tool.input_schema).clone())
    };
    let list = schema("list_tickets");
    assert_eq!(list["required"].as_array().map(Vec::len).unwrap_or(0), 0, "{list}");
    let status = list.pointer("/properties/status").expect("a status property").to_string();
    for word in ["open", "closed", "all"] {
        assert!(status.contains(word), "status offers `{word}`: {list}");
    }
    assert_eq!(schema("show_ticket")["required"], json!(["id"]));
    assert_eq!(schema("open_ticket")["required"], json!(["title"]));
    assert!(schema("open_ticket").pointer("/properties/description").is_some());
    client.cancel().await.expect("client closes");
    server.stop().await;
}

#[tokio::test]
async fn alice_and_bob_each_list_only_their_own_tickets() {
    let issuer = Issuer::es256("k1");
    let server = server_for(&issuer).await;
    let alice = connect(&server.url, &issuer.token(ALICE)).await;
    let bob = connect(&server.url, &issuer.token(BOB)).await;

    let a = call_tool(&alice, "list_tickets", json!({"status": "all"})).await;
    let b = call_tool(&bob, "list_tickets", json!({"status": "all"})).await;
    let (a, b) = (listed(&a), listed(&b));
    assert!(!a.is_empty() && a.iter().all(|(owner, _)| owner == ALICE), "{a:?}");
    assert!(!b.is_empty() && b.iter().all(|(owner, _)| owner == BOB), "{b:?}");
    assert!(a.iter().any(|(_, title)| title.contains("Denver")), "alice's own titles: {a:?}");
    assert!(b.iter().any(|(_, title)| title.contains("Boston")), "bob's own titles: {b:?}");

    // The default is open tickets only, and the text lists them readably.
    let open = call_tool(&alice, "list_tickets", json!({})).await;
    assert_eq!(open.is_error, Some(false));
    let open_text = text(&open);
    assert!(open_text.contains("TCK-1001") && open_text.contains("TCK-1003"), "{open_text}");
    assert!(!open_text.contains("TCK-1002"), "closed ticket listed as open: {open_text}");
    assert_eq!(open.structured_content.as_ref().map(|s| s["status"].clone()), Some(json!("open")));

    let closed = call_tool(&alice, "list_tickets", json!({"status": "closed"})).await;
    assert_eq!(listed(&closed).len(), 1, "{closed:?}");

    alice.cancel().await.expect("client closes");
    bob.cancel().await.expect("client closes");
    server.stop().await;
}

#[tokio::test]
async fn one_shared_session_answers_each_request_for_the_token_it_carries() {
    let issuer = Issuer::es256("k1");
    let server = server_for(&issuer).await;
    let (alice, bob) = (issuer.token(ALICE), issuer.token(BOB));
    // Alice opens the session; both then use it.
    let session = initialize(&server.url, &alice).await;

    let as_alice =
        call(&server.url, Some(&alice), &session, 2, "list_tickets", json!({"status": "all"})).await;
    let as_bob = call(&server.url, Some(&bob), &session, 3, "list_tickets", json!({"status": "all"})).await;
    let as_alice_again =
        call(&server.url, Some(&alice), &session, 4, "list_tickets", json!({"status": "all"})).await;
    for (reply, id, who) in [(&as_alice, 2, ALICE), (&as_bob, 3, BOB), (&as_alice_again, 4, ALICE)] {
        assert_eq!(reply.status, 200, "{}", reply.body);
        let owners = owners(&reply.rpc(id)["result"]);
        assert!(
            !owners.is_empty() && owners.iter().all(|o| o == who),
            "request {id} should see {who}'s: {owners:?}"
        );
    }

    // An identity header is not an identity: alice's token with bob's email in a header is alice.
    let spoofed = post_with(
        &server.url,
        Some(&alice),
        Some(&session),
        json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {"name": "list_tickets", "arguments": {}}}),
        &[("x-forwarded-email", BOB), ("x-forwarded-user", BOB)],
    )
    .await;
    assert!(owners(&spoofed.rpc(5)["result"]).iter().all(|o| o == ALICE), "{}", spoofed.body);

    // The session id alone is not a credential either.
    let anonymous = call(&server.url, None, &session, 6, "list_tickets", json!({})).await;
    assert_eq!(anonymous.status, 401, "{}", anonymous.body);
    let header_only = post_with(
        &server.url,
        None,
        Some(&session),
        json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "list_tickets", "arguments": {}}}),
        &[("x-forwarded-email", ALICE)],
    )
    .await;
    assert_eq!(header_only.status, 401, "{}", header_only.body);
    server.stop().await;
}

/// Asserts a refusal: 401, a Bearer challenge, a JSON error body, and no MCP content.
fn assert_refused(reply: &Reply, error: &str) {
    assert_eq!(reply.status, 401, "{}", reply.body);
    let challenge = reply.header("www-authenticate").expect("a WWW-Authenticate header");
    assert!(challenge.starts_with("Bearer "), "{challenge}");
    let body: Value = serde_json::from_str(&reply.body).expect("a JSON error body");
    assert_eq!(body["error"], error, "{body}");
    assert!(body["error_description"].as_str().is_some_and(|d| !d.is_empty()), "{body}");
    assert!(!reply.body.contains("TCK-"), "nothing from the tools: {}", reply.body);
}

#[tokio::test]
async fn missing_forged_expired_and_misaddressed_tokens_get_401() {
    let issuer = Issuer::es256("k1");
    let server = server_for(&issuer).await;
    let session = initialize(&server.url, &issuer.token(ALICE)).await;
    let list = |token: Option<String>| {
        let (url, session) = (server.url.clone(), session.clone());
        async move { call(&url, token.as_deref(), &session, 9, "list_tickets", json!({})).await }
    };

    let none = list(None).await;
    assert_refused(&none, "unauthorized");
    assert!(
        !none.header("www-authenticate").unwrap_or_default().contains("error="),
        "RFC 6750: no error code"
    );

    // Same kid, same claims, another key: the signature does not verify.
    let forger = Issuer::es256("k1");
    let forged = list(Some(forger.token(ALICE))).await;
    assert_refused(&forged, "invalid_token");
    assert!(forged.header("www-authenticate").unwrap_or_default().contains("error=\"invalid_token\""));

    // A key the server has never heard of.
    assert_refused(&list(Some(Issuer::es256("other").token(ALICE))).await, "invalid_token");

    let expired = list(Some(issuer.token_expiring(ALICE, -600))).await;
    assert_refused(&expired, "invalid_token");
    assert!(expired.body.contains("expired"), "{}", expired.body);

    let now = now();
    let wrong_aud =
        issuer.sign(json!({"iss": ISSUER, "aud": "someone-else", "email": ALICE, "exp": now + 600}));
    assert_refused(&list(Some(wrong_aud)).await, "invalid_token");
    let wrong_iss = issuer
        .sign(json!({"iss": "https://evil.example", "aud": AUDIENCE, "email": ALICE, "exp": now + 600}));
    assert_refused(&list(Some(wrong_iss)).await, "invalid_token");
    let no_exp = issuer.sign(json!({"iss": ISSUER, "aud": AUDIENCE, "email": ALICE}));
    assert_refused(&list(Some(no_exp)).await, "invalid_token");
    let nobody = issuer.sign(json!({"iss": ISSUER, "aud": AUDIENCE, "exp": now + 600}));
    assert_refused(&list(Some(nobody)).await, "invalid_token");
    assert_refused(&list(Some("not-a-jwt".into())).await, "invalid_token");

    // Initialize itself is refused without a valid token: no session is created.
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": PROTOCOL, "capabilities": {}, "clientInfo": {"name": "x", "version": "1"}}});
    let refused_init = post(&server.url, Some(&forger.token(ALICE)), None, init).await;
    assert_refused(&refused_init, "invalid_token");
    assert!(refused_init.header("mcp-session-id").is_none());

    // The session itself still works for the valid holder.
    let ok = list(Some(issuer.token(ALICE))).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    server.stop().await;
}

#[tokio::test]
async fn a_refused_request_never_reaches_the_tools() {
    let issuer = Issuer::es256("k1");
    let server = server_for(&issuer).await;
    let session = initialize(&server.url, &issuer.token(ALICE)).await;
    let forged = Issuer::es256("k1").token(ALICE);
    let args = json!({"title": "Planted by a forged token"});
    let refused = call(&server.url, Some(&forged), &session, 2, "open_ticket", args).await;
    assert_refused(&refused, "invalid_token");
    let mine =
        call(&server.url, Some(&issuer.token(ALICE)), &session, 3, "list_tickets", json!({"status": "all"}))
            .await;
    assert!(!mine.body.contains("Planted"), "the forged request created a ticket: {}", mine.body);
    server.stop().await;
}

#[tokio::test]
async fn showing_someone_elses_ticket_is_a_tool_error_that_reveals_nothing() {
    let issuer = Issuer::es256("k1");
    let server = server_for(&issuer).await;
    let alice = connect(&server.url, &issuer.token(ALICE)).await;
    let bob = connect(&server.url, &issuer.token(BOB)).await;

    let own = call_tool(&alice, "show_ticket", json!({"id": "TCK-1003"})).await;
    assert_eq!(own.is_error, Some(false), "{own:?}");
    assert!(text(&own).contains("Denver"), "{}", text(&own));
    assert_eq!(own.structured_content.as_ref().map(|s| s["owner"].clone()), Some(json!(ALICE)));

    let theirs = call_tool(&bob, "show_ticket", json!({"id": "TCK-1003"})).await;
    assert_eq!(theirs.is_error, Some(true), "{theirs:?}");
    assert_eq!(text(&theirs), "no ticket TCK-1003 for you");
    assert!(theirs.structured_content.is_none());
    // Indistinguishable from a ticket that does not exist.
    let missing = call_tool(&bob, "show_ticket", json!({"id": "TCK-9999"})).await;
    assert_eq!((missing.is_error, text(&missing)), (Some(true), "no ticket TCK-9999 for you".to_string()));

    alice.cancel().await.expect("client closes");
    bob.cancel().await.expect("client closes");
    server.stop().await;
}

#[tokio::test]
async fn an_opened_ticket_is_listed_for_its_owner_only() {
    let issuer = Issuer::es256("k1");
    let server = server_for(&issuer).await;
    let bob = connect(&server.url, &issuer.token(BOB)).await;
    let opened = call_tool(
        &bob,
        "open_ticket",
        json!({"title": "Second monitor for the Boston desk", "description": "A 27 inch one, please."}),
    )
    .await;
    assert_eq!(opened.is_error, Some(false), "{opened:?}");
    let id = opened.structured_content.as_ref().and_then(|s| s["id"].as_str()).expect("an id").to_string();
    assert!(id.starts_with("TCK-") && text(&opened).contains(&id), "{}", text(&opened));

    let open = call_tool(&bob, "list_tickets", json!({})).await;
    assert!(text(&open).contains(&id) && text(&open).contains("Second monitor"), "{}", text(&open));
    let shown = call_tool(&bob, "show_ticket", json!({"id": id})).await;
    assert!(text(&shown).contains("27 inch"), "{}", text(&shown));

    // A new session (another client) sees it too; alice does not.
    let bob_again = connect(&server.url, &issuer.token(BOB)).await;
    assert!(text(&call_tool(&bob_again, "list_tickets", json!({})).await).contains(&id));
    let alice = connect(&server.url, &issuer.token(ALICE)).await;
    let alices = call_tool(&alice, "list_tickets", json!({"status": "all"})).await;
    assert!(!text(&alices).contains(&id), "{}", text(&alices));

    let untitled = call_tool(&bob, "open_ticket", json!({"title": "   "})).await;
    assert_eq!(untitled.is_error, Some(true), "{untitled:?}");

    for client in [bob, bob_again, alice] {
        client.cancel().await.expect("client closes");
    }
    server.stop().await;
}

#[tokio::test]
async fn rs256_keys_verify_too_and_the_kid_picks_the_key() {
    let (ec, rsa) = (Issuer::es256("ec-1"), Issuer::rs256("rsa-1"));
    let jwks = serde_json::from_value(json!({"keys": [ec.jwk(), rsa.jwk()]})).expect("JWK set");
    let auth = TicketsAuth::from_jwks(jwks, None, None).expect("auth");
    let server = Server::start(auth).await;
    for issuer in [&ec, &rsa] {
        let client = connect(&server.url, &issuer.token(BOB)).await;
        let listed = listed(&call_tool(&client, "list_tickets", json!({"status": "all"})).await);
        assert!(
            listed.iter().all(|(o, _)| o == BOB) && !listed.is_empty(),
            "{} token: {listed:?}",
            issuer.kid
        );
        client.cancel().await.expect("client closes");
    }
    // Without issuer/audience configured, any `iss`/`aud` is accepted, but never a bad signature.
    let session = initialize(&server.url, &rsa.token(BOB)).await;
    let forged = Issuer::rs256("rsa-1").token(BOB);
    let reply = call(&server.url, Some(&forged), &session, 2, "list_tickets", json!({})).await;
    assert_eq!(reply.status, 401, "{}", reply.body);
    server.stop().await;
}

#[tokio::test]
async fn shutdown_ends_open_event_streams_and_the_stream_needs_a_token_too() {
    let issuer = Issuer::es256("k1");
    let server = server_for(&issuer).await;
    let token = issuer.token(ALICE);
    let session = initialize(&server.url, &token).await;
    let standing_stream = |token: Option<&str>| {
        let mut request = reqwest::Client::new()
            .get(&server.url)
            .header("accept", "text/event-stream")
            .header("mcp-session-id", &session)
            .header("mcp-protocol-version", PROTOCOL);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    let refused = standing_stream(None).await.expect("GET");
    assert_eq!(refused.status(), 401);
    let stream = standing_stream(Some(&token)).await.expect("GET");
    assert_eq!(stream.status(), 200);
    // The stream is still open here; `stop` fails the test if it holds the shutdown.
    server.stop().await;
    drop(stream);
}

#[tokio::test]
async fn sessionless_requests_of_the_2026_protocol_are_authenticated_per_request_too() {
    let issuer = Issuer::es256("k1");
    let server = server_for(&issuer).await;
    let list = |token: Option<String>, id: u64| {
        let url = server.url.clone();
        async move {
            let body = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {
                "name": "list_tickets", "arguments": {"status": "all"},
                "_meta": {
                    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                    "io.modelcontextprotocol/clientInfo": {"name": "raw-test", "version": "1"},
                    "io.modelcontextprotocol/clientCapabilities": {}
                }
            }});
            let headers = [
                ("mcp-protocol-version", "2026-07-28"),
                ("mcp-method", "tools/call"),
                ("mcp-name", "list_tickets"),
            ];
            post_with(&url, token.as_deref(), None, body, &headers).await
        }
    };
    for (who, id) in [(ALICE, 2), (BOB, 3)] {
        let reply = list(Some(issuer.token(who)), id).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert!(reply.header("mcp-session-id").is_none(), "no session in the 2026 protocol");
        let owners = owners(&reply.rpc(id)["result"]);
        assert!(!owners.is_empty() && owners.iter().all(|o| o == who), "{who}: {owners:?}");
    }
    assert_refused(&list(None, 4).await, "unauthorized");
    server.stop().await;
}
