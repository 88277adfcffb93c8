//! What the load harness and the embedded comparison bench share: the comparison scenario's
//! questions and caller, the worker pool that runs a level, and its figures (latency percentiles,
//! one concurrency level's summary as a JSON line, the scripted LLM server's counters, and a
//! process's peak RSS).

use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The comparison scenario's questions: one for each of its two agents, asked in turn.
pub const SCENARIO_QUESTIONS: &[&str] = &[
    "What was total revenue by region last quarter? Use SQL.",
    "What does our travel policy say about hotel upgrades?",
];

/// The scenario's caller (a development identity of `benches/compare/switchboard.toml`).
pub const SCENARIO_USER: &str = "ana@example.com";

/// Runs `job(0)` … `job(total - 1)` from `concurrency` workers, each taking the next index as it
/// finishes one; returns every output (grouped by worker) and the wall time of them all.
pub async fn pool<T, F, Fut>(total: usize, concurrency: usize, job: F) -> Result<(Vec<T>, Duration), String>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = T> + Send + 'static,
{
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency.max(1))
        .map(|_| {
            let (job, next) = (job.clone(), next.clone());
            tokio::spawn(async move {
                let mut outputs = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        return outputs;
                    }
                    outputs.push(job(i).await);
                }
            })
        })
        .collect();
    let mut all = Vec::with_capacity(total);
    for w in workers {
        all.extend(w.await.map_err(|e| format!("a worker failed: {e}"))?);
    }
    Ok((all, started.elapsed()))
}

/// The `p`-th percentile (nearest rank) of `sorted`.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Milliseconds, as a float.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The mean of `samples` (zero when empty).
pub fn mean(samples: &[Duration]) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    samples.iter().sum::<Duration>() / samples.len() as u32
}

/// One concurrency level: runs, wall time, latency figures, what this process's threads used on it
/// (`usage`, see [`ThreadsUsage`]) and the scripted server's counters over the level, in the shape
/// the comparison script reads from every runtime.
pub fn level_json(
    concurrency: usize,
    mut latencies: Vec<Duration>,
    wall: Duration,
    usage: ThreadsUsage,
    llm: &Value,
) -> Value {
    latencies.sort();
    let runs = latencies.len();
    json!({
        "concurrency": concurrency,
        "runs": runs,
        "wall_s": wall.as_secs_f64(),
        "runs_per_s": runs as f64 / wall.as_secs_f64().max(1e-9),
        "mean_ms": ms(mean(&latencies)),
        "p50_ms": ms(percentile(&latencies, 50.0)),
        "p95_ms": ms(percentile(&latencies, 95.0)),
        "p99_ms": ms(percentile(&latencies, 99.0)),
        "process_cpu_s": usage.cpu.as_secs_f64(),
        "process_switches": usage.switches,
        "llm_calls": llm.get("calls").cloned().unwrap_or(Value::Null),
        "llm_time_s": llm.get("server_time_s").cloned().unwrap_or(Value::Null),
    })
}

/// What this process's threads have used: CPU time, from the first field of each thread's
/// `/proc/self/task/*/schedstat` (nanoseconds), and context switches, voluntary or not, from its
/// `status`. At low concurrency each switch is a thread that slept being woken, which costs more
/// than the work it was woken for (README, Performance, "Wake-ups at concurrency 1"). Threads that
/// have exited are not counted; zero where there are no such files (not Linux).
#[derive(Debug, Clone, Copy, Default)]
pub struct ThreadsUsage {
    /// CPU time, user and system.
    pub cpu: Duration,
    /// Context switches.
    pub switches: u64,
}

impl ThreadsUsage {
    /// What the threads whose name starts with `prefix` (every thread for "") have used so far.
    pub fn of(prefix: &str) -> Self {
        let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return Self::default() };
        tasks
            .flatten()
            .map(|task| task.path())
            // `comm` holds the first 15 bytes of the thread's name.
            .filter(|task| std::fs::read_to_string(task.join("comm")).is_ok_and(|n| n.starts_with(prefix)))
            .fold(Self::default(), |sum, task| {
                let read = |file: &str| std::fs::read_to_string(task.join(file)).unwrap_or_default();
                let nanos = read("schedstat").split_whitespace().next().and_then(|n| n.parse().ok());
                let switches: u64 = read("status")
                    .lines()
                    .filter(|l| {
                        l.starts_with("voluntary_ctxt_switches")
                            || l.starts_with("nonvoluntary_ctxt_switches")
                    })
                    .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                    .sum();
                Self {
                    cpu: sum.cpu + Duration::from_nanos(nanos.unwrap_or(0)),
                    switches: sum.switches + switches,
                }
            })
    }

    /// What was used since `earlier` was read.
    pub fn since(self, earlier: Self) -> Self {
        Self {
            cpu: self.cpu.saturating_sub(earlier.cpu),
            switches: self.switches.saturating_sub(earlier.switches),
        }
    }
}

/// The scripted LLM server's root (`http://HOST:PORT`) from its API root (`…/v1`).
fn root(base: &str) -> &str {
    base.trim_end_matches('/').trim_end_matches("/v1")
}

/// `GET /stats` of the scripted server at `base`: calls, seconds inside its handlers, and each
/// call's prompt tokens.
pub async fn llm_stats(client: &reqwest::Client, base: &str) -> Result<Value, String> {
    let url = format!("{}/stats", root(base));
    let r = client.get(&url).send().await.map_err(|e| format!("{url}: {e}"))?;
    r.json().await.map_err(|e| format!("{url}: {e}"))
}

/// `POST /reset` of the scripted server at `base`: its counters start again from zero.
pub async fn llm_reset(client: &reqwest::Client, base: &str) -> Result<(), String> {
    let url = format!("{}/reset", root(base));
    client.post(&url).send().await.and_then(|r| r.error_for_status()).map_err(|e| format!("{url}: {e}"))?;
    Ok(())
}

/// The peak resident set size of process `pid` so far (`VmHWM`), in MB; `self` for this one.
pub fn peak_rss_mb(pid: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}
