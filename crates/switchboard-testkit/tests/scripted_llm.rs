//! The scripted LLM server through real sockets: rules, both APIs, streaming, usage, faults, and
//! the `scripted-llm` binary.

use serde_json::{Value, json};
use std::path::Path;
use switchboard_testkit::llm::{Script, ScriptedLlm, spawn_binary};

const SCRIPT: &str = r#"
model = "scripted-test"

[[rules]]
when = { last_user = "(?i)revenue", tool = "^sales$" }
reply = { tool_call = { tool = "^sales$" } }

[[rules]]
when = { response_format = true }
reply = "from_schema"

[[rules]]
when = { system = "(?i)pirate" }
reply = { text = "Arr, {{last_user}}" }

[default]
text = "Hotels are capped at $250 per night."
"#;

async fn post(url: &str, body: Value) -> (u16, String) {
    let r = reqwest::Client::new().post(url).json(&body).send().await.expect("the server answers");
    (r.status().as_u16(), r.text().await.expect("a body"))
}

async fn post_json(url: &str, body: Value) -> Value {
    let (status, text) = post(url, body).await;
    assert_eq!(status, 200, "{text}");
    serde_json::from_str(&text).expect("a JSON body")
}

/// The `data:` payloads of an SSE body, as (event name, data).
fn frames(text: &str) -> Vec<(Option<String>, String)> {
    text.split("\n\n")
        .filter(|f| !f.trim().is_empty())
        .map(|f| {
            let mut event = None;
            let mut data = String::new();
            for line in f.lines() {
                if let Some(e) = line.strip_prefix("event: ") {
                    event = Some(e.to_string());
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data.push_str(d);
                }
            }
            (event, data)
        })
        .collect()
}

fn user(text: &str) -> Value {
    json!([{"role": "user", "content": text}])
}

#[tokio::test]
async fn chat_completions_follow_the_rules_with_real_usage() {
    let llm = ScriptedLlm::start(Script::from_toml(SCRIPT).unwrap()).await;
    let url = format!("{}/chat/completions", llm.base_url());

    let text = post_json(&url, json!({"model": "m", "messages": user("hotel limit?")})).await;
    assert_eq!(text["object"], "chat.completion");
    assert_eq!(text["model"], "m", "the requested model is answered");
    assert_eq!(text["choices"][0]["message"]["content"], "Hotels are capped at $250 per night.");
    assert_eq!(text["choices"][0]["finish_reason"], "stop");
    // "hotel limit?" is 3 cl100k tokens, the reply 10.
    assert_eq!(text["usage"]["prompt_tokens"], 3, "{}", text["usage"]);
    assert_eq!(text["usage"]["completion_tokens"], 10);
    assert_eq!(text["usage"]["total_tokens"], 13);

    let tools = json!([
        {"type": "function", "function": {"name": "policies", "parameters": {}}},
        {"type": "function", "function": {"name": "sales", "parameters": {
            "type": "object", "properties": {"question": {"type": "string"}}, "required": ["question"]}}},
    ]);
    let call = post_json(&url, json!({"messages": user("Revenue by region"), "tools": tools})).await;
    let message = &call["choices"][0]["message"];
    assert_eq!(call["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(message["tool_calls"][0]["function"]["name"], "sales");
    let arguments: Value =
        serde_json::from_str(message["tool_calls"][0]["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(arguments, json!({"question": "Revenue by region"}), "arguments from the tool's schema");
    assert!(call["usage"]["completion_tokens"].as_u64().unwrap() > 0);

    let schema = json!({"type": "object", "additionalProperties": false, "required": ["region", "total"],
        "properties": {"region": {"type": "string"}, "total": {"type": "number"}}});
    let format =
        json!({"type": "json_schema", "json_schema": {"name": "Revenue", "schema": schema, "strict": true}});
    let structured = post_json(&url, json!({"messages": user("West"), "response_format": format})).await;
    let content: Value =
        serde_json::from_str(structured["choices"][0]["message"]["content"].as_str().unwrap()).unwrap();
    assert!(jsonschema::is_valid(&schema, &content), "{content} does not conform to {schema}");

    let pirate =
        json!([{"role": "system", "content": "Talk like a pirate."}, {"role": "user", "content": "hi"}]);
    let reply = post_json(&url, json!({"messages": pirate})).await;
    assert_eq!(reply["choices"][0]["message"]["content"], "Arr, hi");

    assert_eq!(llm.calls(), 4);
    let seen = llm.requests();
    assert_eq!(seen[3]["messages"][0]["content"], "Talk like a pirate.", "requests are recorded");
}

#[tokio::test]
async fn chat_streams_token_by_token_with_usage_last() {
    let llm = ScriptedLlm::start(Script::from_toml(SCRIPT).unwrap()).await;
    let url = format!("{}/chat/completions", llm.base_url());
    let body =
        json!({"messages": user("hotel limit?"), "stream": true, "stream_options": {"include_usage": true}});
    let (status, text) = post(&url, body).await;
    assert_eq!(status, 200, "{text}");
    let frames = frames(&text);
    assert_eq!(frames.last().map(|f| f.1.as_str()), Some("[DONE]"));
    let chunks: Vec<Value> =
        frames[..frames.len() - 1].iter().map(|f| serde_json::from_str(&f.1).unwrap()).collect();
    let deltas: Vec<&str> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .filter(|d| !d.is_empty())
        .collect();
    assert_eq!(deltas.concat(), "Hotels are capped at $250 per night.");
    assert_eq!(deltas.len(), 10, "one chunk per token: {deltas:?}");
    let finish: Vec<&Value> =
        chunks.iter().map(|c| &c["choices"][0]["finish_reason"]).filter(|f| !f.is_null()).collect();
    assert_eq!(finish, [&json!("stop")]);
    let usage = &chunks.last().unwrap()["usage"];
    assert_eq!((usage["prompt_tokens"].as_u64(), usage["completion_tokens"].as_u64()), (Some(3), Some(10)));
}

#[tokio::test]
async fn a_token_delay_sends_the_first_delta_before_the_answer_is_complete() {
    let script = Script::from_toml(SCRIPT).unwrap().with_token_delay_ms(150);
    let llm = ScriptedLlm::start(script).await;
    let url = format!("{}/chat/completions", llm.base_url());
    let mut response = reqwest::Client::new()
        .post(&url)
        .json(&json!({"messages": user("hotel limit?"), "stream": true}))
        .send()
        .await
        .unwrap();
    // The first read returns what was sent before the first pause: the role chunk only. The
    // answer's last words and `[DONE]` are sent after further pauses, so they cannot be in it.
    let first = String::from_utf8(response.chunk().await.unwrap().unwrap().to_vec()).unwrap();
    assert!(!first.contains("[DONE]") && !first.contains("night"), "{first}");
    let mut rest = String::new();
    while let Some(chunk) = response.chunk().await.unwrap() {
        rest.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(rest.contains("night") && rest.contains("[DONE]"), "{rest}");
}

#[tokio::test]
async fn responses_answer_text_tool_calls_and_stream_the_event_sequence() {
    let llm = ScriptedLlm::start(Script::from_toml(SCRIPT).unwrap()).await;
    let url = format!("{}/responses", llm.base_url());

    let r = post_json(&url, json!({"input": "hotel limit?", "instructions": "be brief"})).await;
    assert_eq!((r["object"].as_str(), r["status"].as_str()), (Some("response"), Some("completed")));
    assert_eq!(r["instructions"], "be brief");
    assert_eq!(r["output"][0]["content"][0]["text"], "Hotels are capped at $250 per night.");
    assert_eq!(r["usage"]["output_tokens"], 10);
    assert!(r["usage"]["input_tokens"].as_u64().unwrap() > 0);
    assert_eq!(r["usage"]["input_tokens_details"]["cached_tokens"], 0);

    let tools = json!([{"type": "function", "name": "sales", "parameters": {"type": "object",
        "properties": {"question": {"type": "string"}}}}]);
    let r = post_json(&url, json!({"input": user("revenue please"), "tools": tools})).await;
    assert_eq!(r["output"][0]["type"], "function_call");
    assert_eq!(r["output"][0]["name"], "sales");
    assert_eq!(r["output"][0]["arguments"], r#"{"question":"revenue please"}"#);

    let (status, text) = post(&url, json!({"input": "hotel limit?", "stream": true})).await;
    assert_eq!(status, 200);
    let events = frames(&text);
    let names: Vec<&str> = events.iter().filter_map(|e| e.0.as_deref()).collect();
    assert_eq!(names.first(), Some(&"response.created"));
    assert_eq!(names.last(), Some(&"response.completed"));
    assert_eq!(names.iter().filter(|n| **n == "response.output_text.delta").count(), 10);
    for (n, (name, data)) in events.iter().enumerate() {
        let data: Value = serde_json::from_str(data).unwrap();
        assert_eq!(
            (data["type"].as_str(), data["sequence_number"].as_u64()),
            (name.as_deref(), Some(n as u64))
        );
    }
}

#[tokio::test]
async fn faults_fail_the_first_calls_and_every_kth_with_openai_errors() {
    let script =
        Script::from_toml("[[faults]]\nstatus = 503\nfirst = 2\n[[faults]]\nstatus = 429\nevery = 4\n")
            .unwrap();
    let llm = ScriptedLlm::start(script).await;
    let url = format!("{}/chat/completions", llm.base_url());
    let mut statuses = Vec::new();
    for _ in 0..8 {
        let (status, text) = post(&url, json!({"messages": user("echo me")})).await;
        if status != 200 {
            let error: Value = serde_json::from_str(&text).unwrap();
            assert!(error["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{text}");
        } else {
            let ok: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(ok["choices"][0]["message"]["content"], "echo me", "the default echoes");
        }
        statuses.push(status);
    }
    assert_eq!(statuses, [503, 503, 200, 429, 200, 200, 200, 429]);

    let (status, text) = post(&url, json!({"model": "m"})).await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("`messages` is required"), "{text}");
    let models: Value =
        reqwest::get(format!("{}/models", llm.base_url())).await.unwrap().json().await.unwrap();
    assert_eq!(models["data"][0]["id"], "scripted");
}

#[tokio::test]
async fn the_binary_serves_a_script_file_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("script.toml");
    std::fs::write(&script, SCRIPT).unwrap();
    let (mut child, base) = spawn_binary(Path::new(env!("CARGO_BIN_EXE_scripted-llm")), &script).await;
    let reply = post_json(&format!("{base}/chat/completions"), json!({"messages": user("hotel?")})).await;
    assert_eq!(reply["choices"][0]["message"]["content"], "Hotels are capped at $250 per night.");
    let models: Value = reqwest::get(format!("{base}/models")).await.unwrap().json().await.unwrap();
    assert_eq!(models["data"][0]["id"], "scripted-test");
    assert!(child.stop().success(), "log:\n{}", child.log());

    std::fs::write(&script, "[[rules]]\nwhen = { last_user = \"(\" }\nreply = { text = \"x\" }\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_scripted-llm"))
        .arg("--script")
        .arg(&script)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("rules[0].when.last_user"), "{stderr}");
}

#[tokio::test]
async fn literal_tool_calls_and_per_rule_errors() {
    let script = Script::from_toml(
        r#"
        [[rules]]
        when = { last_user = "boom" }
        reply = { error = { status = 500, message = "overloaded" } }
        [[rules]]
        when = { last_user = "many" }
        reply = { tool_calls = [{ name = "sales", arguments = { question = "{{last_user}}" } }, { name = "root_shell" }] }
        "#,
    )
    .unwrap();
    let llm = ScriptedLlm::start(script).await;
    let chat = format!("{}/chat/completions", llm.base_url());
    let (status, text) = post(&chat, json!({"messages": user("boom")})).await;
    assert_eq!(status, 500);
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap()["error"]["message"], "overloaded");

    let reply = post_json(&chat, json!({"messages": user("many calls")})).await;
    let calls = reply["choices"][0]["message"]["tool_calls"].as_array().unwrap();
    let got: Vec<(&str, &str)> = calls
        .iter()
        .map(|c| (c["function"]["name"].as_str().unwrap(), c["function"]["arguments"].as_str().unwrap()))
        .collect();
    assert_eq!(
        got,
        [("sales", r#"{"question":"many calls"}"#), ("root_shell", "{}")],
        "not offered, still sent"
    );
    assert_ne!(calls[0]["id"], calls[1]["id"]);

    let (_, text) =
        post(&format!("{}/responses", llm.base_url()), json!({"input": "many", "stream": true})).await;
    let done: Vec<Value> = frames(&text)
        .into_iter()
        .filter(|(e, _)| e.as_deref() == Some("response.output_item.done"))
        .map(|(_, d)| serde_json::from_str(&d).unwrap())
        .collect();
    let items: Vec<(u64, &str)> = done
        .iter()
        .map(|d| (d["output_index"].as_u64().unwrap(), d["item"]["name"].as_str().unwrap()))
        .collect();
    assert_eq!(items, [(0, "sales"), (1, "root_shell")]);
}

#[tokio::test]
async fn canned_scripts_answer_a_message_or_fail() {
    let message = json!({"role": "assistant", "content": null, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "deal_desk", "arguments": "{\"amount\": 5}"}}]});
    let llm = ScriptedLlm::start(Script::answering(&message)).await;
    let reply =
        post_json(&format!("{}/chat/completions", llm.base_url()), json!({"messages": user("x")})).await;
    let call = &reply["choices"][0]["message"]["tool_calls"][0]["function"];
    assert_eq!(
        (call["name"].as_str(), call["arguments"].as_str()),
        (Some("deal_desk"), Some(r#"{"amount":5}"#))
    );

    let llm = ScriptedLlm::start(Script::answering(&json!({"role": "assistant", "content": "plain"}))).await;
    let reply =
        post_json(&format!("{}/chat/completions", llm.base_url()), json!({"messages": user("x")})).await;
    assert_eq!(reply["choices"][0]["message"]["content"], "plain");

    let llm = ScriptedLlm::start(Script::failing(503, "down for maintenance")).await;
    let (status, text) = post(&format!("{}/responses", llm.base_url()), json!({"input": "x"})).await;
    assert_eq!(status, 503);
    assert!(text.contains("down for maintenance"), "{text}");
}

/// A chat tool definition with one string parameter, or none.
fn tool(name: &str, param: Option<&str>) -> Value {
    let properties = match param {
        Some(p) => json!({p: {"type": "string"}}),
        None => json!({}),
    };
    json!({"type": "function", "function": {"name": name, "parameters": {"type": "object", "properties": properties}}})
}

#[tokio::test]
async fn the_comparison_script_plays_a_handoff_and_the_counters_reset() {
    let path = switchboard_testkit::repo_root().join("benches/compare/scripted-llm.toml");
    let llm = ScriptedLlm::start(Script::load(&path).expect("the comparison script loads")).await;
    let url = format!("{}/chat/completions", llm.base_url());
    let root = llm.base_url().trim_end_matches("/v1").to_string();
    let question = "What was total revenue by region last quarter? Use SQL.";
    let call = |reply: &Value| reply["choices"][0]["message"]["tool_calls"][0]["function"].clone();

    // The supervisor routes by handoff, to the agent the question is about.
    let handoffs = json!([tool("transfer_to_rag_agent", None), tool("transfer_to_sql_agent", None)]);
    let routed = post_json(&url, json!({"messages": user(question), "tools": handoffs})).await;
    assert_eq!(call(&routed)["name"], "transfer_to_sql_agent");
    // The sub-agent, handed the conversation, calls its own tool with the question…
    let mut messages = user(question);
    let items = messages.as_array_mut().expect("an array");
    items.push(json!({"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function",
        "function": {"name": "transfer_to_sql_agent", "arguments": "{}"}}]}));
    items.push(json!({"role": "tool", "tool_call_id": "c1", "content": "Transferred"}));
    let body = json!({"messages": messages.clone(), "tools": [tool("run_sql", Some("query"))]});
    let acted = post_json(&url, body).await;
    assert_eq!(call(&acted)["name"], "run_sql");
    assert_eq!(call(&acted)["arguments"], json!({"query": question}).to_string());
    // … and after its result, answers with text.
    let items = messages.as_array_mut().expect("an array");
    items.push(json!({"role": "assistant", "content": null, "tool_calls": [{"id": "c2", "type": "function",
        "function": {"name": "run_sql", "arguments": "{}"}}]}));
    items.push(json!({"role": "tool", "tool_call_id": "c2", "content": "rows"}));
    let answered =
        post_json(&url, json!({"messages": messages, "tools": [tool("run_sql", Some("query"))]})).await;
    assert_eq!(answered["choices"][0]["message"]["content"], "EMEA leads with 42 (from the warehouse).");

    let stats: Value = reqwest::get(format!("{root}/stats")).await.unwrap().json().await.unwrap();
    assert_eq!(stats["calls"], 3);
    let prompts = stats["prompts"].as_array().expect("each call's prompt tokens");
    assert_eq!(prompts.len(), 3);
    assert!(prompts[0].as_u64().unwrap() > 10 && prompts[2].as_u64() > prompts[1].as_u64(), "{stats}");
    assert!(stats["server_time_s"].as_f64().unwrap() > 0.0, "{stats}");
    let (status, _) = post(&format!("{root}/reset"), json!({})).await;
    assert_eq!(status, 200);
    let stats: Value = reqwest::get(format!("{root}/stats")).await.unwrap().json().await.unwrap();
    assert_eq!((stats["calls"].clone(), stats["prompts"].clone()), (json!(0), json!([])));
    assert_eq!(stats["server_time_s"], 0.0);

    let echoed: Value =
        reqwest::get(format!("{root}/echo?query=SELECT%201")).await.unwrap().json().await.unwrap();
    assert_eq!(echoed, json!({"query": {"query": "SELECT 1"}, "body": null}));
}
