//! Guardrails around real runs: the endpoint's on the caller's question and the final answer,
//! an agent's own on what it is sent and answers; masked or blocked as configured, with the
//! verdict on the span and in the audit log, and never the PII itself.

use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;
use switchboard::core::{
    AgentInput, AgentKind, AgentOutput, AgentSpec, AuditDecision, AuthMethod, GuardrailConfig, Message,
    PiiAction, PiiConfig, Result, RouteDecision, RoutedCall, Router, TopicConfig,
};
use switchboard::govern::{Gateway, layers::StandardCredentials};
use switchboard::router::LexicalRouter;
use switchboard::store::{SqliteStore, Store};
use switchboard::{Agent, Caller, RunContext, RunGuards, RunRequest, RunStatus, Runtime, Supervisor, demo};

const CARD: &str = "4111 1111 1111 1111";
/// One digit off: fails the Luhn check, so it is an ordinary number.
const NOT_A_CARD: &str = "4111 1111 1111 1112";
const SSN: &str = "123-45-6789";

fn pii(input: PiiAction, output: PiiAction) -> GuardrailConfig {
    GuardrailConfig { pii: PiiConfig { input, output, kinds: Vec::new() }, topics: TopicConfig::default() }
}

/// The built-in demo with `edit` applied to its configuration.
async fn demo_with(
    dir: &std::path::Path,
    edit: impl FnOnce(&mut switchboard::config::LoadedConfig),
) -> Runtime {
    demo::prepare(dir).expect("demo data");
    let mut loaded = Runtime::validate(&demo::source(dir)).expect("the demo is valid");
    edit(&mut loaded);
    Runtime::build(loaded).await.expect("the demo builds")
}

fn ask(q: &str) -> RunRequest {
    RunRequest { question: q.into(), ..Default::default() }
}

/// Everything the store kept about a request (spans and audit rows), as one string to search.
async fn kept(store: &Arc<dyn Store>, request_id: &str) -> String {
    store.flush().await;
    let spans = store.spans(request_id).await.expect("spans");
    let audit = store.audit_for_request(request_id).await.expect("audit");
    format!("{}\n{}", serde_json::to_string(&spans).unwrap(), serde_json::to_string(&audit).unwrap())
}

#[tokio::test]
async fn a_card_number_in_a_question_is_masked_everywhere_and_a_luhn_failure_is_left_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = demo_with(dir.path(), |c| c.config.guardrails = pii(PiiAction::Mask, PiiAction::None)).await;
    let carol = rt.dev_caller("carol@example.com").await.expect("carol");

    let r = rt
        .supervisor
        .run(&rt.context(carol.clone()), ask(&format!("total revenue by region; card {CARD}")))
        .await;
    assert_eq!(r.status, RunStatus::Ok, "{}", r.answer);
    assert!(r.agents.iter().any(|a| a == "sales"), "the masked question is still routed: {:?}", r.agents);
    let stored = kept(&rt.store, &r.request_id).await;
    assert!(!stored.contains(CARD) && !stored.contains("41111111"), "the card number was stored: {stored}");
    assert!(stored.contains("[REDACTED_CARD_NUMBER]"), "{stored}");
    let spans = rt.store.spans(&r.request_id).await.expect("spans");
    let root = spans.iter().find(|s| s.parent_id.is_none()).expect("root span");
    let verdict = &root.attributes["switchboard.guardrail.input"];
    assert!(
        verdict.to_string().contains("masked") && verdict.to_string().contains("card_number"),
        "{verdict}"
    );

    let r = rt
        .supervisor
        .run(&rt.context(carol), ask(&format!("total revenue by region; order {NOT_A_CARD}")))
        .await;
    let stored = kept(&rt.store, &r.request_id).await;
    assert!(stored.contains(NOT_A_CARD), "a number failing Luhn is not a card: {stored}");
    let spans = rt.store.spans(&r.request_id).await.expect("spans");
    let root = spans.iter().find(|s| s.parent_id.is_none()).expect("root span");
    assert!(root.attributes.get("switchboard.guardrail.input").is_none(), "{:?}", root.attributes);
}

#[tokio::test]
async fn an_ssn_in_a_question_is_blocked_before_routing_and_audited_without_the_number() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = demo_with(dir.path(), |c| c.config.guardrails = pii(PiiAction::Block, PiiAction::None)).await;
    let alice = rt.dev_caller("alice@example.com").await.expect("alice");
    let r = rt.supervisor.run(&rt.context(alice), ask(&format!("revenue by rep for employee {SSN}"))).await;
    assert_eq!(r.status, RunStatus::Blocked);
    assert!(r.answer.contains("ssn") && !r.answer.contains(SSN), "{}", r.answer);
    assert!(r.steps.is_empty() && r.route.is_none(), "nothing was routed or called");
    let stored = kept(&rt.store, &r.request_id).await;
    assert!(!stored.contains("6789"), "the SSN was stored: {stored}");
    let audit = rt.store.audit_for_request(&r.request_id).await.expect("audit");
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert_eq!(audit[0].decision, AuditDecision::Blocked);
    assert_eq!(audit[0].caller_email, "alice@example.com");
}

#[tokio::test]
async fn an_agents_own_output_guardrail_masks_emails_in_its_answer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = demo_with(dir.path(), |c| {
        let audit = c.agents.iter_mut().find(|a| a.name == "audit").expect("the demo's audit agent");
        Arc::make_mut(audit).guardrails = Some(pii(PiiAction::None, PiiAction::Mask));
    })
    .await;
    // Something for the audit log to show: alice's question.
    let alice = rt.dev_caller("alice@example.com").await.expect("alice");
    rt.supervisor.run(&rt.context(alice), ask("total revenue by region")).await;
    rt.store.flush().await;

    let frank = rt.dev_caller("frank@example.com").await.expect("frank");
    let r = rt.supervisor.run(&rt.context(frank), ask("show the audit log")).await;
    assert_eq!(
        (r.status, r.agents.as_slice()),
        (RunStatus::Ok, ["audit".to_string()].as_slice()),
        "{}",
        r.answer
    );
    assert!(r.answer.contains("[REDACTED_EMAIL]"), "{}", r.answer);
    assert!(!r.answer.contains("@example.com"), "{}", r.answer);
    assert!(r.steps[0].output.as_ref().is_some_and(|o| o.data.is_none()), "the unmasked rows were dropped");
    rt.store.flush().await;
    let spans = rt.store.spans(&r.request_id).await.expect("spans");
    let agent = spans.iter().find(|s| s.name == "invoke_agent audit").expect("the audit agent's span");
    assert!(
        agent.attributes["switchboard.guardrail.output"].to_string().contains("email"),
        "{:?}",
        agent.attributes
    );
}

#[tokio::test]
async fn a_blocked_topic_in_an_answer_is_withheld() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = demo_with(dir.path(), |c| {
        c.config.guardrails.topics.block = vec!["VP of Sales".into()];
    })
    .await;
    let carol = rt.dev_caller("carol@example.com").await.expect("carol");
    let r =
        rt.supervisor.run(&rt.context(carol), ask("who must approve a 25% discount on a 40000 deal?")).await;
    assert!(r.answer.starts_with("the answer was withheld by a guardrail"), "{}", r.answer);
    assert!(!r.answer.contains("approved by"), "{}", r.answer);
    rt.store.flush().await;
    let audit = rt.store.audit_for_request(&r.request_id).await.expect("audit");
    assert!(audit.iter().any(|a| a.decision == AuditDecision::Blocked), "{audit:?}");
}

/// Answers with what it was asked, so whatever reaches it comes back out.
struct Echo(AgentSpec);

#[async_trait]
impl Agent for Echo {
    fn spec(&self) -> &AgentSpec {
        &self.0
    }
    async fn invoke(&self, _ctx: &RunContext, input: &AgentInput) -> Result<AgentOutput> {
        Ok(AgentOutput { text: format!("on file: {}", input.question), ..Default::default() })
    }
}

async fn echo_supervisor(endpoint: GuardrailConfig) -> (Supervisor, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("s.db")).expect("store"));
    let gateway = Arc::new(Gateway::builder(store.clone(), Arc::new(StandardCredentials::new("sp"))).build());
    let records = AgentSpec::new("records", AgentKind::Tool, "Customer records on file.");
    let agents: Vec<Arc<dyn Agent>> = vec![Arc::new(Echo(records))];
    let specs: Vec<Arc<AgentSpec>> = agents.iter().map(|a| Arc::new(a.spec().clone())).collect();
    let router = Arc::new(LexicalRouter::new(&specs, 0.0));
    let me = Arc::new(AgentSpec::new("embedded", AgentKind::Supervisor, "An embedded supervisor."));
    let guards = RunGuards::new(&endpoint, &specs).expect("guardrails compile");
    let supervisor =
        Supervisor::new(me, agents, router, gateway, store.clone(), store, None).with_guardrails(guards);
    (supervisor, dir)
}

#[tokio::test]
async fn card_numbers_and_ssns_in_answers_are_masked_or_withheld_as_configured() {
    let caller = Caller::new("u", "u@example.com", vec!["staff".into()], AuthMethod::Development);
    let ctx = || RunContext::new(caller.clone(), Duration::from_secs(10));
    let question = format!("customer records on file for {SSN} with card {CARD}");

    let (masking, _dir) = echo_supervisor(pii(PiiAction::None, PiiAction::Mask)).await;
    let r = masking.run(&ctx(), ask(&question)).await;
    assert_eq!(r.status, RunStatus::Ok, "{}", r.answer);
    assert_eq!(
        r.answer,
        "on file: customer records on file for [REDACTED_SSN] with card [REDACTED_CARD_NUMBER]"
    );

    let (blocking, _dir) = echo_supervisor(pii(PiiAction::None, PiiAction::Block)).await;
    let r = blocking.run(&ctx(), ask(&question)).await;
    assert!(r.answer.starts_with("the answer was withheld by a guardrail"), "{}", r.answer);
    assert!(r.answer.contains("card_number") && r.answer.contains("ssn"), "{}", r.answer);
    assert!(!r.answer.contains("6789") && !r.answer.contains("1111"), "{}", r.answer);
}

/// Answers with the arguments it was handed, as a tool agent would send them on.
struct ArgumentsEcho(AgentSpec);

#[async_trait]
impl Agent for ArgumentsEcho {
    fn spec(&self) -> &AgentSpec {
        &self.0
    }
    async fn invoke(&self, _ctx: &RunContext, input: &AgentInput) -> Result<AgentOutput> {
        let arguments = match &input.arguments {
            Some(a) => serde_json::Value::Object(a.clone()).to_string(),
            None => "none".into(),
        };
        Ok(AgentOutput { text: format!("{}; arguments {arguments}", input.question), ..Default::default() })
    }
}

/// A routing model that read the caller's whole question, card number included, into the
/// arguments it proposed for `records`.
struct ProposesTheCard;

#[async_trait]
impl Router for ProposesTheCard {
    async fn route(&self, _ctx: &RunContext, question: &str, _history: &[Message]) -> Result<RouteDecision> {
        let arguments = serde_json::json!({"card": CARD}).as_object().cloned();
        Ok(RouteDecision::Agents {
            calls: vec![RoutedCall { arguments, ..RoutedCall::new("records", question, 1.0) }],
        })
    }
}

/// An agent's own input guardrail masks what the agent is sent; arguments the router proposed
/// from the unmasked question are dropped with it, so the agent asks for them from the masked
/// question instead of receiving the card number.
#[tokio::test]
async fn arguments_proposed_from_an_unmasked_question_do_not_pass_an_agents_input_mask() {
    let caller = Caller::new("u", "u@example.com", vec!["staff".into()], AuthMethod::Development);
    let question = format!("charge card {CARD}");
    for (guardrail, expected) in [
        (None, format!("{question}; arguments {{\"card\":\"{CARD}\"}}")),
        (
            Some(pii(PiiAction::Mask, PiiAction::None)),
            "charge card [REDACTED_CARD_NUMBER]; arguments none".to_string(),
        ),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("s.db")).expect("store"));
        let gateway =
            Arc::new(Gateway::builder(store.clone(), Arc::new(StandardCredentials::new("sp"))).build());
        let mut records = AgentSpec::new("records", AgentKind::Tool, "Customer records on file.");
        records.guardrails = guardrail;
        let specs = vec![Arc::new(records.clone())];
        let agents: Vec<Arc<dyn Agent>> = vec![Arc::new(ArgumentsEcho(records))];
        let me = Arc::new(AgentSpec::new("embedded", AgentKind::Supervisor, "An embedded supervisor."));
        let guards = RunGuards::new(&GuardrailConfig::default(), &specs).expect("guardrails compile");
        let supervisor =
            Supervisor::new(me, agents, Arc::new(ProposesTheCard), gateway, store.clone(), store, None)
                .with_guardrails(guards);
        let r =
            supervisor.run(&RunContext::new(caller.clone(), Duration::from_secs(10)), ask(&question)).await;
        assert_eq!((r.status, r.answer), (RunStatus::Ok, expected));
    }
}
