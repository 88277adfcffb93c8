//! Records the store tests write and read back.

#![allow(dead_code)]

pub mod grants;
pub mod payloads;
pub mod responses;
pub mod usage;

use switchboard_core::{AuditDecision, AuditRecord, HopKind, SpanKind, SpanRecord, SpanStatus};

/// The `n`th audit row of a request; every third is a denial, every other acts for bob.
pub fn audit_row(request_id: &str, n: u64) -> AuditRecord {
    AuditRecord {
        request_id: request_id.into(),
        span_id: format!("span-{n}"),
        ts_unix_ms: 1_700_000_000_000 + n,
        caller_email: "alice@example.com".into(),
        caller_roles: "sales,admin".into(),
        acting_for: n.is_multiple_of(2).then(|| "bob@example.com".into()),
        principal: "alice@example.com".into(),
        credential_mode: "obo".into(),
        agent: "sales".into(),
        hop: HopKind::Sql,
        target: "main.sales.deals".into(),
        decision: if n.is_multiple_of(3) { AuditDecision::AccessDenied } else { AuditDecision::Allowed },
        reason: n.is_multiple_of(3).then(|| "policy: sales only".into()),
        duration_ms: n * 2,
        error_code: None,
    }
}

/// A span with nested JSON attributes and a `u64::MAX`, to exercise attribute round trips.
pub fn span(request_id: &str, id: &str, parent: Option<&str>, start: u64) -> SpanRecord {
    let mut attributes = serde_json::Map::new();
    attributes.insert("gen_ai.agent.name".into(), "sales".into());
    attributes.insert("switchboard.hop".into(), serde_json::json!({"n": start, "tags": ["a", "b"]}));
    attributes.insert("big".into(), serde_json::json!(u64::MAX));
    SpanRecord {
        request_id: request_id.into(),
        trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
        span_id: id.into(),
        parent_id: parent.map(Into::into),
        name: format!("execute_tool {id}"),
        kind: SpanKind::Tool,
        agent: Some("sales".into()),
        start_unix_nano: start,
        end_unix_nano: start + 500,
        status: if start.is_multiple_of(2) { SpanStatus::Ok } else { SpanStatus::Error },
        status_message: (start % 2 == 1).then(|| "denied".into()),
        attributes,
    }
}
