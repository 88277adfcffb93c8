//! The harness on throwaway `sh` processes and sockets: what tests rely on when a server fails.

use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};
use switchboard_testkit::{Child, free_port, wait_for_http};

fn sh(script: &str) -> Command {
    let mut command = Command::new("sh");
    command.args(["-c", script]);
    command
}

#[test]
fn a_child_logs_both_streams_and_stops_gracefully_on_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let script = "trap 'echo bye; exit 0' TERM; echo out; echo err >&2; while :; do sleep 0.05; done";
    let mut child = Child::spawn(&mut sh(script), dir.path().join("child.log"));
    // `err` comes after the trap is set, so the SIGTERM below cannot arrive too early.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !child.log().contains("err") {
        assert!(Instant::now() < deadline, "the script never ran: {}", child.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = child.stop();
    assert!(status.success(), "{status}: {}", child.log());
    let text = child.log();
    for line in ["out", "err", "bye"] {
        assert!(text.lines().any(|l| l == line), "{line:?} in {text:?}");
    }
    assert_eq!(child.stop(), status, "stopping again reports the same exit");
}

#[tokio::test]
#[should_panic(expected = "exit status: 3")]
async fn waiting_on_a_child_that_exits_fails_at_once_with_its_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = Child::spawn(&mut sh("echo 'cannot start: boom'; exit 3"), dir.path().join("child.log"));
    child.wait_for_http(&format!("http://127.0.0.1:{}/health", free_port()), Duration::from_secs(60)).await;
}

#[tokio::test]
#[should_panic(expected = "--- log")]
async fn a_timeout_quotes_the_log_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("server.log");
    std::fs::write(&log, "the reason it never listened").expect("log");
    switchboard_testkit::wait_for_port(
        &format!("127.0.0.1:{}", free_port()),
        Duration::from_millis(200),
        Some(&log),
    )
    .await;
}

#[tokio::test]
async fn any_http_answer_counts_as_up() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut request = [0u8; 1024];
            let _ = socket.read(&mut request).await;
            let _ = socket
                .write_all(
                    b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                )
                .await;
        }
    });
    assert_eq!(wait_for_http(&format!("http://{addr}/health"), Duration::from_secs(10), None).await, 503);
}

#[test]
fn spawn_lines_hands_over_stdout_line_by_line() {
    let (tx, rx) = mpsc::channel();
    let mut child = Child::spawn_lines(&mut sh("echo one; echo two; cat"), move |line| tx.send(line).is_ok());
    let got: Vec<String> =
        (0..2).map(|_| rx.recv_timeout(Duration::from_secs(10)).expect("a line")).collect();
    assert_eq!(got, ["one", "two"]);
    // `cat` waits on the stdin pipe the guard holds open: the child lives until it is stopped.
    assert!(child.try_wait().is_none(), "still running");
    child.kill();
    assert!(child.try_wait().is_some());
}

#[test]
#[should_panic(expected = "run scripts/mcp-peers (or scripts/test)")]
fn a_missing_node_package_says_how_to_install_it() {
    switchboard_testkit::node_package("@switchboard/no-such-package/index.js");
}

#[test]
fn the_repo_root_holds_the_workspace() {
    let root = switchboard_testkit::repo_root();
    assert!(root.join("Cargo.toml").is_file() && root.join("crates/switchboard-testkit").is_dir());
}
