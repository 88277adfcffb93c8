//! Governed connections over HTTP: the USE CONNECTION check on every hop, the admin API, and a
//! revoke made by another process taking effect on the running server's next hop.

mod common;

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use common::{Server, demo_runtime, parts, post};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchboard_core::{AgentKind, AgentSpec, ConnectionSpec, CredentialMode, CredentialSpec};
use switchboard_runtime::config::LoadedConfig;
use switchboard_runtime::{Actor, Runtime};

const QUESTION: &str = "ask the partner relay for the weather forecast";

/// A partner API on loopback that records the bearer token of each call.
async fn partner() -> (String, Arc<Mutex<Vec<String>>>) {
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    async fn reply(State(seen): State<Arc<Mutex<Vec<String>>>>, headers: HeaderMap) -> Json<Value> {
        let bearer = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .trim_start_matches("Bearer ")
            .to_string();
        seen.lock().unwrap().push(bearer);
        Json(json!({"choices": [{"message": {"role": "assistant", "content": "sunny, says the partner"}}]}))
    }
    let app = axum::Router::new().route("/v1/chat", axum::routing::post(reply)).with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, seen)
}

/// The demo plus a `relay` endpoint agent (obo) through a `partner` connection granted to
/// west_sales only, owned by carol.
fn with_partner(base: &str) -> impl FnOnce(&mut LoadedConfig) + use<> {
    let base = base.to_string();
    move |loaded: &mut LoadedConfig| {
        let mut connection = ConnectionSpec::new("partner", format!("{base}/v1"));
        connection.allow_insecure_loopback = true;
        connection.grants = vec!["west_sales".into()];
        connection.owner = Some("carol@example.com".into());
        loaded.config.connections.push(connection);
        loaded.agents.push(Arc::new(AgentSpec {
            examples: vec!["ask the partner relay for the weather forecast".into()],
            credential: CredentialSpec { mode: CredentialMode::Obo, ..Default::default() },
            timeout_ms: Some(5_000),
            connection: Some("partner".into()),
            settings: json!({"url": "/chat"}),
            ..AgentSpec::new(
                "relay",
                AgentKind::Endpoint,
                "The partner relay: weather forecasts from the partner API.",
            )
        }));
    }
}

/// The `email` claim of a JWT (its signature is the partner's business, not this test's).
fn email_of(jwt: &str) -> String {
    use base64::Engine;
    let payload = jwt.split('.').nth(1).unwrap_or_default();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap_or_default();
    let claims: Value = serde_json::from_slice(&bytes).unwrap_or_default();
    claims["email"].as_str().unwrap_or_default().to_string()
}

async fn ask(server: &Server, user: &str) -> (u16, String, Value) {
    let body = json!({"model": "switchboard", "messages": [{"role": "user", "content": QUESTION}]});
    parts(post(server, "/v1/chat/completions", Some(user), body).await).await
}

async fn admin(
    server: &Server,
    user: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut rb = reqwest::Client::new().request(method, server.url(path)).bearer_auth(server.token(user));
    if let Some(body) = body {
        rb = rb.json(&body);
    }
    let (status, _, body) = parts(rb.send().await.unwrap()).await;
    (status, body)
}

#[tokio::test]
async fn use_connection_decides_each_hop_and_the_admin_api_changes_it_at_once() {
    let (base, seen) = partner().await;
    let server = Server::demo_with(with_partner(&base)).await;

    // Alice's role holds the grant: her own token reaches the partner.
    let (status, _, body) = ask(&server, "alice@example.com").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.to_string().contains("sunny"), "{body}");
    let token_seen = seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!(email_of(&token_seen), "alice@example.com", "the partner sees the caller's own token");

    // Bob's does not: 403, nothing sent, an access_denied audit row and a span with the verdict.
    let calls_before = seen.lock().unwrap().len();
    let (status, request_id, body) = ask(&server, "bob@example.com").await;
    assert_eq!(status, 403, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("USE CONNECTION") && message.contains("partner"), "{message}");
    assert_eq!(seen.lock().unwrap().len(), calls_before, "a denied hop sends nothing");
    server.runtime.store.flush().await;
    let audit = server.runtime.store.audit_for_request(&request_id).await.unwrap();
    assert!(
        audit.iter().any(|r| r.decision.as_str() == "access_denied" && r.caller_email == "bob@example.com"),
        "{audit:?}"
    );
    let spans = server.runtime.store.spans(&request_id).await.unwrap();
    assert!(
        spans.iter().any(|s| s.attributes.get("switchboard.connection.grant") == Some(&json!("denied"))),
        "the hop's span carries the verdict"
    );

    // Only an admin or the owner administers grants.
    let grants = "/api/2.0/connections/partner/grants";
    let (status, body) = admin(
        &server,
        "bob@example.com",
        reqwest::Method::POST,
        grants,
        Some(json!({"principal": "east_sales"})),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = admin(
        &server,
        "frank@example.com",
        reqwest::Method::POST,
        grants,
        Some(json!({"principal": "east_sales"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, _, body) = ask(&server, "bob@example.com").await;
    assert_eq!(status, 200, "a grant takes effect on the next hop: {body}");

    // The owner lists and revokes.
    let (status, body) = admin(&server, "carol@example.com", reqwest::Method::GET, grants, None).await;
    assert_eq!(status, 200, "{body}");
    let principals: Vec<&str> =
        body["grants"].as_array().unwrap().iter().map(|g| g["principal"].as_str().unwrap()).collect();
    assert_eq!(principals, ["east_sales", "west_sales"]);
    let (status, body) =
        admin(&server, "carol@example.com", reqwest::Method::DELETE, &format!("{grants}/east_sales"), None)
            .await;
    assert_eq!((status, body["changed"].clone()), (200, json!(true)), "{body}");
    let (status, _, _) = ask(&server, "bob@example.com").await;
    assert_eq!(status, 403, "a revoke takes effect on the next hop");

    // Bad input gets a clear error.
    let (status, body) =
        admin(&server, "frank@example.com", reqwest::Method::POST, grants, Some(json!({"who": "x"}))).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) =
        admin(&server, "frank@example.com", reqwest::Method::GET, "/api/2.0/connections/nope/grants", None)
            .await;
    assert_eq!(status, 404, "{body}");

    // Grants and revokes are audit rows naming who did what.
    server.runtime.store.flush().await;
    let rows = server.runtime.store.recent_audit(50).await.unwrap();
    let admin_rows: Vec<_> = rows.iter().filter(|r| matches!(r.hop.as_str(), "grant" | "revoke")).collect();
    assert!(
        admin_rows.iter().any(|r| r.hop.as_str() == "grant"
            && r.caller_email == "frank@example.com"
            && r.principal == "east_sales"
            && r.target == "partner"),
        "{admin_rows:?}"
    );
    assert!(
        admin_rows.iter().any(|r| r.hop.as_str() == "revoke" && r.caller_email == "carol@example.com"),
        "{admin_rows:?}"
    );
}

#[tokio::test]
async fn a_revoke_by_another_process_reaches_the_running_servers_next_hop() {
    let (base, _seen) = partner().await;
    let (runtime, dir) = demo_runtime(with_partner(&base)).await;
    let server = Server::start(runtime, Some(dir)).await;
    assert_eq!(ask(&server, "alice@example.com").await.0, 200);

    // A second runtime on the same store file, as `switchboard revoke` is.
    let loaded = server.runtime.config.clone();
    let other = Runtime::build(loaded).await.unwrap();
    let revoked_at = Instant::now();
    assert!(other.grants.revoke(&Actor::cli(), "partner", "west_sales").await.unwrap());
    let delay = loop {
        let (status, _, _) = ask(&server, "alice@example.com").await;
        if status == 403 {
            break revoked_at.elapsed();
        }
        assert_eq!(status, 200);
        assert!(
            revoked_at.elapsed() < Duration::from_secs(5),
            "the revoke did not reach the server within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    eprintln!("revoke reached the running server after {delay:?}");

    assert!(other.grants.grant(&Actor::cli(), "partner", "west_sales").await.unwrap());
    let granted_at = Instant::now();
    while ask(&server, "alice@example.com").await.0 != 200 {
        assert!(
            granted_at.elapsed() < Duration::from_secs(5),
            "the grant did not reach the server within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn with_postgres_a_revoke_on_one_replica_reaches_the_others_next_hop() {
    use switchboard_runtime::config::StoreKind;
    let schema = switchboard_testkit::pg::TestSchema::new().await;
    let (base, _seen) = partner().await;
    let on_postgres = |url: String, base: String| {
        move |loaded: &mut LoadedConfig| {
            with_partner(&base)(loaded);
            loaded.config.store.kind = StoreKind::Postgres;
            loaded.config.store.url = Some(url);
        }
    };
    let (runtime, dir) = demo_runtime(on_postgres(schema.url().to_string(), base.clone())).await;
    let replica_a = Server::start(runtime, Some(dir)).await;
    let (runtime, dir) = demo_runtime(on_postgres(schema.url().to_string(), base.clone())).await;
    let replica_b = Server::start(runtime, Some(dir)).await;
    assert_eq!(ask(&replica_a, "alice@example.com").await.0, 200);
    assert_eq!(ask(&replica_b, "alice@example.com").await.0, 200);

    let (status, body) = admin(
        &replica_b,
        "frank@example.com",
        reqwest::Method::DELETE,
        "/api/2.0/connections/partner/grants/west_sales",
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let revoked_at = Instant::now();
    assert_eq!(ask(&replica_b, "alice@example.com").await.0, 403, "the replica that revoked denies at once");
    let delay = loop {
        let (status, _, _) = ask(&replica_a, "alice@example.com").await;
        if status == 403 {
            break revoked_at.elapsed();
        }
        assert!(
            revoked_at.elapsed() < Duration::from_secs(5),
            "the revoke did not reach the other replica within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    eprintln!("a revoke on one replica reached the other after {delay:?} (PostgreSQL LISTEN/NOTIFY)");
    replica_a.stop().await;
    replica_b.stop().await;
}
