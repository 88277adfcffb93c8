//! The dataset format: one JSON case per line, validated line by line so every bad line is
//! reported with its number and field, and none is skipped silently.

use regex::Regex;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashSet;
use std::fmt;
use std::path::Path;
use switchboard_core::Message;

/// One evaluation case.
#[derive(Debug, Clone, Serialize)]
pub struct Case {
    /// Unique id within the dataset; results and resumption key on it.
    pub id: String,
    /// 1-based line in the dataset file (0 for cases built in code).
    pub line: usize,
    /// The new question.
    pub question: String,
    /// Earlier turns, oldest first (from `messages`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<Turn>,
    /// The development identity the case runs as; `None` means the first one configured.
    #[serde(rename = "as", skip_serializing_if = "Option::is_none")]
    pub as_user: Option<String>,
    /// What should happen.
    pub expect: Expect,
    /// Free labels; metrics are also reported per tag.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

/// One earlier turn of a multi-turn case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Turn {
    /// `user` or `assistant`.
    pub role: String,
    /// Its text.
    pub content: String,
}

impl Turn {
    /// The runtime's message for this turn.
    pub fn to_message(&self) -> Message {
        if self.role == "assistant" {
            Message::assistant(self.content.clone(), None)
        } else {
            Message::user(&self.content)
        }
    }
}

/// How expected agents are compared with the routed ones.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentsMatch {
    /// The same agents, in any order.
    #[default]
    Set,
    /// The same agents in the same order.
    Ordered,
}

/// How a run is expected to end.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// An agent answered.
    #[default]
    Ok,
    /// The supervisor asked a clarifying question.
    Clarify,
    /// Policy denied an agent the router proposed.
    Denied,
    /// A rate limit refused a call.
    RateLimited,
}

impl Outcome {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Clarify => "clarify",
            Self::Denied => "denied",
            Self::RateLimited => "rate_limited",
        }
    }
}

/// What a case expects. Every part is optional.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Expect {
    /// The agents the question should be routed to (empty for a clarification).
    pub agents: Vec<String>,
    /// Set or ordered comparison.
    pub agents_match: AgentsMatch,
    /// The expected outcome.
    pub outcome: Outcome,
    /// The expected tool calls.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tools: Option<ToolsExpect>,
    /// Checks on the answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answer: Option<AnswerExpect>,
}

/// How an expected tool trajectory is compared with the calls made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrajectoryMatch {
    /// Exactly these calls, in this order, and no others.
    Exact,
    /// These calls in this order, others allowed in between.
    #[default]
    InOrder,
    /// These calls in any order, others allowed.
    AnyOrder,
}

/// `expect.tools`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolsExpect {
    /// Tool names (MCP tools, SQL tools, the SQL objects queried).
    pub calls: Vec<String>,
    /// How to compare.
    #[serde(default, rename = "match")]
    pub mode: TrajectoryMatch,
}

/// Whether all expected citations are needed or one is enough.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CitesMatch {
    /// Every listed document must be cited.
    #[default]
    All,
    /// At least one listed document must be cited.
    Any,
}

/// `expect.answer.number`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NumberExpect {
    /// The expected number.
    pub value: f64,
    /// Allowed absolute difference.
    #[serde(default)]
    pub tolerance: f64,
}

/// `expect.answer`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnswerExpect {
    /// Substrings the answer must contain (case-insensitive).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub contains: Vec<String>,
    /// A regular expression the answer must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
    /// The whole answer, trimmed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equals: Option<String>,
    /// A number the answer must contain, within a tolerance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number: Option<NumberExpect>,
    /// Document ids the answer must cite; they also give retrieval recall@k.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cites: Vec<String>,
    /// Whether all of `cites` must be cited, or one.
    #[serde(default)]
    pub cites_match: CitesMatch,
    /// A rubric for the LLM judge, used when `[eval.judge]` names a model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judge: Option<String>,
}

/// A problem with one line of a dataset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    /// 1-based line number.
    pub line: usize,
    /// The field (dotted), or empty for the line as a whole.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "line {}: {}", self.line, self.message)
        } else {
            write!(f, "line {}: {}: {}", self.line, self.field, self.message)
        }
    }
}

/// Every problem found in a dataset.
#[derive(Debug, Clone)]
pub struct DatasetErrors {
    /// The dataset's path, as given.
    pub path: String,
    /// The problems, in line order.
    pub errors: Vec<LineError>,
}

impl fmt::Display for DatasetErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.errors.len();
        writeln!(f, "{}: {n} bad line{}:", self.path, if n == 1 { "" } else { "s" })?;
        for e in self.errors.iter().take(50) {
            writeln!(f, "  {e}")?;
        }
        if n > 50 {
            writeln!(f, "  … and {} more", n - 50)?;
        }
        Ok(())
    }
}

impl std::error::Error for DatasetErrors {}

/// Reads and validates a JSONL dataset. Blank lines and lines starting with `//` are skipped;
/// every other line must be a valid case.
pub fn load(path: &Path) -> Result<Vec<Case>, DatasetErrors> {
    let label = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| DatasetErrors {
        path: label.clone(),
        errors: vec![LineError { line: 0, field: String::new(), message: format!("cannot be read: {e}") }],
    })?;
    parse(&text).map_err(|errors| DatasetErrors { path: label, errors })
}

/// Parses a dataset's text: every case, or every problem.
pub fn parse(text: &str) -> Result<Vec<Case>, Vec<LineError>> {
    let mut cases = Vec::new();
    let mut errors = Vec::new();
    let mut ids = HashSet::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with("//") {
            continue;
        }
        match parse_line(trimmed, line) {
            Ok(case) => {
                if !ids.insert(case.id.clone()) {
                    errors.push(LineError {
                        line,
                        field: "id".into(),
                        message: format!("`{}` is used by an earlier line; ids must be unique", case.id),
                    });
                } else {
                    cases.push(case);
                }
            }
            Err(e) => errors.extend(e),
        }
    }
    if cases.is_empty() && errors.is_empty() {
        errors.push(LineError { line: 0, field: String::new(), message: "the dataset has no cases".into() });
    }
    if errors.is_empty() { Ok(cases) } else { Err(errors) }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCase {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    question: Option<String>,
    #[serde(default)]
    messages: Option<Vec<Turn>>,
    #[serde(default, rename = "as")]
    as_user: Option<String>,
    #[serde(default)]
    expect: Option<Value>,
    #[serde(default)]
    tags: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExpect {
    #[serde(default)]
    agents: Vec<String>,
    #[serde(default)]
    agents_match: AgentsMatch,
    #[serde(default)]
    outcome: Outcome,
    #[serde(default)]
    tools: Option<Value>,
    #[serde(default)]
    answer: Option<Value>,
}

/// Deserializes `value` as `T`, naming `field` in the error.
fn section<T: DeserializeOwned>(value: Value, line: usize, field: &str) -> Result<T, LineError> {
    serde_json::from_value(value).map_err(|e| LineError { line, field: field.into(), message: e.to_string() })
}

fn parse_line(text: &str, line: usize) -> Result<Case, Vec<LineError>> {
    let err = |field: &str, message: String| LineError { line, field: field.into(), message };
    let value: Value =
        serde_json::from_str(text).map_err(|e| vec![err("", format!("is not valid JSON: {e}"))])?;
    if !value.is_object() {
        return Err(vec![err("", "must be a JSON object (one case per line)".into())]);
    }
    let raw: RawCase = section(value, line, "").map_err(|e| vec![e])?;
    let mut errors = Vec::new();
    let id = match raw.id.map(|s| s.trim().to_string()) {
        Some(id) if !id.is_empty() => id,
        Some(_) => {
            errors.push(err("id", "must not be empty".into()));
            String::new()
        }
        None => format!("line-{line}"),
    };
    let (question, history) = match (raw.question, raw.messages) {
        (Some(_), Some(_)) => {
            errors.push(err("question", "give `question` or `messages`, not both".into()));
            (String::new(), Vec::new())
        }
        (None, None) => {
            errors.push(err("question", "missing: give `question` (a string) or `messages`".into()));
            (String::new(), Vec::new())
        }
        (Some(q), None) => {
            if q.trim().is_empty() {
                errors.push(err("question", "must not be empty".into()));
            }
            (q, Vec::new())
        }
        (None, Some(mut messages)) => {
            for (i, m) in messages.iter().enumerate() {
                if m.role != "user" && m.role != "assistant" {
                    errors.push(err(
                        &format!("messages[{i}].role"),
                        format!("must be `user` or `assistant`, got `{}`", m.role),
                    ));
                }
            }
            match messages.pop() {
                Some(last) if last.role == "user" && !last.content.trim().is_empty() => {
                    (last.content, messages)
                }
                Some(_) => {
                    errors.push(err("messages", "the last message must be the user's new question".into()));
                    (String::new(), messages)
                }
                None => {
                    errors.push(err("messages", "must not be empty".into()));
                    (String::new(), messages)
                }
            }
        }
    };
    if raw.as_user.as_deref().is_some_and(|a| a.trim().is_empty()) {
        errors.push(err("as", "must not be empty (omit it for the first development identity)".into()));
    }
    let expect = match raw.expect {
        None => Expect::default(),
        Some(v) => parse_expect(v, line, &mut errors),
    };
    if errors.is_empty() {
        Ok(Case { id, line, question, history, as_user: raw.as_user, expect, tags: raw.tags })
    } else {
        Err(errors)
    }
}

fn parse_expect(value: Value, line: usize, errors: &mut Vec<LineError>) -> Expect {
    let raw: RawExpect = match section(value, line, "expect") {
        Ok(r) => r,
        Err(e) => {
            errors.push(e);
            return Expect::default();
        }
    };
    let err = |field: &str, message: &str| LineError { line, field: field.into(), message: message.into() };
    if raw.outcome == Outcome::Clarify && !raw.agents.is_empty() {
        errors.push(err("expect.agents", "must be empty when the expected outcome is `clarify`"));
    }
    if raw.outcome != Outcome::Clarify && raw.agents.is_empty() {
        errors
            .push(err("expect.agents", "name the agent(s) the question should reach (or expect `clarify`)"));
    }
    if raw.agents.iter().any(|a| a.trim().is_empty()) {
        errors.push(err("expect.agents", "agent names must not be empty"));
    }
    let tools = raw.tools.and_then(|v| match section::<ToolsExpect>(v, line, "expect.tools") {
        Ok(t) if t.calls.is_empty() => {
            errors.push(err("expect.tools.calls", "must list at least one tool"));
            None
        }
        Ok(t) => Some(t),
        Err(e) => {
            errors.push(e);
            None
        }
    });
    let answer = raw.answer.and_then(|v| match section::<AnswerExpect>(v, line, "expect.answer") {
        Ok(a) => {
            if let Some(re) = &a.regex
                && let Err(e) = Regex::new(re)
            {
                errors.push(err("expect.answer.regex", &format!("is not a valid regular expression: {e}")));
            }
            if a.number.is_some_and(|n| !n.value.is_finite() || n.tolerance.is_nan() || n.tolerance < 0.0) {
                errors.push(err("expect.answer.number", "value must be finite and tolerance at least 0"));
            }
            Some(a)
        }
        Err(e) => {
            errors.push(e);
            None
        }
    });
    Expect { agents: raw.agents, agents_match: raw.agents_match, outcome: raw.outcome, tools, answer }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_case_parses() {
        let text = r#"{"id": "s-1", "question": "how much did we book per region?", "as": "alice@example.com", "expect": {"agents": ["sales"], "agents_match": "set", "outcome": "ok", "tools": {"calls": ["deals"], "match": "in_order"}, "answer": {"contains": ["West"], "regex": "\\d+", "number": {"value": 42.0, "tolerance": 0.5}, "cites": ["doc"]}}, "tags": ["paraphrase"]}"#;
        let cases = parse(text).expect("valid");
        assert_eq!(cases[0].id, "s-1");
        assert_eq!(cases[0].expect.tools.as_ref().map(|t| t.mode), Some(TrajectoryMatch::InOrder));
        assert_eq!(cases[0].tags, ["paraphrase"]);
    }

    #[test]
    fn messages_become_history_and_question() {
        let text = r#"{"id": "f", "messages": [{"role": "user", "content": "revenue by rep"}, {"role": "assistant", "content": "..."}, {"role": "user", "content": "now the top 3"}], "expect": {"agents": ["sales"]}}"#;
        let case = &parse(text).expect("valid")[0];
        assert_eq!(case.question, "now the top 3");
        assert_eq!(case.history.len(), 2);
    }

    #[test]
    fn every_bad_line_is_reported_with_its_field() {
        let text = [
            r#"{"id": "a", "question": "q", "expect": {"agents": ["x"]}}"#,
            r#"{"id": "b", "question": "q", "expect": {"agnets": ["x"]}}"#,
            r#"not json"#,
            r#"{"id": "a", "question": "q", "expect": {"agents": ["x"]}}"#,
            r#"{"id": "c", "question": "q", "expect": {"agents": ["x"], "answer": {"regex": "("}}}"#,
            r#"{"id": "d", "question": "q", "expect": {"outcome": "maybe"}}"#,
            r#"{"id": "e", "messages": [{"role": "assistant", "content": "hi"}], "expect": {"outcome": "clarify"}}"#,
        ]
        .join("\n");
        let errors = parse(&text).expect_err("bad lines");
        let got: Vec<(usize, &str)> = errors.iter().map(|e| (e.line, e.field.as_str())).collect();
        assert_eq!(
            got,
            [(2, "expect"), (3, ""), (4, "id"), (5, "expect.answer.regex"), (6, "expect"), (7, "messages")]
        );
        assert!(errors[0].message.contains("agnets"), "{}", errors[0].message);
    }
}
