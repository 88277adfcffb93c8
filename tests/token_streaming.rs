//! Token-by-token streaming through `switchboard serve`, over real sockets, against scripted
//! models that write their answers slowly (a delay between streamed chunks):
//! - a knowledge agent's answer (its model's text, then the sources) reaches the caller while
//!   the model is still writing it;
//! - so does a remote endpoint agent's answer, over chat completions chunks and Responses events;
//! - a fan-out's parts stream as each branch finishes: the fast branch's part arrives before the
//!   slow branch's model has answered, although the router listed the slow branch first;
//! - with an output guardrail (the endpoint's or the agent's own), the answer is fetched whole and
//!   checked whole before any of it is sent, so the caller never sees what the guardrail masks.
//!
//! Each over chat completions and Responses alike. Time to first token is printed, not asserted.

use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use switchboard_testkit::Serve;
use switchboard_testkit::llm::{Script, ScriptedLlm};
use switchboard_testkit::sse::SseReader;

/// Between a scripted model's streamed chunks: long enough that "while the model was writing"
/// is decided by a wide margin, not by scheduling.
const TOKEN_DELAY_MS: u64 = 40;

/// How long the slow fan-out branch's model takes to answer.
const SLOW_MS: u64 = 1500;

const HOTEL_QUESTION: &str = "What is the hotel limit per night in the travel policy?";
const WEATHER_QUESTION: &str = "What is the weather forecast for Paris tomorrow?";
const MARKET_QUESTION: &str = "What is the share price of the ACME stock ticker today?";

/// A scripted answer of `n` numbered words, so a model streaming it takes `n` chunk delays.
fn words(prefix: &str, n: usize) -> String {
    (1..=n).map(|i| format!("{prefix}{i}")).collect::<Vec<_>>().join(" ")
}

fn slow_model(answer: &str) -> Script {
    let script = json!({"default": {"text": answer}});
    Script::from_json(&script.to_string()).expect("script").with_token_delay_ms(TOKEN_DELAY_MS)
}

/// A remote agent: name, description, URL, protocol, and more TOML for its file.
type Endpoint<'a> = (&'a str, &'a str, String, &'a str, &'a str);

/// How the server reaches its `[llm]`: at which URL, and whether over HTTP/2 with prior knowledge.
type Llm<'a> = Option<(&'a str, bool)>;

/// A config dir: the travel policy as a knowledge agent (answering with `llm` when given), one
/// endpoint agent per [`Endpoint`], and `extra` TOML at the end of `switchboard.toml`.
fn site(dir: &Path, llm: Llm<'_>, endpoints: &[Endpoint<'_>], extra: &str) -> PathBuf {
    std::fs::create_dir_all(dir.join("agents")).expect("agents dir");
    std::fs::create_dir_all(dir.join("policies")).expect("policies dir");
    std::fs::write(
        dir.join("policies").join("travel.md"),
        "# Travel policy\n\n## Hotels\n\nHotel stays are capped at $250 per night in most cities \
         and $350 per night in high-cost cities.\n\n## Meals\n\nThe meal per diem is $75 per day.\n",
    )
    .expect("policy document");
    let llm = llm
        .map(|(url, http2)| {
            format!("[llm]\nbase_url = \"{url}\"\nmodel = \"scripted\"\nhttp2_prior_knowledge = {http2}\n\n")
        })
        .unwrap_or_default();
    std::fs::write(
        dir.join("switchboard.toml"),
        format!(
            "data_dir = \".\"\n\n[supervisor]\nname = \"switchboard\"\n\n[router]\nkind = \"lexical\"\n\n{llm}\
             [store]\npath = \"switchboard.db\"\n\n[identity]\nservice_principal = \"switchboard-sp\"\n\n\
             [[identity.dev_users]]\nemail = \"carol@example.com\"\nroles = [\"managers\"]\n\n{extra}"
        ),
    )
    .expect("config");
    std::fs::write(
        dir.join("agents").join("policies.toml"),
        "name = \"policies\"\nkind = \"knowledge\"\n\
         description = \"Company travel policy: hotel limits per night, meals and per diem.\"\n\
         examples = [\"What is the hotel limit per night?\", \"What is the meal per diem?\"]\n\
         [knowledge]\npath = \"policies\"\ntop_k = 2\n",
    )
    .expect("policies agent");
    for (name, description, url, protocol, more) in endpoints {
        std::fs::write(
            dir.join("agents").join(format!("{name}.toml")),
            format!(
                "name = \"{name}\"\nkind = \"endpoint\"\ndescription = \"{description}\"\n\
                 [endpoint]\nurl = \"{url}\"\nprotocol = \"{protocol}\"\nmodel = \"scripted\"\n\n{more}"
            ),
        )
        .expect("endpoint agent");
    }
    dir.join("switchboard.toml")
}

fn weather_agent(url: String, more: &str) -> Endpoint<'_> {
    (
        "forecast",
        "Weather forecasts for a city: rain, temperature and wind tomorrow.",
        url,
        "chat_completions",
        more,
    )
}

/// A development token for carol, from the CLI.
fn token(config: &Path) -> String {
    let config = config.to_str().expect("a UTF-8 config path");
    switchboard_testkit::run_cli(
        Path::new(env!("CARGO_BIN_EXE_switchboard")),
        &["token", "--as", "carol@example.com", "--config", config],
        &[],
    )
}

/// The two APIs a caller streams over.
#[derive(Clone, Copy, Debug)]
enum Api {
    Chat,
    Responses,
}

impl Api {
    fn ask(self, question: &str) -> (&'static str, Value) {
        match self {
            Api::Chat => (
                "/v1/chat/completions",
                json!({"stream": true, "messages": [{"role": "user", "content": question}]}),
            ),
            Api::Responses => ("/v1/responses", json!({"stream": true, "input": question})),
        }
    }

    /// A text piece of the answer, if `event` is one.
    fn piece(self, event: &Value) -> Option<String> {
        let text = match self {
            Api::Chat => event["choices"][0]["delta"]["content"].as_str(),
            Api::Responses if event["type"] == "response.output_text.delta" => event["delta"].as_str(),
            Api::Responses => None,
        };
        text.filter(|t| !t.is_empty()).map(str::to_string)
    }
}

/// What a client saw of one streamed answer.
struct Seen {
    /// The text pieces, in order.
    deltas: Vec<String>,
    /// How many pieces arrived while `writing` still held.
    while_writing: usize,
    /// When the request was sent and when the first piece arrived.
    sent: Instant,
    first_at: Option<Instant>,
    /// Every event's data, parsed (`[DONE]` excepted).
    events: Vec<Value>,
}

/// Streams `question` over `api` and reads the answer as it arrives; `writing` says whether the
/// model under test is still writing when a piece arrives.
async fn stream(server: &Serve, token: &str, api: Api, question: &str, writing: impl Fn() -> bool) -> Seen {
    let (path, body) = api.ask(question);
    let sent = Instant::now();
    let response = reqwest::Client::new()
        .post(format!("{}{path}", server.url()))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .expect("the request is answered");
    assert_eq!(response.status(), 200, "{api:?}: {}", server.log());
    let mut reader = SseReader::new(response);
    let mut seen = Seen { deltas: vec![], while_writing: 0, sent, first_at: None, events: vec![] };
    while let Some(data) = reader.next().await {
        if data == "[DONE]" {
            continue;
        }
        let event: Value = serde_json::from_str(&data).expect("events are JSON");
        if let Some(text) = api.piece(&event) {
            seen.first_at.get_or_insert_with(Instant::now);
            if writing() {
                seen.while_writing += 1;
            }
            seen.deltas.push(text);
        }
        seen.events.push(event);
    }
    assert!(
        !seen.events.iter().any(|e| e["error"].is_object() || e["type"] == "error"),
        "{api:?}: the stream carried an error: {:#?}",
        seen.events
    );
    seen
}

/// The whole answer as the API reports it at the end, where it does (Responses).
fn final_text(api: Api, seen: &Seen) -> Option<String> {
    match api {
        Api::Chat => None,
        Api::Responses => seen
            .events
            .iter()
            .find(|e| e["type"] == "response.output_text.done")
            .and_then(|e| e["text"].as_str().map(str::to_string)),
    }
}

/// Prints time to first token through Switchboard, from the caller's request and from when the
/// streamed model call reached the model.
fn report(label: &str, seen: &Seen, llm: &ScriptedLlm) {
    let (Some(first), Some(requested)) = (seen.first_at, llm.last_stream_requested()) else { return };
    println!(
        "time to first token, {label}: {:.1} ms from the caller's request; {:.2} ms from the model \
         receiving its streamed call (the model's first chunk is sent {TOKEN_DELAY_MS} ms after that)",
        (first - seen.sent).as_secs_f64() * 1000.0,
        first.saturating_duration_since(requested).as_secs_f64() * 1000.0,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn knowledge_and_remote_agents_stream_while_their_models_write() {
    let (knowledge_answer, remote_answer) = (words("hotel", 30), words("sunny", 30));
    let main = ScriptedLlm::start(slow_model(&knowledge_answer)).await;
    let remote = ScriptedLlm::start(slow_model(&remote_answer)).await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let markets = (
        "markets",
        "Stock market quotes: share prices of a ticker today.",
        format!("{}/responses", remote.base_url()),
        "responses",
        "",
    );
    // The knowledge agent's model is spoken to over HTTP/2 (`[llm] http2_prior_knowledge`); the
    // other tests here reach theirs over HTTP/1.1.
    let config = site(
        tmp.path(),
        Some((main.base_url(), true)),
        &[weather_agent(format!("{}/chat/completions", remote.base_url()), ""), markets],
        "",
    );
    let bin = Path::new(env!("CARGO_BIN_EXE_switchboard"));
    let server = Serve::start(bin, Some(&config), &[]).await;
    let token = token(&config);

    for api in [Api::Chat, Api::Responses] {
        // The knowledge agent: its model's answer as it writes it, then the sources.
        let finished = main.streams_finished();
        let seen = stream(&server, &token, api, HOTEL_QUESTION, || main.streams_finished() == finished).await;
        let answer = seen.deltas.concat();
        assert!(
            answer.starts_with(&knowledge_answer) && answer.contains("Sources:\n[1] Travel policy"),
            "{api:?}: the model's answer, then the sources: {answer}"
        );
        assert!(
            seen.while_writing > 1,
            "{api:?}: {} of {} pieces of the knowledge answer arrived while its model was writing",
            seen.while_writing,
            seen.deltas.len()
        );
        if let Some(text) = final_text(api, &seen) {
            assert_eq!(text, answer, "the pieces concatenate to the answer, each sent once");
        }
        let request = main.requests().pop().expect("the knowledge agent called its model");
        assert_eq!(request["stream"], true, "the knowledge agent's model call streamed");
        assert_eq!(main.http2_calls(), main.calls(), "every call to the model went over HTTP/2");
        report(&format!("knowledge agent, {api:?}"), &seen, &main);

        // Remote endpoint agents, over both of their protocols: their answers pass through as
        // the remote writes them.
        for question in [WEATHER_QUESTION, MARKET_QUESTION] {
            let finished = remote.streams_finished();
            let seen = stream(&server, &token, api, question, || remote.streams_finished() == finished).await;
            assert_eq!(
                seen.deltas.concat(),
                remote_answer,
                "{api:?}, {question}: the remote's answer, verbatim"
            );
            assert!(
                seen.while_writing > 1,
                "{api:?}, {question}: {} of {} pieces arrived while the remote was writing",
                seen.while_writing,
                seen.deltas.len()
            );
            if let Some(text) = final_text(api, &seen) {
                assert_eq!(text, remote_answer);
            }
            assert_eq!(remote.requests().pop().expect("the remote was called")["stream"], true);
            report(&format!("remote endpoint agent, {api:?}, {question}"), &seen, &remote);
        }
    }

    // The model's own time to first token, streamed straight from it, for comparison.
    let direct = reqwest::Client::new()
        .post(format!("{}/chat/completions", main.base_url()))
        .json(&json!({"model": "scripted", "stream": true, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .expect("the model answers");
    let sent = Instant::now();
    let mut reader = SseReader::new(direct);
    let mut first_at = None;
    while let Some(data) = reader.next().await {
        if data != "[DONE]" && Api::Chat.piece(&serde_json::from_str(&data).expect("JSON")).is_some() {
            first_at.get_or_insert_with(Instant::now);
        }
    }
    let seen = Seen { deltas: vec![], while_writing: 0, sent, first_at, events: vec![] };
    report("the model's own, called directly", &seen, &main);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_parts_stream_as_each_branch_finishes() {
    let slow_answer = words("cloudy", 5);
    let slow = ScriptedLlm::start(slow_model(&slow_answer).with_latency_ms(SLOW_MS)).await;
    let tmp = tempfile::tempdir().expect("tempdir");
    // No [llm]: the answer is the agents' parts joined, each under its agent's name.
    let config =
        site(tmp.path(), None, &[weather_agent(format!("{}/chat/completions", slow.base_url()), "")], "");
    let bin = Path::new(env!("CARGO_BIN_EXE_switchboard"));
    let server = Serve::start(bin, Some(&config), &[]).await;
    let token = token(&config);
    // The slow branch first, as the router lists the agents in the question's order.
    let question = "What is the weather forecast for Paris tomorrow, and what is the hotel limit per night?";

    for api in [Api::Chat, Api::Responses] {
        let answered = slow.reported_tokens();
        let seen = stream(&server, &token, api, question, || slow.reported_tokens() == answered).await;
        let first = seen.deltas.first().expect("a part arrived");
        assert!(
            first.starts_with("**policies**\n") && first.contains("$250"),
            "{api:?}: the fast branch's part comes first: {:?}",
            seen.deltas
        );
        assert!(
            seen.while_writing >= 1,
            "{api:?}: the fast part arrived before the slow branch's model answered: {:?}",
            seen.deltas
        );
        let answer = seen.deltas.concat();
        assert!(
            answer.ends_with(&format!("\n\n**forecast**\n{slow_answer}")),
            "{api:?}: the slow branch's part follows once it finishes: {answer}"
        );
        if let Some(text) = final_text(api, &seen) {
            assert_eq!(text, answer, "the parts concatenate to the answer");
        }
        let first_at = seen.first_at.map(|f| (f - seen.sent).as_secs_f64() * 1000.0).unwrap_or_default();
        println!(
            "fan-out, {api:?}: the fast part after {first_at:.1} ms; the slow branch's model answers after \
             {SLOW_MS} ms"
        );
    }
    // Without streaming, the parts keep the router's order.
    let body: Value = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", server.url()))
        .bearer_auth(&token)
        .json(&json!({"messages": [{"role": "user", "content": question}]}))
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .expect("answered")
        .json()
        .await
        .expect("JSON");
    let text = body["choices"][0]["message"]["content"].as_str().unwrap_or_default();
    assert!(text.starts_with("**forecast**\n"), "the router's order: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_guardrails_see_the_whole_answer_before_any_of_it_is_sent() {
    // An email the guardrails mask.
    let answer = format!("Write to travel@example.com first. {}", words("hotel", 20));
    let masked = answer.replace("travel@example.com", "[REDACTED_EMAIL]");
    let llm = ScriptedLlm::start(slow_model(&answer)).await;
    let bin = Path::new(env!("CARGO_BIN_EXE_switchboard"));
    let remote = format!("{}/chat/completions", llm.base_url());
    let mask = "[guardrails]\npii = { output = \"mask\" }\n";

    // The endpoint's output guardrail holds back every answer; an agent's own holds back its own.
    let (endpoint_wide, agent_own) =
        (tempfile::tempdir().expect("tempdir"), tempfile::tempdir().expect("tempdir"));
    let sites = [
        (
            "endpoint guardrail",
            site(
                endpoint_wide.path(),
                Some((llm.base_url(), false)),
                &[weather_agent(remote.clone(), "")],
                mask,
            ),
        ),
        (
            "agent guardrail",
            site(agent_own.path(), Some((llm.base_url(), false)), &[weather_agent(remote.clone(), mask)], ""),
        ),
    ];
    for (label, config) in sites {
        let server = Serve::start(bin, Some(&config), &[]).await;
        let token = token(&config);
        for api in [Api::Chat, Api::Responses] {
            let seen = stream(&server, &token, api, WEATHER_QUESTION, || true).await;
            assert_eq!(
                seen.deltas.concat(),
                masked,
                "{label}, {api:?}: the caller gets the masked answer only"
            );
            let request = llm.requests().pop().expect("the remote agent was called");
            assert!(
                request.get("stream").is_none(),
                "{label}, {api:?}: the answer is fetched whole, to be checked whole: {request}"
            );
        }
    }
}
