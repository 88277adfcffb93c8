//! Switchboard persistence: audit rows, spans, conversation threads and stored responses.
//!
//! [`Store`] is the backend-neutral interface. [`SqliteStore`] is the embedded default;
//! [`PostgresStore`] serves deployments where several replicas share one database.
//! [`memory::MemorySink`] is an in-memory [`TelemetrySink`] for other crates' tests.
//!
//! Telemetry (spans and audit rows) is written off the request path: the sink methods only
//! enqueue, and a single writer thread batches the queue into transactions. Recording never waits
//! for the store: while it is unavailable, rows spill to a local append-only file ([`SpillConfig`])
//! and are replayed in order, exactly once, when it is back, or at the next start after a crash.
//! Payload log rows, thread turns and stored responses take the same queue; the last two are
//! served from memory until they are committed, so neither writing nor reading back what was just
//! written waits for the store.
//! [`Store::flush`] is the synchronisation point for callers that need the rows on disk (CLI
//! exit, graceful shutdown, tests).
//!
//! USE CONNECTION grants ([`Store::grant_connection`] and friends) are the exception: they are
//! written synchronously, because a revoke that is merely queued is not a revoke. Every change
//! bumps a version counter kept in the database, so any process sharing the store can notice it.

mod behind;
pub mod memory;
mod payload;
mod postgres;
mod queue;
mod queued_span;
mod schema;
mod spill;
mod sqlite;
mod usage;

pub use behind::DEFAULT_PENDING_CAPACITY;
pub use memory::MemorySink;
pub use payload::{MAX_PAYLOAD_ROWS, PayloadFilter, PayloadRow, TRUNCATION_MARKER, cap as cap_payload};
pub use postgres::PostgresStore;
pub use schema::SCHEMA_VERSION;
pub use spill::{DEFAULT_SPILL_MAX_BYTES, SpillConfig};
pub use sqlite::{QUEUE_CAPACITY, SqliteStore};
pub use usage::{AUDIT_STATUSES, AuditFilter, UsageGroup, UsageRow, UsageTotal};

use std::time::Duration;
use switchboard_core::{AuditRecord, Error, Message, Result, SpanRecord, TelemetrySink};

/// One active USE CONNECTION grant.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ConnectionGrant {
    /// The connection's name.
    pub connection: String,
    /// Who holds it: a user's email, a group (role) name or a service principal id.
    pub principal: String,
    /// Who granted it (an admin's email, `config` for grants seeded from configuration, `cli:USER`).
    pub granted_by: String,
    /// When, in milliseconds since the epoch.
    pub granted_unix_ms: u64,
}

/// One stored Responses API response: what `GET /v1/responses/{id}` returns, and the conversation
/// a later `previous_response_id` continues.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StoredResponse {
    /// The response id (`resp_…`).
    pub id: String,
    /// Who may read, continue or delete it: the caller's subject. Every lookup is scoped by it.
    pub owner: String,
    /// The stored response it continued, if any.
    pub previous_id: Option<String>,
    /// The conversation through this response, oldest first: the earlier turns, this question and
    /// this answer. Kept whole so continuing it needs one read, not a walk down the chain (which
    /// a deleted or expired link would break).
    pub turns: Vec<Message>,
    /// The response object as it was returned.
    pub body: serde_json::Value,
    /// When it was stored, in milliseconds since the epoch.
    pub created_unix_ms: u64,
}

/// Durable storage for telemetry and threads. Implementations are shared across requests
/// (`Arc<dyn Store>`), so every method takes `&self`.
#[async_trait::async_trait]
pub trait Store: TelemetrySink + Send + Sync {
    /// The spans of one request, ordered by start time.
    async fn spans(&self, request_id: &str) -> Result<Vec<SpanRecord>>;

    /// The newest `limit` audit rows, newest first.
    async fn recent_audit(&self, limit: usize) -> Result<Vec<AuditRecord>>;

    /// The audit rows of one request, oldest first.
    async fn audit_for_request(&self, request_id: &str) -> Result<Vec<AuditRecord>>;

    /// The newest audit rows matching `filter` (at most `filter.limit`), newest first. The filter
    /// is checked first ([`AuditFilter::validate`]).
    async fn query_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>>;

    /// The usage rows of one request, oldest first.
    async fn usage_for_request(&self, request_id: &str) -> Result<Vec<UsageRow>>;

    /// Usage totals of the calls at or after `since_unix_ms`, one per group when `by` is set
    /// (largest token count first), else one grand total (with `key` `None`).
    async fn usage_totals(
        &self,
        since_unix_ms: Option<u64>,
        by: Option<UsageGroup>,
    ) -> Result<Vec<UsageTotal>>;

    /// Appends `message` as the next turn of `thread_id`, attributed to `request_id`. Written
    /// behind, like telemetry: this never waits for the store, the turn is read back from memory
    /// until it is committed (or, in an outage, spilled and replayed), and turns keep the order
    /// they were appended in. Fails (503) only when too many writes already wait for the store
    /// ([`DEFAULT_PENDING_CAPACITY`]).
    async fn append_turn(&self, thread_id: &str, request_id: &str, message: &Message) -> Result<()>;

    /// The turns of a thread, oldest first; empty for an unknown thread.
    async fn thread(&self, thread_id: &str) -> Result<Vec<Message>>;

    /// Stores `response`, replacing one with the same id. Written behind as
    /// [`Self::append_turn`] is: readable at once, committed (or spilled to local disk) soon after,
    /// and never waiting for the store.
    async fn put_response(&self, response: &StoredResponse) -> Result<()>;

    /// The response `id` if `owner` stored it at or after `not_before_unix_ms` (older ones are
    /// expired, whether or not they were purged yet); `None` otherwise, so another caller's id
    /// reads as unknown.
    async fn response(
        &self,
        owner: &str,
        id: &str,
        not_before_unix_ms: u64,
    ) -> Result<Option<StoredResponse>>;

    /// Deletes the response `id` if `owner` stored it. `Ok(true)` when a response was deleted.
    async fn delete_response(&self, owner: &str, id: &str) -> Result<bool>;

    /// Deletes every response stored before `before_unix_ms`; returns how many.
    async fn purge_responses(&self, before_unix_ms: u64) -> Result<u64>;

    /// Queues a payload log row (see [`PayloadRow`]); like telemetry, never waits for the store.
    fn log_payload(&self, row: PayloadRow);

    /// The newest payload rows matching `filter`, newest first. The filter is checked first
    /// ([`PayloadFilter::validate`]).
    async fn payloads(&self, filter: &PayloadFilter) -> Result<Vec<PayloadRow>>;

    /// Returns once every span and audit row enqueued before the call has been written to the
    /// store or, while the store is unavailable, durably spilled to local disk, so it never hangs
    /// on an outage. Spilled rows are tried again first.
    async fn flush(&self);

    /// A cheap liveness probe of the backend.
    async fn health(&self) -> Result<()>;

    /// For a PostgreSQL store, the schema its tables live in (`current_schema()`), so SQL tools
    /// pointed at the store can be confined to it; `None` for other backends.
    async fn postgres_schema(&self) -> Result<Option<String>> {
        Ok(None)
    }

    /// Grants USE CONNECTION on `connection` to `principal`. `Ok(true)` when the grant is new,
    /// `Ok(false)` when it was already held (nothing changes then).
    ///
    /// Names are compared exactly (case-sensitively); empty names, or names containing NUL, are
    /// [`ErrorKind::InvalidInput`](switchboard_core::ErrorKind::InvalidInput), as is an empty `by`. The
    /// grant is durable when this returns.
    async fn grant_connection(&self, connection: &str, principal: &str, by: &str) -> Result<bool>;

    /// Revokes it. `Ok(true)` when a grant was removed, `Ok(false)` when there was none.
    ///
    /// Either way the pair counts as revoked afterwards, so [`Self::seed_connection_grants`]
    /// will not grant it: an administrator's "no" outranks configuration. The revoke is durable
    /// when this returns.
    async fn revoke_connection(&self, connection: &str, principal: &str, by: &str) -> Result<bool>;

    /// Grants `principals` the connection, but only those that have never been granted or revoked
    /// on it before: configuration seeds initial grants once, and later revokes stick across
    /// restarts. All-or-nothing: one invalid name fails the call before anything is written.
    async fn seed_connection_grants(&self, connection: &str, principals: &[String], by: &str) -> Result<()>;

    /// Active grants, on one connection or all, ordered by connection then principal (byte order
    /// of the UTF-8 names, the same on every backend).
    async fn connection_grants(&self, connection: Option<&str>) -> Result<Vec<ConnectionGrant>>;

    /// A number that changes (increases) whenever any grant changes, in any process sharing the
    /// store. It is read from the database on every call, never cached.
    async fn grants_version(&self) -> Result<u64>;

    /// Waits until grants may have changed, or `max_wait` passed, whichever is first. Never fails
    /// and never waits much longer than `max_wait`; it may return early without a change, so
    /// callers re-read [`Self::grants_version`] after each wait.
    ///
    /// PostgreSQL wakes it through LISTEN/NOTIFY (falling back to sleeping while the listening
    /// connection is being re-established); SQLite has no notifications and simply sleeps.
    async fn wait_grants_changed(&self, max_wait: Duration);

    /// Stores `sealed`, a user's refresh token for a per-user OAuth connection already encrypted
    /// by the caller (the store never sees it in the clear), replacing the one held before.
    /// Durable when this returns.
    async fn put_user_token(&self, connection: &str, subject: &str, sealed: &[u8]) -> Result<()>;

    /// The sealed refresh token `subject` holds for `connection`, if any.
    async fn user_token(&self, connection: &str, subject: &str) -> Result<Option<Vec<u8>>>;

    /// Forgets it (the user disconnected). `Ok(true)` when there was one.
    async fn delete_user_token(&self, connection: &str, subject: &str) -> Result<bool>;

    /// Forgets it only while it is still `sealed`, in one statement: a refresh token the
    /// provider refused must not take with it one that another replica stored meanwhile.
    /// `Ok(true)` when it was deleted.
    async fn delete_user_token_if(&self, connection: &str, subject: &str, sealed: &[u8]) -> Result<bool>;
}

/// Checks the names a grant operation takes. The values are left out of the messages: they may
/// be user input, and the caller knows what it passed.
pub(crate) fn check_grant_names(connection: &str, principals: &[&str], by: &str) -> Result<()> {
    check_name("the connection name", connection)?;
    for principal in principals {
        check_name("the principal", principal)?;
    }
    check_name("the grantor (`by`)", by)
}

fn check_name(what: &str, value: &str) -> Result<()> {
    if value.trim().is_empty() {
        return Err(Error::invalid(format!("USE CONNECTION grant: {what} must not be empty")));
    }
    // PostgreSQL text cannot hold NUL; refusing it on SQLite too keeps the backends interchangeable.
    if value.contains('\0') {
        return Err(Error::invalid(format!("USE CONNECTION grant: {what} must not contain NUL characters")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_core::ErrorKind;

    #[test]
    fn grant_names_must_be_non_empty_and_free_of_nul() {
        assert!(check_grant_names("warehouse", &["alice@example.com", "sales"], "config").is_ok());
        for (connection, principal, by, needle) in [
            ("", "alice", "config", "connection name must not be empty"),
            ("  ", "alice", "config", "connection name must not be empty"),
            ("warehouse", "", "config", "principal must not be empty"),
            ("warehouse", "alice", "", "grantor (`by`) must not be empty"),
            ("ware\0house", "alice", "config", "connection name must not contain NUL"),
            ("warehouse", "al\0ice", "config", "principal must not contain NUL"),
        ] {
            let e = check_grant_names(connection, &[principal], by).unwrap_err();
            assert_eq!(e.kind, ErrorKind::InvalidInput);
            assert!(e.message.contains(needle), "{}", e.message);
        }
    }
}
