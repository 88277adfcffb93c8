//! Streamed completions against the scripted OpenAI-compatible server on a real socket: pieces
//! arrive while the model is still writing, concatenate to the returned text, and the model's
//! reported usage is kept; a fallback after a failed primary streams its answer once.

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
    let reply = client.chat_stream(&ctx(), &question(), &on_delta).await.expect("streamed");
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
    let reply = client.chat_stream(&ctx(), &question(), &|t| text.lock().unwrap().push_str(t)).await;
    assert_eq!(reply.expect("the alternate answers").content, ANSWER);
    assert_eq!(text.into_inner().unwrap(), ANSWER);
    assert_eq!((primary.calls(), alternate.calls()), (1, 1));
}
