//! Payload log scenarios every backend must pass.

use switchboard_core::ErrorKind;
use switchboard_store::{PayloadFilter, PayloadRow, Store};

/// A payload row of `request_id` finished at `ts_unix_ms`.
pub fn payload(request_id: &str, ts_unix_ms: u64) -> PayloadRow {
    PayloadRow {
        request_id: request_id.into(),
        ts_unix_ms,
        caller_email: "alice@example.com".into(),
        caller_subject: Some("sub-\u{0}alice".into()),
        endpoint: "chat.completions".into(),
        status: 200,
        duration_ms: 12,
        request_body: r#"{"messages":[{"role":"user","content":"é ✓"}]}"#.into(),
        response_body: "{\"choices\":[]}".into(),
    }
}

/// Rows round-trip, newest first, filtered by time and request, and the limit is checked.
pub async fn payload_rows_round_trip_and_filter(store: &dyn Store) {
    for (id, ts) in [("req-1", 1_000), ("req-2", 2_000), ("req-3", 3_000)] {
        store.log_payload(payload(id, ts));
    }
    store.flush().await;

    let all = store.payloads(&PayloadFilter::default()).await.unwrap();
    let ids: Vec<&str> = all.iter().map(|r| r.request_id.as_str()).collect();
    assert_eq!(ids, ["req-3", "req-2", "req-1"], "newest first");
    let mut want = payload("req-3", 3_000);
    // PostgreSQL text cannot hold NUL; both backends answer what PostgreSQL stores.
    let subject = all[0].caller_subject.clone();
    assert!(matches!(subject.as_deref(), Some("sub-\u{0}alice" | "sub-\u{FFFD}alice")), "{subject:?}");
    want.caller_subject = subject;
    assert_eq!(all[0], want, "every field survives");

    let since = PayloadFilter { since_unix_ms: Some(2_000), ..PayloadFilter::default() };
    assert_eq!(store.payloads(&since).await.unwrap().len(), 2);
    let one = PayloadFilter { request_id: Some("req-1".into()), ..PayloadFilter::default() };
    let rows = store.payloads(&one).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].request_id, "req-1");

    let e = store.payloads(&PayloadFilter { limit: 0, ..PayloadFilter::default() }).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidInput);
}
