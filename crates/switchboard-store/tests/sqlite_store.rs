//! Behaviour of `SqliteStore` against real database files.

mod common;

use common::{audit_row, span};
use rusqlite::Connection;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchboard_core::{ErrorKind, Message, Role, TelemetrySink};
use switchboard_store::{QUEUE_CAPACITY, SCHEMA_VERSION, SqliteStore, Store};

/// Counts rows through an independent connection, as the `audit` agent or another process would.
fn count(path: &Path, table: &str) -> i64 {
    let conn = Connection::open(path).unwrap();
    conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0)).unwrap()
}

#[tokio::test]
async fn spans_and_audit_round_trip_through_the_queue() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/dir/switchboard.db");
    let store = SqliteStore::open(&path).unwrap();
    store.health().await.unwrap();

    // Out of start order on purpose: reads must sort by start time, not insertion.
    let spans = vec![
        span("req-1", "c", Some("a"), 300),
        span("req-1", "a", None, 100),
        span("req-1", "b", Some("a"), 201),
        span("req-2", "z", None, 50),
    ];
    for s in &spans {
        store.span(s.clone());
    }
    let rows: Vec<_> = (1..=4).map(|n| audit_row("req-1", n)).collect();
    for r in &rows {
        store.audit(r.clone());
    }
    store.audit(audit_row("req-2", 9));
    store.flush().await;

    let got = store.spans("req-1").await.unwrap();
    assert_eq!(got, vec![spans[1].clone(), spans[2].clone(), spans[0].clone()]);
    assert_eq!(store.spans("req-2").await.unwrap(), vec![spans[3].clone()]);
    assert!(store.spans("nope").await.unwrap().is_empty());

    assert_eq!(store.audit_for_request("req-1").await.unwrap(), rows);

    let recent = store.recent_audit(3).await.unwrap();
    let recent_ts: Vec<u64> = recent.iter().map(|r| r.ts_unix_ms).collect();
    let base = 1_700_000_000_000;
    assert_eq!(recent_ts, vec![base + 9, base + 4, base + 3]);
    assert_eq!(recent[0].request_id, "req-2");
    assert!(store.recent_audit(0).await.unwrap().is_empty());
    assert_eq!(store.recent_audit(usize::MAX).await.unwrap().len(), 5);
}

#[tokio::test]
async fn audit_table_keeps_the_documented_layout() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let store = SqliteStore::open(&path).unwrap();
    store.audit(audit_row("req-1", 3));
    store.flush().await;

    let conn = Connection::open(&path).unwrap();
    let mut stmt = conn.prepare("SELECT name FROM pragma_table_info('audit')").unwrap();
    let cols: Vec<String> = stmt.query_map([], |r| r.get(0)).unwrap().collect::<Result<_, _>>().unwrap();
    assert_eq!(
        cols,
        [
            "id",
            "request_id",
            "span_id",
            "ts_unix_ms",
            "caller_email",
            "caller_roles",
            "acting_for",
            "principal",
            "credential_mode",
            "agent",
            "hop",
            "target",
            "decision",
            "reason",
            "duration_ms",
            "row_id",
            "status",
            "error_code",
            "latency_ms"
        ]
    );
    let (status, latency): (String, i64) =
        conn.query_row("SELECT status, latency_ms FROM audit", [], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
    assert_eq!(
        (status.as_str(), latency),
        ("access_denied", 6),
        "status and latency_ms follow decision and duration"
    );
    // The audit agent filters on these raw strings.
    let (hop, decision, mode): (String, String, String) = conn
        .query_row("SELECT hop, decision, journal_mode FROM audit, pragma_journal_mode", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .unwrap();
    assert_eq!((hop.as_str(), decision.as_str()), ("sql", "access_denied"));
    assert_eq!(mode, "wal");
    let version: u32 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
    assert_eq!(version, SCHEMA_VERSION);
}

#[tokio::test]
async fn thread_turns_round_trip_with_agent_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("s.db")).unwrap();
    let turns = vec![
        Message::system("be brief"),
        Message::user("how is the Acme deal?"),
        Message::assistant("Stage 3, $120k.", Some("sales".into())),
        Message { role: Role::Tool, content: "{\"rows\": 1}".into(), agent: Some("deal_desk".into()) },
        Message::assistant("No agent here.", None),
    ];
    for (i, t) in turns.iter().enumerate() {
        store.append_turn("thread-1", &format!("req-{i}"), t).await.unwrap();
    }
    store.append_turn("thread-2", "req-x", &Message::user("other")).await.unwrap();

    assert_eq!(store.thread("thread-1").await.unwrap(), turns);
    assert_eq!(store.thread("thread-2").await.unwrap(), vec![Message::user("other")]);
    assert!(store.thread("missing").await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_handles_on_one_file_see_each_others_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.db");
    let cli = Arc::new(SqliteStore::open(&path).unwrap());
    let server = Arc::new(SqliteStore::open(&path).unwrap());

    cli.audit(audit_row("from-cli", 1));
    cli.span(span("from-cli", "cli-span", None, 10));
    cli.flush().await;
    assert_eq!(server.audit_for_request("from-cli").await.unwrap(), vec![audit_row("from-cli", 1)]);
    assert_eq!(server.spans("from-cli").await.unwrap().len(), 1);

    // Concurrent writers on both handles, plus interleaved thread appends.
    let mut tasks = Vec::new();
    for (h, store) in [cli.clone(), server.clone()].into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            for n in 0..500 {
                store.audit(audit_row("both", n));
                if n % 100 == 0 {
                    let msg = Message::assistant(format!("h{h} n{n}"), Some(format!("agent{h}")));
                    store.append_turn("shared", "both", &msg).await.unwrap();
                }
            }
            store.flush().await;
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(cli.audit_for_request("both").await.unwrap().len(), 1000);
    assert_eq!(server.audit_for_request("both").await.unwrap().len(), 1000);
    let thread = cli.thread("shared").await.unwrap();
    assert_eq!(thread.len(), 10);
    assert_eq!(server.thread("shared").await.unwrap(), thread);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn burst_from_many_tasks_loses_nothing() {
    const TASKS: u64 = 40;
    const PER_TASK: u64 = 500;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("burst.db");
    let store = Arc::new(SqliteStore::open(&path).unwrap());
    // More than the queue holds, so rows overflow to the spill file (never dropped) and come back.
    assert!((TASKS * PER_TASK) as usize > 2 * QUEUE_CAPACITY);

    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let store = store.clone();
            tokio::spawn(async move {
                for n in 0..PER_TASK {
                    store.audit(audit_row(&format!("burst-{t}"), n));
                    if n % 50 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    store.flush().await;

    assert_eq!(count(&path, "audit"), (TASKS * PER_TASK) as i64);
    assert_eq!(store.audit_for_request("burst-7").await.unwrap().len(), PER_TASK as usize);
    let distinct: i64 = Connection::open(&path)
        .unwrap()
        .query_row("SELECT COUNT(DISTINCT request_id) FROM audit", [], |r| r.get(0))
        .unwrap();
    assert_eq!(distinct, TASKS as i64);
}

/// On a current-thread runtime nothing else runs while one task records; a full queue must
/// overflow to the spill file rather than block, drop or panic.
#[tokio::test]
async fn a_full_queue_on_a_current_thread_runtime_overflows_without_loss() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ct.db");
    let store = SqliteStore::open(&path).unwrap();
    let total = QUEUE_CAPACITY + 3000;
    for n in 0..total {
        store.audit(audit_row("ct", n as u64));
    }
    store.flush().await;
    assert_eq!(count(&path, "audit"), total as i64);
}

#[tokio::test]
async fn flush_waits_for_rows_to_be_written() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flush.db");
    let store = SqliteStore::open(&path).unwrap();
    for round in 1..=3u64 {
        for n in 0..3000 {
            store.audit(audit_row("flush", n));
        }
        for n in 0..200 {
            store.span(span("flush", &format!("s{round}-{n}"), None, n));
        }
        store.flush().await;
        // Checked through an independent connection right after flush returns.
        assert_eq!(count(&path, "audit"), (round * 3000) as i64);
        assert_eq!(count(&path, "spans"), (round * 200) as i64);
    }
}

#[tokio::test]
async fn drop_drains_the_queue() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("drop.db");
    {
        let store = SqliteStore::open(&path).unwrap();
        for n in 0..2000 {
            store.audit(audit_row("drop", n));
        }
    }
    assert_eq!(count(&path, "audit"), 2000);
    let reopened = SqliteStore::open(&path).unwrap();
    assert_eq!(reopened.audit_for_request("drop").await.unwrap().len(), 2000);
}

#[tokio::test]
async fn a_rejected_row_does_not_sink_its_batch() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dup.db");
    let store = SqliteStore::open(&path).unwrap();
    store.span(span("dup", "same", None, 1));
    store.span(span("dup", "same", None, 2)); // primary key violation
    store.span(span("dup", "other", None, 3));
    store.audit(audit_row("dup", 1));
    store.flush().await;
    let spans = store.spans("dup").await.unwrap();
    let ids: Vec<&str> = spans.iter().map(|s| s.span_id.as_str()).collect();
    assert_eq!(ids, ["same", "other"]);
    assert_eq!(spans[0].start_unix_nano, 1);
    assert_eq!(count(&path, "audit"), 1);
}

#[tokio::test]
async fn newer_schema_is_refused_and_bad_paths_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("future.db");
    drop(SqliteStore::open(&path).unwrap());
    Connection::open(&path).unwrap().pragma_update(None, "user_version", SCHEMA_VERSION + 1).unwrap();
    let err = SqliteStore::open(&path).unwrap_err();
    assert_eq!(err.kind, ErrorKind::Config);
    assert!(err.message.contains("newer"), "{}", err.message);

    // A parent "directory" that is a file.
    let file = dir.path().join("plain-file");
    std::fs::write(&file, b"x").unwrap();
    let err = SqliteStore::open(&file.join("s.db")).unwrap_err();
    assert_eq!(err.kind, ErrorKind::Config);
}

#[tokio::test]
async fn stores_work_behind_trait_objects() {
    let dir = tempfile::tempdir().unwrap();
    let concrete = Arc::new(SqliteStore::open(&dir.path().join("s.db")).unwrap());
    let store: Arc<dyn Store> = concrete.clone();
    let sink: Arc<dyn TelemetrySink> = concrete;
    sink.audit(audit_row("dyn", 1));
    store.flush().await;
    assert_eq!(store.audit_for_request("dyn").await.unwrap().len(), 1);
    store.health().await.unwrap();
}

#[tokio::test]
async fn connection_grants_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("s.db")).unwrap();
    common::grants::grant_revoke_and_list_round_trip(&store).await;
}

#[tokio::test]
async fn connection_grant_names_are_validated() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("s.db")).unwrap();
    common::grants::invalid_names_are_refused(&store).await;
}

#[tokio::test]
async fn seeding_grants_only_never_seen_principals_and_revokes_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    {
        let store = SqliteStore::open(&path).unwrap();
        common::grants::seed_grants_only_never_seen_principals(&store).await;
    }
    // A restart re-seeds the same configuration: bob, revoked before, must stay revoked.
    let store = SqliteStore::open(&path).unwrap();
    let version = store.grants_version().await.unwrap();
    store.seed_connection_grants("warehouse", &["alice".into(), "bob".into()], "config").await.unwrap();
    let holders: Vec<String> =
        common::grants::held(&store, Some("warehouse")).await.into_iter().map(|g| g.1).collect();
    assert_eq!(holders, ["alice", "carol", "dave"]);
    assert_eq!(store.grants_version().await.unwrap(), version);
}

/// The CLI revoking while a server runs: two handles on one file, each reading the version from
/// the database rather than from memory.
#[tokio::test]
async fn two_handles_on_one_file_see_each_others_grants() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.db");
    let server = SqliteStore::open(&path).unwrap();
    let cli = SqliteStore::open(&path).unwrap();
    common::grants::stores_sharing_a_database_see_each_others_grants(&server, &cli).await;

    // And through a connection that is not a store at all, as the grant is durable on return.
    assert!(cli.grant_connection("warehouse", "bob", "cli:root").await.unwrap());
    drop(cli);
    let active: i64 = Connection::open(&path)
        .unwrap()
        .query_row(
            "SELECT COUNT(*) FROM connection_grants WHERE principal = 'bob' AND revoked_unix_ms IS NULL",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(active, 1);
}

#[tokio::test]
async fn waiting_for_grant_changes_sleeps_for_max_wait() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("s.db")).unwrap();
    let started = Instant::now();
    store.wait_grants_changed(Duration::from_millis(300)).await;
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(300), "{waited:?}");
    assert!(waited < Duration::from_secs(5), "{waited:?}");
}

/// A database file written by the previous version (schema 1, no grant tables) is upgraded in
/// place when opened, keeping its rows.
#[tokio::test]
async fn a_version_1_file_gains_the_grant_tables() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v1.db");
    {
        let store = SqliteStore::open(&path).unwrap();
        store.audit(audit_row("old", 1));
        store.append_turn("t", "old", &Message::user("kept")).await.unwrap();
    }
    // Schema 4 is schema 1 plus the grant tables, stored responses and four audit columns, so
    // removing them yields a version 1 file.
    let conn = Connection::open(&path).unwrap();
    conn.execute_batch(
        "DROP TABLE connection_grants; DROP TABLE connection_grants_version; DROP TABLE responses; \
         DROP INDEX audit_row_id; ALTER TABLE audit DROP COLUMN row_id; \
         ALTER TABLE audit DROP COLUMN status; ALTER TABLE audit DROP COLUMN error_code; \
         ALTER TABLE audit DROP COLUMN latency_ms; DROP TABLE payloads; \
         DROP INDEX thread_turns_turn_id; ALTER TABLE thread_turns DROP COLUMN turn_id; \
         PRAGMA user_version = 1;",
    )
    .unwrap();
    drop(conn);

    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.grants_version().await.unwrap(), 0);
    assert!(store.grant_connection("warehouse", "alice", "config").await.unwrap());
    assert_eq!(store.purge_responses(u64::MAX >> 1).await.unwrap(), 0, "the responses table is back");
    assert_eq!(store.grants_version().await.unwrap(), 1);
    assert_eq!(store.audit_for_request("old").await.unwrap(), vec![audit_row("old", 1)]);
    assert_eq!(store.thread("t").await.unwrap(), vec![Message::user("kept")]);
    let version: u32 =
        Connection::open(&path).unwrap().query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
    assert_eq!(version, SCHEMA_VERSION);
}

#[tokio::test]
async fn spans_and_usage_rows_are_unique_per_request() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let store = SqliteStore::open(&path).unwrap();
    common::usage::spans_are_unique_per_request(&store).await;
    assert_eq!((count(&path, "spans"), count(&path, "usage")), (2, 2));
}

/// A version 7 file, whose spans and usage rows were keyed by span id alone, is rebuilt when
/// opened: its rows are kept, and a span id may then recur under another request.
#[tokio::test]
async fn a_version_7_file_keys_spans_by_request_and_span_id() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v7.db");
    let now = switchboard_core::unix_nanos_now() / 1_000_000;
    let alice = ("alice@example.com", "west_sales");
    let old_span = span("old", "a", None, 100);
    let old_llm = common::usage::llm_span("old", "l", alice, "sales", "gpt-a", (7, 1), now);
    {
        let store = SqliteStore::open(&path).unwrap();
        store.span(old_span.clone());
        store.span(old_llm.clone());
        store.flush().await;
    }
    // Version 7's layout of the two tables.
    Connection::open(&path)
        .unwrap()
        .execute_batch(
            "CREATE TABLE spans_v7 (request_id TEXT NOT NULL, trace_id TEXT NOT NULL, \
             span_id TEXT PRIMARY KEY, parent_id TEXT, name TEXT NOT NULL, kind TEXT NOT NULL, \
             agent TEXT, start_unix_nano INTEGER NOT NULL, end_unix_nano INTEGER NOT NULL, \
             status TEXT NOT NULL, status_message TEXT, attributes TEXT NOT NULL); \
             INSERT INTO spans_v7 SELECT * FROM spans; DROP TABLE spans; \
             ALTER TABLE spans_v7 RENAME TO spans; \
             CREATE INDEX spans_request_id ON spans (request_id); \
             CREATE TABLE usage_v7 (span_id TEXT PRIMARY KEY, request_id TEXT NOT NULL, \
             ts_unix_ms INTEGER NOT NULL, caller_email TEXT NOT NULL, caller_role TEXT NOT NULL, \
             agent TEXT NOT NULL, model TEXT NOT NULL, prompt_tokens INTEGER NOT NULL, \
             completion_tokens INTEGER NOT NULL, latency_ms INTEGER NOT NULL, \
             status TEXT NOT NULL, usage_context TEXT); \
             INSERT INTO usage_v7 SELECT * FROM usage; DROP TABLE usage; \
             ALTER TABLE usage_v7 RENAME TO usage; \
             CREATE INDEX usage_ts_unix_ms ON usage (ts_unix_ms); \
             CREATE INDEX usage_request_id ON usage (request_id); \
             PRAGMA user_version = 7;",
        )
        .unwrap();

    let store = SqliteStore::open(&path).unwrap();
    let mut kept = vec![old_span, old_llm];
    kept.sort_by_key(|s| s.start_unix_nano);
    assert_eq!(store.spans("old").await.unwrap(), kept);
    assert_eq!(store.usage_for_request("old").await.unwrap().len(), 1);
    common::usage::spans_are_unique_per_request(&store).await;
    let version: u32 =
        Connection::open(&path).unwrap().query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
    assert_eq!(version, SCHEMA_VERSION);
}

#[tokio::test]
async fn payload_rows_round_trip_and_filter() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("s.db")).unwrap();
    common::payloads::payload_rows_round_trip_and_filter(&store).await;
}

#[tokio::test]
async fn stored_responses_are_owned_expire_and_delete() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("s.db")).unwrap();
    common::responses::stored_responses_are_owned_expire_and_delete(&store).await;
}

#[tokio::test]
async fn usage_rows_come_from_llm_spans_and_total_by_group() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let store = SqliteStore::open(&path).unwrap();
    common::usage::usage_rows_and_totals(&store).await;
    // The table is an interface too (the audit agent and ad-hoc SQL read it).
    assert_eq!(count(&path, "usage"), 3);
}

#[tokio::test]
async fn audit_rows_are_filtered_by_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("s.db")).unwrap();
    common::usage::audit_filters(&store).await;
}
