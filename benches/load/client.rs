//! The load client: a fixed number of chat completions at a fixed concurrency over keep-alive
//! connections, each with its caller's bearer token; streamed or not.

use crate::measure;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One request to send: the bearer token and the question.
#[derive(Clone)]
pub struct Ask {
    pub token: Arc<str>,
    pub question: Arc<str>,
}

/// One request's outcome: its latency and, streamed, when the first answer text arrived.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub latency: Duration,
    pub first_token: Option<Duration>,
}

/// A request's timing, or what went wrong.
pub type Sample = Result<Timing, String>;

/// Every sample of a run and its wall time.
pub struct Run {
    pub samples: Vec<Sample>,
    pub wall: Duration,
    /// What this process's threads used meanwhile.
    pub usage: measure::ThreadsUsage,
}

/// A client for `concurrency` keep-alive connections.
pub fn client(concurrency: usize) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(concurrency)
        .tcp_nodelay(true)
        .build()
        .map_err(|e| e.to_string())
}

/// Sends `total` chat completions to `url` (`…/v1/chat/completions`) from `concurrency`
/// workers, cycling through `asks`; gives up after `bound`.
pub async fn drive(
    client: &reqwest::Client,
    url: &str,
    asks: &[Ask],
    total: usize,
    concurrency: usize,
    stream: bool,
    bound: Duration,
) -> Result<Run, String> {
    let asks: Arc<[Ask]> = asks.into();
    if asks.is_empty() {
        return Err("nothing to ask".into());
    }
    let (client, url): (reqwest::Client, Arc<str>) = (client.clone(), url.into());
    let job = move |i: usize| {
        let (client, url, asks) = (client.clone(), url.clone(), asks.clone());
        async move { one(&client, &url, &asks[i % asks.len()], stream).await }
    };
    let usage = measure::ThreadsUsage::of("");
    let (samples, wall) = tokio::time::timeout(bound, measure::pool(total, concurrency, job))
        .await
        .map_err(|_| format!("the run exceeded its bound of {} s", bound.as_secs()))??;
    Ok(Run { samples, wall, usage: measure::ThreadsUsage::of("").since(usage) })
}

async fn one(client: &reqwest::Client, url: &str, ask: &Ask, stream: bool) -> Sample {
    let body = json!({
        "model": "switchboard",
        "stream": stream,
        "messages": [{"role": "user", "content": &*ask.question}],
    });
    let started = Instant::now();
    let mut response = client
        .post(url)
        .bearer_auth(&*ask.token)
        .json(&body)
        .send()
        .await
        .map_err(|e| format!("transport: {e}"))?;
    if response.status() != 200 {
        let status = response.status();
        return Err(format!("{status}: {}", response.text().await.unwrap_or_default()));
    }
    if !stream {
        response.bytes().await.map_err(|e| format!("reading the body: {e}"))?;
        return Ok(Timing { latency: started.elapsed(), first_token: None });
    }
    let mut first_token = None;
    let mut pending = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| format!("reading the stream: {e}"))? {
        if first_token.is_some() {
            continue;
        }
        pending.extend_from_slice(&chunk);
        // Whole SSE events only: a chunk may end mid-line.
        while let Some(end) = pending.windows(2).position(|w| w == b"\n\n") {
            let event: Vec<u8> = pending.drain(..end + 2).collect();
            if first_token.is_none() && carries_text(&event) {
                first_token = Some(started.elapsed());
            }
        }
    }
    if first_token.is_none() {
        return Err("the stream ended without answer text".into());
    }
    Ok(Timing { latency: started.elapsed(), first_token })
}

/// Whether an SSE event is a chunk with answer text in its delta.
fn carries_text(event: &[u8]) -> bool {
    let text = String::from_utf8_lossy(event);
    text.lines().filter_map(|l| l.strip_prefix("data:")).any(|data| {
        serde_json::from_str::<Value>(data.trim()).is_ok_and(|v| {
            v.pointer("/choices/0/delta/content").and_then(Value::as_str).is_some_and(|t| !t.is_empty())
        })
    })
}
