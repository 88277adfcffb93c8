//! The HTTP surface over the built-in demo: shapes, errors, threads, traces, health, metrics.

mod common;

use base64::Engine as _;
use common::{Server, parts, post, sse};
use serde_json::{Value, json};
use switchboard_testkit::llm::{Script, ScriptedLlm};

const CAROL: Option<&str> = Some("carol@example.com");

fn error_of(body: &Value) -> (&str, &str, Option<&str>) {
    let e = &body["error"];
    (e["type"].as_str().unwrap(), e["message"].as_str().unwrap(), e["param"].as_str())
}

#[tokio::test]
async fn bad_requests_get_their_status_and_an_error_object_and_the_server_keeps_serving() {
    let server = Server::demo_with(|c| c.config.server.body_limit_bytes = 64 * 1024).await;
    let client = reqwest::Client::new();
    let chat = server.url("/v1/chat/completions");

    // Malformed JSON.
    let r = client.post(&chat).bearer_auth(server.token("carol@example.com")).body("{\"messages\": [").send();
    let (status, id, body) = parts(r.await.unwrap()).await;
    assert_eq!(status, 400);
    assert!(!id.is_empty(), "every response carries x-request-id");
    let (kind, message, _) = error_of(&body);
    assert_eq!(kind, "invalid_request_error");
    assert!(message.contains("malformed JSON"), "{message}");

    // Missing and invalid fields are named.
    let (status, _, body) =
        parts(post(&server, "/v1/chat/completions", CAROL, json!({"model": "switchboard"})).await).await;
    assert_eq!((status, error_of(&body).2), (400, Some("messages")));
    let bad = json!({"messages": [{"role": "user", "content": 42}]});
    let (status, _, body) = parts(post(&server, "/v1/chat/completions", CAROL, bad).await).await;
    assert_eq!((status, error_of(&body).2), (400, Some("messages[0].content")));
    let bad = json!({"input": "hi", "custom_inputs": {"thread_id": 7}});
    let (status, _, body) = parts(post(&server, "/v1/responses", CAROL, bad).await).await;
    assert_eq!((status, error_of(&body).2), (400, Some("custom_inputs.thread_id")));

    // Oversized, with a content-length and chunked.
    let big =
        format!("{{\"messages\": [{{\"role\": \"user\", \"content\": \"{}\"}}]}}", "x".repeat(70 * 1024));
    let r = client.post(&chat).bearer_auth(server.token("carol@example.com")).body(big.clone()).send();
    let (status, _, body) = parts(r.await.unwrap()).await;
    assert_eq!(status, 413);
    assert!(error_of(&body).1.contains("65536 bytes"), "{body}");
    let chunks: Vec<Result<String, std::io::Error>> =
        big.as_bytes().chunks(8 * 1024).map(|c| Ok(String::from_utf8_lossy(c).into_owned())).collect();
    let r = client
        .post(&chat)
        .bearer_auth(server.token("carol@example.com"))
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send();
    let (status, _, body) = parts(r.await.unwrap()).await;
    assert_eq!((status, error_of(&body).0), (413, "invalid_request_error"));

    // Unknown model.
    let unknown = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]});
    let (status, _, body) = parts(post(&server, "/v1/chat/completions", CAROL, unknown).await).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "model_not_found");
    assert_eq!(error_of(&body).2, Some("model"));
    // A huge name is echoed cut short.
    let huge = json!({"model": "m".repeat(60_000), "messages": [{"role": "user", "content": "hi"}]});
    let (status, _, body) = parts(post(&server, "/v1/chat/completions", CAROL, huge).await).await;
    assert_eq!(status, 404);
    let message = error_of(&body).1;
    assert!(message.len() < 300 && message.contains(&format!("`{}…`", "m".repeat(64))), "{message}");

    // Missing and unknown identities.
    let ok_body =
        json!({"model": "switchboard", "messages": [{"role": "user", "content": "revenue by region"}]});
    let r = post(&server, "/v1/chat/completions", None, ok_body.clone()).await;
    assert_eq!(r.headers()["www-authenticate"], "Bearer realm=\"switchboard\"");
    let (status, _, body) = parts(r).await;
    assert_eq!((status, error_of(&body).0), (401, "authentication_error"));
    let r = post(&server, "/v1/chat/completions", Some("mallory@example.com"), ok_body.clone()).await;
    let (status, _, body) = parts(r).await;
    assert_eq!((status, error_of(&body).0), (401, "authentication_error"));

    // Framework errors are error objects too.
    let (status, _, body) = parts(client.put(&chat).send().await.unwrap()).await;
    assert_eq!((status, error_of(&body).0), (405, "invalid_request_error"));
    let (status, _, body) = parts(client.get(server.url("/v2/nothing")).send().await.unwrap()).await;
    assert_eq!((status, error_of(&body).0), (404, "not_found_error"));
    // An oversized target or header block is an error object too.
    let long = server.url(&format!("/v1/models/{}", "a".repeat(10 * 1024)));
    let (status, _, body) = parts(client.get(long).send().await.unwrap()).await;
    assert_eq!((status, error_of(&body).0), (414, "invalid_request_error"));
    let big_header = "b".repeat(70 * 1024);
    let r = client.get(server.url("/v1/models")).header("x-padding", big_header).send();
    let (status, _, body) = parts(r.await.unwrap()).await;
    assert_eq!((status, error_of(&body).0), (431, "invalid_request_error"));
    // A path parameter that is not UTF-8 is rejected by axum's extractor, as a text/plain 400.
    let models = client.get(server.url("/v1/models/%FF")).bearer_auth(server.token("carol@example.com"));
    let (status, _, body) = parts(models.send().await.unwrap()).await;
    assert_eq!((status, error_of(&body).0), (400, "invalid_request_error"));

    // And the server still answers.
    let (status, _, body) = parts(post(&server, "/v1/chat/completions", CAROL, ok_body).await).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["choices"][0]["message"]["content"].as_str().unwrap().contains("West"));
}

#[tokio::test]
async fn chat_completion_shape_request_id_traceparent_and_trace_endpoint() {
    let server = Server::demo().await;
    let client = reqwest::Client::new();
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent = "00f067aa0ba902b7";
    let r = client
        .post(server.url("/v1/chat/completions"))
        .bearer_auth(server.token("carol@example.com"))
        .header("x-request-id", "client-req.42")
        .header("traceparent", format!("00-{trace_id}-{parent}-01"))
        .json(&json!({"model": "switchboard", "messages": [{"role": "user", "content": "what is the hotel limit for travel"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-client-request-id"], "client-req.42", "the client's id is echoed apart");
    let (status, id, body) = parts(r).await;
    assert_eq!(status, 200);
    assert!(!id.is_empty() && id != "client-req.42", "the request id is the server's own: {id}");
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["id"], format!("chatcmpl-{id}"));
    assert_eq!(body["model"], "switchboard");
    assert_eq!(body["choices"][0]["message"]["role"], "assistant");
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert!(body["choices"][0]["message"]["content"].as_str().unwrap().contains("$250"));
    assert_eq!(body["custom_outputs"]["agents"], json!(["policies"]));
    assert_eq!(body["custom_outputs"]["trace_id"], trace_id);

    // The trace: our spans under the caller's span.
    let get = |user: &str, id: &str| {
        client.get(server.url(&format!("/v1/traces/{id}"))).bearer_auth(server.token(user)).send()
    };
    let (status, _, trace) = parts(get("carol@example.com", &id).await.unwrap()).await;
    assert_eq!(status, 200, "{trace}");
    // MLflow's V3 trace: `tr-` and the OTel trace id; our request id as the client's.
    assert_eq!(trace["info"]["client_request_id"], id.as_str());
    assert_eq!(trace["info"]["trace_id"], format!("tr-{trace_id}"));
    assert!(trace["info"].get("request_id").is_none(), "V2's key would make MLflow read V2: {trace}");
    let spans = trace["data"]["spans"].as_array().unwrap();
    let root = spans.iter().find(|s| s["name"] == "invoke_agent switchboard").unwrap();
    // Span ids are the base64 of their bytes, as MLflow writes them.
    assert_eq!(
        root["parent_span_id"],
        base64::engine::general_purpose::STANDARD.encode(
            (0..parent.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&parent[i..i + 2], 16).unwrap())
                .collect::<Vec<u8>>()
        )
    );
    assert!(
        spans.iter().any(
            |s| s["name"] == "invoke_agent policies" && s["attributes"]["mlflow.spanType"] == "\"AGENT\""
        )
    );
    // Someone else's request, and an unknown one, are 404s in the error shape.
    let (status, _, body) = parts(get("bob@example.com", &id).await.unwrap()).await;
    assert_eq!((status, error_of(&body).0), (404, "not_found_error"));
    for unknown in ["no-such-request", "client-req.42"] {
        let (status, _, _) = parts(get("carol@example.com", unknown).await.unwrap()).await;
        assert_eq!(status, 404, "{unknown}");
    }

    // An unusable incoming id is replaced.
    let r = client
        .post(server.url("/v1/chat/completions"))
        .bearer_auth(server.token("carol@example.com"))
        .header("x-request-id", "not a sane id")
        .json(&json!({"messages": [{"role": "user", "content": "revenue by region"}]}))
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("x-client-request-id").is_none(), "an insane id is not echoed");
    let (status, id, body) = parts(r).await;
    assert_eq!(status, 200);
    assert_ne!(id, "not a sane id");
    assert_eq!(body["custom_outputs"]["request_id"], id.as_str());
}

#[tokio::test]
async fn a_request_id_cannot_be_borrowed() {
    let server = Server::demo().await;
    let client = reqwest::Client::new();
    let ask = |user: &str, question: &str| {
        client
            .post(server.url("/v1/chat/completions"))
            .bearer_auth(server.token(user))
            .header("x-request-id", "shared-id-1")
            .json(&json!({"messages": [{"role": "user", "content": question}]}))
            .send()
    };
    let (status, alice_id, _) =
        parts(ask("alice@example.com", "what is the hotel limit for travel").await.unwrap()).await;
    assert_eq!(status, 200);
    let (status, bob_id, _) = parts(ask("bob@example.com", "revenue by region").await.unwrap()).await;
    assert_eq!(status, 200);
    assert_ne!(alice_id, bob_id, "one client id, two requests, two server ids");
    let get = |user: &str, id: &str| {
        client.get(server.url(&format!("/v1/traces/{id}"))).bearer_auth(server.token(user)).send()
    };
    // Bob reaches neither alice's request by the id they both sent, nor by hers.
    for id in ["shared-id-1", alice_id.as_str()] {
        let (status, _, body) = parts(get("bob@example.com", id).await.unwrap()).await;
        assert_eq!(status, 404, "bob read {id}: {body}");
    }
    // Alice's trace holds her request only.
    let (status, _, trace) = parts(get("alice@example.com", &alice_id).await.unwrap()).await;
    assert_eq!(status, 200, "{trace}");
    let spans = trace["data"]["spans"].as_array().unwrap();
    // Attribute values are JSON-encoded, as in MLflow's trace format.
    let alice = json!(alice_id).to_string();
    assert!(spans.iter().all(|s| s["attributes"]["switchboard.request_id"] == alice.as_str()), "{trace}");
    assert!(spans.iter().any(|s| s["attributes"]["enduser.id"] == r#""alice@example.com""#), "{trace}");
    assert!(!spans.iter().any(|s| s["attributes"]["enduser.id"] == r#""bob@example.com""#), "{trace}");
    // And the audit log keeps the two callers apart.
    server.runtime.store.flush().await;
    for (id, email) in [(&alice_id, "alice@example.com"), (&bob_id, "bob@example.com")] {
        let rows = server.runtime.store.audit_for_request(id).await.unwrap();
        assert!(!rows.is_empty() && rows.iter().all(|r| r.caller_email == email), "{rows:?}");
    }
    assert!(server.runtime.store.audit_for_request("shared-id-1").await.unwrap().is_empty());
}

#[tokio::test]
async fn denied_is_403_with_the_denial_and_clarify_is_200_with_the_question() {
    let server = Server::demo().await;
    let ask = json!({"messages": [{"role": "user", "content": "show the audit log"}]});
    let (status, _, body) =
        parts(post(&server, "/v1/chat/completions", Some("alice@example.com"), ask.clone()).await).await;
    assert_eq!(status, 403, "{body}");
    let (kind, message, _) = error_of(&body);
    assert_eq!(kind, "permission_error");
    assert!(message.contains("may not use agent `audit`"), "{message}");
    // The same request by an admin is answered.
    let (status, _, _) =
        parts(post(&server, "/v1/chat/completions", Some("frank@example.com"), ask).await).await;
    assert_eq!(status, 200);

    let vague = json!({"input": "hello there"});
    let (status, _, body) = parts(post(&server, "/v1/responses", CAROL, vague).await).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["custom_outputs"]["status"], "clarify");
    let text = body["output"][0]["content"][0]["text"].as_str().unwrap();
    assert!(text.contains("Did you mean"), "{text}");
}

#[tokio::test]
async fn rate_limited_runs_are_429_with_retry_after() {
    let server = Server::demo_with(|c| c.config.limits.requests_per_minute = 1).await;
    let ask = json!({"messages": [{"role": "user", "content": "revenue by region"}]});
    let (status, _, _) = parts(post(&server, "/v1/chat/completions", CAROL, ask.clone()).await).await;
    assert_eq!(status, 200);
    let r = post(&server, "/v1/chat/completions", CAROL, ask).await;
    assert_eq!(r.headers()["retry-after"], "60");
    let (status, _, body) = parts(r).await;
    assert_eq!((status, error_of(&body).0), (429, "rate_limit_error"));
    // The error object carries the same wait, unrounded: the window's oldest mark expiring.
    let wait_ms = body["error"]["retry_after_ms"].as_u64().expect("retry_after_ms");
    assert!(wait_ms > 59_000 && wait_ms <= 60_000, "{body}");
    let metrics = reqwest::get(server.url("/metrics")).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("switchboard_rate_limited_total{agent=\"sales\"} 1"), "{metrics}");
}

#[tokio::test]
async fn a_follow_up_in_the_same_thread_stays_with_its_agent_and_threads_are_per_caller() {
    let server = Server::demo().await;
    let turn =
        |question: &str, thread: &str| json!({"input": question, "custom_inputs": {"thread_id": thread}});
    let (status, _, first) =
        parts(post(&server, "/v1/responses", CAROL, turn("revenue by region", "t-1")).await).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["custom_outputs"]["agents"], json!(["sales"]));
    assert_eq!(first["custom_outputs"]["thread_id"], "t-1");

    let (status, _, next) =
        parts(post(&server, "/v1/responses", CAROL, turn("now only the top 3", "t-1")).await).await;
    assert_eq!(status, 200, "{next}");
    assert_eq!(next["custom_outputs"]["agents"], json!(["sales"]));
    let text = next["output"][0]["content"][0]["text"].as_str().unwrap();
    assert!(text.contains("Interpreted as: revenue by region, top 3"), "{text}");

    // The ResponsesAgent conversation id is a thread too, and chat completions accept the same
    // thread fields (what an OpenAI client sends as extra_body).
    let via_context = json!({"input": "now only the top 3", "context": {"conversation_id": "t-1"}});
    let (_, _, again) = parts(post(&server, "/invocations", CAROL, via_context).await).await;
    assert!(again["output"][0]["content"][0]["text"].as_str().unwrap().contains("top 3"));
    let chat = json!({"messages": [{"role": "user", "content": "now only the top 3"}], "metadata": {"thread_id": "t-1"}});
    let (_, _, chat) = parts(post(&server, "/v1/chat/completions", CAROL, chat).await).await;
    assert!(chat["choices"][0]["message"]["content"].as_str().unwrap().contains("revenue by region, top 3"));

    // The same thread id sent by someone else is not Carol's conversation.
    let (_, _, other) = parts(
        post(&server, "/v1/responses", Some("bob@example.com"), turn("now only the top 3", "t-1")).await,
    )
    .await;
    let text = other["output"][0]["content"][0]["text"].as_str().unwrap_or_default();
    assert!(!text.contains("revenue by region, top 3"), "{text}");
}

#[tokio::test]
async fn streams_have_the_openai_shapes_and_carry_the_answer() {
    let server = Server::demo().await;
    let question = json!([{"role": "user", "content": "deal count by stage"}]);
    let (_, _, plain) =
        parts(post(&server, "/v1/chat/completions", CAROL, json!({"messages": question.clone()})).await)
            .await;
    let answer = plain["choices"][0]["message"]["content"].as_str().unwrap().to_string();

    // Chat completions.
    let r = post(
        &server,
        "/v1/chat/completions",
        CAROL,
        json!({"messages": question, "stream": true, "stream_options": {"include_usage": true}}),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let events = sse(&r.text().await.unwrap());
    assert_eq!(events.last().unwrap().1, "[DONE]");
    let chunks: Vec<Value> =
        events[..events.len() - 1].iter().map(|(_, d)| serde_json::from_str(d).unwrap()).collect();
    assert!(chunks.iter().all(|c| c["object"] == "chat.completion.chunk"));
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let streamed: String =
        chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
    assert_eq!(streamed, answer);
    let stop = chunks.iter().position(|c| c["choices"][0]["finish_reason"] == "stop").unwrap();
    assert_eq!(stop, chunks.len() - 2, "the stop chunk, then the usage chunk");
    assert!(chunks[stop + 1]["usage"].is_object());

    // Responses.
    let r =
        post(&server, "/v1/responses", CAROL, json!({"input": "deal count by stage", "stream": true})).await;
    let events = sse(&r.text().await.unwrap());
    let names: Vec<&str> = events.iter().map(|(e, _)| e.as_deref().unwrap()).collect();
    let data: Vec<Value> = events.iter().map(|(_, d)| serde_json::from_str(d).unwrap()).collect();
    assert_eq!(
        names[..4],
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added"
        ]
    );
    assert_eq!(
        names[names.len() - 4..],
        [
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed"
        ]
    );
    for (i, (name, d)) in names.iter().zip(&data).enumerate() {
        assert_eq!(d["type"], *name);
        assert_eq!(d["sequence_number"], i);
    }
    let deltas: String = data
        .iter()
        .filter(|d| d["type"] == "response.output_text.delta")
        .map(|d| {
            assert_eq!((d["output_index"].as_u64(), d["content_index"].as_u64()), (Some(0), Some(0)));
            d["delta"].as_str().unwrap()
        })
        .collect();
    assert_eq!(deltas, answer);
    let done = &data[names.len() - 2]["item"];
    assert_eq!(done["content"][0]["text"], answer.as_str());
    let completed = &data[names.len() - 1]["response"];
    assert_eq!(
        (completed["status"].as_str(), completed["object"].as_str()),
        (Some("completed"), Some("response"))
    );
    assert_eq!(completed["output"][0]["id"], done["id"]);

    // A denied run is a real 403, decided before the stream would start.
    let denied = [
        ("/v1/responses", json!({"input": "show the audit log", "stream": true})),
        ("/invocations", json!({"input": "show the audit log", "stream": true})),
        (
            "/v1/chat/completions",
            json!({"messages": [{"role": "user", "content": "show the audit log"}], "stream": true}),
        ),
    ];
    for (path, ask) in denied {
        let r = post(&server, path, Some("alice@example.com"), ask).await;
        assert!(r.headers()["content-type"].to_str().unwrap().starts_with("application/json"), "{path}");
        let (status, _, body) = parts(r).await;
        assert_eq!((status, error_of(&body).0), (403, "permission_error"), "{path}: {body}");
        assert!(error_of(&body).1.contains("may not use agent `audit`"), "{body}");
    }
}

#[tokio::test]
async fn a_streamed_rate_limit_is_a_real_429() {
    let server = Server::demo_with(|c| c.config.limits.requests_per_minute = 1).await;
    let (status, _, _) =
        parts(post(&server, "/v1/responses", CAROL, json!({"input": "revenue by region"})).await).await;
    assert_eq!(status, 200);
    let limited = [
        ("/v1/responses", json!({"input": "revenue by region", "stream": true})),
        (
            "/v1/chat/completions",
            json!({"messages": [{"role": "user", "content": "revenue by region"}], "stream": true}),
        ),
    ];
    for (path, ask) in limited {
        let r = post(&server, path, CAROL, ask).await;
        assert_eq!(r.headers()["retry-after"], "60", "{path}");
        let (status, _, body) = parts(r).await;
        assert_eq!((status, error_of(&body).0), (429, "rate_limit_error"), "{path}: {body}");
    }
}

#[tokio::test]
async fn parameters_are_honoured_or_refused_by_name() {
    let server = Server::demo().await;
    let chat = |extra: Value| {
        let mut body = json!({"messages": [{"role": "user", "content": "revenue by region"}]});
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        body
    };
    let responses = |extra: Value| {
        let mut body = json!({"input": "revenue by region"});
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        body
    };
    let tools = json!([{"type": "function", "function": {"name": "lookup", "parameters": {}}}]);
    let response_tools = json!([{"type": "function", "name": "lookup", "parameters": {}}]);
    let refused = [
        ("/v1/chat/completions", chat(json!({"n": 2})), "n"),
        ("/v1/chat/completions", chat(json!({"n": 3, "stream": true})), "n"),
        (
            "/v1/chat/completions",
            chat(
                json!({"response_format": {"type": "json_schema", "json_schema": {"name": "r", "schema": {}}}}),
            ),
            "response_format",
        ),
        (
            "/v1/chat/completions",
            chat(json!({"response_format": {"type": "json_object"}})),
            "response_format",
        ),
        ("/v1/chat/completions", chat(json!({"tools": tools, "tool_choice": "required"})), "tool_choice"),
        (
            "/v1/chat/completions",
            chat(
                json!({"tools": tools, "tool_choice": {"type": "function", "function": {"name": "lookup"}}}),
            ),
            "tool_choice",
        ),
        (
            "/v1/responses",
            responses(json!({"text": {"format": {"type": "json_schema", "name": "r", "schema": {}}}})),
            "text.format",
        ),
        ("/v1/responses", responses(json!({"n": 2})), "n"),
        (
            "/v1/responses",
            responses(json!({"tools": response_tools, "tool_choice": "required", "stream": true})),
            "tool_choice",
        ),
    ];
    for (path, body, param) in refused {
        let (status, _, err) = parts(post(&server, path, CAROL, body.clone()).await).await;
        assert_eq!(status, 400, "{path} {body}: {err}");
        assert_eq!(err["error"]["type"], "invalid_request_error");
        assert_eq!(err["error"]["code"], "unsupported_parameter", "{err}");
        assert_eq!(err["error"]["param"], param, "{err}");
    }
    // Bad types keep their ordinary 400 naming the field.
    let (status, _, err) =
        parts(post(&server, "/v1/chat/completions", CAROL, chat(json!({"temperature": "warm"}))).await).await;
    assert_eq!((status, err["error"]["param"].as_str()), (400, Some("temperature")));
    assert_ne!(err["error"]["code"], "unsupported_parameter");

    // Sampling parameters and optional tools are accepted (and ignored by sub-agents).
    let sampled = json!({"temperature": 0.3, "top_p": 0.5, "max_tokens": 50, "max_completion_tokens": 50,
                         "seed": 1, "n": 1, "tools": tools, "tool_choice": "auto"});
    let (status, _, body) = parts(post(&server, "/v1/chat/completions", CAROL, chat(sampled)).await).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["choices"][0]["message"]["content"].as_str().unwrap().contains("West"));
    let usage = &body["usage"];
    assert_eq!(usage["prompt_tokens_details"]["cached_tokens"], 0, "{usage}");
    assert_eq!(usage["completion_tokens_details"]["reasoning_tokens"], 0, "{usage}");
    // … and a Response echoes them, streamed or not.
    let sampled = json!({"temperature": 0.3, "top_p": 0.5, "max_output_tokens": 50, "tools": response_tools,
                         "tool_choice": "none"});
    let (status, _, body) =
        parts(post(&server, "/v1/responses", CAROL, responses(sampled.clone())).await).await;
    assert_eq!(status, 200, "{body}");
    for field in ["temperature", "top_p", "max_output_tokens", "tools", "tool_choice"] {
        assert_eq!(body[field], sampled[field], "{field}: {body}");
    }
    let details = &body["usage"]["input_tokens_details"];
    assert_eq!(
        (details["cached_tokens"].as_u64(), details["cache_write_tokens"].as_u64()),
        (Some(0), Some(0))
    );
    let mut streamed = responses(sampled.clone());
    streamed["stream"] = json!(true);
    let r = post(&server, "/v1/responses", CAROL, streamed).await;
    let events = sse(&r.text().await.unwrap());
    let created: Value = serde_json::from_str(&events[0].1).unwrap();
    assert_eq!(created["response"]["temperature"], json!(0.3));
    let completed: Value = serde_json::from_str(&events.last().unwrap().1).unwrap();
    assert_eq!(completed["response"]["tools"], response_tools);
}

#[tokio::test]
async fn return_trace_inlines_the_span_tree() {
    let server = Server::demo().await;
    let ask = json!({
        "input": [{"role": "user", "content": [{"type": "input_text", "text": "revenue by region"}]}],
        "databricks_options": {"return_trace": true},
    });
    let (status, id, body) = parts(post(&server, "/invocations", CAROL, ask).await).await;
    assert_eq!(status, 200, "{body}");
    let trace = &body["databricks_output"]["trace"];
    assert_eq!(trace["info"]["client_request_id"], id.as_str());
    assert_eq!(trace["info"]["state"], "OK");
    let trace_id = trace["info"]["trace_id"].as_str().unwrap();
    assert!(trace_id.starts_with("tr-") && trace_id.len() == 35, "{trace_id}");
    let spans = trace["data"]["spans"].as_array().unwrap();
    let names: Vec<&str> = spans.iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert!(
        names.contains(&"invoke_agent switchboard") && names.contains(&"invoke_agent sales"),
        "{names:?}"
    );
    // Each span names its trace, JSON-encoded (MLflow refuses a span without it).
    let (ours, named) = (json!(id).to_string(), json!(trace_id).to_string());
    assert!(spans.iter().all(|s| s["attributes"]["switchboard.request_id"] == ours.as_str()
        && s["attributes"]["mlflow.traceRequestId"] == named.as_str()));
    // Without the option there is no trace.
    let (_, _, body) =
        parts(post(&server, "/v1/responses", CAROL, json!({"input": "revenue by region"})).await).await;
    assert!(body.get("databricks_output").is_none());
}

#[tokio::test]
async fn the_served_model_is_a_databricks_serving_endpoint() {
    let server = Server::demo().await;
    let ask = json!({"input": [{"role": "user", "content": "revenue by region"}]});
    let (status, id, body) =
        parts(post(&server, "/serving-endpoints/switchboard/invocations", CAROL, ask.clone()).await).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["object"], "response");
    assert_eq!(body["custom_outputs"]["request_id"], id.as_str());
    assert!(body["output"][0]["content"][0]["text"].as_str().unwrap().contains("West"), "{body}");

    // Another name is an unknown model, but only to an authenticated caller.
    let (status, _, body) =
        parts(post(&server, "/serving-endpoints/other/invocations", CAROL, ask.clone()).await).await;
    assert_eq!(
        (status, error_of(&body).0, body["error"]["code"].as_str()),
        (404, "not_found_error", Some("model_not_found"))
    );
    // With Databricks' code beside it, which the Databricks SDK maps the status from.
    assert_eq!(body["error_code"], "RESOURCE_DOES_NOT_EXIST", "{body}");
    let (status, _, _) =
        parts(post(&server, "/serving-endpoints/other/invocations", None, ask.clone()).await).await;
    assert_eq!(status, 401);

    // Streamed, every line is `data:` (the Databricks deployment client rejects any other), and
    // the payloads are the Responses events.
    let mut streamed = ask;
    streamed["stream"] = json!(true);
    let text = post(&server, "/serving-endpoints/switchboard/invocations", CAROL, streamed)
        .await
        .text()
        .await
        .unwrap();
    assert!(text.lines().all(|l| l.is_empty() || l.starts_with("data: ")), "{text}");
    let events = sse(&text);
    let last: Value = serde_json::from_str(&events.last().unwrap().1).unwrap();
    assert_eq!(last["type"], "response.completed", "{text}");
}

#[tokio::test]
async fn health_models_and_metrics() {
    let server = Server::demo().await;
    let r = reqwest::get(server.url("/health")).await.unwrap();
    let (status, _, health) = parts(r).await;
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["status"], "ok");
    assert_eq!(health["checks"]["store"]["status"], "ok");
    assert_eq!(health["checks"]["llm"]["status"], "not_configured");
    for agent in ["sales", "policies", "deal_desk", "audit"] {
        assert_eq!(health["checks"]["agents"][agent]["status"], "ok", "{agent}");
    }

    let client = reqwest::Client::new();
    let models = client.get(server.url("/v1/models")).bearer_auth(server.token("carol@example.com"));
    let (status, _, models) = parts(models.send().await.unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(models["object"], "list");
    assert_eq!(models["data"][0]["id"], "switchboard");
    assert_eq!(models["data"][0]["object"], "model");
    let (status, _, _) = parts(client.get(server.url("/v1/models")).send().await.unwrap()).await;
    assert_eq!(status, 401);

    parts(
        post(
            &server,
            "/v1/chat/completions",
            CAROL,
            json!({"messages": [{"role": "user", "content": "revenue by region"}]}),
        )
        .await,
    )
    .await;
    parts(
        post(
            &server,
            "/v1/chat/completions",
            Some("alice@example.com"),
            json!({"messages": [{"role": "user", "content": "show the audit log"}]}),
        )
        .await,
    )
    .await;
    let r = client
        .get(server.url("/metrics"))
        .header("accept", "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5")
        .send()
        .await
        .unwrap();
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("application/openmetrics-text"));
    let text = r.text().await.unwrap();
    assert!(text.ends_with("# EOF\n"), "{text}");
    let r =
        client.get(server.url("/metrics")).header("accept", "text/plain;version=0.0.4").send().await.unwrap();
    assert_eq!(r.headers()["content-type"], "text/plain; version=0.0.4; charset=utf-8");
    let plain = r.text().await.unwrap();
    assert!(!plain.contains("# EOF") && plain.contains("# TYPE switchboard_runs_total counter"), "{plain}");
    promtool_check(&plain);
    for line in [
        "switchboard_http_requests_total{route=\"/v1/chat/completions\",method=\"POST\",status=\"200\"} 1",
        "switchboard_http_requests_total{route=\"/v1/chat/completions\",method=\"POST\",status=\"403\"} 1",
        "switchboard_http_request_duration_seconds_count{route=\"/v1/chat/completions\"} 2",
        "switchboard_agent_calls_total{agent=\"sales\",status=\"ok\"} 1",
        "switchboard_agent_calls_total{agent=\"audit\",status=\"denied\"} 1",
        "switchboard_denials_total{agent=\"audit\"} 1",
        "switchboard_runs_total{status=\"denied\"} 1",
        "switchboard_llm_tokens_total{direction=\"input\"} 0",
    ] {
        assert!(text.contains(line), "missing `{line}` in\n{text}");
    }
}

#[tokio::test]
async fn with_an_llm_health_probes_it_and_its_tokens_are_counted() {
    let script = Script::from_toml("[default]\ntext = \"Hotels are capped at $250 per night [1].\"").unwrap();
    let llm = ScriptedLlm::start(script).await;
    let llm_config =
        serde_json::from_value(json!({"base_url": llm.base_url(), "model": "fake-model"})).unwrap();
    let server = Server::demo_with(|c| c.config.llm = Some(llm_config)).await;

    let (status, _, health) = parts(reqwest::get(server.url("/health")).await.unwrap()).await;
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["checks"]["llm"]["status"], "ok");

    let ask = json!({"messages": [{"role": "user", "content": "what is the hotel limit for travel"}]});
    let (status, _, body) = parts(post(&server, "/v1/chat/completions", CAROL, ask).await).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["choices"][0]["message"]["content"].as_str().unwrap().contains("capped at $250"), "{body}");
    // Tokens are counted as the run ends: what the model reported.
    let (input, output) = llm.reported_tokens();
    assert!(input > 0 && output > 0);
    let wanted = [
        format!("switchboard_llm_tokens_total{{direction=\"input\"}} {input}"),
        format!("switchboard_llm_tokens_total{{direction=\"output\"}} {output}"),
    ];
    let started = std::time::Instant::now();
    loop {
        let metrics = reqwest::get(server.url("/metrics")).await.unwrap().text().await.unwrap();
        if wanted.iter().all(|w| metrics.contains(w.as_str())) {
            break;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "{wanted:?} never appeared in\n{metrics}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    // With the LLM gone, the server reports itself unavailable and says why.
    llm.stop().await;
    let (status, _, health) = parts(reqwest::get(server.url("/health")).await.unwrap()).await;
    assert_eq!(status, 503, "{health}");
    assert_eq!(health["status"], "unavailable");
    assert_eq!(health["checks"]["llm"]["status"], "error");
    assert!(health["checks"]["llm"]["message"].as_str().unwrap().contains("cannot connect"), "{health}");
    assert_eq!(health["checks"]["store"]["status"], "ok");
}

/// Runs `promtool check metrics` on an exposition, as Prometheus' own linter. Skips (loudly) only
/// when promtool is not installed; `.ci/run` installs it.
fn promtool_check(text: &str) {
    use std::io::Write;
    let child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!(
                "SKIPPED: promtool is not installed (apt-get install prometheus); /metrics was not linted"
            );
            return;
        }
        Err(e) => panic!("promtool did not start: {e}"),
    };
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && report.trim().is_empty(), "promtool check metrics:\n{report}\n{text}");
}
