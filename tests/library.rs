//! Switchboard embedded as a library: the demo runtime, streamed events, threads, and a custom
//! agent plugged into a supervisor next to the built-in kinds.

use async_trait::async_trait;
use futures::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use switchboard::core::{
    AgentInput, AgentKind, AgentOutput, AgentSpec, AuditDecision, AuthMethod, CredentialSpec, Message, Result,
};
use switchboard::govern::{Gateway, layers::StandardCredentials};
use switchboard::router::LexicalRouter;
use switchboard::store::{SqliteStore, Store};
use switchboard::{Agent, Caller, RunContext, RunRequest, RunStatus, Runtime, Supervisor, demo};
use switchboard_runtime::RunEvent;

async fn demo_runtime(dir: &std::path::Path) -> Runtime {
    demo::prepare(dir).expect("demo data");
    Runtime::load(&demo::source(dir)).await.expect("the demo loads")
}

fn ask(q: &str) -> RunRequest {
    RunRequest { question: q.into(), ..Default::default() }
}

#[tokio::test]
async fn the_same_question_answers_differently_per_caller() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = demo_runtime(dir.path()).await;
    let alice = rt.context(rt.dev_caller("alice@example.com").await.expect("alice"));
    let carol = rt.context(rt.dev_caller("carol@example.com").await.expect("carol"));
    let a = rt.supervisor.run(&alice, ask("total revenue by region")).await;
    let c = rt.supervisor.run(&carol, ask("total revenue by region")).await;
    assert_eq!(a.status, RunStatus::Ok);
    assert!(a.answer.contains("West") && !a.answer.contains("East"), "{}", a.answer);
    assert!(
        c.answer.contains("West") && c.answer.contains("East") && c.answer.contains("Central"),
        "{}",
        c.answer
    );
    assert_ne!(a.request_id, c.request_id);
}

#[tokio::test]
async fn events_stream_the_route_the_agents_and_the_answer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = demo_runtime(dir.path()).await;
    let ctx = rt.context(rt.dev_caller("carol@example.com").await.expect("carol"));
    let (tx, mut rx) = futures::channel::mpsc::unbounded();
    let response = rt
        .supervisor
        .run_with_events(
            &ctx,
            ask("Total revenue by region, and who must approve a 25% discount on a 40000 deal?"),
            Some(&tx),
        )
        .await;
    drop(tx);
    let mut events = Vec::new();
    while let Some(e) = rx.next().await {
        events.push(e);
    }
    assert!(matches!(events.first(), Some(RunEvent::Routed { .. })), "routing comes first");
    let started = events.iter().filter(|e| matches!(e, RunEvent::AgentStarted { .. })).count();
    let finished = events.iter().filter(|e| matches!(e, RunEvent::AgentFinished { .. })).count();
    assert_eq!((started, finished), (2, 2));
    let text: String = events
        .iter()
        .filter_map(|e| match e {
            RunEvent::Delta { text } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(text, response.answer, "the deltas concatenate to the answer");
}

#[tokio::test]
async fn a_thread_keeps_each_agents_context_for_follow_ups() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = demo_runtime(dir.path()).await;
    let caller = rt.dev_caller("carol@example.com").await.expect("carol");
    let first =
        RunRequest { question: "revenue by rep".into(), thread_id: Some("t-1".into()), ..Default::default() };
    let r1 = rt.supervisor.run(&rt.context(caller.clone()), first).await;
    assert_eq!(r1.agents, ["sales"]);
    let follow = RunRequest {
        question: "now only the top 3".into(),
        thread_id: Some("t-1".into()),
        ..Default::default()
    };
    let r2 = rt.supervisor.run(&rt.context(caller), follow).await;
    assert_eq!(r2.agents, ["sales"], "the follow-up stays with sales");
    let rows =
        r2.steps[0].output.as_ref().and_then(|o| o.data.as_ref()).and_then(|d| d["rows"].as_array().cloned());
    assert_eq!(rows.map(|r| r.len()), Some(3), "{}", r2.answer);
    assert!(r2.answer.to_lowercase().contains("rep"), "builds on the last query: {}", r2.answer);
    assert_eq!(rt.store.thread("carol@example.com/t-1").await.expect("thread").len(), 4);

    // Threads belong to their caller: alice naming carol's thread id starts a conversation of her own.
    let alice = rt.dev_caller("alice@example.com").await.expect("alice");
    let guess = RunRequest {
        question: "now only the top 3".into(),
        thread_id: Some("t-1".into()),
        ..Default::default()
    };
    let r3 = rt.supervisor.run(&rt.context(alice), guess).await;
    // With nothing to build on, the words alone are too vague to route: alice is asked.
    assert_eq!(r3.status, RunStatus::Clarify, "built on carol's thread: {}", r3.answer);
    assert!(r3.steps.is_empty(), "{:?}", r3.steps);
}

#[tokio::test]
async fn client_sent_history_keeps_each_agents_context_without_a_thread() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = demo_runtime(dir.path()).await;
    let caller = rt.dev_caller("carol@example.com").await.expect("carol");
    let r1 = rt.supervisor.run(&rt.context(caller.clone()), ask("revenue by rep")).await;
    assert_eq!(r1.agents, ["sales"]);
    // What an OpenAI client sends: the earlier turns, untagged, and no thread id.
    let follow = RunRequest {
        question: "now only the top 3".into(),
        history: vec![Message::user("revenue by rep"), Message::assistant(r1.answer.clone(), None)],
        ..Default::default()
    };
    let r2 = rt.supervisor.run(&rt.context(caller.clone()), follow).await;
    assert_eq!(r2.agents, ["sales"], "the follow-up stays with sales");
    let rows =
        r2.steps[0].output.as_ref().and_then(|o| o.data.as_ref()).and_then(|d| d["rows"].as_array().cloned());
    assert_eq!(rows.map(|r| r.len()), Some(3), "{}", r2.answer);
    assert!(r2.answer.to_lowercase().contains("rep"), "builds on the last query: {}", r2.answer);

    // The thread path answers the same follow-up the same way.
    let threaded =
        |q: &str| RunRequest { question: q.into(), thread_id: Some("t-9".into()), ..Default::default() };
    rt.supervisor.run(&rt.context(caller.clone()), threaded("revenue by rep")).await;
    let r3 = rt.supervisor.run(&rt.context(caller), threaded("now only the top 3")).await;
    assert_eq!(r3.answer, r2.answer);
}

/// An agent of the embedder's own, slow on purpose.
struct Sleeper(AgentSpec);

#[async_trait]
impl Agent for Sleeper {
    fn spec(&self) -> &AgentSpec {
        &self.0
    }
    async fn invoke(&self, _ctx: &RunContext, _input: &AgentInput) -> Result<AgentOutput> {
        tokio::time::sleep(Duration::from_secs(30)).await;
        Ok(AgentOutput { text: "too late".into(), ..Default::default() })
    }
}

/// An instant agent.
struct Echo(AgentSpec);

#[async_trait]
impl Agent for Echo {
    fn spec(&self) -> &AgentSpec {
        &self.0
    }
    async fn invoke(&self, _ctx: &RunContext, input: &AgentInput) -> Result<AgentOutput> {
        Ok(AgentOutput { text: format!("weather: sunny ({})", input.question), ..Default::default() })
    }
}

fn spec(name: &str, description: &str, timeout_ms: u64) -> AgentSpec {
    AgentSpec {
        name: name.into(),
        kind: AgentKind::Tool,
        description: description.into(),
        examples: vec![],
        credential: CredentialSpec::default(),
        allowed_roles: None,
        timeout_ms: Some(timeout_ms),
        connection: None,
        settings: serde_json::Value::Null,
        tool_roles: None,
        guardrails: None,
    }
}

#[tokio::test]
async fn a_slow_branch_times_out_without_sinking_the_answer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("s.db")).expect("store"));
    let gateway = Arc::new(Gateway::builder(store.clone(), Arc::new(StandardCredentials::new("sp"))).build());
    let slow = spec("forecast", "Long range forecast of rainfall and storms.", 100);
    let fast = spec("weather", "Current weather and temperature in a city.", 5_000);
    let agents: Vec<Arc<dyn Agent>> = vec![Arc::new(Sleeper(slow)), Arc::new(Echo(fast))];
    let specs: Vec<Arc<AgentSpec>> = agents.iter().map(|a| Arc::new(a.spec().clone())).collect();
    let router = Arc::new(LexicalRouter::new(&specs, LexicalRouter::DEFAULT_THRESHOLD));
    let me = Arc::new(spec("embedded", "An embedded supervisor.", 1_000));
    let supervisor = Supervisor::new(me, agents, router, gateway, store.clone(), store.clone(), None);

    let caller = Caller::new("u", "u@example.com", vec!["staff".into()], AuthMethod::Development);
    let ctx = RunContext::new(caller, Duration::from_secs(10));
    let started = std::time::Instant::now();
    let r = supervisor
        .run(&ctx, ask("current weather and temperature in Paris, and the long range rainfall forecast"))
        .await;
    assert!(started.elapsed() < Duration::from_secs(10), "the slow agent did not hold the request");
    assert_eq!(r.status, RunStatus::Ok, "{r:#?}");
    assert_eq!(r.agents, ["weather"]);
    let slow_step = r.steps.iter().find(|s| s.agent == "forecast").expect("forecast step");
    assert_eq!(slow_step.status, "error");
    assert!(slow_step.error.as_deref().unwrap_or("").contains("timed out after 100 ms"), "{slow_step:?}");
    assert!(r.answer.contains("weather: sunny") && r.answer.contains("timed out"), "{}", r.answer);

    store.flush().await;
    let audit = store.audit_for_request(&r.request_id).await.expect("audit");
    let forecast = audit.iter().find(|a| a.agent == "forecast").expect("audited");
    assert_eq!(forecast.decision, AuditDecision::Error);
}

/// Answers with the history it was given, one `role:content` per turn.
struct History(AgentSpec);

#[async_trait]
impl Agent for History {
    fn spec(&self) -> &AgentSpec {
        &self.0
    }
    async fn invoke(&self, _ctx: &RunContext, input: &AgentInput) -> Result<AgentOutput> {
        let seen: Vec<String> = input.history.iter().map(|m| format!("{:?}:{}", m.role, m.content)).collect();
        Ok(AgentOutput { text: seen.join(" | "), ..Default::default() })
    }
}

/// Routes every question to one agent, as an LLM router reading the whole conversation would route
/// a follow-up: history attribution must not depend on the configured router being lexical.
struct Always(&'static str);

#[async_trait]
impl switchboard::core::Router for Always {
    async fn route(
        &self,
        _ctx: &RunContext,
        question: &str,
        _history: &[Message],
    ) -> Result<switchboard::core::RouteDecision> {
        Ok(switchboard::core::RouteDecision::Agents {
            calls: vec![switchboard::core::RoutedCall::new(self.0, question, 1.0)],
        })
    }
}

#[tokio::test]
async fn any_router_gives_each_agent_its_own_turns_of_client_sent_history() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("s.db")).expect("store"));
    let gateway = Arc::new(Gateway::builder(store.clone(), Arc::new(StandardCredentials::new("sp"))).build());
    let weather = spec("weather", "Current weather and temperature in a city.", 5_000);
    let forecast = spec("forecast", "Long range forecast of rainfall and storms.", 5_000);
    let agents: Vec<Arc<dyn Agent>> = vec![Arc::new(History(weather)), Arc::new(History(forecast))];
    let me = Arc::new(spec("embedded", "An embedded supervisor.", 1_000));
    let supervisor =
        Supervisor::new(me, agents, Arc::new(Always("weather")), gateway, store.clone(), store.clone(), None);

    let caller = Caller::new("u", "u@example.com", vec!["staff".into()], AuthMethod::Development);
    let ctx = RunContext::new(caller, Duration::from_secs(10));
    let request = RunRequest {
        question: "and tomorrow?".into(),
        history: vec![
            Message::user("current weather in Paris"),
            Message::assistant("sunny", None),
            Message::user("rainfall forecast for the storms season"),
            Message::assistant("wet", None),
            Message::user("what about the temperature"),
            Message::assistant("21C", None),
        ],
        ..Default::default()
    };
    let r = supervisor.run(&ctx, request).await;
    assert_eq!(r.agents, ["weather"]);
    assert_eq!(
        r.answer,
        "User:current weather in Paris | Assistant:sunny | User:what about the temperature | Assistant:21C",
        "the weather agent sees its own turns, not the forecast's"
    );
}

/// Span attributes parsed back from their JSON text (`mlflow.spanInputs` and friends).
fn json_attr(span: &switchboard::core::SpanRecord, key: &str) -> serde_json::Value {
    let text = span
        .attributes
        .get(key)
        .and_then(|v| v.as_str())
        .unwrap_or_else(|| panic!("{} lacks {key}", span.name));
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{key} of {} is not JSON: {e}", span.name))
}

#[tokio::test]
async fn spans_carry_inputs_outputs_user_and_session_for_mlflow_and_phoenix() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = demo_runtime(dir.path()).await;
    let caller = rt.dev_caller("alice@example.com").await.expect("alice");
    let token = caller.token().expect("a dev caller has a token").expose().to_string();
    let question = "total revenue by region";
    let request =
        RunRequest { question: question.into(), thread_id: Some("thread-7".into()), ..Default::default() };
    let response = rt.supervisor.run(&rt.context(caller), request).await;
    assert_eq!(response.status, RunStatus::Ok, "{}", response.answer);
    rt.store.flush().await;
    let spans = rt.store.spans(&response.request_id).await.expect("spans");

    let root = spans.iter().find(|s| s.parent_id.is_none()).expect("a root span");
    for key in ["mlflow.trace.user", "user.id"] {
        assert_eq!(root.attributes[key], "alice@example.com", "{key}");
    }
    for key in ["mlflow.trace.session", "session.id"] {
        assert_eq!(root.attributes[key], "thread-7", "{key}");
    }
    assert_eq!(json_attr(root, "mlflow.spanInputs")["question"], question);
    assert_eq!(json_attr(root, "mlflow.spanOutputs")["answer"], response.answer.as_str());
    assert_eq!(json_attr(root, "gen_ai.input.messages")[0]["parts"][0]["content"], question);
    assert_eq!(json_attr(root, "gen_ai.output.messages")[0]["parts"][0]["content"], response.answer.as_str());
    assert_eq!(root.attributes["switchboard.question.length"], question.len());

    let route = spans.iter().find(|s| s.name == "route").expect("route span");
    assert_eq!(json_attr(route, "mlflow.spanInputs")["question"], question);
    assert_eq!(json_attr(route, "mlflow.spanOutputs")["calls"][0]["agent"], "sales");

    let sales = spans.iter().find(|s| s.name == "invoke_agent sales").expect("sales span");
    assert!(json_attr(sales, "mlflow.spanInputs")["question"].as_str().is_some_and(|q| !q.is_empty()));
    assert_eq!(json_attr(sales, "mlflow.spanOutputs")["answer"], response.answer.as_str());
    assert_eq!(json_attr(sales, "gen_ai.output.messages")[0]["role"], "assistant");

    let sql = spans.iter().find(|s| s.attributes.get("switchboard.hop.kind").is_some_and(|k| k == "sql"));
    let sql = sql.expect("a SQL hop span");
    assert!(json_attr(sql, "mlflow.spanInputs")["sql"].as_str().is_some_and(|s| s.contains("SELECT")));
    assert!(json_attr(sql, "mlflow.spanOutputs")["rows"].as_u64().is_some());

    let dump = serde_json::to_string(&spans).expect("spans serialize");
    assert!(!dump.contains(&token), "the caller's token is in a span");
}

#[tokio::test]
async fn a_huge_question_is_stored_cut_with_its_length_and_hash() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = demo_runtime(dir.path()).await;
    let ctx = rt.context(rt.dev_caller("carol@example.com").await.expect("carol"));
    let question = format!("total revenue by region {}", "and again ".repeat(10_000));
    assert!(question.len() > 100_000);
    let response = rt.supervisor.run(&ctx, ask(&question)).await;
    rt.store.flush().await;
    let spans = rt.store.spans(&response.request_id).await.expect("spans");
    assert!(spans.len() >= 2, "{spans:#?}");
    for span in &spans {
        for (key, value) in &span.attributes {
            let len = value.to_string().len();
            assert!(len <= switchboard::core::MAX_ATTRIBUTE_BYTES + 2, "{}: {key} is {len} bytes", span.name);
        }
    }
    let root = spans.iter().find(|s| s.parent_id.is_none()).expect("a root span");
    assert_eq!(root.attributes["switchboard.question.length"], question.len());
    let hash = root.attributes["switchboard.question.sha256"].as_str().expect("hash");
    assert!(hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()), "{hash}");
    let stored = json_attr(root, "mlflow.spanInputs")["question"].as_str().expect("question").to_string();
    assert!(question.starts_with(stored.split('…').next().expect("prefix")), "a prefix is kept");
    assert!(stored.ends_with(&format!("…[truncated, {} bytes]", question.len())), "{stored}");
}

/// The README tour's access table: who sees which sales rows, real or masked margins, and who may
/// use `deal_desk` and `audit`, per demo identity. (Tickets, the last column, are per user in
/// `tests/cli.rs`.)
const ACCESS_TABLE: [(&str, &[&str], bool, bool, bool); 6] = [
    // email, sales regions, real margins, deal_desk, audit
    ("alice@example.com", &["West"], false, true, false),
    ("bob@example.com", &["East"], false, true, false),
    ("carol@example.com", &["Central", "East", "West"], false, true, false),
    ("dave@example.com", &["Central", "East", "West"], true, false, true),
    ("erin@example.com", &["Central", "East", "West"], true, false, false),
    ("frank@example.com", &["Central", "East", "West"], true, true, true),
];

/// The values of `column` in the only step's table.
fn column_of(r: &switchboard::RunResponse, column: &str) -> Vec<serde_json::Value> {
    let data =
        r.steps[0].output.as_ref().and_then(|o| o.data.as_ref()).unwrap_or_else(|| panic!("{}", r.answer));
    let at = data["columns"].as_array().and_then(|c| c.iter().position(|c| c == column));
    let at = at.unwrap_or_else(|| panic!("no `{column}` column: {data}"));
    data["rows"].as_array().into_iter().flatten().map(|row| row[at].clone()).collect()
}

#[tokio::test]
async fn the_demo_access_table_holds_row_by_row_for_all_six_roles() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = demo_runtime(dir.path()).await;
    for (email, regions, real_margins, deal_desk, audit) in ACCESS_TABLE {
        let caller = rt.dev_caller(email).await.expect("a demo identity");
        // A request (and request id) of its own per question, as over HTTP.
        let run = |q: &'static str| {
            let ctx = rt.context(caller.clone());
            let rt = &rt;
            async move { rt.supervisor.run(&ctx, ask(q)).await }
        };

        let r = run("total revenue by region").await;
        let mut seen: Vec<String> =
            column_of(&r, "region").iter().filter_map(|v| v.as_str().map(str::to_string)).collect();
        seen.sort();
        assert_eq!(seen, regions, "{email}: sales rows");

        let r = run("average margin by region").await;
        let margins = column_of(&r, "avg_margin");
        assert!(!margins.is_empty(), "{email}: {}", r.answer);
        assert_eq!(margins.iter().all(|m| m.is_number()), real_margins, "{email}: margins {margins:?}");
        assert_eq!(
            margins.iter().all(serde_json::Value::is_null),
            !real_margins,
            "{email}: margins {margins:?}"
        );

        let r = run("who must approve a 25% discount on a 40000 deal?").await;
        let expected = if deal_desk { RunStatus::Ok } else { RunStatus::Denied };
        assert_eq!(
            (r.status, r.agents.len()),
            (expected, usize::from(deal_desk)),
            "{email}: deal_desk: {}",
            r.answer
        );

        let r = run("show the audit log").await;
        let expected = if audit { RunStatus::Ok } else { RunStatus::Denied };
        assert_eq!(r.status, expected, "{email}: audit: {}", r.answer);
        assert_eq!(
            r.route.as_ref().map(|d| serde_json::to_value(d).unwrap()["calls"][0]["agent"].clone()),
            Some("audit".into()),
            "{email}"
        );
    }
}
