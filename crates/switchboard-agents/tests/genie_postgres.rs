//! The demo sales space on the real PostgreSQL server: the six-person access table enforced by
//! row-level security and a masking view, identical to the SQLite space; statements outside the
//! exposed view refused before anything reaches the server; and a pool shared by alternating
//! callers that never leaks one caller's identity to the next.

use serde_json::Value;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use switchboard_agents::genie;
use switchboard_agents::sql::pg::{PgEngine, PgOptions, install_demo};
use switchboard_agents::sql::{Exposed, create_database};
use switchboard_core::{
    Agent, AgentInput, AgentKind, AgentOutput, AgentSpec, AuditRecord, AuthMethod, Caller, CredentialMode,
    CredentialSpec, ErrorKind, RunContext, SpanRecord, TelemetrySink,
};
use switchboard_govern::Gateway;
use switchboard_govern::layers::StandardCredentials;
use switchboard_testkit::pg::TestSchema;
use switchboard_testkit::repo_root;

struct Quiet;

impl TelemetrySink for Quiet {
    fn span(&self, _span: SpanRecord) {}
    fn audit(&self, _record: AuditRecord) {}
}

/// The six demo identities: email, role, the regions they may see, whether margins are real.
const PEOPLE: [(&str, &str, &[&str], bool); 6] = [
    ("alice@example.com", "west_sales", &["West"], false),
    ("bob@example.com", "east_sales", &["East"], false),
    ("carol@example.com", "managers", &["Central", "East", "West"], false),
    ("dave@example.com", "executive", &["Central", "East", "West"], true),
    ("erin@example.com", "finance", &["Central", "East", "West"], true),
    ("frank@example.com", "admin", &["Central", "East", "West"], true),
];

fn gateway() -> Arc<Gateway> {
    Arc::new(Gateway::builder(Arc::new(Quiet), Arc::new(StandardCredentials::new("switchboard-sp"))).build())
}

/// The shipped `agents/sales.toml`, with its `[genie]` table edited by `edit`.
fn sales_spec(edit: impl FnOnce(&mut toml::Table)) -> Arc<AgentSpec> {
    let text = std::fs::read_to_string(repo_root().join("agents/sales.toml")).unwrap();
    let file: toml::Table = toml::from_str(&text).unwrap();
    let mut table = file["genie"].as_table().unwrap().clone();
    edit(&mut table);
    let examples =
        file["examples"].as_array().unwrap().iter().map(|e| e.as_str().unwrap().to_string()).collect();
    Arc::new(AgentSpec {
        name: "sales".into(),
        kind: AgentKind::Genie,
        description: file["description"].as_str().unwrap().into(),
        examples,
        credential: CredentialSpec {
            mode: CredentialMode::Obo,
            scopes: Vec::new(),
            audience: None,
            secret: None,
        },
        allowed_roles: None,
        timeout_ms: None,
        connection: None,
        settings: serde_json::to_value(table).unwrap(),
        tool_roles: None,
        guardrails: None,
    })
}

fn build(spec: Arc<AgentSpec>) -> Arc<dyn Agent> {
    genie::build(spec.clone(), gateway().egress(spec), Path::new("."), None).unwrap()
}

/// The sales space on PostgreSQL: the demo installed into `schema`.
async fn postgres_space(schema: &TestSchema, pool_size: usize) -> Arc<dyn Agent> {
    install_demo(schema.base_url(), schema.name()).await.unwrap();
    let (url, name) = (schema.base_url().to_string(), schema.name().to_string());
    build(sales_spec(move |t| {
        t.remove("database");
        t.insert("engine".into(), "postgres".into());
        t.insert("url".into(), url.into());
        t.insert("schema".into(), name.into());
        t.insert("role".into(), "switchboard_reader".into());
        t.insert("pool_size".into(), (pool_size as i64).into());
    }))
}

/// The sales space on SQLite, from the same demo data.
fn sqlite_space(dir: &Path) -> Arc<dyn Agent> {
    let db = dir.join("sales.db");
    create_database(&db, &std::fs::read_to_string(repo_root().join("data/sales.sql")).unwrap()).unwrap();
    build(sales_spec(move |t| {
        t.insert("database".into(), db.display().to_string().into());
    }))
}

fn ctx(email: &str, role: &str) -> RunContext {
    let subject = email.split('@').next().unwrap_or(email);
    let groups = if role.is_empty() { Vec::new() } else { vec![role.to_string()] };
    RunContext::new(Caller::new(subject, email, groups, AuthMethod::Development), Duration::from_secs(60))
}

async fn ask(agent: &Arc<dyn Agent>, email: &str, role: &str, question: &str) -> AgentOutput {
    agent
        .invoke(&ctx(email, role), &AgentInput::new(question))
        .await
        .unwrap_or_else(|e| panic!("{email} asking {question:?}: {e}"))
}

fn column(data: &Value, name: &str) -> Vec<Value> {
    let columns = data["columns"].as_array().unwrap();
    let i = columns.iter().position(|c| c == name).unwrap_or_else(|| panic!("no column {name} in {data}"));
    data["rows"].as_array().unwrap().iter().map(|r| r[i].clone()).collect()
}

fn regions(data: &Value) -> Vec<String> {
    let mut seen: Vec<String> =
        column(data, "region").iter().map(|v| v.as_str().unwrap().to_string()).collect();
    seen.sort();
    seen.dedup();
    seen
}

const QUESTIONS: [&str; 3] = ["total revenue by region", "average margin by region", "top 5 deals by amount"];

#[tokio::test]
async fn the_access_table_holds_identically_on_sqlite_and_postgresql() {
    let schema = TestSchema::new().await;
    let postgres = postgres_space(&schema, 4).await;
    let dir = tempfile::tempdir().unwrap();
    let sqlite = sqlite_space(dir.path());
    for (email, role, visible, real_margins) in PEOPLE {
        for question in QUESTIONS {
            let on_pg = ask(&postgres, email, role, question).await;
            let on_sqlite = ask(&sqlite, email, role, question).await;
            let (pg, lite) = (on_pg.data.clone().unwrap(), on_sqlite.data.clone().unwrap());
            assert_eq!(pg["columns"], lite["columns"], "{email}: {question}");
            assert_eq!(
                pg["rows"], lite["rows"],
                "{email}: {question}\nPostgreSQL: {}\nSQLite: {}",
                on_pg.text, on_sqlite.text
            );
            assert_eq!(pg["total_rows"], lite["total_rows"], "{email}: {question}");
            if question.contains("by region") {
                assert_eq!(regions(&pg), visible, "{email}: {question}");
            }
            if question.contains("margin") {
                let margins = column(&pg, "avg_margin");
                assert!(!margins.is_empty());
                assert_eq!(margins.iter().all(|m| !m.is_null()), real_margins, "{email}: {margins:?}");
                assert_eq!(margins.iter().all(Value::is_null), !real_margins, "{email}: {margins:?}");
                if !real_margins {
                    assert!(on_pg.text.contains("masked"), "{}", on_pg.text);
                }
            }
        }
    }
    // Someone with no demo role sees nothing on either engine.
    let nobody_pg = ask(&postgres, "mallory@example.com", "", "total revenue by region").await;
    let nobody_lite = ask(&sqlite, "mallory@example.com", "", "total revenue by region").await;
    assert_eq!(nobody_pg.data.as_ref().unwrap()["total_rows"], 0);
    assert_eq!(nobody_pg.data.unwrap()["rows"], nobody_lite.data.unwrap()["rows"]);
}

#[tokio::test]
async fn statements_outside_the_exposed_view_are_refused_before_reaching_the_server() {
    let schema = TestSchema::new().await;
    install_demo(schema.base_url(), schema.name()).await.unwrap();
    let options = |max_rows| PgOptions {
        schema: schema.name().to_string(),
        role: Some("switchboard_reader".into()),
        exposed: Exposed { views: vec!["deals".into()], tables: Vec::new() },
        max_rows,
        statement_timeout: Duration::from_secs(5),
        pool_size: 2,
    };
    // A server that does not exist: a statement that got past the check would fail with
    // "unavailable", so a denial proves the check refused it first.
    let nowhere = PgEngine::new(
        "genie.url",
        &format!("postgres://postgres@127.0.0.1:{}/test", switchboard_testkit::free_port()),
        options(50),
    )
    .unwrap();
    let real = PgEngine::new("genie.url", schema.base_url(), options(50)).unwrap();
    let spec = sales_spec(|_| {});
    let egress = gateway().egress(spec);
    let as_frank = ctx("frank@example.com", "admin");
    for sql in [
        "SELECT * FROM deals_base",
        "SELECT d.* FROM deals d JOIN deals_base b ON b.id = d.id",
        &format!("SELECT * FROM {}.deals_base", schema.name()),
        "SELECT * FROM public.deals",
        "SELECT rolname, rolpassword FROM pg_catalog.pg_authid",
        "SELECT * FROM pg_roles",
        "SELECT * FROM information_schema.tables",
        "DELETE FROM deals",
        "UPDATE deals SET amount = 0",
        "INSERT INTO deals (id) VALUES (1)",
        "DROP VIEW deals",
        "CREATE TABLE stolen AS SELECT * FROM deals",
        "SELECT set_config('switchboard.groups', 'admin', false)",
        "SELECT 1; DELETE FROM deals",
    ] {
        for engine in [&nowhere, &real] {
            let e = engine.query(&egress, &as_frank, "deals", sql, &[]).await.expect_err(sql);
            assert_eq!(e.kind, ErrorKind::Denied, "{sql}: {e}");
        }
    }
    // Defence in depth: even a statement that slipped past the check meets PostgreSQL's own
    // refusal, because the hop's role may read only the view.
    let client = schema.admin();
    client.batch_execute("BEGIN; SET LOCAL ROLE switchboard_reader").await.unwrap();
    let e = client.query(&format!("SELECT * FROM {}.deals_base", schema.name()), &[]).await.unwrap_err();
    let message = e.as_db_error().map(|d| d.message().to_string()).unwrap_or_default();
    assert!(message.contains("permission denied"), "{e:?}");
    client.batch_execute("ROLLBACK").await.unwrap();
    // And the view itself answers through the check, capped.
    let capped = PgEngine::new("genie.url", schema.base_url(), options(7)).unwrap();
    let result = capped
        .query(&egress, &as_frank, "deals", "SELECT id, region FROM deals ORDER BY id", &[])
        .await
        .unwrap();
    assert_eq!((result.rows.len(), result.total_rows, result.truncated), (7, 120, true));
}

#[tokio::test]
async fn a_slow_statement_meets_the_statement_timeout() {
    let schema = TestSchema::new().await;
    install_demo(schema.base_url(), schema.name()).await.unwrap();
    let engine = PgEngine::new(
        "genie.url",
        schema.base_url(),
        PgOptions {
            schema: schema.name().to_string(),
            role: Some("switchboard_reader".into()),
            exposed: Exposed { views: vec!["deals".into()], tables: Vec::new() },
            max_rows: 10,
            statement_timeout: Duration::from_millis(200),
            pool_size: 1,
        },
    )
    .unwrap();
    let egress = gateway().egress(sales_spec(|_| {}));
    // A cross join of the view with itself four times: far more work than 200 ms allows.
    let sql = "SELECT COUNT(*) FROM deals a, deals b, deals c, deals d, deals e";
    let e = engine.query(&egress, &ctx("frank@example.com", "admin"), "deals", sql, &[]).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Timeout, "{e}");
    // The connection is usable again, and not stuck in the failed transaction.
    let ok = engine
        .query(&egress, &ctx("frank@example.com", "admin"), "deals", "SELECT COUNT(*) AS n FROM deals", &[])
        .await
        .unwrap();
    assert_eq!(ok.rows[0][0], 120);
}

#[tokio::test]
async fn two_hundred_alternating_callers_on_one_pool_never_see_anothers_rows() {
    let schema = TestSchema::new().await;
    let space = postgres_space(&schema, 4).await;
    let callers = [
        ("alice@example.com", "west_sales"),
        ("bob@example.com", "east_sales"),
        ("mallory@example.com", ""),
        ("dave@example.com", "executive"),
    ];
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..200 {
        let (email, role) = callers[i % callers.len()];
        let space = space.clone();
        let question = if i % 3 == 0 { "top 5 deals by amount" } else { "average margin by region" };
        tasks.spawn(async move { (email, role, question, ask(&space, email, role, question).await) });
    }
    let mut answered = 0;
    while let Some(joined) = tasks.join_next().await {
        let (email, role, question, out) = joined.unwrap();
        let data = out.data.unwrap();
        let seen = regions(&data);
        let allowed: &[&str] = match role {
            "west_sales" => &["West"],
            "east_sales" => &["East"],
            "" => &[],
            _ => &["Central", "East", "West"],
        };
        assert!(seen.iter().all(|r| allowed.contains(&r.as_str())), "{email} saw {seen:?}: {question}");
        if question.contains("by region") {
            assert_eq!(seen, allowed, "{email}: {question}");
        }
        if question.contains("margin") {
            let margins = column(&data, "avg_margin");
            assert_eq!(margins.iter().all(Value::is_null), role != "executive", "{email}: {margins:?}");
        }
        answered += 1;
    }
    assert_eq!(answered, 200);
}

#[test]
fn postgres_settings_errors_name_the_field() {
    let check = |edit: &dyn Fn(&mut toml::Table)| {
        let spec = sales_spec(|t| {
            t.remove("database");
            t.insert("engine".into(), "postgres".into());
            t.insert("url".into(), "postgres://postgres@127.0.0.1/test".into());
            t.insert("schema".into(), "sales".into());
            edit(t);
        });
        genie::check(&spec, Path::new(".")).err().map(|e| e.message)
    };
    assert_eq!(check(&|_| {}), None);
    assert!(
        check(&|t| {
            t.remove("url");
        })
        .unwrap()
        .starts_with("genie.url")
    );
    assert!(
        check(&|t| {
            t.remove("schema");
        })
        .unwrap()
        .starts_with("genie.schema")
    );
    assert!(
        check(&|t| {
            t.insert("schema".into(), "a; drop".into());
        })
        .unwrap()
        .starts_with("genie.schema")
    );
    assert!(
        check(&|t| {
            t.insert("database".into(), "sales.db".into());
        })
        .unwrap()
        .starts_with("genie.database")
    );
    assert!(
        check(&|t| {
            t.insert("pool_size".into(), 0.into());
        })
        .unwrap()
        .starts_with("genie.pool_size")
    );
    let e = genie::build(
        sales_spec(|t| {
            t.remove("database");
            t.insert("engine".into(), "postgres".into());
            t.insert("url".into(), "env:SWITCHBOARD_TEST_NO_SUCH_VARIABLE".into());
            t.insert("schema".into(), "sales".into());
        }),
        gateway().egress(sales_spec(|_| {})),
        Path::new("."),
        None,
    )
    .err()
    .unwrap();
    assert!(e.message.contains("SWITCHBOARD_TEST_NO_SUCH_VARIABLE"), "{}", e.message);
}

/// A SQL tool over the demo's `deals` view, on `engine` (a `[tool]` table fragment).
fn rep_tool(engine: &str) -> Arc<AgentSpec> {
    let table = format!(
        r#"{engine}
views = ["deals"]
sql = "SELECT COUNT(*) AS deals, COALESCE(SUM(amount), 0) AS revenue FROM deals WHERE rep = :rep AND amount >= :min_amount"
answer = "{{rep}} has {{deals}} deals worth ${{revenue}} that you can see."

[[parameters]]
name = "rep"
type = "text"
required = true
choices = ["Maria Lopez", "Daniel Kim", "Grace Chen"]

[[parameters]]
name = "min_amount"
type = "number"
default = 0
"#
    );
    let parsed: toml::Table = toml::from_str(&table).unwrap();
    Arc::new(AgentSpec {
        name: "rep_revenue".into(),
        kind: AgentKind::Tool,
        description: "Revenue of one sales rep".into(),
        examples: Vec::new(),
        credential: CredentialSpec {
            mode: CredentialMode::Obo,
            scopes: Vec::new(),
            audience: None,
            secret: None,
        },
        allowed_roles: None,
        timeout_ms: None,
        connection: None,
        settings: serde_json::to_value(parsed).unwrap(),
        tool_roles: None,
        guardrails: None,
    })
}

#[tokio::test]
async fn a_sql_tool_binds_its_parameters_on_postgresql_under_the_same_filters() {
    let schema = TestSchema::new().await;
    install_demo(schema.base_url(), schema.name()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("sales.db");
    create_database(&db, &std::fs::read_to_string(repo_root().join("data/sales.sql")).unwrap()).unwrap();
    let on_pg = rep_tool(&format!(
        "engine = \"postgres\"\nurl = \"{}\"\nschema = \"{}\"\nrole = \"switchboard_reader\"",
        schema.base_url(),
        schema.name()
    ));
    let on_sqlite = rep_tool(&format!("database = {:?}", db.display().to_string()));
    let build = |spec: Arc<AgentSpec>| {
        switchboard_agents::tool::build(spec.clone(), gateway().egress(spec), Path::new("."), None).unwrap()
    };
    let (pg, lite) = (build(on_pg), build(on_sqlite));
    let mut answers = Vec::new();
    for (email, role) in [
        ("alice@example.com", "west_sales"),
        ("bob@example.com", "east_sales"),
        ("carol@example.com", "managers"),
    ] {
        for question in ["revenue of Maria Lopez", "revenue of Maria Lopez on deals of at least 50000"] {
            let a = ask(&pg, email, role, question).await;
            let b = ask(&lite, email, role, question).await;
            assert_eq!(a.text, b.text, "{email}: {question}");
            assert!(a.text.starts_with("Maria Lopez has "), "{}", a.text);
            answers.push(a.text);
            // Maria sells in the West: bob's row filter hides all of her deals.
            if role == "east_sales" {
                assert!(answers.last().unwrap().contains("has 0 deals"), "{answers:?}");
            } else {
                assert!(!answers.last().unwrap().contains("has 0 deals"), "{answers:?}");
            }
        }
    }
    // The amount parameter was bound: alice's two answers differ.
    assert_ne!(answers[0], answers[1], "{answers:?}");
}

#[tokio::test]
async fn an_abandoned_query_is_stopped_and_its_connection_never_serves_another_caller() {
    let schema = TestSchema::new().await;
    install_demo(schema.base_url(), schema.name()).await.unwrap();
    let engine = PgEngine::new(
        "genie.url",
        schema.base_url(),
        PgOptions {
            schema: schema.name().to_string(),
            role: Some("switchboard_reader".into()),
            exposed: Exposed { views: vec!["deals".into()], tables: Vec::new() },
            max_rows: 10,
            // Far longer than the test waits: only the cancellation can stop the query in time.
            statement_timeout: Duration::from_secs(120),
            pool_size: 1,
        },
    )
    .unwrap();
    let egress = gateway().egress(sales_spec(|_| {}));
    let marker = format!("abandoned_{}", schema.name());
    let slow = format!("SELECT COUNT(*) AS {marker} FROM deals a, deals b, deals c, deals d, deals e");
    let dave = ctx("dave@example.com", "executive");
    let cancel = dave.cancel.clone();
    let running = tokio::spawn({
        let (engine, egress, slow) = (engine.clone(), egress.clone(), slow.clone());
        async move { engine.query(&egress, &dave, "deals", &slow, &[]).await }
    });
    let active = |marker: String| async move { running_statements(&marker).await > 0 };
    let started = std::time::Instant::now();
    while !active(marker.clone()).await {
        assert!(started.elapsed() < Duration::from_secs(20), "the slow query never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cancel.cancel();
    assert_eq!(running.await.unwrap().unwrap_err().kind, ErrorKind::Cancelled);
    // The server stops the statement well before its two-minute timeout.
    let stopped = std::time::Instant::now();
    while active(marker.clone()).await {
        assert!(stopped.elapsed() < Duration::from_secs(20), "the abandoned query kept running");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The one-connection pool serves the next callers from a fresh connection, each as itself.
    let count = "SELECT COUNT(*) AS n FROM deals";
    for (email, role, visible) in [("mallory@example.com", "", 0), ("alice@example.com", "west_sales", 40)] {
        let result = engine.query(&egress, &ctx(email, role), "deals", count, &[]).await.unwrap();
        assert_eq!(result.rows[0][0], visible, "{email}");
    }
}

/// How many server sessions are running a statement that mentions `marker`.
async fn running_statements(marker: &str) -> i64 {
    let client = switchboard_testkit::pg::connect(&switchboard_testkit::pg::base_url()).await;
    let row = client
        .query_one(
            "SELECT COUNT(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE '%' || $1 || '%' AND pid <> pg_backend_pid()",
            &[&marker],
        )
        .await
        .unwrap();
    row.get(0)
}
