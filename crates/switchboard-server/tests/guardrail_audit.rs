//! An agent's own output guardrail withholding its answer leaves an audit row `blocked` that
//! names the category and the kind found, never the personal information itself: a supervisor
//! built through the library over the real hop pipeline and the demo's SQLite store, served over
//! HTTP.

mod common;

use async_trait::async_trait;
use common::{Server, parts, post};
use serde_json::json;
use std::sync::Arc;
use switchboard_core::{
    Agent, AgentInput, AgentKind, AgentOutput, AgentSpec, AuditDecision, GuardrailConfig, Message, PiiAction,
    Result, RouteDecision, RoutedCall, Router, RunContext, TelemetrySink,
};
use switchboard_govern::{Gateway, layers};
use switchboard_runtime::{RunGuards, Supervisor};

/// A card number that passes the Luhn check.
const CARD: &str = "4111 1111 1111 1111";

/// Answers with a customer's card number.
struct Leaky {
    spec: AgentSpec,
}

#[async_trait]
impl Agent for Leaky {
    fn spec(&self) -> &AgentSpec {
        &self.spec
    }
    async fn invoke(&self, _ctx: &RunContext, _input: &AgentInput) -> Result<AgentOutput> {
        Ok(AgentOutput { text: format!("The card on file is {CARD}."), ..Default::default() })
    }
}

/// Sends every question to `billing`.
struct ToBilling;

#[async_trait]
impl Router for ToBilling {
    async fn route(&self, _ctx: &RunContext, question: &str, _history: &[Message]) -> Result<RouteDecision> {
        let call = RoutedCall::new("billing", question, 1.0);
        Ok(RouteDecision::Agents { calls: vec![call] })
    }
}

#[tokio::test]
async fn an_agents_output_block_is_audited_as_blocked_naming_the_category() {
    let (mut runtime, dir) = common::demo_runtime(|_| {}).await;
    let store = runtime.store.clone();
    let sink: Arc<dyn TelemetrySink> = store.clone();
    let gateway =
        Arc::new(Gateway::builder(sink.clone(), Arc::new(layers::StandardCredentials::new("sp"))).build());
    let mut billing = AgentSpec::new("billing", AgentKind::Tool, "Billing questions.");
    let mut guardrails = GuardrailConfig::default();
    guardrails.pii.output = PiiAction::Block;
    billing.guardrails = Some(guardrails);
    let guards = RunGuards::new(&GuardrailConfig::default(), &[Arc::new(billing.clone())]).expect("guards");
    let name = runtime.supervisor.name().to_string();
    runtime.supervisor = Arc::new(
        Supervisor::new(
            Arc::new(AgentSpec::new(name, AgentKind::Supervisor, "The supervisor.")),
            vec![Arc::new(Leaky { spec: billing })],
            Arc::new(ToBilling),
            gateway,
            sink,
            store,
            None,
        )
        .with_guardrails(guards),
    );
    let server = Server::start(runtime, Some(dir)).await;

    let ask = json!({"messages": [{"role": "user", "content": "which card do I pay with?"}]});
    let (status, request_id, body) =
        parts(post(&server, "/v1/chat/completions", Some("carol@example.com"), ask).await).await;
    assert_eq!(status, 200, "a safe refusal, not a failed request: {body}");
    let answer = body["choices"][0]["message"]["content"].as_str().unwrap_or_default();
    assert!(answer.contains("withheld by a guardrail"), "{answer}");
    assert!(!answer.contains("4111"), "{answer}");

    server.runtime.store.flush().await;
    let rows = server.runtime.store.audit_for_request(&request_id).await.expect("audit rows");
    let row = rows.iter().find(|r| r.agent == "billing").unwrap_or_else(|| panic!("{rows:?}"));
    assert_eq!(row.decision, AuditDecision::Blocked, "{row:?}");
    assert_eq!(row.error_code.as_deref(), Some("blocked"), "{row:?}");
    let reason = row.reason.as_deref().unwrap_or_default();
    assert!(reason.contains("output guardrail: pii (card_number)"), "{reason}");
    let text = serde_json::to_string(&rows).expect("rows as JSON");
    assert!(!text.contains("4111") && !text.contains("1111 1111"), "no PII in the audit trail: {text}");
    server.stop().await;
}
