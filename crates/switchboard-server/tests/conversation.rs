//! Conversations as clients send them: history in `messages` and `input`, and stored responses.

mod common;

use common::{Server, parts, post};
use serde_json::{Value, json};

const CAROL: Option<&str> = Some("carol@example.com");

fn response_text(body: &Value) -> String {
    body["output"][0]["content"][0]["text"].as_str().unwrap_or_default().to_string()
}

/// The rows of the sales agent's answer: the table lines under the header.
fn table_rows(text: &str) -> usize {
    text.lines().filter(|l| l.starts_with('|')).count().saturating_sub(2)
}

#[tokio::test]
async fn client_sent_history_resolves_follow_ups_without_a_thread() {
    let server = Server::demo().await;
    let (status, _, first) = parts(
        post(
            &server,
            "/v1/chat/completions",
            CAROL,
            json!({"messages": [{"role": "user", "content": "revenue by rep"}]}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{first}");
    let answer = first["choices"][0]["message"]["content"].as_str().unwrap().to_string();
    assert!(table_rows(&answer) > 3, "{answer}");

    // Chat completions: the history in `messages`, as every OpenAI client sends it.
    let chat = json!({"messages": [
        {"role": "system", "content": "You are helpful."},
        {"role": "user", "content": "revenue by rep"},
        {"role": "assistant", "content": answer},
        {"role": "user", "content": "now only the top 3"},
    ]});
    let (status, _, next) = parts(post(&server, "/v1/chat/completions", CAROL, chat).await).await;
    assert_eq!(status, 200, "{next}");
    let text = next["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(text.contains("Interpreted as: revenue by rep, top 3"), "{text}");
    assert_eq!(table_rows(text), 3, "{text}");

    // Responses: the history as `input` items, an output message included as returned.
    let input = json!({"input": [
        {"role": "user", "content": [{"type": "input_text", "text": "revenue by rep"}]},
        {"type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
         "content": [{"type": "output_text", "text": answer, "annotations": []}]},
        {"role": "user", "content": "now only the top 3"},
    ]});
    let (status, _, next) = parts(post(&server, "/v1/responses", CAROL, input).await).await;
    assert_eq!(status, 200, "{next}");
    assert_eq!(next["custom_outputs"]["agents"], json!(["sales"]), "{next}");
    let text = response_text(&next);
    assert!(text.contains("Interpreted as: revenue by rep, top 3"), "{text}");
    assert_eq!(table_rows(&text), 3, "{text}");

    // Without the history the same words have nothing to build on, so the caller is asked.
    let (_, _, alone) =
        parts(post(&server, "/v1/responses", CAROL, json!({"input": "now only the top 3"})).await).await;
    assert_eq!(alone["custom_outputs"]["agents"], json!([]), "{alone}");
    assert!(!response_text(&alone).contains("Interpreted as"), "{alone}");
}

/// `GET` or `DELETE` on a stored response as `user`.
async fn call(server: &Server, method: reqwest::Method, id: &str, user: &str) -> (u16, Value) {
    let r = reqwest::Client::new()
        .request(method, server.url(&format!("/v1/responses/{id}")))
        .bearer_auth(server.token(user))
        .send()
        .await
        .unwrap();
    let (status, _, body) = parts(r).await;
    (status, body)
}

#[tokio::test]
async fn stored_responses_chain_read_and_delete_and_belong_to_their_caller() {
    let server = Server::demo().await;
    let carol = "carol@example.com";
    let first = json!({"input": "revenue by rep", "instructions": "Answer tersely."});
    let (status, _, first) = parts(post(&server, "/v1/responses", CAROL, first).await).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["instructions"], "Answer tersely.", "instructions are echoed");
    let id = first["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("resp_"), "{id}");

    // `previous_response_id` continues the stored conversation: no history, no thread id.
    let next = json!({"input": "now only the top 3", "previous_response_id": id});
    let (status, _, next) = parts(post(&server, "/v1/responses", CAROL, next).await).await;
    assert_eq!(status, 200, "{next}");
    assert_eq!(next["previous_response_id"], json!(id));
    assert_eq!(next["custom_outputs"]["agents"], json!(["sales"]));
    let text = response_text(&next);
    assert!(text.contains("Interpreted as: revenue by rep, top 3"), "{text}");
    assert_eq!(table_rows(&text), 3, "{text}");
    // And the chain goes on: a third turn sees both earlier ones.
    let next_id = next["id"].as_str().unwrap();
    let third = json!({"input": "now only the top 2", "previous_response_id": next_id});
    let (_, _, third) = parts(post(&server, "/v1/responses", CAROL, third).await).await;
    assert_eq!(table_rows(&response_text(&third)), 2, "{third}");

    // GET returns the stored object to its owner, and 404 to anyone else, like an unknown id.
    let (status, got) = call(&server, reqwest::Method::GET, &id, carol).await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(
        (&got["id"], &got["object"], &got["instructions"]),
        (&first["id"], &first["object"], &first["instructions"])
    );
    assert_eq!(got["output"], first["output"]);
    for (user, probe) in [("bob@example.com", id.as_str()), (carol, "resp_unknown")] {
        for method in [reqwest::Method::GET, reqwest::Method::DELETE] {
            let (status, body) = call(&server, method.clone(), probe, user).await;
            assert_eq!((status, body["error"]["code"].as_str()), (404, Some("not_found")), "{method} {body}");
        }
    }
    let continued_by_bob = json!({"input": "now only the top 3", "previous_response_id": id});
    let (status, _, body) =
        parts(post(&server, "/v1/responses", Some("bob@example.com"), continued_by_bob).await).await;
    assert_eq!((status, body["error"]["param"].as_str()), (404, Some("previous_response_id")), "{body}");

    // DELETE, in OpenAI's shape; then it is gone for reading and continuing.
    let (status, deleted) = call(&server, reqwest::Method::DELETE, &id, carol).await;
    assert_eq!(status, 200, "{deleted}");
    assert_eq!(deleted, json!({"id": id, "object": "response.deleted", "deleted": true}));
    assert_eq!(call(&server, reqwest::Method::GET, &id, carol).await.0, 404);
    assert_eq!(call(&server, reqwest::Method::DELETE, &id, carol).await.0, 404);
    let again = json!({"input": "now only the top 3", "previous_response_id": id});
    assert_eq!(parts(post(&server, "/v1/responses", CAROL, again).await).await.0, 404);
}

#[tokio::test]
async fn store_false_stores_nothing_streamed_responses_are_stored_and_bad_fields_are_named() {
    let server = Server::demo().await;
    let carol = "carol@example.com";
    let (_, _, unstored) = parts(
        post(&server, "/v1/responses", CAROL, json!({"input": "revenue by rep", "store": false})).await,
    )
    .await;
    let id = unstored["id"].as_str().unwrap();
    assert_eq!(call(&server, reqwest::Method::GET, id, carol).await.0, 404);
    let next = json!({"input": "now only the top 3", "previous_response_id": id});
    let (status, _, body) = parts(post(&server, "/v1/responses", CAROL, next).await).await;
    assert_eq!((status, body["error"]["param"].as_str()), (404, Some("previous_response_id")), "{body}");

    // A streamed response is stored as its completed object.
    let streamed =
        post(&server, "/v1/responses", CAROL, json!({"input": "revenue by rep", "stream": true})).await;
    let events = common::sse(&streamed.text().await.unwrap());
    let completed: Value = events
        .iter()
        .find(|(name, _)| name.as_deref() == Some("response.completed"))
        .map(|(_, data)| serde_json::from_str(data).unwrap())
        .expect("a completed event");
    let id = completed["response"]["id"].as_str().unwrap();
    let (status, got) = call(&server, reqwest::Method::GET, id, carol).await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["output"], completed["response"]["output"]);

    // ResponsesAgent `/invocations` stores only when asked to.
    let (_, _, invoked) =
        parts(post(&server, "/invocations", CAROL, json!({"input": "revenue by rep"})).await).await;
    assert_eq!(call(&server, reqwest::Method::GET, invoked["id"].as_str().unwrap(), carol).await.0, 404);

    for (body, param) in [
        (json!({"input": "hi", "previous_response_id": 7}), "previous_response_id"),
        (json!({"input": "hi", "previous_response_id": ""}), "previous_response_id"),
        (json!({"input": "hi", "store": "yes"}), "store"),
        (json!({"input": "hi", "instructions": 5}), "instructions"),
    ] {
        let (status, _, error) = parts(post(&server, "/v1/responses", CAROL, body).await).await;
        assert_eq!((status, error["error"]["param"].as_str()), (400, Some(param)), "{error}");
    }
}

#[tokio::test]
async fn expired_responses_read_as_gone() {
    let server = Server::demo_with(|c| c.config.store.responses_retention_days = 2).await;
    let owner = server.runtime.dev_caller("carol@example.com").await.unwrap().subject().to_string();
    let now = switchboard_core::unix_nanos_now() / 1_000_000;
    let day = 24 * 60 * 60 * 1000;
    for (id, age) in [("resp_fresh", day), ("resp_stale", 3 * day)] {
        let stored = switchboard_store::StoredResponse {
            id: id.into(),
            owner: owner.clone(),
            previous_id: None,
            turns: vec![],
            body: json!({"id": id, "object": "response"}),
            created_unix_ms: now - age,
        };
        server.runtime.store.put_response(&stored).await.unwrap();
    }
    assert_eq!(call(&server, reqwest::Method::GET, "resp_fresh", "carol@example.com").await.0, 200);
    assert_eq!(call(&server, reqwest::Method::GET, "resp_stale", "carol@example.com").await.0, 404);
    assert_eq!(call(&server, reqwest::Method::DELETE, "resp_stale", "carol@example.com").await.0, 404);
    let next = json!({"input": "hi", "previous_response_id": "resp_stale"});
    assert_eq!(parts(post(&server, "/v1/responses", CAROL, next).await).await.0, 404);

    // Storing a response purges the expired ones.
    parts(post(&server, "/v1/responses", CAROL, json!({"input": "revenue by rep"})).await).await;
    let gone = async {
        loop {
            if server.runtime.store.response(&owner, "resp_stale", 0).await.unwrap().is_none() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(5), gone)
        .await
        .expect("the stale response is purged");
}
