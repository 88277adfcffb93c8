//! Driving Switchboard from another evaluation harness: cases built in code, run in-process
//! against the built-in demo, one at a time and as a dataset, with structured results and a
//! report.
//!
//! `cargo run -p eval-example [REPORT_DIR]` prints one JSON line per case and then the summary
//! table; with REPORT_DIR it also writes report.json, report.md and report.html there.

use std::process::ExitCode;
use std::sync::Arc;
use switchboard::eval::{Evaluator, Report, RunOptions, case, report};
use switchboard::{Runtime, demo};

/// The harness's own cases, in the dataset format (one JSON object per line).
const CASES: &str = r#"
{"id": "revenue", "question": "total revenue by region", "as": "carol@example.com", "expect": {"agents": ["sales"], "answer": {"contains": ["West", "East"]}}}
{"id": "approval", "question": "who must approve a 25% discount on a 40000 deal?", "as": "alice@example.com", "expect": {"agents": ["deal_desk"], "tools": {"calls": ["deal_desk"]}}}
{"id": "denied", "question": "show recent denied requests in the audit log", "as": "bob@example.com", "expect": {"agents": ["audit"], "outcome": "denied"}}
{"id": "hotel", "question": "What is the hotel limit in the travel policy?", "as": "erin@example.com", "expect": {"agents": ["policies"], "answer": {"cites": ["travel"], "cites_match": "any"}}}
"#;

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<ExitCode, Box<dyn std::error::Error>> {
    let data = demo::data_dir();
    demo::prepare(&data)?;
    let evaluator = Arc::new(Evaluator::new(Runtime::load(&demo::source(&data)).await?)?);
    let cases = case::parse(CASES).map_err(|errors| format!("bad cases: {errors:?}"))?;
    evaluator.validate(&cases).map_err(|errors| format!("cases do not fit the demo: {errors:?}"))?;

    // One case, as a harness scoring its own cases would.
    let one = evaluator.run_case(&cases[0]).await;
    println!("{}", serde_json::json!({"id": one.id, "routed": one.routed, "passed": one.passed()}));

    // The whole set, concurrently; results come back in the order given.
    let results = evaluator.run_dataset(cases, &RunOptions::default(), |_, _| {}).await?;
    for r in &results {
        println!(
            "{}",
            serde_json::json!({"id": r.id, "routed": r.routed, "outcome": r.outcome, "tools": r.tools, "cited": r.cited, "passed": r.passed()})
        );
    }
    evaluator.runtime().shutdown().await;
    let all_passed = results.iter().all(|r| r.passed());
    let report = Report::new(
        "eval-example".into(),
        "built-in demo".into(),
        evaluator.router_name(),
        results,
        5,
        0.0,
        4,
    );
    println!("\n{}", report::summary_table(&report));
    if let Some(dir) = std::env::args().nth(1) {
        let written = report.write(dir.as_ref())?;
        println!("reports: {}", written.html.display());
    }
    Ok(if all_passed { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
