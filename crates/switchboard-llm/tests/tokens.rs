//! Token counts of a server that reports no `usage`, over a real socket: the LLM hop's span gets
//! prompt and completion tokens counted with tiktoken in the model's encoding, and the
//! tokens-per-minute limit is charged with them, so the next call past the budget is refused.

use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use switchboard_core::{
    AgentKind, AgentSpec, AuthMethod, Caller, CredentialMode, CredentialSpec, ErrorKind, HopKind, Message,
    RunContext,
};
use switchboard_govern::Gateway;
use switchboard_govern::layers::{RateLimit, StandardCredentials};
use switchboard_govern::limits::{LimitRules, MemoryWindows, Rate};
use switchboard_llm::{ChatRequest, LlmClient, count_prompt_tokens, count_tokens_for};
use switchboard_store::MemorySink;
use switchboard_testkit::flaky::{FlakyUpstream, Reply};

const ANSWER: &str = "Die Übernachtungskosten dürfen 200 € pro Nacht nicht überschreiten.";
const NO_USAGE: &str = r#"{"id":"c1","object":"chat.completion","choices":[{"index":0,
    "message":{"role":"assistant","content":"Die Übernachtungskosten dürfen 200 € pro Nacht nicht überschreiten."},
    "finish_reason":"stop"}]}"#;

fn ctx() -> RunContext {
    let caller = Caller::new(
        "alice@example.com",
        "alice@example.com",
        vec!["west_sales".into()],
        AuthMethod::Development,
    );
    RunContext::new(caller, Duration::from_secs(20))
}

#[tokio::test]
async fn tokens_a_server_does_not_report_are_counted_on_the_span_and_against_the_limit() {
    let question = "What is the hotel limit in Berlin?";
    let prompt = count_prompt_tokens("gpt-4o", [("user", question)]);
    let completion = count_tokens_for("gpt-4o", ANSWER);
    assert_ne!(completion, count_tokens_for("gpt-4", ANSWER), "the model's own encoding matters here");

    let upstream = FlakyUpstream::start(vec![Reply::json(NO_USAGE), Reply::json(NO_USAGE)]).await;
    let sink = Arc::new(MemorySink::default());
    // Exactly one call's tokens fit the minute.
    let rules =
        LimitRules { user: Rate { qpm: None, tpm: Some(prompt + completion) }, ..LimitRules::default() };
    let gw = Arc::new(
        Gateway::builder(sink.clone(), Arc::new(StandardCredentials::new("switchboard-sp")))
            .rate_limit(RateLimit::new(rules, Arc::new(MemoryWindows::new())))
            .build(),
    );
    let spec = Arc::new(AgentSpec {
        credential: CredentialSpec { mode: CredentialMode::Automatic, ..Default::default() },
        ..AgentSpec::new("llm", AgentKind::Tool, "the LLM")
    });
    let client = LlmClient::new(gw.egress(spec), &format!("{}/v1", upstream.url()), "gpt-4o");
    let request = ChatRequest { messages: vec![Message::user(question)], ..Default::default() };

    let reply = client.chat(&ctx(), &request).await.expect("the first call fits");
    assert_eq!((reply.usage.prompt_tokens, reply.usage.completion_tokens), (prompt, completion));
    let spans = sink.spans();
    let span = spans
        .iter()
        .find(|s| s.attributes.get("switchboard.hop.kind") == Some(&json!(HopKind::Llm.as_str())))
        .expect("the LLM hop's span");
    assert_eq!(span.attributes.get("gen_ai.usage.input_tokens"), Some(&json!(prompt)));
    assert_eq!(span.attributes.get("gen_ai.usage.output_tokens"), Some(&json!(completion)));
    assert_eq!(span.attributes.get("switchboard.llm.tokens_counted"), Some(&json!("tiktoken o200k_base")));

    let e = client.chat(&ctx(), &request).await.expect_err("the minute's tokens are spent");
    assert_eq!(e.kind, ErrorKind::RateLimited, "{}", e.message);
    assert!(e.message.contains(&format!("{} tokens per minute", prompt + completion)), "{}", e.message);
    assert!(e.retry_after.is_some_and(|d| d > Duration::ZERO && d <= Duration::from_secs(60)));
    assert_eq!(upstream.calls(), 1, "the refused call never reached the server");
}
