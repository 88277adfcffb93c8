//! A spawned process that cannot outlive its test.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long [`Child::stop`] waits after SIGTERM before it kills: long enough for a server to
/// finish in-flight requests and drain its audit queue into the store.
const STOP_GRACE: Duration = Duration::from_secs(20);

/// A child process, stopped like [`Child::stop`] when dropped, so a failing test does not leak
/// it. Its environment, arguments and working directory are whatever the `Command` it was
/// spawned from says.
#[derive(Debug)]
pub struct Child {
    process: std::process::Child,
    program: String,
    log: Option<PathBuf>,
}

impl Child {
    /// Spawns `command` with stdin empty and stdout and stderr both written to `log` (created,
    /// or truncated), in the order the process wrote them. Panics when it cannot start.
    pub fn spawn(command: &mut Command, log: impl AsRef<Path>) -> Self {
        let log = log.as_ref().to_path_buf();
        let out = std::fs::File::create(&log)
            .unwrap_or_else(|e| panic!("cannot create the log file {}: {e}", log.display()));
        // One open file behind both streams, so their lines interleave instead of overwriting.
        let err = out.try_clone().expect("a second handle to the log file");
        command.stdin(Stdio::null()).stdout(out).stderr(err);
        Self::start(command, Some(log))
    }

    /// Spawns `command` and hands every line it prints on stdout to `on_line` on a reader thread,
    /// until `on_line` returns `false` or the process exits; stderr goes to the test's own.
    ///
    /// Its stdin is a pipe held open for the child's lifetime: a peer that exits when stdin
    /// closes (like `tests/otlp/receiver.js`) then dies with the test process even when that is
    /// killed outright and no `Drop` runs.
    pub fn spawn_lines(
        command: &mut Command,
        mut on_line: impl FnMut(String) -> bool + Send + 'static,
    ) -> Self {
        command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::inherit());
        let mut child = Self::start(command, None);
        let stdout = child.process.stdout.take().expect("piped stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if !on_line(line) {
                    break;
                }
            }
        });
        child
    }

    fn start(command: &mut Command, log: Option<PathBuf>) -> Self {
        let program = command.get_program().to_string_lossy().into_owned();
        let process = command.spawn().unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
        Self { process, program, log }
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.process.id()
    }

    /// The log file, for a child from [`Child::spawn`].
    pub fn log_path(&self) -> Option<&Path> {
        self.log.as_deref()
    }

    /// The log so far; says so instead when there is none or it cannot be read.
    pub fn log(&self) -> String {
        match &self.log {
            Some(path) => crate::read_log(path),
            None => format!("(no log file: {} was spawned with its output read line by line)", self.program),
        }
    }

    /// The exit status, once the process has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.process.try_wait().ok().flatten()
    }

    /// Stops the process and returns how it exited: SIGTERM, then up to 20 seconds for a graceful
    /// exit, then SIGKILL (which then shows in the status). A process that already exited just
    /// reports its status, so calling this twice (or dropping after it) is fine.
    pub fn stop(&mut self) -> ExitStatus {
        self.terminate().unwrap_or_else(|e| panic!("cannot stop {} ({}): {e}", self.program, self.id()))
    }

    /// Kills the process at once (SIGKILL) and reaps it, for a peer with nothing worth a graceful
    /// stop. Never panics, so a `Drop` may call it: a process that cannot be killed or waited on
    /// has already gone.
    pub fn kill(&mut self) {
        if let Ok(None) = self.process.try_wait() {
            let _ = self.process.kill();
            let _ = self.process.wait();
        }
    }

    /// [`Child::stop`] without panicking, for drops.
    pub(crate) fn terminate(&mut self) -> std::io::Result<ExitStatus> {
        if let Some(status) = self.process.try_wait()? {
            return Ok(status);
        }
        // `kill` rather than a libc binding keeps the crate free of unsafe code and dependencies.
        let _ = Command::new("kill")
            .args(["-TERM", &self.id().to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if let Some(status) = self.process.try_wait()? {
                return Ok(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.process.kill();
        self.process.wait()
    }

    /// Waits until `url` answers HTTP (any status, returned), like [`crate::wait_for_http`], but
    /// panics at once, with the log, if the process exits first.
    pub async fn wait_for_http(&mut self, url: &str, timeout: Duration) -> u16 {
        self.wait_for_http_as(url, url, timeout).await
    }

    /// [`Child::wait_for_http`], naming the process `what` in the panic message.
    pub(crate) async fn wait_for_http_as(&mut self, what: &str, url: &str, timeout: Duration) -> u16 {
        let client = crate::probe_client();
        crate::wait_until(
            what,
            timeout,
            || crate::http_status(&client, url),
            || exited(&mut self.process),
            || crate::log_report(self.log.as_deref()),
        )
        .await
    }

    /// Waits until a line of the log (see [`Child::spawn`]) gives `find` something and returns
    /// it; panics at once, with the log, if the process exits first, or after `timeout`.
    ///
    /// What a process says about itself settles what a probe from outside cannot: that the
    /// socket answering on a port is this process's and not another's that took the port first.
    pub async fn wait_for_log_line<T>(
        &mut self,
        what: &str,
        timeout: Duration,
        find: impl Fn(&str) -> Option<T>,
    ) -> T {
        let log = self.log.clone();
        crate::wait_until(
            what,
            timeout,
            || {
                let found = log
                    .as_deref()
                    .and_then(|path| std::fs::read_to_string(path).ok())
                    // Whole lines only: a line read while it is being written would give
                    // `find` half of it (half an address, say).
                    .and_then(|text| {
                        text.split_inclusive('\n')
                            .filter_map(|line| line.strip_suffix('\n'))
                            .find_map(|line| find(line.strip_suffix('\r').unwrap_or(line)))
                    });
                std::future::ready(found)
            },
            || exited(&mut self.process),
            || crate::log_report(self.log.as_deref()),
        )
        .await
    }

    /// Waits until a TCP connection to `addr` succeeds, like [`crate::wait_for_port`], but panics
    /// at once, with the log, if the process exits first.
    pub async fn wait_for_port(&mut self, addr: &str, timeout: Duration) {
        crate::wait_until(
            addr,
            timeout,
            || crate::tcp_connects(addr),
            || exited(&mut self.process),
            || crate::log_report(self.log.as_deref()),
        )
        .await
    }
}

/// Why waiting on `process` is pointless, if it is.
fn exited(process: &mut std::process::Child) -> Option<String> {
    match process.try_wait() {
        Ok(Some(status)) => Some(format!("the process exited ({status})")),
        Ok(None) => None,
        Err(e) => Some(format!("the process cannot be waited on: {e}")),
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        // Errors cannot be reported from a drop, and panicking here could abort an unwinding test.
        let _ = self.terminate();
    }
}
