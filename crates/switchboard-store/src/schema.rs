//! The SQLite schema and its versioning.
//!
//! The `audit` table is read directly with SQL by the `audit` tool agent, so its table and column
//! names are an interface: change them only with a migration and a matching change to that agent.

use crate::sqlite::db_error;
use rusqlite::{Connection, TransactionBehavior};
use switchboard_core::{Error, Result};

/// The schema version this build writes, stored in `PRAGMA user_version`. A database stamped
/// with a newer version is refused rather than written with an outdated layout.
pub const SCHEMA_VERSION: u32 = 8;

/// Version 1: audit rows, spans and thread turns.
const SCHEMA_V1: &str = "
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id TEXT NOT NULL,
    span_id TEXT NOT NULL,
    ts_unix_ms INTEGER NOT NULL,
    caller_email TEXT NOT NULL,
    caller_roles TEXT NOT NULL,
    acting_for TEXT,
    principal TEXT NOT NULL,
    credential_mode TEXT NOT NULL,
    agent TEXT NOT NULL,
    hop TEXT NOT NULL,
    target TEXT NOT NULL,
    decision TEXT NOT NULL,
    reason TEXT,
    duration_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_request_id ON audit (request_id);
CREATE INDEX IF NOT EXISTS audit_ts_unix_ms ON audit (ts_unix_ms);

CREATE TABLE IF NOT EXISTS spans (
    request_id TEXT NOT NULL,
    trace_id TEXT NOT NULL,
    span_id TEXT PRIMARY KEY,
    parent_id TEXT,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    agent TEXT,
    start_unix_nano INTEGER NOT NULL,
    end_unix_nano INTEGER NOT NULL,
    status TEXT NOT NULL,
    status_message TEXT,
    attributes TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS spans_request_id ON spans (request_id);

CREATE TABLE IF NOT EXISTS thread_turns (
    thread_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    request_id TEXT NOT NULL,
    role TEXT NOT NULL,
    content TEXT NOT NULL,
    agent TEXT,
    created_unix_ms INTEGER NOT NULL,
    UNIQUE (thread_id, seq)
);
";

/// Version 2: USE CONNECTION grants and the counter that tells other processes they changed.
///
/// Revoked grants keep their row (`revoked_unix_ms` set) so seeding from configuration can tell
/// a pair that was never granted from one an administrator took away; revoking a pair that was
/// never granted leaves a row with no grantor for the same reason. The version row exists
/// from the start so that reading it never needs a write.
const SCHEMA_V2: &str = "
CREATE TABLE IF NOT EXISTS connection_grants (
    connection TEXT NOT NULL,
    principal TEXT NOT NULL,
    granted_by TEXT,
    granted_unix_ms INTEGER,
    revoked_by TEXT,
    revoked_unix_ms INTEGER,
    PRIMARY KEY (connection, principal),
    CHECK (revoked_unix_ms IS NOT NULL OR (granted_by IS NOT NULL AND granted_unix_ms IS NOT NULL))
);

CREATE TABLE IF NOT EXISTS connection_grants_version (
    singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
    version INTEGER NOT NULL
);
INSERT OR IGNORE INTO connection_grants_version (singleton, version) VALUES (1, 0);
";

/// Version 3: stored Responses API responses. The body and the turns are JSON text; lookups are
/// by id and owner together, and the purge scans by age.
const SCHEMA_V3: &str = "
CREATE TABLE IF NOT EXISTS responses (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    previous_id TEXT,
    turns TEXT NOT NULL,
    body TEXT NOT NULL,
    created_unix_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS responses_created_unix_ms ON responses (created_unix_ms);
";

/// Version 4: what an audit row needs for exactly-once replay and the gateway's vocabulary.
/// `row_id` is unique per row (assigned when it is queued), so replaying a spill file, or a batch
/// whose commit was in doubt, inserts nothing twice; rows written before version 4 have none.
/// `status` is `success`, `error`, `access_denied`, `rate_limited` or `blocked`; `error_code` the
/// failure's kind; `latency_ms` the hop's duration under the name the audit vocabulary uses.
pub(crate) const SCHEMA_V4: &str = "
ALTER TABLE audit ADD COLUMN row_id TEXT;
ALTER TABLE audit ADD COLUMN status TEXT;
ALTER TABLE audit ADD COLUMN error_code TEXT;
ALTER TABLE audit ADD COLUMN latency_ms INTEGER;
CREATE UNIQUE INDEX IF NOT EXISTS audit_row_id ON audit (row_id);
";

/// Version 5: the usage (chargeback) table, one row per LLM call, derived from the LLM hop span
/// as it is stored and keyed by its span id so a replayed span is not counted twice.
/// `usage_context` is the caller's labels as JSON text.
pub(crate) const SCHEMA_V5: &str = "
CREATE TABLE IF NOT EXISTS usage (
    span_id TEXT PRIMARY KEY,
    request_id TEXT NOT NULL,
    ts_unix_ms INTEGER NOT NULL,
    caller_email TEXT NOT NULL,
    caller_role TEXT NOT NULL,
    agent TEXT NOT NULL,
    model TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    latency_ms INTEGER NOT NULL,
    status TEXT NOT NULL,
    usage_context TEXT
);
CREATE INDEX IF NOT EXISTS usage_ts_unix_ms ON usage (ts_unix_ms);
CREATE INDEX IF NOT EXISTS usage_request_id ON usage (request_id);
";

/// Version 6: the payload log (the "inference table"), one row per logged request when
/// `[payload_log]` is enabled. The bodies are stored already masked and capped; `row_id` is
/// assigned when the row is queued, so a replayed spill or batch inserts nothing twice.
/// Thread turns gain the same kind of id, because they too are now written behind the request
/// (through the telemetry queue and its spill file); turns written before version 6 have none.
pub(crate) const SCHEMA_V6: &str = "
CREATE TABLE IF NOT EXISTS payloads (
    row_id TEXT PRIMARY KEY,
    request_id TEXT NOT NULL,
    ts_unix_ms INTEGER NOT NULL,
    caller_email TEXT NOT NULL,
    caller_subject TEXT,
    endpoint TEXT NOT NULL,
    status INTEGER NOT NULL,
    duration_ms INTEGER NOT NULL,
    request_body TEXT NOT NULL,
    response_body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS payloads_ts_unix_ms ON payloads (ts_unix_ms);
CREATE INDEX IF NOT EXISTS payloads_request_id ON payloads (request_id);
ALTER TABLE thread_turns ADD COLUMN turn_id TEXT;
CREATE UNIQUE INDEX IF NOT EXISTS thread_turns_turn_id ON thread_turns (turn_id);
";

/// Version 7: users' refresh tokens for per-user OAuth connections, one per (connection,
/// subject). `sealed` is AES-256-GCM ciphertext made by the runtime; the store never sees the
/// token in the clear.
pub(crate) const SCHEMA_V7: &str = "
CREATE TABLE IF NOT EXISTS user_tokens (
    connection TEXT NOT NULL,
    subject TEXT NOT NULL,
    sealed BLOB NOT NULL,
    updated_unix_ms INTEGER NOT NULL,
    PRIMARY KEY (connection, subject)
);
";

/// Version 8: spans and usage rows are unique per request and span id, no longer per span id
/// alone. Span ids are random, so an index led by them had a random page rewritten for every
/// row the writer committed; request ids are time-ordered, so this one grows at its end (and
/// serves lookups by request, replacing their own indexes). A span is identified within its
/// trace anyway. SQLite cannot drop a primary key in place, so both tables are rebuilt.
pub(crate) const SCHEMA_V8: &str = "
CREATE TABLE spans_v8 (
    request_id TEXT NOT NULL,
    trace_id TEXT NOT NULL,
    span_id TEXT NOT NULL,
    parent_id TEXT,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    agent TEXT,
    start_unix_nano INTEGER NOT NULL,
    end_unix_nano INTEGER NOT NULL,
    status TEXT NOT NULL,
    status_message TEXT,
    attributes TEXT NOT NULL
);
INSERT INTO spans_v8 SELECT request_id, trace_id, span_id, parent_id, name, kind, agent,
    start_unix_nano, end_unix_nano, status, status_message, attributes FROM spans ORDER BY rowid;
DROP TABLE spans;
ALTER TABLE spans_v8 RENAME TO spans;
CREATE UNIQUE INDEX spans_request_span ON spans (request_id, span_id);

CREATE TABLE usage_v8 (
    span_id TEXT NOT NULL,
    request_id TEXT NOT NULL,
    ts_unix_ms INTEGER NOT NULL,
    caller_email TEXT NOT NULL,
    caller_role TEXT NOT NULL,
    agent TEXT NOT NULL,
    model TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    latency_ms INTEGER NOT NULL,
    status TEXT NOT NULL,
    usage_context TEXT
);
INSERT INTO usage_v8 SELECT span_id, request_id, ts_unix_ms, caller_email, caller_role, agent,
    model, prompt_tokens, completion_tokens, latency_ms, status, usage_context FROM usage ORDER BY rowid;
DROP TABLE usage;
ALTER TABLE usage_v8 RENAME TO usage;
CREATE UNIQUE INDEX usage_request_span ON usage (request_id, span_id);
CREATE INDEX usage_ts_unix_ms ON usage (ts_unix_ms);
";

/// Brings the database up to [`SCHEMA_VERSION`]. Runs in an IMMEDIATE transaction so two
/// processes opening a fresh file at once serialise instead of interleaving DDL.
pub(crate) fn migrate(conn: &mut Connection) -> Result<()> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| db_error("starting the schema migration", &e))?;
    let current: u32 = tx
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(|e| db_error("reading the schema version", &e))?;
    if current > SCHEMA_VERSION {
        return Err(Error::config(format!(
            "store schema version {current} is newer than this build supports \
             ({SCHEMA_VERSION}); upgrade switchboard or use another database file"
        )));
    }
    if current < 1 {
        tx.execute_batch(SCHEMA_V1).map_err(|e| db_error("creating the schema", &e))?;
    }
    if current < 2 {
        tx.execute_batch(SCHEMA_V2).map_err(|e| db_error("adding the connection grant tables", &e))?;
    }
    if current < 3 {
        tx.execute_batch(SCHEMA_V3).map_err(|e| db_error("adding the stored responses table", &e))?;
    }
    if current < 4 {
        tx.execute_batch(SCHEMA_V4)
            .map_err(|e| db_error("adding the audit row id and status columns", &e))?;
    }
    if current < 5 {
        tx.execute_batch(SCHEMA_V5).map_err(|e| db_error("adding the usage table", &e))?;
    }
    if current < 6 {
        tx.execute_batch(SCHEMA_V6)
            .map_err(|e| db_error("adding the payload log table and thread turn ids", &e))?;
    }
    if current < 7 {
        tx.execute_batch(SCHEMA_V7).map_err(|e| db_error("adding the user token table", &e))?;
    }
    if current < 8 {
        if current >= 1 {
            // Copies every span: once, but a while for a large file.
            tracing::info!("store: rebuilding the spans and usage tables for schema version 8");
        }
        tx.execute_batch(SCHEMA_V8)
            .map_err(|e| db_error("keying spans and usage rows by request and span id", &e))?;
    }
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)
        .map_err(|e| db_error("stamping the schema version", &e))?;
    tx.commit().map_err(|e| db_error("committing the schema migration", &e))
}
