//! Function tools: a Rust function the embedding program registers, declared in an agent file
//! (`[tool.function]`) and called as a governed hop, with validated arguments, the caller's
//! identity and the hop's credential, beside the demo's built-in agents.

use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use switchboard::config::ConfigSource;
use switchboard::core::{AgentOutput, Error, HopKind, PrincipalKind};
use switchboard::{Function, FunctionCall, Functions, RunRequest, RunStatus, Runtime, demo};
use switchboard_testkit::logs::Logs;

const PLANTED: &str = "orders-api-key-PLANTED-91c3";

const ORDERS_AGENT: &str = r#"name = "orders"
kind = "tool"
description = "Looks up the status and shipping of a customer order by its order id."
examples = ["where is order ORD-1042?", "has order ORD-7 shipped yet?", "status of order ORD-31"]
allowed_roles = ["managers", "west_sales"]

[credential]
mode = "obo"

[tool.function]
name = "lookup_order"
"#;

/// The demo as files, with `agent` added as `agents/NAME.toml`.
fn demo_with_agent(dir: &std::path::Path, name: &str, agent: &str) -> ConfigSource {
    demo::write_to(dir).expect("the demo as files");
    std::fs::write(dir.join("agents").join(format!("{name}.toml")), agent).expect("agent file");
    ConfigSource::File(dir.join("switchboard.toml"))
}

fn order_schema() -> Value {
    json!({"type": "object", "required": ["order_id"], "properties": {
        "order_id": {"type": "string", "pattern": "^ORD-[0-9]+$"},
        "include_items": {"type": "boolean", "default": false}}})
}

/// `lookup_order`, recording every call it receives.
fn lookup_order(calls: Arc<Mutex<Vec<FunctionCall>>>) -> Functions {
    let function = Function::new("lookup_order", order_schema(), move |call: FunctionCall| {
        let calls = calls.clone();
        async move {
            let id = call.arguments["order_id"].as_str().unwrap_or_default().to_string();
            calls.lock().unwrap().push(call);
            Ok(AgentOutput {
                text: format!("Order {id} shipped on 2026-11-30."),
                data: Some(json!({"order_id": id, "status": "shipped"})),
                ..Default::default()
            })
        }
    })
    .expect("a valid function");
    let mut functions = Functions::new();
    functions.register(function).expect("registered once");
    functions
}

/// The demo with `agent` as `agents/orders.toml` and `lookup_order` registered, and the calls it
/// will receive.
async fn orders_runtime(dir: &std::path::Path, agent: &str) -> (Runtime, Arc<Mutex<Vec<FunctionCall>>>) {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let source = demo_with_agent(dir, "orders", agent);
    let rt = Runtime::load_with_functions(&source, lookup_order(calls.clone())).await.expect("loads");
    (rt, calls)
}

fn ask(q: &str) -> RunRequest {
    RunRequest { question: q.into(), ..Default::default() }
}

/// Everything the store kept about a request (spans and audit rows), as one string to search.
async fn kept(rt: &Runtime, request_id: &str) -> String {
    rt.store.flush().await;
    let spans = rt.store.spans(request_id).await.expect("spans");
    let audit = rt.store.audit_for_request(request_id).await.expect("audit");
    format!("{}\n{}", serde_json::to_string(&spans).unwrap(), serde_json::to_string(&audit).unwrap())
}

#[tokio::test]
async fn a_function_tool_runs_for_the_caller_with_arguments_read_from_the_question() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (rt, calls) = orders_runtime(dir.path(), ORDERS_AGENT).await;
    let carol = rt.context(rt.dev_caller("carol@example.com").await.expect("carol"));

    let r = rt.supervisor.run(&carol, ask("where is order ORD-1042?")).await;
    assert_eq!(r.status, RunStatus::Ok, "{}", r.answer);
    assert_eq!(r.agents, ["orders"]);
    assert!(r.answer.contains("Order ORD-1042 shipped on 2026-11-30."), "{}", r.answer);

    let calls = calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 1, "one call");
    let call = &calls[0];
    assert_eq!(
        Value::Object(call.arguments.clone()),
        json!({"order_id": "ORD-1042", "include_items": false}),
        "read from the question, the default filled in"
    );
    assert_eq!(call.caller.email(), "carol@example.com");
    assert_eq!(call.credential.principal.kind, PrincipalKind::User, "obo: the function acts as carol");
    assert_eq!(call.credential.principal.name, "carol@example.com");
    assert!(call.credential.token.is_some(), "obo: carol's downscoped token, for the backend");

    // A governed hop: a `tool` span and an allowed audit row naming the function.
    let kept = kept(&rt, &r.request_id).await;
    let audit = rt.store.audit_for_request(&r.request_id).await.expect("audit");
    let hop = audit
        .iter()
        .find(|a| a.target == "lookup_order")
        .unwrap_or_else(|| panic!("an audit row for the function: {kept}"));
    assert_eq!((hop.agent.as_str(), hop.hop), ("orders", HopKind::Tool));
    assert_eq!(hop.decision.as_str(), "allowed");
    assert_eq!(hop.principal, "carol@example.com");
    let token = call.credential.token.as_ref().expect("token").expose().to_string();
    assert!(!kept.contains(&token), "the hop's token never reaches spans or audit rows");
    rt.shutdown().await;
}

#[tokio::test]
async fn policy_and_the_schema_decide_before_the_function_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (rt, calls) = orders_runtime(dir.path(), ORDERS_AGENT).await;

    // bob (east_sales) may not use the agent.
    let bob = rt.context(rt.dev_caller("bob@example.com").await.expect("bob"));
    let r = rt.supervisor.run(&bob, ask("where is order ORD-1042?")).await;
    assert_ne!(r.status, RunStatus::Ok, "{}", r.answer);
    assert!(r.answer.contains("denied") || r.answer.contains("not allowed"), "{}", r.answer);

    // No order id in the question: the schema's required argument is missing.
    let carol = rt.context(rt.dev_caller("carol@example.com").await.expect("carol"));
    let r = rt.supervisor.run(&carol, ask("where is my order? has it shipped yet?")).await;
    assert!(r.answer.contains("`order_id`"), "names the missing argument: {}", r.answer);

    assert!(calls.lock().unwrap().is_empty(), "the function never ran");
    rt.shutdown().await;

    // A tool matrix names the function: alice may use the agent, not its function.
    let dir = tempfile::tempdir().expect("tempdir");
    let agent = format!("{ORDERS_AGENT}\n[tool_roles]\nlookup_order = [\"managers\"]\n");
    let (rt, calls) = orders_runtime(dir.path(), &agent).await;
    let alice = rt.context(rt.dev_caller("alice@example.com").await.expect("alice"));
    let r = rt.supervisor.run(&alice, ask("where is order ORD-1042?")).await;
    assert!(r.answer.contains("may not use tool `lookup_order`"), "{}", r.answer);
    assert!(calls.lock().unwrap().is_empty(), "the function never ran for alice");
    let carol = rt.context(rt.dev_caller("carol@example.com").await.expect("carol"));
    let r = rt.supervisor.run(&carol, ask("where is order ORD-1042?")).await;
    assert_eq!(r.status, RunStatus::Ok, "{}", r.answer);
    assert_eq!(calls.lock().unwrap().len(), 1, "carol's call ran");
    rt.shutdown().await;
}

#[tokio::test]
async fn a_manual_secret_reaches_the_function_and_nothing_else() {
    let logs = Logs::global();
    let dir = tempfile::tempdir().expect("tempdir");
    // SAFETY: set before any thread of this test reads the environment; the name is this test's own.
    unsafe { std::env::set_var("SB_TEST_ORDERS_API_KEY", PLANTED) };
    let agent =
        ORDERS_AGENT.replace("mode = \"obo\"", "mode = \"manual\"\nsecret = \"env:SB_TEST_ORDERS_API_KEY\"");
    let (rt, calls) = orders_runtime(dir.path(), &agent).await;
    let carol = rt.context(rt.dev_caller("carol@example.com").await.expect("carol"));

    let r = rt.supervisor.run(&carol, ask("has order ORD-7 shipped yet?")).await;
    assert_eq!(r.status, RunStatus::Ok, "{}", r.answer);
    let calls = calls.lock().unwrap().clone();
    let credential = &calls.first().expect("one call").credential;
    assert_eq!(credential.principal.kind, PrincipalKind::Secret);
    assert_eq!(credential.token.as_ref().map(|t| t.expose()), Some(PLANTED));
    assert!(!format!("{credential:?}").contains(PLANTED), "Debug never shows it");

    let kept = kept(&rt, &r.request_id).await;
    let response = serde_json::to_string(&r).expect("response");
    let logged = logs.text();
    assert!(logged.contains("knowledge index built"), "the capture sees this test's loading: {logged}");
    for (what, text) in [("spans and audit rows", &kept), ("the response", &response), ("the logs", &logged)]
    {
        assert!(!text.contains(PLANTED) && !text.contains("PLANTED"), "{what} leak the secret: {text}");
    }
    rt.shutdown().await;
}

#[tokio::test]
async fn a_failing_or_panicking_function_fails_its_call_not_the_runtime() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut functions = Functions::new();
    functions
        .register(
            Function::new("lookup_order", order_schema(), |call: FunctionCall| async move {
                match call.arguments["order_id"].as_str() {
                    Some("ORD-1") => Err(Error::not_found("no order ORD-1")),
                    _ => panic!("the order service blew up"),
                }
            })
            .expect("valid"),
        )
        .expect("registered");
    let source = demo_with_agent(dir.path(), "orders", ORDERS_AGENT);
    let rt = Runtime::load_with_functions(&source, functions).await.expect("loads");
    let carol = rt.context(rt.dev_caller("carol@example.com").await.expect("carol"));

    let r = rt.supervisor.run(&carol, ask("where is order ORD-1?")).await;
    assert!(r.answer.contains("no order ORD-1"), "the function's own error: {}", r.answer);
    let r = rt.supervisor.run(&carol, ask("where is order ORD-2?")).await;
    assert!(r.answer.contains("the function `lookup_order` panicked"), "{}", r.answer);
    // The runtime still answers.
    let r = rt.supervisor.run(&carol, ask("total revenue by region")).await;
    assert_eq!(r.status, RunStatus::Ok, "{}", r.answer);
    rt.shutdown().await;
}

#[tokio::test]
async fn a_function_tool_names_a_registered_function_and_nothing_else() {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = demo_with_agent(dir.path(), "orders", ORDERS_AGENT);
    let e = Runtime::load(&source).await.err().expect("nothing registered");
    assert!(
        e.message.contains("tool.function.name `lookup_order` is not a registered function")
            && e.message.contains("Runtime::load_with_functions"),
        "{}",
        e.message
    );

    let mut other = Functions::new();
    other
        .register(
            Function::new("lookup_invoice", order_schema(), |_| async { Ok(AgentOutput::default()) })
                .unwrap(),
        )
        .unwrap();
    let e = Runtime::load_with_functions(&source, other.clone()).await.err().expect("another name");
    assert!(e.message.contains("registered: `lookup_invoice`"), "{}", e.message);
    let twice = other.register(
        Function::new("lookup_invoice", order_schema(), |_| async { Ok(AgentOutput::default()) }).unwrap(),
    );
    assert!(twice.is_err_and(|e| e.message.contains("registered twice")));

    for (agent, expected) in [
        (
            ORDERS_AGENT.replace("allowed_roles", "connection = \"tickets_mcp\"\nallowed_roles"),
            "remove `connection`",
        ),
        (format!("{ORDERS_AGENT}timeout = 3\n"), "unknown field `timeout`"),
        (
            ORDERS_AGENT.replace("[tool.function]\n", "[tool]\nsql = \"SELECT 1\"\n[tool.function]\n"),
            "move or remove `sql`",
        ),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let source = demo_with_agent(dir.path(), "orders", &agent);
        let e = Runtime::validate(&source).expect_err("refused");
        assert!(e.to_string().contains(expected), "expected `{expected}`: {e}");
    }

    let bad_name = Function::new("look up", order_schema(), |_| async { Ok(AgentOutput::default()) });
    assert!(bad_name.is_err_and(|e| e.message.contains("letters, digits")));
    let bad_schema =
        Function::new("lookup", json!({"type": "string"}), |_| async { Ok(AgentOutput::default()) });
    assert!(bad_schema.is_err_and(|e| e.message.contains("must be \"object\"")));
}
