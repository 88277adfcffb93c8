//! The store's spill file against a real PostgreSQL database that goes away and comes back:
//! recording never waits for it, rows spilled meanwhile are replayed in order and exactly once,
//! and rows left spilled by a store that was dropped during the outage are replayed by the next
//! one to open the same spill file.

mod common;

use common::{audit_row, span};
use std::path::Path;
use std::time::Instant;
use switchboard_core::TelemetrySink;
use switchboard_store::{PostgresStore, SpillConfig, Store};
use switchboard_testkit::pg::TestDatabase;

async fn count(db: &TestDatabase, sql: &str) -> i64 {
    db.client().await.query_one(sql, &[]).await.unwrap_or_else(|e| panic!("{sql}: {e}")).get(0)
}

fn spilled_bytes(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

fn record(store: &PostgresStore, request: &str, from: u64, to: u64) {
    for n in from..to {
        let mut row = audit_row(request, n);
        row.span_id = format!("{request}-{n}");
        store.audit(row);
        store.span(span(request, &format!("{request}-{n}"), None, n));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_recorded_during_an_outage_are_spilled_then_replayed_exactly_once_in_order() {
    let db = TestDatabase::new().await;
    let dir = tempfile::tempdir().unwrap();
    let spill = SpillConfig::new(dir.path().join("spill.jsonl"));
    let store =
        PostgresStore::connect_with(db.url(), switchboard_store::QUEUE_CAPACITY, &spill).await.unwrap();

    record(&store, "before", 0, 50);
    store.flush().await;
    assert_eq!(count(&db, "SELECT COUNT(*) FROM audit").await, 50);

    db.set_available(false).await;
    let started = Instant::now();
    record(&store, "during", 0, 2000);
    let recording = started.elapsed();
    let started = Instant::now();
    store.flush().await;
    println!("recording 4000 rows during the outage took {recording:?}; the flush {:?}", started.elapsed());
    assert!(spilled_bytes(&spill.path) > 0, "rows went to the spill file");

    db.set_available(true).await;
    store.flush().await;
    assert_eq!(spilled_bytes(&spill.path), 0, "the spill file is emptied once replayed");
    assert_eq!(count(&db, "SELECT COUNT(*) FROM audit").await, 2050);
    assert_eq!(count(&db, "SELECT COUNT(DISTINCT row_id) FROM audit").await, 2050);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM spans").await, 2050);
    // Queue order survives the detour through the file: ids (insertion order) follow the rows'
    // own sequence. (Rows that overflow a full queue may overtake queued ones; this queue never
    // fills, because spilling is fast.)
    let out_of_order = count(
        &db,
        "SELECT COUNT(*) FROM (SELECT ts_unix_ms, LAG(ts_unix_ms) OVER (ORDER BY id) AS prev \
         FROM audit WHERE request_id = 'during') t WHERE ts_unix_ms < prev",
    )
    .await;
    assert_eq!(out_of_order, 0, "spilled rows are replayed in order");
    let statuses =
        count(&db, "SELECT COUNT(*) FROM audit WHERE status IN ('success', 'access_denied')").await;
    assert_eq!(statuses, 2050, "every row has a status");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_still_spilled_when_a_store_goes_away_are_replayed_by_the_next_and_never_doubled() {
    let db = TestDatabase::new().await;
    let dir = tempfile::tempdir().unwrap();
    let spill = SpillConfig::new(dir.path().join("spill.jsonl"));
    {
        let store = PostgresStore::connect_with(db.url(), 64, &spill).await.unwrap();
        db.set_available(false).await;
        record(&store, "left", 0, 300);
        // Dropping drains the queue into the spill file: the database is still away.
    }
    let left = std::fs::read(&spill.path).unwrap();
    assert!(!left.is_empty(), "the rows are on disk");
    db.set_available(true).await;

    let store = PostgresStore::connect_with(db.url(), 64, &spill).await.unwrap();
    store.flush().await;
    assert_eq!(count(&db, "SELECT COUNT(*) FROM audit").await, 300);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM spans").await, 300);
    drop(store);

    // A crash between committing a replay and emptying the file replays it again: nothing doubles.
    // A last line cut short by the crash is skipped.
    let mut again = left.clone();
    again.extend_from_slice(b"{\"audit\":{\"id\":\"cut-sh");
    std::fs::write(&spill.path, &again).unwrap();
    let store = PostgresStore::connect_with(db.url(), 64, &spill).await.unwrap();
    store.flush().await;
    assert_eq!(count(&db, "SELECT COUNT(*) FROM audit").await, 300, "a replayed row is not doubled");
    assert_eq!(count(&db, "SELECT COUNT(*) FROM spans").await, 300);
    assert_eq!(spilled_bytes(&spill.path), 0);
}

#[tokio::test]
async fn a_spill_file_locked_by_another_store_is_left_alone_and_adopted_later() {
    let db = TestDatabase::new().await;
    let dir = tempfile::tempdir().unwrap();
    let spill = SpillConfig::new(dir.path().join("spill.jsonl"));
    let first = PostgresStore::connect_with(db.url(), 64, &spill).await.unwrap();
    // A second replica on the same data dir spills to a file of its own.
    let second = PostgresStore::connect_with(db.url(), 64, &spill).await.unwrap();
    db.set_available(false).await;
    record(&second, "second", 0, 20);
    drop(second);
    let own: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("spill-"))
        .collect();
    assert_eq!(own.len(), 1, "the second store spilled to its own file: {own:?}");
    drop(first);
    db.set_available(true).await;
    let third = PostgresStore::connect_with(db.url(), 64, &spill).await.unwrap();
    third.flush().await;
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM audit").await,
        20,
        "the orphaned file was adopted and replayed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_rows_of_llm_spans_spilled_during_an_outage_are_replayed_exactly_once() {
    let db = TestDatabase::new().await;
    let dir = tempfile::tempdir().unwrap();
    let spill = SpillConfig::new(dir.path().join("spill.jsonl"));
    let store =
        PostgresStore::connect_with(db.url(), switchboard_store::QUEUE_CAPACITY, &spill).await.unwrap();
    let now = switchboard_core::unix_nanos_now() / 1_000_000;
    let llm = |n: u64| {
        common::usage::llm_span("during", &format!("llm-{n}"), ("a@x", "r"), "sales", "m", (10, 1), now)
    };

    db.set_available(false).await;
    for n in 0..100 {
        store.span(llm(n));
    }
    store.flush().await;
    assert!(spilled_bytes(&spill.path) > 0, "the LLM spans went to the spill file");

    db.set_available(true).await;
    // The same spans once more, as a batch whose commit was in doubt would be sent again.
    for n in 0..100 {
        store.span(llm(n));
    }
    store.flush().await;
    assert_eq!(spilled_bytes(&spill.path), 0, "the spill file is emptied once replayed");
    assert_eq!(count(&db, "SELECT COUNT(*) FROM usage").await, 100, "one usage row per LLM call");
    let totals = store.usage_totals(None, None).await.unwrap();
    assert_eq!((totals[0].calls, totals[0].prompt_tokens, totals[0].completion_tokens), (100, 1000, 100));
}
