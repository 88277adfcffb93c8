//! Embedding Switchboard as a library: a supervisor built in code, with one custom agent that
//! calls one native tool.
//!
//! ```sh
//! cargo run -p embed-example -- "How much to ship a 3 kg parcel to zone 2?"
//! ```
//!
//! The agent never calls its tool directly: it goes through its [`Egress`], so the call is a
//! governed hop (authorized, audited, timed) and shows up as its own `execute_tool` span under the
//! agent's `invoke_agent` span. The program prints the answer, then the request's spans.

use async_trait::async_trait;
use serde_json::json;
use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use switchboard::core::{AgentInput, AgentKind, AgentOutput, AuthMethod, HopKind, Result, SpanRecord};
use switchboard::govern::{Egress, Gateway, HopTarget, layers::StandardCredentials};
use switchboard::router::LexicalRouter;
use switchboard::store::{SqliteStore, Store};
use switchboard::{Agent, AgentSpec, Caller, Error, RunContext, RunRequest, RunStatus, Supervisor};

const DEFAULT_QUESTION: &str = "How much to ship a 3 kg parcel to zone 2?";

/// The native tool: plain Rust, priced per zone as (base fee, fee per kg).
fn shipping_rate(kg: f64, zone: u32) -> Option<f64> {
    let (base, per_kg) = match zone {
        1 => (4.0, 1.5),
        2 => (6.5, 2.25),
        3 => (9.0, 3.5),
        _ => return None,
    };
    Some(base + per_kg * kg)
}

/// A custom sub-agent: reads the weight and zone from the question and prices the parcel.
struct ShippingAgent {
    spec: AgentSpec,
    /// Its only way out: every call it makes becomes a hop of the supervisor's gateway.
    egress: Egress,
}

#[async_trait]
impl Agent for ShippingAgent {
    fn spec(&self) -> &AgentSpec {
        &self.spec
    }

    async fn invoke(&self, ctx: &RunContext, input: &AgentInput) -> Result<AgentOutput> {
        let (kg, zone) = parse_parcel(&input.question)
            .ok_or_else(|| Error::invalid("say the weight in kg and the zone, e.g. `3 kg to zone 2`"))?;
        let target = HopTarget::new(HopKind::Tool, "shipping_rate");
        let price = self
            .egress
            .hop(ctx, target, |grant| async move {
                grant.record("shipping.kg", kg);
                grant.record("shipping.zone", zone);
                shipping_rate(kg, zone).ok_or_else(|| Error::invalid(format!("there is no zone {zone}")))
            })
            .await?;
        Ok(AgentOutput {
            text: format!("Shipping {kg} kg to zone {zone} costs ${price:.2}."),
            data: Some(json!({ "kg": kg, "zone": zone, "price": price })),
            ..Default::default()
        })
    }
}

/// The first number before `kg`, and the number after `zone`.
fn parse_parcel(question: &str) -> Option<(f64, u32)> {
    let words: Vec<String> = question
        .split(|c: char| c.is_whitespace() || c == '?' || c == ',')
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect();
    let kg = words.iter().enumerate().find_map(|(i, w)| {
        let number = w.strip_suffix("kg").filter(|n| !n.is_empty()).unwrap_or(w);
        let unit_follows = w.ends_with("kg") || words.get(i + 1).is_some_and(|next| next == "kg");
        number.parse::<f64>().ok().filter(|kg| unit_follows && *kg > 0.0)
    })?;
    let zone = words.windows(2).find(|pair| pair[0] == "zone").and_then(|pair| pair[1].parse().ok())?;
    Some((kg, zone))
}

fn spec(name: &str, description: &str, examples: &[&str]) -> AgentSpec {
    AgentSpec {
        examples: examples.iter().map(|e| e.to_string()).collect(),
        // Policy, not the agent, decides who may reach it. Credentials stay `automatic`: hops
        // run as the service principal named below, not as the caller.
        allowed_roles: Some(vec!["logistics".into()]),
        timeout_ms: Some(2_000),
        ..AgentSpec::new(name, AgentKind::Tool, description)
    }
}

async fn run(question: &str) -> Result<RunStatus> {
    // SQLite keeps the audit rows and spans (and conversation threads, unused here); a throwaway
    // file keeps the example self-contained.
    let dir = std::env::temp_dir().join(format!("switchboard-embed-{}", std::process::id()));
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.join("switchboard.db"))?);
    let credentials = Arc::new(StandardCredentials::new("embed-example"));
    let gateway = Arc::new(Gateway::builder(store.clone(), credentials).build());

    let shipping = spec(
        "shipping",
        "Shipping cost of a parcel by weight in kg and delivery zone.",
        &["How much to ship a 2 kg parcel to zone 1?", "shipping price for 10 kg to zone 3"],
    );
    let agent = ShippingAgent { egress: gateway.egress(Arc::new(shipping.clone())), spec: shipping.clone() };
    let agents: Vec<Arc<dyn Agent>> = vec![Arc::new(agent)];
    let router = Arc::new(LexicalRouter::new(&[Arc::new(shipping)], LexicalRouter::DEFAULT_THRESHOLD));
    let me = Arc::new(spec("embedded", "A supervisor built in code.", &[]));
    let supervisor = Supervisor::new(me, agents, router, gateway, store.clone(), store.clone(), None);

    // Identity is data: the embedder establishes the caller and passes it in.
    let caller = Caller::new("u-7", "ada@example.com", vec!["logistics".into()], AuthMethod::Jwt);
    let ctx = RunContext::new(caller, Duration::from_secs(10));
    let response = supervisor.run(&ctx, RunRequest { question: question.into(), ..Default::default() }).await;

    println!("{}", response.answer);
    println!();
    println!("request {} · status {}", response.request_id, response.status.as_str());
    // Spans are written off the request path; flush before reading them back.
    store.flush().await;
    print_spans(&store.spans(&response.request_id).await?);
    // The last handle to the store closes the database; then its directory can go. Best effort:
    // a leftover temp file is harmless.
    drop((supervisor, store));
    let _ = std::fs::remove_dir_all(&dir);
    Ok(response.status)
}

/// Prints the spans as a tree, children under their parent, in start order.
fn print_spans(spans: &[SpanRecord]) {
    let parents: HashMap<&str, Option<&str>> =
        spans.iter().map(|s| (s.span_id.as_str(), s.parent_id.as_deref())).collect();
    for span in spans {
        let mut depth = 0;
        let mut parent = span.parent_id.as_deref();
        while let Some(id) = parent {
            depth += 1;
            parent = parents.get(id).copied().flatten();
        }
        let ms = span.end_unix_nano.saturating_sub(span.start_unix_nano) as f64 / 1e6;
        let status = span.status_message.as_deref().unwrap_or("ok");
        println!("{}{} [{}] {ms:.1} ms {status}", "  ".repeat(depth), span.name, span.kind.as_str());
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let question = std::env::args().nth(1).unwrap_or_else(|| DEFAULT_QUESTION.to_string());
    match run(&question).await {
        // A clarifying question is an answer too, as in `switchboard chat`.
        Ok(RunStatus::Ok | RunStatus::Clarify) => ExitCode::SUCCESS,
        Ok(status) => {
            eprintln!("embed-example: the run ended with status {}", status.as_str());
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("embed-example: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weight_and_zone_are_read_from_the_question() {
        assert_eq!(parse_parcel("How much to ship a 3 kg parcel to zone 2?"), Some((3.0, 2)));
        assert_eq!(parse_parcel("price for 2.5kg, zone 1"), Some((2.5, 1)));
        assert_eq!(parse_parcel("ship it to zone 2"), None);
        assert_eq!(shipping_rate(3.0, 2), Some(13.25));
        assert_eq!(shipping_rate(3.0, 9), None);
    }
}
