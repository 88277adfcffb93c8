//! Stored-response scenarios every backend must pass; the backend test files call them with
//! their own stores.

use serde_json::json;
use switchboard_core::{Message, unix_nanos_now};
use switchboard_store::{Store, StoredResponse};

fn now_ms() -> u64 {
    unix_nanos_now() / 1_000_000
}

fn response(id: &str, owner: &str, created_unix_ms: u64) -> StoredResponse {
    StoredResponse {
        id: id.into(),
        owner: owner.into(),
        previous_id: Some("resp_before".into()),
        turns: vec![
            Message::user("revenue by rep"),
            Message::assistant("| Ann | 10 |\u{0}", Some("sales".into())),
        ],
        body: json!({"id": id, "object": "response", "output": [{"text": "é \u{0} ✓"}]}),
        created_unix_ms,
    }
}

/// Round trip, owner scoping, retention cutoff, delete and purge.
pub async fn stored_responses_are_owned_expire_and_delete(store: &dyn Store) {
    let now = now_ms();
    let mine = response("resp_1", "alice", now);
    store.put_response(&mine).await.unwrap();
    store.put_response(&response("resp_old", "alice", now - 100_000)).await.unwrap();

    assert_eq!(
        store.response("alice", "resp_1", 0).await.unwrap(),
        Some(mine.clone()),
        "every field survives"
    );
    assert_eq!(store.response("bob", "resp_1", 0).await.unwrap(), None, "another owner sees nothing");
    assert_eq!(store.response("alice", "resp_nope", 0).await.unwrap(), None);
    assert!(store.response("alice", "resp_old", now - 200_000).await.unwrap().is_some());
    assert_eq!(store.response("alice", "resp_old", now - 50_000).await.unwrap(), None, "expired");

    // Storing the same id again replaces it.
    let mut again = mine.clone();
    again.previous_id = None;
    store.put_response(&again).await.unwrap();
    assert_eq!(store.response("alice", "resp_1", 0).await.unwrap(), Some(again));

    assert!(!store.delete_response("bob", "resp_1").await.unwrap(), "bob cannot delete alice's");
    assert!(store.delete_response("alice", "resp_1").await.unwrap());
    assert!(!store.delete_response("alice", "resp_1").await.unwrap());
    assert_eq!(store.response("alice", "resp_1", 0).await.unwrap(), None);

    assert_eq!(store.purge_responses(now - 50_000).await.unwrap(), 1);
    assert_eq!(store.response("alice", "resp_old", 0).await.unwrap(), None);
}
