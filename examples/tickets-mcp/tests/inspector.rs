//! An outside MCP client against the tickets server: the official MCP inspector CLI
//! (`@modelcontextprotocol/inspector`, pinned in `tests/mcp-peers`), passing the caller's token
//! with `--header "Authorization: Bearer …"` as any client configured with a bearer token would.
//!
//! Install it with `scripts/mcp-peers`. Without Node.js the test is skipped (loudly); with
//! Node.js but without the installed inspector it fails.

mod common;

use common::*;
use serde_json::Value;
use std::ffi::OsString;
use std::time::Duration;
use switchboard_testkit::inspector::{self, InspectorRun};
use switchboard_testkit::{find_node, inspector_js};

/// Runs `inspector --cli URL ARGS…` over streamable HTTP (with `--header Authorization: Bearer
/// TOKEN` when given), keeping its state files out of the real home directory.
async fn inspect(home: &std::path::Path, url: &str, token: Option<&str>, args: &[&str]) -> InspectorRun {
    let mut all: Vec<OsString> = vec![url.into(), "--transport".into(), "http".into()];
    all.extend(args.iter().map(OsString::from));
    if let Some(token) = token {
        all.push("--header".into());
        all.push(format!("Authorization: Bearer {token}").into());
    }
    inspector::inspect(home, &all, Duration::from_secs(90)).await
}

fn text_of(result: &Value) -> String {
    result["content"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["text"].as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn the_mcp_inspector_lists_and_calls_the_tools_with_a_bearer_token() {
    if find_node().is_none() {
        eprintln!(
            "\n\n*** SKIPPED the_mcp_inspector_lists_and_calls_the_tools_with_a_bearer_token: `node` is not \
             installed. Install Node.js 20+ and run scripts/mcp-peers to test with the MCP inspector. ***\n\n"
        );
        return;
    }
    // Fails here, naming scripts/mcp-peers, when the inspector is not installed.
    inspector_js();
    // The inspector keeps state under $HOME; a scratch home keeps the real one clean.
    let scratch = tempfile::tempdir().expect("temp home");
    let home = scratch.path().to_path_buf();
    let issuer = Issuer::es256("k1");
    let server = server_for(&issuer).await;
    let (alice, bob) = (issuer.token(ALICE), issuer.token(BOB));

    let tools = inspect(&home, &server.url, Some(&alice), &["--method", "tools/list"]).await;
    assert!(tools.success, "tools/list failed: {}", tools.stderr);
    let listed = tools.json();
    let mut names: Vec<&str> =
        listed["tools"].as_array().into_iter().flatten().filter_map(|t| t["name"].as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["list_tickets", "open_ticket", "show_ticket"], "{listed}");

    let list = |token: String| {
        let (home, url) = (home.clone(), server.url.clone());
        async move {
            let args = ["--method", "tools/call", "--tool-name", "list_tickets", "--tool-arg", "status=all"];
            inspect(&home, &url, Some(&token), &args).await
        }
    };
    for (token, who) in [(alice.clone(), ALICE), (bob.clone(), BOB)] {
        let run = list(token).await;
        assert!(run.success, "list_tickets as {who} failed: {}", run.stderr);
        let result = run.json();
        assert_eq!(result["isError"], Value::Bool(false), "{result}");
        let owners = owners(&result);
        assert!(!owners.is_empty() && owners.iter().all(|o| o == who), "{who} sees {owners:?}");
        assert!(text_of(&result).contains(who), "{result}");
    }

    let args = ["--method", "tools/call", "--tool-name", "show_ticket", "--tool-arg", "id=TCK-1003"];
    let theirs = inspect(&home, &server.url, Some(&bob), &args).await;
    let result = theirs.json();
    assert_eq!(result["isError"], Value::Bool(true), "{result}");
    assert_eq!(text_of(&result), "no ticket TCK-1003 for you");

    let args = [
        "--method",
        "tools/call",
        "--tool-name",
        "open_ticket",
        "--tool-arg",
        "title=Filed from the MCP inspector",
    ];
    let opened = inspect(&home, &server.url, Some(&bob), &args).await;
    assert!(opened.success, "open_ticket failed: {}", opened.stderr);
    let id = opened.json()["structuredContent"]["id"].as_str().expect("a ticket id").to_string();
    let after = list(bob.clone()).await.json();
    assert!(
        text_of(&after).contains(&id) && text_of(&after).contains("Filed from the MCP inspector"),
        "{after}"
    );

    // Without the header the server refuses, and the inspector reports failure.
    let refused = inspect(&home, &server.url, None, &["--method", "tools/list"]).await;
    assert!(!refused.success, "tools/list without a token succeeded: {}", refused.stdout);
    assert!(!refused.stdout.contains("list_tickets"), "{}", refused.stdout);
    assert!(refused.stderr.contains("a bearer token is required"), "not our 401: {}", refused.stderr);

    server.stop().await;
}
