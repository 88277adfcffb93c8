//! The served endpoint as real clients meet it: starts the `switchboard serve` binary on a free
//! port with a fresh data dir, waits for `/health`, and runs the pytest suite in tests/python,
//! which drives the server with the official `openai` Python package. Then stops the server with
//! SIGTERM and checks it shut down cleanly and logged each request as a JSON line.
//!
//! The interpreter is `$SWITCHBOARD_TEST_PYTHON`, or `.venv/bin/python` at the repository root
//! (create it with `scripts/python-env`).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("repository root")
}

/// The venv interpreter, checked to have `openai` and `pytest`; fails the test with the fix
/// when it does not.
fn python() -> PathBuf {
    let root = repo_root();
    let python = std::env::var_os("SWITCHBOARD_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join(".venv/bin/python"));
    let fix = format!(
        "create it with `scripts/python-env` (a venv at {}/.venv with `pip install openai pytest`), \
         or point SWITCHBOARD_TEST_PYTHON at an interpreter that has both packages",
        root.display()
    );
    assert!(python.exists(), "the Python interpreter {} does not exist: {fix}", python.display());
    let probe = Command::new(&python)
        .args(["-c", "import openai, pytest; print(openai.__version__)"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}; {fix}", python.display()));
    assert!(
        probe.status.success(),
        "{} lacks the openai or pytest package ({}): {fix}",
        python.display(),
        String::from_utf8_lossy(&probe.stderr).trim()
    );
    python
}

/// The server process; killed if the test fails before stopping it.
struct ServerProcess {
    child: Child,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl ServerProcess {
    fn log(&self) -> String {
        self.stderr.lock().map(|l| l.join("\n")).unwrap_or_default()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Starts `switchboard serve` on 127.0.0.1:0 and returns it with the address it bound.
fn start_server(home: &Path) -> (ServerProcess, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["serve", "--addr", "127.0.0.1:0"])
        .env("SWITCHBOARD_HOME", home)
        .env("SWITCHBOARD_LOG_FORMAT", "json")
        .env_remove("RUST_LOG")
        .env_remove("SWITCHBOARD_ADDR")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the switchboard binary starts");
    let stderr = child.stderr.take().expect("piped stderr");
    let lines = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = mpsc::channel();
    let sink = lines.clone();
    // Drains stderr for the whole run (a full pipe would stall the server) and reports the
    // address from the start-up line.
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(addr) = line.split("on http://").nth(1) {
                let _ = tx.send(addr.trim().to_string());
            }
            if let Ok(mut l) = sink.lock() {
                l.push(line);
            }
        }
    });
    let server = ServerProcess { child, stderr: lines };
    let addr = rx
        .recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| panic!("the server did not report its address; stderr:\n{}", server.log()));
    (server, addr)
}

#[tokio::test]
async fn the_official_openai_python_client_works_against_the_server() {
    let python = python();
    let home = tempfile::tempdir().expect("tempdir");
    let (mut server, addr) = start_server(home.path());

    let health = format!("http://{addr}/health");
    let started = Instant::now();
    loop {
        match reqwest::get(&health).await {
            Ok(r) if r.status() == 200 => break,
            _ if started.elapsed() > Duration::from_secs(30) => {
                panic!("{health} never answered 200; stderr:\n{}", server.log())
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }

    let root = repo_root();
    let pytest = tokio::process::Command::new(&python)
        .args(["-m", "pytest", "tests/python", "-q", "-p", "no:cacheprovider"])
        .current_dir(&root)
        .env("SWITCHBOARD_BASE_URL", format!("http://{addr}/v1"))
        .env("SWITCHBOARD_BIN", env!("CARGO_BIN_EXE_switchboard"))
        .env("SWITCHBOARD_HOME", home.path())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .await
        .expect("pytest runs");
    let report =
        format!("{}\n{}", String::from_utf8_lossy(&pytest.stdout), String::from_utf8_lossy(&pytest.stderr));
    assert!(pytest.status.success(), "pytest failed:\n{report}\nserver stderr:\n{}", server.log());
    println!("{report}");

    // Graceful shutdown on SIGTERM, and one JSON access-log line per request.
    let pid = server.child.id().to_string();
    let term = Command::new("kill").args(["-TERM", &pid]).status().expect("kill runs");
    assert!(term.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = server.child.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "the server did not stop on SIGTERM; stderr:\n{}", server.log());
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "the server exited with {status}; stderr:\n{}", server.log());
    // The drain thread may still be reading the last lines.
    std::thread::sleep(Duration::from_millis(200));
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
        "no access-log line for a chat completion; stderr:\n{}",
        server.log()
    );
}
