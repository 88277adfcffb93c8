//! `GET /metrics`: Prometheus metrics kept with the official `prometheus-client` crate. Recording
//! is lock-free on the hot path except the first time a label set is seen.
//!
//! The exposition format is negotiated: a scraper whose `Accept` names
//! `application/openmetrics-text` (Prometheus does) gets OpenMetrics; anything else (`curl`,
//! `promtool`, older scrapers) gets the Prometheus text format 0.0.4, converted from it.

use crate::AppState;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::time::Duration;
use switchboard_runtime::RunResponse;
use switchboard_runtime::Usage;

/// The content type of the OpenMetrics text format.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The content type of the Prometheus text exposition format.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    method: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AgentCallLabels {
    agent: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AgentLabels {
    agent: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TokenLabels {
    direction: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// The server's metrics. One per server; shared through [`AppState`].
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: HistogramFamily<RouteLabels>,
    in_flight: Gauge,
    runs: Family<StatusLabels, Counter>,
    agent_calls: Family<AgentCallLabels, Counter>,
    denials: Family<AgentLabels, Counter>,
    rate_limited: Family<AgentLabels, Counter>,
    tokens: Family<TokenLabels, Counter>,
}

fn latency_histogram() -> Histogram {
    // 1 ms to ~33 s: from a cached lexical route to an LLM fan-out near the deadline.
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric under the `switchboard_` prefix.
    pub fn new() -> Self {
        let mut root = Registry::default();
        let registry = root.sub_registry_with_prefix("switchboard");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register("http_requests", "HTTP requests by route, method and status", requests.clone());
        let latency: HistogramFamily<RouteLabels> = Family::new_with_constructor(latency_histogram);
        registry.register(
            "http_request_duration_seconds",
            "Time to the response head (for event streams, to the first byte), by route",
            latency.clone(),
        );
        let in_flight = Gauge::default();
        registry.register("http_requests_in_flight", "Requests being served", in_flight.clone());
        let runs = Family::<StatusLabels, Counter>::default();
        registry.register("runs", "Supervisor runs by outcome (ok, clarify, denied, error)", runs.clone());
        let agent_calls = Family::<AgentCallLabels, Counter>::default();
        registry.register(
            "agent_calls",
            "Sub-agent calls by agent and outcome (ok, denied, error)",
            agent_calls.clone(),
        );
        let denials = Family::<AgentLabels, Counter>::default();
        registry.register("denials", "Sub-agent calls denied by policy or missing scopes", denials.clone());
        let rate_limited = Family::<AgentLabels, Counter>::default();
        registry.register("rate_limited", "Sub-agent calls refused by a rate limit", rate_limited.clone());
        let tokens = Family::<TokenLabels, Counter>::default();
        registry.register(
            "llm_tokens",
            "LLM tokens by direction (input, output), from the gen_ai.usage span attributes",
            tokens.clone(),
        );
        for direction in ["input", "output"] {
            // Present from the start, so a dashboard shows 0 rather than no data.
            tokens.get_or_create(&TokenLabels { direction: direction.into() }).inc_by(0);
        }
        Self {
            registry: root,
            requests,
            latency,
            in_flight,
            runs,
            agent_calls,
            denials,
            rate_limited,
            tokens,
        }
    }

    /// Counts a finished request.
    pub(crate) fn request(&self, route: &str, method: &str, status: u16, latency: Duration) {
        self.requests
            .get_or_create(&RequestLabels { route: route.to_string(), method: method.to_string(), status })
            .inc();
        self.latency.get_or_create(&RouteLabels { route: route.to_string() }).observe(latency.as_secs_f64());
    }

    /// The in-flight gauge, incremented now and decremented when the guard drops.
    pub(crate) fn in_flight(&self) -> InFlight {
        self.in_flight.inc();
        InFlight(self.in_flight.clone())
    }

    /// Counts a run's outcome and each of its sub-agent calls.
    pub(crate) fn run(&self, response: &RunResponse) {
        self.runs.get_or_create(&StatusLabels { status: response.status.as_str().to_string() }).inc();
        for step in &response.steps {
            self.agent_calls
                .get_or_create(&AgentCallLabels {
                    agent: step.agent.clone(),
                    status: step.status.to_string(),
                })
                .inc();
            if step.status == "denied" {
                self.denials.get_or_create(&AgentLabels { agent: step.agent.clone() }).inc();
            }
            if step.error_status == Some(429) {
                self.rate_limited.get_or_create(&AgentLabels { agent: step.agent.clone() }).inc();
            }
        }
    }

    /// Adds a run's LLM token counts.
    pub(crate) fn tokens(&self, usage: &Usage) {
        for (direction, count) in [("input", usage.prompt_tokens), ("output", usage.completion_tokens)] {
            self.tokens.get_or_create(&TokenLabels { direction: direction.into() }).inc_by(count);
        }
    }

    /// The exposition text.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// Decrements the in-flight gauge when dropped, however the request ends.
pub(crate) struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The Prometheus text format 0.0.4 of an OpenMetrics exposition. The two differ where
/// `promtool` and older scrapers notice: an OpenMetrics counter family is named without `_total`
/// while its samples carry it (Prometheus text wants the `HELP`/`TYPE` name to be the sample's),
/// and OpenMetrics has `# UNIT` lines and a closing `# EOF` that the older format lacks.
fn to_prometheus_text(openmetrics: &str) -> String {
    let mut counters = std::collections::HashSet::new();
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ")
            && let Some((name, "counter")) = rest.split_once(' ')
        {
            counters.insert(name.to_string());
        }
    }
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let meta =
            ["# HELP ", "# TYPE "].into_iter().find_map(|p| line.strip_prefix(p).map(|rest| (p, rest)));
        match meta {
            Some((prefix, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                let renamed = if counters.contains(name) && !name.ends_with("_total") {
                    format!("{name}_total")
                } else {
                    name.to_string()
                };
                out.push_str(prefix);
                out.push_str(&renamed);
                if !tail.is_empty() {
                    out.push(' ');
                    out.push_str(tail);
                }
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// Whether the client asked for OpenMetrics.
fn wants_openmetrics(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.to_ascii_lowercase().contains("application/openmetrics-text"))
}

/// `GET /metrics`, in the format the `Accept` header asks for.
pub(crate) async fn handler(State(state): State<AppState>, headers: HeaderMap) -> Response {
    match state.metrics.encode() {
        Ok(text) if wants_openmetrics(&headers) => {
            ([(header::CONTENT_TYPE, OPENMETRICS)], text).into_response()
        }
        Ok(text) => ([(header::CONTENT_TYPE, PROMETHEUS_TEXT)], to_prometheus_text(&text)).into_response(),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "metrics could not be encoded").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_text_names_counters_by_their_samples_and_drops_openmetrics_only_lines() {
        let metrics = Metrics::new();
        metrics.request("/x", "GET", 200, Duration::from_millis(3));
        let open = metrics.encode().unwrap();
        assert!(open.contains("# TYPE switchboard_http_requests counter"), "{open}");
        assert!(open.ends_with("# EOF\n"), "{open}");
        let text = to_prometheus_text(&open);
        assert!(text.contains("# HELP switchboard_http_requests_total HTTP requests"), "{text}");
        assert!(text.contains("# TYPE switchboard_http_requests_total counter"), "{text}");
        assert!(
            text.contains("switchboard_http_requests_total{route=\"/x\",method=\"GET\",status=\"200\"} 1")
        );
        assert!(text.contains("# TYPE switchboard_http_request_duration_seconds histogram"), "{text}");
        assert!(!text.contains("# EOF") && !text.contains("# UNIT"), "{text}");
    }
}
