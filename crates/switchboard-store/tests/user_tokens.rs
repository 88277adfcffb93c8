//! Users' sealed refresh tokens for per-user OAuth connections (schema version 7), on both
//! backends: replace, read, delete, and one user's row never answering for another.

use switchboard_store::{PostgresStore, SqliteStore, Store};
use switchboard_testkit::pg::TestSchema;

async fn round_trip(store: &dyn Store) {
    assert_eq!(store.user_token("drive", "alice").await.unwrap(), None);
    store.put_user_token("drive", "alice", &[1, 0, 2, 255]).await.unwrap();
    store.put_user_token("drive", "bob", b"bob-sealed").await.unwrap();
    store.put_user_token("drive", "alice", b"rotated").await.unwrap();
    assert_eq!(store.user_token("drive", "alice").await.unwrap().as_deref(), Some(&b"rotated"[..]));
    assert_eq!(store.user_token("mail", "alice").await.unwrap(), None, "another connection");
    assert!(!store.delete_user_token_if("drive", "alice", b"refused").await.unwrap(), "replaced meanwhile");
    assert!(store.delete_user_token_if("drive", "alice", b"rotated").await.unwrap());
    store.put_user_token("drive", "alice", b"rotated").await.unwrap();
    assert!(store.delete_user_token("drive", "alice").await.unwrap());
    assert!(!store.delete_user_token("drive", "alice").await.unwrap(), "already gone");
    assert_eq!(store.user_token("drive", "alice").await.unwrap(), None);
    assert_eq!(store.user_token("drive", "bob").await.unwrap().as_deref(), Some(&b"bob-sealed"[..]));
    let e = store.put_user_token("drive", "", b"x").await.expect_err("an empty subject");
    assert_eq!(e.kind, switchboard_core::ErrorKind::InvalidInput);
}

#[tokio::test]
async fn sqlite_keeps_one_sealed_token_per_user_and_connection() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("s.db")).unwrap();
    round_trip(&store).await;
}

#[tokio::test]
async fn postgres_keeps_one_sealed_token_per_user_and_connection() {
    let db = TestSchema::new().await;
    let store = PostgresStore::connect(db.url()).await.unwrap();
    round_trip(&store).await;
}
