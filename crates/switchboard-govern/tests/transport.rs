//! A gateway with a `Transport` answers hops' HTTP requests in process: the request is made as for
//! the network (the caller's token, `x-request-id`, `traceparent`), nothing is resolved or
//! connected, and the hop's span records one attempt.

use async_trait::async_trait;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use switchboard_core::{
    AgentKind, AgentSpec, AuthMethod, Caller, CredentialMode, CredentialSpec, HopKind, Result, RunContext,
};
use switchboard_govern::reqwest::{self, Method};
use switchboard_govern::{Gateway, HopTarget, Transport, layers::StandardCredentials};
use switchboard_store::MemorySink;

/// What a request carried: method, URL, `authorization`, `x-request-id`.
type Seen = (String, String, Option<String>, Option<String>);

/// Answers every request with its own body upper-cased, keeping what it was sent.
#[derive(Default)]
struct Echo {
    seen: Mutex<Vec<Seen>>,
}

#[async_trait]
impl Transport for Echo {
    async fn send(&self, request: reqwest::Request) -> Result<reqwest::Response> {
        let header =
            |name: &str| request.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        let body = request.body().and_then(|b| b.as_bytes()).map(<[u8]>::to_vec).unwrap_or_default();
        self.seen.lock().unwrap().push((
            request.method().to_string(),
            request.url().to_string(),
            header("authorization"),
            header("x-request-id"),
        ));
        let answer = String::from_utf8_lossy(&body).to_uppercase();
        let response = axum::http::Response::builder().status(201).body(answer).unwrap();
        Ok(reqwest::Response::from(response))
    }
}

#[tokio::test]
async fn a_transport_answers_a_hops_requests_in_process() {
    let sink = Arc::new(MemorySink::default());
    let echo = Arc::new(Echo::default());
    let gateway = Gateway::builder(sink.clone(), Arc::new(StandardCredentials::new("switchboard-sp")))
        .transport(echo.clone())
        .build();
    let agent = Arc::new(AgentSpec {
        credential: CredentialSpec { mode: CredentialMode::Obo, ..Default::default() },
        ..AgentSpec::new("backend", AgentKind::Endpoint, "an in-process backend")
    });
    let caller =
        Caller::new("alice@example.com", "alice@example.com", vec!["west_sales".into()], AuthMethod::Jwt)
            .with_token(switchboard_core::Secret::new("tok-alice"));
    let ctx = RunContext::new(caller, Duration::from_secs(5));
    // `.invalid` never resolves: an answer proves no network was involved.
    let (status, text) = gateway
        .hop(&ctx, &agent, HopTarget::new(HopKind::Tool, "backend"), |grant| async move {
            let request = grant.request(Method::POST, "http://backend.invalid/v1/echo")?.body("ping");
            let response = grant.send(request, false).await?;
            let status = response.status().as_u16();
            Ok((status, response.text().await.unwrap_or_default()))
        })
        .await
        .expect("the hop is answered in process");
    assert_eq!((status, text.as_str()), (201, "PING"));

    let seen = echo.seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        vec![(
            "POST".to_string(),
            "http://backend.invalid/v1/echo".to_string(),
            Some("Bearer tok-alice".to_string()),
            Some(ctx.request_id.as_str().to_string()),
        )]
    );
    let spans = sink.spans();
    assert_eq!(spans.len(), 1);
    assert_eq!(spans[0].attributes["switchboard.http.attempts"], 1);
}
