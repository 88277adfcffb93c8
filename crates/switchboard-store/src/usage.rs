//! Usage accounting (the gateway's chargeback table) and the audit query filter.
//!
//! A usage row is derived from each LLM hop span as the writer stores it, rather than queued as
//! a record of its own: the span already travels through the write queue, the spill file and the
//! replay, and it carries everything a usage row needs (caller, agent, model, tokens, timing, the
//! caller's `usage_context`). Keyed by the span id and inserted with `ON CONFLICT DO NOTHING`, a
//! replayed span never counts twice.

use serde::Serialize;
use switchboard_core::{Error, Result, SpanRecord, SpanStatus};

/// One row of the `usage` table: one LLM call.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UsageRow {
    /// The LLM hop's span id (the row's key).
    pub span_id: String,
    /// The request it belongs to.
    pub request_id: String,
    /// When the call finished, milliseconds since the epoch.
    pub ts_unix_ms: u64,
    /// The caller's email.
    pub caller_email: String,
    /// The caller's primary role (group).
    pub caller_role: String,
    /// The sub-agent (or the supervisor) that made the call.
    pub agent: String,
    /// The model actually used (`gen_ai.response.model` when the upstream named one, else the
    /// model asked for).
    pub model: String,
    /// Prompt (input) tokens; 0 when the upstream reported none.
    pub prompt_tokens: u64,
    /// Completion (output) tokens; 0 when the upstream reported none.
    pub completion_tokens: u64,
    /// How long the call took.
    pub latency_ms: u64,
    /// `success` or `error`.
    pub status: String,
    /// The caller's chargeback labels as JSON text, if it sent any.
    pub usage_context: Option<String>,
}

impl UsageRow {
    /// The usage row an LLM hop span stands for; `None` for every other span.
    pub fn from_span(span: &SpanRecord) -> Option<Self> {
        let attr = |key: &str| span.attributes.get(key);
        let text = |key: &str| attr(key).and_then(|v| v.as_str()).unwrap_or_default().to_string();
        if attr("switchboard.hop.kind").and_then(|v| v.as_str()) != Some("llm") {
            return None;
        }
        let tokens = |key: &str| attr(key).and_then(|v| v.as_u64()).unwrap_or(0);
        let model = attr("gen_ai.response.model")
            .and_then(|v| v.as_str())
            .filter(|m| !m.is_empty())
            .map(str::to_string)
            .unwrap_or_else(|| text("gen_ai.request.model"));
        Some(Self {
            span_id: span.span_id.clone(),
            request_id: span.request_id.clone(),
            ts_unix_ms: span.end_unix_nano / 1_000_000,
            caller_email: text("switchboard.caller.email"),
            caller_role: text("switchboard.caller.role"),
            agent: span.agent.clone().unwrap_or_default(),
            model,
            prompt_tokens: tokens("gen_ai.usage.input_tokens"),
            completion_tokens: tokens("gen_ai.usage.output_tokens"),
            latency_ms: span.end_unix_nano.saturating_sub(span.start_unix_nano) / 1_000_000,
            status: if span.status == SpanStatus::Error { "error" } else { "success" }.to_string(),
            usage_context: attr("switchboard.usage_context").filter(|v| v.is_object()).map(|v| v.to_string()),
        })
    }
}

/// What `switchboard usage --by` groups totals by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsageGroup {
    /// The caller's email.
    User,
    /// The caller's primary role.
    Group,
    /// The agent that made the call.
    Agent,
    /// The model used.
    Model,
}

impl UsageGroup {
    /// The accepted names, for error messages.
    pub const NAMES: &'static str = "user, group, agent, model";

    /// Parses `user`, `group`, `agent` or `model`.
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "user" => Ok(Self::User),
            "group" => Ok(Self::Group),
            "agent" => Ok(Self::Agent),
            "model" => Ok(Self::Model),
            other => {
                Err(Error::invalid(format!("--by: unknown grouping `{other}`; use one of {}", Self::NAMES)))
            }
        }
    }

    /// The `usage` column grouped by. A fixed set, never user input, so it may be spliced into SQL.
    pub(crate) fn column(self) -> &'static str {
        match self {
            Self::User => "caller_email",
            Self::Group => "caller_role",
            Self::Agent => "agent",
            Self::Model => "model",
        }
    }
}

/// Usage totals over one group (or over everything).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UsageTotal {
    /// The group's value (an email, role, agent or model); `None` for the grand total.
    pub key: Option<String>,
    /// Distinct requests.
    pub requests: u64,
    /// LLM calls.
    pub calls: u64,
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Completion tokens.
    pub completion_tokens: u64,
    /// Summed call latency, milliseconds.
    pub latency_ms: u64,
}

/// Without a grouping, an empty table still has a grand total: zeros, not nothing.
pub(crate) fn with_grand_total(mut totals: Vec<UsageTotal>, by: Option<UsageGroup>) -> Vec<UsageTotal> {
    if by.is_none() && totals.is_empty() {
        totals.push(UsageTotal {
            key: None,
            requests: 0,
            calls: 0,
            prompt_tokens: 0,
            completion_tokens: 0,
            latency_ms: 0,
        });
    }
    totals
}

/// The audit statuses a filter accepts (the `status` column's vocabulary).
pub const AUDIT_STATUSES: [&str; 5] = ["success", "error", "access_denied", "rate_limited", "blocked"];

/// Which audit rows to read. Empty fields match everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// Only rows at or after this time (milliseconds since the epoch).
    pub since_unix_ms: Option<u64>,
    /// Only this caller (email, compared case-insensitively).
    pub caller: Option<String>,
    /// Only this status, one of [`AUDIT_STATUSES`].
    pub status: Option<String>,
    /// Only this agent.
    pub agent: Option<String>,
    /// Only this request.
    pub request_id: Option<String>,
    /// At most this many rows, newest first.
    pub limit: usize,
}

impl AuditFilter {
    /// Checks the status against [`AUDIT_STATUSES`], naming the valid ones.
    pub fn validate(&self) -> Result<()> {
        match &self.status {
            Some(s) if !AUDIT_STATUSES.contains(&s.as_str()) => Err(Error::invalid(format!(
                "--status: unknown status `{s}`; valid statuses are {}",
                AUDIT_STATUSES.join(", ")
            ))),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use switchboard_core::SpanKind;

    fn span(attributes: serde_json::Value) -> SpanRecord {
        SpanRecord {
            request_id: "r1".into(),
            trace_id: "t".into(),
            span_id: "s1".into(),
            parent_id: None,
            name: "chat m".into(),
            kind: SpanKind::Llm,
            agent: Some("sales".into()),
            start_unix_nano: 1_000_000_000,
            end_unix_nano: 1_250_000_000,
            status: SpanStatus::Ok,
            status_message: None,
            attributes: attributes.as_object().cloned().unwrap_or_default(),
        }
    }

    #[test]
    fn only_llm_spans_make_usage_rows_and_the_used_model_wins() {
        assert!(UsageRow::from_span(&span(json!({"switchboard.hop.kind": "sql"}))).is_none());
        let row = UsageRow::from_span(&span(json!({
            "switchboard.hop.kind": "llm", "gen_ai.request.model": "primary",
            "gen_ai.response.model": "fallback", "gen_ai.usage.input_tokens": 12,
            "gen_ai.usage.output_tokens": 3, "switchboard.caller.email": "a@x",
            "switchboard.caller.role": "west_sales", "switchboard.usage_context": {"project": "p"},
        })))
        .unwrap();
        assert_eq!((row.model.as_str(), row.prompt_tokens, row.completion_tokens), ("fallback", 12, 3));
        assert_eq!((row.latency_ms, row.ts_unix_ms), (250, 1250));
        assert_eq!(row.usage_context.as_deref(), Some(r#"{"project":"p"}"#));
    }

    #[test]
    fn bad_status_and_grouping_name_the_valid_ones() {
        let f = AuditFilter { status: Some("ok".into()), ..Default::default() };
        let e = f.validate().unwrap_err();
        assert!(e.message.contains("success, error, access_denied, rate_limited, blocked"), "{}", e.message);
        assert!(UsageGroup::parse("team").unwrap_err().message.contains("user, group, agent, model"));
    }
}
