//! Starting a stdio MCP server: its own environment and working directory, its stderr logged,
//! and a kill when its session is dropped.

use rmcp::transport::TokioChildProcess;
use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use switchboard_core::{Error, Result};
use tokio::io::AsyncBufReadExt;

/// Variables a stdio server inherits from the runtime. Everything else in the runtime's
/// environment — secret references read with `env:NAME` among them — stays out of the child.
const INHERITED_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "TMPDIR",
    "TEMP",
    "TMP",
    "SYSTEMROOT",
    "WINDIR",
    "PATHEXT",
    "COMSPEC",
    "APPDATA",
    "LOCALAPPDATA",
];

/// Lines of stderr kept for error messages.
const TAIL_LINES: usize = 4;

/// How to start the server.
#[derive(Debug, Clone)]
pub(crate) struct StdioCommand {
    pub command: String,
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub cwd: Option<PathBuf>,
}

/// A started server.
pub(crate) struct Spawned {
    /// The transport; dropping it kills the child.
    pub child: TokioChildProcess,
    /// The child's process id.
    pub pid: Option<u32>,
    /// What it last said on stderr.
    pub stderr: StderrTail,
}

/// The last lines a child wrote to stderr.
pub(crate) struct StderrTail {
    lines: Arc<Mutex<VecDeque<String>>>,
    reader: Option<tokio::task::JoinHandle<()>>,
}

impl StderrTail {
    /// The last line, which usually says why the child stopped. Waits briefly for the reader to
    /// reach the end of a child that has just exited.
    pub async fn last_words(self) -> Option<String> {
        if let Some(reader) = self.reader {
            let _ = tokio::time::timeout(std::time::Duration::from_millis(500), reader).await;
        }
        self.lines.lock().ok().and_then(|t| t.back().cloned())
    }
}

/// Starts `cmd`; `server` names it in messages and logs.
pub(crate) fn spawn(server: &str, cmd: &StdioCommand) -> Result<Spawned> {
    let mut command = tokio::process::Command::new(&cmd.command);
    command.args(&cmd.args).env_clear();
    for name in INHERITED_ENV {
        if let Some(v) = std::env::var_os(name) {
            command.env(name, v);
        }
    }
    // rmcp kills the child when its transport is dropped; `kill_on_drop` covers a drop that
    // happens while the runtime shuts down, when rmcp's kill task may never run.
    command.envs(&cmd.env).kill_on_drop(true);
    if let Some(dir) = &cmd.cwd {
        command.current_dir(dir);
    }
    let (child, stderr) =
        TokioChildProcess::builder(command).stderr(std::process::Stdio::piped()).spawn().map_err(|e| {
            let place = cmd.cwd.as_ref().map(|d| format!(" in {}", d.display())).unwrap_or_default();
            Error::upstream(format!("the MCP server {server} could not be started{place}: {e}"))
        })?;
    let pid = child.id();
    let lines = Arc::new(Mutex::new(VecDeque::new()));
    let reader = stderr.map(|stderr| tokio::spawn(forward_stderr(server.to_string(), stderr, lines.clone())));
    Ok(Spawned { child, pid, stderr: StderrTail { lines, reader } })
}

/// Logs the child's stderr and keeps its last lines.
async fn forward_stderr(
    server: String,
    stderr: tokio::process::ChildStderr,
    tail: Arc<Mutex<VecDeque<String>>>,
) {
    let mut lines = tokio::io::BufReader::new(stderr).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        tracing::debug!(server = %server, "mcp server stderr: {line}");
        if let Ok(mut t) = tail.lock() {
            if t.len() == TAIL_LINES {
                t.pop_front();
            }
            t.push_back(line.chars().take(200).collect());
        }
    }
}
