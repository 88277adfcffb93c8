//! A whole supervisor run in process, per route shape, with the scripted LLM answering in the same
//! process and no socket between them: the model's routes are called through a
//! [`Transport`] that hands each request straight to its router.
//!
//! The demo configuration with an `[llm]` and the LLM router, as carol (a manager) unless noted:
//! - `one_agent`: routed to `deal_desk`, its arguments proposed in the routing call, which runs
//!   its SQL function (1 model call);
//! - `fan_out_two`: `deal_desk` (its arguments proposed in the routing call) and `policies` (a
//!   knowledge answer the model writes), then a synthesis of both (3 model calls);
//! - `clarify`: the model calls no agent, so the answer is a clarifying question (1 call);
//! - `denied`: erin (finance) routed to `deal_desk`, which policy refuses her (1 call);
//! - `compare_scenario`: `scripts/compare-peers`' configuration (`benches/compare`), as ana: routed
//!   to `sql_agent`, an HTTP tool whose arguments the routing call fills and whose endpoint (the
//!   scripted server's `/echo`) answers in process too (1 model call and the tool's request);
//! - `compare_function_tools`: the same with the agents as function tools
//!   (`benches/compare/agents-functions`), Rust functions in process, as `compare-peers`'
//!   "embedded, function tools" row runs them (1 model call).
//!
//! Each shape is checked once before it is timed, so a run that stopped taking that route fails
//! instead of being measured. Then each shape runs 2,000 more times in a row, timing what the
//! scripted model spends answering, and the time outside it (Switchboard's own work, with no
//! socket anywhere) is printed per run, with the CPU time the store's writer thread spent
//! committing those runs' rows on the other core. `cargo bench -p switchboard --bench supervisor`.

use async_trait::async_trait;
use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use switchboard::config::ConfigSource;
use switchboard::core::Result;
use switchboard::govern::{Transport, reqwest};
use switchboard::{Error, Functions, RunRequest, RunStatus, Runtime, demo};
use switchboard_runtime::config::RouterKind;
use switchboard_testkit::llm::{self, Script};
use tower::ServiceExt;

#[path = "compare/functions.rs"]
mod functions;
// For reading threads' CPU time; the rest of it serves the load harness.
#[allow(dead_code)]
#[path = "load/measure.rs"]
mod measure;

/// The SQLite store's writer thread, `switchboard-store-writer`, as `comm` names it (15 bytes).
const WRITER_THREADS: &str = "switchboard-sto";

/// The model's answers. The router's system prompt says it routes, which tells its calls apart
/// from the knowledge agent's and the synthesis's.
const SCRIPT: &str = r#"
[[rules]]
when = { system = "(?i)routes each request", last_user = "(?i)^what do you think" }
reply = { text = "Do you mean a discount approval, or a company policy?" }

[[rules]]
when = { system = "(?i)routes each request", last_user = "(?i)hotel" }
reply = { tool_calls = [
    { name = "deal_desk", arguments = { question = "who must approve a 25% discount on a 40000 deal", discount_pct = 25, amount = 40000 } },
    { name = "policies", arguments = { question = "what is the hotel limit for travel" } },
] }

[[rules]]
when = { system = "(?i)routes each request" }
reply = { tool_call = { tool = "^deal_desk$", arguments = { question = "{{last_user}}", discount_pct = 25, amount = 40000 } } }

[default]
text = "Hotels are capped at $250 per night [1]."
"#;

/// The scripted model's routes, called in process, with the time spent in them.
struct InProcess {
    routes: axum::Router,
    busy_ns: Arc<AtomicU64>,
}

#[async_trait]
impl Transport for InProcess {
    async fn send(&self, request: reqwest::Request) -> Result<reqwest::Response> {
        let started = Instant::now();
        let mut builder =
            axum::http::Request::builder().method(request.method().clone()).uri(request.url().as_str());
        for (name, value) in request.headers() {
            builder = builder.header(name, value);
        }
        let body = request.body().and_then(|b| b.as_bytes()).map(<[u8]>::to_vec).unwrap_or_default();
        let request = builder
            .body(axum::body::Body::from(body))
            .map_err(|e| Error::invalid(format!("not an HTTP request: {e}")))?;
        let Ok(response) = self.routes.clone().oneshot(request).await;
        self.busy_ns.fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
        let (parts, body) = response.into_parts();
        let body = reqwest::Body::wrap_stream(body.into_data_stream());
        Ok(reqwest::Response::from(axum::http::Response::from_parts(parts, body)))
    }
}

struct Shape {
    name: &'static str,
    user: &'static str,
    question: &'static str,
    status: RunStatus,
    agents: &'static [&'static str],
}

const SHAPES: &[Shape] = &[
    Shape {
        name: "one_agent",
        user: "carol@example.com",
        question: "who must approve a 25% discount on a 40000 deal",
        status: RunStatus::Ok,
        agents: &["deal_desk"],
    },
    Shape {
        name: "fan_out_two",
        user: "carol@example.com",
        question: "who approves a 25% discount on a 40000 deal, and what is the hotel limit for travel",
        status: RunStatus::Ok,
        agents: &["deal_desk", "policies"],
    },
    Shape {
        name: "clarify",
        user: "carol@example.com",
        question: "what do you think",
        status: RunStatus::Clarify,
        agents: &[],
    },
    Shape {
        name: "denied",
        user: "erin@example.com",
        question: "who must approve a 25% discount on a 40000 deal",
        status: RunStatus::Denied,
        agents: &[],
    },
];

/// The comparison scenario of `scripts/compare-peers` (a supervisor of two agents, each an HTTP
/// tool whose arguments the model fills), with its model and its tool endpoint (the scripted
/// server's `/echo`) answered in process: what that scenario costs Switchboard without sockets.
const COMPARE: Shape = Shape {
    name: "compare_scenario",
    user: "ana@example.com",
    question: "What was total revenue by region last quarter? Use SQL.",
    status: RunStatus::Ok,
    agents: &["sql_agent"],
};

/// [`COMPARE`] with the agents as function tools.
const COMPARE_FUNCTIONS: Shape = Shape { name: "compare_function_tools", ..COMPARE };

/// The comparison's configuration, its agents from `agents` (`agents` or `agents-functions`).
async fn compare_runtime(dir: &std::path::Path, agents: &str, busy_ns: Arc<AtomicU64>) -> Runtime {
    let from = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../benches/compare");
    std::fs::create_dir_all(dir.join("agents")).expect("a configuration folder");
    std::fs::copy(from.join("switchboard.toml"), dir.join("switchboard.toml")).expect("the configuration");
    for file in ["sql_agent.toml", "rag_agent.toml"] {
        std::fs::copy(from.join(agents).join(file), dir.join("agents").join(file)).expect("an agent");
    }
    let loaded = Runtime::validate(&ConfigSource::File(dir.join("switchboard.toml")))
        .expect("the comparison's configuration");
    let script =
        Script::from_toml(include_str!("compare/scripted-llm.toml")).expect("the comparison's script");
    let functions = functions::scenario_functions().expect("the scenario's functions");
    let transport = Arc::new(InProcess { routes: llm::router(script), busy_ns });
    Runtime::build_in_process(loaded, transport, &functions).await.expect("the comparison builds")
}

async fn runtime(dir: &std::path::Path, busy_ns: Arc<AtomicU64>) -> Runtime {
    demo::prepare(dir).expect("the demo's data");
    let mut loaded = Runtime::validate(&demo::source(dir)).expect("the demo configuration");
    // The host is never resolved: the transport answers before any connection is made.
    let llm = json!({"base_url": "http://scripted-llm.invalid/v1", "model": "scripted"});
    loaded.config.llm = Some(serde_json::from_value(llm).expect("an [llm] table"));
    loaded.config.router.kind = RouterKind::Llm;
    // The tickets MCP server would listen on loopback; no shape here reaches it.
    loaded.config.demo.tickets_connection = None;
    let script = Script::from_toml(SCRIPT).expect("the bench's script");
    let transport = Arc::new(InProcess { routes: llm::router(script), busy_ns });
    Runtime::build_in_process(loaded, transport, &Functions::default()).await.expect("the demo builds")
}

fn supervisor(c: &mut Criterion) {
    let tokio = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a Tokio runtime");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let busy_ns = Arc::new(AtomicU64::new(0));
    let rt = tokio.block_on(runtime(dir.path(), busy_ns.clone()));
    let compare_dir = tempfile::tempdir().expect("a temporary directory");
    let compare = tokio.block_on(compare_runtime(compare_dir.path(), "agents", busy_ns.clone()));
    let functions_dir = tempfile::tempdir().expect("a temporary directory");
    let with_functions =
        tokio.block_on(compare_runtime(functions_dir.path(), "agents-functions", busy_ns.clone()));
    let mut group = c.benchmark_group("supervisor_run");
    let shapes = SHAPES
        .iter()
        .map(|shape| (shape, &rt))
        .chain([(&COMPARE, &compare), (&COMPARE_FUNCTIONS, &with_functions)]);
    for (shape, rt) in shapes {
        let caller = tokio.block_on(rt.dev_caller(shape.user)).expect("a demo identity");
        let run = || async {
            let ask = RunRequest { question: shape.question.into(), ..Default::default() };
            rt.supervisor.run(&rt.context(caller.clone()), ask).await
        };
        let first = tokio.block_on(run());
        assert_eq!(first.status, shape.status, "{}: {}", shape.name, first.answer);
        let mut agents = first.agents.clone();
        agents.sort();
        assert_eq!(agents, shape.agents, "{}: {}", shape.name, first.answer);
        group.bench_function(shape.name, |b| b.to_async(&tokio).iter(run));

        let runs = 2000u32;
        tokio.block_on(rt.store.flush());
        busy_ns.store(0, Ordering::Relaxed);
        let writer_before = measure::ThreadsUsage::of(WRITER_THREADS);
        let started = Instant::now();
        tokio.block_on(async {
            for _ in 0..runs {
                run().await;
            }
        });
        let wall = started.elapsed() / runs;
        // What the store's writer thread spent committing these runs' rows, on the other core.
        tokio.block_on(rt.store.flush());
        let writer = measure::ThreadsUsage::of(WRITER_THREADS).since(writer_before).cpu / runs;
        let model = Duration::from_nanos(busy_ns.load(Ordering::Relaxed)) / runs;
        println!(
            "supervisor_run/{}: {:.1} µs a run outside the model ({:.1} µs in all, {:.1} µs inside the scripted model; {runs} runs in a row); the store's writer thread: {:.1} µs of CPU a run",
            shape.name,
            wall.saturating_sub(model).as_secs_f64() * 1e6,
            wall.as_secs_f64() * 1e6,
            model.as_secs_f64() * 1e6,
            writer.as_secs_f64() * 1e6,
        );
    }
    group.finish();
    tokio.block_on(rt.shutdown());
    tokio.block_on(compare.shutdown());
    tokio.block_on(with_functions.shutdown());
}

criterion_group!(benches, supervisor);
criterion_main!(benches);
