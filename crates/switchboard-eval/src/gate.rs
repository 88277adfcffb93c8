//! The regression gate: compares a run with a baseline report and lists every metric that fell
//! by more than the allowed number of percentage points. Latency is not gated: it depends on the
//! machine, and the gate must give the same verdict on any of them.

use crate::metrics::{CLARIFY, Metrics};
use crate::report::Report;
use std::fmt;

/// One metric that fell too far.
#[derive(Debug, Clone, PartialEq)]
pub struct Regression {
    /// Which metric (`routing accuracy`, `recall of agent sales`, `routing accuracy [tag paraphrase]`).
    pub metric: String,
    /// Its baseline value, in percent.
    pub baseline: f64,
    /// Its value now, in percent.
    pub current: f64,
}

impl Regression {
    /// How many points it fell.
    pub fn drop(&self) -> f64 {
        self.baseline - self.current
    }
}

impl fmt::Display for Regression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {:.1}% → {:.1}% (−{:.1} points)",
            self.metric,
            self.baseline,
            self.current,
            self.drop()
        )
    }
}

/// Every gated metric of `current` that is more than `max_points` below `baseline`. Metrics
/// missing on either side (no case had that check) are not compared.
pub fn compare(baseline: &Report, current: &Report, max_points: f64) -> Vec<Regression> {
    let mut out = Vec::new();
    compare_metrics(&baseline.summary.overall, &current.summary.overall, "", max_points, &mut out);
    for (tag, base) in &baseline.summary.tags {
        if let Some(now) = current.summary.tags.get(tag) {
            compare_metrics(base, now, &format!(" [tag {tag}]"), max_points, &mut out);
        }
    }
    out
}

fn compare_metrics(base: &Metrics, now: &Metrics, suffix: &str, max_points: f64, out: &mut Vec<Regression>) {
    let mut check = |metric: String, b: Option<f64>, c: Option<f64>| {
        if let (Some(baseline), Some(current)) = (b, c)
            && baseline - current > max_points + 1e-9
        {
            out.push(Regression { metric, baseline, current });
        }
    };
    check(format!("routing accuracy{suffix}"), base.routing.pct, now.routing.pct);
    check(format!("governance expectations met{suffix}"), base.governance.pct, now.governance.pct);
    check(format!("trajectory match{suffix}"), base.trajectory.pct, now.trajectory.pct);
    check(format!("answer pass rate{suffix}"), base.answer.pct, now.answer.pct);
    check(format!("judge pass rate{suffix}"), base.judge.pct, now.judge.pct);
    check(format!("retrieval recall@{}{suffix}", base.recall.k), base.recall.pct, now.recall.pct);
    // Per agent only overall: per tag it repeats the same signal in smaller samples.
    if suffix.is_empty() {
        for (agent, b) in &base.agents {
            let Some(c) = now.agents.get(agent) else { continue };
            let name = if agent == CLARIFY { "clarify".to_string() } else { format!("agent {agent}") };
            check(format!("recall of {name}"), b.recall_pct, c.recall_pct);
            check(format!("precision of {name}"), b.precision_pct, c.precision_pct);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{AgentScore, Rate, Summary};

    fn report(routing: f64, agent_recall: f64) -> Report {
        let mut m = Metrics { routing: Rate { total: 10, met: 0, pct: Some(routing) }, ..Metrics::default() };
        m.agents
            .insert("sales".into(), AgentScore { recall_pct: Some(agent_recall), ..AgentScore::default() });
        Report {
            version: 1,
            dataset: "d".into(),
            config: "c".into(),
            router: "r".into(),
            created_unix: 0,
            duration_s: 0.0,
            concurrency: 1,
            summary: Summary { overall: m, ..Summary::default() },
            cases: Vec::new(),
        }
    }

    #[test]
    fn drops_beyond_the_allowance_are_named() {
        let found = compare(&report(90.0, 100.0), &report(88.0, 50.0), 2.5);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].metric, "recall of agent sales");
        assert!(found[0].to_string().contains("−50.0 points"), "{}", found[0]);
        assert_eq!(compare(&report(90.0, 100.0), &report(87.0, 100.0), 2.5)[0].metric, "routing accuracy");
        assert!(compare(&report(90.0, 100.0), &report(95.0, 100.0), 0.0).is_empty());
    }
}
