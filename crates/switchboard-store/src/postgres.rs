//! The PostgreSQL backend, for deployments where several replicas share one database.
//!
//! The tables and column names are the SQLite ones (see `schema.rs`), so the `audit` agent's SQL
//! works against either backend. Telemetry takes the same path as in [`crate::SqliteStore`]: a
//! bounded queue drained by one writer that batches rows into transactions.
//!
//! USE CONNECTION grants are written synchronously and announced to other replicas with NOTIFY;
//! see the `grants` module.

mod grants;

use crate::behind::{merge_turns, pending_response};
use crate::payload::{PayloadFilter, PayloadRow};
use crate::queue::{Batches, Record, Unavailable, WriteQueue};
use crate::queued_span::QueuedSpan;
use crate::spill::SpillConfig;
use crate::usage::{AuditFilter, UsageGroup, UsageRow, UsageTotal, with_grand_total};
use crate::{ConnectionGrant, QUEUE_CAPACITY, SCHEMA_VERSION, Store, StoredResponse, check_grant_names};
use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime as PoolRuntime};
use serde::de::DeserializeOwned;
use std::borrow::Cow;
use std::fmt;
use std::time::Duration;
use switchboard_core::{
    AuditRecord, Error, Message, Result, SpanRecord, SpanStatus, TelemetrySink, unix_nanos_now,
};
use tokio::sync::oneshot;
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Config, NoTls, Row, Statement};

/// Connections kept for reads and thread turns. The writer has its own connection on top.
const POOL_SIZE: usize = 8;

/// Used when the URL sets no `connect_timeout`, so an unreachable server fails start-up instead
/// of hanging it.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a read waits for a free pooled connection.
const POOL_WAIT: Duration = Duration::from_secs(30);

/// The longest the writer waits to (re)connect. Short, because while it waits the queue fills
/// and rows overflow to the spill file; the replay retries soon enough.
const WRITER_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// The first key of the advisory lock that serialises schema creation; the second is a hash of the
/// schema name, so replicas using different schemas of one database do not wait for each other.
const SCHEMA_LOCK_CLASS: i32 = 0x5357_4244;

/// Schema version 1, the PostgreSQL rendering of the SQLite layout: the same tables and column
/// names, BIGINT for integers and JSONB for span attributes. `spans.id` exists only to order
/// spans that start in the same nanosecond, as SQLite's rowid does.
const SCHEMA_V1: &str = "
CREATE TABLE IF NOT EXISTS audit (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    request_id TEXT NOT NULL,
    span_id TEXT NOT NULL,
    ts_unix_ms BIGINT NOT NULL,
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
    duration_ms BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_request_id ON audit (request_id);
CREATE INDEX IF NOT EXISTS audit_ts_unix_ms ON audit (ts_unix_ms);

CREATE TABLE IF NOT EXISTS spans (
    id BIGINT GENERATED ALWAYS AS IDENTITY,
    request_id TEXT NOT NULL,
    trace_id TEXT NOT NULL,
    span_id TEXT PRIMARY KEY,
    parent_id TEXT,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    agent TEXT,
    start_unix_nano BIGINT NOT NULL,
    end_unix_nano BIGINT NOT NULL,
    status TEXT NOT NULL,
    status_message TEXT,
    attributes JSONB NOT NULL
);
CREATE INDEX IF NOT EXISTS spans_request_id ON spans (request_id);

CREATE TABLE IF NOT EXISTS thread_turns (
    thread_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    request_id TEXT NOT NULL,
    role TEXT NOT NULL,
    content TEXT NOT NULL,
    agent TEXT,
    created_unix_ms BIGINT NOT NULL,
    PRIMARY KEY (thread_id, seq)
);
";

/// Schema version 2: USE CONNECTION grants, as in SQLite (see `schema.rs` there for why revoked
/// grants keep their rows).
const SCHEMA_V2: &str = "
CREATE TABLE IF NOT EXISTS connection_grants (
    connection TEXT NOT NULL,
    principal TEXT NOT NULL,
    granted_by TEXT,
    granted_unix_ms BIGINT,
    revoked_by TEXT,
    revoked_unix_ms BIGINT,
    PRIMARY KEY (connection, principal),
    CHECK (revoked_unix_ms IS NOT NULL OR (granted_by IS NOT NULL AND granted_unix_ms IS NOT NULL))
);

CREATE TABLE IF NOT EXISTS connection_grants_version (
    singleton BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    version BIGINT NOT NULL
);
INSERT INTO connection_grants_version (singleton, version) VALUES (TRUE, 0) ON CONFLICT DO NOTHING;
";

/// Schema version 4: the audit row id for exactly-once replay and the status, error code and
/// latency columns, as in SQLite (see `schema.rs` there).
const SCHEMA_V4: &str = "
ALTER TABLE audit ADD COLUMN IF NOT EXISTS row_id TEXT;
ALTER TABLE audit ADD COLUMN IF NOT EXISTS status TEXT;
ALTER TABLE audit ADD COLUMN IF NOT EXISTS error_code TEXT;
ALTER TABLE audit ADD COLUMN IF NOT EXISTS latency_ms BIGINT;
CREATE UNIQUE INDEX IF NOT EXISTS audit_row_id ON audit (row_id);
";

/// Schema version 5: the usage (chargeback) table, as in SQLite (see `schema.rs` there).
const SCHEMA_V5: &str = "
CREATE TABLE IF NOT EXISTS usage (
    span_id TEXT PRIMARY KEY,
    request_id TEXT NOT NULL,
    ts_unix_ms BIGINT NOT NULL,
    caller_email TEXT NOT NULL,
    caller_role TEXT NOT NULL,
    agent TEXT NOT NULL,
    model TEXT NOT NULL,
    prompt_tokens BIGINT NOT NULL,
    completion_tokens BIGINT NOT NULL,
    latency_ms BIGINT NOT NULL,
    status TEXT NOT NULL,
    usage_context TEXT
);
CREATE INDEX IF NOT EXISTS usage_ts_unix_ms ON usage (ts_unix_ms);
CREATE INDEX IF NOT EXISTS usage_request_id ON usage (request_id);
";

/// Schema version 6: the payload log, as in SQLite (see `schema.rs` there).
const SCHEMA_V6: &str = "
CREATE TABLE IF NOT EXISTS payloads (
    row_id TEXT PRIMARY KEY,
    request_id TEXT NOT NULL,
    ts_unix_ms BIGINT NOT NULL,
    caller_email TEXT NOT NULL,
    caller_subject TEXT,
    endpoint TEXT NOT NULL,
    status INTEGER NOT NULL,
    duration_ms BIGINT NOT NULL,
    request_body TEXT NOT NULL,
    response_body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS payloads_ts_unix_ms ON payloads (ts_unix_ms);
CREATE INDEX IF NOT EXISTS payloads_request_id ON payloads (request_id);
ALTER TABLE thread_turns ADD COLUMN IF NOT EXISTS turn_id TEXT;
CREATE UNIQUE INDEX IF NOT EXISTS thread_turns_turn_id ON thread_turns (turn_id);
";

/// Schema version 7: users' sealed refresh tokens, as in SQLite (see `schema.rs` there).
const SCHEMA_V7: &str = "
CREATE TABLE IF NOT EXISTS user_tokens (
    connection TEXT NOT NULL,
    subject TEXT NOT NULL,
    sealed BYTEA NOT NULL,
    updated_unix_ms BIGINT NOT NULL,
    PRIMARY KEY (connection, subject)
);
";

/// Schema version 8: spans and usage rows unique per request and span id, as in SQLite (see
/// `schema.rs` there): an index led by the random span id dirtied a random page per row. Safe
/// to run again, as every step is (a version 1 schema passes through the earlier steps anew).
const SCHEMA_V8: &str = "
ALTER TABLE spans DROP CONSTRAINT IF EXISTS spans_pkey;
ALTER TABLE spans ALTER COLUMN span_id SET NOT NULL;
CREATE UNIQUE INDEX IF NOT EXISTS spans_request_span ON spans (request_id, span_id);
DROP INDEX IF EXISTS spans_request_id;
ALTER TABLE usage DROP CONSTRAINT IF EXISTS usage_pkey;
ALTER TABLE usage ALTER COLUMN span_id SET NOT NULL;
CREATE UNIQUE INDEX IF NOT EXISTS usage_request_span ON usage (request_id, span_id);
DROP INDEX IF EXISTS usage_request_id;
";

/// Schema version 3: stored Responses API responses, as in SQLite. The body and turns are TEXT,
/// not JSONB: they are only ever read back whole, and TEXT keeps them byte-for-byte.
const SCHEMA_V3: &str = "
CREATE TABLE IF NOT EXISTS responses (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    previous_id TEXT,
    turns TEXT NOT NULL,
    body TEXT NOT NULL,
    created_unix_ms BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS responses_created_unix_ms ON responses (created_unix_ms);
";

/// One statement per table and batch: the rows travel as one array per column, so the statement
/// is prepared once per connection whatever the batch size. `ORDER BY ord` keeps queue order in
/// the identity columns; a span seen before (a replayed batch: same request and span id) is
/// skipped, as in SQLite.
const INSERT_SPANS: &str = "INSERT INTO spans (request_id, trace_id, span_id, parent_id, name, kind, \
     agent, start_unix_nano, end_unix_nano, status, status_message, attributes) \
     SELECT c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12::jsonb \
     FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], \
     $8::bigint[], $9::bigint[], $10::text[], $11::text[], $12::text[]) \
     WITH ORDINALITY AS u(c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12, ord) \
     ORDER BY ord ON CONFLICT (request_id, span_id) DO NOTHING";

const INSERT_AUDIT: &str = "INSERT INTO audit (request_id, span_id, ts_unix_ms, caller_email, \
     caller_roles, acting_for, principal, credential_mode, agent, hop, target, decision, reason, \
     duration_ms, row_id, status, error_code, latency_ms) \
     SELECT c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12, c13, c14, c15, c16, c17, c14 \
     FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::text[], \
     $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[], \
     $14::bigint[], $15::text[], $16::text[], $17::text[]) \
     WITH ORDINALITY AS u(c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12, c13, c14, c15, c16, \
     c17, ord) \
     ORDER BY ord ON CONFLICT (row_id) DO NOTHING";

/// Usage rows derived from the batch's LLM spans; a span seen before inserts nothing.
const INSERT_USAGE: &str = "INSERT INTO usage (span_id, request_id, ts_unix_ms, caller_email, \
     caller_role, agent, model, prompt_tokens, completion_tokens, latency_ms, status, usage_context) \
     SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::text[], \
     $7::text[], $8::bigint[], $9::bigint[], $10::bigint[], $11::text[], $12::text[]) \
     ON CONFLICT (request_id, span_id) DO NOTHING";

/// Payload log rows; a row id seen before (a replayed batch) inserts nothing.
const INSERT_PAYLOADS: &str = "INSERT INTO payloads (row_id, request_id, ts_unix_ms, caller_email, \
     caller_subject, endpoint, status, duration_ms, request_body, response_body) \
     SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::text[], \
     $7::int[], $8::bigint[], $9::text[], $10::text[]) ON CONFLICT (row_id) DO NOTHING";

const PAYLOAD_COLUMNS: &str = "request_id, ts_unix_ms, caller_email, caller_subject, endpoint, \
     status, duration_ms, request_body, response_body";

const PUT_RESPONSE: &str = "INSERT INTO responses (id, owner, previous_id, turns, body, created_unix_ms) \
     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO UPDATE SET owner = EXCLUDED.owner, \
     previous_id = EXCLUDED.previous_id, turns = EXCLUDED.turns, body = EXCLUDED.body, \
     created_unix_ms = EXCLUDED.created_unix_ms";

const DELETE_RESPONSE: &str = "DELETE FROM responses WHERE id = $1 AND owner = $2";

const USAGE_COLUMNS: &str = "span_id, request_id, ts_unix_ms, caller_email, caller_role, agent, \
     model, prompt_tokens, completion_tokens, latency_ms, status, usage_context";

const SELECT_SPANS: &str = "SELECT request_id, trace_id, span_id, parent_id, name, kind, agent, \
     start_unix_nano, end_unix_nano, status, status_message, attributes::text FROM spans \
     WHERE request_id = $1 ORDER BY start_unix_nano, id";

const AUDIT_COLUMNS: &str = "request_id, span_id, ts_unix_ms, caller_email, caller_roles, \
     acting_for, principal, credential_mode, agent, hop, target, decision, reason, duration_ms, \
     error_code";

/// Serialises appends to one thread across every replica. The key includes the schema so
/// deployments sharing a database do not contend; the lock ends with the transaction.
const LOCK_THREAD: &str = "SELECT pg_advisory_xact_lock(hashtextextended(current_schema() || '/' || $1, 0))";

/// The next turn of a thread, under [`LOCK_THREAD`]; a turn id seen before (a replayed batch)
/// inserts nothing.
const APPEND_TURN: &str = "INSERT INTO thread_turns (thread_id, seq, request_id, role, content, agent, \
     created_unix_ms, turn_id) SELECT $1::text, COALESCE(MAX(seq) + 1, 0), $2::text, $3::text, $4::text, \
     $5::text, $6::bigint, $7::text FROM thread_turns WHERE thread_id = $1::text \
     ON CONFLICT (turn_id) DO NOTHING";

/// PostgreSQL-backed [`Store`]: several replicas may share one database (and schema).
///
/// Spans and audit rows go through a bounded queue ([`QUEUE_CAPACITY`] by default) to one writer
/// that batches them into transactions of multi-row inserts. Recording never waits for the
/// database: while it is unavailable, batches (and rows that find the queue full) go to a local
/// spill file, replayed in order, exactly once, when it is back (see the `queue` module). The
/// writer is a dedicated thread driving its own single-threaded Tokio runtime and connection, so
/// dropping the store can wait for it synchronously.
///
/// Reads and thread turns use a small connection pool on the caller's runtime. Thread turns take
/// a per-thread advisory lock, so replicas appending to one thread get consecutive `seq`s.
///
/// Grant changes are written synchronously through the pool and announced with NOTIFY; a
/// dedicated LISTEN connection, kept open by a background task on the runtime that called
/// [`Self::connect`], wakes [`Store::wait_grants_changed`] in every replica.
///
/// Dropping the store closes the queue and waits for the writer to drain it, and stops the
/// listener.
pub struct PostgresStore {
    target: String,
    pool: Pool,
    /// Fails reads fast for a while after a connection attempt failed (see [`Breaker`]).
    down: Breaker,
    /// Spans and audit rows on their way to the writer thread; dropping it drains the queue.
    writes: WriteQueue,
    grants: grants::GrantsListener,
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore").field("target", &self.target).finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Connects to the database at `url` (a `postgres://` URL or a libpq key/value string),
    /// creates the schema if needed and starts the writer. Tables go into the first schema of
    /// the connection's `search_path` (set it per deployment with
    /// `?options=-c%20search_path%3Dmyschema`). Safe to call from several replicas at once.
    ///
    /// TLS is not supported by this build: `sslmode=require` is refused, and the default
    /// `prefer` connects without TLS.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_with_capacity(url, QUEUE_CAPACITY).await
    }

    /// [`Self::connect`] with a telemetry queue of `capacity` rows instead of
    /// [`QUEUE_CAPACITY`]. A smaller queue overflows to the spill file sooner.
    pub async fn connect_with_capacity(url: &str, capacity: usize) -> Result<Self> {
        let spill = SpillConfig::new(default_spill_path(&parse_config(url)?));
        Self::connect_with(url, capacity, &spill).await
    }

    /// [`Self::connect_with_capacity`] spilling to `spill` while PostgreSQL is unavailable. The
    /// default spill file is in the system's temporary directory, named after the database and
    /// `search_path`; a deployment should put it somewhere that survives a reboot (the runtime
    /// uses its data dir).
    pub async fn connect_with(url: &str, capacity: usize, spill: &SpillConfig) -> Result<Self> {
        if capacity == 0 {
            return Err(Error::config("store: the PostgreSQL telemetry queue capacity must be at least 1"));
        }
        let config = parse_config(url)?;
        let target = describe_target(&config);

        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig { recycling_method: RecyclingMethod::Fast },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(PoolRuntime::Tokio1)
            .wait_timeout(Some(POOL_WAIT))
            .create_timeout(Some(config.get_connect_timeout().copied().unwrap_or(CONNECT_TIMEOUT)))
            .build()
            .map_err(|e| Error::internal(format!("store: building the PostgreSQL pool failed: {e}")))?;

        {
            let mut client = pool.get().await.map_err(|e| {
                Error::upstream(format!("store: connecting to {target} failed: {}", describe_pool(&e)))
            })?;
            migrate(&mut client).await?;
        }

        let (ready, started) = oneshot::channel();
        let writer_config = config.clone();
        let writes = WriteQueue::spawn("switchboard-pg-writer", capacity, spill, move |batches| {
            run_writer(writer_config, batches, ready)
        })?;
        // On failure, dropping `writes` joins the writer thread, which has already returned.
        match started.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                return Err(Error::upstream(format!("store: the writer connecting to {target} failed: {e}")));
            }
            Err(_) => return Err(Error::internal("store: the writer thread stopped during start-up")),
        }

        // Last, so that a failed connect leaves no listener task behind.
        let grants = grants::GrantsListener::start(config).await;

        Ok(Self { target, pool, down: Breaker::default(), writes, grants })
    }

    /// Where the store is connected, as `postgres://user@host:port/dbname`: never the password.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// `url` with its password removed, for logs and error messages; `<invalid PostgreSQL URL>`
    /// if it does not parse.
    pub fn redact_url(url: &str) -> String {
        url.parse::<Config>()
            .map(|c| describe_target(&c))
            .unwrap_or_else(|_| "<invalid PostgreSQL URL>".into())
    }

    async fn client(&self, op: &str) -> Result<deadpool_postgres::Object> {
        if let Some(wait) = self.down.open_for() {
            return Err(Error::unavailable(
                format!(
                    "store: {op} failed: {} is unavailable (the last connection attempt failed; \
                     the next is made in {} ms)",
                    self.target,
                    wait.as_millis()
                ),
                wait,
            ));
        }
        match self.pool.get().await {
            Ok(client) => {
                self.down.succeeded();
                Ok(client)
            }
            Err(e) => {
                // Only a failed connection attempt says the server is away; a wait for a busy
                // pool's free connection says nothing about it.
                if !matches!(e, PoolError::Timeout(deadpool_postgres::TimeoutType::Wait)) {
                    self.down.failed();
                }
                Err(Error::upstream(format!(
                    "store: {op} failed: no connection to {}: {}",
                    self.target,
                    describe_pool(&e)
                )))
            }
        }
    }

    async fn query(&self, op: &str, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>> {
        let client = self.client(op).await?;
        let stmt = client.prepare_cached(sql).await.map_err(|e| pg_error(op, &e))?;
        client.query(&stmt, params).await.map_err(|e| pg_error(op, &e))
    }
}

impl TelemetrySink for PostgresStore {
    fn span(&self, span: SpanRecord) {
        self.writes.span(span);
    }

    fn audit(&self, record: AuditRecord) {
        self.writes.audit(record);
    }
}

#[async_trait::async_trait]
impl Store for PostgresStore {
    async fn spans(&self, request_id: &str) -> Result<Vec<SpanRecord>> {
        let op = "reading spans";
        let rows = self.query(op, SELECT_SPANS, &[&request_id]).await?;
        rows.iter().map(|row| span_from_row(row).map_err(|e| e.into_error(op))).collect()
    }

    async fn recent_audit(&self, limit: usize) -> Result<Vec<AuditRecord>> {
        let op = "reading recent audit rows";
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let sql = format!("SELECT {AUDIT_COLUMNS} FROM audit ORDER BY ts_unix_ms DESC, id DESC LIMIT $1");
        let rows = self.query(op, &sql, &[&limit]).await?;
        rows.iter().map(|row| audit_from_row(row).map_err(|e| e.into_error(op))).collect()
    }

    async fn audit_for_request(&self, request_id: &str) -> Result<Vec<AuditRecord>> {
        let op = "reading audit rows of a request";
        let sql = format!("SELECT {AUDIT_COLUMNS} FROM audit WHERE request_id = $1 ORDER BY ts_unix_ms, id");
        let rows = self.query(op, &sql, &[&request_id]).await?;
        rows.iter().map(|row| audit_from_row(row).map_err(|e| e.into_error(op))).collect()
    }

    async fn query_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>> {
        filter.validate()?;
        let op = "reading audit rows";
        let since = filter.since_unix_ms.map(|t| i64::try_from(t).unwrap_or(i64::MAX));
        let limit = i64::try_from(filter.limit).unwrap_or(i64::MAX);
        // `status` is NULL on rows written before schema 4; their decision names the same
        // outcome (`allowed` for success), so a filter matches either.
        let sql = format!(
            "SELECT {AUDIT_COLUMNS} FROM audit WHERE ($1::bigint IS NULL OR ts_unix_ms >= $1) \
             AND ($2::text IS NULL OR lower(caller_email) = lower($2)) \
             AND ($3::text IS NULL OR COALESCE(status, CASE decision WHEN 'allowed' THEN 'success' \
             ELSE decision END) = $3) AND ($4::text IS NULL OR agent = $4) \
             AND ($5::text IS NULL OR request_id = $5) ORDER BY ts_unix_ms DESC, id DESC LIMIT $6"
        );
        let rows = self
            .query(
                op,
                &sql,
                &[&since, &filter.caller, &filter.status, &filter.agent, &filter.request_id, &limit],
            )
            .await?;
        rows.iter().map(|row| audit_from_row(row).map_err(|e| e.into_error(op))).collect()
    }

    async fn usage_for_request(&self, request_id: &str) -> Result<Vec<UsageRow>> {
        let op = "reading usage rows of a request";
        let sql =
            format!("SELECT {USAGE_COLUMNS} FROM usage WHERE request_id = $1 ORDER BY ts_unix_ms, span_id");
        let rows = self.query(op, &sql, &[&request_id]).await?;
        rows.iter().map(|row| usage_from_row(row).map_err(|e| e.into_error(op))).collect()
    }

    async fn usage_totals(
        &self,
        since_unix_ms: Option<u64>,
        by: Option<UsageGroup>,
    ) -> Result<Vec<UsageTotal>> {
        let op = "reading usage totals";
        let since = since_unix_ms.map(|t| i64::try_from(t).unwrap_or(i64::MAX));
        // The grouping column comes from a fixed list, never from input.
        let key = by.map_or("NULL::text", UsageGroup::column);
        let sql = format!(
            "SELECT {key}, COUNT(DISTINCT request_id), COUNT(*), COALESCE(SUM(prompt_tokens), 0)::bigint, \
             COALESCE(SUM(completion_tokens), 0)::bigint, COALESCE(SUM(latency_ms), 0)::bigint FROM usage \
             WHERE ($1::bigint IS NULL OR ts_unix_ms >= $1) GROUP BY 1 \
             ORDER BY SUM(prompt_tokens) + SUM(completion_tokens) DESC, 1"
        );
        let rows = self.query(op, &sql, &[&since]).await?;
        let totals = rows
            .iter()
            .map(|row| {
                Ok(UsageTotal {
                    key: opt_text(row, 0)?,
                    requests: u64_col(row, 1)?,
                    calls: u64_col(row, 2)?,
                    prompt_tokens: u64_col(row, 3)?,
                    completion_tokens: u64_col(row, 4)?,
                    latency_ms: u64_col(row, 5)?,
                })
            })
            .collect::<Result<Vec<_>, Undecodable>>()
            .map_err(|e| e.into_error(op))?;
        Ok(with_grand_total(totals, by))
    }

    async fn postgres_schema(&self) -> Result<Option<String>> {
        let op = "reading the store's schema";
        let rows = self.query(op, "SELECT current_schema()::text", &[]).await?;
        let schema = rows.first().map(|row| opt_text(row, 0)).transpose().map_err(|e| e.into_error(op))?;
        Ok(schema.flatten())
    }

    async fn append_turn(&self, thread_id: &str, request_id: &str, message: &Message) -> Result<()> {
        self.writes.append_turn(thread_id, request_id, message)
    }

    async fn thread(&self, thread_id: &str) -> Result<Vec<Message>> {
        let op = "reading a thread";
        // Pending turns first: see `WriteBehind::turns`.
        let pending = self.writes.behind().turns(thread_id);
        let rows = self
            .query(
                op,
                "SELECT role, content, agent, turn_id FROM thread_turns WHERE thread_id = $1 ORDER BY seq",
                &[&thread_id],
            )
            .await?;
        let stored = rows
            .iter()
            .map(|row| {
                let message =
                    Message { role: enum_col(row, 0)?, content: text(row, 1)?, agent: opt_text(row, 2)? };
                Ok((opt_text(row, 3)?, message))
            })
            .collect::<Result<_, Undecodable>>()
            .map_err(|e| e.into_error(op))?;
        Ok(merge_turns(stored, pending))
    }

    async fn put_response(&self, response: &StoredResponse) -> Result<()> {
        self.writes.put_response(response)
    }

    async fn response(
        &self,
        owner: &str,
        id: &str,
        not_before_unix_ms: u64,
    ) -> Result<Option<StoredResponse>> {
        if let Some(pending) = self.writes.behind().response(owner, id) {
            return Ok(pending_response(pending, not_before_unix_ms));
        }
        let op = "reading a response";
        let not_before = i64::try_from(not_before_unix_ms).unwrap_or(i64::MAX);
        let rows = self
            .query(
                op,
                "SELECT id, owner, previous_id, turns, body, created_unix_ms FROM responses \
                 WHERE id = $1 AND owner = $2 AND created_unix_ms >= $3",
                &[&clean(id), &clean(owner), &not_before],
            )
            .await?;
        let Some(row) = rows.first() else { return Ok(None) };
        let decode = || -> Result<StoredResponse, Undecodable> {
            Ok(StoredResponse {
                id: text(row, 0)?,
                owner: text(row, 1)?,
                previous_id: opt_text(row, 2)?,
                turns: serde_json::from_str(&text(row, 3)?).map_err(|_| Undecodable(3))?,
                body: serde_json::from_str(&text(row, 4)?).map_err(|_| Undecodable(4))?,
                created_unix_ms: u64_col(row, 5)?,
            })
        };
        decode().map(Some).map_err(|e| e.into_error(op))
    }

    async fn delete_response(&self, owner: &str, id: &str) -> Result<bool> {
        if let Some(deleted) = self.writes.delete_pending_response(owner, id) {
            return Ok(deleted);
        }
        let op = "deleting a response";
        let client = self.client(op).await?;
        client
            .execute(DELETE_RESPONSE, &[&clean(id), &clean(owner)])
            .await
            .map(|n| n > 0)
            .map_err(|e| pg_error(op, &e))
    }

    async fn purge_responses(&self, before_unix_ms: u64) -> Result<u64> {
        // Responses still written behind are committed (or spilled) first, so none escapes the purge.
        self.writes.flush().await;
        let op = "purging expired responses";
        let before = i64::try_from(before_unix_ms).unwrap_or(i64::MAX);
        let client = self.client(op).await?;
        client
            .execute("DELETE FROM responses WHERE created_unix_ms < $1", &[&before])
            .await
            .map_err(|e| pg_error(op, &e))
    }

    fn log_payload(&self, row: PayloadRow) {
        self.writes.payload(row);
    }

    async fn payloads(&self, filter: &PayloadFilter) -> Result<Vec<PayloadRow>> {
        filter.validate()?;
        let op = "reading payload rows";
        let since = filter.since_unix_ms.map(|t| i64::try_from(t).unwrap_or(i64::MAX));
        let limit = i64::try_from(filter.limit).unwrap_or(i64::MAX);
        let request_id = filter.request_id.as_deref().map(clean);
        let sql = format!(
            "SELECT {PAYLOAD_COLUMNS} FROM payloads WHERE ($1::bigint IS NULL OR ts_unix_ms >= $1) \
             AND ($2::text IS NULL OR request_id = $2) ORDER BY ts_unix_ms DESC, row_id DESC LIMIT $3"
        );
        let rows = self.query(op, &sql, &[&since, &request_id, &limit]).await?;
        rows.iter().map(|row| payload_from_row(row).map_err(|e| e.into_error(op))).collect()
    }

    async fn flush(&self) {
        self.writes.flush().await;
    }

    async fn health(&self) -> Result<()> {
        if !self.writes.is_alive() {
            return Err(Error::internal("store: health check failed: the writer thread has stopped"));
        }
        let op = "health check";
        let client = self.client(op).await?;
        client.simple_query("SELECT 1").await.map(drop).map_err(|e| pg_error(op, &e))
    }

    async fn grant_connection(&self, connection: &str, principal: &str, by: &str) -> Result<bool> {
        check_grant_names(connection, &[principal], by)?;
        let op = "granting USE CONNECTION";
        let mut client = self.client(op).await?;
        let tx = client.transaction().await.map_err(|e| pg_error(op, &e))?;
        let result = grants::grant(&tx, connection, principal, by, now_unix_ms()).await;
        grants::finish(tx, result, op).await
    }

    async fn revoke_connection(&self, connection: &str, principal: &str, by: &str) -> Result<bool> {
        check_grant_names(connection, &[principal], by)?;
        let op = "revoking USE CONNECTION";
        let mut client = self.client(op).await?;
        let tx = client.transaction().await.map_err(|e| pg_error(op, &e))?;
        let result = grants::revoke(&tx, connection, principal, by, now_unix_ms()).await;
        grants::finish(tx, result, op).await
    }

    async fn seed_connection_grants(&self, connection: &str, principals: &[String], by: &str) -> Result<()> {
        let mut names: Vec<&str> = principals.iter().map(String::as_str).collect();
        check_grant_names(connection, &names, by)?;
        if names.is_empty() {
            return Ok(());
        }
        names.sort_unstable();
        names.dedup();
        let op = "seeding USE CONNECTION grants";
        let mut client = self.client(op).await?;
        let tx = client.transaction().await.map_err(|e| pg_error(op, &e))?;
        let result = grants::seed(&tx, connection, &names, by, now_unix_ms()).await;
        grants::finish(tx, result, op).await
    }

    async fn connection_grants(&self, connection: Option<&str>) -> Result<Vec<ConnectionGrant>> {
        let op = "reading USE CONNECTION grants";
        let rows = self.query(op, grants::SELECT_GRANTS, &[&connection]).await?;
        rows.iter().map(|row| grants::grant_from_row(row).map_err(|e| e.into_error(op))).collect()
    }

    async fn grants_version(&self) -> Result<u64> {
        let op = "reading the grants version";
        // Taken before the read: every notification counted by then is for a committed change
        // that the read below sees.
        let observed = self.grants.observed();
        let rows = self.query(op, grants::SELECT_VERSION, &[]).await?;
        let row = rows.first().ok_or_else(|| Error::internal(format!("store: {op} failed: no row")))?;
        let version = u64_col(row, 0).map_err(|e| e.into_error(op))?;
        self.grants.delivered_up_to(observed);
        Ok(version)
    }

    async fn wait_grants_changed(&self, max_wait: Duration) {
        self.grants.wait(max_wait).await;
    }

    async fn put_user_token(&self, connection: &str, subject: &str, sealed: &[u8]) -> Result<()> {
        check_grant_names(connection, &[subject], "user token")?;
        self.query(
            "storing a user token",
            "INSERT INTO user_tokens (connection, subject, sealed, updated_unix_ms) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (connection, subject) DO UPDATE SET sealed = EXCLUDED.sealed, \
             updated_unix_ms = EXCLUDED.updated_unix_ms",
            &[&connection, &subject, &sealed, &now_unix_ms()],
        )
        .await
        .map(drop)
    }

    async fn user_token(&self, connection: &str, subject: &str) -> Result<Option<Vec<u8>>> {
        let op = "reading a user token";
        let rows = self
            .query(
                op,
                "SELECT sealed FROM user_tokens WHERE connection = $1 AND subject = $2",
                &[&clean(connection), &clean(subject)],
            )
            .await?;
        rows.first().map(|row| row.try_get::<_, Vec<u8>>(0).map_err(|e| pg_error(op, &e))).transpose()
    }

    async fn delete_user_token(&self, connection: &str, subject: &str) -> Result<bool> {
        let op = "deleting a user token";
        let client = self.client(op).await?;
        client
            .execute(
                "DELETE FROM user_tokens WHERE connection = $1 AND subject = $2",
                &[&clean(connection), &clean(subject)],
            )
            .await
            .map(|n| n > 0)
            .map_err(|e| pg_error(op, &e))
    }

    async fn delete_user_token_if(&self, connection: &str, subject: &str, sealed: &[u8]) -> Result<bool> {
        let op = "deleting a user token";
        let client = self.client(op).await?;
        client
            .execute(
                "DELETE FROM user_tokens WHERE connection = $1 AND subject = $2 AND sealed = $3",
                &[&clean(connection), &clean(subject), &sealed],
            )
            .await
            .map(|n| n > 0)
            .map_err(|e| pg_error(op, &e))
    }
}

fn now_unix_ms() -> i64 {
    i64::try_from(unix_nanos_now() / 1_000_000).unwrap_or(i64::MAX)
}

/// A circuit breaker on the read pool. While PostgreSQL is unavailable every read would otherwise
/// make a connection attempt of its own (each one a server process forked only to be refused, or
/// a wait for the connect timeout when the host is unreachable): polls of the grants version,
/// thread and stored-response reads, health probes. After a failed attempt, reads fail at once
/// (503 with `Retry-After`) for a back-off that doubles from [`crate::queue::FIRST_RETRY`] to
/// [`crate::queue::MAX_RETRY`], the writer's own; the first read after it tries again, and a
/// success closes the breaker.
#[derive(Default)]
struct Breaker {
    state: std::sync::Mutex<crate::queue::Retry>,
}

impl Breaker {
    fn lock(&self) -> std::sync::MutexGuard<'_, crate::queue::Retry> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// How long reads still fail fast; `None` when a connection may be tried.
    fn open_for(&self) -> Option<Duration> {
        let retry = self.lock();
        (!retry.due()).then(|| retry.wait())
    }

    fn failed(&self) {
        self.lock().failed();
    }

    fn succeeded(&self) {
        self.lock().succeeded();
    }
}

/// Parses `url`, refusing settings this build cannot honour, and fills in defaults.
fn parse_config(url: &str) -> Result<Config> {
    // The parser's messages name options, never their values, so they cannot leak the password.
    let mut config: Config = url
        .parse()
        .map_err(|e| Error::config(format!("store: the PostgreSQL URL is invalid: {}", describe(&e))))?;
    if config.get_ssl_mode() == SslMode::Require {
        return Err(Error::config(format!(
            "store: {} asks for sslmode=require, but this build's PostgreSQL client has no TLS support; \
             use a TLS-terminating proxy or sslmode=disable on a trusted network",
            describe_target(&config)
        )));
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    if config.get_application_name().is_none() {
        config.application_name("switchboard");
    }
    Ok(config)
}

/// `postgres://user@host:port/dbname`, built from the parsed settings so the password (wherever
/// it was given) cannot appear.
fn describe_target(config: &Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let name = match host {
                Host::Tcp(name) => name.clone(),
                Host::Unix(path) => path.display().to_string(),
            };
            match config.get_ports().get(i).or_else(|| config.get_ports().first()) {
                Some(port) => format!("{name}:{port}"),
                None => name,
            }
        })
        .collect();
    let hosts = if hosts.is_empty() { "localhost".to_string() } else { hosts.join(",") };
    let user = config.get_user().map(|u| format!("{u}@")).unwrap_or_default();
    let db = config.get_dbname().or(config.get_user()).unwrap_or_default();
    format!("postgres://{user}{hosts}/{db}")
}

/// An error mapper for `op`, for `map_err` chains.
fn on(op: &'static str) -> impl FnOnce(tokio_postgres::Error) -> Error {
    move |e| pg_error(op, &e)
}

/// Brings the schema up to [`SCHEMA_VERSION`] inside a transaction holding an advisory lock, so
/// replicas starting together serialise instead of racing on `CREATE TABLE IF NOT EXISTS` (which
/// is not safe under concurrency in PostgreSQL).
async fn migrate(client: &mut deadpool_postgres::Object) -> Result<()> {
    let tx = client.transaction().await.map_err(on("starting the schema migration"))?;
    match migrate_in(&tx).await {
        Ok(()) => tx.commit().await.map_err(on("committing the schema migration")),
        Err(e) => {
            // Roll back now rather than on drop: a dropped transaction's rollback is only sent
            // when the connection is next polled, and until then it holds the advisory lock.
            if let Err(rollback) = tx.rollback().await {
                tracing::warn!(error = %describe(&rollback), "store: rolling back the schema migration failed");
            }
            Err(e)
        }
    }
}

async fn migrate_in(tx: &tokio_postgres::Transaction<'_>) -> Result<()> {
    let schema: Option<String> = tx
        .query_one("SELECT current_schema()", &[])
        .await
        .and_then(|row| row.try_get(0))
        .map_err(on("reading the current schema"))?;
    let Some(schema) = schema else {
        return Err(Error::config(
            "store: PostgreSQL has no schema to create tables in: the search_path names no existing \
             schema (create it, or fix `options=-c search_path=...` in the URL)",
        ));
    };
    tx.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", &[&SCHEMA_LOCK_CLASS, &schema])
        .await
        .map_err(on("locking the schema migration"))?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS switchboard_schema_version (
             singleton BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
             version INTEGER NOT NULL
         )",
    )
    .await
    .map_err(on("creating the schema version table"))?;
    let current: i32 = tx
        .query_opt("SELECT version FROM switchboard_schema_version", &[])
        .await
        .and_then(|row| row.map(|r| r.try_get(0)).transpose())
        .map_err(on("reading the schema version"))?
        .unwrap_or(0);
    let supported = i32::try_from(SCHEMA_VERSION).unwrap_or(i32::MAX);
    if current > supported {
        return Err(Error::config(format!(
            "store: schema {schema} has store schema version {current}, newer than this build supports \
             ({supported}); upgrade switchboard or use another schema"
        )));
    }
    if current < 1 {
        tx.batch_execute(SCHEMA_V1).await.map_err(on("creating the schema"))?;
    }
    if current < 2 {
        tx.batch_execute(SCHEMA_V2).await.map_err(on("adding the connection grant tables"))?;
    }
    if current < 3 {
        tx.batch_execute(SCHEMA_V3).await.map_err(on("adding the stored responses table"))?;
    }
    if current < 4 {
        tx.batch_execute(SCHEMA_V4).await.map_err(on("adding the audit row id and status columns"))?;
    }
    if current < 5 {
        tx.batch_execute(SCHEMA_V5).await.map_err(on("adding the usage table"))?;
    }
    if current < 6 {
        tx.batch_execute(SCHEMA_V6).await.map_err(on("adding the payload log table and thread turn ids"))?;
    }
    if current < 7 {
        tx.batch_execute(SCHEMA_V7).await.map_err(on("adding the user token table"))?;
    }
    if current < 8 {
        tx.batch_execute(SCHEMA_V8)
            .await
            .map_err(on("keying spans and usage rows by request and span id"))?;
    }
    tx.execute(
        "INSERT INTO switchboard_schema_version (singleton, version) VALUES (TRUE, $1) \
         ON CONFLICT (singleton) DO UPDATE SET version = EXCLUDED.version",
        &[&supported],
    )
    .await
    .map_err(on("stamping the schema version"))
    .map(drop)
}

/// The writer's connection and its prepared inserts.
struct WriterConn {
    client: Client,
    stmts: Statements,
}

/// The writer's prepared statements.
struct Statements {
    insert_spans: Statement,
    insert_audit: Statement,
    insert_usage: Statement,
    insert_payloads: Statement,
    lock_thread: Statement,
    append_turn: Statement,
    put_response: Statement,
    delete_response: Statement,
}

impl Statements {
    async fn prepare(client: &Client) -> Result<Self, tokio_postgres::Error> {
        Ok(Self {
            insert_spans: client.prepare(INSERT_SPANS).await?,
            insert_audit: client.prepare(INSERT_AUDIT).await?,
            insert_usage: client.prepare(INSERT_USAGE).await?,
            insert_payloads: client.prepare(INSERT_PAYLOADS).await?,
            lock_thread: client.prepare(LOCK_THREAD).await?,
            append_turn: client.prepare(APPEND_TURN).await?,
            put_response: client.prepare(PUT_RESPONSE).await?,
            delete_response: client.prepare(DELETE_RESPONSE).await?,
        })
    }
}

/// The writer thread's state: its connection, re-established after a failure.
struct Writer {
    config: Config,
    conn: Option<WriterConn>,
}

impl Writer {
    async fn connection(&mut self) -> Result<&mut WriterConn, tokio_postgres::Error> {
        if self.conn.as_ref().is_some_and(|c| c.client.is_closed()) {
            self.conn = None;
        }
        let conn = match self.conn.take() {
            Some(conn) => conn,
            None => {
                let (client, connection) = self.config.connect(NoTls).await?;
                tokio::spawn(async move {
                    if let Err(e) = connection.await {
                        tracing::debug!(error = %describe(&e), "store: the writer's connection closed");
                    }
                });
                let stmts = Statements::prepare(&client).await?;
                WriterConn { client, stmts }
            }
        };
        Ok(self.conn.insert(conn))
    }

    /// Writes one batch. A connection that broke since the last batch (the server restarted) is
    /// replaced and the batch tried once more; any other failure reports the store unavailable,
    /// and the queue spills the batch.
    async fn write(&mut self, batch: &[Record]) -> std::result::Result<usize, Unavailable> {
        let had_connection = self.conn.is_some();
        let mut result = self.write_batch(batch).await;
        if let Err(e) = &result
            && e.as_db_error().is_none()
        {
            // A transport failure leaves the connection unusable; reconnect.
            self.conn = None;
            if had_connection {
                result = self.write_batch(batch).await;
                if result.as_ref().is_err_and(|e| e.as_db_error().is_none()) {
                    self.conn = None;
                }
            }
        }
        result.map_err(|e| Unavailable(describe(&e)))
    }

    /// Writes one batch in one transaction and returns how many rows were skipped. If the server
    /// rejects the data (rather than failing), the batch is redone row by row under savepoints so
    /// one bad row cannot sink its neighbours; the transaction keeps a retry from duplicating rows.
    async fn write_batch(&mut self, batch: &[Record]) -> Result<usize, tokio_postgres::Error> {
        let mut columns = Columns::default();
        for record in batch {
            columns.push(record);
        }
        let conn = self.connection().await?;
        let tx = conn.client.transaction().await?;
        let inserted = write_rows(&tx, &conn.stmts, &columns, batch).await;
        let mut skipped = columns.skipped;
        match inserted {
            Ok(spans) => skipped += columns.spans.len() - spans,
            Err(e) if is_data_error(&e) => {
                tx.rollback().await?;
                let mut tx = conn.client.transaction().await?;
                for record in batch {
                    let mut one = Columns::default();
                    one.push(record);
                    skipped += one.skipped;
                    let sp = tx.savepoint("row").await?;
                    match write_rows(&sp, &conn.stmts, &one, std::slice::from_ref(record)).await {
                        Ok(spans) => {
                            skipped += one.spans.len() - spans;
                            sp.commit().await?;
                        }
                        Err(e) if is_data_error(&e) => {
                            tracing::warn!(error = %describe(&e), "store: telemetry row rejected");
                            skipped += 1;
                            sp.rollback().await?;
                        }
                        Err(e) => return Err(e),
                    }
                }
                tx.commit().await?;
                return Ok(skipped);
            }
            Err(e) => return Err(e),
        }
        tx.commit().await?;
        Ok(skipped)
    }
}

/// Writes `records` in `tx`: their columnar rows (`columns`, collected from them), then those that
/// must keep queue order. Returns how many spans were inserted.
async fn write_rows(
    tx: &tokio_postgres::Transaction<'_>,
    st: &Statements,
    columns: &Columns,
    records: &[Record],
) -> Result<usize, tokio_postgres::Error> {
    let spans = insert_columns(tx, st, columns).await?;
    for record in records {
        apply_ordered(tx, st, record).await?;
    }
    Ok(spans)
}

/// Writes `record` if it is one of those that must keep queue order (thread turns, stored
/// responses and their deletes); the columnar rows are [`insert_columns`]'s.
async fn apply_ordered(
    tx: &tokio_postgres::Transaction<'_>,
    st: &Statements,
    record: &Record,
) -> Result<(), tokio_postgres::Error> {
    match record {
        Record::Span(_) | Record::Audit { .. } | Record::Payload { .. } => Ok(()),
        Record::Turn { id, thread_id, request_id, message, created_unix_ms } => {
            let thread_id = clean(thread_id);
            tx.execute(&st.lock_thread, &[&thread_id.as_ref()]).await?;
            let created = i64::try_from(*created_unix_ms).unwrap_or(i64::MAX);
            tx.execute(
                &st.append_turn,
                &[
                    &thread_id.as_ref(),
                    &clean(request_id).as_ref(),
                    &message.role.as_str(),
                    &clean(&message.content).as_ref(),
                    &message.agent.as_deref().map(clean),
                    &created,
                    &id.as_str(),
                ],
            )
            .await
            .map(drop)
        }
        Record::Response { response, .. } => {
            // Encoding a Vec<Message> cannot fail; an empty list is the harmless fallback.
            let turns = serde_json::to_string(&response.turns).unwrap_or_else(|_| "[]".into());
            let created = i64::try_from(response.created_unix_ms).unwrap_or(i64::MAX);
            // JSON text escapes NUL, so only the plain columns need cleaning.
            tx.execute(
                &st.put_response,
                &[
                    &clean(&response.id),
                    &clean(&response.owner),
                    &response.previous_id.as_deref().map(clean),
                    &turns,
                    &response.body.to_string(),
                    &created,
                ],
            )
            .await
            .map(drop)
        }
        Record::DeleteResponse { owner, response_id, .. } => {
            tx.execute(&st.delete_response, &[&clean(response_id), &clean(owner)]).await.map(drop)
        }
    }
}

/// Inserts the span, audit, usage and payload columns; returns how many spans were new.
async fn insert_columns(
    tx: &tokio_postgres::Transaction<'_>,
    st: &Statements,
    c: &Columns,
) -> Result<usize, tokio_postgres::Error> {
    let (insert_spans, insert_audit, insert_usage) = (&st.insert_spans, &st.insert_audit, &st.insert_usage);
    let mut spans = 0;
    if !c.spans.is_empty() {
        let s = &c.spans;
        let n = tx
            .execute(
                insert_spans,
                &[
                    &s.request_id,
                    &s.trace_id,
                    &s.span_id,
                    &s.parent_id,
                    &s.name,
                    &s.kind,
                    &s.agent,
                    &s.start,
                    &s.end,
                    &s.status,
                    &s.status_message,
                    &s.attributes,
                ],
            )
            .await?;
        spans = usize::try_from(n).unwrap_or(usize::MAX);
    }
    if !c.audit.is_empty() {
        let a = &c.audit;
        tx.execute(
            insert_audit,
            &[
                &a.request_id,
                &a.span_id,
                &a.ts_unix_ms,
                &a.caller_email,
                &a.caller_roles,
                &a.acting_for,
                &a.principal,
                &a.credential_mode,
                &a.agent,
                &a.hop,
                &a.target,
                &a.decision,
                &a.reason,
                &a.duration_ms,
                &a.row_id,
                &a.status,
                &a.error_code,
            ],
        )
        .await?;
    }
    if !c.usage.span_id.is_empty() {
        let u = &c.usage;
        tx.execute(
            insert_usage,
            &[
                &u.span_id,
                &u.request_id,
                &u.ts_unix_ms,
                &u.caller_email,
                &u.caller_role,
                &u.agent,
                &u.model,
                &u.prompt_tokens,
                &u.completion_tokens,
                &u.latency_ms,
                &u.status,
                &u.usage_context,
            ],
        )
        .await?;
    }
    if !c.payloads.row_id.is_empty() {
        let p = &c.payloads;
        tx.execute(
            &st.insert_payloads,
            &[
                &p.row_id,
                &p.request_id,
                &p.ts_unix_ms,
                &p.caller_email,
                &p.caller_subject,
                &p.endpoint,
                &p.status,
                &p.duration_ms,
                &p.request_body,
                &p.response_body,
            ],
        )
        .await?;
    }
    Ok(spans)
}

/// A batch, column by column, as the `unnest` inserts take it.
#[derive(Default)]
struct Columns {
    spans: SpanColumns,
    audit: AuditColumns,
    usage: UsageColumns,
    payloads: PayloadColumns,
    /// Rows that cannot be stored at all (a time beyond `i64::MAX`).
    skipped: usize,
}

#[derive(Default)]
struct SpanColumns {
    request_id: Vec<String>,
    trace_id: Vec<String>,
    span_id: Vec<String>,
    parent_id: Vec<Option<String>>,
    name: Vec<String>,
    kind: Vec<&'static str>,
    agent: Vec<Option<String>>,
    start: Vec<i64>,
    end: Vec<i64>,
    status: Vec<&'static str>,
    status_message: Vec<Option<String>>,
    attributes: Vec<String>,
}

impl SpanColumns {
    fn len(&self) -> usize {
        self.span_id.len()
    }
    fn is_empty(&self) -> bool {
        self.span_id.is_empty()
    }
}

#[derive(Default)]
struct UsageColumns {
    span_id: Vec<String>,
    request_id: Vec<String>,
    ts_unix_ms: Vec<i64>,
    caller_email: Vec<String>,
    caller_role: Vec<String>,
    agent: Vec<String>,
    model: Vec<String>,
    prompt_tokens: Vec<i64>,
    completion_tokens: Vec<i64>,
    latency_ms: Vec<i64>,
    status: Vec<String>,
    usage_context: Vec<Option<String>>,
}

impl UsageColumns {
    /// Adds the usage row of an LLM span. Its numbers come from a span that was itself storable
    /// (times within `i64`); token counts beyond `i64::MAX` are clamped rather than dropping the row.
    fn push(&mut self, row: UsageRow) {
        let big = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        self.span_id.push(owned(&row.span_id));
        self.request_id.push(owned(&row.request_id));
        self.ts_unix_ms.push(big(row.ts_unix_ms));
        self.caller_email.push(owned(&row.caller_email));
        self.caller_role.push(owned(&row.caller_role));
        self.agent.push(owned(&row.agent));
        self.model.push(owned(&row.model));
        self.prompt_tokens.push(big(row.prompt_tokens));
        self.completion_tokens.push(big(row.completion_tokens));
        self.latency_ms.push(big(row.latency_ms));
        self.status.push(row.status);
        self.usage_context.push(row.usage_context.as_deref().map(owned));
    }
}

#[derive(Default)]
struct AuditColumns {
    request_id: Vec<String>,
    span_id: Vec<String>,
    ts_unix_ms: Vec<i64>,
    caller_email: Vec<String>,
    caller_roles: Vec<String>,
    acting_for: Vec<Option<String>>,
    principal: Vec<String>,
    credential_mode: Vec<String>,
    agent: Vec<String>,
    hop: Vec<&'static str>,
    target: Vec<String>,
    decision: Vec<&'static str>,
    reason: Vec<Option<String>>,
    duration_ms: Vec<i64>,
    row_id: Vec<String>,
    status: Vec<&'static str>,
    error_code: Vec<Option<String>>,
}

impl AuditColumns {
    fn is_empty(&self) -> bool {
        self.span_id.is_empty()
    }
}

#[derive(Default)]
struct PayloadColumns {
    row_id: Vec<String>,
    request_id: Vec<String>,
    ts_unix_ms: Vec<i64>,
    caller_email: Vec<String>,
    caller_subject: Vec<Option<String>>,
    endpoint: Vec<String>,
    status: Vec<i32>,
    duration_ms: Vec<i64>,
    request_body: Vec<String>,
    response_body: Vec<String>,
}

impl PayloadColumns {
    fn push(&mut self, id: &str, row: &PayloadRow) {
        let big = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        self.row_id.push(owned(id));
        self.request_id.push(owned(&row.request_id));
        self.ts_unix_ms.push(big(row.ts_unix_ms));
        self.caller_email.push(owned(&row.caller_email));
        self.caller_subject.push(row.caller_subject.as_deref().map(owned));
        self.endpoint.push(owned(&row.endpoint));
        self.status.push(i32::from(row.status));
        self.duration_ms.push(big(row.duration_ms));
        self.request_body.push(owned(&row.request_body));
        self.response_body.push(owned(&row.response_body));
    }
}

impl Columns {
    fn push(&mut self, record: &Record) {
        match record {
            Record::Span(span) => self.push_span(span),
            Record::Audit { id, row } => self.push_audit(id, row),
            Record::Payload { id, row } => self.payloads.push(id, row),
            // Written one by one, in order, by `apply_ordered`.
            Record::Turn { .. } | Record::Response { .. } | Record::DeleteResponse { .. } => {}
        }
    }

    fn push_span(&mut self, span: &QueuedSpan) {
        let (Ok(start), Ok(end)) = (i64::try_from(span.start_unix_nano), i64::try_from(span.end_unix_nano))
        else {
            tracing::warn!("store: span rejected: a timestamp is beyond the range PostgreSQL stores");
            self.skipped += 1;
            return;
        };
        let s = &mut self.spans;
        s.request_id.push(owned(&span.request_id));
        s.trace_id.push(owned(&span.trace_id));
        s.span_id.push(owned(&span.span_id));
        s.parent_id.push(span.parent_id.as_deref().map(owned));
        s.name.push(owned(&span.name));
        s.kind.push(span.kind.as_str());
        s.agent.push(span.agent.as_deref().map(owned));
        s.start.push(start);
        s.end.push(end);
        s.status.push(status_name(span.status));
        s.status_message.push(span.status_message.as_deref().map(owned));
        s.attributes.push(attributes_json(&span.attributes));
        if let Some(row) = &span.usage {
            self.usage.push(row.clone());
        }
    }

    fn push_audit(&mut self, id: &str, row: &AuditRecord) {
        let (Ok(ts), Ok(duration)) = (i64::try_from(row.ts_unix_ms), i64::try_from(row.duration_ms)) else {
            tracing::warn!("store: audit row rejected: a time is beyond the range PostgreSQL stores");
            self.skipped += 1;
            return;
        };
        let a = &mut self.audit;
        a.request_id.push(owned(&row.request_id));
        a.span_id.push(owned(&row.span_id));
        a.ts_unix_ms.push(ts);
        a.caller_email.push(owned(&row.caller_email));
        a.caller_roles.push(owned(&row.caller_roles));
        a.acting_for.push(row.acting_for.as_deref().map(owned));
        a.principal.push(owned(&row.principal));
        a.credential_mode.push(owned(&row.credential_mode));
        a.agent.push(owned(&row.agent));
        a.hop.push(row.hop.as_str());
        a.target.push(owned(&row.target));
        a.decision.push(row.decision.as_str());
        a.reason.push(row.reason.as_deref().map(owned));
        a.duration_ms.push(duration);
        a.row_id.push(owned(id));
        a.status.push(row.decision.status());
        a.error_code.push(row.error_code.as_deref().map(owned));
    }
}

/// PostgreSQL text cannot hold NUL characters (SQLite can), so they become U+FFFD rather than
/// failing the row: an audit row with a mangled byte is better evidence than none.
fn clean(s: &str) -> Cow<'_, str> {
    if s.contains('\0') { Cow::Owned(s.replace('\0', "\u{FFFD}")) } else { Cow::Borrowed(s) }
}

fn owned(s: &str) -> String {
    clean(s).into_owned()
}

/// The attributes' JSON `text` for the JSONB column, with NULs replaced as in [`clean`] (JSONB
/// rejects `\u0000`).
fn attributes_json(text: &str) -> String {
    if !text.contains("\\u0000") {
        return text.to_string();
    }
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(json) => clean_json(json).to_string(),
        // Made by serializing a map, so it parses; were it not JSON, the insert says so.
        Err(_) => text.to_string(),
    }
}

fn clean_json(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::String(s) => Value::String(owned(&s)),
        Value::Array(items) => Value::Array(items.into_iter().map(clean_json).collect()),
        Value::Object(map) => {
            Value::Object(map.into_iter().map(|(k, v)| (owned(&k), clean_json(v))).collect())
        }
        other => other,
    }
}

/// Whether the server rejected the data itself (bad value, constraint, limit) rather than
/// failing to run the statement; only then does splitting the batch help.
fn is_data_error(e: &tokio_postgres::Error) -> bool {
    e.code().is_some_and(|code| {
        let class = code.code().get(..2);
        matches!(class, Some("22" | "23" | "54"))
    })
}

/// The default spill file of a store at `config`: in the temporary directory, named by a hash of
/// the target and options (which carry the `search_path`), so stores of different databases or
/// schemas never share one.
fn default_spill_path(config: &Config) -> std::path::PathBuf {
    let key = format!("{}?{}", describe_target(config), config.get_options().unwrap_or_default());
    // FNV-1a: stable across builds and platforms, unlike the standard library's hasher.
    let hash =
        key.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    std::env::temp_dir().join("switchboard-spill").join(format!("postgres-{hash:016x}.jsonl"))
}

/// The writer thread: reports start-up on `ready`, then batches queued rows into transactions
/// until every sender is gone.
fn run_writer(config: Config, batches: Batches, ready: oneshot::Sender<Result<(), String>>) {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            let _ = ready.send(Err(format!("cannot start the writer runtime: {e}")));
            return;
        }
    };
    let mut config = config;
    let connect_timeout = config.get_connect_timeout().copied().unwrap_or(CONNECT_TIMEOUT);
    config.connect_timeout(connect_timeout.min(WRITER_CONNECT_TIMEOUT));
    let mut writer = Writer { config, conn: None };
    if let Err(e) = runtime.block_on(writer.connection()).map(drop) {
        let _ = ready.send(Err(describe(&e)));
        return;
    }
    // The caller may have given up waiting; the queue then closes and this thread ends below.
    let _ = ready.send(Ok(()));

    batches.for_each(|batch| runtime.block_on(writer.write(batch)));
}

/// A description of a PostgreSQL failure: the server's SQLSTATE and message (which name tables,
/// columns and constraints; the offending values are only in the detail, which is left out), or
/// the client-side cause.
fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{} {}: {}", db.severity(), db.code().code(), db.message());
    }
    match std::error::Error::source(e) {
        Some(source) => format!("{e}: {source}"),
        None => e.to_string(),
    }
}

fn describe_pool(e: &PoolError) -> String {
    match e {
        PoolError::Backend(e) => describe(e),
        other => other.to_string(),
    }
}

/// Maps a PostgreSQL failure to an internal error naming the operation, e.g. `store: reading
/// spans failed: ERROR 42P01: relation "spans" does not exist`.
fn pg_error(op: &str, e: &tokio_postgres::Error) -> Error {
    Error::internal(format!("store: {op} failed: {}", describe(e)))
}

/// A stored value that could not be decoded; deliberately carries no value.
#[derive(Debug)]
struct Undecodable(usize);

impl Undecodable {
    fn into_error(self, op: &str) -> Error {
        Error::internal(format!("store: {op} failed: column {} holds a value of an unexpected type", self.0))
    }
}

fn text(row: &Row, idx: usize) -> Result<String, Undecodable> {
    row.try_get(idx).map_err(|_| Undecodable(idx))
}

fn opt_text(row: &Row, idx: usize) -> Result<Option<String>, Undecodable> {
    row.try_get(idx).map_err(|_| Undecodable(idx))
}

fn u64_col(row: &Row, idx: usize) -> Result<u64, Undecodable> {
    let value: i64 = row.try_get(idx).map_err(|_| Undecodable(idx))?;
    u64::try_from(value).map_err(|_| Undecodable(idx))
}

/// Reads a core enum stored under its serde name (the same strings as `as_str`).
fn enum_col<T: DeserializeOwned>(row: &Row, idx: usize) -> Result<T, Undecodable> {
    let name = text(row, idx)?;
    serde_json::from_value(serde_json::Value::String(name)).map_err(|_| Undecodable(idx))
}

fn span_from_row(row: &Row) -> Result<SpanRecord, Undecodable> {
    let attributes = text(row, 11)?;
    Ok(SpanRecord {
        request_id: text(row, 0)?,
        trace_id: text(row, 1)?,
        span_id: text(row, 2)?,
        parent_id: opt_text(row, 3)?,
        name: text(row, 4)?,
        kind: enum_col(row, 5)?,
        agent: opt_text(row, 6)?,
        start_unix_nano: u64_col(row, 7)?,
        end_unix_nano: u64_col(row, 8)?,
        status: enum_col(row, 9)?,
        status_message: opt_text(row, 10)?,
        attributes: serde_json::from_str(&attributes).map_err(|_| Undecodable(11))?,
    })
}

fn audit_from_row(row: &Row) -> Result<AuditRecord, Undecodable> {
    Ok(AuditRecord {
        request_id: text(row, 0)?,
        span_id: text(row, 1)?,
        ts_unix_ms: u64_col(row, 2)?,
        caller_email: text(row, 3)?,
        caller_roles: text(row, 4)?,
        acting_for: opt_text(row, 5)?,
        principal: text(row, 6)?,
        credential_mode: text(row, 7)?,
        agent: text(row, 8)?,
        hop: enum_col(row, 9)?,
        target: text(row, 10)?,
        decision: enum_col(row, 11)?,
        reason: opt_text(row, 12)?,
        duration_ms: u64_col(row, 13)?,
        error_code: opt_text(row, 14)?,
    })
}

fn payload_from_row(row: &Row) -> Result<PayloadRow, Undecodable> {
    let status: i32 = row.try_get(5).map_err(|_| Undecodable(5))?;
    Ok(PayloadRow {
        request_id: text(row, 0)?,
        ts_unix_ms: u64_col(row, 1)?,
        caller_email: text(row, 2)?,
        caller_subject: opt_text(row, 3)?,
        endpoint: text(row, 4)?,
        status: u16::try_from(status).map_err(|_| Undecodable(5))?,
        duration_ms: u64_col(row, 6)?,
        request_body: text(row, 7)?,
        response_body: text(row, 8)?,
    })
}

fn usage_from_row(row: &Row) -> Result<UsageRow, Undecodable> {
    Ok(UsageRow {
        span_id: text(row, 0)?,
        request_id: text(row, 1)?,
        ts_unix_ms: u64_col(row, 2)?,
        caller_email: text(row, 3)?,
        caller_role: text(row, 4)?,
        agent: text(row, 5)?,
        model: text(row, 6)?,
        prompt_tokens: u64_col(row, 7)?,
        completion_tokens: u64_col(row, 8)?,
        latency_ms: u64_col(row, 9)?,
        status: text(row, 10)?,
        usage_context: opt_text(row, 11)?,
    })
}

fn status_name(status: SpanStatus) -> &'static str {
    match status {
        SpanStatus::Ok => "ok",
        SpanStatus::Error => "error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_breaker_opens_with_a_growing_back_off_and_a_success_closes_it() {
        let breaker = Breaker::default();
        assert_eq!(breaker.open_for(), None, "closed at first");
        breaker.failed();
        let first = breaker.open_for().expect("open after a failure");
        assert!(first <= crate::queue::FIRST_RETRY);
        breaker.failed();
        let second = breaker.open_for().expect("still open");
        assert!(second > crate::queue::FIRST_RETRY, "the back-off doubles");
        breaker.succeeded();
        assert_eq!(breaker.open_for(), None, "a success closes it");
    }

    #[test]
    fn targets_never_show_the_password() {
        let url = "postgres://alice:s3cr%40t@db.internal:6543/app?options=-c%20search_path%3Dx";
        let shown = PostgresStore::redact_url(url);
        assert_eq!(shown, "postgres://alice@db.internal:6543/app");
        let kv = "host=db.internal port=5433 user=bob password=hunter2 dbname=app";
        assert_eq!(PostgresStore::redact_url(kv), "postgres://bob@db.internal:5433/app");
        assert_eq!(PostgresStore::redact_url("postgres://a:b@h:notaport/x"), "<invalid PostgreSQL URL>");
    }

    #[test]
    fn invalid_urls_and_unsupported_tls_are_config_errors_without_the_password() {
        let e = parse_config("postgres://u:hunter2@h:notaport/x").unwrap_err();
        assert_eq!(e.kind, switchboard_core::ErrorKind::Config);
        assert!(!e.message.contains("hunter2"), "{}", e.message);
        let e = parse_config("postgres://u:hunter2@h/x?sslmode=require").unwrap_err();
        assert!(e.message.contains("sslmode=require"), "{}", e.message);
        assert!(!e.message.contains("hunter2"), "{}", e.message);
        let c = parse_config("postgres://u@h/x").unwrap();
        assert_eq!(c.get_connect_timeout(), Some(&CONNECT_TIMEOUT));
        assert_eq!(c.get_application_name(), Some("switchboard"));
    }

    #[test]
    fn nul_characters_are_replaced_everywhere() {
        assert_eq!(clean("a\0b"), "a\u{FFFD}b");
        assert!(matches!(clean("plain"), Cow::Borrowed("plain")));
        let mut attrs = serde_json::Map::new();
        attrs.insert("k\0".into(), serde_json::json!(["x\0", {"y": "z\0"}, 1]));
        attrs.insert("literal".into(), serde_json::json!("\\u0000 stays"));
        let text = serde_json::Value::Object(attrs).to_string();
        let json: serde_json::Value = serde_json::from_str(&attributes_json(&text)).unwrap();
        assert_eq!(json["k\u{FFFD}"], serde_json::json!(["x\u{FFFD}", {"y": "z\u{FFFD}"}, 1]));
        assert_eq!(json["literal"], "\\u0000 stays");
    }
}
