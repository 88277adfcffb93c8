//! Token-by-token streaming: when the answer is the supervisor's synthesis of several agents'
//! answers, the model's pieces reach the caller while the (scripted, slow) model is still
//! writing, over chat completions and Responses alike; each piece is sent once, so the pieces
//! still concatenate to the answer. Also prints time to first token through Switchboard next to
//! the model's own.

mod common;

use common::{Server, post};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use switchboard_runtime::config::RouterKind;
use switchboard_testkit::llm::{Script, ScriptedLlm};
use switchboard_testkit::sse::SseReader;

const CAROL: Option<&str> = Some("carol@example.com");

/// Between the scripted model's streamed chunks: long enough that "before the model finished"
/// is decided by a wide margin, not by scheduling.
const TOKEN_DELAY_MS: u64 = 50;

/// The synthesized answer: 40 words, so the model takes about two seconds to write it.
fn long_answer() -> String {
    (1..=40).map(|i| format!("word{i}")).collect::<Vec<_>>().join(" ")
}

/// The LLM router sends every question to two agents (so the supervisor synthesizes); the
/// synthesis prompt gets the long answer; anything else (the knowledge agent) a short one.
fn script() -> Script {
    let script = json!({
        "rules": [
            {"when": {"tools": true, "tool": "^policies$"},
             "reply": {"tool_calls": [
                 {"name": "policies", "arguments": {"question": "what is the hotel limit"}},
                 {"name": "sales", "arguments": {"question": "what is our revenue"}},
             ]}},
            {"when": {"system": "(?i)combine answers from specialist agents"},
             "reply": {"text": long_answer()}},
        ],
        "default": {"text": "Hotels are capped at $250 per night [1]."},
    });
    Script::from_json(&script.to_string()).unwrap().with_token_delay_ms(TOKEN_DELAY_MS)
}

async fn serve() -> (ScriptedLlm, Server) {
    let llm = ScriptedLlm::start(script()).await;
    let config = serde_json::from_value(json!({"base_url": llm.base_url(), "model": "scripted"})).unwrap();
    let server = Server::demo_with(|c| {
        c.config.llm = Some(config);
        c.config.router.kind = RouterKind::Llm;
    })
    .await;
    (llm, server)
}

/// What a client saw of one streamed answer.
struct Seen {
    /// The text pieces, in order.
    deltas: Vec<String>,
    /// How many pieces arrived while the model had not finished its stream.
    before_model_finished: usize,
    /// When the first piece arrived.
    first_at: Option<Instant>,
    /// Every event's data, parsed (`[DONE]` excepted).
    events: Vec<Value>,
}

/// Reads an event stream as it arrives, taking text pieces with `piece`.
async fn read(
    response: reqwest::Response,
    llm: &ScriptedLlm,
    piece: impl Fn(&Value) -> Option<String>,
) -> Seen {
    let mut seen = Seen { deltas: vec![], before_model_finished: 0, first_at: None, events: vec![] };
    let mut reader = SseReader::new(response);
    while let Some(data) = reader.next().await {
        if data == "[DONE]" {
            continue;
        }
        let event: Value = serde_json::from_str(&data).unwrap();
        if let Some(text) = piece(&event) {
            seen.first_at.get_or_insert_with(Instant::now);
            if llm.streams_finished() == 0 {
                seen.before_model_finished += 1;
            }
            seen.deltas.push(text);
        }
        seen.events.push(event);
    }
    seen
}

fn chat_piece(event: &Value) -> Option<String> {
    event["choices"][0]["delta"]["content"].as_str().filter(|t| !t.is_empty()).map(str::to_string)
}

fn responses_piece(event: &Value) -> Option<String> {
    (event["type"] == "response.output_text.delta").then(|| event["delta"].as_str().unwrap().to_string())
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Prints time to first token: from the caller's request, and from when the streamed model
/// call reached the model (comparable with the model's own figure, measured the same way).
fn report(label: &str, sent: Instant, seen: &Seen, llm: &ScriptedLlm) {
    let (Some(first), Some(requested)) = (seen.first_at, llm.last_stream_requested()) else { return };
    println!(
        "time to first token, {label}: {:.1} ms from the caller's request; {:.2} ms from the model \
         receiving its streamed call (first chunk delay {TOKEN_DELAY_MS} ms)",
        millis(first - sent),
        millis(first.saturating_duration_since(requested)),
    );
}

#[tokio::test]
async fn chat_completions_stream_the_synthesis_while_the_model_writes_it() {
    let (llm, server) = serve().await;
    let ask = json!({
        "messages": [{"role": "user", "content": "what is the hotel limit and our revenue"}],
        "stream": true, "stream_options": {"include_usage": true},
    });
    let sent = Instant::now();
    let response = post(&server, "/v1/chat/completions", CAROL, ask).await;
    assert_eq!(response.status(), 200);
    let seen = read(response, &llm, chat_piece).await;
    assert_eq!(seen.deltas.concat(), long_answer(), "each piece once, in order");
    assert!(
        seen.before_model_finished > 0,
        "no piece arrived before the model finished its answer ({} pieces)",
        seen.deltas.len()
    );
    assert_eq!(llm.streams_finished(), 1, "only the synthesis streams");
    let synthesis = llm.requests().into_iter().find(|r| r["stream"] == true).unwrap();
    assert_eq!(synthesis["stream_options"]["include_usage"], true);
    let usage = seen.events.iter().find(|e| e["usage"].is_object()).unwrap();
    assert_eq!(usage["usage"]["completion_tokens"].as_u64(), Some(llm.reported_tokens().1));
    report("through Switchboard, chat completions", sent, &seen, &llm);

    // The model's own time to first token, streamed straight from it.
    let direct = json!({"model": "scripted", "stream": true, "messages": [
        {"role": "system", "content": "You combine answers from specialist agents into one reply."},
        {"role": "user", "content": "hotels"},
    ]});
    let sent = Instant::now();
    let response = reqwest::Client::new()
        .post(format!("{}/chat/completions", llm.base_url()))
        .json(&direct)
        .send()
        .await;
    let seen = read(response.unwrap(), &llm, chat_piece).await;
    report("the model's own, called directly", sent, &seen, &llm);
}

#[tokio::test]
async fn responses_stream_the_synthesis_while_the_model_writes_it() {
    let (llm, server) = serve().await;
    let ask = json!({"input": "what is the hotel limit and our revenue", "stream": true});
    let sent = Instant::now();
    let response = post(&server, "/v1/responses", CAROL, ask).await;
    assert_eq!(response.status(), 200);
    let seen = read(response, &llm, responses_piece).await;
    assert_eq!(seen.deltas.concat(), long_answer(), "each piece once, in order");
    assert!(
        seen.before_model_finished > 0,
        "no piece arrived before the model finished its answer ({} pieces)",
        seen.deltas.len()
    );
    let done = seen.events.iter().find(|e| e["type"] == "response.output_text.done").unwrap();
    assert_eq!(done["text"], long_answer());
    let completed = seen.events.last().unwrap();
    assert_eq!(completed["type"], "response.completed");
    let numbers: Vec<u64> = seen.events.iter().filter_map(|e| e["sequence_number"].as_u64()).collect();
    assert_eq!(numbers, (0..seen.events.len() as u64).collect::<Vec<_>>(), "numbered in order");
    report("through Switchboard, Responses", sent, &seen, &llm);
}

#[tokio::test]
async fn a_plain_request_gets_the_whole_synthesis_from_an_unstreamed_call() {
    let (llm, server) = serve().await;
    let ask = json!({"messages": [{"role": "user", "content": "what is the hotel limit and our revenue"}]});
    let response = post(&server, "/v1/chat/completions", CAROL, ask).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["choices"][0]["message"]["content"], long_answer());
    assert!(llm.requests().iter().all(|r| r.get("stream").is_none()), "no model call was streamed");
    assert_eq!(llm.streams_finished(), 0);
}
