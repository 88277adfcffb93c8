//! A real browser for the web playground's tests: Debian's `chromium`, driven by `playwright-core`
//! (installed by `scripts/playground-browser` into `tests/playground`, pinned by its lock file),
//! from a Node.js script run to completion.

use crate::{node, repo_root};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

/// What one script run printed.
pub struct NodeRun {
    /// Whether it exited successfully.
    pub success: bool,
    /// Its stdout.
    pub stdout: String,
    /// Its stderr.
    pub stderr: String,
}

/// The Chromium executable: `$CHROMIUM` when set, else `chromium` on `PATH` (Debian's package,
/// which `.ci/run` installs). Panics saying how to install it when there is none.
pub fn chromium() -> PathBuf {
    if let Some(path) = std::env::var_os("CHROMIUM") {
        return PathBuf::from(path);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).map(|dir| dir.join("chromium")).find(|c| c.is_file()).unwrap_or_else(|| {
        panic!("`chromium` is not on PATH: the playground tests need it (`apt-get install chromium`, as .ci/run does)")
    })
}

/// The playground's browser scenarios, `tests/playground/scenarios.mjs`, once `playwright-core` is
/// installed beside it; panics naming the script that installs it otherwise.
pub fn playground_scenarios() -> PathBuf {
    let dir = repo_root().join("tests/playground");
    assert!(
        dir.join("node_modules/playwright-core/package.json").is_file(),
        "playwright-core is not installed in {}: run scripts/playground-browser (or scripts/test)",
        dir.display()
    );
    dir.join("scenarios.mjs")
}

/// Runs `node SCRIPT ARGS…` to completion (at most `timeout`, then it is killed and this panics),
/// with `envs` added to the environment.
pub async fn run_node(
    script: &Path,
    args: &[OsString],
    envs: &[(&str, OsString)],
    timeout: Duration,
) -> NodeRun {
    let mut command = tokio::process::Command::new(node());
    command.arg(script).args(args).stdin(Stdio::null()).kill_on_drop(true);
    for (name, value) in envs {
        command.env(name, value);
    }
    let output = tokio::time::timeout(timeout, command.output())
        .await
        .unwrap_or_else(|_| panic!("{} did not finish within {timeout:?}", script.display()))
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    NodeRun {
        success: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}
