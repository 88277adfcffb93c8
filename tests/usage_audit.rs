//! Usage accounting and the audit trail as an operator meets them, against real processes: a
//! `switchboard serve` with an LLM configured (the scripted model) and the PostgreSQL store in a
//! database of the test's own, then `switchboard usage`, `switchboard audit` and the demo's
//! `audit` agent reading that same store.

#[path = "common/durable.rs"]
#[allow(dead_code)] // the load and tally helpers are for the outage tests
mod durable;

use serde_json::{Value, json};
use std::path::Path;
use std::process::{Command, Output};
use switchboard_testkit::Serve;
use switchboard_testkit::llm::{Script, ScriptedLlm};
use switchboard_testkit::pg::TestDatabase;

const SCRIPT: &str = r#"
[default]
text = "Hotels are capped at $250 per night [1]."
"#;

const QUESTION: &str = "what is the hotel limit for travel";

fn cli(config: &Path, args: &[&str]) -> Output {
    Command::new(durable::bin())
        .args(args)
        .arg("--config")
        .arg(config)
        .env_remove("SWITCHBOARD_USER")
        .env_remove("SWITCHBOARD_HOME")
        .output()
        .expect("the switchboard binary runs")
}

fn json_of(out: &Output) -> Value {
    assert!(out.status.success(), "failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("no JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

/// Asks `question` as the holder of `token`; returns the request id and the response's `usage`.
async fn ask(server: &Serve, token: &str, question: &str, extra: Value) -> (String, Value) {
    let mut body = json!({"messages": [{"role": "user", "content": question}]});
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    let response = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", server.url()))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .expect("the server answers");
    let status = response.status();
    let id = response.headers()["x-request-id"].to_str().unwrap_or_default().to_string();
    let reply: Value = response.json().await.expect("a JSON body");
    assert_eq!(status, 200, "{reply}");
    (id, reply["usage"].clone())
}

fn totals_by_key(report: &Value) -> Vec<(String, u64, u64, u64)> {
    let rows = report["totals"].as_array().cloned().unwrap_or_default();
    rows.iter()
        .map(|t| {
            (
                t["key"].as_str().unwrap_or("").to_string(),
                t["requests"].as_u64().unwrap_or(0),
                t["prompt_tokens"].as_u64().unwrap_or(0),
                t["completion_tokens"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_audit_filters_and_the_audit_agent_read_the_configured_postgres_store() {
    let db = TestDatabase::new().await;
    let llm = ScriptedLlm::start(Script::from_toml(SCRIPT).expect("script")).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let llm_table = format!("[llm]\nbase_url = \"{}\"\nmodel = \"scripted\"\n", llm.base_url());
    let config = durable::demo_config(dir.path(), db.url(), &llm_table);
    let alice = durable::token(&config, "alice@example.com");
    let carol = durable::token(&config, "carol@example.com");
    let mut server = Serve::start(durable::bin(), Some(&config), &[]).await;

    let context = json!({"custom_inputs": {"usage_context": {"project": "apollo", "cost_center": "cc-7"}}});
    let (alice_request, alice_usage) = ask(&server, &alice, QUESTION, context).await;
    let (_, carol_usage_1) = ask(&server, &carol, QUESTION, json!({})).await;
    let (_, carol_usage_2) = ask(&server, &carol, QUESTION, json!({})).await;
    assert!(alice_usage["prompt_tokens"].as_u64().unwrap_or(0) > 0, "an LLM was used: {alice_usage}");
    // A usage_context that is not an object of strings is refused, naming the field.
    let bad = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", server.url()))
        .bearer_auth(&alice)
        .json(&json!({"messages": [{"role": "user", "content": QUESTION}],
                      "custom_inputs": {"usage_context": {"project": 7}}}))
        .send()
        .await
        .expect("the server answers");
    assert_eq!(bad.status(), 400);
    let bad: Value = bad.json().await.expect("an error body");
    assert_eq!(bad["error"]["param"], "custom_inputs.usage_context.project", "{bad}");
    let status = server.stop();
    assert!(status.success(), "graceful shutdown drains the queue: {status}");

    // Usage: each caller's totals are what their responses reported, and the context is kept.
    let by_user = json_of(&cli(&config, &["usage", "--by", "user", "--json"]));
    let tokens = |u: &Value, k: &str| u[k].as_u64().unwrap_or(0);
    let carol_prompt = tokens(&carol_usage_1, "prompt_tokens") + tokens(&carol_usage_2, "prompt_tokens");
    let carol_completion =
        tokens(&carol_usage_1, "completion_tokens") + tokens(&carol_usage_2, "completion_tokens");
    let mut users = totals_by_key(&by_user);
    users.sort();
    assert_eq!(
        users,
        vec![
            (
                "alice@example.com".to_string(),
                1,
                tokens(&alice_usage, "prompt_tokens"),
                tokens(&alice_usage, "completion_tokens")
            ),
            ("carol@example.com".to_string(), 2, carol_prompt, carol_completion),
        ],
        "{by_user}"
    );
    let by_model = json_of(&cli(&config, &["usage", "--by", "model", "--json"]));
    assert_eq!(totals_by_key(&by_model).iter().map(|t| t.0.as_str()).collect::<Vec<_>>(), ["scripted"]);
    let by_group = json_of(&cli(&config, &["usage", "--by", "group", "--json"]));
    let mut groups: Vec<String> = totals_by_key(&by_group).into_iter().map(|t| t.0).collect();
    groups.sort();
    assert_eq!(groups, ["managers", "west_sales"]);
    let future = json_of(&cli(&config, &["usage", "--since", "2999-01-01", "--json"]));
    assert_eq!(future["totals"][0]["calls"], 0, "{future}");
    let table = cli(&config, &["usage", "--by", "agent"]);
    assert!(table.status.success());
    assert!(String::from_utf8_lossy(&table.stdout).contains("prompt_tokens"));
    let bad_by = cli(&config, &["usage", "--by", "team"]);
    assert!(!bad_by.status.success());
    assert!(String::from_utf8_lossy(&bad_by.stderr).contains("user, group, agent, model"));

    let client = db.client().await;
    let rows = client
        .query("SELECT usage_context, model FROM usage WHERE request_id = $1", &[&alice_request])
        .await
        .expect("the usage table");
    assert!(!rows.is_empty(), "alice's request has usage rows");
    for row in rows {
        let context: Value = serde_json::from_str(row.get::<_, &str>(0)).expect("JSON");
        assert_eq!(context, json!({"project": "apollo", "cost_center": "cc-7"}));
        assert_eq!(row.get::<_, &str>(1), "scripted");
    }

    // Bob is denied the audit agent; the denial is in the PostgreSQL store's audit table.
    let bob = cli(
        &config,
        &["chat", "--json", "--as", "bob@example.com", "show recent denied requests in the audit log"],
    );
    assert_eq!(bob.status.code(), Some(3), "{}", String::from_utf8_lossy(&bob.stdout));

    // The audit filters, answered by the store's query.
    let denied = json_of(&cli(
        &config,
        &["audit", "--status", "access_denied", "--caller", "BOB@example.com", "--json"],
    ));
    let denied = denied.as_array().cloned().unwrap_or_default();
    assert!(!denied.is_empty());
    assert!(
        denied.iter().all(|r| r["caller_email"] == "bob@example.com" && r["decision"] == "access_denied")
    );
    assert!(denied.iter().any(|r| r["agent"] == "audit"));
    let policies = json_of(&cli(&config, &["audit", "--agent", "policies", "--limit", "100", "--json"]));
    let policies = policies.as_array().cloned().unwrap_or_default();
    assert!(policies.len() >= 3, "three answered questions reached policies: {policies:?}");
    assert!(policies.iter().all(|r| r["agent"] == "policies"));
    let carol_rows =
        json_of(&cli(&config, &["audit", "--caller", "carol@example.com", "--since", "1h", "--json"]));
    let carol_rows = carol_rows.as_array().cloned().unwrap_or_default();
    assert!(!carol_rows.is_empty());
    assert!(carol_rows.iter().all(|r| r["caller_email"] == "carol@example.com"));
    let none = json_of(&cli(&config, &["audit", "--since", "2999-01-01T00:00:00Z", "--json"]));
    assert_eq!(none, json!([]));
    let bad = cli(&config, &["audit", "--status", "denied"]);
    assert!(!bad.status.success());
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(stderr.contains("success, error, access_denied, rate_limited, blocked"), "{stderr}");
    let bad = cli(&config, &["audit", "--since", "yesterday"]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--since"));

    // The demo's audit agent, asked by an admin, reads the same PostgreSQL store: bob's denial.
    let frank = cli(&config, &["chat", "--json", "--as", "frank@example.com", "recent access denied events"]);
    let reply = json_of(&frank);
    assert_eq!(reply["agents"], json!(["audit"]), "{reply}");
    let answer = reply["answer"].as_str().unwrap_or_default();
    assert!(answer.contains("bob@example.com"), "the agent reads the configured store: {answer}");
    assert!(!answer.contains("No results"), "{answer}");
}
