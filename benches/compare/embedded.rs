//! Switchboard embedded, for `scripts/compare-peers`: the comparison scenario run in process
//! through the library (`Runtime::load`, `supervisor.run`), as the Python peers run theirs,
//! against the scripted LLM server named in the configuration. Prints one JSON line in the shape
//! the peer scripts print.
//!
//! ```text
//! cargo bench -p switchboard --bench compare_embedded -- --config DIR/switchboard.toml \
//!     --llm http://127.0.0.1:PORT/v1 [--runs 200] [--concurrency 1,32] [--routing-only]
//! ```
//!
//! `--routing-only`: one run, reporting the prompt tokens of its first model call (the routing
//! call), for configurations with more agents.
//!
//! The configuration's agents may be function tools (`[tool.function]`, as in
//! `benches/compare/agents-functions`) naming `run_sql` or `search_docs`: this program registers
//! both (`functions.rs`), Rust functions in process as the peers' tools are Python functions in
//! theirs.

#[path = "functions.rs"]
mod functions;
#[path = "../load/measure.rs"]
mod measure;

/// The allocator the `switchboard` binary ships with, as a program embedding the library would
/// choose it (README, Performance, "Allocator and verified-token cache").
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use measure::{SCENARIO_QUESTIONS, SCENARIO_USER};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchboard::config::ConfigSource;
use switchboard::{RunRequest, RunStatus, Runtime};

struct Options {
    config: PathBuf,
    llm: String,
    runs: usize,
    levels: Vec<usize>,
    routing_only: bool,
}

fn options() -> Result<Options, String> {
    let (mut config, mut llm) = (None, None);
    let mut o = Options {
        config: PathBuf::new(),
        llm: String::new(),
        runs: 200,
        levels: vec![1, 32],
        routing_only: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        let number =
            |name: &str, v: &str| v.parse::<usize>().map_err(|_| format!("{name}: not a number: {v}"));
        match arg.as_str() {
            "--config" => config = Some(PathBuf::from(value("--config")?)),
            "--llm" => llm = Some(value("--llm")?),
            "--runs" => o.runs = number("--runs", &value("--runs")?)?.max(1),
            "--concurrency" => {
                let v = value("--concurrency")?;
                o.levels = v
                    .split(',')
                    .map(|l| number("--concurrency", l.trim()).map(|n| n.max(1)))
                    .collect::<Result<_, _>>()?;
            }
            "--routing-only" => o.routing_only = true,
            _ if arg.starts_with("--") => {}
            other => return Err(format!("unexpected argument `{other}`")),
        }
    }
    o.config = config.ok_or("--config is required")?;
    o.llm = llm.ok_or("--llm is required (the scripted server's API root)")?;
    Ok(o)
}

/// One run of `question`; an error unless it answered.
async fn ask(rt: &Runtime, caller: &switchboard::Caller, question: &str) -> Result<Duration, String> {
    let started = Instant::now();
    let ctx = rt.context(caller.clone());
    let response =
        rt.supervisor.run(&ctx, RunRequest { question: question.into(), ..Default::default() }).await;
    if response.status != RunStatus::Ok || response.answer.is_empty() {
        return Err(format!("the run ended {:?}: {}", response.status, response.answer));
    }
    Ok(started.elapsed())
}

async fn run(o: Options) -> Result<Value, String> {
    let functions = functions::scenario_functions().map_err(|e| e.to_string())?;
    let rt = Arc::new(
        Runtime::load_with_functions(&ConfigSource::File(o.config.clone()), functions)
            .await
            .map_err(|e| e.to_string())?,
    );
    let caller = rt.dev_caller(SCENARIO_USER).await.map_err(|e| e.to_string())?;
    let http = reqwest::Client::new();
    if o.routing_only {
        measure::llm_reset(&http, &o.llm).await?;
        ask(&rt, &caller, SCENARIO_QUESTIONS[0]).await?;
        let stats = measure::llm_stats(&http, &o.llm).await?;
        let first = stats.pointer("/prompts/0").cloned().unwrap_or(Value::Null);
        return Ok(json!({"runtime": "switchboard-embedded", "levels": [], "routing_prompt_tokens": first,
            "peak_rss_mb": measure::peak_rss_mb("self")}));
    }
    for i in 0..4 {
        ask(&rt, &caller, SCENARIO_QUESTIONS[i % SCENARIO_QUESTIONS.len()]).await?;
    }
    let mut levels = Vec::new();
    for &concurrency in &o.levels {
        measure::llm_reset(&http, &o.llm).await?;
        let (rt, caller) = (rt.clone(), caller.clone());
        let job = move |i: usize| {
            let (rt, caller) = (rt.clone(), caller.clone());
            async move { ask(&rt, &caller, SCENARIO_QUESTIONS[i % SCENARIO_QUESTIONS.len()]).await }
        };
        let usage = measure::ThreadsUsage::of("");
        let (outcomes, wall) = measure::pool(o.runs, concurrency, job).await?;
        let usage = measure::ThreadsUsage::of("").since(usage);
        let latencies = outcomes.into_iter().collect::<Result<Vec<_>, _>>()?;
        let stats = measure::llm_stats(&http, &o.llm).await?;
        levels.push(measure::level_json(concurrency, latencies, wall, usage, &stats));
    }
    rt.shutdown().await;
    Ok(json!({"runtime": "switchboard-embedded", "levels": levels, "routing_prompt_tokens": null,
        "peak_rss_mb": measure::peak_rss_mb("self")}))
}

fn main() -> ExitCode {
    let o = match options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("compare_embedded: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("compare_embedded: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(o)) {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("compare_embedded: {e}");
            ExitCode::FAILURE
        }
    }
}
