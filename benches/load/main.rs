//! Load harness for the chat endpoint: sends a fixed number of chat completions at a fixed
//! concurrency and reports throughput, latency percentiles and errors. Exits non-zero on any
//! error (a transport failure or a non-200 answer) or if the run exceeds its time bound.
//!
//! ```text
//! cargo bench -p switchboard --bench load                       # the demo, served in process
//! cargo bench -p switchboard --bench load -- --url http://127.0.0.1:8080 --requests 5000
//! ```
//!
//! Options (or environment): `--url` (`SWITCHBOARD_LOAD_URL`; default: start the built-in demo on
//! 127.0.0.1:0 in a temporary data dir), `--requests` (1000), `--concurrency` (50),
//! `--max-secs` (120, the bound on the whole run). Against `--url`, every request carries the bearer
//! token in `SWITCHBOARD_LOAD_TOKEN` (e.g. from `switchboard token --as carol@example.com`).

use serde_json::json;
use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use switchboard_runtime::{Runtime, demo};
use switchboard_server::AppState;

/// The questions asked, round-robin: one per demo agent, each answerable by its asker.
const WORKLOAD: &[(&str, &str)] = &[
    ("carol@example.com", "total revenue by region"),
    ("alice@example.com", "revenue by rep"),
    ("bob@example.com", "deal count by stage"),
    ("dave@example.com", "show the margin on the top 5 deals"),
    ("erin@example.com", "what is the hotel limit for travel"),
    ("carol@example.com", "who must approve a 20% discount on a 100000 deal"),
    ("frank@example.com", "who was denied access in the audit log"),
];

struct Options {
    url: Option<String>,
    requests: usize,
    concurrency: usize,
    max: Duration,
}

fn options() -> Result<Options, String> {
    let mut o = Options {
        url: std::env::var("SWITCHBOARD_LOAD_URL").ok().filter(|u| !u.is_empty()),
        requests: 1000,
        concurrency: 50,
        max: Duration::from_secs(120),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        let number =
            |name: &str, v: String| v.parse::<usize>().map_err(|_| format!("{name}: not a number: {v}"));
        match arg.as_str() {
            "--url" => o.url = Some(value("--url")?),
            "--requests" => o.requests = number("--requests", value("--requests")?)?,
            "--concurrency" => o.concurrency = number("--concurrency", value("--concurrency")?)?.max(1),
            "--max-secs" => o.max = Duration::from_secs(number("--max-secs", value("--max-secs")?)? as u64),
            // `cargo bench` passes --bench; other libtest flags mean nothing here.
            _ if arg.starts_with("--") => {}
            other => return Err(format!("unexpected argument `{other}`")),
        }
    }
    Ok(o)
}

/// Bearer tokens by workload user.
type Tokens = Arc<HashMap<&'static str, String>>;

/// The demo served in process; returns its base URL, tokens for the workload's users from its
/// development identity provider, and the handle that stops it.
async fn start_demo(
    dir: &std::path::Path,
) -> Result<(String, Tokens, tokio::sync::oneshot::Sender<()>), String> {
    demo::prepare(dir).map_err(|e| e.to_string())?;
    let runtime = Arc::new(Runtime::load(&demo::source(dir)).await.map_err(|e| e.to_string())?);
    let dev = runtime.identity.dev().ok_or("the demo has no development identity provider")?;
    let mut tokens = HashMap::new();
    for (user, _) in WORKLOAD {
        let token = dev.token_for(user, None, Duration::from_secs(3600)).map_err(|e| e.to_string())?;
        tokens.insert(*user, token.expose().to_string());
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(|e| e.to_string())?;
    let base = format!("http://{}", listener.local_addr().map_err(|e| e.to_string())?);
    let state = AppState::for_runtime(runtime);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(switchboard_server::serve(listener, state, async {
        let _ = rx.await;
    }));
    Ok((base, Arc::new(tokens), tx))
}

/// One request's result: its latency, or what went wrong.
type Sample = Result<Duration, String>;

async fn worker(
    client: reqwest::Client,
    url: String,
    tokens: Tokens,
    next: Arc<AtomicUsize>,
    total: usize,
) -> Vec<Sample> {
    let mut samples = Vec::new();
    loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        if i >= total {
            return samples;
        }
        let (user, question) = WORKLOAD[i % WORKLOAD.len()];
        let body = json!({"model": "switchboard", "messages": [{"role": "user", "content": question}]});
        let started = Instant::now();
        let token = tokens.get(user).map(String::as_str).unwrap_or_default();
        let result = client.post(&url).bearer_auth(token).json(&body).send().await;
        let sample = match result {
            Ok(r) if r.status() == 200 => match r.bytes().await {
                Ok(_) => Ok(started.elapsed()),
                Err(e) => Err(format!("reading the body: {e}")),
            },
            Ok(r) => {
                let status = r.status();
                Err(format!("{status}: {}", r.text().await.unwrap_or_default()))
            }
            Err(e) => Err(format!("transport: {e}")),
        };
        samples.push(sample);
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

async fn run(o: Options) -> Result<bool, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let (base, tokens, stop) = match &o.url {
        Some(url) => {
            let token = std::env::var("SWITCHBOARD_LOAD_TOKEN")
                .map_err(|_| "set SWITCHBOARD_LOAD_TOKEN to a bearer token the server accepts".to_string())?;
            let tokens: HashMap<&'static str, String> =
                WORKLOAD.iter().map(|(u, _)| (*u, token.clone())).collect();
            (url.trim_end_matches('/').to_string(), Arc::new(tokens), None)
        }
        None => {
            let (base, tokens, stop) = start_demo(dir.path()).await?;
            (base, tokens, Some(stop))
        }
    };
    let url = format!("{base}/v1/chat/completions");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(o.concurrency)
        .build()
        .map_err(|e| e.to_string())?;
    println!(
        "load: {} chat completions at concurrency {} against {url}{}",
        o.requests,
        o.concurrency,
        if o.url.is_none() { " (demo, in process)" } else { "" }
    );

    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..o.concurrency)
        .map(|_| tokio::spawn(worker(client.clone(), url.clone(), tokens.clone(), next.clone(), o.requests)))
        .collect();
    let joined = tokio::time::timeout(o.max, futures_join(workers)).await;
    let elapsed = started.elapsed();
    if let Some(stop) = stop {
        let _ = stop.send(());
    }
    let samples = joined.map_err(|_| format!("the run exceeded its bound of {} s", o.max.as_secs()))??;

    let mut latencies: Vec<Duration> = samples.iter().filter_map(|s| s.as_ref().ok().copied()).collect();
    latencies.sort();
    let errors: Vec<&String> = samples.iter().filter_map(|s| s.as_ref().err()).collect();
    println!("requests     {}", samples.len());
    println!("errors       {}", errors.len());
    println!("elapsed      {:.2} s", elapsed.as_secs_f64());
    println!("throughput   {:.0} req/s", samples.len() as f64 / elapsed.as_secs_f64());
    for (name, p) in [("p50", 50.0), ("p95", 95.0), ("p99", 99.0)] {
        println!("{name}          {:.2} ms", ms(percentile(&latencies, p)));
    }
    println!("max          {:.2} ms", ms(latencies.last().copied().unwrap_or_default()));
    for e in errors.iter().take(5) {
        println!("error: {e}");
    }
    Ok(errors.is_empty() && samples.len() == o.requests)
}

/// Joins the workers; a panicked worker is an error, not a hang.
async fn futures_join(workers: Vec<tokio::task::JoinHandle<Vec<Sample>>>) -> Result<Vec<Sample>, String> {
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.map_err(|e| format!("a worker failed: {e}"))?);
    }
    Ok(all)
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
    match rt.block_on(run(o)) {
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
