//! The payload log (`[payload_log]`) against real processes: `switchboard serve` with it on logs
//! each run request (chat completions, Responses and `/invocations`, streamed or not) with the
//! card numbers and social security numbers masked and each body capped, `switchboard payloads`
//! reads it back; with it off (the default) nothing is logged. SQLite and PostgreSQL stores.

#[path = "common/durable.rs"]
#[allow(dead_code)] // the load and tally helpers are for the outage tests
mod durable;

use serde_json::{Value, json};
use std::path::Path;
use switchboard_testkit::pg::TestDatabase;
use switchboard_testkit::{Serve, run_cli};

const CARD: &str = "4111 1111 1111 1111";
const SSN: &str = "123-45-6789";
const MAX_BYTES: usize = 600;

fn config_on() -> String {
    format!("[payload_log]\nenabled = true\nmax_bytes = {MAX_BYTES}\n")
}

/// `switchboard payloads --json` with `args`, parsed.
fn payloads(config: &Path, args: &[&str]) -> Vec<Value> {
    let config = config.to_str().expect("a UTF-8 path");
    let mut all = vec!["payloads", "--json", "--limit", "100"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--config", config]);
    let out = run_cli(durable::bin(), &all, &[]);
    serde_json::from_str::<Value>(&out).expect("JSON rows").as_array().cloned().unwrap_or_default()
}

/// POSTs `body` to `path` as the holder of `token`; returns the request id and the whole body.
async fn post(server: &Serve, token: &str, path: &str, body: Value) -> (String, String) {
    let response = reqwest::Client::new()
        .post(format!("{}{path}", server.url()))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .expect("the server answers");
    assert_eq!(response.status(), 200);
    let id = response.headers()["x-request-id"].to_str().unwrap_or_default().to_string();
    (id, response.text().await.expect("the body"))
}

fn question(text: &str) -> Value {
    json!({"messages": [{"role": "user", "content": text}]})
}

fn row<'a>(rows: &'a [Value], request_id: &str) -> &'a Value {
    rows.iter()
        .find(|r| r["request_id"] == request_id)
        .unwrap_or_else(|| panic!("no payload row for {request_id} in {rows:#?}"))
}

fn assert_masked_and_capped(row: &Value) {
    for body in ["request_body", "response_body"] {
        let text = row[body].as_str().expect("a body");
        assert!(!text.contains(CARD) && !text.contains(SSN), "{body} leaks PII: {text}");
        let kept = text.split(switchboard_store::TRUNCATION_MARKER).next().unwrap_or_default();
        assert!(kept.len() <= MAX_BYTES, "{body} is capped: {} bytes", kept.len());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payloads_are_logged_masked_and_capped_for_chat_and_responses_streamed_or_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = durable::init_demo(dir.path(), &config_on());
    let carol = durable::token(&config, "carol@example.com");
    let mut server = Serve::start(durable::bin(), Some(&config), &[]).await;

    let pii = format!("total revenue by region; card {CARD}, ssn {SSN}");
    let (plain, _) = post(&server, &carol, "/v1/chat/completions", question(&pii)).await;
    let mut streamed_body = question(&pii);
    streamed_body["stream"] = json!(true);
    let (streamed, sse) = post(&server, &carol, "/v1/chat/completions", streamed_body).await;
    assert!(sse.contains("[DONE]"), "a stream: {sse}");
    let (responses, _) = post(&server, &carol, "/v1/responses", json!({"input": pii, "stream": true})).await;
    let long = format!("total revenue by region {}", "and more ".repeat(200));
    let (cut, _) = post(&server, &carol, "/v1/chat/completions", question(&long)).await;
    assert!(server.stop().success(), "graceful shutdown flushes the queue");

    let rows = payloads(&config, &[]);
    assert_eq!(rows.len(), 4, "{rows:#?}");
    for (id, endpoint) in [
        (&plain, "chat.completions"),
        (&streamed, "chat.completions"),
        (&responses, "responses"),
        (&cut, "chat.completions"),
    ] {
        let r = row(&rows, id);
        assert_eq!(r["endpoint"], endpoint);
        assert_eq!(r["status"], 200);
        assert_eq!(r["caller_email"], "carol@example.com");
        assert_masked_and_capped(r);
    }
    let request = row(&rows, &plain)["request_body"].as_str().unwrap_or_default().to_string();
    assert!(request.contains("[REDACTED_CARD_NUMBER]") && request.contains("[REDACTED_SSN]"), "{request}");
    let streamed_response = row(&rows, &streamed)["response_body"].as_str().unwrap_or_default().to_string();
    assert!(streamed_response.starts_with("data: "), "the events as sent: {streamed_response}");
    let cut_request = row(&rows, &cut)["request_body"].as_str().unwrap_or_default().to_string();
    assert!(cut_request.contains(switchboard_store::TRUNCATION_MARKER), "{cut_request}");
    assert!(cut_request.ends_with(" bytes in all]"), "{cut_request}");

    let one = payloads(&config, &["--request", &plain]);
    assert_eq!(one.len(), 1);
    assert_eq!(one[0]["request_id"], plain.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invocations_are_logged_under_their_own_endpoint_name_at_both_paths() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = durable::init_demo(dir.path(), &config_on());
    let carol = durable::token(&config, "carol@example.com");
    let mut server = Serve::start(durable::bin(), Some(&config), &[]).await;
    let models: Value = reqwest::Client::new()
        .get(format!("{}/v1/models", server.url()))
        .bearer_auth(&carol)
        .send()
        .await
        .expect("the server answers")
        .json()
        .await
        .expect("a model list");
    let served = models["data"][0]["id"].as_str().expect("the served model").to_string();
    let ask = json!({"input": [{"role": "user", "content": "total revenue by region"}]});
    let (direct, _) = post(&server, &carol, "/invocations", ask.clone()).await;
    let (endpoint, _) = post(&server, &carol, &format!("/serving-endpoints/{served}/invocations"), ask).await;
    assert!(server.stop().success(), "graceful shutdown flushes the queue");

    let rows = payloads(&config, &[]);
    assert_eq!(rows.len(), 2, "{rows:#?}");
    for id in [&direct, &endpoint] {
        let r = row(&rows, id);
        assert_eq!(r["endpoint"], "invocations");
        assert_eq!(r["status"], 200);
        assert!(r["request_body"].as_str().unwrap_or_default().contains("total revenue by region"), "{r:#?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_logged_when_the_payload_log_is_off() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = durable::init_demo(dir.path(), "");
    let carol = durable::token(&config, "carol@example.com");
    let mut server = Serve::start(durable::bin(), Some(&config), &[]).await;
    post(&server, &carol, "/v1/chat/completions", question("total revenue by region")).await;
    assert!(server.stop().success());
    assert!(payloads(&config, &[]).is_empty(), "off by default");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payloads_are_logged_in_a_postgres_store() {
    let db = TestDatabase::new().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = durable::demo_config(dir.path(), db.url(), &config_on());
    let carol = durable::token(&config, "carol@example.com");
    let mut server = Serve::start(durable::bin(), Some(&config), &[]).await;
    let pii = format!("total revenue by region; card {CARD}, ssn {SSN}");
    let (id, _) = post(&server, &carol, "/v1/chat/completions", question(&pii)).await;
    assert!(server.stop().success());

    let client = db.client().await;
    let stored = client
        .query("SELECT request_id, caller_email, request_body FROM payloads", &[])
        .await
        .expect("the payloads table");
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].get::<_, String>(0), id);
    assert_eq!(stored[0].get::<_, String>(1), "carol@example.com");
    let body: String = stored[0].get(2);
    assert!(body.contains("[REDACTED_CARD_NUMBER]") && !body.contains(CARD), "{body}");
    let rows = payloads(&config, &["--since", "1h"]);
    assert_eq!(rows.len(), 1, "the CLI reads the PostgreSQL store");
    assert_masked_and_capped(&rows[0]);
}
