//! The LLM-facing parts against the project's scripted OpenAI-compatible server: the judge (the
//! rubric, question and answer reach the model, its verdict is read, its tokens are counted apart
//! from the run's, and a judge that fails fails the check rather than the run), and the run's own
//! LLM calls, tokens and cost.

use std::sync::Arc;
use switchboard_eval::{Evaluator, RunOptions, case};
use switchboard_runtime::config::ConfigSource;
use switchboard_runtime::{Runtime, demo};
use switchboard_testkit::llm::{Script, ScriptedLlm};

const SCRIPT: &str = r#"
model = "judge"

[[faults]]
status = 503
every = 3

[[rules]]
when = { last_user = "(?s)Rubric:\\s*PASS-ME" }
reply = { json = { pass = true, reason = "names the West region" } }

[default]
text = "{\"pass\": false, \"reason\": \"the rubric is not met\"}"
"#;

const CASES: &str = r#"
{"id": "pass", "question": "total revenue by region", "as": "carol@example.com", "expect": {"agents": ["sales"], "answer": {"judge": "PASS-ME: the answer names the West region"}}}
{"id": "fail", "question": "total revenue by region", "as": "carol@example.com", "expect": {"agents": ["sales"], "answer": {"judge": "the answer names a region on Mars"}}}
{"id": "judge-down", "question": "total revenue by region", "as": "carol@example.com", "expect": {"agents": ["sales"], "answer": {"judge": "PASS-ME: any"}}}
"#;

/// The demo as files in `dir`, with `extra` appended to its switchboard.toml.
async fn demo_with(dir: &std::path::Path, extra: &str) -> Arc<Evaluator> {
    demo::write_to(dir).expect("the demo as files");
    let config = dir.join("switchboard.toml");
    let mut text = std::fs::read_to_string(&config).expect("config");
    text.push_str(extra);
    std::fs::write(&config, text).expect("config");
    let runtime = Runtime::load(&ConfigSource::File(config)).await.expect("the config loads");
    Arc::new(Evaluator::new(runtime).expect("evaluator"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_run_s_llm_calls_tokens_and_cost_are_counted() {
    let llm = ScriptedLlm::start(
        Script::from_toml("model = \"m\"\n[default]\ntext = \"Hotels are capped at $250 a night.\"\n")
            .expect("script"),
    )
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let extra = format!(
        "\n[llm]\nbase_url = \"{}\"\nmodel = \"m\"\n\n[eval.prices.m]\ninput_per_million = 2.0\noutput_per_million = 8.0\n",
        llm.base_url()
    );
    let evaluator = demo_with(dir.path(), &extra).await;
    let cases = case::parse(
        r#"{"id": "hotel", "question": "What is the hotel limit in the travel policy?", "as": "alice@example.com", "expect": {"agents": ["policies"], "answer": {"contains": ["$250"]}}}"#,
    )
    .expect("valid");
    let result = evaluator.run_case(&cases[0]).await;
    assert!(result.passed(), "{}", result.failure_summary());
    let (prompt, completion) = llm.reported_tokens();
    assert_eq!(result.llm.calls, llm.calls());
    assert!(result.llm.calls >= 1);
    assert_eq!((result.llm.input_tokens, result.llm.output_tokens), (prompt, completion));
    let cost = (prompt as f64 * 2.0 + completion as f64 * 8.0) / 1e6;
    assert!((result.llm.cost.expect("priced") - cost).abs() < 1e-12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_judge_grades_answers_against_their_rubric() {
    let llm = ScriptedLlm::start(Script::from_toml(SCRIPT).expect("script")).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let extra = format!("\n[eval.judge]\nmodel = \"judge\"\nbase_url = \"{}\"\n", llm.base_url());
    let evaluator = demo_with(dir.path(), &extra).await;

    let cases = case::parse(CASES).expect("valid");
    // One at a time, so the scripted fault (every third call) hits the third case.
    let options = RunOptions { concurrency: 1, ..RunOptions::default() };
    let results = evaluator.run_dataset(cases, &options, |_, _| {}).await.expect("run");
    let verdict = |i: usize| results[i].checks.judge.clone().expect("judged");

    assert!(verdict(0).pass, "{:?}", verdict(0));
    assert_eq!(verdict(0).reason, "names the West region");
    assert!(verdict(0).tokens > 0, "the judge's tokens are counted");
    assert_eq!(results[0].llm.calls, 0, "judge calls are not the run's");
    assert!(!verdict(1).pass && verdict(1).reason == "the rubric is not met", "{:?}", verdict(1));
    assert!(!results[1].passed());
    assert!(!verdict(2).pass && verdict(2).reason.starts_with("the judge failed"), "{:?}", verdict(2));

    let requests = llm.requests();
    assert_eq!(requests.len(), 3);
    assert_eq!(requests[0]["model"], "judge");
    let user = requests[0]["messages"][1]["content"].as_str().unwrap_or_default();
    assert!(user.contains("Question:\ntotal revenue by region") && user.contains("West"), "{user}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_llm_router_is_scored_by_the_same_harness() {
    let llm = ScriptedLlm::start(
        Script::from_toml(
            r#"model = "m"
[[rules]]
when = { last_user = "(?i)revenue", tools = true }
reply = { tool_call = { tool = "^sales$", arguments = { question = "{{last_user}}" } } }
[[rules]]
when = { last_user = "(?i)hotel", tools = true }
reply = { tool_call = { tool = "^policies$", arguments = { question = "{{last_user}}" } } }
[default]
text = "Could you say which area you mean?"
"#,
        )
        .expect("script"),
    )
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    demo::write_to(dir.path()).expect("the demo as files");
    let config = dir.path().join("switchboard.toml");
    let text =
        std::fs::read_to_string(&config).expect("config").replace("kind = \"lexical\"", "kind = \"llm\"");
    let text = format!("{text}\n[llm]\nbase_url = \"{}\"\nmodel = \"m\"\n", llm.base_url());
    std::fs::write(&config, text).expect("config");
    let runtime = Runtime::load(&ConfigSource::File(config)).await.expect("the config loads");
    let evaluator = Evaluator::new(runtime).expect("evaluator");
    assert!(evaluator.router_name().starts_with("llm"), "{}", evaluator.router_name());

    let cases = case::parse(concat!(
        r#"{"id": "revenue", "question": "total revenue by region", "as": "carol@example.com", "expect": {"agents": ["sales"]}}"#,
        "\n",
        r#"{"id": "hotel", "question": "What is the hotel limit?", "as": "alice@example.com", "expect": {"agents": ["policies"]}}"#,
        "\n",
        r#"{"id": "mars", "question": "what's the weather on mars", "as": "alice@example.com", "expect": {"outcome": "clarify"}}"#,
        "\n",
        r#"{"id": "wrong", "question": "total revenue by rep", "as": "carol@example.com", "expect": {"agents": ["policies"]}}"#,
    ))
    .expect("valid");
    let mut passed = Vec::new();
    for case in &cases {
        passed.push((case.id.clone(), evaluator.run_case(case).await.passed()));
    }
    // The model's choices are what is scored: three right, and the one the script routes to
    // sales while the case expects policies, wrong.
    let expected: Vec<(String, bool)> =
        [("revenue", true), ("hotel", true), ("mars", true), ("wrong", false)]
            .map(|(i, p)| (i.into(), p))
            .into();
    assert_eq!(passed, expected);
    assert!(llm.calls() >= 4, "every case was routed by the model");
}
