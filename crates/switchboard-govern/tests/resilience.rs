//! Retries, `Retry-After` and the circuit breaker, against a real HTTP upstream on a socket
//! (the testkit's flaky upstream), through real hops and `HopGrant::send`.

use std::sync::Arc;
use std::time::Duration;
use switchboard_core::{
    AgentKind, AgentSpec, AuthMethod, Caller, CredentialMode, CredentialSpec, ErrorKind, HopKind, RunContext,
};
use switchboard_govern::reqwest::{self, Method};
use switchboard_govern::retry::{BreakerPolicy, CircuitState, Resilience, RetryPolicy};
use switchboard_govern::{Gateway, HopTarget, layers::StandardCredentials};
use switchboard_store::MemorySink;
use switchboard_testkit::flaky::{FlakyUpstream, Reply};

fn agent() -> Arc<AgentSpec> {
    agent_with_timeout(None)
}

fn agent_with_timeout(timeout_ms: Option<u64>) -> Arc<AgentSpec> {
    Arc::new(AgentSpec {
        name: "partner".into(),
        kind: AgentKind::Tool,
        description: "test agent".into(),
        examples: vec![],
        credential: CredentialSpec { mode: CredentialMode::Automatic, ..Default::default() },
        allowed_roles: None,
        timeout_ms,
        connection: None,
        settings: serde_json::Value::Null,
        tool_roles: None,
        guardrails: None,
    })
}

fn ctx() -> RunContext {
    let caller = Caller::new(
        "alice@example.com",
        "alice@example.com",
        vec!["west_sales".into()],
        AuthMethod::Development,
    );
    RunContext::new(caller, Duration::from_secs(20))
}

fn retries(max_attempts: u32) -> RetryPolicy {
    RetryPolicy { max_attempts, base_backoff: Duration::from_millis(20), max_backoff: Duration::from_secs(2) }
}

fn gateway(resilience: Resilience) -> (Arc<Gateway>, Arc<MemorySink>) {
    let sink = Arc::new(MemorySink::default());
    let gw = Gateway::builder(sink.clone(), Arc::new(StandardCredentials::new("switchboard-sp")))
        .resilience(resilience)
        .build();
    (Arc::new(gw), sink)
}

/// One hop that sends `method` to `url` and answers the final status.
async fn call(gw: &Gateway, method: Method, url: &str, post_is_safe: bool) -> switchboard_core::Result<u16> {
    gw.hop(&ctx(), &agent(), HopTarget::new(HopKind::Tool, "partner"), |grant| {
        let method = method.clone();
        async move {
            let rb = grant.request(method, url)?;
            Ok(grant.send(rb, post_is_safe).await?.status().as_u16())
        }
    })
    .await
}

#[tokio::test]
async fn two_503s_then_200_succeeds_with_the_attempts_on_the_span() {
    let upstream = FlakyUpstream::start(vec![Reply::status(503), Reply::status(503)]).await;
    let (gw, sink) = gateway(Resilience::new(retries(4), None));
    let status = call(&gw, Method::GET, &format!("{}/items", upstream.url()), false).await.expect("hop");
    assert_eq!(status, 200);
    assert_eq!(upstream.calls(), 3);
    let spans = sink.spans();
    assert_eq!(spans.len(), 1, "retries are one hop");
    assert_eq!(spans[0].attributes["switchboard.http.attempts"], 3);
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let upstream = FlakyUpstream::start(vec![Reply::retry_after(429, 1)]).await;
    let (gw, sink) = gateway(Resilience::new(retries(3), None));
    let status = call(&gw, Method::GET, upstream.url(), false).await.expect("hop");
    assert_eq!(status, 200);
    let arrivals = upstream.arrivals();
    assert_eq!(arrivals.len(), 2);
    let gap = arrivals[1] - arrivals[0];
    println!("Retry-After: 1 → the second attempt came {} ms after the first", gap.as_millis());
    assert!(gap >= Duration::from_millis(950), "the retry waited for Retry-After, not its own backoff");
    assert_eq!(sink.spans()[0].attributes["switchboard.http.attempts"], 2);
}

#[tokio::test]
async fn a_retry_after_beyond_the_cap_ends_the_retries() {
    let upstream = FlakyUpstream::start(vec![Reply::retry_after(503, 30)]).await;
    let (gw, _) = gateway(Resilience::new(retries(3), None));
    let status = call(&gw, Method::GET, upstream.url(), false).await.expect("hop");
    assert_eq!((status, upstream.calls()), (503, 1), "30 s is past the 2 s cap: the caller sees the 503");
}

#[tokio::test]
async fn post_is_retried_only_when_the_caller_marks_it_safe() {
    let upstream = FlakyUpstream::start(vec![Reply::status(503), Reply::status(503)]).await;
    let (gw, _) = gateway(Resilience::new(retries(3), None));
    let status = call(&gw, Method::POST, upstream.url(), false).await.expect("hop");
    assert_eq!((status, upstream.calls()), (503, 1), "an unmarked POST is sent once");
    let status = call(&gw, Method::POST, upstream.url(), true).await.expect("hop");
    assert_eq!((status, upstream.calls()), (200, 3), "a POST marked safe is retried");
}

/// A body that is a stream cannot be sent twice: such a request gets one attempt, even when it
/// is marked safe to retry.
#[tokio::test]
async fn a_streamed_body_is_sent_once() {
    let upstream = FlakyUpstream::start(vec![Reply::status(503), Reply::status(503)]).await;
    let (gw, _) = gateway(Resilience::new(retries(3), None));
    let url = upstream.url();
    let status = gw
        .hop(&ctx(), &agent(), HopTarget::new(HopKind::Tool, "partner"), |grant| async move {
            let chunks = futures::stream::iter([Ok::<_, std::io::Error>("a streamed body")]);
            let rb = grant.request(Method::POST, url)?.body(reqwest::Body::wrap_stream(chunks));
            Ok(grant.send(rb, true).await?.status().as_u16())
        })
        .await
        .expect("hop");
    assert_eq!((status, upstream.calls()), (503, 1));
}

#[tokio::test]
async fn connection_errors_are_retried_and_then_reported() {
    let port = switchboard_testkit::free_port();
    let (gw, sink) = gateway(Resilience::new(retries(3), None));
    let e = call(&gw, Method::GET, &format!("http://127.0.0.1:{port}/"), false)
        .await
        .expect_err("nothing listens");
    assert_eq!(e.kind, ErrorKind::Upstream);
    assert!(e.message.contains("after 3 attempt(s)"), "{}", e.message);
    assert_eq!(sink.spans()[0].attributes["switchboard.http.attempts"], 3);
}

#[tokio::test]
async fn the_breaker_opens_fails_fast_half_opens_and_closes() {
    let upstream = FlakyUpstream::start(vec![Reply::status(500), Reply::status(502)]).await;
    let breaker = BreakerPolicy { failures: 2, cool_down: Duration::from_millis(500) };
    let (gw, _) = gateway(Resilience::new(RetryPolicy::off(), Some(breaker)));
    let url = upstream.url().to_string();
    assert_eq!(call(&gw, Method::GET, &url, false).await.expect("hop"), 500);
    assert_eq!(call(&gw, Method::GET, &url, false).await.expect("hop"), 502);

    let e = call(&gw, Method::GET, &url, false).await.expect_err("open: fails fast");
    assert_eq!(e.kind, ErrorKind::Unavailable);
    assert_eq!(e.kind.http_status(), 503);
    assert!(e.message.contains("127.0.0.1") && e.message.contains("retrying in"), "{}", e.message);
    assert!(e.retry_after.is_some());
    assert_eq!(upstream.calls(), 2, "nothing was sent while open");
    let circuits = gw.resilience().circuits();
    assert_eq!(circuits.len(), 1);
    assert_eq!(circuits[0].state, CircuitState::Open);
    assert!(circuits[0].upstream.contains("127.0.0.1"), "{:?}", circuits[0]);

    // Wait for the cool-down by watching the state, not the clock.
    for _ in 0..100 {
        if gw.resilience().circuits()[0].state == CircuitState::HalfOpen {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(gw.resilience().circuits()[0].state, CircuitState::HalfOpen);
    assert_eq!(call(&gw, Method::GET, &url, false).await.expect("the probe"), 200);
    assert_eq!(gw.resilience().circuits()[0].state, CircuitState::Closed);
    assert_eq!(upstream.calls(), 3);
}

#[tokio::test]
async fn a_wait_past_the_hops_timeout_is_not_started() {
    let upstream = FlakyUpstream::start(vec![Reply::retry_after(503, 1)]).await;
    let (gw, sink) = gateway(Resilience::new(retries(3), None));
    let agent = agent_with_timeout(Some(500));
    let url = upstream.url().to_string();
    let status = gw
        .hop(&ctx(), &agent, HopTarget::new(HopKind::Tool, "partner"), |grant| {
            let url = url.clone();
            async move { Ok(grant.send(grant.request(Method::GET, &url)?, false).await?.status().as_u16()) }
        })
        .await
        .expect("the 503 is answered, not a timeout");
    assert_eq!((status, upstream.calls()), (503, 1), "Retry-After: 1 is past the agent's 500 ms");
    assert_eq!(sink.spans()[0].attributes["switchboard.http.attempts"], 1);
}

#[tokio::test]
async fn through_a_connection_the_circuit_is_the_connections() {
    use switchboard_core::ConnectionSpec;
    let upstream = FlakyUpstream::start(vec![Reply::status(503), Reply::status(503)]).await;
    let mut spec = ConnectionSpec::new("partner_api", upstream.url());
    spec.allow_insecure_loopback = true;
    let connection = Arc::new(switchboard_govern::Connection::new(spec, None).expect("valid connection"));
    let grants = Arc::new(switchboard_govern::layers::StaticGrants::default());
    grants.grant("partner_api", "switchboard-sp");
    let breaker = BreakerPolicy { failures: 2, cool_down: Duration::from_secs(60) };
    let gw = Gateway::builder(
        Arc::new(MemorySink::default()),
        Arc::new(StandardCredentials::new("switchboard-sp")),
    )
    .connections([connection], grants, "switchboard-sp")
    .resilience(Resilience::new(retries(3), Some(breaker)))
    .build();
    let mut agent = (*agent()).clone();
    agent.connection = Some("partner_api".into());
    let agent = Arc::new(agent);
    let url = format!("{}/v1/items", upstream.url());
    let e = gw
        .hop(&ctx(), &agent, HopTarget::new(HopKind::Tool, "partner"), |grant| {
            let url = url.clone();
            async move { Ok(grant.send(grant.request(Method::GET, &url)?, false).await?.status().as_u16()) }
        })
        .await
        .expect_err("two 503s open the circuit before the third attempt");
    assert_eq!(e.kind, ErrorKind::Unavailable);
    assert!(e.message.contains("`partner_api`"), "{}", e.message);
    assert_eq!(upstream.calls(), 2);
    let circuits = gw.resilience().circuits();
    assert_eq!((circuits[0].upstream.as_str(), circuits[0].state), ("partner_api", CircuitState::Open));
}
