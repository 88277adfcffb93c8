//! Resilience for every HTTP hop: retries with exponential backoff and full jitter, `Retry-After`,
//! and a circuit breaker per upstream.
//!
//! One policy, used by every request a [`HopGrant`](crate::HopGrant) sends
//! ([`HopGrant::send`](crate::HopGrant::send)) and so by HTTP tools, endpoint agents, MCP over
//! HTTP and the LLM client alike. A request is retried on 429, 500, 502, 503 and 504 and on
//! connection errors, only when it is safe to send twice: idempotent methods always, `POST` and
//! `PATCH` only when the caller says so (the LLM client does: a completion has no side effect).
//! Waits are never longer than the hop's remaining deadline; a `Retry-After` beyond the cap or the
//! deadline ends the retries and the caller sees the upstream's answer.

use dashmap::DashMap;
use reqwest::{Method, Response, StatusCode};
use std::collections::HashMap;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use switchboard_core::{Error, Result, RunContext};

/// How requests are retried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included; 1 turns retries off.
    pub max_attempts: u32,
    /// The backoff before the first retry; it doubles with each further retry.
    pub base_backoff: Duration,
    /// The longest backoff, and the longest `Retry-After` honoured.
    pub max_backoff: Duration,
}

impl RetryPolicy {
    /// No retries: one attempt.
    pub fn off() -> Self {
        Self { max_attempts: 1, base_backoff: Duration::ZERO, max_backoff: Duration::ZERO }
    }

    /// The wait before retry number `retry` (1 for the first retry): full jitter, uniformly
    /// random in `[0, min(max_backoff, base_backoff × 2^(retry-1))]`, so many clients failing at
    /// once do not retry in lockstep.
    pub fn backoff(&self, retry: u32) -> Duration {
        let exp = self.base_backoff.saturating_mul(1u32 << retry.saturating_sub(1).min(20));
        let ceiling = exp.min(self.max_backoff);
        let nanos = ceiling.as_nanos() as u64;
        if nanos == 0 {
            return Duration::ZERO;
        }
        Duration::from_nanos(random_u64() % (nanos + 1))
    }
}

/// When a circuit opens and how long it stays open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakerPolicy {
    /// Consecutive failures (5xx or connection errors, after retries) that open the circuit.
    pub failures: u32,
    /// How long an open circuit fails fast before it lets one probe through (half-open).
    pub cool_down: Duration,
}

/// The state of one upstream's circuit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    /// Calls pass.
    Closed,
    /// Calls fail fast until the cool-down has passed.
    Open,
    /// The cool-down has passed; one probe call decides whether the circuit closes.
    HalfOpen,
}

impl CircuitState {
    /// `closed`, `open` or `half_open`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }
}

/// One upstream's circuit as `/health` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CircuitStatus {
    /// The upstream: a connection name or a URL origin.
    pub upstream: String,
    /// Its state.
    pub state: CircuitState,
    /// Consecutive failures so far.
    pub failures: u32,
    /// For an open circuit: how long until a probe is let through.
    pub retry_in: Option<Duration>,
}

#[derive(Debug, Default)]
struct Circuit {
    failures: u32,
    opened_at: Option<Instant>,
    /// When the half-open probe was let through. A probe whose caller went away never settles,
    /// so after another cool-down a new probe is allowed rather than the circuit staying shut.
    probe_since: Option<Instant>,
}

/// The retry and breaker policy of one upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamPolicy {
    /// How its requests are retried.
    pub retry: RetryPolicy,
    /// Its circuit breaker, if any.
    pub breaker: Option<BreakerPolicy>,
}

/// Retries and circuit breakers, shared by every hop of a gateway. Cheap to clone.
#[derive(Clone)]
pub struct Resilience {
    default: UpstreamPolicy,
    /// Policies of named upstreams (connections) that differ from the default.
    overrides: Arc<HashMap<String, UpstreamPolicy>>,
    circuits: Arc<DashMap<String, Arc<Mutex<Circuit>>>>,
}

impl Default for Resilience {
    /// One attempt, no breaker: what a gateway does unless `[resilience]` is configured.
    fn default() -> Self {
        Self::new(RetryPolicy::off(), None)
    }
}

/// What [`Resilience::send`] did.
#[derive(Debug)]
pub struct Sent {
    /// The final answer (it may still be an error status the caller reports), or why none came.
    pub result: Result<Response>,
    /// Attempts sent, the first included (0 when the circuit refused the first).
    pub attempts: u32,
}

/// How one attempt went, as the retry loop needs to know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Judged {
    /// It counts against the upstream's circuit (a 5xx or a connection error).
    pub failed: bool,
    /// Worth another attempt: `Some(None)` after a backoff, `Some(Some(wait))` after the wait
    /// the upstream asked for (`Retry-After`); `None` ends the retries.
    pub retry: Option<Option<Duration>>,
}

impl Judged {
    /// An answer that is neither a failure nor worth another attempt.
    pub fn answered() -> Self {
        Self { failed: false, retry: None }
    }

    /// An HTTP answer with `status` and the `Retry-After` it carried.
    pub fn status(status: StatusCode, retry_after: Option<Duration>) -> Self {
        Self { failed: is_failure(status), retry: retryable_status(status).then_some(retry_after) }
    }

    /// A request that got no answer: a connection error or a timeout is retried.
    pub fn no_answer(connect_or_timeout: bool) -> Self {
        Self { failed: true, retry: connect_or_timeout.then_some(None) }
    }
}

/// What [`Resilience::run`] did.
#[derive(Debug)]
pub struct Tried<O> {
    /// The last attempt's outcome, or why there was none to give (an open circuit, a
    /// cancelled wait, an attempt that failed before sending).
    pub result: Result<O>,
    /// Attempts made, the first included (0 when the circuit refused the first).
    pub attempts: u32,
}

impl Resilience {
    /// Retries by `retry`, and a circuit per upstream when `breaker` is given.
    pub fn new(retry: RetryPolicy, breaker: Option<BreakerPolicy>) -> Self {
        Self {
            default: UpstreamPolicy { retry, breaker },
            overrides: Arc::default(),
            circuits: Arc::default(),
        }
    }

    /// Gives `upstream` (a connection's name) a policy of its own instead of the default.
    pub fn with_override(mut self, upstream: impl Into<String>, policy: UpstreamPolicy) -> Self {
        Arc::make_mut(&mut self.overrides).insert(upstream.into(), policy);
        self
    }

    /// The default retry policy.
    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.default.retry
    }

    /// The policy `upstream` runs under: its override, or the default.
    pub fn policy(&self, upstream: &str) -> &UpstreamPolicy {
        self.overrides.get(upstream).unwrap_or(&self.default)
    }

    /// Sends `request` (a client and what `RequestBuilder::build_split` made for it) to
    /// `upstream` (the circuit's key), retrying as the policy allows.
    /// `post_is_safe` lets `POST`/`PATCH` be retried: say so only when sending twice is harmless.
    /// An open circuit fails at once with a 503 that names the upstream and when it retries.
    /// Waits end early if `ctx` is cancelled; a wait that would run past `deadline` (the hop's:
    /// its agent's timeout or the request's deadline, whichever is sooner) is not started.
    pub async fn send(
        &self,
        ctx: &RunContext,
        deadline: Instant,
        upstream: &str,
        (client, built): (reqwest::Client, reqwest::Result<reqwest::Request>),
        post_is_safe: bool,
    ) -> Sent {
        // A streamed body cannot be copied, so such a request gets one attempt. A request that
        // could not be built (a bad header) is sent anyway: sending reports why.
        let retryable = built.as_ref().is_ok_and(|r| {
            r.body().is_none_or(|b| b.as_bytes().is_some()) && (is_idempotent(r.method()) || post_is_safe)
        });
        let client = &client;
        let mut pending = Some(built);
        let attempt = |again: bool| {
            let current = pending.take();
            if again {
                // Copied only when another attempt may follow, before this one consumes it.
                pending = match &current {
                    Some(Ok(request)) => request.try_clone().map(Ok),
                    _ => None,
                };
            }
            async move {
                match current {
                    Some(Ok(request)) => Ok(client.execute(request).await),
                    Some(Err(e)) => Ok(Err(e)),
                    None => Err(Error::internal(format!("no request left to send to {upstream}"))),
                }
            }
        };
        let judge = |outcome: &reqwest::Result<Response>| match outcome {
            Ok(response) => Judged::status(response.status(), retry_after(response)),
            Err(e) => Judged::no_answer(e.is_connect() || e.is_timeout()),
        };
        let tried = self.run(ctx, deadline, upstream, retryable, attempt, judge).await;
        let attempts = tried.attempts;
        let result = match tried.result {
            Ok(outcome) => finish(outcome, attempts, upstream),
            Err(e) => Err(e),
        };
        Sent { result, attempts }
    }

    /// The retry loop under [`send`](Self::send), for transports that send requests their own
    /// way (MCP over streamable HTTP): `attempt(again)` makes one attempt (`again` says whether
    /// another may follow, so it keeps what it needs for it), `judge` says how it went. Only a
    /// `retryable` request is attempted more than once; every attempt passes `upstream`'s
    /// circuit and settles it. The last attempt's outcome is returned as it is, for the caller
    /// to report; an `Err` from `attempt` ends the loop at once.
    pub async fn run<O, F, Fut>(
        &self,
        ctx: &RunContext,
        deadline: Instant,
        upstream: &str,
        retryable: bool,
        mut attempt: F,
        judge: impl Fn(&O) -> Judged,
    ) -> Tried<O>
    where
        F: FnMut(bool) -> Fut,
        Fut: Future<Output = Result<O>>,
    {
        let policy = self.policy(upstream);
        let mut attempts = 0u32;
        loop {
            if let Err(e) = self.admit(upstream, policy.breaker.as_ref()) {
                return Tried { result: Err(e), attempts };
            }
            attempts += 1;
            let again = retryable && attempts < policy.retry.max_attempts;
            let outcome = match attempt(again).await {
                Ok(outcome) => outcome,
                Err(e) => return Tried { result: Err(e), attempts },
            };
            let judged = judge(&outcome);
            self.settle(upstream, policy.breaker.as_ref(), judged.failed);
            let Some(hint) = judged.retry.filter(|_| again) else {
                return Tried { result: Ok(outcome), attempts };
            };
            let delay = match hint {
                Some(after) if after > policy.retry.max_backoff => {
                    return Tried { result: Ok(outcome), attempts };
                }
                Some(after) => after,
                None => policy.retry.backoff(attempts),
            };
            if Instant::now() + delay >= deadline {
                return Tried { result: Ok(outcome), attempts };
            }
            tracing::debug!(upstream, attempts, delay_ms = delay.as_millis() as u64, "retrying an HTTP hop");
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = ctx.cancel.cancelled() => return Tried { result: Err(Error::cancelled()), attempts },
            }
        }
    }

    /// The state of every upstream's circuit seen so far, by name.
    pub fn circuits(&self) -> Vec<CircuitStatus> {
        let mut all: Vec<CircuitStatus> = self
            .circuits
            .iter()
            .filter_map(|entry| {
                let policy = self.policy(entry.key()).breaker.as_ref()?;
                let circuit = entry.value().lock().ok()?;
                let (state, retry_in) = state_of(&circuit, policy);
                Some(CircuitStatus {
                    upstream: entry.key().clone(),
                    state,
                    failures: circuit.failures,
                    retry_in,
                })
            })
            .collect();
        all.sort_by(|a, b| a.upstream.cmp(&b.upstream));
        all
    }

    /// Fails fast while `upstream`'s circuit is open; lets one probe through once it half-opens.
    fn admit(&self, upstream: &str, breaker: Option<&BreakerPolicy>) -> Result<()> {
        let Some(policy) = breaker else { return Ok(()) };
        let circuit = self.circuits.entry(upstream.to_string()).or_default().clone();
        let Ok(mut circuit) = circuit.lock() else { return Ok(()) };
        match state_of(&circuit, policy) {
            (CircuitState::Closed, _) => Ok(()),
            (CircuitState::HalfOpen, _)
                if circuit.probe_since.is_none_or(|since| since.elapsed() >= policy.cool_down) =>
            {
                circuit.probe_since = Some(Instant::now());
                Ok(())
            }
            (_, retry_in) => {
                let wait = retry_in.unwrap_or(Duration::ZERO).max(Duration::from_millis(1));
                Err(Error::unavailable(
                    format!(
                        "circuit open for upstream `{upstream}` after {} consecutive failures; retrying in {} ms",
                        circuit.failures,
                        wait.as_millis()
                    ),
                    wait,
                ))
            }
        }
    }

    /// Records an attempt's outcome on `upstream`'s circuit.
    fn settle(&self, upstream: &str, breaker: Option<&BreakerPolicy>, failed: bool) {
        let Some(policy) = breaker else { return };
        let Some(circuit) = self.circuits.get(upstream).map(|c| c.clone()) else { return };
        let Ok(mut circuit) = circuit.lock() else { return };
        let was_probe = circuit.probe_since.take().is_some();
        if failed {
            circuit.failures = circuit.failures.saturating_add(1);
            if was_probe || circuit.failures >= policy.failures {
                if circuit.opened_at.is_none() || was_probe {
                    tracing::warn!(upstream, failures = circuit.failures, "circuit opened");
                }
                circuit.opened_at = Some(Instant::now());
            }
        } else {
            if circuit.opened_at.is_some() {
                tracing::info!(upstream, "circuit closed");
            }
            *circuit = Circuit::default();
        }
    }
}

fn state_of(circuit: &Circuit, policy: &BreakerPolicy) -> (CircuitState, Option<Duration>) {
    match circuit.opened_at {
        None => (CircuitState::Closed, None),
        Some(at) => {
            let elapsed = at.elapsed();
            if elapsed >= policy.cool_down {
                (CircuitState::HalfOpen, None)
            } else {
                (CircuitState::Open, Some(policy.cool_down - elapsed))
            }
        }
    }
}

fn finish(outcome: reqwest::Result<Response>, attempts: u32, upstream: &str) -> Result<Response> {
    outcome.map_err(|e| {
        let timed_out = e.is_timeout();
        let message = format!(
            "request to `{upstream}` failed after {attempts} attempt(s): {}",
            error_chain(&e.without_url())
        );
        if timed_out { Error::timeout(message) } else { Error::upstream(message) }
    })
}

/// An error and its sources, so "connection refused" is not hidden behind "error sending request".
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        let part = inner.to_string();
        if !text.contains(&part) {
            text = format!("{text}: {part}");
        }
        source = inner.source();
    }
    text
}

/// Methods RFC 9110 calls idempotent: sending them twice has the effect of sending them once.
fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

/// Statuses worth another attempt.
pub fn retryable_status(status: StatusCode) -> bool {
    matches!(status.as_u16(), 429 | 500 | 502 | 503 | 504)
}

/// Statuses that count against an upstream's circuit: it is failing, not refusing us (so 429,
/// which means "you, slow down", does not).
fn is_failure(status: StatusCode) -> bool {
    matches!(status.as_u16(), 500 | 502 | 503 | 504)
}

/// The wait a response asks for in `Retry-After`: seconds, or an HTTP date.
pub fn retry_after(response: &Response) -> Option<Duration> {
    parse_retry_after(response.headers().get(reqwest::header::RETRY_AFTER)?.to_str().ok()?, SystemTime::now())
}

/// Parses a `Retry-After` value (delta-seconds or an HTTP date), relative to `now`.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// A random number without a random-number crate: std's hasher keys are random per process and
/// per `RandomState`, which is plenty for spreading retries.
fn random_u64() -> u64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher
        .write_u128(SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_nanos());
    hasher.finish()
}

/// The circuit key for a URL without a connection: its origin (`scheme://host:port`).
pub fn origin(url: &reqwest::Url) -> String {
    format!(
        "{}://{}:{}",
        url.scheme(),
        url.host_str().unwrap_or(""),
        url.port_or_known_default().unwrap_or(0)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_jittered_under_an_exponential_ceiling() {
        let p = RetryPolicy {
            max_attempts: 5,
            base_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(350),
        };
        for _ in 0..200 {
            assert!(p.backoff(1) <= Duration::from_millis(100));
            assert!(p.backoff(2) <= Duration::from_millis(200));
            assert!(p.backoff(3) <= Duration::from_millis(350));
            assert!(p.backoff(30) <= Duration::from_millis(350));
        }
        let distinct: std::collections::HashSet<Duration> = (0..50).map(|_| p.backoff(3)).collect();
        assert!(distinct.len() > 1, "full jitter varies");
    }

    #[test]
    fn retry_after_takes_seconds_or_a_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        assert_eq!(parse_retry_after("1", now), Some(Duration::from_secs(1)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(7));
        assert_eq!(parse_retry_after(&later, now), Some(Duration::from_secs(7)));
        let past = httpdate::fmt_http_date(now - Duration::from_secs(7));
        assert_eq!(parse_retry_after(&past, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
    }

    /// Moves `upstream`'s clock back by `by` (opened and probe times), instead of sleeping.
    fn backdate(r: &Resilience, upstream: &str, by: Duration) {
        let circuit = r.circuits.get(upstream).expect("known upstream").clone();
        let mut c = circuit.lock().expect("lock");
        c.opened_at = c.opened_at.map(|t| t - by);
        c.probe_since = c.probe_since.map(|t| t - by);
    }

    #[test]
    fn a_circuit_opens_fails_fast_half_opens_and_closes() {
        let cool_down = Duration::from_secs(60);
        let breaker = BreakerPolicy { failures: 2, cool_down };
        let r = Resilience::new(RetryPolicy::off(), Some(breaker.clone()));
        let b = Some(&breaker);
        r.admit("u", b).expect("closed");
        r.settle("u", b, true);
        r.admit("u", b).expect("one failure is not enough");
        r.settle("u", b, true);
        let e = r.admit("u", b).expect_err("open");
        assert_eq!(e.kind, switchboard_core::ErrorKind::Unavailable);
        assert!(e.message.contains("`u`") && e.message.contains("retrying in"), "{}", e.message);
        assert_eq!(r.circuits()[0].state, CircuitState::Open);

        backdate(&r, "u", cool_down);
        assert_eq!(r.circuits()[0].state, CircuitState::HalfOpen);
        r.admit("u", b).expect("the probe");
        r.admit("u", b).expect_err("only one probe at a time");
        // A probe that never settles (its caller went away) does not keep the circuit shut.
        backdate(&r, "u", cool_down);
        r.admit("u", b).expect("a new probe after another cool-down");
        r.settle("u", b, true);
        assert_eq!(r.circuits()[0].state, CircuitState::Open, "a failed probe opens it again");

        backdate(&r, "u", cool_down);
        r.admit("u", b).expect("the next probe");
        r.settle("u", b, false);
        assert_eq!(r.circuits()[0].state, CircuitState::Closed);
        assert_eq!(r.circuits()[0].failures, 0);
    }
}
