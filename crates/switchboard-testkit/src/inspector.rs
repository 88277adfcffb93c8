//! The official MCP inspector's CLI as an outside MCP client: one run to completion, judged by
//! what it printed.

use crate::{inspector_js, node};
use serde_json::Value;
use std::ffi::OsString;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

/// What one inspector run printed.
pub struct InspectorRun {
    /// Whether it exited successfully.
    pub success: bool,
    /// Its stdout: with `--format json`, `{"result": …}`.
    pub stdout: String,
    /// Its stderr.
    pub stderr: String,
}

impl InspectorRun {
    /// The MCP result the inspector printed; panics with the output when there is none.
    pub fn json(&self) -> Value {
        let printed: Value = serde_json::from_str(self.stdout.trim()).unwrap_or_else(|e| {
            panic!("the inspector printed no JSON ({e}):\n{}\nstderr: {}", self.stdout, self.stderr)
        });
        printed.get("result").cloned().unwrap_or_else(|| panic!("no `result` in {printed}"))
    }

    /// The names of the tools a `tools/list` run printed, sorted.
    pub fn tool_names(&self) -> Vec<String> {
        let listed = self.json();
        let mut names: Vec<String> = listed["tools"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t["name"].as_str().map(str::to_string))
            .collect();
        names.sort_unstable();
        names
    }
}

/// Runs `inspector --cli --stored-auth-only --format json -q ARGS…` to completion (at most
/// `timeout`), with its state files kept in `home` instead of the real home directory. `args`
/// name the target (`--transport http URL`, `--header …`, or `--transport stdio -- CMD…`) and
/// the method.
pub async fn inspect(home: &Path, args: &[OsString], timeout: Duration) -> InspectorRun {
    // `Command::output` collects a run to completion; the testkit's `Child` is for peers that
    // keep serving.
    let mut command = tokio::process::Command::new(node());
    command.arg(inspector_js()).args(["--cli", "--stored-auth-only", "--format", "json", "-q"]);
    command
        .args(args)
        .env("HOME", home)
        .env("MCP_CATALOG_PATH", home.join("mcp.json"))
        .env("MCP_CLIENT_CONFIG_PATH", home.join("client.json"))
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let output = tokio::time::timeout(timeout, command.output())
        .await
        .unwrap_or_else(|_| panic!("the inspector did not finish within {timeout:?}"))
        .expect("node runs");
    let run = InspectorRun {
        success: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    };
    eprintln!("inspector {args:?}: ok={} stdout={} stderr={}", run.success, run.stdout, run.stderr);
    run
}
