//! The served endpoint as real clients meet it: starts the `switchboard serve` binary on a free
//! port with a fresh data dir, waits for `/health`, and runs the pytest suite in tests/python,
//! which drives the server with the official `openai` Python package, MLflow's client
//! (`Trace.from_dict`, `mlflow.deployments`) and two agent frameworks used
//! unmodified (openai-agents and LangChain's `ChatOpenAI`). Then stops the server with
//! SIGTERM and checks it shut down cleanly and logged each request as a JSON line.
//!
//! The interpreter is [`switchboard_testkit::python`]: `$SWITCHBOARD_TEST_PYTHON`, or
//! `.venv/bin/python` at the repository root (create it with `scripts/python-env`).

use std::path::Path;
use switchboard_testkit::{Serve, pytest};

#[tokio::test]
async fn the_official_openai_python_client_works_against_the_server() {
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

    let url = format!("{}/v1", server.url());
    let run = pytest(
        "tests/python",
        &[
            ("SWITCHBOARD_BASE_URL", url.as_ref()),
            ("SWITCHBOARD_BIN", env!("CARGO_BIN_EXE_switchboard").as_ref()),
            ("SWITCHBOARD_HOME", home.path().as_os_str()),
        ],
    );
    let report = run.report;
    assert!(run.passed, "pytest failed:\n{report}\nserver log:\n{}", server.log());
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
