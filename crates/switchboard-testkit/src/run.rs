//! A process run to completion, judged by what it printed: for clients and scripts that finish
//! (the testkit's [`Child`](crate::Child) is for peers that keep serving).

use std::process::Stdio;
use std::time::Duration;

/// What one run printed.
pub struct ProcessRun {
    /// Whether it exited successfully.
    pub success: bool,
    /// Its stdout.
    pub stdout: String,
    /// Its stderr.
    pub stderr: String,
}

/// Runs `command` to completion with its stdin closed. After `timeout` it is killed and this
/// panics; `what` names it in the panics.
pub(crate) async fn run_to_completion(
    mut command: tokio::process::Command,
    what: &str,
    timeout: Duration,
) -> ProcessRun {
    command.stdin(Stdio::null()).kill_on_drop(true);
    let output = tokio::time::timeout(timeout, command.output())
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {timeout:?}"))
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    ProcessRun {
        success: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}
