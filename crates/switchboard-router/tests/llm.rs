//! The LLM router against the scripted OpenAI-compatible model.

mod common;

use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use switchboard_core::{
    AgentKind, AuditDecision, AuditRecord, AuthMethod, Caller, ErrorKind, HopKind, Message, RouteDecision,
    Router, RunContext, SpanRecord, TelemetrySink,
};
use switchboard_govern::Gateway;
use switchboard_govern::layers::StandardCredentials;
use switchboard_llm::LlmClient;
use switchboard_router::{LexicalRouter, LlmRouter};
use switchboard_testkit::llm::{Script, ScriptedLlm};

#[derive(Default)]
struct Sink {
    audit: Mutex<Vec<AuditRecord>>,
    spans: Mutex<Vec<SpanRecord>>,
}

impl TelemetrySink for Sink {
    fn span(&self, span: SpanRecord) {
        self.spans.lock().unwrap().push(span);
    }
    fn audit(&self, record: AuditRecord) {
        self.audit.lock().unwrap().push(record);
    }
}

/// Answers by a keyword in the question, as the scripted model (switchboard_testkit::llm): calls
/// named as written (including agents that do not exist), a clarifying text, or a failure.
const SCRIPT: &str = r#"
[[rules]]
when = { last_user = "discount" }
reply = { tool_calls = [
    { name = "sales", arguments = { question = "total revenue by region" } },
    { name = "root_shell", arguments = { question = "rm -rf /" } },
    { name = "deal_desk", arguments = { question = "who approves 25% on 40000" } },
] }

[[rules]]
when = { last_user = "margin" }
reply = { tool_calls = [{ name = "sales" }, { name = "sales", arguments = { question = "  " } }] }

[[rules]]
when = { last_user = "ghost" }
reply = { tool_calls = [{ name = "Sales", arguments = { question = "x" } }] }

[[rules]]
when = { last_user = "(?i)in the west" }
reply = { tool_calls = [{ name = "sales", arguments = { question = "revenue in the West", region = "West" } }] }

[[rules]]
when = { last_user = "(?i)any region" }
reply = { tool_calls = [{ name = "sales", arguments = { question = "revenue", limit = 3 } }] }

[[rules]]
when = { last_user = "(?i)west and east" }
reply = { tool_calls = [
    { name = "sales", arguments = { question = "West", region = "West" } },
    { name = "sales", arguments = { question = "East", region = "East" } },
] }

[[rules]]
when = { last_user = "(?i)^hmm" }
reply = { tool_calls = [{ name = "sales", arguments = { question = "revenue", region = "West" } }] }

[[rules]]
when = { last_user = "boom" }
reply = { error = { status = 500, message = "overloaded" } }

[default]
text = "Do you mean sales figures or the travel policy?"
"#;

struct Fixture {
    router: LlmRouter,
    llm: ScriptedLlm,
    sink: Arc<Sink>,
    ctx: RunContext,
}

async fn fixture() -> Fixture {
    let llm = ScriptedLlm::start(Script::from_toml(SCRIPT).unwrap()).await;

    let sink = Arc::new(Sink::default());
    let gw = Arc::new(
        Gateway::builder(sink.clone(), Arc::new(StandardCredentials::new("switchboard-sp"))).build(),
    );
    let llm_spec = common::spec("router_llm", AgentKind::Supervisor, "routing model", &[]);
    let client = LlmClient::new(gw.egress(llm_spec), llm.base_url(), "test-model");
    let agents = common::demo_agents();
    let lexical = Arc::new(LexicalRouter::new(&agents, LexicalRouter::DEFAULT_THRESHOLD));
    let router = LlmRouter::new(client, &agents, "Route the request.".into(), lexical);
    let caller = Caller::new("u1", "alice@example.com", vec!["west_sales".into()], AuthMethod::Development);
    Fixture { router, llm, sink, ctx: RunContext::new(caller, Duration::from_secs(10)) }
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
    let body = f.llm.requests()[0].clone();
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
        [
            ("system", "Route the request."),
            ("system", "The caller's instructions:\ninternal note"),
            ("user", "hi"),
            ("assistant", "hello"),
            ("user", question)
        ]
    );

    // The call was a governed hop.
    let audit = f.sink.audit.lock().unwrap();
    assert_eq!(audit.len(), 1);
    assert_eq!(
        (audit[0].hop, audit[0].decision, audit[0].agent.as_str()),
        (HopKind::Llm, AuditDecision::Allowed, "router_llm")
    );
}

/// The names of the tools the model was offered in its `i`th request.
fn offered(llm: &ScriptedLlm, i: usize) -> Vec<String> {
    let body = llm.requests()[i].clone();
    let tools = body["tools"].as_array().cloned().unwrap_or_default();
    tools.iter().filter_map(|t| t["function"]["name"].as_str().map(String::from)).collect()
}

#[tokio::test]
async fn a_confident_offline_router_narrows_the_tools_offered_to_a_shortlist() {
    let Fixture { router, llm, ctx, sink } = fixture().await;
    let router = router.with_shortlist(2);
    let ask = |question: &'static str, history: Vec<Message>| {
        let (router, ctx) = (&router, &ctx);
        async move { router.route(ctx, question, &history).await.unwrap() }
    };

    // Clearly sales: sales and the runner-up, in declaration order.
    ask("total revenue by region", vec![]).await;
    let shortlist = offered(&llm, 0);
    assert_eq!(shortlist.len(), 2, "{shortlist:?}");
    assert_eq!(shortlist[0], "sales", "{shortlist:?}");
    // The routing call's span names what was offered.
    let spans = sink.spans.lock().unwrap().clone();
    let inputs = spans[0].attributes["mlflow.spanInputs"].as_str().expect("inputs are JSON text");
    let inputs: serde_json::Value = serde_json::from_str(inputs).expect("whole JSON");
    assert_eq!(inputs["tools"], json!(shortlist));

    // Two intents: both agents, whatever the size.
    let router = router.with_shortlist(1);
    let ask = |question: &'static str, history: Vec<Message>| {
        let (router, ctx) = (&router, &ctx);
        async move { router.route(ctx, question, &history).await.unwrap() }
    };
    ask("Total revenue by region, and who must approve a 25% discount on a 40000 deal?", vec![]).await;
    assert_eq!(offered(&llm, 1), ["sales", "deal_desk"]);

    // A follow-up keeps the agent that answered last on offer.
    let history =
        vec![Message::user("hotel limit?"), Message::assistant("$250 a night", Some("policies".into()))];
    ask("total revenue by region", history).await;
    assert_eq!(offered(&llm, 2), ["sales", "policies"]);

    // Nothing the offline router is sure of: the model sees every agent.
    ask("hello there", vec![]).await;
    assert_eq!(offered(&llm, 3), ["sales", "policies", "deal_desk", "audit", "tickets"]);
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
async fn the_agent_a_question_is_for_is_offered_with_its_arguments_and_the_route_carries_them() {
    let f = fixture().await;
    let sales = Arc::new(json!({"type": "object", "required": ["region"], "additionalProperties": false,
        "properties": {"region": {"type": "string", "description": "a sales region"}, "limit": {"type": "integer"}}}));
    let plain =
        json!({"type": "object", "properties": {"question": {"type": "string"}}, "required": ["question"]});
    let router = f.router.with_arguments([
        ("sales".to_string(), sales),
        (
            "deal_desk".to_string(),
            Arc::new(json!({"type": "object", "properties": {"question": {"type": "integer"}}})),
        ),
        ("nobody".to_string(), Arc::new(json!({"type": "object", "properties": {}}))),
    ]);
    let route = |question: &'static str| {
        let (router, ctx) = (&router, &f.ctx);
        async move {
            match router.route(ctx, question, &[]).await.unwrap() {
                RouteDecision::Agents { calls } => calls,
                other => panic!("expected calls, got {other:?}"),
            }
        }
    };
    let parameters = |i: usize, name: &str| {
        let tools = f.llm.requests()[i]["tools"].as_array().cloned().unwrap();
        tools
            .iter()
            .find(|t| t["function"]["name"] == name)
            .map(|t| t["function"]["parameters"].clone())
            .unwrap()
    };

    // Clearly sales: it takes its own arguments beside `question`, which stays required; the
    // others take only `question`.
    let calls = route("total revenue by region in the West").await;
    assert_eq!((calls[0].agent.as_str(), calls[0].input.as_str()), ("sales", "revenue in the West"));
    assert_eq!(calls[0].arguments, json!({"region": "West"}).as_object().cloned(), "all but `question`");
    assert_eq!(
        parameters(0, "sales"),
        json!({"type": "object", "required": ["question", "region"], "additionalProperties": false,
            "properties": {"question": {"type": "string"}, "region": {"type": "string", "description": "a sales region"},
                "limit": {"type": "integer"}}})
    );
    assert_eq!(parameters(0, "policies"), plain);

    // Without every required argument, the agent asks its model itself.
    let calls = route("total revenue by region, any region").await;
    assert_eq!((calls[0].agent.as_str(), calls[0].arguments.clone()), ("sales", None));

    // Two calls to one agent join their inputs; neither set of arguments can stand for both.
    let calls = route("total revenue by region, west and east").await;
    assert_eq!(calls.len(), 1);
    assert_eq!((calls[0].input.as_str(), calls[0].arguments.clone()), ("West; East", None));

    // A question that shares nothing with any agent: none is offered its arguments, and any
    // the model proposes anyway are not passed on.
    let calls = route("hmm").await;
    assert_eq!(parameters(3, "sales"), plain);
    assert_eq!((calls[0].agent.as_str(), calls[0].arguments.clone()), ("sales", None));
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
