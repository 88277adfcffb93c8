//! Streamed completions against the scripted OpenAI-compatible server on a real socket: pieces
//! arrive while the model is still writing, concatenate to the returned text, and the model's
//! reported usage is kept; a fallback after a failed primary streams its answer once; over HTTP/2
//! with prior knowledge, concurrent streams share one connection.

use std::sync::{Arc, Mutex};
use switchboard_core::{
    AgentKind, AgentSpec, AuthMethod, Caller, CredentialMode, CredentialSpec, Message, RunContext,
};
use switchboard_govern::retry::Resilience;
use switchboard_govern::{Egress, Gateway, layers::StandardCredentials};
use switchboard_llm::{ChatRequest, LlmClient, Target};
use switchboard_store::MemorySink;
use switchboard_testkit::llm::{Script, ScriptedLlm};

const ANSWER: &str = "Hotels are capped at two hundred and fifty dollars per night in every city we visit.";

fn egress() -> Egress {
    let sink = Arc::new(MemorySink::default());
    let gw = Arc::new(
        Gateway::builder(sink, Arc::new(StandardCredentials::new("switchboard-sp")))
            .resilience(Resilience::default())
            .build(),
    );
    gw.egress(Arc::new(AgentSpec {
        credential: CredentialSpec { mode: CredentialMode::Automatic, ..Default::default() },
        ..AgentSpec::new("llm", AgentKind::Tool, "the LLM")
    }))
}

fn ctx() -> RunContext {
    let caller = Caller::new("alice@example.com", "alice@example.com", vec![], AuthMethod::Development);
    RunContext::new(caller, std::time::Duration::from_secs(20))
}

fn answering() -> Script {
    let script = serde_json::json!({"default": {"text": ANSWER}});
    Script::from_json(&script.to_string()).expect("script").with_token_delay_ms(20)
}

fn question() -> ChatRequest {
    ChatRequest { messages: vec![Message::user("what is the hotel limit")], ..Default::default() }
}

#[tokio::test]
async fn pieces_arrive_while_the_model_writes_and_add_up_to_the_answer() {
    let llm = ScriptedLlm::start(answering()).await;
    let client = LlmClient::new(egress(), llm.base_url(), "scripted");
    // Each piece with whether the model had finished its stream when it arrived.
    let pieces = Mutex::new(Vec::new());
    let on_delta = |t: &str| pieces.lock().unwrap().push((t.to_string(), llm.streams_finished()));
    let reply = client.chat_stream(&ctx(), question(), &on_delta).await.expect("streamed");
    let pieces = pieces.into_inner().unwrap();
    assert!(pieces.len() > 5, "{pieces:?}");
    assert_eq!(pieces.iter().map(|(t, _)| t.as_str()).collect::<String>(), ANSWER);
    assert_eq!(reply.content, ANSWER);
    assert_eq!(pieces[0].1, 0, "the first piece arrived before the model finished");
    let (prompt, completion) = llm.reported_tokens();
    assert_eq!((reply.usage.prompt_tokens, reply.usage.completion_tokens), (prompt, completion));
    let request = &llm.requests()[0];
    assert_eq!(
        (request["stream"].as_bool(), request["stream_options"]["include_usage"].as_bool()),
        (Some(true), Some(true))
    );
}

#[tokio::test]
async fn a_failed_primary_falls_back_and_the_answer_streams_once() {
    let primary = ScriptedLlm::start(Script::failing(503, "primary is down")).await;
    let alternate = ScriptedLlm::start(answering()).await;
    let egress = egress();
    let client = LlmClient::new(egress.clone(), primary.base_url(), "primary")
        .with_fallbacks(vec![Target::new(egress, alternate.base_url(), "alternate")]);
    let text = Mutex::new(String::new());
    let reply = client.chat_stream(&ctx(), question(), &|t| text.lock().unwrap().push_str(t)).await;
    assert_eq!(reply.expect("the alternate answers").content, ANSWER);
    assert_eq!(text.into_inner().unwrap(), ANSWER);
    assert_eq!((primary.calls(), alternate.calls()), (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_http2_with_prior_knowledge_concurrent_streams_share_one_connection() {
    let llm = ScriptedLlm::start(answering()).await;
    let http = reqwest::Client::builder().http2_prior_knowledge().build().expect("an HTTP/2 client");
    let client = LlmClient::new(egress(), llm.base_url(), "scripted").with_http(http);
    let ctx = ctx();
    let calls = (0..20).map(|_| client.chat_stream(&ctx, question(), &|_: &str| {}));
    for reply in futures::future::join_all(calls).await {
        assert_eq!(reply.expect("streamed over HTTP/2").content, ANSWER);
    }
    assert_eq!(llm.calls(), 20);
    assert_eq!(llm.http2_calls(), 20, "every call went over HTTP/2");
    assert_eq!(llm.connections(), 1, "the twenty streams shared one connection");
}
