//! `switchboard serve` as a child process.

use crate::Child;
use std::path::Path;
use std::process::{Command, ExitStatus};
use std::time::Duration;

/// How long a server gets to answer `/health`: a cold start on a loaded CI machine prepares the
/// demo data and loads the router first.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// `switchboard serve` on `127.0.0.1`, its stdout and stderr in a log file of its own, stopped
/// with SIGTERM when dropped (see [`Child::stop`]).
///
/// The server sees the test's environment without the variables that would change what it does
/// behind the test's back (`SWITCHBOARD_*`, `OTEL_*`, `RUST_LOG`), with `NO_COLOR=1` so the log
/// stays readable, and then the `envs` the test gives. The log file is deleted on drop, unless
/// the test is panicking: then it is kept and its path printed.
#[derive(Debug)]
pub struct Serve {
    child: Child,
    url: String,
    log: Option<tempfile::TempPath>,
}

impl Serve {
    /// Runs `bin serve --addr 127.0.0.1:0`, with `--config config` when given (else the built-in
    /// demo), reads the port it bound from its log and waits until `/health` answers. Panics with
    /// the log when the server exits or does not answer within a minute.
    ///
    /// The kernel picks the port as the server binds it, so two servers started at once (tests
    /// run in parallel) can never be handed the same one.
    pub async fn start(bin: &Path, config: Option<&Path>, envs: &[(&str, &str)]) -> Self {
        Self::launch(bin, config, 0, envs).await
    }

    /// [`Serve::start`] on a given `port`, for servers whose URLs must be known before they
    /// start (two servers that call each other: pick both with [`crate::free_port`] first).
    /// Panics, with the log, when another process holds the port.
    pub async fn start_on(bin: &Path, config: Option<&Path>, port: u16, envs: &[(&str, &str)]) -> Self {
        assert_ne!(port, 0, "Serve::start_on needs a port; Serve::start lets the kernel pick one");
        Self::launch(bin, config, port, envs).await
    }

    async fn launch(bin: &Path, config: Option<&Path>, port: u16, envs: &[(&str, &str)]) -> Self {
        let log = tempfile::Builder::new()
            .prefix("switchboard-serve-")
            .suffix(".log")
            .tempfile()
            .expect("a log file for switchboard serve")
            .into_temp_path();
        let mut command = Command::new(bin);
        command.args(["serve", "--addr", &format!("127.0.0.1:{port}")]);
        if let Some(config) = config {
            command.arg("--config").arg(config);
        }
        for (name, _) in std::env::vars_os() {
            let name_str = name.to_string_lossy();
            if name_str.starts_with("SWITCHBOARD_") || name_str.starts_with("OTEL_") || name_str == "RUST_LOG"
            {
                command.env_remove(&name);
            }
        }
        command.env("NO_COLOR", "1").envs(envs.iter().copied());
        let mut child = Child::spawn(&mut command, &log);
        let what = match config {
            Some(config) => format!("switchboard serve --config {}", config.display()),
            None => "switchboard serve (built-in demo)".to_string(),
        };
        // Its own line, printed once it holds the socket: a `/health` probe alone could be
        // answered by another server on the same port.
        let url = child.wait_for_log_line(&what, START_TIMEOUT, serving_url).await;
        if port != 0 {
            assert_eq!(url, format!("http://127.0.0.1:{port}"), "{what} bound another address");
        }
        let what = format!("{what} at {url}");
        child.wait_for_http_as(&what, &format!("{url}/health"), START_TIMEOUT).await;
        Self { child, url, log: Some(log) }
    }

    /// The base URL, `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The log file: the server's stdout and stderr.
    pub fn log_path(&self) -> &Path {
        self.log.as_deref().expect("the log file lives as long as the server")
    }

    /// The log so far (or why it cannot be read).
    pub fn log(&self) -> String {
        self.child.log()
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Kills the server at once (SIGKILL): no shutdown, no draining, as in a crash.
    pub fn kill(&mut self) {
        self.child.kill();
    }

    /// Stops the server gracefully (so queued audit rows reach the store) and returns how it
    /// exited; see [`Child::stop`]. Calling it again, or dropping afterwards, is fine.
    pub fn stop(&mut self) -> ExitStatus {
        self.child.stop()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        // Stop before the log goes, so nothing is written to a deleted file.
        let _ = self.child.terminate();
        if std::thread::panicking()
            && let Some(log) = self.log.take()
        {
            match log.keep() {
                Ok(path) => eprintln!("switchboard serve at {} logged to {}", self.url, path.display()),
                Err(e) => eprintln!("cannot keep the log of switchboard serve at {}: {e}", self.url),
            }
        }
    }
}

/// The URL in the line `switchboard serving `NAME` on URL` that `switchboard serve` prints once
/// it is listening.
fn serving_url(line: &str) -> Option<String> {
    let rest = line.strip_prefix("switchboard serving `")?;
    let (_, url) = rest.rsplit_once("` on ")?;
    Some(url.trim().to_string())
}

/// Runs the `switchboard` binary `bin` with `args` (and `envs`, without `SWITCHBOARD_HOME` and
/// `SWITCHBOARD_USER` from the test's environment) and returns its trimmed stdout. Panics with
/// both outputs when it fails.
pub fn run_cli(bin: &Path, args: &[&str], envs: &[(&str, &Path)]) -> String {
    let mut command = Command::new(bin);
    command.args(args).env_remove("SWITCHBOARD_HOME").env_remove("SWITCHBOARD_USER");
    for (key, value) in envs {
        command.env(key, value);
    }
    let out = command.output().expect("the switchboard binary runs");
    assert!(
        out.status.success(),
        "switchboard {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}
