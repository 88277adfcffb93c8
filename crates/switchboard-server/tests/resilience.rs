//! The served endpoint with `[resilience]` and `[llm] fallbacks`: a primary model server that
//! fails is stood in for by the alternate, its circuit opens, shows on `/health`, fails fast, and
//! closes again once the primary recovers. Real sockets: the scripted LLM servers and the
//! endpoint itself.

mod common;

use common::{Server, parts, post};
use serde_json::{Value, json};
use std::time::Duration;
use switchboard_testkit::llm::{Script, ScriptedLlm};

const CAROL: Option<&str> = Some("carol@example.com");

async fn circuit(server: &Server, upstream: &str) -> Value {
    let health: Value =
        reqwest::get(server.url("/health")).await.expect("/health").json().await.expect("json");
    health["checks"]["circuits"][upstream].clone()
}

async fn ask(server: &Server) {
    let ask = json!({"messages": [{"role": "user", "content": "what is the hotel limit for travel"}]});
    let (status, _, body) = parts(post(server, "/v1/chat/completions", CAROL, ask).await).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn a_failing_primary_falls_back_and_its_circuit_opens_shows_on_health_and_closes() {
    // The primary fails its first two calls, then recovers.
    let primary =
        ScriptedLlm::start(Script::from_toml("[[faults]]\nstatus = 500\nfirst = 2\n").expect("script")).await;
    let alternate = ScriptedLlm::start(Script::default()).await;
    let llm = serde_json::from_value(json!({
        "base_url": primary.base_url(),
        "model": "primary",
        "fallbacks": [{"base_url": alternate.base_url(), "model": "alternate"}],
    }))
    .expect("llm config");
    let resilience = serde_json::from_value(json!({
        "max_attempts": 1,
        "breaker_failures": 2,
        "breaker_cool_down_ms": 400,
    }))
    .expect("resilience config");
    let server = Server::demo_with(|c| {
        c.config.llm = Some(llm);
        c.config.resilience = resilience;
    })
    .await;
    let upstream = primary.base_url().trim_end_matches("/v1").to_string();

    for _ in 0..5 {
        ask(&server).await;
        if circuit(&server, &upstream).await["state"] == "open" {
            break;
        }
    }
    let open = circuit(&server, &upstream).await;
    assert_eq!(open["state"], "open", "{open}");
    assert!(open["retry_in_ms"].as_u64().is_some(), "{open}");
    assert!(alternate.calls() >= 1, "the alternate answered while the primary failed");
    assert!(alternate.requests().iter().all(|r| r["model"] == "alternate"));

    // While open, nothing reaches the primary: answers come from the alternate.
    let (primary_calls, alternate_calls) = (primary.calls(), alternate.calls());
    ask(&server).await;
    assert_eq!(primary.calls(), primary_calls, "an open circuit fails fast");
    assert!(alternate.calls() > alternate_calls);

    // After the cool-down one probe reaches the (recovered) primary and the circuit closes.
    for _ in 0..100 {
        if circuit(&server, &upstream).await["state"] == "half_open" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    ask(&server).await;
    let closed = circuit(&server, &upstream).await;
    assert_eq!(closed["state"], "closed", "{closed}");
    assert!(primary.calls() > primary_calls);
    server.stop().await;
}
