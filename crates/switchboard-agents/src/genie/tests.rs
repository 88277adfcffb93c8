use super::*;
use crate::sql::testkit::*;
use serde_json::{Value, json};
use switchboard_core::{AgentKind, AuditDecision, CredentialMode, HopKind};

/// The shipped `agents/sales.toml` over a fresh demo database.
fn sales(llm_url: Option<&str>) -> (tempfile::TempDir, GenieAgent, Arc<Recorder>) {
    let (dir, _db) = sales_dir();
    let spec = shipped_spec("sales.toml");
    let (egress, sink) = egress(spec.clone());
    let llm = llm_url.map(|url| LlmClient::new(egress.clone(), url, "fake-model"));
    let agent = GenieAgent::new(spec, egress, dir.path(), llm).unwrap();
    (dir, agent, sink)
}

async fn ask(agent: &GenieAgent, email: &str, role: &str, question: &str) -> AgentOutput {
    ask_after(agent, email, role, question, Vec::new()).await
}

async fn ask_after(
    agent: &GenieAgent,
    email: &str,
    role: &str,
    question: &str,
    history: Vec<Message>,
) -> AgentOutput {
    let input = AgentInput { history, ..AgentInput::new(question) };
    agent.invoke(&ctx(email, role), &input).await.unwrap()
}

fn data(out: &AgentOutput) -> &Value {
    out.data.as_ref().expect("a table answer")
}

fn column(out: &AgentOutput, name: &str) -> Vec<Value> {
    let d = data(out);
    let i = d["columns"]
        .as_array()
        .unwrap()
        .iter()
        .position(|c| c == name)
        .unwrap_or_else(|| panic!("no column {name} in {}", d["columns"]));
    d["rows"].as_array().unwrap().iter().map(|r| r[i].clone()).collect()
}

#[tokio::test]
async fn revenue_by_region_follows_the_callers_row_filter() {
    let (_dir, agent, sink) = sales(None);
    let west = ask(&agent, "alice@example.com", "west_sales", "total revenue by region").await;
    assert_eq!(column(&west, "region"), vec![json!("West")]);
    assert_eq!(column(&west, "revenue"), vec![json!(2_240_000)]);
    assert!(west.text.contains("| West | 2,240,000 |"), "{}", west.text);

    let east = ask(&agent, "bob@example.com", "east_sales", "total revenue by region").await;
    assert_eq!(column(&east, "region"), vec![json!("East")]);

    let all = ask(&agent, "carol@example.com", "managers", "total revenue by region").await;
    assert_eq!(column(&all, "region"), vec![json!("West"), json!("East"), json!("Central")]);
    assert_eq!(
        data(&all)["sql"].as_str().unwrap().lines().next().unwrap(),
        "SELECT \"region\" AS \"region\", SUM(amount) AS \"revenue\""
    );

    // Each question was one governed SQL hop, run as the caller.
    let audit = sink.audit.lock().unwrap();
    assert_eq!(audit.len(), 3);
    assert!(audit.iter().all(|a| a.hop == HopKind::Sql && a.target == "deals"));
    assert_eq!(audit[0].principal, "alice@example.com");
    assert_eq!(audit[0].decision, AuditDecision::Allowed);
}

#[tokio::test]
async fn margins_are_masked_for_managers_and_real_for_finance() {
    let (_dir, agent, _) = sales(None);
    let q = "show the margin on the top 5 deals";
    let carol = ask(&agent, "carol@example.com", "managers", q).await;
    assert_eq!(data(&carol)["columns"], json!(["id", "account", "amount", "margin_pct"]));
    assert_eq!(column(&carol, "id"), [54, 8, 39, 41, 6].map(|i| json!(i)).to_vec());
    assert!(column(&carol, "margin_pct").iter().all(Value::is_null));
    assert!(carol.text.contains("| 54 | Aperture Labs | 151,300 | masked |"), "{}", carol.text);
    assert!(carol.text.contains("hidden from your role"));

    let erin = ask(&agent, "erin@example.com", "finance", q).await;
    assert_eq!(column(&erin, "margin_pct")[0], json!(36.0));
    assert!(erin.text.contains("| 54 | Aperture Labs | 151,300 | 36 |"), "{}", erin.text);
    assert!(!erin.text.contains("masked"));

    let avg = ask(&agent, "carol@example.com", "managers", "average margin by region").await;
    assert!(column(&avg, "avg_margin").iter().all(Value::is_null));
    assert!(avg.text.contains("| masked |"));
}

#[tokio::test]
async fn the_semantic_layer_answers_the_demo_questions() {
    let (_dir, agent, _) = sales(None);
    let carol = |q: &'static str| ask(&agent, "carol@example.com", "managers", q);

    let by_rep = carol("revenue by rep").await;
    assert_eq!(data(&by_rep)["total_rows"], json!(9));
    let revenue: Vec<i64> = column(&by_rep, "revenue").iter().map(|v| v.as_i64().unwrap()).collect();
    assert!(revenue.windows(2).all(|w| w[0] >= w[1]), "{revenue:?}");

    let stages = carol("deal count by stage").await;
    assert_eq!(data(&stages)["total_rows"], json!(5));
    let counts: i64 = column(&stages, "deal_count").iter().map(|v| v.as_i64().unwrap()).sum();
    assert_eq!(counts, 120);
    assert_eq!(column(&stages, "stage")[0], json!("won"));

    let top = carol("top 5 deals by amount").await;
    assert_eq!(column(&top, "amount")[0], json!(151_300));
    assert_eq!(data(&top)["total_rows"], json!(5));
    assert!(data(&top)["columns"].as_array().unwrap().contains(&json!("rep")));

    let top3 = carol("what are the 3 biggest deals?").await;
    assert_eq!(column(&top3, "id"), vec![json!(54), json!(8), json!(39)]);

    let west = carol("revenue in the West region").await;
    assert_eq!(data(&west)["columns"], json!(["revenue"]));
    assert_eq!(column(&west, "revenue"), vec![json!(2_240_000)]);

    let won = carol("won deals").await;
    assert_eq!(data(&won)["total_rows"], json!(36));
    assert!(column(&won, "stage").iter().all(|s| s == "won"));

    let won_by_region = carol("revenue from won deals by region").await;
    assert_eq!(data(&won_by_region)["total_rows"], json!(3));
    assert!(data(&won_by_region)["sql"].as_str().unwrap().contains("WHERE \"stage\" = 'won'"));

    let reps = carol("top 3 reps by revenue in the East").await;
    assert_eq!(data(&reps)["total_rows"], json!(3));
    assert!(data(&reps)["sql"].as_str().unwrap().contains("LIMIT 3"));

    let months = carol("revenue by month").await;
    let m = column(&months, "close_month");
    assert_eq!(m[0], json!("2025-01"));
    assert!(m.windows(2).all(|w| w[0].as_str() < w[1].as_str()));
}

#[tokio::test]
async fn results_over_the_cap_say_how_many_rows_there_were() {
    let (_dir, agent, _) = sales(None);
    let out = ask(&agent, "frank@example.com", "admin", "list deals").await;
    let d = data(&out);
    assert_eq!(d["rows"].as_array().unwrap().len(), 50);
    assert_eq!(d["total_rows"], json!(120));
    assert_eq!(d["truncated"], json!(true));
    assert!(out.text.contains("(showing 50 of 120 rows)"), "{}", out.text);
}

#[tokio::test]
async fn follow_ups_refine_the_previous_plan() {
    let (_dir, agent, _) = sales(None);
    let carol = "carol@example.com";
    let first = ask(&agent, carol, "managers", "total revenue by region").await;
    assert!(first.text.contains("Interpreted as: revenue by region"), "{}", first.text);
    let history = vec![
        Message::user("total revenue by region"),
        Message::assistant(first.text.clone(), Some("sales".into())),
    ];
    let top3 = ask_after(&agent, carol, "managers", "now only the top 3", history).await;
    assert!(data(&top3)["sql"].as_str().unwrap().ends_with("LIMIT 3"));
    assert_eq!(data(&top3)["columns"], json!(["region", "revenue"]));
    assert!(top3.text.contains("Interpreted as: revenue by region, top 3"));

    // The refined answer is itself refinable, and the limit bites where there are more rows.
    let history = vec![Message::assistant(top3.text.clone(), Some("sales".into()))];
    let top1 = ask_after(&agent, carol, "managers", "and just the top 1", history).await;
    assert_eq!(column(&top1, "region"), vec![json!("West")]);

    let by_rep = ask(&agent, carol, "managers", "revenue by rep").await;
    let history = vec![Message::assistant(by_rep.text, Some("sales".into()))];
    let top3 = ask_after(&agent, carol, "managers", "now only the top 3", history.clone()).await;
    assert_eq!(data(&top3)["total_rows"], json!(3));
    assert_eq!(data(&top3)["columns"], json!(["rep", "revenue"]));
    let east = ask_after(&agent, carol, "managers", "what about the East?", history).await;
    assert_eq!(data(&east)["total_rows"], json!(3));
    assert!(data(&east)["sql"].as_str().unwrap().contains("\"region\" = 'East'"));

    // Without a previous plan, a bare refinement is not a question.
    let lost = ask(&agent, carol, "managers", "now only the top 3").await;
    assert!(lost.data.is_none());
}

#[tokio::test]
async fn unanswerable_questions_get_a_list_of_what_can_be_asked() {
    let (_dir, agent, sink) = sales(None);
    let out = ask(&agent, "carol@example.com", "managers", "what's the weather in Paris?").await;
    assert!(out.data.is_none());
    assert!(out.text.contains("I can answer questions about deals"), "{}", out.text);
    assert!(out.text.contains("revenue"));
    assert!(out.text.contains("\"total revenue by region\""));
    assert!(sink.audit.lock().unwrap().is_empty(), "no query was run");
}

#[test]
fn canonical_plans_read_back_as_the_same_plan() {
    let (dir, _) = sales_dir();
    let spec = shipped_spec("sales.toml");
    let settings = Settings::from_spec(&spec, dir.path()).unwrap();
    let planner = Planner::new(settings.entity.unwrap(), settings.measures, settings.dimensions).unwrap();
    let mut questions: Vec<String> = spec.examples.clone();
    questions.extend(
        [
            "top 3 reps by revenue in the East",
            "bottom 2 regions by deal count",
            "largest won deals in the West and East",
            "how many deals by quarter",
            "revenue and average margin by stage sorted by average margin",
            "list deals for Maria Lopez",
        ]
        .map(String::from),
    );
    for q in &questions {
        let plan = planner.resolve(&planner.parse(q)).unwrap_or_else(|| panic!("{q} not understood"));
        let text = planner.describe(&plan);
        let again = planner.resolve(&planner.parse(&text)).unwrap();
        assert_eq!(planner.sql(&plan), planner.sql(&again), "{q} → {text}");
    }
}

#[tokio::test]
async fn a_valid_model_query_is_run_as_the_caller() {
    let sql = "SELECT region, COUNT(*) AS n FROM deals GROUP BY region ORDER BY region";
    let llm = fake_llm(json!({
        "role": "assistant",
        "content": format!("```sql\n{sql};\n```")
    }))
    .await;
    let (_dir, agent, sink) = sales(Some(llm.base_url()));
    let out = ask(&agent, "alice@example.com", "west_sales", "deals per region please").await;
    assert_eq!(data(&out)["sql"], json!(sql));
    // The view still filters: the model cannot widen what alice sees.
    assert_eq!(data(&out)["rows"], json!([["West", 40]]));
    let prompt = llm.requests()[0]["messages"][0]["content"].as_str().unwrap().to_string();
    assert!(prompt.contains("- deals(id, region, rep, account, stage, amount, margin_pct, close_date)"));
    assert!(!prompt.contains("deals_base"));
    let hops: Vec<HopKind> = sink.audit.lock().unwrap().iter().map(|a| a.hop).collect();
    assert_eq!(hops, vec![HopKind::Llm, HopKind::Sql]);
}

#[tokio::test]
async fn writes_and_base_table_queries_from_the_model_are_refused() {
    for (reply, why) in [
        ("DELETE FROM deals", "not a SELECT"),
        ("```sql\nSELECT * FROM deals_base\n```", "deals_base"),
        ("SELECT 1 FROM deals; DROP VIEW deals", "more than one statement"),
    ] {
        let llm = fake_llm(json!({"role": "assistant", "content": reply})).await;
        let (_dir, agent, sink) = sales(Some(llm.base_url()));
        let out = ask(&agent, "carol@example.com", "managers", "total revenue by region").await;
        assert!(out.text.contains("The model's SQL was refused"), "{}", out.text);
        assert!(out.text.contains(why), "{why}: {}", out.text);
        // Answered from the semantic layer instead, and the model's SQL never reached SQLite.
        let d = data(&out);
        assert!(d["sql"].as_str().unwrap().contains("SUM(amount)"));
        assert_eq!(d["total_rows"], json!(3));
        let sql_hops = sink.audit.lock().unwrap().iter().filter(|a| a.hop == HopKind::Sql).count();
        assert_eq!(sql_hops, 1);
    }
}

#[test]
fn settings_errors_name_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let mk = |settings: Value| spec("sales", AgentKind::Genie, CredentialMode::Obo, None, settings);
    let err =
        Settings::from_spec(&mk(json!({"database": "./x.db", "views": ["deals"]})), dir.path()).unwrap_err();
    assert_eq!(err.kind, ErrorKind::Config);
    assert!(err.message.starts_with("genie.database: file ./x.db does not exist"), "{err}");
    let err = Settings::from_spec(
        &mk(json!({"database": "x.db", "views": ["deals"], "colour": "red"})),
        dir.path(),
    )
    .unwrap_err();
    assert!(err.message.contains("unknown field `colour`"), "{err}");
    let err = Settings::from_spec(&mk(Value::Null), dir.path()).unwrap_err();
    assert!(err.message.contains("[genie] table is missing"), "{err}");

    let (dir, _) = sales_dir();
    let err = match GenieAgent::new(
        mk(json!({"database": "sales.db", "views": ["nope"]})),
        egress(mk(json!({}))).0,
        dir.path(),
        None,
    ) {
        Err(e) => e,
        Ok(_) => panic!("a missing view must be a config error"),
    };
    assert!(err.message.starts_with("genie.views: `nope` is not a table or view"), "{err}");
}

/// The shipped sales space on PostgreSQL (the demo installed into `schema`), with a model.
async fn sales_on_postgres(
    schema: &switchboard_testkit::pg::TestSchema,
    llm_url: &str,
) -> (GenieAgent, Arc<Recorder>) {
    crate::sql::pg::install_demo(schema.base_url(), schema.name()).await.unwrap();
    let mut spec = (*shipped_spec("sales.toml")).clone();
    let settings = spec.settings.as_object_mut().unwrap();
    settings.remove("database");
    settings.insert("engine".into(), json!("postgres"));
    settings.insert("url".into(), json!(schema.base_url()));
    settings.insert("schema".into(), json!(schema.name()));
    settings.insert("role".into(), json!("switchboard_reader"));
    let spec = Arc::new(spec);
    let (egress, sink) = egress(spec.clone());
    let llm = LlmClient::new(egress.clone(), llm_url, "fake-model");
    (GenieAgent::new(spec, egress, Path::new("."), Some(llm)).unwrap(), sink)
}

#[tokio::test]
async fn model_sql_in_the_postgresql_dialect_runs_under_row_level_security() {
    let schema = switchboard_testkit::pg::TestSchema::new().await;
    let sql = "SELECT region, COUNT(*)::int AS n FROM deals GROUP BY region ORDER BY region";
    let llm = fake_llm(json!({"role": "assistant", "content": format!("```sql\n{sql}\n```")})).await;
    let (agent, sink) = sales_on_postgres(&schema, llm.base_url()).await;
    let out = ask(&agent, "alice@example.com", "west_sales", "deals per region please").await;
    assert_eq!(data(&out)["sql"], json!(sql));
    // PostgreSQL's policy still filters: the model cannot widen what alice sees.
    assert_eq!(data(&out)["rows"], json!([["West", 40]]));
    let prompt = llm.requests()[0]["messages"][0]["content"].as_str().unwrap().to_string();
    assert!(prompt.contains("SQL for a PostgreSQL database"), "{prompt}");
    assert!(prompt.contains("- deals(id, region, rep, account, stage, amount, margin_pct, close_date)"));
    let hops: Vec<HopKind> = sink.audit.lock().unwrap().iter().map(|a| a.hop).collect();
    assert_eq!(hops, vec![HopKind::Llm, HopKind::Sql]);
}

#[tokio::test]
async fn model_sql_outside_the_view_is_refused_on_postgresql() {
    let schema = switchboard_testkit::pg::TestSchema::new().await;
    for (reply, why) in [
        ("SELECT * FROM deals_base", "deals_base"),
        ("SELECT rolname FROM pg_catalog.pg_authid", "pg_catalog.pg_authid"),
        ("SELECT * FROM public.deals", "public.deals"),
        ("UPDATE deals SET amount = 0", "not a SELECT"),
    ] {
        let llm = fake_llm(json!({"role": "assistant", "content": reply})).await;
        let (agent, sink) = sales_on_postgres(&schema, llm.base_url()).await;
        let out = ask(&agent, "carol@example.com", "managers", "total revenue by region").await;
        assert!(out.text.contains("The model's SQL was refused"), "{}", out.text);
        assert!(out.text.contains(why), "{why}: {}", out.text);
        // Answered from the semantic layer, in PostgreSQL, and the model's SQL never ran.
        assert_eq!(data(&out)["total_rows"], json!(3));
        let sql_hops = sink.audit.lock().unwrap().iter().filter(|a| a.hop == HopKind::Sql).count();
        assert_eq!(sql_hops, 1);
        // The next attempt installs into the same schema.
        schema
            .admin()
            .batch_execute(&format!("DROP SCHEMA {} CASCADE; CREATE SCHEMA {}", schema.name(), schema.name()))
            .await
            .unwrap();
    }
}
