//! The Python side of the tests: the venv interpreter `scripts/python-env` makes, and the real
//! MLflow tracking server from it.

use crate::{Child, free_port, repo_root};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The modules the venv must have, as `scripts/python-env` installs them.
const MODULES: &str = "openai, pytest, mlflow, mlflow.server, agents, langchain_openai";

/// The test interpreter: `$SWITCHBOARD_TEST_PYTHON`, or `.venv/bin/python` at the repository
/// root. Panics with the fix when it is missing or lacks a module the tests use.
pub fn python() -> PathBuf {
    let root = repo_root();
    let python = std::env::var_os("SWITCHBOARD_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join(".venv/bin/python"));
    let fix = format!(
        "create it with `scripts/python-env` (a venv at {}/.venv with {MODULES}), or point \
         SWITCHBOARD_TEST_PYTHON at an interpreter that has them",
        root.display()
    );
    assert!(python.exists(), "the Python interpreter {} does not exist: {fix}", python.display());
    let probe = Command::new(&python)
        .args(["-c", &format!("import {MODULES}")])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}; {fix}", python.display()));
    assert!(
        probe.status.success(),
        "{} lacks a module the tests use ({}): {fix}",
        python.display(),
        String::from_utf8_lossy(&probe.stderr).trim()
    );
    python
}

/// A real MLflow tracking server (`mlflow server`, from the venv) on a free loopback port, with
/// its SQLite database in `dir`, ready when this returns: the process and its base URL. Its
/// `POST /v1/traces` takes OTLP spans for the experiment named in `x-mlflow-experiment-id`.
pub async fn mlflow_server(dir: &Path) -> (Child, String) {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let db = format!("sqlite:///{}", dir.join("mlflow.db").display());
    let mut child = Child::spawn(
        Command::new(python())
            .args(["-m", "mlflow", "server", "--host", "127.0.0.1", "--workers", "1"])
            .args(["--port", &port.to_string(), "--backend-store-uri", &db])
            .arg("--default-artifact-root")
            .arg(dir.join("artifacts"))
            .env("MLFLOW_HOME", dir),
        dir.join("mlflow-server.log"),
    );
    // Creating its database and starting its workers takes MLflow 10–30 s.
    child.wait_for_http(&format!("{url}/health"), Duration::from_secs(120)).await;
    (child, url)
}

/// What a pytest run printed, and whether it passed.
pub struct PytestRun {
    /// Whether every collected test passed.
    pub passed: bool,
    /// Its stdout, then its stderr.
    pub report: String,
}

/// Runs pytest on `target` (a path relative to the repository root) with the venv interpreter
/// and `env` added to this process's environment.
pub fn pytest(target: &str, env: &[(&str, &std::ffi::OsStr)]) -> PytestRun {
    let output = Command::new(python())
        .args(["-m", "pytest", target, "-q", "-p", "no:cacheprovider"])
        .current_dir(repo_root())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .envs(env.iter().copied())
        .output()
        .unwrap_or_else(|e| panic!("pytest cannot run: {e}"));
    PytestRun {
        passed: output.status.success(),
        report: format!(
            "{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    }
}
