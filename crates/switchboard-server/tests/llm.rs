//! With an `[llm]` (the scripted model): structured output formatted and validated, the
//! caller's instructions passed to the model, usage summed from what the model reported, and the
//! model's calls traced with their inputs, outputs and tokens.

mod common;

use common::{Server, parts, post, sse};
use serde_json::{Value, json};
use switchboard_runtime::config::RouterKind;
use switchboard_testkit::llm::{Script, ScriptedLlm};

const CAROL: Option<&str> = Some("carol@example.com");
const QUESTION: &str = "what is the hotel limit for travel";

const SCRIPT: &str = r#"
# The LLM router (only it offers tools): policies for anything about hotels.
[[rules]]
when = { tools = true, last_user = "(?i)hotel" }
reply = { tool_call = { tool = "^policies$" } }

# The deal desk's arguments: in the routing call when it offers them, else in the tool's own.
[[rules]]
when = { system = "(?i)routes each request", last_user = "(?i)discount" }
reply = { tool_calls = [{ name = "deal_desk", arguments = { question = "who approves 25% on 40000", discount_pct = 25, amount = 40000 } }] }

[[rules]]
when = { tool = "^deal_desk$" }
reply = { tool_call = { tool = "^deal_desk$", arguments = { discount_pct = 25, amount = 40000 } } }

[[rules]]
when = { response_format = true, system = "(?i)break the schema" }
reply = { json = { wrong = 1 } }

[[rules]]
when = { response_format = true }
reply = { json = { hotel_limit_usd = 250, summary = "Hotels are capped at $250 per night." } }

[default]
text = "Hotels are capped at $250 per night [1]."
"#;

fn schema() -> Value {
    json!({
        "type": "object",
        "properties": {"hotel_limit_usd": {"type": "number"}, "summary": {"type": "string"}},
        "required": ["hotel_limit_usd", "summary"],
        "additionalProperties": false,
    })
}

async fn serve_with_llm() -> (ScriptedLlm, Server) {
    serve(RouterKind::Lexical).await
}

async fn serve(router: RouterKind) -> (ScriptedLlm, Server) {
    serve_with(router, |_| {}).await
}

async fn serve_with(
    router: RouterKind,
    edit: impl FnOnce(&mut switchboard_runtime::config::LoadedConfig),
) -> (ScriptedLlm, Server) {
    let llm = ScriptedLlm::start(Script::from_toml(SCRIPT).unwrap()).await;
    let config = serde_json::from_value(json!({"base_url": llm.base_url(), "model": "scripted"})).unwrap();
    let server = Server::demo_with(|c| {
        c.config.llm = Some(config);
        c.config.router.kind = router;
        edit(c);
    })
    .await;
    (llm, server)
}

/// The requests that asked the model for structured output.
fn formatting_requests(llm: &ScriptedLlm) -> Vec<Value> {
    llm.requests().into_iter().filter(|r| r.get("response_format").is_some()).collect()
}

/// The text of every message of a recorded chat request, joined.
fn prompt_of(request: &Value) -> String {
    let messages = request["messages"].as_array().cloned().unwrap_or_default();
    messages.iter().filter_map(|m| m["content"].as_str()).collect::<Vec<_>>().join("\n")
}

#[tokio::test]
async fn chat_structured_output_is_formatted_validated_and_its_usage_is_real() {
    let (llm, server) = serve_with_llm().await;
    let ask = json!({
        "messages": [{"role": "system", "content": "Answer tersely."}, {"role": "user", "content": QUESTION}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "HotelLimit", "schema": schema(), "strict": true}},
        "databricks_options": {"return_trace": true},
    });
    let (status, _, body) = parts(post(&server, "/v1/chat/completions", CAROL, ask).await).await;
    assert_eq!(status, 200, "{body}");
    let content: Value =
        serde_json::from_str(body["choices"][0]["message"]["content"].as_str().unwrap()).unwrap();
    assert_eq!(content, json!({"hotel_limit_usd": 250, "summary": "Hotels are capped at $250 per night."}));

    // The model formatted the run's own answer, under the caller's instructions, for the schema.
    let formatting = formatting_requests(&llm);
    assert_eq!(formatting.len(), 1, "one formatting call when the first reply conforms");
    let format = &formatting[0]["response_format"];
    assert_eq!(
        (format["type"].as_str(), format["json_schema"]["name"].as_str()),
        (Some("json_schema"), Some("HotelLimit"))
    );
    assert_eq!(format["json_schema"]["schema"], schema());
    let prompt = prompt_of(&formatting[0]);
    assert!(
        prompt.contains("Hotels are capped at $250 per night [1].") && prompt.contains(QUESTION),
        "{prompt}"
    );
    assert!(prompt.contains("The caller's instructions:\nAnswer tersely."), "{prompt}");

    // Usage is what the model reported over both calls (the knowledge answer and the formatting).
    assert_eq!(llm.calls(), 2);
    let (prompt_tokens, completion_tokens) = llm.reported_tokens();
    let usage = &body["usage"];
    assert!(prompt_tokens > 0 && completion_tokens > 0);
    assert_eq!(usage["prompt_tokens"], prompt_tokens, "{usage}");
    assert_eq!(usage["completion_tokens"], completion_tokens, "{usage}");
    assert_eq!(usage["total_tokens"], prompt_tokens + completion_tokens);
    assert_eq!(usage["prompt_tokens_details"]["cached_tokens"], 0);

    // Each model call is a span with its tokens, inputs and outputs.
    let spans = body["databricks_output"]["trace"]["data"]["spans"].as_array().unwrap();
    let llm_spans: Vec<&Value> =
        spans.iter().filter(|s| s["attributes"].get("gen_ai.usage.input_tokens").is_some()).collect();
    assert_eq!(llm_spans.len(), 2, "{spans:#?}");
    for span in llm_spans {
        let attrs = &span["attributes"];
        for key in
            ["mlflow.spanInputs", "mlflow.spanOutputs", "gen_ai.input.messages", "gen_ai.output.messages"]
        {
            assert!(attrs.get(key).is_some(), "the LLM span lacks {key}: {attrs:#}");
        }
    }
}

#[tokio::test]
async fn responses_structured_output_streams_the_json_and_echoes_instructions() {
    let (llm, server) = serve_with_llm().await;
    let format = json!({"type": "json_schema", "name": "HotelLimit", "schema": schema(), "strict": true});
    let ask = json!({"input": QUESTION, "instructions": "Answer tersely.", "text": {"format": format}});
    let (status, _, body) = parts(post(&server, "/v1/responses", CAROL, ask.clone()).await).await;
    assert_eq!(status, 200, "{body}");
    let text = body["output"][0]["content"][0]["text"].as_str().unwrap();
    let parsed: Value = serde_json::from_str(text).unwrap();
    assert_eq!(parsed["hotel_limit_usd"], 250);
    assert_eq!(body["instructions"], "Answer tersely.");
    assert_eq!(body["text"]["format"], format, "the Response echoes text.format");
    let (prompt_tokens, completion_tokens) = llm.reported_tokens();
    assert_eq!(body["usage"]["input_tokens"], prompt_tokens);
    assert_eq!(body["usage"]["output_tokens"], completion_tokens);
    assert!(prompt_of(&formatting_requests(&llm)[0]).contains("The caller's instructions:\nAnswer tersely."));

    let mut streamed = ask;
    streamed["stream"] = json!(true);
    let response = post(&server, "/v1/responses", CAROL, streamed).await;
    assert_eq!(response.status(), 200);
    let events = sse(&response.text().await.unwrap());
    let deltas: String = events
        .iter()
        .filter(|(e, _)| e.as_deref() == Some("response.output_text.delta"))
        .map(|(_, d)| serde_json::from_str::<Value>(d).unwrap()["delta"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(serde_json::from_str::<Value>(&deltas).unwrap(), parsed, "the stream carries the same JSON");
}

#[tokio::test]
async fn a_reply_that_breaks_the_schema_is_retried_once_then_a_clear_error() {
    let (llm, server) = serve_with_llm().await;
    let ask = json!({
        "messages": [{"role": "system", "content": "Break the schema."}, {"role": "user", "content": QUESTION}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "HotelLimit", "schema": schema()}},
    });
    let (status, _, body) = parts(post(&server, "/v1/chat/completions", CAROL, ask).await).await;
    assert_eq!(status, 502, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("does not conform to the schema `HotelLimit`"), "{message}");
    assert!(message.contains("hotel_limit_usd"), "the error says what is wrong: {message}");
    let formatting = formatting_requests(&llm);
    assert_eq!(formatting.len(), 2, "asked once more, with the problem");
    assert!(prompt_of(&formatting[1]).contains("does not conform to the schema"));
}

#[tokio::test]
async fn usage_without_structured_output_is_the_models_own_count() {
    let (llm, server) = serve_with_llm().await;
    let ask = json!({"messages": [{"role": "user", "content": QUESTION}]});
    let (status, _, body) = parts(post(&server, "/v1/chat/completions", CAROL, ask).await).await;
    assert_eq!(status, 200, "{body}");
    let answer = body["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(answer.starts_with("Hotels are capped at $250 per night [1]."), "{answer}");
    let (prompt_tokens, completion_tokens) = llm.reported_tokens();
    assert_eq!((llm.calls(), body["usage"]["prompt_tokens"].as_u64()), (1, Some(prompt_tokens)));
    assert_eq!(body["usage"]["completion_tokens"], completion_tokens);
    assert_eq!(body["usage"]["completion_tokens"], 12, "the scripted reply is 12 cl100k tokens");

    // A malformed schema is the caller's error, named, before anything runs.
    let bad = json!({"messages": [{"role": "user", "content": QUESTION}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "X", "schema": {"type": 12}}}});
    let (status, _, body) = parts(post(&server, "/v1/chat/completions", CAROL, bad).await).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["param"], "response_format.json_schema.schema");
    assert_eq!(llm.calls(), 1, "nothing ran");
}

#[tokio::test]
async fn the_llm_router_sees_the_callers_instructions_and_its_tokens_count() {
    let (llm, server) = serve(RouterKind::Llm).await;
    let ask = json!({"input": QUESTION, "instructions": "Prefer the policies agent."});
    let (status, _, body) = parts(post(&server, "/v1/responses", CAROL, ask).await).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["custom_outputs"]["agents"], json!(["policies"]), "{body}");
    let requests = llm.requests();
    let routing = requests.iter().find(|r| r.get("tools").is_some()).expect("the router asked the model");
    assert!(
        prompt_of(routing).contains("The caller's instructions:\nPrefer the policies agent."),
        "{}",
        prompt_of(routing)
    );
    // Routing and the knowledge answer: both calls are in the usage.
    assert_eq!(llm.calls(), 2);
    let (prompt_tokens, completion_tokens) = llm.reported_tokens();
    assert_eq!(body["usage"]["input_tokens"], prompt_tokens);
    assert_eq!(body["usage"]["output_tokens"], completion_tokens);
}

/// A question for the deal desk (a SQL tool whose arguments a model fills) costs one model call:
/// the routing call proposes its arguments; with `propose_arguments = false`, two.
#[tokio::test]
async fn the_routing_call_proposes_a_tools_arguments_unless_turned_off() {
    let ask = json!({"model": "switchboard", "messages": [{"role": "user", "content": "who must approve a 25% discount on a 40000 deal?"}]});
    for (propose, calls) in [(None, 1), (Some(false), 2)] {
        let (llm, server) =
            serve_with(RouterKind::Llm, |c| c.config.router.propose_arguments = propose).await;
        let (status, _, body) = parts(post(&server, "/v1/chat/completions", CAROL, ask.clone()).await).await;
        assert_eq!(status, 200, "{body}");
        let answer = body["choices"][0]["message"]["content"].as_str().unwrap_or_default();
        assert!(answer.starts_with("A 25% discount on a $40,000 deal must be approved by the"), "{answer}");
        assert_eq!(llm.calls(), calls, "propose_arguments {propose:?}");
        let routing = &llm.requests()[0];
        let tools = routing["tools"].as_array().cloned().unwrap_or_default();
        let deal_desk =
            tools.iter().find(|t| t["function"]["name"] == "deal_desk").expect("deal_desk offered");
        let properties =
            deal_desk["function"]["parameters"]["properties"].as_object().cloned().unwrap_or_default();
        let names: Vec<&str> = properties.keys().map(String::as_str).collect();
        match propose {
            None => assert_eq!(names, ["amount", "discount_pct", "question"], "{deal_desk}"),
            Some(_) => assert_eq!(names, ["question"], "{deal_desk}"),
        }
    }
}

#[tokio::test]
async fn a_clarifying_question_under_a_schema_is_a_refusal_not_prose() {
    let (llm, server) = serve_with_llm().await;
    let format = json!({"type": "json_schema", "json_schema": {"name": "HotelLimit", "schema": schema()}});
    let ask = json!({"messages": [{"role": "user", "content": "hello there"}], "response_format": format});
    let (status, _, body) = parts(post(&server, "/v1/chat/completions", CAROL, ask).await).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["custom_outputs"]["status"], "clarify");
    let message = &body["choices"][0]["message"];
    assert!(message["content"].is_null(), "{message}");
    assert!(message["refusal"].as_str().unwrap().contains("Did you mean"), "{message}");
    assert!(formatting_requests(&llm).is_empty(), "a clarification is not formatted");

    let format = json!({"type": "json_schema", "name": "HotelLimit", "schema": schema()});
    let ask = json!({"input": "hello there", "text": {"format": format}, "stream": true});
    let response = post(&server, "/v1/responses", CAROL, ask).await;
    let events = sse(&response.text().await.unwrap());
    let names: Vec<&str> = events.iter().filter_map(|(e, _)| e.as_deref()).collect();
    assert!(
        names.contains(&"response.refusal.done") && !names.contains(&"response.output_text.done"),
        "{names:?}"
    );
    let completed: Value = serde_json::from_str(&events.last().unwrap().1).unwrap();
    let part = &completed["response"]["output"][0]["content"][0];
    assert_eq!(part["type"], "refusal", "{part}");
    assert!(part["refusal"].as_str().unwrap().contains("Did you mean"));
}
