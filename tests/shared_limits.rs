//! Rate limits shared by two `switchboard serve` processes through the real Redis on the machine,
//! and what happens when Redis is not there.
//!
//! The servers share one configuration (and so one development identity provider): a user limit
//! of 10 queries per minute, counted in Redis under a key prefix unique to the test.

#[path = "common/durable.rs"]
#[allow(dead_code)]
mod durable;

use serde_json::{Value, json};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};
use switchboard_testkit::{Serve, free_port};

/// `SWITCHBOARD_TEST_REDIS_URL`, or the local Redis.
fn redis_url() -> String {
    std::env::var("SWITCHBOARD_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn unique_prefix() -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_nanos();
    format!("sbtest-{}-{nanos}", std::process::id())
}

/// Asks `question` as the bearer of `token`; returns status, `retry-after`, request id and body.
async fn ask(base: &str, token: &str) -> (u16, Option<String>, String, Value) {
    let response = reqwest::Client::new()
        .post(format!("{base}/v1/chat/completions"))
        .bearer_auth(token)
        .json(&json!({"model": "switchboard", "messages": [{"role": "user", "content": "total revenue by region"}]}))
        .send()
        .await
        .expect("the server answers");
    let status = response.status().as_u16();
    let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    let (retry_after, id) = (header("retry-after"), header("x-request-id").unwrap_or_default());
    (status, retry_after, id, response.json().await.expect("a JSON body"))
}

/// The audit rows of one request, through the CLI.
fn audit_of(config: &std::path::Path, request: &str) -> Value {
    let out = Command::new(durable::bin())
        .args(["audit", "--json", "--request", request, "--config"])
        .arg(config)
        .output()
        .expect("switchboard audit runs");
    assert!(out.status.success(), "switchboard audit failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("JSON audit rows")
}

/// The `rate_limited` audit rows of `request` once they are written: the audit queue never holds
/// up a response, so a row lands shortly after the answer it records (waits up to 10 s).
async fn rate_limited_rows(config: &std::path::Path, request: &str) -> (Vec<Value>, Value) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let rows = audit_of(config, request);
        let limited: Vec<Value> = rows
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| r["decision"] == "rate_limited")
            .cloned()
            .collect();
        if !limited.is_empty() || std::time::Instant::now() > deadline {
            return (limited, rows);
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_sharing_redis_refuse_the_eleventh_request_of_a_user_whichever_gets_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let limits = format!(
        "[limits]\nredis = \"{}\"\nredis_prefix = \"{}\"\nuser = {{ qpm = 10 }}\n",
        redis_url(),
        unique_prefix()
    );
    let config = durable::init_demo(dir.path(), &limits);
    let alice = durable::token(&config, "alice@example.com");
    let bob = durable::token(&config, "bob@example.com");
    let servers = [
        Serve::start(durable::bin(), Some(&config), &[]).await,
        Serve::start(durable::bin(), Some(&config), &[]).await,
    ];

    for n in 0..10 {
        let (status, _, _, body) = ask(servers[n % 2].url(), &alice).await;
        assert_eq!(status, 200, "request {} of 10 is within the limit: {body}", n + 1);
    }
    for server in &servers {
        let (status, retry_after, id, body) = ask(server.url(), &alice).await;
        assert_eq!(status, 429, "the 11th request is refused by {}: {body}", server.url());
        let error = &body["error"];
        assert_eq!(error["type"], "rate_limit_error");
        let message = error["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("10 queries per minute for user alice@example.com"),
            "names the limit: {message}"
        );
        let wait_ms = error["retry_after_ms"].as_u64().expect("retry_after_ms in the error object");
        assert!(wait_ms > 0 && wait_ms <= 60_000, "within the window: {wait_ms}");
        let header: u64 = retry_after.expect("a retry-after header").parse().expect("seconds");
        assert_eq!(header, wait_ms.div_ceil(1000).max(1), "the header is the same wait, in whole seconds");

        let (limited, rows) = rate_limited_rows(&config, &id).await;
        assert_eq!(limited.len(), 1, "one rate_limited audit row: {rows}");
        let reason = limited[0]["reason"].as_str().unwrap_or_default();
        assert!(reason.contains("queries per minute for user alice@example.com"), "{reason}");
    }
    let (status, _, _, body) = ask(servers[1].url(), &bob).await;
    assert_eq!(status, 200, "another user has a window of their own: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_the_limits_hold_per_process_and_the_service_stays_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Nothing listens there: Redis is "down" for the whole test.
    let limits = format!("[limits]\nredis = \"redis://127.0.0.1:{}\"\nuser = {{ qpm = 3 }}\n", free_port());
    let config = durable::init_demo(dir.path(), &limits);
    let alice = durable::token(&config, "alice@example.com");
    let server = Serve::start(durable::bin(), Some(&config), &[]).await;
    for n in 0..3 {
        let (status, _, _, body) = ask(server.url(), &alice).await;
        assert_eq!(status, 200, "request {} is served with Redis down: {body}", n + 1);
    }
    let (status, retry_after, _, body) = ask(server.url(), &alice).await;
    assert_eq!(status, 429, "the local count still limits: {body}");
    assert!(retry_after.is_some());
    let log = server.log();
    assert!(log.contains("Redis is unavailable"), "the fallback is logged as a warning:\n{log}");
}
