//! LLM resilience against real scripted OpenAI-compatible servers on sockets: retries honouring
//! `Retry-After`, fallback to an alternate on 5xx, the primary's circuit breaker, and an A/B
//! split by request id.

use std::sync::Arc;
use std::time::Duration;
use switchboard_core::{
    AgentKind, AgentSpec, AuthMethod, Caller, CredentialMode, CredentialSpec, Message, RunContext,
};
use switchboard_govern::retry::{BreakerPolicy, CircuitState, Resilience, RetryPolicy};
use switchboard_govern::{Egress, Gateway, layers::StandardCredentials};
use switchboard_llm::{ChatRequest, LlmClient, Target};
use switchboard_store::MemorySink;
use switchboard_testkit::llm::{Script, ScriptedLlm};

fn egress(resilience: Resilience) -> (Egress, Arc<Gateway>, Arc<MemorySink>) {
    let sink = Arc::new(MemorySink::default());
    let gw = Arc::new(
        Gateway::builder(sink.clone(), Arc::new(StandardCredentials::new("switchboard-sp")))
            .resilience(resilience)
            .build(),
    );
    let spec = Arc::new(AgentSpec {
        credential: CredentialSpec { mode: CredentialMode::Automatic, ..Default::default() },
        ..AgentSpec::new("llm", AgentKind::Tool, "the LLM")
    });
    (gw.egress(spec), gw, sink)
}

fn retries() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        base_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_secs(2),
    }
}

fn ctx() -> RunContext {
    let caller = Caller::new(
        "alice@example.com",
        "alice@example.com",
        vec!["west_sales".into()],
        AuthMethod::Development,
    );
    RunContext::new(caller, Duration::from_secs(20))
}

fn hello() -> ChatRequest {
    ChatRequest { messages: vec![Message::user("hello")], ..Default::default() }
}

#[tokio::test]
async fn a_429_with_retry_after_is_retried_on_the_same_server() {
    let script = Script::from_toml("[[faults]]\nstatus = 429\nfirst = 1\nretry_after = 1\n").expect("script");
    let server = ScriptedLlm::start(script).await;
    let (egress, _, sink) = egress(Resilience::new(retries(), None));
    let client = LlmClient::new(egress, server.base_url(), "gpt-primary");
    let reply = client.chat(&ctx(), &hello()).await.expect("the retry succeeds");
    assert!(reply.content.contains("hello"), "{}", reply.content);
    assert_eq!(server.calls(), 2);
    let spans = sink.spans();
    assert_eq!(spans.len(), 1);
    assert_eq!(spans[0].attributes["switchboard.http.attempts"], 2);
}

#[tokio::test]
async fn a_primary_answering_500_falls_back_to_the_alternate() {
    let primary = ScriptedLlm::start(Script::failing(500, "primary is down")).await;
    let alternate = ScriptedLlm::start(Script::default()).await;
    let (egress, _, sink) = egress(Resilience::new(retries(), None));
    let client = LlmClient::new(egress.clone(), primary.base_url(), "gpt-primary")
        .with_fallbacks(vec![Target::new(egress, alternate.base_url(), "gpt-alternate")]);
    let reply = client.chat(&ctx(), &hello()).await.expect("the alternate answers");
    assert!(reply.content.contains("hello"), "{}", reply.content);
    assert_eq!(primary.calls(), 3, "the primary was retried first");
    assert_eq!(alternate.calls(), 1);
    assert_eq!(alternate.requests()[0]["model"], "gpt-alternate");
    let spans = sink.spans();
    assert_eq!(spans.len(), 2, "one hop per model tried");
    let used = spans.iter().find(|s| s.attributes.get("gen_ai.response.model").is_some()).expect("a success");
    assert_eq!(used.attributes["gen_ai.response.model"], "gpt-alternate");
    assert_eq!(used.attributes["switchboard.llm.fallback"], 1);
}

#[tokio::test]
async fn a_400_from_the_primary_is_not_a_reason_to_fall_back() {
    let primary = ScriptedLlm::start(Script::failing(400, "bad request")).await;
    let alternate = ScriptedLlm::start(Script::default()).await;
    let (egress, _, _) = egress(Resilience::new(retries(), None));
    let client = LlmClient::new(egress.clone(), primary.base_url(), "gpt-primary")
        .with_fallbacks(vec![Target::new(egress, alternate.base_url(), "gpt-alternate")]);
    client.chat(&ctx(), &hello()).await.expect_err("the request itself is wrong");
    assert_eq!((primary.calls(), alternate.calls()), (1, 0));
}

#[tokio::test]
async fn an_open_primary_circuit_goes_straight_to_the_alternate_and_closes_again() {
    let primary =
        ScriptedLlm::start(Script::from_toml("[[faults]]\nstatus = 503\nfirst = 2\n").expect("script")).await;
    let alternate = ScriptedLlm::start(Script::default()).await;
    let breaker = BreakerPolicy { failures: 2, cool_down: Duration::from_millis(300) };
    let (egress, gw, _) = egress(Resilience::new(RetryPolicy::off(), Some(breaker)));
    let client = LlmClient::new(egress.clone(), primary.base_url(), "gpt-primary")
        .with_fallbacks(vec![Target::new(egress, alternate.base_url(), "gpt-alternate")]);
    for _ in 0..3 {
        client.chat(&ctx(), &hello()).await.expect("answered by the alternate");
    }
    assert_eq!(primary.calls(), 2, "the third call did not reach the open primary");
    assert_eq!(alternate.calls(), 3);
    let circuits = gw.resilience().circuits();
    let open = circuits.iter().find(|c| c.state == CircuitState::Open).expect("the primary's circuit");
    assert!(primary.base_url().contains(open.upstream.trim_start_matches("http://")), "{open:?}");
    for _ in 0..100 {
        if gw.resilience().circuits().iter().all(|c| c.state != CircuitState::Open) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    client.chat(&ctx(), &hello()).await.expect("the probe reaches the recovered primary");
    assert_eq!((primary.calls(), alternate.calls()), (3, 3));
    assert!(gw.resilience().circuits().iter().all(|c| c.state == CircuitState::Closed));
}

#[tokio::test]
async fn an_80_20_split_over_1000_calls_lands_within_5_points() {
    let server = ScriptedLlm::start(Script::default()).await;
    let (egress, _, _) = egress(Resilience::default());
    let client = LlmClient::new(egress, server.base_url(), "gpt-a")
        .with_split(vec![("gpt-a".into(), 80), ("gpt-b".into(), 20)]);
    let ctx0 = ctx();
    for _ in 0..1000 {
        client.chat(&ctx(), &hello()).await.expect("answered");
    }
    let b = server.requests().iter().filter(|r| r["model"] == "gpt-b").count();
    let share = b as f64 / 10.0;
    println!("80/20 split over 1000 calls: gpt-b got {share:.1}%");
    assert!((15.0..=25.0).contains(&share), "gpt-b got {share}%");
    // Deterministic per request id: the same id always picks the same model.
    let before = server.requests().len();
    for _ in 0..5 {
        client.chat(&ctx0, &hello()).await.expect("answered");
    }
    let models: std::collections::HashSet<String> = server.requests()[before..]
        .iter()
        .map(|r| r["model"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(models.len(), 1, "{models:?}");
}
