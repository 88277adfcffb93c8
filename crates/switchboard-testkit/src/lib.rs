//! Switchboard's test harness: what integration tests need to run real processes around the code
//! under test.
//!
//! - [`repo_root`], [`free_port`], and the readiness waits [`wait_for_http`] and
//!   [`wait_for_port`], which panic with the process's log when it never comes up;
//! - [`Child`], a spawned process that is stopped (SIGTERM, a bounded wait, then SIGKILL) when
//!   the test ends, even by panicking, its output in a log file or handed over line by line;
//! - [`Serve`], `switchboard serve` on a free port, ready once `/health` answers, and
//!   [`run_cli`], one run of the binary's other commands;
//! - [`node`], [`node_package`], [`otlp_receiver`], [`everything_js`], [`everything_http`] and
//!   [`inspector_js`] for the Node.js peers the tests talk to, [`skip_without_node`] for the few
//!   tests skipped without Node.js, and [`inspector::inspect`], one run of the MCP inspector's CLI;
//! - [`conformance::run_server_suite`], the official MCP conformance suite against a server;
//! - [`python`], the venv interpreter, and [`mlflow_server`], a real MLflow tracking server;
//! - [`browser::chromium`] and [`browser::run_node`], a real browser driven by a Node.js script, for
//!   the web playground;
//! - [`genie::GenieServer`], a local Databricks Genie Conversation API;
//! - [`oauth::OAuthProvider`], a local OAuth provider (consent page, PKCE token endpoint, a
//!   far-side API answering only the token owner's data);
//! - [`flaky::FlakyUpstream`], an HTTP upstream answering a script of failures (with
//!   `Retry-After`) before it recovers;
//! - [`fault_proxy::FaultProxy`], a proxy in front of a real server that fails chosen JSON-RPC
//!   methods with chosen statuses and counts each method's requests;
//! - [`logs::Logs`], what `tracing` writes, for tests that read the logs;
//! - [`pg::TestSchema`], a PostgreSQL schema of its own for one test, and [`pg::TestDatabase`], a
//!   database of its own that can be cut off and restored.
//!
//! It depends on no other switchboard crate, so any crate can take it as a dev-dependency. The
//! `switchboard` binary is passed in by the caller: `env!("CARGO_BIN_EXE_switchboard")` exists
//! only in the tests of the crate that builds it.

pub mod browser;
mod child;
pub mod conformance;
pub mod fault_proxy;
pub mod flaky;
pub mod genie;
pub mod inspector;
pub mod llm;
pub mod logs;
pub mod oauth;
pub mod pg;
mod python;
mod run;
mod serve;
pub mod sse;

pub use child::Child;
pub use python::{PytestRun, mlflow_server, pytest, python};
pub use run::ProcessRun;
pub use serve::{Serve, run_cli};

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The repository root (where the workspace `Cargo.toml` is), from this crate's own location.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("repository root")
}

/// A free loopback port: bound, read and released for a server to take. Never the same port
/// twice in one test process, since the kernel may hand a just-released port out again and
/// tests run in parallel.
///
/// Another process could still take it in between; a fixed URL known before the server starts
/// is worth that small risk. Servers that need no fixed URL should bind port 0 themselves
/// ([`Serve::start`] does).
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// Waits until `url` answers HTTP at all (any status) and returns that status; panics after
/// `timeout`, quoting the log file at `log` when given.
///
/// Any status counts because readiness means "serving": a `/health` that answers 503 is up, and
/// the test, not the wait, decides whether that is acceptable.
pub async fn wait_for_http(url: &str, timeout: Duration, log: Option<&Path>) -> u16 {
    let client = probe_client();
    wait_until(url, timeout, || http_status(&client, url), || None, || log_report(log)).await
}

/// Waits until a TCP connection to `addr` (`host:port`) succeeds; panics after `timeout`,
/// quoting the log file at `log` when given.
pub async fn wait_for_port(addr: &str, timeout: Duration, log: Option<&Path>) {
    wait_until(addr, timeout, || tcp_connects(addr), || None, || log_report(log)).await
}

/// The `node` executable on `PATH`; panics, saying what needs it, when there is none.
pub fn node() -> PathBuf {
    find_node().unwrap_or_else(|| {
        panic!("`node` is not on PATH: the tests that run MCP peers or the OTLP receiver need Node.js 20+")
    })
}

/// The `node` executable on `PATH`, or `None`: for the rare test that is skipped (saying so)
/// rather than failed on a machine without Node.js. Most should call [`node`] and fail.
pub fn find_node() -> Option<PathBuf> {
    on_path("node")
}

/// Whether a test needing Node.js is skipped: without `node` on `PATH` it says so loudly, naming
/// `install` (what to run and what it enables, e.g. `scripts/mcp-peers to test with the MCP
/// inspector`), and answers `true`; the test then returns early.
pub fn skip_without_node(test: &str, install: &str) -> bool {
    if find_node().is_some() {
        return false;
    }
    eprintln!(
        "\n\n*** SKIPPED {test}: `node` is not installed. Install Node.js 20+ and run {install}. ***\n\n"
    );
    true
}

/// The executable `name` in the first `PATH` directory that has it.
fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|candidate| candidate.is_file())
}

/// Where the test Node.js packages are installed: the MCP peers (by `scripts/mcp-peers`), the
/// OTLP receiver (by `scripts/otlp-receiver`), the MCP conformance suite (by
/// `scripts/mcp-conformance`) and the playground's browser driver (by
/// `scripts/playground-browser`), each pinned by a lock file next to them.
const NODE_MODULES: [&str; 4] = [
    "tests/mcp-peers/node_modules",
    "tests/otlp/node_modules",
    "tests/mcp-conformance/node_modules",
    "tests/playground/node_modules",
];

/// The installed file or directory `relative` (e.g.
/// `@modelcontextprotocol/server-everything/dist/index.js`) under the first `node_modules` that
/// has it: `$SWITCHBOARD_MCP_PEERS/node_modules` when that variable names a folder (MCP peers
/// installed elsewhere), then `tests/mcp-peers/node_modules`, `tests/otlp/node_modules`,
/// `tests/mcp-conformance/node_modules` and `tests/playground/node_modules`.
/// Panics with the script that installs it when none has it.
pub fn node_package(relative: &str) -> PathBuf {
    let root = repo_root();
    let elsewhere =
        std::env::var_os("SWITCHBOARD_MCP_PEERS").map(|dir| PathBuf::from(dir).join("node_modules"));
    let dirs: Vec<PathBuf> =
        elsewhere.into_iter().chain(NODE_MODULES.iter().map(|dir| root.join(dir))).collect();
    dirs.iter().map(|dir| dir.join(relative)).find(|path| path.exists()).unwrap_or_else(|| {
        let searched: Vec<String> = dirs.iter().map(|dir| dir.display().to_string()).collect();
        panic!(
            "the Node.js package file {relative} is not installed in {}: run scripts/mcp-peers (or \
             scripts/test); the OTLP receiver comes from scripts/otlp-receiver, the MCP conformance \
             suite from scripts/mcp-conformance, playwright-core from scripts/playground-browser",
            searched.join(" or ")
        )
    })
}

/// Starts the real OTLP/HTTP receiver (`@elastic/mockotlpserver` behind `tests/otlp/receiver.js`)
/// on a free port, handing every line it prints to `on_line` on a reader thread until `on_line`
/// returns `false` or the receiver exits. Its first line is
/// `{"event":"listening","url":"http://127.0.0.1:PORT/"}`; `receiver.js` describes the rest.
pub fn otlp_receiver(on_line: impl FnMut(String) -> bool + Send + 'static) -> Child {
    node_package("@elastic/mockotlpserver/package.json");
    Child::spawn_lines(Command::new(node()).arg(repo_root().join("tests/otlp/receiver.js")).arg("0"), on_line)
}

/// The reference MCP server's entry point (`@modelcontextprotocol/server-everything`, installed
/// by `scripts/mcp-peers`): `node PATH stdio` serves it over stdio.
pub fn everything_js() -> PathBuf {
    node_package("@modelcontextprotocol/server-everything/dist/index.js")
}

/// The official MCP inspector's command-line entry point (`@modelcontextprotocol/inspector`,
/// installed by `scripts/mcp-peers`): `node PATH --cli URL --transport http …` is an outside MCP
/// client that prints what the server answered.
pub fn inspector_js() -> PathBuf {
    node_package("@modelcontextprotocol/inspector/clients/launcher/build/index.js")
}

/// The reference MCP server over streamable HTTP on a free loopback port, listening when this
/// returns: the process and its MCP endpoint URL (`http://127.0.0.1:PORT/mcp`).
pub async fn everything_http() -> (Child, String) {
    everything_http_on(free_port()).await
}

/// [`everything_http`] on a given port, e.g. to restart it where clients expect it.
pub async fn everything_http_on(port: u16) -> (Child, String) {
    let log = std::env::temp_dir().join(format!("server-everything-{port}-{}.log", std::process::id()));
    let mut child = Child::spawn(
        Command::new(node()).arg(everything_js()).arg("streamableHttp").env("PORT", port.to_string()),
        log,
    );
    child.wait_for_port(&format!("127.0.0.1:{port}"), Duration::from_secs(30)).await;
    (child, format!("http://127.0.0.1:{port}/mcp"))
}

/// A client for readiness probes: never through a proxy (they target loopback), and bounded per
/// attempt so a socket that accepts but never answers cannot outlast the overall timeout.
fn probe_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("an HTTP client for readiness probes")
}

async fn http_status(client: &reqwest::Client, url: &str) -> Option<u16> {
    client.get(url).send().await.ok().map(|r| r.status().as_u16())
}

async fn tcp_connects(addr: &str) -> Option<()> {
    tokio::net::TcpStream::connect(addr).await.ok().map(drop)
}

/// `"\n--- log PATH ---\nCONTENTS"`, or nothing without a log.
fn log_report(log: Option<&Path>) -> String {
    log.map(|path| format!("\n--- log {} ---\n{}", path.display(), read_log(path))).unwrap_or_default()
}

/// A log's contents; a log that cannot be read says why instead, since it is only ever quoted.
fn read_log(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| format!("(unreadable: {e})"))
}

/// Polls `probe` until it yields a value. Panics once `timeout` passed, or as soon as `gone`
/// reports that waiting is pointless (the process exited), with `report()` appended.
async fn wait_until<T, F: Future<Output = Option<T>>>(
    what: &str,
    timeout: Duration,
    mut probe: impl FnMut() -> F,
    mut gone: impl FnMut() -> Option<String>,
    report: impl Fn() -> String,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        if let Some(why) = gone() {
            panic!("{what} never came up: {why}{}", report());
        }
        assert!(Instant::now() < deadline, "{what} did not come up within {timeout:?}{}", report());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
