//! The `genie` kind on `engine = "databricks"` against the testkit's local Genie Conversation
//! API: status polling, answers, clarification and follow-ups in the same conversation, expired
//! results, several query attachments, 429s, failures, timeouts, malformed replies, cancellation,
//! whose token Genie receives (obo and automatic), and the per-space POST pace.

use async_trait::async_trait;
use serde_json::{Value, json};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use switchboard_agents::genie;
use switchboard_core::{
    Agent, AgentInput, AgentKind, AgentOutput, AgentSpec, AuditRecord, AuthMethod, Caller, ConnectionSpec,
    CredentialMode, CredentialSpec, ErrorKind, Message, Result, RunContext, Secret, SpanRecord,
    TelemetrySink,
};
use switchboard_govern::layers::{StandardCredentials, StaticGrants, TokenSource};
use switchboard_govern::{Connection, Gateway};
use switchboard_testkit::genie::{Ask, Attachment, GenieServer, Reply, query};

const ALICE_TOKEN: &str = "alice-databricks-token-0123456789";
const BOB_TOKEN: &str = "bob-databricks-token-9876543210";
const SP_TOKEN: &str = "service-principal-token-abcdef";

#[derive(Default)]
struct Recorder {
    spans: Mutex<Vec<SpanRecord>>,
    audit: Mutex<Vec<AuditRecord>>,
}

impl TelemetrySink for Recorder {
    fn span(&self, span: SpanRecord) {
        self.spans.lock().unwrap().push(span);
    }
    fn audit(&self, record: AuditRecord) {
        self.audit.lock().unwrap().push(record);
    }
}

struct ServicePrincipal;

#[async_trait]
impl TokenSource for ServicePrincipal {
    async fn token(&self) -> Result<Secret> {
        Ok(Secret::new(SP_TOKEN))
    }
}

/// Deals as Genie would return them for the asker: Genie applies each person's row filters, so
/// the local Genie answers per token.
fn deals_for(authorization: &str) -> Vec<Vec<Value>> {
    let all = vec![
        vec![json!("West"), json!(1200), json!(0.31)],
        vec![json!("East"), json!(900), json!(0.22)],
        vec![json!("Central"), json!(400), Value::Null],
    ];
    match authorization.trim_start_matches("Bearer ") {
        ALICE_TOKEN => all.into_iter().filter(|r| r[0] == "West").collect(),
        BOB_TOKEN => all.into_iter().filter(|r| r[0] == "East").collect(),
        _ => all,
    }
}

const DEALS_SQL: &str =
    "SELECT region, SUM(amount) AS amount, AVG(margin_pct) AS margin FROM main.sales.deals GROUP BY region";

/// The local Genie's answers, by question.
fn responder(ask: &Ask) -> Reply {
    let q = ask.content.to_lowercase();
    let deals = || Reply::table(DEALS_SQL, &["region", "amount", "margin"], deals_for(&ask.authorization));
    if q.contains("echo") {
        Reply::failed("INTERNAL_ERROR", &format!("could not use credential {}", ask.authorization))
    } else if q.contains("slowly") {
        Reply::never_finishes()
    } else if q.contains("garbled") {
        deals().malformed()
    } else if q.contains("broken") {
        Reply::failed("SQL_EXECUTION_EXCEPTION", "Table main.sales.dealz does not exist")
    } else if q.contains("old result") {
        deals().expired()
    } else if q.contains("self-correct") {
        Reply::new(vec![
            Attachment::Text("Reading deals.".into()),
            query("First try", "SELECT nonsense", &["x"], vec![vec![json!(1)]]),
            Attachment::Text("That column does not exist; retrying.".into()),
            query(
                "Deals by region",
                DEALS_SQL,
                &["region", "amount", "margin"],
                deals_for(&ask.authorization),
            ),
        ])
    } else if q.contains("many rows") {
        let rows = (0..120).map(|i| vec![json!(format!("deal-{i}")), json!(i)]).collect();
        Reply::table("SELECT name, amount FROM main.sales.deals", &["name", "amount"], rows)
    } else if q.contains("best quarter") {
        Reply::clarify("Do you mean the best quarter by revenue or by number of deals?")
    } else if q.contains("revenue") && ask.follow_up {
        Reply::table(
            "SELECT quarter, SUM(amount) FROM main.sales.deals GROUP BY quarter ORDER BY 2 DESC LIMIT 1",
            &["quarter", "revenue"],
            vec![vec![json!("Q3"), json!(4200)]],
        )
    } else {
        deals().statuses(&[
            "SUBMITTED",
            "FETCHING_METADATA",
            "FILTERING_CONTEXT",
            "ASKING_AI",
            "SOME_FUTURE_STATUS",
            "PENDING_WAREHOUSE",
            "EXECUTING_QUERY",
        ])
    }
}

/// Runs every future at once on the runtime and collects the results in order.
async fn join_all<T: Send + 'static>(
    futures: impl Iterator<Item = impl std::future::Future<Output = T> + Send + 'static>,
) -> Vec<T> {
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

struct Setup {
    genie: GenieServer,
    gateway: Arc<Gateway>,
    sink: Arc<Recorder>,
}

async fn setup() -> Setup {
    let genie = GenieServer::start(responder).await;
    let mut spec = ConnectionSpec::new("databricks", genie.url.clone());
    spec.allow_insecure_loopback = true;
    let connection = Arc::new(Connection::new(spec, None).unwrap());
    let grants = Arc::new(StaticGrants::default());
    for who in ["alice@example.com", "bob@example.com", "switchboard-sp"] {
        grants.grant("databricks", who);
    }
    let sink = Arc::new(Recorder::default());
    let credentials =
        StandardCredentials::new("switchboard-sp").with_service_token(Arc::new(ServicePrincipal));
    let gateway = Gateway::builder(sink.clone(), Arc::new(credentials))
        .connections([connection], grants, "switchboard-sp")
        .build();
    Setup { genie, gateway: Arc::new(gateway), sink }
}

/// A Databricks genie agent whose `[genie]` table is `space_id = "sales-space"` plus `extra`,
/// polling every few milliseconds so tests run quickly.
fn spec(mode: CredentialMode, extra: &str) -> Arc<AgentSpec> {
    let table = format!(
        "engine = \"databricks\"\nspace_id = \"sales-space\"\npoll_initial_ms = 5\npoll_max_ms = 20\n{extra}"
    );
    let parsed: toml::Table = toml::from_str(&table).unwrap();
    Arc::new(AgentSpec {
        name: "sales".into(),
        kind: AgentKind::Genie,
        description: "Sales deals in Databricks".into(),
        examples: Vec::new(),
        credential: CredentialSpec { mode, scopes: Vec::new(), audience: None, secret: None },
        allowed_roles: None,
        timeout_ms: None,
        connection: Some("databricks".into()),
        settings: serde_json::to_value(parsed).unwrap(),
        tool_roles: None,
        guardrails: None,
    })
}

fn agent(setup: &Setup, mode: CredentialMode, extra: &str) -> Arc<dyn Agent> {
    let spec = spec(mode, extra);
    genie::build(spec.clone(), setup.gateway.egress(spec), Path::new("."), None).unwrap()
}

fn ctx(who: &str) -> RunContext {
    let (email, role, token) = match who {
        "bob" => ("bob@example.com", "east_sales", BOB_TOKEN),
        _ => ("alice@example.com", "west_sales", ALICE_TOKEN),
    };
    let caller =
        Caller::new(who, email, vec![role.into()], AuthMethod::Development).with_token(Secret::new(token));
    RunContext::new(caller, Duration::from_secs(30))
}

async fn ask(agent: &Arc<dyn Agent>, who: &str, question: &str, history: &[Message]) -> Result<AgentOutput> {
    agent.invoke(&ctx(who), &AgentInput { history: history.to_vec(), ..AgentInput::new(question) }).await
}

/// The thread after `question` was answered with `answer`, as the store hands it back.
fn thread(mut history: Vec<Message>, question: &str, answer: &AgentOutput) -> Vec<Message> {
    history.push(Message::user(question));
    history.push(Message::assistant(answer.text.clone(), Some("sales".into())));
    history
}

fn conversation_id(output: &AgentOutput) -> String {
    output.data.as_ref().unwrap()["genie"]["conversation_id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn a_multi_status_poll_ends_in_the_sql_and_the_table_with_span_attributes() {
    let setup = setup().await;
    let sales = agent(&setup, CredentialMode::Obo, "");
    let out = ask(&sales, "alice", "deals by region", &[]).await.unwrap();
    assert!(out.text.contains("| region | amount | margin |"), "{}", out.text);
    assert!(out.text.contains("| West | 1200 |"), "{}", out.text);
    assert!(!out.text.contains("East"), "alice's row filter applies: {}", out.text);
    assert!(out.text.contains(&format!("```sql\n{DEALS_SQL}\n```")), "{}", out.text);
    let data = out.data.clone().unwrap();
    assert_eq!(data["status"], "answered");
    assert_eq!(data["sql"], DEALS_SQL);
    assert_eq!(data["rows"], json!([["West", 1200, 0.31]]));
    assert_eq!(data["truncated"], false);
    assert_eq!(data["total_rows"], 1);
    let id = conversation_id(&out);
    assert!(out.text.ends_with(&format!("Genie conversation: `{id}`")), "{}", out.text);
    // Every status of the progression was polled through, including one Genie may add later.
    let message_id = data["genie"]["message_id"].as_str().unwrap();
    let polls =
        setup.genie.seen().iter().filter(|s| s.method == "GET" && s.path.ends_with(message_id)).count();
    assert_eq!(polls, 7);
    let spans = setup.sink.spans.lock().unwrap();
    let span =
        spans.iter().find(|s| s.attributes.contains_key("genie.conversation_id")).expect("a genie span");
    assert_eq!(span.attributes["genie.conversation_id"], json!(id));
    assert_eq!(span.attributes["genie.message_id"], data["genie"]["message_id"]);
    assert_eq!(span.attributes["genie.status"], "COMPLETED");
    assert_eq!(span.attributes["genie.rows"], 1);
    assert_eq!(span.attributes["genie.total_rows"], 1);
    let serialized =
        serde_json::to_string(&*spans).unwrap() + &format!("{:?}", setup.sink.audit.lock().unwrap());
    assert!(!serialized.contains(ALICE_TOKEN), "the token stays out of spans and audit rows");
}

#[tokio::test]
async fn genie_receives_the_callers_token_for_obo_and_the_service_principals_for_automatic() {
    let setup = setup().await;
    let obo = agent(&setup, CredentialMode::Obo, "");
    let out = ask(&obo, "bob", "deals by region", &[]).await.unwrap();
    assert!(out.text.contains("| East |") && !out.text.contains("West"), "{}", out.text);
    let seen = setup.genie.seen();
    assert!(!seen.is_empty());
    assert!(seen.iter().all(|s| s.authorization == format!("Bearer {BOB_TOKEN}")), "{seen:?}");

    let automatic = agent(&setup, CredentialMode::Automatic, "");
    let before = setup.genie.seen().len();
    let out = ask(&automatic, "bob", "deals by region", &[]).await.unwrap();
    assert!(out.text.contains("| West |") && out.text.contains("| East |"), "{}", out.text);
    let seen = setup.genie.seen();
    assert!(seen[before..].iter().all(|s| s.authorization == format!("Bearer {SP_TOKEN}")), "{seen:?}");
}

#[tokio::test]
async fn a_clarification_is_answered_in_the_same_conversation() {
    let setup = setup().await;
    let sales = agent(&setup, CredentialMode::Obo, "");
    let first = ask(&sales, "alice", "what was our best quarter?", &[]).await.unwrap();
    assert_eq!(first.data.as_ref().unwrap()["status"], "clarify");
    assert!(first.text.starts_with("Do you mean the best quarter by revenue"), "{}", first.text);
    let id = conversation_id(&first);
    let history = thread(Vec::new(), "what was our best quarter?", &first);
    let second = ask(&sales, "alice", "by revenue", &history).await.unwrap();
    assert_eq!(conversation_id(&second), id);
    assert!(second.text.contains("| Q3 | 4200 |"), "{}", second.text);
    assert_eq!(setup.genie.conversation(&id), ["what was our best quarter?", "by revenue"]);
    assert_eq!(setup.genie.conversation_count(), 1);
    let follow_up_posts = setup
        .genie
        .posts()
        .iter()
        .filter(|p| p.path.ends_with(&format!("/conversations/{id}/messages")))
        .count();
    assert_eq!(follow_up_posts, 1);

    // A third turn continues it again.
    let history = thread(history, "by revenue", &second);
    let third = ask(&sales, "alice", "and deals by region?", &history).await.unwrap();
    assert_eq!(conversation_id(&third), id);
    assert_eq!(setup.genie.conversation(&id).len(), 3);
}

#[tokio::test]
async fn a_conversation_is_continued_only_by_the_caller_it_was_started_for() {
    let setup = setup().await;
    let sales = agent(&setup, CredentialMode::Automatic, "");
    let first = ask(&sales, "alice", "what was our best quarter?", &[]).await.unwrap();
    let id = conversation_id(&first);
    // Bob sends alice's answer as his own history (client-sent history is possible).
    let history = thread(Vec::new(), "what was our best quarter?", &first);
    let bobs = ask(&sales, "bob", "by revenue", &history).await.unwrap();
    assert_ne!(conversation_id(&bobs), id);
    assert_eq!(setup.genie.conversation(&id), ["what was our best quarter?"]);
    // A made-up id starts a new conversation too.
    let forged = vec![Message::assistant("Genie conversation: `01f0deadbeef`", Some("sales".into()))];
    let out = ask(&sales, "alice", "deals by region", &forged).await.unwrap();
    assert_ne!(conversation_id(&out), "01f0deadbeef");
    assert_eq!(setup.genie.conversation_count(), 3);
}

#[tokio::test]
async fn an_expired_result_is_re_run_with_execute_query() {
    let setup = setup().await;
    let sales = agent(&setup, CredentialMode::Obo, "");
    let out = ask(&sales, "alice", "the old result please", &[]).await.unwrap();
    assert!(out.text.contains("| West | 1200 |"), "{}", out.text);
    let posts = setup.genie.posts();
    assert!(posts.iter().any(|p| p.path.ends_with("/execute-query") && p.status == 200), "{posts:?}");
    let spans = setup.sink.spans.lock().unwrap();
    assert!(spans.iter().any(|s| s.attributes.get("genie.status") == Some(&json!("QUERY_RESULT_EXPIRED"))));
}

#[tokio::test]
async fn the_last_of_several_query_attachments_wins() {
    let setup = setup().await;
    let sales = agent(&setup, CredentialMode::Obo, "");
    let out = ask(&sales, "alice", "self-correct please", &[]).await.unwrap();
    assert_eq!(out.data.as_ref().unwrap()["sql"], DEALS_SQL);
    assert!(out.text.starts_with("Deals by region:"), "{}", out.text);
    assert!(!out.text.contains("SELECT nonsense") && !out.text.contains("retrying"), "{}", out.text);
    assert!(out.text.contains("Reading deals."), "{}", out.text);
}

#[tokio::test]
async fn results_are_capped_with_truncated_and_total_rows() {
    let setup = setup().await;
    let sales = agent(&setup, CredentialMode::Obo, "");
    let out = ask(&sales, "alice", "many rows", &[]).await.unwrap();
    let data = out.data.unwrap();
    assert_eq!(data["rows"].as_array().unwrap().len(), 50);
    assert_eq!(data["truncated"], true);
    assert_eq!(data["total_rows"], 120);
    assert!(out.text.contains("(showing 50 of 120 rows)"), "{}", out.text);
    let capped = agent(&setup, CredentialMode::Obo, "max_rows = 7");
    let data = ask(&capped, "alice", "many rows", &[]).await.unwrap().data.unwrap();
    assert_eq!(data["rows"].as_array().unwrap().len(), 7);
}

#[tokio::test]
async fn a_429_is_retried_after_the_advertised_wait() {
    let setup = setup().await;
    setup.genie.throttle_next_posts(1, 1);
    let sales = agent(&setup, CredentialMode::Obo, "");
    let out = ask(&sales, "alice", "deals by region", &[]).await.unwrap();
    assert!(out.text.contains("| West |"), "{}", out.text);
    let posts = setup.genie.posts();
    assert_eq!(posts.iter().map(|p| p.status).collect::<Vec<_>>(), [429, 200]);
    assert!(posts[1].at.duration_since(posts[0].at) >= Duration::from_secs(1), "waited as advertised");

    // A wait longer than the turn may take is a clear rate-limit answer, not a hang.
    setup.genie.throttle_next_posts(1, 120);
    let e = ask(&sales, "alice", "deals by region", &[]).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::RateLimited);
    assert_eq!(e.retry_after, Some(Duration::from_secs(120)));
    assert!(e.message.contains("try again in 120 s"), "{}", e.message);
}

#[tokio::test]
async fn a_failed_message_carries_genies_error_type() {
    let setup = setup().await;
    let sales = agent(&setup, CredentialMode::Obo, "");
    let e = ask(&sales, "alice", "the broken one", &[]).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Upstream);
    assert!(e.message.contains("SQL_EXECUTION_EXCEPTION"), "{}", e.message);
    assert!(e.message.contains("main.sales.dealz does not exist"), "{}", e.message);
}

#[tokio::test]
async fn a_slow_space_hits_the_timeout_with_its_last_status() {
    let setup = setup().await;
    let sales = agent(&setup, CredentialMode::Obo, "timeout_ms = 300");
    let e = ask(&sales, "alice", "answer slowly", &[]).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Timeout);
    assert!(e.message.contains("did not answer within 1 s"), "{}", e.message);
    assert!(e.message.contains("last status: EXECUTING_QUERY"), "{}", e.message);
}

#[tokio::test]
async fn malformed_json_is_a_clear_error() {
    let setup = setup().await;
    let sales = agent(&setup, CredentialMode::Obo, "");
    let e = ask(&sales, "alice", "garbled please", &[]).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Upstream);
    assert!(e.message.contains("Genie's reply to a status poll is not valid JSON"), "{}", e.message);
}

#[tokio::test]
async fn polling_stops_when_the_caller_goes_away() {
    let setup = setup().await;
    let sales = agent(&setup, CredentialMode::Obo, "");
    let ctx = ctx("alice");
    let cancel = ctx.cancel.clone();
    let task = tokio::spawn({
        let sales = sales.clone();
        async move { sales.invoke(&ctx, &AgentInput::new("answer slowly")).await }
    });
    setup.genie.wait_for_gets(3, Duration::from_secs(10)).await;
    let at_cancel = setup.genie.seen().len();
    cancel.cancel();
    let e = task.await.unwrap().unwrap_err();
    assert_eq!(e.kind, ErrorKind::Cancelled);
    // Polling every 5 to 20 ms, a live client would poll about ten more times in 200 ms; at most
    // the one request already on the wire when the caller left may still arrive.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(setup.genie.seen().len() <= at_cancel + 1, "no poll after the caller left");
}

#[tokio::test]
async fn genie_errors_never_echo_the_token() {
    let setup = setup().await;
    let sales = agent(&setup, CredentialMode::Obo, "");
    let e = ask(&sales, "alice", "echo my credential", &[]).await.unwrap_err();
    assert!(e.message.contains("INTERNAL_ERROR") && e.message.contains("[redacted]"), "{}", e.message);
    assert!(!e.message.contains(ALICE_TOKEN), "{}", e.message);
    let audit = format!("{:?}", setup.sink.audit.lock().unwrap());
    assert!(!audit.contains(ALICE_TOKEN));
}

#[tokio::test]
async fn a_burst_of_twelve_meets_at_most_five_posts_per_window() {
    let setup = setup().await;
    // A window long enough that all twelve surely arrive within it, even on a loaded machine.
    let window = Duration::from_secs(10);
    // The local Genie enforces the quota as Databricks does: had the client overrun it, the
    // overrunning POSTs would be answered 429.
    setup.genie.limit_posts(5, window);
    let sales =
        agent(&setup, CredentialMode::Automatic, "max_posts = 5\npost_window_ms = 10000\nmax_queue_ms = 0");
    let asks = (0..12).map(|i| {
        let sales = sales.clone();
        async move { ask(&sales, if i % 2 == 0 { "alice" } else { "bob" }, "deals by region", &[]).await }
    });
    let results = join_all(asks).await;
    let answered = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(answered, 5);
    for e in results.iter().filter_map(|r| r.as_ref().err()) {
        assert_eq!(e.kind, ErrorKind::RateLimited, "{e:?}");
        assert!(e.retry_after.is_some_and(|w| w > Duration::ZERO && w <= window * 2), "{e:?}");
        assert!(
            e.message.contains("accepts 5 questions per 10 s") && e.message.contains("try again in"),
            "{}",
            e.message
        );
    }
    let posts = setup.genie.posts();
    assert_eq!(posts.len(), 5);
    assert!(posts.iter().all(|p| p.status == 200), "{posts:?}");
    assert!(setup.genie.max_posts_within(window) <= 5);
}

#[tokio::test]
async fn a_burst_of_twelve_queues_within_the_pace() {
    let setup = setup().await;
    // The local Genie counts over a window shorter than the client's, so a send delayed by a
    // busy machine cannot make the check fail spuriously; the quota still holds in every window.
    let window = Duration::from_millis(1000);
    setup.genie.limit_posts(5, window);
    let sales =
        agent(&setup, CredentialMode::Automatic, "max_posts = 5\npost_window_ms = 1500\nmax_queue_ms = 8000");
    let asks = (0..12).map(|_| {
        let sales = sales.clone();
        async move { ask(&sales, "alice", "deals by region", &[]).await }
    });
    let results = join_all(asks).await;
    assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
    let posts = setup.genie.posts();
    assert_eq!(posts.len(), 12);
    assert!(posts.iter().all(|p| p.status == 200), "no POST was refused by Genie: {posts:?}");
    assert!(setup.genie.max_posts_within(window) <= 5);
}

#[test]
fn settings_errors_name_the_field() {
    let check = |mode: CredentialMode, extra: &str, connection: Option<&str>| {
        let mut spec = (*spec(mode, extra)).clone();
        spec.connection = connection.map(String::from);
        genie::check(&spec, Path::new(".")).unwrap_err().message
    };
    let e = check(CredentialMode::Obo, "", None);
    assert!(e.starts_with("connection:"), "{e}");
    let e = check(CredentialMode::Obo, "max_rows = 0", Some("databricks"));
    assert!(e.starts_with("genie.max_rows"), "{e}");
    let e = check(CredentialMode::Obo, "timeout_ms = 0", Some("databricks"));
    assert!(e.starts_with("genie.timeout_ms"), "{e}");
    let e = check(CredentialMode::Obo, "max_posts = 0", Some("databricks"));
    assert!(e.starts_with("genie.max_posts"), "{e}");
    let e = check(CredentialMode::Obo, "warehouse = \"x\"", Some("databricks"));
    assert!(e.contains("warehouse"), "{e}");
    let mut spec = (*spec(CredentialMode::Obo, "")).clone();
    spec.settings["engine"] = json!("oracle");
    let e = genie::check(&spec, Path::new(".")).unwrap_err().message;
    assert!(e.starts_with("genie.engine"), "{e}");
    spec.settings["engine"] = json!("databricks");
    spec.settings["space_id"] = json!("../../etc");
    let e = genie::check(&spec, Path::new(".")).unwrap_err().message;
    assert!(e.starts_with("genie.space_id"), "{e}");
}
