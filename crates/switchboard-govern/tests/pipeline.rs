//! The hop pipeline end to end: policy, the three credential modes, spans and audit rows,
//! nesting, timeouts, cancellation and the hop budget.

use std::sync::Arc;
use std::time::Duration;
use switchboard_core::{
    AgentKind, AgentSpec, AuditDecision, AuthMethod, Caller, CredentialMode, CredentialSpec, ErrorKind,
    HopKind, PrincipalKind, RunContext, SecretRef, SpanStatus,
};
use switchboard_govern::{Gateway, HopTarget, layers::StandardCredentials};
use switchboard_store::MemorySink;

fn spec(name: &str, mode: CredentialMode, roles: Option<&[&str]>) -> Arc<AgentSpec> {
    Arc::new(AgentSpec {
        name: name.into(),
        kind: AgentKind::Tool,
        description: "test agent".into(),
        examples: vec![],
        credential: CredentialSpec { mode, ..Default::default() },
        allowed_roles: roles.map(|r| r.iter().map(|s| s.to_string()).collect()),
        timeout_ms: None,
        connection: None,
        settings: serde_json::Value::Null,
        tool_roles: None,
        guardrails: None,
    })
}

fn caller(email: &str, role: &str) -> Caller {
    Caller::new(email, email, vec![role.into()], AuthMethod::Development)
        .with_scopes(vec!["sql".into()])
        .with_token(switchboard_core::Secret::new(format!("tok-{email}")))
}

fn gateway() -> (Arc<Gateway>, Arc<MemorySink>) {
    let sink = Arc::new(MemorySink::default());
    let gw = Gateway::builder(sink.clone(), Arc::new(StandardCredentials::new("switchboard-sp"))).build();
    (Arc::new(gw), sink)
}

fn ctx(c: Caller) -> RunContext {
    RunContext::new(c, Duration::from_secs(10))
}

#[tokio::test]
async fn allowed_hop_runs_once_and_leaves_a_span_and_an_audit_row() {
    let (gw, sink) = gateway();
    let agent = spec("sales", CredentialMode::Obo, Some(&["west_sales"]));
    let ctx = ctx(caller("alice@example.com", "west_sales"));
    let principal = gw
        .hop(&ctx, &agent, HopTarget::new(HopKind::Agent, "sales"), |grant| async move {
            Ok(grant.principal().clone())
        })
        .await
        .expect("allowed");
    assert_eq!(principal.kind, PrincipalKind::User);
    assert_eq!(principal.name, "alice@example.com");

    let audit = sink.audit();
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].decision, AuditDecision::Allowed);
    assert_eq!(audit[0].caller_email, "alice@example.com");
    assert_eq!(audit[0].caller_roles, "west_sales");
    assert_eq!(audit[0].principal, "alice@example.com");
    let spans = sink.spans();
    assert_eq!(spans.len(), 1);
    assert_eq!(spans[0].name, "invoke_agent sales");
    assert_eq!(spans[0].request_id, ctx.request_id.as_str());
    assert_eq!(spans[0].span_id, audit[0].span_id, "span and audit row share the span id");
    assert_eq!(spans[0].attributes["switchboard.caller.role"], "west_sales");
}

#[tokio::test]
async fn policy_denies_before_the_call_and_audits_the_denial() {
    let (gw, sink) = gateway();
    let agent = spec("audit", CredentialMode::Automatic, Some(&["executive", "admin"]));
    let ctx = ctx(caller("bob@example.com", "east_sales"));
    let ran = std::sync::atomic::AtomicBool::new(false);
    let err = gw
        .hop(&ctx, &agent, HopTarget::new(HopKind::Agent, "audit"), |_| async {
            ran.store(true, std::sync::atomic::Ordering::SeqCst);
            Ok(())
        })
        .await
        .expect_err("bob may not use audit");
    assert_eq!(err.kind, ErrorKind::Denied);
    assert!(err.message.contains("may not use agent `audit`"), "{}", err.message);
    assert!(!ran.load(std::sync::atomic::Ordering::SeqCst), "a denied hop never runs its call");
    let audit = sink.audit();
    assert_eq!(audit[0].decision, AuditDecision::AccessDenied);
    assert_eq!(audit[0].caller_email, "bob@example.com");
    assert_eq!(sink.spans()[0].status, SpanStatus::Error);
}

#[tokio::test]
async fn obo_hop_needs_the_declared_scopes() {
    let (gw, sink) = gateway();
    let mut s = (*spec("genie", CredentialMode::Obo, None)).clone();
    s.credential.scopes = vec!["sql".into(), "genie".into()];
    let agent = Arc::new(s);
    let err = gw
        .hop(
            &ctx(caller("alice@example.com", "west_sales")),
            &agent,
            HopTarget::new(HopKind::Sql, "deals"),
            |_| async { Ok(()) },
        )
        .await
        .expect_err("the caller lacks `genie`");
    assert_eq!(err.kind.http_status(), 403);
    assert_eq!(err.message, "required scopes: genie");
    assert_eq!(sink.audit()[0].decision, AuditDecision::AccessDenied);
}

#[tokio::test]
async fn automatic_and_manual_modes_present_their_own_identity() {
    let (gw, sink) = gateway();
    let c = ctx(caller("alice@example.com", "west_sales"));
    let auto = gw
        .hop(
            &c,
            &spec("a", CredentialMode::Automatic, None),
            HopTarget::new(HopKind::Sql, "t"),
            |g| async move { Ok(g.principal().clone()) },
        )
        .await
        .expect("automatic");
    assert_eq!((auto.kind, auto.name.as_str()), (PrincipalKind::ServicePrincipal, "switchboard-sp"));

    let var = "SWITCHBOARD_TEST_MANUAL_SECRET";
    // SAFETY: this test binary sets this variable only here, before any thread reads it.
    unsafe { std::env::set_var(var, "manual-secret-one") };
    let mut m = (*spec("m", CredentialMode::Manual, None)).clone();
    m.credential.secret = Some(SecretRef::Env(var.into()));
    let manual = Arc::new(m);
    let read = |gw: Arc<Gateway>| {
        let manual = manual.clone();
        let c = c.clone();
        async move {
            gw.hop(&c, &manual, HopTarget::new(HopKind::Http, "x"), |g| async move {
                Ok(g.credential().token.as_ref().map(|t| t.expose().to_string()))
            })
            .await
            .expect("manual")
        }
    };
    assert_eq!(read(gw.clone()).await.as_deref(), Some("manual-secret-one"));
    // SAFETY: as above; rotation must be picked up without a restart.
    unsafe { std::env::set_var(var, "manual-secret-two") };
    assert_eq!(read(gw.clone()).await.as_deref(), Some("manual-secret-two"));

    let dump = format!("{:?}{:?}", sink.spans(), sink.audit());
    assert!(!dump.contains("manual-secret"), "secrets never reach spans or audit rows");
    assert!(!dump.contains("tok-alice"), "the caller's token never reaches spans or audit rows");
}

#[tokio::test]
async fn nested_hops_nest_their_spans() {
    let (gw, sink) = gateway();
    let agent = spec("sales", CredentialMode::Obo, None);
    let c = ctx(caller("carol@example.com", "managers"));
    let inner_agent = agent.clone();
    let gw2 = gw.clone();
    gw.hop(&c, &agent, HopTarget::new(HopKind::Agent, "sales"), |grant| {
        let gw2 = gw2.clone();
        let inner_agent = inner_agent.clone();
        async move {
            gw2.hop(grant.ctx(), &inner_agent, HopTarget::new(HopKind::Sql, "deals"), |_| async { Ok(()) })
                .await
        }
    })
    .await
    .expect("both hops allowed");
    let spans = sink.spans();
    let outer = spans.iter().find(|s| s.name == "invoke_agent sales").expect("outer span");
    let inner = spans.iter().find(|s| s.name == "execute_tool deals").expect("inner span");
    assert_eq!(inner.parent_id.as_deref(), Some(outer.span_id.as_str()));
    assert_eq!(inner.trace_id, outer.trace_id);
    assert_eq!(sink.audit().len(), 2, "one audit row per hop");
}

#[tokio::test]
async fn agent_timeout_and_cancellation_stop_the_call() {
    let (gw, sink) = gateway();
    let mut s = (*spec("slow", CredentialMode::Automatic, None)).clone();
    s.timeout_ms = Some(50);
    let slow = Arc::new(s);
    let c = ctx(caller("carol@example.com", "managers"));
    let err = gw
        .hop(&c, &slow, HopTarget::new(HopKind::Agent, "slow"), |_| async {
            tokio::time::sleep(Duration::from_secs(30)).await;
            Ok(())
        })
        .await
        .expect_err("times out");
    assert_eq!(err.kind, ErrorKind::Timeout);
    assert!(err.message.contains("timed out after 50 ms"), "{}", err.message);
    assert_eq!(sink.audit()[0].decision, AuditDecision::Error);

    let c2 = ctx(caller("carol@example.com", "managers"));
    let cancel = c2.cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(20)).await;
        cancel.cancel();
    });
    let unbounded = spec("unbounded", CredentialMode::Automatic, None);
    let err = gw
        .hop(&c2, &unbounded, HopTarget::new(HopKind::Agent, "unbounded"), |_| async {
            tokio::time::sleep(Duration::from_secs(30)).await;
            Ok(())
        })
        .await
        .expect_err("cancelled");
    assert_eq!(err.kind, ErrorKind::Cancelled);
}

#[tokio::test]
async fn the_hop_budget_caps_a_request() {
    let (gw, _sink) = gateway();
    let agent = spec("t", CredentialMode::Automatic, None);
    let mut c = ctx(caller("carol@example.com", "managers"));
    c.max_hops = 2;
    for _ in 0..2 {
        gw.hop(&c, &agent, HopTarget::new(HopKind::Tool, "t"), |_| async { Ok(()) })
            .await
            .expect("within budget");
    }
    let err =
        gw.hop(&c, &agent, HopTarget::new(HopKind::Tool, "t"), |_| async { Ok(()) }).await.expect_err("over");
    assert!(err.message.contains("hop budget of 2"), "{}", err.message);
}

/// One exchange request: the subject token, the audience and the scopes.
type Exchange = (String, Option<String>, Vec<String>);

/// Records what it was asked and answers with a token naming the audience and scopes.
struct RecordingExchanger(std::sync::Mutex<Vec<Exchange>>);

#[async_trait::async_trait]
impl switchboard_govern::layers::TokenExchanger for RecordingExchanger {
    async fn exchange(
        &self,
        subject_token: &switchboard_core::Secret,
        audience: Option<&str>,
        scopes: &[String],
    ) -> switchboard_core::Result<switchboard_core::Secret> {
        self.0.lock().expect("lock").push((
            subject_token.expose().to_string(),
            audience.map(str::to_string),
            scopes.to_vec(),
        ));
        Ok(switchboard_core::Secret::new(format!(
            "downscoped:{}:{}",
            audience.unwrap_or(""),
            scopes.join(" ")
        )))
    }
}

#[tokio::test]
async fn obo_hops_present_the_exchanged_token_when_an_exchanger_is_configured() {
    let exchanger = Arc::new(RecordingExchanger(std::sync::Mutex::default()));
    let credentials = StandardCredentials::new("switchboard-sp").with_exchanger(exchanger.clone());
    let gw = Gateway::builder(Arc::new(MemorySink::default()), Arc::new(credentials)).build();
    let mut s = (*spec("genie", CredentialMode::Obo, None)).clone();
    s.credential.scopes = vec!["sql".into()];
    s.credential.audience = Some("https://sql.example.com".into());
    let agent = Arc::new(s);
    let c = ctx(caller("alice@example.com", "west_sales"));
    let presented = gw
        .hop(&c, &agent, HopTarget::new(HopKind::Sql, "deals"), |g| async move {
            Ok(g.credential().token.as_ref().map(|t| t.expose().to_string()))
        })
        .await
        .expect("allowed");
    assert_eq!(presented.as_deref(), Some("downscoped:https://sql.example.com:sql"));
    let asked = exchanger.0.lock().expect("lock").clone();
    assert_eq!(
        asked,
        vec![(
            "tok-alice@example.com".to_string(),
            Some("https://sql.example.com".to_string()),
            vec!["sql".to_string()]
        )],
        "the caller's own token is exchanged for the agent's audience and scopes"
    );
}

/// A gateway with two connections: `partner` (the hop's own credential, granted to west_sales
/// and to the service principal, owned by carol) and `vault` (a bearer secret, granted to
/// nobody but its owner, frank).
fn connected_gateway() -> (Arc<Gateway>, Arc<MemorySink>, Arc<switchboard_govern::layers::StaticGrants>) {
    use switchboard_core::{ConnectionAuth, ConnectionSpec};
    let mut partner = ConnectionSpec::new("partner", "https://partner.example.com/api");
    partner.owner = Some("carol@example.com".into());
    let mut vault = ConnectionSpec::new("vault", "https://vault.example.com");
    vault.auth = ConnectionAuth::Bearer;
    vault.secret = Some(SecretRef::File(vault_secret_file().display().to_string()));
    vault.owner = Some("frank@example.com".into());
    let grants = Arc::new(switchboard_govern::layers::StaticGrants::default());
    grants.grant("partner", "west_sales");
    grants.grant("partner", "switchboard-sp");
    let connections = [partner, vault]
        .into_iter()
        .map(|spec| Arc::new(switchboard_govern::Connection::new(spec, None).expect("valid connection")));
    let sink = Arc::new(MemorySink::default());
    let gw = Gateway::builder(sink.clone(), Arc::new(StandardCredentials::new("switchboard-sp")))
        .connections(connections, grants.clone(), "switchboard-sp")
        .build();
    (Arc::new(gw), sink, grants)
}

/// The vault connection's secret, a file read at every use.
fn vault_secret_file() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("switchboard-pipeline-vault-{}", std::process::id()))
}

fn through(name: &str, mode: CredentialMode, connection: &str) -> Arc<AgentSpec> {
    let mut s = (*spec(name, mode, None)).clone();
    s.connection = Some(connection.into());
    Arc::new(s)
}

/// The token a hop through the connection presents, or the error.
async fn presented(
    gw: &Gateway,
    agent: &Arc<AgentSpec>,
    who: Caller,
) -> switchboard_core::Result<Option<String>> {
    gw.hop(&ctx(who), agent, HopTarget::new(HopKind::Http, "partner.example.com"), |g| async move {
        Ok(g.credential().token.as_ref().map(|t| t.expose().to_string()))
    })
    .await
}

#[tokio::test]
async fn use_connection_is_checked_for_the_principal_the_credential_mode_names() {
    let (gw, sink, grants) = connected_gateway();
    let obo = through("relay", CredentialMode::Obo, "partner");
    let auto = through("sync", CredentialMode::Automatic, "partner");

    // obo: the caller's groups decide; the caller's own token goes out.
    let token = presented(&gw, &obo, caller("alice@example.com", "west_sales")).await.expect("granted");
    assert_eq!(token.as_deref(), Some("tok-alice@example.com"));
    let e = presented(&gw, &obo, caller("bob@example.com", "east_sales")).await.expect_err("not granted");
    assert_eq!(e.kind, ErrorKind::Denied);
    assert!(e.message.contains("bob@example.com") && e.message.contains("`partner`"), "{}", e.message);
    let denied = sink.audit().into_iter().last().expect("a row");
    assert_eq!(denied.decision, AuditDecision::AccessDenied);
    assert_eq!(denied.principal, "", "denied before any credential was resolved");
    let span = sink.spans().into_iter().last().expect("a span");
    assert_eq!(span.attributes["switchboard.connection.grant"], "denied");
    // The owner always may.
    assert!(presented(&gw, &obo, caller("carol@example.com", "managers")).await.is_ok());

    // automatic: the service principal's grant decides, whoever the caller is.
    assert!(presented(&gw, &auto, caller("bob@example.com", "east_sales")).await.is_ok());
    grants.revoke("partner", "switchboard-sp");
    let e = presented(&gw, &auto, caller("alice@example.com", "west_sales")).await.expect_err("revoked");
    assert!(e.message.contains("service principal `switchboard-sp`"), "{}", e.message);
}

#[tokio::test]
async fn a_bearer_connection_presents_its_own_secret_and_egress_is_fenced() {
    let (gw, _, _) = connected_gateway();
    let agent = through("vaulted", CredentialMode::Obo, "vault");
    std::fs::write(vault_secret_file(), "vault-secret-1\n").expect("secret file");
    let token = presented(&gw, &agent, caller("frank@example.com", "admin")).await.expect("the owner may");
    assert_eq!(token.as_deref(), Some("vault-secret-1"), "the connection's secret, not the caller's token");

    let refused = gw
        .hop(
            &ctx(caller("frank@example.com", "admin")),
            &agent,
            HopTarget::new(HopKind::Http, "x"),
            |g| async move {
                g.request(switchboard_govern::reqwest::Method::GET, "https://elsewhere.example.net/steal")
                    .map(drop)
            },
        )
        .await
        .expect_err("a host the connection does not allow");
    assert_eq!(refused.kind, ErrorKind::Denied);
    assert!(
        refused.message.contains("`vault`") && refused.message.contains("elsewhere.example.net"),
        "{}",
        refused.message
    );
}

#[tokio::test]
async fn a_tool_matrix_denies_unlisted_tools_and_roles_before_any_credential() {
    let (gw, sink) = gateway();
    let mut s = (*spec("tickets", CredentialMode::Obo, None)).clone();
    s.credential.scopes = vec![];
    s.tool_roles = Some([("search_tickets".to_string(), vec!["west_sales".to_string()])].into());
    let agent = Arc::new(s);
    let call = |who: Caller, kind: HopKind, tool: &'static str| {
        let (gw, agent) = (gw.clone(), agent.clone());
        async move {
            gw.hop(&ctx(who), &agent, HopTarget::new(kind, tool), |grant| async move {
                Ok(grant.principal().name.clone())
            })
            .await
        }
    };
    let alice = || caller("alice@example.com", "west_sales");
    let bob = || caller("bob@example.com", "east_sales");

    // Listed, with the caller's role: allowed, and the call sees alice (obo).
    assert_eq!(call(alice(), HopKind::Mcp, "search_tickets").await.expect("allowed"), "alice@example.com");
    // Listing a server's tools is not a tool call.
    call(bob(), HopKind::Mcp, "tools/list").await.expect("listing is allowed");
    // Listed, without the role; and not listed at all: both denied, whoever asks.
    let err = call(bob(), HopKind::Mcp, "search_tickets").await.expect_err("bob lacks the role");
    assert!(err.message.contains("may not use tool `search_tickets` of agent `tickets`"), "{}", err.message);
    let err = call(alice(), HopKind::Mcp, "close_ticket").await.expect_err("unlisted tools are denied");
    assert_eq!(err.kind, ErrorKind::Denied);

    let audit = sink.audit();
    let decisions: Vec<(&str, AuditDecision, &str)> =
        audit.iter().map(|a| (a.target.as_str(), a.decision, a.principal.as_str())).collect();
    assert_eq!(
        decisions,
        [
            ("search_tickets", AuditDecision::Allowed, "alice@example.com"),
            ("tools/list", AuditDecision::Allowed, "bob@example.com"),
            // Denied before the credential layer: no principal was ever resolved.
            ("search_tickets", AuditDecision::AccessDenied, ""),
            ("close_ticket", AuditDecision::AccessDenied, ""),
        ]
    );
}
