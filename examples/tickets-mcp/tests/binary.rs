//! The `tickets-mcp` binary against a JWKS served over HTTP: it prints its address, fetches the
//! keys on first use, re-fetches when a token names a new key (rotation), and does not re-fetch
//! for every made-up key id.

mod common;

use axum::Json;
use axum::extract::State;
use axum::routing::get;
use common::*;
use serde_json::{Value, json};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use switchboard_testkit::Child;
use tokio::process::Command;

#[derive(Clone, Default)]
struct Jwks {
    keys: Arc<Mutex<Vec<Value>>>,
    fetches: Arc<AtomicUsize>,
}

async fn serve_jwks(State(jwks): State<Jwks>) -> Json<Value> {
    jwks.fetches.fetch_add(1, Ordering::SeqCst);
    let keys = jwks.keys.lock().expect("keys").clone();
    Json(json!({ "keys": keys }))
}

/// Starts the binary and returns it with its MCP URL, read from its first line of output.
async fn start_binary(args: &[&str]) -> (Child, String) {
    let (tx, mut lines) = tokio::sync::mpsc::unbounded_channel();
    let child = Child::spawn_lines(
        std::process::Command::new(env!("CARGO_BIN_EXE_tickets-mcp")).args(args),
        move |line| tx.send(line).is_ok(),
    );
    let line = tokio::time::timeout(Duration::from_secs(30), lines.recv())
        .await
        .expect("the binary printed its address within 30 s")
        .expect("a line before the binary exited");
    let url =
        line.strip_prefix("tickets-mcp listening on ").unwrap_or_else(|| panic!("unexpected output: {line}"));
    assert!(url.starts_with("http://127.0.0.1:") && url.ends_with("/mcp") && !url.contains(":0/"), "{url}");
    (child, url.to_string())
}

#[tokio::test]
async fn the_binary_fetches_the_jwks_and_follows_key_rotation() {
    let first = Issuer::es256("k1");
    let rotated = Issuer::es256("k2");
    let jwks = Jwks::default();
    jwks.keys.lock().expect("keys").push(first.jwk());
    let app = axum::Router::new().route("/.well-known/jwks.json", get(serve_jwks)).with_state(jwks.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let jwks_url = format!("http://{}/.well-known/jwks.json", listener.local_addr().expect("addr"));
    let idp = tokio::spawn(async move { axum::serve(listener, app).await });

    let (mut child, url) = start_binary(&[
        "--listen",
        "127.0.0.1:0",
        "--jwks-url",
        &jwks_url,
        "--issuer",
        ISSUER,
        "--audience",
        AUDIENCE,
    ])
    .await;
    assert_eq!(jwks.fetches.load(Ordering::SeqCst), 0, "keys are fetched on first use, not at start");

    let session = initialize(&url, &first.token(ALICE)).await;
    let mine = call(&url, Some(&first.token(ALICE)), &session, 2, "list_tickets", json!({})).await;
    assert!(owners(&mine.rpc(2)["result"]).iter().all(|o| o == ALICE), "{}", mine.body);
    assert_eq!(jwks.fetches.load(Ordering::SeqCst), 1, "one fetch, then the cache");

    // The issuer rotates to a new key: the unknown kid makes the server fetch again.
    jwks.keys.lock().expect("keys").push(rotated.jwk());
    let after = call(&url, Some(&rotated.token(BOB)), &session, 3, "list_tickets", json!({})).await;
    assert_eq!(after.status, 200, "{}", after.body);
    assert!(owners(&after.rpc(3)["result"]).iter().all(|o| o == BOB), "{}", after.body);
    assert_eq!(jwks.fetches.load(Ordering::SeqCst), 2);

    // Made-up key ids right after do not each cost a fetch.
    for n in 0..3 {
        let stranger = Issuer::es256(&format!("made-up-{n}"));
        let reply = call(&url, Some(&stranger.token(ALICE)), &session, 4, "list_tickets", json!({})).await;
        assert_eq!(reply.status, 401, "{}", reply.body);
    }
    assert_eq!(jwks.fetches.load(Ordering::SeqCst), 2, "unknown-kid re-fetches are rate limited");

    child.kill();
    idp.abort();
}

#[tokio::test]
async fn the_binary_refuses_a_jwks_url_that_is_not_http() {
    let status = Command::new(env!("CARGO_BIN_EXE_tickets-mcp"))
        .args(["--listen", "127.0.0.1:0", "--jwks-url", "file:///etc/passwd"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .await
        .expect("run");
    assert!(!status.success());
}
