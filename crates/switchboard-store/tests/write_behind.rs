//! Stored responses, thread turns and payload rows written behind the request, against a real
//! PostgreSQL database that goes away and comes back: writing them never waits for it, what was
//! written meanwhile is served from memory, and once it is back every write lands exactly once.

mod common;

use serde_json::json;
use std::time::{Duration, Instant};
use switchboard_core::{Message, unix_nanos_now};
use switchboard_store::{PostgresStore, QUEUE_CAPACITY, SpillConfig, Store, StoredResponse};
use switchboard_testkit::pg::TestDatabase;

async fn count(db: &TestDatabase, sql: &str) -> i64 {
    db.client().await.query_one(sql, &[]).await.unwrap_or_else(|e| panic!("{sql}: {e}")).get(0)
}

fn response(id: &str) -> StoredResponse {
    StoredResponse {
        id: id.into(),
        owner: "alice".into(),
        previous_id: None,
        turns: vec![Message::user("q"), Message::assistant("a", Some("sales".into()))],
        body: json!({"id": id, "object": "response"}),
        created_unix_ms: unix_nanos_now() / 1_000_000,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_turns_and_payloads_written_during_an_outage_are_served_then_stored_once() {
    let db = TestDatabase::new().await;
    let dir = tempfile::tempdir().unwrap();
    let spill = SpillConfig::new(dir.path().join("spill.jsonl"));
    let store = PostgresStore::connect_with(db.url(), QUEUE_CAPACITY, &spill).await.unwrap();
    store.append_turn("t", "before", &Message::user("before")).await.unwrap();
    store.flush().await;

    db.set_available(false).await;
    let started = Instant::now();
    for i in 0..50 {
        store.put_response(&response(&format!("resp_{i}"))).await.unwrap();
        store.append_turn("t", &format!("req-{i}"), &Message::user(format!("during-{i}"))).await.unwrap();
        store.log_payload(common::payloads::payload(&format!("req-{i}"), 1_000 + i));
    }
    println!("50 responses, turns and payload rows written during the outage in {:?}", started.elapsed());
    // Deleting a response still waiting for the store deletes it from memory and queues the delete.
    assert!(store.delete_response("alice", "resp_0").await.unwrap());
    assert_eq!(store.response("alice", "resp_0", 0).await.unwrap(), None);
    let served = store.response("alice", "resp_7", 0).await.unwrap().expect("served from memory");
    assert_eq!(served.body, json!({"id": "resp_7", "object": "response"}));
    assert_eq!(store.response("bob", "resp_7", 0).await.unwrap(), None, "scoped by owner in memory too");
    // The thread itself needs the store for its older turns: an outage is an error, not a
    // silently shortened conversation.
    assert!(store.thread("t").await.is_err());
    store.flush().await;

    db.set_available(true).await;
    // The writer replays with a backoff; flushing triggers it at once.
    let deadline = Instant::now() + Duration::from_secs(60);
    while count(&db, "SELECT COUNT(*) FROM thread_turns").await < 51 {
        assert!(Instant::now() < deadline, "the spilled writes never reached the database");
        store.flush().await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    store.flush().await;
    assert_eq!(count(&db, "SELECT COUNT(*) FROM responses").await, 49, "resp_0 was deleted");
    assert_eq!(count(&db, "SELECT COUNT(*) FROM payloads").await, 50);
    let seqs = count(&db, "SELECT COUNT(DISTINCT seq) FROM thread_turns WHERE thread_id = 't'").await;
    assert_eq!(seqs, 51, "one turn each, none doubled");
    let turns = store.thread("t").await.unwrap();
    let contents: Vec<String> = turns.into_iter().map(|m| m.content).collect();
    let want: Vec<String> =
        std::iter::once("before".to_string()).chain((0..50).map(|i| format!("during-{i}"))).collect();
    assert_eq!(contents, want, "in the order they were appended");
    assert!(store.response("alice", "resp_7", 0).await.unwrap().is_some(), "now from the database");
}
