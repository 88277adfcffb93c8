//! USE CONNECTION grants in PostgreSQL, and the LISTEN connection that tells this process when
//! another one changed them.
//!
//! Every change that alters the active grants bumps `connection_grants_version` and sends a
//! NOTIFY on [`GRANTS_CHANNEL`] in the same transaction, so the notification is delivered only if
//! (and once) the change is committed. The payload is the schema, because deployments that share
//! a database in separate schemas share the channel too.

use super::{Undecodable, describe, pg_error, text, u64_col};
use crate::ConnectionGrant;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use switchboard_core::Result;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio_postgres::tls::NoTlsStream;
use tokio_postgres::{AsyncMessage, Config, NoTls, Notification, Socket};

/// The NOTIFY channel grant changes are announced on; the payload is the schema.
pub(super) const GRANTS_CHANNEL: &str = "switchboard_grants";

/// Also the listener's keep-alive: repeating LISTEN on a channel already listened to is a no-op.
const LISTEN: &str = "LISTEN switchboard_grants";

/// How often the listener checks its connection is alive. A half-open TCP connection (a
/// failover, a dropped route) delivers nothing and reports nothing; until the next check notices,
/// waiters fall back to their `max_wait`.
const PING_INTERVAL: Duration = Duration::from_secs(30);

/// How long one of the listener's own queries may take before its connection is given up on.
const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

/// The first pause before reconnecting the listener; it doubles per failure up to [`MAX_RETRY`].
const MIN_RETRY: Duration = Duration::from_millis(100);

/// The longest pause between two attempts to re-establish the listener.
const MAX_RETRY: Duration = Duration::from_secs(10);

/// Grants, or re-activates a revoked grant; changes nothing (0 rows) when the grant is active.
const GRANT: &str = "INSERT INTO connection_grants (connection, principal, granted_by, granted_unix_ms) \
     VALUES ($1, $2, $3, $4) ON CONFLICT (connection, principal) DO UPDATE SET \
     granted_by = EXCLUDED.granted_by, granted_unix_ms = EXCLUDED.granted_unix_ms, \
     revoked_by = NULL, revoked_unix_ms = NULL \
     WHERE connection_grants.revoked_unix_ms IS NOT NULL";

const REVOKE: &str = "UPDATE connection_grants SET revoked_by = $3, revoked_unix_ms = $4 \
     WHERE connection = $1 AND principal = $2 AND revoked_unix_ms IS NULL";

/// Records a revoke of a pair that was never granted, so a later seed does not grant it.
const REVOKE_UNSEEN: &str = "INSERT INTO connection_grants (connection, principal, revoked_by, \
     revoked_unix_ms) VALUES ($1, $2, $3, $4) ON CONFLICT (connection, principal) DO NOTHING";

/// The principals arrive sorted, and `ORDER BY ord` inserts them in that order, so two replicas
/// seeding overlapping sets at start-up take the row locks in the same order and cannot deadlock.
const SEED: &str = "INSERT INTO connection_grants (connection, principal, granted_by, granted_unix_ms) \
     SELECT $1::text, p, $3::text, $4::bigint FROM unnest($2::text[]) WITH ORDINALITY AS u(p, ord) \
     ORDER BY ord ON CONFLICT (connection, principal) DO NOTHING";

/// An upsert rather than an UPDATE so a missing version row cannot silently stop other replicas
/// from noticing changes.
const BUMP_VERSION: &str = "INSERT INTO connection_grants_version (singleton, version) VALUES (TRUE, 1) \
     ON CONFLICT (singleton) DO UPDATE SET version = connection_grants_version.version + 1";

const NOTIFY: &str = "SELECT pg_notify($1, current_schema())";

/// `COLLATE "C"` orders by bytes, as SQLite does, whatever the database's collation.
pub(super) const SELECT_GRANTS: &str = "SELECT connection, principal, granted_by, granted_unix_ms \
     FROM connection_grants WHERE revoked_unix_ms IS NULL AND ($1::text IS NULL OR connection = $1) \
     ORDER BY connection COLLATE \"C\", principal COLLATE \"C\"";

pub(super) const SELECT_VERSION: &str =
    "SELECT COALESCE((SELECT version FROM connection_grants_version), 0::bigint)";

type Transaction<'a> = deadpool_postgres::Transaction<'a>;

/// Commits `tx` if `result` is a success, rolls it back otherwise. The rollback is awaited rather
/// than left to the drop, which would only send it the next time the pooled connection is used,
/// holding the grant's row lock until then.
pub(super) async fn finish<T>(
    tx: Transaction<'_>,
    result: Result<T, tokio_postgres::Error>,
    op: &str,
) -> Result<T> {
    match result {
        Ok(value) => tx.commit().await.map(|()| value).map_err(|e| pg_error(op, &e)),
        Err(e) => {
            if let Err(rollback) = tx.rollback().await {
                tracing::warn!(error = %describe(&rollback), "store: rolling back a grant change failed");
            }
            Err(pg_error(op, &e))
        }
    }
}

/// Bumps the version and announces the change; both take effect only when `tx` commits.
async fn announce(tx: &Transaction<'_>) -> Result<(), tokio_postgres::Error> {
    let bump = tx.prepare_cached(BUMP_VERSION).await?;
    tx.execute(&bump, &[]).await?;
    let notify = tx.prepare_cached(NOTIFY).await?;
    tx.execute(&notify, &[&GRANTS_CHANNEL]).await.map(drop)
}

pub(super) async fn grant(
    tx: &Transaction<'_>,
    connection: &str,
    principal: &str,
    by: &str,
    now_ms: i64,
) -> Result<bool, tokio_postgres::Error> {
    let stmt = tx.prepare_cached(GRANT).await?;
    let changed = tx.execute(&stmt, &[&connection, &principal, &by, &now_ms]).await? > 0;
    if changed {
        announce(tx).await?;
    }
    Ok(changed)
}

pub(super) async fn revoke(
    tx: &Transaction<'_>,
    connection: &str,
    principal: &str,
    by: &str,
    now_ms: i64,
) -> Result<bool, tokio_postgres::Error> {
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 4] = [&connection, &principal, &by, &now_ms];
    let stmt = tx.prepare_cached(REVOKE).await?;
    let removed = tx.execute(&stmt, &params).await? > 0;
    if removed {
        announce(tx).await?;
    } else {
        let stmt = tx.prepare_cached(REVOKE_UNSEEN).await?;
        tx.execute(&stmt, &params).await?;
    }
    Ok(removed)
}

/// `principals` must be sorted and free of duplicates (see [`SEED`]).
pub(super) async fn seed(
    tx: &Transaction<'_>,
    connection: &str,
    principals: &[&str],
    by: &str,
    now_ms: i64,
) -> Result<(), tokio_postgres::Error> {
    let stmt = tx.prepare_cached(SEED).await?;
    let added = tx.execute(&stmt, &[&connection, &principals, &by, &now_ms]).await?;
    if added > 0 {
        announce(tx).await?;
    }
    Ok(())
}

pub(super) fn grant_from_row(row: &tokio_postgres::Row) -> Result<ConnectionGrant, Undecodable> {
    Ok(ConnectionGrant {
        connection: text(row, 0)?,
        principal: text(row, 1)?,
        granted_by: text(row, 2)?,
        granted_unix_ms: u64_col(row, 3)?,
    })
}

/// This store's view of grant notifications: a background task keeps a LISTEN connection open
/// (re-establishing it after failures) and counts the notifications for this schema.
///
/// `wait` must not lose a change that was announced between a caller reading
/// [`crate::Store::grants_version`] and calling `wait`, or the revoke would take up to `max_wait`
/// to reach this process. So the store remembers how many notifications it has already accounted
/// for (`delivered`): every version read and every wake-up advances it, and `wait` returns at once
/// while the count is ahead of it.
pub(super) struct GrantsListener {
    /// The number of grant notifications received, plus one per re-established connection
    /// (notifications sent while it was down are lost, so a reconnect counts as a change).
    changes: watch::Receiver<u64>,
    delivered: AtomicU64,
    task: JoinHandle<()>,
}

impl GrantsListener {
    /// Starts listening. Returns once the first attempt has either succeeded or failed; on
    /// failure the task keeps trying in the background, and waits sleep until it succeeds.
    pub(super) async fn start(config: Config) -> Self {
        let (count, changes) = watch::channel(0);
        let (ready, started) = oneshot::channel();
        let task = tokio::spawn(run(config, count, ready));
        // An error only means the task ended early, which it never does on its own.
        let _ = started.await;
        let delivered = AtomicU64::new(*changes.borrow());
        Self { changes, delivered, task }
    }

    /// The notification count now; take it before reading the version, and hand it to
    /// [`Self::delivered_up_to`] after.
    pub(super) fn observed(&self) -> u64 {
        *self.changes.borrow()
    }

    /// Records that a caller has read the grants as of `observed` notifications.
    pub(super) fn delivered_up_to(&self, observed: u64) {
        self.delivered.fetch_max(observed, Ordering::SeqCst);
    }

    pub(super) async fn wait(&self, max_wait: Duration) {
        let mut changes = self.changes.clone();
        let now = *changes.borrow_and_update();
        if self.delivered.fetch_max(now, Ordering::SeqCst) < now {
            return;
        }
        let woke = tokio::time::timeout(max_wait, async {
            if changes.changed().await.is_err() {
                // The listener task is gone, which happens only while the store is dropped:
                // behave like a store without notifications.
                std::future::pending::<()>().await;
            }
        })
        .await;
        if woke.is_ok() {
            self.delivered_up_to(*changes.borrow_and_update());
        }
    }
}

impl Drop for GrantsListener {
    fn drop(&mut self) {
        // Dropping the task's client closes the LISTEN connection too.
        self.task.abort();
    }
}

/// Why a listening session ended, and whether it got as far as listening.
struct Ended {
    listened: bool,
    reason: String,
}

/// The listener task: one session after another, for as long as the store lives.
async fn run(config: Config, count: watch::Sender<u64>, ready: oneshot::Sender<()>) {
    let mut ready = Some(ready);
    let mut backoff = MIN_RETRY;
    loop {
        let ended = session(&config, &count, &mut ready).await;
        if let Some(ready) = ready.take() {
            // The first attempt failed; let `connect` finish, waits sleep until a retry succeeds.
            let _ = ready.send(());
        }
        let delay = if ended.listened {
            backoff = MIN_RETRY;
            MIN_RETRY
        } else {
            let delay = backoff;
            backoff = (backoff * 2).min(MAX_RETRY);
            delay
        };
        tracing::warn!(
            reason = %ended.reason,
            retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            "store: the PostgreSQL grants listener is not connected; revokes from other replicas are \
             picked up by polling until it is"
        );
        tokio::time::sleep(delay).await;
    }
}

type ListenConnection = tokio_postgres::Connection<Socket, NoTlsStream>;

/// Connects, listens, and forwards this schema's notifications to `count` until the connection
/// fails.
async fn session(
    config: &Config,
    count: &watch::Sender<u64>,
    ready: &mut Option<oneshot::Sender<()>>,
) -> Ended {
    let not_listening = |reason: String| Ended { listened: false, reason };
    let (client, mut connection) = match config.connect(NoTls).await {
        Ok(pair) => pair,
        Err(e) => return not_listening(describe(&e)),
    };

    let mut ignore = |_: &Notification| {};
    let schema = match drive(
        &mut connection,
        tokio::time::timeout(QUERY_TIMEOUT, client.query_one("SELECT current_schema()", &[])),
        &mut ignore,
    )
    .await
    {
        Ok(Ok(Ok(row))) => row.try_get::<_, Option<String>>(0).ok().flatten(),
        Ok(Ok(Err(e))) => return not_listening(describe(&e)),
        Ok(Err(_)) => return not_listening("reading the schema timed out".into()),
        Err(reason) => return not_listening(reason),
    };
    let Some(schema) = schema else {
        return not_listening("the search_path names no existing schema".into());
    };

    let mut forward = |n: &Notification| {
        if n.channel() == GRANTS_CHANNEL && n.payload() == schema {
            count.send_modify(|c| *c += 1);
        }
    };
    if let Err(reason) = ping(&client, &mut connection, &mut forward).await {
        return not_listening(reason);
    }
    match ready.take() {
        Some(ready) => {
            let _ = ready.send(());
        }
        // Callers have been reading grants while nothing was listening.
        None => count.send_modify(|c| *c += 1),
    }

    let listening = |reason: String| Ended { listened: true, reason };
    loop {
        if let Err(reason) = drive(&mut connection, tokio::time::sleep(PING_INTERVAL), &mut forward).await {
            return listening(reason);
        }
        if let Err(reason) = ping(&client, &mut connection, &mut forward).await {
            return listening(reason);
        }
    }
}

/// Sends LISTEN (the first time to start listening, afterwards to prove the connection is alive).
async fn ping(
    client: &tokio_postgres::Client,
    connection: &mut ListenConnection,
    on_notification: &mut (dyn FnMut(&Notification) + Send),
) -> Result<(), String> {
    match drive(
        connection,
        tokio::time::timeout(QUERY_TIMEOUT, client.batch_execute(LISTEN)),
        on_notification,
    )
    .await?
    {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(describe(&e)),
        Err(_) => Err("LISTEN timed out".into()),
    }
}

/// Runs `work` (typically a query on the connection's client) while driving the connection, which
/// is what sends the query and reads its answer, and hands every notification that arrives
/// meanwhile to `on_notification`. Fails if the connection ends first.
async fn drive<T>(
    connection: &mut ListenConnection,
    work: impl Future<Output = T>,
    on_notification: &mut (dyn FnMut(&Notification) + Send),
) -> Result<T, String> {
    let mut work = std::pin::pin!(work);
    loop {
        tokio::select! {
            // Messages first, so a busy query cannot starve notifications.
            biased;
            message = std::future::poll_fn(|cx| connection.poll_message(cx)) => match message {
                Some(Ok(AsyncMessage::Notification(n))) => on_notification(&n),
                // Notices are informational; nothing to do with them here.
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(describe(&e)),
                None => return Err("the server closed the connection".into()),
            },
            out = &mut work => return Ok(out),
        }
    }
}
