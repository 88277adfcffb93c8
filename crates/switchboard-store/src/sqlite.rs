//! The embedded SQLite backend.

use crate::behind::{merge_turns, pending_response};
use crate::payload::{PayloadFilter, PayloadRow};
use crate::queue::{Record, Unavailable, WriteQueue};
use crate::queued_span::QueuedSpan;
use crate::spill::SpillConfig;
use crate::usage::{AuditFilter, UsageGroup, UsageRow, UsageTotal};
use crate::{ConnectionGrant, Store, StoredResponse, check_grant_names, schema};
use rusqlite::{CachedStatement, Connection, Row, TransactionBehavior, params};
use serde::de::DeserializeOwned;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use switchboard_core::{
    AuditRecord, Error, Message, Result, SpanRecord, SpanStatus, TelemetrySink, unix_nanos_now,
};

/// How many spans and audit rows may wait for the writer thread. When the queue is full the
/// recording call appends the row to the spill file instead of waiting: the request path never
/// waits for the store, and audit rows are evidence that must not be dropped.
pub const QUEUE_CAPACITY: usize = 8192;

/// Pages in the WAL before a commit checkpoints it into the database (SQLite's default is 1,000).
const WAL_AUTOCHECKPOINT_PAGES: i64 = 4000;

/// How long a statement waits for another connection's (or process's) write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// How often the writer tries a failing batch before spilling it.
const WRITE_ATTEMPTS: u32 = 3;

/// The pause before retry `n` is `n` times this.
const RETRY_BACKOFF: Duration = Duration::from_millis(100);

/// A span seen before (a replayed batch: same request, same span id) is skipped.
const INSERT_SPAN: &str = "INSERT INTO spans (request_id, trace_id, span_id, parent_id, name, \
     kind, agent, start_unix_nano, end_unix_nano, status, status_message, attributes) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12) \
     ON CONFLICT (request_id, span_id) DO NOTHING";

/// A row id seen before (a replayed batch) is skipped, as a span is.
const INSERT_AUDIT: &str = "INSERT INTO audit (request_id, span_id, ts_unix_ms, caller_email, \
     caller_roles, acting_for, principal, credential_mode, agent, hop, target, decision, reason, \
     duration_ms, row_id, status, error_code, latency_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, \
     ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?14) ON CONFLICT (row_id) DO NOTHING";

/// A usage row derived from an LLM span; its request and span id make a replay insert nothing.
const INSERT_USAGE: &str = "INSERT INTO usage (span_id, request_id, ts_unix_ms, caller_email, \
     caller_role, agent, model, prompt_tokens, completion_tokens, latency_ms, status, usage_context) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12) \
     ON CONFLICT (request_id, span_id) DO NOTHING";

/// A payload log row; its row id makes a replay insert nothing.
const INSERT_PAYLOAD: &str = "INSERT INTO payloads (row_id, request_id, ts_unix_ms, caller_email, \
     caller_subject, endpoint, status, duration_ms, request_body, response_body) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) ON CONFLICT (row_id) DO NOTHING";

const PAYLOAD_COLUMNS: &str = "request_id, ts_unix_ms, caller_email, caller_subject, endpoint, \
     status, duration_ms, request_body, response_body";

/// The next turn of a thread. The writer's transaction is IMMEDIATE, so no other process can
/// pick the same sequence number between the MAX and the insert; a turn id seen before (a
/// replayed batch) inserts nothing.
const APPEND_TURN: &str = "INSERT INTO thread_turns (thread_id, seq, request_id, role, content, \
     agent, created_unix_ms, turn_id) SELECT ?1, COALESCE(MAX(seq) + 1, 0), ?2, ?3, ?4, ?5, ?6, ?7 \
     FROM thread_turns WHERE thread_id = ?1 ON CONFLICT (turn_id) DO NOTHING";

const PUT_RESPONSE: &str = "INSERT OR REPLACE INTO responses (id, owner, previous_id, turns, body, \
     created_unix_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)";

const DELETE_RESPONSE: &str = "DELETE FROM responses WHERE id = ?1 AND owner = ?2";

const USAGE_COLUMNS: &str = "span_id, request_id, ts_unix_ms, caller_email, caller_role, agent, \
     model, prompt_tokens, completion_tokens, latency_ms, status, usage_context";

const SELECT_SPANS: &str = "SELECT request_id, trace_id, span_id, parent_id, name, kind, agent, \
     start_unix_nano, end_unix_nano, status, status_message, attributes FROM spans \
     WHERE request_id = ?1 ORDER BY start_unix_nano, rowid";

const AUDIT_COLUMNS: &str = "request_id, span_id, ts_unix_ms, caller_email, caller_roles, \
     acting_for, principal, credential_mode, agent, hop, target, decision, reason, duration_ms, \
     error_code";

/// Grants, or re-activates a revoked grant; changes nothing (0 rows) when the grant is active.
const GRANT: &str = "INSERT INTO connection_grants (connection, principal, granted_by, granted_unix_ms) \
     VALUES (?1, ?2, ?3, ?4) ON CONFLICT (connection, principal) DO UPDATE SET \
     granted_by = excluded.granted_by, granted_unix_ms = excluded.granted_unix_ms, \
     revoked_by = NULL, revoked_unix_ms = NULL \
     WHERE connection_grants.revoked_unix_ms IS NOT NULL";

const REVOKE: &str = "UPDATE connection_grants SET revoked_by = ?3, revoked_unix_ms = ?4 \
     WHERE connection = ?1 AND principal = ?2 AND revoked_unix_ms IS NULL";

/// Records a revoke of a pair that was never granted, so a later seed does not grant it.
const REVOKE_UNSEEN: &str = "INSERT INTO connection_grants (connection, principal, revoked_by, \
     revoked_unix_ms) VALUES (?1, ?2, ?3, ?4) ON CONFLICT (connection, principal) DO NOTHING";

const SEED: &str = "INSERT INTO connection_grants (connection, principal, granted_by, granted_unix_ms) \
     VALUES (?1, ?2, ?3, ?4) ON CONFLICT (connection, principal) DO NOTHING";

/// An upsert rather than an UPDATE so a missing version row cannot silently stop other processes
/// from noticing changes.
const BUMP_GRANTS_VERSION: &str = "INSERT INTO connection_grants_version (singleton, version) \
     VALUES (1, 1) ON CONFLICT (singleton) DO UPDATE SET version = version + 1";

const SELECT_GRANTS: &str = "SELECT connection, principal, granted_by, granted_unix_ms \
     FROM connection_grants WHERE revoked_unix_ms IS NULL AND (?1 IS NULL OR connection = ?1) \
     ORDER BY connection, principal";

/// SQLite-backed [`Store`]. Several handles, in one process or several (the CLI and a server),
/// may share one file: WAL mode lets readers proceed during writes and `busy_timeout` serialises
/// writers.
///
/// Spans and audit rows go through a bounded queue ([`QUEUE_CAPACITY`]) to one writer thread that
/// batches them into transactions; a batch that cannot be written, or a row that finds the queue
/// full, goes to a spill file and is replayed once the database can be written again. Reads and thread turns use a
/// separate connection on Tokio's blocking pool, as do USE CONNECTION grant changes, which are
/// committed (and bump the grants version) before the call returns. SQLite cannot notify other
/// processes, so [`Store::wait_grants_changed`] only sleeps and callers poll
/// [`Store::grants_version`].
///
/// Dropping the store closes the queue and waits for the writer to drain it, so rows recorded
/// before the drop are on disk once the drop returns.
pub struct SqliteStore {
    path: PathBuf,
    /// Spans and audit rows on their way to the writer thread; dropping it drains the queue.
    writes: WriteQueue,
    conn: Arc<Mutex<Connection>>,
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore").field("path", &self.path).finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and its parent directories, applies the
    /// schema, and starts the writer thread.
    pub fn open(path: &Path) -> Result<Self> {
        Self::open_with_spill(path, &SpillConfig::new(default_spill_path(path)))
    }

    /// [`Self::open`] spilling to `spill` while the database cannot be written (locked by another
    /// process beyond the busy timeout, disk errors). The default spill file is
    /// `<database>-spill.jsonl` next to the database.
    pub fn open_with_spill(path: &Path, spill: &SpillConfig) -> Result<Self> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| {
                Error::config(format!("store: cannot create directory {}: {e}", parent.display()))
            })?;
        }
        let mut writer_conn = open_connection(path)?;
        schema::migrate(&mut writer_conn)?;
        let conn = open_connection(path)?;

        let writes = WriteQueue::spawn("switchboard-store-writer", QUEUE_CAPACITY, spill, move |batches| {
            batches.for_each(|batch| write_with_retry(&mut writer_conn, batch))
        })?;

        Ok(Self { path: path.to_path_buf(), writes, conn: Arc::new(Mutex::new(conn)) })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` with the foreground connection on the blocking pool, keeping disk I/O off the
    /// async workers.
    async fn with_conn<T, F>(&self, op: &'static str, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            // A panic while holding the lock cannot leave a transaction open (rusqlite rolls back
            // on drop), so the connection is still usable.
            let mut guard = conn.lock().unwrap_or_else(PoisonError::into_inner);
            f(&mut guard).map_err(|e| db_error(op, &e))
        })
        .await
        .map_err(|_| Error::internal(format!("store: {op} failed: the blocking task did not finish")))?
    }
}

impl TelemetrySink for SqliteStore {
    fn span(&self, span: SpanRecord) {
        self.writes.span(span);
    }

    fn audit(&self, record: AuditRecord) {
        self.writes.audit(record);
    }
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    async fn spans(&self, request_id: &str) -> Result<Vec<SpanRecord>> {
        let request_id = request_id.to_owned();
        self.with_conn("reading spans", move |conn| {
            let mut stmt = conn.prepare_cached(SELECT_SPANS)?;
            let rows = stmt.query_map([request_id], span_from_row)?;
            rows.collect()
        })
        .await
    }

    async fn recent_audit(&self, limit: usize) -> Result<Vec<AuditRecord>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.with_conn("reading recent audit rows", move |conn| {
            let sql = format!("SELECT {AUDIT_COLUMNS} FROM audit ORDER BY ts_unix_ms DESC, id DESC LIMIT ?1");
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows = stmt.query_map([limit], audit_from_row)?;
            rows.collect()
        })
        .await
    }

    async fn audit_for_request(&self, request_id: &str) -> Result<Vec<AuditRecord>> {
        let request_id = request_id.to_owned();
        self.with_conn("reading audit rows of a request", move |conn| {
            let sql =
                format!("SELECT {AUDIT_COLUMNS} FROM audit WHERE request_id = ?1 ORDER BY ts_unix_ms, id");
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows = stmt.query_map([request_id], audit_from_row)?;
            rows.collect()
        })
        .await
    }

    async fn query_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>> {
        filter.validate()?;
        let f = filter.clone();
        let since =
            f.since_unix_ms.map(to_i64).transpose().map_err(|e| db_error("reading audit rows", &e))?;
        let limit = i64::try_from(f.limit).unwrap_or(i64::MAX);
        self.with_conn("reading audit rows", move |conn| {
            // `status` is NULL on rows written before schema 4; their decision names the same
            // outcome (`allowed` for success), so a filter matches either.
            let sql = format!(
                "SELECT {AUDIT_COLUMNS} FROM audit WHERE (?1 IS NULL OR ts_unix_ms >= ?1) \
                 AND (?2 IS NULL OR lower(caller_email) = lower(?2)) \
                 AND (?3 IS NULL OR COALESCE(status, CASE decision WHEN 'allowed' THEN 'success' \
                 ELSE decision END) = ?3) AND (?4 IS NULL OR agent = ?4) \
                 AND (?5 IS NULL OR request_id = ?5) ORDER BY ts_unix_ms DESC, id DESC LIMIT ?6"
            );
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows = stmt.query_map(
                params![since, f.caller, f.status, f.agent, f.request_id, limit],
                audit_from_row,
            )?;
            rows.collect()
        })
        .await
    }

    async fn usage_for_request(&self, request_id: &str) -> Result<Vec<UsageRow>> {
        let request_id = request_id.to_owned();
        self.with_conn("reading usage rows of a request", move |conn| {
            let sql =
                format!("SELECT {USAGE_COLUMNS} FROM usage WHERE request_id = ?1 ORDER BY ts_unix_ms, rowid");
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows = stmt.query_map([request_id], usage_from_row)?;
            rows.collect()
        })
        .await
    }

    async fn usage_totals(
        &self,
        since_unix_ms: Option<u64>,
        by: Option<UsageGroup>,
    ) -> Result<Vec<UsageTotal>> {
        let since =
            since_unix_ms.map(to_i64).transpose().map_err(|e| db_error("reading usage totals", &e))?;
        self.with_conn("reading usage totals", move |conn| {
            // The grouping column comes from a fixed list, never from input.
            let key = by.map_or("NULL", UsageGroup::column);
            let sql = format!(
                "SELECT {key}, COUNT(DISTINCT request_id), COUNT(*), COALESCE(SUM(prompt_tokens), 0), \
                 COALESCE(SUM(completion_tokens), 0), COALESCE(SUM(latency_ms), 0) FROM usage \
                 WHERE (?1 IS NULL OR ts_unix_ms >= ?1) GROUP BY 1 \
                 ORDER BY SUM(prompt_tokens) + SUM(completion_tokens) DESC, 1"
            );
            let mut stmt = conn.prepare(&sql)?;
            let rows = stmt.query_map(params![since], |row| {
                Ok(UsageTotal {
                    key: row.get(0)?,
                    requests: u64_col(row, 1)?,
                    calls: u64_col(row, 2)?,
                    prompt_tokens: u64_col(row, 3)?,
                    completion_tokens: u64_col(row, 4)?,
                    latency_ms: u64_col(row, 5)?,
                })
            })?;
            let totals: Vec<UsageTotal> = rows.collect::<rusqlite::Result<_>>()?;
            Ok(crate::usage::with_grand_total(totals, by))
        })
        .await
    }

    async fn append_turn(&self, thread_id: &str, request_id: &str, message: &Message) -> Result<()> {
        self.writes.append_turn(thread_id, request_id, message)
    }

    async fn thread(&self, thread_id: &str) -> Result<Vec<Message>> {
        // Pending turns first: see `WriteBehind::turns`.
        let pending = self.writes.behind().turns(thread_id);
        let thread_id = thread_id.to_owned();
        let stored = self
            .with_conn("reading a thread", move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT role, content, agent, turn_id FROM thread_turns WHERE thread_id = ?1 ORDER BY seq",
                )?;
                let rows = stmt.query_map([thread_id], |row| {
                    let message = Message { role: enum_col(row, 0)?, content: row.get(1)?, agent: row.get(2)? };
                    Ok((row.get(3)?, message))
                })?;
                rows.collect()
            })
            .await?;
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
        let (owner, id) = (owner.to_owned(), id.to_owned());
        self.with_conn("reading a response", move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, owner, previous_id, turns, body, created_unix_ms FROM responses \
                 WHERE id = ?1 AND owner = ?2 AND created_unix_ms >= ?3",
            )?;
            let mut rows = stmt.query(params![id, owner, to_i64(not_before_unix_ms)?])?;
            let Some(row) = rows.next()? else { return Ok(None) };
            let turns: String = row.get(3)?;
            let body: String = row.get(4)?;
            Ok(Some(StoredResponse {
                id: row.get(0)?,
                owner: row.get(1)?,
                previous_id: row.get(2)?,
                turns: serde_json::from_str(&turns).map_err(|_| undecodable(3))?,
                body: serde_json::from_str(&body).map_err(|_| undecodable(4))?,
                created_unix_ms: u64_col(row, 5)?,
            }))
        })
        .await
    }

    async fn delete_response(&self, owner: &str, id: &str) -> Result<bool> {
        if let Some(deleted) = self.writes.delete_pending_response(owner, id) {
            return Ok(deleted);
        }
        let (owner, id) = (owner.to_owned(), id.to_owned());
        self.with_conn("deleting a response", move |conn| {
            conn.prepare_cached(DELETE_RESPONSE)?.execute(params![id, owner]).map(|n| n > 0)
        })
        .await
    }

    async fn purge_responses(&self, before_unix_ms: u64) -> Result<u64> {
        // Responses still written behind are committed (or spilled) first, so none escapes the purge.
        self.writes.flush().await;
        self.with_conn("purging expired responses", move |conn| {
            conn.prepare_cached("DELETE FROM responses WHERE created_unix_ms < ?1")?
                .execute([to_i64(before_unix_ms)?])
                .map(|n| n as u64)
        })
        .await
    }

    fn log_payload(&self, row: PayloadRow) {
        self.writes.payload(row);
    }

    async fn payloads(&self, filter: &PayloadFilter) -> Result<Vec<PayloadRow>> {
        filter.validate()?;
        let f = filter.clone();
        let since =
            f.since_unix_ms.map(to_i64).transpose().map_err(|e| db_error("reading payload rows", &e))?;
        let limit = i64::try_from(f.limit).unwrap_or(i64::MAX);
        self.with_conn("reading payload rows", move |conn| {
            let sql = format!(
                "SELECT {PAYLOAD_COLUMNS} FROM payloads WHERE (?1 IS NULL OR ts_unix_ms >= ?1) \
                 AND (?2 IS NULL OR request_id = ?2) ORDER BY ts_unix_ms DESC, rowid DESC LIMIT ?3"
            );
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows = stmt.query_map(params![since, f.request_id, limit], payload_from_row)?;
            rows.collect()
        })
        .await
    }

    async fn flush(&self) {
        self.writes.flush().await;
    }

    async fn health(&self) -> Result<()> {
        if !self.writes.is_alive() {
            return Err(Error::internal("store: health check failed: the writer thread has stopped"));
        }
        self.with_conn("health check", |conn| conn.query_row("SELECT 1", [], |row| row.get::<_, i64>(0)))
            .await
            .map(drop)
    }

    async fn grant_connection(&self, connection: &str, principal: &str, by: &str) -> Result<bool> {
        check_grant_names(connection, &[principal], by)?;
        let (connection, principal, by) = (connection.to_owned(), principal.to_owned(), by.to_owned());
        let now = now_unix_ms();
        self.with_conn("granting USE CONNECTION", move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let changed = tx.execute(GRANT, params![connection, principal, by, to_i64(now)?])? > 0;
            if changed {
                tx.execute(BUMP_GRANTS_VERSION, [])?;
            }
            tx.commit()?;
            Ok(changed)
        })
        .await
    }

    async fn revoke_connection(&self, connection: &str, principal: &str, by: &str) -> Result<bool> {
        check_grant_names(connection, &[principal], by)?;
        let (connection, principal, by) = (connection.to_owned(), principal.to_owned(), by.to_owned());
        let now = now_unix_ms();
        self.with_conn("revoking USE CONNECTION", move |conn| {
            let now = to_i64(now)?;
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let args = params![connection, principal, by, now];
            let removed = tx.execute(REVOKE, args)? > 0;
            if removed {
                tx.execute(BUMP_GRANTS_VERSION, [])?;
            } else {
                tx.execute(REVOKE_UNSEEN, args)?;
            }
            tx.commit()?;
            Ok(removed)
        })
        .await
    }

    async fn seed_connection_grants(&self, connection: &str, principals: &[String], by: &str) -> Result<()> {
        let names: Vec<&str> = principals.iter().map(String::as_str).collect();
        check_grant_names(connection, &names, by)?;
        if principals.is_empty() {
            return Ok(());
        }
        let (connection, principals, by) = (connection.to_owned(), principals.to_vec(), by.to_owned());
        let now = now_unix_ms();
        self.with_conn("seeding USE CONNECTION grants", move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut added = 0;
            {
                let mut seed = tx.prepare_cached(SEED)?;
                for principal in &principals {
                    added += seed.execute(params![connection, principal, by, to_i64(now)?])?;
                }
            }
            if added > 0 {
                tx.execute(BUMP_GRANTS_VERSION, [])?;
            }
            tx.commit()
        })
        .await
    }

    async fn connection_grants(&self, connection: Option<&str>) -> Result<Vec<ConnectionGrant>> {
        let connection = connection.map(str::to_owned);
        self.with_conn("reading USE CONNECTION grants", move |conn| {
            let mut stmt = conn.prepare_cached(SELECT_GRANTS)?;
            let rows = stmt.query_map([connection], |row| {
                Ok(ConnectionGrant {
                    connection: row.get(0)?,
                    principal: row.get(1)?,
                    granted_by: row.get(2)?,
                    granted_unix_ms: u64_col(row, 3)?,
                })
            })?;
            rows.collect()
        })
        .await
    }

    async fn grants_version(&self) -> Result<u64> {
        // Read from the file every time: another process (the CLI) may have changed the grants.
        self.with_conn("reading the grants version", |conn| {
            let version: i64 = conn.query_row(
                "SELECT COALESCE((SELECT version FROM connection_grants_version), 0)",
                [],
                |row| row.get(0),
            )?;
            u64::try_from(version).map_err(|_| undecodable(0))
        })
        .await
    }

    async fn wait_grants_changed(&self, max_wait: Duration) {
        // SQLite cannot notify other processes; callers poll `grants_version` after each wait.
        tokio::time::sleep(max_wait).await;
    }

    async fn put_user_token(&self, connection: &str, subject: &str, sealed: &[u8]) -> Result<()> {
        check_grant_names(connection, &[subject], "user token")?;
        let (connection, subject, sealed) = (connection.to_owned(), subject.to_owned(), sealed.to_vec());
        self.with_conn("storing a user token", move |conn| {
            conn.prepare_cached(
                "INSERT OR REPLACE INTO user_tokens (connection, subject, sealed, updated_unix_ms) \
                 VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![connection, subject, sealed, to_i64(now_unix_ms())?])
            .map(drop)
        })
        .await
    }

    async fn user_token(&self, connection: &str, subject: &str) -> Result<Option<Vec<u8>>> {
        let (connection, subject) = (connection.to_owned(), subject.to_owned());
        self.with_conn("reading a user token", move |conn| {
            let mut stmt =
                conn.prepare_cached("SELECT sealed FROM user_tokens WHERE connection = ?1 AND subject = ?2")?;
            let mut rows = stmt.query(params![connection, subject])?;
            match rows.next()? {
                Some(row) => Ok(Some(row.get(0)?)),
                None => Ok(None),
            }
        })
        .await
    }

    async fn delete_user_token(&self, connection: &str, subject: &str) -> Result<bool> {
        let (connection, subject) = (connection.to_owned(), subject.to_owned());
        self.with_conn("deleting a user token", move |conn| {
            conn.prepare_cached("DELETE FROM user_tokens WHERE connection = ?1 AND subject = ?2")?
                .execute(params![connection, subject])
                .map(|n| n > 0)
        })
        .await
    }

    async fn delete_user_token_if(&self, connection: &str, subject: &str, sealed: &[u8]) -> Result<bool> {
        let (connection, subject, sealed) = (connection.to_owned(), subject.to_owned(), sealed.to_vec());
        self.with_conn("deleting a user token", move |conn| {
            conn.prepare_cached(
                "DELETE FROM user_tokens WHERE connection = ?1 AND subject = ?2 AND sealed = ?3",
            )?
            .execute(params![connection, subject, sealed])
            .map(|n| n > 0)
        })
        .await
    }
}

fn now_unix_ms() -> u64 {
    unix_nanos_now() / 1_000_000
}

/// Opens one connection configured for sharing the file with other connections and processes.
fn open_connection(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path).map_err(|e| {
        Error::internal(format!("store: opening {} failed: {}", path.display(), describe(&e)))
    })?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(|e| db_error("setting busy_timeout", &e))?;
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "wal", |row| row.get(0))
        .map_err(|e| db_error("enabling WAL mode", &e))?;
    if !mode.eq_ignore_ascii_case("wal") {
        // Some filesystems (network mounts) refuse WAL; the store still works, but a reader can
        // then be blocked by a writer, so make the degradation visible.
        tracing::warn!(journal_mode = %mode, "store: WAL mode unavailable; concurrent access will be slower");
    }
    // FULL makes every committed batch survive power loss, not just a process crash: audit rows
    // are evidence, and batching keeps the fsync cost per row small.
    conn.pragma_update(None, "synchronous", "FULL").map_err(|e| db_error("setting synchronous mode", &e))?;
    // The writer rewrites the same right-hand index and table pages in every batch: a larger WAL
    // (16 MB before a checkpoint, from 4 MB) copies each such page back to the database once
    // instead of many times. The page cache stays at SQLite's 2 MB: 8 MB for the writer saved it
    // more CPU but held 6 MB more with 10,000 streams open (README, The telemetry writer's cost).
    conn.pragma_update(None, "wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES)
        .map_err(|e| db_error("setting the WAL checkpoint interval", &e))?;
    Ok(conn)
}

/// `<database>-spill.jsonl`, next to the database.
pub(crate) fn default_spill_path(db: &Path) -> PathBuf {
    let mut name = db.file_name().map(|n| n.to_os_string()).unwrap_or_else(|| "switchboard.db".into());
    name.push("-spill.jsonl");
    db.with_file_name(name)
}

/// Writes one batch, retrying briefly (a lock held by another process is usually released within
/// moments); if it still fails, the queue spills the batch and replays it later.
fn write_with_retry(conn: &mut Connection, batch: &[Record]) -> std::result::Result<usize, Unavailable> {
    let mut last = String::new();
    for attempt in 1..=WRITE_ATTEMPTS {
        match write_batch(conn, batch) {
            Ok(skipped) => return Ok(skipped),
            Err(e) => {
                last = describe(&e);
                tracing::warn!(attempt, rows = batch.len(), error = %last, "store: writing a telemetry batch failed");
                if attempt < WRITE_ATTEMPTS {
                    std::thread::sleep(RETRY_BACKOFF * attempt);
                }
            }
        }
    }
    Err(Unavailable(last))
}

/// Writes one batch in a transaction and returns how many rows were skipped. A row that violates
/// a constraint is skipped (SQLite rolls back only that statement) so one bad row cannot sink its
/// neighbours; an error that aborts the transaction fails the whole batch for a retry.
fn write_batch(conn: &mut Connection, batch: &[Record]) -> rusqlite::Result<usize> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut skipped = 0;
    {
        let mut spans = tx.prepare_cached(INSERT_SPAN)?;
        let mut audit = tx.prepare_cached(INSERT_AUDIT)?;
        let mut usage = tx.prepare_cached(INSERT_USAGE)?;
        let mut payloads = tx.prepare_cached(INSERT_PAYLOAD)?;
        for record in batch {
            let inserted = match record {
                Record::Span(span) => insert_span(&mut spans, span).and_then(|()| match &span.usage {
                    Some(row) => insert_usage(&mut usage, row),
                    None => Ok(()),
                }),
                Record::Audit { id, row } => insert_audit(&mut audit, id, row),
                Record::Payload { id, row } => insert_payload(&mut payloads, id, row),
                Record::Turn { id, thread_id, request_id, message, created_unix_ms } => {
                    to_i64(*created_unix_ms).and_then(|created| {
                        tx.prepare_cached(APPEND_TURN)?
                            .execute(params![
                                thread_id,
                                request_id,
                                message.role.as_str(),
                                message.content,
                                message.agent,
                                created,
                                id,
                            ])
                            .map(drop)
                    })
                }
                Record::Response { response: r, .. } => put_response(&tx, r),
                Record::DeleteResponse { owner, response_id, .. } => {
                    tx.prepare_cached(DELETE_RESPONSE)?.execute(params![response_id, owner]).map(drop)
                }
            };
            if let Err(e) = inserted {
                if tx.is_autocommit() {
                    return Err(e);
                }
                tracing::warn!(error = %describe(&e), "store: telemetry row rejected");
                skipped += 1;
            }
        }
    }
    tx.commit()?;
    Ok(skipped)
}

fn insert_span(stmt: &mut CachedStatement<'_>, span: &QueuedSpan) -> rusqlite::Result<()> {
    stmt.execute(params![
        span.request_id,
        span.trace_id,
        span.span_id,
        span.parent_id,
        span.name,
        span.kind.as_str(),
        span.agent,
        to_i64(span.start_unix_nano)?,
        to_i64(span.end_unix_nano)?,
        status_name(span.status),
        span.status_message,
        span.attributes,
    ])
    .map(drop)
}

fn insert_audit(stmt: &mut CachedStatement<'_>, id: &str, row: &AuditRecord) -> rusqlite::Result<()> {
    stmt.execute(params![
        row.request_id,
        row.span_id,
        to_i64(row.ts_unix_ms)?,
        row.caller_email,
        row.caller_roles,
        row.acting_for,
        row.principal,
        row.credential_mode,
        row.agent,
        row.hop.as_str(),
        row.target,
        row.decision.as_str(),
        row.reason,
        to_i64(row.duration_ms)?,
        id,
        row.decision.status(),
        row.error_code,
    ])
    .map(drop)
}

fn put_response(tx: &rusqlite::Transaction<'_>, r: &StoredResponse) -> rusqlite::Result<()> {
    let turns =
        serde_json::to_string(&r.turns).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
    tx.prepare_cached(PUT_RESPONSE)?
        .execute(params![r.id, r.owner, r.previous_id, turns, r.body.to_string(), to_i64(r.created_unix_ms)?])
        .map(drop)
}

fn insert_payload(stmt: &mut CachedStatement<'_>, id: &str, row: &PayloadRow) -> rusqlite::Result<()> {
    stmt.execute(params![
        id,
        row.request_id,
        to_i64(row.ts_unix_ms)?,
        row.caller_email,
        row.caller_subject,
        row.endpoint,
        row.status,
        to_i64(row.duration_ms)?,
        row.request_body,
        row.response_body,
    ])
    .map(drop)
}

fn payload_from_row(row: &Row<'_>) -> rusqlite::Result<PayloadRow> {
    Ok(PayloadRow {
        request_id: row.get(0)?,
        ts_unix_ms: u64_col(row, 1)?,
        caller_email: row.get(2)?,
        caller_subject: row.get(3)?,
        endpoint: row.get(4)?,
        status: row.get(5)?,
        duration_ms: u64_col(row, 6)?,
        request_body: row.get(7)?,
        response_body: row.get(8)?,
    })
}

fn insert_usage(stmt: &mut CachedStatement<'_>, row: &UsageRow) -> rusqlite::Result<()> {
    stmt.execute(params![
        row.span_id,
        row.request_id,
        to_i64(row.ts_unix_ms)?,
        row.caller_email,
        row.caller_role,
        row.agent,
        row.model,
        to_i64(row.prompt_tokens)?,
        to_i64(row.completion_tokens)?,
        to_i64(row.latency_ms)?,
        row.status,
        row.usage_context,
    ])
    .map(drop)
}

fn usage_from_row(row: &Row<'_>) -> rusqlite::Result<UsageRow> {
    Ok(UsageRow {
        span_id: row.get(0)?,
        request_id: row.get(1)?,
        ts_unix_ms: u64_col(row, 2)?,
        caller_email: row.get(3)?,
        caller_role: row.get(4)?,
        agent: row.get(5)?,
        model: row.get(6)?,
        prompt_tokens: u64_col(row, 7)?,
        completion_tokens: u64_col(row, 8)?,
        latency_ms: u64_col(row, 9)?,
        status: row.get(10)?,
        usage_context: row.get(11)?,
    })
}

fn span_from_row(row: &Row<'_>) -> rusqlite::Result<SpanRecord> {
    let attributes: String = row.get(11)?;
    Ok(SpanRecord {
        request_id: row.get(0)?,
        trace_id: row.get(1)?,
        span_id: row.get(2)?,
        parent_id: row.get(3)?,
        name: row.get(4)?,
        kind: enum_col(row, 5)?,
        agent: row.get(6)?,
        start_unix_nano: u64_col(row, 7)?,
        end_unix_nano: u64_col(row, 8)?,
        status: enum_col(row, 9)?,
        status_message: row.get(10)?,
        attributes: serde_json::from_str(&attributes).map_err(|_| undecodable(11))?,
    })
}

fn audit_from_row(row: &Row<'_>) -> rusqlite::Result<AuditRecord> {
    Ok(AuditRecord {
        request_id: row.get(0)?,
        span_id: row.get(1)?,
        ts_unix_ms: u64_col(row, 2)?,
        caller_email: row.get(3)?,
        caller_roles: row.get(4)?,
        acting_for: row.get(5)?,
        principal: row.get(6)?,
        credential_mode: row.get(7)?,
        agent: row.get(8)?,
        hop: enum_col(row, 9)?,
        target: row.get(10)?,
        decision: enum_col(row, 11)?,
        reason: row.get(12)?,
        duration_ms: u64_col(row, 13)?,
        error_code: row.get(14)?,
    })
}

/// Reads a core enum stored under its serde name. The core types' serde names are the same
/// strings as their `as_str`, so this needs no second hand-written table that could drift.
fn enum_col<T: DeserializeOwned>(row: &Row<'_>, idx: usize) -> rusqlite::Result<T> {
    let name: String = row.get(idx)?;
    serde_json::from_value(serde_json::Value::String(name)).map_err(|_| undecodable(idx))
}

/// SQLite integers are signed; times and durations beyond `i64::MAX` are rejected rather than
/// wrapped into negative numbers.
fn to_i64(value: u64) -> rusqlite::Result<i64> {
    i64::try_from(value).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
}

fn u64_col(row: &Row<'_>, idx: usize) -> rusqlite::Result<u64> {
    let value: i64 = row.get(idx)?;
    u64::try_from(value).map_err(|_| undecodable(idx))
}

fn status_name(status: SpanStatus) -> &'static str {
    match status {
        SpanStatus::Ok => "ok",
        SpanStatus::Error => "error",
    }
}

/// A decoding failure that deliberately carries no stored value.
#[derive(Debug)]
struct Undecodable;

impl fmt::Display for Undecodable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("stored value could not be decoded")
    }
}

impl std::error::Error for Undecodable {}

fn undecodable(idx: usize) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(idx, rusqlite::types::Type::Text, Box::new(Undecodable))
}

/// A description of a SQLite failure that never includes a bound or stored value: SQLite's own
/// messages name tables, columns and constraints, and client-side errors are reduced to the
/// column index.
fn describe(e: &rusqlite::Error) -> String {
    use rusqlite::Error as E;
    match e {
        E::SqliteFailure(err, Some(msg)) => format!("{:?}: {msg}", err.code),
        E::SqliteFailure(err, None) => format!("{:?}", err.code),
        E::FromSqlConversionFailure(idx, ..)
        | E::InvalidColumnType(idx, ..)
        | E::IntegralValueOutOfRange(idx, _)
        | E::Utf8Error(idx, _) => format!("column {idx} holds a value of an unexpected type"),
        E::ToSqlConversionFailure(_) => "a value could not be encoded for SQLite".into(),
        E::QueryReturnedNoRows => "the query returned no rows".into(),
        _ => "unexpected SQLite client error".into(),
    }
}

/// Maps a SQLite failure to an internal error naming the operation, e.g. `store: reading spans
/// failed: DatabaseBusy: database is locked`.
pub(crate) fn db_error(op: &str, e: &rusqlite::Error) -> Error {
    Error::internal(format!("store: {op} failed: {}", describe(e)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_core::{AuditDecision, HopKind, Role, SpanKind};

    fn round_trip<T: DeserializeOwned>(name: &str) -> Option<T> {
        serde_json::from_value(serde_json::Value::String(name.into())).ok()
    }

    /// The writer stores `as_str` names and the reader parses serde names; they must agree for
    /// every variant or a row written today becomes unreadable.
    #[test]
    fn stored_names_parse_back_for_every_variant() {
        for hop in [
            HopKind::Agent,
            HopKind::Tool,
            HopKind::Llm,
            HopKind::Sql,
            HopKind::Http,
            HopKind::Mcp,
            HopKind::Retrieval,
        ] {
            assert_eq!(round_trip::<HopKind>(hop.as_str()), Some(hop));
        }
        for d in [AuditDecision::Allowed, AuditDecision::AccessDenied, AuditDecision::Error] {
            assert_eq!(round_trip::<AuditDecision>(d.as_str()), Some(d));
        }
        for k in [SpanKind::Agent, SpanKind::Tool, SpanKind::Llm, SpanKind::Retriever, SpanKind::Chain] {
            assert_eq!(round_trip::<SpanKind>(k.as_str()), Some(k));
        }
        for s in [SpanStatus::Ok, SpanStatus::Error] {
            assert_eq!(round_trip::<SpanStatus>(status_name(s)), Some(s));
        }
        for r in [Role::System, Role::User, Role::Assistant, Role::Tool] {
            assert_eq!(round_trip::<Role>(r.as_str()), Some(r));
        }
        assert_eq!(round_trip::<HopKind>("bogus"), None);
    }

    #[test]
    fn error_descriptions_omit_values() {
        let e = rusqlite::Error::IntegralValueOutOfRange(3, 123_456_789);
        let msg = db_error("reading spans", &e).message;
        assert!(msg.starts_with("store: reading spans failed"));
        assert!(!msg.contains("123456789"), "{msg}");
    }
}
