//! Behaviour of `PostgresStore` against a real PostgreSQL server.
//!
//! The server comes from `SWITCHBOARD_TEST_POSTGRES_URL` (URL form), default
//! `postgres://postgres@127.0.0.1:5432/test`. Each test works in its own freshly created schema,
//! dropped afterwards. An unreachable server fails the tests: CI provides PostgreSQL, and a
//! silently skipped store test would hide a broken backend.

mod common;

use common::{audit_row, span};
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchboard_core::{ErrorKind, Message, Role, TelemetrySink};
use switchboard_store::{PostgresStore, Store};
use switchboard_testkit::pg::TestSchema;

/// Opens the store under test in a test schema (the testkit cannot: it depends on no store).
trait StoreIn {
    async fn store(&self) -> PostgresStore;
}

impl StoreIn for TestSchema {
    async fn store(&self) -> PostgresStore {
        PostgresStore::connect(self.url()).await.unwrap()
    }
}

#[tokio::test]
async fn spans_audit_and_turns_round_trip() {
    let db = TestSchema::new().await;
    let store = db.store().await;
    store.health().await.unwrap();

    // Recorded out of start order: reads sort by start time, ties by arrival.
    store.span(span("r1", "c", Some("a"), 30));
    store.span(span("r1", "a", None, 10));
    store.span(span("r1", "b", Some("a"), 20));
    store.span(span("r1", "b2", Some("a"), 20));
    store.span(span("r2", "x", None, 5));
    for n in 0..6 {
        store.audit(audit_row(if n < 4 { "r1" } else { "r2" }, n));
    }
    store.flush().await;

    let spans = store.spans("r1").await.unwrap();
    let ids: Vec<&str> = spans.iter().map(|s| s.span_id.as_str()).collect();
    assert_eq!(ids, ["a", "b", "b2", "c"]);
    assert_eq!(spans[1], span("r1", "b", Some("a"), 20), "every field survives, JSON attributes included");
    assert!(store.spans("nope").await.unwrap().is_empty());

    let audit = store.audit_for_request("r1").await.unwrap();
    assert_eq!(audit, (0..4).map(|n| audit_row("r1", n)).collect::<Vec<_>>());
    let recent = store.recent_audit(3).await.unwrap();
    assert_eq!(recent, vec![audit_row("r2", 5), audit_row("r2", 4), audit_row("r1", 3)]);

    // The columns are an interface for the SQL-reading audit agent; JSONB is queryable.
    let row = db
        .admin()
        .query_one(
            "SELECT caller_email, caller_roles, decision, hop FROM audit WHERE span_id = 'span-3'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "alice@example.com");
    assert_eq!(row.get::<_, String>(1), "sales,admin");
    assert_eq!(row.get::<_, String>(2), "access_denied");
    assert_eq!(row.get::<_, String>(3), "sql");
    let agent: String = db
        .admin()
        .query_one("SELECT attributes->>'gen_ai.agent.name' FROM spans WHERE span_id = 'c'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(agent, "sales");

    store.append_turn("t1", "r1", &Message::user("hello")).await.unwrap();
    store.append_turn("t1", "r1", &Message::assistant("hi", Some("sales".into()))).await.unwrap();
    store.append_turn("t2", "r2", &Message::system("other thread")).await.unwrap();
    let turns = store.thread("t1").await.unwrap();
    assert_eq!(turns, vec![Message::user("hello"), Message::assistant("hi", Some("sales".into()))]);
    assert_eq!(turns[1].role, Role::Assistant);
    assert!(store.thread("unknown").await.unwrap().is_empty());
    // Turns are written behind; the thread above was partly read from memory.
    store.flush().await;
    let seqs: Vec<i64> = db
        .admin()
        .query("SELECT seq FROM thread_turns WHERE thread_id = 't1' ORDER BY seq", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(seqs, [0, 1], "seq starts at 0, as in SQLite");
}

#[tokio::test]
async fn rows_postgres_cannot_hold_verbatim_are_cleaned_or_skipped_without_losing_neighbours() {
    let db = TestSchema::new().await;
    let store = db.store().await;
    let mut nul = span("r", "nul", None, 1);
    nul.name = "bad\0name".into();
    nul.attributes.insert("k".into(), serde_json::json!("v\0"));
    let mut too_late = span("r", "late", None, 2);
    too_late.end_unix_nano = u64::MAX;
    store.span(nul);
    store.span(too_late);
    store.span(span("r", "fine", None, 3));
    store.span(span("r", "fine", None, 3)); // a replayed span id is skipped, as in SQLite
    let mut audit = audit_row("r", 1);
    audit.reason = Some("nul\0inside".into());
    store.audit(audit);
    store.append_turn("t", "r", &Message::user("a\0b")).await.unwrap();
    store.flush().await;

    let spans = store.spans("r").await.unwrap();
    let ids: Vec<&str> = spans.iter().map(|s| s.span_id.as_str()).collect();
    assert_eq!(ids, ["nul", "fine"]);
    assert_eq!(spans[0].name, "bad\u{FFFD}name");
    assert_eq!(spans[0].attributes["k"], "v\u{FFFD}");
    assert_eq!(store.audit_for_request("r").await.unwrap()[0].reason.as_deref(), Some("nul\u{FFFD}inside"));
    assert_eq!(store.thread("t").await.unwrap()[0].content, "a\u{FFFD}b");
}

#[tokio::test]
async fn flush_returns_only_after_everything_queued_before_it_is_committed() {
    let db = TestSchema::new().await;
    let store = db.store().await;
    for n in 0..3000 {
        store.audit(audit_row("flush", n));
        if n % 2 == 0 {
            store.span(span("flush", &format!("s{n}"), None, n));
        }
    }
    store.flush().await;
    // Counted on an independent connection: committed, not just buffered.
    assert_eq!(db.count("audit").await, 3000);
    assert_eq!(db.count("spans").await, 1500);

    // A flush with nothing queued returns promptly too.
    tokio::time::timeout(std::time::Duration::from_secs(5), store.flush()).await.unwrap();
}

#[tokio::test]
async fn dropping_the_store_drains_the_queue() {
    let db = TestSchema::new().await;
    let store = db.store().await;
    for n in 0..500 {
        store.audit(audit_row("drop", n));
    }
    drop(store);
    assert_eq!(db.count("audit").await, 500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_share_rows_and_append_to_one_thread_without_seq_collisions() {
    let db = TestSchema::new().await;
    // Both replicas start at once on an empty schema: the migration must serialise.
    let (a, b) = tokio::join!(PostgresStore::connect(db.url()), PostgresStore::connect(db.url()));
    let (a, b) = (Arc::new(a.unwrap()), Arc::new(b.unwrap()));

    a.span(span("shared", "from-a", None, 1));
    b.audit(audit_row("shared", 7));
    a.flush().await;
    b.flush().await;
    assert_eq!(b.spans("shared").await.unwrap()[0].span_id, "from-a");
    assert_eq!(a.audit_for_request("shared").await.unwrap(), vec![audit_row("shared", 7)]);

    const PER_REPLICA: usize = 25;
    let mut tasks = Vec::new();
    for (replica, store) in [("a", &a), ("b", &b)] {
        for i in 0..PER_REPLICA {
            let store = Arc::clone(store);
            tasks.push(tokio::spawn(async move {
                let msg = Message::assistant(format!("{replica}-{i}"), Some(replica.into()));
                store.append_turn("busy", &format!("req-{replica}-{i}"), &msg).await
            }));
        }
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    // Turns are written behind the request; flushing commits them.
    a.flush().await;
    b.flush().await;

    let seqs: Vec<i64> = db
        .admin()
        .query("SELECT seq FROM thread_turns WHERE thread_id = 'busy' ORDER BY seq", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let expected: Vec<i64> = (0..2 * PER_REPLICA as i64).collect();
    assert_eq!(seqs, expected, "consecutive, no gaps, no duplicates");
    for store in [&a, &b] {
        let turns = store.thread("busy").await.unwrap();
        assert_eq!(turns.len(), 2 * PER_REPLICA);
        let mut contents: Vec<String> = turns.into_iter().map(|m| m.content).collect();
        contents.sort();
        let mut want: Vec<String> =
            ["a", "b"].iter().flat_map(|r| (0..PER_REPLICA).map(move |i| format!("{r}-{i}"))).collect();
        want.sort();
        assert_eq!(contents, want);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_larger_than_the_queue_loses_nothing() {
    let db = TestSchema::new().await;
    // A tiny queue so the burst overflows to the spill file on every path.
    let store = Arc::new(PostgresStore::connect_with_capacity(db.url(), 16).await.unwrap());
    const TOTAL: u64 = 5000;
    const PRODUCERS: u64 = 4;
    let per = TOTAL / PRODUCERS;
    let mut async_producers = Vec::new();
    let mut thread_producers = Vec::new();
    for p in 0..PRODUCERS {
        let store = Arc::clone(&store);
        let produce = move || {
            for n in p * per..(p + 1) * per {
                if n % 2 == 0 {
                    store.audit(audit_row("burst", n));
                } else {
                    store.span(span("burst", &format!("burst-{n}"), None, n));
                }
            }
        };
        if p % 2 == 0 {
            // On a runtime worker: overflows to the spill file when the queue is full.
            async_producers.push(tokio::spawn(async move { produce() }));
        } else {
            // Outside any runtime.
            thread_producers.push(std::thread::spawn(produce));
        }
    }
    for p in async_producers {
        p.await.unwrap();
    }
    for p in thread_producers {
        p.join().unwrap();
    }
    store.flush().await;
    assert_eq!(db.count("audit").await + db.count("spans").await, TOTAL as i64);
    assert_eq!(store.audit_for_request("burst").await.unwrap().len(), (TOTAL / 2) as usize);
    assert_eq!(store.spans("burst").await.unwrap().len(), (TOTAL / 2) as usize);
}

#[tokio::test]
async fn connection_failures_name_the_target_and_never_the_password() {
    let Err(e) = PostgresStore::connect("postgres://postgres:topsecret@127.0.0.1:1/test").await else {
        panic!("connecting to a closed port succeeded");
    };
    assert_eq!(e.kind, ErrorKind::Upstream);
    assert!(e.message.contains("connecting to postgres://postgres@127.0.0.1:1/test failed"), "{}", e.message);
    assert!(!e.message.contains("topsecret"), "{}", e.message);

    let Err(e) = PostgresStore::connect("postgres://postgres:topsecret@127.0.0.1/test?sslmode=require").await
    else {
        panic!("sslmode=require accepted without TLS support");
    };
    assert_eq!(e.kind, ErrorKind::Config);
    assert!(!e.message.contains("topsecret"), "{}", e.message);
}

#[tokio::test]
async fn a_missing_schema_or_a_newer_schema_version_is_refused() {
    let db = TestSchema::new().await;
    let sep = if db.base_url().contains('?') { '&' } else { '?' };
    let nowhere = format!("{}{sep}options=-c%20search_path%3D{}_missing", db.base_url(), db.name());
    let e = PostgresStore::connect(&nowhere).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Config);
    assert!(e.message.contains("search_path"), "{}", e.message);

    drop(db.store().await);
    db.admin().batch_execute("UPDATE switchboard_schema_version SET version = 99").await.unwrap();
    let e = PostgresStore::connect(db.url()).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Config);
    assert!(e.message.contains("newer than this build supports"), "{}", e.message);
}

#[tokio::test]
async fn health_reports_a_live_store_and_debug_hides_the_password() {
    let db = TestSchema::new().await;
    let store = db.store().await;
    store.health().await.unwrap();
    assert!(store.target().starts_with("postgres://"), "{}", store.target());
    assert!(format!("{store:?}").contains(store.target()));
}

#[tokio::test]
async fn a_row_the_server_rejects_does_not_sink_its_batch() {
    let db = TestSchema::new().await;
    let store = db.store().await;
    // A constraint the store knows nothing about stands in for any row-level rejection.
    db.admin()
        .batch_execute("ALTER TABLE audit ADD CONSTRAINT no_evil CHECK (target <> 'evil')")
        .await
        .unwrap();
    for n in 0..10 {
        let mut row = audit_row("rejects", n);
        if n == 4 {
            row.target = "evil".into();
        }
        store.audit(row);
        store.span(span("rejects", &format!("s{n}"), None, n));
    }
    store.flush().await;
    let kept: Vec<String> =
        store.audit_for_request("rejects").await.unwrap().into_iter().map(|r| r.span_id).collect();
    let want: Vec<String> = (0..10).filter(|n| *n != 4).map(|n| format!("span-{n}")).collect();
    assert_eq!(kept, want);
    assert_eq!(store.spans("rejects").await.unwrap().len(), 10);
}

#[tokio::test]
async fn connection_grants_round_trip() {
    let db = TestSchema::new().await;
    let store = db.store().await;
    common::grants::grant_revoke_and_list_round_trip(&store).await;
}

#[tokio::test]
async fn connection_grant_names_are_validated() {
    let db = TestSchema::new().await;
    let store = db.store().await;
    common::grants::invalid_names_are_refused(&store).await;
}

#[tokio::test]
async fn seeding_grants_only_never_seen_principals() {
    let db = TestSchema::new().await;
    let store = db.store().await;
    common::grants::seed_grants_only_never_seen_principals(&store).await;
    // Revoked rows are kept, not deleted: that is how a re-seed knows to skip them.
    let revoked: i64 = db
        .admin()
        .query_one("SELECT COUNT(*) FROM connection_grants WHERE revoked_unix_ms IS NOT NULL", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(revoked, 2, "bob and eve");
}

#[tokio::test]
async fn two_replicas_see_each_others_grants() {
    let db = TestSchema::new().await;
    let (a, b) = (db.store().await, db.store().await);
    common::grants::stores_sharing_a_database_see_each_others_grants(&a, &b).await;
}

/// Every replica seeds the configured grants at start-up, at the same time and in whatever order
/// its configuration lists them; none may fail (a deadlock) and every principal is granted once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_seeding_at_once_do_not_deadlock() {
    let db = TestSchema::new().await;
    let (a, b) = (db.store().await, db.store().await);
    for round in 0..10 {
        let connection = format!("conn{round}");
        let forward: Vec<String> = (0..2000).map(|i| format!("p{i:04}")).collect();
        let backward: Vec<String> = forward.iter().rev().cloned().collect();
        let (ra, rb) = tokio::join!(
            a.seed_connection_grants(&connection, &forward, "config"),
            b.seed_connection_grants(&connection, &backward, "config"),
        );
        ra.unwrap();
        rb.unwrap();
        assert_eq!(a.connection_grants(Some(&connection)).await.unwrap().len(), 2000);
    }
}

/// The revoke of one replica reaches another promptly through LISTEN/NOTIFY, not by polling.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoke_wakes_waiters_in_other_replicas() {
    let db = TestSchema::new().await;
    let (server, admin) = (Arc::new(db.store().await), db.store().await);
    assert!(admin.grant_connection("warehouse", "alice", "config").await.unwrap());
    // A change announced before the wait began still ends it: it may not have been read yet.
    assert_waits_under(&server, Duration::from_secs(5)).await;
    let version = server.grants_version().await.unwrap();

    let waiter = {
        let server = Arc::clone(&server);
        tokio::spawn(async move {
            let started = Instant::now();
            server.wait_grants_changed(Duration::from_secs(10)).await;
            started.elapsed()
        })
    };
    // Let the waiter park first, so the wake-up must come from the notification.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiter.is_finished(), "nothing changed yet, the wait must still be waiting");
    assert!(admin.revoke_connection("warehouse", "alice", "admin").await.unwrap());
    let waited = waiter.await.unwrap();
    assert!(waited < Duration::from_secs(5), "woken after {waited:?}");
    assert!(server.grants_version().await.unwrap() > version);
    assert!(server.connection_grants(None).await.unwrap().is_empty());

    // Changes that do not alter the grants announce nothing, so waits run their full course.
    assert!(!admin.revoke_connection("warehouse", "alice", "admin").await.unwrap());
    let started = Instant::now();
    server.wait_grants_changed(Duration::from_millis(500)).await;
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(500), "returned early after {waited:?}");
}

/// Notifications are per schema: a grant in another deployment sharing the database does not wake
/// this one.
#[tokio::test]
async fn grant_changes_in_another_schema_do_not_wake_waiters() {
    let (mine, theirs) = (TestSchema::new().await, TestSchema::new().await);
    let (store, other) = (mine.store().await, theirs.store().await);
    let (waited, granted) = tokio::join!(
        async {
            let started = Instant::now();
            store.wait_grants_changed(Duration::from_millis(1500)).await;
            started.elapsed()
        },
        async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            other.grant_connection("warehouse", "alice", "config").await
        }
    );
    assert!(granted.unwrap());
    assert!(waited >= Duration::from_millis(1500), "woken by another schema after {waited:?}");
    assert!(store.connection_grants(None).await.unwrap().is_empty());
}

/// Losing the LISTEN connection neither fails nor stalls waits, and the listener comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grants_listener_reconnects_after_losing_its_connection() {
    let db = TestSchema::new().await;
    // A name of its own, so the test can find this store's listener among the server's sessions.
    let app = format!("{}_listener", db.name());
    let server = PostgresStore::connect(&format!("{}&application_name={app}", db.url())).await.unwrap();
    let admin = db.store().await;
    let listeners = |app: String| {
        let admin = db.admin();
        async move {
            admin
                .query_one(
                    "SELECT COUNT(*) FROM pg_stat_activity WHERE application_name = $1 \
                     AND query = 'LISTEN switchboard_grants'",
                    &[&app],
                )
                .await
                .unwrap()
                .get::<_, i64>(0)
        }
    };
    assert_eq!(listeners(app.clone()).await, 1);

    let killed: i64 = db
        .admin()
        .query_one(
            "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1 \
             AND query = 'LISTEN switchboard_grants'",
            &[&app],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(killed, 1);

    // Notifications sent while it was away are lost, so coming back counts as a change.
    assert_waits_under(&server, Duration::from_secs(5)).await;
    assert_eq!(listeners(app.clone()).await, 1, "listening again");

    let version = server.grants_version().await.unwrap();
    let (waited, granted) = tokio::join!(
        async {
            let started = Instant::now();
            server.wait_grants_changed(Duration::from_secs(10)).await;
            started.elapsed()
        },
        async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            admin.grant_connection("warehouse", "alice", "config").await
        }
    );
    assert!(granted.unwrap());
    assert!(waited < Duration::from_secs(5), "woken after {waited:?}");
    assert!(server.grants_version().await.unwrap() > version);
}

/// A schema created by the previous version (1, no grant tables) is upgraded on connect.
#[tokio::test]
async fn a_version_1_schema_gains_the_grant_tables() {
    let db = TestSchema::new().await;
    {
        let store = db.store().await;
        store.append_turn("t", "old", &Message::user("kept")).await.unwrap();
    }
    // Schema 3 is schema 1 plus the grant tables and stored responses, so removing them yields a
    // version 1 schema.
    db.admin()
        .batch_execute(
            "DROP TABLE connection_grants; DROP TABLE connection_grants_version; DROP TABLE responses; \
             UPDATE switchboard_schema_version SET version = 1",
        )
        .await
        .unwrap();

    let store = db.store().await;
    assert_eq!(store.grants_version().await.unwrap(), 0);
    assert!(store.grant_connection("warehouse", "alice", "config").await.unwrap());
    assert_eq!(store.purge_responses(u64::MAX >> 1).await.unwrap(), 0, "the responses table is back");
    assert_eq!(store.grants_version().await.unwrap(), 1);
    assert_eq!(store.thread("t").await.unwrap(), vec![Message::user("kept")]);
    let version: i32 =
        db.admin().query_one("SELECT version FROM switchboard_schema_version", &[]).await.unwrap().get(0);
    assert_eq!(version, i32::try_from(switchboard_store::SCHEMA_VERSION).unwrap());
}

/// A version 7 schema, whose spans and usage rows were keyed by span id alone, is re-keyed on
/// connect, keeping its rows.
#[tokio::test]
async fn a_version_7_schema_keys_spans_by_request_and_span_id() {
    let db = TestSchema::new().await;
    {
        let store = db.store().await;
        store.span(span("old", "a", None, 100));
        store.flush().await;
    }
    db.admin()
        .batch_execute(
            "DROP INDEX spans_request_span; ALTER TABLE spans ADD PRIMARY KEY (span_id); \
             CREATE INDEX spans_request_id ON spans (request_id); \
             DROP INDEX usage_request_span; ALTER TABLE usage ADD PRIMARY KEY (span_id); \
             CREATE INDEX usage_request_id ON usage (request_id); \
             UPDATE switchboard_schema_version SET version = 7",
        )
        .await
        .unwrap();

    let store = db.store().await;
    assert_eq!(store.spans("old").await.unwrap(), vec![span("old", "a", None, 100)]);
    common::usage::spans_are_unique_per_request(&store).await;
    let version: i32 =
        db.admin().query_one("SELECT version FROM switchboard_schema_version", &[]).await.unwrap().get(0);
    assert_eq!(version, i32::try_from(switchboard_store::SCHEMA_VERSION).unwrap());
}

/// Asserts that a wait of up to 10 s returns within `bound`.
async fn assert_waits_under(store: &PostgresStore, bound: Duration) {
    let started = Instant::now();
    store.wait_grants_changed(Duration::from_secs(10)).await;
    let waited = started.elapsed();
    assert!(waited < bound, "waited {waited:?}");
}

#[tokio::test]
async fn payload_rows_round_trip_and_filter() {
    let db = TestSchema::new().await;
    let store = db.store().await;
    common::payloads::payload_rows_round_trip_and_filter(&store).await;
    assert_eq!(db.count("payloads").await, 3);
}

#[tokio::test]
async fn stored_responses_are_owned_expire_and_delete() {
    let db = TestSchema::new().await;
    let store = db.store().await;
    common::responses::stored_responses_are_owned_expire_and_delete(&store).await;
}

#[tokio::test]
async fn usage_rows_come_from_llm_spans_and_total_by_group() {
    let db = TestSchema::new().await;
    let store = db.store().await;
    common::usage::usage_rows_and_totals(&store).await;
    assert_eq!(db.count("usage").await, 3);
}

#[tokio::test]
async fn spans_and_usage_rows_are_unique_per_request() {
    let db = TestSchema::new().await;
    let store = db.store().await;
    common::usage::spans_are_unique_per_request(&store).await;
    assert_eq!((db.count("spans").await, db.count("usage").await), (2, 2));
}

#[tokio::test]
async fn audit_rows_are_filtered_by_the_store() {
    let db = TestSchema::new().await;
    let store = db.store().await;
    common::usage::audit_filters(&store).await;
}
