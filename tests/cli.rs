//! The demo as a new user meets it: the real `switchboard` binary, a fresh data dir, the
//! acceptance questions of the foundation issue.

use serde_json::Value;
use std::collections::HashSet;
use std::process::{Command, Output};
use switchboard_testkit::Serve;

struct Demo {
    home: tempfile::TempDir,
    /// Whether the binary runs as the README's commands do: from a fresh working directory with
    /// no `SWITCHBOARD_HOME`, so the data dir is the relative `.switchboard`.
    relative: bool,
}

impl Demo {
    fn new() -> Self {
        Self { home: tempfile::tempdir().expect("tempdir"), relative: false }
    }

    fn in_working_dir() -> Self {
        Self { relative: true, ..Self::new() }
    }

    fn run(&self, args: &[&str]) -> Output {
        let mut command = Command::new(env!("CARGO_BIN_EXE_switchboard"));
        if self.relative {
            command.current_dir(self.home.path()).env_remove("SWITCHBOARD_HOME");
        } else {
            command.env("SWITCHBOARD_HOME", self.home.path());
        }
        command.args(args).env_remove("SWITCHBOARD_USER").output().expect("the switchboard binary runs")
    }

    /// `chat --json` as `who`; returns the parsed object and the exit code.
    fn chat(&self, who: &str, question: &str) -> (Value, i32) {
        let out = self.run(&["chat", "--json", "--as", who, question]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let json: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
            panic!(
                "chat --json printed no JSON ({e}): {stdout}\nstderr: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (json, out.status.code().unwrap_or(-1))
    }
}

fn sales_rows(reply: &Value) -> Vec<Value> {
    let step = reply["steps"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["agent"] == "sales"))
        .expect("a sales step");
    step["output"]["data"]["rows"].as_array().cloned().unwrap_or_default()
}

fn column(reply: &Value, name: &str) -> Vec<Value> {
    let step = reply["steps"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["agent"] == "sales"))
        .expect("a sales step");
    let columns = step["output"]["data"]["columns"].as_array().expect("columns");
    let i =
        columns.iter().position(|c| c == name).unwrap_or_else(|| panic!("no column {name} in {columns:?}"));
    sales_rows(reply).iter().map(|r| r[i].clone()).collect()
}

#[test]
fn revenue_by_region_is_row_filtered_per_caller() {
    let demo = Demo::new();
    let (alice, code) = demo.chat("alice@example.com", "total revenue by region");
    assert_eq!(code, 0);
    assert_eq!(alice["status"], "ok");
    assert_eq!(alice["agents"], serde_json::json!(["sales"]));
    let regions: Vec<Value> = column(&alice, "region");
    assert_eq!(regions, vec![Value::from("West")], "alice (west_sales) sees only the West");

    let (carol, _) = demo.chat("carol@example.com", "total revenue by region");
    let regions: HashSet<String> =
        column(&carol, "region").iter().filter_map(|v| v.as_str().map(String::from)).collect();
    assert_eq!(regions, ["West", "East", "Central"].into_iter().map(String::from).collect());
    let answer = carol["answer"].as_str().expect("answer");
    assert!(answer.contains("West") && answer.contains("East") && answer.contains("Central"), "{answer}");
}

#[test]
fn margins_are_masked_unless_the_role_may_see_them() {
    let demo = Demo::new();
    let (alice, _) = demo.chat("alice@example.com", "show the margin on the top 5 deals");
    let margins = column(&alice, "margin_pct");
    assert_eq!(margins.len(), 5);
    assert!(margins.iter().all(Value::is_null), "masked for west_sales: {margins:?}");
    assert!(alice["answer"].as_str().expect("answer").contains("masked"));

    let (erin, _) = demo.chat("erin@example.com", "show the margin on the top 5 deals");
    let margins = column(&erin, "margin_pct");
    assert_eq!(margins.len(), 5);
    assert!(margins.iter().all(Value::is_number), "real for finance: {margins:?}");
}

#[test]
fn a_policy_question_routes_to_policies_and_cites_the_document() {
    let demo = Demo::new();
    let (reply, _) = demo.chat("alice@example.com", "What is the hotel limit in the travel policy?");
    assert_eq!(reply["agents"], serde_json::json!(["policies"]));
    let citations = reply["steps"][0]["output"]["citations"].as_array().expect("citations");
    assert!(citations.iter().any(|c| c["id"] == "travel"), "{citations:?}");
    let answer = reply["answer"].as_str().expect("answer");
    assert!(answer.contains("$250") && answer.contains("Travel Policy"), "{answer}");
}

#[test]
fn a_two_part_question_fans_out_concurrently_under_one_request() {
    let demo = Demo::new();
    let (reply, code) = demo.chat(
        "carol@example.com",
        "Total revenue by region, and who must approve a 25% discount on a 40000 deal?",
    );
    assert_eq!(code, 0);
    let mut agents: Vec<&str> =
        reply["agents"].as_array().expect("agents").iter().filter_map(Value::as_str).collect();
    agents.sort();
    assert_eq!(agents, ["deal_desk", "sales"]);
    let answer = reply["answer"].as_str().expect("answer");
    assert!(answer.contains("Central"), "the sales part: {answer}");
    assert!(answer.contains("VP of Sales"), "the deal desk part: {answer}");

    let spans = reply["spans"].as_array().expect("spans");
    let agent_span = |name: &str| {
        spans
            .iter()
            .find(|s| s["name"] == format!("invoke_agent {name}"))
            .unwrap_or_else(|| panic!("span for {name}"))
    };
    let (a, b) = (agent_span("sales"), agent_span("deal_desk"));
    let (a0, a1) = (a["start_unix_nano"].as_u64().expect("start"), a["end_unix_nano"].as_u64().expect("end"));
    let (b0, b1) = (b["start_unix_nano"].as_u64().expect("start"), b["end_unix_nano"].as_u64().expect("end"));
    assert!(
        a0 < b1 && b0 < a1,
        "the two agent spans overlap in time: sales {a0}..{a1}, deal_desk {b0}..{b1}"
    );
    assert_eq!(a["parent_id"], b["parent_id"], "both are children of the supervisor span");
}

#[test]
fn a_question_matching_no_agent_gets_a_clarifying_question() {
    let demo = Demo::new();
    let (reply, code) = demo.chat("carol@example.com", "what's the weather on mars?");
    assert_eq!(code, 0);
    assert_eq!(reply["status"], "clarify");
    assert!(reply["answer"].as_str().expect("answer").contains("Did you mean"), "{}", reply["answer"]);
    assert_eq!(reply["agents"], serde_json::json!([]));
}

#[test]
fn bob_is_denied_the_audit_agent_and_the_denial_is_audited() {
    let demo = Demo::new();
    let (reply, code) = demo.chat("bob@example.com", "show recent denied requests in the audit log");
    assert_eq!(reply["status"], "denied");
    assert_eq!(code, 3, "a denied run exits 3");
    let request_id = reply["request_id"].as_str().expect("request id").to_string();

    let out = demo.run(&["audit", "--json", "--request", &request_id]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rows: Value = serde_json::from_slice(&out.stdout).expect("audit --json");
    let rows = rows.as_array().expect("rows");
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["agent"], "audit");
    assert_eq!(rows[0]["decision"], "access_denied");
    assert_eq!(rows[0]["caller_email"], "bob@example.com");
    assert_eq!(rows[0]["caller_roles"], "east_sales");

    // The audit agent itself, asked by an admin, reads that denial back out of the log.
    let (frank, _) = demo.chat("frank@example.com", "show recent denied requests");
    assert_eq!(frank["agents"], serde_json::json!(["audit"]));
    assert!(frank["answer"].as_str().expect("answer").contains("bob@example.com"), "{}", frank["answer"]);
}

#[test]
fn the_audit_agent_reads_the_store_under_the_default_relative_data_dir() {
    // A relative data dir used to be joined onto itself when the audit agent was pointed at the
    // store (.switchboard/.switchboard/switchboard.db), so start-up failed from a fresh clone.
    let demo = Demo::in_working_dir();
    let (denied, _) = demo.chat("bob@example.com", "show recent denied requests in the audit log");
    assert_eq!(denied["status"], "denied", "{denied}");
    assert!(demo.home.path().join(".switchboard/switchboard.db").is_file());
    let (frank, code) = demo.chat("frank@example.com", "show recent denied requests");
    assert_eq!(code, 0, "{frank}");
    assert_eq!(frank["agents"], serde_json::json!(["audit"]));
    assert!(frank["answer"].as_str().expect("answer").contains("bob@example.com"), "{}", frank["answer"]);
}

#[test]
fn every_step_is_a_span_and_every_hop_an_audit_row_under_one_request_id() {
    let demo = Demo::new();
    let (reply, _) = demo.chat(
        "alice@example.com",
        "Total revenue by region, and who must approve a 25% discount on a 40000 deal?",
    );
    let request_id = reply["request_id"].as_str().expect("request id").to_string();
    let spans = reply["spans"].as_array().expect("spans");
    let ids: HashSet<&str> = spans.iter().filter_map(|s| s["span_id"].as_str()).collect();
    let roots: Vec<&Value> = spans.iter().filter(|s| s["parent_id"].is_null()).collect();
    assert_eq!(roots.len(), 1, "one root span");
    assert_eq!(roots[0]["name"], "invoke_agent switchboard");
    for s in spans {
        if let Some(parent) = s["parent_id"].as_str() {
            assert!(ids.contains(parent), "span {} has a parent in the same request", s["name"]);
        }
        assert_eq!(s["attributes"]["switchboard.request_id"], request_id.as_str());
        assert_eq!(s["attributes"]["switchboard.caller.email"], "alice@example.com");
    }
    for name in ["route", "invoke_agent sales", "invoke_agent deal_desk"] {
        let span = spans.iter().find(|s| s["name"] == name).unwrap_or_else(|| panic!("missing span {name}"));
        // MLflow's inputs and outputs are JSON text.
        for key in ["mlflow.spanInputs", "mlflow.spanOutputs"] {
            let text = span["attributes"][key].as_str().unwrap_or_else(|| panic!("{name} lacks {key}"));
            serde_json::from_str::<Value>(text).unwrap_or_else(|e| panic!("{key} of {name}: {e}"));
        }
    }
    assert_eq!(roots[0]["attributes"]["mlflow.trace.user"], "alice@example.com");
    assert!(roots[0]["attributes"].get("mlflow.trace.session").is_none(), "no thread, no session");

    let out = demo.run(&["audit", "--json", "--request", &request_id]);
    let rows: Value = serde_json::from_slice(&out.stdout).expect("audit --json");
    let rows = rows.as_array().expect("rows");
    // sales: agent + sql; deal_desk: agent + tool + sql.
    assert_eq!(rows.len(), 5, "{rows:#?}");
    let hop_spans =
        spans.iter().filter(|s| s["name"] != "route" && s["name"] != "invoke_agent switchboard").count();
    assert_eq!(rows.len(), hop_spans, "one audit row per hop span");
    for row in rows {
        assert_eq!(row["caller_email"], "alice@example.com");
        assert_eq!(row["caller_roles"], "west_sales");
        assert!(ids.contains(row["span_id"].as_str().expect("span id")), "the row's span is in the trace");
    }

    let out = demo.run(&["trace", &request_id]);
    let tree = String::from_utf8_lossy(&out.stdout);
    assert!(tree.starts_with("invoke_agent switchboard"), "{tree}");
    assert!(tree.contains("├─ invoke_agent sales") || tree.contains("└─ invoke_agent sales"), "{tree}");
    assert!(tree.contains(" ms "), "durations are shown: {tree}");
}

#[test]
fn validate_rejects_twenty_one_agents_naming_the_limit() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("agents")).expect("agents");
    std::fs::create_dir_all(dir.path().join("docs")).expect("docs");
    std::fs::write(dir.path().join("docs/a.md"), "# A\n\ntext\n").expect("doc");
    std::fs::write(dir.path().join("switchboard.toml"), "data_dir = \".\"\n").expect("main");
    for i in 0..21 {
        std::fs::write(
            dir.path().join(format!("agents/a{i}.toml")),
            format!("name = \"a{i}\"\nkind = \"knowledge\"\ndescription = \"Docs.\"\n[knowledge]\npath = \"docs\"\n"),
        )
        .expect("agent");
    }
    let demo = Demo::new();
    let config = dir.path().join("switchboard.toml");
    let out = demo.run(&["validate", "--config", config.to_str().expect("utf-8 path")]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("limit of 20"), "{stderr}");
    assert!(stderr.contains("agents"), "names the folder: {stderr}");

    let ok = demo.run(&["validate"]);
    assert!(ok.status.success(), "the built-in demo validates: {}", String::from_utf8_lossy(&ok.stderr));
}

#[test]
fn a_function_tool_validates_with_a_note_and_the_binary_refuses_to_run_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("agents")).expect("agents");
    std::fs::write(dir.path().join("switchboard.toml"), "data_dir = \".\"\n").expect("main");
    std::fs::write(
        dir.path().join("agents/orders.toml"),
        "name = \"orders\"\nkind = \"tool\"\ndescription = \"Order status by id.\"\n\
         [tool.function]\nname = \"lookup_order\"\n",
    )
    .expect("agent");
    let demo = Demo::new();
    let config = dir.path().join("switchboard.toml");
    let config = config.to_str().expect("utf-8 path");

    let out = demo.run(&["validate", "--config", config]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        stdout.contains("`orders` calls `lookup_order`") && stdout.contains("load_with_functions"),
        "{stdout}"
    );

    let out = demo.run(&["chat", "--config", config, "--as", "alice@example.com", "status of ORD-1"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("tool.function.name `lookup_order` is not a registered function"), "{stderr}");
}

#[test]
fn bad_input_gets_a_clear_error() {
    let demo = Demo::new();
    let out = demo.run(&["chat", "--as", "mallory@example.com", "total revenue by region"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("unknown identity `mallory@example.com`") && stderr.contains("alice@example.com"),
        "{stderr}"
    );

    let out = demo.run(&["chat", "total revenue by region"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--as EMAIL"));

    let out = demo.run(&["trace", "no-such-request"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no spans recorded for request no-such-request"));
}

/// The tickets the `tickets` agent listed, as (id, owner) pairs.
fn tickets_of(reply: &Value) -> Vec<(String, String)> {
    let step = reply["steps"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["agent"] == "tickets"))
        .unwrap_or_else(|| panic!("a tickets step in {reply}"));
    step["output"]["data"]["structured_content"]["tickets"]
        .as_array()
        .unwrap_or_else(|| panic!("structured tickets in {step}"))
        .iter()
        .map(|t| (t["id"].as_str().unwrap().to_string(), t["owner"].as_str().unwrap().to_string()))
        .collect()
}

const USERS: [&str; 6] = [
    "alice@example.com",
    "bob@example.com",
    "carol@example.com",
    "dave@example.com",
    "erin@example.com",
    "frank@example.com",
];

#[test]
fn each_demo_user_sees_only_their_own_tickets_through_the_mcp_server() {
    let demo = Demo::new();
    let mut seen_ids = HashSet::new();
    for user in USERS {
        let (reply, code) = demo.chat(user, "list all my support tickets, open and closed");
        assert_eq!((reply["status"].as_str(), code), (Some("ok"), 0), "{user}: {reply}");
        assert_eq!(reply["agents"], serde_json::json!(["tickets"]), "{user}");
        let tickets = tickets_of(&reply);
        assert!(!tickets.is_empty(), "{user} has tickets in the demo");
        for (id, owner) in tickets {
            assert_eq!(owner, user, "{user} was shown {id}, owned by {owner}");
            assert!(seen_ids.insert(id.clone()), "{id} was shown to two users");
        }
    }
}

#[test]
fn revoking_use_connection_is_a_kill_switch_and_granting_restores_it() {
    let demo = Demo::new();
    let question = "what are my open tickets?";
    let (reply, code) = demo.chat("bob@example.com", question);
    assert_eq!((reply["status"].as_str(), code), (Some("ok"), 0), "{reply}");

    let out = demo.run(&["revoke", "use-connection", "tickets_mcp", "--from", "east_sales"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("revoked USE CONNECTION on tickets_mcp from east_sales")
    );

    let (reply, code) = demo.chat("bob@example.com", question);
    assert_eq!((reply["status"].as_str(), code), (Some("denied"), 3), "{reply}");
    let answer = reply["answer"].as_str().unwrap();
    assert!(answer.contains("USE CONNECTION") && answer.contains("tickets_mcp"), "{answer}");
    let (reply, _) = demo.chat("alice@example.com", question);
    assert_eq!(reply["status"], "ok", "other roles keep their grant: {reply}");

    // The denial and the revoke are both in the audit log.
    let out = demo.run(&["audit", "--json", "--limit", "50"]);
    let rows: Value = serde_json::from_slice(&out.stdout).expect("audit --json");
    let rows = rows.as_array().expect("rows");
    assert!(
        rows.iter()
            .any(|r| r["hop"] == "revoke" && r["target"] == "tickets_mcp" && r["principal"] == "east_sales")
    );
    assert!(rows.iter().any(|r| r["decision"] == "access_denied" && r["caller_email"] == "bob@example.com"));

    let out = demo.run(&["grants", "tickets_mcp"]);
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(listing.contains("west_sales") && !listing.contains("east_sales"), "{listing}");

    let out = demo.run(&["grant", "use-connection", "tickets_mcp", "--to", "east_sales"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (reply, code) = demo.chat("bob@example.com", question);
    assert_eq!((reply["status"].as_str(), code), (Some("ok"), 0), "{reply}");

    // Bad input: an unknown connection is a clear error.
    let out = demo.run(&["grant", "use-connection", "nope", "--to", "east_sales"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no connection named `nope`"));
}

#[test]
fn serve_refuses_the_development_identity_provider_on_a_public_address() {
    let demo = Demo::new();
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["serve", "--addr", "0.0.0.0:0"])
        .env("SWITCHBOARD_HOME", demo.home.path())
        .env_remove("SWITCHBOARD_ADDR")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the switchboard binary runs");
    // Bounded: if the refusal regressed, the server would run until killed.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for switchboard serve") {
            break Some(status);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
    }
    let status = status.unwrap_or_else(|| panic!("serve on 0.0.0.0 kept running: {stderr}"));
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains("development identity provider") && stderr.contains("--dev-idp-on-public-address"),
        "{stderr}"
    );
}

/// Tests run in parallel and each starts servers: two started at once get ports of their own,
/// and a server whose port is taken fails to start, saying why, instead of the harness taking
/// the other server's answers for its own (which once had a CI run load a server that another
/// test then killed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_started_at_once_never_share_a_port_or_pass_for_each_other() {
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_switchboard"));
    let (one, two) = (Demo::new(), Demo::new());
    let (home_one, home_two) = (one.home.path().display().to_string(), two.home.path().display().to_string());
    let (envs_one, envs_two) =
        ([("SWITCHBOARD_HOME", home_one.as_str())], [("SWITCHBOARD_HOME", home_two.as_str())]);
    let (first, second) =
        tokio::join!(Serve::start(bin, None, &envs_one), Serve::start(bin, None, &envs_two));
    assert_ne!(first.url(), second.url());

    let port: u16 = first.url().rsplit(':').next().and_then(|p| p.parse().ok()).expect("a port in the URL");
    let third = Demo::new();
    let taken = tokio::spawn(async move {
        let home = third.home.path().display().to_string();
        Serve::start_on(bin, None, port, &[("SWITCHBOARD_HOME", &home)]).await
    });
    let panic = taken.await.expect_err("a server on a taken port must not come up").into_panic();
    let message = panic.downcast_ref::<String>().map(String::as_str).unwrap_or("(not a text panic)");
    assert!(
        message.contains("the process exited") && message.contains("Address already in use"),
        "{message}"
    );
    let health = reqwest::get(format!("{}/health", first.url())).await.expect("the first server answers");
    assert_eq!(health.status(), 200);
}
