//! A tokens-per-minute limit tripped by the LLM router's own model call, through a real
//! `switchboard serve` and a scripted OpenAI-compatible server: the caller gets 429 with
//! `retry-after` and `retry_after_ms` naming the limit, not a 502.

#[path = "common/durable.rs"]
#[allow(dead_code)]
mod durable;

use serde_json::{Value, json};
use switchboard_testkit::Serve;
use switchboard_testkit::llm::{Script, ScriptedLlm};

/// Asks `question` as the bearer of `token`; returns status, `retry-after` and body.
async fn ask(base: &str, token: &str, question: &str) -> (u16, Option<String>, Value) {
    let response = reqwest::Client::new()
        .post(format!("{base}/v1/chat/completions"))
        .bearer_auth(token)
        .json(&json!({"model": "switchboard", "messages": [{"role": "user", "content": question}]}))
        .send()
        .await
        .expect("the server answers");
    let status = response.status().as_u16();
    let retry_after = response.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_string);
    (status, retry_after, response.json().await.expect("a JSON body"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_llm_routers_tokens_per_minute_limit_answers_429_with_the_wait() {
    // The model answers every routing call in words, with no agent: a clarifying question.
    let llm = ScriptedLlm::start(Script::default()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let extra = format!(
        "[llm]\nbase_url = \"{}\"\nmodel = \"gpt-4o-mini\"\n[limits]\nuser = {{ tpm = 200 }}\n",
        llm.base_url()
    );
    let config = durable::init_demo(dir.path(), &extra);
    let text = std::fs::read_to_string(&config).expect("the config");
    let text = text.replacen("kind = \"lexical\"", "kind = \"llm\"", 1);
    assert!(text.contains("kind = \"llm\""), "the demo config names its router kind:\n{text}");
    std::fs::write(&config, text).expect("write the config");
    let alice = durable::token(&config, "alice@example.com");
    let server = Serve::start(durable::bin(), Some(&config), &[]).await;

    // The router's prompt (its instructions and one tool per agent) spends the minute's budget.
    let (status, _, body) = ask(server.url(), &alice, "hello there").await;
    assert_eq!(status, 200, "the first routing call fits the empty window: {body}");
    assert_eq!(llm.calls(), 1, "{body}");

    let (status, retry_after, body) = ask(server.url(), &alice, "hello again").await;
    assert_eq!(status, 429, "{body}");
    let error = &body["error"];
    assert_eq!(error["type"], "rate_limit_error", "{body}");
    let message = error["message"].as_str().unwrap_or_default();
    assert!(message.contains("200 tokens per minute for user alice@example.com"), "{message}");
    let wait_ms = error["retry_after_ms"].as_u64().expect("retry_after_ms");
    assert!(wait_ms > 0 && wait_ms <= 60_000, "derived from the one-minute window: {wait_ms}");
    let seconds: u64 = retry_after.expect("retry-after").parse().expect("whole seconds");
    // The header is the same wait in whole seconds, rounded up.
    assert!((wait_ms.div_ceil(1000)..=wait_ms / 1000 + 1).contains(&seconds), "{seconds} s vs {wait_ms} ms");
    assert_eq!(llm.calls(), 1, "the refused routing call never reached the model");
}
