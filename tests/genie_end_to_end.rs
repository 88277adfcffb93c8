//! A Databricks Genie space behind the real `switchboard serve`, configured by files alone: the
//! demo's `sales` agent pointed at a local Genie Conversation API through a connection. The
//! caller's own token (obo) is what Genie receives, the answer carries Genie's SQL and table, and
//! a follow-up in the same thread continues the same Genie conversation.

use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;
use switchboard_testkit::genie::{GenieServer, Reply};
use switchboard_testkit::{Serve, run_cli};

fn cli(args: &[&str]) -> String {
    run_cli(Path::new(env!("CARGO_BIN_EXE_switchboard")), args, &[])
}

const SALES_ON_GENIE: &str = r#"name = "sales"
kind = "genie"
description = "Sales analytics over deals: revenue, bookings, deal counts and margins by region (West, East, Central), sales rep, account, stage and close month."
examples = ["total revenue by region", "revenue by rep", "deal count by stage"]
connection = "databricks"

[credential]
mode = "obo"
scopes = ["genie"]

[genie]
engine = "databricks"
space_id = "01f0sales"
poll_initial_ms = 20
poll_max_ms = 100
"#;

async fn ask(http: &reqwest::Client, url: &str, token: &str, messages: Value) -> Value {
    let response = http
        .post(format!("{url}/v1/chat/completions"))
        .bearer_auth(token)
        .json(&json!({"model": "switchboard", "messages": messages}))
        .send()
        .await
        .expect("the request completes");
    let status = response.status().as_u16();
    let body: Value = response.json().await.expect("a JSON body");
    assert_eq!(status, 200, "{body}");
    body
}

fn answer(body: &Value) -> String {
    body["choices"][0]["message"]["content"].as_str().unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_genie_space_answers_as_the_caller_through_the_served_runtime() {
    let genie = GenieServer::start(|ask| {
        if ask.follow_up {
            return Reply::table(
                "SELECT rep, SUM(amount) AS revenue FROM main.sales.deals GROUP BY rep",
                &["rep", "revenue"],
                vec![vec![json!("Maria Lopez"), json!(900)]],
            );
        }
        Reply::table(
            "SELECT region, SUM(amount) AS revenue FROM main.sales.deals GROUP BY region",
            &["region", "revenue"],
            vec![vec![json!("West"), json!(2240000)]],
        )
    })
    .await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("demo");
    let dir_str = dir.to_str().expect("utf-8 path");
    cli(&["init", dir_str]);
    let config = dir.join("switchboard.toml");
    let text = std::fs::read_to_string(&config).expect("init wrote switchboard.toml");
    let connection = format!(
        "[[connections]]\nname = \"databricks\"\nbase_url = \"{}\"\nauth = \"caller\"\nallow_insecure_loopback = true\n\
         grants = [\"west_sales\", \"east_sales\", \"managers\", \"executive\", \"finance\", \"admin\"]\n\n[demo]\n",
        genie.url
    );
    std::fs::write(&config, text.replacen("[demo]\n", &connection, 1)).expect("config");
    std::fs::write(dir.join("agents/sales.toml"), SALES_ON_GENIE).expect("agent");
    let config_str = config.to_str().expect("utf-8 path");
    cli(&["validate", "--config", config_str]);

    let server = Serve::start(Path::new(env!("CARGO_BIN_EXE_switchboard")), Some(&config), &[]).await;
    let alice = cli(&["token", "--config", config_str, "--as", "alice@example.com"]);
    let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().expect("client");

    let question = "total revenue by region";
    let first = ask(&http, server.url(), &alice, json!([{"role": "user", "content": question}])).await;
    let text = answer(&first);
    assert!(text.contains("| West |"), "{first}\n{}", server.log());
    assert!(text.contains("SELECT region, SUM(amount) AS revenue FROM main.sales.deals"), "{text}");
    let seen = genie.seen();
    assert!(!seen.is_empty());
    assert!(
        seen.iter().all(|s| s.authorization == format!("Bearer {alice}")),
        "Genie received alice's own token on every request"
    );
    assert_eq!(genie.conversation_count(), 1);

    // The client sends the thread back; the follow-up continues the same Genie conversation.
    let follow = ask(
        &http,
        server.url(),
        &alice,
        json!([
            {"role": "user", "content": question},
            {"role": "assistant", "content": text},
            {"role": "user", "content": "and by sales rep?"}
        ]),
    )
    .await;
    assert!(answer(&follow).contains("Maria Lopez"), "{follow}\n{}", server.log());
    assert_eq!(genie.conversation_count(), 1, "{}", server.log());
    assert!(!server.log().contains(&alice), "the token stays out of the server's log");
}
