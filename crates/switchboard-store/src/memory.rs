//! An in-memory [`TelemetrySink`] for tests that need to assert on emitted spans and audit rows
//! without a database.

use std::sync::{Mutex, MutexGuard, PoisonError};
use switchboard_core::{AuditRecord, SpanRecord, TelemetrySink};

/// Collects spans and audit rows in memory, in the order they were recorded.
#[derive(Debug, Default)]
pub struct MemorySink {
    spans: Mutex<Vec<SpanRecord>>,
    audit: Mutex<Vec<AuditRecord>>,
}

impl MemorySink {
    /// An empty sink.
    pub fn new() -> Self {
        Self::default()
    }

    /// A snapshot of the spans recorded so far.
    pub fn spans(&self) -> Vec<SpanRecord> {
        lock(&self.spans).clone()
    }

    /// A snapshot of the audit rows recorded so far.
    pub fn audit(&self) -> Vec<AuditRecord> {
        lock(&self.audit).clone()
    }
}

impl TelemetrySink for MemorySink {
    fn span(&self, span: SpanRecord) {
        lock(&self.spans).push(span);
    }

    fn audit(&self, record: AuditRecord) {
        lock(&self.audit).push(record);
    }
}

/// A panicking test thread must not hide the rows other threads recorded, so poisoning is
/// ignored: a `Vec` push cannot leave the data half-updated.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_core::{AuditDecision, HopKind};

    fn row(n: u64) -> AuditRecord {
        AuditRecord {
            request_id: format!("r{n}"),
            span_id: format!("s{n}"),
            ts_unix_ms: n,
            caller_email: "a@example.com".into(),
            caller_roles: "sales".into(),
            acting_for: None,
            principal: "a@example.com".into(),
            credential_mode: "obo".into(),
            agent: "sales".into(),
            hop: HopKind::Sql,
            target: "deals".into(),
            decision: AuditDecision::Allowed,
            reason: None,
            duration_ms: 1,
            error_code: None,
        }
    }

    #[test]
    fn collects_in_order_and_returns_snapshots() {
        let sink = MemorySink::new();
        TelemetrySink::audit(&sink, row(1));
        let snapshot = sink.audit();
        TelemetrySink::audit(&sink, row(2));
        assert_eq!(snapshot, vec![row(1)]);
        assert_eq!(sink.audit(), vec![row(1), row(2)]);
        assert!(sink.spans().is_empty());
    }
}
