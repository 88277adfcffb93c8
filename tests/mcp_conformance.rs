//! The official MCP conformance suite (`@modelcontextprotocol/conformance`, on the Node.js 22
//! that `scripts/mcp-conformance` installs from npm) against a real `switchboard serve` at `/mcp`,
//! with alice's bearer token on every request the suite's client makes.
//!
//! The server runs the demo configuration plus the two fixture tools the suite's tool-call
//! scenarios call by name (`tests/mcp-conformance/agents/`): Switchboard's tools are its
//! sub-agents, so a fixture is a sub-agent like any other and its call a governed run. The
//! scenarios that apply to a tools-only server must pass; the rest are listed, with reasons, in
//! `tests/mcp-conformance/expected-failures.yml`, which the suite enforces both ways (an unlisted
//! failure, or a listed scenario that passes, fails the run).

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;
use switchboard_testkit::conformance::run_server_suite;
use switchboard_testkit::{Serve, repo_root, run_cli};

const BIN: &str = env!("CARGO_BIN_EXE_switchboard");
const ALICE: &str = "alice@example.com";

/// What a server with tools and nothing else must pass (`server-sse-multiple-streams` passes too,
/// and is held to it the same way).
const REQUIRED: [&str; 6] = [
    "server-initialize",
    "ping",
    "tools-list",
    "tools-call-simple-text",
    "tools-call-error",
    "server-sse-multiple-streams",
];

fn cli(args: &[&str]) -> String {
    run_cli(Path::new(BIN), args, &[])
}

/// The demo configuration in `dir` with the suite's fixture tools as two more sub-agents.
fn configure(dir: &Path) -> std::path::PathBuf {
    cli(&["init", dir.to_str().expect("utf-8 path")]);
    let fixtures = repo_root().join("tests/mcp-conformance/agents");
    for entry in std::fs::read_dir(&fixtures).expect("the fixture agents").flatten() {
        std::fs::copy(entry.path(), dir.join("agents").join(entry.file_name()))
            .expect("copy a fixture agent");
    }
    let config = dir.join("switchboard.toml");
    cli(&["validate", "--config", config.to_str().expect("utf-8 path")]);
    config
}

/// The scenarios `expected-failures.yml` lists under `server:`.
fn expected_failures(baseline: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(baseline).expect("the expected failures");
    text.lines().filter_map(|l| l.trim().strip_prefix("- ")).map(|name| name.trim().to_string()).collect()
}

/// The tool result a tool-call scenario judged (the `details.result` of its check).
fn tool_result(checks: &BTreeMap<String, Vec<Value>>, scenario: &str) -> Value {
    checks
        .get(scenario)
        .and_then(|checks| checks.iter().find(|c| c["id"] == scenario))
        .map(|check| check["details"]["result"].clone())
        .unwrap_or_else(|| panic!("no `{scenario}` check in {checks:?}"))
}

#[tokio::test]
async fn the_mcp_conformance_suite_passes_the_scenarios_of_a_tools_only_server() {
    let baseline = repo_root().join("tests/mcp-conformance/expected-failures.yml");
    let expected = expected_failures(&baseline);
    for required in REQUIRED {
        assert!(!expected.contains(&required.to_string()), "the baseline may not excuse `{required}`");
    }

    let scratch = tempfile::tempdir().expect("temp dir");
    let config = configure(&scratch.path().join("demo"));
    let config_str = config.to_str().expect("utf-8 path");
    let mut server = Serve::start(Path::new(BIN), Some(&config), &[]).await;
    let token = cli(&["token", "--config", config_str, "--as", ALICE]);
    let url = format!("{}/mcp", server.url());
    let out = scratch.path().join("results");

    let run = run_server_suite(&url, &token, &baseline, &out, Duration::from_secs(600)).await;
    let passed: Vec<&str> = run.scenarios.iter().filter(|(_, ok)| **ok).map(|(s, _)| s.as_str()).collect();
    eprintln!("conformance: {} scenarios, passed: {passed:?}", run.scenarios.len());
    for (scenario, why) in &run.failures {
        let listed = if expected.contains(scenario) { "expected" } else { "UNEXPECTED" };
        eprintln!("conformance: {scenario} failed ({listed}): {}", why.join("; "));
    }
    for required in REQUIRED {
        assert_eq!(
            run.scenarios.get(required),
            Some(&true),
            "`{required}` must pass: {:?}\n{}",
            run.failures.get(required),
            run.output
        );
    }
    let stale: Vec<&String> = expected.iter().filter(|s| run.scenarios.get(*s) == Some(&true)).collect();
    assert!(stale.is_empty(), "listed as expected failures but passing, remove them: {stale:?}");
    let unlisted: Vec<&String> = run.failures.keys().filter(|s| !expected.contains(s)).collect();
    assert!(unlisted.is_empty(), "failing and not listed: {unlisted:?}\n{}", run.output);
    assert!(run.success, "the suite failed against its baseline:\n{}", run.output);

    // Stricter than the suite, which accepts any text content: the simple text is a successful
    // run of its sub-agent, and the error is a tool error saying what is missing.
    let text = tool_result(&run.checks, "tools-call-simple-text");
    assert_eq!(text["isError"], false, "{text}");
    assert_eq!(text["structuredContent"]["status"], "ok", "{text}");
    assert_eq!(text["structuredContent"]["agents"], serde_json::json!(["test_simple_text"]), "{text}");
    assert_eq!(text["structuredContent"]["answer"], "This is a simple text response for testing.", "{text}");
    let error = tool_result(&run.checks, "tools-call-error");
    assert_eq!(error["isError"], true, "{error}");
    assert!(
        error["content"][0]["text"].as_str().is_some_and(|t| t.contains("`question` is required")),
        "{error}"
    );

    // The fixture call was a governed run as alice, audited like any other.
    let rows = cli(&["audit", "--json", "--config", config_str, "--agent", "test_simple_text"]);
    let rows: Vec<Value> = serde_json::from_str(&rows).expect("audit --json");
    assert!(!rows.is_empty(), "no audit rows for test_simple_text");
    assert!(rows.iter().all(|r| r["caller_email"] == ALICE), "{rows:?}");
    assert!(!server.log().contains(&token), "the token reached the server log");
    server.stop();
}
