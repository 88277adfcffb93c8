//! HTTP tools against a local partner API: argument placement, answers, credentials, the
//! response cap, timeouts, error mapping and the connection's egress rules.

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchboard_agents::tool;
use switchboard_core::{
    Agent, AgentInput, AgentKind, AgentOutput, AgentSpec, AuditDecision, AuditRecord, AuthMethod, Caller,
    ConnectionSpec, CredentialMode, CredentialSpec, ErrorKind, HopKind, Result, RunContext, Secret,
    SpanRecord, TelemetrySink,
};
use switchboard_govern::layers::{StandardCredentials, StaticGrants};
use switchboard_govern::{Connection, Gateway};
use switchboard_llm::LlmClient;
use switchboard_testkit::llm::{Script, ScriptedLlm};

const TOKEN: &str = "alice-partner-token-0123456789";

#[derive(Default)]
struct Recorder {
    audit: Mutex<Vec<AuditRecord>>,
}

impl TelemetrySink for Recorder {
    fn span(&self, _span: SpanRecord) {}
    fn audit(&self, record: AuditRecord) {
        self.audit.lock().unwrap().push(record);
    }
}

/// One request the partner API received.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    query: String,
    authorization: String,
    request_id: String,
    body: String,
}

/// A partner API on 127.0.0.1 that records every request.
struct Partner {
    base: String,
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Partner {
    fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
    fn last(&self) -> Seen {
        self.seen.lock().unwrap().last().cloned().expect("a request was sent")
    }
}

async fn partner() -> Partner {
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let log = seen.clone();
    let app =
        axum::Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let log = log.clone();
            async move {
                let header = |name: &str| {
                    headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string()
                };
                let path = uri.path().to_string();
                log.lock().unwrap().push(Seen {
                    method: method.to_string(),
                    path: path.clone(),
                    query: uri.query().unwrap_or_default().to_string(),
                    authorization: header("authorization"),
                    request_id: header("x-request-id"),
                    body: String::from_utf8_lossy(&body).into_owned(),
                });
                respond(&path, &header("authorization"), &body).await
            }
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Partner { base: format!("http://127.0.0.1:{port}/api"), port, seen }
}

async fn respond(path: &str, authorization: &str, body: &[u8]) -> Response {
    let path = path.strip_prefix("/api").unwrap_or(path);
    if path.starts_with("/repos/") {
        return axum::Json(json!({"total": 2, "items": [{"title": "Printer on fire", "number": 7}, {"title": "Coffee", "number": 8}]}))
            .into_response();
    }
    if path == "/tickets" {
        let sent: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        return (StatusCode::CREATED, axum::Json(json!({"id": "TCK-1004", "title": sent["title"]})))
            .into_response();
    }
    if path == "/big" {
        // 10 MB of JSON.
        let mut big = String::with_capacity(10 * 1024 * 1024 + 16);
        big.push_str("{\"rows\": [");
        while big.len() < 10 * 1024 * 1024 {
            big.push_str("\"abcdefghijklmnopqrstuvwxyz\", ");
        }
        big.push_str("\"end\"]}");
        return ([("content-type", "application/json")], big).into_response();
    }
    if path == "/slow" {
        tokio::time::sleep(Duration::from_secs(10)).await;
        return axum::Json(json!({"late": true})).into_response();
    }
    if path == "/text" {
        return "plain words, not JSON".into_response();
    }
    if let Some(code) = path.strip_prefix("/status/") {
        let code =
            StatusCode::from_u16(code.parse().unwrap_or(500)).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        // A careless partner echoing the credential it was sent.
        return (code, axum::Json(json!({"message": format!("nope, {} is not welcome", authorization.trim_start_matches("Bearer "))})))
            .into_response();
    }
    StatusCode::NOT_FOUND.into_response()
}

/// A gateway with one connection, `partner`, granted to alice.
fn gateway(partner: &Partner, edit: impl FnOnce(&mut ConnectionSpec)) -> (Arc<Gateway>, Arc<Recorder>) {
    let mut spec = ConnectionSpec::new("partner", partner.base.clone());
    spec.allow_insecure_loopback = true;
    edit(&mut spec);
    let connection = Arc::new(Connection::new(spec, None).unwrap());
    let grants = Arc::new(StaticGrants::default());
    grants.grant("partner", "alice@example.com");
    let sink = Arc::new(Recorder::default());
    let gateway = Gateway::builder(sink.clone(), Arc::new(StandardCredentials::new("switchboard-sp")))
        .connections([connection], grants, "switchboard-sp")
        .build();
    (Arc::new(gateway), sink)
}

/// A tool agent named `name` whose `[tool]` table is `table` (TOML).
fn spec(name: &str, connection: Option<&str>, table: &str) -> Arc<AgentSpec> {
    let parsed: toml::Table = toml::from_str(table).unwrap();
    Arc::new(AgentSpec {
        name: name.into(),
        kind: AgentKind::Tool,
        description: format!("{name}: a partner API"),
        examples: Vec::new(),
        credential: CredentialSpec {
            mode: CredentialMode::Obo,
            scopes: Vec::new(),
            audience: None,
            secret: None,
        },
        allowed_roles: None,
        timeout_ms: None,
        connection: connection.map(String::from),
        settings: serde_json::to_value(parsed).unwrap(),
        tool_roles: None,
        guardrails: None,
    })
}

fn build(gateway: &Arc<Gateway>, spec: Arc<AgentSpec>, llm: Option<LlmClient>) -> Result<Arc<dyn Agent>> {
    tool::build(spec.clone(), gateway.egress(spec), Path::new("."), llm)
}

fn agent(gateway: &Arc<Gateway>, name: &str, table: &str) -> Arc<dyn Agent> {
    build(gateway, spec(name, Some("partner"), table), None).unwrap()
}

fn alice() -> RunContext {
    let caller =
        Caller::new("alice", "alice@example.com", vec!["west_sales".into()], AuthMethod::Development)
            .with_token(Secret::new(TOKEN));
    RunContext::new(caller, Duration::from_secs(30))
}

async fn ask(agent: &Arc<dyn Agent>, question: &str) -> Result<AgentOutput> {
    agent.invoke(&alice(), &AgentInput::new(question)).await
}

const ISSUES: &str = r#"
[http]
method = "GET"
path = "/repos/{owner}/{repo}/issues"
query = ["state"]
answer_pointer = "/items/0/title"
schema = '''{"type": "object", "required": ["owner", "repo"], "properties": {
  "owner": {"type": "string"},
  "repo": {"type": "string"},
  "state": {"type": "string", "enum": ["open", "closed"], "default": "open"},
  "per_page": {"type": "integer", "minimum": 1, "maximum": 100}
}}'''
"#;

const TICKETS: &str = r#"
[http]
method = "POST"
path = "/tickets"
query = ["project"]
answer = "Created {/id}: {/title} (priority {priority})"

[http.schema]
type = "object"
required = ["title", "priority"]
[http.schema.properties.title]
type = "string"
[http.schema.properties.priority]
type = "integer"
minimum = 1
maximum = 5
[http.schema.properties.notify]
type = "boolean"
[http.schema.properties.project]
type = "string"
enum = ["ops", "it"]
"#;

#[tokio::test]
async fn get_places_path_and_query_and_reads_the_pointer_with_the_hop_credential() {
    let partner = partner().await;
    let (gateway, sink) = gateway(&partner, |_| {});
    let issues = agent(&gateway, "issues", ISSUES);

    let out = ask(&issues, r#"closed issues of "acme" "big widgets", 20 per page"#).await.unwrap();
    assert_eq!(out.text, "Printer on fire");
    let seen = partner.last();
    assert_eq!(seen.method, "GET");
    assert_eq!(seen.path, "/api/repos/acme/big%20widgets/issues", "joined onto the base path, encoded");
    assert_eq!(seen.query, "state=closed&per_page=20", "listed and unplaced arguments go to the query");
    assert_eq!(seen.authorization, format!("Bearer {TOKEN}"), "the hop's (caller's) credential");
    assert!(!seen.request_id.is_empty());
    assert!(seen.body.is_empty());
    let data = out.data.unwrap();
    assert_eq!(
        data["arguments"],
        json!({"owner": "acme", "repo": "big widgets", "state": "closed", "per_page": 20})
    );
    assert_eq!(data["status"], json!(200));

    // Defaults fill what the question leaves out; an argument cannot climb out of its segment.
    ask(&issues, r#"issues of "acme" "../../admin""#).await.unwrap();
    let seen = partner.last();
    assert_eq!(seen.path, "/api/repos/acme/..%2F..%2Fadmin/issues");
    assert_eq!(seen.query, "state=open");

    let audit = sink.audit.lock().unwrap();
    assert_eq!(audit.len(), 2);
    assert_eq!(audit[0].hop, HopKind::Http);
    assert_eq!(audit[0].target, "issues");
    assert_eq!(audit[0].principal, "alice@example.com");
    assert_eq!(audit[0].decision, AuditDecision::Allowed);
}

#[tokio::test]
async fn post_sends_a_json_body_and_fills_the_answer_template() {
    let partner = partner().await;
    let (gateway, _) = gateway(&partner, |_| {});
    let tickets = agent(&gateway, "tickets", TICKETS);
    let out =
        ask(&tickets, r#"file a ticket "Printer on fire" for ops, priority 2, notify: yes"#).await.unwrap();
    assert_eq!(out.text, "Created TCK-1004: Printer on fire (priority 2)");
    let seen = partner.last();
    assert_eq!(
        (seen.method.as_str(), seen.path.as_str(), seen.query.as_str()),
        ("POST", "/api/tickets", "project=ops")
    );
    let body: Value = serde_json::from_str(&seen.body).unwrap();
    assert_eq!(body, json!({"title": "Printer on fire", "priority": 2, "notify": true}));
}

#[tokio::test]
async fn schema_violations_are_refused_before_any_request_is_sent() {
    let partner = partner().await;
    let (gateway, sink) = gateway(&partner, |_| {});
    let tickets = agent(&gateway, "tickets", TICKETS);
    let err = ask(&tickets, r#"file "Printer on fire" at priority 9"#).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidInput);
    assert_eq!(err.message, "`priority` must be at most 5, got 9");
    let err = ask(&tickets, r#"file "Printer on fire""#).await.unwrap_err();
    assert_eq!(
        err.message,
        "the `tickets` tool needs `priority` (a whole number): none found in the question"
    );

    // A model's proposal is validated the same way.
    let llm_spec = model_spec();
    let fake = fake_llm(tickets_call(json!({"title": "Printer on fire", "priority": "high"}))).await;
    let llm = LlmClient::new(gateway.egress(llm_spec.clone()), fake.base_url(), "fake");
    let tickets = build(&gateway, spec("tickets", Some("partner"), TICKETS), Some(llm)).unwrap();
    let err = ask(&tickets, "the printer is burning, urgent").await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidInput);
    assert_eq!(err.message, "`priority` must be a whole number, got \"high\"");
    let offered = fake.requests()[0]["tools"][0]["function"]["parameters"].clone();
    assert_eq!(offered["properties"]["priority"]["maximum"], json!(5), "the model sees the schema");
    assert_eq!(partner.count(), 0, "nothing reached the partner");
    assert!(sink.audit.lock().unwrap().iter().all(|a| a.hop == HopKind::Llm), "no http hop was made");

    let fake = fake_llm(tickets_call(json!({"title": "Printer on fire", "priority": 3}))).await;
    let llm = LlmClient::new(gateway.egress(llm_spec), fake.base_url(), "fake");
    let tickets = build(&gateway, spec("tickets", Some("partner"), TICKETS), Some(llm)).unwrap();
    let out = ask(&tickets, "the printer is burning, urgent").await.unwrap();
    assert_eq!(out.text, "Created TCK-1004: Printer on fire (priority 3)");
    assert_eq!(
        serde_json::from_str::<Value>(&partner.last().body).unwrap(),
        json!({"title": "Printer on fire", "priority": 3})
    );
}

/// Arguments the routing call already proposed stand for the model's: the tool asks no model,
/// and they are completed and validated as the model's would be.
#[tokio::test]
async fn arguments_proposed_by_the_routing_call_save_the_tools_own_model_call() {
    let partner = partner().await;
    let (gateway, _sink) = gateway(&partner, |_| {});
    let fake = fake_llm(tickets_call(json!({"title": "From the tool's own call", "priority": 1}))).await;
    let llm = LlmClient::new(gateway.egress(model_spec()), fake.base_url(), "fake");
    let tickets = build(&gateway, spec("tickets", Some("partner"), TICKETS), Some(llm)).unwrap();
    let schema = tickets.arguments_schema().expect("a tool with a model offers its schema to the router");
    assert_eq!(schema["properties"]["priority"]["maximum"], json!(5));
    let with = |question: &str, arguments: Value| AgentInput {
        arguments: arguments.as_object().cloned(),
        ..AgentInput::new(question)
    };

    let input = with("Printer on fire, project it", json!({"title": "Printer on fire", "priority": 2}));
    let out = tickets.invoke(&alice(), &input).await.unwrap();
    assert_eq!(out.text, "Created TCK-1004: Printer on fire (priority 2)");
    assert_eq!(partner.last().query, "project=it", "the question filled what the proposal left out");
    assert_eq!(fake.calls(), 0, "no model call");

    let input = with("the printer is burning", json!({"title": "Printer on fire", "priority": "high"}));
    let err = tickets.invoke(&alice(), &input).await.unwrap_err();
    assert_eq!(
        (err.kind, err.message.as_str()),
        (ErrorKind::InvalidInput, "`priority` must be a whole number, got \"high\"")
    );
    assert_eq!((partner.count(), fake.calls()), (1, 0), "refused before sending, and no model asked");

    // Without a proposal the tool asks its model, as before.
    let out = ask(&tickets, "the printer is burning").await.unwrap();
    assert_eq!(
        (out.text.as_str(), fake.calls()),
        ("Created TCK-1004: From the tool's own call (priority 1)", 1)
    );

    // A tool without a model takes its arguments from the question alone: nothing to propose.
    assert!(agent(&gateway, "tickets", TICKETS).arguments_schema().is_none());
}

/// The model's arguments come first; the question fills only what the model left out.
#[tokio::test]
async fn the_question_fills_what_the_model_left_out() {
    let partner = partner().await;
    let (gateway, _sink) = gateway(&partner, |_| {});
    let llm_spec = model_spec();
    let tickets_with = |fake: &ScriptedLlm| {
        let llm = LlmClient::new(gateway.egress(llm_spec.clone()), fake.base_url(), "fake");
        build(&gateway, spec("tickets", Some("partner"), TICKETS), Some(llm)).unwrap()
    };

    // The model left out `priority` (and the optional fields): the question gives it.
    let fake = fake_llm(tickets_call(json!({"title": "Printer on fire"}))).await;
    let out = ask(&tickets_with(&fake), "Printer on fire, priority 4, project it").await.unwrap();
    assert_eq!(out.text, "Created TCK-1004: Printer on fire (priority 4)");
    assert_eq!(serde_json::from_str::<Value>(&partner.last().body).unwrap()["priority"], json!(4));
    assert_eq!(partner.last().query, "project=it");

    // The model gave every field: the question's different values change nothing.
    let all = json!({"title": "Printer on fire", "priority": 2, "notify": false, "project": "ops"});
    let fake = fake_llm(tickets_call(all)).await;
    ask(&tickets_with(&fake), "Printer on fire, priority 4, project it").await.unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&partner.last().body).unwrap(),
        json!({"title": "Printer on fire", "priority": 2, "notify": false})
    );
    assert_eq!(partner.last().query, "project=ops");
}

#[tokio::test]
async fn a_large_response_is_cut_at_the_cap() {
    let partner = partner().await;
    let (gateway, _) = gateway(&partner, |_| {});
    let big =
        agent(&gateway, "big", "[http]\nmethod = \"GET\"\npath = \"/big\"\nmax_response_bytes = 65536\n");
    let out = ask(&big, "everything").await.unwrap();
    assert!(out.text.ends_with("(truncated)"), "{}", &out.text[out.text.len().saturating_sub(80)..]);
    assert!(out.text.len() < 70_000, "{} bytes", out.text.len());
    assert_eq!(out.data.unwrap()["truncated"], json!(true));

    let pointed = agent(
        &gateway,
        "big",
        "[http]\nmethod = \"GET\"\npath = \"/big\"\nmax_response_bytes = 65536\nanswer_pointer = \"/rows/0\"\n",
    );
    let err = ask(&pointed, "everything").await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Upstream);
    assert!(err.message.contains("larger than max_response_bytes (65536)"), "{err}");
}

#[tokio::test]
async fn a_hang_past_the_timeout_is_a_timeout() {
    let partner = partner().await;
    let (gateway, _) = gateway(&partner, |_| {});
    let slow = agent(&gateway, "slow", "[http]\nmethod = \"GET\"\npath = \"/slow\"\ntimeout_ms = 300\n");
    let started = Instant::now();
    let err = ask(&slow, "anything").await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Timeout);
    assert!(err.message.contains("within 300 ms"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
}

#[tokio::test]
async fn egress_refusals_name_the_connection_and_host_and_send_nothing() {
    let partner = partner().await;
    let (gateway, sink) = gateway(&partner, |c| c.allowed_hosts = vec!["partner.example.com".into()]);
    let plain =
        agent(&gateway, "plain", "[http]\nmethod = \"GET\"\npath = \"http://partner.example.com/x\"\n");
    let err = ask(&plain, "anything").await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Denied);
    assert!(err.message.contains("`partner`") && err.message.contains("partner.example.com"), "{err}");

    // `localhost` is this very server, but the connection lists only 127.0.0.1.
    let path = format!(
        "[http]\nmethod = \"GET\"\npath = \"http://localhost:{}/api/repos/a/b/issues\"\n",
        partner.port
    );
    let unlisted = agent(&gateway, "unlisted", &path);
    let err = ask(&unlisted, "anything").await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Denied);
    assert!(err.message.contains("`partner`") && err.message.contains("`localhost`"), "{err}");
    assert_eq!(partner.count(), 0, "nothing was sent");
    let audit = sink.audit.lock().unwrap();
    assert!(audit.iter().all(|a| a.decision != AuditDecision::Allowed), "refusals are audited as such");
}

#[tokio::test]
async fn partner_errors_map_to_ours_without_the_credential() {
    let partner = partner().await;
    let (gateway, _) = gateway(&partner, |_| {});
    let status = agent(
        &gateway,
        "status",
        r#"
[http]
method = "GET"
path = "/status/{code}"
schema = '{"type": "object", "required": ["code"], "properties": {"code": {"type": "integer"}}}'
"#,
    );
    for (code, kind) in [
        (403, ErrorKind::Denied),
        (404, ErrorKind::NotFound),
        (422, ErrorKind::InvalidInput),
        (429, ErrorKind::RateLimited),
        (500, ErrorKind::Upstream),
        (503, ErrorKind::Upstream),
    ] {
        let err = ask(&status, &format!("status {code}")).await.unwrap_err();
        assert_eq!(err.kind, kind, "{code}: {err}");
        assert!(!err.message.contains(TOKEN) && !err.message.contains("0123456789"), "{code}: {err}");
        assert!(err.message.contains(&code.to_string()), "{code}: {err}");
    }
    let err = ask(&status, "status 500").await.unwrap_err();
    assert!(err.message.contains("nope, [redacted] is not welcome"), "{err}");

    let text =
        agent(&gateway, "text", "[http]\nmethod = \"GET\"\npath = \"/text\"\nanswer_pointer = \"/title\"\n");
    let err = ask(&text, "anything").await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Upstream);
    assert!(err.message.contains("not JSON"), "{err}");
    let plain = agent(&gateway, "text", "[http]\nmethod = \"GET\"\npath = \"/text\"\n");
    assert_eq!(ask(&plain, "anything").await.unwrap().text, "plain words, not JSON");

    let issues = agent(&gateway, "issues", &ISSUES.replace("/items/0/title", "/items/5/title"));
    let err = ask(&issues, r#""acme" "widgets""#).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotFound);
    assert_eq!(err.message, "the `issues` tool's response has nothing at `/items/5/title`");
}

#[tokio::test]
async fn settings_are_checked_when_the_tool_is_built() {
    let partner = partner().await;
    let (gateway, _) = gateway(&partner, |_| {});
    let error = |table: &str| match build(&gateway, spec("t", Some("partner"), table), None) {
        Ok(_) => panic!("accepted: {table}"),
        Err(e) => {
            assert_eq!(e.kind, ErrorKind::Config, "{e}");
            e.message
        }
    };
    let msg = error("database = \"x.db\"\nsql = \"SELECT 1\"\n[http]\nmethod = \"GET\"\npath = \"/x\"\n");
    assert!(msg.contains("with [tool.http], move or remove `database`"), "{msg}");
    let msg = error("[http]\nmethod = \"GET\"\npath = \"/x\"\n[function]\nname = \"f\"\n");
    assert!(msg.contains("with [tool.http], move or remove `function`"), "one flavour at a time: {msg}");
    assert!(error("views = [\"v\"]\n").contains("say what the tool runs"));
    assert!(
        error("[http]\nmethod = \"FETCH\"\npath = \"/x\"\n")
            .starts_with("tool.http: unknown variant `FETCH`")
    );
    assert!(error("[http]\nmethod = \"GET\"\npath = \"x\"\n").starts_with("tool.http.path:"));
    assert!(error("[http]\nmethod = \"GET\"\npath = \"/x/{id}\"\n").contains("`{id}` is not a property"));
    let bad_schema = "[http]\nmethod = \"GET\"\npath = \"/x\"\nschema = '{\"type\": \"object\", \"properties\": {\"a\": {\"type\": 5}}}'\n";
    assert!(error(bad_schema).starts_with("tool.http.schema:"), "{}", error(bad_schema));
    assert!(error("[http]\nmethod = \"GET\"\npath = \"/x\"\nschema = '{oops'\n").contains("not JSON"));
    let both = "[http]\nmethod = \"GET\"\npath = \"/x\"\nanswer = \"a\"\nanswer_pointer = \"/a\"\n";
    assert!(error(both).contains("not both"));
    let get_body = "[http]\nmethod = \"GET\"\npath = \"/x\"\nbody = [\"a\"]\nschema = '{\"type\": \"object\", \"properties\": {\"a\": {}}}'\n";
    assert!(error(get_body).contains("GET request has no body"));
    let header = "[http]\nmethod = \"GET\"\npath = \"/x\"\nheaders = { Authorization = \"Bearer x\" }\n";
    assert!(error(header).contains("`Authorization` is set by the connection"));
    assert!(
        error("[http]\nmethod = \"GET\"\npath = \"/x\"\ncolour = 1\n").contains("unknown field `colour`")
    );

    let nowhere = build(&gateway, spec("t", None, "[http]\nmethod = \"GET\"\npath = \"/x\"\n"), None);
    let msg = nowhere.err().map(|e| e.message).unwrap_or_default();
    assert!(msg.contains("must name a connection"), "{msg}");
}

/// The scripted model (`switchboard_testkit::llm`) answering every completion with `message`;
/// it records the request bodies it saw.
async fn fake_llm(message: Value) -> ScriptedLlm {
    ScriptedLlm::start(Script::answering(&message)).await
}

/// The spec a tool's model calls run under: the service principal's.
fn model_spec() -> Arc<AgentSpec> {
    Arc::new(AgentSpec {
        connection: None,
        credential: CredentialSpec {
            mode: CredentialMode::Automatic,
            scopes: Vec::new(),
            audience: None,
            secret: None,
        },
        ..(*spec("planner", None, "")).clone()
    })
}

/// A model's reply calling the `tickets` tool with `args`.
fn tickets_call(args: Value) -> Value {
    json!({"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function",
        "function": {"name": "tickets", "arguments": args.to_string()}}]})
}
