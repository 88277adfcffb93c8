//! The library API in-process against the built-in demo: one case, a dataset, determinism, and
//! resuming from a results file.

use std::sync::Arc;
use switchboard_eval::{Evaluator, Report, RunOptions, case, read_results};
use switchboard_runtime::{Runtime, demo};

async fn evaluator(home: &std::path::Path) -> Arc<Evaluator> {
    demo::prepare(home).expect("demo data");
    let runtime = Runtime::load(&demo::source(home)).await.expect("the demo loads");
    Arc::new(Evaluator::new(runtime).expect("evaluator"))
}

fn smoke() -> Vec<case::Case> {
    case::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/demo-smoke.jsonl"))
        .expect("the smoke dataset is valid")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_case_gives_a_structured_result() {
    let home = tempfile::tempdir().expect("tempdir");
    let evaluator = evaluator(home.path()).await;
    let cases = case::parse(
        r#"{"id": "bob-audit", "question": "show recent denied requests in the audit log", "as": "bob@example.com", "expect": {"agents": ["audit"], "outcome": "denied"}}"#,
    )
    .expect("valid");
    let result = evaluator.run_case(&cases[0]).await;
    assert_eq!(result.routed, ["audit"]);
    assert_eq!((result.status.as_str(), result.outcome.as_str()), ("denied", "denied"));
    assert!(result.checks.routing && result.checks.outcome && result.passed());
    assert!(result.steps[0].error.as_deref().is_some_and(|e| e.contains("may not use agent `audit`")));
    assert!(!result.request_id.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dataset_run_is_deterministic_and_in_dataset_order() {
    let home = tempfile::tempdir().expect("tempdir");
    let evaluator = evaluator(home.path()).await;
    evaluator.validate(&smoke()).expect("every identity and agent exists");
    let options = RunOptions { concurrency: 8, ..RunOptions::default() };
    let first = evaluator.run_dataset(smoke(), &options, |_, _| {}).await.expect("run");
    let second = evaluator.run_dataset(smoke(), &options, |_, _| {}).await.expect("run");
    // A fan-out's branches run concurrently, so their tool calls may start in either order:
    // the tools are compared as a set, everything else exactly.
    let sorted = |tools: &[String]| {
        let mut tools = tools.to_vec();
        tools.sort();
        tools
    };
    let view = |rs: &[switchboard_eval::CaseResult]| {
        rs.iter()
            .map(|r| {
                (
                    r.id.clone(),
                    r.routed.clone(),
                    r.outcome.clone(),
                    sorted(&r.tools),
                    r.cited.clone(),
                    r.passed(),
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(view(&first), view(&second));
    assert_eq!(first.iter().map(|r| r.line).collect::<Vec<_>>(), (1..=10).collect::<Vec<_>>());
    let report =
        Report::new("smoke".into(), "built-in demo".into(), evaluator.router_name(), first, 5, 0.0, 8);
    assert_eq!(report.overall().cases, 10);
    assert_eq!(report.overall().trajectory.total, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_run_skips_the_cases_already_done() {
    let home = tempfile::tempdir().expect("tempdir");
    let evaluator = evaluator(home.path()).await;
    let results = home.path().join("out/results.jsonl");
    let options = RunOptions { concurrency: 4, results_file: Some(results.clone()), resume: false };
    let full = evaluator.run_dataset(smoke(), &options, |_, _| {}).await.expect("run");
    assert_eq!(read_results(&results).expect("results").len(), 10);

    // Keep four results and half of a fifth, as an interruption mid-write would.
    let text = std::fs::read_to_string(&results).expect("results");
    let lines: Vec<&str> = text.lines().collect();
    let cut = format!("{}\n{}", lines[..4].join("\n"), &lines[4][..lines[4].len() / 2]);
    std::fs::write(&results, cut).expect("truncate");

    let mut ran = Vec::new();
    let resume = RunOptions { resume: true, ..options };
    let resumed =
        evaluator.run_dataset(smoke(), &resume, |r, _| ran.push(r.id.clone())).await.expect("resume");
    assert_eq!(ran.len(), 6, "only the six missing cases run again: {ran:?}");
    assert_eq!(resumed.len(), 10);
    assert_eq!(
        resumed.iter().map(|r| (&r.id, &r.routed)).collect::<Vec<_>>(),
        full.iter().map(|r| (&r.id, &r.routed)).collect::<Vec<_>>()
    );
    assert_eq!(read_results(&results).expect("results").len(), 10, "the cut line is gone");

    // A case whose question changed since is run again; the others are kept.
    let mut edited = smoke();
    edited[2].question = "What is the meal per diem when traveling?".into();
    let mut ran = Vec::new();
    evaluator.run_dataset(edited, &resume, |r, _| ran.push(r.id.clone())).await.expect("resume");
    assert_eq!(ran, ["policies-hotel"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_call_is_the_rate_limited_outcome() {
    let dir = tempfile::tempdir().expect("tempdir");
    demo::write_to(dir.path()).expect("the demo as files");
    let config = dir.path().join("switchboard.toml");
    let mut text = std::fs::read_to_string(&config).expect("config");
    text.push_str("\n[limits]\nrequests_per_minute = 1\n");
    std::fs::write(&config, text).expect("config");
    let runtime =
        Runtime::load(&switchboard_runtime::config::ConfigSource::File(config)).await.expect("loads");
    let evaluator = Arc::new(Evaluator::new(runtime).expect("evaluator"));
    let cases = case::parse(
        r#"{"id": "first", "question": "What is the hotel limit in the travel policy?", "as": "alice@example.com", "expect": {"agents": ["policies"]}}
{"id": "again", "question": "What is the meal per diem when traveling?", "as": "alice@example.com", "expect": {"agents": ["policies"], "outcome": "rate_limited"}}
{"id": "expected-ok", "question": "How do I file an expense report?", "as": "alice@example.com", "expect": {"agents": ["policies"]}}"#,
    )
    .expect("valid");
    // One at a time: the limit decides by arrival order.
    let options = RunOptions { concurrency: 1, ..RunOptions::default() };
    let results = evaluator.run_dataset(cases, &options, |_, _| {}).await.expect("run");
    let outcomes: Vec<(&str, bool)> =
        results.iter().map(|r| (r.outcome.as_str(), r.checks.outcome)).collect();
    assert_eq!(outcomes, [("ok", true), ("rate_limited", true), ("rate_limited", false)]);
}
