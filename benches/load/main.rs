//! Load harness for `switchboard serve`: chat completions at fixed concurrency, plain and
//! streamed, reporting throughput, latency percentiles, time to first token and the server's
//! peak RSS. Exits non-zero on any error (a transport failure, a non-200 answer, a stream without
//! text) or when a run exceeds its time bound.
//!
//! ```text
//! cargo bench -p switchboard --bench load                  # the matrix below
//! cargo bench -p switchboard --bench load -- --url http://127.0.0.1:8080 --requests 5000
//! ```
//!
//! Without `--url`: the comparison scenario of `benches/compare` (a request routed by the model
//! to one of two agents, the routing call filling that agent's tool arguments too; the agent calls
//! its tool and answers: one model call). The scripted LLM (`benches/compare/scripted-llm.toml`) serves in this process;
//! `switchboard serve` runs as a child process, started afresh for each level so its peak RSS is
//! the level's own, and every request carries a bearer JWT from `switchboard token`. Levels:
//! concurrency 1, 8, 32 and 256 (`--levels`), plain then streamed (`--modes plain,stream`),
//! `--requests` each (2000).
//!
//! With `--url` (`SWITCHBOARD_LOAD_URL`): one run of `--requests` (1000) at `--concurrency` (50)
//! against that server, with the bearer token in `SWITCHBOARD_LOAD_TOKEN` (e.g. from
//! `switchboard token --as carol@example.com`), asking the demo's questions or each `--question`
//! in turn; `--stream` streams. `--llm BASE` names the scripted LLM server the target calls: its
//! counters are reset before the run and reported after. `--json` prints the run as one JSON line
//! (what `scripts/compare-peers` reads). `--max-secs` (120) bounds each run.

mod client;
mod measure;

use client::{Ask, Run};
use measure::{SCENARIO_QUESTIONS, SCENARIO_USER};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// The questions asked against `--url` by default: the demo's, one per agent.
const DEMO_QUESTIONS: &[&str] = &[
    "total revenue by region",
    "revenue by rep",
    "deal count by stage",
    "show the margin on the top 5 deals",
    "what is the hotel limit for travel",
    "who must approve a 20% discount on a 100000 deal",
    "who was denied access in the audit log",
];

/// The port the scenario's checked-in configuration names for the scripted server.
const SCENARIO_PORT: &str = "127.0.0.1:18931";

struct Options {
    url: Option<String>,
    llm: Option<String>,
    requests: Option<usize>,
    concurrency: usize,
    levels: Vec<usize>,
    modes: Vec<bool>,
    stream: bool,
    questions: Vec<String>,
    json: bool,
    max: Duration,
}

fn options() -> Result<Options, String> {
    let mut o = Options {
        url: std::env::var("SWITCHBOARD_LOAD_URL").ok().filter(|u| !u.is_empty()),
        llm: None,
        requests: None,
        concurrency: 50,
        levels: vec![1, 8, 32, 256],
        modes: vec![false, true],
        stream: false,
        questions: Vec::new(),
        json: false,
        max: Duration::from_secs(120),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        let number =
            |name: &str, v: &str| v.parse::<usize>().map_err(|_| format!("{name}: not a number: {v}"));
        match arg.as_str() {
            "--url" => o.url = Some(value("--url")?),
            "--llm" => o.llm = Some(value("--llm")?),
            "--requests" => o.requests = Some(number("--requests", &value("--requests")?)?.max(1)),
            "--concurrency" => o.concurrency = number("--concurrency", &value("--concurrency")?)?.max(1),
            "--levels" => {
                let v = value("--levels")?;
                o.levels = v
                    .split(',')
                    .map(|l| number("--levels", l.trim()).map(|n| n.max(1)))
                    .collect::<Result<_, _>>()?;
            }
            "--modes" => {
                let v = value("--modes")?;
                o.modes = v
                    .split(',')
                    .map(|m| match m.trim() {
                        "plain" => Ok(false),
                        "stream" => Ok(true),
                        other => Err(format!("--modes: `{other}` is neither `plain` nor `stream`")),
                    })
                    .collect::<Result<_, _>>()?;
            }
            "--stream" => o.stream = true,
            "--question" => o.questions.push(value("--question")?),
            "--json" => o.json = true,
            "--max-secs" => o.max = Duration::from_secs(number("--max-secs", &value("--max-secs")?)? as u64),
            // `cargo bench` passes --bench; other libtest flags mean nothing here.
            _ if arg.starts_with("--") => {}
            other => return Err(format!("unexpected argument `{other}`")),
        }
    }
    Ok(o)
}

/// The summary of one run: its level figures, its errors, and time to first token when streamed.
fn summary(concurrency: usize, run: &Run, llm: &Value) -> (Value, Vec<String>) {
    let ok: Vec<_> = run.samples.iter().filter_map(|s| s.as_ref().ok().copied()).collect();
    let errors: Vec<String> = run.samples.iter().filter_map(|s| s.as_ref().err().cloned()).collect();
    let mut level =
        measure::level_json(concurrency, ok.iter().map(|t| t.latency).collect(), run.wall, run.usage, llm);
    let mut ttft: Vec<Duration> = ok.iter().filter_map(|t| t.first_token).collect();
    ttft.sort();
    if let Some(map) = level.as_object_mut() {
        map.insert("errors".into(), json!(errors.len()));
        if !ttft.is_empty() {
            map.insert("ttft_p50_ms".into(), json!(measure::ms(measure::percentile(&ttft, 50.0))));
            map.insert("ttft_p95_ms".into(), json!(measure::ms(measure::percentile(&ttft, 95.0))));
        }
    }
    (level, errors)
}

fn num(v: &Value, key: &str) -> f64 {
    v.get(key).and_then(Value::as_f64).unwrap_or(f64::NAN)
}

/// One run against a server that is already up.
async fn against_url(o: &Options, url: &str) -> Result<bool, String> {
    let token: Arc<str> = std::env::var("SWITCHBOARD_LOAD_TOKEN")
        .map_err(|_| "set SWITCHBOARD_LOAD_TOKEN to a bearer token the server accepts".to_string())?
        .into();
    let questions: Vec<String> = if o.questions.is_empty() {
        DEMO_QUESTIONS.iter().map(|q| q.to_string()).collect()
    } else {
        o.questions.clone()
    };
    let asks: Vec<Ask> =
        questions.iter().map(|q| Ask { token: token.clone(), question: q.as_str().into() }).collect();
    let requests = o.requests.unwrap_or(1000);
    let endpoint = format!("{}/v1/chat/completions", url.trim_end_matches('/'));
    let client = client::client(o.concurrency)?;
    if !o.json {
        println!(
            "load: {requests} chat completions{} at concurrency {} against {endpoint}",
            if o.stream { " (streamed)" } else { "" },
            o.concurrency
        );
    }
    if let Some(llm) = &o.llm {
        measure::llm_reset(&client, llm).await?;
    }
    let run = client::drive(&client, &endpoint, &asks, requests, o.concurrency, o.stream, o.max).await?;
    let llm = match &o.llm {
        Some(llm) => measure::llm_stats(&client, llm).await?,
        None => Value::Null,
    };
    let (level, errors) = summary(o.concurrency, &run, &llm);
    if o.json {
        println!("{level}");
    } else {
        println!("requests     {}", run.samples.len());
        println!("errors       {}", errors.len());
        println!("elapsed      {:.2} s", run.wall.as_secs_f64());
        println!("throughput   {:.0} req/s", num(&level, "runs_per_s"));
        for p in ["p50", "p95", "p99"] {
            println!("{p}          {:.2} ms", num(&level, &format!("{p}_ms")));
        }
        if o.stream {
            println!("first token  {:.2} ms (p50)", num(&level, "ttft_p50_ms"));
        }
    }
    for e in errors.iter().take(5) {
        eprintln!("error: {e}");
    }
    Ok(errors.is_empty() && run.samples.len() == requests)
}

/// Copies the scenario's configuration into `dir`, pointing it at the scripted server on `port`.
fn scenario_config(dir: &Path, port: u16) -> Result<PathBuf, String> {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../benches/compare");
    let io = |what: &Path, e: std::io::Error| format!("{}: {e}", what.display());
    let port_of = |text: String| text.replace(SCENARIO_PORT, &format!("127.0.0.1:{port}"));
    std::fs::create_dir_all(dir.join("agents")).map_err(|e| io(dir, e))?;
    let agents = source.join("agents");
    for entry in std::fs::read_dir(&agents).map_err(|e| io(&agents, e))? {
        let path = entry.map_err(|e| io(&agents, e))?.path();
        let text = std::fs::read_to_string(&path).map_err(|e| io(&path, e))?;
        let name = path.file_name().ok_or_else(|| format!("{} has no file name", path.display()))?;
        std::fs::write(dir.join("agents").join(name), port_of(text)).map_err(|e| io(dir, e))?;
    }
    let main = source.join("switchboard.toml");
    let config = dir.join("switchboard.toml");
    let text = std::fs::read_to_string(&main).map_err(|e| io(&main, e))?;
    std::fs::write(&config, port_of(text)).map_err(|e| io(&config, e))?;
    Ok(config)
}

/// Every level of the matrix against `switchboard serve` as a child process.
async fn matrix(o: &Options) -> Result<bool, String> {
    use switchboard_testkit::llm::{Script, serve};
    use switchboard_testkit::run_cli;
    let script_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../benches/compare/scripted-llm.toml");
    let script = Script::load(&script_path)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(|e| e.to_string())?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    tokio::spawn(serve(listener, script));
    let llm = format!("http://127.0.0.1:{port}/v1");
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let config = scenario_config(dir.path(), port)?;
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_switchboard"));
    let config_arg = config.to_string_lossy();
    let token: Arc<str> =
        run_cli(&bin, &["token", "--as", SCENARIO_USER, "--ttl", "2h", "--config", &config_arg], &[]).into();
    let asks: Vec<Ask> =
        SCENARIO_QUESTIONS.iter().map(|q| Ask { token: token.clone(), question: (*q).into() }).collect();
    let requests = o.requests.unwrap_or(2000);
    println!(
        "load: `switchboard serve` (child process, bearer JWT per request) against the scripted LLM in \
         process; {requests} chat completions per level, 1 LLM call each"
    );
    println!(
        "| mode | concurrency | requests | errors | throughput | p50 | p95 | p99 | first token p50 | server peak RSS |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let mut clean = true;
    for &stream in &o.modes {
        for &concurrency in &o.levels {
            let mut server = switchboard_testkit::Serve::start(&bin, Some(&config), &[]).await;
            let endpoint = format!("{}/v1/chat/completions", server.url());
            let client = client::client(concurrency)?;
            // Warm-up: connections open, caches filled, before anything is counted.
            let warm =
                client::drive(&client, &endpoint, &asks, concurrency.max(16), concurrency, stream, o.max)
                    .await?;
            if let Some(Err(e)) = warm.samples.iter().find(|s| s.is_err()) {
                return Err(format!("warm-up failed: {e}\n{}", server.log()));
            }
            measure::llm_reset(&client, &llm).await?;
            let run = client::drive(&client, &endpoint, &asks, requests, concurrency, stream, o.max).await?;
            let stats = measure::llm_stats(&client, &llm).await?;
            let rss = measure::peak_rss_mb(&server.id().to_string());
            server.stop();
            let (level, errors) = summary(concurrency, &run, &stats);
            let first = if stream { format!("{:.2} ms", num(&level, "ttft_p50_ms")) } else { "–".into() };
            println!(
                "| {} | {concurrency} | {} | {} | {:.0} req/s | {:.2} ms | {:.2} ms | {:.2} ms | {first} | {} |",
                if stream { "streamed" } else { "plain" },
                run.samples.len(),
                errors.len(),
                num(&level, "runs_per_s"),
                num(&level, "p50_ms"),
                num(&level, "p95_ms"),
                num(&level, "p99_ms"),
                rss.map_or("?".into(), |r| format!("{r:.0} MB")),
            );
            // One model call a run: the routing call, which also proposes the HTTP tool's arguments.
            let calls = stats.get("calls").and_then(Value::as_u64).unwrap_or(0);
            if calls != requests as u64 {
                eprintln!("load: expected {requests} LLM calls, the scripted server saw {calls}");
                clean = false;
            }
            for e in errors.iter().take(5) {
                eprintln!("error: {e}");
            }
            clean &= errors.is_empty();
        }
    }
    Ok(clean)
}

fn main() -> ExitCode {
    let o = match options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("load: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("load: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async {
        match &o.url {
            Some(url) => against_url(&o, url).await,
            None => matrix(&o).await,
        }
    });
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("load: FAILED (errors above)");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("load: {e}");
            ExitCode::FAILURE
        }
    }
}
