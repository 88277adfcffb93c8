//! What one case produced: what happened, what was checked, and whether it passed. Serialized
//! one per line into `results.jsonl` as cases finish, which is what an interrupted run resumes
//! from, and embedded in the reports.

use crate::case::{Case, Outcome};
use serde::{Deserialize, Serialize};

/// The result of running one case.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CaseResult {
    /// The case id.
    pub id: String,
    /// Its line in the dataset.
    pub line: usize,
    /// Its tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// The question asked.
    pub question: String,
    /// Who asked.
    #[serde(rename = "as")]
    pub as_user: String,
    /// The agents expected.
    #[serde(default)]
    pub expected_agents: Vec<String>,
    /// The outcome expected.
    pub expected_outcome: Outcome,
    /// The request id of the run (join key of its spans and audit rows).
    #[serde(default)]
    pub request_id: String,
    /// The run's status: `ok`, `clarify`, `denied` or `error`.
    pub status: String,
    /// The outcome observed: `ok`, `clarify`, `denied`, `rate_limited` or `error`.
    pub outcome: String,
    /// The agents the router proposed, first-seen order, each once; empty for a clarification.
    #[serde(default)]
    pub routed: Vec<String>,
    /// The answer (capped).
    #[serde(default)]
    pub answer: String,
    /// The tool calls made, in start order.
    #[serde(default)]
    pub tools: Vec<String>,
    /// The documents cited, first-cited order, each once.
    #[serde(default)]
    pub cited: Vec<String>,
    /// The sub-agent calls.
    #[serde(default)]
    pub steps: Vec<StepSummary>,
    /// Wall time of the run, in milliseconds.
    pub latency_ms: f64,
    /// LLM calls made by the run (not by the judge).
    #[serde(default)]
    pub llm: LlmUsage,
    /// The checks.
    pub checks: Checks,
    /// Why the case could not run at all (unknown identity, a panic), if it could not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One sub-agent call of a run, as reported.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepSummary {
    /// The agent.
    pub agent: String,
    /// `ok`, `denied` or `error`.
    pub status: String,
    /// Why it was denied or failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// LLM calls and tokens.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LlmUsage {
    /// Completions requested.
    pub calls: u64,
    /// Prompt tokens.
    pub input_tokens: u64,
    /// Completion tokens.
    pub output_tokens: u64,
    /// Cost, when every model called has a price in `[eval.prices]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<f64>,
}

/// The LLM judge's verdict on one answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// Whether the answer meets the rubric.
    pub pass: bool,
    /// The judge's reason, or why it could not judge.
    pub reason: String,
    /// The judge's own tokens (prompt + completion), not counted as the run's.
    #[serde(default)]
    pub tokens: u64,
}

/// Each check of a case; `None` where the case expects nothing of that kind.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Checks {
    /// The router proposed the expected agents (or a clarification, when one was expected).
    pub routing: bool,
    /// The expected outcome (`ok`, `clarify`, `denied`, `rate_limited`) happened.
    pub outcome: bool,
    /// The tool calls match `expect.tools`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trajectory: Option<bool>,
    /// Every deterministic answer check passed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<bool>,
    /// Which answer checks failed, and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub answer_failures: Vec<String>,
    /// Share of the expected documents among the first k cited, in [0, 1].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recall: Option<f64>,
    /// The LLM judge's verdict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judge: Option<Verdict>,
}

impl CaseResult {
    /// A case that could not run: every check fails.
    pub fn failed(case: &Case, as_user: &str, error: String) -> Self {
        let expect = &case.expect;
        Self {
            id: case.id.clone(),
            line: case.line,
            tags: case.tags.clone(),
            question: case.question.clone(),
            as_user: as_user.to_string(),
            expected_agents: expect.agents.clone(),
            expected_outcome: expect.outcome,
            request_id: String::new(),
            status: "error".into(),
            outcome: "error".into(),
            routed: Vec::new(),
            answer: String::new(),
            tools: Vec::new(),
            cited: Vec::new(),
            steps: Vec::new(),
            latency_ms: 0.0,
            llm: LlmUsage::default(),
            checks: Checks {
                routing: false,
                outcome: false,
                trajectory: expect.tools.as_ref().map(|_| false),
                answer: expect.answer.as_ref().map(|_| false),
                answer_failures: Vec::new(),
                recall: expect.answer.as_ref().filter(|a| !a.cites.is_empty()).map(|_| 0.0),
                judge: None,
            },
            error: Some(error),
        }
    }

    /// Whether every applicable check passed.
    pub fn passed(&self) -> bool {
        let c = &self.checks;
        self.error.is_none()
            && c.routing
            && c.outcome
            && c.trajectory != Some(false)
            && c.answer != Some(false)
            && c.judge.as_ref().is_none_or(|v| v.pass)
    }

    /// What failed, in a few words, for the failed-cases tables.
    pub fn failure_summary(&self) -> String {
        if let Some(e) = &self.error {
            return format!("could not run: {e}");
        }
        let c = &self.checks;
        let mut parts = Vec::new();
        if !c.routing {
            let expected = if self.expected_agents.is_empty() {
                "clarify".into()
            } else {
                self.expected_agents.join(", ")
            };
            let got = if self.routed.is_empty() { self.status.clone() } else { self.routed.join(", ") };
            parts.push(format!("routed to {got}, expected {expected}"));
        }
        if !c.outcome {
            parts.push(format!("outcome {}, expected {}", self.outcome, self.expected_outcome.as_str()));
        }
        if c.trajectory == Some(false) {
            parts.push(format!("tools [{}]", self.tools.join(", ")));
        }
        parts.extend(c.answer_failures.iter().cloned());
        if let Some(v) = c.judge.as_ref().filter(|v| !v.pass) {
            parts.push(format!("judge: {}", v.reason));
        }
        parts.join("; ")
    }
}
