//! The LLM router against a fake OpenAI-compatible server.

mod common;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router as Http};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use switchboard_core::{
    AgentKind, AuditDecision, AuditRecord, AuthMethod, Caller, ErrorKind, HopKind, Message, RouteDecision,
    Router, RunContext, SpanRecord, TelemetrySink,
};
use switchboard_govern::Gateway;
use switchboard_govern::layers::StandardCredentials;
use switchboard_llm::LlmClient;
use switchboard_router::LlmRouter;

#[derive(Default)]
struct Sink {
    audit: Mutex<Vec<AuditRecord>>,
}

impl TelemetrySink for Sink {
    fn span(&self, _span: SpanRecord) {}
    fn audit(&self, record: AuditRecord) {
        self.audit.lock().unwrap().push(record);
    }
}

type Seen = Arc<Mutex<Vec<Value>>>;

fn tool_call(name: &str, arguments: Value) -> Value {
    json!({"id": format!("call_{name}"), "type": "function",
           "function": {"name": name, "arguments": arguments.to_string()}})
}

/// Answers according to a keyword in the last message, and remembers every request body.
async fn completions(State(seen): State<Seen>, Json(body): Json<Value>) -> (StatusCode, Json<Value>) {
    seen.lock().unwrap().push(body.clone());
    let last = body["messages"]
        .as_array()
        .and_then(|m| m.last())
        .and_then(|m| m["content"].as_str())
        .unwrap_or("")
        .to_string();
    let (content, calls) = if last.contains("discount") {
        (
            Value::Null,
            vec![
                tool_call("sales", json!({"question": "total revenue by region"})),
                tool_call("root_shell", json!({"question": "rm -rf /"})),
                tool_call("deal_desk", json!({"question": "who approves 25% on 40000"})),
            ],
        )
    } else if last.contains("margin") {
        (Value::Null, vec![tool_call("sales", json!({})), tool_call("sales", json!({"question": "  "}))])
    } else if last.contains("ghost") {
        (json!(""), vec![tool_call("Sales", json!({"question": "x"}))])
    } else if last.contains("boom") {
        return (StatusCode::INTERNAL_SERVER_ERROR, Json(json!({"error": "overloaded"})));
    } else {
        (json!("Do you mean sales figures or the travel policy?"), vec![])
    };
    let mut message = json!({"role": "assistant", "content": content});
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(calls);
    }
    (
        StatusCode::OK,
        Json(json!({"id": "x", "object": "chat.completion", "model": "test-model",
                    "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 10, "completion_tokens": 2}})),
    )
}

struct Fixture {
    router: LlmRouter,
    seen: Seen,
    sink: Arc<Sink>,
    ctx: RunContext,
}

async fn fixture() -> Fixture {
    let seen = Seen::default();
    let app = Http::new().route("/v1/chat/completions", post(completions)).with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let sink = Arc::new(Sink::default());
    let gw = Arc::new(
        Gateway::builder(sink.clone(), Arc::new(StandardCredentials::new("switchboard-sp"))).build(),
    );
    let llm_spec = common::spec("router_llm", AgentKind::Supervisor, "routing model", &[]);
    let client = LlmClient::new(gw.egress(llm_spec), &format!("http://{addr}/v1"), "test-model");
    let router = LlmRouter::new(client, &common::demo_agents(), "Route the request.".into());
    let caller = Caller::new("u1", "alice@example.com", vec!["west_sales".into()], AuthMethod::Development);
    Fixture { router, seen, sink, ctx: RunContext::new(caller, Duration::from_secs(10)) }
}

#[tokio::test]
async fn tool_calls_become_routed_calls_and_unknown_agents_are_dropped() {
    let f = fixture().await;
    let history = vec![
        Message::system("internal note"),
        Message::user("hi"),
        Message::assistant("hello", Some("policies".into())),
    ];
    let question = "Total revenue by region, and who must approve a 25% discount on a 40000 deal?";
    let decision = f.router.route(&f.ctx, question, &history).await.unwrap();
    let RouteDecision::Agents { calls } = decision else {
        panic!("expected calls, got {decision:?}");
    };
    let got: Vec<(&str, &str, f32)> =
        calls.iter().map(|c| (c.agent.as_str(), c.input.as_str(), c.score)).collect();
    assert_eq!(
        got,
        [("sales", "total revenue by region", 1.0), ("deal_desk", "who approves 25% on 40000", 1.0)]
    );

    // What the model was shown: one tool per agent, the conversation, deterministic sampling.
    let body = f.seen.lock().unwrap()[0].clone();
    let tools = body["tools"].as_array().unwrap();
    let names: Vec<&str> = tools.iter().map(|t| t["function"]["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["sales", "policies", "deal_desk", "audit", "tickets"]);
    let sales = &tools[0]["function"];
    let description = sales["description"].as_str().unwrap();
    assert!(description.starts_with("Sales analytics over the deals pipeline"));
    assert!(description.contains("\"show the margin on the top 5 deals\""));
    assert!(!description.contains("how many deals are in negotiation"), "at most 3 examples");
    assert_eq!(sales["parameters"]["required"], json!(["question"]));
    assert_eq!(sales["parameters"]["properties"]["question"]["type"], "string");
    assert_eq!(body["temperature"], json!(0.0));
    let roles: Vec<(&str, &str)> = body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["role"].as_str().unwrap(), m["content"].as_str().unwrap()))
        .collect();
    assert_eq!(
        roles,
        [("system", "Route the request."), ("user", "hi"), ("assistant", "hello"), ("user", question)]
    );

    // The call was a governed hop.
    let audit = f.sink.audit.lock().unwrap();
    assert_eq!(audit.len(), 1);
    assert_eq!(
        (audit[0].hop, audit[0].decision, audit[0].agent.as_str()),
        (HopKind::Llm, AuditDecision::Allowed, "router_llm")
    );
}

#[tokio::test]
async fn missing_arguments_fall_back_to_the_question_and_repeats_merge() {
    let f = fixture().await;
    let question = "what is the margin on the top 5 deals";
    let decision = f.router.route(&f.ctx, question, &[]).await.unwrap();
    let RouteDecision::Agents { calls } = decision else {
        panic!("expected calls, got {decision:?}");
    };
    assert_eq!(calls.len(), 1);
    assert_eq!((calls[0].agent.as_str(), calls[0].input.as_str()), ("sales", question));
}

#[tokio::test]
async fn no_tool_call_asks_the_caller_with_the_model_text_and_lexical_candidates() {
    let f = fixture().await;
    let decision = f.router.route(&f.ctx, "numbers for travel and revenue", &[]).await.unwrap();
    let RouteDecision::Clarify { question, candidates } = decision else {
        panic!("expected a clarification, got {decision:?}");
    };
    assert_eq!(question, "Do you mean sales figures or the travel policy?");
    let mut top2 = candidates[..2].to_vec();
    top2.sort();
    assert_eq!(top2, ["policies", "sales"]);
}

#[tokio::test]
async fn only_invented_agents_means_clarify_not_a_route() {
    let f = fixture().await;
    // The model answers "Sales" (wrong case): names are matched exactly, never guessed at.
    let decision = f.router.route(&f.ctx, "ghost revenue", &[]).await.unwrap();
    let RouteDecision::Clarify { question, candidates } = decision else {
        panic!("expected a clarification, got {decision:?}");
    };
    assert!(question.starts_with("I'm not sure which assistant can help."), "{question}");
    assert_eq!(candidates[0], "sales");
}

#[tokio::test]
async fn llm_failures_propagate() {
    let f = fixture().await;
    let err = f.router.route(&f.ctx, "boom", &[]).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Upstream);
    assert!(err.message.contains("500"), "{}", err.message);
}
