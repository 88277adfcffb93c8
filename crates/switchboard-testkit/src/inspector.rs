//! The official MCP inspector's CLI as an outside MCP client: one run to completion, judged by
//! what it printed.

use crate::run::{ProcessRun, run_to_completion};
use crate::{inspector_js, node};
use serde_json::Value;
use std::ffi::OsString;
use std::ops::Deref;
use std::path::Path;
use std::time::Duration;

/// What one inspector run printed: its exit and output (stdout, with `--format json`, is
/// `{"result": …}`), and the MCP result read from it.
pub struct InspectorRun(ProcessRun);

impl Deref for InspectorRun {
    type Target = ProcessRun;

    fn deref(&self) -> &ProcessRun {
        &self.0
    }
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
    let mut command = tokio::process::Command::new(node());
    command.arg(inspector_js()).args(["--cli", "--stored-auth-only", "--format", "json", "-q"]);
    command
        .args(args)
        .env("HOME", home)
        .env("MCP_CATALOG_PATH", home.join("mcp.json"))
        .env("MCP_CLIENT_CONFIG_PATH", home.join("client.json"));
    let run = InspectorRun(run_to_completion(command, "the inspector", timeout).await);
    eprintln!("inspector {args:?}: ok={} stdout={} stderr={}", run.success, run.stdout, run.stderr);
    run
}
