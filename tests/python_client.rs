//! The served endpoint as real clients meet it: starts the `switchboard serve` binary on a free
//! port with a fresh data dir, waits for `/health`, and runs the pytest suite in tests/python,
//! which drives the server with the official `openai` Python package, MLflow's client
//! (`mlflow-skinny`: `Trace.from_dict`, `mlflow.deployments`) and two agent frameworks used
//! unmodified (openai-agents and LangChain's `ChatOpenAI`). Then stops the server with
//! SIGTERM and checks it shut down cleanly and logged each request as a JSON line.
//!
//! The interpreter is `$SWITCHBOARD_TEST_PYTHON`, or `.venv/bin/python` at the repository root
//! (create it with `scripts/python-env`).

use std::path::{Path, PathBuf};
use std::process::Command;
use switchboard_testkit::{Serve, repo_root};

/// The venv interpreter, checked to have `openai`, `pytest`, `mlflow`, `agents` and
/// `langchain_openai`; fails the test with the fix when it does not.
fn python() -> PathBuf {
    let root = repo_root();
    let python = std::env::var_os("SWITCHBOARD_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join(".venv/bin/python"));
    let fix = format!(
        "create it with `scripts/python-env` (a venv at {}/.venv with `openai`, `pytest`, \
         `mlflow-skinny`, `openai-agents` and `langchain-openai`), or point SWITCHBOARD_TEST_PYTHON at an interpreter that has them",
        root.display()
    );
    assert!(python.exists(), "the Python interpreter {} does not exist: {fix}", python.display());
    let probe = Command::new(&python)
        .args(["-c", "import openai, pytest, mlflow, agents, langchain_openai; print(openai.__version__)"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}; {fix}", python.display()));
    assert!(
        probe.status.success(),
        "{} lacks the openai, pytest, mlflow, openai-agents or langchain-openai package ({}): {fix}",
        python.display(),
        String::from_utf8_lossy(&probe.stderr).trim()
    );
    python
}

#[tokio::test]
async fn the_official_openai_python_client_works_against_the_server() {
    let python = python();
    let home = tempfile::tempdir().expect("tempdir");
    let home_dir = home.path().to_str().expect("utf-8 path");
    let mut server = Serve::start(
        Path::new(env!("CARGO_BIN_EXE_switchboard")),
        None,
        &[("SWITCHBOARD_HOME", home_dir), ("SWITCHBOARD_LOG_FORMAT", "json")],
    )
    .await;

    let health = format!("{}/health", server.url());
    let answer = reqwest::get(&health).await.map(|r| r.status().as_u16());
    assert!(matches!(answer, Ok(200)), "{health} answered {answer:?}, not 200; log:\n{}", server.log());

    let root = repo_root();
    let pytest = tokio::process::Command::new(&python)
        .args(["-m", "pytest", "tests/python", "-q", "-p", "no:cacheprovider"])
        .current_dir(&root)
        .env("SWITCHBOARD_BASE_URL", format!("{}/v1", server.url()))
        .env("SWITCHBOARD_BIN", env!("CARGO_BIN_EXE_switchboard"))
        .env("SWITCHBOARD_HOME", home.path())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .await
        .expect("pytest runs");
    let report =
        format!("{}\n{}", String::from_utf8_lossy(&pytest.stdout), String::from_utf8_lossy(&pytest.stderr));
    assert!(pytest.status.success(), "pytest failed:\n{report}\nserver log:\n{}", server.log());
    println!("{report}");

    // Graceful shutdown on SIGTERM, and one JSON access-log line per request.
    let status = server.stop();
    assert!(
        status.success(),
        "the server did not exit cleanly on SIGTERM within 20 s ({status}); log:\n{}",
        server.log()
    );
    let access: Vec<serde_json::Value> = server
        .log()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["target"] == "switchboard::access")
        .collect();
    assert!(
        access.iter().any(|v| v["path"] == "/v1/chat/completions"
            && v["status"] == 200
            && v["request_id"].as_str().is_some_and(|id| !id.is_empty())
            && v["latency_ms"].is_number()
            && v["method"] == "POST"),
        "no access-log line for a chat completion; log:\n{}",
        server.log()
    );
}
