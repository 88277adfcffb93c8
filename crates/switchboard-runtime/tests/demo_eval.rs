//! The demo's eval set (`eval/demo/cases.jsonl`) against the built-in demo, with the offline
//! router at the demo's configured threshold. The full harness (`switchboard eval`) reads the
//! same file; this test keeps the router honest without it.
//!
//! Two scores: **routing** — the right agents, and the governance outcome the case expects
//! (answered, clarified or denied); and **end to end** — also the agents' own success (status
//! `ok`, not an agent error) and the case's `answer.contains` checks.

use serde_json::Value;
use std::collections::BTreeSet;
use std::path::PathBuf;
use switchboard_core::{Message, RouteDecision};
use switchboard_runtime::{RunRequest, Runtime, demo};

/// The share of cases whose routing and governance outcome must be right.
const ROUTING_TARGET: f64 = 0.98;
/// The share that must also succeed end to end. Lower: a sub-agent can fail on a question that
/// reached it correctly (the tickets agent picks its MCP tool by word overlap without a model).
const END_TO_END_TARGET: f64 = 0.95;

fn cases() -> Vec<Value> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../eval/demo/cases.jsonl");
    let text = std::fs::read_to_string(&path).expect("eval/demo/cases.jsonl");
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| serde_json::from_str(l).unwrap_or_else(|e| panic!("line {}: {e}", i + 1)))
        .collect()
}

/// The question and history of a case: `question`, or `messages` whose last is the question.
fn input(case: &Value) -> (String, Vec<Message>) {
    if let Some(q) = case["question"].as_str() {
        return (q.to_string(), Vec::new());
    }
    let messages = case["messages"].as_array().expect("question or messages");
    let (last, earlier) = messages.split_last().expect("at least one message");
    let history = earlier
        .iter()
        .map(|m| {
            let content = m["content"].as_str().expect("content");
            match m["role"].as_str() {
                Some("assistant") => Message::assistant(content, None),
                _ => Message::user(content),
            }
        })
        .collect();
    (last["content"].as_str().expect("content").to_string(), history)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_eval_set_routes_and_ends_as_expected() {
    let cases = cases();
    assert!(cases.len() >= 80, "{} cases", cases.len());
    let dir = tempfile::tempdir().expect("tempdir");
    demo::prepare(dir.path()).expect("demo data");
    let runtime = Runtime::load(&demo::source(dir.path())).await.expect("the demo loads");

    let (mut misrouted, mut failures) = (Vec::new(), Vec::new());
    for case in &cases {
        let id = case["id"].as_str().expect("id");
        let who = case["as"].as_str().unwrap_or("alice@example.com");
        let expect = &case["expect"];
        let (question, history) = input(case);
        let caller = runtime.dev_caller(who).await.expect("a dev user");
        let request = RunRequest { question: question.clone(), history, ..RunRequest::default() };
        let response = runtime.supervisor.run(&runtime.context(caller), request).await;

        let routed: Vec<String> = match &response.route {
            Some(RouteDecision::Agents { calls }) => calls.iter().map(|c| c.agent.clone()).collect(),
            _ => Vec::new(),
        };
        let wanted: Vec<String> = expect["agents"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
            .unwrap_or_default();
        let agents_ok = if expect["agents_match"].as_str() == Some("ordered") {
            routed == wanted
        } else {
            routed.iter().collect::<BTreeSet<_>>() == wanted.iter().collect::<BTreeSet<_>>()
        };
        let outcome = expect["outcome"].as_str().unwrap_or("ok");
        let status = response.status.as_str();
        let missing: Vec<&str> = expect["answer"]["contains"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .filter(|s| !response.answer.contains(s))
            .collect();
        // An agent's own error still means the router sent the question where the case expects.
        let governed = if status == "error" { "ok" } else { status };
        let line = || {
            format!(
                "{id} as {who}: {question:?}\n    expected {wanted:?} {outcome}, got {routed:?} {status}{}\n    answer: {}",
                if missing.is_empty() { String::new() } else { format!(", answer lacks {missing:?}") },
                response.answer.chars().take(160).collect::<String>().replace('\n', " ⏎ ")
            )
        };
        if !agents_ok || governed != outcome {
            misrouted.push(line());
        }
        if !agents_ok || status != outcome || !missing.is_empty() {
            failures.push(line());
        }
    }
    let n = cases.len() as f64;
    let routing = 1.0 - misrouted.len() as f64 / n;
    let end_to_end = 1.0 - failures.len() as f64 / n;
    println!(
        "demo eval set, {} cases: routing and governance outcome {:.1}%, end to end {:.1}%",
        cases.len(),
        routing * 100.0,
        end_to_end * 100.0
    );
    for f in &failures {
        println!("  FAIL {f}");
    }
    assert!(routing >= ROUTING_TARGET, "routing {routing:.3}; misrouted:\n{}", misrouted.join("\n"));
    assert!(
        end_to_end >= END_TO_END_TARGET,
        "end to end {end_to_end:.3}; failures:\n{}",
        failures.join("\n")
    );
}
