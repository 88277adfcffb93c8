//! Rate limits in the hop pipeline: each level (endpoint, user and its overrides, group, agent),
//! queries and tokens, the 429 error and its audit row; and the Redis windows against the real
//! Redis on the machine, shared by two "replicas" without ever admitting more than the limit.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use switchboard_core::{
    AgentKind, AgentSpec, AuditDecision, AuthMethod, Caller, CredentialMode, CredentialSpec, Error,
    ErrorKind, HopKind, RunContext,
};
use switchboard_govern::limits::{LimitRules, Mark, MemoryWindows, Rate, RedisWindows, Windows};
use switchboard_govern::{Gateway, HopTarget, layers::RateLimit, layers::StandardCredentials};
use switchboard_store::MemorySink;

fn spec(name: &str) -> Arc<AgentSpec> {
    Arc::new(AgentSpec {
        credential: CredentialSpec { mode: CredentialMode::Automatic, ..Default::default() },
        ..AgentSpec::new(name, AgentKind::Tool, "test agent")
    })
}

fn ctx(email: &str, group: &str) -> RunContext {
    let caller = Caller::new(email, email, vec![group.into()], AuthMethod::Development);
    RunContext::new(caller, Duration::from_secs(10))
}

fn gateway(rules: LimitRules) -> (Gateway, Arc<MemorySink>) {
    let sink = Arc::new(MemorySink::default());
    let gw = Gateway::builder(sink.clone(), Arc::new(StandardCredentials::new("switchboard-sp")))
        .rate_limit(RateLimit::new(rules, Arc::new(MemoryWindows::new())))
        .build();
    (gw, sink)
}

fn qpm(n: u64) -> Rate {
    Rate { qpm: Some(n), tpm: None }
}

async fn call(gw: &Gateway, ctx: &RunContext, agent: &str) -> Result<(), Error> {
    gw.hop(ctx, &spec(agent), HopTarget::new(HopKind::Agent, agent), |_| async { Ok(()) }).await
}

/// An LLM hop that reports `tokens` of usage, as the LLM client does.
async fn llm(gw: &Gateway, ctx: &RunContext, tokens: u64) -> Result<(), Error> {
    gw.hop(ctx, &spec("llm"), HopTarget::new(HopKind::Llm, "gpt"), |grant| async move {
        grant.record("gen_ai.usage.input_tokens", tokens / 2);
        grant.record("gen_ai.usage.output_tokens", tokens - tokens / 2);
        Ok(())
    })
    .await
}

#[tokio::test]
async fn a_user_limit_refuses_with_429_naming_it_and_audits_rate_limited() {
    let mut users = BTreeMap::new();
    users.insert("dave@example.com".to_string(), qpm(3));
    let (gw, sink) = gateway(LimitRules { user: qpm(2), users, ..LimitRules::default() });
    for _ in 0..2 {
        call(&gw, &ctx("alice@example.com", "west_sales"), "sales").await.expect("within the limit");
    }
    let e = call(&gw, &ctx("alice@example.com", "west_sales"), "sales").await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::RateLimited);
    assert_eq!(e.kind.http_status(), 429);
    assert!(e.message.contains("2 queries per minute for user alice@example.com"), "{}", e.message);
    let wait = e.retry_after.expect("a retry hint");
    assert!(
        wait > Duration::from_secs(55) && wait <= Duration::from_secs(60),
        "the window's oldest mark: {wait:?}"
    );
    let row = sink.audit().pop().expect("an audit row");
    assert_eq!(row.decision, AuditDecision::RateLimited);
    assert_eq!(row.error_code.as_deref(), Some("rate_limited"));
    assert!(row.reason.unwrap_or_default().contains("for user alice@example.com"));

    // The override gives dave three; bob has his own default window.
    for _ in 0..3 {
        call(&gw, &ctx("dave@example.com", "executive"), "sales").await.expect("dave's override");
    }
    let e = call(&gw, &ctx("dave@example.com", "executive"), "sales").await.unwrap_err();
    assert!(e.message.contains("user dave@example.com (override)"), "{}", e.message);
    call(&gw, &ctx("bob@example.com", "east_sales"), "sales").await.expect("bob is not alice");
}

#[tokio::test]
async fn a_request_that_fans_out_counts_once_at_the_request_levels() {
    let (gw, _) = gateway(LimitRules { endpoint: qpm(2), ..LimitRules::default() });
    let first = ctx("alice@example.com", "west_sales");
    for agent in ["sales", "policies", "deal_desk"] {
        call(&gw, &first, agent).await.expect("one request, however many agents");
    }
    call(&gw, &ctx("bob@example.com", "east_sales"), "sales").await.expect("the second request");
    let e = call(&gw, &ctx("carol@example.com", "managers"), "sales").await.unwrap_err();
    assert!(e.message.contains("2 queries per minute for the endpoint"), "{}", e.message);
}

#[tokio::test]
async fn group_and_agent_limits_are_shared_by_their_callers() {
    let mut groups = BTreeMap::new();
    groups.insert("east_sales".to_string(), qpm(1));
    let mut agents = BTreeMap::new();
    agents.insert("genie".to_string(), qpm(2));
    let (gw, _) = gateway(LimitRules { groups, agents, ..LimitRules::default() });
    call(&gw, &ctx("bob@example.com", "east_sales"), "sales").await.unwrap();
    let e = call(&gw, &ctx("eve@example.com", "east_sales"), "sales").await.unwrap_err();
    assert!(e.message.contains("group east_sales"), "{}", e.message);

    call(&gw, &ctx("alice@example.com", "west_sales"), "genie").await.unwrap();
    call(&gw, &ctx("carol@example.com", "managers"), "genie").await.unwrap();
    let e = call(&gw, &ctx("frank@example.com", "admin"), "genie").await.unwrap_err();
    assert!(e.message.contains("agent `genie`"), "{}", e.message);
    call(&gw, &ctx("frank@example.com", "admin"), "sales").await.expect("other agents are not limited");
}

#[tokio::test]
async fn tokens_are_counted_after_each_llm_call_and_refuse_the_next_past_the_budget() {
    let (gw, sink) =
        gateway(LimitRules { user: Rate { qpm: None, tpm: Some(100) }, ..LimitRules::default() });
    let alice = ctx("alice@example.com", "west_sales");
    llm(&gw, &alice, 60).await.expect("60 of 100");
    llm(&gw, &alice, 60).await.expect("the budget was not spent before this call");
    let e = llm(&gw, &alice, 1).await.unwrap_err();
    assert!(e.message.contains("100 tokens per minute for user alice@example.com"), "{}", e.message);
    assert_eq!(sink.audit().last().map(|r| r.decision), Some(AuditDecision::RateLimited));
    llm(&gw, &ctx("bob@example.com", "east_sales"), 60).await.expect("bob's own budget");
}

fn unique_prefix() -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_nanos();
    format!("sbtest-govern-{}-{nanos}", std::process::id())
}

fn redis_url() -> String {
    std::env::var("SWITCHBOARD_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_redis_replicas_racing_never_admit_more_than_the_limit() {
    let prefix = unique_prefix();
    let a: Arc<dyn Windows> = Arc::new(RedisWindows::new(&redis_url(), &prefix).unwrap());
    let b: Arc<dyn Windows> = Arc::new(RedisWindows::new(&redis_url(), &prefix).unwrap());
    let tasks: Vec<_> = (0..40)
        .map(|n| {
            let windows = if n % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move {
                let mark = Mark {
                    key: "q:user:race@example.com".into(),
                    member: format!("req-{n}"),
                    weight: 1,
                    limit: Some(10),
                    label: "race".into(),
                };
                windows.acquire(&[mark]).await
            })
        })
        .collect();
    let mut admitted = 0;
    let mut waits = Vec::new();
    for task in tasks {
        match task.await.unwrap() {
            Ok(()) => admitted += 1,
            Err(tripped) => waits.push(tripped.retry_after),
        }
    }
    assert_eq!(admitted, 10, "exactly the limit is admitted across both replicas");
    assert!(waits.iter().all(|w| *w > Duration::from_secs(50) && *w <= Duration::from_secs(60)), "{waits:?}");
}

#[tokio::test]
async fn an_unreachable_redis_falls_back_to_local_windows() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let windows = RedisWindows::new(&format!("redis://127.0.0.1:{port}"), &unique_prefix()).unwrap();
    let mark = |n: u32| Mark {
        key: "q:user:x".into(),
        member: format!("r{n}"),
        weight: 1,
        limit: Some(2),
        label: "x".into(),
    };
    assert!(windows.acquire(&[mark(1)]).await.is_ok());
    assert!(windows.acquire(&[mark(2)]).await.is_ok());
    assert!(windows.acquire(&[mark(3)]).await.is_err(), "the local window still limits");
}
