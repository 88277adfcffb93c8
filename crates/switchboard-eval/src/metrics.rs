//! Aggregating case results into metrics: overall, per tag and per agent, plus the confusion
//! matrix. Rates are percentages (0–100), so the regression gate speaks in points.

use crate::result::CaseResult;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The label of a clarification in per-agent scores and the confusion matrix.
pub const CLARIFY: &str = "(clarify)";
/// The routed label of a case whose routing failed or that could not run.
pub const NONE: &str = "(none)";
/// The routed label of an expected agent the router left out of a multi-agent route.
pub const MISSED: &str = "(missed)";
/// The expected label of an agent the router added to a route that did not need it.
pub const EXTRA: &str = "(extra)";

/// A share of cases meeting a check.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Rate {
    /// Cases the check applies to.
    pub total: usize,
    /// Cases meeting it.
    pub met: usize,
    /// `met / total` in percent; `None` when no case has the check.
    pub pct: Option<f64>,
}

impl Rate {
    fn of(met: usize, total: usize) -> Self {
        Self { total, met, pct: (total > 0).then(|| 100.0 * met as f64 / total as f64) }
    }
}

/// Latency percentiles, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Mean.
    pub mean: f64,
    /// Slowest.
    pub max: f64,
}

/// LLM calls and tokens, in total and per case.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LlmTotals {
    /// Completions.
    pub calls: u64,
    /// Prompt tokens.
    pub input_tokens: u64,
    /// Completion tokens.
    pub output_tokens: u64,
    /// Calls per case.
    pub calls_per_case: f64,
    /// Tokens (prompt + completion) per case.
    pub tokens_per_case: f64,
    /// Total cost, when every model called has a price.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<f64>,
    /// Tokens the judge spent (not part of the system's).
    pub judge_tokens: u64,
}

/// Precision and recall of one agent (or of clarifying).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentScore {
    /// Routed there and expected there.
    pub true_positives: usize,
    /// Routed there, not expected.
    pub false_positives: usize,
    /// Expected there, not routed.
    pub false_negatives: usize,
    /// Percent of routes to it that were right.
    pub precision_pct: Option<f64>,
    /// Percent of the cases expecting it that reached it.
    pub recall_pct: Option<f64>,
}

/// Retrieval recall@k over the cases that expect cited documents.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Recall {
    /// k.
    pub k: usize,
    /// Cases with expected documents.
    pub cases: usize,
    /// Mean recall in percent.
    pub pct: Option<f64>,
}

/// The metrics of a set of cases.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Cases.
    pub cases: usize,
    /// Cases passing every check.
    pub passed: usize,
    /// Cases that could not run.
    pub errors: usize,
    /// Routed to the expected agents (or clarified when expected).
    pub routing: Rate,
    /// Governance: the expected outcome (ok, clarify, denied, rate_limited) happened.
    pub governance: Rate,
    /// Tool trajectories matched.
    pub trajectory: Rate,
    /// Answers passing every deterministic check.
    pub answer: Rate,
    /// Answers the LLM judge passed.
    pub judge: Rate,
    /// Retrieval recall@k.
    pub recall: Recall,
    /// Latency.
    pub latency_ms: Latency,
    /// LLM usage.
    pub llm: LlmTotals,
    /// Per agent (and `(clarify)`).
    pub agents: BTreeMap<String, AgentScore>,
}

/// Expected × routed counts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Confusion {
    /// Expected labels (rows): agents, `(clarify)`, `(extra)`.
    pub rows: Vec<String>,
    /// Routed labels (columns): agents, `(clarify)`, `(missed)`, `(none)`.
    pub columns: Vec<String>,
    /// `counts[row][column]`.
    pub counts: Vec<Vec<usize>>,
}

/// Everything a report states about a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// All cases.
    pub overall: Metrics,
    /// Cases carrying each tag.
    pub tags: BTreeMap<String, Metrics>,
    /// The confusion matrix over all cases.
    pub confusion: Confusion,
}

/// Summarizes `results`; `k` is recall@k's k.
pub fn summarize(results: &[CaseResult], k: usize) -> Summary {
    let all: Vec<&CaseResult> = results.iter().collect();
    let mut by_tag: BTreeMap<String, Vec<&CaseResult>> = BTreeMap::new();
    for r in results {
        for t in &r.tags {
            by_tag.entry(t.clone()).or_default().push(r);
        }
    }
    Summary {
        overall: metrics(&all, k),
        tags: by_tag.into_iter().map(|(t, rs)| (t, metrics(&rs, k))).collect(),
        confusion: confusion(results),
    }
}

/// The expected and routed labels of a case, as the per-agent scores count them.
fn labels(r: &CaseResult) -> (Vec<String>, Vec<String>) {
    let expected =
        if r.expected_agents.is_empty() { vec![CLARIFY.to_string()] } else { dedup(&r.expected_agents) };
    let routed = if r.status == "clarify" {
        vec![CLARIFY.to_string()]
    } else if r.routed.is_empty() {
        vec![NONE.to_string()]
    } else {
        dedup(&r.routed)
    };
    (expected, routed)
}

fn dedup(v: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for x in v {
        if !out.contains(x) {
            out.push(x.clone());
        }
    }
    out
}

fn metrics(results: &[&CaseResult], k: usize) -> Metrics {
    let n = results.len();
    let count = |f: &dyn Fn(&CaseResult) -> Option<bool>| {
        let applicable: Vec<bool> = results.iter().filter_map(|r| f(r)).collect();
        Rate::of(applicable.iter().filter(|b| **b).count(), applicable.len())
    };
    let recalls: Vec<f64> = results.iter().filter_map(|r| r.checks.recall).collect();
    let mut latencies: Vec<f64> =
        results.iter().filter(|r| r.error.is_none()).map(|r| r.latency_ms).collect();
    latencies.sort_by(f64::total_cmp);
    let mut llm = LlmTotals { cost: Some(0.0), ..LlmTotals::default() };
    for r in results {
        llm.calls += r.llm.calls;
        llm.input_tokens += r.llm.input_tokens;
        llm.output_tokens += r.llm.output_tokens;
        llm.judge_tokens += r.checks.judge.as_ref().map_or(0, |v| v.tokens);
        llm.cost = match (llm.cost, r.llm.cost, r.llm.calls) {
            (Some(total), Some(c), _) => Some(total + c),
            (Some(total), None, 0) => Some(total),
            _ => None,
        };
    }
    if llm.calls == 0 {
        llm.cost = None;
    }
    if n > 0 {
        llm.calls_per_case = llm.calls as f64 / n as f64;
        llm.tokens_per_case = (llm.input_tokens + llm.output_tokens) as f64 / n as f64;
    }
    let mut agents: BTreeMap<String, AgentScore> = BTreeMap::new();
    for r in results {
        let (expected, routed) = labels(r);
        for e in &expected {
            let score = agents.entry(e.clone()).or_default();
            if routed.contains(e) {
                score.true_positives += 1;
            } else {
                score.false_negatives += 1;
            }
        }
        for x in routed.iter().filter(|x| !expected.contains(x) && x.as_str() != NONE) {
            agents.entry(x.clone()).or_default().false_positives += 1;
        }
    }
    for s in agents.values_mut() {
        let pct = |a: usize, b: usize| (a + b > 0).then(|| 100.0 * a as f64 / (a + b) as f64);
        s.precision_pct = pct(s.true_positives, s.false_positives);
        s.recall_pct = pct(s.true_positives, s.false_negatives);
    }
    Metrics {
        cases: n,
        passed: results.iter().filter(|r| r.passed()).count(),
        errors: results.iter().filter(|r| r.error.is_some()).count(),
        routing: count(&|r| Some(r.checks.routing)),
        governance: count(&|r| Some(r.checks.outcome)),
        trajectory: count(&|r| r.checks.trajectory),
        answer: count(&|r| r.checks.answer),
        judge: count(&|r| r.checks.judge.as_ref().map(|v| v.pass)),
        recall: Recall {
            k,
            cases: recalls.len(),
            pct: (!recalls.is_empty()).then(|| 100.0 * recalls.iter().sum::<f64>() / recalls.len() as f64),
        },
        latency_ms: latency(&latencies),
        llm,
        agents,
    }
}

fn latency(sorted: &[f64]) -> Latency {
    if sorted.is_empty() {
        return Latency::default();
    }
    // Nearest rank: the smallest value with at least p% of the samples at or below it.
    let rank =
        |p: f64| sorted[((p / 100.0 * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1];
    Latency {
        p50: rank(50.0),
        p95: rank(95.0),
        p99: rank(99.0),
        mean: sorted.iter().sum::<f64>() / sorted.len() as f64,
        max: sorted[sorted.len() - 1],
    }
}

/// Expected × routed. A case routed exactly as expected adds one to the diagonal per agent; an
/// agent both expected and routed counts on the diagonal; the remaining expected agents pair with
/// the remaining routed ones in order, then with `(missed)`; leftover routed agents count in the
/// `(extra)` row.
pub fn confusion(results: &[CaseResult]) -> Confusion {
    let mut cells: BTreeMap<(String, String), usize> = BTreeMap::new();
    for r in results {
        let (expected, routed) = labels(r);
        let mut rest_e: Vec<&String> = Vec::new();
        for e in &expected {
            if routed.contains(e) {
                *cells.entry((e.clone(), e.clone())).or_default() += 1;
            } else {
                rest_e.push(e);
            }
        }
        let mut rest_r = routed.iter().filter(|x| !expected.contains(x));
        for e in rest_e {
            let col = rest_r.next().cloned().unwrap_or_else(|| MISSED.to_string());
            *cells.entry((e.clone(), col)).or_default() += 1;
        }
        for x in rest_r {
            *cells.entry((EXTRA.to_string(), x.clone())).or_default() += 1;
        }
    }
    let order = |labels: Vec<&String>| {
        let mut v: Vec<String> = labels.into_iter().cloned().collect();
        v.sort_by_key(|l| (l.starts_with('('), l.clone()));
        v.dedup();
        v
    };
    let rows = order(cells.keys().map(|(e, _)| e).collect());
    let mut columns = order(cells.keys().map(|(_, c)| c).collect());
    // Every expected agent also gets its column, so the diagonal lines up.
    let missing: Vec<String> =
        rows.iter().filter(|r| !columns.contains(r) && r.as_str() != EXTRA).cloned().collect();
    columns.extend(missing);
    columns.sort_by_key(|l| (l.starts_with('('), l.clone()));
    let counts = rows
        .iter()
        .map(|e| columns.iter().map(|c| cells.get(&(e.clone(), c.clone())).copied().unwrap_or(0)).collect())
        .collect();
    Confusion { rows, columns, counts }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::case::Outcome;
    use crate::result::Checks;

    fn result(expected: &[&str], routed: &[&str], status: &str, latency_ms: f64) -> CaseResult {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let routing = if expected.is_empty() { status == "clarify" } else { s(expected) == s(routed) };
        CaseResult {
            id: format!("c{latency_ms}"),
            line: 1,
            tags: vec!["t".into()],
            question: "q".into(),
            as_user: "a".into(),
            expected_agents: s(expected),
            expected_outcome: if expected.is_empty() { Outcome::Clarify } else { Outcome::Ok },
            request_id: String::new(),
            status: status.into(),
            outcome: status.into(),
            routed: s(routed),
            answer: String::new(),
            tools: Vec::new(),
            cited: Vec::new(),
            steps: Vec::new(),
            latency_ms,
            llm: Default::default(),
            checks: Checks { routing, outcome: true, ..Checks::default() },
            error: None,
        }
    }

    #[test]
    fn accuracy_precision_recall_and_confusion() {
        let results = [
            result(&["sales"], &["sales"], "ok", 1.0),
            result(&["sales"], &["policies"], "ok", 2.0),
            result(&[], &[], "clarify", 3.0),
            result(&["policies"], &[], "clarify", 4.0),
            result(&["sales", "deal_desk"], &["sales"], "ok", 100.0),
        ];
        let summary = summarize(&results, 5);
        let m = &summary.overall;
        assert_eq!((m.routing.met, m.routing.total), (2, 5));
        assert_eq!(m.routing.pct, Some(40.0));
        let sales = m.agents["sales"];
        assert_eq!((sales.true_positives, sales.false_positives, sales.false_negatives), (2, 0, 1));
        let clarify = m.agents[CLARIFY];
        assert_eq!((clarify.true_positives, clarify.false_positives), (1, 1));
        assert_eq!(m.latency_ms.p50, 3.0);
        assert_eq!(m.latency_ms.p99, 100.0);
        let c = &summary.confusion;
        let at = |e: &str, r: &str| {
            let i = c.rows.iter().position(|x| x == e).expect("row");
            let j = c.columns.iter().position(|x| x == r).expect("column");
            c.counts[i][j]
        };
        assert_eq!(at("sales", "sales"), 2);
        assert_eq!(at("sales", "policies"), 1);
        assert_eq!(at("policies", CLARIFY), 1);
        assert_eq!(at(CLARIFY, CLARIFY), 1);
        assert_eq!(at("deal_desk", MISSED), 1);
        assert_eq!(summary.tags["t"].cases, 5);
    }
}
