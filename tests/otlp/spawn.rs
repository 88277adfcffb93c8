//! Starts the real OTLP receiver (`@elastic/mockotlpserver` behind `receiver.js`) on a free port,
//! for the tests that export to it. Shared by those tests through `#[path]`.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// Spawns the receiver and hands every line it prints to `on_line` on a reader thread, until
/// `on_line` returns `false` or the receiver exits. Fails the test, saying how to install it,
/// when the receiver or Node.js is missing.
pub fn spawn_receiver(mut on_line: impl FnMut(String) -> bool + Send + 'static) -> Child {
    // Every crate that includes this file sits two levels below the repository root.
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/otlp");
    assert!(
        dir.join("node_modules/@elastic/mockotlpserver/package.json").exists(),
        "the OTLP test receiver is not installed: run scripts/otlp-receiver (npm ci --prefix tests/otlp) first"
    );
    let mut child = Command::new("node")
        .arg(dir.join("receiver.js"))
        .arg("0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run `node` ({e}): the OTLP tests need Node.js 20+"));
    let stdout = child.stdout.take().expect("piped stdout");
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
