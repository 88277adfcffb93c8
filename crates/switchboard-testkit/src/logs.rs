//! What `tracing` writes, kept for tests that read the logs: leak tests, expected warnings.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

/// The text written by a subscriber from [`Logs::subscriber`] or [`Logs::global`].
#[derive(Clone, Default)]
pub struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    /// Everything logged at any level by any thread of this test binary, through a process-wide
    /// subscriber installed on first use: a scoped one misses events whose callsite interest
    /// another test thread already cached. Panics if the binary set another global subscriber.
    pub fn global() -> Logs {
        static LOGS: OnceLock<Logs> = OnceLock::new();
        LOGS.get_or_init(|| {
            let logs = Logs::default();
            tracing::subscriber::set_global_default(logs.subscriber(tracing::Level::TRACE))
                .expect("no other global subscriber in this test binary");
            logs
        })
        .clone()
    }

    /// A subscriber writing here, events up to `level`, for `tracing::subscriber::set_default`.
    pub fn subscriber(&self, level: tracing::Level) -> impl tracing::Subscriber + Send + Sync + 'static {
        let writer = self.clone();
        tracing_subscriber::fmt()
            .with_max_level(level)
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish()
    }

    /// What was written so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }
}

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
