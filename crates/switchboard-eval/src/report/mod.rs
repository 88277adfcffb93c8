//! The report of a run, and its three renderings: `report.json` for machines, `report.md` for
//! pull requests, `report.html` to open in a browser (self-contained: no network needed).

mod html;
mod markdown;
mod text;

pub use html::html;
pub use markdown::markdown;
pub use text::summary_table;

use crate::metrics::{Metrics, Summary, summarize};
use crate::result::CaseResult;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use switchboard_core::{Error, Result};

/// The version of `report.json`'s shape.
pub const REPORT_VERSION: u32 = 1;

/// A run's report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// Shape version.
    pub version: u32,
    /// The dataset, as given.
    pub dataset: String,
    /// The configuration, or `built-in demo`.
    pub config: String,
    /// The router that produced the routes (kind and threshold).
    pub router: String,
    /// When the report was written, seconds since the Unix epoch.
    pub created_unix: u64,
    /// Wall time of the run in seconds (this invocation's part of it, when resumed).
    pub duration_s: f64,
    /// Cases in flight at once.
    pub concurrency: usize,
    /// The metrics.
    pub summary: Summary,
    /// Every case's result, in dataset order.
    pub cases: Vec<CaseResult>,
}

/// Where the three files were written.
#[derive(Debug, Clone)]
pub struct Written {
    /// `report.json`.
    pub json: PathBuf,
    /// `report.md`.
    pub markdown: PathBuf,
    /// `report.html`.
    pub html: PathBuf,
}

impl Report {
    /// Builds a report from results in dataset order; `k` is recall@k's k.
    pub fn new(
        dataset: String,
        config: String,
        router: String,
        results: Vec<CaseResult>,
        k: usize,
        duration_s: f64,
        concurrency: usize,
    ) -> Self {
        let created_unix =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        Self {
            version: REPORT_VERSION,
            dataset,
            config,
            router,
            created_unix,
            duration_s,
            concurrency,
            summary: summarize(&results, k),
            cases: results,
        }
    }

    /// The overall metrics.
    pub fn overall(&self) -> &Metrics {
        &self.summary.overall
    }

    /// Reads a `report.json`.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::invalid(format!("cannot read the report {}: {e}", path.display())))?;
        serde_json::from_str(&text).map_err(|e| {
            Error::invalid(format!("{} is not a switchboard eval report.json: {e}", path.display()))
        })
    }

    /// Writes `report.json`, `report.md` and `report.html` into `dir`, creating it.
    pub fn write(&self, dir: &Path) -> Result<Written> {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::invalid(format!("cannot create {}: {e}", dir.display())))?;
        let written = Written {
            json: dir.join("report.json"),
            markdown: dir.join("report.md"),
            html: dir.join("report.html"),
        };
        let json = serde_json::to_string_pretty(self).map_err(|e| Error::internal(e.to_string()))?;
        for (path, text) in
            [(&written.json, json), (&written.markdown, markdown(self)), (&written.html, html(self))]
        {
            std::fs::write(path, text)
                .map_err(|e| Error::invalid(format!("cannot write {}: {e}", path.display())))?;
        }
        Ok(written)
    }
}

/// A percentage for display: `96.4%`, or `–` when nothing was measured.
pub(crate) fn pct(p: Option<f64>) -> String {
    p.map_or_else(|| "–".to_string(), |p| format!("{p:.1}%"))
}

/// A rate with its counts: `96.4% (4338/4500)`.
pub(crate) fn rate(r: &crate::metrics::Rate) -> String {
    match r.pct {
        Some(p) => format!("{p:.1}% ({}/{})", r.met, r.total),
        None => "–".to_string(),
    }
}

/// The headline rows every rendering shows, as (metric, value).
pub(crate) fn headline(m: &Metrics) -> Vec<(String, String)> {
    let mut rows = vec![
        ("cases".to_string(), format!("{} ({} passed, {} could not run)", m.cases, m.passed, m.errors)),
        ("routing accuracy".to_string(), rate(&m.routing)),
        ("governance expectations met".to_string(), rate(&m.governance)),
    ];
    if m.trajectory.total > 0 {
        rows.push(("trajectory match".into(), rate(&m.trajectory)));
    }
    if m.answer.total > 0 {
        rows.push(("answer pass rate".into(), rate(&m.answer)));
    }
    if m.judge.total > 0 {
        rows.push(("judge pass rate".into(), rate(&m.judge)));
    }
    if m.recall.cases > 0 {
        rows.push((
            format!("retrieval recall@{}", m.recall.k),
            format!("{} ({} cases)", pct(m.recall.pct), m.recall.cases),
        ));
    }
    let l = &m.latency_ms;
    rows.push(("latency p50 / p95 / p99".into(), format!("{:.1} / {:.1} / {:.1} ms", l.p50, l.p95, l.p99)));
    let llm = &m.llm;
    let mut usage = format!(
        "{} calls, {} tokens in, {} out ({:.2} calls, {:.0} tokens per case)",
        llm.calls, llm.input_tokens, llm.output_tokens, llm.calls_per_case, llm.tokens_per_case
    );
    if let Some(cost) = llm.cost {
        usage.push_str(&format!(", cost {cost:.4}"));
    }
    if llm.judge_tokens > 0 {
        usage.push_str(&format!("; judge {} tokens", llm.judge_tokens));
    }
    rows.push(("LLM usage".into(), usage));
    rows
}
