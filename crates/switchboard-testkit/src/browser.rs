//! A real browser for the web playground's tests: Debian's `chromium`, driven by `playwright-core`
//! (installed by `scripts/playground-browser` into `tests/playground`, pinned by its lock file),
//! from a Node.js script run to completion.

use crate::run::{ProcessRun, run_to_completion};
use crate::{node, node_package, on_path, repo_root};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What one script run printed.
pub type NodeRun = ProcessRun;

/// The Chromium executable: `$CHROMIUM` when set, else `chromium` on `PATH` (Debian's package,
/// which `.ci/run` installs). Panics saying how to install it when there is none.
pub fn chromium() -> PathBuf {
    if let Some(path) = std::env::var_os("CHROMIUM") {
        return PathBuf::from(path);
    }
    on_path("chromium").unwrap_or_else(|| {
        panic!("`chromium` is not on PATH: the playground tests need it (`apt-get install chromium`, as .ci/run does)")
    })
}

/// The playground's browser scenarios, `tests/playground/scenarios.mjs`, once `playwright-core` is
/// installed beside it (by `scripts/playground-browser`); panics naming that script otherwise.
pub fn playground_scenarios() -> PathBuf {
    node_package("playwright-core/package.json");
    repo_root().join("tests/playground/scenarios.mjs")
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
    command.arg(script).args(args);
    for (name, value) in envs {
        command.env(name, value);
    }
    run_to_completion(command, &script.display().to_string(), timeout).await
}
