//! Holding test: N streaming conversations held open at once against `switchboard serve` (a
//! child process, the demo with a scripted LLM that streams one token per `--token-delay-ms`),
//! reporting the server's memory (VmRSS and its peak VmHWM from `/proc/PID/status`) and open file
//! descriptors (`/proc/PID/fd`) idle, with all N open, and after they close.
//!
//! ```text
//! cargo build --release -p switchboard-testkit --bin scripted-llm
//! cargo bench -p switchboard --bench hold -- --streams 1000
//! cargo bench -p switchboard --bench hold -- --streams 10000 --http2 --model-http2
//! ```
//!
//! Options: `--streams N` (1000), `--token-delay-ms` (1000: each answer then lasts minutes, so
//! every stream is still open when measured), `--opening C` (256: requests being opened at once,
//! so the accept queue is not flooded), `--http2` (the streams share HTTP/2 connections, about
//! [`STREAMS_PER_CONNECTION`] each, instead of one HTTP/1 connection per stream),
//! `--model-http2` (the server speaks HTTP/2 to the model, `[llm] http2_prior_knowledge`, so
//! every conversation's model call shares one connection instead of holding one each),
//! `--max-secs` (300, the bound on opening them all), `--bin PATH` (the `switchboard` binary to
//! serve, with `scripted-llm` next to it; default: the one cargo built with this bench). Linux
//! only (it reads `/proc`).
//!
//! Over HTTP/1 each held conversation costs the server two descriptors: the caller's connection
//! and the one to the model. Both this process and the server raise their soft descriptor limit
//! to the hard limit first; when 2 × N does not fit under it, use `--http2` and `--model-http2`.
//!
//! The run fails (exit 1) when a stream could not be opened or the model did not receive every
//! conversation's call, so the figures printed are for N conversations really held.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use switchboard_testkit::{Serve, llm, run_cli};

/// Streams per HTTP/2 connection with `--http2`: under the server's limit of concurrent streams
/// per connection (hyper's default is 200).
const STREAMS_PER_CONNECTION: usize = 100;
/// The question asked: routed to the demo's `policies` agent, whose answer the model writes.
const QUESTION: &str = "what is the hotel limit for travel";
const USER: &str = "carol@example.com";

struct Options {
    streams: usize,
    token_delay_ms: u64,
    opening: usize,
    http2: bool,
    model_http2: bool,
    max: Duration,
    bin: PathBuf,
}

fn options() -> Result<Options, String> {
    let mut o = Options {
        streams: 1000,
        token_delay_ms: 1000,
        opening: 256,
        http2: false,
        model_http2: false,
        max: Duration::from_secs(300),
        bin: PathBuf::from(env!("CARGO_BIN_EXE_switchboard")),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut number = |name: &str| -> Result<u64, String> {
            let v = args.next().ok_or_else(|| format!("{name} needs a value"))?;
            v.parse::<u64>().map_err(|_| format!("{name}: not a number: {v}"))
        };
        match arg.as_str() {
            "--streams" => o.streams = number("--streams")?.max(1) as usize,
            "--token-delay-ms" => o.token_delay_ms = number("--token-delay-ms")?,
            "--opening" => o.opening = number("--opening")?.max(1) as usize,
            "--max-secs" => o.max = Duration::from_secs(number("--max-secs")?),
            "--http2" => o.http2 = true,
            "--model-http2" => o.model_http2 = true,
            "--bin" => o.bin = args.next().map(PathBuf::from).ok_or("--bin needs a value")?,
            // `cargo bench` passes --bench; other libtest flags mean nothing here.
            _ if arg.starts_with("--") => {}
            other => return Err(format!("unexpected argument `{other}`")),
        }
    }
    Ok(o)
}

/// One reading of a process: resident and peak resident memory in kB, open descriptors.
#[derive(Debug, Clone, Copy)]
struct Reading {
    rss_kb: u64,
    hwm_kb: u64,
    fds: usize,
}

impl Reading {
    fn of(pid: u32) -> Result<Self, String> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .map_err(|e| format!("reading /proc/{pid}/status: {e}"))?;
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|kb| kb.parse::<u64>().ok())
                .ok_or_else(|| format!("/proc/{pid}/status has no {name}"))
        };
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .map_err(|e| format!("listing /proc/{pid}/fd: {e}"))?
            .count();
        Ok(Self { rss_kb: field("VmRSS:")?, hwm_kb: field("VmHWM:")?, fds })
    }

    fn show(&self) -> String {
        format!("RSS {:.1} MB (peak {:.1} MB), {} fds", mb(self.rss_kb), mb(self.hwm_kb), self.fds)
    }
}

fn mb(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

/// The demo written out to `dir`, with the scripted model as `[llm]` and connection caps above N.
fn write_config(bin: &Path, dir: &Path, llm_url: &str, o: &Options) -> Result<PathBuf, String> {
    let status = Command::new(bin)
        .arg("init")
        .arg(dir)
        .stdout(std::process::Stdio::null())
        .status()
        .map_err(|e| format!("running switchboard init: {e}"))?;
    if !status.success() {
        return Err(format!("switchboard init {} failed: {status}", dir.display()));
    }
    let path = dir.join("switchboard.toml");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    // A held conversation lasts as long as the model writes: far past the demo's 15 s agent
    // timeout and 60 s deadline, which would end it early.
    let mut text = text
        .replace("agent_timeout_ms = 15000", "agent_timeout_ms = 3600000")
        .replace("deadline_ms = 60000", "deadline_ms = 3600000");
    if !text.contains("deadline_ms = 3600000") {
        return Err("the demo's [supervisor] deadline_ms is not where this bench expects it".into());
    }
    // Every stream comes from 127.0.0.1, so the per-IP cap is off; the global cap leaves room.
    text.push_str(&format!(
        "\n[llm]\nbase_url = \"{llm_url}\"\nmodel = \"scripted\"\nhttp2_prior_knowledge = {}\n\n\
         [server]\nmax_connections = {}\nmax_connections_per_ip = 0\n",
        o.model_http2,
        o.streams + 1024
    ));
    std::fs::write(&path, text).map_err(|e| format!("writing {}: {e}", path.display()))?;
    Ok(path)
}

/// The scripted model's answer: long enough, at one token per delay, to outlast the run.
fn script_file(dir: &Path, token_delay_ms: u64) -> Result<PathBuf, String> {
    let words = "Hotels are capped at two hundred and fifty dollars per night in every city. ".repeat(40);
    let script = format!("token_delay_ms = {token_delay_ms}\n\n[default]\ntext = \"{}\"\n", words.trim());
    let path = dir.join("hold-llm.toml");
    std::fs::write(&path, script).map_err(|e| format!("writing {}: {e}", path.display()))?;
    Ok(path)
}

fn clients(o: &Options) -> Result<Vec<reqwest::Client>, String> {
    let count = if o.http2 { o.streams.div_ceil(STREAMS_PER_CONNECTION) } else { 1 };
    (0..count)
        .map(|_| {
            // An HTTP/2 connection is shared only while the pool keeps it; over HTTP/1 each held
            // stream has its own anyway.
            let builder = reqwest::Client::builder();
            let builder = if o.http2 {
                builder.http2_prior_knowledge()
            } else {
                builder.http1_only().pool_max_idle_per_host(0)
            };
            builder.build().map_err(|e| format!("building the HTTP client: {e}"))
        })
        .collect()
}

/// How the held streams are doing.
#[derive(Default)]
struct Counters {
    opened: AtomicUsize,
    first_bytes: AtomicUsize,
    failed: AtomicUsize,
}

/// Opens one conversation (gated by `opening`, released once its headers arrived) and reads it
/// until it ends or the task is aborted.
async fn hold(
    client: reqwest::Client,
    url: String,
    token: Arc<str>,
    opening: Arc<tokio::sync::Semaphore>,
    counters: Arc<Counters>,
) {
    let body = serde_json::json!({
        "model": "switchboard", "stream": true,
        "messages": [{"role": "user", "content": QUESTION}],
    });
    let Ok(permit) = opening.acquire_owned().await else { return };
    let sent = client.post(&url).bearer_auth(&*token).json(&body).send().await;
    drop(permit);
    let mut response = match sent {
        Ok(r) if r.status() == 200 => r,
        Ok(r) => {
            if counters.failed.fetch_add(1, Ordering::Relaxed) == 0 {
                eprintln!("hold: a stream was refused: {}", r.status());
            }
            return;
        }
        Err(e) => {
            if counters.failed.fetch_add(1, Ordering::Relaxed) == 0 {
                eprintln!("hold: a stream could not be opened: {e}");
            }
            return;
        }
    };
    counters.opened.fetch_add(1, Ordering::Relaxed);
    let mut first = true;
    while let Ok(Some(_)) = response.chunk().await {
        if std::mem::take(&mut first) {
            counters.first_bytes.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Calls the scripted model has received so far, from its `/stats`.
async fn llm_calls(base: &str) -> Result<u64, String> {
    let url = format!("{}/stats", base.trim_end_matches("/v1"));
    let stats: serde_json::Value = reqwest::get(&url)
        .await
        .map_err(|e| format!("GET {url}: {e}"))?
        .json()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    stats["calls"].as_u64().ok_or_else(|| format!("{url} has no `calls`"))
}

async fn run(o: Options) -> Result<(), String> {
    let limit = switchboard_server::raise_fd_limit().map_err(|e| format!("raising the fd limit: {e}"))?;
    let bin = o.bin.clone();
    let dir = tempfile::tempdir().map_err(|e| format!("a temporary directory: {e}"))?;
    let (mut model, llm_url) =
        llm::spawn_binary(&llm::binary_next_to(&bin), &script_file(dir.path(), o.token_delay_ms)?).await;
    let config = write_config(&bin, &dir.path().join("demo"), &llm_url, &o)?;
    let config_arg = config.to_string_lossy();
    let token: Arc<str> =
        run_cli(&bin, &["token", "--as", USER, "--ttl", "1h", "--config", &config_arg], &[]).into();
    let server = Serve::start(&bin, Some(&config), &[]).await;
    let pid = server.id();
    let transport = if o.http2 { "HTTP/2, shared connections" } else { "HTTP/1.1, one connection each" };
    let to_model = if o.model_http2 { "HTTP/2, one connection" } else { "HTTP/1.1, one connection each" };
    println!(
        "holding {} streams ({transport}; to the model {to_model}); token delay {} ms; fd limit {}",
        o.streams,
        o.token_delay_ms,
        limit.map_or("unlimited".to_string(), |l| l.to_string())
    );
    let callers = if o.http2 { o.streams.div_ceil(STREAMS_PER_CONNECTION) } else { o.streams };
    let descriptors = callers + if o.model_http2 { 1 } else { o.streams } + 64;
    if limit.is_some_and(|l| descriptors as u64 > l) {
        println!("warning: the server needs about {descriptors} descriptors; use --http2 and --model-http2");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle = Reading::of(pid)?;
    println!("idle:        {}", idle.show());

    let url = format!("{}/v1/chat/completions", server.url());
    let clients = clients(&o)?;
    let opening = Arc::new(tokio::sync::Semaphore::new(o.opening));
    let counters = Arc::new(Counters::default());
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..o.streams {
        let client = clients[i % clients.len()].clone();
        tasks.spawn(hold(client, url.clone(), token.clone(), opening.clone(), counters.clone()));
    }
    // Every stream is open and every conversation's model call has arrived (and, at this token
    // delay, is still being written).
    loop {
        let settled = counters.opened.load(Ordering::Relaxed) + counters.failed.load(Ordering::Relaxed);
        if settled >= o.streams
            && llm_calls(&llm_url).await? >= counters.opened.load(Ordering::Relaxed) as u64
        {
            break;
        }
        if started.elapsed() > o.max {
            return Err(format!("only {settled} of {} streams settled within {:?}", o.streams, o.max));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let ramp = started.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let held = Reading::of(pid)?;
    let (opened, failed) = (counters.opened.load(Ordering::Relaxed), counters.failed.load(Ordering::Relaxed));
    let calls = llm_calls(&llm_url).await?;
    println!(
        "held:        {} with {opened} streams open ({failed} failed), opened in {:.1} s; {} already sent text; model calls {calls}",
        held.show(),
        ramp.as_secs_f64(),
        counters.first_bytes.load(Ordering::Relaxed),
    );
    println!(
        "per stream:  {:.1} kB above idle",
        (held.rss_kb.saturating_sub(idle.rss_kb)) as f64 / opened.max(1) as f64
    );

    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    drop(clients);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = Reading::of(pid)?;
    println!("closed:      {}", after.show());
    drop(server);
    model.stop();
    if failed > 0 {
        return Err(format!("{failed} of {} streams could not be opened", o.streams));
    }
    Ok(())
}

fn main() -> ExitCode {
    let o = match options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("hold: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("hold: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(o)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hold: {e}");
            ExitCode::FAILURE
        }
    }
}
