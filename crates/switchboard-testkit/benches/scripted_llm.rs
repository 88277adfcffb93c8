//! Throughput of the scripted LLM server: a fixed number of chat completions at a fixed
//! concurrency over keep-alive connections, reporting calls/s and latency percentiles. The load
//! loop shares the machine with the server, so the figure is a floor.
//!
//! ```text
//! cargo bench -p switchboard-testkit --bench scripted_llm                        # in process
//! cargo bench -p switchboard-testkit --bench scripted_llm -- --url http://127.0.0.1:9000/v1 \
//!     --requests 100000 --concurrency 32 --stream
//! ```

use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use switchboard_testkit::llm::{Script, ScriptedLlm};

const SCRIPT: &str = r#"
[[rules]]
when = { tools = true }
reply = { tool_call = { tool = "." } }
[[rules]]
reply = { text = "Revenue by region: West 1,200,000; East 950,000; Central 610,000." }
"#;

fn main() {
    let mut url = None;
    let (mut requests, mut concurrency, mut stream) = (50_000usize, 32usize, false);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--url" => url = args.next(),
            "--requests" => requests = args.next().and_then(|v| v.parse().ok()).unwrap_or(requests),
            "--concurrency" => {
                concurrency = args.next().and_then(|v| v.parse().ok()).unwrap_or(concurrency).max(1)
            }
            "--stream" => stream = true,
            _ => {} // `cargo bench` passes --bench
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a runtime");
    runtime.block_on(async move {
        let local = match &url {
            Some(_) => None,
            None => Some(ScriptedLlm::start(Script::from_toml(SCRIPT).expect("the bench script")).await),
        };
        let base = url.unwrap_or_else(|| local.as_ref().map(|l| l.base_url().to_string()).unwrap_or_default());
        let endpoint = format!("{base}/chat/completions");
        let client = reqwest::Client::builder().no_proxy().pool_max_idle_per_host(concurrency).build().expect("client");
        let body = Arc::new(json!({
            "model": "scripted", "stream": stream,
            "messages": [{"role": "system", "content": "You route questions."},
                         {"role": "user", "content": "total revenue by region"}],
        }).to_string());
        let next = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        let workers: Vec<_> = (0..concurrency)
            .map(|_| {
                let (client, endpoint, body, next) = (client.clone(), endpoint.clone(), body.clone(), next.clone());
                tokio::spawn(async move {
                    let mut latencies = Vec::new();
                    let mut errors = 0usize;
                    while next.fetch_add(1, Ordering::Relaxed) < requests {
                        let t = Instant::now();
                        let sent = client
                            .post(&endpoint)
                            .header("content-type", "application/json")
                            .body(body.as_str().to_owned())
                            .send()
                            .await;
                        match sent {
                            Ok(r) if r.status().is_success() => {
                                if r.bytes().await.is_err() {
                                    errors += 1;
                                }
                            }
                            _ => errors += 1,
                        }
                        latencies.push(t.elapsed());
                    }
                    (latencies, errors)
                })
            })
            .collect();
        let mut latencies: Vec<Duration> = Vec::with_capacity(requests);
        let mut errors = 0;
        for w in workers {
            let (l, e) = w.await.expect("a load worker");
            latencies.extend(l);
            errors += e;
        }
        let elapsed = started.elapsed();
        latencies.sort();
        let pct = |p: f64| latencies.get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1))).copied().unwrap_or_default();
        println!(
            "scripted-llm: {} calls ({}) at concurrency {concurrency} in {:.2} s: {:.0} calls/s; p50 {:.2} ms, p99 {:.2} ms; {errors} errors",
            latencies.len(),
            if stream { "streamed" } else { "plain" },
            elapsed.as_secs_f64(),
            latencies.len() as f64 / elapsed.as_secs_f64(),
            pct(0.50).as_secs_f64() * 1e3,
            pct(0.99).as_secs_f64() * 1e3,
        );
        if errors > 0 {
            std::process::exit(1);
        }
    });
}
