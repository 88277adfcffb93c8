//! Switchboard persistence: audit rows, spans and conversation threads.
//!
//! [`Store`] is the backend-neutral interface. [`SqliteStore`] is the embedded default;
//! [`PostgresStore`] serves deployments where several replicas share one database.
//! [`memory::MemorySink`] is an in-memory [`TelemetrySink`] for other crates' tests.
//!
//! Telemetry (spans and audit rows) is written off the request path: the sink methods only
//! enqueue, and a single writer thread batches the queue into transactions. [`Store::flush`] is
//! the synchronisation point for callers that need the rows on disk (CLI exit, graceful
//! shutdown, tests).

pub mod memory;
mod postgres;
mod queue;
mod schema;
mod sqlite;

pub use memory::MemorySink;
pub use postgres::PostgresStore;
pub use schema::SCHEMA_VERSION;
pub use sqlite::{QUEUE_CAPACITY, SqliteStore};

use switchboard_core::{AuditRecord, Message, Result, SpanRecord, TelemetrySink};

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

    /// Appends `message` as the next turn of `thread_id`, attributed to `request_id`.
    async fn append_turn(&self, thread_id: &str, request_id: &str, message: &Message) -> Result<()>;

    /// The turns of a thread, oldest first; empty for an unknown thread.
    async fn thread(&self, thread_id: &str) -> Result<Vec<Message>>;

    /// Returns once every span and audit row enqueued before the call has been written (or, if
    /// the backend failed permanently, given up on and logged), so it never hangs.
    async fn flush(&self);

    /// A cheap liveness probe of the backend.
    async fn health(&self) -> Result<()>;
}
