//! The summary table printed at the end of `switchboard eval`.

use super::{Report, headline, pct, rate};
use crate::metrics::CLARIFY;

/// The summary as aligned plain text: headline metrics, per-tag routing and per-agent scores.
pub fn summary_table(report: &Report) -> String {
    let m = report.overall();
    let mut out = format!("{} · router: {} · config: {}\n\n", report.dataset, report.router, report.config);
    let rows = headline(m);
    let width = rows.iter().map(|(k, _)| k.chars().count()).max().unwrap_or(0);
    for (k, v) in &rows {
        out.push_str(&format!("  {k:<width$}  {v}\n"));
    }
    if !report.summary.tags.is_empty() {
        out.push_str(&format!(
            "\n  {:<20} {:>7}  {:<22} {:<22} {:<22}\n",
            "tag", "cases", "routing", "governance", "answers"
        ));
        for (tag, t) in &report.summary.tags {
            out.push_str(&format!(
                "  {:<20} {:>7}  {:<22} {:<22} {:<22}\n",
                tag,
                t.cases,
                rate(&t.routing),
                rate(&t.governance),
                rate(&t.answer)
            ));
        }
    }
    if !m.agents.is_empty() {
        out.push_str(&format!("\n  {:<20} {:>10} {:>10}\n", "agent", "precision", "recall"));
        for (agent, s) in &m.agents {
            let name = if agent == CLARIFY { "clarify" } else { agent.as_str() };
            out.push_str(&format!("  {:<20} {:>10} {:>10}\n", name, pct(s.precision_pct), pct(s.recall_pct)));
        }
    }
    out
}
