//! Usage accounting and audit query scenarios every backend must pass; the backend test files
//! call them with their own stores.

use switchboard_core::{
    AuditDecision, AuditRecord, HopKind, SpanKind, SpanRecord, SpanStatus, unix_nanos_now,
};
use switchboard_store::{AuditFilter, Store, UsageGroup, UsageTotal};

/// An LLM hop span as the span layer records it, with the tokens the LLM client adds.
pub fn llm_span(
    request_id: &str,
    id: &str,
    (email, role): (&str, &str),
    agent: &str,
    model: &str,
    (prompt, completion): (u64, u64),
    end_ms: u64,
) -> SpanRecord {
    let attributes = serde_json::json!({
        "switchboard.hop.kind": "llm",
        "gen_ai.request.model": model,
        "gen_ai.usage.input_tokens": prompt,
        "gen_ai.usage.output_tokens": completion,
        "switchboard.caller.email": email,
        "switchboard.caller.role": role,
        "switchboard.usage_context": {"project": "apollo", "cost_center": "cc-7"},
    });
    SpanRecord {
        request_id: request_id.into(),
        trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
        span_id: id.into(),
        parent_id: None,
        name: format!("chat {model}"),
        kind: SpanKind::Llm,
        agent: Some(agent.into()),
        start_unix_nano: (end_ms - 40) * 1_000_000,
        end_unix_nano: end_ms * 1_000_000,
        status: SpanStatus::Ok,
        status_message: None,
        attributes: attributes.as_object().cloned().unwrap_or_default(),
    }
}

fn total(key: Option<&str>, requests: u64, calls: u64, prompt: u64, completion: u64) -> UsageTotal {
    UsageTotal {
        key: key.map(str::to_string),
        requests,
        calls,
        prompt_tokens: prompt,
        completion_tokens: completion,
        latency_ms: calls * 40,
    }
}

/// A span is identified within its request: the same span id under another request is another
/// span and another usage row, while the same request and span id again is a replay and adds
/// nothing.
pub async fn spans_are_unique_per_request(store: &dyn Store) {
    let alice = ("alice@example.com", "west_sales");
    let now = unix_nanos_now() / 1_000_000;
    store.span(llm_span("q1", "same", alice, "sales", "gpt-a", (10, 1), now));
    store.span(llm_span("q2", "same", alice, "sales", "gpt-a", (20, 2), now));
    store.span(llm_span("q2", "same", alice, "sales", "gpt-a", (20, 2), now));
    store.flush().await;
    for (request, prompt) in [("q1", 10), ("q2", 20)] {
        let spans = store.spans(request).await.unwrap();
        assert_eq!(spans.len(), 1, "spans of {request}: {spans:?}");
        assert_eq!(spans[0].attributes["gen_ai.usage.input_tokens"], prompt);
        let usage = store.usage_for_request(request).await.unwrap();
        let prompts: Vec<u64> = usage.iter().map(|u| u.prompt_tokens).collect();
        assert_eq!(prompts, [prompt], "usage rows of {request}");
    }
}

/// LLM spans become usage rows (others do not), a span recorded twice counts once, and totals
/// group by user, group, agent and model, from a point in time.
pub async fn usage_rows_and_totals(store: &dyn Store) {
    assert_eq!(store.usage_totals(None, None).await.unwrap(), vec![total(None, 0, 0, 0, 0)]);
    let now = unix_nanos_now() / 1_000_000;
    let old = now - 3_600_000;
    let alice = ("alice@example.com", "west_sales");
    let bob = ("bob@example.com", "east_sales");
    store.span(llm_span("r1", "l1", alice, "supervisor", "gpt-a", (100, 10), old));
    store.span(llm_span("r1", "l2", alice, "sales", "gpt-a", (200, 20), now));
    store.span(llm_span("r2", "l3", bob, "sales", "gpt-b", (50, 5), now));
    // Replayed: the same span again (a spill replay, a batch whose commit was in doubt).
    store.span(llm_span("r2", "l3", bob, "sales", "gpt-b", (50, 5), now));
    // Not an LLM hop: no usage row.
    let mut tool = llm_span("r2", "t1", bob, "sales", "x", (9, 9), now);
    tool.attributes.insert("switchboard.hop.kind".into(), "sql".into());
    store.span(tool);
    store.flush().await;

    let rows = store.usage_for_request("r1").await.unwrap();
    assert_eq!(rows.len(), 2);
    let r = &rows[1];
    assert_eq!((r.span_id.as_str(), r.agent.as_str(), r.model.as_str()), ("l2", "sales", "gpt-a"));
    assert_eq!((r.caller_email.as_str(), r.caller_role.as_str()), ("alice@example.com", "west_sales"));
    assert_eq!((r.prompt_tokens, r.completion_tokens, r.latency_ms, r.ts_unix_ms), (200, 20, 40, now));
    assert_eq!(r.status, "success");
    let context: serde_json::Value = serde_json::from_str(r.usage_context.as_deref().unwrap()).unwrap();
    assert_eq!(context, serde_json::json!({"project": "apollo", "cost_center": "cc-7"}));
    assert_eq!(store.usage_for_request("r2").await.unwrap().len(), 1, "no double count, no tool row");

    assert_eq!(store.usage_totals(None, None).await.unwrap(), vec![total(None, 2, 3, 350, 35)]);
    assert_eq!(
        store.usage_totals(None, Some(UsageGroup::User)).await.unwrap(),
        vec![total(Some("alice@example.com"), 1, 2, 300, 30), total(Some("bob@example.com"), 1, 1, 50, 5)]
    );
    assert_eq!(
        store.usage_totals(None, Some(UsageGroup::Group)).await.unwrap(),
        vec![total(Some("west_sales"), 1, 2, 300, 30), total(Some("east_sales"), 1, 1, 50, 5)]
    );
    assert_eq!(
        store.usage_totals(None, Some(UsageGroup::Agent)).await.unwrap(),
        vec![total(Some("sales"), 2, 2, 250, 25), total(Some("supervisor"), 1, 1, 100, 10)]
    );
    assert_eq!(
        store.usage_totals(Some(now - 60_000), Some(UsageGroup::Model)).await.unwrap(),
        vec![total(Some("gpt-a"), 1, 1, 200, 20), total(Some("gpt-b"), 1, 1, 50, 5)],
        "--since leaves the hour-old call out"
    );
}

fn row(request_id: &str, n: u64, email: &str, agent: &str, decision: AuditDecision, ts: u64) -> AuditRecord {
    AuditRecord {
        request_id: request_id.into(),
        span_id: format!("s-{n}"),
        ts_unix_ms: ts,
        caller_email: email.into(),
        caller_roles: "r".into(),
        acting_for: None,
        principal: email.into(),
        credential_mode: "obo".into(),
        agent: agent.into(),
        hop: HopKind::Agent,
        target: agent.into(),
        decision,
        reason: None,
        duration_ms: n,
        error_code: None,
    }
}

/// Each audit filter narrows the rows in the store's query, newest first, and they combine.
pub async fn audit_filters(store: &dyn Store) {
    let t = 1_700_000_000_000;
    let rows = [
        row("q1", 1, "alice@example.com", "sales", AuditDecision::Allowed, t),
        row("q1", 2, "alice@example.com", "audit", AuditDecision::AccessDenied, t + 10),
        row("q2", 3, "bob@example.com", "sales", AuditDecision::RateLimited, t + 20),
        row("q3", 4, "bob@example.com", "policies", AuditDecision::Allowed, t + 30),
        row("q4", 5, "Carol@Example.com", "sales", AuditDecision::Error, t + 40),
    ];
    for r in &rows {
        store.audit(r.clone());
    }
    store.flush().await;
    let ids = |found: Vec<AuditRecord>| found.into_iter().map(|r| r.duration_ms).collect::<Vec<_>>();
    let query = |f: AuditFilter| async move {
        ids(store.query_audit(&AuditFilter { limit: 100, ..f }).await.unwrap())
    };

    assert_eq!(query(AuditFilter::default()).await, [5, 4, 3, 2, 1]);
    assert_eq!(query(AuditFilter { since_unix_ms: Some(t + 20), ..Default::default() }).await, [5, 4, 3]);
    assert_eq!(
        query(AuditFilter { caller: Some("bob@example.com".into()), ..Default::default() }).await,
        [4, 3]
    );
    assert_eq!(
        query(AuditFilter { caller: Some("carol@example.com".into()), ..Default::default() }).await,
        [5],
        "emails compare case-insensitively"
    );
    assert_eq!(query(AuditFilter { status: Some("success".into()), ..Default::default() }).await, [4, 1]);
    assert_eq!(query(AuditFilter { status: Some("access_denied".into()), ..Default::default() }).await, [2]);
    assert_eq!(query(AuditFilter { status: Some("rate_limited".into()), ..Default::default() }).await, [3]);
    assert_eq!(query(AuditFilter { agent: Some("sales".into()), ..Default::default() }).await, [5, 3, 1]);
    assert_eq!(query(AuditFilter { request_id: Some("q1".into()), ..Default::default() }).await, [2, 1]);
    assert_eq!(
        query(AuditFilter {
            caller: Some("alice@example.com".into()),
            agent: Some("sales".into()),
            status: Some("success".into()),
            since_unix_ms: Some(t),
            ..Default::default()
        })
        .await,
        [1]
    );
    assert_eq!(
        ids(store.query_audit(&AuditFilter { limit: 2, ..Default::default() }).await.unwrap()),
        [5, 4]
    );
    // Values are bound, never spliced into the SQL.
    assert!(query(AuditFilter { agent: Some("x' OR '1'='1".into()), ..Default::default() }).await.is_empty());
    let e = store
        .query_audit(&AuditFilter { status: Some("denied".into()), limit: 5, ..Default::default() })
        .await;
    let e = e.unwrap_err();
    assert!(
        e.message.contains("valid statuses are success, error, access_denied, rate_limited, blocked"),
        "{e}"
    );
}
