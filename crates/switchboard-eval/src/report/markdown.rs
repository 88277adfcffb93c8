//! `report.md`: the summary as Markdown, for a pull request or a CI job summary.

use super::{Report, headline, pct, rate};
use crate::metrics::CLARIFY;

/// Most failed cases listed; the JSON and HTML reports have them all.
const MAX_FAILED: usize = 25;

/// Renders the report as Markdown.
pub fn markdown(report: &Report) -> String {
    let m = report.overall();
    let mut out = format!(
        "# Evaluation: `{}`\n\nRouter: **{}** · config: `{}` · {} cases in {:.1} s\n\n| metric | value |\n|---|---|\n",
        report.dataset, report.router, report.config, m.cases, report.duration_s
    );
    for (k, v) in headline(m) {
        out.push_str(&format!("| {k} | {v} |\n"));
    }
    if !report.summary.tags.is_empty() {
        out.push_str("\n## Per tag\n\n| tag | cases | routing | governance | trajectory | answers | recall | p50 ms |\n|---|---:|---:|---:|---:|---:|---:|---:|\n");
        for (tag, t) in &report.summary.tags {
            out.push_str(&format!(
                "| {tag} | {} | {} | {} | {} | {} | {} | {:.1} |\n",
                t.cases,
                rate(&t.routing),
                rate(&t.governance),
                rate(&t.trajectory),
                rate(&t.answer),
                pct(t.recall.pct),
                t.latency_ms.p50
            ));
        }
    }
    if !m.agents.is_empty() {
        out.push_str("\n## Per agent\n\n| agent | precision | recall | routed right | wrongly routed there | missed |\n|---|---:|---:|---:|---:|---:|\n");
        for (agent, s) in &m.agents {
            let name = if agent == CLARIFY { "*clarify*" } else { agent.as_str() };
            out.push_str(&format!(
                "| {name} | {} | {} | {} | {} | {} |\n",
                pct(s.precision_pct),
                pct(s.recall_pct),
                s.true_positives,
                s.false_positives,
                s.false_negatives
            ));
        }
    }
    let failed: Vec<_> = report.cases.iter().filter(|r| !r.passed()).collect();
    out.push_str(&format!("\n## Failed cases ({})\n\n", failed.len()));
    if failed.is_empty() {
        out.push_str("None.\n");
    } else {
        out.push_str("| line | id | as | question | what failed |\n|---:|---|---|---|---|\n");
        for r in failed.iter().take(MAX_FAILED) {
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} |\n",
                r.line,
                cell(&r.id),
                cell(&r.as_user),
                cell(&r.question),
                cell(&r.failure_summary())
            ));
        }
        if failed.len() > MAX_FAILED {
            out.push_str(&format!(
                "\n… and {} more (see report.json or report.html).\n",
                failed.len() - MAX_FAILED
            ));
        }
    }
    out
}

/// Text safe inside a table cell: no pipes or newlines, and not too long.
fn cell(s: &str) -> String {
    let s: String = s.replace('|', "\\|").replace(['\n', '\r'], " ");
    if s.chars().count() > 120 { format!("{}…", s.chars().take(119).collect::<String>()) } else { s }
}
