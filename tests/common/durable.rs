//! What the tests of served gateway behaviour share: a demo configuration on a PostgreSQL database of the
//! test's own, development tokens, a closed-loop load generator, and the audit/span checks.

use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio_postgres::Client;

/// The `switchboard` binary under test: this build's, or `SWITCHBOARD_TEST_SERVE_BIN` (to run the
/// same test against another build, e.g. to reproduce a fault of an older one).
pub fn bin() -> &'static Path {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        std::env::var_os("SWITCHBOARD_TEST_SERVE_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_switchboard")))
    })
}

/// `switchboard init DIR` with `extra` appended to its `switchboard.toml`; returns that file.
pub fn init_demo(dir: &Path, extra: &str) -> PathBuf {
    let out = Command::new(bin()).arg("init").arg(dir).output().expect("switchboard init runs");
    assert!(out.status.success(), "switchboard init failed: {}", String::from_utf8_lossy(&out.stderr));
    let path = dir.join("switchboard.toml");
    let text = std::fs::read_to_string(&path).expect("the demo config");
    std::fs::write(&path, format!("{text}\n{extra}\n")).expect("write the config");
    path
}

/// [`init_demo`] with the store switched to PostgreSQL at `url`.
pub fn demo_config(dir: &Path, url: &str, extra: &str) -> PathBuf {
    let path = init_demo(dir, extra);
    let text = std::fs::read_to_string(&path).expect("the demo config");
    let text = text.replacen("[store]\n", &format!("[store]\nkind = \"postgres\"\nurl = \"{url}\"\n"), 1);
    assert!(text.contains("kind = \"postgres\""), "the demo config has a [store] section:\n{text}");
    std::fs::write(&path, text).expect("write the config");
    path
}

/// A development token for `email` under `config`.
pub fn token(config: &Path, email: &str) -> String {
    let out = Command::new(bin())
        .args(["token", "--as", email, "--ttl", "1h", "--config"])
        .arg(config)
        .output()
        .expect("switchboard token runs");
    assert!(out.status.success(), "switchboard token failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// One answered (or failed) request.
#[derive(Debug, Clone)]
pub struct Sample {
    /// The phase the request started in.
    pub phase: usize,
    /// Wall time from send to the whole body read.
    pub latency: Duration,
    /// The HTTP status, or `None` when no answer came (connection error, client timeout).
    pub status: Option<u16>,
    /// `x-request-id`.
    pub request_id: String,
}

/// A closed-loop load: `workers` tasks each sending one chat completion after another until
/// stopped, tagging each with the phase current when it was sent.
pub struct Load {
    phase: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<Vec<Sample>>>,
}

impl Load {
    /// Starts the load against `base` (`http://127.0.0.1:PORT`) as the bearer of `token`.
    pub fn start(base: &str, token: &str, workers: usize) -> Self {
        let phase = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let client = reqwest::Client::builder()
            .no_proxy()
            // Generous: a stalled request must show as a latency, not a client-side error.
            .timeout(Duration::from_secs(180))
            .build()
            .expect("client");
        let url = format!("{base}/v1/chat/completions");
        let tasks = (0..workers)
            .map(|_| {
                let (client, url, token) = (client.clone(), url.clone(), token.to_string());
                let (phase, stop) = (phase.clone(), stop.clone());
                tokio::spawn(async move {
                    let mut samples = Vec::new();
                    let body = json!({"model": "switchboard",
                        "messages": [{"role": "user", "content": "total revenue by region"}]});
                    while !stop.load(Ordering::Relaxed) {
                        let phase = phase.load(Ordering::Relaxed);
                        let started = Instant::now();
                        let sent = client.post(&url).bearer_auth(&token).json(&body).send().await;
                        let (status, request_id) = match sent {
                            Ok(response) => {
                                let status = response.status().as_u16();
                                let id = response
                                    .headers()
                                    .get("x-request-id")
                                    .and_then(|v| v.to_str().ok())
                                    .unwrap_or_default()
                                    .to_string();
                                let read = response.bytes().await.is_ok();
                                (read.then_some(status), id)
                            }
                            Err(_) => (None, String::new()),
                        };
                        samples.push(Sample { phase, latency: started.elapsed(), status, request_id });
                    }
                    samples
                })
            })
            .collect();
        Self { phase, stop, tasks }
    }

    /// Tags requests sent from now on with `phase`.
    pub fn enter(&self, phase: usize) {
        self.phase.store(phase, Ordering::Relaxed);
    }

    /// Stops the workers and returns every sample.
    pub async fn finish(self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        for task in self.tasks {
            all.extend(task.await.expect("a load worker"));
        }
        all
    }
}

/// The `q` quantile (0..=1) of `latencies`, in milliseconds.
pub fn quantile_ms(latencies: &mut [Duration], q: f64) -> f64 {
    if latencies.is_empty() {
        return f64::NAN;
    }
    latencies.sort_unstable();
    let rank = ((latencies.len() as f64 * q).ceil() as usize).clamp(1, latencies.len());
    latencies[rank - 1].as_secs_f64() * 1000.0
}

/// `name: N requests, p50 X ms, p99 Y ms, max Z ms` for the samples of `phase`.
pub fn describe_phase(samples: &[Sample], phase: usize, name: &str) -> (f64, String) {
    let mut latencies: Vec<Duration> =
        samples.iter().filter(|s| s.phase == phase).map(|s| s.latency).collect();
    let n = latencies.len();
    let p50 = quantile_ms(&mut latencies, 0.50);
    let p99 = quantile_ms(&mut latencies, 0.99);
    let max = latencies.last().map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0);
    (p99, format!("{name}: {n} requests, p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms"))
}

/// What the store holds about hops: audit rows, distinct audit span ids, hop spans (spans with a
/// `switchboard.hop.kind` attribute), and hop spans without exactly one audit row.
#[derive(Debug, PartialEq, Eq)]
pub struct HopTally {
    /// Audit rows of hops (not grants or revokes).
    pub audit_rows: i64,
    /// Audit rows sharing a span id with another (a doubled row).
    pub doubled: i64,
    /// Spans of hops.
    pub hop_spans: i64,
    /// Hop spans with no audit row.
    pub unaudited: i64,
}

/// Counts what [`HopTally`] describes.
pub async fn tally(db: &Client) -> HopTally {
    let one = |sql: &'static str| async move {
        db.query_one(sql, &[]).await.unwrap_or_else(|e| panic!("{sql}: {e}")).get::<_, i64>(0)
    };
    HopTally {
        audit_rows: one("SELECT COUNT(*) FROM audit WHERE hop NOT IN ('grant', 'revoke')").await,
        doubled: one("SELECT COALESCE(SUM(n - 1), 0)::bigint FROM (SELECT COUNT(*) AS n FROM audit GROUP BY span_id) d")
            .await,
        hop_spans: one("SELECT COUNT(*) FROM spans WHERE attributes ? 'switchboard.hop.kind'").await,
        unaudited: one(
            "SELECT COUNT(*) FROM spans s WHERE attributes ? 'switchboard.hop.kind' \
             AND NOT EXISTS (SELECT 1 FROM audit a WHERE a.span_id = s.span_id)",
        )
        .await,
    }
}

/// Request ids among `ids` with no audit row.
pub async fn unaudited_requests(db: &Client, ids: &[String]) -> Vec<String> {
    let rows = db
        .query(
            "SELECT u.rid FROM unnest($1::text[]) AS u(rid) WHERE NOT EXISTS \
             (SELECT 1 FROM audit a WHERE a.request_id = u.rid)",
            &[&ids],
        )
        .await
        .expect("looking for unaudited requests");
    rows.iter().map(|r| r.get(0)).collect()
}

/// Polls `tally` until every hop span has its audit row and the counts stop moving (the replay
/// has caught up), or `timeout` passed; returns the last tally.
pub async fn settled(db: &Client, timeout: Duration) -> HopTally {
    let deadline = Instant::now() + timeout;
    let mut last = tally(db).await;
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = tally(db).await;
        if (now == last && now.unaudited == 0 && now.audit_rows > 0) || Instant::now() > deadline {
            return now;
        }
        last = now;
    }
}
