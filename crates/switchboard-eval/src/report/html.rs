//! `report.html`: one self-contained page (inline CSS, script and data; nothing fetched). Tables
//! are rendered here; the confusion-matrix heatmap and the latency histogram are SVG drawn by
//! the inline script from the embedded data, so they scale with the browser window.

use super::{Report, headline, pct, rate};
use crate::metrics::CLARIFY;
use serde_json::json;

/// Most failed cases in the table; report.json has them all.
const MAX_FAILED: usize = 1000;

const STYLE: &str = r#"
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 1200px; padding: 0 1rem; color: #1d232a; }
h1 { font-size: 1.5rem; margin-bottom: .2rem; } h2 { font-size: 1.15rem; margin-top: 2rem; }
.meta { color: #5a6570; margin-top: 0; }
table { border-collapse: collapse; margin: .5rem 0; }
th, td { border-bottom: 1px solid #e3e7eb; padding: .3rem .6rem; text-align: left; vertical-align: top; }
th { background: #f6f8fa; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.failed td { font-size: 13px; } .q { max-width: 420px; }
svg text.label { font-size: 11px; fill: #39424b; } svg text.count { font-size: 10px; fill: #1d232a; pointer-events: none; }
svg text.axis { font-size: 11px; fill: #5a6570; }
rect.bar { fill: #4c78a8; } rect.bar:hover, rect.cell:hover { stroke: #1d232a; stroke-width: 1; }
.chart { overflow-x: auto; }
"#;

const SCRIPT: &str = r#"
(function () {
  const data = JSON.parse(document.getElementById('eval-data').textContent);
  const NS = 'http://www.w3.org/2000/svg';
  function el(tag, attrs, text) {
    const e = document.createElementNS(NS, tag);
    for (const k in attrs) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function color(t, diagonal) {
    if (t === 0) return '#f3f5f7';
    const s = Math.sqrt(t);
    return diagonal ? 'hsl(145, 55%, ' + (88 - 50 * s) + '%)' : 'hsl(5, 70%, ' + (90 - 45 * s) + '%)';
  }
  function heatmap(c) {
    const cell = 30, left = 160, top = 130;
    const w = left + c.columns.length * cell + 20, h = top + c.rows.length * cell + 20;
    const svg = el('svg', { id: 'heatmap-svg', width: w, height: h, viewBox: '0 0 ' + w + ' ' + h, role: 'img' });
    svg.appendChild(el('title', {}, 'Confusion matrix: expected agent (rows) by routed agent (columns)'));
    let max = 1;
    c.counts.forEach(function (row) { row.forEach(function (v) { if (v > max) max = v; }); });
    c.columns.forEach(function (col, j) {
      const x = left + j * cell + cell / 2, y = top - 8;
      svg.appendChild(el('text', { x: x, y: y, transform: 'rotate(-55 ' + x + ' ' + y + ')', class: 'label' }, col));
    });
    c.rows.forEach(function (row, i) {
      svg.appendChild(el('text', { x: left - 8, y: top + i * cell + cell * 0.62, 'text-anchor': 'end', class: 'label' }, row));
      c.columns.forEach(function (col, j) {
        const v = c.counts[i][j];
        const r = el('rect', {
          x: left + j * cell, y: top + i * cell, width: cell - 2, height: cell - 2, rx: 3,
          class: 'cell', fill: color(v / max, row === col), 'data-row': row, 'data-col': col, 'data-count': v
        });
        r.appendChild(el('title', {}, row + ' \u2192 ' + col + ': ' + v));
        svg.appendChild(r);
        if (v > 0) svg.appendChild(el('text', { x: left + j * cell + cell / 2 - 1, y: top + i * cell + cell * 0.62, 'text-anchor': 'middle', class: 'count' }, String(v)));
      });
    });
    return svg;
  }
  function histogram(values) {
    const w = 740, h = 260, left = 50, bottom = 40, top = 10, bins = 30, right = 30;
    const svg = el('svg', { id: 'latency-svg', width: w, height: h, viewBox: '0 0 ' + w + ' ' + h, role: 'img' });
    svg.appendChild(el('title', {}, 'Latency histogram (ms)'));
    if (values.length === 0) { svg.appendChild(el('text', { x: left, y: h / 2, class: 'axis' }, 'no latencies')); return svg; }
    const sorted = values.slice().sort(function (a, b) { return a - b; });
    const hi = Math.max(sorted[Math.min(sorted.length - 1, Math.ceil(0.99 * sorted.length) - 1)], 1e-3);
    const width = hi / bins, counts = new Array(bins).fill(0);
    sorted.forEach(function (v) { counts[Math.min(bins - 1, Math.floor(v / width))] += 1; });
    const max = Math.max.apply(null, counts), bw = (w - left - right) / bins;
    counts.forEach(function (n, i) {
      const bh = (h - bottom - top) * n / max;
      const r = el('rect', { x: left + i * bw, y: h - bottom - bh, width: Math.max(bw - 2, 1), height: bh, class: 'bar', 'data-count': n });
      r.appendChild(el('title', {}, (i * width).toFixed(1) + '\u2013' + ((i + 1) * width).toFixed(1) + ' ms: ' + n + (i === bins - 1 ? ' (and slower)' : '')));
      svg.appendChild(r);
    });
    svg.appendChild(el('line', { x1: left, y1: h - bottom, x2: w - right, y2: h - bottom, stroke: '#9aa5b1' }));
    [0, 0.25, 0.5, 0.75, 1].forEach(function (f) {
      svg.appendChild(el('text', { x: left + f * (w - left - right), y: h - bottom + 16, 'text-anchor': 'middle', class: 'axis' }, (f * hi).toFixed(1)));
    });
    svg.appendChild(el('text', { x: (w + left) / 2, y: h - 6, 'text-anchor': 'middle', class: 'axis' }, 'latency (ms); the last bar holds everything slower'));
    svg.appendChild(el('text', { x: 10, y: top + 10, class: 'axis' }, String(max)));
    return svg;
  }
  document.getElementById('heatmap').appendChild(heatmap(data.confusion));
  document.getElementById('latency').appendChild(histogram(data.latencies));
})();
"#;

/// Renders the report as a self-contained HTML page.
pub fn html(report: &Report) -> String {
    let m = report.overall();
    let mut body = format!(
        "<h1>Evaluation: {}</h1>\n<p class=\"meta\">Router: <b>{}</b> · config: {} · {} cases in {:.1} s</p>\n",
        esc(&report.dataset),
        esc(&report.router),
        esc(&report.config),
        m.cases,
        report.duration_s
    );
    body.push_str("<h2>Summary</h2>\n<table><tbody>\n");
    for (k, v) in headline(m) {
        body.push_str(&format!("<tr><th>{}</th><td>{}</td></tr>\n", esc(&k), esc(&v)));
    }
    body.push_str("</tbody></table>\n");
    if !report.summary.tags.is_empty() {
        body.push_str("<h2>Per tag</h2>\n<table><thead><tr><th>tag</th><th>cases</th><th>routing</th><th>governance</th><th>trajectory</th><th>answers</th><th>recall</th><th>p50 ms</th></tr></thead><tbody>\n");
        for (tag, t) in &report.summary.tags {
            body.push_str(&format!(
                "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{:.1}</td></tr>\n",
                esc(tag),
                t.cases,
                esc(&rate(&t.routing)),
                esc(&rate(&t.governance)),
                esc(&rate(&t.trajectory)),
                esc(&rate(&t.answer)),
                esc(&pct(t.recall.pct)),
                t.latency_ms.p50
            ));
        }
        body.push_str("</tbody></table>\n");
    }
    if !m.agents.is_empty() {
        body.push_str("<h2>Per agent</h2>\n<table><thead><tr><th>agent</th><th>precision</th><th>recall</th><th>right</th><th>wrongly routed there</th><th>missed</th></tr></thead><tbody>\n");
        for (agent, s) in &m.agents {
            let name = if agent == CLARIFY { "clarify" } else { agent.as_str() };
            body.push_str(&format!(
                "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>\n",
                esc(name),
                pct(s.precision_pct),
                pct(s.recall_pct),
                s.true_positives,
                s.false_positives,
                s.false_negatives
            ));
        }
        body.push_str("</tbody></table>\n");
    }
    body.push_str("<h2>Confusion matrix</h2>\n<p class=\"meta\">Rows: the expected agent; columns: where the router sent the question. Green: right; red: wrong.</p>\n<div class=\"chart\" id=\"heatmap\"></div>\n");
    body.push_str("<h2>Latency</h2>\n<div class=\"chart\" id=\"latency\"></div>\n");
    let failed: Vec<_> = report.cases.iter().filter(|r| !r.passed()).collect();
    body.push_str(&format!("<h2>Failed cases ({})</h2>\n", failed.len()));
    if failed.is_empty() {
        body.push_str("<p>None.</p>\n");
    } else {
        body.push_str("<table class=\"failed\" id=\"failed\"><thead><tr><th>line</th><th>id</th><th>as</th><th>question</th><th>expected</th><th>routed</th><th>what failed</th></tr></thead><tbody>\n");
        for r in failed.iter().take(MAX_FAILED) {
            let expected = if r.expected_agents.is_empty() {
                "clarify".to_string()
            } else {
                r.expected_agents.join(", ")
            };
            let routed = if r.routed.is_empty() { r.status.clone() } else { r.routed.join(", ") };
            body.push_str(&format!(
                "<tr><td class=\"num\">{}</td><td>{}</td><td>{}</td><td class=\"q\">{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
                r.line,
                esc(&r.id),
                esc(&r.as_user),
                esc(&r.question),
                esc(&expected),
                esc(&routed),
                esc(&r.failure_summary())
            ));
        }
        body.push_str("</tbody></table>\n");
        if failed.len() > MAX_FAILED {
            body.push_str(&format!("<p>… and {} more in report.json.</p>\n", failed.len() - MAX_FAILED));
        }
    }
    let latencies: Vec<f64> = report
        .cases
        .iter()
        .filter(|r| r.error.is_none())
        .map(|r| (r.latency_ms * 1000.0).round() / 1000.0)
        .collect();
    let data = json!({"confusion": report.summary.confusion, "latencies": latencies});
    // `</` inside the JSON would end the script element early.
    let data = data.to_string().replace("</", "<\\/");
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>Evaluation: {}</title>\n<style>{STYLE}</style></head>\n<body>\n{body}<script type=\"application/json\" id=\"eval-data\">{data}</script>\n<script>{SCRIPT}</script>\n</body></html>\n",
        esc(&report.dataset)
    )
}

/// Escapes text for HTML element content and attribute values.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
